#!/bin/bash
# agent_inbound_attack: what a host on the pod network can make a pod's
# agent do with what arrives at it (issue #12, holes 1, 4 and 5). Two pods
# (web, api: tests/e2e/pods.sh, static agents with `cinch-agent init` rules,
# SVIDs of a test CA made with openssl) and a third namespace, "out", wired
# to api only: it holds an outside host (10.201.33.99, fd00:201:33::99)
# that api can reach and web cannot, and is the unauthenticated attacker.
# A broad rule lets web and api reach api on every port, so only the
# agent's own checks stand between the attacks and their targets.
#   1. Inbound pivot. web, an allowed caller with its real SVID (openssl
#      s_client as the agent's UID, so web's own agent stays out of it),
#      routes packets for the outside host's IPv4 and IPv6 address, and for
#      127.0.0.1:8080 (a service api binds to loopback only; web's route
#      rules and route_localnet let the packets leave), through api. api's
#      agent must refuse each with the reason "original destination is not
#      this pod's address", count it, and the outside host and the loopback
#      service must see nothing; api's log line for each destination shows
#      the packets did arrive (a refusal by the network would prove
#      nothing).
#   2. Listeners and self-loops. out connects straight to api's 15001 and
#      15006 (IPv4 and IPv6), web's app reaches api:15001 through its own
#      agent (the broad rule allows it), api's app connects to
#      127.0.0.1:15001: first `cinch-agent init`'s guard must reject them
#      all in the kernel (api's agent sees none), then, the guard taken
#      out, the agent must refuse each itself as not redirected. api's app
#      connecting to its own address on 15001 and 15006 (redirected, so
#      past the guard) and a foreign nat rule in api sending out's
#      connections to 15001 are refused by the agent with their reasons,
#      once: no connection of the agent to itself, none left open, the
#      metrics count them. A burst of 40 such connections runs while web's
#      real calls keep working.
#   3. Flood. out opens 300 TCP connections to api:8080 and sends nothing,
#      held at most 10 s, against an agent with --max-conns 300,
#      --max-handshakes 32 and --handshake-timeout 6s (before the fix, 300
#      silent connections took every place, for 10 s). While they are held
#      (16 in the handshake places, half of them, the rest waiting), web's app (through both
#      agents), a stock TLS client with web's SVID, and api's app calling
#      web all get through; api's agent refuses what is over the
#      per-source budget at once (half of the 225 places inbound may take:
#      75 are kept for outbound), closes the rest at the handshake timeout,
#      counts both by reason, ends with no open connection, and its memory
#      grows by far less than the 64Mi the injector gives it (peak RSS;
#      with AddressSanitizer the growth only, as ASan's own shadow memory
#      is not the agent's). Then 360 more from three addresses fill all 225
#      inbound places: api's app still reaches web on the places kept for
#      outbound (real callers wait for the flood to time out: the limit of
#      a per-address budget, see docs/agent.md).
# Root only (exit 77 otherwise). Namespaces cxa-atk-*, subnets
# 10.201.31-33.0/24 and fd00:201:31-33::/64.
set -u
AGENT=${CINCH_BUILD:?}/bin/cinch-agent
POD_TAG=cxa-atk
POD_NET=10.201.31
POD_NET6=fd00:201:31::
. "${CINCH_SRC:?}/tests/e2e/pods.sh"
pods_need socat openssl
OUT=$POD_TAG-out-$$
OUTSIDE=10.201.33.99
OUTSIDE6=fd00:201:33::99
attack_cleanup() {
	cleanup
	ip netns del "$OUT" 2>/dev/null
}
trap attack_cleanup EXIT INT TERM
ulimit -n "$(ulimit -Hn)" # 300 held connections and their agents

