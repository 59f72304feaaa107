#!/bin/sh
# grammar_test: one command-line grammar for cinchctl, cinch-agent and
# cinch-control. Every verb's --help prints its usage on stdout and exits
# 0; every bad invocation in the table below exits 2 with at most two
# lines on stderr: the first names what is wrong, the second points to
# --help (no screen of usage that hides the reason).
#   grammar_test.sh BINDIR
set -u
B=$1
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
fail=0

helps() { # each line: a command line that must print help
	cat <<'L'
cinchctl --help
cinchctl -h
cinchctl token --help
cinchctl token create --help
cinchctl bundle --help
cinchctl bundle show --help
cinchctl cert --help
cinchctl cert inspect --help
cinchctl ca --help
cinchctl ca rotate --help
cinchctl ca retire --help
cinchctl ca status --help
cinchctl status --help
cinchctl check --help
cinchctl policy --help
cinchctl policy check --help
cinchctl policy lint --help
cinchctl policy test --help
cinchctl policy explain --help
cinchctl policy whatif --help
cinchctl policy whatif --flows x.log --help
cinch-agent --help
cinch-agent run --help
cinch-agent run --idle-timeout 5s --idle-timeout 300000 --probe-interval 300 --probe-interval 10s --cert-ttl 1h --cert-ttl 3600 --help
cinch-agent run --handshake-timeout 300ms --handshake-timeout 5s --idle-timeout 1h --help
cinch-agent run --outbound-port 15001 --inbound-port 15006 --admin-port 65535 --admin-port 0 --max-conns 1000000 --outbound-reserve 0 --peer-metrics 0 --help
cinch-agent init --help
cinch-control --help
L
}
helps | while read -r bin args; do
	# shellcheck disable=SC2086
	"$B/$bin" $args >"$D/out" 2>"$D/err" </dev/null
	rc=$?
	if [ $rc -ne 0 ] || ! grep -q "usage" "$D/out" || [ -s "$D/err" ]; then
		echo "FAIL: $bin $args: exit $rc (want 0, usage on stdout, nothing on stderr)"
		cat "$D/err"
		echo x >>"$D/failed"
	fi
done

# bad invocations: command line | what the first stderr line must contain
bads() {
	cat <<'L'
cinchctl|missing a command
cinchctl frob|unknown command "frob"
cinchctl token|missing a verb
cinchctl token create|missing --identity
cinchctl token create --identity shop/web --ttl 5x|--ttl: not a duration
cinchctl token create --identity|--identity needs a value
cinchctl bundle show --frob|unknown flag --frob
cinchctl bundle show extra|unexpected argument extra
cinchctl cert inspect|missing the FILE
cinchctl cert frob|unknown verb "frob"
cinchctl ca|missing a verb
cinchctl ca rotate --wait soon|--wait: not a duration
cinchctl ca status --force|--force belongs to ca retire
cinchctl status --frob|unknown flag --frob
cinchctl status --state-dir|--state-dir needs a value
cinchctl check extra|unexpected argument extra
cinchctl check --kubeconfig|--kubeconfig needs a value
cinchctl status --cluster --state-dir /x|--state-dir is for the admin socket
cinchctl policy explain --kubeconfig k --from 10.0.0.1 --to a/b --port 80|--kubeconfig goes with --from-cluster
cinchctl policy|missing a verb
cinchctl policy frob|unknown verb "frob"
cinchctl policy check|missing a PATH
cinchctl policy check --frob|unknown flag --frob
cinchctl policy lint --policy|--policy needs a value
cinchctl policy explain --policy p --workloads w --from 10.0.0.1 --port 80|missing --to
cinchctl policy explain --policy p --from 10.0.0.1 --to a/b --port 80|missing --workloads
cinchctl policy explain --policy p --workloads w --from 10.0.0.1 --to a/b --port 99999|--port: not a port
cinchctl policy explain --policy p --workloads w --from 10.0.0.1 --to a/b --port 80x|--port: not a port
cinchctl policy test --policy p --workloads w|missing the FILE of cases
cinchctl policy test cases.yaml --workloads w|missing --policy
cinchctl policy whatif --policy p --workloads w|missing --flows
cinchctl policy whatif --flows|--flows needs a value
cinchctl policy whatif --flows f.log --workloads w|missing --policy
cinchctl policy whatif --flows f.log --policy p --workloads w --output yaml|--output: text or json
cinchctl policy whatif --flows f.log --frob|unknown flag --frob
cinchctl policy whatif extra --flows f.log|unexpected argument extra
cinchctl policy whatif --flows f.log --kubeconfig k|--kubeconfig goes with --from-cluster
cinch-agent|missing a command
cinch-agent frob|unknown command "frob"
cinch-agent --frob|--frob
cinch-agent run --frob|--frob
cinch-agent init --frob|--frob
cinch-agent run --idle-timeout 5x|--idle-timeout: not a duration
cinch-agent run --probe-interval 50ms|--probe-interval: not a duration
cinch-agent run --cert-ttl 1500ms|--cert-ttl: not a duration
cinch-agent init extra|unexpected argument "extra"
cinch-agent run --outbound-port 70000|--outbound-port "70000": expected a whole number from 1 to 65535
cinch-agent run --inbound-port 12abc|--inbound-port "12abc": expected a whole number
cinch-agent run --admin-port -1|--admin-port "-1": expected a whole number
cinch-agent run --admin-port 65536|--admin-port "65536": expected a whole number from 0 to 65535
cinch-agent run --max-conns 0|--max-conns "0": expected a whole number from 1 to 1000000
cinch-agent run --max-handshakes 99999999999999999999|--max-handshakes
cinch-agent run --peer-metrics 5x|--peer-metrics "5x": expected a whole number
cinch-agent run --handshake-timeout 50ms|--handshake-timeout "50ms": expected a duration
cinch-agent init --uid -1|--uid "-1": expected a user ID
cinch-agent init --inbound-port 65536|--inbound-port "65536": expected a port
cinch-agent init --outbound-port +15001|--outbound-port "+15001": expected a port
cinch-control --max-connections 12abc|--max-connections
cinch-control --webhook-port 70000|--webhook-port
cinch-control --idle-timeout 5x|--idle-timeout
cinch-control --frob|--frob
L
}
bads | while IFS='|' read -r cmd want; do
	set -- $cmd
	bin=$1
	shift
	"$B/$bin" "$@" >"$D/out" 2>"$D/err" </dev/null
	rc=$?
	lines=$(wc -l <"$D/err")
	if [ $rc -ne 2 ] || [ "$lines" -gt 2 ] || ! head -n1 "$D/err" | grep -qF -- "$want" ||
		! grep -q -- "--help" "$D/err"; then
		echo "FAIL: $cmd: exit $rc, $lines lines on stderr (want 2, <= 2 lines, \"$want\" then a --help hint):"
		cat "$D/err"
		echo x >>"$D/failed"
	fi
done
[ -e "$D/failed" ] && fail=1
exit $fail
