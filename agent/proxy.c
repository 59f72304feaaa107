/* proxy: see proxy.h.
 *
 * A connection's states (one function each, driven by libuv callbacks):
 *   inbound:  [WAIT] -> PEEK -> [TLS: HANDSHAKE] -> decide -> CONNECT -> RELAY
 *   outbound: decide -> CONNECT -> [meshed: UP_HANDSHAKE] -> RELAY
 * Before RELAY the connection owns its sockets and one timer (connect and
 * handshake deadlines); at RELAY the sockets go to the relay, and the
 * connection ends in the relay's done callback. Every end before that goes
 * through pc_refuse(), which logs and closes.
 *
 * Budgets. Anyone on the pod network can open TCP connections to the pod
 * (they are redirected to the inbound port) and send nothing; those must
 * not take the places of the app's outbound calls nor of real callers:
 *   - max_conns bounds every open connection, and inbound ones may take
 *     only max_conns - outbound_reserve of them: the rest is the app's;
 *   - an inbound connection is "unfinished" from accept until its
 *     handshake is done (or its plaintext decided): at most
 *     max_handshakes of them read and handshake at once, and at most
 *     half of those places (PC_HS_SHARE) go to one source address; the others
 *     WAIT, accepted but unread (no TLS state, about a kilobyte each),
 *     and take a place in arrival order when one frees, skipping sources
 *     at their share. So a burst from one caller is delayed, not refused,
 *     and a source that holds its places with silent connections delays
 *     only itself;
 *   - at most max_pending_per_source unfinished connections (waiting or
 *     handshaking) per source address: beyond, refused at once;
 *   - handshake_ms runs from accept, waiting included: every unfinished
 *     connection is gone after it.
 * The sources with unfinished connections are kept in a small hash table
 * (struct pc_src), an entry freed with its last unfinished connection.
 *
 * Between agents (they negotiated VERDICT_ALPN, verdict.h) the inbound
 * side tells the caller its decision in the first bytes of its stream:
 * two bytes on an allow, the reason on a refusal (pc_tell_refusal). The
 * outbound side starts its relay at once all the same, and takes the
 * frame off the server's stream (pc_verdict_head): an allow costs no
 * round trip, a refusal ends the relay and is logged and counted on the
 * caller's side. */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "localaddr.h"
#include "log.h"
#include "origdst.h"
#include "relay.h"
#include "svcpick.h"
#include "verdict.h"

enum pc_state {
	PC_PEEK = 0, /* also the state of a connection being accepted */
	PC_WAIT,     /* inbound: accepted, unread, until a handshake place frees */
	PC_HANDSHAKE,
	PC_CONNECT,
	PC_UP_HANDSHAKE,
	PC_RELAY,
	PC_CLOSING,
};

#define PC_SRC_BUCKETS 256
/* A source's share of the handshake places. */
#define PC_HS_SHARE(max) ((max) / 2 ? (max) / 2 : 1)

/* A source address with unfinished inbound connections (see the top). */
struct pc_src {
	struct pc_src *next; /* in its bucket */
	struct sockaddr_storage addr;
	unsigned pending; /* unfinished connections from it */
	unsigned active;  /* of those, in PEEK or HANDSHAKE */
};

struct proxy {
	uv_loop_t *loop;
	struct proxy_config cfg;
	uv_tcp_t out_l, in_l;
	struct mtls_ctx *tls;
	struct policy_slice *slice;
	proxy_log_cb log;
	void *arg;
	struct pconn *conns;
	unsigned n_conns, n_probes;	      /* n_conns counts the self-probes too */
	unsigned n_in;			      /* inbound connections (probes aside) */
	unsigned n_hs;			      /* inbound connections in PEEK or HANDSHAKE */
	struct pconn *wait_first, *wait_last; /* PC_WAIT, in arrival order */
	struct pc_src *srcs[PC_SRC_BUCKETS];
	struct localaddr own; /* the pod's addresses, for pc_misdirected() */
	struct svcpick *pick; /* endpoint choice for Service calls */
	int stopping, refs;
};

/* Endpoints one Service call may try before it fails (each one that fails
 * to connect or handshake is skipped by the next calls: svcpick.h). */
#define PC_SVC_TRIES 3

/* A call to a Service's virtual IP (pc_service): what the app dialed, the
 * endpoints tried (the last one is the current), for the log. */
struct pc_svc {
	int on;
	struct sockaddr_storage vip;
	uint16_t vport;
	struct svcpick_ep *tried[PC_SVC_TRIES];
	unsigned n_tried;
	int open; /* the current attempt is in flight (not failed) */
	uint64_t t_try;
	char key[320];
	char endpoint[64]; /* "addr:port" of the current one */
};

struct pconn {
	struct proxy *p;
	struct pconn *next, **pprev;
	enum pc_state state;
	int outbound;
	uv_tcp_t *down, *up;
	uv_connect_t creq;
	uv_timer_t timer;
	struct mtls_ctx *tls;
	struct policy_slice *slice;
	struct mtls_conn *down_tls, *up_tls;
	struct sockaddr_storage src, dst;
	char src_s[64], dst_s[64];
	char *peer_id; /* the peer's SPIFFE ID (verified, or expected); NULL: none */
	uint16_t port;
	struct policy_decision d;
	uint8_t *plain; /* inbound plaintext read while peeking, to send first */
	size_t plain_len;
	uint64_t t0;
	uint64_t t_hs;		/* when the TLS handshake began */
	double hs_s;		/* its duration once done, else < 0 */
	const char *hs_failure; /* see proxy_record.handshake_failure */
	int handles;		/* open handles of the connection itself */
	struct relay *relay;
	const char *end;	     /* why the relay was stopped, when the proxy stopped it */
	unsigned probe;		     /* 1: the agent's self-probe, not counted as a connection */
	unsigned inbound_counted;    /* 1: counted in p->n_in */
	struct pc_src *srcent;	     /* while unfinished (inbound): its source */
	int hs_place;		     /* 1: holds a handshake place (PEEK, HANDSHAKE) */
	struct pconn *wprev, *wnext; /* in the wait list while PC_WAIT */

