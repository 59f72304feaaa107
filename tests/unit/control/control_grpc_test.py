"""cinch-control end to end, with the clients users would use: a stock gRPC
client (Debian's python3-grpcio, stubs generated from proto/ by
grpc_tools), cinchctl, openssl and curl.

Covers: a certificate for a join token, with every field of the SVID
profile checked and `openssl verify` against the bundle; names the CSR asks
for ignored; renewal over mutual TLS (same identity only); refusals (token
reused, expired, unknown; identity not granted, which leaves the token
usable; forged CSR, garbage CSR, weak RSA key, which leave it usable too;
one token raced by eight callers; oversized message; no credential at all)
each with its gRPC code and an audit line; the admin port (/ready, /live,
/metrics, /bundle in the SPIFFE format); cinchctl cert inspect; state
directory permissions; a restart keeps the root and used tokens used.

usage: control_grpc_test.py BIN_DIR PROTO_DIR
"""
import base64
import datetime
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

BIN, PROTO = sys.argv[1], sys.argv[2]
TD = "cluster.local"
failures = 0
checks = 0


def check(cond, what):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print("FAIL:", what, flush=True)


def stubs(tmp):
    out = os.path.join(tmp, "stubs")
    os.mkdir(out)
    protos = [os.path.join(PROTO, "cinch", "v1", f)
              for f in ("trust.proto", "identity.proto", "config.proto")]
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "--proto_path=" + PROTO,
                    "--python_out=" + out, "--grpc_python_out=" + out] + protos, check=True)
    sys.path.insert(0, out)
    from cinch.v1 import identity_pb2, identity_pb2_grpc
    return identity_pb2, identity_pb2_grpc


class Control:
    """cinch-control on free loopback ports, its log kept for the checks."""

    def __init__(self, state, extra=()):
        self.state = state
        self.log = open(state + ".log", "a+")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "cinch-control"), "--state-dir", state, "--listen",
             "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 20
        self.started = None
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.write(line)
            ev = json.loads(line)
            if ev["event"] == "control_started":
                self.started = ev
                break
        if not self.started:
            self.stop()
            raise SystemExit("cinch-control did not start")
        self.grpc_port = self.started["grpc_port"]
        self.admin_port = self.started["admin_port"]

    def events(self):
        """Every log line so far (reads what is buffered, without blocking)."""
        os.set_blocking(self.proc.stderr.fileno(), False)
        for line in self.proc.stderr:
            self.log.write(line)
        self.log.flush()
        self.log.seek(0)
        evs = [json.loads(l) for l in self.log if l.startswith("{")]
        self.log.seek(0, 2)
        return evs

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.events()
        return rc


def cinchctl(*args, check_rc=True):
    r = subprocess.run([os.path.join(BIN, "cinchctl"), *args], capture_output=True, text=True)
    if check_rc and r.returncode != 0:
        raise SystemExit("cinchctl %s: %s" % (" ".join(args), r.stderr))
    return r


def csr_for(key, uris=(), cn=None):
    b = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []))
    if uris:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(u) for u in uris]), critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def der_to_pem(der):
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def call(pb, pbg, port, bundle_pem, req, cert=None, key=None):
    creds = grpc.ssl_channel_credentials(root_certificates=bundle_pem, private_key=key,
                                         certificate_chain=cert)
    with grpc.secure_channel("localhost:%d" % port, creds) as ch:
        try:
            return pbg.IdentityStub(ch).Sign(req, timeout=10), None
        except grpc.RpcError as e:
            return None, e


