"""webhook_test: cinch-control's injection webhook over real HTTPS, as the
kube-apiserver calls it, with the clients an operator would use.

Starts cinch-control with --webhook-port/--webhook-cert/--webhook-key (a
test CA and a certificate for cinch-control.cinch-system.svc, made here
with the openssl CLI), then:
  - posts every AdmissionReview fixture with `curl --http1.1` and
    `curl --http2` (?timeout=10s appended, as the API server does): HTTP
    200, the protocol asked for, the request's uid echoed, the same answer
    as inject.c gives through inject_driver, and every returned patch
    applies with `kubectl patch --local --type=json` and adds the agent;
  - bad input, each with its own clear HTTP answer and the server still
    serving afterwards: malformed JSON, another kind, another apiVersion,
    no uid (400), GET (405), another path (404), text/plain (415), a 5 MB
    body (413), a chunked HTTP/1.1 body (501), a request that is not HTTP
    (400), plain TCP garbage instead of TLS (closed), a silent
    connection (closed at the request timeout);
  - two reviews multiplexed on one HTTP/2 connection (the API server
    reuses its connections);
  - --webhook-max-connections 8: with 8 connections held open, the 9th is
    closed at once, and one is served again once they are gone;
  - openssl s_client: TLS 1.3, ALPN h2 and http/1.1 both chosen, the
    chain verifies for <service>.<namespace>.svc and not for another name;
  - the certificate files replaced on disk: new connections get the new
    certificate without a restart;
  - pods that would escape the mesh (issue #12): cinch.dev/exclude-*
    annotations refused until the mesh-wide MeshPolicy (a file under
    --policy) sets allowPodExclusions: true, refused again when the pod's
    namespace's own MeshPolicy says false; a container running as UID 1337
    refused whatever the MeshPolicy says.
Loopback only; everything started is stopped.

usage: webhook_test.py <cinch-control> <inject_driver> <fixtures dir>
"""
import base64
import glob
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import urllib.request
import time

CONTROL, DRIVER, FIXTURES = sys.argv[1], sys.argv[2], sys.argv[3]
HOST = "cinch-control.cinch-system.svc"
failures = 0
checks = 0


def check(cond, what):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print("FAIL:", what, flush=True)


def run(args, **kw):
    return subprocess.run(args, capture_output=True, timeout=60, **kw)


def make_cert(tmp, name, ca, serial):
    key, csr, pem = (os.path.join(tmp, name + s) for s in (".key", ".csr", ".pem"))
    ext = os.path.join(tmp, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:%s,DNS:%s.cluster.local\n"
                "extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n" % (HOST, HOST))
    run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", key, "-out", csr, "-subj", "/CN=" + HOST], check=True)
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca + ".pem", "-CAkey", ca + ".key",
         "-set_serial", str(serial), "-days", "1", "-out", pem, "-extfile", ext], check=True)
    return pem, key


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def curl(port, version, body=None, path="/inject?timeout=10s", method=None,
         ctype="application/json", extra=()):
    args = ["curl", "-sS", version, "--max-time", "20", "--cacert", CA_PEM, "--resolve",
            "%s:%d:127.0.0.1" % (HOST, port), "-o", "-", "-w", "\n%{http_code} %{http_version}"]
    if method:
        args += ["-X", method]
    if ctype:
        args += ["-H", "Content-Type: " + ctype]
    if body is not None:
        args += ["--data-binary", "@-"]
    args += list(extra) + ["https://%s:%d%s" % (HOST, port, path)]
    out = run(args, input=body if body is not None else b"")
    text = out.stdout.decode(errors="replace")
    body, _, tail = text.rpartition("\n")
    code, _, ver = tail.partition(" ")
    return int(code or 0), ver, body, out.stderr.decode()


def s_client(port, alpn=None, name=HOST):
    args = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", HOST,
            "-CAfile", CA_PEM, "-verify_hostname", name, "-showcerts"]
    if alpn:
        args += ["-alpn", alpn]
    out = run(args, input=b"")
    return out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace")


def driver_answer(review):
    out = run([DRIVER], input=review)
    return json.loads(out.stdout) if out.returncode == 0 else None


def apply_patch(pod, patch, tmp):
    path = os.path.join(tmp, "pod.json")
    with open(path, "w") as f:
        json.dump(pod, f)
    out = run(["kubectl", "patch", "--local", "-f", path, "--type=json", "-p", patch,
               "-o", "json"])
    return json.loads(out.stdout) if out.returncode == 0 else out.stderr.decode()


