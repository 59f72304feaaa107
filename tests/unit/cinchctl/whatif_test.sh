#!/bin/sh
# whatif_test: `cinchctl policy whatif` on access logs real agents wrote
# (fixtures/whatif/README.md says which runs), replayed against proposed
# policies written here. Each case checks the exit status and the exact
# report (or the exact errors), so a flow decided by anything but the
# agent's own evaluation, a group merged wrongly, a count off by one or a
# bad line that slips through fails it:
#   - a flow allowed today that the proposal refuses: exit 1, grouped, counted,
#     old rule -> new verdict and reason (text and --output json);
#   - only refusals that become allowed: exit 0, listed;
#   - nothing changes; stdin; several files (one --flows and repeated);
#   - audit-mode flows (audit-deny today) refused, or allowed by a rule;
#   - malformed lines (not JSON, no event, a connection line without a
#     field, a bad verdict or address) and files (missing, a directory):
#     exit 2 naming file:line, no report; lines of other events skipped;
#   - a 4 MiB line (bounded: reported, never buffered whole) next to a
#     60 KiB connection line that is read;
#   - a new GuardrailPolicy refusing what the namespace's policy allows.
#   whatif_test.sh CINCHCTL FIXTURES
set -u
C=$1
F=$2/whatif
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
cd "$D" || exit 2
fail=0
W="--workloads $F/workloads.yaml"

run() { # run ARGS...: stdout into out.1, stderr into out.2, both into out, status into rc
	"$C" "$@" >out.1 2>out.2
	rc=$?
	cat out.1 out.2 >out
}
check() { # check NAME WANT_RC: the last run's status and out against want
	if [ "$rc" -ne "$2" ] || ! diff -u want out >diff; then
		echo "FAIL: $1: exit $rc (want $2)"
		cat diff
		fail=1
	else
		echo "ok: $1"
	fi
}
check_ok() { # check_ok NAME: the status of the command just run (a chain of tests) as a check
	rc=$?
	: >want
	[ $rc -eq 0 ] && : >out
	check "$1" 0
}