def check_profile(tmp, resp, key, want_id, bundle_pem):
    leaf_der = resp.cert_chain[0]
    leaf = x509.load_der_x509_certificate(leaf_der)
    path = os.path.join(tmp, "leaf.pem")
    with open(path, "wb") as f:
        f.write(der_to_pem(leaf_der))
    bpath = os.path.join(tmp, "bundle.pem")
    with open(bpath, "wb") as f:
        f.write(bundle_pem)
    v = subprocess.run(["openssl", "verify", "-CAfile", bpath, path], capture_output=True,
                       text=True)
    check(v.returncode == 0 and v.stdout.strip().endswith("OK"),
          "openssl verify against the bundle: %s %s" % (v.stdout, v.stderr))
    check(resp.spiffe_id == want_id, "response names %s (got %s)" % (want_id, resp.spiffe_id))
    check(len(leaf.subject) == 0, "empty subject")
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    check(san.critical, "SAN critical (empty subject)")
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    check(uris == [want_id], "exactly one URI SAN, the authenticated identity: %s" % uris)
    check(len(list(san.value)) == 1, "no other SAN entries")
    bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    check(bc.critical and not bc.value.ca, "basicConstraints critical CA:FALSE")
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    check(ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign and
          not ku.value.key_encipherment and not ku.value.crl_sign,
          "keyUsage critical digitalSignature only")
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    check(set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH},
          "EKU serverAuth + clientAuth")
    check(leaf.serial_number.bit_length() >= 64, "serial of at least 64 bits")
    check(format(leaf.serial_number, "x").lower() == resp.serial_hex.lower().lstrip("0"),
          "serial_hex matches the certificate")
    now = datetime.datetime.utcnow()
    nb, na = leaf.not_valid_before, leaf.not_valid_after
    check(datetime.timedelta(0) <= now - nb <= datetime.timedelta(seconds=65),
          "notBefore backdated by at most a minute (%s)" % (now - nb))
    check(abs((na - nb) - datetime.timedelta(hours=1, seconds=30)) <= datetime.timedelta(
        seconds=31), "lifetime 1 h by default (%s)" % (na - nb))
    check(int(na.replace(tzinfo=datetime.timezone.utc).timestamp()) == resp.expires_at_unix,
          "expires_at_unix is notAfter")
    check(leaf.public_key().public_numbers() == key.public_key().public_numbers(),
          "certificate for the CSR's key")
    return path


def main():
    tmp = tempfile.mkdtemp(prefix="control_grpc_test.")
    state = os.path.join(tmp, "state")
    pb, pbg = stubs(tmp)
    config_checks(tmp)
    intermediate_checks(tmp, pb, pbg)
    ctl = Control(state, ["--handshake-timeout", "2s", "--log-level", "debug"])
    try:
        run(tmp, state, pb, pbg, ctl)
    finally:
        if ctl.proc.poll() is None:
            ctl.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d/%d checks passed" % (checks - failures, checks))
    return 1 if failures else 0


