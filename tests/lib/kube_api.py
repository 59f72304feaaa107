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
                      (<ns> empty for cluster-scoped objects)

Live mode also serves, as the API server does (request paths, list kinds,
Status bodies and codes), the collections cinch-control keeps objects in:
  namespaces (cluster-scoped), configmaps (namespaced; also listed and
  watched across all namespaces at /api/v1/configmaps), secrets (namespaced,
  at /api/v1/namespaces/<ns>/secrets only),
  mutatingwebhookconfigurations (admissionregistration.k8s.io/v1), and,
  listed and watched across all namespaces only, services (/api/v1/services)
  and endpointslices (/apis/discovery.k8s.io/v1/endpointslices), whose list
  items (and the namespaces') come without apiVersion/kind as the API
  server sends built-in kinds:
  GET list / ?watch=1 with labelSelector (k=v, k!=v, k; comma = and) and
      fieldSelector (metadata.name=, metadata.namespace=); a watch with a
      label selector sends ADDED/DELETED when an object starts/stops
      matching, as the watch cache does
  GET one: 404 NotFound Status when missing
  POST (create): 201; 409 AlreadyExists; 404 when the namespace is missing
  PUT (update): 200; 409 Conflict when metadata.resourceVersion is not the
      stored one ("the object has been modified"); 404 when missing
  DELETE: 200 with the object; a Namespace turns Terminating (MODIFIED with
      deletionTimestamp and status.phase), its DELETED event is the test's
      (/debug/apply), as the namespace controller finalizes it later
  PATCH with Content-Type application/merge-patch+json (RFC 7386),
      application/strategic-merge-patch+json (lists with a merge key, e.g.
      webhooks by name, merged element-wise; others replaced) or
      application/json-patch+json (RFC 6902 add/replace/remove/test);
      415 for any other type; a metadata.resourceVersion in a merge patch
      is a precondition (409)
Every request is recorded (GET /debug/requests) as "METHOD path" (PATCH:
also its Content-Type and body).

Cluster mode (for cinchctl check/status/policy --from-cluster): after POST
/debug/cluster {"objects": {PATH: OBJECT}, "proxy": {PATH: [CODE, TEXT]}}
a GET of exactly PATH (with its query) answers OBJECT as JSON, or CODE
with TEXT as text/plain (what the pod proxy relays from a pod's port);
"date_offset": N moves the Date header of every answer N seconds;
"list_delay": {COLLECTION: SECONDS} answers a live list of COLLECTION
that much later (one kind listed long after another);
the test writes the objects in the shape the API server sends them.
"""
import copy
import http.server
import json
import threading
import time
import urllib.parse
import uuid

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
    "guardrailpolicies": [dict(crd("GuardrailPolicy", None, "no-dev", {
        "priority": 10, "subject": {"namespaceSelector": {"matchLabels": {"env": "prod"}}},
        "rules": [{"action": "deny", "from": [{"namespaceSelector": {
            "matchLabels": {"env": "dev"}}}]}]}))],
}
for _g in CRDS["guardrailpolicies"]:  # cluster-scoped: no namespace
    del _g["metadata"]["namespace"]
# v1 Namespaces outside live mode (crdsource reads their labels)
NAMESPACES = [{"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "shop", "uid": "u-shop", "resourceVersion": "5",
                            "labels": {"env": "prod", "kubernetes.io/metadata.name": "shop"}},
               "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}]
CRD_EVENTS = {
    "allowpolicies": [{"type": "MODIFIED", "object": crd(
        "AllowPolicy", "shop", "api-from-web",
        {"selector": {"matchLabels": {"app": "api"}}, "ports": [8080, 8443],
         "from": [{"identities": ["spiffe://cluster.local/ns/shop/sa/web"]}]}, rv="6")}],
}


# Strategic merge patch: the merge key of the lists we serve (from the
# types' patchMergeKey tags); other lists are replaced whole.
SMP_MERGE_KEYS = {"webhooks": "name"}
LIST_KINDS = {"namespaces": "NamespaceList", "configmaps": "ConfigMapList",
              "secrets": "SecretList",
              "mutatingwebhookconfigurations": "MutatingWebhookConfigurationList",
              "services": "ServiceList", "endpointslices": "EndpointSliceList"}
LIST_API = {"mutatingwebhookconfigurations": "admissionregistration.k8s.io/v1",
            "endpointslices": "discovery.k8s.io/v1"}
# Built-in kinds whose list items carry no apiVersion/kind, as the API
# server sends them (its list encoding drops each item's TypeMeta; watch
# events' objects keep it). Custom resources' items keep theirs.
BARE_ITEMS = ("services", "endpointslices", "namespaces")
CLUSTER_SCOPED = ("namespaces", "mutatingwebhookconfigurations")


def merge_patch(target, patch, merge_keys=None, field=None):
    """RFC 7386; with merge_keys (field -> key: SMP_MERGE_KEYS) a strategic
    merge patch: lists of those fields merge by their key, other lists are
    replaced, maps merge either way."""
    if isinstance(patch, list) and merge_keys and merge_keys.get(field) and \
            isinstance(target, list):
        key = merge_keys[field]
        out = copy.deepcopy(target)
        for el in patch:
            idx = [i for i, t in enumerate(out) if t.get(key) == el.get(key)]
            if idx:
                out[idx[0]] = merge_patch(out[idx[0]], el, merge_keys)
            else:
                out.append(copy.deepcopy(el))
        return out
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v, merge_keys, k)
    return out


def strategic_patch(target, patch):
    """A strategic merge patch (see merge_patch)."""
    return merge_patch(target, patch, SMP_MERGE_KEYS)


def json_patch(target, ops):
    """RFC 6902 add/replace/remove/test; ValueError when an op fails."""
    out = copy.deepcopy(target)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = out
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        if isinstance(parent, list):
            last = len(parent) if last == "-" else int(last)
        if op["op"] == "test":
            if parent[last] != op["value"]:
                raise ValueError("test failed at " + op["path"])
        elif op["op"] == "remove":
            del parent[last]
        elif op["op"] in ("add", "replace"):
            if isinstance(parent, list) and op["op"] == "add":
                parent.insert(last, op["value"])
            else:
                if op["op"] == "replace" and not isinstance(parent, list) and last not in parent:
                    raise ValueError("replace of a missing member " + op["path"])
                parent[last] = op["value"]
        else:
            raise ValueError("unsupported op " + op["op"])
    return out


def selected(obj, q):
    """Whether obj matches the request's labelSelector and fieldSelector."""
    meta = obj.get("metadata", {})
    labels = meta.get("labels") or {}
    for req in filter(None, q.get("labelSelector", "").split(",")):
        if "!=" in req:
            k, v = req.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in req:
            k, v = req.replace("==", "=").split("=", 1)
            if labels.get(k) != v:
                return False
        elif req not in labels:
            return False
    for req in filter(None, q.get("fieldSelector", "").split(",")):
        k, v = req.replace("==", "=").split("=", 1)
        have = {"metadata.name": meta.get("name"),
                "metadata.namespace": meta.get("namespace", "")}.get(k)
        if have != v:
            return False
    return True


class Live:
    """The live-mode store; every field under `cond`."""
    COLLECTIONS = ("pods", "allowpolicies", "meshpolicies", "egresspolicies",
                   "guardrailpolicies", "namespaces",
                   "configmaps", "secrets", "mutatingwebhookconfigurations", "services",
                   "endpointslices")

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
            old = self.objs[coll].get(self.key(obj))
            if typ == "DELETED":
                self.objs[coll].pop(self.key(obj), None)
            else:
                self.objs[coll][self.key(obj)] = obj
            if not silent:
                self.history[coll].append((self.rv, {"type": typ, "object": obj}, old))
            self.cond.notify_all()
            return obj

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
        if self.live_rest("POST", body):
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
        if self.live_rest("PATCH", body):
            return
        parts = self.path.strip("/").split("/")
        if parts[:3] == ["apis", "cinch.dev", "v1alpha1"] and len(parts) == 6:
            parts = parts[:3] + ["namespaces", ""] + parts[3:]  # cluster-scoped
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

    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        REQUESTS.append("PUT " + self.path)
        if not self.authorized():
            return
        if not self.live_rest("PUT", body):
            self.status(404, "NotFound", "not found")

    def do_DELETE(self):
        REQUESTS.append("DELETE " + self.path)
        if not self.authorized():
            return
        if not self.live_rest("DELETE", None):
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
        if self.live_rest("GET", None):
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
        if url.path == "/api/v1/namespaces":
            if q.get("watch") in ("1", "true"):
                self.start_stream()
                time.sleep(30)
                return None
            return self.send_json(200, {"kind": "NamespaceList", "apiVersion": "v1",
                                        "metadata": {"resourceVersion": "5"},
                                        "items": NAMESPACES})
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

    def live_get(self, coll, q, ns=None):
        if coll not in LIVE.objs:
            return self.status(404, "NotFound", "not found")
        if ns:
            q = dict(q, fieldSelector=",".join(
                filter(None, [q.get("fieldSelector"), "metadata.namespace=" + ns])))
        if q.get("watch") not in ("1", "true"):
            time.sleep(CLUSTER.get("list_delay", {}).get(coll, 0))
            with LIVE.cond:
                items = sorted((o for o in LIVE.objs[coll].values() if selected(o, q)),
                               key=Live.key)
                rv = str(LIVE.rv)
            api = LIST_API.get(coll, "v1")
            if coll in BARE_ITEMS:
                items = [{k: v for k, v in o.items() if k not in ("apiVersion", "kind")}
                         for o in items]
            return self.send_json(200, {"kind": LIST_KINDS.get(coll, "List"), "apiVersion": api,
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
                evs = [(rv, ev, old) for rv, ev, old in LIVE.history[coll] if rv > since]
            if gone:
                chunk(json.dumps(GONE).encode() + b"\n")
                break
            for rv, ev, old in evs:
                since = rv
                ev = self.filtered(ev, old, q)
                if ev:
                    chunk(json.dumps(ev).encode() + b"\n")
        chunk(b"")

    @staticmethod
    def filtered(ev, old, q):
        """A watch event as a selector-filtered watch sends it, or None."""
        if not q.get("labelSelector") and not q.get("fieldSelector"):
            return ev
        now = selected(ev["object"], q) and ev["type"] != "DELETED"
        was = old is not None and selected(old, q)
        if ev["type"] == "DELETED":
            return ev if was else None
        if now:
            return ev if was or ev["type"] == "ADDED" else dict(ev, type="ADDED")
        return {"type": "DELETED", "object": ev["object"]} if was else None

    def route(self, path):
        """(collection, namespace, name) of a live REST path, or None."""
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "v1"]:
            rest = parts[2:]
            if rest == ["namespaces"]:
                return "namespaces", None, None
            if rest in (["configmaps"], ["services"]):
                return rest[0], None, None
            if len(rest) == 2 and rest[0] == "namespaces":
                return "namespaces", None, rest[1]
            if len(rest) in (3, 4) and rest[0] == "namespaces" and \
                    rest[2] in ("configmaps", "secrets"):
                return rest[2], rest[1], rest[3] if len(rest) == 4 else None
        if parts == ["apis", "discovery.k8s.io", "v1", "endpointslices"]:
            return "endpointslices", None, None
        if parts[:3] == ["apis", "admissionregistration.k8s.io", "v1"] and \
                len(parts) in (4, 5) and parts[3] == "mutatingwebhookconfigurations":
            return parts[3], None, parts[4] if len(parts) == 5 else None
        return None

    def not_found(self, coll, name):
        self.send_json(404, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                             "status": "Failure", "reason": "NotFound", "code": 404,
                             "message": '%s "%s" not found' % (coll, name),
                             "details": {"name": name, "kind": coll}})

    def conflict(self, coll, name, reason, message):
        self.send_json(409, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                             "status": "Failure", "reason": reason, "code": 409,
                             "message": message, "details": {"name": name, "kind": coll}})

    def stale(self, coll, name):
        """The 409 of a write naming an older resourceVersion."""
        self.conflict(coll, name, "Conflict",
                      'Operation cannot be fulfilled on %s "%s": the object has been '
                      'modified; please apply your changes to the latest version and try '
                      'again' % (coll, name))

    def stored(self, coll, ns, name):
        with LIVE.cond:
            obj = LIVE.objs[coll].get("%s/%s" % (ns or "", name))
            return copy.deepcopy(obj) if obj else None

    def live_rest(self, method, body):
        """The live REST collections; False when the path is not one."""
        url = urllib.parse.urlparse(self.path)
        r = self.route(url.path) if LIVE.on else None
        if r is None:
            return False
        coll, ns, name = r
        q = dict(urllib.parse.parse_qsl(url.query))
        if method == "GET" and name is None:
            self.live_get(coll, q, ns)
        elif method == "GET":
            obj = self.stored(coll, ns, name)
            self.send_json(200, obj) if obj else self.not_found(coll, name)
        elif method == "POST" and name is None:
            self.create(coll, ns, json.loads(body))
        elif method == "PUT" and name is not None:
            self.update(coll, ns, name, json.loads(body))
        elif method == "PATCH" and name is not None:
            self.patch(coll, ns, name, body)
        elif method == "DELETE" and name is not None:
            self.delete(coll, ns, name)
        else:
            self.status(405, "MethodNotAllowed", "the server does not allow this method")
        return True

    def create(self, coll, ns, obj):
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name:
            return self.status(422, "Invalid", "metadata.name: Required value")
        if coll not in CLUSTER_SCOPED:
            if meta.setdefault("namespace", ns) != ns:
                return self.status(400, "BadRequest", "the namespace of the provided object "
                                   "does not match the namespace sent on the request")
            if self.stored("namespaces", None, ns) is None:
                return self.not_found("namespaces", ns)
        with LIVE.cond:
            if self.stored(coll, ns, name) is not None:
                return self.conflict(coll, name, "AlreadyExists",
                                     '%s "%s" already exists' % (coll, name))
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            obj = LIVE.apply(coll, "ADDED", obj)
        self.send_json(201, obj)

    def update(self, coll, ns, name, obj):
        meta = obj.setdefault("metadata", {})
        if meta.get("name") != name:
            return self.status(400, "BadRequest", "the name of the object (%s) does not "
                               "match the name on the URL (%s)" % (meta.get("name"), name))
        with LIVE.cond:
            cur = self.stored(coll, ns, name)
            if cur is None:
                return self.not_found(coll, name)
            rv = meta.get("resourceVersion")
            if rv and rv != cur["metadata"]["resourceVersion"]:
                return self.stale(coll, name)
            for k in ("uid", "creationTimestamp", "namespace"):
                if k in cur["metadata"]:
                    meta[k] = cur["metadata"][k]
            obj = LIVE.apply(coll, "MODIFIED", obj)
        self.send_json(200, obj)

    def delete(self, coll, ns, name):
        """A Namespace is not gone at once: it turns Terminating (MODIFIED,
        deletionTimestamp set) until the namespace controller has removed
        its content and finalized it (the test sends that DELETED event);
        other objects are DELETED. Either way the answer is the object."""
        with LIVE.cond:
            obj = self.stored(coll, ns, name)
            if obj is None:
                return self.not_found(coll, name)
            if coll == "namespaces":
                obj["metadata"]["deletionTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                     time.gmtime())
                obj.setdefault("status", {})["phase"] = "Terminating"
                obj = LIVE.apply(coll, "MODIFIED", obj)
            else:
                obj = LIVE.apply(coll, "DELETED", obj)
        self.send_json(200, obj)

    def patch(self, coll, ns, name, body):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        kinds = {"application/merge-patch+json": merge_patch,
                 "application/strategic-merge-patch+json": strategic_patch,
                 "application/json-patch+json": json_patch}
        if ctype not in kinds:
            return self.status(415, "UnsupportedMediaType",
                               "the body of the request was in an unknown format - accepted "
                               "media types include: application/json-patch+json, "
                               "application/merge-patch+json, "
                               "application/strategic-merge-patch+json")
        p = json.loads(body)
        with LIVE.cond:
            cur = self.stored(coll, ns, name)
            if cur is None:
                return self.not_found(coll, name)
            want = p.get("metadata", {}).get("resourceVersion") if isinstance(p, dict) else None
            if want and want != cur["metadata"]["resourceVersion"]:
                return self.stale(coll, name)
            try:
                obj = kinds[ctype](cur, p)
            except (ValueError, KeyError, IndexError, TypeError) as e:
                return self.status(422, "Invalid", "the patch cannot be applied: %s" % e)
            obj = LIVE.apply(coll, "MODIFIED", obj)
        self.send_json(200, obj)

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
