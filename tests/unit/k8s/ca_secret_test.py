"""ca_secret_test: replicas of cinch-control share one CA kept in a Secret
the control manages (--ca-secret, control/k8s/casecret.c; issue #14: no
hand-made certificates, and root rotation on Kubernetes). Real
cinch-control processes against tests/lib/kube_api.py in live mode, which
serves Secrets as the API server does (get 404, create 201/409
AlreadyExists, update 409 on a stale resourceVersion, watch with a
fieldSelector); no cluster runs here.

Checks, each of which fails when its mechanism is taken out:
  - the first control creates the Secret: type Opaque, our label, its
    ca.crt a CA root of the trust domain whose key is ca.key, the same as
    in its state directory; the key never appears in the log;
  - a second control adopts it: same root, and a certificate signed by the
    first (join token) renews at the second over mutual TLS;
  - rotation on the first (prepare, activate, retire as `cinchctl ca
    rotate` asks over the admin socket) reaches the second's bundle and
    signer through the watch;
  - a rotation whose PUT meets a Secret that moved meanwhile (a stale
    resourceVersion, made here by a silent change) is reported failed and
    undone; the Secret is not overwritten;
  - the Secret losing our label while running: refused, the CA stays; a
    labelled one whose ca.crt is no certificate: refused, the files put
    back as they were;
  - a restart with the state directory wiped keeps the CA;
  - two controls started at once on a missing Secret converge on one CA;
  - a foreign Secret (no label), a partial one and one with a key that is
    not a file of <state>/ca ("../x") are refused at start: the control
    does not start, the Secret is left exactly as it was, nothing is
    written outside the state directory; so is a labelled, complete one
    that is not a CA, whose files are removed again;
  - --ca-secret without --kube-api, with --ca-cert, or not NS/NAME of DNS
    labels is refused by --check-config.

usage: ca_secret_test.py <cinch-control>
"""
import base64
import os
import shutil
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))
from kubecontrol import Checks, Control, Kube, namespace, wait_for  # noqa: E402

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

CONTROL = sys.argv[1]
BIN = os.path.dirname(CONTROL)
SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
OURS = {"app.kubernetes.io/managed-by": "cinch-control"}
check = Checks()


def secret(ns, name, data, labels=None):
    meta = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta,
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


def sdata(kube, ns, name, key):
    s = kube.get("secrets", ns, name)
    v = s and s.get("data", {}).get(key)
    return base64.b64decode(v) if v else None


def rd(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def flags(kube, ref="cinch-system/cinch-ca"):
    return ["--ca-secret", ref, "--webhook-port", "0", "--kube-sources", "off",
            "--trust-bundle-configmaps", "off"] + kube.flags()


def roots(pem):
    return pem.count(b"BEGIN CERTIFICATE") if pem else 0


# ---- an agent's Sign (grpcio, stubs from proto/)

def stubs(tmp):
    out = os.path.join(tmp, "stubs")
    os.mkdir(out)
    proto = os.path.join(SRC, "proto")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "--proto_path=" + proto,
                    "--python_out=" + out, "--grpc_python_out=" + out] +
                   [os.path.join(proto, "cinch", "v1", f)
                    for f in ("trust.proto", "identity.proto")], check=True)
    sys.path.insert(0, out)
    from cinch.v1 import identity_pb2, identity_pb2_grpc
    return identity_pb2, identity_pb2_grpc


def sign(pbs, ctl, bundle, credential=None, cert=None, key=None):
    import grpc
    pb, pbg = pbs
    k = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(
        k, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    creds = grpc.ssl_channel_credentials(root_certificates=bundle, private_key=key,
                                         certificate_chain=cert)
    with grpc.secure_channel("localhost:%d" % ctl.grpc_port, creds) as ch:
        try:
            r = pbg.IdentityStub(ch).Sign(pb.SignRequest(csr=csr, credential=credential),
                                          timeout=10)
        except grpc.RpcError as e:
            return None, e.code().name
    pem = b"".join(x509.load_der_x509_certificate(d).public_bytes(serialization.Encoding.PEM)
                   for d in r.cert_chain)
    return (pem, k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())), None