def config_checks(tmp):
    """Flags and the config file: bad values are refused with a clear error."""
    binary = os.path.join(BIN, "cinch-control")
    r = subprocess.run([binary, "--svid-ttl", "1x"], capture_output=True, text=True)
    check(r.returncode == 2 and "--svid-ttl" in r.stderr, "bad duration refused: %s" % r.stderr)
    r = subprocess.run([binary, "--bogus"], capture_output=True, text=True)
    check(r.returncode == 2, "unknown flag refused")
    cfg = os.path.join(tmp, "control.json")
    with open(cfg, "w") as f:
        f.write('{"trust-domain": "example.org", "svid-ttl": "2h", "server-dns": ["a.example"]}')
    st = os.path.join(tmp, "cfgstate")
    c = Control(st, ["--config", cfg])
    check(c.started["trust_domain"] == "example.org", "config file applied")
    check(c.stop() == 0, "clean stop")
    with open(cfg, "w") as f:
        f.write('{"trust-domain": "example.org", "svid-ttl": "soon"}')
    r = subprocess.run([binary, "--config", cfg, "--state-dir", st], capture_output=True,
                       text=True)
    check(r.returncode == 2 and "--svid-ttl" in r.stderr, "bad config value refused")
    with open(cfg, "w") as f:
        f.write('{"trust-domain": ')
    r = subprocess.run([binary, "--config", cfg], capture_output=True, text=True)
    check(r.returncode == 2 and cfg in r.stderr, "malformed config file refused with its place")
    r = subprocess.run([binary, "--state-dir", st, "--svid-ttl", "25h", "--listen",
                        "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
                       capture_output=True, text=True, timeout=20)
    check(r.returncode == 1 and "ca_failed" in r.stderr, "a lifetime over 24 h is refused")
    with open(os.path.join(st, "tokens.json"), "w") as f:
        f.write("{not json")
    r = subprocess.run([binary, "--state-dir", st, "--listen", "127.0.0.1:0",
                        "--admin-listen", "127.0.0.1:0"],
                       capture_output=True, text=True, timeout=20)
    check(r.returncode == 1 and "corrupt" in r.stderr, "a corrupt token store is refused")


def intermediate_checks(tmp, pb, pbg):
    """--ca-cert/--ca-key with an intermediate: certificates carry the
    chain, verify up to the root, and the bundle holds the root only."""
    now = datetime.datetime.utcnow()
    rkey = ec.generate_private_key(ec.SECP256R1())
    ikey = ec.generate_private_key(ec.SECP256R1())
    td_uri = x509.SubjectAlternativeName([x509.UniformResourceIdentifier("spiffe://" + TD)])

    def ca_cert(subject, key, issuer, issuer_key, days):
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                             False), critical=True)
                .add_extension(td_uri, critical=False)
                .sign(issuer_key, hashes.SHA256()))
    rname = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "test root")])
    iname = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "test intermediate")])
    root = ca_cert(rname, rkey, rname, rkey, 30)
    inter = ca_cert(iname, ikey, rname, rkey, 10)
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)
    cpath, kpath = os.path.join(tmp, "inter.pem"), os.path.join(tmp, "inter.key")
    with open(cpath, "wb") as f:
        f.write(pem(inter) + pem(root))
    with open(kpath, "wb") as f:
        f.write(pem_key(ikey))
    st = os.path.join(tmp, "interstate")
    c = Control(st, ["--ca-cert", cpath, "--ca-key", kpath])
    try:
        bundle = cinchctl("bundle", "show", "--pem", "--state-dir", st).stdout.encode()
        check(bundle == pem(root), "with an intermediate, the bundle is the root")
        k = ec.generate_private_key(ec.SECP256R1())
        tok = token(st, "shop/api")
        r, err = call(pb, pbg, c.grpc_port, bundle,
                      pb.SignRequest(csr=csr_for(k), credential=pb.Credential(join_token=tok)))
        check(err is None and len(r.cert_chain) == 2 and
              x509.load_der_x509_certificate(r.cert_chain[1]) == inter,
              "the response carries the intermediate: %s" % err)
        if r:
            leaf = x509.load_der_x509_certificate(r.cert_chain[0])
            check(leaf.issuer == iname, "signed by the intermediate")
            check(leaf.not_valid_after <= inter.not_valid_after,
                  "never beyond the issuing CA's own expiry")
            for name, data in (("l.pem", pem(leaf)), ("i.pem", pem(inter)), ("r.pem", pem(root))):
                with open(os.path.join(tmp, name), "wb") as f:
                    f.write(data)
            v = subprocess.run(["openssl", "verify", "-CAfile", os.path.join(tmp, "r.pem"),
                                "-untrusted", os.path.join(tmp, "i.pem"),
                                os.path.join(tmp, "l.pem")], capture_output=True, text=True)
            check(v.returncode == 0, "openssl verify through the intermediate: %s" % v.stderr)
    finally:
        c.stop()


def token(state, ident, ttl="10m"):
    return cinchctl("token", "create", "--identity", ident, "--ttl", ttl,
                    "--state-dir", state).stdout.strip()