# --- out: linked to api only, the outside host behind it
ip netns add "$OUT" || exit 1
ip link add "xo$$" netns "$OUT" type veth peer name "xa$$" netns "$API" || exit 1
ip -n "$OUT" link set lo up
ip -n "$OUT" addr add 10.201.32.9/24 dev "xo$$" && ip -n "$OUT" link set "xo$$" up
ip -n "$OUT" addr add fd00:201:32::9/64 dev "xo$$" nodad
ip -n "$OUT" addr add "$OUTSIDE/32" dev lo && ip -n "$OUT" addr add "$OUTSIDE6/128" dev lo
ip -n "$API" addr add 10.201.32.2/24 dev "xa$$" && ip -n "$API" link set "xa$$" up
ip -n "$API" addr add fd00:201:32::2/64 dev "xa$$" nodad
ip -n "$API" route add 10.201.33.0/24 via 10.201.32.9
ip -n "$API" route add fd00:201:33::/64 via fd00:201:32::9
ip -n "$OUT" route add "$POD_NET.0/24" via 10.201.32.2
ip -n "$OUT" route add fd00:201:31::/64 via fd00:201:32::2
# web sends the outside host's addresses, and 127.0.0.1:8080, to api
ip -n "$WEB" route add "$OUTSIDE/32" via "$API_IP"
ip -n "$WEB" route add "$OUTSIDE6/128" via "$API_IP6"
ip -n "$WEB" rule add pref 100 lookup local && ip -n "$WEB" rule del pref 0
ip -n "$WEB" rule add pref 50 to 127.0.0.1/32 ipproto tcp dport 8080 lookup 231
ip -n "$WEB" route add 127.0.0.1/32 via "$API_IP" dev "$WEB_IF" src "$WEB_IP" table 231
ip netns exec "$WEB" sysctl -qw "net.ipv4.conf.$WEB_IF.route_localnet=1" net.ipv4.conf.all.route_localnet=1

# --- policy: the broad rule, and api may call web:8080
cat >"$D/policy/broad.yaml" <<Y
apiVersion: cinch.dev/v1alpha1
kind: AllowPolicy
metadata: {name: api-from-mesh, namespace: shop}
spec:
  selector: {workloads: [api]}
  from: [{identities: ["spiffe://cluster.local/ns/shop/sa/web", "spiffe://cluster.local/ns/shop/sa/api"]}]
---
apiVersion: cinch.dev/v1alpha1
kind: AllowPolicy
metadata: {name: web-from-api, namespace: shop}
spec:
  selector: {workloads: [web]}
  ports: [8080]
  from: [{identities: ["spiffe://cluster.local/ns/shop/sa/api"]}]
Y

# --- apps: api's on its own addresses and a secret on its loopback, web's,
# the outside host's (each connection it gets leaves a line in $L/outside)
mkdir -p "$D/www" && echo "hello from api" >"$D/www/index.html"
for a in "$API_IP" "$API_IP6"; do
	ip netns exec "$API" /usr/bin/python3 -m http.server 8080 --bind "$a" --directory "$D/www" \
		>/dev/null 2>&1 &
	PIDS="$PIDS $!"
done
ip netns exec "$API" socat TCP-LISTEN:8080,bind=127.0.0.1,fork,reuseaddr \
	SYSTEM:"echo LOOPBACK SECRET" 2>/dev/null &
PIDS="$PIDS $!"
ip netns exec "$WEB" socat TCP-LISTEN:8080,bind="$WEB_IP",fork,reuseaddr \
	SYSTEM:"echo hello from web" 2>/dev/null &
PIDS="$PIDS $!"
for a in "TCP4-LISTEN:8080,bind=$OUTSIDE" "TCP6-LISTEN:8080,bind=[$OUTSIDE6]"; do
	ip netns exec "$OUT" socat "$a,fork,reuseaddr" \
		SYSTEM:"echo hit >>$L/outside; echo OUTSIDE HOST" 2>/dev/null &
	PIDS="$PIDS $!"
done
# AddressSanitizer keeps freed memory in quarantine: keep it small here
export ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}quarantine_size_mb=8"
pods_agent "$WEB" web --probe-interval 300
pods_agent "$API" api --probe-interval 300 --max-conns 300 --max-handshakes 32 \
	--handshake-timeout 6s
