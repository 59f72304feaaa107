#!/bin/bash
# ipv6_test: the agents over IPv6, end to end, with pod addresses only on
# IPv6 for the calls (issue #13, dual stack). The static-agent pods of
# pods.sh, dual stack (10.201.83.0/24 and fd20:201:83::/64); every call
# below goes to api's IPv6 address:
#   - `cinch-agent init` installed the ip6tables rules in both pods (the
#     nat redirects and the filter guard), not only the iptables ones;
#   - web -> [api]:8080 is meshed: the page arrives, the capture between
#     the pods counts IPv6 TCP packets and holds no plaintext, api's agent
#     logs web's verified identity and the IPv6 original destination
#     (IP6T_SO_ORIGINAL_DST), web's agent TLS 1.3;
#   - web -> [api]:9090 is refused early by web's agent (policy by IPv6
#     address: the Workload's IPv6 address names api);
#   - plaintext to [api]:8080 (from web's agent UID, not captured) is
#     refused as STRICT; a caller with a mesh SVID the policy does not name
#     is refused by api's agent;
#   - identity pinned over IPv6: an agent at api's IPv6 address presenting
#     another identity is refused by web's agent.
# Without the ip6tables rules the calls would go around the agents in
# plaintext: the first checks fail (checked by running init without them).
# Root only (exit 77 otherwise). Namespaces v6e-*.
#   ipv6_test.sh CINCH_AGENT
set -u
AGENT=$1
POD_TAG=v6e
POD_NET=10.201.83
POD_NET6=fd20:201:83::
. "$(dirname "$0")/pods.sh"
pods_need tcpdump socat ip6tables-save
pods_svid rogue ca rogue     # a mesh SVID no policy names
pods_svid impostor ca impostor # a mesh SVID for the pinning check
pods_agent "$WEB" web --probe-interval 300
pods_agent "$API" api --probe-interval 300
API_PID=$LAST
mkdir -p "$D/www" && echo "hello from api over v6" >"$D/www/index.html"
for port in 8080 9090; do
	ip netns exec "$API" /usr/bin/python3 -m http.server "$port" --bind "$API_IP6" \
		--directory "$D/www" >/dev/null 2>&1 &
	PIDS="$PIDS $!"
done
U6="http://[$API_IP6]"
check "web agent started" waitfor 10 grep -q agent_started "$L/web.log"
check "api agent started" waitfor 10 grep -q agent_started "$L/api.log"
check "api app up on IPv6" waitfor 10 as_agent "$API" curl -sfg "$U6:9090/"

# --- the ip6tables rules, both tables, in both pods
for ns in "$WEB" "$API"; do
	check "ip6tables nat redirects in ${ns%-*}" \
		bash -c "ip netns exec $ns ip6tables-save -t nat | grep -q -- '-A CINCH_OUT_REDIRECT -p tcp -j REDIRECT --to-ports 15001'"
	check "ip6tables guard in ${ns%-*}" \
		bash -c "ip netns exec $ns ip6tables-save -t filter | grep -q -- '-A INPUT -p tcp -j CINCH_GUARD'"
done

# --- allowed, meshed over IPv6
ip netns exec "$API" tcpdump --immediate-mode -i "$API_IF" -w "$L/wire.pcap" -U tcp 2>"$L/tcpdump.err" &
CAP=$!
PIDS="$PIDS $CAP"
check "the capture is listening" waitfor 10 grep -q 'listening on' "$L/tcpdump.err"
body=$(ip netns exec "$WEB" curl -sg -m 5 "$U6:8080/index.html?secret=mandarin")
check "web reaches [api]:8080 through both agents ($body)" [ "$body" = "hello from api over v6" ]
# --immediate-mode: without it libpcap hands packets over in blocks, up to
# a second late, and a capture stopped early holds nothing (and proves
# nothing about plaintext)
pcap_count() { tcpdump -nn -r "$L/wire.pcap" "$1" 2>/dev/null | wc -l; }
waitfor 5 bash -c "[ \$(tcpdump -nn -r '$L/wire.pcap' 'ip6 and tcp port 8080' 2>/dev/null | wc -l) -ge 6 ]"
kill "$CAP" 2>/dev/null
wait "$CAP" 2>/dev/null
n6=$(pcap_count "ip6 and tcp port 8080")
n4=$(pcap_count "ip and tcp port 8080")
check "the call crossed as IPv6 TCP ($n6 packets, $n4 IPv4)" [ "$n6" -ge 6 ] && [ "$n4" -eq 0 ]
check "no plaintext request on the wire" bash -c "! grep -aq mandarin '$L/wire.pcap'"
check "no plaintext answer on the wire" bash -c "! grep -aq 'hello from api' '$L/wire.pcap'"
check "api's agent saw web's verified identity, the IPv6 original destination" \
	grep -q "\"dst\":\"\\[$API_IP6\\]:8080\".*\"peer_id\":\"spiffe://cluster.local/ns/shop/sa/web\".*\"verdict\":\"allow\"" "$L/api.log"
