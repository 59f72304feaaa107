#!/bin/bash
# agent_static_test: two pods (network namespaces on a veth pair), each with
# `cinch-agent init` rules and a cinch-agent in static mode (certificates
# from a test CA made with openssl), and real apps and clients:
#   - web -> api:8080 is allowed: curl gets the page, over TLS on the wire
#     (a capture between the pods holds no plaintext of the request);
#   - web -> api:9090 is denied, and api's access log names the reason;
#   - plaintext to api (STRICT) is refused; a client of another CA is
#     refused; a stock TLS client with web's SVID (openssl s_client) gets in;
#   - a policy file change denies new connections at once.
# Root only (exit 77 otherwise). Namespaces cna-e2e-*, subnet 10.201.9.0/24.
#   agent_static_test.sh CINCH_AGENT
set -u
AGENT=$1
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
for t in ip openssl curl setpriv tcpdump /usr/bin/python3; do
	command -v $t >/dev/null || { echo "SKIP: $t missing"; exit 77; }
done
WEB=cna-e2e-web-$$
API=cna-e2e-api-$$
D=$(mktemp -d /tmp/cna-e2e.XXXXXX)
L=$(mktemp -d /tmp/cna-e2e-logs.XXXXXX) # apart: the agents watch D
chmod 755 "$D"
PIDS=""
cleanup() {
	for p in $PIDS; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	ip netns del "$WEB" 2>/dev/null
	ip netns del "$API" 2>/dev/null
	rm -rf "$D" "$L"
}
trap cleanup EXIT INT TERM
fail=0
check() { local what=$1; shift; if ! "$@"; then echo "FAIL: $what"; fail=1; fi; }

# --- PKI: one mesh CA, one foreign CA, SVIDs for web and api
cd "$D"
mkca() {
	openssl ecparam -name prime256v1 -genkey -noout -out "$1.key" 2>/dev/null
	openssl req -x509 -new -key "$1.key" -days 1 -subj "/O=$1" \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
		-out "$1.pem" 2>/dev/null
}
mksvid() { # mksvid NAME CA SA
	openssl ecparam -name prime256v1 -genkey -noout -out "$1.key" 2>/dev/null
	openssl req -new -key "$1.key" -subj "/" -out "$1.csr" 2>/dev/null
	printf 'subjectAltName=critical,URI:spiffe://cluster.local/ns/shop/sa/%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' "$3" >"$1.ext"
	openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days 1 \
		-extfile "$1.ext" -out "$1.pem" 2>/dev/null
}
mkca ca
mkca foreign
mksvid web ca web
mksvid api ca api
mksvid intruder foreign web
chmod 644 ./*.key
cat >workloads.yaml <<'Y'
apiVersion: cinch.dev/v1alpha1
kind: Workload
metadata: {name: web, namespace: shop}
spec: {serviceAccount: web, addresses: ["10.201.9.1"]}
---
apiVersion: cinch.dev/v1alpha1
kind: Workload
metadata: {name: api, namespace: shop}
spec: {serviceAccount: api, addresses: ["10.201.9.2"]}
Y
mkdir policy
cat >policy/allow.yaml <<'Y'
apiVersion: cinch.dev/v1alpha1
kind: AllowPolicy
metadata: {name: api-from-web, namespace: shop}
spec:
  selector: {workloads: [api]}
  ports: [8080]
  from: [{identities: ["spiffe://cluster.local/ns/shop/sa/web"]}]
Y
cd - >/dev/null

# --- the pods
ip netns add "$WEB" && ip netns add "$API" || exit 1
ip link add "ew$$" netns "$WEB" type veth peer name "ea$$" netns "$API" || exit 1
ip -n "$WEB" link set lo up && ip -n "$API" link set lo up
ip -n "$WEB" addr add 10.201.9.1/24 dev "ew$$" && ip -n "$WEB" link set "ew$$" up
ip -n "$API" addr add 10.201.9.2/24 dev "ea$$" && ip -n "$API" link set "ea$$" up
for ns in "$WEB" "$API"; do
	ip netns exec "$ns" "$AGENT" init >/dev/null 2>&1 || { echo "FAIL: init in $ns"; exit 1; }
done
agent() { # agent NS NAME
	ip netns exec "$1" setpriv --reuid=1337 --regid=1337 --clear-groups \
		"$AGENT" run --cert "$D/$2.pem" --key "$D/$2.key" --bundle "$D/ca.pem" \
		--workloads "$D/workloads.yaml" --policy "$D/policy" 2>>"$L/$2.log" &
	PIDS="$PIDS $!"
}
agent "$WEB" web
agent "$API" api
mkdir -p "$D/www" && echo "hello from api" >"$D/www/index.html"
for port in 8080 9090; do
	ip netns exec "$API" /usr/bin/python3 -m http.server "$port" --bind 10.201.9.2 \
		--directory "$D/www" >/dev/null 2>&1 &
	PIDS="$PIDS $!"
done
waitfor() { # waitfor SECONDS CMD...
	local end=$(($(date +%s) + $1)); shift
	until "$@" >/dev/null 2>&1; do [ "$(date +%s)" -ge "$end" ] && return 1; sleep 0.1; done
}
check "web agent started" waitfor 10 grep -q agent_started "$L/web.log"
check "api agent started" waitfor 10 grep -q agent_started "$L/api.log"
check "api app up" waitfor 10 ip netns exec "$API" setpriv --reuid=1337 --regid=1337 \
	--clear-groups curl -sf http://10.201.9.2:9090/

# --- allowed, and encrypted on the wire
ip netns exec "$API" tcpdump -i "ea$$" -w "$L/wire.pcap" -U tcp 2>/dev/null &
CAP=$!
PIDS="$PIDS $CAP"
sleep 1
body=$(ip netns exec "$WEB" curl -s -m 5 http://10.201.9.2:8080/index.html?secret=tangerine)
check "web reaches api:8080 through both agents ($body)" [ "$body" = "hello from api" ]
sleep 0.5
kill "$CAP" 2>/dev/null; wait "$CAP" 2>/dev/null
check "something was captured" [ -s "$L/wire.pcap" ]
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
admin() { ip netns exec "$API" curl -s -m 5 "http://127.0.0.1:15000$1"; }
check "api agent ready" [ "$(admin /ready)" = ready ]
check "/config names the identity" grep -q '"spiffe_id": "spiffe://cluster.local/ns/shop/sa/api"' <<<"$(admin /config)"
m=$(admin /metrics)
check "/metrics counts the allowed inbound connection" \
	grep -Eq '^cinch_agent_connections_total\{direction="inbound",verdict="allow"\} [1-9]' <<<"$m"
check "/metrics counts denials by reason" grep -q '^cinch_agent_denials_total{reason="plaintext refused' <<<"$m"
check "/metrics has the certificate expiry" grep -Eq '^cinch_agent_cert_expiry_timestamp_seconds [1-9]' <<<"$m"

# --- a policy change denies new connections at once
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

if [ $fail -ne 0 ]; then
	echo "--- web agent log"; tail -n 20 "$L/web.log"
	echo "--- api agent log"; tail -n 20 "$L/api.log"
fi
[ $fail -eq 0 ] && echo "agent_static_test: all passed"
exit $fail
