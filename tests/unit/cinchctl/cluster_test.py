"""cluster_test: cinchctl against a cluster's API server (tests/lib/
kube_api.py in cluster mode), found through a kubeconfig this test writes
(server https://127.0.0.1:<port>, certificate-authority-data, token), as
kubectl would use it.

The objects are written in the shape an API server sends them (List kinds
with apiVersion/kind/metadata.resourceVersion, PodList items without
apiVersion/kind, uid, resourceVersion, managedFields, ownerReferences,
status), so cinchctl meets what a real cluster says. Each check is first
seen ok, then each fault is made and the check must say FAIL (exit 1):
a CRD not Established, an empty or expiring caBundle, a control replica
not ready, a namespace without the trust bundle ConfigMap or with a
different one, an agent not ready, an agent on another version. Then
`status --cluster` (an agent's escape sequence must not reach the
terminal) and `policy explain|test|check|whatif --from-cluster`.

  cluster_test.py CINCHCTL KUBE_API_PY
"""
import base64
import copy
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

CTL, KUBE_API = sys.argv[1], sys.argv[2]
D = tempfile.mkdtemp()
FAILED = []


def sh(*args):
    subprocess.run(args, check=True, capture_output=True, cwd=D)


def check(cond, what, out=""):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILED.append(what)
        print(out)


def certs():
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
       "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=kube-ca", "-days", "30")
    sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=kube-apiserver")
    with open(os.path.join(D, "ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    sh("openssl", "x509", "-req", "-in", "srv.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
       "-CAcreateserial", "-out", "srv.crt", "-days", "30", "-extfile", "ext")
    # a webhook CA that expires in 3 days
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
       "-nodes", "-keyout", "wh.key", "-out", "wh-soon.crt", "-subj", "/CN=cinch-webhook-ca",
       "-days", "3")


def b64file(name):
    with open(os.path.join(D, name), "rb") as f:
        return base64.b64encode(f.read()).decode()


