#!/bin/bash
# intercept_test: `cinch-agent init` in a real network namespace (a pod)
# wired to a second one (its peer) by a veth pair, with socat servers
# standing in for the agent's ports and the apps:
#   - the rules are installed for IPv4 and IPv6, a foreign nat rule survives;
#   - running init again changes nothing; --dry-run changes nothing;
#   - traffic: the pod's outbound TCP reaches the outbound port, except the
#     agent's UID, loopback and excluded CIDRs; inbound TCP reaches the
#     inbound port, except excluded ports;
#   - the self-probe rules: the agent's UID reaches the outbound / inbound
#     port through 127.0.0.7:15011 / :15016 (and ::1 for IPv6), another UID
#     does not;
#   - the guard: the agent's ports reached directly (from the peer, on
#     loopback, by the agent's own UID, over IPv6) are rejected;
#   - bad flags change nothing; --remove takes only Cinch's rules out.
# Root only (exit 77 otherwise). Namespaces cna-int-*, subnet 10.201.7.0/24.
#   - the agent recovers each connection's original destination (IPv4 and
#     IPv6, outbound and inbound) with origdst_probe standing on its ports.
#   intercept_test.sh CINCH_AGENT ORIGDST_PROBE
set -u
AGENT=$1
PROBE=$2
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
for t in ip iptables-save socat setpriv; do
	command -v $t >/dev/null || { echo "SKIP: $t missing"; exit 77; }
done
POD=cna-int-pod-$$
PEER=cna-int-peer-$$
PIDS=""
cleanup() {
	for p in $PIDS; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	ip netns del "$POD" 2>/dev/null
	ip netns del "$PEER" 2>/dev/null
}
trap cleanup EXIT INT TERM
fail=0
check() { # check DESCRIPTION CONDITION...
	local what=$1
	shift
	if ! "$@"; then echo "FAIL: $what"; fail=1; fi
}
inpod() { ip netns exec "$POD" "$@"; }
inpeer() { ip netns exec "$PEER" "$@"; }

ip netns add "$POD" && ip netns add "$PEER" || exit 1
ip link add "ci$$" netns "$POD" type veth peer name "cp$$" netns "$PEER" || exit 1
inpod ip link set lo up && inpeer ip link set lo up
inpod ip addr add 10.201.7.1/24 dev "ci$$" && inpod ip link set "ci$$" up
inpeer ip addr add 10.201.7.2/24 dev "cp$$" && inpeer ip link set "cp$$" up
inpeer ip addr add 10.201.8.2/24 dev "cp$$"
inpod ip -6 addr add fd00:201:7::1/64 dev "ci$$" nodad 2>/dev/null
inpeer ip -6 addr add fd00:201:7::2/64 dev "cp$$" nodad 2>/dev/null
inpod ip route add 10.201.8.0/24 via 10.201.7.2

serve() { # serve NS PORT WORD: a TCP server answering WORD
	ip netns exec "$1" socat TCP-LISTEN:"$2",fork,reuseaddr SYSTEM:"echo $3" 2>/dev/null &
	PIDS="$PIDS $!"
	LAST=$!
}
serve "$POD" 15001 OUTBOUND
OUT_SERVER=$LAST
serve "$POD" 15006 INBOUND
IN_SERVER=$LAST
serve "$POD" 80 APP80
serve "$POD" 9090 APP9090
serve "$POD" 8080 LOCAL
serve "$PEER" 80 PEER
serve "$PEER" 443 PEER443
get() { ip netns exec "$1" socat -T 2 - TCP:"$2":"$3",connect-timeout=2 </dev/null 2>/dev/null; }
get_as() { ip netns exec "$1" setpriv --reuid="$2" --regid="$2" --clear-groups \
	socat -T 2 - TCP:"$3":"$4",connect-timeout=2 </dev/null 2>/dev/null; }
# wait (bounded) for the servers
for _ in $(seq 50); do [ "$(get "$PEER" 10.201.7.1 9090)" = APP9090 ] && break; sleep 0.1; done

