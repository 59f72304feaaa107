#!/bin/bash
# agent_static_test: two pods (network namespaces on a veth pair), each with
# `cinch-agent init` rules and a cinch-agent in static mode (certificates
# from a test CA made with openssl), and real apps and clients:
#   - web -> api:8080 is allowed: curl gets the page, over TLS on the wire
#     (a capture between the pods holds no plaintext of the request);
#   - web -> api:9090 is denied, and api's access log names the reason;
#   - plaintext to api (STRICT) is refused; a client of another CA is
#     refused; a stock TLS client with web's SVID (openssl s_client) gets in;
#   - each agent's self-probe sees interception work before it is ready;
#     the rules taken out, the agent turns not-ready (loudly), and ready
#     again when they are back;
#   - a policy file change denies new connections at once, and closes an
#     open connection it denies (logged with end "policy_change").
# The shared setup (pods, PKI, policy) is pods.sh.
# Root only (exit 77 otherwise). Namespaces cna-e2e-*, subnet 10.201.9.0/24.
#   agent_static_test.sh CINCH_AGENT
set -u
AGENT=$1
POD_TAG=cna-e2e
POD_NET=10.201.9
. "$(dirname "$0")/pods.sh"
pods_need tcpdump socat
pods_svid intruder foreign web
pods_allow "8080, 8081"
pods_agent "$WEB" web --probe-interval 300
pods_agent "$API" api --probe-interval 300
API_PID=$LAST
mkdir -p "$D/www" && echo "hello from api" >"$D/www/index.html"
for port in 8080 9090; do
	ip netns exec "$API" /usr/bin/python3 -m http.server "$port" --bind 10.201.9.2 \
		--directory "$D/www" >/dev/null 2>&1 &
	PIDS="$PIDS $!"
done
pods_ticker "$API" 10.201.9.2 8081 100 # 10 s of ticks
check "web agent started" waitfor 10 grep -q agent_started "$L/web.log"
check "api agent started" waitfor 10 grep -q agent_started "$L/api.log"
check "api app up" waitfor 10 as_agent "$API" curl -sf http://10.201.9.2:9090/

