/* tlsserver: see tlsserver.h. The TCP handle and the two timers of a
 * connection (the timeout and the kick) close together; it is freed when
 * the last close callback runs. The server counts a reference for its listener and one per
 * connection, and is freed (after `stopped`) when the last goes. */
#include "api/tlsserver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "log.h"

#define TLSSERVER_READ_BUF 16384

enum tlsconn_state {
	TLSCONN_ST_HANDSHAKE = 0,
	TLSCONN_ST_OPEN,
};

struct tlsserver {
	uv_tcp_t tcp;
	struct tlsserver_config cfg;
	const struct tlsserver_ops *ops;
	struct mtls_ctx *tls; /* for new connections */
	void *owner;
	void (*stopped)(void *owner);
	struct tlsconn *conns;
	unsigned n_conns;
	int refs;
	int stopping;
	uint64_t refused_logged_ms; /* uv_now of the last too_many_from_source line */
	unsigned refused_unlogged;  /* refusals since, not logged */
};

struct tlsconn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_timer_t kick; /* 0 ms: tlsconn_kick */
	struct tlsserver *srv;
	struct tlsconn *next, **pprev;
	struct mtls_conn *tls;
	void *data; /* the protocol's, freed by ops->free */
	enum tlsconn_state state;
	size_t inflight;   /* bytes handed to uv_write, not yet written */
	size_t write_high; /* stop reading above this much unsent output */
	const char *timeout_reason;
	int idle;	 /* reads restart the timer */
	unsigned rounds; /* idle periods in a row with nothing received */
	int reading;
	int closing;
	int pending_closes;
	char peer[64];
	char ip[48]; /* peer without the port */
};

struct tlswrite {
	uv_write_t req;
	struct tlsconn *c;
	size_t len;
	uint8_t data[];
};

/* Logs <name>_<event> of the server. */
static void tlsserver_log(const struct tlsserver *s, int lvl, const char *event, json_t *fields)
{
	char name[64];
	snprintf(name, sizeof(name), "%s_%s", s->cfg.name, event);
	log_event(lvl, name, fields);
}

static void tlsserver_unref(struct tlsserver *s)
{
	if (--s->refs > 0)
		return;
	if (s->stopped)
		s->stopped(s->owner);
	mtls_ctx_unref(s->tls);
	free(s);
}

/* ---- connection lifetime */

static void tlsconn_close_cb(uv_handle_t *h)
{
	struct tlsconn *c = h->data;
	struct tlsserver *s = c->srv;
	if (--c->pending_closes > 0)
		return;
	s->ops->free(c);
	mtls_conn_free(c->tls);
	s->n_conns--;
	free(c);
	tlsserver_unref(s);
}

void tlsconn_close(struct tlsconn *c, const char *reason)
{
	if (c->closing)
		return;
	c->closing = 1;
	tlsserver_log(c->srv, LOG_LVL_DEBUG, "conn_closed",
		      json_pack("{s:s, s:s, s:s}", "peer", c->peer, "state",
				c->state == TLSCONN_ST_HANDSHAKE ? "handshake"
				: c->srv->cfg.open_state	 ? c->srv->cfg.open_state
								 : "open",
				"reason", reason));
	*c->pprev = c->next;
	if (c->next)
		c->next->pprev = c->pprev;
	if (c->srv->ops->closing)
		c->srv->ops->closing(c);
	c->pending_closes = 3;
	uv_close((uv_handle_t *)&c->tcp, tlsconn_close_cb);
	uv_close((uv_handle_t *)&c->timer, tlsconn_close_cb);
	uv_close((uv_handle_t *)&c->kick, tlsconn_close_cb);
}

int tlsconn_closing(const struct tlsconn *c)
{
	return c->closing;
}

static void tlsconn_timeout_cb(uv_timer_t *t)
{
	struct tlsconn *c = t->data;
	if (c->idle && c->srv->ops->idle && c->srv->ops->idle(c, ++c->rounds)) {
		tlsconn_advance(c);
		return;
	}
	tlsconn_close(c, c->timeout_reason);
}

