/* proxy: see proxy.h.
 *
 * A connection's states (one function each, driven by libuv callbacks):
 *   inbound:  PEEK -> [TLS: HANDSHAKE] -> decide -> CONNECT -> RELAY
 *   outbound: decide -> CONNECT -> [meshed: UP_HANDSHAKE] -> RELAY
 * Before RELAY the connection owns its sockets and one timer (connect and
 * handshake deadlines); at RELAY the sockets go to the relay, and the
 * connection ends in the relay's done callback. Every end before that goes
 * through pc_refuse(), which logs and closes. */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "origdst.h"
#include "relay.h"

enum pc_state {
	PC_PEEK = 0,
	PC_HANDSHAKE,
	PC_CONNECT,
	PC_UP_HANDSHAKE,
	PC_RELAY,
	PC_CLOSING,
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
	unsigned n_conns, n_probes; /* n_conns counts the self-probes too */
	int stopping, refs;
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
	int handles; /* open handles of the connection itself */
	struct relay *relay;
	const char *end; /* why the relay was stopped, when the proxy stopped it */
	unsigned probe;	 /* 1: the agent's self-probe, not counted as a connection */
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
		.relayed = c->state == PC_RELAY,
		.handshake_s = c->hs_s,
		.handshake_failure = c->hs_failure,
	};
	c->p->log(c->p->arg, &r);
}

static void proxy_unref(struct proxy *p)
{
	if (--p->refs > 0)
		return;
	mtls_ctx_unref(p->tls);
	policy_slice_unref(p->slice);
	free(p);
}

static void pc_free(struct pconn *c)
{
	*c->pprev = c->next;
	if (c->next)
		c->next->pprev = c->pprev;
	c->p->n_conns--;
	c->p->n_probes -= c->probe;
	mtls_conn_free(c->down_tls);
	mtls_conn_free(c->up_tls);
	mtls_ctx_unref(c->tls);
	policy_slice_unref(c->slice);
	free(c->plain);
	free(c->peer_id);
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

/* Closes a connection that never reached the relay, without a word. */
static void pc_close(struct pconn *c)
{
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
	static const char *const ends[] = {"closed", "reset", "tls_error", "idle", "stopped"};
	/* down is the relay's a side: the app when outbound, the peer inbound */
	uint64_t out = c->outbound ? st->a_to_b : st->b_to_a;
	uint64_t in = c->outbound ? st->b_to_a : st->a_to_b;

	pc_log(c, c->end ? c->end : ends[st->reason], out, in);
	c->down = c->up = NULL;
	c->down_tls = c->up_tls = NULL; /* freed by the relay */
	if (--c->handles == 0)
		pc_free(c);
}

static void pc_start_relay(struct pconn *c)
{
	struct proxy *p = c->p;
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
	if (relay_start(p->loop, c->down, c->down_tls, c->up, c->up_tls, p->cfg.idle_ms,
			pc_relay_done, c, &c->relay) < 0) {
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

/* Inbound, after the TLS handshake or for plaintext: the policy. */
static void pc_decide_inbound(struct pconn *c)
{
	const char *id = c->down_tls ? mtls_conn_peer_id(c->down_tls) : NULL;
	if (id && !(c->peer_id = strdup(id))) {
		pc_refuse(c, "refused", "out of memory");
		return;
	}
	policy_slice_decide_inbound(c->slice, id, (struct sockaddr *)&c->src, c->port, &c->d);
	if (c->d.verdict == POLICY_DENY) {
		pc_refuse(c, "denied", NULL);
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

/* Outbound: the destination decides. */
static void pc_outbound(struct pconn *c)
{
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
	addr_str(&c->dst, c->dst_s, sizeof(c->dst_s));
	c->port = addr_port(&c->dst);
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
	c->state = PC_PEEK;
	uv_timer_start(&c->timer, pc_timeout, p->cfg.handshake_ms, 0);
	uv_read_start((uv_stream_t *)c->down, pc_alloc, pc_read);
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

	if (!p)
		return UV_ENOMEM;
	p->loop = loop;
	p->cfg = *cfg;
	p->log = log;
	p->arg = arg;
	p->refs = 1;
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