def token(state):
    r = subprocess.run([os.path.join(BIN, "cinchctl"), "token", "create", "--identity",
                        "shop/web", "--ttl", "10m", "--state-dir", state],
                       capture_output=True, text=True)
    return r.stdout.strip()


def start_refused(kube, tmp, ref, what):
    """A control that must not start: exits non-zero with ca_secret_refused."""
    state = os.path.join(tmp, "state-" + what)
    ns, name = ref.split("/")
    before = kube.get("secrets", ns, name)
    try:
        p = subprocess.run([CONTROL, "--state-dir", state, "--listen", "127.0.0.1:0",
                            "--admin-listen", "127.0.0.1:0"] + flags(kube, ref),
                           capture_output=True, text=True, timeout=60)
        rc, log = p.returncode, p.stderr
    except subprocess.TimeoutExpired:
        rc, log = None, "timed out"
    check(rc not in (0, None) and '"ca_secret_refused"' in log and "control_started" not in log,
          "%s Secret refused at start (rc %s): %s" % (what, rc, log[-600:]))
    check.eq(kube.get("secrets", ns, name), before, "%s Secret left exactly as it was" % what)
    check(rd(os.path.join(state, "ca", "ca.key")) is None and
          not os.path.exists(os.path.join(state, "x")),
          "%s: nothing written from it" % what)


