#!/bin/bash
# down.sh: `make demo-down`. Stops every process the local mesh started and
# removes its namespaces (and with them their iptables rules), its bridge
# and its state directory. Safe to run when nothing is up.
set -u
. "$(dirname "$0")/mesh.sh"
[ "$(id -u)" -eq 0 ] || { echo "down.sh: needs root" >&2; exit 1; }
mesh_down
echo "local mesh removed"
