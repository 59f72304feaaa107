"""cinch.v1.Config end to end, with a stock gRPC client (python3-grpcio,
stubs generated from proto/ by grpc_tools) against a real cinch-control
started with --registry and --policy directories, and cinchctl.

Covers: a Watch with a valid SVID (signed for a join token) reads its
Snapshot (workload and version fields checked); Report, then `cinchctl
status --json` shows that version in sync; a policy edit reaches the open
stream within a second; an invalid edit sends nothing and logs the error
with file:line:column, and a later valid edit works; the stream outlives
the idle timeout (2 s here); a Watch for another identity's workload is
PERMISSION_DENIED, one without a client certificate UNAUTHENTICATED;
removing the workload ends the stream with NOT_FOUND; a snapshot larger
than --max-stream-queue (2 KiB here: a slice carries the trust bundle) ends its Watch with
RESOURCE_EXHAUSTED instead of being queued; a cancelled stream
and a closed connection leave nothing behind (cinch-control runs under
ASan in the check build and must stop cleanly); --check-config refuses an
invalid policy with its place.

usage: control_config_test.py BIN_DIR PROTO_DIR
"""
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import grpc
from cryptography.hazmat.primitives.asymmetric import ec

from control_grpc_test import (BIN, TD, Control, call, check, cinchctl, csr_for, der_to_pem,
                               pem_key, stubs, token)
import control_grpc_test as base

WEB = "spiffe://%s/ns/shop/sa/web" % TD

REGISTRY = """apiVersion: cinch.dev/v1alpha1
kind: Workload
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {serviceAccount: web, addresses: ["10.1.0.1"]}
---
apiVersion: cinch.dev/v1alpha1
kind: Workload
metadata: {name: api, namespace: shop, labels: {app: api}}
spec: {serviceAccount: api, addresses: ["10.1.0.2"]}
---
apiVersion: cinch.dev/v1alpha1
kind: Workload
metadata:
  name: big
  namespace: shop
  labels: {%s}
spec: {serviceAccount: big, addresses: ["10.1.0.3"]}
""" % ", ".join("k%02d: value-%02d-padding-padding" % (i, i) for i in range(100))

# web is allowed to call api on `port`: web's snapshot lists api as a peer
# with that port, so changing it changes web's slice.
POLICY = """apiVersion: cinch.dev/v1alpha1
kind: AllowPolicy
metadata: {name: api-from-web, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  ports: [%d]
  from:
    - identities: ["%s"]
"""


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)  # as editors and ConfigMaps do


class Stream:
    """A Watch read by a thread into a queue: Snapshots, then the error."""

    def __init__(self, stub, req, **kw):
        self.q = queue.Queue()
        self.call = stub.Watch(req, **kw)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        try:
            for m in self.call:
                self.q.put((time.monotonic(), m))
            self.q.put((time.monotonic(), "end"))
        except grpc.RpcError as e:
            self.q.put((time.monotonic(), e))

    def next(self, timeout):
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None, None


def refused(fn, code, what):
    """fn() must raise an RpcError with `code`."""
    try:
        fn()
        check(False, "%s: the call succeeded" % what)
    except grpc.RpcError as e:
        check(e.code() == code, "%s: %s" % (what, e))


def first_msg(stream):
    return next(iter(stream))


def peer_port(snap, name):
    for p in snap.peers:
        if p.name == name:
            return [(r.first, r.last) for r in p.allowed_ports]
    return None


