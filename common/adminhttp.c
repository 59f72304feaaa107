/* adminhttp: see adminhttp.h.
 *
 * A connection: READING (head bytes into a fixed buffer) -> WRITING (one
 * uv_write of the whole response) -> CLOSING. The timer and the TCP handle
 * close together; the connection is freed by the second close callback. */
#include "adminhttp.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct adminhttp {
	uv_tcp_t tcp;
	adminhttp_cb cb;
	void *arg;
	const char *const *network_paths; /* NULL: every path to everyone */
	struct ahconn *conns;
	unsigned n_conns;
	int refs; /* the listener and each connection */
};

struct ahconn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_write_t wr;
	struct adminhttp *srv;
	struct ahconn *next, **pprev;
	char *out;
	size_t len;
	int closing, pending_closes, writing;
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
	if (--s->refs == 0)
		free(s);
}

static void ah_conn_closed(uv_handle_t *h)
{
	struct ahconn *c = h->data;

	if (--c->pending_closes > 0)
		return;
	free(c->out);
	c->srv->n_conns--;
	ah_unref(c->srv);
	free(c);
}

static void ah_conn_close(struct ahconn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	*c->pprev = c->next;
	if (c->next)
		c->next->pprev = c->pprev;
	c->pending_closes = 2;
	uv_close((uv_handle_t *)&c->tcp, ah_conn_closed);
	uv_close((uv_handle_t *)&c->timer, ah_conn_closed);
}

static void ah_timeout(uv_timer_t *t)
{
	ah_conn_close(t->data);
}

static void ah_written(uv_write_t *wr, int status)
{
	(void)status;
	ah_conn_close(wr->data);
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

	c->out = malloc((size_t)n + body);
	if (c->out) {
		memcpy(c->out, head, (size_t)n);
		if (body)
			memcpy(c->out + n, r->body, body);
		c->len = (size_t)n + body;
	}
	free(r->body);
	uv_read_stop((uv_stream_t *)&c->tcp);
	c->writing = 1;
	uv_buf_t b = uv_buf_init(c->out, (unsigned)c->len);
	c->wr.data = c;
	if (!c->out || uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, ah_written) < 0)
		ah_conn_close(c);
}

static void ah_error(struct ahconn *c, int status, const char *msg)
{
	struct adminhttp_response r = {status, NULL, strdup(msg), strlen(msg)};
	if (!r.body)
		r.len = 0;
	ah_respond(c, NULL, &r);
}

static void ah_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct ahconn *c = h->data;
	(void)hint;
	*buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - c->len));
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
static int ah_conn_loopback(uv_tcp_t *t)
{
	struct sockaddr_storage local, peer;
	int ll = sizeof(local), pl = sizeof(peer);

	return uv_tcp_getsockname(t, (struct sockaddr *)&local, &ll) == 0 &&
	       uv_tcp_getpeername(t, (struct sockaddr *)&peer, &pl) == 0 &&
	       ah_is_loopback(&local) && ah_is_loopback(&peer);
}

static void ah_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	struct ahconn *c = st->data;
	char method[8], path[256];
	(void)buf;

	if (n < 0) {
		ah_conn_close(c);
		return;
	}
	if (n == 0 || c->writing)
		return;
	c->len += (size_t)n;
	int rc = adminhttp_parse(c->buf, c->len, method, sizeof(method), path, sizeof(path));
	if (rc == -EAGAIN && c->len == sizeof(c->buf))
		rc = -E2BIG;
	switch (rc) {
	case -EAGAIN:
		return;
	case -EBADMSG:
		ah_error(c, 400, "bad request\n");
		return;
	case -E2BIG:
		ah_error(c, 431, "request head too large\n");
		return;
	case -ENOSYS:
		ah_error(c, 405, "only GET and HEAD\n");
		return;
	}
	if (!c->loopback && !ah_network_path(c->srv, path)) {
		struct adminhttp_response r = {403, NULL, strdup("served on loopback only\n"), 0};
		r.len = r.body ? strlen(r.body) : 0;
		ah_respond(c, method, &r);
		return;
	}
	struct adminhttp_response r = {404, NULL, NULL, 0};
	c->srv->cb(c->srv->arg, method, path, &r);
	ah_respond(c, method, &r);
}

static void ah_accept(uv_stream_t *server, int status)
{
	struct adminhttp *s = server->data;
	struct ahconn *c;

	if (status < 0 || !(c = calloc(1, sizeof(*c))))
		return;
	c->srv = s;
	s->refs++;
	s->n_conns++;
	uv_tcp_init(server->loop, &c->tcp);
	uv_timer_init(server->loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->next = s->conns;
	if (c->next)
		c->next->pprev = &c->next;
	c->pprev = &s->conns;
	s->conns = c;
	int rc = uv_accept(server, (uv_stream_t *)&c->tcp);
	if (rc == 0)
		c->loopback = ah_conn_loopback(&c->tcp);
	if (rc < 0 || s->n_conns > ADMINHTTP_MAX_CONNS ||
	    uv_timer_start(&c->timer, ah_timeout, ADMINHTTP_TIMEOUT_MS, 0) < 0 ||
	    uv_read_start((uv_stream_t *)&c->tcp, ah_alloc, ah_read) < 0)
		ah_conn_close(c);
}

int adminhttp_start(uv_loop_t *loop, const char *host, int port, adminhttp_cb cb, void *arg,
		    struct adminhttp **out, int *bound_port)
{
	struct adminhttp *s = calloc(1, sizeof(*s));
	struct sockaddr_storage ss;
	int rc, len = sizeof(ss);

	if (!s)
		return UV_ENOMEM;
	if ((rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss)) < 0 &&
	    (rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss)) < 0) {
		free(s);
		return rc;
	}
	s->cb = cb;
	s->arg = arg;
	s->refs = 1;
	uv_tcp_init(loop, &s->tcp);
	s->tcp.data = s;
	if ((rc = uv_tcp_bind(&s->tcp, (struct sockaddr *)&ss, 0)) < 0 ||
	    (rc = uv_listen((uv_stream_t *)&s->tcp, 128, ah_accept)) < 0 ||
	    (rc = uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&ss, &len)) < 0) {
		adminhttp_stop(s);
		return rc;
	}
	*bound_port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
						    : ((struct sockaddr_in6 *)&ss)->sin6_port);
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
	if (!s)
		return;
	while (s->conns)
		ah_conn_close(s->conns);
	uv_close((uv_handle_t *)&s->tcp, ah_listener_closed);
}
