"""cinch-control's Kubernetes sources end to end: a real cinch-control
(--kube-api) against tests/lib/kube_api.py in live mode (a test API server
speaking the real list/watch, Status and merge-patch formats; no cluster
runs here), read by a stock gRPC client (python3-grpcio) holding an SVID.

Covers: meshed pods (and not the others) become the workload registry and
the AllowPolicy/MeshPolicy objects the policy, in one set; the Watch of
shop/web-1 gets the slice that reflects them; a MODIFIED AllowPolicy
changes the slice; an invalid one changes nothing (its last accepted
version stays in force, config_rejected names the object and field), and
the object's status gets Accepted=False with the field path and message,
then True again once fixed; a pod added meanwhile still goes out; a pod
that stops running leaves the registry; a watch ended by 410 Gone relists
and picks up what it missed. Services: v1 Services and discovery.k8s.io/v1
EndpointSlices, from fixtures in the exact shape an API server sends them
(tests/unit/k8s/fixtures/services/: services_list.json, endpointslices_list.json:
managedFields, uid, resourceVersion, creationTimestamp, status,
ipFamilyPolicy, internalTrafficPolicy, list items without apiVersion/kind,
endpoints with nodeName/targetRef/zone/hints), are listed and watched
across all namespaces before the control is ready and reach web-1's
snapshot (both ClusterIPs, ports, endpoints with conditions and identity);
a changed EndpointSlice (a new meshed endpoint) and a changed Service (its
port) reach it, a deleted Service leaves it; a Service the parser refuses
is left out with config_rejected naming it and its field, nothing is sent;
a Service lost to compaction comes back with the relist after 410 Gone. High
availability: a second replica sharing
the CA (same --ca-cert/--ca-key, its own state directory and ports) serves
the same version; when the first goes away the client, with the same
certificate, watches the second and has nothing to re-apply. Both replicas
stop cleanly (ASan in the check build).

Certificates: a test CA made here for the control replicas (--ca-cert),
another for the fake API server; the client's SVID is signed by replica A
for a join token.

usage: control_kube_test.py BIN_DIR PROTO_DIR KUBE_API_PY
"""
import datetime
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from control_grpc_test import (TD, Control, call, check, cinchctl, csr_for, der_to_pem,
                               pem_key, stubs, token)
import control_grpc_test as base
from control_config_test import Stream, peer_port

KUBE_API = sys.argv[3]
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "k8s", "fixtures",
                        "services")
WEB = "spiffe://%s/ns/shop/sa/web" % TD
POLICY_PATH = "allowpolicies/shop/api-from-web"


def ca_pair(tmp, name, td_uri=None, leaf_ip=None):
    """A CA (and with leaf_ip a server certificate it signs), as PEM files."""
    now = datetime.datetime.utcnow()
    key = ec.generate_private_key(ec.SECP256R1())
    subj = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, name)])
    b = (x509.CertificateBuilder().subject_name(subj).issuer_name(subj)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                      False), critical=True))
    if td_uri:
        b = b.add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(td_uri)]),
                            critical=False)
    cert = b.sign(key, hashes.SHA256())
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)
    paths = {"ca": os.path.join(tmp, name + "-ca.pem"), "ca_key": os.path.join(tmp, name + "-ca.key")}
    with open(paths["ca"], "wb") as f:
        f.write(pem(cert))
    with open(paths["ca_key"], "wb") as f:
        f.write(pem_key(key))
    if leaf_ip:
        import ipaddress
        lkey = ec.generate_private_key(ec.SECP256R1())
        leaf = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube")]))
                .issuer_name(subj).public_key(lkey.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address(leaf_ip)), x509.DNSName("localhost")]),
                    critical=False)
                .sign(key, hashes.SHA256()))
        paths["cert"], paths["key"] = (os.path.join(tmp, name + ".pem"),
                                       os.path.join(tmp, name + ".key"))
        with open(paths["cert"], "wb") as f:
            f.write(pem(leaf))
        with open(paths["key"], "wb") as f:
            f.write(pem_key(lkey))
    return paths


