#!/bin/bash
# agentmem.sh: where an idle agent's resident memory goes (docs/benchmarks.md,
# "Agent memory"). Starts one cinch-agent in static mode (its own ports on
# loopback, no interception, --no-probe), waits until it is ready, and
# after SETTLE seconds reads /proc/PID/smaps: RSS in total, then by mapping
# (each library's file-backed pages, the heap, anonymous memory, stacks),
# largest first, with the part of it that is private to this process
# (dirty pages: relocations, data, heap; the rest are clean library pages
# shared with every process that maps the same file). The agent carries no traffic: this is the floor every
# agent of a mesh pays.
#
# --agents N: N idle agents at once, as on a node running N meshed pods
# from one image (the same library files, so the same page-cache pages).
# Then also each agent's PSS (proportional set size: its private pages,
# plus each shared page divided by the number of processes mapping it),
# the memory the N agents together add to the node, per agent.
#
#   bench/agentmem.sh [--bin DIR] [--settle S] [--agents N]
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=$ROOT/build/release/bin
SETTLE=2
AGENTS=1
while [ $# -gt 0 ]; do
	case $1 in
	--bin) BIN=$2; shift 2 ;;
	--settle) SETTLE=$2; shift 2 ;;
	--agents) AGENTS=$2; shift 2 ;;
	*) echo "usage: $0 [--bin DIR] [--settle S] [--agents N]" >&2; exit 2 ;;
	esac
done
D=$(mktemp -d /tmp/cinch-agentmem.XXXXXX)
PIDS=""
cleanup() {
	for p in $PIDS; do
		kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	rm -rf "$D"
}
trap cleanup EXIT INT TERM

cd "$D"
openssl ecparam -name prime256v1 -genkey -noout -out ca-key.pem 2>/dev/null
openssl req -x509 -new -key ca-key.pem -days 1 -subj "/O=cinch agentmem CA" \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
	-out ca.pem 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out key.pem 2>/dev/null
openssl req -new -key key.pem -subj "/" -out a.csr 2>/dev/null
printf 'subjectAltName=critical,URI:spiffe://cluster.local/ns/bench/sa/mem\n' >a.ext
openssl x509 -req -in a.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 1 \
	-extfile a.ext -out cert.pem 2>/dev/null
cat >workloads.yaml <<'WL'
apiVersion: cinch.dev/v1alpha1
kind: Workload
metadata: {name: mem, namespace: bench}
spec: {serviceAccount: mem, addresses: ["127.0.0.1"]}
WL
cd - >/dev/null

BASE=$((20000 + RANDOM % 20000))
for i in $(seq 0 $((AGENTS - 1))); do
	PORT=$((BASE + 3 * i))
	"$BIN/cinch-agent" run --cert "$D/cert.pem" --key "$D/key.pem" --bundle "$D/ca.pem" \
		--workloads "$D/workloads.yaml" --policy "$D/workloads.yaml" --workload bench/mem \
		--outbound-port $PORT --inbound-port $((PORT + 1)) --admin-port $((PORT + 2)) \
		--no-probe --log-level warn 2>"$D/agent-$i.log" &
	PIDS="$PIDS $!"
	for _ in $(seq 100); do
		curl -fsS -o /dev/null "http://127.0.0.1:$((PORT + 2))/ready" 2>/dev/null && break
		sleep 0.1
	done
	curl -fsS -o /dev/null "http://127.0.0.1:$((PORT + 2))/ready" ||
		{ echo "agentmem.sh: agent $i did not get ready" >&2; cat "$D/agent-$i.log" >&2; exit 1; }
done
PID=${PIDS# }
PID=${PID%% *} # the first agent's mappings, in detail
sleep "$SETTLE"
python3 - "$PID" <<'EOF'
import collections, os, sys
pid = sys.argv[1]
rss, priv = collections.Counter(), collections.Counter()
name = None
for line in open("/proc/%s/smaps" % pid):
    f = line.split()
    if "-" in f[0] and len(f) >= 5 and not f[0].endswith(":"):
        path = f[5] if len(f) > 5 else "[anon]"
        name = os.path.basename(path) if path.startswith("/") else path
    elif f[0] == "Rss:":
        rss[name] += int(f[1])
    elif f[0] in ("Private_Clean:", "Private_Dirty:"):
        priv[name] += int(f[1])
tr, tp = sum(rss.values()), sum(priv.values())
libs = sum(v for k, v in rss.items() if ".so" in k)
print("| mapping | RSS KiB | of it private KiB |")
print("|---|---|---|")
for k, v in rss.most_common():
    if v:
        print("| %s | %d | %d |" % (k, v, priv[k]))
print("| **total** | **%d** (%.1f MiB; shared libraries %.1f MiB) | **%d** (%.1f MiB) |" % (
    tr, tr / 1024, libs / 1024, tp, tp / 1024))
EOF
[ "$AGENTS" -gt 1 ] || exit 0
# shellcheck disable=SC2086
python3 - $PIDS <<'EOF'
import statistics, sys
def field(pid, name):
    for line in open("/proc/%s/smaps_rollup" % pid):
        if line.startswith(name + ":"):
            return int(line.split()[1])
pss = [field(p, "Pss") for p in sys.argv[1:]]
rss = [field(p, "Rss") for p in sys.argv[1:]]
print("\n%d agents at once: RSS per agent %.2f MiB (median), PSS per agent %.2f MiB "
      "(median; %.2f to %.2f), PSS of all %d %.1f MiB" % (
          len(pss), statistics.median(rss) / 1024, statistics.median(pss) / 1024,
          min(pss) / 1024, max(pss) / 1024, len(pss), sum(pss) / 1024))
EOF
