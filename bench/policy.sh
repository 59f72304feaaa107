#!/bin/bash
# policy.sh: decisions per second of one workload's slice ("## Policy" in
# docs/benchmarks.md), with 10, 1,000 and 100,000 inbound rules, without
# and with the 8 guardrail rules (a pass on every decision), and the
# compilation of 10,000 workloads x 10,000 policies, ROUNDS times in turn,
# medians. One core: the evaluator is single-threaded.
#   bench/policy.sh [--rounds N] [--seconds S] [--bin DIR]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$HERE/../build/release/bin
ROUNDS=3
SECS=2
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--seconds) SECS=$2; shift 2 ;;
	--bin) BIN=$2; shift 2 ;;
	*) echo "usage: $0 [--rounds N] [--seconds S] [--bin DIR]" >&2; exit 2 ;;
	esac
done
OUT=$(mktemp)
DIR=$(mktemp -d)
trap 'rm -f "$OUT" "$OUT.c"; rm -rf "$DIR"' EXIT
for _ in $(seq "$ROUNDS"); do
	for n in 10 1000 100000; do
		for g in none guard; do
			r=$("$BIN/policy_bench" "$n" "$SECS" ${g#none})
			echo "$g $r" >>"$OUT"
		done
	done
	"$BIN/policy_bench" compile 10000 10000 "$DIR" >>"$OUT.c"
done
/usr/bin/python3 - "$OUT" "$ROUNDS" "$SECS" "$OUT.c" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    rows.setdefault((int(f[1]), f[0]), []).append([float(x) for x in f[2:]])
print("Medians of %s rounds of %s s, one core.\n" % (sys.argv[2], sys.argv[3]))
print("| inbound rules | guardrail rules | decisions/s | ns per decision | slice load ms |")
print("|---|---|---|---|---|")
for (n, g), rs in sorted(rows.items()):
    med = lambda i: statistics.median(r[i] for r in rs)
    print("| %d | %s | %.1f M | %.0f | %.1f |" % (n, "8, a pass" if g == "guard" else "none",
                                               med(0) / 1e6, med(1), med(2)))
c = [[float(x) for x in l.split()] for l in open(sys.argv[4])]
m = lambda i: statistics.median(r[i] for r in c)
print("\n| workloads | AllowPolicies | parse + validate ms | index ms | all snapshots ms "
      "| snapshot bytes, all | max RSS MiB |")
print("|---|---|---|---|---|---|---|")
print("| %d | %d | %.0f | %.0f | %.0f | %.1f M | %.0f |" % (m(0), m(1), m(2), m(3), m(4),
                                                           m(5) / 1e6, m(6)))
PY
