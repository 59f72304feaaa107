#!/bin/bash
# agent_stress_test: the connection behaviours of the data path, through two
# agents (web -> api, both with `cinch-agent init` rules; shared setup in
# pods.sh, certificates from a test CA made with openssl):
#   - half-close: a client that shuts its write side right after its
#     request still gets the whole answer (python, HTTP/1.0 GET of 8 MiB);
#   - 1 GiB from api to web arrives with the sha256 it was sent with;
#   - 1,000 connections open at the same time all complete (the server
#     answers none until all 1,000 have arrived through both agents);
#   - IPv6: the same rules and agents carry a request to api's IPv6 address;
#   - --max-conns (with no place kept for outbound): beyond the limit new
#     connections are refused (logged),
#     the agent stays up, and accepts again once others close;
#   - --on-policy-change keep: an open stream that a new policy denies
#     finishes (new connections are refused);
#   - a server at api's address with a valid SVID of another identity
#     (openssl s_server standing in for api's agent) is refused by web's
#     agent, while the same server with api's SVID is accepted;
#   - an agent started in a pod without rules never becomes ready, unless
#     --no-probe, which says it is unsafe.
# Root only (exit 77 otherwise). Namespaces cna-a5-*, subnets 10.201.10.0/24
# and fd00:cafe:10::/64.
#   agent_stress_test.sh CINCH_AGENT
set -u
AGENT=$1
PEERS="/usr/bin/python3 $(cd "$(dirname "$0")" && pwd)/stress_peers.py"
POD_TAG=cna-a5
POD_NET=10.201.10
POD_NET6=fd00:cafe:10::
. "$(dirname "$0")/pods.sh"
pods_need socat sha256sum ss
# 1,000 connections: each agent holds two sockets per connection
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 4096 ] ||
	{ echo "SKIP: ulimit -n cannot reach 4096"; exit 77; }
pods_svid db ca db # a valid SVID of another workload's identity
pods_allow "8080, 8081, 8082, 8083"
pods_agent "$WEB" web
WEB_AGENT=$LAST
pods_agent "$API" api
API_AGENT=$LAST
mkdir -p "$D/www"
head -c 8M /dev/urandom >"$D/www/big"
want_big=$(sha256sum <"$D/www/big" | cut -d' ' -f1)
ip netns exec "$API" /usr/bin/python3 -m http.server 8080 --bind :: --directory "$D/www" \
	>/dev/null 2>&1 &
PIDS="$PIDS $!"
pods_ticker "$API" "$API_IP" 8081 30 # 3 s of ticks
# 1 GiB of a deterministic pseudo-random stream (AES-CTR of zeros)
GIB=1073741824
gen="openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f -iv 0 -in /dev/zero 2>/dev/null | head -c $GIB"
ip netns exec "$API" socat TCP-LISTEN:8082,bind="$API_IP",reuseaddr SYSTEM:"$gen" 2>/dev/null &
PIDS="$PIDS $!"
ip netns exec "$API" $PEERS barrier-server "$API_IP" 8083 1000 2>/dev/null &
PIDS="$PIDS $!"
ready() { [ "$(pods_admin "$1" /ready)" = ready ]; }
check "web agent ready" waitfor 15 ready "$WEB"
check "api agent ready" waitfor 15 ready "$API"
check "api apps up" waitfor 10 as_agent "$API" curl -sf "http://$API_IP:8080/"

# --- half-close
out=$(ip netns exec "$WEB" timeout 60 $PEERS halfclose "$API_IP" 8080 /big)
check "half-closed client gets the whole answer ($out)" [ "$out" = "HTTP/1.0 200 OK $want_big" ]

# --- 1 GiB
want=$(bash -c "$gen" | sha256sum | cut -d' ' -f1)
t0=$(date +%s)
got=$(ip netns exec "$WEB" timeout 180 socat -u TCP:"$API_IP":8082 - | sha256sum | cut -d' ' -f1)
check "1 GiB arrives intact ($got, $(($(date +%s) - t0)) s)" [ "$got" = "$want" ]
check "and was counted as 1 GiB by api's agent" waitfor 5 \
	grep -q "\"dst\":\"$API_IP:8082\".*\"bytes_out\":$GIB," "$L/api.log"

# --- 1,000 at once
t0=$(date +%s)
n=$(ip netns exec "$WEB" timeout 120 $PEERS many "$API_IP" 8083 1000 2>&1 | tail -n 1)
check "1,000 concurrent connections all complete ($n, $(($(date +%s) - t0)) s)" [ "$n" = 1000 ]
check "both agents alive" kill -0 "$WEB_AGENT" "$API_AGENT"
check "and back to no open connection" waitfor 10 bash -c \
	"ip netns exec $API curl -s http://127.0.0.1:15000/metrics | grep -q '^cinch_agent_open_connections 0'"

# --- IPv6
body=$(ip netns exec "$WEB" curl -s -m 10 "http://[$API_IP6]:8080/big" | sha256sum | cut -d' ' -f1)
check "IPv6 through both agents" [ "$body" = "$want_big" ]
check "api's agent saw web's identity over IPv6" \
	grep -q "\"dst\":\"\\[$API_IP6\\]:8080\".*\"peer_id\":\"spiffe://cluster.local/ns/shop/sa/web\".*\"verdict\":\"allow\"" "$L/api.log"

