#!/bin/bash
# prometheus_test: the metrics as a Prometheus user sees them. The local
# mesh (deploy/local/mesh.sh: control + pods web, api, db; namespaces
# cxh-*, bridge cxh0, subnet 10.201.64.0/24) is scraped by the real
# Prometheus of Debian's `prometheus` package, run as a plain process in
# the root namespace (config file, temporary storage, 127.0.0.1:21931; not
# the systemd service), every second:
#   - `promtool check metrics` accepts control's and every agent's /metrics;
#   - /api/v1/targets: control and the three agents (their admin port on
#     the pod network) are up;
#   - /api/v1/query: build_info of both binaries, the connections counter,
#     the handshake histogram's buckets, the certificate time left, the
#     control's Watch streams (one per agent) and the process metrics;
#   - a denied connection (web -> db) shows in Prometheus as an increase of
#     cinch_agent_denials_total (bounded poll: scrapes are 1 s apart);
#   - TLS clients without a certificate, or with one of another CA, are
#     counted in cinch_agent_handshake_failures_total by their cause;
#   - with --peer-metrics 1, api's agent counts web's identity apart and
#     every later identity (or none) as peer="other";
#   - every cinch_* and process_* family scraped is in docs/metrics.md;
#   - every PromQL expression of deploy/grafana/cinch-mesh.json names a
#     metric this Prometheus has seen.
# Root only, and skipped (77) when prometheus or promtool is missing.
set -u
MESHTEST_TOOLS="ip iptables-restore curl socat openssl setpriv /usr/bin/python3 prometheus promtool"
MESH_BIN=$CINCH_BUILD/bin
NETNS_PREFIX=cxh-
NETNS_BRIDGE=cxh0
MESH_NET=10.201.64
MESH_ADMIN_PORT=15360
PROM=127.0.0.1:21931
# Per-peer counters on, capped at one identity per agent.
MESH_AGENT_ARGS="--peer-metrics 1"
. "$CINCH_SRC/tests/lib/meshtest.sh"

# q PROMQL: the query's first value ("" when it has none)
q() {
	curl -sS -m 5 "http://$PROM/api/v1/query" --data-urlencode "query=$1" | json '
d["data"]["result"][0]["value"][1] if d["status"] == "success" and d["data"]["result"] else ""'
}
has() { [ -n "$(q "$1")" ]; }
all_up() {
	curl -sS -m 5 "http://$PROM/api/v1/targets" | /usr/bin/python3 -c '
import json, sys
t = json.load(sys.stdin)["data"]["activeTargets"]
sys.exit(0 if len(t) == 4 and all(x["health"] == "up" for x in t) else 1)'
}
agents() { for p in $MESH_PODS; do echo "\"$(mesh_addr "$p"):15000\""; done | paste -sd, -; }

if ! mesh_up; then
	fail=1
	exit 1
fi
echo "ok: control plane and three agents ready"

# --- the exposition format, as promtool reads it
check "promtool accepts control's /metrics" \
	bash -c "curl -fsS -m 5 http://127.0.0.1:$MESH_ADMIN_PORT/metrics | promtool check metrics"
for p in $MESH_PODS; do
	check "promtool accepts $p's agent /metrics (from the pod network)" \
		bash -c "curl -fsS -m 5 http://$(mesh_addr "$p"):15000/metrics | promtool check metrics"
done

# --- Prometheus
mkdir -p "$MESH_STATE/prom/data"
cat >"$MESH_STATE/prom/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: cinch-control
    static_configs:
      - targets: ["127.0.0.1:$MESH_ADMIN_PORT"]
  - job_name: cinch-agent
    static_configs:
      - targets: [$(agents)]
YML
netns_spawn prometheus - prometheus --config.file="$MESH_STATE/prom/prometheus.yml" \
	--storage.tsdb.path="$MESH_STATE/prom/data" --web.listen-address="$PROM" \
	--storage.tsdb.retention.time=1h
check "Prometheus is ready" netns_wait 30 curl -fsS -m 2 "http://$PROM/-/ready"
check "every target is up (control and the three agents)" netns_wait 30 all_up

check "some traffic first: web -> api allowed" web_to_api
check "build_info of the control" netns_wait 10 has 'cinch_control_build_info{version!=""} == 1'
check "build_info of each agent" netns_wait 10 \
	eval '[ "$(q "count(cinch_agent_build_info == 1)")" = 3 ]'
check "the dashboard's agent memory query finds the three agents" netns_wait 10 \
	eval '[ "$(q "count(process_resident_memory_bytes and on (instance) cinch_agent_build_info)")" = 3 ]'
check "process metrics of every binary" netns_wait 10 \
	eval '[ "$(q "count(process_resident_memory_bytes > 0)")" = 4 ]'
