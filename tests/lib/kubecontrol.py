"""kubecontrol: what the tests of cinch-control's Kubernetes duties share
(tests/unit/k8s/webhook_selfcert_test.py, trust_bundle_cm_test.py,
rbac_usage_test.py, ca_secret_test.py): the test API server (kube_api.py, live mode) with a
PKI made here, a cinch-control running against it whose JSON log is read
as it comes, the admin socket, bounded polls and typed checks.

Standard library plus python3-cryptography; run with /usr/bin/python3.
Everything started is stopped by the owner (stop()), and kube_api.py also
ends itself after its --lifetime."""
import base64
import datetime
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HERE = os.path.dirname(os.path.abspath(__file__))
KUBE_API = os.path.join(HERE, "kube_api.py")


class Checks:
    def __init__(self):
        self.failures = 0
        self.n = 0

    def __call__(self, cond, what):
        self.n += 1
        if not cond:
            self.failures += 1
            print("FAIL:", what, flush=True)
        return cond

    def eq(self, got, want, what):
        return self(got == want, "%s: got %r, want %r" % (what, got, want))

    def done(self):
        print("%d/%d checks passed" % (self.n - self.failures, self.n), flush=True)
        return 1 if self.failures else 0


def wait_for(fn, timeout=15, step=0.1):
    """fn() until it returns something true, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def pem_write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def test_ca(tmp, name, server_names=(), leaf_ip=None, td_uri=None):
    """A CA (with td_uri: a mesh CA for --ca-cert, naming its trust domain)
    and, with names or an IP, a server certificate it signs: paths of ca,
    ca_key, cert, key (PEM)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    subj = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, name)])
    ca = (x509.CertificateBuilder().subject_name(subj).issuer_name(subj)
          .public_key(key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True))
    if td_uri:
        ca = ca.add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(td_uri)]), critical=False)
    ca = ca.sign(key, hashes.SHA256())
    out = {"ca": pem_write(os.path.join(tmp, name + "-ca.pem"),
                           ca.public_bytes(serialization.Encoding.PEM)),
           "ca_key": pem_write(os.path.join(tmp, name + "-ca.key"), key.private_bytes(
               serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
               serialization.NoEncryption()))}
    if server_names or leaf_ip:
        import ipaddress
        lkey = ec.generate_private_key(ec.SECP256R1())
        sans = [x509.DNSName(n) for n in server_names]
        if leaf_ip:
            sans.append(x509.IPAddress(ipaddress.ip_address(leaf_ip)))
        leaf = (x509.CertificateBuilder().subject_name(x509.Name([]))
                .issuer_name(subj).public_key(lkey.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(sans), critical=True)
                .sign(key, hashes.SHA256()))
        out["cert"] = pem_write(os.path.join(tmp, name + ".pem"),
                                leaf.public_bytes(serialization.Encoding.PEM))
        out["key"] = pem_write(os.path.join(tmp, name + ".key"), lkey.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    return out


class Kube:
    """tests/lib/kube_api.py in live mode, seeded with `objects`
    ({collection: [object, ...]})."""

    def __init__(self, tmp, objects, lifetime=170):
        self.pki = test_ca(tmp, "kube", leaf_ip="127.0.0.1")
        self.proc = subprocess.Popen(["/usr/bin/python3", KUBE_API, "--cert", self.pki["cert"],
                                      "--key", self.pki["key"], "--lifetime", str(lifetime)],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise SystemExit("kube_api.py did not start")
        self.url = "https://127.0.0.1:%d" % int(line.split()[1])
        self.ctx = ssl.create_default_context(cafile=self.pki["ca"])
        self.token = pem_write(os.path.join(tmp, "kube-token"), b"control-token\n")
        self.req("POST", "/debug/live", objects)

    def req(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        r = urllib.request.Request(self.url + path, data=data, method=method,
                                   headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(r, context=self.ctx, timeout=10) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            return None if e.code == 404 else json.loads(e.read())

    def apply(self, coll, typ, obj, silent=False):
        return self.req("POST", "/debug/apply", {"collection": coll, "type": typ, "object": obj,
                                                 "silent": silent})

    def get(self, coll, ns, name):
        """The stored object (ns "" for cluster-scoped ones), or None."""
        return self.req("GET", "/debug/object/%s/%s/%s" % (coll, ns, name))

    def requests(self):
        return self.req("GET", "/debug/requests")

    def flags(self):
        return ["--kube-api", self.url, "--kube-ca", self.pki["ca"], "--kube-token", self.token]

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def namespace(name, inject=None):
    labels = {"kubernetes.io/metadata.name": name}
    if inject is not None:
        labels["cinch.dev/inject"] = inject
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "uid": "uid-ns-" + name, "labels": labels},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def configmap(ns, name, data, labels=None):
    meta = {"name": name, "namespace": ns, "uid": "uid-cm-%s-%s" % (ns, name)}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


class Control:
    """cinch-control on loopback (gRPC and admin on port 0), its JSON log
    collected by a thread."""

    def __init__(self, binary, state, extra=()):
        self.state = state
        self.lines = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            [binary, "--state-dir", state, "--listen", "127.0.0.1:0",
             "--admin-listen", "127.0.0.1:0", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        started = wait_for(lambda: self.find("control_started") or self.proc.poll() is not None,
                           timeout=20)
        if not isinstance(started, dict):
            self.stop()
            raise SystemExit("cinch-control did not start:\n" + "\n".join(
                json.dumps(e) for e in self.events()))
        self.started = started
        self.admin_port = started["admin_port"]
        self.grpc_port = started["grpc_port"]

    def _read(self):
        for line in self.proc.stderr:
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {"event": "unparsed", "line": line}
            with self.lock:
                self.lines.append(ev)

    def events(self, name=None):
        with self.lock:
            return [e for e in self.lines if name is None or e.get("event") == name]

    def find(self, name, **match):
        for e in self.events(name):
            if all(e.get(k) == v for k, v in match.items()):
                return e
        return None

    def metrics(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.admin_port,
                                    timeout=5) as r:
            out = {}
            for line in r.read().decode().splitlines():
                if line and not line.startswith("#"):
                    k, v = line.rsplit(" ", 1)
                    out[k] = float(v)
            return out

    def ctl(self, req):
        """One request on the admin socket (root only, as cinchctl)."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # generous: a CA step writes the cinch-ca Secret through the test
        # API server, and a sanitizer build under a full `make check` once
        # took more than 10 s for it
        s.settimeout(30)
        s.connect(os.path.join(self.state, "admin.sock"))
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        s.close()
        return json.loads(buf)

    def bundle_pem(self):
        with open(os.path.join(self.state, "ca", "bundle.pem")) as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.reader.join(5)
        return rc


def b64(s):
    return base64.b64encode(s.encode()).decode()
