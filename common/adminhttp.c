/* adminhttp: see adminhttp.h.
 *
 * A connection is a plain struct conn of the connection core (conn.h):
 * the core accepts (always: a connection over ADMINHTTP_MAX_CONNS or
 * without memory is taken and closed), reads, writes and closes (the one
 * path, conn_finalize). Here: READING (head bytes into a fixed buffer) ->
 * WRITING (the whole response queued at once) -> closed once it is
 * written (ops->drained), or by the timer. The timer and the conn's
 * handle close together; the connection is freed by the second close
 * callback. */
#include "adminhttp.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "list.h"

struct adminhttp {
	uv_tcp_t tcp;
	struct conn_loop cl; /* the core's per-loop state, for this server's conns */
	adminhttp_cb cb;
	void *arg;
	const char *const *network_paths; /* NULL: every path to everyone */
	struct list_node conns;
	unsigned n_conns;
	int refs; /* the listener and each connection */
};

struct ahconn {
	struct conn conn;
	uv_timer_t timer;
	struct adminhttp *srv;
	struct list_node link;
	size_t len;
	int pending_closes, writing;
	int loopback; /* both ends on loopback */
	char buf[ADMINHTTP_MAX_HEAD];
};

int adminhttp_parse(const char *buf, size_t len, char *method, size_t method_len, char *path,
		    size_t path_len)
{
	const char *end = NULL, *sp1, *sp2, *eol;

	/* The head ends at the first empty line. */
	for (size_t i = 0; i + 3 < len; i++)
		if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' &&
		    buf[i + 3] == '\n') {
			end = buf + i;
			break;
		}
	if (!end)
		return len >= ADMINHTTP_MAX_HEAD ? -E2BIG : -EAGAIN;
	if (memchr(buf, '\0', (size_t)(end - buf)))
		return -EBADMSG;
	eol = memchr(buf, '\r', (size_t)(end - buf) + 1);
	sp1 = memchr(buf, ' ', (size_t)(eol - buf));
	sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
	if (!sp1 || !sp2 || sp1 == buf || sp2 == sp1 + 1 || sp1[1] != '/' ||
	    (size_t)(eol - sp2 - 1) != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
	    (sp2[8] != '0' && sp2[8] != '1'))
		return -EBADMSG;
	size_t mlen = (size_t)(sp1 - buf);
	const char *q = memchr(sp1 + 1, '?', (size_t)(sp2 - sp1 - 1));
	size_t plen = (size_t)((q ? q : sp2) - sp1 - 1);
	if (mlen >= method_len || plen >= path_len)
		return -EBADMSG;
	for (const char *p = sp1 + 1; p < sp1 + 1 + plen; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return -EBADMSG;
	memcpy(method, buf, mlen);
	method[mlen] = '\0';
	memcpy(path, sp1 + 1, plen);
	path[plen] = '\0';
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return -ENOSYS;
	return 0;
}

static void ah_unref(struct adminhttp *s)
{
	if (--s->refs > 0)
		return;
	conn_loop_cleanup(&s->cl);
	free(s);
}

static void ah_conn_handle_closed(struct ahconn *c)
{
	if (--c->pending_closes > 0)
		return;
	c->srv->n_conns--;
	ah_unref(c->srv);
	free(c);
}

static void ah_timer_closed(uv_handle_t *h)
{
	ah_conn_handle_closed(h->data);
}

static void ah_conn_closed(struct conn *conn)
{
	ah_conn_handle_closed(conn->owner);
}

/* conn_finalize's first call: unlink, close the timer. */
static void ah_conn_end(struct conn *conn, enum conn_reason reason)
{
	struct ahconn *c = conn->owner;
	(void)reason;

	list_del(&c->link);
	uv_close((uv_handle_t *)&c->timer, ah_timer_closed);
}

static void ah_timeout(uv_timer_t *t)
{
	struct ahconn *c = t->data;
	conn_finalize(&c->conn, CONN_ER_IDLE_TIMEOUT);
}

