#!/usr/bin/python3
"""model: a reference model of docs/policy.md, and a differential test of
the policy engine against it (issue #19).

The evaluator below is written from docs/policy.md alone, as literally as
the prose reads, in a different language and style from the C engine and
sharing no code with it: a list of policies scanned in order, Python's
ipaddress module for CIDRs, regular expressions for SPIFFE IDs. It is
meant to be obviously right, not fast.

A generator makes random valid worlds (namespaces, workloads with labels,
IPv4 and IPv6 addresses, MeshPolicies for the mesh and for namespaces,
AllowPolicies with every selector and source kind, audit mode, ports and
ranges) and writes them as real policy and workload files; a few worlds
carry what the docs say is refused (a wildcard that admits no workload, a
second MeshPolicy for the whole mesh), and then what is checked is the
refusal, with the file, line, column and field. Queries are aimed at the rules: hits, near misses, wildcard depth,
IPv4-mapped callers, the edges of port ranges. Each query is asked of:

  - the library, through `harness` (files -> pset -> per-workload snapshot
    -> the slice the agent decides with): verdict, rule, the first rule
    each_rule (explain's source) reports as matching, and, when the caller
    is a workload, what its own slice says of the destination (compile's
    peer list must never refuse early what the destination allows);
  - cinchctl: every world's queries as one `cinchctl policy test` file,
    and a few per world through `cinchctl policy explain` (verdict, rule,
    near rules, exit status).

A disagreement prints the world shrunk to what still disagrees, as the
files the tools read, and the query; exit 1.

usage: model.py --harness PATH --cinchctl PATH [--seed N] [--worlds N]
                [--queries N] [--explain N] [--world I] [--keep DIR]
"""
import argparse
import ipaddress
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

TD = "cluster.local"  # the trust domain cinchctl and the harness use
MESH_NS = "cinch-system"  # a MeshPolicy here is for the whole mesh
API = "cinch.dev/v1alpha1"


# ---------------------------------------------------------------------------
# The reference evaluator: docs/policy.md, read literally.

TD_RE = re.compile(r"[a-z0-9._-]+")
PORT_NAME_RE = re.compile(r"(?=.{1,15}$)([a-z0-9]+-)*[a-z0-9]*[a-z][a-z0-9]*(-[a-z0-9]+)*")
SEG_RE = re.compile(r"[A-Za-z0-9._-]+")


def is_spiffe_id(s):
    """A valid SPIFFE ID (the docs: callers that are not are admitted by no
    source). SPIFFE-ID standard 2.1 and 2.2."""
    if len(s) > 2048 or not s.startswith("spiffe://"):
        return False
    td, slash, path = s[len("spiffe://"):].partition("/")
    if not td or len(td) > 255 or not TD_RE.fullmatch(td):
        return False
    if not slash:
        return True
    return all(seg and seg not in (".", "..") and SEG_RE.fullmatch(seg)
               for seg in path.split("/"))


def wildcard_refused(text):
    """docs: a wildcard under /ns/ other than .../ns/<ns>/sa/* admits no
    workload and is refused."""
    if not text.endswith("/*"):
        return False
    path = "/" + text[len("spiffe://"):].partition("/")[2]
    return path.startswith("/ns/") and not re.fullmatch(r"/ns/[^/]+/sa/\*", path)


def source_admits(kind, text, caller):
    """Does one source admit the caller? caller: {"id": str|None, "ip":
    str|None}."""
    cid, ip = caller.get("id"), caller.get("ip")
    if kind in ("identities", "namespaces"):
        if cid is None or not is_spiffe_id(cid):
            return False
        if kind == "namespaces":
            # the workload identities of the namespace, own trust domain
            m = re.fullmatch(r"spiffe://([^/]+)/ns/([^/]+)/sa/([^/]+)", cid)
            return bool(m) and m.group(1) == TD and m.group(2) == text
        if text.endswith("/*"):
            # the text before "*" plus exactly one more segment
            before = text[:-1]
            rest = cid[len(before):]
            return cid.startswith(before) and rest != "" and "/" not in rest
        return cid == text
    # ipBlocks: plaintext callers only
    if ip is None:
        return False
    net = ipaddress.ip_network(text)
    addr = ipaddress.ip_address(ip)
    if net.version == 4:
        if addr.version == 6:
            addr = addr.ipv4_mapped  # ::ffff:a.b.c.d is a.b.c.d
            if addr is None:
                return False
        return addr in net
    return addr.version == 6 and addr in net


def resolve_port(name, w):
    """A port name on workload w: its TCP container ports of that name
    (docs: none when it has no such port)."""
    return [p["containerPort"] for p in w.get("ports", [])
            if p["name"] == name and p.get("protocol", "TCP") == "TCP"]


def ports_include(ports, port, w):
    if ports is None:
        return True
    for p in ports:
        if isinstance(p, str) and PORT_NAME_RE.fullmatch(p):
            if port in resolve_port(p, w):
                return True
            continue
        lo, _, hi = str(p).partition("-")
        if int(lo) <= port <= int(hi or lo):
            return True
    return False


def labels_match(sel, labels):
    """A Kubernetes LabelSelector: every part present must hold; {} holds."""
    if any(labels.get(k) != v for k, v in sel.get("matchLabels", {}).items()):
        return False
    for e in sel.get("matchExpressions", []):
        have = labels.get(e["key"])
        op = e["operator"]
        if op == "In" and have not in e["values"]:
            return False
        if op == "NotIn" and have in e["values"]:  # absent: NotIn holds
            return False
        if op == "Exists" and have is None:
            return False
        if op == "DoesNotExist" and have is not None:
            return False
    return True


def selects(pol, w):
    if pol["ns"] != w["ns"]:
        return False
    sel = pol["selector"]
    if "workloads" in sel and w["name"] not in sel["workloads"]:
        return False
    return labels_match(sel, w["labels"])


