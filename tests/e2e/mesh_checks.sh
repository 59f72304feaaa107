# mesh_checks.sh: what the end-to-end scenarios on the local mesh
# (deploy/local/mesh.sh: pods web, api, db) share; sourced after mesh.sh.
#   check WHAT CMD...   runs CMD, prints ok/FAIL, a failure sets fail=1
#   mesh_report         on failure, the tail of every log of $MESH_STATE
#   web_to_api, web_to_db: the pod's app answers web (through the agents)
#   allow_web_to_db     adds a policy file letting web reach db:5432

fail=0
check() {
	local what=$1
	shift
	if "$@"; then echo "ok: $what"; else
		echo "FAIL: $what"
		fail=1
	fi
}
mesh_report() {
	[ $fail -ne 0 ] || return 0
	for f in "$MESH_STATE"/*.log; do
		echo "--- $f"
		tail -n 30 "$f"
	done
}
not() { ! "$@"; }
json() { /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
web_to_db() { mesh_in web socat -T 2 - "TCP:$(mesh_addr db):5432" </dev/null 2>/dev/null | grep -q 'hello from db'; }
web_to_api() { [ "$(mesh_in web curl -sS -m 5 "http://$(mesh_addr api):8080/" 2>/dev/null)" = "hello from api" ]; }
allow_web_to_db() {
	cat >"$MESH_STATE/policy/db-from-web.yaml" <<EOF
apiVersion: cinch.dev/v1alpha1
kind: AllowPolicy
metadata: {name: db-from-web, namespace: demo}
spec:
  selector: {workloads: [db]}
  ports: [5432]
  from: [{identities: ["spiffe://cluster.local/ns/demo/sa/web"]}]
EOF
}
