#!/bin/bash
# guardrail_test: a GuardrailPolicy refuses what a namespace's AllowPolicy
# allows, enforced by real agents (issue #18).
#
# What it attacks: an app team's AllowPolicy opens api:9100 (a metrics
# port) to web; the platform team's guardrail says nothing outside the
# monitoring namespace reaches 9100. web tries anyway, with its valid SVID,
# through both agents. Then the egress mode: a destination outside the mesh
# that no EgressPolicy allows, refused under `deny`, let through and logged
# under `audit`; a meshed destination is never sent plaintext.
#
# How: the two static-mode pods of pods.sh (web, api; a test PKI made with
# openssl), the policy directory the agents watch rewritten between phases
# (each phase waits for both agents' config_reloaded), real apps (a Python
# HTTP server, socat) and curl. The guardrail is proven to be what refuses:
# the same connection flows before it is written and in its audit mode, and
# api's access log names the guardrail's rule.
# Root only (exit 77 otherwise). Namespaces grd-*, subnet 10.201.86.0/24
# (10.201.86.3:7000 in api's namespace, out of its agent's interception:
# a server outside the mesh).
#   guardrail_test.sh CINCH_AGENT
set -u
AGENT=$1
POD_TAG=grd
POD_NET=10.201.86
. "$(dirname "$0")/pods.sh"
pods_need socat
OUT_IP=$POD_NET.3 # outside the mesh: no Workload has it

pods_allow "8080, 9100"
mkdir -p "$D/www" && echo "hello from api" >"$D/www/index.html"
for port in 8080 9100; do
	ip netns exec "$API" /usr/bin/python3 -m http.server "$port" --bind "$API_IP" \
		--directory "$D/www" >/dev/null 2>&1 &
	PIDS="$PIDS $!"
done
ip -n "$API" addr add "$OUT_IP/24" dev "$API_IF"
# the outside server's port bypasses api's agent: it stands for a host
# outside the mesh (api's agent would refuse its plaintext, STRICT)
ip netns exec "$API" "$AGENT" init --exclude-inbound-ports 7000 >/dev/null 2>&1 ||
	{ echo "FAIL: init with 7000 excluded"; exit 1; }
ip netns exec "$API" socat TCP-LISTEN:7000,bind="$OUT_IP",fork,reuseaddr \
	SYSTEM:"echo outside" 2>/dev/null &
PIDS="$PIDS $!"
pods_agent "$WEB" web --probe-interval 300
pods_agent "$API" api --probe-interval 300
check "web agent started" waitfor 10 grep -q agent_started "$L/web.log"
check "api agent started" waitfor 10 grep -q agent_started "$L/api.log"
check "api app up" waitfor 10 as_agent "$API" curl -sf "http://$API_IP:9100/"

get() { # get PORT: web's curl to api:PORT through both agents; the body
	ip netns exec "$WEB" curl -s -m 5 "http://$API_IP:$1/"
}
# policy FILE TEXT: writes the policy file and waits until both agents
# loaded the new set (one more config_reloaded each)
policy() {
	local w a
	w=$(grep -c config_reloaded "$L/web.log")
	a=$(grep -c config_reloaded "$L/api.log")
	printf '%s\n' "$2" >"$D/policy/.new" && mv "$D/policy/.new" "$D/policy/$1"
	waitfor 10 bash -c "[ \$(grep -c config_reloaded '$L/web.log') -gt $w ] &&
		[ \$(grep -c config_reloaded '$L/api.log') -gt $a ]"
}
GUARD='apiVersion: cinch.dev/v1alpha1
kind: GuardrailPolicy
metadata: {name: node-exporter}
spec:
  priority: 10
  subject: {namespaceSelector: {}}
  MODE
  rules:
    - action: allow
      ports: [9100]
      from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]
    - action: deny
      ports: [9100]'

# --- the namespace's policy alone: web reaches 9100
check "without a guardrail, web reaches api:9100 (the AllowPolicy allows it)" \
	[ "$(get 9100)" = "hello from api" ]

# --- the guardrail refuses it, and the api agent names its rule
check "guardrail written, both agents reloaded" policy guard.yaml "${GUARD/MODE/mode: enforce}"
check "with the guardrail, web -> api:9100 refused" [ -z "$(get 9100)" ]
check "api's agent refused it by the guardrail's rule" waitfor 5 grep -q \
	'"peer_id":"spiffe://cluster.local/ns/shop/sa/web".*"verdict":"deny","rule":"GuardrailPolicy/node-exporter#1"' \
	"$L/api.log"
check "web -> api:8080 still allowed (the guardrail covers 9100 only)" \
	[ "$(get 8080)" = "hello from api" ]

# --- audit mode: the deny is logged, not enforced
check "guardrail in audit mode, reloaded" policy guard.yaml "${GUARD/MODE/mode: audit}"
check "audit mode: web reaches api:9100" [ "$(get 9100)" = "hello from api" ]
check "audit mode: logged as audit-deny by the guardrail's rule" waitfor 5 grep -q \
	'"verdict":"audit-deny","rule":"GuardrailPolicy/node-exporter#1"' "$L/api.log"

# --- a namespace MeshPolicy cannot loosen the egress mode; the mesh's can
NS_AUDIT='apiVersion: cinch.dev/v1alpha1
kind: MeshPolicy
metadata: {name: shop, namespace: shop}
spec: {egress: allow}'
MESH='apiVersion: cinch.dev/v1alpha1
kind: MeshPolicy
metadata: {name: mesh}
spec: {egress: EGRESS}'
outside() { ip netns exec "$WEB" socat -T 3 - "TCP:$OUT_IP:7000" </dev/null 2>/dev/null; }
check "namespace MeshPolicy egress: allow written, reloaded" policy ns.yaml "$NS_AUDIT"
check "egress deny (the namespace cannot loosen it): web -> outside refused" [ -z "$(outside)" ]
check "web's agent refused it: no EgressPolicy" waitfor 5 grep -q \
	"\"dst\":\"$OUT_IP:7000\".*\"verdict\":\"deny\".*no EgressPolicy allows" "$L/web.log"
check "mesh-wide egress: audit, reloaded" policy mesh.yaml "${MESH/EGRESS/audit}"
check "egress audit: web -> outside flows" [ "$(outside)" = "outside" ]
check "egress audit: logged as audit-deny" waitfor 5 grep -q \
	"\"dst\":\"$OUT_IP:7000\".*\"verdict\":\"audit-deny\".*egress mode audit" "$L/web.log"
# a meshed destination on a port its policy does not open: refused, not
# sent in plaintext, whatever the egress mode
check "egress audit: web -> api:9090 (meshed, not allowed) still refused" [ -z "$(get 9090)" ]
check "mesh-wide egress: allow, reloaded" policy mesh.yaml "${MESH/EGRESS/allow}"
check "egress allow: web -> outside flows" [ "$(outside)" = "outside" ]

pods_report
exit $fail