def namespaces_of(world):
    """The namespaces the set knows: Namespace documents' and workloads'."""
    return sorted(set(world.get("nslabels", {})) | {w["ns"] for w in world["workloads"]})


def ns_labels(world, ns):
    """A namespace's labels: its document's, or none; always its name."""
    return dict(world.get("nslabels", {}).get(ns, {}), **{"kubernetes.io/metadata.name": ns})


def selector_callers(world, entry, own):
    """What a namespaceSelector/podSelector entry stands for: ("ns", set of
    namespaces) alone, or ("ids", set of workload identities). own: the
    policy's namespace, None for a guardrail (every namespace)."""
    nss = [n for n in namespaces_of(world)
           if (labels_match(entry["namespaceSelector"], ns_labels(world, n))
               if "namespaceSelector" in entry else own is None or n == own)]
    if "podSelector" not in entry:
        return "ns", set(nss)
    return "ids", {spiffe_of(w) for w in world["workloads"]
                   if w["ns"] in nss and labels_match(entry["podSelector"], w["labels"])}


def entry_empty(world, entry, own):
    """Does a selector entry expand to no one (the compiled rule then has
    no source)?"""
    if "namespaceSelector" not in entry and "podSelector" not in entry:
        return False
    return not selector_callers(world, entry, own)[1]


def guards_of(world, w):
    """The guardrails whose subject picks w, by priority then name."""
    out = []
    for g in world.get("guards", []):
        sub = g["subject"]
        if "namespaceSelector" in sub and not labels_match(sub["namespaceSelector"], ns_labels(world, w["ns"])):
            continue
        if "podSelector" in sub and not labels_match(sub["podSelector"], w["labels"]):
            continue
        out.append(g)
    return sorted(out, key=lambda g: (g["priority"], g["name"].encode()))


def mesh_settings(world, ns):
    """The whole mesh's MeshPolicy (no namespace, or cinch-system) over the
    defaults STRICT and deny; then the namespace's fields where they tighten
    (STRICT over PERMISSIVE, deny over audit), or where a guardrail whose
    subject's namespaceSelector picks the namespace (none: every one) lists
    the field in allowLoosening."""
    mtls, default = "STRICT", "deny"
    for m in world["mesh"]:
        if m["ns"] in (None, MESH_NS):
            mtls = m.get("mtls", mtls)
            default = m.get("defaultAction", default)
    may = set()
    for g in world.get("guards", []):
        sel = g["subject"].get("namespaceSelector")
        if sel is None or labels_match(sel, ns_labels(world, ns)):
            may |= set(g.get("allowLoosening", []))
    for m in world["mesh"]:
        if m["ns"] in (None, MESH_NS) or m["ns"] != ns:
            continue
        if m.get("mtls") == "STRICT" or ("mtls" in m and "mtls" in may):
            mtls = m["mtls"]
        if m.get("defaultAction") == "deny" or ("defaultAction" in m and "defaultAction" in may):
            default = m["defaultAction"]
    return mtls, default


def rules_of(world, w):
    """The rules protecting w, in evaluation order: policy namespace, then
    name, as bytes, then position in from."""
    pols = sorted((p for p in world["allow"] if selects(p, w)),
                  key=lambda p: (p["ns"].encode(), p["name"].encode()))
    out = []
    for p in pols:
        for i, entry in enumerate(p["from"]):
            out.append(("%s/%s#%d" % (p["ns"], p["name"], i), p, entry))
    return pols, out


def entry_admits(entry, caller, world=None, own=None):
    """One from entry; a guardrail's None entry is every caller."""
    if entry is None:
        return True
    cid = caller.get("id")
    if "namespaceSelector" in entry or "podSelector" in entry:
        if cid is None or not is_spiffe_id(cid):
            return False
        kind, got = selector_callers(world, entry, own)
        if kind == "ids":
            return cid in got
        m = re.fullmatch(r"spiffe://([^/]+)/ns/([^/]+)/sa/([^/]+)", cid)
        return bool(m) and m.group(1) == TD and m.group(2) in got
    (kind, texts), = entry.items()
    if kind == "serviceAccounts":
        return cid is not None and is_spiffe_id(cid) and any(
            cid == "spiffe://%s/ns/%s/sa/%s" % (TD, *t.split("/", 1)) for t in texts)
    return any(source_admits(kind, t, caller) for t in texts)


def guard_rules(world, w):
    """The guardrails' rules protecting w, in evaluation order, as they are
    compiled: a rule whose from expands to no one is left out."""
    out = []
    for g in guards_of(world, w):
        for i, r in enumerate(g.get("rules", [])):
            entries = r.get("from", [None])
            if all(e is not None and entry_empty(world, e, None) for e in entries):
                continue
            out.append(("GuardrailPolicy/%s#%d" % (g["name"], i), g, r))
    return out


def decide(world, w, caller, port):
    """(verdict, rule, first, near): the decision; the first rule whose
    ports and sources both match, ignoring the mTLS mode and actions (what
    explain walks: guardrails' rules first); the AllowPolicy rules a
    refusal no rule made names as near (exactly one holds)."""
    mtls, default = mesh_settings(world, w["ns"])
    pols, rules = rules_of(world, w)
    first, near, decided, audit = None, [], None, None
    for rid, g, r in guard_rules(world, w):
        pm = ports_include(r.get("ports"), port, w)
        sm = any(entry_admits(e, caller, world, None) for e in r.get("from", [None]))
        if pm and sm and first is None:
            first = rid
        if pm and sm and decided is None:
            if r["action"] == "deny" and g.get("mode") == "audit":
                audit = audit or rid  # noted; the evaluation goes on
            else:
                decided = (r["action"], rid)
    nfirst = None
    for rid, p, entry in rules:
        pm, sm = ports_include(p.get("ports"), port, w), entry_admits(entry, caller, world, p["ns"])
        if pm and sm and nfirst is None:
            nfirst = rid
        if pm != sm and len(near) < 3:
            near.append((rid, sm))
    first = first or nfirst
    if caller.get("id") is None and mtls == "STRICT":
        return "deny", None, first, near
    if decided and decided[0] == "deny":
        return "deny", decided[1], first, []
    if decided and decided[0] == "allow":
        v = ("allow", decided[1], first, [])
    elif nfirst is not None:
        v = ("allow", nfirst, first, near)
    elif any(p.get("mode", "enforce") == "enforce" for p in pols):
        v = ("deny", None, first, near)
    elif pols:
        v = ("audit-deny", None, first, near)
    else:
        v = (("audit-deny" if default == "audit" else "deny"), None, first, near)
    # an audit-mode guardrail's deny only flags what flows anyway
    if audit and v[0] != "deny":
        return "audit-deny", audit, first, []
    return v


