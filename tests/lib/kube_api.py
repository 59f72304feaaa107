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
  GET  /debug/requests                               paths seen so far
"""
import argparse
import http.server
import json
import ssl
import sys
import threading
import time
import urllib.parse

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


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

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

    def authorized(self):
        if self.headers.get("Authorization") != "Bearer control-token":
            self.status(401, "Unauthorized", "Unauthorized")
            return False
        return True

    def do_POST(self):
        REQUESTS.append("POST " + self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
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

    def do_GET(self):
        REQUESTS.append("GET " + self.path)
        url = urllib.parse.urlparse(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/debug/requests":
            return self.send_json(200, REQUESTS[:-1])
        if not self.authorized():
            return
        parts = url.path.strip("/").split("/")
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 6 and parts[4] == "pods":
            p = PODS.get(parts[5])
            if p is None:
                return self.status(404, "NotFound", 'pods "%s" not found' % parts[5])
            return self.send_json(200, p)
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

    def watch(self, q):
        script = WATCH.get(q.get("resourceVersion"))
        if script is None or script == 410:
            return self.status(410, "Expired", "too old resource version")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(data):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        if script == "hold":
            time.sleep(30)
        else:
            for ev in script:
                chunk(json.dumps(ev).encode() + b"\n")
                time.sleep(0.05)
        chunk(b"")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--lifetime", type=float, default=60)
    a = ap.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    srv = Server(("127.0.0.1", 0), Handler)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("PORT %d" % srv.server_address[1], flush=True)
    threading.Timer(a.lifetime, srv.shutdown).start()
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