class Kube:
    """tests/lib/kube_api.py in live mode."""

    def __init__(self, tmp):
        self.pki = ca_pair(tmp, "kube", leaf_ip="127.0.0.1")
        self.proc = subprocess.Popen(["/usr/bin/python3", KUBE_API, "--cert", self.pki["cert"],
                                      "--key", self.pki["key"], "--lifetime", "150"],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise SystemExit("kube_api.py did not start")
        self.port = int(line.split()[1])
        self.url = "https://127.0.0.1:%d" % self.port
        self.ctx = ssl.create_default_context(cafile=self.pki["ca"])
        self.token = os.path.join(tmp, "kube-token")
        with open(self.token, "w") as f:
            f.write("control-token\n")

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

    def flags(self):
        return ["--kube-api", self.url, "--kube-ca", self.pki["ca"], "--kube-token", self.token]

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def pod(name, sa, app, ip, phase="Running", injected=True):
    meta = {"name": name, "namespace": "shop", "uid": "uid-" + name, "labels": {"app": app}}
    if injected:
        meta["annotations"] = {"cinch.dev/injected": '{"version":"0.1.0"}'}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"serviceAccountName": sa, "containers": [{"name": app, "image": "x"}]},
            "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}]}}


def allow(port):
    return {"apiVersion": "cinch.dev/v1alpha1", "kind": "AllowPolicy",
            "metadata": {"name": "api-from-web", "namespace": "shop", "uid": "u-allow",
                         "generation": 1, "managedFields": [{"manager": "kubectl"}]},
            "spec": {"selector": {"matchLabels": {"app": "api"}}, "ports": [port],
                     "from": [{"identities": [WEB]}]}}


MESH = {"apiVersion": "cinch.dev/v1alpha1", "kind": "MeshPolicy",
        "metadata": {"name": "default", "namespace": "cinch-system"}, "spec": {"mtls": "STRICT"}}


def fixture_items(name, kind, api_version):
    """A List fixture's items as the live store keeps them: with the
    apiVersion and kind that watch events carry (list items have none)."""
    with open(os.path.join(FIXTURES, name)) as f:
        lst = json.load(f)
    return [dict(item, apiVersion=api_version, kind=kind) for item in lst["items"]]


SERVICES = fixture_items("services_list.json", "Service", "v1")
SLICES = fixture_items("endpointslices_list.json", "EndpointSlice", "discovery.k8s.io/v1")


