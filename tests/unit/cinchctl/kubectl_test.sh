#!/bin/sh
# kubectl_test: the policy tools read what `kubectl get -o yaml|json`
# prints: a v1 List of objects, with the fields the API server sets
# (status, uid, resourceVersion, generation, creationTimestamp,
# managedFields, ownerReferences, finalizers, last-applied annotations),
# from a file, a directory holding a kustomization.yaml, or stdin (-).
# The fixtures are written in the shape kubectl prints them.
#   kubectl_test.sh CINCHCTL FIXTURES
set -u
C=$1 F=$2
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
fail=0
expect() { # expect STATUS DESCRIPTION CMD...
	want=$1 what=$2
	shift 2
	"$@" >"$D/out" 2>&1 <"${STDIN:-/dev/null}"
	got=$?
	if [ "$got" -ne "$want" ]; then
		echo "FAIL: $what: exit $got, want $want"; cat "$D/out"; fail=1
	fi
}
has() { # has TEXT DESCRIPTION
	grep -qF -- "$1" "$D/out" || { echo "FAIL: $2: no \"$1\" in:"; cat "$D/out"; fail=1; }
}

expect 0 "a List from kubectl get -o yaml, Workloads from -o json" \
	"$C" policy check "$F/allowpolicies-list.yaml" "$F/workloads.json"
has "ok: 2 AllowPolicies, 0 MeshPolicies, 0 EgressPolicies, 2 Workloads" "both Lists unwrapped"

STDIN="$F/allowpolicies-list.yaml" expect 0 "the List on stdin" \
	"$C" policy check - "$F/workloads.json"
has "ok: 2 AllowPolicies" "stdin read"

STDIN="$F/allowpolicies-list.yaml" expect 0 "explain with --policy -" \
	"$C" policy explain --policy - --workloads "$F/workloads.json" \
	--from spiffe://cluster.local/ns/shop/sa/web --to shop/api --port 8080
has "rule:   shop/web-to-api" "explain names the rule from the List"

cat >"$D/cases.yaml" <<'Y'
cases:
- {name: web reaches api, from: "spiffe://cluster.local/ns/shop/sa/web", to: shop/api, port: 8080, expect: allow}
- {name: web does not reach db, from: "spiffe://cluster.local/ns/shop/sa/web", to: shop/db, port: 5432, expect: deny}
- {name: api reaches db, from: "spiffe://cluster.local/ns/shop/sa/api", to: shop/db, port: 5432, expect: allow}
Y
STDIN="$F/allowpolicies-list.yaml" expect 0 "test reads stdin once for every case" \
	"$C" policy test "$D/cases.yaml" --policy - --workloads "$F/workloads.json"
has "3 passed, 0 failed" "all cases against the stdin policy"

# An error in a document read from stdin is placed in "-".
printf 'apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\nmetadata: {name: x, namespace: shop, colour: red}\nspec: {}\n' >"$D/bad.yaml"
STDIN="$D/bad.yaml" expect 1 "an unknown metadata field is still an error" "$C" policy check -
has "-:3:" "the error names - and its line"
has "colour" "the error names the field"

# A kustomize directory: kustomization.yaml is not a policy.
mkdir "$D/k"
cp "$F/allowpolicies-list.yaml" "$F/workloads.json" "$D/k/"
printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- allowpolicies-list.yaml\n' >"$D/k/kustomization.yaml"
expect 0 "a directory with a kustomization.yaml" "$C" policy check "$D/k"
cp "$D/k/kustomization.yaml" "$D/k/other.yaml"
expect 1 "a Kustomization under another name is still refused" "$C" policy check "$D/k"
has "other.yaml" "the refused file is named"

# A List of another apiVersion is not unwrapped.
sed 's/^apiVersion: v1$/apiVersion: v2/' "$F/allowpolicies-list.yaml" >"$D/v2.yaml"
expect 1 "a List that is not v1" "$C" policy check "$D/v2.yaml" "$F/workloads.json"
exit $fail
