# mesh.sh: the local mesh on one Linux machine (sourced by demo.sh and
# down.sh, and by the end-to-end test of the live mesh).
#
# What mesh_up makes, all of it recorded under $MESH_STATE so mesh_down
# removes exactly that:
#   - the bridge $NETNS_BRIDGE ($MESH_NET.1/24) in the root namespace, where
#     cinch-control listens (gRPC $MESH_NET.1:15012, admin 127.0.0.1:$MESH_ADMIN_PORT);
#   - one network namespace per pod ("${NETNS_PREFIX}web", ...) with:
#       its iptables rules from `cinch-agent init` (what an init container runs),
#       its own single-use join token ($MESH_STATE/pods/NAME/token),
#       its agent, as UID 1337 (the UID the rules let out unredirected),
#       its app (api: HTTP on 8080, "hello from api"; db: TCP on 5432,
#       "hello from db"; web: only a client);
#   - the registry and policy the control plane watches: copies of
#     deploy/local/workloads.yaml and policy.yaml in $MESH_STATE/registry
#     and $MESH_STATE/policy (edit those to change the running mesh);
#   - Services, as in a cluster (mesh_services_up): api (port 80 -> 8080 of
#     every api pod) and db (5432), each with a virtual IP in
#     $MESH_NET.240/28, the mesh's "service CIDR":
#       the root namespace DNATs a new connection to a VIP to one of its
#         endpoints the way kube-proxy does (nat chains <BRIDGE>-SERVICES,
#         -SVC-<name>, -SEP-<name>-<n>, a statistic random choice per
#         endpoint), from the host itself (OUTPUT) and from the bridge
#         (PREROUTING; forwarding on the bridge only, back onto it, with
#         the hairpin masqueraded as kube-proxy's KUBE-MARK-MASQ does), so a
#         client outside the mesh can use a VIP; a meshed pod's call to a
#         VIP is taken by its own agent before it leaves the pod;
#       names the pods resolve: /etc/netns/<pod>/hosts maps
#         api.demo.svc.cluster.local (and api.demo.svc, api.demo, api) to
#         the VIP (ip netns exec mounts it over /etc/hosts);
#       the Service and EndpointSlice documents in Kubernetes' own format
#         (v1, discovery.k8s.io/v1), as an API server returns them, in the
#         registry the control plane watches ($MESH_STATE/registry/services.yaml).
#   With MESH_API_REPLICAS=2 (make demo's), api runs as two pods, api and
#   api-2 (workload api-2, the same service account), both endpoints of
#   the api Service.
#
# Variables (defaults below): MESH_STATE, MESH_BIN (the binaries),
# NETNS_PREFIX, NETNS_BRIDGE, MESH_NET, MESH_ADMIN_PORT, MESH_TTL (the
# certificate lifetime; 1h), MESH_API_REPLICAS (1 or 2).

MESH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MESH_STATE=${MESH_STATE:-/run/cinch-local}
MESH_BIN=${MESH_BIN:-$MESH_SRC/../../build/release/bin}
NETNS_PREFIX=${NETNS_PREFIX:-cinch-}
NETNS_BRIDGE=${NETNS_BRIDGE:-cinch0}
MESH_NET=${MESH_NET:-10.203.0}
MESH_ADMIN_PORT=${MESH_ADMIN_PORT:-15014}
MESH_TTL=${MESH_TTL:-1h}
MESH_UID=1337
MESH_API_REPLICAS=${MESH_API_REPLICAS:-1}
case $MESH_API_REPLICAS in
1) MESH_PODS="web api db" ;;
2) MESH_PODS="web api api-2 db" ;;
*) printf 'mesh: MESH_API_REPLICAS must be 1 or 2, not "%s"\n' "$MESH_API_REPLICAS" >&2 ;;
esac
MESH_SVC_CIDR=$MESH_NET.240/28
NETNS_STATE=$MESH_STATE
NETNS_GW=$MESH_NET.1/24
# shellcheck source=netns.sh
. "$MESH_SRC/netns.sh"