/* The response is written: the connection ends. */
static void ah_drained(struct conn *conn)
{
	struct ahconn *c = conn->owner;

	if (c->writing && conn_queued(conn) == 0)
		conn_finalize(conn, CONN_ER_CLOSED);
}

const char *adminhttp_reason(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 411:
		return "Length Required";
	case 413:
		return "Content Too Large";
	case 415:
		return "Unsupported Media Type";
	case 431:
		return "Request Header Fields Too Large";
	case 501:
		return "Not Implemented";
	case 503:
		return "Service Unavailable";
	default:
		return "Error";
	}
}

/* Sends `r` (its body is taken) and closes after it. */
static void ah_respond(struct ahconn *c, const char *method, struct adminhttp_response *r)
{
	int head_only = method && strcmp(method, "HEAD") == 0;
	size_t body = head_only ? 0 : r->len;
	char head[256];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
			 r->status, adminhttp_reason(r->status),
			 r->content_type ? r->content_type : "text/plain; charset=utf-8", r->len);

	conn_read_stop(&c->conn);
	c->writing = 1;
	/* a failed write finalizes the conn (the core never drops one) */
	int rc = conn_write(&c->conn, (const uint8_t *)head, (size_t)n);
	if (rc == 0 && body)
		rc = conn_write(&c->conn, (const uint8_t *)r->body, body);
	free(r->body);
	(void)rc;
}

static void ah_error(struct ahconn *c, int status, const char *msg)
{
	struct adminhttp_response r = {status, NULL, strdup(msg), strlen(msg)};
	if (!r.body)
		r.len = 0;
	ah_respond(c, NULL, &r);
}

static int ah_network_path(const struct adminhttp *s, const char *path)
{
	if (!s->network_paths)
		return 1;
	for (const char *const *p = s->network_paths; *p; p++)
		if (!strcmp(*p, path))
			return 1;
	return 0;
}

static int ah_is_loopback(const struct sockaddr_storage *a)
{
	if (a->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr) >> 24) == 127;
	if (a->ss_family != AF_INET6)
		return 0;
	const struct in6_addr *x = &((const struct sockaddr_in6 *)a)->sin6_addr;
	return IN6_IS_ADDR_LOOPBACK(x) || (IN6_IS_ADDR_V4MAPPED(x) && x->s6_addr[12] == 127);
}

/* Where the connection came from and to: loopback only when both ends are
 * (a packet from the network to 127.0.0.1 is dropped as martian, but that
 * is one sysctl away: route_localnet). Unknown: not loopback. */
static int ah_conn_loopback(const uv_tcp_t *t)
{
	struct sockaddr_storage local, peer;
	int ll = sizeof(local), pl = sizeof(peer);

	return uv_tcp_getsockname(t, (struct sockaddr *)&local, &ll) == 0 &&
	       uv_tcp_getpeername(t, (struct sockaddr *)&peer, &pl) == 0 &&
	       ah_is_loopback(&local) && ah_is_loopback(&peer);
}

/* Head bytes: buffered until the head is whole, then answered. */
static int ah_data(struct conn *conn, const uint8_t *data, size_t n)
{
	struct ahconn *c = conn->owner;
	char method[8], path[256];
	size_t room = sizeof(c->buf) - c->len;

	if (c->writing)
		return 0;
	memcpy(c->buf + c->len, data, n < room ? n : room);
	c->len += n < room ? n : room;
	int rc = adminhttp_parse(c->buf, c->len, method, sizeof(method), path, sizeof(path));
	if (rc == -EAGAIN && c->len == sizeof(c->buf))
		rc = -E2BIG;
	switch (rc) {
	case -EAGAIN:
		return 0;
	case -EBADMSG:
		ah_error(c, 400, "bad request\n");
		return 0;
	case -E2BIG:
		ah_error(c, 431, "request head too large\n");
		return 0;
	case -ENOSYS:
		ah_error(c, 405, "only GET and HEAD\n");
		return 0;
	}
	if (!c->loopback && !ah_network_path(c->srv, path)) {
		struct adminhttp_response r = {403, NULL, strdup("served on loopback only\n"), 0};
		r.len = r.body ? strlen(r.body) : 0;
		ah_respond(c, method, &r);
		return 0;
	}
	struct adminhttp_response r = {404, NULL, NULL, 0};
	c->srv->cb(c->srv->arg, method, path, &r);
	ah_respond(c, method, &r);
	return 0;
}

