#!/bin/bash
# whatif.sh: access-log lines per second of `cinchctl policy whatif`
# ("## What-if" in docs/benchmarks.md). A generated day of logs: LINES
# lines in the agents' format (agentd_access; 90 % connections, inbound
# and outbound, the rest other events), 1,000 workloads in 20 namespaces,
# each called by 4 identities and calling 4 workloads on 2 ports (some
# 16,000 distinct flows, repeated all day from changing addresses); replayed against a proposal that refuses some of what
# the log says was allowed. ROUNDS runs, medians; one core (the command is
# single-threaded). The log is written once, read from the page cache.
#   bench/whatif.sh [--rounds N] [--lines N] [--bin DIR]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$HERE/../build/release/bin
ROUNDS=3
LINES=1000000
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--lines) LINES=$2; shift 2 ;;
	--bin) BIN=$2; shift 2 ;;
	*) echo "usage: $0 [--rounds N] [--lines N] [--bin DIR]" >&2; exit 2 ;;
	esac
done
DIR=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$DIR"' EXIT
/usr/bin/python3 - "$DIR" "$LINES" <<'PY'
import json, random, sys
d, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(18)
NS, PER = 20, 50
wl = [("ns%d" % (i // PER), "w%d" % (i % PER), "10.60.%d.%d" % (i // 250, i % 250 + 1))
      for i in range(NS * PER)]
with open(d + "/workloads.yaml", "w") as f:
    for ns, name, ip in wl:
        f.write("apiVersion: cinch.dev/v1alpha1\nkind: Workload\n"
                "metadata: {name: %s, namespace: %s, labels: {app: %s}}\n"
                "spec: {serviceAccount: %s, addresses: [\"%s\"]}\n---\n" % (name, ns, name, name, ip))
# The proposal: each workload admits the identities of its own namespace on
# 8080, and 10 named callers of the next namespace on 9090.
with open(d + "/policy.yaml", "w") as f:
    for ns, name, ip in wl:
        nxt = "ns%d" % ((int(ns[2:]) + 1) % NS)
        ids = ", ".join('"spiffe://cluster.local/ns/%s/sa/w%d"' % (nxt, k) for k in range(10))
        f.write("apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\n"
                "metadata: {name: %s-in, namespace: %s}\n"
                "spec:\n  selector: {workloads: [%s]}\n  ports: [8080]\n"
                "  from: [{namespaces: [%s]}]\n---\n"
                "apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\n"
                "metadata: {name: %s-peer, namespace: %s}\n"
                "spec:\n  selector: {workloads: [%s]}\n  ports: [9090]\n"
                "  from: [{identities: [%s]}]\n---\n" % (name, ns, name, ns, name, ns, name, ids))
# Who calls whom: each workload has 4 callers, from its own namespace, the
# next one or anywhere; a day repeats these flows (from changing source
# ports and addresses).
def anyone():
    return "spiffe://cluster.local/ns/ns%d/sa/w%d" % (rnd.randrange(NS), rnd.randrange(PER * 2))
callers = [[anyone() for _ in range(4)] for _ in wl]
callees = [[rnd.randrange(len(wl)) for _ in range(4)] for _ in wl]
with open(d + "/day.log", "w") as f:
    for i in range(n):
        ts = "2026-12-04T%02d:%02d:%02d.%03dZ" % (i * 24 // n, i % 60, i % 59, i % 1000)
        if i % 10 == 9:
            f.write(json.dumps({"workload": "ns0/w0", "policy_version": "5881d6b18ca12cc9",
                                "ts": ts, "level": "info", "component": "cinch-agent",
                                "event": "policy_applied"}, separators=(",", ":")) + "\n")
            continue
        k = rnd.randrange(len(wl))
        ns, name, ip = wl[k]
        out = i % 5 == 0
        if out:
            dst = wl[rnd.choice(callees[k])]
            line = {"direction": "outbound", "src": "[::ffff:%s]:%d" % (ip, 30000 + i % 30000),
                    "dst": "%s:%d" % (dst[2], rnd.choice((8080, 9090))),
                    "local_id": "spiffe://cluster.local/ns/%s/sa/%s" % (ns, name),
                    "peer_id": "spiffe://cluster.local/ns/%s/sa/%s" % (dst[0], dst[1]),
                    "verdict": "allow", "rule": "", "reason": "meshed destination"}
        else:
            line = {"direction": "inbound", "src": "[::ffff:10.61.%d.%d]:%d" % (
                        i % 200, i % 250 + 1, 30000 + i % 30000),
                    "dst": "%s:%d" % (ip, rnd.choice((8080, 9090))),
                    "local_id": "spiffe://cluster.local/ns/%s/sa/%s" % (ns, name),
                    "peer_id": rnd.choice(callers[k]), "verdict": "allow",
                    "rule": "%s/%s-today#0" % (ns, name), "reason": "allowed"}
        line.update({"tls_version": "TLSv1.3", "cipher": "TLS_AES_128_GCM_SHA256",
                     "bytes_out": rnd.randrange(100000), "bytes_in": rnd.randrange(1000),
                     "duration_s": rnd.random(), "end": "closed", "ts": ts, "level": "info",
                     "component": "cinch-agent", "event": "connection"})
        f.write(json.dumps(line, separators=(",", ":")) + "\n")
PY
for _ in $(seq "$ROUNDS"); do
	/usr/bin/time -f "%e %U %S %M" -o "$DIR/time" "$BIN/cinchctl" policy whatif \
		--flows "$DIR/day.log" --policy "$DIR/policy.yaml" --workloads "$DIR/workloads.yaml" \
		--output json >"$DIR/out.json" || [ $? -eq 1 ]
	tail -n 1 "$DIR/time" >>"$DIR/rounds" # after "Command exited with non-zero status 1"
done
/usr/bin/python3 - "$DIR" "$LINES" "$ROUNDS" <<'PY'
import json, os, statistics, sys
d, n, rounds = sys.argv[1], int(sys.argv[2]), sys.argv[3]
r = json.load(open(d + "/out.json"))
rows = [[float(x) for x in l.split()] for l in open(d + "/rounds")]
med = lambda i: statistics.median(x[i] for x in rows)
size = os.path.getsize(d + "/day.log")
print("Medians of %s runs, one core, the log in the page cache; CPU is user + system.\n"
      % rounds)
cpu = statistics.median(x[1] + x[2] for x in rows)
print("| log lines | MB | connections | groups changed | wall s | lines/s | MB/s "
      "| CPU s | lines per CPU-second | max RSS MiB |")
print("|---|---|---|---|---|---|---|---|---|---|")
print("| %d | %.0f | %d | %d | %.2f | %.0f k | %.0f | %.2f | %.0f k | %.0f |" % (
    n, size / 1e6, r["connections"], len(r["changes"]), med(0), n / med(0) / 1e3,
    size / 1e6 / med(0), cpu, n / cpu / 1e3, med(3) / 1024))
PY
