#!/bin/bash
# services.sh: the cost of a Service call ("## Services" in
# docs/benchmarks.md).
#
# Data path: three pods (network namespaces on one bridge in a hub
# namespace), each with `cinch-agent init` rules and a static agent:
# `client` runs wrk, `srv0` and `srv1` run nginx on 8080 (one worker). The
# registry holds a v1 Service (ClusterIP 10.201.181.10:80 -> targetPort
# 8080) with both servers in its EndpointSlice. wrk (1 thread, 32
# connections, keep-alive; then every request on a new connection) calls
#   pod  srv0's address 10.201.81.2:8080 (one endpoint, no choice)
#   vip1 the ClusterIP of a Service whose only endpoint is srv0: the same
#        server, through the endpoint choice (the cost of the VIP path)
#   vip  the ClusterIP of a Service with both servers: the client's agent
#        picks one per connection (svcpick.h)
# in turn, ROUNDS times; medians. All on the same two cores: pod and vip1
# load the same processes, vip spreads over one more server (and its
# agent) competing for them.
#
# Control and agent: services_bench with 10, 1,000 and 10,000 Services.
#
#   bench/services.sh [--rounds N] [--seconds S] [--bin DIR]
# Needs root, wrk and nginx. Namespaces svcb-*.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$HERE/../build/release/bin
ROUNDS=3
SECS=5
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--seconds) SECS=$2; shift 2 ;;
	--bin) BIN=$2; shift 2 ;;
	*) echo "usage: $0 [--rounds N] [--seconds S] [--bin DIR]" >&2; exit 2 ;;
	esac
done
[ "$(id -u)" -eq 0 ] || { echo "services.sh: needs root (network namespaces)" >&2; exit 1; }
for t in wrk nginx openssl setpriv; do
	command -v $t >/dev/null || { echo "services.sh: $t missing" >&2; exit 1; }
done
NET=10.201.81
VIP=10.201.181.10
VIP1=10.201.181.11
TD=cluster.local
HUB=svcb-hub-$$
D=$(mktemp -d /tmp/svcb.XXXXXX)
chmod 755 "$D"
PIDS=""
PODS=""
cleanup() {
	local p
	for p in $PIDS; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	for p in $PODS $HUB; do ip netns del "$p" 2>/dev/null || true; done
	rm -rf "$D"
}
trap cleanup EXIT INT TERM

openssl ecparam -name prime256v1 -genkey -noout -out "$D/ca.key" 2>/dev/null
openssl req -x509 -new -key "$D/ca.key" -days 1 -subj "/O=ca" \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
	-out "$D/ca.pem" 2>/dev/null
svid() { # svid NAME SA
	openssl ecparam -name prime256v1 -genkey -noout -out "$D/$1.key" 2>/dev/null
	openssl req -new -key "$D/$1.key" -subj "/" -out "$D/$1.csr" 2>/dev/null
	printf 'subjectAltName=critical,URI:spiffe://%s/ns/shop/sa/%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' "$TD" "$2" >"$D/$1.ext"
	openssl x509 -req -in "$D/$1.csr" -CA "$D/ca.pem" -CAkey "$D/ca.key" -CAcreateserial \
		-days 1 -extfile "$D/$1.ext" -out "$D/$1.pem" 2>/dev/null
	chmod 644 "$D/$1.key"
}
svid client web
svid srv api
mkdir "$D/reg"
cat >"$D/reg/all.yaml" <<Y
apiVersion: cinch.dev/v1alpha1
kind: Workload
metadata: {name: web, namespace: shop}
spec: {serviceAccount: web, addresses: ["$NET.1"]}
---
apiVersion: cinch.dev/v1alpha1
kind: Workload
metadata: {name: api-0, namespace: shop, labels: {app: api}}
spec: {serviceAccount: api, addresses: ["$NET.2"]}
---
apiVersion: cinch.dev/v1alpha1
kind: Workload
metadata: {name: api-1, namespace: shop, labels: {app: api}}
spec: {serviceAccount: api, addresses: ["$NET.3"]}
---
apiVersion: cinch.dev/v1alpha1
kind: AllowPolicy
metadata: {name: api-from-web, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  ports: [8080]
  from: [{identities: ["spiffe://$TD/ns/shop/sa/web"]}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec: {clusterIP: $VIP, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: api-1, namespace: shop, labels: {kubernetes.io/service-name: api}}
addressType: IPv4
endpoints: [{addresses: [$NET.2]}, {addresses: [$NET.3]}]
ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: one, namespace: shop}
spec: {clusterIP: $VIP1, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: one-1, namespace: shop, labels: {kubernetes.io/service-name: one}}
addressType: IPv4
endpoints: [{addresses: [$NET.2]}]
ports: [{name: http, port: 8080}]
Y
ip netns add "$HUB"
ip -n "$HUB" link add br0 type bridge
ip -n "$HUB" link set br0 up
pod() { # pod NAME INDEX CERT
	local ns=svcb-$1-$$
	ip netns add "$ns"
	PODS="$PODS $ns"
	ip link add "bp$2$$" netns "$ns" type veth peer name "bh$2$$" netns "$HUB"
	ip -n "$HUB" link set "bh$2$$" master br0 up
	ip -n "$ns" link set lo up
	ip -n "$ns" addr add "$NET.$2/24" dev "bp$2$$"
	ip -n "$ns" link set "bp$2$$" up
	ip -n "$ns" route add 10.201.181.0/24 dev "bp$2$$"
	ip netns exec "$ns" "$BIN/cinch-agent" init >/dev/null
	ip netns exec "$ns" setpriv --reuid=1337 --regid=1337 --clear-groups \
		"$BIN/cinch-agent" run --cert "$D/$3.pem" --key "$D/$3.key" --bundle "$D/ca.pem" \
		--workloads "$D/reg" --policy "$D/reg" --probe-interval 300 2>"$D/$1.log" &
	PIDS="$PIDS $!"
}
pod client 1 client
pod srv0 2 srv
pod srv1 3 srv
for i in 0 1; do
	cat >"$D/nginx$i.conf" <<EOF
worker_processes 1; daemon off; pid $D/nginx$i.pid; error_log stderr error;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000;
  server { listen $NET.$((i + 2)):8080 backlog=4096; location / { return 200 "srv$i\n"; } } }