def run(tmp, kube, pbs):
    sa, sb = os.path.join(tmp, "a"), os.path.join(tmp, "b")
    a = Control(CONTROL, sa, flags(kube))
    b = None
    try:
        # ---- the first creates the Secret
        s = kube.get("secrets", "cinch-system", "cinch-ca")
        check(s and s.get("type") == "Opaque" and
              (s["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") ==
              "cinch-control", "the Secret is created, Opaque, labelled as ours: %s" %
              (s and s.get("metadata")))
        check(a.find("ca_secret_created"), "the first control logs ca_secret_created")
        crt, key = sdata(kube, "cinch-system", "cinch-ca", "ca.crt"), \
            sdata(kube, "cinch-system", "cinch-ca", "ca.key")
        check(crt and crt == rd(os.path.join(sa, "ca", "ca.crt")), "ca.crt as in the state dir")
        if crt and key:
            c = x509.load_pem_x509_certificate(crt)
            k = serialization.load_pem_private_key(key, None)
            bc = c.extensions.get_extension_for_class(x509.BasicConstraints).value
            check(bc.ca and c.subject == c.issuer, "ca.crt is a self-signed CA root")
            check(c.public_key().public_numbers() == k.public_key().public_numbers(),
                  "ca.key is the key of ca.crt")
            check("cluster.local" in c.subject.rfc4514_string() or any(
                "spiffe://cluster.local" in str(e.value) for e in c.extensions),
                "the root names the trust domain: %s" % c.subject.rfc4514_string())
            body = [ln for ln in key.decode().splitlines() if not ln.startswith("-----")]
            logged = "\n".join(str(e) for e in a.events())
            check(not any(ln in logged for ln in body) and
                  base64.b64encode(key).decode()[:40] not in logged, "ca.key is never logged")
        check(os.stat(os.path.join(sa, "ca", "ca.key")).st_mode & 0o077 == 0, "ca.key 0600")

        # ---- the second adopts it
        b = Control(CONTROL, sb, flags(kube))
        check(b.find("ca_secret_adopted") and not b.find("ca_secret_created"),
              "the second control adopts the Secret")
        check.eq(rd(os.path.join(sb, "ca", "ca.crt")), crt, "the second signs with the same root")
        bundle = a.bundle_pem().encode()
        check.eq(b.bundle_pem().encode(), bundle, "one bundle")
        svid, err = sign(pbs, a, bundle, credential=pbs[0].Credential(join_token=token(sa)))
        check(svid, "the first signs for a join token: %s" % err)
        if svid:
            again, err = sign(pbs, b, bundle, cert=svid[0], key=svid[1])
            check(again, "its certificate renews at the second over mutual TLS: %s" % err)

        # ---- rotation on A reaches B
        r = a.ctl({"op": "ca_rotate", "step": "prepare"})
        check("error" not in r, "prepare on the first: %s" % r)
        check(sdata(kube, "cinch-system", "cinch-ca", "next.crt"), "next.crt in the Secret")
        check(wait_for(lambda: roots(rd(os.path.join(sb, "ca", "bundle.pem"))) == 2 and
                       b.ctl({"op": "ca_status"}).get("prepared")),
              "the second's bundle has both roots: %s" % b.ctl({"op": "ca_status"}))
        n1 = len(b.events("ca_secret_adopted"))
        r = a.ctl({"op": "ca_rotate", "step": "activate"})
        check("error" not in r, "activate on the first: %s" % r)
        new = rd(os.path.join(sa, "ca", "ca.crt"))
        check(new != crt, "the first signs with the new root")
        check(wait_for(lambda: rd(os.path.join(sb, "ca", "ca.crt")) == new and
                       len(b.events("ca_secret_adopted")) > n1),
              "the second signs with the new root too")
        r = a.ctl({"op": "ca_rotate", "step": "retire", "force": True})
        check("error" not in r, "retire on the first: %s" % r)
        check(wait_for(lambda: roots(rd(os.path.join(sb, "ca", "bundle.pem"))) == 1 and
                       b.ctl({"op": "ca_status"}).get("sequence") ==
                       a.ctl({"op": "ca_status"}).get("sequence")),
              "the old root leaves the second's bundle")

        # ---- a Secret that moved meanwhile: the step fails and is undone
        cur = kube.get("secrets", "cinch-system", "cinch-ca")
        kube.apply("secrets", "MODIFIED", cur, silent=True)  # new resourceVersion, no event
        moved = kube.get("secrets", "cinch-system", "cinch-ca")
        r = a.ctl({"op": "ca_rotate", "step": "prepare"})
        check("changed meanwhile" in r.get("error", ""),
              "a rotation against a moved Secret is reported failed: %s" % r)
        check.eq(kube.get("secrets", "cinch-system", "cinch-ca"), moved,
                 "the moved Secret is not overwritten")
        check(rd(os.path.join(sa, "ca", "next.crt")) is None and
              not a.ctl({"op": "ca_status"}).get("prepared"), "the failed step is undone")

        # ---- the Secret loses our label: refused, the CA stays
        foreign = kube.get("secrets", "cinch-system", "cinch-ca")
        foreign["metadata"]["labels"] = {}
        foreign["data"]["ca.crt"] = base64.b64encode(b"not ours").decode()
        kube.apply("secrets", "MODIFIED", foreign)
        check(wait_for(lambda: b.find("ca_secret_refused")), "an unlabelled Secret is refused")
        check.eq(rd(os.path.join(sb, "ca", "ca.crt")), new, "the CA in force stays")
        # ours, complete, but not a CA: refused, the files put back
        n = len(b.events("ca_secret_refused"))
        bad = kube.get("secrets", "cinch-system", "cinch-ca")
        bad["metadata"]["labels"] = dict(OURS)
        kube.apply("secrets", "MODIFIED", bad)
        check(wait_for(lambda: len(b.events("ca_secret_refused")) > n),
              "a labelled Secret whose ca.crt is no certificate is refused")
        check.eq(rd(os.path.join(sb, "ca", "ca.crt")), new,
                 "its files are put back: the CA in force stays on disk too")
        kube.apply("secrets", "MODIFIED", cur)  # back to ours
        check.eq(rd(os.path.join(sb, "ca", "ca.crt")), new, "ours again: the same CA")
    finally:
        if b:
            check.eq(b.stop(), 0, "the second control stops cleanly")
        check.eq(a.stop(), 0, "the first control stops cleanly")

    # ---- a restart with the state wiped keeps the CA
    shutil.rmtree(sa)
    a = Control(CONTROL, sa, flags(kube))
    try:
        check.eq(rd(os.path.join(sa, "ca", "ca.crt")), new, "a restart keeps the CA")
        check(a.find("ca_secret_adopted"), "from the Secret")
    finally:
        check.eq(a.stop(), 0, "the restarted control stops cleanly")

    # ---- a race on a missing Secret converges
    got = {}

    def start(tag):
        got[tag] = Control(CONTROL, os.path.join(tmp, "race-" + tag),
                           flags(kube, "cinch-system/cinch-ca-race"))

    ts = [threading.Thread(target=start, args=(t,)) for t in ("x", "y")]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    try:
        crts = {rd(os.path.join(tmp, "race-" + t, "ca", "ca.crt")) for t in ("x", "y")}
        check(len(got) == 2 and len(crts) == 1 and
              crts == {sdata(kube, "cinch-system", "cinch-ca-race", "ca.crt")},
              "two controls started at once sign with one CA, the Secret's")
        check(sum(bool(c.find("ca_secret_created")) for c in got.values()) == 1,
              "exactly one created it")
    finally:
        for c in got.values():
            check.eq(c.stop(), 0, "a racing control stops cleanly")

    # ---- refused at start
    start_refused(kube, tmp, "cxs-f/cinch-ca", "foreign")
    start_refused(kube, tmp, "cxs-m/cinch-ca", "partial")
    start_refused(kube, tmp, "cxs-m/cinch-ca-x", "unknown-key")
    start_refused(kube, tmp, "cxs-m/cinch-ca-bad", "not-a-ca")
    check(not os.listdir(os.path.join(tmp, "state-not-a-ca", "ca")),
          "not-a-ca: the files written from it are removed again")

    # ---- flags
    for bad in (["--ca-secret", "cinch-system/cinch-ca"],
                ["--ca-secret", "cinch-system/cinch-ca", "--ca-cert", "c", "--ca-key", "k"] +
                kube.flags(),
                ["--ca-secret", "cinch-ca"] + kube.flags(),
                ["--ca-secret", "cinch-system/../x"] + kube.flags()):
        p = subprocess.run([CONTROL, "--check-config"] + bad, capture_output=True, text=True)
        check(p.returncode == 2 and "ca-secret" in p.stderr,
              "refused: %s (rc %d: %s)" % (" ".join(bad[:4]), p.returncode, p.stderr.strip()))


def main():
    with tempfile.TemporaryDirectory(prefix="cxs-") as tmp:
        pbs = stubs(tmp)
        k = ec.generate_private_key(ec.SECP256R1())
        kpem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
        objects = {
            "namespaces": [namespace("cinch-system"), namespace("cxs-f"), namespace("cxs-m")],
            "secrets": [
                secret("cxs-f", "cinch-ca", {"ca.key": kpem, "ca.crt": b"x",
                                             "bundle.pem": b"x", "bundle.seq": b"1"}),
                secret("cxs-m", "cinch-ca", {"ca.crt": b"x", "bundle.pem": b"x",
                                             "bundle.seq": b"1"}, OURS),
                secret("cxs-m", "cinch-ca-bad", {"ca.key": kpem, "ca.crt": b"x",
                                                 "bundle.pem": b"x", "bundle.seq": b"1"}, OURS),
                secret("cxs-m", "cinch-ca-x", {"ca.key": kpem, "ca.crt": b"x",
                                               "bundle.pem": b"x", "bundle.seq": b"1",
                                               "../x": b"x"}, OURS),
            ]}
        kube = Kube(tmp, objects, lifetime=200)
        try:
            run(tmp, kube, pbs)
        finally:
            kube.stop()
    return check.done()


if __name__ == "__main__":
    sys.exit(main())
