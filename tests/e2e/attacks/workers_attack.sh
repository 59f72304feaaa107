#!/bin/bash
# workers_attack: an agent with --workers 2 (two event loops, listeners in
# one SO_REUSEPORT group, issue #16) must be one agent to whoever talks to
# it: its budgets, its policy and its self-probe are the agent's, not a
# worker's. Two pods (web, api: tests/e2e/pods.sh, static agents with
# `cinch-agent init` rules, test SVIDs), both agents with --workers 2; api's
# with --max-conns 12 --outbound-reserve 0. api serves 8080 with a server
# that says "hi" and holds the connection 30 s, and 8082 with one that says
# "hi" and closes; the policy lets web reach both.
#   1. The self-probe: its connections land on either worker; api must turn
#      ready and stay ready over many 200 ms rounds (a probe that lands on
#      worker 1 is handed to worker 0's probe).
#   2. Spread: 30 short calls (8082) from web's app; api's metrics must show
#      connections ended on worker 0 AND on worker 1
#      (cinch_agent_worker_connections_total), and every access-log line a
#      `worker` field. (The kernel hashes the 4-tuple: all 30 on one worker
#      is a 2^-29 chance.)
#   3. The budget across workers: 12 held calls (8080) fill --max-conns 12 (they
#      spread over both workers, checked from their log lines after); then
#      6 more calls, wherever they land, must all be refused ("connection
#      limit reached"), never answered. With one budget per worker instead
#      of one per agent, a worker holding 5 would let more in.
#   4. A policy change reaches both workers: the policy file then allows
#      8081 only; api's agent (reload on worker 0) must close all 12 held
#      connections as "policy_change", those on worker 1 too.
#   5. The port is the agent's: a second agent started in api as the same
#      UID with --workers 2 on the same ports must refuse to start
#      (listen_failed), not join the SO_REUSEPORT group and take a share
#      of the connections.
# Root only (exit 77 otherwise). Namespaces wrk-*, subnet 10.232.22.0/24.
set -u
AGENT=${CINCH_BUILD:?}/bin/cinch-agent
POD_TAG=wrk
POD_NET=10.232.22
. "${CINCH_SRC:?}/tests/e2e/pods.sh"
pods_need socat

# --- api: the held server and the short one; both agents with two workers
ip netns exec "$API" socat TCP-LISTEN:8080,bind="$API_IP",fork,reuseaddr \
	SYSTEM:"echo hi; sleep 30" 2>/dev/null &
PIDS="$PIDS $!"
ip netns exec "$API" socat TCP-LISTEN:8082,bind="$API_IP",fork,reuseaddr SYSTEM:"echo hi" \
	2>/dev/null &
PIDS="$PIDS $!"
pods_allow "8080, 8082"
pods_agent "$WEB" web --workers 2 --probe-interval 200ms
pods_agent "$API" api --workers 2 --probe-interval 200ms --max-conns 12 --outbound-reserve 0
API_AGENT=$LAST
metric() { # metric NAME_AND_LABELS: api's value ("" when absent)
	pods_admin "$API" /metrics | awk -v m="$1" '$1 == m {print $2}'
}

# 1. ready through the probe, and staying so
check "web ready with 2 workers" waitfor 15 sh -c "ip netns exec $WEB curl -sf -m 2 http://127.0.0.1:15000/ready"
check "api ready with 2 workers" waitfor 15 sh -c "ip netns exec $API curl -sf -m 2 http://127.0.0.1:15000/ready"
sleep 2 # ten probe rounds
check "api still ready after 10 probe rounds" [ "$(pods_admin "$API" /ready)" = "ready" ]
check "no probe round failed" [ "$(metric cinch_agent_probe_failures_total)" = "0" ]

# 2. both workers carry connections
ok=0
for i in $(seq 30); do
	ip netns exec "$WEB" timeout 5 socat -u TCP:"$API_IP":8082 - 2>/dev/null | grep -q hi &&
		ok=$((ok + 1))
done
check "30 calls through both agents ($ok)" [ "$ok" -eq 30 ]
waitfor 10 sh -c "[ \$(grep -c '\"event\":\"connection\"' $L/api.log) -ge 30 ]"
w0=$(metric 'cinch_agent_worker_connections_total{worker="0"}')
w1=$(metric 'cinch_agent_worker_connections_total{worker="1"}')
check "worker 0 carried some (${w0:-none}) and worker 1 too (${w1:-none})" \
	[ "${w0:-0}" -gt 0 ] && [ "${w1:-0}" -gt 0 ]
