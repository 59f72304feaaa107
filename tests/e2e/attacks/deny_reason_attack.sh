#!/bin/bash
# deny_reason_attack: the destination's agent tells an agent caller why it
# refused it (ALPN cinch-deny/1, agent/verdict.h), and nobody else learns
# anything new from it (issue #17). Two pods, web and api
# (tests/e2e/pods.sh: static agents, `cinch-agent init` rules, SVIDs of a
# test CA made with openssl), and a third namespace, "evil", wired to web
# only, holding a server with a valid SVID of the mesh
# (spiffe://cluster.local/ns/shop/sa/evil) that speaks the agents' ALPN and
# lies.
#
# The caller must reach the destination's agent for the destination to
# refuse it: with one policy everywhere, web's own agent refuses first
# (it knows api's rules for it). So web's agent is given a stale view, as
# when the destination's policy changed first: web's policy says api
# admits web on 8080 and 8081, api's says 8080 only.
#   1. web -> api:8081: api's agent refuses; web's app sees its connection
#      closed with no byte; web's agent logs
#      "peer_refusal":{"by":"spiffe://.../sa/api","port":8081,
#      "code":"policy_deny","reason":"no rule allows ..."} and counts
#      cinch_agent_refused_by_peer_total{reason="policy_deny"}.
#   2. Stock clients see what they saw before: openssl s_client with web's
#      SVID and no ALPN gets no byte at all; curl (ALPN h2, http/1.1) an
#      empty reply. A client that offers the ALPN itself (a caller probing
#      the policy) learns only that it is refused: the frame holds the
#      reason and port, no rule and no identity but its own view.
#   3. web -> api:8080 allowed: a 1 MiB answer arrives byte-exact (sha256),
#      and web's agent counts exactly 1 MiB in (the two-byte allow frame
#      is taken off, not relayed nor counted); an upload too.
#   4. The lying server (its three ports, three lies: a length of 65535, a
#      body of raw control bytes and a forged log line, a well-formed
#      refusal whose reason carries escape sequences): web's app gets none
#      of its bytes and its connection closed; web's agent logs each as
#      code invalid_message in its own words (no byte of the peer's in its
#      log), counts them, and stays alive and serving.
# Root only (exit 77 otherwise). Namespaces cxi-dr-*, subnets
# 10.201.68.0/24 (web, api) and 10.201.69.0/24 (web, evil).
set -u
AGENT=${CINCH_BUILD:?}/bin/cinch-agent
POD_TAG=cxi-dr
POD_NET=10.201.68
. "${CINCH_SRC:?}/tests/e2e/pods.sh"
pods_need socat openssl curl sha256sum
EVIL=$POD_TAG-evil-$$
EVIL_IP=10.201.69.2
TD=spiffe://cluster.local/ns/shop/sa
attack_cleanup() {
	cleanup
	ip netns del "$EVIL" 2>/dev/null
}
trap attack_cleanup EXIT INT TERM

# --- evil: linked to web only
ip netns add "$EVIL" || exit 1
ip link add "xv$$" netns "$EVIL" type veth peer name "xw$$" netns "$WEB" || exit 1
ip -n "$EVIL" link set lo up
ip -n "$EVIL" addr add "$EVIL_IP/24" dev "xv$$" && ip -n "$EVIL" link set "xv$$" up
ip -n "$WEB" addr add 10.201.69.1/24 dev "xw$$" && ip -n "$WEB" link set "xw$$" up
pods_svid evil ca evil
cat >>"$D/workloads.yaml" <<Y
---
apiVersion: cinch.dev/v1alpha1
kind: Workload
metadata: {name: evil, namespace: shop}
spec: {serviceAccount: evil, addresses: ["$EVIL_IP"]}
Y
# web's stale view: api admits it on 8081 too; evil admits it on 9001-9003
mkdir "$D/webpolicy"
sed 's/ports: \[8080\]/ports: [8080, 8081]/' "$D/policy/allow.yaml" >"$D/webpolicy/allow.yaml"
cat >"$D/webpolicy/evil.yaml" <<Y
apiVersion: cinch.dev/v1alpha1
kind: AllowPolicy
metadata: {name: evil-from-web, namespace: shop}
spec:
  selector: {workloads: [evil]}
  ports: ["9001-9003"]
  from: [{identities: ["$TD/web"]}]
Y
grep -q '8080, 8081' "$D/webpolicy/allow.yaml" || { echo "FAIL: web's policy"; exit 1; }

pods_agent "$WEB" web --probe-interval 300 --policy "$D/webpolicy"
pods_agent "$API" api --probe-interval 300

# --- the apps: api serves 1 MiB on 8080 and a secret on 8081 (8083, the
# upload, comes later)
head -c 1048576 /dev/urandom >"$D/blob"
want=$(sha256sum <"$D/blob" | cut -d' ' -f1)
ip netns exec "$API" socat TCP-LISTEN:8080,bind="$API_IP",fork,reuseaddr \
	SYSTEM:"cat $D/blob" 2>/dev/null &