	/* Outbound to an agent (verdict.h): its frame, and why it refused. */
	struct verdict_rx vrx;
	struct verdict_refusal *refusal;
	struct pc_svc svc;
};

/* What a connection reads before the relay (a peek, handshake records) is
 * dealt with before the read callback returns, on the one loop: all
 * connections read into this buffer. */
static uint8_t pc_rbuf[16384];

static void pc_write_tls(struct pconn *c, uv_tcp_t *s, struct mtls_conn *t);
static void pc_timeout(uv_timer_t *t);

static void addr_str(const struct sockaddr_storage *a, char *out, size_t len)
{
	char ip[64] = "?";
	uint16_t port = 0;
	if (a->ss_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)a)->sin_addr, ip, sizeof(ip));
		port = ntohs(((const struct sockaddr_in *)a)->sin_port);
		snprintf(out, len, "%s:%u", ip, port);
	} else {
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)a)->sin6_addr, ip, sizeof(ip));
		port = ntohs(((const struct sockaddr_in6 *)a)->sin6_port);
		snprintf(out, len, "[%s]:%u", ip, port);
	}
}

static uint16_t addr_port(const struct sockaddr_storage *a)
{
	return ntohs(a->ss_family == AF_INET ? ((const struct sockaddr_in *)a)->sin_port
					     : ((const struct sockaddr_in6 *)a)->sin6_port);
}

static void pc_log(struct pconn *c, const char *end, uint64_t out, uint64_t in)
{
	/* TLS details only for a connection whose handshake finished. */
	struct mtls_conn *t = c->state == PC_RELAY ? (c->outbound ? c->up_tls : c->down_tls) : NULL;
	struct proxy_record r = {
		.direction = c->outbound ? "outbound" : "inbound",
		.src = c->src_s,
		.dst = c->dst_s,
		.local_id = c->tls ? mtls_ctx_spiffe_id(c->tls) : "",
		.peer_id = c->peer_id ? c->peer_id : "",
		.verdict = policy_verdict_name(c->d.verdict),
		.rule = c->d.rule ? c->d.rule : "",
		.reason = c->d.reason ? c->d.reason : "",
		.tls_version = t ? mtls_conn_version(t) : "",
		.cipher = t ? mtls_conn_cipher(t) : "",
		.bytes_out = out,
		.bytes_in = in,
		.duration_s = (double)(uv_hrtime() - c->t0) / 1e9,
		.end = end,
		.peer_refusal = c->refusal,
		.relayed = c->state == PC_RELAY,
		.handshake_s = c->hs_s,
		.handshake_failure = c->hs_failure,
		.service = c->svc.on ? c->svc.key : "",
		.endpoint = c->svc.on ? c->svc.endpoint : "",
	};
	c->p->log(c->p->arg, &r);
}

static void proxy_unref(struct proxy *p)
{
	if (--p->refs > 0)
		return;
	mtls_ctx_unref(p->tls);
	policy_slice_unref(p->slice);
	svcpick_free(p->pick);
	free(p);
}

static void pc_free(struct pconn *c)
{
	*c->pprev = c->next;
	if (c->next)
		c->next->pprev = c->pprev;
	c->p->n_conns--;
	c->p->n_probes -= c->probe;
	c->p->n_in -= c->inbound_counted;
	mtls_conn_free(c->down_tls);
	mtls_conn_free(c->up_tls);
	mtls_ctx_unref(c->tls);
	policy_slice_unref(c->slice);
	free(c->plain);
	free(c->peer_id);
	free(c->refusal);
	verdict_rx_cleanup(&c->vrx);
	for (unsigned i = 0; i < c->svc.n_tried; i++)
		svcpick_put(c->svc.tried[i], i + 1 == c->svc.n_tried && c->svc.open);
	struct proxy *p = c->p;
	free(c);
	proxy_unref(p);
}

static void pc_handle_closed(uv_handle_t *h)
{
	struct pconn *c = h->data;
	if (h != (uv_handle_t *)&c->timer)
		free(h);
	if (--c->handles == 0)
		pc_free(c);
}

/* ---- the handshake budget (see the top of the file) */

static unsigned pc_src_hash(const struct sockaddr_storage *a)
{
	const uint8_t *b = a->ss_family == AF_INET
				   ? (const uint8_t *)&((const struct sockaddr_in *)a)->sin_addr
				   : ((const struct sockaddr_in6 *)a)->sin6_addr.s6_addr;
	size_t n = a->ss_family == AF_INET ? 4 : 16;
	uint32_t h = 2166136261u; /* FNV-1a */

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 16777619u;
	return h % PC_SRC_BUCKETS;
}

/* The entry of `addr`, made if needed. NULL on ENOMEM. */
static struct pc_src *pc_src_get(struct proxy *p, const struct sockaddr_storage *addr)
{
	struct pc_src **b = &p->srcs[pc_src_hash(addr)], *e;