/* The peer ended its stream before a whole head: nothing to answer. */
static void ah_eof(struct conn *conn)
{
	struct ahconn *c = conn->owner;

	if (!c->writing)
		conn_finalize(conn, CONN_ER_CLOSED);
}

static const struct conn_ops ah_conn_ops = {
	.data = ah_data,
	.eof = ah_eof,
	.drained = ah_drained,
	.end = ah_conn_end,
	.closed = ah_conn_closed,
};

static void ah_accept(uv_stream_t *server, int status)
{
	struct adminhttp *s = server->data;
	struct ahconn *c;

	if (status < 0)
		return;
	/* The core always accepts (libuv keeps polling the listener); over
	 * the cap or without memory the connection is taken and reset. */
	c = s->n_conns < ADMINHTTP_MAX_CONNS ? calloc(1, sizeof(*c)) : NULL;
	if (!c || conn_init(&c->conn, &s->cl, &ah_conn_ops, c) < 0) {
		free(c);
		if (conn_accept(&s->cl, server, NULL, 1) < 0) /* taken and reset */
			return;
		return;
	}
	c->srv = s;
	c->pending_closes = 2; /* the conn's handle and the timer */
	s->refs++;
	s->n_conns++;
	uv_timer_init(server->loop, &c->timer);
	c->timer.data = c;
	list_add_head(&s->conns, &c->link);
	if (conn_accept(&s->cl, server, &c->conn, 0) < 0 ||
	    uv_timer_start(&c->timer, ah_timeout, ADMINHTTP_TIMEOUT_MS, 0) < 0) {
		conn_finalize(&c->conn, CONN_ER_RESET);
		return;
	}
	c->loopback = ah_conn_loopback(&c->conn.h.tcp);
	conn_start(&c->conn);
	if (!conn_closing(&c->conn))
		conn_read_start(&c->conn);
}

int adminhttp_start(uv_loop_t *loop, const char *host, int port, adminhttp_cb cb, void *arg,
		    struct adminhttp **out, int *bound_port)
{
	struct adminhttp *s = calloc(1, sizeof(*s));
	uint16_t bound = 0;
	int rc;

	if (!s)
		return UV_ENOMEM;
	if (port < 0 || port > 65535) {
		free(s);
		return UV_EINVAL;
	}
	s->cb = cb;
	s->arg = arg;
	s->refs = 1;
	list_init(&s->conns);
	conn_loop_init(&s->cl, loop);
	if ((rc = conn_listen(loop, &s->tcp, host, (uint16_t)port, ah_accept, s, &bound)) < 0) {
		if (s->tcp.loop)
			adminhttp_stop(s);
		else
			free(s);
		return rc;
	}
	*bound_port = bound;
	*out = s;
	return 0;
}

void adminhttp_set_network_paths(struct adminhttp *s, const char *const *paths)
{
	s->network_paths = paths;
}

static void ah_listener_closed(uv_handle_t *h)
{
	ah_unref(h->data);
}

void adminhttp_stop(struct adminhttp *s)
{
	struct list_node *n, *next;

	if (!s)
		return;
	list_for_each_safe(n, next, &s->conns)
		conn_finalize(&list_entry(n, struct ahconn, link)->conn, CONN_ER_STOPPED);
	s->tcp.data = s;
	uv_close((uv_handle_t *)&s->tcp, ah_listener_closed);
}