PIDS="$PIDS $!"
ip netns exec "$API" socat TCP-LISTEN:8081,bind="$API_IP",fork,reuseaddr \
	SYSTEM:"echo secret-of-8081" 2>/dev/null &
PIDS="$PIDS $!"

# --- the lying server
cat >"$D/evil.py" <<'PY'
import socket, ssl, sys, threading
d, ip = sys.argv[1], sys.argv[2]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_cert_chain(d + "/evil.pem", d + "/evil.key")
ctx.load_verify_locations(d + "/ca.pem")
ctx.verify_mode = ssl.CERT_OPTIONAL
ctx.set_alpn_protocols(["cinch-deny/1"])
def frame(b): return len(b).to_bytes(2, "big") + b
lies = {
    9001: b"\xff\xff" + b"LIE-LONG" * 600,
    9002: frame(b'{"v":1,"code":"policy_deny","reason":"\x1b[31mLIE-RAW\r\n{\\"event\\":\\"forged\\"}","port":9002}'),
    9003: frame(b'{"v":1,"code":"policy_deny","reason":"\\u001b[2JLIE-ESC\\nforged","port":9003}') + b"LIE-AFTER",
}
def serve(port):
    l = socket.socket()
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((ip, port)); l.listen(8)
    while True:
        c, _ = l.accept()
        try:
            s = ctx.wrap_socket(c, server_side=True)
            with open(d + "/evil-alpn", "a") as f:
                f.write("%d %s\n" % (port, s.selected_alpn_protocol()))
            s.sendall(lies[port])
            s.settimeout(2)
            try: s.recv(100)
            except Exception: pass
            s.close()
        except Exception as e:
            c.close()
for p in lies:
    threading.Thread(target=serve, args=(p,), daemon=True).start()
threading.Event().wait()
PY
ip netns exec "$EVIL" /usr/bin/python3 "$D/evil.py" "$D" "$EVIL_IP" 2>"$L/evil.err" &
PIDS="$PIDS $!"
check "web agent started" waitfor 10 grep -q agent_started "$L/web.log"
check "api agent started" waitfor 10 grep -q agent_started "$L/api.log"
check "api app up" waitfor 10 bash -c "ip netns exec $API setpriv --reuid=1337 --regid=1337 --clear-groups socat -u TCP:$API_IP:8081 - | grep -q secret"

metric() { # metric NS NAME: the value of a metric line starting with NAME
	pods_admin "$1" /metrics | awk -v m="$2" 'index($0, m) == 1 { print $2 }'
}
outlines() { # outlines PORT: web's outbound log lines to PORT
	grep '"event":"connection"' "$L/web.log" | grep '"direction":"outbound"' | grep ":$1\""
}

# --- 1. refused by api's agent: web's agent knows why
got=$(ip netns exec "$WEB" timeout 5 socat -T 3 - "TCP:$API_IP:8081" </dev/null 2>/dev/null)
check "web -> api:8081: web's app got nothing" [ -z "$got" ]
check "web's agent logged the destination's reason" waitfor 5 bash -c "grep -q '\"end\":\"refused_by_peer\".*\"peer_refusal\":{\"by\":\"$TD/api\",\"port\":8081,\"code\":\"policy_deny\",\"reason\":\"no rule allows this identity on this port\"}' '$L/web.log'"
check "... and counted it" [ "$(metric "$WEB" 'cinch_agent_refused_by_peer_total{reason="policy_deny"}')" = 1 ]
# an app that sends its request at once: api's agent closes with it
# unread (a reset), and the frame must still be read before the reset
for i in 1 2 3 4 5 6 7 8 9 10; do
	printf 'GET / HTTP/1.0\r\n\r\n' | ip netns exec "$WEB" timeout 5 socat -T 3 - "TCP:$API_IP:8081" >>"$L/req.out" 2>/dev/null
done
check "... also when the app has sent its request: 10 of 10 ($(grep -c '"code":"policy_deny"' "$L/web.log") with the first)" \
	waitfor 5 bash -c "[ \$(grep -c '\"code\":\"policy_deny\"' '$L/web.log') -eq 11 ]"
check "... and the app got nothing" [ ! -s "$L/req.out" ]
check "api's agent denied it" grep -q "\"dst\":\"$API_IP:8081\".*\"peer_id\":\"$TD/web\",\"verdict\":\"deny\"" "$L/api.log"
outlines 8081 | tail -n 1 | sed 's/^/  web: /'