def refusal(world):
    """The field the docs say makes the set invalid, or None."""
    scopes = [MESH_NS if m["ns"] is None else m["ns"] for m in world["mesh"]]
    if len(set(scopes)) != len(scopes):  # two MeshPolicies for one scope
        return "metadata.name"
    for p in world["allow"]:
        for i, entry in enumerate(p["from"]):
            if len(entry) != 1:
                continue  # namespaceSelector with podSelector
            (kind, texts), = entry.items()
            for k, t in enumerate(texts):
                if kind == "identities" and wildcard_refused(t):
                    return "spec.from[%d].identities[%d]" % (i, k)
    return None


def spiffe_of(w):
    return "spiffe://%s/ns/%s/sa/%s" % (TD, w["ns"], w["sa"])


# ---------------------------------------------------------------------------
# Worlds

NAMESPACES = ["shop", "jobs", "a", "a-b", "a0", "ab", "jobs-x"]
WL_NAMES = ["web", "api", "db", "batch", "w-1", "w0", "x"]
SAS = ["web", "api", "db", "batch", "default", "x.y", "s-1"]
LABELS = {"app": ["web", "api", "db"], "tier": ["front", "back"], "env": ["prod", "dev"]}
NS_LABELS = {"env": ["prod", "dev"], "team": ["shop", "ops"]}
POL_NAMES = ["a", "a-b", "a0", "ab", "b", "from-web", "p.1", "z"]
PORTS = [1, 22, 80, 443, 5432, 8080, 8081, 9000, 65535]
RANGES = ["1-1024", "8000-8100", "8080-8080", "9000-9001", "1024-65535"]
# named ports: one name on different numbers across workloads, some UDP
PORT_NAMES = ["http", "grpc", "metrics-2"]


def rand_ports(rng, k):
    """A rule's ports: numbers, ranges and (a third of the time) names."""
    pool = PORTS + RANGES + (PORT_NAMES * 2 if rng.random() < 0.35 else [])
    return [rng.choice(pool) for _ in range(k)]


def rand_cidr(rng, world):
    """A CIDR around the world's or a random address, host bits zero."""
    r = rng.random()
    if r < 0.45:
        a = ipaddress.ip_address(rng.choice(world["_plain4"]))
        net = ipaddress.ip_network("%s/%d" % (a, rng.choice([8, 16, 24, 30, 32])), strict=False)
    elif r < 0.8:
        a = ipaddress.ip_address(rng.choice(world["_plain6"]))
        net = ipaddress.ip_network("%s/%d" % (a, rng.choice([16, 64, 120, 128])), strict=False)
    elif r < 0.9:
        net = ipaddress.ip_network(rng.choice(["0.0.0.0/0", "::/0", "::ffff:0:0/96", "192.168.0.0/16"]))
    else:
        a = ipaddress.ip_address(rng.choice(world["_plain4"]))
        net = ipaddress.ip_network("::ffff:%s/%d" % (a, rng.choice([104, 120, 128])), strict=False)
    return str(net)


def rand_identity(rng, world, nss):
    w = rng.choice(world["workloads"])
    ns = rng.choice(nss)
    return rng.choice([
        spiffe_of(w),
        spiffe_of(w),
        "spiffe://%s/ns/%s/sa/*" % (TD, ns),
        "spiffe://%s/ns/%s/sa/*" % (TD, w["ns"]),
        "spiffe://%s/ns/%s/sa/%s" % (TD, ns, rng.choice(SAS)),
        "spiffe://other.td/ns/%s/sa/%s" % (w["ns"], w["sa"]),
        "spiffe://other.td/ns/%s/sa/*" % ns,
        "spiffe://%s/gw/*" % TD,
        "spiffe://%s/gw/edge" % TD,
        "spiffe://%s/ns/%s/x" % (TD, ns),
    ])


