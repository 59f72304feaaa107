#!/usr/bin/python3
"""control_auth_attack: hole 2 of issue #12, "the control plane authenticates
a connection once".

What is attacked: cinch-control's gRPC port (Identity/Sign renewal,
Config/Watch, Config/Report over mutual TLS), by a client that keeps ONE
connection open while the certificate it authenticated with stops being
good: it expires, or the root that signed it is retired. The client is a
stock gRPC client (python3-grpcio): one channel is one HTTP/2 connection,
and the control's log shows the peer address (ip:port) of every call, so
the test checks that the refused calls came over the very connection that
was authenticated earlier (not a fresh one, which the TLS handshake alone
would refuse).

  1. Expiry. A 6 s SVID (signed here with the CA's key: the CA never
     issues so short a one) opens a Watch, renews and reports while valid.
     At its notAfter the open Watch must end UNAUTHENTICATED (within 2 s),
     and a Sign renewal, a Report and a new Watch on the same connection
     must be refused UNAUTHENTICATED.
  2. Rotation. A normal SVID of the first root opens a Watch. The rotation
     steps that keep that root in the bundle (prepare, activate) must not
     end it: it gets the new bundle. `retire` (forced, so the test need not
     wait out --svid-ttl-max) must end it UNAUTHENTICATED at once, and a
     Sign renewal on that connection must be refused: before the fix it
     was granted a certificate of the NEW root, on the strength of a
     retired one. Report and Watch on it are refused too. An honest client
     with a certificate of the new root keeps working throughout.

Loopback only (127.0.0.1, ports chosen by the kernel); no namespaces, so
it runs in seconds. The rotation is driven over the control's admin socket
(ops ca_rotate), as cinchctl does.

usage: control_auth_attack.py   (CINCH_BUILD and CINCH_SRC from ctest)
"""
import datetime
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import queue
import time

SRC = os.environ.get("CINCH_SRC", os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BUILD = os.environ.get("CINCH_BUILD", os.path.join(SRC, "build"))
sys.argv = [sys.argv[0], os.path.join(BUILD, "bin"), os.path.join(SRC, "proto")]
sys.path.insert(0, os.path.join(SRC, "tests", "unit", "control"))

import grpc  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID  # noqa: E402

import control_grpc_test as base  # noqa: E402
from control_grpc_test import (TD, Control, check, cinchctl, csr_for, der_to_pem, pem_key,  # noqa: E402
                               stubs, token)

WEB = "spiffe://%s/ns/shop/sa/web" % TD
REGISTRY = """apiVersion: cinch.dev/v1alpha1
kind: Workload
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {serviceAccount: web, addresses: ["10.1.0.1"]}
"""
POLICY = """apiVersion: cinch.dev/v1alpha1
kind: AllowPolicy
metadata: {name: web-from-web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  ports: [8080]
  from:
    - identities: ["%s"]
""" % WEB


class Stream:
    """A Watch read by a thread into a queue: Snapshots, then the error."""

    def __init__(self, stub, req):
        self.q = queue.Queue()
        self.call = stub.Watch(req)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for m in self.call:
                self.q.put((time.time(), m))
            self.q.put((time.time(), "end"))
        except grpc.RpcError as e:
            self.q.put((time.time(), e))

    def next(self, timeout):
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None, None


def unauthenticated(x):
    return isinstance(x, grpc.RpcError) and x.code() == grpc.StatusCode.UNAUTHENTICATED


def attempt(fn):
    """fn()'s result, or the RpcError it raised."""
    try:
        return fn()
    except grpc.RpcError as e:
        return e


def short_svid(state, key, seconds):
    """A PEM SVID for WEB over key, from the CA's own key, expiring in
    `seconds`; and its notAfter (Unix time)."""
    with open(os.path.join(state, "ca", "ca.key"), "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), None)
    with open(os.path.join(state, "ca", "ca.crt"), "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    not_after = now + datetime.timedelta(seconds=seconds)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(seconds=30))
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(WEB)]), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                         False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), not_after.timestamp()