def main():
    tmp = tempfile.mkdtemp(prefix="control_config_test.")
    state = os.path.join(tmp, "state")
    reg, pol = os.path.join(tmp, "registry"), os.path.join(tmp, "policy")
    os.mkdir(reg)
    os.mkdir(pol)
    write(os.path.join(reg, "workloads.yaml"), REGISTRY)
    write(os.path.join(pol, "allow.yaml"), POLICY % (8080, WEB))
    pb, pbg = stubs(tmp)
    from cinch.v1 import config_pb2, config_pb2_grpc
    check_config(tmp, reg, pol)
    ctl = Control(state, ["--registry", reg, "--policy", pol, "--idle-timeout", "2s",
                          "--max-stream-queue", "2048"])
    try:
        run(tmp, state, reg, pol, pb, pbg, config_pb2, config_pb2_grpc, ctl)
        check(ctl.stop() == 0, "cinch-control stops cleanly (no leak, no ASan report)")
        asan = [l for l in open(state + ".log") if "AddressSanitizer" in l or "LeakSanitizer" in l]
        check(not asan, "no sanitizer report: %s" % asan[:3])
    finally:
        if ctl.proc.poll() is None:
            ctl.stop()
        if base.failures:
            print("".join(open(state + ".log").readlines()[-40:]))
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d/%d checks passed" % (base.checks - base.failures, base.checks))
    return 1 if base.failures else 0


def check_config(tmp, reg, pol):
    binary = os.path.join(BIN, "cinch-control")
    r = subprocess.run([binary, "--check-config", "--registry", reg, "--policy", pol],
                       capture_output=True, text=True)
    check(r.returncode == 0, "--check-config accepts the registry and policy: %s" % r.stderr)
    bad = os.path.join(tmp, "bad.yaml")
    write(bad, POLICY.replace("ports:", "portz:") % (8080, WEB))
    r = subprocess.run([binary, "--check-config", "--registry", reg, "--policy", bad],
                       capture_output=True, text=True)
    check(r.returncode == 2 and (bad + ":6:") in r.stderr,
          "--check-config refuses an invalid policy with file:line: %s" % r.stderr)
    os.remove(bad)


def status(state):
    r = cinchctl("status", "--json", "--state-dir", state)
    return json.loads(r.stdout)


