"""Manifest tests: what `kubectl apply -k deploy/k8s` would send to a cluster.

Renders deploy/k8s and deploy/k8s/examples with `kubectl kustomize` (the
same kustomize kubectl applies), then checks:
  - the control plane objects hang together (selectors, ports, webhook
    target, RBAC for what control/k8s reads and writes, HA);
  - the CRDs serve the group, versions and plurals control/k8s watches;
  - every example policy validates against its CRD's openAPIV3Schema, and
    every document under fixtures/bad-policies fails it at the field path
    its `# expect:` line names.
Schema validation is done with python3-jsonschema after applying what the
API server does with `fieldValidation=Strict` (kubectl's default): an
unknown field is an error. With --cinchctl, the same documents go through
`cinchctl policy check`, so the CRD schema and the policy library agree.

usage: manifests_test.py SRC_DIR [--cinchctl PATH] [--control PATH]
Exit 0 when every check passed, 1 otherwise, 77 when kubectl is missing.
"""
import copy
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import jsonschema
import yaml

failures = 0
checks = 0


def check(cond, what):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print("FAIL:", what)


def kustomize(path):
    out = subprocess.run(["kubectl", "kustomize", path], check=True,
                         capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def strict(schema):
    """A CRD structural schema as JSON Schema with strict field validation."""
    s = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if "properties" in s:
        s["properties"] = {k: strict(v) for k, v in s["properties"].items()}
        if ("additionalProperties" not in s
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            s["additionalProperties"] = False
    for key in ("items", "additionalProperties"):
        if isinstance(s.get(key), dict):
            s[key] = strict(s[key])
    if "anyOf" in s:
        s["anyOf"] = [strict(x) for x in s["anyOf"]]
    return s


def field_path(err):
    """jsonschema's error location as a Kubernetes field path."""
    out = ""
    for p in err.absolute_path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        out += ("." if out else "") + ",".join(extra)
    return out


def validate(validators, doc):
    """Field paths of the schema errors of one policy document."""
    v = validators.get(doc.get("kind"))
    if v is None:
        return ["kind: no CRD serves " + str(doc.get("kind"))]
    return [field_path(e) for e in v.iter_errors(doc)]


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def check_control_plane(docs):
    deps = by_kind(docs, "Deployment")
    check(len(deps) == 1, "one control Deployment")
    dep = deps[0]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    check(dep["spec"]["replicas"] >= 2, "control runs 2+ replicas")
    check(dep["spec"]["selector"]["matchLabels"].items() <= pod_labels.items(),
          "Deployment selector matches its pods")
    pod = dep["spec"]["template"]["spec"]
    check(pod["securityContext"].get("runAsNonRoot") is True, "control runs as non-root")
    secrets = [v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v]
    args = [a for c in pod["containers"] for a in c.get("args", [])]
    check(not secrets and not any(a.startswith(("--ca-cert", "--ca-key")) for a in args),
          "no hand-made CA Secret mounted, no --ca-cert/--ca-key")
    conf = json.loads([d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] ==
                       "cinch-control"][0]["data"]["control.json"])
    check(conf.get("ca-secret") == "cinch-system/cinch-ca",
          "replicas share the CA the control keeps in the Secret cinch-system/cinch-ca")
    ports = {p["name"]: p["containerPort"] for c in pod["containers"] for p in c["ports"]}
    check(ports.get("grpc") == 15012 and ports.get("webhook") == 15017,
          "container serves gRPC on 15012 and the webhook on 15017")

    pdbs = by_kind(docs, "PodDisruptionBudget")
    check(len(pdbs) == 1 and pdbs[0]["spec"]["selector"]["matchLabels"].items()
          <= pod_labels.items(), "PodDisruptionBudget covers the control pods")

    svc = by_kind(docs, "Service")[0]
    check(svc["spec"]["selector"].items() <= pod_labels.items(), "Service selects control pods")
    svc_ports = {p["port"]: p.get("targetPort") for p in svc["spec"]["ports"]}
    check(svc_ports.get(15012) in (15012, "grpc"), "Service exposes gRPC 15012")

    hook = by_kind(docs, "MutatingWebhookConfiguration")[0]["webhooks"][0]
    ref = hook["clientConfig"]["service"]
    check(ref["name"] == svc["metadata"]["name"] and
          ref["namespace"] == svc["metadata"]["namespace"] and ref["path"] == "/inject",
          "webhook calls the control Service at /inject")
    target = svc_ports.get(ref.get("port", 443))
    check(target in (15017, "webhook"), "webhook Service port reaches container port 15017")
    check(hook["namespaceSelector"]["matchLabels"] == {"cinch.dev/inject": "enabled"},
          "namespaces opt in with cinch.dev/inject=enabled")
    check(hook["failurePolicy"] == "Fail", "webhook fails closed")
    check(hook["sideEffects"] == "None" and hook["admissionReviewVersions"] == ["v1"],
          "webhook is side-effect free and speaks admission.k8s.io/v1")

    rules = [r for cr in by_kind(docs, "ClusterRole") for r in cr["rules"]]

    def allowed(group, resource, verb):
        return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
                   and "resourceNames" not in r for r in rules)
    for res, verb in (("pods", "watch"), ("pods", "list")):
        check(allowed("", res, verb), f"RBAC: {verb} {res}")
    check(allowed("authentication.k8s.io", "tokenreviews", "create"), "RBAC: create tokenreviews")
    check(not allowed("", "secrets", "get") and not allowed("", "secrets", "list"),
          "RBAC: no cluster-wide read of Secrets")
    check(not any("*" in r["verbs"] or "*" in r["resources"] for r in rules),
          "RBAC: no wildcards")
    for plural in ("allowpolicies", "meshpolicies", "egresspolicies", "guardrailpolicies"):
        check(allowed("cinch.dev", plural, "watch"), f"RBAC: watch {plural}")
        check(allowed("cinch.dev", plural + "/status", "patch"), f"RBAC: patch {plural}/status")


