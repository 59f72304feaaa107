#!/bin/bash
# services_test: calls to a Kubernetes Service's virtual IP through the
# agents (issue #13). Pods are network namespaces on one bridge (in a hub
# namespace of their own), each with `cinch-agent init` rules and a static
# agent; the registry holds the Workloads plus a v1 Service and its
# discovery.k8s.io/v1 EndpointSlice in the API's own format:
#   shop/api   10.201.181.10:80 -> target port "http" (8080) on api-0, api-1
#   shop/empty 10.201.181.20:80, its only endpoint neither ready nor serving
# What it attacks and checks:
#   1. 200 calls by VIP (100 on new connections, 100 on 4 keep-alive ones):
#      all answered, by both endpoints; every connection is mTLS (TLS 1.3)
#      with the endpoint's identity pinned (web's access log: service,
#      endpoint, peer_id; the api agents' logs: web's identity).
#   2. api-1 (agent and app) killed mid-run (250 calls on new connections,
#      one per 20 ms), then brought back: no call fails after the agent has
#      seen api-1 fail, because a connect refused is retried on the other
#      endpoint before any app byte moves (at most 3 endpoints per call);
#      at most one call fails at all, the one whose request was already
#      relayed to api-1 when it died (no proxy can replay it). After the
#      first failure the agent skips api-1 for its backoff: the failed
#      attempts stay few (<= 6 in the ~2.5 s it is down, about one per
#      backoff; without the backoff, one per call that picks it: dozens).
#      Back up, it serves again once its backoff ends.
#   3. An endpoint listed in the slice for a pod of identity sa/api that
#      presents another identity (a TLS server with an sa/evil SVID of the
#      mesh CA, no agent): its handshake is refused by the pinning, the call
#      goes to another endpoint, the impostor never sees a request.
#   4. A Service with no ready endpoint: refused at once (< 1 s) with the
#      reason (web's access log: "service":"shop/empty", "reason":"the
#      Service has no ready endpoint").
#   5. A virtual IP is never plaintext egress: shop/locked's only endpoint
#      (api-0 on 9999) does not admit web, and an EgressPolicy lets web
#      reach all of 10.201.181.0/24: the call is refused before connecting,
#      as to a meshed pod that does not admit it.
#   7. The same over IPv6: shop/api is dual-stack (a second ClusterIP
#      fd20:201:181::10 and an IPv6 EndpointSlice of the same pods): calls
#      to the IPv6 VIP are intercepted (ip6tables), reach both pods at
#      their IPv6 addresses over mTLS with api's identity pinned.
#   6. An endpoint outside the mesh (a plain server at 10.201.81.5, no
#      agent) is egress: shop/ext's call leaves in plaintext because an
#      EgressPolicy allows that address, and is logged with no peer
#      identity and the egress rule.
# Namespaces svc-*, pods 10.201.81.0/24 and fd20:201:81::/64, VIPs
# 10.201.181.0/24 and fd20:201:181::/64. Root only.
#   services_test.sh CINCH_AGENT
set -u
AGENT=$1
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
for t in ip openssl setpriv socat /usr/bin/python3; do
	command -v "$t" >/dev/null || { echo "SKIP: $t missing"; exit 77; }
done
NET=10.201.81
VNET=10.201.181
NET6=fd20:201:81:
VNET6=fd20:201:181:
TD=cluster.local
HUB=svc-hub-$$
D=$(mktemp -d /tmp/svc-e2e.XXXXXX)
L=$(mktemp -d /tmp/svc-e2e-logs.XXXXXX)
chmod 755 "$D"
PIDS=""
PODS=""
cleanup() {
	local p
	for p in $PIDS; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	for p in $PODS $HUB; do ip netns del "$p" 2>/dev/null; done
	rm -rf "$D" "$L"
}
trap cleanup EXIT INT TERM
fail=0
check() { # check DESCRIPTION CONDITION...
	local what=$1
	shift
	if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fail=1; fi
}
waitfor() { # waitfor SECONDS CMD...
	local end=$(($(date +%s) + $1))
	shift
	until "$@" >/dev/null 2>&1; do [ "$(date +%s)" -ge "$end" ] && return 1; sleep 0.1; done
}

# --- PKI: the mesh CA; SVIDs for web, api, and evil (same CA, other identity)
openssl ecparam -name prime256v1 -genkey -noout -out "$D/ca.key" 2>/dev/null
openssl req -x509 -new -key "$D/ca.key" -days 1 -subj "/O=ca" \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
	-out "$D/ca.pem" 2>/dev/null
