#!/bin/sh
# explain_service_test: `cinchctl policy explain --to svc/NS/NAME --port N`
# decides through the Service's port mapping: port 80 -> the named target
# port "http", which the EndpointSlice resolves to 8080; the policy admits
# web on 8080 at api-0 only, so one endpoint allows, one denies, and one
# outside the mesh (not ready) is left to the egress rules.
#   explain_service_test.sh CINCHCTL
set -u
C=$1
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
fail=0
expect() { # expect STATUS DESCRIPTION CMD...
	want=$1 what=$2
	shift 2
	"$@" >"$D/out" 2>&1
	got=$?
	if [ "$got" -ne "$want" ]; then
		echo "FAIL: $what: exit $got, want $want"; cat "$D/out"; fail=1
	else
		echo "ok: $what"
	fi
}
has() { # has TEXT: the last output holds TEXT
	grep -qF "$1" "$D/out" || { echo "FAIL: no \"$1\" in:"; cat "$D/out"; fail=1; }
}
mkdir "$D/p"
cat >"$D/p/w.yaml" <<'Y'
apiVersion: cinch.dev/v1alpha1
kind: Workload
metadata: {name: api-0, namespace: shop, labels: {app: api}}
spec: {serviceAccount: api, addresses: ["10.1.0.2"]}
---
apiVersion: cinch.dev/v1alpha1
kind: Workload
metadata: {name: api-1, namespace: shop, labels: {app: api}}
spec: {serviceAccount: api, addresses: ["10.1.0.3"]}
---
apiVersion: cinch.dev/v1alpha1
kind: Workload
metadata: {name: web, namespace: shop}
spec: {serviceAccount: web, addresses: ["10.1.0.1"]}
---
apiVersion: cinch.dev/v1alpha1
kind: AllowPolicy
metadata: {name: api-0-from-web, namespace: shop}
spec:
  selector: {workloads: [api-0]}
  ports: [8080]
  from: [{identities: ["spiffe://cluster.local/ns/shop/sa/web"]}]
---
apiVersion: cinch.dev/v1alpha1
kind: AllowPolicy
metadata: {name: api-1-from-db, namespace: shop}
spec:
  selector: {workloads: [api-1]}
  ports: [8080]
  from: [{identities: ["spiffe://cluster.local/ns/shop/sa/db"]}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: api-1x, namespace: shop, labels: {kubernetes.io/service-name: api}}
addressType: IPv4
endpoints:
- {addresses: [10.1.0.2]}
- {addresses: [10.1.0.3], conditions: {ready: true}}
- {addresses: [10.1.0.9], conditions: {ready: false}}
ports: [{name: http, port: 8080}]
Y
web=spiffe://cluster.local/ns/shop/sa/web
expect 0 "web -> svc/shop/api:80 flows (api-0 admits it on 8080)" \
	"$C" policy explain --policy "$D/p" --workloads "$D/p" --from $web --to svc/shop/api --port 80
has 'service shop/api port 80 (http -> target port "http")'
has "endpoint 10.1.0.2 (ready) -> port 8080: workload shop/api-0: allow"
has "rule:   shop/api-0-from-web#0"
has "endpoint 10.1.0.3 (ready) -> port 8080: workload shop/api-1: deny"
has "endpoint 10.1.0.9 (not ready) -> port 8080: outside the mesh"
expect 1 "a caller no ready endpoint admits" \
	"$C" policy explain --policy "$D/p" --workloads "$D/p" \
	--from spiffe://cluster.local/ns/shop/sa/other --to svc/shop/api --port 80
has "deny: no ready endpoint would take the call"
expect 1 "a port the Service does not have" \
	"$C" policy explain --policy "$D/p" --workloads "$D/p" --from $web --to svc/shop/api --port 8080
has "the Service has no TCP port 8080"
expect 2 "an unknown Service" \
	"$C" policy explain --policy "$D/p" --workloads "$D/p" --from $web --to svc/shop/nope --port 80
expect 2 "a malformed --to" \
	"$C" policy explain --policy "$D/p" --workloads "$D/p" --from $web --to svc/shop --port 80
exit $fail
