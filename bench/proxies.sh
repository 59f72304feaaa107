#!/bin/bash
# proxies.sh: the data-path benchmark of docs/benchmarks.md ("## Agent").
#
# Two pods (network namespaces on a bridge): `client` runs the load tools,
# `server` runs the origin (nginx HTTP on 8080, iperf3 on 5201). Each peer
# carries the traffic between them with mutual TLS 1.3, chain verification
# on both sides, ECDSA P-256 certificates from one test CA:
#   direct   plaintext, no proxy (the baseline)
#   plain    two nginx stream relays (one worker each) carrying plaintext:
#            the same two user-space hops as every peer below, without
#            TLS, so what the kernel alone costs a relay pair on this
#            machine (the floor no TLS relay can beat with the same
#            syscalls); not a candidate for "best peer"
#   stunnel  a client stunnel in `client`, a server stunnel in `server`
#   haproxy  the same with HAProxy (nbthread 1)
#   nginx    the same with nginx's stream module (worker_processes 1)
#   cinch    a cinch-agent in each pod (static mode), transparent: the
#            client connects to the server's address and `cinch-agent init`
#            rules send it through both agents (one event loop each)
# Every peer runs one worker on the same two cores, side by side in one
# run, ROUNDS times in turn; the table shows medians over the rounds.
#
# Measured per peer: keep-alive requests/s and p50/p99 latency (wrk, 32
# connections), p50/p99 at a fixed 1,000 requests/s (fixed_rate.py, from
# each request's scheduled start), new connections/s (wrk, every request
# on a new connection), single-stream throughput (iperf3), proxy RSS idle
# and under load (both sides summed), memory per idle connection (1,000
# idle connections held open through the proxies); the CPU each side used
# (utime + stime of all its processes, /proc/PID/stat) per 10,000
# keep-alive requests and per GB of iperf3; each side's RSS 1 s and 10 s
# after the load stopped. Then, each peer restarted with TLS resumption
# off: new connections/s with full handshakes only, against the machine's
# limit (hs_bench: both ends of full mutual handshakes on one core). And
# 10,000 concurrent connections held through the agent pair (each side's
# RSS before and while they are held; fewer where the descriptor limit is
# lower, see HOLD_N).
#
#   bench/proxies.sh [--rounds N] [--seconds S] [--bin DIR] [--out FILE]
#                    [--peers LIST] [--before DIR]
#   bench/proxies.sh --profile DIR [--seconds S] [--bin DIR] [--peers PEER]
#   bench/proxies.sh --hold-only [--bin DIR]
#   bench/proxies.sh --only LEG [--rounds N] [--seconds S] [--peers LIST]
#                    [--before DIR]
# --only: one leg alone, S seconds per peer and round, every round's figure
# in the table beside the medians: `fixed` (1,000 requests/s, for a p99
# from more samples than the full run's; each peer's added p99 is taken
# against the direct path of the same round, direct running first) or
# `keepalive` (wrk's requests/s and the CPU both sides spent per 10,000
# requests: a quick side by side of two agent builds with --before).
# --profile: no table; one peer's pair (the agents, or with --peers another
# peer, e.g. plain), under keep-alive load (wrk), new connections (wrk,
# Connection: close) and bulk (iperf3): `perf
# record -g` of both sides, then `strace -c -f` of each, with the requests
# and bytes carried, into DIR (perf.data, the reports, and summary.txt with
# syscalls per request, per connection and per 16 KiB).
# --peers: the peers to run, in this order each round (default: all).
# --before: a second cinch-agent build (DIR holds its cinch-agent), run as
# the peer `before` right ahead of `cinch` in each round, on the same
# namespaces: a side-by-side comparison of two agent builds, e.g.
# `--before /tmp/b/bin --peers "before cinch"`; the table then adds the
# cinch/before ratios (the --before build needs --no-resumption, which
# every agent since issue #16 has). BENCH_HOLD_N=0 skips
# the connections held.
# Needs root and the tools of `scripts/deps.sh bench`.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROUNDS=3
SECS=8
BIN=$ROOT/build/release/bin
OUT=""
PROFILE=""
HOLD_ONLY=""
ONLY=""
PEERS=""
BEFORE=""
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--seconds) SECS=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--bin) BIN=$2; shift 2 ;;
	--profile) PROFILE=$2; shift 2 ;;
	--hold-only) HOLD_ONLY=1; shift ;;
	--only) ONLY=$2; shift 2 ;;
	--peers) PEERS=$2; shift 2 ;;
	--before) BEFORE=$2; shift 2 ;;
	*) echo "usage: $0 [--rounds N] [--seconds S] [--bin DIR] [--out FILE] [--profile DIR]" \
		"[--peers LIST] [--before DIR]" >&2
	   exit 2 ;;
	esac
