#!/bin/bash
# plaintext_egress_attack (issue #12, hole 7): an EgressPolicy must never
# carry an app's plaintext to a meshed pod.
#
# The attack: on the local mesh (deploy/local/mesh.sh: web, api, db; web may
# call api, nothing may call db but api), web gets an EgressPolicy covering
# the whole pod network, as an operator opening "the cluster" would write
# it. web's app then sends a secret (password=hunter2) to db:5432, which is
# meshed but does not admit web. Before the fix web's slice listed only the
# workloads that admit web, so db's address fell through to the egress rule
# and the secret went to db in plaintext (db's agent refused it, but after
# it had crossed the wire).
#
# What must hold, and how it is seen:
#   - the call is refused by web's own agent, with the named reason, before
#     connecting;
#   - tcpdump on web's link sees no packet with a TCP payload between web
#     and db, and the secret nowhere (a capture of payload-bearing packets,
#     not of headers: the same capture must see web -> api's TLS records,
#     which carry the same secret, encrypted);
#   - the EgressPolicy still works where it should (a listener outside the
#     mesh, on the bridge address, answers web in plaintext) and web -> api
#     still works over mTLS;
#   - a plaintext connection opened to an address before it was known to be
#     meshed (a pod "late", not in the registry yet) is closed by web's
#     agent as soon as the registry says that address is a meshed workload
#     that does not admit web (end policy_change, the same reason).
# Namespaces cxb-pe-*, bridge cxbpe0, subnet 10.201.36.0/24. Root only
# (exit 77 otherwise).
set -u
MESHTEST_TOOLS="ip iptables-restore curl socat setpriv tcpdump /usr/bin/python3"
MESH_BIN=$CINCH_BUILD/bin
NETNS_PREFIX=cxb-pe-
NETNS_BRIDGE=cxbpe0
MESH_NET=10.201.36
MESH_ADMIN_PORT=15320
. "$CINCH_SRC/tests/lib/meshtest.sh"
meshtest_on_exit() { ip netns del "$(netns_name late)" 2>/dev/null || true; }

SECRET=password=hunter2
WEB=$(mesh_addr web) API=$(mesh_addr api) DB=$(mesh_addr db)
WIRE=$MESH_STATE/wire.pcap
admin() { mesh_in "$1" curl -sS -m 5 "http://127.0.0.1:15000$2"; }
policy_version() { admin "$1" /config | json 'd["policy_version"]'; }
# packets of the capture matching a pcap filter, with a TCP payload
payload_packets() {
	tcpdump -r "$WIRE" -n "tcp and ($1) and (((ip[2:2] - ((ip[0]&0xf)<<2)) - ((tcp[12]&0xf0)>>2)) != 0)" \
		2>/dev/null | wc -l
}

if ! mesh_up; then
	fail=1
	exit 1
fi
echo "ok: control plane and three agents ready"

# --- the EgressPolicy an operator opening "the cluster" would write
v0=$(policy_version web)
cat >"$MESH_STATE/policy/web-egress.yaml" <<EOF
apiVersion: cinch.dev/v1alpha1
kind: EgressPolicy
metadata: {name: web-pod-network, namespace: demo}
spec:
  selector: {workloads: [web]}
  to: [{cidrs: ["$MESH_NET.0/24"]}]
EOF
policy_changed() { [ "$(policy_version web)" != "$v0" ]; }
check "web's agent enforces the EgressPolicy" netns_wait 10 policy_changed
# outside the mesh, on the pod network: what the EgressPolicy is for
netns_spawn outside - socat "TCP-LISTEN:9099,bind=$MESH_NET.1,fork,reuseaddr" \
	SYSTEM:'echo hello from outside'
outside_answers() {
	mesh_in web socat -T 2 - "TCP:$MESH_NET.1:9099" </dev/null 2>/dev/null | grep -q 'hello from outside'
}
check "the EgressPolicy lets web reach a non-meshed address of the pod network" \
	netns_wait 5 outside_answers

# --- the capture: every packet on web's link to or from api and db
link=$(printf '%.15s' "v${NETNS_PREFIX%-}-web")
netns_spawn tcpdump - tcpdump -i "$link" -n -U -s 0 -w "$WIRE" \
	"tcp and host $WEB and (host $API or host $DB)"