def check_fixtures(port, tmp):
    for fx in sorted(glob.glob(os.path.join(FIXTURES, "*.json"))):
        name = os.path.basename(fx)
        review = open(fx, "rb").read()
        want = driver_answer(review)
        uid = json.loads(review)["request"]["uid"]
        for version, shown in (("--http1.1", "1.1"), ("--http2", "2")):
            code, ver, body, err = curl(port, version, review)
            tag = "%s %s" % (name, version)
            check(code == 200, "%s: HTTP %d (%s)" % (tag, code, err.strip()))
            check(ver == shown, "%s: spoke HTTP/%s" % (tag, ver))
            try:
                ans = json.loads(body)
            except ValueError:
                check(False, "%s: answer is not JSON: %r" % (tag, body[:200]))
                continue
            check(ans.get("kind") == "AdmissionReview" and
                  ans.get("apiVersion") == "admission.k8s.io/v1", tag + ": an AdmissionReview")
            check(ans.get("response", {}).get("uid") == uid, tag + ": uid echoed")
            check(ans == want, tag + ": same answer as inject.c through inject_driver")
            resp = ans.get("response", {})
            if "patch" not in resp:
                continue
            check(resp.get("patchType") == "JSONPatch", tag + ": patchType JSONPatch")
            patch = base64.b64decode(resp["patch"]).decode()
            pod = json.loads(review)["request"]["object"]
            after = apply_patch(pod, patch, tmp)
            if isinstance(after, str):
                check(False, "%s: kubectl rejected the patch: %s" % (tag, after))
                continue
            spec = after["spec"]
            names = [c["name"] for c in spec.get("initContainers", []) +
                     spec.get("containers", [])]
            check("cinch-agent" in names and "cinch-init" in names,
                  "%s: the patched pod has cinch-init and cinch-agent (%s)" % (tag, names))
            check([c["name"] for c in pod["spec"]["containers"]] ==
                  [c["name"] for c in spec["containers"]],
                  tag + ": the app's containers are kept in order")
    check(len(glob.glob(os.path.join(FIXTURES, "*.json"))) >= 8, "fixtures found")


def check_bad_input(port):
    rs = json.load(open(os.path.join(FIXTURES, "rs_pod.json")))
    other_kind = dict(rs, kind="Pod")
    old_api = dict(rs, apiVersion="admission.k8s.io/v1beta1")
    no_uid = dict(rs, request={k: v for k, v in rs["request"].items() if k != "uid"})
    cases = [
        ("malformed JSON", b'{"apiVersion": "admission.k8s.io/v1", "kind": ', {}, 400,
         "not a JSON document"),
        ("another kind", json.dumps(other_kind).encode(), {}, 400, "AdmissionReview"),
        ("another apiVersion", json.dumps(old_api).encode(), {}, 400, "admission.k8s.io/v1"),
        ("no uid", json.dumps(no_uid).encode(), {}, 400, "uid"),
        ("GET", None, {"method": "GET"}, 405, "POST /inject"),
        ("another path", b"{}", {"path": "/mutate"}, 404, "POST /inject"),
        ("text/plain", b"{}", {"ctype": "text/plain"}, 415, "application/json"),
        ("5 MB body", b" " * (5 << 20), {}, 413, "too large"),
    ]
    for version in ("--http1.1", "--http2"):
        for what, body, kw, want, text in cases:
            code, _, out, err = curl(port, version, body, **kw)
            check(code == want and text in out,
                  "%s %s: HTTP %d %r, wanted %d with %r (%s)"
                  % (what, version, code, out[:120], want, text, err.strip()))
    code, _, out, _ = curl(port, "--http1.1", b"{}", extra=["-H", "Transfer-Encoding: chunked"])
    check(code == 501 and "Content-Length" in out, "chunked HTTP/1.1 body: HTTP %d" % code)

    # Not HTTP at all, inside TLS.
    out = run(["openssl", "s_client", "-quiet", "-connect", "127.0.0.1:%d" % port,
               "-servername", HOST, "-CAfile", CA_PEM],
              input=b"HELLO THERE\r\nwho: me\r\n\r\n").stdout.decode(errors="replace")
    check(out.startswith("HTTP/1.1 400 "), "not HTTP inside TLS: %r" % out[:80])
    # Plain TCP garbage instead of a TLS ClientHello: closed, not served.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /inject HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        check(not data.startswith(b"HTTP/"), "plain HTTP without TLS is not answered")