mesh_addr() { # mesh_addr POD: its address
	case $1 in
	web) echo "$MESH_NET.10" ;;
	api) echo "$MESH_NET.11" ;;
	db) echo "$MESH_NET.12" ;;
	api-2) echo "$MESH_NET.13" ;;
	esac
}

mesh_say() { printf '%s\n' "$*"; }
mesh_fail() {
	printf 'mesh: %s\n' "$*" >&2
	return 1
}

# mesh_in POD CMD...: runs CMD inside the pod.
mesh_in() {
	ns=$(netns_name "$1")
	shift
	ip netns exec "$ns" "$@"
}

mesh_ctl() { "$MESH_BIN/cinchctl" "$@" --state-dir "$MESH_STATE/control"; }
# mesh_allow_web_to_db: a policy file letting web reach db:5432 (the
# demo's live change; the control plane picks it up)
mesh_allow_web_to_db() {
	cat >"$MESH_STATE/policy/db-from-web.yaml" <<EOF
apiVersion: cinch.dev/v1alpha1
kind: AllowPolicy
metadata: {name: db-from-web, namespace: demo}
spec:
  selector: {workloads: [db]}
  ports: [5432]
  from: [{identities: ["spiffe://cluster.local/ns/demo/sa/web"]}]
EOF
}

# --- Services
# mesh_services: one line per Service, "NAME VIP PORT PORT_NAME TARGET_PORT".
mesh_services() {
	echo "api $MESH_NET.240 80 http 8080"
	echo "db $MESH_NET.241 5432 postgres 5432"
}
# mesh_endpoints SERVICE: its pods (its selector app=SERVICE picks them).
mesh_endpoints() {
	for p in $MESH_PODS; do
		case $p in "$1" | "$1"-[0-9]*) echo "$p" ;; esac
	done
}
# mesh_chain [NAME]: this mesh's nat chain NAME (SERVICES), prefixed with its
# bridge so that two meshes on one host never share one.
mesh_chain() { echo "${NETNS_BRIDGE^^}-${1:-SERVICES}"; }
mesh_uid() { cat /proc/sys/kernel/random/uuid; }

# mesh_service_docs: the Services and their EndpointSlices as the API
# server returns them (kubectl get -o yaml: every field it fills in, the
# server-set ones included; managedFields left out as kubectl does).
mesh_service_docs() {
	local svc vip port pname tport ep now rv=1000
	now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	echo "# The local mesh's Services (mesh.sh), in Kubernetes' own format."
	while read -r svc vip port pname tport; do
		local suid
		suid=$(mesh_uid)
		rv=$((rv + 1))
		cat <<EOF
---
apiVersion: v1
kind: Service
metadata:
  creationTimestamp: "$now"
  labels: {app: $svc}
  name: $svc
  namespace: demo
  resourceVersion: "$rv"
  uid: $suid
spec:
  clusterIP: $vip
  clusterIPs: [$vip]
  internalTrafficPolicy: Cluster
  ipFamilies: [IPv4]
  ipFamilyPolicy: SingleStack
  ports:
  - {name: $pname, port: $port, protocol: TCP, targetPort: $tport}
  selector: {app: $svc}
  sessionAffinity: None
  type: ClusterIP
status:
  loadBalancer: {}
---
addressType: IPv4
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  annotations:
    endpoints.kubernetes.io/last-change-trigger-time: "$now"
  creationTimestamp: "$now"
  generateName: $svc-
  generation: 1
  labels:
    endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io
    kubernetes.io/service-name: $svc
  name: $svc-local
  namespace: demo
  ownerReferences:
  - {apiVersion: v1, blockOwnerDeletion: true, controller: true, kind: Service, name: $svc, uid: $suid}
  resourceVersion: "$((rv + 500))"
  uid: $(mesh_uid)
endpoints:
EOF
		for ep in $(mesh_endpoints "$svc"); do
			cat <<EOF
- addresses: ["$(mesh_addr "$ep")"]
  conditions: {ready: true, serving: true, terminating: false}
  nodeName: $(hostname)
  targetRef: {kind: Pod, name: $ep, namespace: demo, uid: $(mesh_uid)}
EOF
		done
		cat <<EOF
ports:
- {name: $pname, port: $tport, protocol: TCP}
EOF
	done < <(mesh_services)
}