def meta(name, ns=None, rv="1", **extra):
    m = {"name": name, "uid": "0f%030x" % (abs(hash(name)) % (1 << 120)),
         "resourceVersion": rv, "creationTimestamp": "2026-11-30T10:00:00Z",
         "managedFields": [{"manager": "kubectl-client-side-apply", "operation": "Update",
                            "apiVersion": "v1", "time": "2026-11-30T10:00:00Z",
                            "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}]}
    if ns:
        m["namespace"] = ns
    m.update(extra)
    return m


def crd(plural, established=True):
    kind = {"allowpolicies": "AllowPolicy", "meshpolicies": "MeshPolicy",
            "egresspolicies": "EgressPolicy", "guardrailpolicies": "GuardrailPolicy"}[plural]
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": meta(plural + ".cinch.dev", generation=1),
            "spec": {"group": "cinch.dev", "scope": "Namespaced",
                     "names": {"kind": kind, "plural": plural, "listKind": kind + "List",
                               "singular": kind.lower()},
                     "versions": [{"name": "v1alpha1", "served": True, "storage": True}]},
            "status": {"acceptedNames": {"kind": kind, "plural": plural},
                       "storedVersions": ["v1alpha1"],
                       "conditions": [
                           {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                            "message": "no conflicts found",
                            "lastTransitionTime": "2026-11-30T10:00:00Z"},
                           {"type": "Established", "status": "True" if established else "False",
                            "reason": "InitialNamesAccepted" if established else "Installing",
                            "message": "the initial names have been accepted",
                            "lastTransitionTime": "2026-11-30T10:00:00Z"}]}}


def pod(ns, name, sa, ip, injected=True, labels=None):
    ann = {"kubectl.kubernetes.io/restartedAt": "2026-11-30T10:00:00Z"}
    if injected:
        ann["cinch.dev/injected"] = '{"version":"0.1.0"}'
    return {  # a PodList item: no apiVersion/kind, as the API server sends it
        "metadata": meta(name, ns, generateName=name.rsplit("-", 1)[0] + "-",
                         labels=labels or {"app": sa}, annotations=ann,
                         ownerReferences=[{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                           "name": name.rsplit("-", 1)[0], "uid": "rs-uid",
                                           "controller": True, "blockOwnerDeletion": True}]),
        "spec": {"serviceAccountName": sa, "nodeName": "node-1",
                 "containers": [{"name": sa, "image": "registry.local/%s:1" % sa}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                   "hostIP": "192.0.2.10", "startTime": "2026-11-30T10:00:00Z",
                   "conditions": [{"type": "Ready", "status": "True"}]}}


def cr(kind, ns, name, spec):
    return {"apiVersion": "cinch.dev/v1alpha1", "kind": kind,
            "metadata": meta(name, ns, generation=2, labels={"team": ns},
                             annotations={"kubectl.kubernetes.io/last-applied-configuration":
                                          json.dumps({"spec": spec})}),
            "spec": spec,
            "status": {"conditions": [{"type": "Accepted", "status": "True", "reason": "Valid",
                                       "message": "", "lastTransitionTime":
                                       "2026-11-30T10:00:01Z"}]}}


def lst(kind, api, items):
    return {"apiVersion": api, "kind": kind, "metadata": {"resourceVersion": "4711"},
            "items": items}


BUNDLE = {"bundle.pem": "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"}
CONTROL_METRICS = ("# HELP cinch_control_config_info The configuration in force.\n"
                   "# TYPE cinch_control_config_info gauge\n"
                   "cinch_control_config_info{version=\"%s\"} 1\n"
                   "# TYPE cinch_control_webhook_cert_expiry_timestamp_seconds gauge\n"
                   "cinch_control_webhook_cert_expiry_timestamp_seconds %d\n")
METRICS = ('# HELP cinch_agent_ready 1 when /ready says ready\n# TYPE cinch_agent_ready gauge\n'
           'cinch_agent_ready %d\n# HELP cinch_agent_policy_info The policy version enforced.\n'
           '# TYPE cinch_agent_policy_info gauge\ncinch_agent_policy_info{version="%s"} 1\n')
SEL = "app.kubernetes.io/name%3Dcinch-control"


def healthy():
    objects, proxy = {}, {}
    for p in ("allowpolicies", "meshpolicies", "egresspolicies", "guardrailpolicies"):
        objects["/apis/apiextensions.k8s.io/v1/customresourcedefinitions/%s.cinch.dev" % p] = \
            crd(p)
    dep = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": meta("cinch-control", "cinch-system", generation=4,
                            labels={"app.kubernetes.io/name": "cinch-control"}),
           "spec": {"replicas": 2, "selector": {"matchLabels":
                                                {"app.kubernetes.io/name": "cinch-control"}}},
           "status": {"observedGeneration": 4, "replicas": 2, "readyReplicas": 2,
                      "updatedReplicas": 2, "availableReplicas": 2}}
    objects["/apis/apps/v1/namespaces/cinch-system/deployments/cinch-control"] = dep
    controls = [pod("cinch-system", "cinch-control-7d9f-%s" % s, "cinch-control", ip,
                    injected=False, labels={"app.kubernetes.io/name": "cinch-control"})
                for s, ip in (("a1", "10.1.9.1"), ("b2", "10.1.9.2"))]
    objects["/api/v1/namespaces/cinch-system/pods?labelSelector=" + SEL] = \
        lst("PodList", "v1", controls)
    for c in controls:
        proxy["/api/v1/namespaces/cinch-system/pods/%s:15014/proxy/ready"
              % c["metadata"]["name"]] = [200, "ready\n"]
        proxy["/api/v1/namespaces/cinch-system/pods/%s:15014/proxy/metrics"
              % c["metadata"]["name"]] = [200, CONTROL_METRICS % ("5f0c2e9a11b7d403", time.time() + 12.5 * 3600)]
    objects["/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"
            "cinch-injector"] = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": meta("cinch-injector", generation=1),
        "webhooks": [{"name": "inject.cinch.dev", "admissionReviewVersions": ["v1"],
                      "sideEffects": "None", "failurePolicy": "Fail",
                      "clientConfig": {"caBundle": b64file("ca.crt"),
                                       "service": {"namespace": "cinch-system",
                                                   "name": "cinch-control", "port": 443,
                                                   "path": "/inject"}}}]}
    mesh = [pod("shop", "web-5c7d-x1", "web", "10.1.0.1", labels={"app": "web"}),
            pod("shop", "api-6b8f-y2", "api", "10.1.0.2", labels={"app": "api"}),
            pod("bank", "db-4a2e-z3", "db", "10.1.1.3", labels={"app": "db"})]
    plain = pod("shop", "batch-1a2b-q9", "batch", "10.1.0.9", injected=False)
    objects["/api/v1/pods"] = lst("PodList", "v1", controls + mesh + [plain])
    for p in mesh:
        m = p["metadata"]
        proxy["/api/v1/namespaces/%s/pods/%s:15000/proxy/metrics" % (m["namespace"], m["name"])] \
            = [200, METRICS % (1, "g7")]
    for ns in ("shop", "bank"):
        objects["/api/v1/namespaces/%s/configmaps/cinch-trust-bundle" % ns] = {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": meta("cinch-trust-bundle", ns,
                             labels={"app.kubernetes.io/managed-by": "cinch-control"}),
            "data": dict(BUNDLE)}
    objects["/apis/cinch.dev/v1alpha1/allowpolicies"] = lst(
        "AllowPolicyList", "cinch.dev/v1alpha1", [
            cr("AllowPolicy", "shop", "web-to-api",
               {"selector": {"matchLabels": {"app": "api"}}, "ports": [8080],
                "from": [{"identities": ["spiffe://cluster.local/ns/shop/sa/web"]}]}),
            cr("AllowPolicy", "bank", "api-to-db",
               {"selector": {"workloads": ["db-4a2e-z3"]}, "ports": [5432],
                "from": [{"identities": ["spiffe://cluster.local/ns/shop/sa/api"]}]})])
    objects["/apis/cinch.dev/v1alpha1/meshpolicies"] = lst("MeshPolicyList",
                                                           "cinch.dev/v1alpha1", [])
    objects["/apis/cinch.dev/v1alpha1/egresspolicies"] = lst("EgressPolicyList",
                                                             "cinch.dev/v1alpha1", [])
    # a guardrail (cluster-scoped) on bank's namespace label: web never
    # reaches bank, whatever bank's AllowPolicies say
    guard = cr("GuardrailPolicy", None, "bank-from-shop",
               {"priority": 10, "subject": {"namespaceSelector": {"matchLabels": {"tier": "money"}}},
                "rules": [{"action": "deny", "ports": [9100],
                           "from": [{"serviceAccounts": ["shop/web"]}]}]})
    guard["metadata"]["labels"] = {"team": "platform"}
    objects["/apis/cinch.dev/v1alpha1/guardrailpolicies"] = lst(
        "GuardrailPolicyList", "cinch.dev/v1alpha1", [guard])
    # A built-in kind's list items come without apiVersion and kind (only
    # watch events' objects carry them): the list says what they are.
    objects["/api/v1/namespaces"] = lst("NamespaceList", "v1", [
        {"metadata": meta("bank", None, labels={"tier": "money",
                                                 "kubernetes.io/metadata.name": "bank"}),
         "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}])
    return {"objects": objects, "proxy": proxy}


def main():
    certs()
    srv = subprocess.Popen(["/usr/bin/python3", KUBE_API, "--cert", os.path.join(D, "srv.crt"),
                            "--key", os.path.join(D, "srv.key"), "--lifetime", "80"],
                           stdout=subprocess.PIPE, text=True)
    try:
        port = int(srv.stdout.readline().split()[1])
        run(port)
    finally:
        srv.kill()
        srv.wait()
        shutil.rmtree(D, ignore_errors=True)
    print("%d failed" % len(FAILED))
    return 1 if FAILED else 0


def run(port):
    ctx = ssl.create_default_context(cafile=os.path.join(D, "ca.crt"))

    def load(cluster):
        req = urllib.request.Request("https://127.0.0.1:%d/debug/cluster" % port,
                                     data=json.dumps(cluster).encode(), method="POST")
        urllib.request.urlopen(req, context=ctx, timeout=10).read()

    kc = os.path.join(D, "kubeconfig")
    with open(kc, "w") as f:
        f.write("""apiVersion: v1
kind: Config
preferences: {}
current-context: test
clusters:
- name: other
  cluster: {server: "https://192.0.2.1:6443", insecure-skip-tls-verify: true}
- name: kind-test
  cluster:
    server: https://127.0.0.1:%d
    certificate-authority-data: %s
contexts:
- name: test
  context: {cluster: kind-test, user: admin, namespace: shop}
users:
- name: admin
  user:
    token: control-token
""" % (port, b64file("ca.crt")))
    env = dict(os.environ, HOME=D)
    env.pop("KUBECONFIG", None)
    env.pop("KUBERNETES_SERVICE_HOST", None)

    def ctl(*args, kubeconfig=True, extra_env=None):
        e = dict(env, **(extra_env or {}))
        a = [CTL] + list(args) + (["--kubeconfig", kc] if kubeconfig else [])
        r = subprocess.run(a, capture_output=True, text=True, env=e, timeout=60)
        return r.returncode, r.stdout + r.stderr

    h = healthy()
    load(h)
    rc, out = ctl("check")
    check(rc == 0 and "FAIL" not in out, "check: a healthy mesh is all ok, exit 0", out)
    for want in ("ok    crd: allowpolicies.cinch.dev: Established",
                 "ok    control: 2 of 2 replicas ready and updated",
                 "ok    control replica: cinch-control-7d9f-a1: ready, configuration 5f0c2e9a11b7d403",
                 "ok    control replicas in sync: 2 replicas on 5f0c2e9a11b7d403",
                 "ok    webhook certificate: cinch-control-7d9f-a1: valid for 12 h more",
                 "ok    webhook: inject.cinch.dev: caBundle of 1 certificate, valid until",
                 "ok    agents: 3 ready, all enforcing version g7",
                 "ok    trust bundle: cinch-trust-bundle present and equal in 2 namespaces",
                 "ok    clock: "):
        check(want in out, "check says: " + want, out)

    rc, out = ctl("check", kubeconfig=False, extra_env={"KUBECONFIG": kc})
    check(rc == 0, "check finds the cluster through $KUBECONFIG", out)
    rc, out = ctl("check", kubeconfig=False)
    check(rc == 2 and "no kubeconfig" in out, "check without any cluster: exit 2, says why",
          out)

    def fault(what, edit, want):
        c = copy.deepcopy(h)
        edit(c["objects"], c["proxy"])
        load(c)
        rc, out = ctl("check")
        check(rc == 1 and want in out, "check FAILs on " + what, out)

    fault("a CRD not Established",
          lambda o, p: o.__setitem__(
              "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/meshpolicies.cinch.dev",
              crd("meshpolicies", established=False)),
          "FAIL  crd: meshpolicies.cinch.dev: not Established")
    wh = ("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"
          "cinch-injector")
    fault("an empty caBundle",
          lambda o, p: o[wh]["webhooks"][0]["clientConfig"].__setitem__("caBundle", ""),
          "FAIL  webhook: inject.cinch.dev: caBundle is empty")
    fault("a caBundle that is not PEM",
          lambda o, p: o[wh]["webhooks"][0]["clientConfig"].__setitem__(
              "caBundle", base64.b64encode(b"hello").decode()),
          "FAIL  webhook: inject.cinch.dev: caBundle holds no PEM certificate")
    fault("a control replica not ready",
          lambda o, p: p.__setitem__(
              "/api/v1/namespaces/cinch-system/pods/cinch-control-7d9f-b2:15014/proxy/ready",
              [503, "not ready\n"]),
          "FAIL  control replica: cinch-control-7d9f-b2: not ready")
    fault("control replicas on different configurations",
          lambda o, p: p.__setitem__(
              "/api/v1/namespaces/cinch-system/pods/cinch-control-7d9f-b2:15014/proxy/metrics",
              [200, CONTROL_METRICS % ("77aa01c3d2e4f5b6", time.time() + 12.5 * 3600)]),
          "FAIL  control replicas in sync: the replicas enforce different configurations")
    fault("a replica serving an expired webhook certificate",
          lambda o, p: p.__setitem__(
              "/api/v1/namespaces/cinch-system/pods/cinch-control-7d9f-b2:15014/proxy/metrics",
              [200, CONTROL_METRICS % ("5f0c2e9a11b7d403", time.time() - 60)]),
          "FAIL  webhook certificate: cinch-control-7d9f-b2: serves an expired one")
    fault("a control Deployment without a ready replica",
          lambda o, p: o["/apis/apps/v1/namespaces/cinch-system/deployments/cinch-control"]
          ["status"].__setitem__("readyReplicas", 0),
          "FAIL  control: no replica ready")
    fault("a namespace without the trust bundle",
          lambda o, p: o.pop("/api/v1/namespaces/bank/configmaps/cinch-trust-bundle"),
          "FAIL  trust bundle: bank/cinch-trust-bundle: HTTP 404")
    fault("a namespace with another trust bundle",
          lambda o, p: o["/api/v1/namespaces/bank/configmaps/cinch-trust-bundle"]["data"]
          .__setitem__("bundle.pem", "old"),
          "FAIL  trust bundle: bank/cinch-trust-bundle differs")
    fault("an agent not ready",
          lambda o, p: p.__setitem__(
              "/api/v1/namespaces/shop/pods/api-6b8f-y2:15000/proxy/metrics",
              [200, METRICS % (0, "g7")]),
          "FAIL  agent: shop/api-6b8f-y2: not ready")
    fault("an agent on an older version",
          lambda o, p: p.__setitem__(
              "/api/v1/namespaces/bank/pods/db-4a2e-z3:15000/proxy/metrics",
              [200, METRICS % (1, "g6")]),
          'FAIL  agent: bank/db-4a2e-z3: enforces version "g6", not g7')
    fault("an agent the proxy cannot reach",
          lambda o, p: p.pop("/api/v1/namespaces/bank/pods/db-4a2e-z3:15000/proxy/metrics"),
          "FAIL  agent: bank/db-4a2e-z3: not ready (HTTP 404")
    for off, rc_want, want in ((600, 1, "FAIL  clock: the API server's clock is +6"),
                               (-20, 0, "warn  clock: the API server's clock is -")):
        c = copy.deepcopy(h)
        c["date_offset"] = off
        load(c)
        rc, out = ctl("check")
        check(rc == rc_want and want in out, "check on a clock %+d s off: %s" % (off, want),
              out)
    h["date_offset"] = 0
    c = copy.deepcopy(h)
    c["objects"][wh]["webhooks"][0]["clientConfig"]["caBundle"] = b64file("wh-soon.crt")
    load(c)
    rc, out = ctl("check")
    check(rc == 0 and "warn  webhook: inject.cinch.dev: caBundle expires at" in out,
          "check warns (exit 0) on a caBundle expiring within 7 days", out)

    # status --cluster; an agent's metrics try to reach the terminal
    c = copy.deepcopy(h)
    c["proxy"]["/api/v1/namespaces/shop/pods/web-5c7d-x1:15000/proxy/metrics"] = \
        [200, METRICS % (1, "g7\x1b[2J\x1b]0;pwned\x07")]
    load(c)
    rc, out = ctl("status", "--cluster")
    check(rc == 0 and "3 injected pods, 3 agents ready" in out,
          "status --cluster: every injected pod, exit 0", out)
    check("shop/api-6b8f-y2" in out and "spiffe://cluster.local/ns/shop/sa/api" in out and
          "batch" not in out and "cinch-control-7d9f" not in out,
          "status --cluster: injected pods only, with their identities", out)
    check("\x1b" not in out and "\x07" not in out and "g7?[2J?]0;pwned?" in out,
          "status --cluster: an agent's escape sequence is shown as text", repr(out))
    rc, out = ctl("status", "--cluster", "--json")
    check(rc == 0 and len(json.loads(out)) == 3, "status --cluster --json: a JSON array", out)

    load(h)
    rc, out = ctl("policy", "explain", "--from-cluster", "--from",
                  "spiffe://cluster.local/ns/shop/sa/web", "--to", "shop/api-6b8f-y2",
                  "--port", "8080")
    check(rc == 0 and "rule:   shop/web-to-api" in out,
          "policy explain --from-cluster: web -> api allowed by the cluster's rule", out)
    rc, out = ctl("policy", "explain", "--from-cluster", "--from",
                  "spiffe://cluster.local/ns/shop/sa/web", "--to", "bank/db-4a2e-z3",
                  "--port", "5432")
    check(rc == 1, "policy explain --from-cluster: web -> db denied, exit 1", out)
    with open(os.path.join(D, "cases.yaml"), "w") as f:
        f.write("cases:\n"
                "- {name: api reaches db, from: 'spiffe://cluster.local/ns/shop/sa/api', "
                "to: bank/db-4a2e-z3, port: 5432, expect: allow}\n"
                "- {name: web does not, from: 'spiffe://cluster.local/ns/shop/sa/web', "
                "to: bank/db-4a2e-z3, port: 5432, expect: deny}\n")
    rc, out = ctl("policy", "test", os.path.join(D, "cases.yaml"), "--from-cluster")
    check(rc == 0 and "2 passed, 0 failed" in out, "policy test --from-cluster", out)
    # whatif: the agents' log against the cluster's own policy (nothing
    # changes), then against a proposal from a file, replayed at the
    # cluster's pods
    line = ('{"direction":"inbound","src":"[::ffff:%s]:5%d","dst":"%s","local_id":"",'
            '"peer_id":"%s","verdict":"%s","rule":"%s","reason":"","end":"%s",'
            '"event":"connection"}\n')
    with open(os.path.join(D, "agents.log"), "w") as f:
        for i in range(3):
            f.write(line % ("10.1.0.1", i, "10.1.0.2:8080", "spiffe://cluster.local/ns/shop/sa/web",
                            "allow", "shop/web-to-api#0", "closed"))
        f.write(line % ("10.1.0.1", 9, "10.1.1.3:5432", "spiffe://cluster.local/ns/shop/sa/web",
                        "deny", "", "denied"))
    with open(os.path.join(D, "proposal.yaml"), "w") as f:
        f.write("apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\n"
                "metadata: {name: web-to-api, namespace: shop}\n"
                "spec: {selector: {matchLabels: {app: api}}, ports: [8443],\n"
                "       from: [{identities: ['spiffe://cluster.local/ns/shop/sa/web']}]}\n")
    rc, out = ctl("policy", "whatif", "--flows", os.path.join(D, "agents.log"), "--from-cluster")
    check(rc == 0 and "no verdict would change" in out and
          "4 connections in 1 file: 4 replayed" in out,
          "policy whatif --from-cluster: the cluster's policy changes nothing", out)
    rc, out = ctl("policy", "whatif", "--flows", os.path.join(D, "agents.log"), "--policy",
                  os.path.join(D, "proposal.yaml"), "--from-cluster")
    check(rc == 1 and "spiffe://cluster.local/ns/shop/sa/web -> shop/api-6b8f-y2:8080  "
          "3 connections" in out and "allow by shop/web-to-api#0 -> deny" in out,
          "policy whatif --policy FILE --from-cluster: the proposal at the cluster's pods", out)
    rc, out = ctl("policy", "explain", "--from-cluster", "--from",
                  "spiffe://cluster.local/ns/shop/sa/web", "--to", "bank/db-4a2e-z3",
                  "--port", "9100")
    check(rc == 1 and "rule:   GuardrailPolicy/bank-from-shop#0" in out,
          "policy explain --from-cluster: the cluster's guardrail (by namespace label) named", out)
    rc, out = ctl("policy", "check", "--from-cluster")
    check(rc == 0 and "2 AllowPolicies, 0 MeshPolicies, 0 EgressPolicies, 3 Workloads" in out,
          "policy check --from-cluster: the CRs and the injected pods", out)
    check("warning: AllowPolicy bank/api-to-db selects workloads by name" in out and
          "web-to-api selects" not in out,
          "policy check --from-cluster: a workloads: selector against pods is warned of", out)
    rc, out = ctl("policy", "lint", "--from-cluster")
    check(rc == 1 and "/proc/" not in out and "1 finding" in out and
          "workload shop/web-5c7d-x1: no AllowPolicy selects it" in out,
          "policy lint --from-cluster: the web pod no rule selects", out)
    c = copy.deepcopy(h)
    c["objects"]["/apis/cinch.dev/v1alpha1/allowpolicies"]["items"][0]["spec"]["ports"] = \
        [70000]
    load(c)
    rc, out = ctl("policy", "check", "--from-cluster")
    check(rc == 1 and out.startswith("cluster:policies:") and "70000" in out,
          "policy check --from-cluster: an invalid CR is named as the cluster's", out)


if __name__ == "__main__":
    sys.exit(main())
