"""A Namespace's labels reaching agents' live snapshots, end to end: a real
cinch-control (--kube-api) against tests/lib/kube_api.py in live mode,
the destination's Watch read by a stock gRPC client (python3-grpcio).

Policy (issue #18): shop's AllowPolicy admits callers of the namespaces
labelled team=shop (namespaceSelector); the GuardrailPolicy no-dev, whose
subject is the namespaces labelled env=prod (shop, labelled so when the
control lists it: only the list says so), denies callers of namespaces
labelled env=dev.
The caller is a pod of namespace front (SA web), the destination api-1 in
shop. The Namespace objects have the shape the API server gives them
(uid, resourceVersion, creationTimestamp, the automatic
kubernetes.io/metadata.name label, spec.finalizers, status.phase; list
items without apiVersion/kind, as built-in kinds are listed), and they
change the way a client changes them: PATCH (merge patch) and PUT (with
the resourceVersion read) on /api/v1/namespaces/front, DELETE of it, so
the server emits MODIFIED events with new resourceVersions, then the
DELETED one when the namespace controller has finalized it.

Checked on api-1's snapshots (each wait a bounded next_snap), by its rules
and by evaluating them as the agent does (rules in order, guardrails
first, first match decides, PASS skips to the namespace's rules):
front unlabelled is not admitted; team=shop admits it (a namespace source
"front" in shop's rule); env=dev then puts front in no-dev's deny rule
and the verdict is deny; env dropped by an event lost to compaction
comes back with the relist after 410 Gone; labels removed (PUT): admission revoked; the
namespace deleted (Terminating, then DELETED): no crash, no admission.
Why by Watch and not by the policy library alone: the gap was the path
from the API server's watch to the agent (kwatch, kview, crdsource, the
compile and the per-workload slice), which only a live run covers.

usage: control_nslabel_test.py BIN_DIR PROTO_DIR KUBE_API_PY
"""
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request

import grpc
from cryptography.hazmat.primitives.asymmetric import ec

from control_grpc_test import TD, Control, call, check, cinchctl, csr_for, der_to_pem, \
    pem_key, stubs, token
import control_grpc_test as base
from control_config_test import Stream
from control_kube_test import MESH, Kube, ca_pair, next_snap, pod, ready, wait_for

FRONT = "spiffe://%s/ns/front/sa/web" % TD
PORT = 8080


def namespace(name, labels):
    """A Namespace as the API server stores it (it adds the name label)."""
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "uid": "u-ns-" + name,
                         "creationTimestamp": "2026-01-01T00:00:00Z",
                         "labels": dict(labels, **{"kubernetes.io/metadata.name": name})},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def in_ns(obj, ns):
    obj["metadata"]["namespace"] = ns
    return obj


ALLOW = {"apiVersion": "cinch.dev/v1alpha1", "kind": "AllowPolicy",
         "metadata": {"name": "api-from-team", "namespace": "shop", "uid": "u-team",
                      "generation": 1},
         "spec": {"selector": {"matchLabels": {"app": "api"}}, "ports": [PORT],
                  "from": [{"namespaceSelector": {"matchLabels": {"team": "shop"}}}]}}
GUARD = {"apiVersion": "cinch.dev/v1alpha1", "kind": "GuardrailPolicy",
         "metadata": {"name": "no-dev", "uid": "u-no-dev", "generation": 1},
         "spec": {"priority": 10,
                  "subject": {"namespaceSelector": {"matchLabels": {"env": "prod"}}},
                  "rules": [{"action": "deny", "from": [{"namespaceSelector": {
                      "matchLabels": {"env": "dev"}}}]}]}}