def gen_world(rng):
    nss = rng.sample(NAMESPACES, rng.randint(1, 4))
    if rng.random() < 0.1:
        nss.append(MESH_NS)
    world = {"workloads": [], "mesh": [], "allow": []}
    used = set()
    n4 = rng.randint(0, 255)
    for i in range(rng.randint(1, 7)):
        ns, name = rng.choice(nss), rng.choice(WL_NAMES)
        if (ns, name) in used:
            continue
        used.add((ns, name))
        addrs = []
        if rng.random() < 0.85:
            addrs.append("10.%d.%d.%d" % (n4, i, rng.randint(1, 254)))
        if not addrs or rng.random() < 0.4:
            addrs.append("fd00:%x::%x" % (n4, i + 1))
        labels = {k: rng.choice(v) for k, v in LABELS.items() if rng.random() < 0.6}
        wports = []
        for pn in PORT_NAMES:
            if rng.random() < 0.5:
                wp = {"name": pn, "containerPort": rng.choice(PORTS)}
                if rng.random() < 0.25:
                    wp["protocol"] = rng.choice(["TCP", "UDP", "SCTP"])
                wports.append(wp)
        world["workloads"].append({"ns": ns, "name": name, "sa": rng.choice(SAS),
                                   "labels": labels, "addrs": addrs, "ports": wports})
    # plaintext callers' addresses: some near the workloads, some outside
    world["_plain4"] = ["10.%d.%d.%d" % (n4, rng.randint(0, 8), rng.randint(0, 255)) for _ in range(4)] + \
        ["192.168.%d.%d" % (rng.randint(0, 255), rng.randint(0, 255)), "172.16.0.1"]
    world["_plain6"] = ["fd00:%x::%x" % (n4, rng.randint(1, 9)), "fd99::%x" % rng.randint(1, 99),
                        "2001:db8::%x" % rng.randint(1, 99)]
    # MeshPolicies: at most one per scope
    if rng.random() < 0.6:
        world["mesh"].append(dict(name="default", ns=rng.choice([None, MESH_NS]),
                                  **rand_mesh_fields(rng)))
    for ns in nss:
        if ns != MESH_NS and rng.random() < 0.35:
            world["mesh"].append(dict(name="m-" + ns, ns=ns, **rand_mesh_fields(rng)))
    # Namespace documents with labels, for some namespaces (and one with
    # no workload)
    world["nslabels"] = {}
    for ns in nss + ["quiet"]:
        if ns != MESH_NS and rng.random() < 0.6:
            world["nslabels"][ns] = {k: rng.choice(v) for k, v in NS_LABELS.items()
                                     if rng.random() < 0.7}
    world["guards"] = [gen_guard(rng, world, "g%d" % i, nss) for i in range(rng.choice([0, 0, 1, 2, 3]))]
    names = set()
    for _ in range(rng.randint(0, 7)):
        ns = rng.choice(nss + ["elsewhere"]) if rng.random() < 0.1 else rng.choice(nss)
        name = rng.choice(POL_NAMES)
        if (ns, name) in names:
            continue
        names.add((ns, name))
        world["allow"].append(gen_policy(rng, world, ns, name, nss))
    return world


def rand_selector(rng, labels, nsname=None):
    """A LabelSelector over these label choices: {} sometimes; matchLabels
    and/or matchExpressions of every operator."""
    sel = {}
    if rng.random() < 0.2:
        return sel
    if rng.random() < 0.5:
        k = rng.choice(list(labels))
        sel["matchLabels"] = {k: rng.choice(labels[k])}
        if nsname and rng.random() < 0.3:
            sel["matchLabels"] = {"kubernetes.io/metadata.name": nsname}
    if rng.random() < 0.6 or not sel:
        exprs = []
        for _ in range(rng.randint(1, 2)):
            k = rng.choice(list(labels))
            op = rng.choice(["In", "NotIn", "Exists", "DoesNotExist"])
            e = {"key": k, "operator": op}
            if op in ("In", "NotIn"):
                e["values"] = rng.sample(labels[k], rng.randint(1, len(labels[k])))
            exprs.append(e)
        sel["matchExpressions"] = exprs
    return sel


def rand_label_entry(rng, nss):
    """A namespaceSelector and/or podSelector from entry."""
    e = {}
    r = rng.random()
    if r < 0.7:
        e["namespaceSelector"] = rand_selector(rng, NS_LABELS, rng.choice(nss))
    if r >= 0.4:
        e["podSelector"] = rand_selector(rng, LABELS)
    return e


def gen_guard(rng, world, name, nss):
    sub = {}
    r = rng.random()
    if r < 0.8:
        sub["namespaceSelector"] = rand_selector(rng, NS_LABELS, rng.choice(nss))
    if r >= 0.6:
        sub["podSelector"] = rand_selector(rng, LABELS)
    g = {"name": name, "priority": rng.choice([0, 5, 10, 10, 1000]), "subject": sub, "rules": []}
    if rng.random() < 0.3:
        g["mode"] = rng.choice(["enforce", "audit"])
    if rng.random() < 0.3:
        g["allowLoosening"] = rng.sample(["mtls", "defaultAction", "egress"], rng.randint(1, 2))
    for _ in range(rng.randint(0 if "allowLoosening" in g else 1, 3)):
        rule = {"action": rng.choice(["allow", "deny", "deny", "pass"])}
        if rng.random() < 0.7:
            rule["ports"] = rand_ports(rng, rng.randint(1, 2))
        if rng.random() < 0.7:
            rule["from"] = []
            for _ in range(rng.randint(1, 2)):
                k = rng.random()
                if k < 0.5:
                    rule["from"].append(rand_label_entry(rng, nss))
                elif k < 0.75:
                    rule["from"].append({"identities": [rand_identity(rng, world, nss)]})
                else:
                    rule["from"].append({"namespaces": [rng.choice(nss + ["other"])]})
        g["rules"].append(rule)
    if not g["rules"]:
        del g["rules"]
    return g


def rand_mesh_fields(rng):
    f = {}
    if rng.random() < 0.7:
        f["mtls"] = rng.choice(["STRICT", "PERMISSIVE", "PERMISSIVE"])
    if rng.random() < 0.6:
        f["defaultAction"] = rng.choice(["deny", "audit"])
    return f