check "cinch_agent_connections_total: web's allowed outbound connection" netns_wait 10 \
	has 'cinch_agent_connections_total{direction="outbound",verdict="allow"} > 0'
check "the handshake histogram's buckets, counting api's inbound handshake" netns_wait 10 \
	has 'cinch_agent_handshake_duration_seconds_bucket{direction="inbound",le="+Inf"} > 0'
check "web's outbound handshake is timed too" \
	has 'cinch_agent_handshake_duration_seconds_count{direction="outbound"} > 0'
check "the connection duration histogram has web's connection" netns_wait 10 \
	has 'cinch_agent_connection_duration_seconds_count{direction="outbound"} > 0'
check "a handshake latency quantile" netns_wait 10 \
	has 'histogram_quantile(0.5, sum by (le) (cinch_agent_handshake_duration_seconds_bucket))'
check "the certificate time left of every agent" netns_wait 10 \
	eval '[ "$(q "count(cinch_agent_cert_remaining_seconds > 0)")" = 3 ]'
check "control's Watch streams: one per agent" netns_wait 10 \
	eval '[ "$(q cinch_control_watch_streams)" = 3 ]'
check "control counts the snapshots it sent" netns_wait 10 has 'cinch_control_snapshots_sent_total >= 3'
check "control counts the configuration it published" has 'cinch_control_config_generations_total >= 1'

# --- a denial, seen as a counter increase
denials() { q 'sum(cinch_agent_denials_total) or vector(0)'; }
before=$(denials)
check "web -> db refused" not web_to_db
check "Prometheus sees the denial counter increase (from $before)" netns_wait 15 \
	eval '[ "$(denials)" -gt "${before:-0}" ]'
check "the denial is by reason" has 'cinch_agent_denials_total{reason!=""} > 0'

# --- handshake failures by cause: TLS clients from outside the mesh (the
# root namespace) at api:8080, which api's agent intercepts
hs_fail() { q "sum(cinch_agent_handshake_failures_total{direction=\"inbound\",cause=\"$1\"})"; }
tls_to_api() {
	timeout 5 openssl s_client -connect "$(mesh_addr api):8080" -quiet "$@" </dev/null >/dev/null 2>&1
}
tls_to_api
check "a TLS client without a certificate: cause no_client_cert" netns_wait 10 \
	eval '[ "$(hs_fail no_client_cert)" -ge 1 ]'
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=rogue \
	-keyout "$MESH_STATE/prom/rogue.key" -out "$MESH_STATE/prom/rogue.pem" 2>/dev/null
tls_to_api -cert "$MESH_STATE/prom/rogue.pem" -key "$MESH_STATE/prom/rogue.key"
check "a certificate of another CA: cause untrusted_chain" netns_wait 10 \
	eval '[ "$(hs_fail untrusted_chain)" -ge 1 ]'
check "and neither counts as expired" [ "$(hs_fail expired)" = 0 ]

# --- per-peer counters: the first identity has its own series, the rest
# (here the clients above, which had none) count as peer="other"
API_I="$(mesh_addr api):15000"
check "api counts web's connections under web's identity" has \
	"cinch_agent_peer_connections_total{instance=\"$API_I\",peer=\"spiffe://cluster.local/ns/demo/sa/web\",direction=\"inbound\",verdict=\"allow\"} > 0"
check "and the others under peer=\"other\"" has \
	"cinch_agent_peer_connections_total{instance=\"$API_I\",peer=\"other\"} > 0"
check "no more than the cap plus other" \
	[ "$(q "count(count by (peer) (cinch_agent_peer_connections_total{instance=\"$API_I\"}))")" = 2 ]

# --- the Grafana dashboard asks only for what exists
curl -sS -m 5 "http://$PROM/api/v1/label/__name__/values" | json '"\n".join(d["data"])' \
	>"$MESH_STATE/prom/names"
check "the dashboard names only metrics Prometheus has seen" \
	/usr/bin/python3 "$CINCH_SRC/tests/lib/dashboard_names.py" \
	"$CINCH_SRC/deploy/grafana/cinch-mesh.json" "$MESH_STATE/prom/names"
undocumented() {
	/usr/bin/python3 -c '
import sys
sys.path.insert(0, sys.argv[1])
from dashboard_names import known_names
seen = {n for n in open(sys.argv[2]).read().split() if n.startswith(("cinch_", "process_"))}
missing = sorted(seen - known_names(sys.argv[3]))
print("\n".join("undocumented: " + n for n in missing))
sys.exit(1 if missing else 0)' "$CINCH_SRC/tests/lib" "$MESH_STATE/prom/names" "$CINCH_SRC/docs/metrics.md"
}
check "every family Prometheus scraped is in docs/metrics.md" undocumented
exit $fail
