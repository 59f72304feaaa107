"""kube_api: a small HTTPS server speaking the real Kubernetes API formats
that cinch-control uses, for tests (no cluster runs here). Standard library
only; run with /usr/bin/python3. Prints "PORT <n>" when listening on
127.0.0.1; exits after --lifetime seconds at the latest.

  kube_api.py --cert C --key K [--lifetime 60]

Every request must carry "Authorization: Bearer control-token" (else 401
with a Status). Served:
  POST /apis/authentication.k8s.io/v1/tokenreviews   (TOKENS below)
  GET  /api/v1/namespaces/<ns>/pods/<name>           (PODS below)
  GET  /api/v1/pods?limit=&continue=                 paged list, 2 per page
  GET  /api/v1/pods?watch=1&resourceVersion=...      the WATCH script
  GET  /apis/cinch.dev/v1alpha1/<plural>[?watch=1]  CRDS below; watches
                                                     send one MODIFIED, then stay
  PATCH /apis/cinch.dev/v1alpha1/namespaces/<ns>/<plural>/<name>/status
  GET  /debug/requests                               what was asked so far

Live mode (for a real cinch-control): after POST /debug/live with
{"pods": [...], "allowpolicies": [...], ...} the pods and the three CRD
collections are a mutable store with a global resourceVersion instead of
the scripts above: lists return it, watches replay what happened after
their version and then stream changes as they are made, status PATCHes
change the object and are watched as MODIFIED. The test drives it with
  POST /debug/apply  {"collection", "type": ADDED|MODIFIED|DELETED,
                      "object", "silent": true = no watch event, as if
                      the event were lost to compaction}
  POST /debug/expire {"collection"}: open watches get ERROR 410 and end,
                      a watch from an older version gets HTTP 410
  GET  /debug/object/<collection>/<ns>/<name>   the object as stored

Cluster mode (for cinchctl check/status/policy --from-cluster): after POST
/debug/cluster {"objects": {PATH: OBJECT}, "proxy": {PATH: [CODE, TEXT]}}
a GET of exactly PATH (with its query) answers OBJECT as JSON, or CODE
with TEXT as text/plain (what the pod proxy relays from a pod's port);
"date_offset": N moves the Date header of every answer N seconds;
the test writes the objects in the shape the API server sends them.
"""
import http.server
import json
import threading
import time
import urllib.parse

import testhttps

REQUESTS = []

POD_SPEC = {"serviceAccountName": "web", "containers": [{"name": "web", "image": "x"}]}


def pod(name, uid, rv, phase="Running", sa="web", deleting=False):
    meta = {"name": name, "namespace": "shop", "uid": uid, "resourceVersion": rv,
            "labels": {"app": "web"}}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-22T10:00:00Z"
    if name != "pod-e":  # pod-e is not in the mesh
        meta["annotations"] = {"cinch.dev/injected": '{"version":"0.1.0"}'}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": dict(POD_SPEC, serviceAccountName=sa),
            "status": {"phase": phase, "podIP": "10.1.0.%d" % (len(name) + 3)}}


PODS = {
    "web-abc": pod("web-abc", "uid-web", "90", phase="Pending"),
    "web-other": pod("web-other", "uid-other", "90"),
    "web-done": pod("web-done", "uid-done", "90", phase="Succeeded"),
    "web-dying": pod("web-dying", "uid-dying", "90", deleting=True),
    "web-db": pod("web-db", "uid-db", "90", sa="db"),
}

SA_WEB = "system:serviceaccount:shop:web"


def user(name, pod_name=None, pod_uid=None):
    u = {"username": name, "uid": "sa-uid",
         "groups": ["system:serviceaccounts", "system:serviceaccounts:shop",
                    "system:authenticated"]}
    if pod_name:
        u["extra"] = {"authentication.kubernetes.io/pod-name": [pod_name],
                      "authentication.kubernetes.io/pod-uid": [pod_uid],
                      "authentication.kubernetes.io/node-name": ["node-1"]}
    return u


