"""rbac_usage_test: deploy/k8s's RBAC is exactly what cinch-control uses
(issue #14, least privilege). Every request the control makes is covered
by a rule, and every rule is needed by some request.

How: a real cinch-control runs with every Kubernetes duty on (the pod and
policy sources, TokenReview authentication, the webhook certificate it
issues with its caBundle upkeep, the trust-bundle ConfigMaps, the CA kept
in the Secret cinch-system/cinch-ca as deploy/k8s runs it) against
tests/lib/kube_api.py in live mode, and is driven until each duty has
acted: an agent's Sign with a projected token (TokenReview, then the pod),
a policy the library refuses (its status written), a meshed namespace
without the ConfigMap (created) and one with a stale one of ours
(updated), the webhook configuration without caBundle (patched), the CA
Secret missing (read, created, then watched) and a root rotation step (the
Secret updated). The test API server records every request; each is turned into the
attributes the API server's authorizer sees, as its request-info does
(k8s.io/apiserver/pkg/endpoints/request/requestinfo.go): API group,
resource and subresource, namespace, name, and the verb (GET on a name:
get; GET on a collection: list, with watch=1: watch; POST: create; PUT:
update; PATCH: patch; DELETE: delete; for list and watch a fieldSelector
metadata.name=X gives the name X, which is what lets resourceNames limit
them).

The rules are the ClusterRoles and Roles bound to the ServiceAccount
cinch-control/cinch-system in `kubectl kustomize deploy/k8s`, matched as
RBAC does (a Role only in its namespace; resourceNames only for requests
that name the object). Then:
  - a request no rule allows fails the test (the control would get 403);
  - a rule (each group x resource x verb of it, and each resourceName) no
    request needs fails the test: a rule without resourceNames is needed
    only by a request that no narrower rule (with resourceNames) allows.
The comparison proves itself first on the recorded requests: the
shipped rules minus one needed rule, plus an unused rule, and with a
resourceNames limit widened to the whole resource must each be refused.

usage: rbac_usage_test.py <cinch-control> <src dir>
Exit 77 when kubectl is missing.
"""
import copy
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))
from kubecontrol import (Checks, Control, Kube, configmap, namespace,  # noqa: E402
                         wait_for)

CONTROL, SRC = sys.argv[1], sys.argv[2]
SA = ("cinch-system", "cinch-control")
check = Checks()


# ---- the API server's request-info and RBAC matching

def request_info(line):
    """"METHOD /path?query ..." -> (group, resource, verb, namespace, name),
    or None for a non-resource path."""
    method, url = line.split(" ")[:2]
    u = urllib.parse.urlparse(url)
    q = dict(urllib.parse.parse_qsl(u.query))
    parts = u.path.strip("/").split("/")
    if parts[0] == "api" and len(parts) >= 3:
        group, rest = "", parts[2:]
    elif parts[0] == "apis" and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        return None
    ns = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        ns, rest = rest[1], rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    if rest[0] == "namespaces" and len(rest) == 2:
        ns = name  # a Namespace object: its own namespace
    if len(rest) > 2:
        resource += "/" + rest[2]
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method)
    if method == "GET":
        verb = "get" if name else ("watch" if q.get("watch") in ("1", "true") else "list")
    if verb in ("list", "watch") and not name:
        for req in q.get("fieldSelector", "").split(","):
            k, _, v = req.replace("==", "=").partition("=")
            if k == "metadata.name":
                name = v
    return group, resource, verb, ns, name


def bound_rules(docs):
    """[(rule, namespace or None)] of the roles bound to our ServiceAccount."""
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d
             for d in docs if d["kind"] in ("ClusterRole", "Role")}
    out = []
    for b in docs:
        if b["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        if not any(s.get("kind") == "ServiceAccount" and
                   (s.get("namespace"), s["name"]) == SA for s in b["subjects"]):
            continue
        ref = b["roleRef"]
        ns = b["metadata"].get("namespace") if b["kind"] == "RoleBinding" else None
        role = roles.get((ref["kind"], ns if ref["kind"] == "Role" else None, ref["name"]))
        if role is None:
            continue
        out += [(r, ns) for r in role.get("rules", [])]
    return out


