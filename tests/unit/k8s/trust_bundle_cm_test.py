"""trust_bundle_cm_test: the trust bundle reaches every meshed namespace
with no step by the operator (issue #14). A real cinch-control
(--kube-api, trust-bundle ConfigMaps on by default) against
tests/lib/kube_api.py in live mode, which serves namespaces and
ConfigMaps with the API server's list/watch, create (201, 409
AlreadyExists), update (409 Conflict on a stale resourceVersion) and
Status formats; no cluster runs here.

Namespaces: cxg-a and cxg-b labelled cinch.dev/inject=enabled (the label
the webhook's namespaceSelector matches), cxg-c unlabelled, cxg-d
labelled "disabled". cxg-b already holds a ConfigMap cinch-trust-bundle
that is not ours (no app.kubernetes.io/managed-by=cinch-control); cxg-a
an unrelated ConfigMap.

Checks, each of which fails when its mechanism is taken out:
  - cxg-a gets cinch-trust-bundle, labelled as ours, bundle.pem = the
    control's bundle; cxg-c and cxg-d get nothing;
  - the foreign ConfigMap in cxg-b is left exactly as it was (same
    resourceVersion, same data) and reported: a
    trust_bundle_configmap_foreign log event naming cxg-b, and
    cinch_control_trust_bundle_foreign_configmaps 1; the unrelated
    ConfigMap of cxg-a is untouched;
  - labelling cxg-c later gives it the ConfigMap (namespace watch);
  - ours edited by someone is put back; ours deleted is created again;
  - root rotation through the admin socket (as `cinchctl ca rotate
    prepare`): every ConfigMap of ours follows to the two-root bundle,
    the foreign one still untouched;
  - two replicas sharing one CA (--ca-cert, as deploy/k8s runs them)
    against the same API server: the ConfigMaps converge to their one
    bundle, stop changing, and a race costs at most a 409.

usage: trust_bundle_cm_test.py <cinch-control>
"""
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))
from kubecontrol import (Checks, Control, Kube, configmap, namespace, test_ca,  # noqa: E402
                         wait_for)

CONTROL = sys.argv[1]
NAME = "cinch-trust-bundle"
OURS = {"app.kubernetes.io/managed-by": "cinch-control"}
check = Checks()