check "tcpdump listens on web's link" netns_wait 10 grep -q 'listening on' "$MESH_STATE/tcpdump.log"

# --- the attack: the secret to db, which does not admit web
out=$(printf 'POST /login HTTP/1.1\r\nHost: db\r\n\r\n%s\n' "$SECRET" |
	mesh_in web socat -T 3 - "TCP:$DB:5432" 2>/dev/null)
check "web -> db with the EgressPolicy covering it: refused (no answer from db)" \
	[ -z "$out" ]
check "web's agent refused it before connecting, with the named reason" \
	netns_wait 5 grep -q "\"dst\":\"$DB:5432\".*\"verdict\":\"deny\".*\"reason\":\"the destination is meshed and does not admit this workload\".*\"end\":\"denied\"" \
	"$MESH_STATE/agent-web.log"

# --- legitimate traffic: the same secret to api, over mTLS
legit() {
	[ "$(mesh_in web curl -sS -m 5 -H "X-Login: $SECRET" "http://$API:8080/" 2>/dev/null)" = "hello from api" ]
}
check "web -> api (with the secret in a header) still works over mTLS" legit
check "a second call web -> api works too" legit
# (the agents listen on "::": an IPv4 peer is logged as [::ffff:a.b.c.d]:port)
check "db's agent never saw a connection from web" \
	not grep -Eq "\"src\":\"(\[::ffff:)?$WEB\]?:" "$MESH_STATE/agent-db.log"
# tcpdump -U writes each packet once it has processed it, in order, and may
# lag behind the wire: once web -> api's records (sent last) are in the
# file, everything before them is too.
api_seen() { [ "$(payload_packets "host $API")" -gt 0 ]; }
netns_wait 10 api_seen
netns_kill tcpdump

n_db=$(payload_packets "host $DB")
n_api=$(payload_packets "host $API")
n_secret=$(tcpdump -r "$WIRE" -n -A 2>/dev/null | grep -c hunter2)
echo "capture: $n_db payload packets web<->db, $n_api web<->api, $n_secret with the secret"
check "the capture works: it saw web <-> api's TLS records" [ "$n_api" -gt 0 ]
check "no packet with a payload between web and db" [ "$n_db" -eq 0 ]
check "the secret never appears on the wire" [ "$n_secret" -eq 0 ]

# --- a pod the mesh learns about while web talks to it in plaintext
LATE=$MESH_NET.30
netns_pod_up late "$LATE/24" || { echo "FAIL: cannot make pod late"; exit 1; }
netns_spawn app-late late socat "TCP-LISTEN:9100,bind=$LATE,fork,reuseaddr" \
	SYSTEM:'echo hello from late; sleep 60'
# the client must not race the listener: a refused connect is no plaintext
late_listens() { mesh_in late ss -Hltn "sport = :9100" | grep -q LISTEN; }
check "late's app listens" netns_wait 10 late_listens
netns_spawn client-late web sh -c "sleep 60 | socat - TCP:$LATE:9100"
late_open() { grep -q 'hello from late' "$MESH_STATE/client-late.log"; }
check "web -> late (not meshed yet): plaintext, as the EgressPolicy allows" netns_wait 10 late_open
cat >"$MESH_STATE/registry/late.yaml" <<EOF
apiVersion: cinch.dev/v1alpha1
kind: Workload
metadata: {name: late, namespace: demo}
spec: {serviceAccount: late, addresses: ["$LATE"]}
EOF
check "late joins the registry: web's agent closes the plaintext connection to it" \
	netns_wait 10 grep -q "\"dst\":\"$LATE:9100\".*\"verdict\":\"deny\".*\"reason\":\"the destination is meshed and does not admit this workload\".*\"end\":\"policy_change\"" \
	"$MESH_STATE/agent-web.log"
late_refused() { [ -z "$(mesh_in web socat -T 2 - "TCP:$LATE:9100" </dev/null 2>/dev/null)" ]; }
check "... and new connections to it are refused" late_refused
netns_kill client-late

exit $fail