def allows(rule, ns_limit, req):
    group, resource, verb, ns, name = req
    if ns_limit is not None and ns != ns_limit:
        return False
    if group not in rule.get("apiGroups", []) or resource not in rule.get("resources", []):
        return False
    if verb not in rule.get("verbs", []):
        return False
    names = rule.get("resourceNames")
    return not names or (name != "" and name in names)


def compare(rules, reqs):
    """(requests no rule allows, rule parts no request needs)."""
    uncovered = sorted({r for r in reqs if not any(allows(ru, ns, r) for ru, ns in rules)})
    unused = []
    for rule, ns in rules:
        for g in rule.get("apiGroups", []):
            for res in rule.get("resources", []):
                for v in rule.get("verbs", []):
                    names = rule.get("resourceNames")
                    for n in names or [None]:
                        part = {"apiGroups": [g], "resources": [res], "verbs": [v]}
                        if n is not None:
                            part["resourceNames"] = [n]
                        narrower = [(ru, rns) for ru, rns in rules if ru.get("resourceNames")]
                        need = [r for r in reqs if allows(part, ns, r) and
                                (n is not None or not any(allows(ru, rns, r)
                                                          for ru, rns in narrower))]
                        if not need:
                            unused.append((ns or "cluster", g, res, v, n))
    return uncovered, unused


# ---- driving the control

def refused(kind, ns, spec):
    """A policy object the policy library refuses (its status is written)."""
    meta = {"name": "refused", "namespace": ns, "uid": "uid-" + kind, "generation": 1}
    if ns is None:  # cluster-scoped
        del meta["namespace"]
    return {"apiVersion": "cinch.dev/v1alpha1", "kind": kind, "metadata": meta, "spec": spec}


REFUSED = [
    ("allowpolicies", refused("AllowPolicy", "shop", {
        "selector": {"matchLabels": {"app": "api"}}, "ports": [70000]})),
    ("meshpolicies", refused("MeshPolicy", "cinch-system", {"mtls": "OFF"})),
    ("egresspolicies", refused("EgressPolicy", "shop", {
        "selector": {"matchLabels": {"app": "api"}},
        "to": [{"cidrs": ["payments.example.com"]}]})),
    ("guardrailpolicies", refused("GuardrailPolicy", None, {
        "priority": 2000, "subject": {"podSelector": {}}, "rules": [{"action": "deny"}]})),
]


def objects():
    stale = configmap("cxg-r2", "cinch-trust-bundle", {"bundle.pem": "old"},
                      {"app.kubernetes.io/managed-by": "cinch-control"})
    with open(os.path.join(SRC, "deploy/k8s/control/webhook.yaml")) as f:
        mwc = yaml.safe_load(f)
    mwc["metadata"]["uid"] = "uid-mwc"
    return {"namespaces": [namespace("cinch-system"), namespace("cxg-r1", "enabled"),
                           namespace("cxg-r2", "enabled")],
            "configmaps": [stale], "mutatingwebhookconfigurations": [mwc],
            **{coll: [obj] for coll, obj in REFUSED}}