def gen_policy(rng, world, ns, name, nss):
    here = [w for w in world["workloads"] if w["ns"] == ns]
    sel = {}
    r = rng.random()
    if r < 0.4 or not here:
        sel["workloads"] = rng.sample(WL_NAMES, rng.randint(1, 2))
        if here and rng.random() < 0.7:
            sel["workloads"][0] = rng.choice(here)["name"]
    if r >= 0.3 or "workloads" not in sel:
        w = rng.choice(here) if here and rng.random() < 0.8 else None
        keys = list(w["labels"]) if w and w["labels"] else list(LABELS)
        ml = {}
        for k in rng.sample(keys, rng.randint(1, min(2, len(keys)))):
            ml[k] = w["labels"][k] if w and k in w["labels"] else rng.choice(LABELS[k])
        sel["matchLabels"] = ml
    if rng.random() < 0.1:
        sel = {}  # every workload of the namespace
    elif rng.random() < 0.2:
        sel = dict(sel, **{k: v for k, v in rand_selector(rng, LABELS).items() if k == "matchExpressions"})
    pol = {"ns": ns, "name": name, "selector": sel, "from": []}
    if rng.random() < 0.75:
        pol["ports"] = rand_ports(rng, rng.randint(1, 3))
    if rng.random() < 0.4:
        pol["mode"] = rng.choice(["enforce", "audit"])
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["identities", "identities", "namespaces", "ipBlocks", "labels",
                           "serviceAccounts"])
        if kind == "labels":
            pol["from"].append(rand_label_entry(rng, nss))
            continue
        if kind == "serviceAccounts":
            texts = ["%s/%s" % (w["ns"], w["sa"]) if rng.random() < 0.7 else
                     "%s/%s" % (rng.choice(nss), rng.choice(SAS))
                     for w in rng.sample(world["workloads"], 1)]
        elif kind == "identities":
            texts = [rand_identity(rng, world, nss) for _ in range(rng.randint(1, 2))]
        elif kind == "namespaces":
            texts = [rng.choice(nss + ["other"]) for _ in range(rng.randint(1, 2))]
        else:
            texts = [rand_cidr(rng, world) for _ in range(rng.randint(1, 2))]
        pol["from"].append({kind: texts})
    return pol


def add_refused(rng, world):
    """What the docs refuse: a second MeshPolicy for the whole mesh, or a
    wildcard that admits no workload."""
    if rng.random() < 0.3 or not world["allow"]:
        world["mesh"].append(dict(name="second", ns=rng.choice([None, MESH_NS]), **rand_mesh_fields(rng)))
        if not [m for m in world["mesh"] if m["ns"] in (None, MESH_NS) and m["name"] != "second"]:
            world["mesh"].append(dict(name="first", ns=rng.choice([None, MESH_NS])))
        return
    p = rng.choice(world["allow"])
    ns = rng.choice(NAMESPACES)
    bad = rng.choice(["spiffe://%s/ns/%s/*" % (TD, ns), "spiffe://%s/ns/*" % TD,
                      "spiffe://%s/ns/%s/sa/web/*" % (TD, ns), "spiffe://other.td/ns/%s/*" % ns])
    p["from"].append({"identities": [bad]})


# ---------------------------------------------------------------------------
# Files: what cinchctl and the harness read

def doc_text(kind, meta, spec):
    return "apiVersion: %s\nkind: %s\nmetadata: %s\nspec: %s\n" % (
        API, kind, json.dumps(meta), json.dumps(spec))


def allow_spec(p):
    spec = {"selector": p["selector"], "from": []}
    for entry in p["from"]:
        if "namespaceSelector" in entry or "podSelector" in entry:
            spec["from"].append(entry)
            continue
        (kind, texts), = entry.items()
        spec["from"].append({"unauthenticated": {"ipBlocks": texts}} if kind == "ipBlocks"
                            else {kind: texts})
    if "ports" in p:
        spec["ports"] = p["ports"]
    if "mode" in p:
        spec["mode"] = p["mode"]
    return spec


def world_docs(world):
    pol, wl = [], []
    for m in world["mesh"]:
        meta = {"name": m["name"]}
        if m["ns"]:
            meta["namespace"] = m["ns"]
        pol.append(("MeshPolicy", meta, {k: m[k] for k in ("mtls", "defaultAction") if k in m}))
    for p in world["allow"]:
        pol.append(("AllowPolicy", {"name": p["name"], "namespace": p["ns"]}, allow_spec(p)))
    for g in world.get("guards", []):
        pol.append(("GuardrailPolicy", {"name": g["name"]},
                    {k: v for k, v in g.items() if k != "name"}))
    for w in world["workloads"]:
        meta = {"name": w["name"], "namespace": w["ns"]}
        if w["labels"]:
            meta["labels"] = w["labels"]
        spec = {"serviceAccount": w["sa"], "addresses": w["addrs"]}
        if w.get("ports"):
            spec["ports"] = w["ports"]
        wl.append(("Workload", meta, spec))
    return pol, wl


def write_world(world, root, layout):
    """Policy files in root/p (split in layout["files"] files, one of them
    JSON when layout["json"]), workloads in root/w."""
    for d in ("p", "w"):
        shutil.rmtree(os.path.join(root, d), ignore_errors=True)
        os.makedirs(os.path.join(root, d))
    pol, wl = world_docs(world)
    nfiles = max(1, min(layout["files"], len(pol)))
    for f in range(nfiles):
        docs = pol[f::nfiles]
        if not docs:
            continue
        if layout["json"] and f == 0:
            arr = [{"apiVersion": API, "kind": k, "metadata": m, "spec": s} for k, m, s in docs]
            with open(os.path.join(root, "p", "%02d.json" % f), "w") as fh:
                json.dump(arr, fh, indent=1)
        else:
            with open(os.path.join(root, "p", "%02d.yaml" % f), "w") as fh:
                fh.write("---\n".join(doc_text(*d) for d in docs))
    with open(os.path.join(root, "w", "workloads.yaml"), "w") as fh:
        fh.write("---\n".join(doc_text(*d) for d in wl))
    if world.get("nslabels"):
        with open(os.path.join(root, "w", "namespaces.yaml"), "w") as fh:
            fh.write("---\n".join("apiVersion: v1\nkind: Namespace\nmetadata: %s\n" % json.dumps(
                {"name": n, "labels": l} if l else {"name": n})
                for n, l in sorted(world["nslabels"].items())))


def show_world(world, layout):
    with tempfile.TemporaryDirectory() as tmp:
        write_world(world, tmp, layout)
        out = []
        for d in ("p", "w"):
            for f in sorted(os.listdir(os.path.join(tmp, d))):
                out.append("==> %s/%s <==\n%s" % (d, f, open(os.path.join(tmp, d, f)).read()))
        return "\n".join(out)


# ---------------------------------------------------------------------------
# Queries aimed at the rules