def rest(kube, method, path, body=None, ctype="application/json"):
    """A request as a client of the API server makes it: (code, JSON)."""
    r = urllib.request.Request(kube.url + path, method=method,
                               data=json.dumps(body).encode() if body is not None else None,
                               headers={"Content-Type": ctype,
                                        "Authorization": "Bearer control-token"})
    try:
        with urllib.request.urlopen(r, context=kube.ctx, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def source_matches(s, ident):
    kind = s.WhichOneof("kind")
    if kind == "identity":
        return s.identity == ident or (s.identity.endswith("/*") and
                                       ident.startswith(s.identity[:-1]) and
                                       "/" not in ident[len(s.identity) - 1:])
    if kind == "namespace":
        return ident.startswith("spiffe://%s/ns/%s/sa/" % (TD, s.namespace))
    return kind == "any_caller"


def verdict(snap, cpb, ident, port):
    """What api-1's agent decides for an mTLS caller `ident` on `port`:
    (action name, rule id), or ("default", "")."""
    skip_guardrails = False
    for r in snap.inbound:
        if r.guardrail and skip_guardrails:
            continue
        if r.ports and not any(p.first <= port <= p.last for p in r.ports):
            continue
        if not any(source_matches(s, ident) for s in r.sources):
            continue
        if r.action == cpb.RULE_ACTION_PASS:
            skip_guardrails = True
            continue
        return ("deny" if r.action == cpb.RULE_ACTION_DENY else "allow"), r.id
    return "default", ""


def until(st, cpb, pred, timeout=15):
    """api-1's snapshots until one satisfies pred, at most `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = next_snap(st, cpb, max(0.1, deadline - time.monotonic()))
        if snap is not None and pred(snap):
            return snap
    return None


def ns_sources(snap, guardrail):
    """The namespace sources of api-1's guardrail (or namespace) rules."""
    return sorted(s.namespace for r in snap.inbound if r.guardrail == guardrail
                  for s in r.sources if s.WhichOneof("kind") == "namespace")


def main():
    tmp = tempfile.mkdtemp(prefix="control_nslabel_test.")
    kube = Kube(tmp)
    ctl = None
    try:
        pb, pbg = stubs(tmp)
        from cinch.v1 import config_pb2, config_pb2_grpc
        kube.req("POST", "/debug/live", {
            "pods": [pod("api-1", "api", "api", "10.1.0.12"),
                     in_ns(pod("front-1", "web", "web", "10.1.0.21"), "front")],
            "allowpolicies": [ALLOW],
            "guardrailpolicies": [GUARD],
            "meshpolicies": [MESH],
            "namespaces": [namespace("shop", {"env": "prod"}), namespace("front", {}),
                           namespace("cinch-system", {})],
        })
        pki = ca_pair(tmp, "mesh", td_uri="spiffe://" + TD)
        ctl = Control(os.path.join(tmp, "state"),
                      ["--ca-cert", pki["ca"], "--ca-key", pki["ca_key"]] + kube.flags())
        run(kube, ctl, pb, pbg, config_pb2, config_pb2_grpc)
        check(ctl.stop() == 0, "cinch-control stops cleanly")
        asan = [l for l in open(ctl.state + ".log")
                if "AddressSanitizer" in l or "LeakSanitizer" in l]
        check(not asan, "no sanitizer report: %s" % asan[:3])
    finally:
        if ctl and ctl.proc.poll() is None:
            ctl.stop()
        kube.stop()
        if base.failures and ctl:
            print("".join(open(ctl.state + ".log").readlines()[-40:]))
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d/%d checks passed" % (base.checks - base.failures, base.checks))
    return 1 if base.failures else 0


def run(kube, ctl, pb, pbg, cpb, cpbg):
    wait_for("the control is ready once the sources have listed", lambda: ready(ctl),
             ctls=[ctl])
    bundle = cinchctl("bundle", "show", "--pem", "--state-dir", ctl.state).stdout.encode()
    key = ec.generate_private_key(ec.SECP256R1())
    resp, err = call(pb, pbg, ctl.grpc_port, bundle,
                     pb.SignRequest(csr=csr_for(key),
                                    credential=pb.Credential(join_token=token(ctl.state,
                                                                              "shop/api"))))
    check(err is None, "an SVID for shop/api: %s" % err)
    if resp is None:
        return
    creds = grpc.ssl_channel_credentials(root_certificates=bundle, private_key=pem_key(key),
                                         certificate_chain=der_to_pem(resp.cert_chain[0]))
    with grpc.secure_channel("localhost:%d" % ctl.grpc_port, creds) as ch:
        st = Stream(cpbg.ConfigStub(ch), cpb.WatchRequest(workload="shop/api-1"))
        steps(kube, ctl, st, cpb)
        st.call.cancel()
        st.next(5)


def steps(kube, ctl, st, cpb):
    snap = next_snap(st, cpb, 10)
    check(snap is not None and snap.workload.name == "api-1",
          "Watch answers api-1's Snapshot")
    if snap is None:
        return
    check(ns_sources(snap, False) == [] and verdict(snap, cpb, FRONT, PORT)[0] != "allow",
          "front without labels: not admitted: %s %s" % (ns_sources(snap, False),
                                                         verdict(snap, cpb, FRONT, PORT)))

    # team=shop, by a merge patch (what kubectl label sends).
    code, obj = rest(kube, "PATCH", "/api/v1/namespaces/front",
                     {"metadata": {"labels": {"team": "shop"}}}, "application/merge-patch+json")
    check(code == 200 and obj["metadata"]["labels"].get("team") == "shop",
          "PATCH namespaces/front: %s" % code)
    snap = next_snap(st, cpb)
    check(snap is not None and ns_sources(snap, False) == ["front"],
          "team=shop reaches api-1: shop's rule admits namespace front: %s"
          % (snap and ns_sources(snap, False)))
    check(snap is not None and verdict(snap, cpb, FRONT, PORT) ==
          ("allow", "shop/api-from-team#0"),
          "front's identity is allowed on %d: %s"
          % (PORT, snap and verdict(snap, cpb, FRONT, PORT)))
    check(snap is not None and verdict(snap, cpb, FRONT, PORT + 1)[0] != "allow",
          "and only on the policy's port")

    # env=dev: the guardrail's deny covers front now.
    code, _ = rest(kube, "PATCH", "/api/v1/namespaces/front",
                   {"metadata": {"labels": {"env": "dev"}}}, "application/merge-patch+json")
    check(code == 200, "PATCH namespaces/front env=dev: %s" % code)
    snap = next_snap(st, cpb)
    check(snap is not None and ns_sources(snap, True) == ["front"],
          "env=dev reaches api-1: no-dev's guardrail rule names front: %s"
          % (snap and ns_sources(snap, True)))
    check(snap is not None and verdict(snap, cpb, FRONT, PORT) ==
          ("deny", "GuardrailPolicy/no-dev#0"),
          "the guardrail refuses what shop's policy admits: %s"
          % ((snap and verdict(snap, cpb, FRONT, PORT)),))

    # env removed by a change lost to compaction, then the watch expires
    # (410 Gone): the relist (typeless items) brings it, shop keeps env=prod.
    code, cur = rest(kube, "GET", "/api/v1/namespaces/front")
    del cur["metadata"]["labels"]["env"]
    kube.apply("namespaces", "MODIFIED", cur, silent=True)
    _, nothing = st.next(1)
    check(nothing is None, "a lost Namespace event is not seen: %r" % (nothing,))
    kube.req("POST", "/debug/expire", {"collection": "namespaces"})
    snap = next_snap(st, cpb, 20)
    check(snap is not None and ns_sources(snap, True) == [] and
          verdict(snap, cpb, FRONT, PORT) == ("allow", "shop/api-from-team#0"),
          "after 410 Gone the relist brings front without env: admitted again: %s"
          % ((snap and verdict(snap, cpb, FRONT, PORT)),))

    # Labels removed by an update (PUT of the object read, as kubectl
    # replace / client-go Update do, resourceVersion as the precondition).
    code, cur = rest(kube, "GET", "/api/v1/namespaces/front")
    cur["metadata"]["labels"] = {"kubernetes.io/metadata.name": "front"}
    code, _ = rest(kube, "PUT", "/api/v1/namespaces/front", cur)
    check(code == 200, "PUT namespaces/front without team/env: %s" % code)
    snap = next_snap(st, cpb)
    check(snap is not None and ns_sources(snap, False) == [] and ns_sources(snap, True) == [] and
          verdict(snap, cpb, FRONT, PORT)[0] != "allow",
          "labels removed: front's admission revoked: %s %s"
          % (snap and ns_sources(snap, False), snap and verdict(snap, cpb, FRONT, PORT)))

    # Labelled again, then the namespace deleted: Terminating (MODIFIED,
    # labels kept), then DELETED once the namespace controller finalized it.
    rest(kube, "PATCH", "/api/v1/namespaces/front", {"metadata": {"labels": {"team": "shop"}}},
         "application/merge-patch+json")
    snap = next_snap(st, cpb)
    check(snap is not None and verdict(snap, cpb, FRONT, PORT)[0] == "allow",
          "team=shop again: admitted")
    code, obj = rest(kube, "DELETE", "/api/v1/namespaces/front")
    check(code == 200 and obj["status"]["phase"] == "Terminating" and
          obj["metadata"].get("deletionTimestamp"),
          "DELETE namespaces/front: Terminating: %s" % code)
    kube.apply("pods", "DELETED", in_ns(pod("front-1", "web", "web", "10.1.0.21"), "front"))
    kube.apply("namespaces", "DELETED", obj)
    snap = until(st, cpb, lambda s: ns_sources(s, False) == [])
    check(snap is not None and verdict(snap, cpb, FRONT, PORT)[0] != "allow",
          "the Namespace deleted: front's admission gone: %s"
          % ((snap and verdict(snap, cpb, FRONT, PORT)),))
    check(ctl.proc.poll() is None and
          cinchctl("status", "--json", "--state-dir", ctl.state).returncode == 0,
          "the control is alive and answers after the Namespace's DELETED")


if __name__ == "__main__":
    sys.exit(main())