done
[ "$(id -u)" -eq 0 ] || { echo "proxies.sh: needs root (network namespaces)" >&2; exit 1; }
for t in wrk iperf3 stunnel4 haproxy nginx openssl python3; do
	command -v $t >/dev/null || { echo "proxies.sh: $t missing: run scripts/deps.sh bench" >&2; exit 1; }
done

NETNS_STATE=$(mktemp -d /tmp/cinch-bench.XXXXXX)
# Namespaces, bridge and /24 are overridable, for a machine where others
# run tests in namespaces of their own: BENCH_NETNS_PREFIX, BENCH_BRIDGE,
# BENCH_NET (the /24 without its last byte).
NETNS_PREFIX=${BENCH_NETNS_PREFIX:-cbn-}
NETNS_BRIDGE=${BENCH_BRIDGE:-cbn0}
BENCH_NET=${BENCH_NET:-10.210.0}
NETNS_GW=$BENCH_NET.1/24
CLIENT_IP=$BENCH_NET.10
SERVER_IP=$BENCH_NET.20
# shellcheck source=../deploy/local/netns.sh
. "$ROOT/deploy/local/netns.sh"
D=$NETNS_STATE

cleanup() {
	netns_kill_all
	netns_teardown client server
	[ -n "${KEEP:-}" ] && echo "kept $D" >&2 || rm -rf "$D"
}
trap cleanup EXIT INT TERM

in_client() { ip netns exec "${NETNS_PREFIX}client" "$@"; }
in_server() { ip netns exec "${NETNS_PREFIX}server" "$@"; }

# --- certificates: one CA, SPIFFE URI SANs, P-256 ---------------------------
pki() {
	cd "$D"
	openssl ecparam -name prime256v1 -genkey -noout -out ca-key.pem 2>/dev/null
	openssl req -x509 -new -key ca-key.pem -days 1 -subj "/O=cinch bench CA" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign" -out ca.pem 2>/dev/null
	for who in client server; do
		openssl ecparam -name prime256v1 -genkey -noout -out "$who-key.pem" 2>/dev/null
		openssl req -new -key "$who-key.pem" -subj "/" -out "$who.csr" 2>/dev/null
		printf 'subjectAltName=critical,URI:spiffe://cluster.local/ns/bench/sa/%s,IP:%s\n%s\n%s\n' \
			"$who" "$([ $who = server ] && echo "$SERVER_IP,DNS:server.cinch-bench" || echo $CLIENT_IP)" \
			"keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth,clientAuth" >"$who.ext"
		openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
			-days 1 -extfile "$who.ext" -out "$who.pem" 2>/dev/null
		cat "$who.pem" "$who-key.pem" >"$who-combined.pem"
	done
	cd - >/dev/null
}

# --- the origin --------------------------------------------------------------
origin() {
	cat >"$D/origin.conf" <<EOF
worker_processes 1;
daemon off;
pid $D/origin.pid;
error_log stderr error;
worker_rlimit_nofile 40000;
events { worker_connections 30000; }
http {
	access_log off;
	keepalive_requests 1000000;
	server {
		listen 0.0.0.0:8080 reuseport backlog=4096;
		location / { return 200 "hello from the origin\n"; }
	}
}
EOF
	netns_spawn origin server nginx -c "$D/origin.conf"
	netns_spawn iperf server iperf3 -s -p 5201
	netns_wait 5 in_server bash -c "exec 3<>/dev/tcp/127.0.0.1/8080"
}