def check_tls(port):
    out = s_client(port, alpn="h2")
    check("Verify return code: 0 (ok)" in out, "s_client verifies the chain for " + HOST)
    check("ALPN protocol: h2" in out, "ALPN h2 chosen when offered")
    check("TLSv1.3" in out, "TLS 1.3")
    out = s_client(port, alpn="http/1.1")
    check("ALPN protocol: http/1.1" in out, "ALPN http/1.1 chosen when only it is offered")
    out = s_client(port)
    check("No ALPN negotiated" in out and "Verify return code: 0 (ok)" in out,
          "no ALPN: still served (HTTP/1.1)")
    out = s_client(port, name="cinch-control.other.svc")
    check("Verify return code: 0 (ok)" not in out,
          "the certificate does not verify for another service name")


def serial_seen(port):
    out = run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", HOST],
              input=b"").stdout
    cert = run(["openssl", "x509", "-noout", "-serial"], input=out).stdout.decode()
    return cert.strip()


def check_reload(port, tmp, ca, pem, key):
    before = serial_seen(port)
    check(before == "serial=01", "first certificate served: %s" % before)
    new_pem, new_key = make_cert(tmp, "wh2", ca, 2)
    # As a Secret mount or cert-manager would: replace by rename.
    os.rename(new_key, key)
    os.rename(new_pem, pem)
    deadline = time.time() + 10
    seen = before
    while time.time() < deadline and seen != "serial=02":
        time.sleep(0.2)
        seen = serial_seen(port)
    check(seen == "serial=02", "the new certificate is served after the files changed: " + seen)
    code, _, _, err = curl(port, "--http2",
                           open(os.path.join(FIXTURES, "rs_pod.json"), "rb").read())
    check(code == 200, "served with the reloaded certificate (%s)" % err.strip())


def check_multiplexed(port):
    body = open(os.path.join(FIXTURES, "rs_pod.json"), "rb").read()
    url = "https://%s:%d/inject" % (HOST, port)
    out = run(["curl", "-sS", "--http2", "--parallel", "--max-time", "20", "--cacert", CA_PEM,
               "--resolve", "%s:%d:127.0.0.1" % (HOST, port), "-H",
               "Content-Type: application/json", "--data-binary", "@-",
               "-w", "\n%{http_code} %{http_version} %{num_connects}\n",
               url, url], input=body).stdout.decode()
    tails = re.findall(r"^(\d+) (\S+) (\d+)$", out, re.M)
    check(len(tails) == 2 and all(t[:2] == ("200", "2") for t in tails),
          "two reviews on HTTP/2 in parallel: %s" % tails)
    check(sum(int(t[2]) for t in tails) == 1, "both on one connection: %s" % tails)
    check(out.count('"uid":"705ab4f5-6393-11e8-b7cc-42010a800002"') == 2, "both answered")


def tls_connect(port):
    ctx = ssl.create_default_context(cafile=CA_PEM)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=HOST)


def check_max_connections(port):
    held = []
    try:
        for _ in range(8):
            held.append(tls_connect(port))
        try:
            extra = tls_connect(port)
            extra.settimeout(2)
            refused = extra.recv(1) == b""  # closed after the handshake
            extra.close()
        except socket.timeout:
            refused = False  # accepted: waiting for a request
        except (ssl.SSLError, ConnectionError):
            refused = True  # closed during the handshake
        check(refused, "the 9th connection is closed while 8 are open")
    finally:
        for s in held:
            s.close()
    deadline = time.time() + 10
    code = 0
    while time.time() < deadline and code != 200:
        code, _, _, _ = curl(port, "--http2",
                             open(os.path.join(FIXTURES, "rs_pod.json"), "rb").read())
        time.sleep(0.1)
    check(code == 200, "served again once the held connections are gone")


def check_silent_connection(port):
    t0 = time.time()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        try:
            data = s.recv(1)
        except (ConnectionResetError, socket.timeout):
            data = None
    took = time.time() - t0
    check(data == b"" and 8 < took < 15,
          "a silent connection is closed at the 10 s request timeout (%.1f s)" % took)


MESH = """apiVersion: cinch.dev/v1alpha1
kind: MeshPolicy
metadata: {name: %s, namespace: %s}
spec: {allowPodExclusions: %s}
"""


def review_answer(port, fixture):
    code, _, body, err = curl(port, "--http2", open(os.path.join(FIXTURES, fixture), "rb").read())
    try:
        return json.loads(body).get("response", {}) if code == 200 else {"code": code}
    except ValueError:
        return {"body": body}


def refused_for(resp, text):
    return resp.get("allowed") is False and text in resp.get("status", {}).get("message", "")


