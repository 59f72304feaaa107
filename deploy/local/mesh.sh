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
#     and $MESH_STATE/policy (edit those to change the running mesh).
#
# Variables (defaults below): MESH_STATE, MESH_BIN (the binaries),
# NETNS_PREFIX, NETNS_BRIDGE, MESH_NET, MESH_ADMIN_PORT, MESH_TTL (the
# certificate lifetime; 1h).

MESH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MESH_STATE=${MESH_STATE:-/run/cinch-local}
MESH_BIN=${MESH_BIN:-$MESH_SRC/../../build/release/bin}
NETNS_PREFIX=${NETNS_PREFIX:-cinch-}
NETNS_BRIDGE=${NETNS_BRIDGE:-cinch0}
MESH_NET=${MESH_NET:-10.203.0}
MESH_ADMIN_PORT=${MESH_ADMIN_PORT:-15014}
MESH_TTL=${MESH_TTL:-1h}
MESH_UID=1337
MESH_PODS="web api db"
NETNS_STATE=$MESH_STATE
NETNS_GW=$MESH_NET.1/24
# shellcheck source=netns.sh
. "$MESH_SRC/netns.sh"

mesh_addr() { # mesh_addr POD: its address
	case $1 in
	web) echo "$MESH_NET.10" ;;
	api) echo "$MESH_NET.11" ;;
	db) echo "$MESH_NET.12" ;;
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

mesh_control_up() {
	mkdir -p "$MESH_STATE/registry" "$MESH_STATE/policy"
	# first start only: later starts keep what was edited meanwhile
	[ -e "$MESH_STATE/registry/workloads.yaml" ] ||
		sed "s/10\.203\.0\./$MESH_NET./g" "$MESH_SRC/workloads.yaml" \
			>"$MESH_STATE/registry/workloads.yaml"
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
	netns_pod_up "$pod" "$(mesh_addr "$pod")/24" || mesh_fail "cannot create pod $pod" || return 1
	mesh_in "$pod" "$MESH_BIN/cinch-agent" init --uid "$MESH_UID" >"$dir/init.log" 2>&1 ||
		mesh_fail "cinch-agent init failed in $pod ($dir/init.log)" || return 1
	mesh_ctl bundle show --pem >"$dir/control-bundle.pem" &&
		mesh_ctl token create --identity "demo/$pod" --ttl 10m >"$dir/token" \
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
	api)
		mkdir -p "$dir/www"
		echo "hello from api" >"$dir/www/index.html"
		netns_spawn "app-$1" "$1" /usr/bin/python3 -c '
import functools, http.server, socketserver, sys
socketserver.ThreadingTCPServer.allow_reuse_address = True
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[2])
socketserver.ThreadingTCPServer((sys.argv[1], 8080), h).serve_forever()' \
			"$(mesh_addr api)" "$dir/www"
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

mesh_app_port() { case $1 in api) echo 8080 ;; db) echo 5432 ;; esac; }
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
	for t in ip iptables-restore setpriv curl socat /usr/bin/python3; do
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
	netns_teardown $MESH_PODS
	rm -rf "$MESH_STATE"
}