# --- the peers: each starts its two sides; the client side listens on
# 127.0.0.1:9080 (HTTP) and 127.0.0.1:9201 (iperf3) in `client` -----------
start_stunnel() {
	for side in client server; do
		{
			echo "foreground = yes"
			echo "pid ="
			echo "debug = 3"
			echo "sslVersionMin = TLSv1.3"
			echo "CAfile = $D/ca.pem"
			echo "cert = $D/$side.pem"
			echo "key = $D/$side-key.pem"
			echo "verifyChain = yes"
			[ "$RESUME" = on ] || echo "options = NO_TICKET"
			for svc in http:9080:9443:8080 iperf:9201:9444:5201; do
				IFS=: read -r name lport tport oport <<<"$svc"
				echo "[$name]"
				if [ $side = client ]; then
					echo "client = yes"
					[ "$RESUME" = on ] || echo "sessionResume = no"
					echo "accept = 127.0.0.1:$lport"
					echo "connect = $SERVER_IP:$tport"
				else
					echo "accept = $SERVER_IP:$tport"
					echo "connect = 127.0.0.1:$oport"
					echo "requireCert = yes"
				fi
			done
		} >"$D/stunnel-$side.conf"
		netns_spawn "proxy-$side" $side stunnel4 "$D/stunnel-$side.conf"
	done
}

start_haproxy() {
	local reuse="" tickets=""
	[ "$RESUME" = on ] || { reuse=" no-ssl-reuse"; tickets=" no-tls-tickets"; }
	cat >"$D/haproxy-client.cfg" <<EOF
global
	nbthread 1
	maxconn 4000
defaults
	mode tcp
	timeout connect 5s
	timeout client 60s
	timeout server 60s
listen http
	bind 127.0.0.1:9080
	server s $SERVER_IP:9443 ssl verify required ca-file $D/ca.pem crt $D/client-combined.pem ssl-min-ver TLSv1.3$reuse
listen iperf
	bind 127.0.0.1:9201
	server s $SERVER_IP:9444 ssl verify required ca-file $D/ca.pem crt $D/client-combined.pem ssl-min-ver TLSv1.3$reuse
EOF
	cat >"$D/haproxy-server.cfg" <<EOF
global
	nbthread 1
	maxconn 4000
defaults
	mode tcp
	timeout connect 5s
	timeout client 60s
	timeout server 60s
listen http
	bind $SERVER_IP:9443 ssl crt $D/server-combined.pem ca-file $D/ca.pem verify required ssl-min-ver TLSv1.3$tickets
	server o 127.0.0.1:8080
listen iperf
	bind $SERVER_IP:9444 ssl crt $D/server-combined.pem ca-file $D/ca.pem verify required ssl-min-ver TLSv1.3$tickets
	server o 127.0.0.1:5201
EOF
	for side in client server; do
		netns_spawn "proxy-$side" $side haproxy -db -f "$D/haproxy-$side.cfg"
	done
}

# nginx's stream module, with mutual TLS (nginx) or without (plain: the
# same two relays carrying plaintext, the floor of the table below).
start_nginx() {
	local tls=${1:-tls}
	for side in client server; do
		{
			echo "load_module /usr/lib/nginx/modules/ngx_stream_module.so;"
			echo "worker_processes 1; daemon off; pid $D/nginx-$side.pid; error_log stderr error;"
			echo "events { worker_connections 8192; }"
			echo "stream {"
			for svc in 9080:9443:8080 9201:9444:5201; do
				IFS=: read -r lport tport oport <<<"$svc"
				if [ $side = client ]; then
					echo "server { listen 127.0.0.1:$lport; proxy_pass $SERVER_IP:$tport;"
					[ "$tls" = tls ] &&
						echo "  proxy_ssl on; proxy_ssl_protocols TLSv1.3; proxy_ssl_session_reuse $RESUME;" \
							"proxy_ssl_name server.cinch-bench;" \
							"proxy_ssl_certificate $D/client.pem; proxy_ssl_certificate_key $D/client-key.pem;" \
							"proxy_ssl_trusted_certificate $D/ca.pem; proxy_ssl_verify on;"
				else
					if [ "$tls" = tls ]; then
						echo "server { listen $SERVER_IP:$tport ssl; proxy_pass 127.0.0.1:$oport;"
						echo "  ssl_protocols TLSv1.3; ssl_certificate $D/server.pem; ssl_certificate_key $D/server-key.pem;"
						echo "  ssl_session_tickets $RESUME;"
						echo "  ssl_client_certificate $D/ca.pem; ssl_verify_client on;"
					else
						echo "server { listen $SERVER_IP:$tport; proxy_pass 127.0.0.1:$oport;"
					fi
				fi
				echo "}"
			done
			echo "}"
		} >"$D/nginx-$side.conf"
		netns_spawn "proxy-$side" $side nginx -c "$D/nginx-$side.conf"
	done
}
start_plain() { start_nginx plain; }

