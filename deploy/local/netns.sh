# netns.sh: pods as network namespaces on one Linux machine, for the local
# mesh (mesh.sh) and the end-to-end tests. Sourced, not run.
#
# A "pod" is a network namespace with a veth pair to a bridge in the root
# namespace; the bridge address is the pods' default gateway, where the
# control plane listens. Every process started with netns_spawn gets a
# pidfile, so netns_kill_all stops exactly what was started, and
# netns_teardown removes exactly the namespaces and bridge it was told.
#
# Variables (set before use):
#   NETNS_STATE   directory for pidfiles and logs
#   NETNS_PREFIX  namespace name prefix ("cinch-" gives cinch-web, ...)
#   NETNS_BRIDGE  bridge name (at most 15 characters)
#   NETNS_GW      bridge address with prefix length, e.g. 10.203.0.1/24

netns_name() { printf '%s%s' "$NETNS_PREFIX" "$1"; }

netns_bridge_up() {
	ip link show "$NETNS_BRIDGE" >/dev/null 2>&1 && return 0
	ip link add "$NETNS_BRIDGE" type bridge &&
		ip addr add "$NETNS_GW" dev "$NETNS_BRIDGE" &&
		ip link set "$NETNS_BRIDGE" up
}

# netns_pod_up NAME ADDR/LEN: the namespace, its veth and its routes.
netns_pod_up() {
	ns=$(netns_name "$1")
	host="v${NETNS_PREFIX%-}-$1"
	host=$(printf '%.15s' "$host")
	# a veth left by a run that died while its namespace was held open
	ip link del "$host" 2>/dev/null
	ip netns add "$ns" &&
		ip link add "$host" type veth peer name eth0 netns "$ns" &&
		ip link set "$host" master "$NETNS_BRIDGE" up &&
		ip -n "$ns" link set lo up &&
		ip -n "$ns" addr add "$2" dev eth0 &&
		ip -n "$ns" link set eth0 up &&
		ip -n "$ns" route add default via "${NETNS_GW%/*}"
}

# netns_spawn TAG NAME|- CMD...: runs CMD in pod NAME (or the root namespace
# for -) in the background, output appended to $NETNS_STATE/TAG.log, pid
# recorded.
netns_spawn() {
	tag=$1 pod=$2
	shift 2
	mkdir -p "$NETNS_STATE/pids"
	if [ "$pod" = - ]; then
		setsid "$@" >>"$NETNS_STATE/$tag.log" 2>&1 &
	else
		setsid ip netns exec "$(netns_name "$pod")" "$@" >>"$NETNS_STATE/$tag.log" 2>&1 &
	fi
	echo $! >"$NETNS_STATE/pids/$tag.pid"
	disown $! 2>/dev/null || true # its end is ours to report, not the shell's
}

# netns_kill TAG: stops what netns_spawn TAG started (its whole session).
netns_kill() {
	f="$NETNS_STATE/pids/$1.pid"
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
	i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -KILL -- "-$pid" 2>/dev/null || true
	rm -f "$f"
}

netns_kill_all() {
	[ -d "$NETNS_STATE/pids" ] || return 0
	for f in "$NETNS_STATE"/pids/*.pid; do
		[ -e "$f" ] || continue
		t=${f##*/}
		netns_kill "${t%.pid}"
	done
}

# netns_teardown NAME...: every pod named, then the bridge.
netns_teardown() {
	for p in "$@"; do
		ip netns del "$(netns_name "$p")" 2>/dev/null || true
	done
	ip link del "$NETNS_BRIDGE" 2>/dev/null || true
}

# netns_wait SECONDS CMD...: retries CMD every 0.1 s until it succeeds or
# SECONDS have passed; its status is the last attempt's.
netns_wait() {
	deadline=$(($(date +%s) + $1))
	shift
	while ! "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -ge "$deadline" ] && return 1
		sleep 0.1
	done
}