	for (e = *b; e; e = e->next)
		if (localaddr_same((const struct sockaddr *)&e->addr, (const struct sockaddr *)addr,
				   0))
			return e;
	if (!(e = calloc(1, sizeof(*e))))
		return NULL;
	e->addr = *addr;
	e->next = *b;
	*b = e;
	return e;
}

static void pc_wait_unlink(struct pconn *c)
{
	struct proxy *p = c->p;

	*(c->wprev ? &c->wprev->wnext : &p->wait_first) = c->wnext;
	*(c->wnext ? &c->wnext->wprev : &p->wait_last) = c->wprev;
	c->wprev = c->wnext = NULL;
}

static void pc_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);
static void pc_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);

/* A waiting (or new) inbound connection takes a handshake place. */
static void pc_begin_handshake(struct pconn *c)
{
	if (c->state == PC_WAIT)
		pc_wait_unlink(c);
	c->hs_place = 1;
	c->srcent->active++;
	c->p->n_hs++;
	c->state = PC_PEEK;
	uv_read_start((uv_stream_t *)c->down, pc_alloc, pc_read);
}

/* Places freed: the waiting connections take them in arrival order,
 * skipping those whose source holds its share. */
static void pc_promote(struct proxy *p)
{
	unsigned share = PC_HS_SHARE(p->cfg.max_handshakes);

	for (struct pconn *w = p->wait_first, *next; w && p->n_hs < p->cfg.max_handshakes;
	     w = next) {
		next = w->wnext;
		if (w->srcent->active < share)
			pc_begin_handshake(w);
	}
}

/* An inbound connection is finished (decided) or closing: it gives back
 * its place in the budget. Only a freed handshake place lets a waiting
 * connection in (a refused or timed-out one that had none does not: so a
 * flood of refusals costs no walk of the wait list). */
static void pc_unfinished_end(struct pconn *c)
{
	struct proxy *p = c->p;
	struct pc_src *e = c->srcent;
	int freed = c->hs_place;

	if (!e)
		return;
	if (c->state == PC_WAIT)
		pc_wait_unlink(c);
	if (freed) {
		c->hs_place = 0;
		e->active--;
		p->n_hs--;
	}
	c->srcent = NULL;
	if (--e->pending == 0) {
		struct pc_src **b = &p->srcs[pc_src_hash(&e->addr)];
		while (*b != e)
			b = &(*b)->next;
		*b = e->next;
		free(e);
	}
	if (freed && !p->stopping)
		pc_promote(p);
}

/* Closes a connection that never reached the relay, without a word. */
static void pc_close(struct pconn *c)
{
	pc_unfinished_end(c);
	c->state = PC_CLOSING;
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, pc_handle_closed);
	c->down->data = c;
	uv_close((uv_handle_t *)c->down, pc_handle_closed);
	if (c->up) {
		c->up->data = c;
		uv_close((uv_handle_t *)c->up, pc_handle_closed);
	}
}

/* The end of a connection that never reached the relay. */
static void pc_refuse(struct pconn *c, const char *end, const char *reason)
{
	if (c->state == PC_CLOSING)
		return;
	if (reason) {
		c->d.verdict = c->d.verdict == POLICY_ALLOW ? POLICY_DENY : c->d.verdict;
		c->d.reason = reason;
	}
	pc_log(c, end, 0, 0);
	pc_close(c);
}

static void pc_relay_done(void *arg, const struct relay_stats *st)
{
	struct pconn *c = arg;
	static const char *const ends[] = {
		[RELAY_CLOSED] = "closed",	 [RELAY_RESET] = "reset",
		[RELAY_TLS_ERROR] = "tls_error", [RELAY_IDLE] = "idle",
		[RELAY_STOPPED] = "stopped",	 [RELAY_REFUSED] = "refused_by_peer",
	};
	/* down is the relay's a side: the app when outbound, the peer inbound */
	uint64_t out = c->outbound ? st->a_to_b : st->b_to_a;
	uint64_t in = c->outbound ? st->b_to_a : st->a_to_b;

	pc_log(c, c->end ? c->end : ends[st->reason], out, in);
	c->down = c->up = NULL;
	c->down_tls = c->up_tls = NULL; /* freed by the relay */
	if (--c->handles == 0)
		pc_free(c);
}

/* Outbound to an agent: the server's first bytes are its verdict frame
 * (relay_head_cb). A refusal, or a frame that is not one, ends the
 * relay: the app sees its connection closed, as without the frame. */
static int pc_verdict_head(void *arg, const uint8_t *data, size_t n, size_t *used)
{
	struct pconn *c = arg;
	struct verdict_refusal r;
	const char *why = NULL;
	int rc = verdict_rx_feed(&c->vrx, data, n, used, &r, &why);

	if (rc == VERDICT_RX_MORE || rc == VERDICT_RX_ALLOW)
		return rc == VERDICT_RX_ALLOW;
	if (rc < 0) { /* our own words, never the peer's bytes */
		r = (struct verdict_refusal){.code = VERDICT_INVALID, .port = c->port};
		snprintf(r.reason, sizeof(r.reason), "%s", why ? why : "invalid refusal message");
	}
	if ((c->refusal = malloc(sizeof(*c->refusal))))
		*c->refusal = r;
	return -1;
}

static void pc_service_ok(struct pconn *c);

