#!/bin/bash
# live_mesh_test: the live mesh of issue #6, built with the local mesh's own
# scripts (deploy/local/mesh.sh) in namespaces cnalm-*, bridge cnalm0,
# subnet 10.201.11.0/24: cinch-control with a registry file and a policy
# directory, three pods whose agents bootstrap from single-use join tokens.
#   - every agent gets its certificate and slice and becomes ready;
#   - web -> api:8080 flows over mutual TLS, web -> db:5432 is refused;
#   - each agent reports the version it enforces: cinchctl status says in sync;
#   - a spent join token is refused (a second agent with db's token never
#     gets a certificate);
#   - a policy change reaches the agents: web -> db allowed, then refused;
#   - an invalid policy edit is rejected whole and the last good set stays;
#   - control plane killed: existing and new connections keep working;
#     back again: agents resync (a change made while it was down applies).
#   - Services as in a cluster (api scaled to two pods, api and api-2):
#     the pods resolve api.demo.svc.cluster.local to the api VIP (their
#     /etc/netns hosts files); the root namespace's kube-proxy-style DNAT
#     takes a client outside the mesh (the host) to both api pods at
#     random (each pod's agent refuses the plaintext: STRICT), and a pod's
#     uncaptured call through the VIP comes back over the bridge (hairpin,
#     masqueraded) to an api pod; web calls the api Service by name
#     (http://api.demo.svc.cluster.local/, port 80 -> 8080): its agent takes
#     the call to the VIP, both api pods serve, every call is mutual TLS
#     with api's identity pinned, and the host's DNAT never sees it.
# Root only (exit 77 otherwise).
set -u
MESHTEST_TOOLS="ip iptables iptables-restore curl socat setpriv getent /usr/bin/python3"
MESH_BIN=$CINCH_BUILD/bin
NETNS_PREFIX=cnalm-
NETNS_BRIDGE=cnalm0
MESH_NET=10.201.11
MESH_ADMIN_PORT=15214
MESH_API_REPLICAS=2
. "$CINCH_SRC/tests/lib/meshtest.sh"

admin() { mesh_in "$1" curl -sS -m 5 "http://127.0.0.1:${3:-15000}$2"; }
policy_version() { admin "$1" /config | json 'd["policy_version"]'; }

# --- bootstrap
if ! mesh_up; then
	fail=1
	exit 1
