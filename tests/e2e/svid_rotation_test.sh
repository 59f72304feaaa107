#!/bin/bash
# svid_rotation_test: the identity lifecycle of issue #6 end to end, on the
# local mesh (deploy/local/mesh.sh) in namespaces cnasr-*, bridge cnasr0,
# subnet 10.201.13.0/24, control admin port 15234.
#   1. rotation: cinch-control signs 2-minute certificates
#      (--test-short-ttl --svid-ttl 2m); web calls api:8080 every 0.2 s
#      while web's and api's agents renew twice each (svid_issued with
#      renewal true, a new serial in /config): not one request fails;
#   2. control plane gone: requests keep working while the certificates
#      are valid; past their expiry both agents fail closed (/ready 503,
#      web -> api refused, svid_expired in the log, the metrics say so);
#   3. control plane back and a new join token in each pod's token file
#      (the old one was spent): the agents recover without a restart.
# Built this way because only real agents, a real control plane and real
# clients show that rotation swaps the TLS context under load and that
# the fail-closed path holds; the mesh's own CA makes every certificate.
# The whole run takes about 5 minutes (two lifetimes and a half); every
# wait is bounded. Root only (exit 77 otherwise).
set -u
MESHTEST_TOOLS="ip iptables-restore curl socat setpriv /usr/bin/python3"
MESH_BIN=$CINCH_BUILD/bin
NETNS_PREFIX=cnasr-
NETNS_BRIDGE=cnasr0
MESH_NET=10.201.13
MESH_ADMIN_PORT=15234
MESH_TTL=2m
MESH_CONTROL_ARGS=--test-short-ttl
. "$CINCH_SRC/tests/lib/meshtest.sh"
TRAFFIC=$MESH_STATE/traffic # one line per request: "epoch_ms ok|fail detail"
traffic_pid=
meshtest_on_exit() {
	if [ -n "$traffic_pid" ]; then
		touch "$MESH_STATE/traffic.stop"
		kill "$traffic_pid" 2>/dev/null
		wait "$traffic_pid" 2>/dev/null
	fi
	if [ $fail -ne 0 ]; then
		echo "--- failed requests"
		grep ' fail ' "$TRAFFIC" 2>/dev/null | head -n 20
	fi
}