static void pc_start_relay(struct pconn *c)
{
	struct proxy *p = c->p;
	if (c->outbound)
		pc_service_ok(c);
	/* The inbound plaintext already read goes to the app first. */
	if (c->plain_len) {
		uv_buf_t b = uv_buf_init((char *)c->plain, (unsigned)c->plain_len);
		if (uv_try_write((uv_stream_t *)c->up, &b, 1) != (int)c->plain_len) {
			pc_refuse(c, "reset", "could not pass the first bytes to the app");
			return;
		}
	}
	uv_timer_stop(&c->timer);
	uv_read_stop((uv_stream_t *)c->down);
	if (c->up)
		uv_read_stop((uv_stream_t *)c->up);
	int agent = c->outbound && c->up_tls && mtls_conn_agent_peer(c->up_tls);
	if (relay_start(p->loop, c->down, c->down_tls, c->up, c->up_tls, p->cfg.idle_ms,
			agent ? pc_verdict_head : NULL, pc_relay_done, c, &c->relay) < 0) {
		pc_refuse(c, "refused", "out of memory");
		return;
	}
	c->state = PC_RELAY;
	/* The sockets are the relay's now: the connection keeps its timer (to
	 * close) and the relay (which ends in pc_relay_done). */
	c->handles = 2;
	uv_close((uv_handle_t *)&c->timer, pc_handle_closed);
}

/* ---- TLS handshakes on a socket */

struct pc_write {
	uv_write_t req;
	uint8_t data[];
};

static void pc_written(uv_write_t *req, int status)
{
	(void)status;
	free(req->data);
}

static void pc_write_tls(struct pconn *c, uv_tcp_t *s, struct mtls_conn *t)
{
	size_t n = mtls_conn_pending_out(t);
	if (n == 0)
		return;
	struct pc_write *w = malloc(sizeof(*w) + n);
	if (!w) {
		pc_refuse(c, "refused", "out of memory");
		return;
	}
	n = mtls_conn_take_out(t, w->data, n);
	w->req.data = w;
	uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)n);
	if (uv_write(&w->req, (uv_stream_t *)s, &b, 1, pc_written) < 0)
		free(w);
}

static void pc_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	(void)h;
	(void)hint;
	*buf = uv_buf_init((char *)pc_rbuf, sizeof(pc_rbuf));
}

static void pc_connect(struct pconn *c);
static int pc_service_retry(struct pconn *c, const char *why);

/* Inbound, refused, the caller an agent: the reason goes to it (verdict.h)
 * before the connection closes. It never waits: the frame and
 * close_notify are a few hundred bytes for a socket whose send buffer is
 * empty after the handshake; what does not go at once is dropped (the
 * caller then sees a plain close, as from an agent without the frame). */
static void pc_tell_refusal(struct pconn *c)
{
	uint8_t frame[2 + VERDICT_MAX], out[4096];
	int n = verdict_encode_refusal(frame, sizeof(frame), VERDICT_POLICY_DENY, c->d.reason,
				       c->port);
	size_t len;

	if (n < 0 || mtls_conn_write(c->down_tls, frame, (size_t)n) < 0)
		return;
	mtls_conn_shutdown(c->down_tls);
	while ((len = mtls_conn_take_out(c->down_tls, out, sizeof(out))) > 0) {
		uv_buf_t b = uv_buf_init((char *)out, (unsigned)len);
		if (uv_try_write((uv_stream_t *)c->down, &b, 1) != (int)len)
			return;
	}
}

/* Inbound, after the TLS handshake or for plaintext: the policy. */
static void pc_decide_inbound(struct pconn *c)
{
	pc_unfinished_end(c);
	const char *id = c->down_tls ? mtls_conn_peer_id(c->down_tls) : NULL;
	if (id && !(c->peer_id = strdup(id))) {
		pc_refuse(c, "refused", "out of memory");
		return;
	}
	policy_slice_decide_inbound(c->slice, id, (struct sockaddr *)&c->src, c->port, &c->d);
	int agent = c->down_tls && mtls_conn_agent_peer(c->down_tls);
	if (c->d.verdict == POLICY_DENY) {
		if (agent)
			pc_tell_refusal(c);
		pc_refuse(c, "denied", NULL);
		return;
	}
	if (agent) {
		if (mtls_conn_write(c->down_tls, verdict_allow, sizeof(verdict_allow)) < 0) {
			pc_refuse(c, "refused", "out of memory");
			return;
		}
		pc_write_tls(c, c->down, c->down_tls);
		if (c->state == PC_CLOSING)
			return;
	}
	pc_connect(c);
}

static void pc_handshake_step(struct pconn *c, uv_tcp_t *s, struct mtls_conn *t)
{
	const char *why = NULL;
	int r = mtls_conn_handshake(t, &why);

	pc_write_tls(c, s, t);
	if (c->state == PC_CLOSING)
		return;
	if (r < 0) {
		if (c->outbound && pc_service_retry(c, why))
			return;
		c->d.verdict = POLICY_DENY;
		c->hs_failure = mtls_conn_failure_cause(t);
		pc_refuse(c, "handshake_failed", why);
		return;
	}
	if (r != MTLS_HS_DONE)
		return;
	c->hs_s = (double)(uv_hrtime() - c->t_hs) / 1e9;
	/* What follows the handshake waits in the socket for the relay. */
	uv_read_stop((uv_stream_t *)s);
	if (c->state == PC_HANDSHAKE)
		pc_decide_inbound(c);
	else
		pc_start_relay(c); /* outbound: identity checked in the handshake */
}

