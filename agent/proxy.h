/* proxy: the agent's two listeners and what happens to each connection
 * between accept and relay.
 *
 *   outbound (15001)  the app's redirected connection: its original
 *       destination decides. A meshed workload: refused at once when its
 *       policy is known to refuse us on that port; else TCP to it, TLS 1.3
 *       as a client expecting exactly its SPIFFE ID, then relay. Not
 *       meshed: plaintext only when an EgressPolicy allows it.
 *   inbound (15006)   a redirected connection to the pod: the first bytes
 *       say TLS (a handshake record) or plaintext. TLS: terminated with a
 *       client certificate required, the caller's SPIFFE ID and the
 *       original port decided by the policy; plaintext: refused in STRICT,
 *       decided by address in PERMISSIVE. Allowed: TCP to the app at the
 *       original destination, which is one of the pod's own addresses
 *       (checked at accept, see below), then relay.
 *
 * Before anything else each accepted connection must be one the agent may
 * carry at all (refused, logged and counted otherwise, whatever the
 * policy):
 *   - redirected: its original destination differs from the listener's
 *     own address (a direct connection to 15001 or 15006 is not the app's
 *     traffic, nor a caller's to the app);
 *   - not a self-loop: its original destination is not one of the agent's
 *     own ports (outbound, inbound, admin) on a local address;
 *   - outbound: from a local source (the app in this pod);
 *   - inbound: to one of the pod's own, non-loopback addresses
 *     (localaddr.h): the agent dials the app there, so a caller can reach
 *     only what the pod serves on its own address, never another host nor
 *     a service bound to the pod's loopback.
 *
 * Each connection takes a reference to the current material (TLS context
 * and policy slice) when accepted: the TLS credentials a live connection
 * uses never change under it. A new policy, though, is applied to open
 * connections too (unless keep_on_policy_change): see proxy_set_material().
 * One access-log line per connection (proxy_log_cb). */
#ifndef CINCH_AGENT_PROXY_H
#define CINCH_AGENT_PROXY_H

#include <stdint.h>
#include <uv.h>

#include "conn.h"
#include "mtls.h"
#include "policy.h"
#include "verdict.h"

/* Is an accepted connection (from src, to the original destination dst,
 * on the outbound listener or not) the agent's own self-probe (probe.h)?
 * 1: the proxy closes it without logging it. */
typedef int (*proxy_probe_cb)(void *arg, int outbound, const struct sockaddr_storage *src,
			      const struct sockaddr_storage *dst);

struct proxy_config {
	const char *host; /* listen address, "0.0.0.0" or "::" */
	uint16_t outbound_port, inbound_port;
	uint16_t admin_port; /* 0: none; a destination like the listeners' */
	unsigned connect_ms, handshake_ms, idle_ms;
	/* The budgets (proxy.c): open connections; of those, places inbound
	 * may not take; inbound connections in their handshake at once;
	 * unfinished inbound connections from one address. */
	unsigned max_conns, outbound_reserve, max_handshakes, max_pending_per_source;
	/* Several proxies, one per loop (cinch-agent run --workers N), share
	 * one agent's budgets: the same budget (proxy_budget_new) in each,
	 * and listeners in a SO_REUSEPORT group on the same ports (group 1:
	 * the first, the ports must be free; 2: the others). NULL and 0: the
	 * proxy's own budget and plain listeners. */
	struct proxy_budget *budget;
	int group;
	int keep_on_policy_change; /* see proxy_set_material() */
	int force_strict;	   /* plaintext refused whatever the policy's mode */
	proxy_probe_cb probe;	   /* NULL: no self-probe */
	void *probe_arg;
	/* For tests that run the proxy in-process with no network
	 * (tests/unit/agent/conn_test.c); NULL in the agent. A NULL host: no
	 * listeners, the connections come by proxy_adopt (the ports above
	 * are still the agent's own for the self-loop check). route: where
	 * to dial for a destination (default: the destination), a
	 * unix-domain address (AF_UNIX) being dialed as such. own_addrs:
	 * the pod's addresses, n_own_addrs of them (default: the
	 * namespace's, localaddr.h). */
	void (*route)(void *arg, const struct sockaddr_storage *dst, struct sockaddr_storage *to);
	void *hook_arg;
	const struct sockaddr_storage *own_addrs;
	size_t n_own_addrs;
};