def wait_for(what, fn, timeout=10, ctls=()):
    """fn() until it returns something true, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        for c in ctls:
            c.events()  # keep the controls' stderr pipes drained
        v = fn()
        if v or time.monotonic() > deadline:
            check(bool(v), what)
            return v
        time.sleep(0.1)


def ready(ctl):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/ready" % ctl.admin_port, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def condition(kube):
    obj = kube.req("GET", "/debug/object/" + POLICY_PATH) or {}
    conds = obj.get("status", {}).get("conditions", [])
    return conds[0] if conds else None


def next_snap(st, cpb, timeout=5):
    _, m = st.next(timeout)
    return m if isinstance(m, cpb.Snapshot) else None


def status_workloads(state):
    r = cinchctl("status", "--json", "--state-dir", state)
    return json.loads(r.stdout)


def main():
    tmp = tempfile.mkdtemp(prefix="control_kube_test.")
    kube = Kube(tmp)
    ctls = []
    try:
        pb, pbg = stubs(tmp)
        from cinch.v1 import config_pb2, config_pb2_grpc
        kube.req("POST", "/debug/live", {
            "pods": [pod("web-1", "web", "web", "10.1.0.11"),
                     pod("api-1", "api", "api", "10.1.0.12"),
                     pod("legacy", "web", "web", "10.1.0.13", injected=False),
                     pod("job-done", "api", "api", "10.1.0.14", phase="Succeeded")],
            "allowpolicies": [allow(8080)],
            "meshpolicies": [MESH],
            "services": json.loads(json.dumps(SERVICES)),
            "endpointslices": json.loads(json.dumps(SLICES)),
        })
        pki = ca_pair(tmp, "mesh", td_uri="spiffe://" + TD)
        shared = ["--ca-cert", pki["ca"], "--ca-key", pki["ca_key"]] + kube.flags()
        a = Control(os.path.join(tmp, "state-a"), shared)
        ctls.append(a)
        run(tmp, kube, a, shared, ctls, pb, pbg, config_pb2, config_pb2_grpc)
        for c in ctls:
            if c.proc.poll() is None:
                check(c.stop() == 0, "cinch-control %s stops cleanly" % c.state)
            asan = [l for l in open(c.state + ".log")
                    if "AddressSanitizer" in l or "LeakSanitizer" in l]
            check(not asan, "no sanitizer report: %s" % asan[:3])
    finally:
        for c in ctls:
            if c.proc.poll() is None:
                c.stop()
        kube.stop()
        if base.failures:
            for c in ctls:
                print("---", c.state)
                print("".join(open(c.state + ".log").readlines()[-40:]))
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d/%d checks passed" % (base.checks - base.failures, base.checks))
    return 1 if base.failures else 0


def run(tmp, kube, a, shared, ctls, pb, pbg, cpb, cpbg):
    wait_for("replica A is ready once the sources have listed", lambda: ready(a), ctls=ctls)
    names = sorted(w["workload"] for w in status_workloads(a.state)["workloads"])
    check(names == ["shop/api-1", "shop/web-1"],
          "the registry is the meshed, live pods only: %s" % names)

    bundle = cinchctl("bundle", "show", "--pem", "--state-dir", a.state).stdout.encode()
    key = ec.generate_private_key(ec.SECP256R1())
    resp, err = call(pb, pbg, a.grpc_port, bundle,
                     pb.SignRequest(csr=csr_for(key),
                                    credential=pb.Credential(join_token=token(a.state, "shop/web"))))
    check(err is None, "an SVID for shop/web: %s" % err)
    if resp is None:
        return
    creds = grpc.ssl_channel_credentials(root_certificates=bundle, private_key=pem_key(key),
                                         certificate_chain=der_to_pem(resp.cert_chain[0]))
    req = cpb.WatchRequest(workload="shop/web-1")
    ch = grpc.secure_channel("localhost:%d" % a.grpc_port, creds)
    st = Stream(cpbg.ConfigStub(ch), req)
    snap = next_snap(st, cpb, 10)
    check(snap is not None, "Watch answers a Snapshot")
    if snap is None:
        return
    w = snap.workload
    check(w.name == "web-1" and w.namespace == "shop" and w.spiffe_id == WEB and
          list(w.addresses) == ["10.1.0.11"], "the slice is web-1's pod: %s" % w)
    check(peer_port(snap, "api-1") == [(8080, 8080)],
          "api-1 is web's peer on 8080 (the AllowPolicy object): %s" % peer_port(snap, "api-1"))
    cond = wait_for("the AllowPolicy gets Accepted=True",
                    lambda: (condition(kube) or {}).get("status") == "True", ctls=ctls)

    # A MODIFIED AllowPolicy changes the slice.
    kube.apply("allowpolicies", "MODIFIED", allow(9090))
    snap = next_snap(st, cpb)
    check(snap is not None and peer_port(snap, "api-1") == [(9090, 9090)],
          "the modified policy reaches the stream: %s" % (snap and peer_port(snap, "api-1")))
    good = status_workloads(a.state)["version"]  # the generation's

    # An invalid AllowPolicy: nothing sent, the object says why, the log
    # names it (kind/namespace/name and the field path).
    kube.apply("allowpolicies", "MODIFIED", allow(70000))
    _, nothing = st.next(1.5)
    check(nothing is None, "an invalid policy sends nothing: %r" % (nothing,))
    cond = wait_for("Accepted=False on the object",
                    lambda: (condition(kube) or {}).get("status") == "False", ctls=ctls)
    cond = condition(kube) or {}
    check(cond.get("reason") == "Invalid" and "spec.ports[0]" in cond.get("message", ""),
          "the condition has the field path and message: %s" % cond)
    rej = [e for e in a.events() if e["event"] == "config_rejected"]
    check(rej and rej[-1]["where"] == "AllowPolicy/shop/api-from-web" and
          rej[-1]["path"] == "spec.ports[0]" and rej[-1]["kept_version"] == good,
          "config_rejected names the object: %s" % rej[-1:])
    check(status_workloads(a.state)["version"] == good, "the version in force stays")
    patches = [r for r in kube.req("GET", "/debug/requests")
               if r.startswith("PATCH /apis/cinch.dev/v1alpha1/namespaces/shop/allowpolicies/"
                               "api-from-web/status application/merge-patch+json")]
    check(len(patches) == 2, "two status writes so far (True, False), no loop: %d" % len(patches))

    # A pod added while the policy is invalid still goes out, under the
    # policy's last accepted version.
    kube.apply("pods", "ADDED", pod("api-2", "api", "api", "10.1.0.15"))
    snap = next_snap(st, cpb)
    check(snap is not None and peer_port(snap, "api-2") == [(9090, 9090)],
          "api-2 arrives, allowed on the last accepted port: %s" % (snap and peer_port(snap, "api-2")))

    # Fixed: accepted again.
    kube.apply("allowpolicies", "MODIFIED", allow(7070))
    snap = next_snap(st, cpb)
    check(snap is not None and peer_port(snap, "api-1") == [(7070, 7070)],
          "the fixed policy arrives: %s" % (snap and peer_port(snap, "api-1")))
    wait_for("Accepted=True again", lambda: (condition(kube) or {}).get("status") == "True",
             ctls=ctls)

    # A pod that stops running leaves the registry.
    kube.apply("pods", "MODIFIED", pod("api-1", "api", "api", "10.1.0.12", phase="Failed"))
    snap = next_snap(st, cpb)
    check(snap is not None and peer_port(snap, "api-1") is None and
          peer_port(snap, "api-2") == [(7070, 7070)],
          "api-1 (failed) is gone from web's slice, api-2 stays")
    names = sorted(w["workload"] for w in status_workloads(a.state)["workloads"])
    check("shop/api-1" not in names, "and from the registry: %s" % names)

    # 410 Gone: a pod added without a watch event (lost to compaction),
    # then the watch expires: the relist finds it.
    lists = lambda: len([r for r in kube.req("GET", "/debug/requests")
                         if r.startswith("GET /api/v1/pods") and "watch=" not in r])
    before = lists()
    kube.apply("pods", "ADDED", pod("api-3", "api", "api", "10.1.0.16"), silent=True)
    _, nothing = st.next(1)
    check(nothing is None, "a lost event is not seen: %r" % (nothing,))
    kube.req("POST", "/debug/expire", {"collection": "pods"})
    snap = next_snap(st, cpb, 8)
    check(snap is not None and peer_port(snap, "api-3") == [(7070, 7070)],
          "after 410 Gone the relist brings api-3: %s" % (snap and peer_port(snap, "api-3")))
    check(lists() > before, "the pods were listed again")
    last = snap.version if snap else ""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % a.admin_port, timeout=5) as r:
        m = {l.split(" ")[0]: float(l.split(" ")[1]) for l in r.read().decode().splitlines()
             if l and not l.startswith("#")}
    check(m.get("cinch_control_kube_relists_total", 0) >= 1, "metrics count the relist")
    check(m.get("cinch_control_config_rejected_total", 0) >= 1,
          "metrics count the rejected AllowPolicy")
    check(m.get("cinch_control_config_generations_total", 0) >= 4,
          "metrics count the generations published: %s"
          % m.get("cinch_control_config_generations_total"))
    check(m.get("cinch_control_watch_streams") == 1, "metrics: one Watch stream open")
    check(m.get("cinch_control_snapshots_sent_total", 0) >= 6,
          "metrics count the snapshots sent: %s" % m.get("cinch_control_snapshots_sent_total"))

    last = services(kube, a, st, cpb, ctls, snap) or last
    ha(tmp, kube, a, shared, ctls, creds, req, st, ch, last, cpb, cpbg)


def svc(snap, name):
    """The Service shop/<name> of a snapshot, or None."""
    for v in (snap.services if snap else []):
        if v.namespace == "shop" and v.name == name:
            return v
    return None


def endpoints(v):
    """A Service's endpoints as {first address: (ready, serving, terminating,
    spiffe_id, target_ports)}."""
    return {e.addresses[0]: (e.ready, e.serving, e.terminating, e.spiffe_id, list(e.target_ports))
            for e in (v.endpoints if v else [])}


def services(kube, a, st, cpb, ctls, snap):
    """The Service source (control/k8s/svcsource.c), from the snapshot
    `snap` (the last one web-1 got: pods web-1, api-2, api-3; web may call
    app=api on 7070). Returns the version of the last snapshot it saw, or
    None."""
    reqs = kube.req("GET", "/debug/requests")
    for coll in ("/api/v1/services", "/apis/discovery.k8s.io/v1/endpointslices"):
        check(any(r.startswith("GET %s?" % coll) and "watch=" not in r for r in reqs) and
              any(r.startswith("GET %s?" % coll) and "watch=1" in r for r in reqs),
              "%s listed and watched across all namespaces" % coll)
    check(not [e for e in a.events() if e["event"] == "config_rejected" and
               e.get("where", "").split("/")[0] in ("Service", "EndpointSlice")],
          "the fixtures (a real API server's objects, every field) are accepted")
    v = svc(snap, "api")
    check(v is not None and list(v.virtual_ips) == ["10.96.0.20", "fd00:10:96::20"] and
          [(p.name, p.port, p.protocol) for p in v.ports] == [("http", 80, "TCP"),
                                                               ("grpc", 9090, "TCP")],
          "web's snapshot has the api Service: both ClusterIPs, its ports: %s" % v)
    eps = endpoints(v)
    check(eps.get("10.1.0.20") == (False, True, True, "", [8080, 9090]),
          "the terminating pod outside the mesh: serving, not ready, no identity: %s" % eps)
    check(svc(snap, "api-headless") is None, "a headless Service has no virtual IP to carry")
    last = None

    # Change: the IPv4 EndpointSlice now has api-2, serving http on 7070.
    sl = json.loads(json.dumps(SLICES[0]))
    api2 = json.loads(json.dumps(sl["endpoints"][0]))
    api2["addresses"] = ["10.1.0.15"]
    api2["targetRef"].update(name="api-2", uid="uid-api-2")
    sl["endpoints"] = [api2]
    sl["ports"][0]["port"] = 7070
    kube.apply("endpointslices", "MODIFIED", sl)
    snap = next_snap(st, cpb)
    eps = endpoints(svc(snap, "api"))
    check(eps.get("10.1.0.15") == (True, True, False, "spiffe://%s/ns/shop/sa/api" % TD,
                                   [7070, 0]),
          "a changed EndpointSlice reaches the agent: api-2, meshed, admitted on 7070 "
          "(9090 is not allowed): %s" % eps)
    last = snap.version if snap else last

    # Change: the Service's port.
    sv = json.loads(json.dumps(SERVICES[0]))
    sv["spec"]["ports"][0]["port"] = 8000
    kube.apply("services", "MODIFIED", sv)
    snap = next_snap(st, cpb)
    v = svc(snap, "api")
    check(v is not None and [p.port for p in v.ports] == [8000, 9090],
          "a changed Service reaches the agent: %s" % (v and [p.port for p in v.ports]))
    last = snap.version if snap else last

    # A Service the parser refuses: left out, named with its field.
    good = status_workloads(a.state)["version"]
    bad = json.loads(json.dumps(sv))
    bad["spec"]["ports"][0]["port"] = 70000
    kube.apply("services", "MODIFIED", bad)
    rej = wait_for("a refused Service is logged",
                   lambda: [e for e in a.events() if e["event"] == "config_rejected" and
                            e.get("where") == "Service/shop/api"], ctls=ctls)
    check(rej and rej[-1]["path"] == "spec.ports[0].port",
          "config_rejected names the Service and the field: %s" % rej[-1:])
    _, nothing = st.next(1.5)
    check(nothing is None, "a refused Service sends nothing (its last accepted version stays)")
    check(status_workloads(a.state)["version"] == good, "the version in force stays")

    # Delete: gone from the snapshot.
    kube.apply("services", "DELETED", bad)
    snap = next_snap(st, cpb)
    check(snap is not None and svc(snap, "api") is None,
          "a deleted Service leaves the agent's snapshot")
    last = snap.version if snap else last

    # 410 Gone: a Service added without a watch event (lost to compaction),
    # then the watch expires: the relist brings it.
    lists = lambda: len([r for r in kube.req("GET", "/debug/requests")
                         if r.startswith("GET /api/v1/services?") and "watch=" not in r])
    before = lists()
    kube.apply("services", "ADDED", json.loads(json.dumps(SERVICES[0])), silent=True)
    _, nothing = st.next(1)
    check(nothing is None, "a lost Service event is not seen: %r" % (nothing,))
    kube.req("POST", "/debug/expire", {"collection": "services"})
    snap = next_snap(st, cpb, 8)
    v = svc(snap, "api")
    check(v is not None and [p.port for p in v.ports] == [80, 9090],
          "after 410 Gone the relist brings the api Service back: %s" % v)
    check(lists() > before, "the Services were listed again")
    return snap.version if snap else last


def ha(tmp, kube, a, shared, ctls, creds, req, st, ch, last, cpb, cpbg):
    """Replica B shares the CA: same versions (`last` is web-1's slice's);
    A goes away, the client's next connection (what a Service address
    gives it) is to B."""
    b = Control(os.path.join(tmp, "state-b"), shared)
    ctls.append(b)
    wait_for("replica B is ready", lambda: ready(b), ctls=ctls)
    gen = status_workloads(a.state)["version"]
    wait_for("B serves the same generation as A (%s)" % gen,
             lambda: status_workloads(b.state)["version"] == gen, ctls=ctls)
    check(cinchctl("bundle", "show", "--pem", "--state-dir", b.state).stdout ==
          cinchctl("bundle", "show", "--pem", "--state-dir", a.state).stdout,
          "one trust bundle for both replicas")

    check(a.stop() == 0, "replica A stops (cleanly)")
    _, end = st.next(5)
    check(isinstance(end, grpc.RpcError) or end == "end", "the stream to A ends: %r" % (end,))
    ch.close()

    with grpc.secure_channel("localhost:%d" % b.grpc_port, creds) as chb:
        stub = cpbg.ConfigStub(chb)
        # As cfgwatch does: the version held goes with the request.
        st2 = Stream(stub, cpb.WatchRequest(workload=req.workload, known_version=last))
        _, first = st2.next(1.5)
        check(first is None, "B, given the version held: nothing to re-apply: %r" % (first,))
        ws = [w for w in status_workloads(b.state)["workloads"] if w["workload"] == "shop/web-1"]
        check(ws and ws[0]["connected"] == 1, "the client is B's watcher now: %s" % ws)
        # B's sources are live too.
        kube.apply("allowpolicies", "MODIFIED", allow(6060))
        snap = next_snap(st2, cpb)
        check(snap is not None and peer_port(snap, "api-2") == [(6060, 6060)],
              "a change reaches the client through B")
        st2.call.cancel()
        st2.next(5)


if __name__ == "__main__":
    sys.exit(main())