static void pc_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	struct pconn *c = st->data;
	(void)buf;

	if (n == 0 || c->state == PC_CLOSING)
		return;
	if (n < 0) {
		if (c->state == PC_HANDSHAKE || c->state == PC_UP_HANDSHAKE)
			c->hs_failure = "reset";
		pc_refuse(c, "reset", "peer closed before the connection was set up");
		return;
	}
	if (c->state == PC_PEEK) {
		if (pc_rbuf[0] == 0x16) { /* a TLS handshake record */
			if (mtls_conn_new_server(c->tls, &c->down_tls) < 0) {
				pc_refuse(c, "refused", "out of memory");
				return;
			}
			c->state = PC_HANDSHAKE;
			c->t_hs = uv_hrtime();
		} else if (c->p->cfg.force_strict ||
			   policy_slice_mtls(c->slice) == POLICY_MTLS_STRICT) {
			c->d.verdict = POLICY_DENY;
			pc_refuse(c, "denied", "plaintext refused: mTLS mode is STRICT");
			return;
		} else {
			if (!(c->plain = malloc((size_t)n))) {
				pc_refuse(c, "refused", "out of memory");
				return;
			}
			memcpy(c->plain, pc_rbuf, (size_t)n);
			c->plain_len = (size_t)n;
			uv_read_stop(st);
			pc_decide_inbound(c);
			return;
		}
	}
	struct mtls_conn *t = c->state == PC_HANDSHAKE ? c->down_tls : c->up_tls;
	uv_tcp_t *s = c->state == PC_HANDSHAKE ? c->down : c->up;
	if (mtls_conn_feed(t, pc_rbuf, (size_t)n) < 0) {
		pc_refuse(c, "refused", "out of memory");
		return;
	}
	pc_handshake_step(c, s, t);
}

/* ---- connecting upstream */

static void pc_connected(uv_connect_t *req, int status)
{
	struct pconn *c = req->data;

	if (c->state == PC_CLOSING)
		return;
	if (status < 0) {
		if (c->outbound && pc_service_retry(c, uv_strerror(status)))
			return;
		pc_refuse(c, "connect_failed", uv_strerror(status));
		return;
	}
	if (c->outbound && c->up_tls) {
		c->state = PC_UP_HANDSHAKE;
		c->t_hs = uv_hrtime();
		uv_timer_start(&c->timer, pc_timeout, c->p->cfg.handshake_ms, 0);
		uv_read_start((uv_stream_t *)c->up, pc_alloc, pc_read);
		pc_handshake_step(c, c->up, c->up_tls);
		return;
	}
	pc_start_relay(c);
}

static void pc_timeout(uv_timer_t *t)
{
	struct pconn *c = t->data;
	/* A connect in progress is not retried (its request is still pending
	 * on the handle), but the endpoint is marked failed all the same. */
	if (c->state == PC_UP_HANDSHAKE && pc_service_retry(c, "handshake timed out"))
		return;
	if (c->state == PC_CONNECT && c->svc.on && c->svc.open) {
		svcpick_done(c->svc.tried[c->svc.n_tried - 1], 0, 0, uv_now(c->p->loop));
		c->svc.open = 0;
	}
	if (c->state == PC_HANDSHAKE || c->state == PC_UP_HANDSHAKE)
		c->hs_failure = "timeout";
	pc_refuse(c, "timeout",
		  c->state == PC_CONNECT ? "connect timed out" : "handshake timed out");
}

static void pc_connect(struct pconn *c)
{
	struct proxy *p = c->p;

	c->state = PC_CONNECT;
	c->up = malloc(sizeof(*c->up));
	if (!c->up || uv_tcp_init(p->loop, c->up) < 0) {
		free(c->up);
		c->up = NULL;
		pc_refuse(c, "refused", "out of memory");
		return;
	}
	c->up->data = c;
	c->handles++;
	uv_tcp_nodelay(c->up, 1);
	c->creq.data = c;
	uv_timer_start(&c->timer, pc_timeout, p->cfg.connect_ms, 0);
	if (uv_tcp_connect(&c->creq, c->up, (struct sockaddr *)&c->dst, pc_connected) < 0)
		pc_refuse(c, "connect_failed", "cannot connect");
}

/* ---- Service calls (svcpick.h): the one place where a virtual IP
 * becomes an endpoint. From there on the connection is the same as one
 * to the endpoint's address and target port: its policy, its identity
 * pinned, its egress rules when it is outside the mesh. */

static void pc_outbound(struct pconn *c);

/* The endpoint's address of the virtual IP's family (else its first), with
 * the target port. */
static void pc_service_dst(const struct policy_endpoint *e, const struct sockaddr_storage *vip,
			   uint16_t port, struct sockaddr_storage *out)
{
	size_t k = 0;
	for (size_t i = 0; i < e->n_addrs; i++)
		if (e->addrs[i].ss_family == vip->ss_family) {
			k = i;
			break;
		}
	*out = e->addrs[k];
	if (out->ss_family == AF_INET)
		((struct sockaddr_in *)out)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)out)->sin6_port = htons(port);
}

/* why: static text (the denial counters keep the pointer, admin.h); the
 * log line names the Service beside it. */
static void pc_service_refuse(struct pconn *c, const char *why)
{
	c->d.verdict = POLICY_DENY;
	pc_refuse(c, "denied", why);
}

/* A call to a virtual IP: choose an endpoint and make it the destination.
 * 0: go on (c->dst is the endpoint, or was no virtual IP); -1: refused. */