void tlsconn_set_timeout(struct tlsconn *c, unsigned ms, int idle, const char *reason)
{
	c->idle = idle;
	c->rounds = 0;
	c->timeout_reason = reason;
	uv_timer_start(&c->timer, tlsconn_timeout_cb, ms, idle ? ms : 0);
}

static void tlsconn_kick_cb(uv_timer_t *t)
{
	tlsconn_advance(t->data);
}

void tlsconn_kick(struct tlsconn *c)
{
	if (!c->closing && !uv_is_active((uv_handle_t *)&c->kick))
		uv_timer_start(&c->kick, tlsconn_kick_cb, 0, 0);
}

/* ---- output: TLS -> socket */

static void tlsconn_write_cb(uv_write_t *req, int status)
{
	struct tlswrite *w = req->data;
	struct tlsconn *c = w->c;
	c->inflight -= w->len;
	free(w);
	if (c->closing)
		return;
	if (status < 0) {
		tlsconn_close(c, "write_error");
		return;
	}
	tlsconn_advance(c);
}

/* Hands everything TLS has produced to the socket. */
static int tlsconn_send(struct tlsconn *c)
{
	size_t n = mtls_conn_pending_out(c->tls);
	if (n == 0)
		return 0;
	struct tlswrite *w = malloc(sizeof(*w) + n);
	if (!w)
		return -ENOMEM;
	w->c = c;
	w->len = mtls_conn_take_out(c->tls, w->data, n);
	w->req.data = w;
	uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
	int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, tlsconn_write_cb);
	if (rc < 0) {
		free(w);
		return rc;
	}
	c->inflight += w->len;
	return 0;
}

int tlsconn_write(struct tlsconn *c, const uint8_t *data, size_t len)
{
	return mtls_conn_write(c->tls, data, len);
}

size_t tlsconn_room(const struct tlsconn *c)
{
	size_t used = c->inflight + mtls_conn_pending_out(c->tls);
	return used < c->write_high ? c->write_high - used : 0;
}

void tlsconn_set_write_high(struct tlsconn *c, size_t bytes)
{
	c->write_high = bytes;
}

int tlsconn_flush_h2(struct tlsconn *c, struct nghttp2_session *h2)
{
	while (tlsconn_room(c) > 0) {
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(h2, &data);
		if (n < 0)
			return -EPROTO;
		if (n == 0)
			break;
		if (tlsconn_write(c, data, (size_t)n) < 0)
			return -EPROTO;
	}
	return 0;
}

/* ---- input and the driver */

static void tlsconn_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	static char slab[65536]; /* one loop thread; consumed before the next read */
	*buf = uv_buf_init(slab, sizeof(slab));
}

static void tlsconn_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	struct tlsconn *c = st->data;
	if (n == 0)
		return;
	if (n < 0) {
		tlsconn_close(c, n == UV_EOF ? "peer_closed" : "read_error");
		return;
	}
	if (mtls_conn_feed(c->tls, (const uint8_t *)buf->base, (size_t)n) < 0) {
		tlsconn_close(c, "out_of_memory");
		return;
	}
	if (c->idle) {
		c->rounds = 0;
		uv_timer_again(&c->timer);
	}
	tlsconn_advance(c);
}

/* The handshake step: 0 to go on (done or waiting), <0 after closing. */
static int tlsconn_handshake(struct tlsconn *c)
{
	const char *why = "";
	int r = mtls_conn_handshake(c->tls, &why);

	if (r < 0) {
		(void)tlsconn_send(c); /* the alert, best effort */
		tlsserver_log(c->srv, LOG_LVL_INFO, "handshake_failed",
			      json_pack("{s:s, s:s}", "peer", c->peer, "why", why));
		tlsconn_close(c, "handshake_failed");
		return r;
	}
	if (r == MTLS_HS_DONE) {
		c->state = TLSCONN_ST_OPEN;
		uv_timer_stop(&c->timer);
		if ((r = c->srv->ops->start(c)) < 0) {
			tlsconn_close(c, "protocol_start_failed");
			return r;
		}
	}
	return 0;
}