# The agent binary of a cinch peer: `before` runs the --before build.
agent_bin() { [ "${1:-cinch}" = before ] && echo "$BEFORE/cinch-agent" || echo "$BIN/cinch-agent"; }

start_cinch() {
	local bin
	bin=$(agent_bin "${1:-cinch}")
	cat >"$D/workloads.yaml" <<WL
apiVersion: cinch.dev/v1alpha1
kind: Workload
metadata: {name: client, namespace: bench}
spec: {serviceAccount: client, addresses: ["$CLIENT_IP"]}
---
apiVersion: cinch.dev/v1alpha1
kind: Workload
metadata: {name: server, namespace: bench}
spec: {serviceAccount: server, addresses: ["$SERVER_IP"]}
---
apiVersion: cinch.dev/v1alpha1
kind: AllowPolicy
metadata: {name: server-from-client, namespace: bench}
spec:
  selector: {workloads: [server]}
  ports: [8080, 5201]
  from: [{identities: ["spiffe://cluster.local/ns/bench/sa/client"]}]
WL
	chmod 755 "$D"
	chmod 644 "$D"/*.pem "$D/workloads.yaml"
	for side in client server; do
		in_$side "$bin" init >/dev/null
		netns_spawn "proxy-$side" $side setpriv --reuid=1337 --regid=1337 --clear-groups \
			"$bin" run --cert "$D/$side.pem" --key "$D/$side-key.pem" \
			--bundle "$D/ca.pem" --workloads "$D/workloads.yaml" \
			--policy "$D/workloads.yaml" --log-level warn --max-conns 30000 \
			$([ "$RESUME" = on ] || echo --no-resumption)
	done
}

stop_peer() {
	netns_kill proxy-client
	netns_kill proxy-server
	if [ "$1" = cinch ] || [ "$1" = before ]; then
		in_client "$(agent_bin "$1")" init --remove >/dev/null 2>&1
		in_server "$(agent_bin "$1")" init --remove >/dev/null 2>&1
	fi
}
start_before() { start_cinch before; }

# The URL and iperf3 target the load tools use for a peer.
# direct and cinch: the client connects to the server's own address.
transparent() { [ "$1" = direct ] || [ "$1" = cinch ] || [ "$1" = before ]; }
http_url() { transparent "$1" && echo "http://$SERVER_IP:8080/" || echo "http://127.0.0.1:9080/"; }
http_url_hostport() { transparent "$1" && echo "$SERVER_IP 8080" || echo "127.0.0.1 9080"; }
iperf_target() { transparent "$1" && echo "$SERVER_IP 5201" || echo "127.0.0.1 9201"; }

# The processes of one side of the peer (client or server): its session.
side_pids() {
	local f="$D/pids/proxy-$1.pid"
	[ -f "$f" ] && pgrep -s "$(cat "$f")" 2>/dev/null || true
}
# RSS in KiB of one side (every process of it).
side_rss() {
	local total=0 p
	for p in $(side_pids "$1"); do
		total=$((total + $(awk '/VmRSS/ {print $2}' /proc/$p/status 2>/dev/null || echo 0)))
	done
	echo $total
}
# RSS in KiB of the peer's processes (both sides).
peer_rss() { echo $(($(side_rss client) + $(side_rss server))); }
# CPU time used so far by one side, in clock ticks: utime + stime of each
# process (threads included), fields 14 and 15 of /proc/PID/stat (counted
# after the ")" that ends the command name, which may hold spaces).
side_ticks() {
	local total=0 p t
	for p in $(side_pids "$1"); do
		t=$(sed 's/^.*) //' /proc/$p/stat 2>/dev/null | awk '{print $12 + $13}')
		total=$((total + ${t:-0}))
	done
	echo $total
}
both_ticks() { echo "$(side_ticks client) $(side_ticks server)"; }
HZ=$(getconf CLK_TCK)
# Connections held through the agent pair: 10,000, or fewer where the
# descriptor limit cannot be raised (each agent holds two per connection:
# a container without CAP_SYS_RESOURCE keeps its hard limit).
ulimit -Hn 65536 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
HOLD_N=$(( $(ulimit -n) / 2 - 64 ))
[ "$HOLD_N" -gt 10000 ] && HOLD_N=10000
HOLD_N=${BENCH_HOLD_N:-$HOLD_N}

# wrk's summary as "rps p50_ms p99_ms".
wrk_run() {
	local url=$1
	shift
	in_client wrk -t1 -c32 -d"${SECS}s" --latency "$@" "$url" 2>&1 | python3 -c '
import re, sys
t = sys.stdin.read()
def ms(label):
    m = re.search(r"^\s*" + label + r"%\s+([\d.]+)(us|ms|s)\b", t, re.M)
    if not m:
        return "nan"
    v = float(m.group(1))
    return "%.3f" % (v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v)
rps = re.search(r"Requests/sec:\s+([\d.]+)", t)
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
if bad:
    sys.exit("wrk: %s non-2xx responses" % bad.group(1))
print(rps.group(1) if rps else "0", ms("50"), ms("99"))
'
}

iperf_run() {
	# shellcheck disable=SC2046
	in_client iperf3 -c $(iperf_target "$1" | cut -d" " -f1) -p $(iperf_target "$1" | cut -d" " -f2) \
		-t "$SECS" -J | python3 -c '
import json, sys
print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))'
}

# RSS growth per idle connection: N connections held open through the peer.
idle_per_conn() {
	local peer=$1 n=$2 before after
	before=$(peer_rss)
	in_client python3 - "$(http_url "$peer")" $n "$D/idle.ready" <<'EOF' &
import socket, sys, time, urllib.parse
u = urllib.parse.urlparse(sys.argv[1]); n = int(sys.argv[2])
socks = []
for _ in range(n):
    s = socket.create_connection((u.hostname, u.port))
    socks.append(s)
# one request on each, so every connection really crossed both proxies
for s in socks:
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
for s in socks:
    s.recv(4096)
open(sys.argv[3], "w").close()
time.sleep(8)
EOF
	local holder=$!
	netns_wait 30 test -f "$D/idle.ready" || true
	sleep 1
	after=$(peer_rss)
	kill $holder 2>/dev/null || true
	wait $holder 2>/dev/null || true
	rm -f "$D/idle.ready"
	echo $(((after - before) * 1024 / n))
}

measure() {
	local peer=$1 url
	url=$(http_url "$peer")
	netns_wait 10 in_client curl -fsS -o /dev/null "$url" || { echo "$peer: no traffic through it" >&2; return 1; }
	local idle ka nc tput load fixed
	idle=$(peer_rss)
	# shellcheck disable=SC2046
	fixed=$(in_client /usr/bin/python3 "$HERE/fixed_rate.py" $(http_url_hostport "$peer") 1000 "$SECS" | cut -d' ' -f1,2)
	local t0 t1 t2 t3 cpu rss1 rss10 per=0
	t0=$(both_ticks)
	ka=$(wrk_run "$url")
	t1=$(both_ticks)
	load=$(peer_rss)
	nc=$(wrk_run "$url" -H "Connection: close")
	t2=$(both_ticks)
	tput=$(iperf_run "$peer")
	t3=$(both_ticks)
	# CPU ms per 10,000 keep-alive requests, then CPU s per GB of iperf3,
	# client side and server side each
	cpu=$(python3 -c '
import sys
hz, secs, rps, gbit = (float(x) for x in sys.argv[1:5])
t = [[float(x) for x in sys.argv[i:i + 2]] for i in (5, 7, 9, 11)]
req = max(rps * secs, 1); gb = max(gbit * secs / 8, 1e-9)
print(" ".join("%.1f" % ((t[1][s] - t[0][s]) / hz * 1000 / req * 10000) for s in (0, 1)),
      " ".join("%.2f" % ((t[3][s] - t[2][s]) / hz / gb) for s in (0, 1)))
' "$HZ" "$SECS" "$(echo "$ka" | cut -d' ' -f1)" "$tput" $t0 $t1 $t2 $t3)
	sleep 1
	rss1="$(side_rss client) $(side_rss server)"
	sleep 9
	rss10="$(side_rss client) $(side_rss server)"
	[ "$peer" = direct ] || per=$(idle_per_conn "$peer" 1000)
	echo "$peer $ka $(echo "$nc" | cut -d' ' -f1) $tput $idle $load $per $fixed $cpu $rss1 $rss10"
}

# The full-handshake run: the peer restarted with resumption off, new
# connections/s only.
measure_full() {
	local peer=$1 url
	url=$(http_url "$peer")
	netns_wait 10 in_client curl -fsS -o /dev/null "$url" || { echo "$peer: no traffic through it" >&2; return 1; }
	echo "$peer $(wrk_run "$url" -H "Connection: close" | cut -d' ' -f1)"
}

# N connections held at once through the agent pair, each with one request
# answered: "n client_before server_before client_held server_held", the
# sides' RSS in KiB.
hold_conns() {
	local peer=$1 n=$2 before after holder
	before="$(side_rss client) $(side_rss server)"
	in_client python3 "$HERE/hold.py" "$(http_url "$peer")" "$n" "$D/hold.ready" 15 &
	holder=$!
	if ! netns_wait 250 test -f "$D/hold.ready"; then
		kill $holder 2>/dev/null || true
		wait $holder 2>/dev/null || true
		echo "$peer: $n connections not held" >&2
		return 1
	fi
	sleep 1
	after="$(side_rss client) $(side_rss server)"
	kill $holder 2>/dev/null || true
	wait $holder 2>/dev/null || true
	rm -f "$D/hold.ready"
	echo "$n $before $after"
}

# The agent pair under load, profiled (--profile): perf first, strace
# second (strace slows every syscall, so its run gives counts, not speed).
profile() {
	local out=$1 peer=${PEERS:-cinch} url pids w ka rps gbit
	mkdir -p "$out"
	RESUME=on
	"start_$peer"
	url=$(http_url "$peer")
	netns_wait 10 in_client curl -fsS -o /dev/null "$url" || { echo "$peer: no traffic" >&2; return 1; }
	pids=$(echo $(side_pids client) $(side_pids server) | tr ' ' ,)
	# the load of each kind: its figure (req/s, conn/s or Gbit/s) first
	load() {
		case $1 in
		keepalive) wrk_run "$url" ;;
		newconn) wrk_run "$url" -H "Connection: close" ;;
		bulk) iperf_run "$peer" ;;
		esac
	}
	for w in keepalive newconn bulk; do
		perf record -g -o "$out/perf-$w.data" -p "$pids" -- sleep "$SECS" >/dev/null 2>&1 &
		local rec=$!
		load $w >"$out/load-$w.txt"
		wait $rec || true
		perf report -i "$out/perf-$w.data" --no-children --sort symbol --stdio 2>/dev/null |
			grep -v '^$' | head -60 >"$out/perf-$w.txt" || true
		perf report -i "$out/perf-$w.data" --no-children --sort dso --stdio 2>/dev/null |
			grep -v '^#' | grep -v '^$' | head -15 >"$out/perf-$w-dso.txt" || true
		local tracers=""
		for side in client server; do
			# every process of the side (nginx: its master and worker)
			strace -c -f -o "$out/strace-$w-$side.txt" $(side_pids $side | sed 's/^/-p /') &
			tracers="$tracers $!"
		done
		sleep 1
		load $w >"$out/strace-load-$w.txt"
		# shellcheck disable=SC2086
		kill -INT $tracers 2>/dev/null || true
		# shellcheck disable=SC2086
		wait $tracers 2>/dev/null || true
	done
	ka=$(cut -d' ' -f1 "$out/strace-load-keepalive.txt")
	nc=$(cut -d' ' -f1 "$out/strace-load-newconn.txt")
	gbit=$(cat "$out/strace-load-bulk.txt")
	python3 - "$out" "$ka" "$nc" "$gbit" "$SECS" <<'EOF' | tee "$out/summary.txt"
import re, sys
out, rps, cps, gbit, secs = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
for w, unit, n in (("keepalive", "request", rps * secs), ("newconn", "connection", cps * secs),
                   ("bulk", "16 KiB", gbit * 1e9 / 8 * secs / 16384)):
    for side in ("client", "server"):
        calls = {}
        for line in open("%s/strace-%s-%s.txt" % (out, w, side)):
            f = line.split()
            if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
                calls[f[-1]] = int(f[3])
        tot = sum(calls.values())
        top = sorted(calls.items(), key=lambda kv: -kv[1])[:6]
        print("%s, %s side: %.2f syscalls per %s (%s)" % (w, side, tot / max(n, 1), unit,
              ", ".join("%s %.2f" % (k, v / max(n, 1)) for k, v in top)))
EOF
	stop_peer "$peer"
}

# --only LEG: that leg alone, ROUNDS times per peer in turn; a line per
# peer and round: "round peer figures...".
only_leg() {
	local peer=$1 t0 t1 ka
	case $ONLY in
	fixed)
		# shellcheck disable=SC2046
		in_client /usr/bin/python3 "$HERE/fixed_rate.py" $(http_url_hostport "$peer") 1000 "$SECS"
		;;
	keepalive)
		t0=$(both_ticks)
		ka=$(wrk_run "$(http_url "$peer")" | cut -d' ' -f1)
		t1=$(both_ticks)
		python3 -c '
import sys
hz, secs, rps = (float(x) for x in sys.argv[1:4])
t = [float(x) for x in sys.argv[4:8]]
print("%.0f %.1f" % (rps, (t[2] + t[3] - t[0] - t[1]) / hz * 1000 / max(rps * secs, 1) * 10000))
' "$HZ" "$SECS" "$ka" $t0 $t1
		;;
	esac
}

only_rounds() {
	local r p
	: >"$D/only"
	for r in $(seq "$ROUNDS"); do
		for p in $2; do
			RESUME=on
			[ "$p" = direct ] || "start_$p"
			echo "round $r: $p, $1" >&2
			if netns_wait 10 in_client curl -fsS -o /dev/null "$(http_url "$p")"; then
				echo "$r $p $(only_leg "$p")" >>"$D/only"
			else
				echo "$p: no traffic through it" >&2
			fi
			[ "$p" = direct ] || stop_peer "$p"
		done
	done
	python3 - "$1" "$D/only" "$SECS" <<'EOF'
import statistics, sys
leg, path, secs = sys.argv[1], sys.argv[2], sys.argv[3]
rows = [l.split() for l in open(path)]
peers = list(dict.fromkeys(r[1] for r in rows))
def each(v, fmt="%.2f"):
    return (fmt + " (%s)") % (statistics.median(v), ", ".join(fmt % x for x in v))
def table(caption, head, lines):
    print(caption % secs + "\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for line in lines:
        print("| " + " | ".join(line) + " |")
def mine(p, n):
    return [r for r in rows if r[1] == p and len(r) == n]
if leg == "fixed":
    direct = {r[0]: float(r[3]) for r in rows if r[1] == "direct" and len(r) == 6}
    table("Fixed rate of 1,000 requests/s (fixed_rate.py, 10 connections), %s s per peer and "
          "round; added p99 = the peer's p99 minus the direct path's of the same round; medians "
          "over rounds (each round's figure in brackets).",
          ("peer", "requests per round", "p50 ms", "p99 ms", "added p99 ms"),
          ((p, "%d" % statistics.median(int(r[4]) for r in mine(p, 6)),
            each([float(r[2]) for r in mine(p, 6)]), each([float(r[3]) for r in mine(p, 6)]),
            "-" if p == "direct" else
            each([float(r[3]) - direct[r[0]] for r in mine(p, 6) if r[0] in direct]))
           for p in peers))
else:
    table("Keep-alive requests/s (wrk, 32 connections), %s s per peer and round, and the CPU "
          "both sides spent per 10,000 requests; medians over rounds (each round's figure in "
          "brackets).",
          ("peer", "requests/s", "CPU ms per 10k requests, both sides"),
          ((p, each([float(r[2]) for r in mine(p, 4)], "%.0f"),
            each([float(r[3]) for r in mine(p, 4)], "%.0f")) for p in peers))
EOF
}

main() {
	# (called as conditions: netns.sh's functions expect no `set -e`)
	netns_bridge_up || { echo "proxies.sh: cannot make the bridge" >&2; exit 1; }
	netns_pod_up client "$CLIENT_IP/24" || { echo "proxies.sh: cannot make the pods" >&2; exit 1; }
	netns_pod_up server "$SERVER_IP/24" || { echo "proxies.sh: cannot make the pods" >&2; exit 1; }
	# Through the agents every connection takes two ephemeral ports of the
	# client pod toward the same server address and port (the app's,
	# redirected, and the agent's own): 10,000 held connections and the
	# TIME_WAIT of the new-connection legs do not fit Linux's default
	# 28,232 (the pods' own setting: nothing outside them changes).
	in_client sysctl -qw net.ipv4.ip_local_port_range="20000 65000"
	pki
	origin
	if [ -n "$PROFILE" ]; then
		profile "$PROFILE"
		return
	fi
	if [ -n "$HOLD_ONLY" ]; then # the connections held, alone
		RESUME=on
		start_cinch
		netns_wait 10 in_client curl -fsS -o /dev/null "$(http_url cinch)" || return 1
		hold_conns cinch "$HOLD_N" >"$D/hold"
		stop_peer cinch
		python3 "$HERE/table.py" /dev/null 1 0 /dev/null 0 "$D/hold"
		return
	fi
	local peers="direct plain stunnel haproxy nginx"
	[ -x "$BIN/cinch-agent" ] && peers="$peers cinch"
	[ -n "$BEFORE" ] && peers=${peers/cinch/before cinch}
	peers=${PEERS:-$peers}
	case $ONLY in
	fixed) only_rounds fixed "direct ${peers/direct/}"; return ;;
	keepalive) only_rounds keepalive "$peers"; return ;;
	"") ;;
	*) echo "proxies.sh: --only fixed or keepalive" >&2; exit 2 ;;
	esac
	: >"$D/results"
	: >"$D/full"
	: >"$D/hold"
	local limit=0
	[ -x "$BIN/hs_bench" ] &&
		limit=$("$BIN/hs_bench" "$D/ca.pem" "$D/server.pem" "$D/server-key.pem" "$SECS")
	for r in $(seq "$ROUNDS"); do
		for p in $peers; do
			RESUME=on
			[ "$p" = direct ] || "start_$p"
			echo "round $r: $p" >&2
			measure "$p" >>"$D/results" || true
			if [ "$p" = cinch ] && [ "$r" = 1 ] && [ "$HOLD_N" -gt 0 ]; then
				echo "round $r: $p, $HOLD_N connections held" >&2
				hold_conns "$p" "$HOLD_N" >>"$D/hold" || true
			fi
			[ "$p" = direct ] && continue
			stop_peer "$p"
			# (not for plain: it makes no handshakes)
			[ "$p" = plain ] && continue
			RESUME=off
			"start_$p"
			echo "round $r: $p, no resumption" >&2
			measure_full "$p" >>"$D/full" || true
			stop_peer "$p"
		done
	done
	python3 "$HERE/table.py" "$D/results" "$ROUNDS" "$SECS" "$D/full" "$limit" "$D/hold" |
		tee "${OUT:-/dev/null}"
}

main