def ours(kube, ns, bundle):
    cm = kube.get("configmaps", ns, NAME)
    return (cm and (cm["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") ==
            "cinch-control" and cm.get("data", {}).get("bundle.pem") == bundle and cm)


def run(kube, ctl):
    bundle = ctl.bundle_pem()
    foreign = kube.get("configmaps", "cxg-b", NAME)
    check(wait_for(lambda: ours(kube, "cxg-a", bundle)),
          "cxg-a gets the ConfigMap with the bundle (%s)" % kube.get("configmaps", "cxg-a", NAME))
    check(wait_for(lambda: ctl.find("trust_bundle_configmap_foreign", namespace="cxg-b")),
          "the foreign ConfigMap in cxg-b is reported")
    check.eq(kube.get("configmaps", "cxg-b", NAME), foreign,
             "the foreign ConfigMap is left exactly as it was")
    check.eq(ctl.metrics().get("cinch_control_trust_bundle_foreign_configmaps"), 1.0,
             "foreign ConfigMaps metric")
    check.eq(kube.get("configmaps", "cxg-c", NAME), None, "nothing in unlabelled cxg-c")
    check.eq(kube.get("configmaps", "cxg-d", NAME), None, "nothing in cxg-d (disabled)")
    check.eq(kube.get("configmaps", "cxg-a", "app-settings")["data"], {"k": "v"},
             "an unrelated ConfigMap is untouched")

    kube.apply("namespaces", "MODIFIED", namespace("cxg-c", "enabled"))
    check(wait_for(lambda: ours(kube, "cxg-c", bundle)), "cxg-c labelled later gets it")

    cm = kube.get("configmaps", "cxg-a", NAME)
    cm["data"]["bundle.pem"] = "tampered"
    kube.apply("configmaps", "MODIFIED", cm)
    check(wait_for(lambda: ours(kube, "cxg-a", bundle)), "an edited bundle is put back")
    kube.apply("configmaps", "DELETED", kube.get("configmaps", "cxg-a", NAME))
    check(wait_for(lambda: ours(kube, "cxg-a", bundle)), "a deleted ConfigMap is created again")

    r = ctl.ctl({"op": "ca_rotate", "step": "prepare"})
    check("error" not in r, "ca_rotate prepare: %s" % r.get("error"))
    rotated = ctl.bundle_pem()
    check(rotated.count("BEGIN CERTIFICATE") == 2 and rotated != bundle, "bundle has two roots")
    for ns in ("cxg-a", "cxg-c"):
        check(wait_for(lambda: ours(kube, ns, rotated)), "%s follows the rotation" % ns)
    check.eq(kube.get("configmaps", "cxg-b", NAME), foreign,
             "the foreign ConfigMap is still untouched after the rotation")
    writes = [r for r in kube.requests() if r.split(" ")[0] in ("PUT", "POST", "PATCH")
              and "/configmaps" in r]
    check(not [w for w in writes if "/cxg-b/" in w or "app-settings" in w],
          "no write ever went to cxg-b's ConfigMap or the unrelated one: %s" % writes)
    check.eq(ctl.events("trust_bundle_configmap_write_failed"), [],
             "no write failed (one replica: no conflicts)")


def ha(tmp):
    """Two replicas sharing a CA (--ca-cert, as deploy/k8s runs them) keep
    the same ConfigMaps: they converge, agree, and stop writing."""
    pki = test_ca(tmp, "mesh", td_uri="spiffe://cluster.local")
    nss = ["cxg-h%d" % i for i in range(4)]
    kube = Kube(tmp, {"namespaces": [namespace(n, "enabled") for n in nss]})
    ctls = []
    try:
        for r in ("a", "b"):
            ctls.append(Control(CONTROL, os.path.join(tmp, "state-" + r),
                                ["--webhook-port", "0", "--kube-sources", "off",
                                 "--ca-cert", pki["ca"], "--ca-key", pki["ca_key"]] +
                                kube.flags()))
        bundle = ctls[0].bundle_pem()
        check.eq(ctls[1].bundle_pem(), bundle, "HA: both replicas have one bundle")
        check(wait_for(lambda: all(ours(kube, n, bundle) for n in nss)),
              "HA: every labelled namespace gets the ConfigMap")
        rvs = {n: kube.get("configmaps", n, NAME)["metadata"]["resourceVersion"] for n in nss}
        time.sleep(2)
        check.eq({n: kube.get("configmaps", n, NAME)["metadata"]["resourceVersion"]
                  for n in nss}, rvs, "HA: the replicas do not keep rewriting them")
        fails = [e for c in ctls for e in c.events("trust_bundle_configmap_write_failed")]
        check(all(e.get("http_status") == 409 for e in fails),
              "HA: a race between replicas only ever costs a 409: %s" % fails)
    finally:
        for c in ctls:
            check.eq(c.stop(), 0, "HA: replica stops cleanly")
        kube.stop()


def main():
    objects = {
        "namespaces": [namespace("cxg-a", "enabled"), namespace("cxg-b", "enabled"),
                       namespace("cxg-c"), namespace("cxg-d", "disabled")],
        "configmaps": [configmap("cxg-b", NAME, {"bundle.pem": "someone else's"}),
                       configmap("cxg-a", "app-settings", {"k": "v"}, OURS)],
    }
    with tempfile.TemporaryDirectory(prefix="cxg-bundlecm-") as tmp:
        kube = Kube(tmp, objects)
        try:
            ctl = Control(CONTROL, os.path.join(tmp, "state"),
                          ["--webhook-port", "0", "--kube-sources", "off"] + kube.flags())
            try:
                run(kube, ctl)
            finally:
                check.eq(ctl.stop(), 0, "control stops cleanly")
        finally:
            kube.stop()
        os.mkdir(os.path.join(tmp, "ha"))
        ha(os.path.join(tmp, "ha"))
    return check.done()


if __name__ == "__main__":
    sys.exit(main())