def check_pod_exclusions(port, policy):
    excl = "does not let pods of namespace shop exclude traffic"
    uid = "runs as UID 1337, the mesh agent's"
    for fx in ("init_pod.json", "exclude_outbound.json"):
        r = review_answer(port, fx)
        check(refused_for(r, excl), "%s refused by default: %s" % (fx, r))
    check(refused_for(review_answer(port, "uid_1337_pod.json"), uid), "UID 1337 refused")

    # The mesh-wide MeshPolicy allows exclusions: the same review is patched,
    # exactly as inject.c does it under such a mesh.
    with open(os.path.join(policy, "mesh.yaml"), "w") as f:
        f.write(MESH % ("mesh", "cinch-system", "true"))
    deadline, r = time.time() + 10, {}
    while time.time() < deadline and not r.get("allowed"):
        time.sleep(0.2)
        r = review_answer(port, "init_pod.json")
    review = open(os.path.join(FIXTURES, "init_pod.json"), "rb").read()
    want = json.loads(run([DRIVER, "--allow-pod-exclusions"], input=review).stdout)["response"]
    check(r.get("allowed") is True and r == want,
          "allowPodExclusions: true (mesh-wide): the pod is patched as inject.c does: %s" % r)
    check(refused_for(review_answer(port, "uid_1337_pod.json"), uid),
          "UID 1337 refused whatever the MeshPolicy says")

    # The namespace's own MeshPolicy says no: it wins over the mesh-wide one.
    with open(os.path.join(policy, "shop.yaml"), "w") as f:
        f.write(MESH % ("shop", "shop", "false"))
    deadline, r = time.time() + 10, {"allowed": True}
    while time.time() < deadline and r.get("allowed"):
        time.sleep(0.2)
        r = review_answer(port, "init_pod.json")
    check(refused_for(r, excl), "the namespace's allowPodExclusions: false wins: %s" % r)


def check_metrics(admin):
    """The requests above are counted, and those answered with an error."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=5) as r:
        m = {l.split(" ")[0]: float(l.split(" ")[1]) for l in r.read().decode().splitlines()
             if l and not l.startswith("#")}
    req = m.get("cinch_control_webhook_requests_total", 0)
    err = m.get("cinch_control_webhook_errors_total", 0)
    check(req >= 10 and 1 <= err < req,
          "metrics count webhook requests (%d) and errors (%d)" % (req, err))


def main():
    global CA_PEM
    with tempfile.TemporaryDirectory() as tmp:
        ca = os.path.join(tmp, "ca")
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "1",
             "-subj", "/CN=webhook test CA"], check=True)
        CA_PEM = ca + ".pem"
        pem, key = make_cert(tmp, "wh", ca, 1)
        policy = os.path.join(tmp, "policy")
        os.mkdir(policy)
        port = free_port()
        log = open(os.path.join(tmp, "control.log"), "w+")
        proc = subprocess.Popen(
            [CONTROL, "--state-dir", os.path.join(tmp, "state"), "--listen", "127.0.0.1:0",
             "--admin-listen", "127.0.0.1:0", "--webhook-port", str(port), "--webhook-cert",
             pem, "--webhook-key", key, "--webhook-max-connections", "8",
             "--policy", policy, "--log-level", "debug"],
            stdout=subprocess.DEVNULL, stderr=log)
        try:
            deadline = time.time() + 20
            started = None
            while time.time() < deadline and proc.poll() is None and not started:
                time.sleep(0.1)
                log.seek(0)
                started = re.search(r'"webhook_port":(\d+)', log.read())
            if not started:
                log.seek(0)
                raise SystemExit("cinch-control did not start:\n" + log.read())
            check(int(started.group(1)) == port, "listening on --webhook-port")
            check_tls(port)
            check_fixtures(port, tmp)
            check_bad_input(port)
            check_multiplexed(port)
            check_max_connections(port)
            check_silent_connection(port)
            check_reload(port, tmp, ca, pem, key)
            check_pod_exclusions(port, policy)
            log.seek(0)
            admin = int(re.search(r'"admin_port":(\d+)', log.read()).group(1))
            check_metrics(admin)
            check(proc.poll() is None, "cinch-control still running after all of it")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
            log.seek(0)
            text = log.read()
        check(rc == 0, "cinch-control stops cleanly on SIGTERM (exit %s)" % rc)
        check("AddressSanitizer" not in text and "runtime error" not in text,
              "no sanitizer report")
        if failures:
            print(text[-4000:])
    print("%d checks, %d failures" % (checks, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