API_PID=$LAST
ready() { [ "$(pods_admin "$1" /ready)" = ready ]; }
check "web agent ready" waitfor 15 ready "$WEB"
check "api agent ready" waitfor 15 ready "$API"
for a in "$OUTSIDE" "[$OUTSIDE6]"; do
	check "outside host up at $a (from api, as the agent's UID)" waitfor 10 bash -c \
		"ip netns exec $API setpriv --reuid=1337 --regid=1337 --clear-groups socat -T 2 - TCP:$a:8080 </dev/null | grep -q OUTSIDE"
done
check "loopback secret up (inside api)" waitfor 10 bash -c \
	"ip netns exec $API socat -T 2 - TCP:127.0.0.1:8080 </dev/null | grep -q SECRET"
: >"$L/outside"
web_to_api() { [ "$(ip netns exec "$WEB" curl -s -m 5 "http://$API_IP:8080/")" = "hello from api" ]; }
api_to_web() { ip netns exec "$API" socat -T 3 - TCP:"$WEB_IP":8080 </dev/null 2>/dev/null | grep -q 'hello from web'; }
sclient() { # sclient HOST:PORT: api's answer to a GET over TLS with web's SVID, from web as UID 1337
	printf 'GET /index.html HTTP/1.0\r\n\r\n' | as_agent "$WEB" timeout 5 openssl s_client \
		-quiet -connect "$1" -cert "$D/web.pem" -key "$D/web.key" -CAfile "$D/ca.pem" 2>/dev/null
}
metric() { # metric NAME_AND_LABELS: api's value, 0 when absent
	pods_admin "$API" /metrics | awk -v k="$1" 'index($0, k " ") == 1 { v = $NF } END { print v + 0 }'
}
logged() { # logged N PATTERN: api's log has at least N lines matching
	[ "$(grep -c -- "$2" "$L/api.log")" -ge "$1" ]
}
check "control: web reaches api through both agents" web_to_api
check "control: s_client with web's SVID gets api's page" grep -q 'hello from api' <<<"$(sclient "$API_IP:8080")"
check "control: and over IPv6" grep -q 'hello from api' <<<"$(sclient "[$API_IP6]:8080")"
check "control: api's app reaches web" api_to_web

# --- 1. inbound pivot
NOT_OWN='original destination is not this pod'"'"'s address'
out=$(sclient "$OUTSIDE:8080")
check "pivot to the outside host (IPv4) gets nothing" [ -z "$(grep OUTSIDE <<<"$out")" ]
out=$(sclient "[$OUTSIDE6]:8080")
check "pivot to the outside host (IPv6) gets nothing" [ -z "$(grep OUTSIDE <<<"$out")" ]
out=$(sclient "127.0.0.1:8080")
check "pivot to api's loopback-only service gets nothing" [ -z "$(grep SECRET <<<"$out")" ]
check "api's agent refused the IPv4 pivot, saying why" \
	waitfor 5 logged 1 "\"dst\":\"$OUTSIDE:8080\".*\"verdict\":\"deny\".*\"reason\":\"$NOT_OWN\""
check "api's agent refused the IPv6 pivot, saying why" \
	waitfor 5 logged 1 "\"dst\":\"\\[$OUTSIDE6\\]:8080\".*\"reason\":\"$NOT_OWN\""
check "api's agent refused the loopback pivot, saying why" \
	waitfor 5 logged 1 "\"dst\":\"127.0.0.1:8080\".*\"reason\":\"$NOT_OWN\""
check "the outside host saw no connection" [ ! -s "$L/outside" ]
check "/metrics counts the pivots" [ "$(metric "cinch_agent_denials_total{reason=\"$NOT_OWN\"}")" -ge 3 ]
check "api's page still served to web" web_to_api

# --- 2. the agent's listeners from outside, and self-loops
NOT_REDIR='not redirected: a direct connection to the agent'"'"'s port'
SELF_LOOP="self-loop: the destination is one of the agent's own ports"
direct() { # direct NS HOST PORT: what a direct TCP connection gets back for "hello" ([v6]")
	echo hello | ip netns exec "$1" socat -T 2 - TCP:"$2":"$3",connect-timeout=2 2>/dev/null
}
lines() { grep -c '"event":"connection"' "$L/api.log"; }
direct_attacks() { # the direct connections to api's ports, from out, web's app and api's app
	local target
	for target in "$API_IP 15001" "$API_IP 15006" "[$API_IP6] 15001" "[$API_IP6] 15006"; do
		set -- $target
		check "out -> $1:$2 directly gets nothing" [ -z "$(direct "$OUT" "$1" "$2")" ]
	done
	check "web's app -> api:15001 (allowed by the broad rule) gets nothing" \
		[ -z "$(ip netns exec "$WEB" curl -s -m 5 "http://$API_IP:15001/")" ]
	check "api's app -> 127.0.0.1:15001 gets nothing" [ -z "$(direct "$API" 127.0.0.1 15001)" ]
}
# 2a. init's guard rejects them in the kernel: api's agent never sees them
n0=$(lines)
direct_attacks
check "api's agent saw none of them (the guard rejected them)" [ "$(lines)" -eq "$n0" ]
# 2b. without the guard, the agent refuses them itself
ip netns exec "$API" iptables -D INPUT -p tcp -j CINCH_GUARD
ip netns exec "$API" ip6tables -D INPUT -p tcp -j CINCH_GUARD
before=$(lines)
direct_attacks
check "each refused by the agent as not redirected" waitfor 5 logged 6 "\"reason\":\"$NOT_REDIR\""
check "including the IPv6 ones" waitfor 5 logged 2 "\"dst\":\"\\[$API_IP6\\]:1500[16]\".*\"reason\":\"$NOT_REDIR\""
# redirected connections to the agent's own ports pass the guard: the agent
for port in 15001 15006; do
	check "api's app -> its own $API_IP:$port gets nothing" [ -z "$(direct "$API" "$API_IP" "$port")" ]
done
check "both refused as self-loops" waitfor 5 logged 2 "\"dst\":\"$API_IP:1500[16]\".*\"reason\":\"$SELF_LOOP\""
# someone else's rule sends network traffic to the outbound port
ip netns exec "$API" iptables -t nat -I PREROUTING -p tcp --dport 9999 -j REDIRECT --to-ports 15001
check "out -> api:9999, redirected to 15001 by a foreign rule, gets nothing" \
	[ -z "$(direct "$OUT" "$API_IP" 9999)" ]
ip netns exec "$API" iptables -t nat -D PREROUTING -p tcp --dport 9999 -j REDIRECT --to-ports 15001
check "refused: the outbound port takes only the pod's own connections" \
	waitfor 5 logged 1 '"src":"\[::ffff:10.201.32.9\]:[0-9]*","dst":"10.201.31.2:9999".*"reason":"outbound connection from outside the pod"'
# a burst while web's real calls go on
for i in $(seq 10); do
	for port in 15001 15006; do
		direct "$OUT" "$API_IP" "$port" >/dev/null &
		direct "$API" "$API_IP" "$port" >/dev/null &
	done
done
check "web's real calls succeed during the burst" web_to_api
wait_bursts() { ! pgrep -f "socat -T 2 - TCP:$API_IP:1500" >/dev/null; }
waitfor 10 wait_bursts
after=$(lines)
# 9 attacks + 40 in the burst + web's curl(s): a loop would be hundreds
check "no self-connect storm ($((after - before)) connection lines)" [ $((after - before)) -le 54 ]
check "no connection left open" waitfor 5 bash -c \
	"ip netns exec $API curl -s http://127.0.0.1:15000/metrics | grep -q '^cinch_agent_open_connections 0'"
check "/metrics counts the direct connections" \
	[ "$(metric "cinch_agent_denials_total{reason=\"$NOT_REDIR\"}")" -ge 26 ]
check "/metrics counts the self-loops" \
	[ "$(metric "cinch_agent_denials_total{reason=\"$SELF_LOOP\"}")" -ge 22 ]
check "api's agent still up" kill -0 "$API_PID"
ip netns exec "$API" "$AGENT" init >/dev/null 2>&1 || echo "FAIL: init again in api"

# --- 3. a flood of silent connections
rss() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$API_PID/status"; } # kB
asan=0
grep -aq __asan_init "$AGENT" && asan=1
rss0=$(rss VmRSS)
cat >"$L/flood.py" <<'PY'
# flood.py HOST PORT N HOLD_S [SRC...]: N silent connections (from the SRC
# addresses in turn), each held until the peer closes it or HOLD_S pass
import socket, sys, time
host, port, n, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
srcs = sys.argv[5:]
socks = []
for i in range(n):
    s = socket.socket()
    s.settimeout(2)
    try:
        if srcs:
            s.bind((srcs[i % len(srcs)], 0))
        s.connect((host, port))
        socks.append(s)
    except OSError:
        s.close()
print("open", len(socks), flush=True)
end = time.time() + hold
for s in socks:
    s.settimeout(max(0.01, end - time.time()))
    try:
        s.recv(1)
    except OSError:
        pass
    s.close()
print("done", flush=True)
PY
ip netns exec "$OUT" timeout 30 /usr/bin/python3 "$L/flood.py" "$API_IP" 8080 300 10 >"$L/flood.out" 2>&1 &
FLOOD=$!
PIDS="$PIDS $FLOOD"
check "300 silent connections opened" waitfor 10 grep -q '^open 300' "$L/flood.out"
check "during the flood: web's app reaches api" web_to_api
check "during the flood: s_client with web's SVID gets api's page" \
	grep -q 'hello from api' <<<"$(sclient "$API_IP:8080")"
check "during the flood: api's app reaches web" api_to_web
held=$(metric cinch_agent_open_connections)
check "the silent connections were still held meanwhile ($held open)" [ "$held" -ge 100 ]
wait "$FLOOD"
PER_SOURCE='too many unfinished handshakes from this address'
refused=$(metric "cinch_agent_denials_total{reason=\"$PER_SOURCE\"}")
check "the silent connections over the per-source budget refused and counted ($refused)" \
	[ "$refused" -ge 100 ]
timedout=$(metric 'cinch_agent_connection_errors_total{direction="inbound",reason="handshake_timeout"}')
check "the others closed at the handshake timeout and counted as connection errors ($timedout)" \
	[ "$timedout" -ge 100 ]
check "... not as denials (a timeout is no policy decision)" \
	[ "$(metric 'cinch_agent_denials_total{reason="handshake timed out"}')" -eq 0 ]
check "no connection left open after the flood" waitfor 10 bash -c \
	"ip netns exec $API curl -s http://127.0.0.1:15000/metrics | grep -q '^cinch_agent_open_connections 0'"
hwm=$(rss VmHWM)
if [ $asan -eq 1 ]; then
	check "memory growth under the flood ($(((hwm - rss0) / 1024)) MiB, ASan build) far under 64Mi" \
		[ $((hwm - rss0)) -lt 32768 ]
else
	check "peak RSS under the flood ($((hwm / 1024)) MiB) under 64Mi" [ "$hwm" -lt 65536 ]
fi
check "api's agent still up" kill -0 "$API_PID"
check "after the flood: web's app reaches api" web_to_api

# --- 3b. three addresses fill every place inbound may take: the app's
# outbound calls still have theirs
ip -n "$OUT" addr add 10.201.32.10/24 dev "xo$$"
ip -n "$OUT" addr add 10.201.32.11/24 dev "xo$$"
ip netns exec "$OUT" timeout 30 /usr/bin/python3 "$L/flood.py" "$API_IP" 8080 360 10 \
	10.201.32.9 10.201.32.10 10.201.32.11 >"$L/flood2.out" 2>&1 &
FLOOD=$!
PIDS="$PIDS $FLOOD"
check "360 silent connections from three addresses opened" waitfor 10 grep -q '^open 360' "$L/flood2.out"
held=$(metric cinch_agent_open_connections)
check "every inbound place taken ($held open)" [ "$held" -ge 220 ]
check "inbound full: api's app still reaches web" api_to_web
wait "$FLOOD"
LIMIT='inbound connection limit reached (the rest is kept for outbound)'
check "the connections over the inbound places refused and counted" \
	[ "$(metric "cinch_agent_denials_total{reason=\"$LIMIT\"}")" -ge 50 ]
check "after it: web's app reaches api" waitfor 10 web_to_api

pods_report
[ $fail -eq 0 ] && echo "agent_inbound_attack: all passed"
exit $fail