static int pc_service(struct pconn *c)
{
	struct proxy *p = c->p;
	struct policy_decision d;
	struct svcpick_ep *st;
	size_t port_index, ep;
	const struct policy_service *v;

	if (!c->svc.on) {
		v = policy_slice_service(c->slice, (struct sockaddr *)&c->dst, c->port,
					 &port_index);
		if (!v)
			return 0;
		c->svc.on = 1;
		c->svc.vip = c->dst;
		c->svc.vport = c->port;
		snprintf(c->svc.key, sizeof(c->svc.key), "%s", v->key);
	} else if (!(v = policy_slice_service(c->slice, (struct sockaddr *)&c->svc.vip,
					      c->svc.vport, &port_index))) {
		pc_service_refuse(c, "no longer a Service this workload may call");
		return -1;
	}
	enum svcpick_why why = svcpick_choose(p->pick, v, port_index, uv_now(p->loop), c->svc.tried,
					      c->svc.n_tried, &ep, &st);
	if (why != SVCPICK_OK) {
		pc_service_refuse(c, svcpick_why_text(why));
		return -1;
	}
	const struct policy_endpoint *e = &v->eps[ep];
	c->svc.tried[c->svc.n_tried++] = st;
	c->svc.open = 1;
	c->svc.t_try = uv_hrtime();
	pc_service_dst(e, &c->svc.vip, (uint16_t)e->target_ports[port_index], &c->dst);
	c->port = (uint16_t)e->target_ports[port_index];
	addr_str(&c->dst, c->svc.endpoint, sizeof(c->svc.endpoint));
	/* The identity the slice names for this endpoint is the one pinned:
	 * it must be the peer's that its address is (one workload, one ID). */
	const char *peer = policy_slice_peer(c->slice, (struct sockaddr *)&c->dst, c->port, &d);
	if (e->spiffe_id[0] ? !peer || strcmp(peer, e->spiffe_id) : peer != NULL) {
		pc_service_refuse(c, "the endpoint's identity is not its workload's");
		return -1;
	}
	return 0;
}

/* The current endpoint connected (and handshook): it is healthy. */
static void pc_service_ok(struct pconn *c)
{
	if (!c->svc.on || !c->svc.open || !c->svc.n_tried)
		return;
	svcpick_done(c->svc.tried[c->svc.n_tried - 1], 1, (uv_hrtime() - c->svc.t_try) / 1000,
		     uv_now(c->p->loop));
}

/* The connect or handshake to the current endpoint failed, before any
 * byte of the app went anywhere: it is skipped for a while, and the call
 * tries another endpoint. 1: retrying; 0: not a Service call, or no tries
 * left (the caller refuses as it would have). */
static int pc_service_retry(struct pconn *c, const char *why)
{
	if (!c->svc.on || !c->svc.open || !c->svc.n_tried)
		return 0;
	svcpick_done(c->svc.tried[c->svc.n_tried - 1], 0, 0, uv_now(c->p->loop));
	c->svc.open = 0;
	log_event(LOG_LVL_WARN, "service_endpoint_failed",
		  log_pack("{s:s, s:s, s:s, s:s, s:i}", "src", c->src_s, "service", c->svc.key,
			   "endpoint", c->svc.endpoint, "error", why ? why : "", "try",
			   (int)c->svc.n_tried));
	if (c->svc.n_tried >= PC_SVC_TRIES)
		return 0;
	uv_timer_stop(&c->timer);
	if (c->up) {
		c->up->data = c;
		uv_close((uv_handle_t *)c->up, pc_handle_closed);
		c->up = NULL;
	}
	mtls_conn_free(c->up_tls);
	c->up_tls = NULL;
	free(c->peer_id);
	c->peer_id = NULL;
	c->hs_failure = NULL;
	c->dst = c->svc.vip;
	c->port = c->svc.vport;
	pc_outbound(c);
	return 1;
}

/* Outbound: the destination decides. */
static void pc_outbound(struct pconn *c)
{
	if (pc_service(c) < 0)
		return;
	const char *peer = policy_slice_peer(c->slice, (struct sockaddr *)&c->dst, c->port, &c->d);

	if (peer) {
		if (!(c->peer_id = strdup(peer))) {
			pc_refuse(c, "refused", "out of memory");
			return;
		}
		if (c->d.verdict == POLICY_DENY) {
			pc_refuse(c, "denied", NULL);
			return;
		}
		if (mtls_conn_new_client(c->tls, peer, &c->up_tls) < 0) {
			pc_refuse(c, "refused", "out of memory");
			return;
		}
	} else {
		policy_slice_decide_egress(c->slice, (struct sockaddr *)&c->dst, c->port, &c->d);
		if (c->d.verdict == POLICY_DENY) {
			pc_refuse(c, "denied", NULL);
			return;
		}
	}
	pc_connect(c);
}

/* The reasons pc_misdirected() refuses with (log lines and the
 * cinch_agent_denials_total label). */
#define PC_ER_NOT_REDIRECTED "not redirected: a direct connection to the agent's port"
#define PC_ER_SELF_LOOP	     "self-loop: the destination is one of the agent's own ports"
#define PC_ER_NOT_LOCAL_SRC  "outbound connection from outside the pod"
#define PC_ER_NOT_OWN_DST    "original destination is not this pod's address"

/* Why the agent must not carry an accepted connection whatever the policy
 * says (proxy.h), or NULL. */
