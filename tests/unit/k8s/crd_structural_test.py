"""Would a real API server accept our CRDs? (issue #14)

There is no API server here, so tests/lib/crdschema.py encodes the rules
kube-apiserver applies to a CustomResourceDefinition (structural schemas,
forbidden keywords, int-or-string, metadata, defaults, names), read from
k8s.io/apiextensions-apiserver. This test
  1. proves the checker: every entry of fixtures/crd_schemas.yaml is
     refused with the field path and message the API server gives (or
     accepted, where it says so), the pre-#14 ports schema among them;
  2. checks every CRD that `kubectl kustomize deploy/k8s` renders, and
     every file in deploy/k8s/crds, has no error;
  3. checks that the int-or-string ports keep their meaning after the
     move of range and pattern beside anyOf: with the API server's
     type-dependent keywords (minimum applies to numbers, pattern to
     strings) 1, 65535, "80", "8000-8080" pass and 0, 65536, "0-1", true
     fail; port names (IANA_SVC_NAME) pass in AllowPolicy and
     GuardrailPolicy, not in EgressPolicy, and "HTTP", "a--b" fail.

usage: crd_structural_test.py SRC_DIR
Exit 0 when every check passed, 1 otherwise, 77 when kubectl is missing.
"""
import glob
import os
import shutil
import subprocess
import sys

import jsonschema
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lib"))
import crdschema  # noqa: E402

failures = 0
checks = 0


def check(cond, what):
    global failures, checks
    checks += 1
    print(("ok: " if cond else "FAIL: ") + what)
    if not cond:
        failures += 1


def fixture_crd(entry):
    if "crd" in entry:
        return entry["crd"]
    version = {"name": "v1alpha1", "served": True, "storage": True,
               "schema": {"openAPIV3Schema": entry["schema"]}}
    if entry.get("status"):
        version["subresources"] = {"status": {}}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "things.cinch.dev"},
            "spec": {"group": "cinch.dev", "scope": "Namespaced",
                     "names": {"kind": "Thing", "listKind": "ThingList", "plural": "things"},
                     "versions": [version]}}


def check_fixtures(path):
    with open(path) as f:
        entries = yaml.safe_load(f)
    for e in entries:
        errs = crdschema.check_crd(fixture_crd(e))
        if e["expect"] is None:
            check(errs == [], f"accepted: {e['name']} {errs if errs else ''}")
        else:
            check(any(e["expect"] in x for x in errs),
                  f"refused: {e['name']} -> {e['expect']!r} (got {errs})")


def check_ours(src):
    docs = []
    for f in sorted(glob.glob(os.path.join(src, "deploy/k8s/crds/*.yaml"))):
        with open(f) as fh:
            docs += [(f, d) for d in yaml.safe_load_all(fh) if d]
    out = subprocess.run(["kubectl", "kustomize", os.path.join(src, "deploy/k8s")],
                         check=True, capture_output=True, text=True).stdout
    rendered = [d for d in yaml.safe_load_all(out) if d and d.get("kind") == "CustomResourceDefinition"]
    check(len(rendered) == len(docs) and len(docs) >= 3,
          f"kustomize renders every CRD file ({len(rendered)} of {len(docs)})")
    for name, d in docs + [("kustomize", d) for d in rendered]:
        errs = crdschema.check_crd(d)
        check(errs == [], f"{os.path.basename(name)} {d['metadata']['name']}: API server accepts it {errs}")
    return [d for _, d in docs]


def port_schema(crd):
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    if "ports" in spec["properties"]:
        return spec["properties"]["ports"]["items"]
    if "rules" in spec["properties"]:
        return spec["properties"]["rules"]["items"]["properties"]["ports"]["items"]
    to = spec["properties"]["to"]["items"]["properties"]
    return to["ports"]["items"]


def check_port_meaning(crds):
    for crd in crds:
        kind = crd["spec"]["names"]["kind"]
        try:
            items = port_schema(crd)
        except KeyError:
            continue
        v = jsonschema.Draft4Validator(crdschema.prune_schema(items))
        for good in (1, 80, 65535, "80", "8000-8080", "1-65535"):
            check(v.is_valid(good), f"{kind} ports accept {good!r}")
        for bad in (0, 65536, -1, "0-1", "80-", "65536", True, 1.5, "HTTP", "a--b", "-http",
                    "http-", "abcdefghijklmnop", "h_t", ""):
            check(not v.is_valid(bad), f"{kind} ports refuse {bad!r}")
        # named ports: a workload's port, so not an EgressPolicy's
        named = kind != "EgressPolicy"
        for name in ("http", "a-1-b-2-c-3-d45", "h2c", "9p"):
            check(v.is_valid(name) == named, f"{kind} ports {'accept' if named else 'refuse'} {name!r}")


def main():
    src = sys.argv[1]
    if not shutil.which("kubectl"):
        print("SKIP: kubectl missing")
        return 77
    check_fixtures(os.path.join(os.path.dirname(__file__), "fixtures", "crd_schemas.yaml"))
    crds = check_ours(src)
    check_port_meaning(crds)
    print(f"{checks - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
