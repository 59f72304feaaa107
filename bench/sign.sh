#!/bin/bash
# sign.sh: Sign throughput and latency of one cinch-control ("## Control"
# in docs/benchmarks.md). The control and the load generator (sign_load:
# renewals over mutual TLS, HTTP/2, N calls in flight) share this
# machine's cores, on loopback; each concurrency is measured ROUNDS times
# in turn and the medians reported.
#   bench/sign.sh [--rounds N] [--seconds S] [--bin DIR]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$HERE/../build/release/bin
ROUNDS=3
SECS=5
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--seconds) SECS=$2; shift 2 ;;
	--bin) BIN=$2; shift 2 ;;
	*) echo "usage: $0 [--rounds N] [--seconds S] [--bin DIR]" >&2; exit 2 ;;
	esac
done
D=$(mktemp -d /tmp/cinch-sign-bench.XXXXXX)
PID=""
cleanup() {
	[ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT INT TERM

"$BIN/cinch-control" --state-dir "$D/state" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
	--max-streams 256 2>"$D/control.log" &
PID=$!
# The port it bound: from its control_started line. (The audit lines it
# writes for every certificate are part of what is measured: production
# runs at this log level.)
PORT=""
for _ in $(seq 100); do
	PORT=$(grep -o '"grpc_port":[0-9]*' "$D/control.log" | cut -d: -f2 || true)
	[ -n "$PORT" ] && break
	sleep 0.1
done
[ -n "$PORT" ] || { echo "sign.sh: cinch-control did not start" >&2; exit 1; }
"$BIN/cinchctl" bundle show --pem --state-dir "$D/state" >"$D/ca.pem"
TOKEN=$("$BIN/cinchctl" token create --identity bench/load --state-dir "$D/state" 2>/dev/null)
"$BIN/sign_load" enroll "https://127.0.0.1:$PORT" "$D/ca.pem" "$TOKEN" "$D/cert.pem" "$D/key.pem"

# CPU time of the control (user + system, clock ticks), so the table can
# say what one core of it signs.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
HZ=$(getconf CLK_TCK)
: >"$D/results"
for r in $(seq "$ROUNDS"); do
	for n in 1 16 256; do
		echo "round $r: $n clients" >&2
		t0=$(cpu_ticks)
		out=$("$BIN/sign_load" run "https://127.0.0.1:$PORT" "$D/ca.pem" "$D/cert.pem" \
			"$D/key.pem" "$n" "$SECS")
		echo "$n $out $(($(cpu_ticks) - t0))" >>"$D/results"
	done
done
/usr/bin/python3 - "$D/results" "$ROUNDS" "$SECS" "$HZ" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    rows.setdefault(int(f[0]), []).append([float(x) for x in f[1:]])
print("Medians of %s rounds of %s s; control and load generator on the same 2 cores.\n"
      % (sys.argv[2], sys.argv[3]))
print("| concurrent clients | signed/s | control CPU used, cores | signed per control "
      "CPU-second | p50 ms | p99 ms | failed |")
print("|---|---|---|---|---|---|---|")
hz, secs = float(sys.argv[4]), float(sys.argv[3])
for n, rs in sorted(rows.items()):
    med = lambda i: statistics.median(r[i] for r in rs)
    cores = statistics.median(r[5] / hz / secs for r in rs)
    per = statistics.median(r[3] / (r[5] / hz) for r in rs if r[5])
    print("| %d | %.0f | %.2f | %.0f | %.2f | %.2f | %d |" % (n, med(0), cores, per, med(1),
                                                            med(2), sum(r[4] for r in rs)))
PY