EOF
	ip netns exec "svcb-srv$i-$$" nginx -c "$D/nginx$i.conf" &
	PIDS="$PIDS $!"
done
for _ in $(seq 100); do
	ip netns exec "svcb-client-$$" curl -s -m 2 "http://$VIP/" >/dev/null 2>&1 && break
	sleep 0.1
done
wrk_rps() { # wrk_rps URL [ARGS]: requests/s
	local url=$1
	shift
	ip netns exec "svcb-client-$$" wrk -t1 -c32 -d"${SECS}s" "$@" "$url" 2>&1 |
		sed -n 's/^Requests\/sec:[[:space:]]*//p'
}
OUT=$(mktemp)
for _ in $(seq "$ROUNDS"); do
	for t in pod vip1 vip; do
		url=http://$NET.2:8080/
		[ $t = vip1 ] && url=http://$VIP1/
		[ $t = vip ] && url=http://$VIP/
		echo "$t keep $(wrk_rps $url)" >>"$OUT"
		echo "$t new $(wrk_rps $url -H 'Connection: close')" >>"$OUT"
	done
done
both=$(grep -c '"service":"shop/api"' "$D/client.log" || true)
DIR=$(mktemp -d)
for _ in $(seq "$ROUNDS"); do
	for n in 10 1000 10000; do "$BIN/services_bench" "$n" "$DIR" >>"$OUT.c"; done
done
rm -rf "$DIR"
/usr/bin/python3 - "$OUT" "$OUT.c" "$ROUNDS" "$SECS" "$both" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    rows.setdefault((f[0], f[1]), []).append(float(f[2]) if len(f) > 2 else 0.0)
m = lambda k: statistics.median(rows[k])
print("Medians of %s rounds of %s s, wrk 1 thread 32 connections; %s Service "
      "connections logged by the client's agent.\n" % (sys.argv[3], sys.argv[4], sys.argv[5]))
print("| to | keep-alive requests/s | new connections/s |")
print("|---|---|---|")
for t, name in (("pod", "pod IP (srv0:8080)"), ("vip1", "Service VIP, 1 endpoint (srv0)"),
                ("vip", "Service VIP, 2 endpoints")):
    print("| %s | %.0f | %.0f |" % (name, m((t, "keep")), m((t, "new"))))
c = {}
for line in open(sys.argv[2]):
    f = line.split()
    c.setdefault(int(f[0]), []).append([float(x) for x in f[1:]])
print("\n| Services | parse + validate ms | index ms | caller's snapshot ms | all 101 "
      "snapshots ms | snapshot bytes | agent load ms | agent heap KiB | VIP lookup ns |")
print("|---|---|---|---|---|---|---|---|---|")
for n, rs in sorted(c.items()):
    md = lambda i: statistics.median(r[i] for r in rs)
    print("| %d | %.0f | %.1f | %.1f | %.0f | %.0f | %.1f | %.0f | %.0f |" % (
        n, md(0), md(1), md(2), md(3), md(4), md(5), md(6) / 1024, md(7)))
PY
rm -f "$OUT" "$OUT.c"