def admin(state, req):
    """One request on the control's admin socket (what cinchctl does)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(os.path.join(state, "admin.sock"))
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)


def rotate(state, step):
    r = admin(state, {"op": "ca_rotate", "step": step, "force": True})
    check("error" not in r, "ca_rotate %s: %s" % (step, r.get("error")))
    return r


def signed(pb, pbg, ctl, bundle, state):
    """A normal SVID for WEB (join token): (key, PEM chain)."""
    key = ec.generate_private_key(ec.SECP256R1())
    with grpc.secure_channel("localhost:%d" % ctl.grpc_port,
                             grpc.ssl_channel_credentials(root_certificates=bundle)) as ch:
        resp = pbg.IdentityStub(ch).Sign(pb.SignRequest(
            csr=csr_for(key), credential=pb.Credential(join_token=token(state, "shop/web"))),
            timeout=10)
    return key, b"".join(der_to_pem(d) for d in resp.cert_chain)


def peers(ctl, event, **match):
    return [e.get("peer") for e in ctl.events() if e["event"] == event and
            all(e.get(k) == v for k, v in match.items())]


def calls(pb, pbg, cpb, cpbg, ch):
    """A Sign renewal, a Report and a new Watch on channel ch: each one's
    result or RpcError."""
    nkey = ec.generate_private_key(ec.SECP256R1())
    sign = attempt(lambda: pbg.IdentityStub(ch).Sign(pb.SignRequest(csr=csr_for(nkey)),
                                                     timeout=10))
    report = attempt(lambda: cpbg.ConfigStub(ch).Report(
        cpb.ReportRequest(applied_version="attack"), timeout=10))
    watch = attempt(lambda: next(iter(cpbg.ConfigStub(ch).Watch(cpb.WatchRequest(),
                                                                timeout=10))))
    return sign, report, watch


def expiry(ctl, state, bundle, pb, pbg, cpb, cpbg):
    key = ec.generate_private_key(ec.SECP256R1())
    cert, not_after = short_svid(state, key, 6)
    creds = grpc.ssl_channel_credentials(root_certificates=bundle, private_key=pem_key(key),
                                         certificate_chain=cert)
    with grpc.secure_channel("localhost:%d" % ctl.grpc_port, creds) as ch:
        st = Stream(cpbg.ConfigStub(ch), cpb.WatchRequest())
        _, snap = st.next(5)
        check(isinstance(snap, cpb.Snapshot), "expiry: a 6 s SVID watches: %r" % (snap,))
        sign, report, _ = calls(pb, pbg, cpb, cpbg, ch)
        check(isinstance(sign, pb.SignResponse) and not isinstance(report, grpc.RpcError),
              "expiry: while valid, renewal and Report work: %r %r" % (sign, report))
        opened = peers(ctl, "config_watch_opened", spiffe_id=WEB)
        t, end = st.next(not_after - time.time() + 5)
        check(unauthenticated(end) and not_after - 1 <= t <= not_after + 2,
              "expiry: the open Watch ends UNAUTHENTICATED at notAfter (%+.1f s): %r" %
              ((t or 0) - not_after, end))
        time.sleep(max(0.0, not_after + 0.5 - time.time()))
        sign, report, watch = calls(pb, pbg, cpb, cpbg, ch)
        check(unauthenticated(sign), "expiry: renewal on the same connection refused: %r" %
              (sign,))
        check(unauthenticated(report), "expiry: Report on it refused: %r" % (report,))
        check(unauthenticated(watch), "expiry: a new Watch on it refused: %r" % (watch,))
        refused = peers(ctl, "sign_refused")[-1:] + peers(ctl, "config_refused")[-2:]
        check(opened and refused and len(refused) == 3 and set(refused) == {opened[-1]},
              "expiry: the refused calls came over the connection of the Watch: %s %s" %
              (opened[-1:], refused))


def rotation(ctl, state, bundle, pb, pbg, cpb, cpbg):
    key, chain = signed(pb, pbg, ctl, bundle, state)
    target = "localhost:%d" % ctl.grpc_port
    old = grpc.ssl_channel_credentials(root_certificates=bundle, private_key=pem_key(key),
                                       certificate_chain=chain)
    with grpc.secure_channel(target, old) as ch:
        st = Stream(cpbg.ConfigStub(ch), cpb.WatchRequest())
        _, snap = st.next(5)
        check(isinstance(snap, cpb.Snapshot) and snap.bundle.sequence == 1,
              "rotation: an SVID of the first root watches: %r" % (snap,))
        opened = peers(ctl, "config_watch_opened", spiffe_id=WEB)
        rotate(state, "prepare")
        _, snap = st.next(5)
        check(isinstance(snap, cpb.Snapshot) and snap.bundle.sequence == 2,
              "rotation: prepare keeps the stream, which gets the 2-root bundle: %r" % (snap,))
        rotate(state, "activate")
        sign, report, _ = calls(pb, pbg, cpb, cpbg, ch)
        check(isinstance(sign, pb.SignResponse) and not isinstance(report, grpc.RpcError),
              "rotation: before retire, renewal on the old connection works: %r" % (report,))
        _, more = st.next(1)
        check(not isinstance(more, grpc.RpcError), "rotation: activate keeps the stream: %r" %
              (more,))

        t0 = time.time()
        rotate(state, "retire")
        end = more = None
        while True:  # a snapshot may come first; the end within 2 s
            t, more = st.next(t0 + 3 - time.time())
            if not isinstance(more, cpb.Snapshot):
                end = more
                break
        check(unauthenticated(end) and t - t0 < 2,
              "rotation: retire ends the old root's Watch UNAUTHENTICATED (%.1f s): %r" %
              ((t or t0) - t0, end))
        sign, report, watch = calls(pb, pbg, cpb, cpbg, ch)
        check(unauthenticated(sign),
              "rotation: renewal by a retired root's certificate on its old connection is "
              "refused (was: a new-root certificate): %r" %
              (sign.spiffe_id if isinstance(sign, pb.SignResponse) else sign,))
        check(unauthenticated(report), "rotation: Report on it refused: %r" % (report,))
        check(unauthenticated(watch), "rotation: a new Watch on it refused: %r" % (watch,))
        refused = peers(ctl, "sign_refused")[-1:] + peers(ctl, "config_refused")[-2:]
        check(opened and refused and len(refused) == 3 and set(refused) == {opened[-1]},
              "rotation: the refused calls came over the connection of the Watch: %s %s" %
              (opened[-1:], refused))

    # The honest client: a certificate of the new root, on a new connection.
    new_bundle = cinchctl("bundle", "show", "--pem", "--state-dir", state).stdout.encode()
    key, chain = signed(pb, pbg, ctl, new_bundle, state)
    new = grpc.ssl_channel_credentials(root_certificates=new_bundle, private_key=pem_key(key),
                                       certificate_chain=chain)
    with grpc.secure_channel(target, new) as ch:
        st = Stream(cpbg.ConfigStub(ch), cpb.WatchRequest())
        _, snap = st.next(5)
        check(isinstance(snap, cpb.Snapshot) and snap.bundle.sequence == 3,
              "rotation: a new-root SVID watches the 1-root bundle: %r" % (snap,))
        sign, report, _ = calls(pb, pbg, cpb, cpbg, ch)
        check(isinstance(sign, pb.SignResponse) and not isinstance(report, grpc.RpcError),
              "rotation: and renews and reports: %r %r" % (sign, report))


def main():
    tmp = tempfile.mkdtemp(prefix="cxc-control-auth.")
    state = os.path.join(tmp, "state")
    reg, pol = os.path.join(tmp, "registry"), os.path.join(tmp, "policy")
    os.mkdir(reg)
    os.mkdir(pol)
    with open(os.path.join(reg, "workloads.yaml"), "w") as f:
        f.write(REGISTRY)
    with open(os.path.join(pol, "allow.yaml"), "w") as f:
        f.write(POLICY)
    pb, pbg = stubs(tmp)
    from cinch.v1 import config_pb2 as cpb, config_pb2_grpc as cpbg
    ctl = Control(state, ["--registry", reg, "--policy", pol])
    try:
        bundle = cinchctl("bundle", "show", "--pem", "--state-dir", state).stdout.encode()
        expiry(ctl, state, bundle, pb, pbg, cpb, cpbg)
        rotation(ctl, state, bundle, pb, pbg, cpb, cpbg)
        check(ctl.stop() == 0, "cinch-control stops cleanly (no leak, no ASan report)")
        asan = [l for l in open(state + ".log") if "Sanitizer" in l]
        check(not asan, "no sanitizer report: %s" % asan[:3])
    finally:
        if ctl.proc.poll() is None:
            ctl.stop()
        if base.failures:
            print("".join(open(state + ".log").readlines()[-40:]))
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d/%d checks passed" % (base.checks - base.failures, base.checks))
    return 1 if base.failures else 0


if __name__ == "__main__":
    sys.exit(main())
