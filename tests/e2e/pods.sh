# pods.sh: the setup the agent e2e scenarios share; sourced, not run.
#
# Two pods, web (.1) and api (.2), as network namespaces on a veth pair;
# a test PKI made with openssl (a mesh CA, a foreign CA, SVIDs); the
# Workload list and an allow policy (api:8080 from web); helpers to run
# `cinch-agent init` and an agent in a pod. Everything it starts, cleanup
# (the EXIT trap) stops and removes.
#
# Before sourcing, the test sets:
#   AGENT      the cinch-agent binary
#   POD_TAG    the namespace prefix given to the test (e.g. cna-e2e)
#   POD_NET    its IPv4 /24 without the last byte (e.g. 10.201.9)
#   POD_NET6   optional: an IPv6 /64 prefix ending in "::" (e.g. fd00:cafe:10::)
#   POD_TD     optional: the trust domain of the SVIDs and the policy
#              (cluster.local)
# After it: WEB API (namespaces), WEB_IP API_IP (and WEB_IP6 API_IP6), WEB_IF
# API_IF (their veth ends), D (PKI, workloads, policy: the agents watch it),
# L (logs), PIDS (what cleanup kills), and the functions below.

[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
pods_need() { # pods_need TOOL...: skip visibly when one is missing
	local t
	for t in "$@"; do command -v "$t" >/dev/null || { echo "SKIP: $t missing"; exit 77; }; done
}
pods_need ip openssl curl setpriv /usr/bin/python3
POD_TD=${POD_TD:-cluster.local}
WEB=$POD_TAG-web-$$
API=$POD_TAG-api-$$
WEB_IF=ew$$
API_IF=ea$$
WEB_IP=$POD_NET.1
API_IP=$POD_NET.2
WEB_IP6=${POD_NET6:+${POD_NET6}1}
API_IP6=${POD_NET6:+${POD_NET6}2}
D=$(mktemp -d "/tmp/$POD_TAG.XXXXXX")
L=$(mktemp -d "/tmp/$POD_TAG-logs.XXXXXX") # apart: the agents watch D
chmod 755 "$D"
PIDS=""
cleanup() {
	local p
	for p in $PIDS; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	ip netns del "$WEB" 2>/dev/null
	ip netns del "$API" 2>/dev/null
	rm -rf "$D" "$L"
}
trap cleanup EXIT INT TERM
fail=0
check() { # check DESCRIPTION CONDITION...
	local what=$1
	shift
	if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fail=1; fi
}
waitfor() { # waitfor SECONDS CMD...: until CMD succeeds, at most SECONDS
	local end=$(($(date +%s) + $1))
	shift
	until "$@" >/dev/null 2>&1; do [ "$(date +%s)" -ge "$end" ] && return 1; sleep 0.1; done
}
as_agent() { # as_agent NS CMD...: CMD in NS as the agent's UID (not captured; not for &)
	local ns=$1
	shift
	ip netns exec "$ns" setpriv --reuid=1337 --regid=1337 --clear-groups "$@"
}

# --- PKI: one mesh CA, one foreign CA
pods_ca() { # pods_ca NAME
	openssl ecparam -name prime256v1 -genkey -noout -out "$D/$1.key" 2>/dev/null
	openssl req -x509 -new -key "$D/$1.key" -days 1 -subj "/O=$1" \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
		-out "$D/$1.pem" 2>/dev/null
}
pods_svid() { # pods_svid NAME CA SA [TD]: an X.509-SVID for spiffe://TD/ns/shop/sa/SA (TD: $POD_TD)
	openssl ecparam -name prime256v1 -genkey -noout -out "$D/$1.key" 2>/dev/null
	openssl req -new -key "$D/$1.key" -subj "/" -out "$D/$1.csr" 2>/dev/null
	printf 'subjectAltName=critical,URI:spiffe://%s/ns/shop/sa/%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' "${4:-$POD_TD}" "$3" >"$D/$1.ext"
	openssl x509 -req -in "$D/$1.csr" -CA "$D/$2.pem" -CAkey "$D/$2.key" -CAcreateserial \
		-days 1 -extfile "$D/$1.ext" -out "$D/$1.pem" 2>/dev/null
	chmod 644 "$D/$1.key" # the agents run as UID 1337
}
pods_ca ca
pods_ca foreign
pods_svid web ca web
pods_svid api ca api

# --- the workloads and the policy: api:8080 from web
cat >"$D/workloads.yaml" <<Y
apiVersion: cinch.dev/v1alpha1
kind: Workload
metadata: {name: web, namespace: shop}
spec: {serviceAccount: web, addresses: ["$WEB_IP"${WEB_IP6:+, \"$WEB_IP6\"}]}
---
apiVersion: cinch.dev/v1alpha1
kind: Workload
metadata: {name: api, namespace: shop}
spec: {serviceAccount: api, addresses: ["$API_IP"${API_IP6:+, \"$API_IP6\"}]}
Y
mkdir "$D/policy"
pods_allow() { # pods_allow PORTS: the policy file lets web reach api on PORTS ("8080, 8081")
	cat >"$D/policy/.allow.new" <<Y
apiVersion: cinch.dev/v1alpha1
kind: AllowPolicy
metadata: {name: api-from-web, namespace: shop}
spec:
  selector: {workloads: [api]}
  ports: [$1]
  from: [{identities: ["spiffe://$POD_TD/ns/shop/sa/web"]}]
Y
	mv "$D/policy/.allow.new" "$D/policy/allow.yaml"
}
pods_allow 8080

# --- the pods, with the interception rules
ip netns add "$WEB" && ip netns add "$API" || exit 1
ip link add "$WEB_IF" netns "$WEB" type veth peer name "$API_IF" netns "$API" || exit 1
ip -n "$WEB" link set lo up && ip -n "$API" link set lo up
ip -n "$WEB" addr add "$WEB_IP/24" dev "$WEB_IF" && ip -n "$WEB" link set "$WEB_IF" up
ip -n "$API" addr add "$API_IP/24" dev "$API_IF" && ip -n "$API" link set "$API_IF" up
if [ -n "${POD_NET6:-}" ]; then
	ip -n "$WEB" addr add "$WEB_IP6/64" dev "$WEB_IF" nodad
	ip -n "$API" addr add "$API_IP6/64" dev "$API_IF" nodad
fi
for ns in "$WEB" "$API"; do
	ip netns exec "$ns" "$AGENT" init >/dev/null 2>&1 || { echo "FAIL: init in $ns"; exit 1; }
done

pods_agent() { # pods_agent NS NAME [ARGS...]: NAME's agent in NS, log in $L/NAME.log
	local ns=$1 name=$2
	shift 2
	# not through as_agent: $! must be the agent itself, for cleanup's kill
	ip netns exec "$ns" setpriv --reuid=1337 --regid=1337 --clear-groups \
		"$AGENT" run --cert "$D/$name.pem" --key "$D/$name.key" \
		--bundle "$D/ca.pem" --workloads "$D/workloads.yaml" --policy "$D/policy" \
		"$@" 2>>"$L/$name.log" &
	PIDS="$PIDS $!"
	LAST=$!
}
pods_stop() { # pods_stop PID: stops one process started here, waits for it
	kill "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}
pods_admin() { # pods_admin NS PATH: the agent's admin answer (loopback: never captured)
	ip netns exec "$1" curl -s -m 5 "http://127.0.0.1:15000$2"
}
pods_ticker() { # pods_ticker NS ADDR PORT N: a server sending "tick 1".."tick N", one per 0.1 s
	ip netns exec "$1" socat TCP-LISTEN:"$3",bind="$2",fork,reuseaddr \
		SYSTEM:"for i in \$(seq $4); do echo tick \$i; sleep 0.1; done" 2>/dev/null &
	PIDS="$PIDS $!"
}
pods_report() { # on failure: the tail of both agents' logs
	[ $fail -eq 0 ] && return
	echo "--- web agent log"
	tail -n 20 "$L/web.log"
	echo "--- api agent log"
	tail -n 20 "$L/api.log"
}