def sign_with_token(tmp, ctl):
    """An agent's Sign with a projected service-account token (grpcio)."""
    import grpc
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography import x509
    out = os.path.join(tmp, "stubs")
    os.mkdir(out)
    proto = os.path.join(SRC, "proto")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "--proto_path=" + proto,
                    "--python_out=" + out, "--grpc_python_out=" + out] +
                   [os.path.join(proto, "cinch", "v1", f)
                    for f in ("trust.proto", "identity.proto")], check=True)
    sys.path.insert(0, out)
    from cinch.v1 import identity_pb2 as pb, identity_pb2_grpc as pbg
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(
        key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    creds = grpc.ssl_channel_credentials(root_certificates=ctl.bundle_pem().encode())
    with grpc.secure_channel("localhost:%d" % ctl.grpc_port, creds) as ch:
        try:
            pbg.IdentityStub(ch).Sign(pb.SignRequest(
                csr=csr, credential=pb.Credential(kubernetes_token="tok-web")), timeout=10)
            return "OK"
        except grpc.RpcError as e:
            return e.code().name


def drive(tmp, kube, ctl):
    """Each duty acts at least once; waits on what it does, not on requests."""
    check(sign_with_token(tmp, ctl) in ("OK", "PERMISSION_DENIED", "UNAUTHENTICATED"),
          "the Sign call with a projected token was answered")
    check(wait_for(lambda: any("tokenreviews" in r for r in kube.requests())),
          "TokenReview asked")
    check(wait_for(lambda: ctl.find("webhook_ca_bundle_patched")), "caBundle patched")
    check(wait_for(lambda: ctl.find("trust_bundle_configmap_written", namespace="cxg-r1")),
          "trust bundle ConfigMap created")
    check(wait_for(lambda: ctl.find("trust_bundle_configmap_written", namespace="cxg-r2")),
          "trust bundle ConfigMap updated")
    check(ctl.find("ca_secret_created"), "the CA Secret created")
    check(wait_for(lambda: any(r.startswith("GET /api/v1/namespaces/cinch-system/secrets?") and
                               "watch=" in r for r in kube.requests())), "the CA Secret watched")
    r = ctl.ctl({"op": "ca_rotate", "step": "prepare"})
    check("error" not in r, "a rotation step, written to the CA Secret: %s" % r)
    for coll, obj in REFUSED:
        ns = obj["metadata"].get("namespace", "")
        check(wait_for(lambda: (kube.get(coll, ns, "refused") or {}).get("status")),
              "refused %s's status written" % obj["kind"])


def main():
    if shutil.which("kubectl") is None:
        print("SKIP: kubectl not installed")
        return 77
    rendered = subprocess.run(["kubectl", "kustomize", os.path.join(SRC, "deploy/k8s")],
                              check=True, capture_output=True, text=True).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    rules = bound_rules(docs)
    check(rules, "roles bound to the cinch-control ServiceAccount")
    with tempfile.TemporaryDirectory(prefix="cxg-rbac-") as tmp:
        kube = Kube(tmp, objects())
        try:
            ctl = Control(CONTROL, os.path.join(tmp, "state"),
                          ["--webhook-port", "21720", "--webhook-issue-cert",
                           "--ca-secret", "cinch-system/cinch-ca"] + kube.flags())
            try:
                drive(tmp, kube, ctl)
                lines = [r for r in kube.requests() if not r.startswith(("GET /debug",
                                                                         "POST /debug"))]
            finally:
                check.eq(ctl.stop(), 0, "control stops cleanly")
        finally:
            kube.stop()
    reqs = {request_info(line) for line in lines} - {None}
    used = sorted({(g, res, v, n) for g, res, v, _, n in reqs})
    print("requests the control made (group, resource, verb, name):")
    for u in used:
        print("  ", u)

    # the comparison refuses what it must (on the same requests)
    needed = [(r, ns) for r, ns in rules if any(allows(r, ns, q) for q in reqs)]
    if check(needed, "some rule is used"):
        less = [x for x in rules if x[0] is not needed[0][0]]
        check(compare(less, reqs)[0], "self-test: a missing rule leaves a request uncovered")
    extra = rules + [({"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}, None)]
    check(("cluster", "", "events", "create", None) in compare(extra, reqs)[1],
          "self-test: an unused rule is reported")
    named = [(r, ns) for r, ns in rules if r.get("resourceNames")]
    if check(named, "some rule is limited by resourceNames"):
        wide = copy.deepcopy(named[0][0])
        del wide["resourceNames"]
        unused = compare(rules + [(wide, named[0][1])], reqs)[1]
        check(any(u[4] is None and u[2] in wide["resources"] for u in unused),
              "self-test: a resourceNames limit widened to the whole resource is reported")

    uncovered, unused = compare(rules, reqs)
    for r in uncovered:
        check(False, "request not allowed by deploy/k8s RBAC: %s" % (r,))
    for u in unused:
        check(False, "RBAC rule no request needs: %s" % (u,))
    return check.done()


if __name__ == "__main__":
    sys.exit(main())
