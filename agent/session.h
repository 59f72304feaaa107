/* session: one proxied connection of the agent, from accept to close,
 * and what the agent's modules share about it (internal to agent/).
 *
 *   proxy.c     the listeners, accept, the budgets, the policy re-check
 *   session.c   struct session: the callbacks of its two conn ends, its
 *               timer, session_finalize (the one close path) and the
 *               access-log record
 *   inbound.c   a caller's connection to the pod: peek, TLS, decide,
 *               dial the app
 *   outbound.c  the app's connection: original destination -> peer or
 *               egress decision -> dial (a Service's virtual IP: an
 *               endpoint chosen by svcpick, retried on another when it
 *               fails before the relay)
 *   pump.c      the relay: bytes between the two ends, both ways
 *
 * A session embeds its two ends (common/conn.h): `down`, the accepted
 * socket (the app's on outbound, the caller's on inbound), and `up`, the
 * one the agent dials (the destination, or the app on inbound; zeroed and
 * never conn_init'ed until then), and one timer (the connect and
 * handshake deadlines, then the relay's idle ticks). Every uv handle's
 * data is a struct conn * (the timer's is &down); conn->owner is the
 * session. States (session_state_name):
 *
 *   inbound:  WAIT -> PEEK -> [TLS: HANDSHAKE] -> CONNECT -> RELAY
 *   outbound: CONNECT -> [meshed: UP_HANDSHAKE] -> RELAY
 *   any -> CLOSING (session_finalize) -> freed when its last handle closed
 *
 * An outbound call to a Service's virtual IP (session.svc) whose endpoint
 * fails to connect or handshake (CONNECT, UP_HANDSHAKE: no app byte has
 * moved) does not end: up's end callback hands the failure to
 * outbound_up_failed, which marks the session `redial`; up closes as any
 * conn does, and its closed callback, instead of letting the session go,
 * dials the next endpoint into the same embedded up (outbound_redial). So
 * up is conn_init'ed again only once its handle has closed, and
 * session_finalize stays the one close path (a session finalized while a
 * redial waits just lets up's close drop the last handle).  *
 * session_finalize(s, reason, end, why) is idempotent: the first call
 * logs the session once (unless it is the self-probe), gives back its
 * budget places and finalizes both ends and the timer; the session is
 * freed by session_put when the last of them has closed. The conn ends
 * call it themselves on their errors (their `end` callback), with the
 * core's reason: so a failed connect is CONNECT_REFUSED, never a denial. */
#ifndef CINCH_AGENT_SESSION_H
#define CINCH_AGENT_SESSION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "conn.h"
#include "list.h"
#include "localaddr.h"
#include "mtls.h"
#include "policy.h"
#include "proxy.h"
#include "svcpick.h"
#include "verdict.h"

enum session_state {
	SESSION_ST_WAIT = 0,	 /* inbound: accepted, unread, until a handshake place frees */
	SESSION_ST_PEEK,	 /* inbound: the first bytes say TLS or plaintext */
	SESSION_ST_HANDSHAKE,	 /* inbound: the caller's TLS handshake */
	SESSION_ST_CONNECT,	 /* dialing up (the destination, or the app) */
	SESSION_ST_UP_HANDSHAKE, /* outbound: TLS with the destination's agent */
	SESSION_ST_RELAY,	 /* pump.c */
	SESSION_ST_CLOSING,	 /* session_finalize ran */
	SESSION_ST__COUNT,
};

#define SESSION_SRC_BUCKETS 256
/* A source's share of the handshake places (proxy.c). */
#define SESSION_HS_SHARE(max) ((max) / 2 ? (max) / 2 : 1)
/* After this long without a read a relayed session gives its buffers back. */
#define SESSION_QUIET_MS 2000

/* A source address with unfinished inbound connections (proxy.c). */
struct session_src {
	struct list_node link; /* in its bucket */
	struct sockaddr_storage addr;
	unsigned pending; /* unfinished connections from it */
	unsigned active;  /* of those, in PEEK or HANDSHAKE */
};

/* The budgets of one agent (proxy.c), shared by the proxies of its
 * workers. The counts of open connections are atomic (one add at accept,
 * one subtract when the session is freed); the handshake places and the
 * per-source table are behind the lock. */
struct proxy_budget {
	atomic_uint refs;    /* its creator's, and one per proxy */
	atomic_uint n_conns; /* open sessions counted (self-probes are not) */
	atomic_uint n_in;    /* of those, inbound */
	pthread_mutex_t lock;
	unsigned n_hs; /* inbound sessions in PEEK or HANDSHAKE */
	struct list_node srcs[SESSION_SRC_BUCKETS];
	struct list_node proxies; /* sharing it: woken when places free */
};

/* The proxy: the loop's connection core state and every session. */
struct proxy {
	uv_loop_t *loop;
	struct conn_loop cl; /* per-loop buffers (no static state: one per worker) */
	struct proxy_config cfg;
	uv_tcp_t out_l, in_l;
	uint16_t out_port, in_port; /* bound */
	struct mtls_ctx *tls;
	struct policy_slice *slice;
	proxy_log_cb log;
	void *arg;
	struct list_node sessions;
	struct proxy_budget *budget; /* cfg's, or its own (a reference held) */
	struct list_node budget_link; /* in budget->proxies */
	unsigned n_waiting;	      /* sessions in waiting (under budget->lock) */
	uv_async_t wake;	      /* a place freed on another proxy of the budget */
	struct list_node waiting;     /* SESSION_ST_WAIT, in arrival order */
	struct localaddr own; /* the pod's addresses (proxy.c: misdirected) */
	struct svcpick *pick; /* endpoint choice for Service calls (outbound.c) */
	int stopping, refs;
};

