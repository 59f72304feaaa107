#!/bin/bash
# reload_storm_attack: hole 9 of issue #12, reload storms.
#
# What it attacks: the live reload of configuration files. fswatch watched a
# file through its directory and reloaded on ANY event there, so a process
# writing a log file beside the policy made dozens of reloads a second
# window (38-66 in 15 s); each reload of a static agent drops its TLS
# resumption state and re-decides every open connection, and each one of
# cinch-control rebuilds the whole generation.
#
# How: a static agent (pods.sh: the api pod; it watches its certificate,
# key, bundle, workloads file and policy directory, all in $D) and a
# cinch-control in the same pod reading the same workloads file and policy
# directory (--registry/--policy, debug logging so that even a reload that
# publishes nothing is a log line). For 8 s a writer appends to
# $D/storm.log (beside the workloads file and the PKI) and to an editor's
# dotfile in the policy directory, every 10 ms; meanwhile the policy and
# workloads files are touched, chmod'ed, rewritten with the same bytes and
# renamed over with the same bytes. Then: 0 reloads in the agent
# (config_reloaded / config_rejected) and 0 in the control
# (config_published / config_unchanged / config_rejected). Then one real
# policy change: applied exactly once by each, with a new policy version.
#
# Why this way: the reload log events are what an operator sees and what
# each reload costs; counting them is the direct measure. The writer is
# bounded (8 s, at most 1,000 appends), every wait is a bounded poll.
# Root only (exit 77 otherwise). Namespaces cxe-rs-*, subnet 10.201.51.0/24.
set -u
AGENT=$CINCH_BUILD/bin/cinch-agent
CONTROL=$CINCH_BUILD/bin/cinch-control
POD_TAG=cxe-rs
POD_NET=10.201.51
. "$CINCH_SRC/tests/e2e/pods.sh"
pods_need socat

S=$(mktemp -d "/tmp/cxe-rs-state.XXXXXX")
trap 'cleanup; rm -rf "$S"' EXIT INT TERM
pods_agent "$API" api --probe-interval 300
ip netns exec "$API" "$CONTROL" --state-dir "$S/state" --listen 127.0.0.1:0 \
	--admin-listen 127.0.0.1:0 --registry "$D/workloads.yaml" --policy "$D/policy" \
	--log-level debug 2>>"$L/control.log" &
PIDS="$PIDS $!"
check "api agent started" waitfor 10 grep -q agent_started "$L/api.log"
check "control started" waitfor 20 grep -q control_started "$L/control.log"
count() { # count FILE EVENT...: how many lines of FILE carry one of the events
	local f=$1 n=0 e
	shift
	for e in "$@"; do n=$((n + $(grep -c "\"event\":\"$e\"" "$f"))); done
	echo $n
}
AGENT_RELOADS="config_reloaded config_rejected"
CONTROL_RELOADS="config_published config_unchanged config_rejected"
a0=$(count "$L/api.log" $AGENT_RELOADS)
c0=$(count "$L/control.log" $CONTROL_RELOADS)

# --- the storm: a log writer beside the watched files, an editor's dotfile
# in the watched directory, and same-content touches of the watched files
(
	end=$((SECONDS + 8)) i=0
	while [ $SECONDS -lt $end ] && [ $i -lt 1000 ]; do
		i=$((i + 1))
		echo "{\"event\":\"tick\",\"n\":$i}" >>"$D/storm.log"
		echo "scratch $i" >>"$D/policy/.allow.yaml.swp"
		sleep 0.01
	done
) &
WRITER=$!
PIDS="$PIDS $WRITER"
for round in 1 2 3 4; do
	touch "$D/workloads.yaml" "$D/policy/allow.yaml" "$D/api.pem"
	chmod 644 "$D/policy/allow.yaml"
	cat "$D/workloads.yaml" >"$D/workloads.yaml.same" && mv "$D/workloads.yaml.same" "$D/workloads.yaml"
	cp "$D/policy/allow.yaml" "$D/policy/.allow.same" && mv "$D/policy/.allow.same" "$D/policy/allow.yaml"
	cp "$D/policy/allow.yaml" "$D/allow.same" && cat "$D/allow.same" >"$D/policy/allow.yaml"
	sleep 1.5
done
waitfor 15 bash -c "! kill -0 $WRITER"
sleep 1 # past both settle times (agent 200 ms, control 100 ms)
a1=$(count "$L/api.log" $AGENT_RELOADS)
c1=$(count "$L/control.log" $CONTROL_RELOADS)
echo "during the storm: agent $((a1 - a0)) reloads, control $((c1 - c0)) reloads"
check "no agent reload for a log beside, touches and same bytes" [ "$a1" -eq "$a0" ]
check "no control reload for a log beside, touches and same bytes" [ "$c1" -eq "$c0" ]
storm=$(wc -l <"$D/storm.log")
check "the storm wrote its log ($storm lines)" [ "$storm" -ge 100 ]

# --- one real change: applied exactly once by each
v0=$(grep '"event":"agent_started"' "$L/api.log" | grep -o '"policy_version":"[^"]*"')
pods_allow "8080, 8081"
check "the change reaches the agent" waitfor 5 grep -q '"event":"config_reloaded"' "$L/api.log"
check "the change reaches the control" \
	waitfor 5 bash -c "[ \$(grep -c '\"event\":\"config_published\"' '$L/control.log') -ge 2 ]"
sleep 1.5 # a second reload, if any, would come within the settle times
a2=$(count "$L/api.log" $AGENT_RELOADS)
c2=$(count "$L/control.log" $CONTROL_RELOADS)
check "the agent reloaded exactly once ($((a2 - a1)))" [ "$((a2 - a1))" -eq 1 ]
check "the control reloaded exactly once ($((c2 - c1)))" [ "$((c2 - c1))" -eq 1 ]
v1=$(grep '"event":"config_reloaded"' "$L/api.log" | grep -o '"policy_version":"[^"]*"')
check "the agent runs the new policy ($v0 -> $v1)" test -n "$v1" -a "$v0" != "$v1"
if [ $fail -ne 0 ]; then
	echo "--- api agent log (reload events)"
	grep -E 'config_|agent_started' "$L/api.log" | tail -n 10
	echo "--- control log (reload events)"
	grep -E 'config_|control_started' "$L/control.log" | tail -n 10
fi
exit $fail
