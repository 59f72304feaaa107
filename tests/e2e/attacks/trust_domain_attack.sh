#!/bin/bash
# trust_domain_attack (issue #12, hole 10): static mode's trust domain.
#
# Static mode used to compile every workload identity as
# spiffe://cluster.local/..., whatever mesh it served. Now `--trust-domain`
# names it (default cluster.local, validated with the SPIFFE rules). The
# attack: certificates from the very same CA, with the same namespace and
# service account, but of the trust domain cluster.local, against a mesh of
# example.org:
#   - a caller presenting spiffe://cluster.local/ns/shop/sa/web (raw TLS as
#     the agent's UID, straight to api's redirected port 8080) is refused by
#     api's agent, whose rule admits the namespace shop of example.org; the
#     same client with web's example.org certificate gets through;
#   - an api agent serving spiffe://cluster.local/ns/shop/sa/api is refused
#     by web's agent, which expects example.org's api;
#   - with example.org agents on both sides, web -> api works (the peer of
#     that domain is accepted both ways);
#   - without --trust-domain (cluster.local) an example.org certificate is
#     not the workload's identity: the agent refuses to start; an invalid
#     --trust-domain is a usage error.
# Built on tests/e2e/pods.sh (two pods on a veth pair, a test CA made with
# openssl): namespaces cxb-td-*, 10.201.38.0/24. Root only (exit 77).
set -u
AGENT=$CINCH_BUILD/bin/cinch-agent
POD_TAG=cxb-td
POD_NET=10.201.38
POD_TD=example.org
. "$CINCH_SRC/tests/e2e/pods.sh"
pods_need socat
trap 'pods_report; cleanup' EXIT

pods_svid web-cl ca web cluster.local
pods_svid api-cl ca api cluster.local
cat >"$D/policy/allow.yaml" <<Y
apiVersion: cinch.dev/v1alpha1
kind: AllowPolicy
metadata: {name: api-from-shop, namespace: shop}
spec:
  selector: {workloads: [api]}
  ports: [8080]
  from: [{namespaces: [shop]}]
Y
ip netns exec "$API" socat "TCP-LISTEN:8080,bind=$API_IP,fork,reuseaddr" \
	SYSTEM:'echo hello from api' 2>/dev/null &
PIDS="$PIDS $!"

# --- the default and bad values
static_run() { # static_run NS NAME [ARGS...]: an agent in the foreground, 10 s at most
	local ns=$1 name=$2
	shift 2
	timeout 10 ip netns exec "$ns" setpriv --reuid=1337 --regid=1337 --clear-groups \
		"$AGENT" run --cert "$D/$name.pem" --key "$D/$name.key" --bundle "$D/ca.pem" \
		--workloads "$D/workloads.yaml" --policy "$D/policy" --no-probe --admin-port 0 \
		--outbound-port 15101 --inbound-port 15106 "$@" 2>&1
}
out=$(static_run "$API" api)
check "no --trust-domain: cluster.local, and an example.org certificate is not api's identity" \
	grep -q '"error":"the certificate is not this workload.s identity"' <<<"$out"
for bad in Example.org 'example.org/x' ''; do
	out=$(static_run "$API" api --trust-domain "$bad")
	rc=$?
	check "--trust-domain '$bad': usage error (exit 2) saying why" \
		[ $rc -eq 2 ] && grep -q '"event":"usage".*not a trust domain' <<<"$out"
done

# --- example.org on both sides
ready() { [ "$(pods_admin "$1" /ready)" = ready ]; }
both_ready() { ready "$API" && ready "$WEB"; }
pods_agent "$API" api --trust-domain example.org --probe-interval 300
API_AGENT=$LAST
pods_agent "$WEB" web --trust-domain example.org --probe-interval 300
check "both agents ready" waitfor 15 both_ready
web_to_api() { ip netns exec "$WEB" socat -T 3 - "TCP:$API_IP:8080" </dev/null 2>/dev/null; }
check "web -> api: the peer of example.org is accepted both ways" \
	[ "$(web_to_api)" = "hello from api" ]
check "api's agent saw web's example.org identity, allowed by the namespace rule" \
	grep -q '"peer_id":"spiffe://example.org/ns/shop/sa/web".*"verdict":"allow".*"rule":"shop/api-from-shop#0"' "$L/api.log"

# --- a caller of cluster.local, same CA, same namespace and account
tls_call() { # tls_call CERT: raw TLS from web's namespace as the agent's UID (not redirected)
	as_agent "$WEB" /usr/bin/python3 -c '
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.load_verify_locations(sys.argv[3])
ctx.load_cert_chain(sys.argv[4], sys.argv[5])
try:
    with socket.create_connection((sys.argv[1], 8080), timeout=5) as s:
        with ctx.wrap_socket(s) as t:
            t.sendall(b"hi\n")
            sys.stdout.write(t.recv(100).decode())
except Exception as e:
    sys.stderr.write("error: %s\n" % e)' "$API_IP" 8080 "$D/ca.pem" "$D/$1.pem" "$D/$1.key" 2>/dev/null
}
check "raw TLS with web's example.org certificate: let in (the client works)" \
	[ "$(tls_call web)" = "hello from api" ]
check "raw TLS with web's cluster.local certificate: refused" \
	[ -z "$(tls_call web-cl)" ]
check "... by api's agent: no rule admits the cluster.local identity" \
	waitfor 5 grep -q '"peer_id":"spiffe://cluster.local/ns/shop/sa/web","verdict":"deny"' "$L/api.log"

# --- a server of cluster.local where web expects example.org's api
pods_stop "$API_AGENT"
pods_agent "$API" api-cl --probe-interval 300
check "an api agent of cluster.local (same CA) is ready" waitfor 15 ready "$API"
check "web -> api serving spiffe://cluster.local/ns/shop/sa/api: refused" [ -z "$(web_to_api)" ]
check "... by web's agent, which expects example.org's api" \
	waitfor 5 grep -q '"dst":"'"$API_IP"':8080".*"peer_id":"spiffe://example.org/ns/shop/sa/api".*"end":"handshake_failed"' "$L/web.log"

exit $fail