check "the sum is the agent's count" [ "$((${w0:-0} + ${w1:-0}))" -eq \
	"$(($(metric 'cinch_agent_connections_total{direction="inbound",verdict="allow"}') + \
	$(metric 'cinch_agent_connections_total{direction="inbound",verdict="deny"}')))" ]
check "every access-log line names its worker" [ "$(grep '"event":"connection"' "$L/api.log" |
	grep -vc '"worker":[01]')" -eq 0 ]

# 3. the budget is the agent's
waitfor 10 sh -c "[ \"\$(ip netns exec $API curl -s http://127.0.0.1:15000/metrics |
	awk '\$1 == \"cinch_agent_open_connections\" {print \$2}')\" = 0 ]"
before=$(grep -c '"event":"connection"' "$L/api.log")
H=$(mktemp -d "/tmp/$POD_TAG-held.XXXXXX")
for i in $(seq 12); do
	ip netns exec "$WEB" timeout 40 socat -u TCP:"$API_IP":8080 - >"$H/held$i" 2>/dev/null &
	PIDS="$PIDS $!"
done
check "12 held calls answered" waitfor 10 sh -c "[ \$(cat $H/held* | grep -c hi) -eq 12 ]"
check "api counts 12 open" [ "$(metric cinch_agent_open_connections)" = "12" ]
for i in $(seq 6); do
	ip netns exec "$WEB" timeout 10 socat -u TCP:"$API_IP":8080 - >"$H/extra$i" 2>/dev/null &
	PIDS="$PIDS $!"
done
check "6 calls over the limit refused by api" waitfor 15 sh -c \
	"[ \$(tail -n +$((before + 1)) $L/api.log | grep -c 'connection limit reached') -ge 6 ]"
sleep 1
check "none of them answered" [ "$(cat "$H"/extra* | grep -c hi)" -eq 0 ]
check "still 12 open" [ "$(metric cinch_agent_open_connections)" = "12" ]
refused_on=$(tail -n +$((before + 1)) "$L/api.log" | grep 'connection limit reached' |
	grep -o '"worker":[01]' | sort -u | tr '\n' ' ')
echo "refusals on: $refused_on"

# 4. a new policy closes the held calls on both workers
pods_allow 8081
check "12 held closed by the policy change" waitfor 10 sh -c \
	"[ \$(grep -c '\"end\":\"policy_change\"' $L/api.log) -ge 12 ]"
pc_on=$(grep '"end":"policy_change"' "$L/api.log" | grep -o '"worker":[01]' | sort | uniq -c |
	tr '\n' ' ')
echo "policy_change closes by worker: $pc_on"
check "closes on worker 0 and on worker 1" sh -c \
	"grep '\"end\":\"policy_change\"' $L/api.log | grep -q '\"worker\":0' &&
	 grep '\"end\":\"policy_change\"' $L/api.log | grep -q '\"worker\":1'"
check "none open" waitfor 5 sh -c "[ \"\$(ip netns exec $API curl -s http://127.0.0.1:15000/metrics |
	awk '\$1 == \"cinch_agent_open_connections\" {print \$2}')\" = 0 ]"
rm -rf "$H"

# 5. the ports cannot be shared with another process
ip netns exec "$API" setpriv --reuid=1337 --regid=1337 --clear-groups "$AGENT" run \
	--cert "$D/api.pem" --key "$D/api.key" --bundle "$D/ca.pem" --workloads "$D/workloads.yaml" \
	--policy "$D/policy" --workers 2 --admin-port 0 --no-probe 2>>"$L/api2.log" &
second=$!
PIDS="$PIDS $second"
check "a second agent on the same ports refuses to start" waitfor 10 sh -c \
	"! kill -0 $second 2>/dev/null"
check "it said why (listen_failed)" grep -q '"event":"listen_failed"' "$L/api2.log"
check "the first agent still serves" waitfor 5 sh -c "ip netns exec $API curl -sf -m 2 http://127.0.0.1:15000/ready"

# usage: --workers out of range
for bad in 0 65 two; do
	"$AGENT" run --workers "$bad" --cert x --key x --bundle x --workloads x --policy x \
		>/dev/null 2>&1
	check "--workers $bad: usage error" [ $? -eq 2 ]
done

# SIGTERM stops both workers (and, under ASan, leaks nothing: exit 0)
kill -TERM "$API_AGENT"
wait "$API_AGENT"
rc=$?
check "api stopped cleanly on SIGTERM (exit $rc)" [ "$rc" -eq 0 ]
pods_report
exit $fail