def run(tmp, state, reg, pol, pb, pbg, cpb, cpbg, ctl):
    bundle = cinchctl("bundle", "show", "--pem", "--state-dir", state).stdout.encode()
    key = ec.generate_private_key(ec.SECP256R1())
    resp, err = call(pb, pbg, ctl.grpc_port, bundle,
                     pb.SignRequest(csr=csr_for(key),
                                    credential=pb.Credential(join_token=token(state, "shop/web"))))
    check(err is None, "an SVID for shop/web: %s" % err)
    if resp is None:
        return
    cert = der_to_pem(resp.cert_chain[0])
    mtls = grpc.ssl_channel_credentials(root_certificates=bundle, private_key=pem_key(key),
                                        certificate_chain=cert)
    anon = grpc.ssl_channel_credentials(root_certificates=bundle)
    target = "localhost:%d" % ctl.grpc_port

    with grpc.secure_channel(target, mtls) as ch:
        stub = cpbg.ConfigStub(ch)
        st = Stream(stub, cpb.WatchRequest())
        _, snap = st.next(10)
        check(isinstance(snap, cpb.Snapshot), "Watch answers a Snapshot: %r" % (snap,))
        if not isinstance(snap, cpb.Snapshot):
            return
        w = snap.workload
        check(w.namespace == "shop" and w.name == "web" and w.spiffe_id == WEB and
              w.service_account == "web" and list(w.addresses) == ["10.1.0.1"],
              "the snapshot is web's: %s" % w)
        check(len(snap.version) > 0 and snap.version == snap.policy_version + "-b1",
              "with a version (the policy's and the bundle's): %s" % snap.version)
        check(snap.bundle.trust_domain == "cluster.local" and snap.bundle.sequence == 1
              and len(snap.bundle.x509_authorities) == 1,
              "with the trust bundle: %s" % snap.bundle.sequence)
        check(peer_port(snap, "api") == [(8080, 8080)], "api is web's peer on 8080: %s" %
              peer_port(snap, "api"))

        # Report, then cinchctl status.
        stub.Report(cpb.ReportRequest(applied_version=snap.version, bundle_sequence=1,
                                      cert_serial_hex=resp.serial_hex,
                                      cert_expires_at_unix=resp.expires_at_unix), timeout=10)
        s = status(state)
        web = [x for x in s["workloads"] if x["workload"] == "shop/web"]
        check(len(web) == 1 and web[0]["in_sync"] is True and web[0]["connected"] == 1 and
              web[0]["report"]["applied_version"] == snap.version and
              web[0]["report"]["cert_expires_at"] == resp.expires_at_unix,
              "cinchctl status --json: web in sync with %s: %s" % (snap.version, web))
        api = [x for x in s["workloads"] if x["workload"] == "shop/api"]
        check(len(api) == 1 and api[0]["in_sync"] is False and api[0]["connected"] == 0,
              "api: no agent, not in sync: %s" % api)
        table = cinchctl("status", "--state-dir", state).stdout
        line = [l for l in table.splitlines() if l.startswith("shop/web ")]
        check(line and snap.version in line[0] and " yes " in line[0] and WEB in line[0],
              "cinchctl status table: %s" % table)
        # An agent reporting terminal controls (clear screen, a title, a
        # forged row, a right-to-left override): the table shows them as
        # escapes, one line per workload, nothing a terminal would obey.
        stub.Report(cpb.ReportRequest(
            applied_version="\x1b[2J\x1b[H\x1b]0;pwned\x07",
            error="refused\nshop/api  %s  ok  yes\r\u202e\u009b31m" % WEB,
            bundle_sequence=1, cert_serial_hex=resp.serial_hex,
            cert_expires_at_unix=resp.expires_at_unix), timeout=10)
        table = cinchctl("status", "--state-dir", state).stdout
        rows = table.splitlines()
        check(not any(c in table for c in "\x1b\x07\r\u202e\u009b") and
              len(rows) == 2 + len(status(state)["workloads"]),
              "cinchctl status prints no control character from a report: %r" % table)
        web_row = [l for l in rows if l.startswith("shop/web ")]
        check(web_row and "\\x1b[2J\\x1b[H\\x1b]0;pwned\\x07" in web_row[0] and
              "refused\\nshop/api" in web_row[0] and "\\r\\u{202e}\\u{009b}31m" in web_row[0],
              "the report's controls shown escaped: %r" % web_row)
        stub.Report(cpb.ReportRequest(applied_version=snap.version, bundle_sequence=1,
                                      cert_serial_hex=resp.serial_hex,
                                      cert_expires_at_unix=resp.expires_at_unix), timeout=10)

        # A policy edit reaches the open stream within a second.
        t0 = time.monotonic()
        write(os.path.join(pol, "allow.yaml"), POLICY % (9090, WEB))
        t1, snap2 = st.next(5)
        check(isinstance(snap2, cpb.Snapshot) and t1 - t0 < 1.0,
              "the edit arrives within 1 s (%.3f s)" % ((t1 or 0) - t0))
        if not isinstance(snap2, cpb.Snapshot):
            return
        check(snap2.version != snap.version and peer_port(snap2, "api") == [(9090, 9090)],
              "the new snapshot has the new port: %s" % peer_port(snap2, "api"))
        s = status(state)
        web = [x for x in s["workloads"] if x["workload"] == "shop/web"][0]
        check(web["version"] == snap2.version and web["in_sync"] is False,
              "status: web not in sync until it reports: %s" % web)

        # An invalid edit: nothing sent, the error logged with its place.
        bad = os.path.join(pol, "zz-bad.yaml")
        write(bad, POLICY.replace("ports:", "portz:") % (7070, WEB))
        _, nothing = st.next(1.5)
        check(nothing is None, "an invalid edit sends nothing: %r" % (nothing,))
        rej = [e for e in ctl.events() if e["event"] == "config_rejected"]
        check(rej and rej[-1]["where"].startswith(bad + ":6:") and rej[-1]["error"] and
              rej[-1]["kept_version"], "config_rejected names file:line:column: %s" % rej[-1:])
        os.remove(bad)
        write(os.path.join(pol, "allow.yaml"), POLICY % (7070, WEB))
        _, snap3 = st.next(5)
        check(isinstance(snap3, cpb.Snapshot) and peer_port(snap3, "api") == [(7070, 7070)],
              "a valid edit after the invalid one arrives")

        # Longer than the idle timeout (2 s) with nothing sent either way:
        # the stream is still there and delivers.
        time.sleep(5)
        write(os.path.join(pol, "allow.yaml"), POLICY % (6060, WEB))
        _, snap4 = st.next(5)
        check(isinstance(snap4, cpb.Snapshot) and peer_port(snap4, "api") == [(6060, 6060)],
              "the stream outlives the idle timeout: %r" % (snap4,))

        # Another identity's workload; no client certificate.
        refused(lambda: first_msg(stub.Watch(cpb.WatchRequest(workload="shop/api"), timeout=10)),
                grpc.StatusCode.PERMISSION_DENIED,
                "another identity's workload: PERMISSION_DENIED")
        with grpc.secure_channel(target, anon) as ach:
            astub = cpbg.ConfigStub(ach)
            refused(lambda: first_msg(astub.Watch(cpb.WatchRequest(), timeout=10)),
                    grpc.StatusCode.UNAUTHENTICATED, "Watch without a client certificate")
            refused(lambda: astub.Report(cpb.ReportRequest(applied_version="x"), timeout=10),
                    grpc.StatusCode.UNAUTHENTICATED, "Report without a client certificate")

        # A second watch, cancelled by the client; the next publish must
        # not touch it (ASan would catch a dangling watch).
        st2 = Stream(stub, cpb.WatchRequest(known_version=snap4.version))
        _, first = st2.next(1)
        check(first is None, "known_version current: nothing sent at once: %r" % (first,))
        st2.call.cancel()
        _, end = st2.next(5)
        check(isinstance(end, grpc.RpcError) and end.code() == grpc.StatusCode.CANCELLED,
              "cancelled by the client")
        deadline = time.time() + 5
        while time.time() < deadline:
            web = [x for x in status(state)["workloads"] if x["workload"] == "shop/web"][0]
            if web["connected"] == 1:
                break
            time.sleep(0.1)
        check(web["connected"] == 1, "the cancelled watch is closed: %s" % web)

        # The workload leaves the registry: NOT_FOUND ends the stream.
        write(os.path.join(reg, "workloads.yaml"), REGISTRY.split("---\n")[1])
        _, end = st.next(5)
        check(isinstance(end, grpc.RpcError) and end.code() == grpc.StatusCode.NOT_FOUND,
              "workload removed: NOT_FOUND: %r" % (end,))

    # web and big back in the registry.
    write(os.path.join(reg, "workloads.yaml"), REGISTRY)
    time.sleep(0.5)

    # big's slice (100 labels) is more than the stream may queue (2 KiB;
    # a Sign answer, about 1.2 KiB, fits).
    bkey = ec.generate_private_key(ec.SECP256R1())
    bresp, err = call(pb, pbg, ctl.grpc_port, bundle,
                      pb.SignRequest(csr=csr_for(bkey), credential=pb.Credential(
                          join_token=token(state, "shop/big"))))
    check(err is None, "an SVID for shop/big: %s" % err)
    bcreds = grpc.ssl_channel_credentials(root_certificates=bundle, private_key=pem_key(bkey),
                                          certificate_chain=der_to_pem(bresp.cert_chain[0]))
    with grpc.secure_channel(target, bcreds) as bch:
        refused(lambda: first_msg(cpbg.ConfigStub(bch).Watch(cpb.WatchRequest(), timeout=10)),
                grpc.StatusCode.RESOURCE_EXHAUSTED, "over the queue bound: RESOURCE_EXHAUSTED")
    big = [x for x in status(state)["workloads"] if x["workload"] == "shop/big"]
    check(big and big[0]["connected"] == 0, "and its watch is closed: %s" % big)

    # A watch whose connection just closes (channel closed mid-stream).
    ch = grpc.secure_channel(target, mtls)
    st3 = Stream(cpbg.ConfigStub(ch), cpb.WatchRequest())
    _, s3 = st3.next(10)
    check(isinstance(s3, cpb.Snapshot), "watching again after web came back")
    ch.close()
    time.sleep(0.5)
    write(os.path.join(pol, "allow.yaml"), POLICY % (5050, WEB))
    time.sleep(0.5)
    web = [x for x in status(state)["workloads"] if x["workload"] == "shop/web"][0]
    check(web["connected"] == 0, "the closed connection's watch is gone: %s" % web)


if __name__ == "__main__":
    sys.exit(main())