static const char *pc_misdirected(struct pconn *c)
{
	struct proxy *p = c->p;
	struct sockaddr_storage local;
	const struct sockaddr *dst = (const struct sockaddr *)&c->dst;
	int len = sizeof(local);
	uint64_t now = uv_now(p->loop);

	/* REDIRECT rewrites the destination, so conntrack's original one
	 * differs from the socket's; without NAT they are the same. */
	if (uv_tcp_getsockname(c->down, (struct sockaddr *)&local, &len) < 0 ||
	    localaddr_same((const struct sockaddr *)&local, dst, 1))
		return PC_ER_NOT_REDIRECTED;
	if ((c->port == p->cfg.outbound_port || c->port == p->cfg.inbound_port ||
	     (p->cfg.admin_port && c->port == p->cfg.admin_port)) &&
	    localaddr_match(&p->own, now, dst, 1))
		return PC_ER_SELF_LOOP;
	if (c->outbound && !localaddr_match(&p->own, now, (const struct sockaddr *)&c->src, 1))
		return PC_ER_NOT_LOCAL_SRC;
	if (!c->outbound && !localaddr_match(&p->own, now, dst, 0))
		return PC_ER_NOT_OWN_DST;
	return NULL;
}

#define PC_ER_INBOUND_LIMIT  "inbound connection limit reached (the rest is kept for outbound)"
#define PC_ER_SOURCE_PENDING "too many unfinished handshakes from this address"

/* An inbound connection after the checks of accept: into the budget. */
static void pc_accept_inbound(struct pconn *c)
{
	struct proxy *p = c->p;
	struct pc_src *e;

	if (p->n_in > p->cfg.max_conns - p->cfg.outbound_reserve) {
		pc_refuse(c, "refused", PC_ER_INBOUND_LIMIT);
		return;
	}
	if (!(e = pc_src_get(p, &c->src))) {
		pc_refuse(c, "refused", "out of memory");
		return;
	}
	e->pending++;
	c->srcent = e;
	if (e->pending > p->cfg.max_pending_per_source) {
		pc_refuse(c, "refused", PC_ER_SOURCE_PENDING);
		return;
	}
	uv_timer_start(&c->timer, pc_timeout, p->cfg.handshake_ms, 0);
	if (p->n_hs < p->cfg.max_handshakes && e->active < PC_HS_SHARE(p->cfg.max_handshakes)) {
		pc_begin_handshake(c);
		return;
	}
	c->state = PC_WAIT;
	c->wprev = p->wait_last;
	*(p->wait_last ? &p->wait_last->wnext : &p->wait_first) = c;
	p->wait_last = c;
}

static void proxy_accept(uv_stream_t *l, int status, int outbound)
{
	struct proxy *p = l->data;
	struct pconn *c;
	int len = sizeof(struct sockaddr_storage);
	uv_os_fd_t fd;

	if (status < 0 || !(c = calloc(1, sizeof(*c))))
		return;
	c->p = p;
	p->refs++;
	c->outbound = outbound;
	c->t0 = uv_hrtime();
	c->hs_s = -1;
	c->down = malloc(sizeof(*c->down));
	uv_timer_init(p->loop, &c->timer);
	c->timer.data = c;
	c->handles = 1;
	c->next = p->conns;
	if (c->next)
		c->next->pprev = &c->next;
	c->pprev = &p->conns;
	p->conns = c;
	p->n_conns++;
	if (!c->down || uv_tcp_init(p->loop, c->down) < 0) {
		free(c->down);
		c->down = NULL;
		c->state = PC_CLOSING;
		uv_close((uv_handle_t *)&c->timer, pc_handle_closed);
		return;
	}
	c->down->data = c;
	c->handles++;
	c->tls = p->tls ? mtls_ctx_ref(p->tls) : NULL;
	c->slice = p->slice ? policy_slice_ref(p->slice) : NULL;
	c->d = (struct policy_decision){POLICY_DENY, NULL, ""};
	if (uv_accept(l, (uv_stream_t *)c->down) < 0) {
		pc_refuse(c, "refused", "accept failed");
		return;
	}
	uv_tcp_getpeername(c->down, (struct sockaddr *)&c->src, &len);
	addr_str(&c->src, c->src_s, sizeof(c->src_s));
	if (uv_fileno((uv_handle_t *)c->down, &fd) < 0 || origdst_get(fd, &c->dst) < 0) {
		pc_refuse(c, "refused", "no original destination: not a redirected connection");
		return;
	}
	if (p->cfg.probe && p->cfg.probe(p->cfg.probe_arg, outbound, &c->src, &c->dst)) {
		c->probe = 1; /* the agent's own self-probe: not a connection */
		p->n_probes++;
		pc_close(c);
		return;
	}
	c->inbound_counted = !outbound;
	p->n_in += c->inbound_counted;
	addr_str(&c->dst, c->dst_s, sizeof(c->dst_s));
	c->port = addr_port(&c->dst);
	const char *misdirected = pc_misdirected(c);
	if (misdirected) {
		pc_refuse(c, "refused", misdirected);
		return;
	}
	if (!c->tls || !c->slice) {
		pc_refuse(c, "refused", "no valid certificate or policy: failing closed");
		return;
	}
	if (p->n_conns - p->n_probes > p->cfg.max_conns) {
		pc_refuse(c, "refused", "connection limit reached");
		return;
	}
	uv_tcp_nodelay(c->down, 1);
	if (outbound) {
		pc_outbound(c);
		return;
	}
	pc_accept_inbound(c);
}

static void proxy_accept_out(uv_stream_t *l, int status)
{
	proxy_accept(l, status, 1);
}

static void proxy_accept_in(uv_stream_t *l, int status)
{
	proxy_accept(l, status, 0);
}

static int proxy_listen(struct proxy *p, uv_tcp_t *l, uint16_t port, uv_connection_cb cb)
{
	struct sockaddr_storage ss;
	int rc;

	if ((rc = uv_ip4_addr(p->cfg.host, port, (struct sockaddr_in *)&ss)) < 0 &&
	    (rc = uv_ip6_addr(p->cfg.host, port, (struct sockaddr_in6 *)&ss)) < 0)
		return rc;
	uv_tcp_init(p->loop, l);
	l->data = p;
	p->refs++;
	if ((rc = uv_tcp_bind(l, (struct sockaddr *)&ss, 0)) < 0 ||
	    (rc = uv_listen((uv_stream_t *)l, 1024, cb)) < 0)
		return rc;
	return 0;
}

