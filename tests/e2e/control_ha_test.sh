#!/bin/bash
# control_ha_test: two cinch-control replicas behind one Service address,
# the way deploy/k8s runs them (Deployment with 2 replicas sharing the CA
# Secret), with the local mesh's scripts (deploy/local/mesh.sh) in
# namespaces cnaks-*, bridge cnaks0, subnet 10.201.14.0/24.
#
# The "Service": agents are told $MESH_NET.1:15012, where nothing listens;
# a nat chain (CNAKS-SVC, what kube-proxy writes for a ClusterIP) DNATs new
# connections to the ready replicas' ports. Replica A (admin 15244) and B
# (admin 15245) share --ca-cert/--ca-key (a CA made here with openssl),
# each with its own state directory and port, both reading the same
# registry and policy.
#   - the agents bootstrap from A (join tokens live in A's state);
#   - B serves the same configuration version as A;
#   - A goes away and leaves the Service: every agent reconnects, through
#     the same address, to B (cinchctl status on B: all in sync), and a
#     prober making a new web -> api connection every 0.2 s through the
#     whole failover never fails, and the agents stay ready;
#   - a policy change afterwards reaches the agents through B.
# Root only (exit 77 otherwise).
set -u
MESHTEST_TOOLS="ip iptables iptables-restore curl socat setpriv openssl /usr/bin/python3"
MESH_BIN=$CINCH_BUILD/bin
NETNS_PREFIX=cnaks-
NETNS_BRIDGE=cnaks0
MESH_NET=10.201.14
MESH_ADMIN_PORT=15244
ADMIN_B=15245
PORT_A=15112
PORT_B=15113
SVC=CNAKS-SVC
. "$CINCH_SRC/tests/lib/meshtest.sh"
CA=$MESH_STATE/ca.pem
CA_KEY=$MESH_STATE/ca.key
svc_down() {
	iptables -t nat -D PREROUTING -i "$NETNS_BRIDGE" -j "$SVC" 2>/dev/null
	iptables -t nat -F "$SVC" 2>/dev/null
	iptables -t nat -X "$SVC" 2>/dev/null
	return 0
}
meshtest_on_exit() { svc_down; }

# svc_set PORT...: the Service's endpoints, as kube-proxy writes them (each
# new connection picks one at random; established ones keep theirs).
svc_set() {
	local n=$# i=0 p
	iptables -t nat -F "$SVC" || return 1
	for p in "$@"; do
		local rnd=()
		[ $((n - i)) -gt 1 ] && rnd=(-m statistic --mode random --probability
			"$(awk "BEGIN { printf \"%.5f\", 1 / $((n - i)) }")")
		iptables -t nat -A "$SVC" -p tcp -d "$MESH_NET.1" --dport 15012 "${rnd[@]}" \
			-j DNAT --to-destination "$MESH_NET.1:$p" || return 1
		i=$((i + 1))
	done
}

API=$(mesh_addr api)
ctl_b() { "$MESH_BIN/cinchctl" "$@" --state-dir "$MESH_STATE/control-b"; }
version_of() { "$MESH_BIN/cinchctl" status --json --state-dir "$1" | json 'd["version"]'; }
# all_on_b: B has the three agents connected, each enforcing B's version.
all_on_b() {
	ctl_b status --json | /usr/bin/python3 -c '
import json, sys
rows = json.load(sys.stdin)["workloads"]
sys.exit(0 if len(rows) == 3 and all(r.get("connected") == 1 and r.get("in_sync") for r in rows) else 1)'
}
agents_ready() {
	for p in $MESH_PODS; do
		[ "$(mesh_in "$p" curl -sS -m 2 http://127.0.0.1:15000/ready)" = ready ] || return 1
	done
}

# --- the shared CA, given with --ca-cert (deploy/k8s shares it through the
# Secret cinch-ca instead, --ca-secret: tests/unit/k8s/ca_secret_test.py)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-keyout "$CA_KEY" -out "$CA" -subj "/O=cinch ha test CA" \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
	-addext "subjectAltName=URI:spiffe://cluster.local" 2>"$MESH_STATE/openssl.log" ||
	{ fail=1; echo "FAIL: cannot make the CA"; exit 1; }

# --- the Service, then the mesh with replica A as its only endpoint
svc_down
iptables -t nat -N "$SVC" && iptables -t nat -I PREROUTING -i "$NETNS_BRIDGE" -j "$SVC" &&
	svc_set $PORT_A || { fail=1; echo "FAIL: cannot write the Service rules"; exit 1; }
MESH_CONTROL_ARGS="--listen $MESH_NET.1:$PORT_A --ca-cert $CA --ca-key $CA_KEY"
if ! mesh_up; then
	fail=1
	exit 1
fi
echo "ok: replica A and three agents ready (through the Service address)"
check "web -> api:8080 allowed" web_to_api
check "web -> db:5432 refused" not web_to_db

# --- replica B: same CA, own state and port, same registry and policy
netns_spawn control-b - "$MESH_BIN/cinch-control" --state-dir "$MESH_STATE/control-b" \
	--listen "$MESH_NET.1:$PORT_B" --server-ip "$MESH_NET.1" \
	--admin-listen "127.0.0.1:$ADMIN_B" --registry "$MESH_STATE/registry" \
	--policy "$MESH_STATE/policy" --svid-ttl 1h --ca-cert "$CA" --ca-key "$CA_KEY"
check "replica B is ready" netns_wait 20 curl -fsS "http://127.0.0.1:$ADMIN_B/ready"
check "one trust bundle for both replicas" \
	[ "$(mesh_ctl bundle show --pem)" = "$(ctl_b bundle show --pem)" ]
va=$(version_of "$MESH_STATE/control")
check "B serves A's configuration version ($va)" [ "$(version_of "$MESH_STATE/control-b")" = "$va" ]
check "the Service has both endpoints" svc_set $PORT_A $PORT_B

# --- a prober in web: a new connection to api every 0.2 s
netns_spawn probe web bash -c "while [ ! -e '$MESH_STATE/probe.stop' ]; do
	if [ \"\$(curl -sS -m 2 http://$API:8080/ 2>&1)\" = 'hello from api' ]; then echo ok; else echo fail; fi
	sleep 0.2
done"
sleep 1

# --- A goes away; the endpoints controller takes it out of the Service
netns_kill control
svc_set $PORT_B
check "every agent reconnects to B through the same address, in sync" netns_wait 45 all_on_b
check "the agents stayed ready" agents_ready
sleep 1
touch "$MESH_STATE/probe.stop"
sleep 0.5
netns_kill probe
oks=$(grep -c '^ok$' "$MESH_STATE/probe.log")
fails=$(grep -c '^fail$' "$MESH_STATE/probe.log")
check "the data path never failed during the failover ($oks ok, $fails failed)" \
	[ "$fails" -eq 0 -a "$oks" -ge 10 ]

# --- a change after the failover arrives through B
mesh_allow_web_to_db
check "a policy change reaches the agents through B" netns_wait 10 web_to_db
check "and they report it to B" netns_wait 10 all_on_b

exit $fail
