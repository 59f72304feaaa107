#!/bin/bash
# live.sh: the live mesh's figures ("## Live mesh" in docs/benchmarks.md):
#   - time from an agent's start to ready (key made, certificate signed,
#     first snapshot applied, interception verified), in a pod of the local
#     mesh (deploy/local/mesh.sh: namespaces cbl-*, 10.210.1.0/24), polled
#     every 10 ms;
#   - time from a policy file change to its enforcement in every agent,
#     with 1, 10 and 100 agents watching (each agent's "material_applied"
#     log line, against the file's write time; agents in the root
#     namespace on ports of their own, interception not involved);
#   - cinch-control's RSS with those agents connected, and one agent's.
# Medians of ROUNDS.
#   bench/live.sh [--rounds N] [--bin DIR]
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$HERE/../build/release/bin
ROUNDS=5
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--bin) BIN=$2; shift 2 ;;
	*) echo "usage: $0 [--rounds N] [--bin DIR]" >&2; exit 2 ;;
	esac
done
[ "$(id -u)" -eq 0 ] || { echo "live.sh: needs root" >&2; exit 1; }
BIN=$(cd "$BIN" && pwd)
OUT=$(mktemp -d /tmp/cinch-bench-live.XXXXXX)
ms() { date +%s%3N; }

# --- 1. start to ready, in real pods (mesh.sh), ROUNDS times
ready_ms=()
for r in $(seq "$ROUNDS"); do
	(
		export MESH_STATE=$OUT/mesh MESH_BIN=$BIN NETNS_PREFIX=cbl- NETNS_BRIDGE=cbl0 \
			MESH_NET=10.210.1 MESH_ADMIN_PORT=15314
		. "$HERE/../deploy/local/mesh.sh"
		trap mesh_down EXIT
		mkdir -p "$MESH_STATE"
		chmod 0755 "$OUT" "$MESH_STATE" # the agents run as UID 1337
		netns_bridge_up && mesh_control_up || exit 1
		mesh_pod_prepare api || exit 1
		t0=$(ms)
		mesh_agent_start api
		for _ in $(seq 3000); do # 30 s at most
			mesh_in api curl -fs -o /dev/null http://127.0.0.1:15000/ready && break
			sleep 0.01
		done
		t1=$(ms)
		mesh_in api curl -fs -o /dev/null http://127.0.0.1:15000/ready || exit 1
		echo $((t1 - t0))
	) >"$OUT/ready.$r" 2>"$OUT/ready.$r.err" && ready_ms+=("$(tail -n1 "$OUT/ready.$r")")
done

echo "start->ready per round (ms): ${ready_ms[*]}" >&2
[ -n "${LIVE_BENCH_READY_ONLY:-}" ] && exit 0

# --- 2. policy change -> enforced by every agent, for 1, 10, 100 agents
S=$OUT/ctl
mkdir -p "$S/registry" "$S/policy"
mkreg() { # mkreg N
	: >"$S/registry/workloads.yaml"
	for i in $(seq 0 $(($1 - 1))); do
		printf 'apiVersion: cinch.dev/v1alpha1\nkind: Workload\nmetadata: {name: w%d, namespace: bench}\nspec: {serviceAccount: w%d, addresses: ["10.211.%d.%d"]}\n---\n' \
			"$i" "$i" $((i / 200)) $((i % 200 + 1)) >>"$S/registry/workloads.yaml"
	done
}
mode() { # mode STRICT|PERMISSIVE: a change that reaches every workload's slice
	printf 'apiVersion: cinch.dev/v1alpha1\nkind: MeshPolicy\nmetadata: {name: default}\nspec: {mtls: %s, defaultAction: deny}\n' \
		"$1" >"$S/policy/mesh.yaml.tmp"
	mv "$S/policy/mesh.yaml.tmp" "$S/policy/mesh.yaml"
}
PIDS=()
stop_all() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	PIDS=()
}
trap 'stop_all; rm -rf "$OUT"' EXIT
declare -A enforce ctl_rss
agent_rss=""
for n in 1 10 100; do
	rm -rf "$S/state" "$S"/agent-*
	mkreg 100
	mode STRICT
	"$BIN/cinch-control" --state-dir "$S/state" --listen 127.0.0.1:15412 \
		--admin-listen 127.0.0.1:15414 --registry "$S/registry" --policy "$S/policy" \
		--log-level warn 2>"$S/control.log" &
	CTL=$!
	PIDS+=("$CTL")
	for _ in $(seq 100); do curl -fs http://127.0.0.1:15414/ready >/dev/null && break; sleep 0.1; done
	"$BIN/cinchctl" bundle show --pem --state-dir "$S/state" >"$S/bundle.pem"
	for i in $(seq 0 $((n - 1))); do
		"$BIN/cinchctl" token create --identity "bench/w$i" --state-dir "$S/state" >"$S/token.$i" 2>/dev/null
		base=$((20000 + 3 * i))
		"$BIN/cinch-agent" run --control 127.0.0.1:15412 --token-file "$S/token.$i" \
			--control-bundle "$S/bundle.pem" --workload "bench/w$i" ${CINCH_AGENT_NOPROBE:---no-probe} \
			--outbound-port $base --inbound-port $((base + 1)) --admin-port $((base + 2)) \
			2>"$S/agent-$i.log" &
		PIDS+=("$!")
	done
	for i in $(seq 0 $((n - 1))); do
		for _ in $(seq 300); do
			curl -fs "http://127.0.0.1:$((20002 + 3 * i))/ready" >/dev/null && break
			sleep 0.1
		done
	done
	sleep 1
	ctl_rss[$n]=$(awk '/VmRSS/ {print $2}' "/proc/$CTL/status")
	[ "$n" = 1 ] && agent_rss=$(awk '/VmRSS/ {print $2}' "/proc/${PIDS[1]}/status")
	lat=()
	m=PERMISSIVE
	for r in $(seq "$ROUNDS"); do
		t0=$(ms)
		mode $m
		[ $m = PERMISSIVE ] && m=STRICT || m=PERMISSIVE
		sleep 2
		# the newest material_applied of every agent, against t0
		lat+=("$(/usr/bin/python3 - "$t0" "$S" "$n" <<'PY'
import datetime, json, sys
t0, d, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
worst = 0
for i in range(n):
    last = None
    for line in open("%s/agent-%d.log" % (d, i), errors="replace"):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("event") == "material_applied":
            last = e["ts"]
    ts = datetime.datetime.strptime(last, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp() * 1000
    if ts < t0:
        print("-1")
        sys.exit(0)
    worst = max(worst, ts - t0)
print("%.0f" % worst)
PY
)")
	done
	enforce[$n]=$(printf '%s\n' "${lat[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
	stop_all
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : "n/a")}'; }
echo "Medians of $ROUNDS rounds."
echo
echo "| measure | value |"
echo "|---|---|"
echo "| agent start -> ready (certificate, policy, interception verified) | $(median "${ready_ms[@]}") ms |"
for n in 1 10 100; do
	echo "| policy file change -> enforced by all of $n agents | ${enforce[$n]} ms |"
done
for n in 1 10 100; do
	echo "| cinch-control RSS with $n agents watching | $((ctl_rss[$n] / 1024)) MiB |"
done
echo "| one agent's RSS, idle, live mode | $((agent_rss / 1024)) MiB |"