# --- the connection limit, and a policy change that keeps open connections
pods_stop "$WEB_AGENT"
pods_stop "$API_AGENT"
pods_agent "$WEB" web --on-policy-change keep
WEB_AGENT=$LAST
# probes every 200 ms: they must never take one of the 20 places
pods_agent "$API" api --on-policy-change keep --max-conns 20 --outbound-reserve 0 \
	--max-pending-per-source 20 \
	--probe-interval 200
API_AGENT=$LAST
check "agents ready again" waitfor 15 bash -c \
	"[ \"\$(ip netns exec $API curl -s http://127.0.0.1:15000/ready)\" = ready ] &&
	 [ \"\$(ip netns exec $WEB curl -s http://127.0.0.1:15000/ready)\" = ready ]"
HELD=""
for i in $(seq 20); do
	ip netns exec "$WEB" timeout 30 socat -u TCP:"$API_IP":8081 - >"$L/held.$i" 2>/dev/null &
	HELD="$HELD $!"
done
PIDS="$PIDS $HELD"
held_up() { local i; for i in $(seq 20); do grep -q 'tick 1$' "$L/held.$i" || return 1; done; }
check "20 connections held open" waitfor 10 held_up
over=$(ip netns exec "$WEB" timeout 5 socat -u TCP:"$API_IP":8081 - 2>/dev/null)
check "the 21st is refused" [ -z "$over" ]
check "logged with the reason" waitfor 5 grep -q 'connection limit reached' "$L/api.log"
check "api's agent still up" kill -0 "$API_AGENT"
for p in $HELD; do wait "$p"; done # each stream ends after 3 s
ticks=$(ip netns exec "$WEB" timeout 10 socat -u TCP:"$API_IP":8081 - 2>/dev/null | tail -n 1)
check "after they closed, a new connection gets in ($ticks)" [ "$ticks" = "tick 30" ]

ip netns exec "$WEB" timeout 20 socat -u TCP:"$API_IP":8081 - >"$L/kept" 2>/dev/null &
KEPT=$!
PIDS="$PIDS $KEPT"
check "a stream is under way" waitfor 5 grep -q 'tick 2$' "$L/kept"
reloads() { cat "$L/api.log" "$L/web.log" | grep -c config_reloaded; }
before=$(reloads)
pods_allow "8080, 8082, 8083" # 8081 no more
check "both agents reloaded" waitfor 5 bash -c "[ \$(cat '$L/api.log' '$L/web.log' | grep -c config_reloaded) -ge $((before + 2)) ]"
over=$(ip netns exec "$WEB" timeout 5 socat -u TCP:"$API_IP":8081 - 2>/dev/null)
check "a new connection to 8081 is refused" [ -z "$over" ]
wait "$KEPT"
check "the open stream finished under keep ($(tail -n 1 "$L/kept"))" grep -q 'tick 30$' "$L/kept"
check "nothing closed by the policy change" bash -c "! grep -q '\"end\":\"policy_change\"' '$L/api.log' '$L/web.log'"

# --- a server with a valid SVID of the wrong identity
pods_stop "$API_AGENT"
sserver() { # sserver NAME: openssl s_server with NAME's SVID in place of api's agent
	ip netns exec "$API" openssl s_server -accept 15006 -cert "$D/$1.pem" -key "$D/$1.key" \
		-CAfile "$D/ca.pem" -verify 1 -tls1_3 -www -quiet >/dev/null 2>&1 &
	SSERVER=$!
	PIDS="$PIDS $SSERVER"
	waitfor 5 bash -c "ip netns exec $API ss -ltnH | grep -q ':15006 '"
}
sserver api
page=$(ip netns exec "$WEB" curl -s -m 5 "http://$API_IP:8080/")
check "control: a server with api's SVID is accepted" grep -qi 's_server' <<<"$page"
pods_stop "$SSERVER"
sserver db
page=$(ip netns exec "$WEB" curl -s -m 5 "http://$API_IP:8080/")
check "a server with db's SVID at api's address gets nothing" [ -z "$page" ]
check "web's agent refused it, saying why" waitfor 5 grep -q \
	'"reason":"server presents another identity than expected at this address".*"end":"handshake_failed"' \
	"$L/web.log"
check "web's agent still up" kill -0 "$WEB_AGENT"

# --- no rules at start-up: not ready, unless told not to probe
pods_stop "$WEB_AGENT"
ip netns exec "$WEB" "$AGENT" init --remove >/dev/null 2>&1
pods_agent "$WEB" web
WEB_AGENT=$LAST
check "without rules, the agent says why it is not ready" waitfor 10 bash -c \
	"ip netns exec $WEB curl -s http://127.0.0.1:15000/ready | grep -q 'not ready: probe to'"
check "and stays so" bash -c "sleep 1; ! ip netns exec $WEB curl -sf http://127.0.0.1:15000/ready"
pods_stop "$WEB_AGENT"
pods_agent "$WEB" web --no-probe
WEB_AGENT=$LAST
check "--no-probe: ready without rules" waitfor 10 ready "$WEB"
check "--no-probe: logged as unsafe" grep -q '"effect":"UNSAFE.*"event":"interception_not_probed"' "$L/web.log"
check "/config: not probed" grep -q '"interception": "not probed"' <<<"$(pods_admin "$WEB" /config)"

pods_report
[ $fail -eq 0 ] && echo "agent_stress_test: all passed"
exit $fail