# mesh_hosts POD: the names the pod resolves, /etc/netns/<ns>/hosts.
mesh_hosts() {
	local d=/etc/netns/$(netns_name "$1") svc vip rest
	mkdir -p "$d" || return 1
	{
		printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n'
		while read -r svc vip rest; do
			printf '%s\t%s.demo.svc.cluster.local %s.demo.svc %s.demo %s\n' \
				"$vip" "$svc" "$svc" "$svc" "$svc"
		done < <(mesh_services)
	} >"$d/hosts"
}

# mesh_services_up: the VIPs' DNAT in the root namespace, kube-proxy's way.
mesh_services_up() {
	local top svc vip port pname tport chain sep ep n i
	top=$(mesh_chain)
	mesh_services_down
	iptables -w -t nat -N "$top" || return 1
	while read -r svc vip port pname tport; do
		chain=$(mesh_chain "SVC-${svc^^}")
		iptables -w -t nat -N "$chain" &&
			iptables -w -t nat -A "$top" -d "$vip/32" -p tcp --dport "$port" \
				-m comment --comment "demo/$svc:$pname cluster IP" -j "$chain" || return 1
		set -- $(mesh_endpoints "$svc")
		n=$# i=0
		for ep; do
			i=$((i + 1))
			sep=$(mesh_chain "SEP-${svc^^}-$i")
			local rnd=()
			# the first of n endpoints with 1/n, the next with 1/(n-1) of
			# the rest...: each new connection picks one at random
			[ "$i" -lt "$n" ] && rnd=(-m statistic --mode random --probability
				"$(awk "BEGIN { printf \"%.5f\", 1 / ($n - $i + 1) }")")
			iptables -w -t nat -N "$sep" &&
				iptables -w -t nat -A "$sep" -p tcp -m comment --comment "demo/$svc:$pname" \
					-j DNAT --to-destination "$(mesh_addr "$ep"):$tport" &&
				iptables -w -t nat -A "$chain" -m comment --comment "demo/$svc:$pname -> $ep" \
					"${rnd[@]}" -j "$sep" || return 1
		done
	done < <(mesh_services)
	# Pods and endpoints share one L2: a pod's connection to a VIP, DNATed
	# back onto the bridge, is a hairpin and must come back through here
	# (masqueraded); the bridge forwards only onto itself.
	sysctl -qw "net.ipv4.conf.$NETNS_BRIDGE.forwarding=1" &&
		iptables -w -I FORWARD -i "$NETNS_BRIDGE" ! -o "$NETNS_BRIDGE" -j DROP &&
		iptables -w -I FORWARD -i "$NETNS_BRIDGE" -o "$NETNS_BRIDGE" -j ACCEPT &&
		iptables -w -t nat -I POSTROUTING -o "$NETNS_BRIDGE" -m conntrack --ctstate DNAT \
			--ctorigdst "$MESH_SVC_CIDR" -j MASQUERADE &&
		iptables -w -t nat -I OUTPUT -j "$top" &&
		iptables -w -t nat -I PREROUTING -i "$NETNS_BRIDGE" -j "$top"
}

# mesh_services_down: every rule and chain mesh_services_up made (safe when
# there are none).
mesh_services_down() {
	local top c
	top=$(mesh_chain)
	while iptables -w -t nat -D OUTPUT -j "$top" 2>/dev/null; do :; done
	while iptables -w -t nat -D PREROUTING -i "$NETNS_BRIDGE" -j "$top" 2>/dev/null; do :; done
	while iptables -w -t nat -D POSTROUTING -o "$NETNS_BRIDGE" -m conntrack --ctstate DNAT \
		--ctorigdst "$MESH_SVC_CIDR" -j MASQUERADE 2>/dev/null; do :; done
	while iptables -w -D FORWARD -i "$NETNS_BRIDGE" ! -o "$NETNS_BRIDGE" -j DROP 2>/dev/null; do :; done
	while iptables -w -D FORWARD -i "$NETNS_BRIDGE" -o "$NETNS_BRIDGE" -j ACCEPT 2>/dev/null; do :; done
	for c in $(iptables -w -t nat -S | sed -n "s/^-N \\(${NETNS_BRIDGE^^}-[A-Z0-9-]*\\)\$/\\1/p"); do
		iptables -w -t nat -F "$c"
	done
	for c in $(iptables -w -t nat -S | sed -n "s/^-N \\(${NETNS_BRIDGE^^}-[A-Z0-9-]*\\)\$/\\1/p"); do
		iptables -w -t nat -X "$c"
	done
	return 0
}

mesh_control_up() {
	mkdir -p "$MESH_STATE/registry" "$MESH_STATE/policy"
	# first start only: later starts keep what was edited meanwhile
	if [ ! -e "$MESH_STATE/registry/workloads.yaml" ]; then
		sed "s/10\.203\.0\./$MESH_NET./g" "$MESH_SRC/workloads.yaml" \
			>"$MESH_STATE/registry/workloads.yaml"
		[ "$MESH_API_REPLICAS" = 1 ] || cat >>"$MESH_STATE/registry/workloads.yaml" <<EOF
---
apiVersion: cinch.dev/v1alpha1
kind: Workload
metadata: {name: api-2, namespace: demo, labels: {app: api}}
spec: {serviceAccount: api, addresses: ["$(mesh_addr api-2)"]}
EOF
	fi
	[ -e "$MESH_STATE/registry/services.yaml" ] ||
		mesh_service_docs >"$MESH_STATE/registry/services.yaml"
	[ -e "$MESH_STATE/policy/policy.yaml" ] ||
		cp "$MESH_SRC/policy.yaml" "$MESH_STATE/policy/policy.yaml"
	netns_spawn control - "$MESH_BIN/cinch-control" \
		--state-dir "$MESH_STATE/control" \
		--listen "$MESH_NET.1:15012" --server-ip "$MESH_NET.1" \
		--admin-listen "127.0.0.1:$MESH_ADMIN_PORT" \
		--registry "$MESH_STATE/registry" --policy "$MESH_STATE/policy" \
		--svid-ttl "$MESH_TTL" ${MESH_CONTROL_ARGS:-}
	netns_wait 20 curl -fsS "http://127.0.0.1:$MESH_ADMIN_PORT/ready" ||
		mesh_fail "cinch-control did not become ready (log: $MESH_STATE/control.log)"
}

# mesh_pod_prepare POD: namespace, rules, the control plane's bundle and a
# join token; what an init container and the pod's secrets would hold.
mesh_pod_prepare() {
	pod=$1
	dir=$MESH_STATE/pods/$pod
	mkdir -p "$dir"
	mesh_hosts "$pod" || mesh_fail "cannot write $pod's hosts file" || return 1
	netns_pod_up "$pod" "$(mesh_addr "$pod")/24" &&
		ip -n "$(netns_name "$pod")" route add "$MESH_SVC_CIDR" via "$MESH_NET.1" ||
		mesh_fail "cannot create pod $pod" || return 1
	mesh_in "$pod" "$MESH_BIN/cinch-agent" init --uid "$MESH_UID" >"$dir/init.log" 2>&1 ||
		mesh_fail "cinch-agent init failed in $pod ($dir/init.log)" || return 1
	mesh_ctl bundle show --pem >"$dir/control-bundle.pem" &&
		mesh_ctl token create --identity "demo/${pod%-[0-9]}" --ttl 10m >"$dir/token" \
			2>>"$MESH_STATE/tokens.log" ||
		mesh_fail "cannot make $pod's token" || return 1
	chown -R "$MESH_UID:$MESH_UID" "$dir"
	chmod 0600 "$dir/token"
}

# mesh_agent_start POD: its agent, as the UID the rules let out.
mesh_agent_start() {
	dir=$MESH_STATE/pods/$1
	netns_spawn "agent-$1" "$1" setpriv --reuid "$MESH_UID" --regid "$MESH_UID" \
		--clear-groups "$MESH_BIN/cinch-agent" run --control "$MESH_NET.1:15012" \
		--token-file "$dir/token" --control-bundle "$dir/control-bundle.pem" \
		--workload "demo/$1" ${MESH_AGENT_ARGS:-}
}

# mesh_app_start POD: its app. (Python's HTTPServer would look its own
# address up in DNS first, which a pod without DNS waits 10 s for.)
mesh_app_start() {
	dir=$MESH_STATE/pods/$1
	case $1 in
	api | api-2)
		mkdir -p "$dir/www"
		echo "hello from api" >"$dir/www/index.html"
		echo "$1" >"$dir/www/pod" # which api pod answered
		netns_spawn "app-$1" "$1" /usr/bin/python3 -c '
import functools, http.server, socketserver, sys
socketserver.ThreadingTCPServer.allow_reuse_address = True
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[2])
socketserver.ThreadingTCPServer((sys.argv[1], 8080), h).serve_forever()' \
			"$(mesh_addr "$1")" "$dir/www"
		;;
	db)
		netns_spawn "app-$1" "$1" socat "TCP-LISTEN:5432,bind=$(mesh_addr db),fork,reuseaddr" \
			SYSTEM:'echo hello from db'
		;;
	esac
}

