/* tlsserver: see tlsserver.h. A connection is a struct conn of the
 * connection core (common/conn.h) with the TLS transport (xprt_tls.h): the
 * core accepts, reads, handshakes, decrypts, writes and closes; this file
 * adds what the control's servers share on top: the limits at accept (in
 * total and per source address), the one timer (handshake, request or
 * idle) and the kick, the protocol's ops, and the log lines. A connection
 * ends through conn_finalize only (tlsconn_close names the reason for the
 * log); its two timers close in the core's `end` callback and the struct
 * is freed when the last of its three handles is closed. The server
 * counts a reference for its listener and one per connection, and is
 * freed (after `stopped`) when the last goes. */
#include "api/tlsserver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "conn.h"
#include "list.h"
#include "log.h"
#include "xprt_tls.h"

struct tlsserver {
	uv_tcp_t tcp;
	struct conn_loop cl; /* the core's per-loop state, for this server's conns */
	struct tlsserver_config cfg;
	const struct tlsserver_ops *ops;
	struct mtls_ctx *tls; /* for new connections */
	void *owner;
	void (*stopped)(void *owner);
	struct list_node conns;
	unsigned n_conns;
	int refs;
	int stopping;
	uint64_t refused_logged_ms; /* uv_now of the last too_many_from_source line */
	unsigned refused_unlogged;  /* refusals since, not logged */
};

struct tlsconn {
	struct conn conn; /* the socket and its TLS: the core's */
	uv_timer_t timer;
	uv_timer_t kick; /* 0 ms: tlsconn_kick */
	struct tlsserver *srv;
	struct list_node link;
	void *data; /* the protocol's, freed by ops->free */
	size_t write_high; /* stop reading above this much unsent output */
	const char *timeout_reason;
	const char *close_reason; /* tlsconn_close's word for the log, or NULL */
	int opened;		  /* the handshake finished */
	int idle;		  /* reads restart the timer */
	unsigned rounds;	  /* idle periods in a row with nothing received */
	int pending_closes;
	char peer[64];
	char ip[48]; /* peer without the port */
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
	conn_loop_cleanup(&s->cl);
	free(s);
}

/* ---- connection lifetime */

/* The core's reason for a word of tlsconn_close: errors the peer sees as
 * a reset are named as such; every other word is an orderly end. */
static enum conn_reason tlsconn_reason_of(const char *why)
{
	static const struct {
		const char *word;
		enum conn_reason reason;
	} map[] = {
		{"handshake_timeout", CONN_ER_HANDSHAKE_TIMEOUT},
		{"out_of_memory", CONN_ER_NO_MEMORY},
		{"write_error", CONN_ER_WRITE_ERROR},
		{"tls_error", CONN_ER_TLS_ERROR},
		{"too_many_connections", CONN_ER_DENIED},
		{"too_many_from_source", CONN_ER_DENIED},
		{"server_stopping", CONN_ER_STOPPED},
		{"protocol_error", CONN_ER_PROTOCOL},
		{"h2_protocol_error", CONN_ER_PROTOCOL},
		{"protocol_start_failed", CONN_ER_PROTOCOL},
		{"idle_timeout", CONN_ER_IDLE_TIMEOUT},
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcmp(map[i].word, why))
			return map[i].reason;
	return CONN_ER_CLOSED;
}

/* The log word of an end the core decided (tlsconn_close not called). */
static const char *tlsconn_word_of(enum conn_reason r)
{
	switch (r) {
	case CONN_ER_RESET:
		return "read_error";
	case CONN_ER_NO_MEMORY:
		return "out_of_memory";
	default:
		return conn_reason_name(r);
	}
}

static void tlsconn_handle_closed(struct tlsconn *c)
{
	struct tlsserver *s = c->srv;

	if (--c->pending_closes > 0)
		return;
	s->ops->free(c);
	s->n_conns--;
	free(c);
	tlsserver_unref(s);
}

static void tlsconn_timer_closed_cb(uv_handle_t *h)
{
	tlsconn_handle_closed(h->data);
}

/* conn_finalize's first call: log, unlink, let the protocol drop what
 * may still reach the connection, close the timers. */