void tlsconn_advance(struct tlsconn *c)
{
	uint8_t buf[TLSSERVER_READ_BUF];
	const char *why;
	int r;

	if (c->closing)
		return;
	if (c->state == TLSCONN_ST_HANDSHAKE && tlsconn_handshake(c) < 0)
		return;
	while (c->state == TLSCONN_ST_OPEN && !c->closing) {
		r = mtls_conn_read(c->tls, buf, sizeof(buf));
		if (r == 0)
			break;
		if (r < 0) {
			tlsconn_close(c, r == -EPIPE ? "tls_close_notify" : "tls_error");
			return;
		}
		if (c->srv->ops->input(c, buf, (size_t)r) < 0)
			tlsconn_close(c, "protocol_error");
	}
	if (c->closing)
		return;
	if ((c->state == TLSCONN_ST_OPEN && c->srv->ops->flush && c->srv->ops->flush(c) < 0) ||
	    tlsconn_send(c) < 0) {
		tlsconn_close(c, "write_error");
		return;
	}
	mtls_conn_trim(c->tls); /* everything read and sent: its buffers can go */
	int want_read = c->inflight < c->write_high;
	if (want_read != c->reading) {
		if (want_read)
			uv_read_start((uv_stream_t *)&c->tcp, tlsconn_alloc_cb, tlsconn_read_cb);
		else
			uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = want_read;
	}
	if (c->state == TLSCONN_ST_OPEN && c->inflight == 0 && (why = c->srv->ops->done(c)))
		tlsconn_close(c, why);
}

/* ---- accessors */

void *tlsconn_owner(const struct tlsconn *c)
{
	return c->srv->owner;
}

void tlsconn_set_data(struct tlsconn *c, void *data)
{
	c->data = data;
}

void *tlsconn_data(const struct tlsconn *c)
{
	return c->data;
}

const char *tlsconn_peer(const struct tlsconn *c)
{
	return c->peer;
}

const char *tlsconn_ip(const struct tlsconn *c)
{
	return c->ip;
}

struct mtls_conn *tlsconn_tls(struct tlsconn *c)
{
	return c->tls;
}

/* ---- listener */

static void tlsconn_name_peer(struct tlsconn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	char ip[48];

	snprintf(c->peer, sizeof(c->peer), "unknown");
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) < 0)
		return;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		uv_ip4_name(a, ip, sizeof(ip));
		snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, ntohs(a->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		/* An IPv4 client of a dual-stack listener is its IPv4 address
		 * (the registry knows it as such). */
		int v4 = IN6_IS_ADDR_V4MAPPED(&a->sin6_addr);
		if (v4)
			inet_ntop(AF_INET, a->sin6_addr.s6_addr + 12, ip, sizeof(ip));
		else
			uv_ip6_name(a, ip, sizeof(ip));
		snprintf(c->peer, sizeof(c->peer), v4 ? "%s:%d" : "[%s]:%d", ip,
			 ntohs(a->sin6_port));
	} else {
		return;
	}
	snprintf(c->ip, sizeof(c->ip), "%s", ip);
}

/* Open connections from c's peer address, c included. A walk: accepts
 * are rare next to reads, and max_conns bounds it. */
static unsigned tlsserver_from_source(const struct tlsserver *s, const struct tlsconn *c)
{
	unsigned n = 0;
	for (const struct tlsconn *o = s->conns; o; o = o->next)
		n += !strcmp(o->ip, c->ip);
	return n;
}