svid() { # svid NAME SA
	openssl ecparam -name prime256v1 -genkey -noout -out "$D/$1.key" 2>/dev/null
	openssl req -new -key "$D/$1.key" -subj "/" -out "$D/$1.csr" 2>/dev/null
	printf 'subjectAltName=critical,URI:spiffe://%s/ns/shop/sa/%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' "$TD" "$2" >"$D/$1.ext"
	openssl x509 -req -in "$D/$1.csr" -CA "$D/ca.pem" -CAkey "$D/ca.key" -CAcreateserial \
		-days 1 -extfile "$D/$1.ext" -out "$D/$1.pem" 2>/dev/null
	chmod 644 "$D/$1.key"
}
svid web web
svid api api
svid evil evil

# --- the registry: workloads, policy, the Services in Kubernetes' format
workload() { # workload NAME SA ADDRESSES
	printf -- '---\napiVersion: cinch.dev/v1alpha1\nkind: Workload\nmetadata: {name: %s, namespace: shop, labels: {app: %s}}\nspec: {serviceAccount: %s, addresses: [%s]}\n' "$1" "$2" "$2" "$3"
}
{
	workload web web "\"$NET.1\", \"$NET6:1\""
	workload api-0 api "\"$NET.2\", \"$NET6:2\""
	workload api-1 api "\"$NET.3\", \"$NET6:3\""
	workload api-2 api "\"$NET.4\"" # the impostor's address, registered as sa/api
} >"$D/workloads.yaml"
mkdir "$D/policy"
cat >"$D/policy/allow.yaml" <<Y
apiVersion: cinch.dev/v1alpha1
kind: AllowPolicy
metadata: {name: api-from-web, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  ports: [8080]
  from: [{identities: ["spiffe://$TD/ns/shop/sa/web"]}]
---
apiVersion: cinch.dev/v1alpha1
kind: EgressPolicy
metadata: {name: web-to-vips, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  to: [{cidrs: ["$VNET.0/24", "$NET.5/32"]}]
Y
services() { # services "EXTRA ENDPOINTS": the Services, written atomically
	cat >"$D/policy/.svc.new" <<Y
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop, uid: 1d3c, resourceVersion: "7"}
spec:
  type: ClusterIP
  clusterIP: $VNET.10
  clusterIPs: [$VNET.10, "$VNET6:10"]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: PreferDualStack
  selector: {app: api}
  sessionAffinity: None
  ports: [{name: http, protocol: TCP, port: 80, targetPort: http}]
status: {loadBalancer: {}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: api-abcde
  namespace: shop
  labels: {kubernetes.io/service-name: api, endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io}
addressType: IPv4
endpoints:
- addresses: [$NET.2]
  conditions: {ready: true, serving: true, terminating: false}
  targetRef: {kind: Pod, namespace: shop, name: api-0}
- addresses: [$NET.3]
  conditions: {ready: true, serving: true, terminating: false}
$1
ports: [{name: http, protocol: TCP, port: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: api-v6xyz
  namespace: shop
  labels: {kubernetes.io/service-name: api}
addressType: IPv6
endpoints:
- addresses: ["$NET6:2"]
  conditions: {ready: true, serving: true, terminating: false}
- addresses: ["$NET6:3"]
  conditions: {ready: true, serving: true, terminating: false}
ports: [{name: http, protocol: TCP, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: shop}
spec: {clusterIP: $VNET.20, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: empty-1, namespace: shop, labels: {kubernetes.io/service-name: empty}}
addressType: IPv4
endpoints: [{addresses: [$NET.2], conditions: {ready: false, serving: false, terminating: true}}]
ports: [{port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: locked, namespace: shop}
spec: {clusterIP: $VNET.30, ports: [{port: 80, targetPort: 9999}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: locked-1, namespace: shop, labels: {kubernetes.io/service-name: locked}}
addressType: IPv4
endpoints: [{addresses: [$NET.2]}]
ports: [{port: 9999}]
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: shop}
spec: {clusterIP: $VNET.40, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ext-1, namespace: shop, labels: {kubernetes.io/service-name: ext}}
addressType: IPv4
endpoints: [{addresses: [$NET.5]}]
ports: [{port: 8080}]
Y
	mv "$D/policy/.svc.new" "$D/policy/svc.yaml"
}
services ""

# --- the pods: one bridge in the hub namespace, a veth per pod
ip netns add "$HUB" || exit 1
ip -n "$HUB" link add br0 type bridge && ip -n "$HUB" link set br0 up
pod() { # pod NAME INDEX [noinit]: namespace svc-NAME-$$ at $NET.INDEX
	local ns=svc-$1-$$
	ip netns add "$ns" || exit 1
	PODS="$PODS $ns"
	ip link add "sp$2$$" netns "$ns" type veth peer name "sh$2$$" netns "$HUB" || exit 1
	ip -n "$HUB" link set "sh$2$$" master br0 up
	ip -n "$ns" link set lo up
	ip -n "$ns" addr add "$NET.$2/24" dev "sp$2$$"
	ip -n "$ns" link set "sp$2$$" up
	ip -n "$ns" addr add "$NET6:$2/64" dev "sp$2$$" nodad
	ip -n "$ns" route add "$VNET.0/24" dev "sp$2$$" # the VIPs: routed, then intercepted
	ip -n "$ns" -6 route add "$VNET6:/64" dev "sp$2$$"
	[ "${3:-}" = noinit ] && return
	ip netns exec "$ns" "$AGENT" init >/dev/null 2>&1 || { echo "FAIL: init in $ns"; exit 1; }
}
WEB=svc-web-$$
API0=svc-api0-$$
API1=svc-api1-$$
BAD=svc-bad-$$
pod web 1
pod api0 2
pod api1 3
pod bad 4 noinit
agent() { # agent NS NAME LOG: a static agent; LAST is its PID
	ip netns exec "$1" setpriv --reuid=1337 --regid=1337 --clear-groups \
		"$AGENT" run --cert "$D/$2.pem" --key "$D/$2.key" --bundle "$D/ca.pem" \
		--workloads "$D/workloads.yaml" --policy "$D/policy" --probe-interval 300 \
		2>>"$L/$3.log" &
	LAST=$!
	PIDS="$PIDS $LAST"
}
cat >"$D/app.py" <<'P'
import http.server, socket, sys
name, ip = sys.argv[1], sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        b = name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
class S(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6 if ":" in ip else socket.AF_INET
S((ip, 8080), H).serve_forever()  # "::": both families
P
# client.py HOST PORT N new|keep CONNS [GAP_S]: one line per call, the body
# or "ERR <why>"; keep: CONNS connections, N/CONNS calls on each.
cat >"$D/client.py" <<'P'
import http.client, sys, time
host, port, n, mode, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
gap = float(sys.argv[6]) if len(sys.argv) > 6 else 0
def call(c):
    c.request("GET", "/")
    r = c.getresponse()
    return r.status, r.read().decode(errors="replace")
if mode == "new":
    for i in range(n):
        try:
            c = http.client.HTTPConnection(host, port, timeout=5)
            s, b = call(c)
            print(b if s == 200 else "ERR status %d" % s, flush=True)
            c.close()
        except Exception as e:
            print("ERR t=%.3f %r" % (time.time(), e), flush=True)
        time.sleep(gap)
else:
    for k in range(conns):
        c = http.client.HTTPConnection(host, port, timeout=5)
        for i in range(n // conns):
            try:
                s, b = call(c)
                print(b if s == 200 else "ERR status %d" % s, flush=True)
            except Exception as e:
                print("ERR %r" % e, flush=True)
        c.close()
P
app() { # app NS NAME IP: LAST is its PID
	ip netns exec "$1" /usr/bin/python3 "$D/app.py" "$2" "$3" >/dev/null 2>&1 &
	LAST=$!
	PIDS="$PIDS $LAST"
}
app "$API0" api-0 ::
app "$API1" api-1 ::
API1_APP=$LAST
agent "$WEB" web web
agent "$API0" api api0
agent "$API1" api api1
API1_AGENT=$LAST
# outside the mesh: a plain server at .5 (in the impostor's pod, no agent)
ip -n "$BAD" addr add "$NET.5/24" dev sp4$$
app "$BAD" ext $NET.5
# the impostor: a TLS server with an sa/evil SVID of the mesh CA
ip netns exec "$BAD" openssl s_server -accept $NET.4:8080 -cert "$D/evil.pem" -key "$D/evil.key" \
	-CAfile "$D/ca.pem" -www -quiet >"$L/evil.log" 2>&1 &
PIDS="$PIDS $!"
for n in web api0 api1; do
	check "$n agent started" waitfor 10 grep -q agent_started "$L/$n.log"
done
client() { ip netns exec "$WEB" /usr/bin/python3 "$D/client.py" "$@"; }
count() { grep -c "^$1\$" "$2"; }
# svc_log FILTER: web's access-log lines of Service calls as "endpoint peer_id tls end"
svc_log() {
	/usr/bin/python3 - "$L/web.log" "$1" <<'P'
import json, sys
for line in open(sys.argv[1]):
    try:
        j = json.loads(line)
    except ValueError:
        continue
    if j.get("event") == "connection" and j.get("service") == sys.argv[2]:
        print(j.get("endpoint"), j.get("peer_id"), j.get("tls_version"), j.get("end"), j.get("reason"))
P
}
failed_attempts() { grep service_endpoint_failed "$L/web.log" | grep -c "\"endpoint\":\"$1\""; }

# --- 1. 200 calls by VIP, new and keep-alive connections
client $VNET.10 80 100 new 1 >"$L/c1.txt"
client $VNET.10 80 100 keep 4 >>"$L/c1.txt"
check "200 calls answered ($(grep -c ^api- "$L/c1.txt") ok, $(grep -c ^ERR "$L/c1.txt") errors)" \
	[ "$(grep -c '^api-[01]$' "$L/c1.txt")" -eq 200 ]
a0=$(count api-0 "$L/c1.txt")
a1=$(count api-1 "$L/c1.txt")
check "both endpoints served ($a0 / $a1)" [ "$a0" -gt 20 -a "$a1" -gt 20 ]
sleep 0.5 # the access-log lines of the last connections
svc_log shop/api >"$L/conns1.txt"
n_conns=$(wc -l <"$L/conns1.txt")
check "web's agent logged the 104 connections ($n_conns) as calls to shop/api" \
	[ "$n_conns" -ge 104 ]
check "every one mTLS (TLS 1.3) to an endpoint on its target port, identity pinned" \
	[ "$(grep -cE "^$NET\.[23]:8080 spiffe://$TD/ns/shop/sa/api TLSv1.3 closed" "$L/conns1.txt")" -eq "$n_conns" ]
check "the endpoints' agents saw web's identity" \
	grep -q "\"peer_id\":\"spiffe://$TD/ns/shop/sa/web\".*\"verdict\":\"allow\"" "$L/api1.log"
echo "web's access log, one call: $(grep '"service":"shop/api"' "$L/web.log" | head -1)"

# --- 2. api-1 killed mid-run, back later
client $VNET.10 80 250 new 1 0.02 >"$L/c2.txt" &
CL=$!
PIDS="$PIDS $CL"
sleep 1
# the agent first: an app dead behind a live agent fails calls after the
# handshake, which no caller's agent can tell from an app's own error
kill "$API1_AGENT"
wait "$API1_AGENT" 2>/dev/null
kill "$API1_APP"
wait "$API1_APP" 2>/dev/null
sleep 2.5
app "$API1" api-1 ::
API1_APP=$LAST
# the app listening before its agent takes calls (a readiness probe's job
# in a cluster: the slice here says ready all along)
waitfor 10 ip netns exec "$API1" /usr/bin/python3 -c "import socket; socket.create_connection(('$NET.3', 8080), 1)"
agent "$API1" api api1
wait "$CL"
c2_ok=$(grep -c '^api-[01]$' "$L/c2.txt")
# errors_after FILE ENDPOINT: failed calls after the agent's first failed
# attempt on ENDPOINT (the client's and the agent's clocks are the same)
errors_after() {
	/usr/bin/python3 - "$1" "$L/web.log" "$2" <<'P'
import datetime, json, re, sys
first = None
for line in open(sys.argv[2]):
    try:
        j = json.loads(line)
    except ValueError:
        continue
    if j.get("event") == "service_endpoint_failed" and j.get("endpoint") == sys.argv[3]:
        first = datetime.datetime.strptime(j["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        break
ts = [float(m.group(1)) for m in (re.match(r"ERR t=([\d.]+)", l) for l in open(sys.argv[1])) if m]
print(len([t for t in ts if first is None or t > first]))
P
}
after=$(errors_after "$L/c2.txt" $NET.3:8080)
check "no call failed after the agent saw api-1 fail ($after; all errors: $(grep -c ^ERR "$L/c2.txt"))" \
	[ "$after" -eq 0 ]
[ "$after" -eq 0 ] || grep -h '^ERR\|service_endpoint_failed' "$L/c2.txt" "$L/web.log"
check "at most one call failed at all: the one in flight on api-1 when it died ($c2_ok of 250 answered)" \
	[ "$c2_ok" -ge 249 ]
nf=$(failed_attempts $NET.3:8080)
check "the agent saw api-1 fail and retried elsewhere ($nf failed attempts, bound 1..6)" \
	[ "$nf" -ge 1 -a "$nf" -le 6 ]
grep service_endpoint_failed "$L/web.log" | head -2
# back: used again once its backoff ends (bounded poll, new connections)
back() { client $VNET.10 80 10 new 1 | grep -q '^api-1$'; }
check "api-1 serves again after it came back" waitfor 20 back

# --- 3. an endpoint presenting another identity
services "- addresses: [$NET.4]
  conditions: {ready: true}"
check "web's agent took the new slice" waitfor 10 bash -c "[ \$(grep -c config_reloaded '$L/web.log') -ge 1 ]"
before=$(failed_attempts $NET.4:8080)
client $VNET.10 80 60 new 1 >"$L/c3.txt"
c3_ok=$(grep -c '^api-[01]$' "$L/c3.txt")
check "60 calls all answered by api-0/api-1 ($c3_ok; others: $(grep -vc '^api-[01]$' "$L/c3.txt"))" \
	[ "$c3_ok" -eq 60 ]
nb=$(($(failed_attempts $NET.4:8080) - before))
check "the impostor was tried and refused at the handshake ($nb times)" [ "$nb" -ge 1 ]
grep service_endpoint_failed "$L/web.log" | grep -m1 "$NET.4:8080"
check "the refusal says the identity was wrong" \
	bash -c "grep service_endpoint_failed '$L/web.log' | grep '$NET.4:8080' | grep -q 'another identity'"
check "the impostor never got a request" bash -c "! grep -q 'GET /' '$L/evil.log'"

# --- 4. no ready endpoint: refused at once, with the reason
t0=$(date +%s%N)
out=$(client $VNET.20 80 1 new 1)
ms=$((($(date +%s%N) - t0) / 1000000))
check "a call to shop/empty fails ($out)" [ "${out#ERR}" != "$out" ]
check "at once (${ms} ms, python start included)" [ "$ms" -lt 1500 ]
check "web's agent says why" \
	waitfor 5 grep -q '"reason":"the Service has no ready endpoint".*"service":"shop/empty"' "$L/web.log"

# --- 5. a virtual IP is never plaintext, whatever the egress rules say
out=$(client $VNET.30 80 1 new 1)
check "a call to shop/locked fails ($out)" [ "${out#ERR}" != "$out" ]
check "refused before connecting: meshed, does not admit web" \
	waitfor 5 grep -q "\"dst\":\"$VNET.30:80\".*\"reason\":\"the destination is meshed and does not admit this workload\"" "$L/web.log"

# --- 6. an endpoint outside the mesh: egress decides, plaintext
out=$(client $VNET.40 80 1 new 1)
check "a call to shop/ext reaches the endpoint outside the mesh ($out)" [ "$out" = ext ]
check "logged as egress: no peer identity, the egress rule" \
	waitfor 5 grep -q "\"peer_id\":\"\",\"verdict\":\"allow\",\"rule\":\"shop/web-to-vips#0\".*\"service\":\"shop/ext\",\"endpoint\":\"$NET.5:8080\"" "$L/web.log"

# --- 7. the same over IPv6
client "$VNET6:10" 80 40 new 1 >"$L/c7.txt"
c7_0=$(count api-0 "$L/c7.txt")
c7_1=$(count api-1 "$L/c7.txt")
check "40 calls to the IPv6 VIP answered by both pods ($c7_0 / $c7_1; errors: $(grep -c ^ERR "$L/c7.txt"))" \
	[ $((c7_0 + c7_1)) -eq 40 -a "$c7_0" -gt 0 -a "$c7_1" -gt 0 ]
sleep 0.5
n6=$(grep -c "\"dst\":\"\[$VNET6:10\]:80\"" "$L/web.log")
n6ok=$(grep "\"dst\":\"\[$VNET6:10\]:80\"" "$L/web.log" | grep -c "\"peer_id\":\"spiffe://$TD/ns/shop/sa/api\".*\"tls_version\":\"TLSv1.3\".*\"endpoint\":\"\[$NET6:[23]\]:8080\"")
check "each an mTLS call to a pod's IPv6 address, api's identity pinned ($n6ok of $n6)" \
	[ "$n6" -ge 40 -a "$n6ok" -eq "$n6" ]
echo "web's access log, one IPv6 call: $(grep "\"dst\":\"\[$VNET6:10\]:80\"" "$L/web.log" | head -1)"

if [ $fail -ne 0 ]; then
	echo "--- web agent log (tail)"
	tail -n 15 "$L/web.log"
	grep -h "$VNET.30" "$L/web.log" | tail -n 3
fi
exit $fail