def check_crds(docs):
    crds = {c["spec"]["names"]["kind"]: c for c in by_kind(docs, "CustomResourceDefinition")}
    validators = {}
    for kind, plural in (("AllowPolicy", "allowpolicies"), ("MeshPolicy", "meshpolicies"),
                         ("EgressPolicy", "egresspolicies"),
                         ("GuardrailPolicy", "guardrailpolicies")):
        crd = crds.get(kind)
        check(crd is not None, f"CRD for {kind}")
        if crd is None:
            continue
        spec = crd["spec"]
        check(spec["group"] == "cinch.dev" and spec["names"]["plural"] == plural and
              crd["metadata"]["name"] == f"{plural}.cinch.dev", f"{kind}: group and plural")
        vers = [v for v in spec["versions"] if v["name"] == "v1alpha1"]
        check(len(vers) == 1 and vers[0]["served"] and vers[0]["storage"],
              f"{kind}: v1alpha1 served and stored")
        check("status" in vers[0].get("subresources", {}), f"{kind}: status subresource")
        schema = strict(vers[0]["schema"]["openAPIV3Schema"])
        jsonschema.Draft7Validator.check_schema(schema)
        validators[kind] = jsonschema.Draft7Validator(schema)
    return validators


def cinchctl_check(cinchctl, path):
    r = subprocess.run([cinchctl, "policy", "check", path], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def check_policies(src, validators, cinchctl):
    examples = [d for d in kustomize(os.path.join(src, "deploy/k8s/examples"))
                if d["apiVersion"].startswith("cinch.dev/")]
    check(len(examples) >= 5, "examples hold the shop policies")
    for d in examples:
        errs = validate(validators, d)
        check(not errs, f"example {d['kind']}/{d['metadata']['name']} validates: {errs}")

    bad_dir = os.path.join(src, "tests/unit/k8s/fixtures/bad-policies")
    bad = sorted(glob.glob(os.path.join(bad_dir, "*.yaml")))
    check(len(bad) >= 5, "bad policy fixtures present")
    for path in bad:
        with open(path) as f:
            text = f.read()
        expect = text.splitlines()[0].removeprefix("# expect:").strip()
        errs = validate(validators, yaml.safe_load(text))
        name = os.path.basename(path)
        check(any(e.startswith(expect) for e in errs),
              f"{name}: schema refuses it at {expect} (got {errs})")
        if cinchctl:
            rc, out = cinchctl_check(cinchctl, path)
            check(rc != 0 and expect.split("[")[0] in out,
                  f"{name}: cinchctl policy check refuses it at {expect} (rc {rc}: {out.strip()})")

    if cinchctl:
        with tempfile.TemporaryDirectory() as tmp:
            for d in examples:
                with open(os.path.join(tmp, f"{d['kind']}-{d['metadata']['name']}.yaml"), "w") as f:
                    yaml.safe_dump(d, f)
            rc, out = cinchctl_check(cinchctl, tmp)
            check(rc == 0, f"cinchctl policy check accepts the examples (rc {rc}: {out.strip()})")


def check_example_flows(src, cinchctl):
    """The example apps under the example policies, as a cluster would run
    them: one Workload per pod the Deployments make, named like the pods a
    ReplicaSet creates (so a policy that named pods would not match), with
    the pod template's labels and service account. web -> api allowed,
    web -> db refused, api -> db allowed."""
    docs = kustomize(os.path.join(src, "deploy/k8s/examples"))
    pods, ip = [], 10
    for dep in by_kind(docs, "Deployment"):
        tmpl = dep["spec"]["template"]
        for i in range(dep["spec"].get("replicas", 1)):
            ip += 1
            pods.append({"apiVersion": "cinch.dev/v1alpha1", "kind": "Workload",
                         "metadata": {"name": f"{dep['metadata']['name']}-6d4cf56db6-x{i}q7z",
                                      "namespace": dep["metadata"]["namespace"],
                                      "labels": tmpl["metadata"]["labels"]},
                         "spec": {"serviceAccount": tmpl["spec"]["serviceAccountName"],
                                  "addresses": [f"10.244.1.{ip}"]}})
    by_app = {p["metadata"]["labels"]["app"]: p for p in pods}
    check(set(by_app) == {"web", "api", "db"}, "examples run web, api and db")
    with tempfile.TemporaryDirectory() as tmp:
        pol = os.path.join(tmp, "policy")
        os.mkdir(pol)
        for d in docs:
            if d["apiVersion"].startswith("cinch.dev/"):
                with open(os.path.join(pol, f"{d['kind']}-{d['metadata']['name']}.yaml"), "w") as f:
                    yaml.safe_dump(d, f)
        wl = os.path.join(tmp, "workloads.yaml")
        with open(wl, "w") as f:
            yaml.safe_dump_all(pods, f)
        for src_app, dst_app, port, want in (("web", "api", 8080, 0), ("web", "db", 5432, 1),
                                             ("api", "db", 5432, 0)):
            caller = f"spiffe://cluster.local/ns/shop/sa/{src_app}"
            dst = by_app[dst_app]["metadata"]
            r = subprocess.run([cinchctl, "policy", "explain", "--policy", pol, "--workloads", wl,
                                "--from", caller, "--to", f"{dst['namespace']}/{dst['name']}",
                                "--port", str(port)], capture_output=True, text=True)
            check(r.returncode == want, f"examples: {src_app} -> {dst_app}:{port} "
                  f"{'allowed' if want == 0 else 'refused'} (rc {r.returncode}: {r.stdout.strip()})")


def check_control_config(docs, control):
    """The ConfigMap's control.json is a configuration cinch-control accepts,
    with the flags the Deployment adds."""
    cm = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == "cinch-control"]
    check(len(cm) == 1, "control ConfigMap present")
    dep = by_kind(docs, "Deployment")[0]
    container = dep["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    # The kubelet expands $(VAR) in args from the container's env.
    args = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), a)
            for a in container["args"]]
    check(not any("$(" in a for a in args), f"every $(VAR) in the control's args is set: {args}")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "control.json")
        with open(path, "w") as f:
            f.write(cm[0]["data"]["control.json"])
        argv = [control] + [a for a in args if not a.startswith("--config")]
        r = subprocess.run(argv + ["--config", path, "--check-config"], capture_output=True,
                           text=True)
        check(r.returncode == 0, "cinch-control accepts the ConfigMap and the Deployment's "
              "flags: %s" % r.stderr.strip())


