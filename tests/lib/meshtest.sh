# meshtest.sh: what the end-to-end tests on the local mesh
# (deploy/local/mesh.sh: pods web, api, db) share. A test sets
# MESHTEST_TOOLS (the commands it needs), MESH_BIN, NETNS_PREFIX,
# NETNS_BRIDGE, MESH_NET, MESH_ADMIN_PORT (and any other MESH_* of
# deploy/local/mesh.sh), then sources this file, which
#   - skips the test (exit 77) when not root or a tool is missing;
#   - makes MESH_STATE, a new directory under /tmp, and sources mesh.sh;
#   - sets an EXIT trap that runs meshtest_on_exit (if the test defines
#     it), shows the logs when a check failed (mesh_report) and removes the
#     mesh (mesh_down); INT and TERM exit through it;
#   - defines:
#     check WHAT CMD...   runs CMD, prints ok/FAIL, a failure sets fail=1
#     json EXPR           EXPR over the JSON document on stdin, as d
#     not CMD...          CMD fails
#     mesh_report         on failure, the tail of every log of $MESH_STATE
#     web_to_api, web_to_db: the pod's app answers web (through the agents)

[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
for t in ${MESHTEST_TOOLS:-}; do
	command -v "$t" >/dev/null || { echo "SKIP: $t missing"; exit 77; }
done
MESH_STATE=$(mktemp -d "/tmp/${NETNS_PREFIX}XXXXXX") || exit 1
# shellcheck source=../../deploy/local/mesh.sh
. "$CINCH_SRC/deploy/local/mesh.sh"
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
meshtest_cleanup() {
	! declare -F meshtest_on_exit >/dev/null || meshtest_on_exit
	mesh_report
	mesh_down
}
trap meshtest_cleanup EXIT
trap 'exit 1' INT TERM
