#!/bin/sh
# cli_test: cinchctl policy's exit statuses and lint's shadowed-rule and
# no-workload findings, on a small policy written here.
#   cli_test.sh CINCHCTL
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
	fi
}
mkdir "$D/p"
cat >"$D/p/w.yaml" <<'Y'
apiVersion: cinch.dev/v1alpha1
kind: Workload
metadata: {name: api, namespace: shop, labels: {app: api}}
spec: {serviceAccount: api, addresses: ["10.1.0.2"]}
---
apiVersion: cinch.dev/v1alpha1
kind: Workload
metadata: {name: web, namespace: shop}
spec: {serviceAccount: web, addresses: ["10.1.0.1"]}
Y
cat >"$D/p/a.yaml" <<'Y'
apiVersion: cinch.dev/v1alpha1
kind: AllowPolicy
metadata: {name: narrow, namespace: shop}
spec:
  selector: {workloads: [api]}
  ports: [8080]
  from: [{identities: ["spiffe://cluster.local/ns/shop/sa/web"]}]
---
apiVersion: cinch.dev/v1alpha1
kind: AllowPolicy
metadata: {name: broad, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  ports: ["8000-8999"]
  from: [{namespaces: [shop]}]
---
apiVersion: cinch.dev/v1alpha1
kind: AllowPolicy
metadata: {name: orphan, namespace: shop}
spec:
  selector: {workloads: [nobody]}
  ports: [1]
  from: [{identities: ["spiffe://cluster.local/ns/shop/sa/web"]}]
Y
expect 0 "check of a valid set" "$C" policy check "$D/p"
expect 1 "lint with findings" "$C" policy lint "$D/p"
grep -q "shop/narrow#0: shadowed" "$D/out" || { echo "FAIL: narrow#0 not reported shadowed"; cat "$D/out"; fail=1; }
grep -q "shop/broad#0: shadowed" "$D/out" && { echo "FAIL: the broader rule reported shadowed"; fail=1; }
grep -q "shop/orphan: selects no workload" "$D/out" || { echo "FAIL: orphan not reported"; fail=1; }
expect 0 "explain of an allowed connection" "$C" policy explain --policy "$D/p" --workloads "$D/p" \
	--from spiffe://cluster.local/ns/shop/sa/web --to shop/api --port 8500
grep -q "rule:   shop/broad#0" "$D/out" || { echo "FAIL: wrong rule"; cat "$D/out"; fail=1; }
expect 1 "explain of a denied connection" "$C" policy explain --policy "$D/p" --workloads "$D/p" \
	--from spiffe://cluster.local/ns/other/sa/x --to shop/api --port 8080
expect 2 "explain of an unknown workload" "$C" policy explain --policy "$D/p" --workloads "$D/p" \
	--from spiffe://cluster.local/ns/shop/sa/web --to shop/nope --port 8080
expect 2 "explain with a bad --from" "$C" policy explain --policy "$D/p" --workloads "$D/p" \
	--from web --to shop/api --port 8080
printf 'cases:\n  - {name: a, from: "spiffe://cluster.local/ns/shop/sa/web", to: shop/api, port: 9000, expect: allow}\n' >"$D/t.yaml"
expect 1 "test with a failing case" "$C" policy test "$D/t.yaml" --policy "$D/p" --workloads "$D/p"
printf 'cases:\n  - {name: a, from: "spiffe://cluster.local/ns/shop/sa/web", to: shop/api, port: 8999, expect: allow, rule: "shop/broad#0"}\n' >"$D/t.yaml"
expect 0 "test with a passing case" "$C" policy test "$D/t.yaml" --policy "$D/p" --workloads "$D/p"
printf 'cases: [{name: a}]\n' >"$D/t.yaml"
expect 2 "test with a malformed case" "$C" policy test "$D/t.yaml" --policy "$D/p" --workloads "$D/p"
# JSON files: read strictly by jansson first; one document or an array
printf '[{"apiVersion": "cinch.dev/v1alpha1", "kind": "MeshPolicy", "metadata": {"name": "m"}, "spec": {"mtls": "STRICT"}}]' >"$D/m.json"
expect 0 "check with --policy and --workloads, a JSON array" "$C" policy check --policy "$D/m.json" --workloads "$D/p"
printf '{"apiVersion": "cinch.dev/v1alpha1", // a comment\n "kind": "MeshPolicy"}' >"$D/c.json"
expect 1 "a JSON file with a comment" "$C" policy check "$D/c.json"
grep -q "c.json:1:.*not valid JSON" "$D/out" || { echo "FAIL: JSON error without place"; cat "$D/out"; fail=1; }
expect 2 "check with an unknown flag" "$C" policy check --bogus "$D/p"
echo "ports: [99999]" >>"$D/p/a.yaml"
expect 1 "check of an invalid set" "$C" policy check "$D/p"
[ $fail -eq 0 ] && echo "cli_test: all passed"
exit $fail