def images(docs):
    pod = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]
    control = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in control.get("env", [])}
    agent = [c["image"] for c in pod.get("initContainers", []) if c["name"] == "agent-image"]
    return control["image"], (agent or [None])[0], env.get("CINCH_AGENT_IMAGE")


def check_images(src, docs):
    """The images `make images` tags (the project version) are the ones the
    manifests run and the injector injects; the registry is kustomize's
    `images:` setting and moves both."""
    with open(os.path.join(src, "CMakeLists.txt")) as f:
        version = re.search(r"project\(cinch VERSION ([0-9.]+)", f.read()).group(1)
    control, agent, injected = images(docs)
    check(control == f"ghcr.io/cinch-mesh/cinch-control:{version}", f"control image {control}")
    check(agent == f"ghcr.io/cinch-mesh/cinch-agent:{version}", f"agent image {agent}")
    check(injected == agent, f"the injector's agent image is the checked one: {injected}")
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(tmp, "k8s")
        shutil.copytree(os.path.join(src, "deploy/k8s"), base)
        kfile = os.path.join(base, "kustomization.yaml")
        with open(kfile) as f:
            k = f.read().replace("newName: ghcr.io/cinch-mesh/", "newName: registry.test/mesh/")
        with open(kfile, "w") as f:
            f.write(k)
        control, agent, injected = images(kustomize(base))
    check(control == f"registry.test/mesh/cinch-control:{version}" and
          agent == injected == f"registry.test/mesh/cinch-agent:{version}",
          f"kustomize's images setting moves all three: {control} {agent} {injected}")


def main():
    src = sys.argv[1]
    opts = dict(zip(sys.argv[2::2], sys.argv[3::2]))
    cinchctl = opts.get("--cinchctl")
    if shutil.which("kubectl") is None:
        print("SKIP: kubectl not installed")
        return 77
    docs = kustomize(os.path.join(src, "deploy/k8s"))
    check_control_plane(docs)
    check_images(src, docs)
    validators = check_crds(docs)
    if opts.get("--control"):
        check_control_config(docs, opts["--control"])
    check_policies(src, validators, cinchctl)
    if cinchctl:
        check_example_flows(src, cinchctl)
    print(f"{checks - failures}/{checks} checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