static void tlsserver_connection_cb(uv_stream_t *server, int status)
{
	struct tlsserver *s = server->data;
	struct tlsconn *c;

	if (status < 0 || !(c = calloc(1, sizeof(*c))))
		return;
	c->srv = s;
	c->write_high = TLSSERVER_WRITE_HIGH;
	s->refs++;
	s->n_conns++;
	uv_tcp_init(server->loop, &c->tcp);
	uv_timer_init(server->loop, &c->timer);
	uv_timer_init(server->loop, &c->kick);
	c->tcp.data = c->timer.data = c->kick.data = c;
	c->next = s->conns;
	if (c->next)
		c->next->pprev = &c->next;
	c->pprev = &s->conns;
	s->conns = c;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
		tlsconn_close(c, "accept_failed");
		return;
	}
	tlsconn_name_peer(c);
	if (s->n_conns > s->cfg.max_conns) {
		if (s->cfg.log_refused)
			tlsserver_log(s, LOG_LVL_WARN, "conn_refused",
				      json_pack("{s:s, s:s}", "peer", c->peer, "reason",
						"too_many_connections"));
		tlsconn_close(c, "too_many_connections");
		return;
	}
	if (s->cfg.max_per_source && tlsserver_from_source(s, c) > s->cfg.max_per_source) {
		/* A flood of these must not become a flood of log lines. */
		uint64_t now = uv_now(server->loop);
		if (s->refused_logged_ms == 0 || now - s->refused_logged_ms >= 1000) {
			tlsserver_log(s, LOG_LVL_WARN, "conn_refused",
				      json_pack("{s:s, s:s, s:i, s:i}", "peer", c->peer, "reason",
						"too_many_from_source", "max_per_source",
						(int)s->cfg.max_per_source, "not_logged",
						(int)s->refused_unlogged));
			s->refused_logged_ms = now;
			s->refused_unlogged = 0;
		} else {
			s->refused_unlogged++;
		}
		tlsconn_close(c, "too_many_from_source");
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	if (mtls_conn_new_server(s->tls, &c->tls) < 0 ||
	    uv_read_start((uv_stream_t *)&c->tcp, tlsconn_alloc_cb, tlsconn_read_cb) < 0) {
		tlsconn_close(c, "out_of_memory");
		return;
	}
	tlsconn_set_timeout(c, s->cfg.handshake_ms, 0, "handshake_timeout");
	c->reading = 1;
}

int tlsserver_start(uv_loop_t *loop, const struct tlsserver_config *cfg,
		    const struct tlsserver_ops *ops, struct mtls_ctx *tls, void *owner,
		    struct tlsserver **out, int *port)
{
	struct tlsserver *s = calloc(1, sizeof(*s));
	struct sockaddr_storage ss;
	int rc, len = sizeof(ss);

	if (!s)
		return UV_ENOMEM;
	s->cfg = *cfg;
	s->cfg.host = NULL;
	s->ops = ops;
	s->owner = owner;
	s->refs = 1;
	if ((rc = uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&ss)) < 0 &&
	    (rc = uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&ss)) < 0) {
		free(s);
		return rc;
	}
	if ((rc = uv_tcp_init(loop, &s->tcp)) < 0) {
		free(s);
		return rc;
	}
	s->tcp.data = s;
	s->tls = tls;
	mtls_ctx_ref(tls);
	if ((rc = uv_tcp_bind(&s->tcp, (struct sockaddr *)&ss, 0)) < 0 ||
	    (rc = uv_listen((uv_stream_t *)&s->tcp, 1024, tlsserver_connection_cb)) < 0 ||
	    (rc = uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&ss, &len)) < 0) {
		tlsserver_stop(s, NULL);
		return rc;
	}
	*port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
					      : ((struct sockaddr_in6 *)&ss)->sin6_port);
	*out = s;
	return 0;
}

static void tlsserver_close_cb(uv_handle_t *h)
{
	tlsserver_unref(h->data);
}

void tlsserver_stop(struct tlsserver *s, void (*stopped)(void *owner))
{
	if (!s || s->stopping)
		return;
	s->stopping = 1;
	s->stopped = stopped;
	while (s->conns)
		tlsconn_close(s->conns, "server_stopping");
	uv_close((uv_handle_t *)&s->tcp, tlsserver_close_cb);
}

void tlsserver_set_tls(struct tlsserver *s, struct mtls_ctx *tls)
{
	mtls_ctx_ref(tls);
	mtls_ctx_unref(s->tls);
	s->tls = tls;
}

unsigned tlsserver_conns(const struct tlsserver *s)
{
	return s->n_conns;
}