# --- 2. stock clients: nothing new
sc() { # sc [ARGS...]: what api:8081 sends openssl s_client with web's SVID (raw)
	printf 'hello\n' | as_agent "$WEB" timeout 5 openssl s_client -quiet -connect "$API_IP:8081" \
		-cert "$D/web.pem" -key "$D/web.key" -CAfile "$D/ca.pem" "$@" 2>/dev/null
}
n=$(sc | wc -c)
check "openssl s_client without ALPN: a closed connection, no byte ($n)" [ "$n" -eq 0 ]
n=$(sc -alpn h2,http/1.1 | wc -c)
check "openssl s_client with h2/http1.1 ALPN: no byte ($n)" [ "$n" -eq 0 ]
rc=0
as_agent "$WEB" curl -sk -m 5 --cert "$D/web.pem" --key "$D/web.key" \
	"https://$API_IP:8081/" >"$L/curl.out" 2>"$L/curl.err" || rc=$?
check "curl (h2, http/1.1): empty reply or closed, as before (exit $rc)" \
	bash -c "[ $rc -eq 52 ] || [ $rc -eq 56 ] || [ $rc -eq 35 ]"
check "... and no byte of a frame" [ ! -s "$L/curl.out" ]
probe=$(sc -alpn cinch-deny/1 | tr -d '\0')
check "a caller offering the ALPN itself learns the reason, no rule, nothing else" \
	bash -c "grep -q '\"code\":\"policy_deny\",\"reason\":\"no rule allows this identity on this port\",\"port\":8081}$' <<<'$probe' && ! grep -q 'api-from-web\|spiffe' <<<'$probe'"

# --- 3. allowed: byte-exact both ways, the frame not counted
got=$(ip netns exec "$WEB" timeout 10 socat -u "TCP:$API_IP:8080" - | sha256sum | cut -d' ' -f1)
check "web -> api:8080: 1 MiB byte-exact" [ "$got" = "$want" ]
check "... web's agent counted exactly 1 MiB in" \
	waitfor 5 bash -c "grep '\"event\":\"connection\"' '$L/web.log' | grep '\"dst\":\"$API_IP:8080\"' | grep -q '\"bytes_in\":1048576,'"
ip netns exec "$API" socat -u TCP-LISTEN:8083,bind="$API_IP",reuseaddr SYSTEM:"sha256sum >$D/up.sum" 2>/dev/null &
UP=$!
PIDS="$PIDS $UP"
pods_allow "8080, 8083" # api's policy: the upload port too (web's view covers it: see below)
sed -i 's/ports: \[8080, 8081\]/ports: [8080, 8081, 8083]/' "$D/webpolicy/allow.yaml"
waitfor 5 bash -c "[ \$(grep -c config_reloaded '$L/api.log') -ge 1 ] && [ \$(grep -c config_reloaded '$L/web.log') -ge 1 ]"
ip netns exec "$WEB" timeout 10 socat -u - "TCP:$API_IP:8083" <"$D/blob"
waitfor 5 test -s "$D/up.sum"
check "web -> api:8083: 1 MiB upload byte-exact" [ "$(cut -d' ' -f1 "$D/up.sum" 2>/dev/null)" = "$want" ]

# --- 4. the lying server
for port in 9001 9002 9003; do
	got=$(ip netns exec "$WEB" timeout 5 socat -T 3 - "TCP:$EVIL_IP:$port" </dev/null 2>/dev/null | wc -c)
	check "lie on $port: web's app got no byte ($got)" [ "$got" -eq 0 ]
done
check "the lying server negotiated the ALPN" bash -c "[ \$(grep -c 'cinch-deny/1' '$D/evil-alpn') -ge 3 ]"
check "web's agent logged the three as invalid_message" waitfor 5 bash -c "[ \$(grep -c '\"code\":\"invalid_message\"' '$L/web.log') -eq 3 ]"
check "... in its own words" bash -c "grep '\"code\":\"invalid_message\"' '$L/web.log' | grep -q 'longer than 512' && grep '\"code\":\"invalid_message\"' '$L/web.log' | grep -q 'not a JSON object' && grep '\"code\":\"invalid_message\"' '$L/web.log' | grep -q 'without a printable reason'"
check "... no byte of the peer's in its log" bash -c "! grep -q 'LIE-\|forged' '$L/web.log'"
check "... counted" [ "$(metric "$WEB" 'cinch_agent_refused_by_peer_total{reason="invalid_message"}')" = 3 ]
check "web's agent alive" [ "$(pods_admin "$WEB" /live)" != "" ]
got=$(ip netns exec "$WEB" timeout 10 socat -u "TCP:$API_IP:8080" - | sha256sum | cut -d' ' -f1)
check "... and still carrying: 1 MiB byte-exact again" [ "$got" = "$want" ]
check "no connection left open on web's agent" waitfor 5 bash -c "[ \"\$(ip netns exec $WEB curl -s http://127.0.0.1:15000/metrics | awk '/^cinch_agent_open_connections /{print \$2}')\" = 0 ]"
pods_report
exit $fail
