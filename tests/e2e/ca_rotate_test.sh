#!/bin/bash
# ca_rotate_test: trust-bundle rotation of issue #6 on the live mesh
# (deploy/local/mesh.sh) in namespaces cnart-*, bridge cnart0, subnet
# 10.201.12.0/24, with steady traffic web -> api (one curl every 0.2 s, each
# a new mutual-TLS connection between the two agents) from start to end,
# and ZERO failed requests allowed.
#   - `cinchctl ca rotate` waits until every agent reports the new bundle
#     (after its next renewal) and activates;
#   - `cinchctl ca retire` right after is refused (not safe yet);
#   - every agent renews onto the new root (its serial changes, and the
#     certificate it presents is issued by the new root);
#   - once safe (activation + --svid-ttl-max 2m), retire works: one root in
#     the bundle, every agent reports the new sequence;
#   - a second rotation: `cinchctl ca rotate --wait 0s` prepares a new root
#     and times out (agents have not renewed yet): exit 1, the root stays
#     prepared; the control plane restarted then keeps it; `cinchctl ca
#     rotate` again goes on and activates it.
# Certificates live 2 minutes (--test-short-ttl), so agents renew about
# every minute and the whole run takes about eight. Root only (exit 77).
set -u
MESHTEST_TOOLS="ip iptables-restore curl socat setpriv openssl /usr/bin/python3"
MESH_BIN=$CINCH_BUILD/bin
NETNS_PREFIX=cnart-
NETNS_BRIDGE=cnart0
MESH_NET=10.201.12
MESH_ADMIN_PORT=15224
MESH_TTL=2m
MESH_CONTROL_ARGS="--test-short-ttl --svid-ttl-max 2m"
. "$CINCH_SRC/tests/lib/meshtest.sh"
TRAFFIC=$MESH_STATE/traffic
traffic_pid=
meshtest_on_exit() { [ -z "$traffic_pid" ] || kill "$traffic_pid" 2>/dev/null; }