# mesh_pod_up POD: all of the above.
mesh_pod_up() {
	mesh_pod_prepare "$1" && mesh_agent_start "$1" && mesh_app_start "$1"
}

mesh_app_port() { case $1 in api | api-2) echo 8080 ;; db) echo 5432 ;; esac; }
# mesh_pod_ready POD: its agent is ready and its app listens.
mesh_pod_ready() {
	mesh_in "$1" curl -fsS "http://127.0.0.1:15000/ready" || return 1
	port=$(mesh_app_port "$1")
	[ -z "$port" ] || mesh_in "$1" ss -Hltn "sport = :$port" | grep -q LISTEN
}

mesh_up() {
	[ "$(id -u)" -eq 0 ] || mesh_fail "the local mesh needs root" || return 1
	for b in cinch-control cinchctl cinch-agent; do
		[ -x "$MESH_BIN/$b" ] || mesh_fail "$MESH_BIN/$b is missing: build first (make)" ||
			return 1
	done
	for t in ip iptables iptables-restore sysctl setpriv curl socat getent /usr/bin/python3; do
		command -v "$t" >/dev/null || mesh_fail "$t is missing (scripts/deps.sh installs it)" ||
			return 1
	done
	if [ -d "$MESH_STATE/pids" ] || ip link show "$NETNS_BRIDGE" >/dev/null 2>&1; then
		mesh_fail "a local mesh is already running here: make demo-down first"
		return 1
	fi
	mkdir -p "$MESH_STATE"
	chmod 0755 "$MESH_STATE"
	netns_bridge_up || mesh_fail "cannot create the bridge $NETNS_BRIDGE" || return 1
	mesh_services_up || mesh_fail "cannot install the Services' DNAT rules" || return 1
	mesh_control_up || return 1
	for p in $MESH_PODS; do
		mesh_pod_up "$p" || return 1
	done
	for p in $MESH_PODS; do
		netns_wait 30 mesh_pod_ready "$p" ||
			mesh_fail "the agent of $p did not become ready (log: $MESH_STATE/agent-$p.log)" ||
			return 1
	done
}

mesh_down() {
	netns_kill_all
	mesh_services_down
	# every pod a mesh of either size has (MESH_API_REPLICAS may differ
	# from the run that made it)
	for p in web api api-2 db; do rm -rf "/etc/netns/$(netns_name "$p")"; done
	netns_teardown web api api-2 db
	rm -rf "$MESH_STATE"
}