save() { ip netns exec "$POD" "$1" -t nat | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'; }
inpod iptables -t nat -A POSTROUTING -d 10.201.7.99/32 -j RETURN  # someone else's rule

# Bad flags: refused, nothing changed.
before=$(save iptables-save)
inpod "$AGENT" init --exclude-inbound-ports 70000 >/dev/null 2>&1
check "bad port exits 2" [ $? -eq 2 ]
inpod "$AGENT" init --exclude-cidrs 10.0.0.0/40 >/dev/null 2>&1
check "bad CIDR exits 2" [ $? -eq 2 ]
check "bad flags change nothing" [ "$(save iptables-save)" = "$before" ]
inpod "$AGENT" init --dry-run >/dev/null
check "dry run changes nothing" [ "$(save iptables-save)" = "$before" ]

# Install.
inpod "$AGENT" init --exclude-inbound-ports 9090 --exclude-cidrs 10.201.8.0/24 \
	--exclude-outbound-ports 443 2>/dev/null
check "init exits 0" [ $? -eq 0 ]
first=$(save iptables-save)
check "IPv4 rules installed" grep -q -- "-A OUTPUT -p tcp -j CINCH_OUTPUT" <<<"$first"
check "foreign rule kept" grep -q -- "10.201.7.99/32 -j RETURN" <<<"$first"
if [ -e /proc/net/if_inet6 ]; then
	check "IPv6 rules installed" grep -q CINCH_OUTPUT <<<"$(save ip6tables-save)"
fi
inpod "$AGENT" init --exclude-inbound-ports 9090 --exclude-cidrs 10.201.8.0/24 \
	--exclude-outbound-ports 443 2>/dev/null
check "init again: same table" [ "$(save iptables-save)" = "$first" ]

# Traffic.
check "outbound captured" [ "$(get "$POD" 10.201.7.2 80)" = OUTBOUND ]
check "agent UID not captured" [ "$(get_as "$POD" 1337 10.201.7.2 80)" = PEER ]
check "another UID captured" [ "$(get_as "$POD" 1000 10.201.7.2 80)" = OUTBOUND ]
check "outbound probe redirected" [ "$(get_as "$POD" 1337 127.0.0.7 15011)" = OUTBOUND ]
check "inbound probe redirected" [ "$(get_as "$POD" 1337 127.0.0.7 15016)" = INBOUND ]
check "probe address not redirected for another UID" [ -z "$(get_as "$POD" 1000 127.0.0.7 15011)" ]
check "probe rules only on probe ports" [ -z "$(get_as "$POD" 1337 127.0.0.7 15012)" ]
check "loopback not captured" [ "$(get "$POD" 127.0.0.1 8080)" = LOCAL ]
check "excluded CIDR not captured" [ "$(get "$POD" 10.201.8.2 80)" = PEER ]
check "excluded outbound port not captured" [ "$(get "$POD" 10.201.7.2 443)" = PEER443 ]
check "inbound captured" [ "$(get "$PEER" 10.201.7.1 80)" = INBOUND ]
check "excluded inbound port reaches the app" [ "$(get "$PEER" 10.201.7.1 9090)" = APP9090 ]
# The guard: the agent's ports only through the redirect.
check "guard installed" grep -q -- "-A INPUT -p tcp -j CINCH_GUARD" <<<"$(inpod iptables-save -t filter)"
check "direct to the outbound port from the network rejected" [ -z "$(get "$PEER" 10.201.7.1 15001)" ]
check "direct to the inbound port from the network rejected" [ -z "$(get "$PEER" 10.201.7.1 15006)" ]
check "direct to the outbound port on loopback rejected" [ -z "$(get "$POD" 127.0.0.1 15001)" ]
check "the agent's UID cannot reach its own inbound port directly" \
	[ -z "$(get_as "$POD" 1337 10.201.7.1 15006)" ]
if [ -e /proc/net/if_inet6 ]; then
	check "IPv6 guard installed" grep -q CINCH_GUARD <<<"$(inpod ip6tables-save -t filter)"
	check "direct to the inbound port over IPv6 rejected" \
		[ -z "$(get "$PEER" "[fd00:201:7::1]" 15006)" ]
fi

# Original destinations, as the agent will read them.
kill "$OUT_SERVER" "$IN_SERVER" 2>/dev/null
wait "$OUT_SERVER" "$IN_SERVER" 2>/dev/null
v6=0
inpod ip -6 addr show dev "ci$$" | grep -q fd00:201:7::1 && v6=1
lo6=0
inpod ip -6 addr show dev lo | grep -q '::1/128' && lo6=1
inpod "$PROBE" 15001 $((3 + v6 + lo6)) &
PIDS="$PIDS $!"
inpod "$PROBE" 15006 $((2 + lo6)) &
PIDS="$PIDS $!"
for _ in $(seq 100); do
	l=$(inpod ss -ltnH)
	grep -q ':15006 ' <<<"$l" && grep -q ':15001 ' <<<"$l" && break
	sleep 0.1
done
check "IPv4 original destination" [ "$(get "$POD" 10.201.7.2 80)" = "10.201.7.2 80" ]
check "another port, same peer" [ "$(get "$POD" 10.201.7.2 5432)" = "10.201.7.2 5432" ]
check "inbound original destination" [ "$(get "$PEER" 10.201.7.1 8443)" = "10.201.7.1 8443" ]
if [ $v6 -eq 1 ]; then
	check "IPv6 original destination" [ "$(get "$POD" "[fd00:201:7::2]" 8080)" = "fd00:201:7::2 8080" ]
fi
# The self-probes, as the agent sees them (probe.c matches these).
check "outbound probe's original destination" \
	[ "$(get_as "$POD" 1337 127.0.0.7 15011)" = "127.0.0.7 15011" ]
check "inbound probe's original destination" \
	[ "$(get_as "$POD" 1337 127.0.0.7 15016)" = "127.0.0.7 15016" ]
if [ $lo6 -eq 1 ]; then
	check "IPv6 outbound probe's original destination" \
		[ "$(get_as "$POD" 1337 "[::1]" 15011)" = "::1 15011" ]
	check "IPv6 inbound probe's original destination" \
		[ "$(get_as "$POD" 1337 "[::1]" 15016)" = "::1 15016" ]
fi

# Remove.
inpod "$AGENT" init --remove 2>/dev/null
check "remove exits 0" [ $? -eq 0 ]
after=$(save iptables-save)
check "no Cinch rule left" bash -c "! grep -q CINCH <<<\"\$0\"" "$after"
check "foreign rule still there" grep -q -- "10.201.7.99/32 -j RETURN" <<<"$after"
check "inbound reaches the app again" [ "$(get "$PEER" 10.201.7.1 80)" = APP80 ]
check "no guard left" bash -c "! ip netns exec $POD iptables-save -t filter | grep -q CINCH"
check "outbound direct again" [ "$(get "$POD" 10.201.7.2 80)" = PEER ]
check "no probe redirect left" [ -z "$(get_as "$POD" 1337 127.0.0.7 15011)" ]

[ $fail -eq 0 ] && echo "intercept_test: all passed (IPv6 checked: $v6, IPv6 probe: $lo6)"
exit $fail
