/* workers: `cinch-agent run --workers N`: N event loops, each with its own
 * proxy (proxy.h: its connection core state, its sessions, its two
 * listeners) and one budget for all of them (proxy_budget: the agent's
 * limits hold whatever worker a connection lands on).
 *
 * With N > 1 the listeners of every worker are bound to the same ports in
 * a SO_REUSEPORT group (the kernel spreads accepted connections among them
 * by a hash of the 4-tuple); worker 0's binds first and the agent refuses
 * to start when a port is already taken (conn_listen_group). The kernel
 * admits to a group only sockets of the same effective UID, the agent's.
 *
 * Worker 0 is the caller's loop: signals, the admin port, the self-probe,
 * reloads and the control-plane client stay there. Workers 1..N-1 each run
 * their loop on a thread of their own, and hear from worker 0 through a
 * mailbox (a lock and a uv_async):
 *   material  workers_set_material applies it on worker 0 at once and
 *             posts references to the others; each applies the latest on
 *             its own loop (proxy_set_material: its own open connections
 *             are decided again by a new policy);
 *   probes    a self-probe accepted on worker k > 0 is claimed there
 *             (closed, not logged) and posted to worker 0, whose probe
 *             (probe_claim) counts it;
 *   stop      workers_stop: every proxy stops on its own loop (its
 *             connections closed and logged as proxy_stop does); each
 *             thread ends with its loop; the caller's loop joins them and
 *             frees the rest as it runs out.
 * The access-log callback runs on the worker's thread and gets its number. */
#ifndef CINCH_AGENT_WORKERS_H
#define CINCH_AGENT_WORKERS_H

#include <uv.h>

#include "probe.h"
#include "proxy.h"

/* At most this many workers (--workers). */
#define WORKERS_MAX 64

typedef void (*workers_log_cb)(void *arg, unsigned worker, const struct proxy_record *r);

struct workers;

/* The CPUs this process may run on (sched_getaffinity), 1..WORKERS_MAX
 * (--workers auto). */
unsigned workers_default(void);

/* n workers (1..WORKERS_MAX) on `loop` (worker 0) and n - 1 threads, their
 * proxies configured by cfg (the budget, the listener group and the probe
 * hook are set here; `probe`: worker 0's self-probe, or NULL). 0 and *out,
 * or a libuv error (UV_EADDRINUSE: a port is taken) after which nothing
 * is left but handles that close as the caller runs its loop. */
int workers_start(uv_loop_t *loop, unsigned n, const struct proxy_config *cfg,
		  struct probe *probe, workers_log_cb log, void *arg, struct workers **out)
	__attribute__((warn_unused_result));
/* Worker 0's proxy (its ports are every worker's; proxy_conns counts the
 * connections of all). */
struct proxy *workers_proxy0(const struct workers *ws);
/* The material for every worker (references taken; NULL: none). Worker
 * 0's at once, the others' on their loops. */
void workers_set_material(struct workers *ws, struct mtls_ctx *tls, struct policy_slice *slice);
/* Stops every worker; once the caller's loop has run out, the threads are
 * joined and everything freed. */
void workers_stop(struct workers *ws);

#endif