# token -> (user or None, audiences the token is valid for)
TOKENS = {
    "tok-web": (user(SA_WEB, "web-abc", "uid-web"), ["cinch"]),
    "tok-api-audience": (user(SA_WEB, "web-abc", "uid-web"), ["https://kubernetes.default.svc"]),
    "tok-legacy": (user(SA_WEB), ["cinch"]),
    "tok-gone": (user(SA_WEB, "web-gone", "uid-gone"), ["cinch"]),
    "tok-stale-uid": (user(SA_WEB, "web-other", "uid-previous"), ["cinch"]),
    "tok-done": (user(SA_WEB, "web-done", "uid-done"), ["cinch"]),
    "tok-dying": (user(SA_WEB, "web-dying", "uid-dying"), ["cinch"]),
    "tok-sa-mismatch": (user(SA_WEB, "web-db", "uid-db"), ["cinch"]),
    "tok-node": (user("system:node:node-1"), ["cinch"]),
    "tok-evil-name": (user("system:serviceaccount:../x:web", "web-abc", "uid-web"), ["cinch"]),
}


def listed(rv, names):
    return rv, [pod(n, "uid-" + n, rv) for n in names]


# The collection at each list: (resourceVersion, items). Each list call
# that starts from scratch moves to the next state.
LISTS = [listed("100", ["pod-a", "pod-b", "pod-c"]),
         listed("200", ["pod-a", "pod-c", "pod-d", "pod-e"]),
         listed("300", ["pod-a", "pod-c", "pod-d", "pod-e"])]
STATE = {"list": -1}


def event(kind, name, rv):
    if kind == "BOOKMARK":
        return {"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1",
                                               "metadata": {"resourceVersion": rv}}}
    return {"type": kind, "object": pod(name, "uid-" + name, rv)}


GONE = {"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                    "status": "Failure", "reason": "Expired", "code": 410,
                                    "message": "too old resource version: 100 (150)"}}

# resourceVersion -> what a watch from it does.
WATCH = {
    "100": [event("ADDED", "pod-d", "101"), event("MODIFIED", "pod-a", "102"),
            event("BOOKMARK", None, "110"), event("DELETED", "pod-b", "111"), GONE],
    "200": [event("BOOKMARK", None, "250")],  # then the stream ends normally
    "250": 410,                                # HTTP 410 at once
    "300": "hold",                             # stays open, quiet
}


def crd(kind, ns, name, spec, rv="5"):
    return {"apiVersion": "cinch.dev/v1alpha1", "kind": kind,
            "metadata": {"name": name, "namespace": ns, "uid": "u-" + name,
                         "resourceVersion": rv, "generation": 1,
                         "labels": {"team": "shop"},
                         "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": spec, "status": {"conditions": []}}


CRDS = {
    "allowpolicies": [
        crd("AllowPolicy", "shop", "api-from-web",
            {"selector": {"matchLabels": {"app": "api"}}, "ports": [8080],
             "from": [{"identities": ["spiffe://cluster.local/ns/shop/sa/web"]}]}),
        crd("AllowPolicy", "shop", "bad", {"ports": [70000]}),
    ],
    "meshpolicies": [crd("MeshPolicy", "cinch-system", "default", {"mtls": "STRICT"})],
    "egresspolicies": [],
}
CRD_EVENTS = {
    "allowpolicies": [{"type": "MODIFIED", "object": crd(
        "AllowPolicy", "shop", "api-from-web",
        {"selector": {"matchLabels": {"app": "api"}}, "ports": [8080, 8443],
         "from": [{"identities": ["spiffe://cluster.local/ns/shop/sa/web"]}]}, rv="6")}],
}


class Live:
    """The live-mode store; every field under `cond`."""
    COLLECTIONS = ("pods", "allowpolicies", "meshpolicies", "egresspolicies")

    def __init__(self):
        self.on = False
        self.cond = threading.Condition()
        self.rv = 1000
        self.objs = {c: {} for c in self.COLLECTIONS}
        self.history = {c: [] for c in self.COLLECTIONS}  # (rv, event)
        self.expired = {c: 0 for c in self.COLLECTIONS}   # watches below: 410
        self.epoch = {c: 0 for c in self.COLLECTIONS}     # bumped by expire

    @staticmethod
    def key(obj):
        return "%s/%s" % (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])

    def apply(self, coll, typ, obj, silent=False):
        with self.cond:
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            if typ == "DELETED":
                self.objs[coll].pop(self.key(obj), None)
            else:
                self.objs[coll][self.key(obj)] = obj
            if not silent:
                self.history[coll].append((self.rv, {"type": typ, "object": obj}))
            self.cond.notify_all()

    def expire(self, coll):
        with self.cond:
            self.expired[coll] = self.rv
            self.epoch[coll] += 1
            self.cond.notify_all()