API=$(mesh_addr api)
ca_status() { mesh_ctl ca status --json | json "$1"; }
serial() { mesh_in "$1" curl -sS -m 5 http://127.0.0.1:15000/config | json 'd["cert_serial"]'; }
# The issuer of the certificate POD's agent presents to a peer: a TLS
# client in FROM (as the agents' UID, so its own agent lets it through)
# connects to POD's port; the agent there answers with its certificate.
issuer_of() { # issuer_of POD FROM PORT
	mesh_in "$2" setpriv --reuid 1337 --regid 1337 --clear-groups \
		timeout 5 openssl s_client -connect "$(mesh_addr "$1"):$3" </dev/null 2>/dev/null |
		openssl x509 -noout -issuer -nameopt compat 2>/dev/null | sed 's/^issuer=//'
}
signer_subject() { # the signing root's subject, as issuer_of prints it
	mesh_ctl ca status --json | /usr/bin/python3 -c '
import json, sys
r = [x for x in json.load(sys.stdin)["roots"] if x["role"] == "signer"][0]
print(r["subject"])'
}
# every workload reports bundle sequence $1 to the control plane
agents_report() {
	mesh_ctl status --json | /usr/bin/python3 -c '
import json, sys
rows = json.load(sys.stdin)["workloads"]
sys.exit(0 if len(rows) == 3 and all((r.get("report") or {}).get("bundle_sequence") == int(sys.argv[1])
                                  for r in rows) else 1)' "$1"
}

# --- the mesh, and traffic that must never fail
if ! mesh_up; then
	fail=1
	exit 1
fi
echo "ok: control plane and three agents ready"
(
	end=$(($(date +%s) + 840)) # bounded, whatever happens to the test
	while [ ! -e "$TRAFFIC.stop" ] && [ "$(date +%s)" -lt "$end" ]; do
		if [ "$(mesh_in web curl -sS -m 3 "http://$API:8080/" 2>>"$TRAFFIC.err")" = "hello from api" ]; then
			echo ok >>"$TRAFFIC.ok"
		else
			date -u +%T.%N >>"$TRAFFIC.fail"
		fi
		sleep 0.2
	done
) &
traffic_pid=$!
declare -A serial0
remember_serials() { for p in web api db; do serial0[$p]=$(serial $p); done; }
remember_serials
root0=$(signer_subject)
check "before: api presents a certificate of the first root" \
	[ "$(issuer_of api web 8080)" = "$root0" ]

# --- rotate: wait for every agent, activate
remember_serials
out=$(mesh_ctl ca rotate --wait 3m 2>&1)
rc=$?
echo "$out"
check "rotate: every agent reported the new bundle, then activated" \
	[ $rc -eq 0 -a -n "$(echo "$out" | grep 'every connected agent reports the new bundle')" ]
check "... the agents report bundle sequence 2" agents_report 2
root1=$(signer_subject)
check "... a new root signs" [ -n "$root1" -a "$root1" != "$root0" ]
out=$(mesh_ctl ca retire 2>&1)
rc=$?
echo "$out"
check "retire right after activation is refused (exit 1)" \
	[ $rc -eq 1 -a -n "$(echo "$out" | grep 'not safe yet')" ]
check "... and the bundle keeps both roots" [ "$(ca_status 'len(d["roots"])')" = 2 ]

# --- agents renew onto the new root
renewed() { # renewed ROOT: every agent has a new serial, issued by ROOT
	for p in web api db; do
		[ "$(serial $p)" != "${serial0[$p]}" ] || return 1
	done
	[ "$(issuer_of api web 8080)" = "$1" ] &&
		[ "$(issuer_of db web 5432)" = "$1" ] &&
		[ "$(issuer_of web api 8080)" = "$1" ]
}
check "every agent renewed onto the new root (serial and issuer)" netns_wait 150 renewed "$root1"

# --- retire once safe
safe() { [ "$(ca_status 'd["retire_safe"]')" = True ]; }
check "retire becomes safe (activation + 2m)" netns_wait 180 safe
out=$(mesh_ctl ca retire 2>&1)
rc=$?
echo "$out"
check "retire: done" [ $rc -eq 0 ]
check "the bundle holds one root, the new one, sequence 3" \
	[ "$(mesh_ctl bundle show --pem | grep -c 'BEGIN CERTIFICATE')" = 1 -a \
	"$(ca_status '(d["sequence"], d["roots"][0]["role"])')" = "(3, 'signer')" ]
check "every agent reports bundle sequence 3 (after its next renewal)" netns_wait 150 agents_report 3

# --- a second rotation: prepare, time out, restart: the new root stays
out=$(mesh_ctl ca rotate --wait 0s 2>&1)
rc=$?
echo "$out"
check "rotate --wait 0s: prepared, then timed out (exit 1)" \
	[ $rc -eq 1 -a -n "$(echo "$out" | grep 'prepared: a new root joined')" ]
check "... saying the new root stays prepared" grep -q 'stays prepared' <<<"$out"
check "... two roots, sequence 4, prepared" \
	[ "$(ca_status '(len(d["roots"]), d["sequence"], d["prepared"])')" = "(2, 4, True)" ]
netns_kill control
mesh_control_up || fail=1
check "control restarted: the prepared root is still there" \
	[ "$(ca_status '(len(d["roots"]), d["sequence"], d["prepared"])')" = "(2, 4, True)" ]
check "... and the current root still signs" [ "$(signer_subject)" = "$root1" ]

out=$(mesh_ctl ca rotate --wait 3m 2>&1)
rc=$?
echo "$out"
check "after the restart, rotate goes on: activated" [ $rc -eq 0 -a -n "$(echo "$out" | grep '^activated')" ]
root2=$(signer_subject)
check "... a third root signs" [ -n "$root2" -a "$root2" != "$root1" ]
remember_serials
check "every agent renewed onto it (serial and issuer)" netns_wait 150 renewed "$root2"

# --- not one request failed
touch "$TRAFFIC.stop"
wait "$traffic_pid"
traffic_pid=
n_ok=$(wc -l 2>/dev/null <"$TRAFFIC.ok" || echo 0)
n_fail=$(wc -l 2>/dev/null <"$TRAFFIC.fail" || echo 0)
echo "traffic: $n_ok requests succeeded, $n_fail failed"
check "traffic flowed all along (over 300 requests)" [ "$n_ok" -gt 300 ]
check "ZERO failed requests web -> api across the rotation" [ "$n_fail" -eq 0 ]
[ "$n_fail" -eq 0 ] || { cat "$TRAFFIC.fail"; tail -n 5 "$TRAFFIC.err"; }

exit $fail