static void tlsconn_end(struct conn *conn, enum conn_reason reason)
{
	struct tlsconn *c = conn->owner;
	const char *word = c->close_reason ? c->close_reason : tlsconn_word_of(reason);

	if (reason == CONN_ER_HANDSHAKE_FAILED || reason == CONN_ER_PEER_IDENTITY_MISMATCH)
		tlsserver_log(c->srv, LOG_LVL_INFO, "handshake_failed",
			      json_pack("{s:s, s:s}", "peer", c->peer, "why",
					conn->why ? conn->why : ""));
	tlsserver_log(c->srv, LOG_LVL_DEBUG, "conn_closed",
		      json_pack("{s:s, s:s, s:s}", "peer", c->peer, "state",
				!c->opened		 ? "handshake"
				: c->srv->cfg.open_state ? c->srv->cfg.open_state
							 : "open",
				"reason", word));
	list_del(&c->link);
	if (c->srv->ops->closing)
		c->srv->ops->closing(c);
	uv_close((uv_handle_t *)&c->timer, tlsconn_timer_closed_cb);
	uv_close((uv_handle_t *)&c->kick, tlsconn_timer_closed_cb);
}

static void tlsconn_closed(struct conn *conn)
{
	tlsconn_handle_closed(conn->owner);
}

void tlsconn_close(struct tlsconn *c, const char *reason)
{
	if (conn_closing(&c->conn))
		return;
	c->close_reason = reason;
	conn_finalize(&c->conn, tlsconn_reason_of(reason));
}

int tlsconn_closing(const struct tlsconn *c)
{
	return conn_closing(&c->conn);
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
	if (!conn_closing(&c->conn) && !uv_is_active((uv_handle_t *)&c->kick))
		uv_timer_start(&c->kick, tlsconn_kick_cb, 0, 0);
}

/* ---- output */

int tlsconn_write(struct tlsconn *c, const uint8_t *data, size_t len)
{
	/* a failed write finalizes the conn (never dropped): the caller sees
	 * -EPROTO and stops */
	return conn_write(&c->conn, data, len) < 0 ? -EPROTO : 0;
}