/* Endpoints one Service call may try before it fails (each one that fails
 * to connect or handshake is also skipped by the next calls: svcpick.h). */
#define OUTBOUND_SVC_TRIES 3

/* An outbound call to a Service's virtual IP (outbound.c); allocated
 * only for those. The endpoints tried, the last one the current. */
struct session_svc {
	struct sockaddr_storage vip; /* what the app dialed */
	uint16_t vport;
	struct svcpick_ep *tried[OUTBOUND_SVC_TRIES]; /* held (svcpick_put) */
	unsigned n_tried;
	int open;		     /* the current attempt is in flight (not failed) */
	uint64_t t_try;		     /* hrtime: its dial began */
	enum conn_reason last_error; /* of the last failed attempt */
	char key[320];		     /* the Service, "<ns>/<name>" */
	char endpoint[64];	     /* the current endpoint, "addr:port" */
};

struct session {
	struct proxy *p;
	struct list_node link; /* p->sessions */
	struct list_node wait; /* p->waiting while WAIT */
	enum session_state state;
	int outbound;
	struct conn down, up;
	uv_timer_t timer; /* data: &down */
	int handles;	  /* open: down, up (once inited), timer */
	struct mtls_ctx *tls;
	struct policy_slice *slice;
	struct sockaddr_storage src, local, dst;
	char src_s[64], dst_s[64];
	char *peer_id; /* the peer's SPIFFE ID (verified, or expected); NULL: none */
	uint16_t port;
	struct policy_decision d;
	struct mtls_conn *up_tls; /* outbound: made before the dial, taken by up */
	uint8_t *plain;		  /* inbound plaintext read while peeking, to send first */
	size_t plain_len;
	uint64_t t0, t_hs;		  /* accept, start of the TLS handshake */
	double hs_s;			  /* its duration once done, else < 0 */
	const char *hs_failure;		  /* proxy_record.handshake_failure */
	const char *tls_version, *cipher; /* static, taken at the handshake's end */
	uint64_t bytes_out, bytes_in;	  /* relayed: app -> peer, peer -> app */
	int shut;			  /* relay: ends whose write side is shut */
	int trimmed;			  /* relay: buffers given back since the last read */
	int relayed;
	unsigned probe : 1;	      /* the agent's self-probe: not logged, not counted */
	unsigned counted : 1;	      /* counted in the budget's n_conns */
	unsigned inbound_counted : 1; /* counted in the budget's n_in */
	unsigned hs_place : 1;	      /* holds a handshake place (PEEK, HANDSHAKE) */
	unsigned head : 1;	      /* outbound: the peer's verdict frame to read */
	unsigned redial : 1;	      /* outbound: up closes, then the next endpoint */
	struct session_src *srcent;   /* while unfinished (inbound) */
	struct verdict_rx vrx;
	struct verdict_refusal *refusal;
	struct session_svc *svc; /* outbound to a Service's virtual IP, else NULL */
	/* session_finalize's: */
	enum conn_reason reason;
	enum session_state ended_in;
	const char *end, *why;
};

const char *session_state_name(enum session_state s);
/* The callbacks of both ends (session.c). */
extern const struct conn_ops session_conn_ops;

/* The one close path (see the top). `end`: the access log's end word
 * (NULL: the reason's); `why`: the log's reason text when the policy
 * gave none (static; NULL: none). */
void session_finalize(struct session *s, enum conn_reason reason, const char *end, const char *why);
/* Dials up to `dst` (the route hook may change where: a unix-domain
 * address is dialed as such, on a pipe conn), with the TLS
 * transport t when given (taken); the timer gets connect_ms. */
void session_dial(struct session *s, struct mtls_conn *t);
/* (Re)arms the session's one timer. */
void session_timer(struct session *s, uint64_t ms, uint64_t repeat);
/* The end that is not c. */
static inline struct conn *session_other(struct session *s, struct conn *c)
{
	return c == &s->down ? &s->up : &s->down;
}

/* "addr:port", "[addr]:port" (proxy.c). */
void proxy_addr_str(const struct sockaddr_storage *a, char *out, size_t len);
/* An inbound session gives back its budget places (proxy.c). */
void proxy_unfinished_end(struct session *s);
/* A session is freed: out of the open-connection counts (proxy.c). */
void proxy_uncount(struct session *s);
/* A session or listener let go of the proxy; the last frees it (proxy.c). */
void proxy_unref(struct proxy *p);

/* inbound.c */
void inbound_begin(struct session *s);
int inbound_peek(struct session *s, const uint8_t *data, size_t n);
void inbound_tls_done(struct session *s);

/* outbound.c */
void outbound_begin(struct session *s);
void outbound_up_open(struct session *s);
/* up ended with `reason` before the relay: 1 when a Service call tries
 * another endpoint (s->redial set: outbound_redial once up has closed),
 * 0 when the session must end. */
int outbound_up_failed(struct session *s, enum conn_reason reason);
/* up has closed after outbound_up_failed: the next endpoint. */
void outbound_redial(struct session *s);
/* Lets go of the Service call's endpoint states (session_put). */
void outbound_svc_free(struct session *s);

/* pump.c */
void pump_start(struct session *s);
int pump_data(struct session *s, struct conn *from, const uint8_t *data, size_t n);
void pump_eof(struct session *s, struct conn *from);
void pump_drained(struct session *s, struct conn *to);
void pump_shut(struct session *s, struct conn *to);
void pump_tick(struct session *s);

#endif