cat >policy-narrow.yaml <<'EOF'
apiVersion: cinch.dev/v1alpha1
kind: AllowPolicy
metadata: {name: api-from-web, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  ports: [8080]
  from: [{identities: ["spiffe://cluster.local/ns/shop/sa/web"]}]
---
apiVersion: cinch.dev/v1alpha1
kind: AllowPolicy
metadata: {name: web-from-api, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  ports: [8080]
  from: [{identities: ["spiffe://cluster.local/ns/shop/sa/api"]}]
EOF
sed 's/ports: \[8080\]$/ports: ["8080-8083"]/' policy-narrow.yaml >policy-wide.yaml
mkdir audit
cat >audit/policy.yaml <<'EOF'
apiVersion: cinch.dev/v1alpha1
kind: AllowPolicy
metadata: {name: api-from-web, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  ports: [8080, 8082]
  from: [{identities: ["spiffe://cluster.local/ns/shop/sa/web"]}]
EOF

narrow_groups() { # what policy-narrow.yaml changes for the flows of stress.log
	cat <<EOF
would be refused (allowed today):
  outbound shop/web -> shop/api:8081  10 connections
    allow -> deny: the destination's policy does not allow this port
  inbound  spiffe://cluster.local/ns/shop/sa/web -> shop/api:8081  18 connections
    allow by shop/api-from-web#0 -> deny: no rule allows this identity on this port
EOF
}

# 1. allowed today, refused by the proposal
run policy whatif --flows "$F/stress.log" --policy policy-narrow.yaml $W
{
	narrow_groups
	cat <<EOF
31 connections in 1 file: 30 replayed, 1 not decided by a policy, 0 not replayed; 9 other lines skipped
28 would be refused, 0 would be allowed, 0 would change between allow and audit-deny
EOF
} >want
check "allowed today, refused by the proposal: exit 1, grouped and counted" 1

run policy whatif --flows "$F/stress.log" --policy policy-narrow.yaml $W --output json
if [ "$rc" -eq 1 ] && /usr/bin/python3 - out.1 <<'EOF'; then
import json, sys
r = json.load(open(sys.argv[1]))
want = {"connections": 31, "replayed": 30, "undecided": 1, "not_replayed": 0,
        "skipped_lines": 9, "refused": 28, "allowed": 0, "changed": 0}
assert {k: r[k] for k in want} == want, r
c = r["changes"][1]
assert c == {"change": "refused", "direction": "inbound",
             "source": "spiffe://cluster.local/ns/shop/sa/web",
             "destination": "shop/api", "port": 8081, "count": 18,
             "old": {"verdict": "allow", "rule": "shop/api-from-web#0"},
             "new": {"verdict": "deny", "rule": None,
                     "reason": "no rule allows this identity on this port"}}, c
assert r["changes"][0]["count"] == 10 and r["changes"][0]["direction"] == "outbound"
EOF
	echo "ok: --output json: the same groups, counts and rules"
else
	echo "FAIL: --output json (exit $rc)"
	cat out
	fail=1
fi

# 2. a change only from deny to allow
run policy whatif --flows "$F/stress.log" --policy policy-wide.yaml $W
cat >want <<EOF
would be allowed (refused today):
  outbound shop/web -> shop/api:8081  1 connection
    deny -> allow: meshed destination
31 connections in 1 file: 30 replayed, 1 not decided by a policy, 0 not replayed; 9 other lines skipped
0 would be refused, 1 would be allowed, 0 would change between allow and audit-deny
EOF
check "refused today, allowed by the proposal: exit 0, listed" 0

# 3. nothing changes (the rule that allows differs: not a verdict change)
run policy whatif --flows "$F/api.log" --policy policy-narrow.yaml $W
cat >want <<EOF
no verdict would change
32 connections in 1 file: 6 replayed, 26 not decided by a policy, 0 not replayed; 2 other lines skipped
0 would be refused, 0 would be allowed, 0 would change between allow and audit-deny
EOF
check "nothing changes: exit 0" 0

# 4. stdin, and several files (one --flows, and --flows twice)
"$C" policy whatif --flows - --policy policy-narrow.yaml $W <"$F/api.log" >out 2>&1
rc=$?
check "the log on standard input" 0
run policy whatif --flows "$F/api.log" "$F/stress.log" --policy policy-narrow.yaml $W
{
	narrow_groups
	cat <<EOF
63 connections in 2 files: 36 replayed, 27 not decided by a policy, 0 not replayed; 11 other lines skipped
28 would be refused, 0 would be allowed, 0 would change between allow and audit-deny
EOF
} >want
check "two files after one --flows" 1
"$C" policy whatif --flows "$F/api.log" --policy policy-narrow.yaml $W --flows - \
	<"$F/stress.log" >out 2>&1
rc=$?
check "--flows twice, one of them stdin" 1
"$C" policy whatif --flows "$F/api.log" "$F/stress.log" --policy - $W <policy-narrow.yaml >out 2>&1
rc=$?
check "the proposal on standard input" 1
run policy whatif --flows "$F/stress.log" "$F/stress.log" --policy policy-wide.yaml $W
grep -q "deny -> allow: meshed destination" out && grep -q "shop/api:8081  2 connections" out &&
	grep -q "^62 connections in 2 files" out && [ "$rc" -eq 0 ]
check_ok "one log given twice counts twice"

# 5. audit mode: let through today, refused or allowed by a rule
run policy whatif --flows "$F/audit.log" --policy audit/ $W
cat >want <<EOF
would be refused (allowed today):
  inbound  spiffe://cluster.local/ns/shop/sa/web -> shop/api:8083  1 connection
    audit-deny -> deny: no rule allows this identity on this port
would change between allow and audit-deny:
  inbound  spiffe://cluster.local/ns/shop/sa/web -> shop/api:8082  2 connections
    audit-deny -> allow by shop/api-from-web#0: allowed
3 connections in 1 file: 3 replayed, 0 not decided by a policy, 0 not replayed; 0 other lines skipped
1 would be refused, 0 would be allowed, 2 would change between allow and audit-deny
EOF
check "audit-mode flows: the enforced one refused (exit 1), the allowed one listed" 1

# An allowed connection whose app then refused it: the agent writes deny
# with the rule kept (pc_refuse) and it was allowed; without a rule it
# was never decided (a connect to the app before any decision cannot
# happen, so no log holds one: these are edited copies of a real line).
grep -m 1 '"inbound".*"10.201.10.2:8081".*"allow"' "$F/stress.log" |
	sed 's/"verdict":"allow"/"verdict":"deny"/; s/"reason":"allowed"/"reason":"connection refused"/; s/"end":"closed"/"end":"connect_failed"/' >failed.log
sed 's/"rule":"[^"]*"/"rule":""/' failed.log >failed2.log && cat failed2.log >>failed.log
run policy whatif --flows failed.log --policy policy-narrow.yaml $W
cat >want <<EOF
would be refused (allowed today):
  inbound  spiffe://cluster.local/ns/shop/sa/web -> shop/api:8081  1 connection
    allow by shop/api-from-web#0 -> deny: no rule allows this identity on this port
2 connections in 1 file: 1 replayed, 1 not decided by a policy, 0 not replayed; 0 other lines skipped
1 would be refused, 0 would be allowed, 0 would change between allow and audit-deny
EOF
check "allowed, then failed at the app: allowed today; without its rule: undecided" 1

# 6. an address no workload of the proposed set owns: not replayed, said
sed 's/10\.201\.10\.1"/10.201.10.1", "10.201.10.9"/' "$F/workloads.yaml" |
	grep -v 'name: api' | sed '/^---$/,$d' >web-only.yaml
run policy whatif --flows "$F/audit.log" --policy audit/ --workloads web-only.yaml
cat >want <<EOF
not replayed:
  inbound  spiffe://cluster.local/ns/shop/sa/web -> 10.201.10.2:8082  2 connections
    no workload of the set has the destination address
  inbound  spiffe://cluster.local/ns/shop/sa/web -> 10.201.10.2:8083  1 connection
    no workload of the set has the destination address
no verdict would change
3 connections in 1 file: 0 replayed, 0 not decided by a policy, 3 not replayed; 0 other lines skipped
0 would be refused, 0 would be allowed, 0 would change between allow and audit-deny
EOF
check "flows to an address no workload has: listed as not replayed" 0

# 7. malformed lines: every one named, exit 2, no report
{
	head -n 3 "$F/stress.log"
	echo '    Start 2: e2e.agent_stress'
	echo '{"direction":"inbound","src":"[::ffff:10.201.10.1]:1'
	echo '[1, 2]'
	echo '{"direction":"inbound"}'
	sed -n 's/"dst":"[^"]*",//p' "$F/stress.log" | head -n 1
	sed -n 's/"verdict":"allow"/"verdict":"maybe"/p' "$F/stress.log" | head -n 1
	sed -n 's/"dst":"10.201.10.2:8081"/"dst":"10.201.10.2:80801"/p' "$F/stress.log" | head -n 1
	sed -n 's/"src":"\[::ffff:10.201.10.1\]/"src":"[10.201.10.1]/p' "$F/stress.log" | head -n 1
	printf '{"event":"connection","event":"connection"}\n'
	printf '\033]0;pwned\007\n'
	echo
	printf '   \n'
	head -n 1 "$F/stress.log"
	echo '{"event":"agent_up","x":"\q"}'
	echo '{"event":"agent_up","n":1.}'
	echo '{"event":"agent_up"} {}'
	echo '{"event":"agent_up","deep":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}'
	printf '{"event":"connection","rule":"shop/\303\251#0"}\n'
	echo '{"event":"connection","ev\u0065nt":"connection"}'
	echo '{"event":"agent_up","peer_refusal":{"by":"x"'
	echo '{"event":"agent_up","x":"\u12"}'
	printf '{"event":"agent_\tup"}\n'
	echo '{"event":"agent_up" "x":1}'
	head -n 1 "$F/stress.log" | tr -d '\n'
} >bad.log
run policy whatif --flows bad.log --policy policy-narrow.yaml $W
cat >want <<EOF
bad.log:4: not JSON: '{' expected (column 5)
bad.log:5: not JSON: a string that does not end (column 53)
bad.log:6: not JSON: '{' expected (column 1)
bad.log:7: not an agent's log line: no "event"
bad.log:8: connection line without a string "dst"
bad.log:9: connection line: "verdict" is not allow, deny or audit-deny
bad.log:10: connection line: "dst" is not an address:port
bad.log:11: connection line: "src" is not an address:port
bad.log:12: not JSON: a field given twice (column 31)
bad.log:13: not JSON: '{' expected (column 1)
bad.log:17: not JSON: an unknown escape in a string (column 28)
bad.log:18: not JSON: a number without digits after '.' (column 25)
bad.log:19: not JSON: more after the object (column 22)
bad.log:20: not JSON: values nested too deep (column 61)
bad.log:21: not JSON: a key, or a field read, that is not printable ASCII (column 41)
bad.log:22: not JSON: a field given twice (column 36)
bad.log:23: not JSON: an object that does not end (column 45)
bad.log:24: not JSON: a \u escape without 4 hex digits (column 30)
bad.log:25: not JSON: a control character in a string (column 18)
bad.log:26: not JSON: a ',' expected between values (column 22)
cinchctl policy whatif: 20 malformed lines of 27: no report
EOF
check "malformed lines: each named by file:line, exit 2, no report" 2

# The JSON an agent's encoder may write besides what the fixtures show
# (escapes, a nested peer_refusal, exponents, spaces) reads the same.
/usr/bin/python3 - "$F/stress.log" >variants.log <<'PY'
import json, sys
for line in open(sys.argv[1]):
    j = json.loads(line)
    if j.get("event") == "connection":
        j["peer_refusal"] = {"by": j["peer_id"], "port": 8081, "code": "policy_deny",
                             "reason": "no rule allows \"this\"\n", "x": [1, -2.5e-3, True, None, {}]}
        j["duration_s"] = 4.2401000000000003e-5
        j["reason"] = j["reason"] + " \u00e9\t"
    print(json.dumps(j, separators=(" , ", " : ")).replace('"rule" :', '"r\\u0075le" :'))
PY
grep -q 'r\\u0075le' variants.log || echo "FAIL: variants.log has no escaped key"
run policy whatif --flows variants.log --policy policy-narrow.yaml $W
"$C" policy whatif --flows "$F/stress.log" --policy policy-narrow.yaml $W >want 2>&1
check "escapes, nested values, exponents and spaces read as the agent's compact lines" 1

for i in $(seq 25); do echo "garbage $i"; done >garbage.log
run policy whatif --flows garbage.log --policy policy-narrow.yaml $W
{
	for i in $(seq 20); do echo "garbage.log:$i: not JSON: '{' expected (column 1)"; done
	echo "... and 5 more malformed lines"
	echo "cinchctl policy whatif: 25 malformed lines of 25: no report"
} >want
check "the first 20 malformed lines named, the rest counted" 2

# 8. files that cannot be read
run policy whatif --flows "$F/api.log" no-such.log --policy policy-narrow.yaml $W
cat >want <<EOF
cinchctl policy whatif: no-such.log: No such file or directory
EOF
check "a missing file: exit 2" 2
run policy whatif --flows audit --policy policy-narrow.yaml $W
cat >want <<EOF
cinchctl policy whatif: audit: Is a directory
EOF
check "a directory: exit 2" 2
run policy whatif --flows /dev/null --policy policy-narrow.yaml $W
cat >want <<EOF
no verdict would change
0 connections in 1 file: 0 replayed, 0 not decided by a policy, 0 not replayed; 0 other lines skipped
0 would be refused, 0 would be allowed, 0 would change between allow and audit-deny
EOF
check "an empty log: nothing to change" 0
run policy whatif --flows "$F/api.log" --policy policy-narrow.yaml --workloads policy-narrow.yaml
cat >want <<EOF
cinchctl policy whatif: the set has no Workload: flows are replayed at the workloads owning their addresses
EOF
check "a set without workloads: exit 2" 2
printf 'apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\nmetadata: {name: x, namespace: shop}\nspec: {selector: {workloads: [api]}, ports: [0], from: [{namespaces: [shop]}]}\n' >invalid.yaml
run policy whatif --flows "$F/api.log" --policy invalid.yaml $W
grep -q '^invalid.yaml:4:.*spec.ports\[0\]' out && [ "$rc" -eq 2 ] && [ ! -s out.1 ]
check_ok "an invalid proposal: its error, exit 2, no report"

# 9. huge lines: a 4 MiB one is reported by its number and skipped without
# being held; a 60 KiB connection line (a long rule name) is read.
/usr/bin/python3 - "$F/stress.log" <<'EOF'
import json, sys
line = next(l for l in open(sys.argv[1]) if '"inbound"' in l and '"allow"' in l)
j = json.loads(line)
j["rule"] = "shop/" + "r" * 60000 + "#0"
with open("huge.log", "w") as f:
    f.write(line)
    f.write('{"event":"x","pad":"' + "a" * (4 << 20) + '"}\n')
    f.write(json.dumps(j) + "\n")
    f.write("b" * 65537 + "\n")
    f.write("c" * 65536 + "\n")
    f.write("d" * (1 << 21))  # the last line, unterminated
EOF
run policy whatif --flows huge.log --policy policy-narrow.yaml $W
cat >want <<EOF
huge.log:2: line longer than 65536 bytes
huge.log:4: line longer than 65536 bytes
huge.log:5: not JSON: '{' expected (column 1)
huge.log:6: line longer than 65536 bytes
cinchctl policy whatif: 4 malformed lines of 6: no report
EOF
check "huge lines: bounded, each named" 2
head -n 3 huge.log | sed 2d >long.log
run policy whatif --flows long.log --policy policy-wide.yaml $W
cat >want <<EOF
no verdict would change
2 connections in 1 file: 2 replayed, 0 not decided by a policy, 0 not replayed; 0 other lines skipped
0 would be refused, 0 would be allowed, 0 would change between allow and audit-deny
EOF
check "a 60 KiB connection line is read" 0

# 10. a guardrail (GuardrailPolicy, evaluated before every AllowPolicy)
# refuses what the namespace's policy still allows: the proposal keeps
# api-from-web on 8080-8083 and adds a deny of 8081 to every caller of api.
cat policy-wide.yaml - >guardrail.yaml <<'EOF2'
---
apiVersion: cinch.dev/v1alpha1
kind: GuardrailPolicy
metadata: {name: no-8081}
spec:
  priority: 10
  subject: {podSelector: {matchLabels: {app: api}}}
  rules:
    - action: deny
      ports: [8081]
EOF2
run policy whatif --flows "$F/stress.log" --policy guardrail.yaml $W
cat >want <<EOF2
would be refused (allowed today):
  inbound  spiffe://cluster.local/ns/shop/sa/web -> shop/api:8081  18 connections
    allow by shop/api-from-web#0 -> deny by GuardrailPolicy/no-8081#0: denied by a guardrail
would be allowed (refused today):
  outbound shop/web -> shop/api:8081  1 connection
    deny -> allow: meshed destination
31 connections in 1 file: 30 replayed, 1 not decided by a policy, 0 not replayed; 9 other lines skipped
18 would be refused, 1 would be allowed, 0 would change between allow and audit-deny
EOF2
check "a new guardrail refuses what the namespace's policy allows: exit 1, the guardrail named" 1

# 11. the command line
run policy whatif --policy policy-narrow.yaml $W
cat >want <<EOF
cinchctl policy whatif: missing --flows
Run 'cinchctl policy whatif --help' for usage.
EOF
check "missing --flows" 2
run policy whatif --flows - --policy - $W
cat >want <<EOF
cinchctl policy whatif: - (standard input) given more than once
Run 'cinchctl policy whatif --help' for usage.
EOF
check "stdin twice" 2

exit $fail