# An HTTP/2 client's first bytes: the preface and an empty SETTINGS frame.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def h2_answer(port, alpn):
    """What the gRPC port sends back to a TLS client offering `alpn` (None:
    no ALPN extension, what a plain `openssl s_client` sends) once it has
    sent an HTTP/2 preface: the bytes read until the server's first frame
    header is in, or the connection ends (an alert, a close)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    got = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(H2_PREFACE)
            while len(got) < 9:
                d = s.recv(4096)
                if not d:
                    break
                got += d
    except (ssl.SSLError, OSError):
        pass
    return got


def alpn_checks(ctl):
    """The gRPC port speaks only h2 (ALPN required): a client offering no
    ALPN, or only http/1.1, never gets a byte of HTTP/2 from it, whatever
    it sends after the handshake; the refusal is logged with its reason.
    A client offering h2 gets the server's SETTINGS (the same probe, so the
    refusals are the port's doing)."""
    got = h2_answer(ctl.grpc_port, ["h2"])
    check(len(got) >= 9 and got[3] == 4, "ALPN h2: the server's SETTINGS come first: %r"
          % got[:9])
    for alpn in (None, ["http/1.1"]):
        got = h2_answer(ctl.grpc_port, alpn)
        check(got == b"", "ALPN %s: refused, no HTTP/2 from the server: %r" % (alpn, got[:9]))
    deadline = time.time() + 5
    while True:
        refused = [e for e in ctl.events() if e["event"] == "grpc_handshake_failed" and
                   "ALPN" in e.get("why", "")]
        if len(refused) >= 2 or time.time() > deadline:
            break
        time.sleep(0.1)
    check(len(refused) >= 2, "both refusals logged as grpc_handshake_failed, why naming ALPN: %s"
          % [e.get("why") for e in refused])