def aim_port(rng, pol, hit, w):
    """A port of the policy's (its ranges' edges; a name's number on the
    destination w, or on another workload), or one just outside."""
    if pol is None or "ports" not in pol:
        return rng.choice(PORTS)
    p = rng.choice(pol["ports"])
    if isinstance(p, str) and PORT_NAME_RE.fullmatch(p):
        on = resolve_port(p, w) or [x["containerPort"] for x in w.get("ports", [])] or PORTS
        p = rng.choice(on)
    lo, _, hi = str(p).partition("-")
    lo, hi = int(lo), int(hi or lo)
    if hit:
        return rng.choice([lo, hi, (lo + hi) // 2])
    return rng.choice([p for p in (lo - 1, hi + 1) if 1 <= p <= 65535] or PORTS)


def near_ids(rng, text):
    """(hits, near misses) of an identity source: one segment deeper, one
    shallower, a sibling, not a SPIFFE ID."""
    if text.endswith("/*"):
        base = text[:-1]
        return ([base + "x", base + rng.choice(SAS)],
                [base + "x/y", base + "a/b/c", base[:-1], base + "x/", base.replace("/sa/", "/sa-x/") + "x"])
    return [text], [text + "x", text + "/x", text.rsplit("/", 1)[0], text.rsplit("/", 1)[0] + "/*x"]


def ns_ids(rng, ns):
    return (["spiffe://%s/ns/%s/sa/%s" % (TD, ns, rng.choice(SAS))],
            ["spiffe://%s/ns/%s/anything" % (TD, ns),
             "spiffe://%s/ns/%s/sa/batch/x" % (TD, ns),
             "spiffe://%s/ns/%s/sa" % (TD, ns),
             "spiffe://%s/ns/%s/x/batch" % (TD, ns),
             "spiffe://other.td/ns/%s/sa/batch" % ns,
             "spiffe://%s/ns/%s-x/sa/batch" % (TD, ns)])


def cidr_ips(rng, text):
    """(hits, near misses) of a CIDR: an address inside, the ones just
    outside; each also as the other family sees it (IPv4-mapped)."""
    net = ipaddress.ip_network(text)
    inside = [net.network_address + rng.randint(0, net.num_addresses - 1)]
    outside = [net.broadcast_address + 1] if int(net.broadcast_address) + 1 < (1 << net.max_prefixlen) else []
    if int(net.network_address) > 0:
        outside.append(net.network_address - 1)

    def both(addrs):
        out = [str(a) for a in addrs]
        for a in addrs:
            if a.version == 4:
                out.append("::ffff:%s" % a)  # the same caller on a dual-stack socket
            elif a.ipv4_mapped:
                out.append(str(a.ipv4_mapped))
        return out
    return both(inside), both(outside) or both(inside)


def gen_queries(rng, world, n):
    qs = []
    wls = world["workloads"]
    for _ in range(n * 4):
        if len(qs) >= n:
            break
        to = rng.choice(wls)
        _, rules = rules_of(world, to)
        aim = rng.choice(rules) if rules and rng.random() < 0.75 else None
        if aim is None and world["allow"] and rng.random() < 0.5:
            p = rng.choice(world["allow"])
            aim = (None, p, rng.choice(p["from"]))
        pol = aim[1] if aim else None
        # half the aimed queries hit the rule; the rest miss it by one
        # thing: the port, or the caller
        hit = rng.random() < 0.5
        miss_port = not hit and rng.random() < 0.4
        q = {"to": "%s/%s" % (to["ns"], to["name"]), "port": aim_port(rng, pol, not miss_port, to)}
        r = rng.random()
        plain_entry = aim and len(aim[2]) == 1 and next(iter(aim[2])) in (
            "identities", "namespaces", "ipBlocks")
        if aim and r < 0.75 and plain_entry:
            (kind, texts), = aim[2].items()
            t = rng.choice(texts)
            near = {"identities": near_ids, "namespaces": ns_ids, "ipBlocks": cidr_ips}[kind](rng, t)
            pick = rng.choice(near[0] if hit or miss_port else near[1])
            q["ip" if kind == "ipBlocks" else "from"] = pick
        elif r < 0.9 or (aim and r < 0.75):
            c = rng.choice(wls)
            q["from"], q["caller"] = spiffe_of(c), "%s/%s" % (c["ns"], c["name"])
        else:
            q["ip"] = rng.choice(world["_plain4"] + world["_plain6"])
        if "from" in q:
            for c in wls:  # a workload's own ID: also ask its slice (peers)
                if spiffe_of(c) == q["from"] and "caller" not in q:
                    q["caller"] = "%s/%s" % (c["ns"], c["name"])
        qs.append(q)
    return qs


def caller_of(q):
    return {"id": q.get("from"), "ip": q.get("ip")}


def workload(world, nsname):
    return next(w for w in world["workloads"] if "%s/%s" % (w["ns"], w["name"]) == nsname)


# ---------------------------------------------------------------------------
# The engine, through the library (harness) and through cinchctl

class Harness:
    def __init__(self, path):
        self.p = subprocess.Popen([path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, obj):
        self.p.stdin.write(json.dumps(obj) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("harness died (exit %s)" % self.p.wait())
        return json.loads(line)

    def close(self):
        """The harness's exit status (not 0: e.g. a leak found at exit)."""
        self.p.stdin.close()
        return self.p.wait()


def placed(error, field):
    """Does an error name a file, a line and column (not 0) and `field`?"""
    m = re.search(r"\.(yaml|json):([0-9]+):([0-9]+): (\S+): ", error)
    return bool(m) and int(m.group(2)) > 0 and int(m.group(3)) > 0 and m.group(4).rstrip(":") == field


def check_library(h, world, root, queries):
    """Disagreements between the model and the library: [(query, text)]."""
    bad = []
    r = h.ask({"load": {"policy": os.path.join(root, "p"), "workloads": os.path.join(root, "w")}})
    want_refused = refusal(world)
    if want_refused:
        if "error" not in r or not placed(r["error"], want_refused):
            bad.append((None, "the docs refuse this set at %s (with its file, line and column); "
                        "the library says %s" % (want_refused, r)))
        return bad
    if "error" in r:
        return [(None, "the library refuses a valid set: %s" % r["error"])]
    for q in queries:
        w = workload(world, q["to"])
        verdict, rule, first, _ = decide(world, w, caller_of(q), q["port"])
        a = h.ask(q)
        diffs = []
        if (a.get("verdict"), a.get("rule")) != (verdict, rule):
            diffs.append("decide_inbound: %s by %s (%s); the model: %s by %s" % (
                a.get("verdict"), a.get("rule"), a.get("reason"), verdict, rule))
        if a.get("explained") != first:
            diffs.append("each_rule's first match: %s; the model: %s" % (a.get("explained"), first))
        if "caller" in q:
            flows = verdict != "deny"
            for pid, pv in a.get("peers", []):
                if flows and (pid != spiffe_of(w) or pv != "allow"):
                    diffs.append("the caller's slice refuses early (%s, %s) what %s allows" % (pid, pv, q["to"]))
                # where guardrails protect the destination, its agent
                # decides: the caller's slice may let through what they
                # refuse (docs/policy.md), never refuse what they allow
                guarded = bool(guards_of(world, w))
                if not flows and pid is not None and pv == "allow" and not guarded:
                    diffs.append("the caller's slice lets through (%s) what %s refuses" % (pid, q["to"]))
        if diffs:
            bad.append((q, "; ".join(diffs)))
    return bad


def check_cinchctl(cinchctl, world, root, queries, n_explain, rng):
    bad = []
    p, w = os.path.join(root, "p"), os.path.join(root, "w")
    want_refused = refusal(world)
    if want_refused:  # a valid set: `policy test` below loads it, or fails
        r = subprocess.run([cinchctl, "policy", "check", p, w], capture_output=True, text=True)
        if r.returncode != 1 or not placed(r.stderr, want_refused):
            bad.append((None, "the docs refuse this set at %s; cinchctl policy check: exit %d %s" % (
                want_refused, r.returncode, r.stderr.strip())))
        return bad
    valid = [q for q in queries if "ip" in q or is_spiffe_id(q["from"])]
    cases = []
    for i, q in enumerate(valid):
        verdict, rule, _, _ = decide(world, workload(world, q["to"]), caller_of(q), q["port"])
        c = {"name": "q%d" % i, "from": q.get("from") or q.get("ip"), "to": q["to"],
             "port": q["port"], "expect": verdict}
        if rule:
            c["rule"] = rule
        cases.append(c)
    if cases:
        tf = os.path.join(root, "cases.yaml")
        with open(tf, "w") as fh:
            json.dump({"cases": cases}, fh)
        r = subprocess.run([cinchctl, "policy", "test", tf, "--policy", p, "--workloads", w],
                           capture_output=True, text=True)
        for line in r.stdout.splitlines():
            if line.startswith("FAIL q"):
                i = int(line.split()[1].rstrip(":")[1:])
                bad.append((valid[i], "cinchctl policy test: " + line))
        if r.returncode not in (0, 1) or (r.returncode == 1) != bool(bad):
            bad.append((None, "cinchctl policy test: exit %d: %s" % (r.returncode, r.stderr.strip())))
    for q in rng.sample(queries, min(n_explain, len(queries))):
        bad += explain_one(cinchctl, world, p, w, q)
    return bad


def explain_one(cinchctl, world, p, w, q):
    frm = q.get("from") or q.get("ip")
    r = subprocess.run([cinchctl, "policy", "explain", "--policy", p, "--workloads", w, "--from", frm,
                        "--to", q["to"], "--port", str(q["port"])], capture_output=True, text=True)
    if "from" in q and not is_spiffe_id(q["from"]):
        ok = r.returncode == 2 and not r.stdout
        return [] if ok else [(q, "cinchctl policy explain of a caller that is no SPIFFE ID: exit %d" % r.returncode)]
    verdict, rule, _, near = decide(world, workload(world, q["to"]), caller_of(q), q["port"])
    want = ["%s -> %s port %d: %s" % (frm, q["to"], q["port"], verdict), "  rule:   %s" % (rule or "(none)")]
    if verdict != "allow":
        want += ["  near:   %s %s" % (rid, "admits this caller, but not on this port" if sm
                                      else "covers this port, but does not admit this caller")
                 for rid, sm in near]
    # "names:" lines: what port names are on the destination (namedports_test)
    got = [l for l in r.stdout.splitlines()
           if not l.startswith("  reason:") and not l.lstrip().startswith("names:")]
    status = 1 if verdict == "deny" else 0
    if got != want or r.returncode != status:
        return [(q, "cinchctl policy explain (exit %d):\n%s\nthe model (exit %d):\n%s" % (
            r.returncode, "\n".join(got), status, "\n".join(want)))]
    return []


# ---------------------------------------------------------------------------
# Shrinking: smaller worlds that still disagree on the query

def smaller(world, q):
    """Candidate worlds, each one step smaller."""
    keep = {q["to"]} if q else set()
    if q and "caller" in q:
        keep.add(q["caller"])

    def copy():
        return json.loads(json.dumps(world))

    for i in range(len(world["allow"])):
        c = copy()
        del c["allow"][i]
        yield c
    for i in range(len(world["mesh"])):
        c = copy()
        del c["mesh"][i]
        yield c
    for i, w in enumerate(world["workloads"]):
        if "%s/%s" % (w["ns"], w["name"]) not in keep:
            c = copy()
            del c["workloads"][i]
            yield c
    for i in range(len(world.get("guards", []))):
        c = copy()
        del c["guards"][i]
        yield c
    for i, p in enumerate(world["allow"]):
        for j in range(len(p["from"])):
            if len(p["from"]) > 1:
                c = copy()
                del c["allow"][i]["from"][j]
                yield c
            if len(p["from"][j]) != 1:
                continue  # namespaceSelector with podSelector
            (kind, texts), = p["from"][j].items()
            for k in range(len(texts)):
                if len(texts) > 1:
                    c = copy()
                    del c["allow"][i]["from"][j][kind][k]
                    yield c
        for key in ("ports", "mode"):
            if key in p:
                c = copy()
                del c["allow"][i][key]
                yield c
        if "ports" in p and len(p["ports"]) > 1:
            for k in range(len(p["ports"])):
                c = copy()
                del c["allow"][i]["ports"][k]
                yield c
        for key in ("matchLabels", "workloads"):
            if key in p["selector"] and len(p["selector"]) > 1:
                c = copy()
                del c["allow"][i]["selector"][key]
                yield c
    for i, w in enumerate(world["workloads"]):
        for k in list(w["labels"]):
            c = copy()
            del c["workloads"][i]["labels"][k]
            yield c
        if len(w["addrs"]) > 1:
            for k in range(len(w["addrs"])):
                c = copy()
                del c["workloads"][i]["addrs"][k]
                yield c
    for i, m in enumerate(world["mesh"]):
        for key in ("mtls", "defaultAction"):
            if key in m:
                c = copy()
                del c["mesh"][i][key]
                yield c


def shrink(world, q, still_bad, budget=120):
    deadline = time.time() + budget
    progress = True
    while progress and time.time() < deadline:
        progress = False
        for c in smaller(world, q):
            if time.time() > deadline:
                break
            if q and q["to"] not in ["%s/%s" % (w["ns"], w["name"]) for w in c["workloads"]]:
                continue
            if still_bad(c):
                world, progress = c, True
                break
    return world


# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--harness", required=True)
    ap.add_argument("--cinchctl", required=True)
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument("--worlds", type=int, default=100)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--explain", type=int, default=2, help="queries per world through cinchctl policy explain")
    ap.add_argument("--cinchctl-every", type=int, default=6, help="cinchctl on every Nth world only")
    ap.add_argument("--world", type=int, help="only this world of the seed (to reproduce one)")
    ap.add_argument("--refused", type=float, default=0.03, help="share of worlds with a refused wildcard")
    a = ap.parse_args()

    h = Harness(a.harness)
    tmp = tempfile.mkdtemp(prefix="policy_model.")
    t0 = time.time()
    stats = {"worlds": 0, "refused": 0, "queries": 0, "cinchctl_worlds": 0, "explains": 0,
             "verdicts": {}}
    failed = None
    try:
        for i in ([a.world] if a.world is not None else range(a.worlds)):
            rng = random.Random("%d:%d" % (a.seed, i))
            world = gen_world(rng)
            if rng.random() < a.refused:
                add_refused(rng, world)
            layout = {"files": rng.randint(1, 3), "json": rng.random() < 0.2}
            queries = [] if refusal(world) else gen_queries(rng, world, a.queries)
            write_world(world, tmp, layout)
            bad = check_library(h, world, tmp, queries)
            channel = "library"
            use_ctl = i % a.cinchctl_every == 0
            if not bad and use_ctl:
                bad = check_cinchctl(a.cinchctl, world, tmp, queries, a.explain, random.Random(i))
                channel = "cinchctl"
                stats["cinchctl_worlds"] += 1
                stats["explains"] += min(a.explain, len(queries))
            stats["worlds"] += 1
            stats["refused"] += bool(refusal(world))
            stats["queries"] += len(queries)
            for q in queries:
                v = decide(world, workload(world, q["to"]), caller_of(q), q["port"])[0]
                stats["verdicts"][v] = stats["verdicts"].get(v, 0) + 1
            if bad:
                failed = (i, world, layout, bad, channel)
                break
            if stats["worlds"] % 500 == 0 and a.worlds > 500:
                print("... %d worlds, %d queries, %.0f s" % (stats["worlds"], stats["queries"], time.time() - t0),
                      file=sys.stderr, flush=True)
        if failed:
            i, world, layout, bad, channel = failed
            q, why = bad[0]
            qs = [q] if q else []

            def still_bad(c):
                if not q and refusal(world) and not refusal(c):
                    return False
                if q and not [x for x in c["workloads"] if "%s/%s" % (x["ns"], x["name"]) == q.get("caller", q["to"])]:
                    return False
                write_world(c, tmp, layout)
                if channel == "library":
                    return bool(check_library(h, c, tmp, qs))
                return bool(check_cinchctl(a.cinchctl, c, tmp, qs, 1 if q else 0, random.Random(0)))

            small = shrink(world, q, still_bad)
            write_world(small, tmp, layout)
            again = (check_library(h, small, tmp, qs) if channel == "library" else
                     check_cinchctl(a.cinchctl, small, tmp, qs, 1 if q else 0, random.Random(0)))
            print("DISAGREEMENT (%s) in world %d of seed %d (reproduce: model.py --seed %d --world %d)" % (
                channel, i, a.seed, a.seed, i))
            print("first seen: %s\n  %s" % (json.dumps(q), why))
            print("\nshrunk world (%d AllowPolicies, %d MeshPolicies, %d workloads):\n" % (
                len(small["allow"]), len(small["mesh"]), len(small["workloads"])))
            print(show_world(small, layout))
            for sq, swhy in (again or bad)[:1]:
                print("query: %s\n  %s" % (json.dumps(sq), swhy))
            return 1
    finally:
        status = h.close()
        shutil.rmtree(tmp, ignore_errors=True)
    if status != 0:
        print("the harness exited with status %d" % status)
        return 1
    print("policy model: %d worlds (%d refused as the docs say), %d queries, verdicts %s; "
          "cinchctl on %d worlds (%d explains); 0 disagreements; %.1f s" % (
              stats["worlds"], stats["refused"], stats["queries"], json.dumps(stats["verdicts"], sort_keys=True),
              stats["cinchctl_worlds"], stats["explains"], time.time() - t0))
    if stats["worlds"] >= 100 and stats["queries"] < 20 * (stats["worlds"] - stats["refused"]):
        print("too few queries")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
