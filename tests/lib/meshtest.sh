# meshtest.sh: what the end-to-end tests on the local mesh share. A test
# sets MESHTEST_TOOLS (the commands it needs), MESH_BIN, NETNS_PREFIX,
# NETNS_BRIDGE, MESH_NET, MESH_ADMIN_PORT (and any other MESH_* of
# deploy/local/mesh.sh), then sources this file, which
#   - skips the test (exit 77) when not root or a tool is missing;
#   - makes MESH_STATE, a new directory under /tmp, and sources mesh.sh;
#   - defines check WHAT CMD... (runs CMD, prints "ok: WHAT" or
#     "FAIL: WHAT" and sets fail=1) and json EXPR (EXPR over the JSON
#     document on stdin, as d);
#   - sets an EXIT trap that runs meshtest_on_exit (if the test defines
#     it), shows the logs when a check failed and removes the mesh
#     (mesh_down); INT and TERM exit through it.

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
json() { /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
meshtest_cleanup() {
	! declare -F meshtest_on_exit >/dev/null || meshtest_on_exit
	if [ $fail -ne 0 ]; then
		for f in "$MESH_STATE"/*.log; do
			echo "--- $f"
			tail -n 30 "$f"
		done
	fi
	mesh_down
}
trap meshtest_cleanup EXIT
trap 'exit 1' INT TERM
