#!/bin/sh
# fuzz.sh: runs the libFuzzer targets of tests/fuzz one after the other
# (`make fuzz` builds them first) and keeps what they learnt.
#
#   scripts/fuzz.sh <build dir>     FUZZ_TIME=<seconds per target> (600)
#                                   FUZZ_TARGETS="sign kobject" (default: all)
#
# Per target: fuzz for FUZZ_TIME seconds in one process (the machine is
# shared: never -jobs/-workers > 1), new inputs in a scratch directory and
# crash/timeout/leak files in <build>/fuzz/<target>/; then merge the scratch
# inputs into tests/fuzz/corpus/<target>/ with -merge=1, which adds only
# those that reach new coverage (hand-written seeds stay as they are), so
# the checked-in corpus stays small. A table at the end gives executions,
# exec/s, libFuzzer's final cov and ft, corpus entries added and the
# finding. Exit status: 0 when no target found anything, 1 otherwise.
set -u

build=${1:?usage: scripts/fuzz.sh <build dir>}
src=$(cd "$(dirname "$0")/.." && pwd)
time=${FUZZ_TIME:-600}
targets=${FUZZ_TARGETS:-}
if [ -z "$targets" ]; then
	for f in "$src"/tests/fuzz/*_fuzz.c; do
		b=$(basename "$f" _fuzz.c)
		targets="$targets $b"
	done
fi
case $time in '' | *[!0-9]*) echo "fuzz.sh: FUZZ_TIME must be seconds" >&2; exit 2 ;; esac

table=$(mktemp)
trap 'rm -f "$table"' EXIT
failed=0
for t in $targets; do
	exe="$build/bin/fuzz_$t"
	corpus="$src/tests/fuzz/corpus/$t"
	out="$build/fuzz/$t"
	if [ ! -x "$exe" ] || [ ! -d "$corpus" ]; then
		echo "fuzz.sh: no fuzzer $exe or corpus $corpus" >&2
		failed=1
		continue
	fi
	mkdir -p "$out"
	scratch=$(mktemp -d)
	before=$(find "$corpus" -type f | wc -l)
	touch "$out/.start"
	echo "fuzz.sh: $t for ${time}s (log: $out/fuzz.log)"
	# -timeout: an input slower than 10 s is a finding (a hang), not noise.
	"$exe" -max_total_time="$time" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$out/" "$scratch" "$corpus" >"$out/fuzz.log" 2>&1
	rc=$?
	"$exe" -merge=1 -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$out/" "$corpus" \
		"$scratch" >"$out/merge.log" 2>&1 || echo "fuzz.sh: $t: merge failed (see $out/merge.log)" >&2
	rm -rf "$scratch"
	added=$(($(find "$corpus" -type f | wc -l) - before))
	# The last status line ("#<n> DONE cov: <c> ft: <f> ...") and the stats.
	last=$(grep -E '^#[0-9]+' "$out/fuzz.log" | tail -n 1)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/fuzz.log")
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out/fuzz.log")
	cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
	ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
	found=none
	if [ "$rc" -ne 0 ]; then
		found=$(find "$out" -newer "$out/.start" -type f \( -name 'crash-*' -o \
			-name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | tr '\n' ' ')
		found="exit $rc: ${found:-see $out/fuzz.log}"
		grep -m1 -E '^==[0-9]+==ERROR|^SUMMARY' "$out/fuzz.log" >&2
		failed=1
	fi
	printf '%-14s %12s %8s %6s %7s %6s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" \
		"${ft:-?}" "+$added" "$found" >>"$table"
done
echo
printf '%-14s %12s %8s %6s %7s %6s  %s\n' target executions exec/s cov ft corpus finding
cat "$table"
exit $failed