size_t tlsconn_room(const struct tlsconn *c)
{
	size_t used = conn_queued(&c->conn);
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

/* ---- the protocol on the core's callbacks */

/* The handshake finished: the protocol starts. */
static void tlsconn_open(struct conn *conn)
{
	struct tlsconn *c = conn->owner;

	c->opened = 1;
	uv_timer_stop(&c->timer);
	if (c->srv->ops->start(c) < 0) {
		tlsconn_close(c, "protocol_start_failed");
		return;
	}
	tlsconn_advance(c);
}

static int tlsconn_input(struct conn *conn, const uint8_t *buf, size_t len)
{
	struct tlsconn *c = conn->owner;

	if (c->idle) {
		c->rounds = 0;
		uv_timer_again(&c->timer);
	}
	if (c->srv->ops->input(c, buf, len) < 0) {
		tlsconn_close(c, "protocol_error");
		return -1;
	}
	tlsconn_advance(c); /* the answers the input made */
	return conn_closing(conn) ? -1 : 0;
}

static void tlsconn_eof(struct conn *conn)
{
	tlsconn_close(conn->owner, "peer_closed");
}

static void tlsconn_drained(struct conn *conn)
{
	tlsconn_advance(conn->owner);
}

static const struct conn_ops tlsconn_ops = {
	.open = tlsconn_open,
	.data = tlsconn_input,
	.eof = tlsconn_eof,
	.drained = tlsconn_drained,
	.end = tlsconn_end,
	.closed = tlsconn_closed,
};

void tlsconn_advance(struct tlsconn *c)
{
	const char *why;

	if (conn_closing(&c->conn) || c->conn.state != CONN_ST_OPEN)
		return;
	if (c->srv->ops->flush && c->srv->ops->flush(c) < 0) {
		tlsconn_close(c, "write_error");
		return;
	}
	if (conn_closing(&c->conn))
		return;
	/* backpressure: a peer that does not read its answers is not read */
	if (conn_queued(&c->conn) < c->write_high)
		conn_read_start(&c->conn);
	else
		conn_read_stop(&c->conn);
	if (conn_closing(&c->conn))
		return;
	if (conn_queued(&c->conn) == 0) {
		conn_trim(&c->conn); /* everything read and sent: its buffers can go */
		if ((why = c->srv->ops->done(c)))
			tlsconn_close(c, why);
	}
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
	return xprt_tls_get(&c->conn);
}

/* ---- listener */

static void tlsconn_name_peer(struct tlsconn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	char ip[48];

	snprintf(c->peer, sizeof(c->peer), "unknown");
	if (uv_tcp_getpeername(&c->conn.h.tcp, (struct sockaddr *)&ss, &len) < 0)
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
static unsigned tlsserver_from_source(struct tlsserver *s, const struct tlsconn *c)
{
	struct list_node *n, *next;
	unsigned count = 0;

	list_for_each_safe(n, next, &s->conns)
		count += !strcmp(list_entry(n, struct tlsconn, link)->ip, c->ip);
	return count;
}

/* Refused at accept: logged (at most once a second for a source's flood,
 * which must not become a flood of log lines), then closed. */
static void tlsserver_refuse(struct tlsserver *s, struct tlsconn *c, const char *why)
{
	uint64_t now = uv_now(s->tcp.loop);

	if (!strcmp(why, "too_many_connections")) {
		if (s->cfg.log_refused)
			tlsserver_log(s, LOG_LVL_WARN, "conn_refused",
				      json_pack("{s:s, s:s}", "peer", c->peer, "reason", why));
	} else if (s->refused_logged_ms == 0 || now - s->refused_logged_ms >= 1000) {
		tlsserver_log(s, LOG_LVL_WARN, "conn_refused",
			      json_pack("{s:s, s:s, s:i, s:i}", "peer", c->peer, "reason", why,
					"max_per_source", (int)s->cfg.max_per_source,
					"not_logged", (int)s->refused_unlogged));
		s->refused_logged_ms = now;
		s->refused_unlogged = 0;
	} else {
		s->refused_unlogged++;
	}
	tlsconn_close(c, why);
}

static void tlsserver_connection_cb(uv_stream_t *server, int status)
{
	struct tlsserver *s = server->data;
	struct tlsconn *c = status < 0 ? NULL : calloc(1, sizeof(*c));
	struct mtls_conn *tls = NULL;

	if (status < 0)
		return;
	/* The core always accepts (libuv keeps polling the listener); without
	 * memory for a connection it is taken and closed at once. */
	if (!c || conn_init(&c->conn, &s->cl, &tlsconn_ops, c) < 0) {
		free(c);
		if (conn_accept(&s->cl, server, NULL, 1) < 0) /* taken and reset */
			return;
		return;
	}
	c->srv = s;
	c->write_high = TLSSERVER_WRITE_HIGH;
	c->pending_closes = 3; /* the conn's handle and the two timers */
	s->refs++;
	s->n_conns++;
	uv_timer_init(server->loop, &c->timer);
	uv_timer_init(server->loop, &c->kick);
	c->timer.data = c->kick.data = c;
	list_add_head(&s->conns, &c->link);
	if (conn_accept(&s->cl, server, &c->conn, 0) < 0) {
		tlsconn_close(c, "accept_failed");
		return;
	}
	tlsconn_name_peer(c);
	if (s->n_conns > s->cfg.max_conns) {
		tlsserver_refuse(s, c, "too_many_connections");
		return;
	}
	if (s->cfg.max_per_source && tlsserver_from_source(s, c) > s->cfg.max_per_source) {
		tlsserver_refuse(s, c, "too_many_from_source");
		return;
	}
	uv_tcp_nodelay(&c->conn.h.tcp, 1);
	if (mtls_conn_new_server(s->tls, &tls) < 0) {
		tlsconn_close(c, "out_of_memory");
		return;
	}
	conn_set_xprt(&c->conn, &xprt_tls_ops, tls);
	tlsconn_set_timeout(c, s->cfg.handshake_ms, 0, "handshake_timeout");
	conn_start(&c->conn);
}

int tlsserver_start(uv_loop_t *loop, const struct tlsserver_config *cfg,
		    const struct tlsserver_ops *ops, struct mtls_ctx *tls, void *owner,
		    struct tlsserver **out, int *port)
{
	struct tlsserver *s = calloc(1, sizeof(*s));
	uint16_t bound = 0;
	int rc;

	if (!s)
		return UV_ENOMEM;
	if (cfg->port < 0 || cfg->port > 65535) {
		free(s);
		return UV_EINVAL;
	}
	s->cfg = *cfg;
	s->cfg.host = NULL;
	s->ops = ops;
	s->owner = owner;
	s->refs = 1;
	list_init(&s->conns);
	conn_loop_init(&s->cl, loop);
	s->tls = mtls_ctx_ref(tls);
	if ((rc = conn_listen(loop, &s->tcp, cfg->host, (uint16_t)cfg->port,
			      tlsserver_connection_cb, s, &bound)) < 0) {
		if (s->tcp.loop) {
			tlsserver_stop(s, NULL);
		} else {
			mtls_ctx_unref(s->tls);
			free(s);
		}
		return rc;
	}
	*port = bound;
	*out = s;
	return 0;
}

static void tlsserver_close_cb(uv_handle_t *h)
{
	tlsserver_unref(h->data);
}

void tlsserver_stop(struct tlsserver *s, void (*stopped)(void *owner))
{
	struct list_node *n, *next;

	if (!s || s->stopping)
		return;
	s->stopping = 1;
	s->stopped = stopped;
	list_for_each_safe(n, next, &s->conns)
		tlsconn_close(list_entry(n, struct tlsconn, link), "server_stopping");
	s->tcp.data = s;
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
