#!/bin/bash
# guardrail_test: a GuardrailPolicy refuses what a namespace's AllowPolicy
# allows, enforced by real agents (issue #18).
#
# What it attacks: an app team's AllowPolicy opens api:9100 (a metrics
# port) to web; the platform team's guardrail says nothing outside the
# monitoring namespace reaches 9100. web tries anyway, with its valid SVID,
# through both agents. Then the egress mode: a destination outside the mesh
# that no EgressPolicy allows, refused under `deny`, let through and logged
# under `audit`; a meshed destination is never sent plaintext. Last, in a
# PERMISSIVE mesh: a plaintext caller outside the mesh, from an address
# block the namespace's AllowPolicy admits unauthenticated, that a guardrail
# denies before a `pass` for every caller; the evaluator once skipped such
# an ipBlock deny after finding the pass and let the block in (84136f2).
#
# How: the two static-mode pods of pods.sh (web, api; a test PKI made with
# openssl), the policy directory the agents watch rewritten between phases
# (each phase waits for both agents' config_reloaded), real apps (a Python
# HTTP server, socat) and curl. The guardrail is proven to be what refuses:
# the same connection flows before it is written and in its audit mode, and
# api's access log names the guardrail's rule.
# The plaintext callers: a third namespace with no agent and no
# interception (grd-cli-*, 10.201.86.5 and .9 on a veth into api's
# namespace, .12 on its end there), curl bound to one address or the
# other; api's access log names the source, the verdict and the rule.
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

# --- PERMISSIVE: a plaintext caller from a block a guardrail denies.
# The client namespace: no agent, two addresses (.5 in the block the
# guardrail denies, .9 outside it), a veth into api's namespace.
CLI=$POD_TAG-cli-$$
LEGACY_IP=$POD_NET.5 # in $POD_NET.4/30: the guardrail denies it
OTHER_IP=$POD_NET.9  # in $POD_NET.8/30: the guardrail passes it on
trap 'cleanup; ip netns del "$CLI" 2>/dev/null' EXIT INT TERM
# api's end has an address: the interception's REDIRECT sends a
# connection to the address of the interface it came in on (none: dropped)
{ ip netns add "$CLI" &&
	ip link add "ec$$" netns "$CLI" type veth peer name "ep$$" netns "$API" &&
	ip -n "$CLI" link set lo up && ip -n "$CLI" link set "ec$$" up &&
	ip -n "$API" link set "ep$$" up &&
	ip -n "$CLI" addr add "$LEGACY_IP/32" dev "ec$$" &&
	ip -n "$CLI" addr add "$OTHER_IP/32" dev "ec$$" &&
	ip -n "$CLI" route add "$API_IP/32" dev "ec$$" &&
	ip -n "$API" addr add "$POD_NET.12/32" dev "ep$$" &&
	ip -n "$API" route add "$POD_NET.4/30" dev "ep$$" &&
	ip -n "$API" route add "$POD_NET.8/30" dev "ep$$"; } ||
	{ echo "FAIL: the client namespace"; exit 1; }
plain() { # plain SRC: the client's plaintext GET of api:8080 from SRC; the body
	ip netns exec "$CLI" curl -s -m 5 --interface "$1" "http://$API_IP:8080/"
}
since() { # since N PATTERN: a line of api's log after its first N lines matches PATTERN
	tail -n +$(($1 + 1)) "$L/api.log" | grep -q "$2"
}
PLAIN="apiVersion: cinch.dev/v1alpha1
kind: MeshPolicy
metadata: {name: mesh}
spec: {egress: allow, mtls: PERMISSIVE}
---
apiVersion: cinch.dev/v1alpha1
kind: AllowPolicy
metadata: {name: plain, namespace: shop}
spec:
  selector: {workloads: [api]}
  ports: [8080]
  from: [{unauthenticated: {ipBlocks: [\"$POD_NET.4/30\", \"$POD_NET.8/30\"]}}]"
NO_LEGACY="apiVersion: cinch.dev/v1alpha1
kind: GuardrailPolicy
metadata: {name: no-legacy}
spec:
  priority: 20
  subject: {namespaceSelector: {}}
  rules:
    - action: deny
      from: [{unauthenticated: {ipBlocks: [\"$POD_NET.4/30\"]}}]
    - action: pass"
src() { # src IP: the access log's "src" of a caller at IP (the agent's socket is IPv6)
	printf '"src":"\\[::ffff:%s\\]:[0-9]*"' "${1//./\\.}"
}
check "PERMISSIVE mesh, AllowPolicy shop/plain (both blocks, unauthenticated), reloaded" \
	policy mesh.yaml "$PLAIN"
n=$(wc -l <"$L/api.log")
check "no guardrail names it: plaintext from $LEGACY_IP reaches api:8080" \
	[ "$(plain "$LEGACY_IP")" = "hello from api" ]
check "... allowed by the AllowPolicy's rule" waitfor 5 since "$n" \
	"$(src "$LEGACY_IP").*\"verdict\":\"allow\",\"rule\":\"shop/plain#0\""
check "guardrail no-legacy (deny $POD_NET.4/30, then pass) written, reloaded" \
	policy legacy.yaml "$NO_LEGACY"
n=$(wc -l <"$L/api.log")
check "with the guardrail, plaintext from $LEGACY_IP gets no app bytes" \
	[ -z "$(plain "$LEGACY_IP")" ]
check "api's agent refused it by the guardrail's deny rule" waitfor 5 since "$n" \
	"$(src "$LEGACY_IP").*\"verdict\":\"deny\",\"rule\":\"GuardrailPolicy/no-legacy#0\",\"reason\":\"denied by a guardrail\".*\"bytes_out\":0,"
check "plaintext from $OTHER_IP (not in the denied block) still reaches api:8080" \
	[ "$(plain "$OTHER_IP")" = "hello from api" ]
check "... the pass handed it to the AllowPolicy, which allowed it" waitfor 5 since "$n" \
	"$(src "$OTHER_IP").*\"verdict\":\"allow\",\"rule\":\"shop/plain#0\""

pods_report
exit $fail