LIVE = Live()
CLUSTER = {"objects": {}, "proxy": {}}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def date_time_string(self, timestamp=None):
        """The Date header, off by CLUSTER["date_offset"] seconds."""
        return super().date_time_string((timestamp or time.time()) +
                                        CLUSTER.get("date_offset", 0))

    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def status(self, code, reason, message):
        self.send_json(code, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Failure", "reason": reason, "message": message,
                              "code": code})

    def start_stream(self):
        """A 200 whose body is chunks: watch events, one JSON line each."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def authorized(self):
        if self.headers.get("Authorization") != "Bearer control-token":
            self.status(401, "Unauthorized", "Unauthorized")
            return False
        return True

    def do_POST(self):
        REQUESTS.append("POST " + self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path.startswith("/debug/"):
            return self.debug_post(self.path, json.loads(body or b"{}"))
        if not self.authorized():
            return
        if self.path != "/apis/authentication.k8s.io/v1/tokenreviews":
            return self.status(404, "NotFound", "not found")
        review = json.loads(body)
        spec = review["spec"]
        u, auds = TOKENS.get(spec.get("token"), (None, []))
        wanted = spec.get("audiences") or ["https://kubernetes.default.svc"]
        common = [a for a in wanted if a in auds]
        if u is None:
            st = {"authenticated": False, "error": "[invalid bearer token]", "user": {}}
        elif not common:
            st = {"authenticated": False, "user": {},
                  "error": "[invalid bearer token, token audiences %s is invalid for the "
                           "target audiences %s]" % (json.dumps(auds), json.dumps(wanted))}
        else:
            st = {"authenticated": True, "user": u, "audiences": common}
        review["status"] = st
        self.send_json(201, review)

    def do_PATCH(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        REQUESTS.append("PATCH %s %s %s" % (self.path, self.headers.get("Content-Type"),
                                            body.decode()))
        if not self.authorized():
            return
        parts = self.path.strip("/").split("/")
        if LIVE.on and parts[:3] == ["apis", "cinch.dev", "v1alpha1"] and parts[-1] == "status":
            with LIVE.cond:
                obj = LIVE.objs.get(parts[5], {}).get("%s/%s" % (parts[4], parts[6]))
            if obj is None:
                return self.status(404, "NotFound", "not found")
            obj = json.loads(json.dumps(obj))
            obj["status"] = json.loads(body)["status"]
            LIVE.apply(parts[5], "MODIFIED", obj)
            return self.send_json(200, obj)
        if parts[:3] == ["apis", "cinch.dev", "v1alpha1"] and parts[-1] == "status":
            for obj in CRDS.get(parts[5], []):
                if obj["metadata"]["name"] == parts[6]:
                    obj["status"] = json.loads(body)["status"]
                    return self.send_json(200, obj)
        self.status(404, "NotFound", "not found")

    def do_GET(self):
        REQUESTS.append("GET " + self.path)
        url = urllib.parse.urlparse(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/debug/requests":
            return self.send_json(200, REQUESTS[:-1])
        parts = url.path.strip("/").split("/")
        if parts[:2] == ["debug", "object"] and len(parts) == 5:
            with LIVE.cond:
                obj = LIVE.objs.get(parts[2], {}).get(parts[3] + "/" + parts[4])
            return self.send_json(200 if obj else 404, obj or {})
        if not self.authorized():
            return
        if url.path == "/version" and CLUSTER["objects"]:
            return self.send_json(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.2",
                                        "platform": "linux/amd64"})
        if self.path in CLUSTER["objects"]:
            return self.send_json(200, CLUSTER["objects"][self.path])
        if self.path in CLUSTER["proxy"]:
            code, text = CLUSTER["proxy"][self.path]
            body = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return self.wfile.write(body)
        if CLUSTER["objects"] and not LIVE.on:
            return self.status(404, "NotFound", "the server could not find the requested "
                               "resource")
        if LIVE.on and url.path == "/api/v1/pods":
            return self.live_get("pods", q)
        if LIVE.on and parts[:3] == ["apis", "cinch.dev", "v1alpha1"] and len(parts) == 4:
            return self.live_get(parts[3], q)
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 6 and parts[4] == "pods":
            p = PODS.get(parts[5])
            if p is None:
                return self.status(404, "NotFound", 'pods "%s" not found' % parts[5])
            return self.send_json(200, p)
        if parts[:3] == ["apis", "cinch.dev", "v1alpha1"] and len(parts) == 4:
            return self.crds(parts[3], q)
        if url.path != "/api/v1/pods":
            return self.status(404, "NotFound", "not found")
        if q.get("watch") in ("1", "true"):
            return self.watch(q)
        if "continue" in q:
            rv, items = LISTS[STATE["list"]]
            page, cont = items[2:], ""
        else:
            STATE["list"] += 1
            rv, items = LISTS[STATE["list"]]
            page, cont = items[:2], "p2" if len(items) > 2 else ""
        self.send_json(200, {"kind": "PodList", "apiVersion": "v1",
                             "metadata": {"resourceVersion": rv, "continue": cont},
                             "items": page})

    def debug_post(self, path, req):
        if path == "/debug/live":
            LIVE.on = True
            for coll in Live.COLLECTIONS:
                for obj in req.get(coll, []):
                    LIVE.apply(coll, "ADDED", obj)
        elif path == "/debug/apply":
            LIVE.apply(req["collection"], req["type"], req["object"], req.get("silent", False))
        elif path == "/debug/cluster":
            CLUSTER.update(req)
        elif path == "/debug/expire":
            LIVE.expire(req["collection"])
        else:
            return self.status(404, "NotFound", "not found")
        self.send_json(200, {"resourceVersion": str(LIVE.rv)})

    def live_get(self, coll, q):
        if coll not in LIVE.objs:
            return self.status(404, "NotFound", "not found")
        if q.get("watch") not in ("1", "true"):
            with LIVE.cond:
                items = sorted(LIVE.objs[coll].values(), key=Live.key)
                rv = str(LIVE.rv)
            return self.send_json(200, {"kind": "List", "apiVersion": "v1",
                                        "metadata": {"resourceVersion": rv, "continue": ""},
                                        "items": items})
        since = int(q.get("resourceVersion") or 0)
        with LIVE.cond:
            if since < LIVE.expired[coll]:
                return self.status(410, "Expired", "too old resource version: %d (%d)" %
                                   (since, LIVE.expired[coll]))
            epoch = LIVE.epoch[coll]
        self.start_stream()
        chunk = self.chunk
        deadline = time.monotonic() + float(q.get("timeoutSeconds") or 300)
        while time.monotonic() < deadline:
            with LIVE.cond:
                LIVE.cond.wait_for(lambda: LIVE.epoch[coll] != epoch or
                                   (LIVE.history[coll] and LIVE.history[coll][-1][0] > since),
                                   timeout=1)
                gone = LIVE.epoch[coll] != epoch
                evs = [(rv, ev) for rv, ev in LIVE.history[coll] if rv > since]
            if gone:
                chunk(json.dumps(GONE).encode() + b"\n")
                break
            for rv, ev in evs:
                chunk(json.dumps(ev).encode() + b"\n")
                since = rv
        chunk(b"")

    def crds(self, plural, q):
        if plural not in CRDS:
            return self.status(404, "NotFound", "not found")
        if q.get("watch") not in ("1", "true"):
            return self.send_json(200, {"kind": "List", "apiVersion": "cinch.dev/v1alpha1",
                                        "metadata": {"resourceVersion": "5"},
                                        "items": CRDS[plural]})
        self.start_stream()
        for ev in CRD_EVENTS.get(plural, []):
            time.sleep(0.1)
            self.chunk(json.dumps(ev).encode() + b"\n")
        time.sleep(30)

    def watch(self, q):
        script = WATCH.get(q.get("resourceVersion"))
        if script is None or script == 410:
            return self.status(410, "Expired", "too old resource version")
        self.start_stream()
        chunk = self.chunk
        if script == "hold":
            time.sleep(30)
        else:
            for ev in script:
                chunk(json.dumps(ev).encode() + b"\n")
                time.sleep(0.05)
        chunk(b"")


if __name__ == "__main__":
    testhttps.serve(Handler)
