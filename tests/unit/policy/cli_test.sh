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
# issue #19: every verb's --help is the usage on stdout, exit 0, and no
# "unrecognized option" from getopt before it
for verb in check lint test explain; do
	for h in --help -h; do
		"$C" policy $verb $h >"$D/out" 2>"$D/err"; got=$?
		if [ $got -ne 0 ] || [ -s "$D/err" ] || ! grep -q "^usage: cinchctl policy" "$D/out"; then
			echo "FAIL: policy $verb $h: exit $got"; cat "$D/out" "$D/err"; fail=1
		fi
	done
done
# a --from that is not a SPIFFE ID is an error, not a silent deny
expect 2 "explain with an invalid SPIFFE ID" "$C" policy explain --policy "$D/p" --workloads "$D/p" \
	--from "spiffe://cluster.local/ns/shop/sa/a b" --to shop/api --port 8080
printf 'cases:\n  - {name: a, from: "spiffe://cluster.local/ns/shop/sa/", to: shop/api, port: 1, expect: deny}\n' >"$D/t.yaml"
expect 2 "test with an invalid SPIFFE ID" "$C" policy test "$D/t.yaml" --policy "$D/p" --workloads "$D/p"
grep -q "t.yaml:2:.*cases\[0\].from" "$D/out" || { echo "FAIL: bad from without place"; cat "$D/out"; fail=1; }
# issue #19: two MeshPolicies for the whole mesh: file, line, column, field
printf 'apiVersion: cinch.dev/v1alpha1\nkind: MeshPolicy\nmetadata: {name: a}\nspec: {}\n---\napiVersion: cinch.dev/v1alpha1\nkind: MeshPolicy\nmetadata: {name: b}\nspec: {}\n' >"$D/m2.yaml"
expect 1 "two mesh-wide MeshPolicies" "$C" policy check "$D/m2.yaml"
grep -q "m2.yaml:8:18: metadata.name: two MeshPolicies for the whole mesh" "$D/out" || { echo "FAIL: no place"; cat "$D/out"; fail=1; }
# a wildcard that admits no workload is refused, pointing to namespaces:
printf 'apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\nmetadata: {name: w, namespace: shop}\nspec:\n  selector: {workloads: [api]}\n  from: [{identities: ["spiffe://cluster.local/ns/jobs/*"]}]\n' >"$D/w.yaml"
expect 1 "a wildcard for a namespace" "$C" policy check "$D/w.yaml"
grep -q "w.yaml:6:.*spec.from\[0\].identities\[0\]:.*namespaces: \[jobs\]" "$D/out" || { echo "FAIL: wildcard message"; cat "$D/out"; fail=1; }
# lint's words follow the one meaning: a namespace and its .../sa/* wildcard
# are the same grant (so the later one is shadowed); another wildcard is one
# segment below its prefix
mkdir "$D/l"
cp "$D/p/w.yaml" "$D/l/"
printf 'apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\nmetadata: {name: l, namespace: shop}\nspec:\n  selector: {workloads: [api]}\n  ports: [80]\n  from:\n    - namespaces: [jobs]\n    - identities: ["spiffe://cluster.local/ns/jobs/sa/*"]\n    - identities: ["spiffe://cluster.local/gw/*"]\n' >"$D/l/l.yaml"
expect 1 "lint of wildcards" "$C" policy lint "$D/l"
grep -q "shop/l#1: grants every workload of a namespace: spiffe://cluster.local/ns/jobs/sa/\*" "$D/out" || { echo "FAIL: sa wildcard wording"; cat "$D/out"; fail=1; }
grep -q "shop/l#1: shadowed" "$D/out" || { echo "FAIL: namespace = sa wildcard"; cat "$D/out"; fail=1; }
grep -q "shop/l#2: grants every SPIFFE ID of one more segment: spiffe://cluster.local/gw/\*" "$D/out" || { echo "FAIL: other wildcard wording"; cat "$D/out"; fail=1; }
# named ports: lint compares a guardrail's and a policy's port names as
# what they are on each workload: a guardrail that allows http before it
# denies the rest does not make a rule on http dead; one that denies api's
# http port by its number does
mkdir "$D/n"
printf 'apiVersion: cinch.dev/v1alpha1\nkind: Workload\nmetadata: {name: api, namespace: shop}\nspec: {serviceAccount: api, addresses: ["10.1.0.2"], ports: [{name: http, containerPort: 8080}]}\n---\napiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\nmetadata: {name: n, namespace: shop}\nspec:\n  selector: {workloads: [api]}\n  ports: [http]\n  from: [{namespaces: [shop]}]\n' >"$D/n/a.yaml"
printf 'apiVersion: cinch.dev/v1alpha1\nkind: GuardrailPolicy\nmetadata: {name: g}\nspec:\n  priority: 1\n  subject: {namespaceSelector: {}}\n  rules:\n    - {action: allow, ports: [http]}\n    - {action: deny}\n' >"$D/n/g.yaml"
"$C" policy lint "$D/n" >"$D/out" 2>&1
if grep -q "dead" "$D/out"; then echo "FAIL: a guardrail's allow of http kills a rule on http"; cat "$D/out"; fail=1; fi
printf 'apiVersion: cinch.dev/v1alpha1\nkind: GuardrailPolicy\nmetadata: {name: g}\nspec:\n  priority: 1\n  subject: {namespaceSelector: {}}\n  rules: [{action: deny, ports: [8080]}]\n' >"$D/n/g.yaml"
expect 1 "lint of a guardrail on a named port's number" "$C" policy lint "$D/n"
grep -q "shop/n#0: dead: a guardrail denies everything it allows: GuardrailPolicy/g#0" "$D/out" || { echo "FAIL: deny of 8080 kills the rule on http (8080)"; cat "$D/out"; fail=1; }
echo "ports: [99999]" >>"$D/p/a.yaml"
expect 1 "check of an invalid set" "$C" policy check "$D/p"
[ $fail -eq 0 ] && echo "cli_test: all passed"
exit $fail
