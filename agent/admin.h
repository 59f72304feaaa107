/* admin: the agent's admin port (15000, plain HTTP/1.1 on common/adminhttp).
 * It listens on every address, but only /live, /ready and /metrics (what
 * the kubelet's probes and Prometheus need) are served to the pod network;
 * /config and every other path answer 403 unless the connection is on
 * loopback (from inside the pod):
 *   /live     200 while the process runs
 *   /ready    200 once a certificate and a policy are loaded and the
 *             self-probe has seen interception work (probe.h), else 503
 *             saying what is missing
 *   /metrics  Prometheus text (every family in docs/metrics.md): build
 *             and process metrics; connections by direction and verdict,
 *             denials by reason (policy and the agent's own refusals
 *             only), connection errors by direction and reason (enum
 *             conn_reason: connect_refused, reset, ...), bytes by
 *             direction and flow, TLS
 *             handshake and connection duration histograms and handshake
 *             failures by cause (per direction), open connections,
 *             certificate expiry, policy version, interception verified,
 *             probe failures, connections closed by a policy change,
 *             outbound connections refused by the destination's agent
 *             (verdict.h) by code;
 *             readiness and the time left on the certificate; in live
 *             mode, the certificate source's consecutive failures and the
 *             configuration stream
 *             with --peer-metrics N, connections by peer identity, for
 *             the first N identities seen (then peer="other")
 *   /config   JSON: identity, workload, certificate serial and expiry,
 *             policy version, ports
 * The counters are fed by agentd from the access log records; with
 * several workers (--workers N), each worker's are apart and /metrics
 * gives their sums, and cinch_agent_worker_connections_total{worker} says
 * how many connections ended on each. */
#ifndef CINCH_AGENT_ADMIN_H
#define CINCH_AGENT_ADMIN_H

#include <pthread.h>
#include <stdint.h>
#include <uv.h>

#include "live.h"
#include "promtext.h"
#include "proxy.h"

#define ADMIN_MAX_REASONS 32
/* Per-peer counters (--peer-metrics N, off by default): at most this many
 * identities, each at most ADMIN_PEER_ID_MAX bytes; the rest count as
 * peer="other". */
#define ADMIN_MAX_PEERS	  64
#define ADMIN_PEER_ID_MAX 255
/* The causes of failed TLS handshakes (admin.c names them). */
#define ADMIN_N_HS_CAUSES 8

/* What the self-probe says of interception. */
enum admin_intercept {
	ADMIN_IC_PENDING = 0, /* no round finished yet */
	ADMIN_IC_OK,
	ADMIN_IC_BROKEN,
	ADMIN_IC_SKIPPED, /* --no-probe */
};

/* What the connections that ended on one worker add to the metrics. Each
 * worker counts into its own (admin_count, on its loop); /metrics, on
 * worker 0, sums them. The lock is taken by both, so it is contended
 * only while a scrape sums. */
struct admin_counts {
	pthread_mutex_t lock;
	uint64_t ended;					/* connections ended on this worker */
	uint64_t policy_closed[2];			/* [outbound?] closed by a policy change */
	uint64_t conns[2][3];				/* [outbound?][allow, deny, audit-deny] */
	uint64_t bytes[2][2];				/* [outbound?][from the peer?] */
	struct promtext_hist handshake[2], duration[2]; /* [outbound?] */
	uint64_t hs_failures[2][ADMIN_N_HS_CAUSES];	/* [outbound?][cause] */
	struct {
		char id[ADMIN_PEER_ID_MAX + 1]; /* "" : free; "none": no identity */
		uint64_t conns[2][3];		/* as conns */
	} peers[ADMIN_MAX_PEERS + 1];		/* the last: "other" */
	struct {
		const char *reason; /* static strings of the proxy and the policy */
		uint64_t n;
	} denials[ADMIN_MAX_REASONS];
	uint64_t refused_by_peer[VERDICT_N_CODES]; /* outbound, by the destination's agent */
	uint64_t errors[2][CONN_ER__COUNT];	   /* [outbound?][reason]: connection errors */
};

/* The rest is worker 0's (the admin port, the probe, the material). */
struct admin_state {
	int ready; /* a certificate and a policy are loaded */
	enum admin_intercept intercept;
	char intercept_why[256];
	uint64_t probe_failures; /* rounds that failed */
	char spiffe_id[2100], workload[256], serial[64], policy_version[80];
	int64_t cert_not_after;
	const struct live *live; /* live mode (borrowed; NULL once stopped), else NULL */
	uint16_t outbound_port, inbound_port, admin_port;
	unsigned peer_cap; /* 0: no per-peer counters; else <= ADMIN_MAX_PEERS */
	struct admin_counts *counts; /* one per worker (admin_counts_init) */
	unsigned n_counts;
};

/* st->counts for n workers: 0 or -ENOMEM. admin_counts_free once the
 * workers are stopped. */
int admin_counts_init(struct admin_state *st, unsigned n);
void admin_counts_free(struct admin_state *st);

/* Counts one connection that ended on `worker` (on that worker's loop). */
void admin_count(struct admin_state *st, unsigned worker, const struct proxy_record *r);

/* The self-probe's result callback (probe_result_cb; arg: the
 * admin_state): keeps /ready and the metrics current, and logs each change
 * (interception_verified, or interception_broken at error level). */
void admin_probed(void *arg, int ok, const char *why);

struct adminhttp;
/* Serves `st` (borrowed) and the proxy's open connections on host:port.
 * 0 and *out, or a libuv error. */
int admin_start(uv_loop_t *loop, const char *host, uint16_t port, struct admin_state *st,
		struct proxy *p, struct adminhttp **out) __attribute__((warn_unused_result));

#endif