int proxy_start(uv_loop_t *loop, const struct proxy_config *cfg, proxy_log_cb log, void *arg,
		struct proxy **out)
{
	struct proxy *p = calloc(1, sizeof(*p));
	int rc;

	if (!cfg->max_conns || cfg->outbound_reserve >= cfg->max_conns || !cfg->max_handshakes ||
	    !cfg->max_pending_per_source) {
		free(p);
		return UV_EINVAL;
	}
	if (!p)
		return UV_ENOMEM;
	p->loop = loop;
	p->cfg = *cfg;
	p->log = log;
	p->arg = arg;
	p->refs = 1;
	if (!(p->pick = svcpick_new(uv_hrtime()))) {
		free(p);
		return UV_ENOMEM;
	}
	if ((rc = proxy_listen(p, &p->out_l, cfg->outbound_port, proxy_accept_out)) < 0 ||
	    (rc = proxy_listen(p, &p->in_l, cfg->inbound_port, proxy_accept_in)) < 0) {
		proxy_stop(p);
		return rc;
	}
	*out = p;
	return 0;
}

/* What `slice` decides for a connection that was already decided once:
 * the same question as at accept, with what the connection has become
 * (its peer's verified identity, the server identity it expected). */
static void pc_redecide(const struct pconn *c, const struct policy_slice *slice,
			struct policy_decision *d)
{
	const struct sockaddr *dst = (const struct sockaddr *)&c->dst;
	int meshed = c->peer_id != NULL;

	if (!c->outbound) {
		policy_slice_decide_inbound(slice, meshed ? c->peer_id : NULL,
					    (const struct sockaddr *)&c->src, c->port, d);
		return;
	}
	const char *peer = policy_slice_peer(slice, dst, c->port, d);
	if (meshed && peer && !strcmp(peer, c->peer_id))
		return;
	if (!meshed && !peer) {
		policy_slice_decide_egress(slice, dst, c->port, d);
		return;
	}
	/* The destination changed kind or identity: this connection was made
	 * for what it was, not for what it is now. */
	*d = (struct policy_decision){
		.verdict = POLICY_DENY,
		.reason = !meshed ? "the destination is now a meshed workload: plaintext to it "
				    "is no longer allowed"
			  : peer  ? "the identity expected at the destination changed"
			  : policy_slice_meshed(slice, dst)
				  ? "the destination no longer admits this workload"
				  : "the destination is no longer a meshed workload",
	};
}

/* Applies the proxy's new slice to one open connection (proxy.h). */
static void pc_policy_changed(struct pconn *c)
{
	struct policy_slice *slice = c->p->slice;
	struct policy_decision d;

	switch (c->state) {
	case PC_WAIT:
	case PC_PEEK:
	case PC_HANDSHAKE: /* not decided yet: the new policy will */
		policy_slice_unref(c->slice);
		c->slice = policy_slice_ref(slice);
		return;
	case PC_CONNECT:
	case PC_UP_HANDSHAKE:
	case PC_RELAY:
		break;
	case PC_CLOSING:
		return;
	}
	pc_redecide(c, slice, &d);
	/* d borrows from the new slice: hold it before letting the old go. */
	policy_slice_ref(slice);
	policy_slice_unref(c->slice);
	c->slice = slice;
	c->d = d;
	if (d.verdict != POLICY_DENY)
		return;
	if (c->state != PC_RELAY) {
		pc_refuse(c, "policy_change", NULL);
		return;
	}
	if (relay_stop(c->relay) == 0)
		c->end = "policy_change"; /* logged in pc_relay_done */
}

void proxy_set_material(struct proxy *p, struct mtls_ctx *tls, struct policy_slice *slice)
{
	struct mtls_ctx *old_tls = p->tls;
	struct policy_slice *old_slice = p->slice;
	p->tls = tls ? mtls_ctx_ref(tls) : NULL;
	p->slice = slice ? policy_slice_ref(slice) : NULL;
	mtls_ctx_unref(old_tls);
	policy_slice_unref(old_slice);
	if (p->slice != old_slice)
		svcpick_sweep(p->pick, p->slice);
	if (!p->slice || p->slice == old_slice || p->cfg.keep_on_policy_change)
		return;
	for (struct pconn *c = p->conns, *next; c; c = next) {
		next = c->next; /* closing never frees at once: c stays valid */
		pc_policy_changed(c);
	}
}

unsigned proxy_conns(const struct proxy *p)
{
	return p->n_conns - p->n_probes;
}

static void proxy_listener_closed(uv_handle_t *h)
{
	proxy_unref(h->data);
}

void proxy_stop(struct proxy *p)
{
	if (!p || p->stopping)
		return;
	p->stopping = 1;
	for (struct pconn *c = p->conns, *next; c; c = next) {
		next = c->next;
		if (c->state == PC_RELAY)
			relay_stop(c->relay);
		else
			pc_refuse(c, "stopped", "agent stopping");
	}
	if (p->out_l.loop) /* initialised */
		uv_close((uv_handle_t *)&p->out_l, proxy_listener_closed);
	if (p->in_l.loop)
		uv_close((uv_handle_t *)&p->in_l, proxy_listener_closed);
	proxy_unref(p);
}