/* What the access log says of one connection; strings borrowed for the
 * call. */
struct proxy_record {
	const char *direction;		/* "outbound" or "inbound" */
	const char *src, *dst;		/* "addr:port" */
	const char *local_id, *peer_id; /* SPIFFE IDs; peer "" when plaintext */
	const char *verdict, *rule, *reason;
	const char *tls_version, *cipher; /* "" when plaintext */
	uint64_t bytes_out, bytes_in;	  /* app -> peer, peer -> app */
	double duration_s;
	/* Outbound: why the destination's agent refused us (verdict.h; it is
	 * peer_id); NULL when it did not. */
	const struct verdict_refusal *peer_refusal;
	const char *end;	       /* "closed", "reset", "idle", "refused", ... */
	int relayed;		       /* it reached the relay (duration_s is its lifetime) */
	double handshake_s;	       /* the TLS handshake's duration; < 0: none finished */
	const char *handshake_failure; /* a TLS handshake began and failed: the
					* cause (mtls_conn_failure_cause, or
					* "timeout", "reset"); else NULL */
	/* A connection error (conn_reason_name: connect_refused, reset, ...;
	 * cinch_agent_connection_errors_total), else CONN_ER_NONE. An error
	 * is never a denial: the verdict stays the policy's (allow for a
	 * failed connect to an allowed destination). */
	enum conn_reason error;
	const char
		*state; /* where it ended (session_state_name: "peek", "connect", "relay", ...) */
	int denied;	/* refused by the policy or the agent's own rules
			 * (cinch_agent_denials_total{reason}) */
	/* A call to a Service's virtual IP (dst): the Service "<ns>/<name>"
	 * and the endpoint chosen, "addr:port" (svcpick.h); "" otherwise. */
	const char *service, *endpoint;
};

typedef void (*proxy_log_cb)(void *arg, const struct proxy_record *r);

struct proxy;
struct proxy_budget;

/* A budget for proxies to share (proxy_config.budget); NULL on ENOMEM.
 * proxy_budget_free lets go of the creator's reference: it is freed with
 * the last proxy that shares it. */
struct proxy_budget *proxy_budget_new(void);
void proxy_budget_free(struct proxy_budget *b);

/* Listens on both ports (none when cfg->host is NULL). 0 and *out, or a
 * libuv error (UV_EINVAL: a budget of 0, or outbound_reserve not below
 * max_conns). */
int proxy_start(uv_loop_t *loop, const struct proxy_config *cfg, proxy_log_cb log, void *arg,
		struct proxy **out) __attribute__((warn_unused_result));
/* A connection accepted elsewhere, handed to p as if its outbound (or
 * inbound) listener had accepted it: fd, a connected stream socket (TCP or
 * unix-domain; taken, closed on any failure), from src, with the local
 * address and original destination dst that getsockname and
 * SO_ORIGINAL_DST would give. From there it goes the one accept path:
 * the accept helper (an allocation failure: closed at once, counted),
 * the checks, the budgets, the policy. For tests without a network
 * (tests/unit/agent/conn_test.c). */
void proxy_adopt(struct proxy *p, int outbound, uv_os_sock_t fd, const struct sockaddr_storage *src,
		 const struct sockaddr_storage *local, const struct sockaddr_storage *dst);
/* The material new connections use (references taken; NULL: none, and new
 * connections are refused: fail closed). A new slice is also applied to
 * the open connections: those that have not been decided yet will be
 * decided by it; those already allowed are decided again, and the ones it
 * denies are closed at once (unless keep_on_policy_change), logged with
 * end "policy_change" and the rule and reason of the new decision. Those
 * still allowed keep their TLS context and take the new decision. */
void proxy_set_material(struct proxy *p, struct mtls_ctx *tls, struct policy_slice *slice);
/* The ports the listeners are bound to (cfg's, or the kernel's for 0). */
void proxy_ports(const struct proxy *p, uint16_t *outbound, uint16_t *inbound);
/* Open connections (the self-probes are not counted), of every proxy
 * sharing p's budget. */
unsigned proxy_conns(const struct proxy *p);
/* Closes the listeners and every connection (run the loop afterwards). */
void proxy_stop(struct proxy *p);

#endif