def run(tmp, state, pb, pbg, ctl):
    alpn_checks(ctl)
    bundle_pem = cinchctl("bundle", "show", "--pem", "--state-dir", state).stdout.encode()
    web = "spiffe://%s/ns/shop/sa/web" % TD

    # Permissions of what the control keeps.
    check(os.stat(state).st_mode & 0o777 == 0o700, "state dir 0700")
    check(os.stat(os.path.join(state, "ca", "ca.key")).st_mode & 0o777 == 0o600, "CA key 0600")
    check(os.stat(os.path.join(state, "admin.sock")).st_mode & 0o777 == 0o600,
          "admin socket 0600")

    # A certificate for a join token; the CSR's own names are ignored.
    tok = token(state, "shop/web")
    check(re.fullmatch(r"cjt_[A-Za-z0-9_-]{43}", tok) is not None, "token format: %s" % tok)
    key = ec.generate_private_key(ec.SECP256R1())
    req = pb.SignRequest(csr=csr_for(key, ["spiffe://%s/ns/kube-system/sa/admin" % TD],
                                     cn="root"),
                         credential=pb.Credential(join_token=tok))
    resp, err = call(pb, pbg, ctl.grpc_port, bundle_pem, req)
    check(err is None, "Sign with a join token: %s" % err)
    if resp is None:
        return
    leaf_path = check_profile(tmp, resp, key, web, bundle_pem)
    check(resp.bundle.trust_domain == TD and len(resp.bundle.x509_authorities) == 1,
          "response carries the bundle")
    check(tok not in open(os.path.join(state, "tokens.json")).read(),
          "the token store keeps no token, only hashes")

    # The same token again: refused, nothing signed.
    resp2, err = call(pb, pbg, ctl.grpc_port, bundle_pem, req)
    check(err is not None and err.code() == grpc.StatusCode.UNAUTHENTICATED and
          "already used" in err.details(), "reused token refused: %s" % err)

    # Renewal over mTLS with that certificate: same identity.
    cert_pem = der_to_pem(resp.cert_chain[0])
    key2 = ec.generate_private_key(ec.SECP256R1())
    renew, err = call(pb, pbg, ctl.grpc_port, bundle_pem, pb.SignRequest(csr=csr_for(key2)),
                      cert=cert_pem, key=pem_key(key))
    check(err is None and renew.spiffe_id == web, "renewal over mTLS: %s" % err)
    if renew:
        check_profile(tmp, renew, key2, web, bundle_pem)
    # Renewal asking for someone else's identity.
    _, err = call(pb, pbg, ctl.grpc_port, bundle_pem,
                  pb.SignRequest(csr=csr_for(key2),
                                 requested_spiffe_id="spiffe://%s/ns/shop/sa/db" % TD),
                  cert=cert_pem, key=pem_key(key))
    check(err is not None and err.code() == grpc.StatusCode.PERMISSION_DENIED,
          "renewal for another identity refused: %s" % err)

    # A token for web, asked for db: refused, and the token stays usable.
    tok2 = token(state, "shop/web")
    _, err = call(pb, pbg, ctl.grpc_port, bundle_pem,
                  pb.SignRequest(csr=csr_for(key2), credential=pb.Credential(join_token=tok2),
                                 requested_spiffe_id="spiffe://%s/ns/shop/sa/db" % TD))
    check(err is not None and err.code() == grpc.StatusCode.PERMISSION_DENIED,
          "identity not granted by the token: %s" % err)
    ok, err = call(pb, pbg, ctl.grpc_port, bundle_pem,
                   pb.SignRequest(csr=csr_for(key2), credential=pb.Credential(join_token=tok2),
                                  requested_spiffe_id=web))
    check(err is None and ok.spiffe_id == web, "the token was not burnt by the refusal: %s" % err)

    # Forged CSR: a signature that does not verify; not a CSR at all; a weak
    # RSA key. All with one token: no certificate was issued, so it is not
    # spent and still gets one afterwards (issue #12: spent only with a
    # certificate issued).
    spare = token(state, "shop/web")
    der = bytearray(csr_for(key2))
    der[-5] ^= 0xFF
    _, err = call(pb, pbg, ctl.grpc_port, bundle_pem,
                  pb.SignRequest(csr=bytes(der), credential=pb.Credential(join_token=spare)))
    check(err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT,
          "forged CSR refused: %s" % err)
    _, err = call(pb, pbg, ctl.grpc_port, bundle_pem,
                  pb.SignRequest(csr=b"\x30\x03\x02\x01\x00",
                                 credential=pb.Credential(join_token=spare)))
    check(err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT,
          "garbage CSR refused: %s" % err)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    _, err = call(pb, pbg, ctl.grpc_port, bundle_pem,
                  pb.SignRequest(csr=csr_for(weak), credential=pb.Credential(join_token=spare)))
    check(err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT and
          "2048" in err.details(), "RSA 1024 refused: %s" % err)
    ok, err = call(pb, pbg, ctl.grpc_port, bundle_pem,
                   pb.SignRequest(csr=csr_for(key2), credential=pb.Credential(join_token=spare)))
    check(err is None and ok.spiffe_id == web,
          "a token whose CSRs failed is still usable: %s" % err)
    # One token, eight callers at once on eight connections: exactly one
    # certificate, the others refused as used.
    race = token(state, "shop/web")
    results = []
    def racer():
        results.append(call(pb, pbg, ctl.grpc_port, bundle_pem,
                            pb.SignRequest(csr=csr_for(key2),
                                           credential=pb.Credential(join_token=race))))
    threads = [threading.Thread(target=racer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    won = [r for r, e in results if e is None]
    lost = [e for r, e in results if e is not None]
    check(len(results) == 8 and len(won) == 1 and
          all(e.code() == grpc.StatusCode.UNAUTHENTICATED and "already used" in e.details()
              for e in lost), "one token, eight concurrent uses: one certificate (%d of %d)"
          % (len(won), len(results)))
    # Unknown token, no credential at all, an expired token.
    _, err = call(pb, pbg, ctl.grpc_port, bundle_pem,
                  pb.SignRequest(csr=csr_for(key2),
                                 credential=pb.Credential(join_token="cjt_" + "A" * 43)))
    check(err is not None and err.code() == grpc.StatusCode.UNAUTHENTICATED,
          "unknown token refused: %s" % err)
    _, err = call(pb, pbg, ctl.grpc_port, bundle_pem, pb.SignRequest(csr=csr_for(key2)))
    check(err is not None and err.code() == grpc.StatusCode.UNAUTHENTICATED,
          "no credential, no client certificate: %s" % err)
    short = token(state, "shop/web", ttl="1s")
    time.sleep(2.1)
    _, err = call(pb, pbg, ctl.grpc_port, bundle_pem,
                  pb.SignRequest(csr=csr_for(key2), credential=pb.Credential(join_token=short)))
    check(err is not None and err.code() == grpc.StatusCode.UNAUTHENTICATED and
          "expired" in err.details(), "expired token refused: %s" % err)
    # Oversized message.
    _, err = call(pb, pbg, ctl.grpc_port, bundle_pem,
                  pb.SignRequest(csr=b"x" * 100000,
                                 credential=pb.Credential(join_token=token(state, "shop/web"))))
    check(err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED,
          "oversized message refused: %s" % err)

    # Audit: one line per issued certificate and per refusal, no secrets.
    evs = ctl.events()
    issued = [e for e in evs if e["event"] == "svid_issued"]
    refused = [e for e in evs if e["event"] == "sign_refused"]
    check(len(issued) == 5, "five certificates issued and audited (%d)" % len(issued))
    check(all(e.get("serial") and e.get("spiffe_id") == web and e.get("auth") and
              e.get("expires_at_unix") for e in issued), "issued audit lines are complete")
    reasons = {e["reason"] for e in refused}
    for r in ("token_used", "identity_not_granted", "csr_bad_signature", "token_expired",
              "token_unknown", "csr_unparseable", "key_too_weak",
              "no_credential", "message_too_large"):
        check(any(r in x for x in reasons), "refusal audited with reason %s (%s)" % (r, reasons))
    check(not any(tok in json.dumps(e) or tok2 in json.dumps(e) for e in evs),
          "no token in the log")

    # Admin port.
    base = "http://127.0.0.1:%d" % ctl.admin_port
    for path, want in (("/ready", 200), ("/live", 200)):
        with urllib.request.urlopen(base + path, timeout=5) as r:
            check(r.status == want, "%s answers %d" % (path, want))
    with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
        m = r.read().decode()
    check(re.search(r'cinch_control_certs_issued_total\{method="join_token"\} 4', m) is not None,
          "metrics count issued certificates by method")
    check(re.search(r'cinch_control_certs_issued_total\{method="renewal"\} 1', m) is not None,
          "metrics count renewals")
    check("cinch_control_sign_refused_total{" in m and
          "cinch_control_sign_duration_seconds_bucket" in m and
          "cinch_control_ca_expiry_timestamp_seconds" in m, "metrics families present")
    with urllib.request.urlopen(base + "/bundle", timeout=5) as r:
        b = json.loads(r.read())
    keys = b.get("keys", [])
    check(len(keys) == 1 and keys[0].get("use") == "x509-svid" and keys[0].get("x5c") and
          b.get("spiffe_sequence") == 1, "SPIFFE bundle document: %s" % list(b))
    if keys:
        root = x509.load_der_x509_certificate(base64.b64decode(keys[0]["x5c"][0]))
        check(root.public_bytes(serialization.Encoding.PEM) == bundle_pem,
              "/bundle and cinchctl bundle show agree")
    try:
        urllib.request.urlopen(base + "/nope", timeout=5)
        check(False, "unknown admin path")
    except urllib.error.HTTPError as e:
        check(e.code == 404, "unknown admin path is 404")

    # cinchctl cert inspect.
    r = cinchctl("cert", "inspect", leaf_path, "--bundle", os.path.join(tmp, "bundle.pem"))
    check("spiffe_id    " + web in r.stdout and "verifies     ok" in r.stdout,
          "cert inspect shows the identity and verifies: %s" % r.stdout)
    other = os.path.join(tmp, "other.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", os.path.join(tmp, "o.key"),
                    "-subj", "/CN=other", "-days", "1", "-out", other],
                   check=True, capture_output=True)
    r = cinchctl("cert", "inspect", leaf_path, "--bundle", other, check_rc=False)
    check(r.returncode == 1 and "verifies     NO" in r.stdout,
          "cert inspect against another root says no, exit 1")
    r = cinchctl("cert", "inspect", os.path.join(tmp, "stubs"), check_rc=False)
    check(r.returncode == 2, "cert inspect of a non-certificate exits 2")
    r = cinchctl("token", "create", "--identity", "no-slash", "--state-dir", state,
                 check_rc=False)
    check(r.returncode == 2 and "identity" in r.stderr, "bad identity refused by cinchctl")

    # A stuck client (TCP open, half a ClientHello, then nothing) does not
    # stall anyone, and is closed by the handshake timeout (--handshake-timeout 2s).
    import socket
    stuck = socket.create_connection(("127.0.0.1", ctl.grpc_port))
    stuck.sendall(b"\x16\x03\x01\x02\x00\x01")
    results = []

    def one():
        k = ec.generate_private_key(ec.SECP256R1())
        r, e = call(pb, pbg, ctl.grpc_port, bundle_pem, pb.SignRequest(csr=csr_for(k)),
                    cert=cert_pem, key=pem_key(key))
        results.append(e is None and r.spiffe_id == web)
    threads = [threading.Thread(target=one) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    check(len(results) == 32 and all(results),
          "32 concurrent renewals beside a stuck client all succeed (%d ok)" % sum(results))
    stuck.settimeout(10)
    try:
        closed = stuck.recv(100) == b""
    except (socket.timeout, ConnectionResetError):
        closed = False
    check(closed, "the stuck client is closed by the handshake timeout")
    # The close is logged with where the connection was and why.
    me = "%s:%d" % stuck.getsockname()[:2]
    evs = ctl.events()
    check(any(e["event"] == "grpc_conn_closed" and e.get("peer") == me and
              e.get("state") == "handshake" and e.get("reason") == "handshake_timeout"
              for e in evs), "grpc_conn_closed logged for the stuck client (%s)" % me)
    check(any(e["event"] == "grpc_conn_closed" and e.get("state") == "h2" and
              e.get("reason") for e in evs), "grpc_conn_closed logged for an HTTP/2 connection")
    stuck.close()

    # Restart: same root, used tokens stay used.
    check(ctl.stop() == 0, "clean stop on SIGTERM")
    ctl2 = Control(state)
    try:
        bundle2 = cinchctl("bundle", "show", "--pem", "--state-dir", state).stdout.encode()
        check(bundle2 == bundle_pem, "the root survives a restart")
        _, err = call(pb, pbg, ctl2.grpc_port, bundle2,
                      pb.SignRequest(csr=csr_for(key2), credential=pb.Credential(join_token=tok)))
        check(err is not None and err.code() == grpc.StatusCode.UNAUTHENTICATED,
              "a used token stays used after a restart: %s" % err)
        ok, err = call(pb, pbg, ctl2.grpc_port, bundle2, pb.SignRequest(csr=csr_for(key2)),
                       cert=cert_pem, key=pem_key(key))
        check(err is None, "a certificate from before the restart still renews: %s" % err)
    finally:
        ctl2.stop()


if __name__ == "__main__":
    sys.exit(main())