fi
echo "ok: control plane and four agents ready from join tokens"
check "web's identity comes from the control plane" \
	[ "$(admin web /config | json 'd["spiffe_id"]')" = spiffe://cluster.local/ns/demo/sa/web ]
check "web -> api:8080 allowed" web_to_api
check "api's agent saw web's identity over TLS 1.3" \
	grep -q '"peer_id":"spiffe://cluster.local/ns/demo/sa/web".*"verdict":"allow".*"tls_version":"TLSv1.3"' \
	"$MESH_STATE/agent-api.log"
check "web -> db:5432 refused" not web_to_db

# --- reports: cinchctl status shows every pod in sync
in_sync() {
	mesh_ctl status --json | /usr/bin/python3 -c '
import json, sys
rows = json.load(sys.stdin)["workloads"]
sys.exit(0 if len(rows) == 4 and all(r.get("in_sync") for r in rows) else 1)'
}
check "cinchctl status: all four pods enforce the current version" netns_wait 10 in_sync

# --- Services: names, the VIP's DNAT from outside the mesh, the hairpin
VIP=$MESH_NET.240
check "the control plane took the registry's Services and EndpointSlices (Kubernetes' format)" \
	bash -c "grep -q 'kind: EndpointSlice' '$MESH_STATE/registry/services.yaml' && ! grep -q config_rejected '$MESH_STATE/control.log'"
check "web resolves api.demo.svc.cluster.local to the api VIP" \
	[ "$(mesh_in web getent hosts api.demo.svc.cluster.local | awk '{print $1}')" = "$VIP" ]
check "... and api.demo, api" [ "$(mesh_in web getent hosts api | awk '{print $1}')" = "$VIP" ]
for i in $(seq 20); do curl -s -m 2 "http://$VIP/" >/dev/null; done
check "the host's plaintext calls to the VIP reached both api and api-2, refused there" \
	netns_wait 5 eval 'grep -q "plaintext refused" "$MESH_STATE/agent-api.log" && grep -q "plaintext refused" "$MESH_STATE/agent-api-2.log"'
check "the iptables chains are kube-proxy's shape (a random choice between the two)" \
	bash -c "iptables -t nat -S $(mesh_chain SVC-API) | grep -q 'statistic --mode random --probability 0.50000'"
# (the agents log an IPv4 source on their dual-stack sockets as
# [::ffff:a.b.c.d]:port)
from_gw='"src":"(\[::ffff:)?'$MESH_NET'\.1\]?:[0-9]+".*plaintext refused'
both_refusals() { cat "$MESH_STATE/agent-api.log" "$MESH_STATE/agent-api-2.log" | grep -Ec "$from_gw"; }
n0=$(both_refusals)
mesh_in web setpriv --reuid 1337 --regid 1337 --clear-groups curl -s -m 2 "http://$VIP/" >/dev/null
check "web's uncaptured call through the VIP came back to an api pod (hairpin, masqueraded to $MESH_NET.1)" \
	netns_wait 5 eval '[ "$(both_refusals)" -gt "$n0" ]'

# --- the api Service by name, through web's agent (meshed, both pods)
# new connections to the api VIP the host's nat chains took
via_host() { iptables -w -t nat -L "$(mesh_chain)" -v -x -n | awk -v c="$(mesh_chain SVC-API)" '$3 == c {print $1}'; }
p0=$(via_host)
declare -A served=()
for i in $(seq 20); do
	w=$(mesh_in web curl -s -m 5 http://api.demo.svc.cluster.local/pod)
	served[${w:-none}]=$((${served[${w:-none}]:-0} + 1))
done
both_served() { [ "${served[api]:-0}" -gt 0 ] && [ "${served[api-2]:-0}" -gt 0 ] && [ "${served[none]:-0}" -eq 0 ]; }
check "web -> api.demo.svc.cluster.local: 20 answers, from both api pods (api ${served[api]:-0}, api-2 ${served[api-2]:-0}, none ${served[none]:-0})" both_served
meshed_calls() { grep -c "\"dst\":\"$VIP:80\".*\"peer_id\":\"spiffe://cluster.local/ns/demo/sa/api\".*\"tls_version\":\"TLSv1.3\"" "$MESH_STATE/agent-web.log"; }
check "web's agent made each a mutual TLS call with api's identity pinned" netns_wait 5 eval '[ "$(meshed_calls)" -ge 20 ]'
check "none of them went through the host's DNAT ($p0 connections to the VIP before, $(via_host) after)" \
	[ "$(via_host)" = "$p0" ]
check "both api pods' agents let web in over mutual TLS" \
	eval 'grep -q "\"peer_id\":\"spiffe://cluster.local/ns/demo/sa/web\".*\"verdict\":\"allow\".*TLSv1.3" "$MESH_STATE/agent-api.log" && grep -q "\"peer_id\":\"spiffe://cluster.local/ns/demo/sa/web\".*\"verdict\":\"allow\".*TLSv1.3" "$MESH_STATE/agent-api-2.log"'

# --- a spent token is refused
mkdir -p "$MESH_STATE/replay"
cp "$MESH_STATE/pods/db/token" "$MESH_STATE/pods/db/control-bundle.pem" "$MESH_STATE/replay/"
chown -R 1337:1337 "$MESH_STATE/replay"
netns_spawn replay db setpriv --reuid 1337 --regid 1337 --clear-groups \
	"$MESH_BIN/cinch-agent" run --control "$MESH_NET.1:15012" \
	--token-file "$MESH_STATE/replay/token" --control-bundle "$MESH_STATE/replay/control-bundle.pem" \
	--workload demo/db --outbound-port 15101 --inbound-port 15106 --admin-port 15100
check "a reused join token is refused by the control plane" \
	netns_wait 15 grep -q '"error":"Sign refused: UNAUTHENTICATED: join token already used"' "$MESH_STATE/replay.log"
check "... and that agent is not ready" [ "$(mesh_in db curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:15100/ready)" = 503 ]
netns_kill replay

# --- a policy change reaches the agents
v0=$(policy_version web)
mesh_allow_web_to_db
check "allowing web -> db takes effect" netns_wait 5 web_to_db
check "web's agent enforces a new version" [ "$(policy_version web)" != "$v0" ]
rm -f "$MESH_STATE/policy/db-from-web.yaml"
check "taking it back refuses web -> db again" netns_wait 5 not web_to_db

# --- an invalid edit is rejected whole
v1=$(policy_version api)
printf 'apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\nmetadata: {name: broken, namespace: demo}\nspec: {selector: {workloads: [api]}, ports: [70000], from: [{namespaces: [demo]}]}\n' \
	>"$MESH_STATE/policy/broken.yaml"
check "the control plane logs the invalid file with its place" \
	netns_wait 5 grep -q 'broken.yaml.*70000\|70000.*broken.yaml' "$MESH_STATE/control.log"
check "web -> api still allowed under the last good set" web_to_api
check "api still enforces the last good version" [ "$(policy_version api)" = "$v1" ]
rm -f "$MESH_STATE/policy/broken.yaml"

# --- the control plane goes away and comes back
netns_kill control
check "control down: new connections web -> api still work" web_to_api
check "control down: agents stay ready" [ "$(admin web /ready)" = ready ]
mesh_allow_web_to_db # made while the control plane is away
check "control down: the change is not enforced yet" not web_to_db
mesh_control_up
check "control back: agents resync and enforce the change" netns_wait 40 web_to_db
check "control back: all pods in sync again" netns_wait 10 in_sync

exit $fail