check "web's agent called api's pinned identity over TLS 1.3" \
	grep -q "\"dst\":\"\\[$API_IP6\\]:8080\".*\"peer_id\":\"spiffe://cluster.local/ns/shop/sa/api\".*\"tls_version\":\"TLSv1.3\"" "$L/web.log"

# --- denied by policy, early, by web's agent
ip netns exec "$WEB" curl -sg -m 5 "$U6:9090/" >/dev/null
check "web -> [api]:9090 refused" [ $? -ne 0 ]
check "web's agent refused it early, saying why" \
	waitfor 5 grep -q "\"dst\":\"\\[$API_IP6\\]:9090\".*\"verdict\":\"deny\".*does not allow this port" "$L/web.log"

# --- plaintext to a STRICT pod over IPv6 (as the agent's UID: not captured)
as_agent "$WEB" curl -sg -m 5 "$U6:8080/" >/dev/null
check "plaintext to [api]:8080 refused" [ $? -ne 0 ]
check "logged as STRICT" waitfor 5 grep -q "\"dst\":\"\\[$API_IP6\\]:8080\".*plaintext refused" "$L/api.log"

# --- a mesh caller the policy does not name
printf 'GET /index.html HTTP/1.0\r\n\r\n' | as_agent "$WEB" timeout 5 openssl s_client -quiet \
	-connect "[$API_IP6]:8080" -cert "$D/rogue.pem" -key "$D/rogue.key" -CAfile "$D/ca.pem" \
	>"$L/rogue.out" 2>/dev/null
check "a denied caller gets nothing over IPv6" bash -c "! grep -q 'hello from api' '$L/rogue.out'"
check "api's agent denied it by identity" \
	waitfor 5 grep -q '"peer_id":"spiffe://cluster.local/ns/shop/sa/rogue".*"verdict":"deny".*no rule allows' "$L/api.log"

# --- identity pinned: another identity at api's IPv6 address is refused
# (the impostor's agent reads a registry where api's addresses are its
# own; web's agent still expects api's identity there)
pods_stop "$API_PID"
mkdir "$D/impostor"
sed 's/serviceAccount: api/serviceAccount: impostor/' "$D/workloads.yaml" >"$D/impostor/workloads.yaml"
ip netns exec "$API" setpriv --reuid=1337 --regid=1337 --clear-groups \
	"$AGENT" run --cert "$D/impostor.pem" --key "$D/impostor.key" --bundle "$D/ca.pem" \
	--workloads "$D/impostor/workloads.yaml" --policy "$D/policy" --probe-interval 300 \
	2>>"$L/impostor.log" &
PIDS="$PIDS $!"
check "the impostor agent started" waitfor 10 grep -q '"event":"agent_started"' "$L/impostor.log"
body=$(ip netns exec "$WEB" curl -sg -m 5 "$U6:8080/index.html")
check "web gets nothing from the impostor" [ -z "$body" ]
check "web's agent refused the other identity" \
	waitfor 5 grep -q "\"dst\":\"\\[$API_IP6\\]:8080\".*another identity than expected" "$L/web.log"

pods_report
[ $fail -eq 0 ] && echo "ipv6_test: all passed"
exit $fail