API=$(mesh_addr api)
now_ms() { date +%s%3N; }
admin() { mesh_in "$1" curl -sS -m 5 "http://127.0.0.1:15000$2"; }
cfg() { admin "$1" /config | json "d[\"$2\"]"; }
# metric POD NAME: the value of an unlabelled sample of /metrics
metric() { admin "$1" /metrics | awk -v n="$2" '$1 == n { print $2; f = 1 } END { exit !f }'; }
metric_is() { [ "$(metric "$1" "$2")" = "$3" ]; }
ready_code() { mesh_in "$1" curl -s -m 5 -o /dev/null -w '%{http_code}' http://127.0.0.1:15000/ready; }
# log lines are JSON with "event" last
renewals() { grep -c '"renewal":true,.*"event":"svid_issued"' "$MESH_STATE/agent-$1.log"; }
# count RESULT FROM_MS TO_MS: requests with that result started in [FROM, TO)
count() { awk -v r="$1" -v a="$2" -v b="$3" '$2 == r && $1 >= a && $1 < b { n++ } END { print n + 0 }' "$TRAFFIC"; }
# clean_traffic WHAT FROM_MS TO_MS MIN: no request failed in [FROM, TO),
# and MIN or more succeeded
clean_traffic() {
	local ok bad
	ok=$(count ok "$2" "$3")
	bad=$(count fail "$2" "$3")
	check "$1: no failed request ($bad failed)" [ "$bad" -eq 0 ]
	check "$1: steady traffic, $4 requests or more succeeded ($ok)" [ "$ok" -ge "$4" ]
}

# The steady traffic: web -> api:8080 every 0.2 s, each request bounded by
# 2 s, until told to stop (and never past 7 minutes).
traffic() {
	local end=$(($(date +%s) + 420)) t out
	while [ ! -e "$MESH_STATE/traffic.stop" ] && [ "$(date +%s)" -lt $end ]; do
		t=$(now_ms)
		out=$(mesh_in web curl -sS -m 2 "http://$API:8080/" 2>&1)
		if [ "$out" = "hello from api" ]; then
			echo "$t ok" >>"$TRAFFIC"
		else
			echo "$t fail ${out//$'\n'/ }" >>"$TRAFFIC"
		fi
		sleep 0.2
	done
}

# --- the mesh, with 2-minute certificates
if ! mesh_up; then
	fail=1
	exit 1
fi
echo "ok: control plane (2-minute certificates) and three agents ready"
for p in web api; do
	check "$p's certificate lives 2 minutes" \
		[ $(($(cfg $p cert_not_after) - $(date +%s))) -le 120 ]
done
check "the expiry metric is the certificate's notAfter" \
	[ "$(metric web cinch_agent_cert_expiry_timestamp_seconds)" = "$(cfg web cert_not_after)" ]
# in_range LO HI V: LO < V <= HI
in_range() { [ -n "$3" ] && [ "$3" -gt "$1" ] && [ "$3" -le "$2" ]; }
left=$(metric web cinch_agent_cert_remaining_seconds)
check "the time left is in (0, 120] ($left)" in_range 0 120 "$left"
check "the agent reports itself ready in its metrics" [ "$(metric web cinch_agent_ready)" = 1 ]
check "the configuration stream is connected" \
	netns_wait 5 metric_is web cinch_agent_config_stream_connected 1
check "no failed certificate request" [ "$(metric web cinch_agent_svid_failures)" = 0 ]

# --- 1. rotation under steady traffic
t_start=$(now_ms)
traffic &
traffic_pid=$!
declare -A serials=([web]=" $(cfg web cert_serial)" [api]=" $(cfg api cert_serial)")
# Two renewals each: the first at half the lifetime (less jitter), the
# second half a lifetime later: both within 2 minutes and a half.
deadline=$(($(date +%s) + 150))
while [ "$(date +%s)" -lt $deadline ]; do
	for p in web api; do
		s=$(cfg $p cert_serial 2>/dev/null)
		[ -n "$s" ] && [[ "${serials[$p]} " != *" $s "* ]] && serials[$p]+=" $s"
	done
	[ "$(renewals web)" -ge 2 ] && [ "$(renewals api)" -ge 2 ] && break
	sleep 1
done
for p in web api; do
	s=$(cfg $p cert_serial)
	[[ "${serials[$p]} " != *" $s "* ]] && serials[$p]+=" $s"
	n=$(echo ${serials[$p]} | wc -w)
	check "$p renewed its certificate twice ($(renewals $p) renewals logged)" \
		[ "$(renewals $p)" -ge 2 ]
	check "$p's /config showed 3 serials or more ($n)" [ "$n" -ge 3 ]
done
sleep 2 # requests started just after the last renewal
clean_traffic "across the rotations" "$t_start" "$(now_ms)" 100
check "api's agent logged the renewals' traffic as mutual TLS from web" \
	grep -q '"peer_id":"spiffe://cluster.local/ns/demo/sa/web".*"verdict":"allow"' \
	"$MESH_STATE/agent-api.log"
check "after renewals: no failed certificate request" \
	[ "$(metric api cinch_agent_svid_failures)" = 0 ]
issued=$(metric web cinch_agent_svid_issued_total)
check "web's metrics count the certificates issued ($issued)" [ "${issued:-0}" -ge 3 ]

# --- 2. the control plane goes away, past the certificates' expiry
netns_kill control
t_down=$(now_ms)
check "control down: the configuration stream is seen broken" \
	netns_wait 10 metric_is web cinch_agent_config_stream_connected 0
expiry=$(cfg web cert_not_after)
e=$(cfg api cert_not_after)
[ "$e" -lt "$expiry" ] && expiry=$e
left=$(metric web cinch_agent_cert_remaining_seconds)
check "the time left until web stops working is shown ($left s)" in_range 0 120 "$left"
echo "info: waiting for the certificates to expire ($((expiry - $(date +%s))) s)"
# requests keep working until just before the first certificate expires
while [ "$(date +%s)" -lt $((expiry - 3)) ]; do sleep 1; done
clean_traffic "control down, certificates valid" "$t_down" "$(now_ms)" 50
check "renewals failed meanwhile and the metrics count them" \
	[ "$(metric web cinch_agent_svid_failures)" -ge 1 ]
expired() { [ "$(ready_code web)" = 503 ] && [ "$(ready_code api)" = 503 ]; }
check "past expiry: both agents fail closed (/ready 503)" netns_wait 130 expired
for p in web api; do
	check "$p's log says why (svid_expired)" \
		grep -q '"effect":"failing closed.*"event":"svid_expired"' "$MESH_STATE/agent-$p.log"
	check "$p's metrics: not ready" [ "$(metric $p cinch_agent_ready)" = 0 ]
	check "$p's metrics: no time left" [ "$(metric $p cinch_agent_cert_remaining_seconds)" = 0 ]
done
check "new connections web -> api are refused" not web_to_api
check "web's metrics count the connections refused for want of a certificate" \
	grep -q '^cinch_agent_denials_total{reason="no valid certificate or policy: failing closed"} [1-9]' \
	<(admin web /metrics)
t_closed=$(now_ms)
sleep 3
check "and they stay refused (no request succeeded in 3 s)" \
	[ "$(count ok "$t_closed" "$(now_ms)")" -eq 0 ]

# --- 3. control back, a new join token in each pod: recovery, no restart
mesh_control_up || fail=1
for p in web api db; do
	dir=$MESH_STATE/pods/$p
	mesh_ctl token create --identity "demo/$p" --ttl 10m >"$dir/token.new" \
		2>>"$MESH_STATE/tokens.log" || fail=1
	chown "$MESH_UID:$MESH_UID" "$dir/token.new"
	chmod 0600 "$dir/token.new"
	mv "$dir/token.new" "$dir/token" # the agent reads it whole, never half written
done
t_back=$(now_ms)
recovered() { [ "$(ready_code web)" = 200 ] && [ "$(ready_code api)" = 200 ]; }
# the token is read at the next attempt: at most one backoff (30 s) away
check "new tokens: both agents ready again" netns_wait 60 recovered
check "web -> api flows again" netns_wait 10 web_to_api
traffic_since() { [ "$(count ok "$1" "$(now_ms)")" -gt 0 ]; }
check "and the steady traffic too" netns_wait 5 traffic_since "$t_back"
for p in web api; do
	check "$p got a fresh certificate from the new token" \
		grep -q '"renewal":false,.*"event":"svid_issued"' <(sed -n '/svid_expired/,$p' "$MESH_STATE/agent-$p.log")
	check "$p was not restarted (one agent_started)" \
		[ "$(grep -c '"event":"agent_started"' "$MESH_STATE/agent-$p.log")" = 1 ]
	check "$p's metrics: ready" [ "$(metric $p cinch_agent_ready)" = 1 ]
	check "$p's metrics: a new lifetime ahead" \
		in_range 60 120 "$(metric $p cinch_agent_cert_remaining_seconds)"
	check "$p's metrics: no failure since" [ "$(metric $p cinch_agent_svid_failures)" = 0 ]
	# at once with the new certificate, not after the watch's backoff (30 s)
	check "$p's configuration stream is back" \
		netns_wait 5 metric_is $p cinch_agent_config_stream_connected 1
done
echo "info: $(count ok 0 "$(now_ms)") requests succeeded, $(count fail 0 "$(now_ms)") failed in all"

exit $fail