# --- allowed, and encrypted on the wire
ip netns exec "$API" tcpdump -i "$API_IF" -w "$L/wire.pcap" -U tcp 2>/dev/null &
CAP=$!
PIDS="$PIDS $CAP"
sleep 1
body=$(ip netns exec "$WEB" curl -s -m 5 http://10.201.9.2:8080/index.html?secret=tangerine)
check "web reaches api:8080 through both agents ($body)" [ "$body" = "hello from api" ]
sleep 0.5
kill "$CAP" 2>/dev/null; wait "$CAP" 2>/dev/null
# The capture must hold the connection's payload, not just packets: a
# capture of headers only (or of nothing) has no plaintext to find either.
# So count the packets that carry a payload, and find TLS application-data
# records (type 23, version 3.3) in the captured bytes.
payload_pkts=$(tcpdump -nn -r "$L/wire.pcap" \
	'tcp port 8080 and (((ip[2:2] - ((ip[0] & 0xf) << 2)) - ((tcp[12] & 0xf0) >> 2)) != 0)' \
	2>/dev/null | wc -l)
check "the capture holds the connection's payload packets ($payload_pkts)" [ "$payload_pkts" -ge 4 ]
check "... with their bytes: TLS application-data records" \
	bash -c "LC_ALL=C grep -aPq '\\x17\\x03\\x03' '$L/wire.pcap'"
check "no plaintext request on the wire" bash -c "! grep -aq tangerine '$L/wire.pcap'"
check "no plaintext answer on the wire" bash -c "! grep -aq 'hello from api' '$L/wire.pcap'"
check "the api agent logged the caller's identity" \
	grep -q '"peer_id":"spiffe://cluster.local/ns/shop/sa/web".*"verdict":"allow"' "$L/api.log"
check "TLS 1.3 between the agents" grep -q '"tls_version":"TLSv1.3"' "$L/web.log"

# --- denied by policy
ip netns exec "$WEB" curl -s -m 5 http://10.201.9.2:9090/ >/dev/null
check "web -> api:9090 refused" [ $? -ne 0 ]
check "web's agent refused it early, saying why" \
	waitfor 5 grep -q '"dst":"10.201.9.2:9090".*"verdict":"deny".*does not allow this port' "$L/web.log"

# --- plaintext to a STRICT pod (bypassing web's agent as its UID)
ip netns exec "$WEB" setpriv --reuid=1337 --regid=1337 --clear-groups \
	curl -s -m 5 http://10.201.9.2:8080/ >/dev/null
check "plaintext to api refused" [ $? -ne 0 ]
check "logged as STRICT" waitfor 5 grep -q 'plaintext refused' "$L/api.log"

# --- stock TLS clients: a valid SVID gets in, another CA does not
sclient() { # sclient NAME: what api answers to a GET over openssl s_client
	printf 'GET /index.html HTTP/1.0\r\n\r\n' | ip netns exec "$WEB" setpriv --reuid=1337 \
		--regid=1337 --clear-groups timeout 5 openssl s_client -quiet -connect 10.201.9.2:8080 \
		-cert "$D/$1.pem" -key "$D/$1.key" -CAfile "$D/ca.pem" -verify_return_error 2>/dev/null
}
out=$(sclient web)
check "openssl s_client with web's SVID gets the page" grep -q 'hello from api' <<<"$out"
out=$(sclient intruder)
check "a client of another CA gets nothing" [ -z "$(grep 'hello from api' <<<"$out")" ]
check "logged as a failed handshake" waitfor 5 grep -q '"end":"handshake_failed"' "$L/api.log"
# web's SVID on a port api's policy does not open: api's agent refuses it
printf 'GET /index.html HTTP/1.0\r\n\r\n' | ip netns exec "$WEB" setpriv --reuid=1337 \
	--regid=1337 --clear-groups timeout 5 openssl s_client -quiet -connect 10.201.9.2:9090 \
	-cert "$D/web.pem" -key "$D/web.key" -CAfile "$D/ca.pem" >"$L/out9090" 2>/dev/null
check "api's agent refuses web on 9090" bash -c "! grep -q 'hello from api' '$L/out9090'"
check "the denial is logged with its rule-less reason" \
	waitfor 5 grep -q '"peer_id":"spiffe://cluster.local/ns/shop/sa/web".*"verdict":"deny".*no rule allows' "$L/api.log"

# --- the admin port (loopback is never captured)
admin() { pods_admin "$API" "$1"; }
check "api agent ready" [ "$(admin /ready)" = ready ]
check "/config names the identity" grep -q '"spiffe_id": "spiffe://cluster.local/ns/shop/sa/api"' <<<"$(admin /config)"
m=$(admin /metrics)
check "/metrics counts the allowed inbound connection" \
	grep -Eq '^cinch_agent_connections_total\{direction="inbound",verdict="allow"\} [1-9]' <<<"$m"
check "/metrics counts denials by reason" grep -q '^cinch_agent_denials_total{reason="plaintext refused' <<<"$m"
check "/metrics has the certificate expiry" grep -Eq '^cinch_agent_cert_expiry_timestamp_seconds [1-9]' <<<"$m"
check "/metrics: interception verified" grep -q '^cinch_agent_interception_verified 1' <<<"$m"

# --- the self-probe: interception seen working, then the rules taken out
check "web's agent verified interception" grep -q '"event":"interception_verified"' "$L/web.log"
check "api's agent verified interception" grep -q '"event":"interception_verified"' "$L/api.log"
check "/config says interception verified" grep -q '"interception": "verified"' <<<"$(admin /config)"
check "probes are not logged as connections" bash -c "! grep -q '127.0.0.7' '$L/api.log' '$L/web.log'"
ip netns exec "$API" "$AGENT" init --remove >/dev/null 2>&1
check "rules removed: api not ready" waitfor 5 bash -c "[ \"\$(ip netns exec $API curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:15000/ready)\" = 503 ]"
check "and says why" grep -q 'not ready: probe to 127.0.0.7:15011' <<<"$(admin /ready)"
check "loudly, at error level" grep -q '"level":"error".*"event":"interception_broken"' "$L/api.log"
check "/metrics counts the failed probes" grep -Eq '^cinch_agent_probe_failures_total [1-9]' <<<"$(admin /metrics)"
check "/metrics: interception not verified" grep -q '^cinch_agent_interception_verified 0' <<<"$(admin /metrics)"
ip netns exec "$API" "$AGENT" init >/dev/null 2>&1
check "rules back: api ready again" waitfor 5 bash -c "[ \"\$(ip netns exec $API curl -s http://127.0.0.1:15000/ready)\" = ready ]"

# --- a policy change denies new connections at once, and closes open ones
# A stream of ticks (10 s) from api:8081 is open when the policy changes.
ip netns exec "$WEB" timeout 20 socat -u TCP:10.201.9.2:8081 - >"$L/ticks" 2>/dev/null &
DL=$!
PIDS="$PIDS $DL"
check "the stream is under way" waitfor 5 grep -q 'tick 2' "$L/ticks"
rm "$D/policy/allow.yaml"
cat >"$D/policy/none.yaml" <<'Y'
apiVersion: cinch.dev/v1alpha1
kind: AllowPolicy
metadata: {name: nobody, namespace: shop}
spec:
  selector: {workloads: [api]}
  ports: [1]
  from: [{identities: ["spiffe://cluster.local/ns/shop/sa/nobody"]}]
Y
check "the api agent reloaded" waitfor 5 grep -q config_reloaded "$L/api.log"
ip netns exec "$WEB" curl -s -m 5 http://10.201.9.2:8080/ >/dev/null
check "after the change, web -> api:8080 is refused" [ $? -ne 0 ]
check "the open stream was cut" waitfor 5 bash -c "! kill -0 $DL"
check "before its end ($(tail -n 1 "$L/ticks"))" bash -c "! grep -q 'tick 100' '$L/ticks'"
# Both agents re-check it (web's as the caller, api's as the server): the
# first to read the new policy closes it, so either may be the one to log.
closer=$(grep -l '"end":"policy_change"' "$L/api.log" "$L/web.log" | head -n 1)
check "an agent logged it closed by the policy change" [ -n "$closer" ]
check "as denied, with the reason that now denies it" \
	grep -Eq '"verdict":"deny".*"reason":"[^"]+".*"end":"policy_change"' "${closer:-/dev/null}"
if [ "$closer" = "$L/api.log" ]; then
	m=$(pods_admin "$API" /metrics) dir=inbound
else
	m=$(pods_admin "$WEB" /metrics) dir=outbound
fi
check "/metrics counts it" grep -Eq "^cinch_agent_policy_closed_total\\{direction=\"$dir\"\\} 1\$" <<<"$m"

# --- PERMISSIVE, and the pod's --mtls-mode STRICT (its cinch.dev/mtls-mode
# annotation) that refuses plaintext whatever the policy says
cat >"$D/policy/permissive.yaml" <<'Y'
apiVersion: cinch.dev/v1alpha1
kind: MeshPolicy
metadata: {name: default}
spec: {mtls: PERMISSIVE}
---
apiVersion: cinch.dev/v1alpha1
kind: AllowPolicy
metadata: {name: plain-from-web, namespace: shop}
spec:
  selector: {workloads: [api]}
  ports: [9090]
  from: [{unauthenticated: {ipBlocks: ["10.201.9.1/32"]}}]
Y
plain() { as_agent "$WEB" curl -sf -m 5 http://10.201.9.2:9090/ >/dev/null; }
check "PERMISSIVE: plaintext from web's address is let in by its rule" waitfor 5 plain
pods_stop "$API_PID"
pods_agent "$API" api --probe-interval 300 --mtls-mode STRICT
check "api's agent back with --mtls-mode STRICT" \
	waitfor 10 bash -c "[ \"\$(ip netns exec $API curl -s -m 2 http://127.0.0.1:15000/ready)\" = ready ]"
strict_lines() { grep -c 'plaintext refused: mTLS mode is STRICT' "$L/api.log"; }
n0=$(strict_lines)
plain
check "--mtls-mode STRICT: the same plaintext is refused" [ $? -ne 0 ]
check "... saying so" waitfor 5 bash -c "[ \$(grep -c 'plaintext refused: mTLS mode is STRICT' '$L/api.log') -gt $n0 ]"
pods_report
[ $fail -eq 0 ] && echo "agent_static_test: all passed"
exit $fail
