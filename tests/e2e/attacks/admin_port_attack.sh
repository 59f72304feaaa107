#!/bin/bash
# admin_port_attack (issue #12, hole 10): the agent's admin port serves the
# pod network only what Prometheus and the kubelet's probes need.
#
# The agent listens on 15000 on every address (the kubelet probes /ready and
# /live at the pod IP, Prometheus scrapes /metrics there), and inbound
# interception leaves that port alone. It used to serve /config (identity,
# certificate serial, ports) and anything else to whoever reached it. The
# attack, on the local mesh (deploy/local/mesh.sh), from three places that
# are not the pod's loopback: a namespace on the pod network with no agent
# (an attacker's pod), the root namespace (the node, where the kubelet and
# Prometheus sit), and the pod itself through its own pod IP. Each asks api's
# agent for /config and for other non-Prometheus paths (case, slashes,
# query strings, HEAD): none is served (403, no identity in the body),
# while /metrics, /ready and /live still answer. Inside the pod, on
# loopback, /config still works. Namespaces cxb-ad-*, bridge cxbad0,
# subnet 10.201.37.0/24. Root only (exit 77 otherwise).
set -u
MESHTEST_TOOLS="ip iptables-restore curl socat setpriv /usr/bin/python3"
MESH_BIN=$CINCH_BUILD/bin
NETNS_PREFIX=cxb-ad-
NETNS_BRIDGE=cxbad0
MESH_NET=10.201.37
MESH_ADMIN_PORT=15321
. "$CINCH_SRC/tests/lib/meshtest.sh"
meshtest_on_exit() { ip netns del "$(netns_name evil)" 2>/dev/null || true; }

API=$(mesh_addr api)
if ! mesh_up; then
	fail=1
	exit 1
fi
echo "ok: control plane and three agents ready"
netns_pod_up evil "$MESH_NET.20/24" || { echo "FAIL: cannot make the attacker's namespace"; exit 1; }

# from WHERE ("evil", "node" or "self": api's own namespace to its pod IP)
get() { # get WHERE [CURL ARGS...] URL-PATH: "<status> <body>"
	local where=$1
	shift
	local path=${!#} args=("${@:1:$#-1}")
	local url="http://$API:15000$path"
	case $where in
	node) curl -sS -m 5 --noproxy '*' -o - -w ' %{http_code}' "${args[@]}" "$url" ;;
	evil) ip netns exec "$(netns_name evil)" curl -sS -m 5 --noproxy '*' -o - -w ' %{http_code}' "${args[@]}" "$url" ;;
	self) mesh_in api setpriv --reuid 1337 --regid 1337 --clear-groups \
		curl -sS -m 5 --noproxy '*' -o - -w ' %{http_code}' "${args[@]}" "$url" ;;
	esac 2>/dev/null
}
status() { local r; r=$(get "$@"); echo "${r##* }"; }
for where in evil node self; do
	for path in /config /Config //config /config/ '/config?x=1' /config%00 /debug /quitquitquit /; do
		r=$(get "$where" "$path")
		check "$where: GET $path on $API:15000 not served (403, no identity)" \
			[ "${r##* }" = 403 ] && not grep -q spiffe <<<"$r"
	done
	check "$where: HEAD /config not served" [ "$(status "$where" -I /config)" = 403 ]
	check "$where: /metrics still answers (Prometheus)" \
		grep -q '^cinch_agent_connections_total' <<<"$(get "$where" /metrics)"
	check "$where: /ready still answers (kubelet probe)" [ "$(get "$where" /ready)" = "ready
 200" ]
	check "$where: /live still answers" [ "$(status "$where" /live)" = 200 ]
done

# --- inside the pod, on loopback: everything
check "api's loopback: /config answers with its identity" \
	[ "$(mesh_in api curl -sS -m 5 http://127.0.0.1:15000/config | json 'd["spiffe_id"]')" = spiffe://cluster.local/ns/demo/sa/api ]
check "api's loopback over IPv6 (::1): /config answers too" \
	grep -q '"spiffe_id"' <<<"$(mesh_in api curl -sS -m 5 'http://[::1]:15000/config')"
check "api's loopback: an unknown path is the agent's own 404" \
	[ "$(mesh_in api curl -sS -m 5 -o /dev/null -w '%{http_code}' http://127.0.0.1:15000/debug)" = 404 ]
check "legitimate traffic unaffected: web -> api" web_to_api

exit $fail
