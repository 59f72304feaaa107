/* conn: see conn.h; the lifecycle is in docs/internals/connection.md.
 *
 * The write queue is one linear buffer per conn: bytes for the socket are
 * appended at wlen, one uv_write is in flight for [0, inflight), and when
 * it completes the rest moves to the front. The buffer exists only while
 * it holds bytes (an idle connection holds none) and comes from the
 * loop's pool (steady traffic allocates nothing). An owner that keeps
 * conn_queued() under CONN_HIGH before each write of at most a chunk
 * (the relay pump does) never makes it grow; one that writes more gets a
 * bigger buffer, and the one a write in flight still uses is kept until
 * that write completes (retired). An eager conn (conn_set_eager: the
 * relay) first writes at once what the socket takes (uv_try_write, from
 * the owner's bytes or from where the transport's ciphertext lies) and
 * queues only the rest: libuv's uv_write would take the bytes at once too,
 * but ends each request by updating the socket's epoll registration (one
 * epoll_ctl per write) and calls back a loop turn later.
 *
 * Reads go into the loop's one read buffer (CONN_RCAP: a bulk sender's
 * bytes in one read) and are dealt with before the read callback
 * returns: fed to the transport, or (plain) handed to the owner. A
 * transport's plaintext is gathered into the loop's plaintext buffer, as
 * many records as are there, and handed over at once (one write on the
 * other side of a relay, not one per TLS record). */
#include "conn.h"

#include <errno.h>
#include <malloc.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static const char *const conn_state_names[CONN_ST__COUNT] = {
	[CONN_ST_INIT] = "init",	   [CONN_ST_CONNECTING] = "connecting",
	[CONN_ST_HANDSHAKE] = "handshake", [CONN_ST_OPEN] = "open",
	[CONN_ST_CLOSING] = "closing",	   [CONN_ST_CLOSED] = "closed",
};

static const char *const conn_reason_names[CONN_ER__COUNT] = {
	[CONN_ER_NONE] = "none",
	[CONN_ER_CLOSED] = "closed",
	[CONN_ER_DENIED] = "denied",
	[CONN_ER_STOPPED] = "stopped",
	[CONN_ER_CONNECT_REFUSED] = "connect_refused",
	[CONN_ER_CONNECT_TIMEOUT] = "connect_timeout",
	[CONN_ER_HANDSHAKE_FAILED] = "handshake_failed",
	[CONN_ER_HANDSHAKE_TIMEOUT] = "handshake_timeout",
	[CONN_ER_PEER_IDENTITY_MISMATCH] = "peer_identity_mismatch",
	[CONN_ER_TLS_ERROR] = "tls_error",
	[CONN_ER_RESET] = "reset",
	[CONN_ER_WRITE_ERROR] = "write_error",
	[CONN_ER_IDLE_TIMEOUT] = "idle_timeout",
	[CONN_ER_NO_MEMORY] = "no_memory",
	[CONN_ER_PROTOCOL] = "protocol",
};

const char *conn_state_name(enum conn_state s)
{
	return (unsigned)s < CONN_ST__COUNT ? conn_state_names[s] : "unknown";
}

const char *conn_reason_name(enum conn_reason r)
{
	return (unsigned)r < CONN_ER__COUNT ? conn_reason_names[r] : "unknown";
}

int conn_reason_resets(enum conn_reason r)
{
	return r == CONN_ER_RESET || r == CONN_ER_TLS_ERROR || r == CONN_ER_WRITE_ERROR;
}

int conn_reason_is_error(enum conn_reason r)
{
	return r != CONN_ER_NONE && r != CONN_ER_CLOSED && r != CONN_ER_DENIED &&
	       r != CONN_ER_STOPPED;
}

const struct conn_xprt_ops conn_xprt_plain = {.name = "plain"};

/* ---- the loop's shared state */

void conn_loop_init(struct conn_loop *cl, uv_loop_t *loop)
{
	memset(cl, 0, offsetof(struct conn_loop, rbuf)); /* the buffers need none */
	cl->loop = loop;
}

void conn_loop_cleanup(struct conn_loop *cl)
{
	while (cl->pooled > 0)
		free(cl->pool[--cl->pooled]);
}

void conn_loop_trim_heap(struct conn_loop *cl)
{
	uint64_t now = uv_now(cl->loop);

	if (!cl->heap_dirty || now - cl->heap_trimmed_at < 1000)
		return;
	cl->heap_trimmed_at = now;
	cl->heap_dirty = 0;
	malloc_trim(0);
}

/* ---- the write queue */

/* A buffer for at least `need` bytes: a small one for a small need (a
 * handshake flight, a verdict frame: most connections never write more
 * at once), else a pooled one of CONN_WCAP, else a new one. */
static uint8_t *conn_buf_get(struct conn_loop *cl, size_t need, size_t *cap)
{
	if (need <= CONN_SMALL) {
		*cap = CONN_SMALL;
		return malloc(CONN_SMALL);
	}
	if (need <= CONN_WCAP && cl->pooled) {
		*cap = CONN_WCAP;
		return cl->pool[--cl->pooled];
	}
	*cap = need > CONN_WCAP ? need : CONN_WCAP;
	return malloc(*cap);
}

/* Gives a buffer back: to the pool when it is of the pooled size. */
static void conn_buf_put(struct conn_loop *cl, uint8_t *buf, size_t cap)
{
	if (cap == CONN_WCAP && cl->pooled < CONN_POOL)
		cl->pool[cl->pooled++] = buf;
	else
		free(buf);
}

/* Room for n more bytes in c's queue. 0 or -ENOMEM. */
static int conn_wbuf_reserve(struct conn *c, size_t n)
{
	size_t cap;
	uint8_t *nb;

	if (c->wbuf && c->wcap - c->wlen >= n)
		return 0;
	if (!(nb = conn_buf_get(c->cl, c->wlen + n > c->wcap * 2 ? c->wlen + n : c->wcap * 2,
				&cap)))
		return -ENOMEM;
	if (c->wbuf) {
		memcpy(nb, c->wbuf, c->wlen);
		if (c->inflight && !c->retired) /* the write in flight keeps the old one */
			c->retired = c->wbuf;
		else
			conn_buf_put(c->cl, c->wbuf, c->wcap);
	}
	c->wbuf = nb;
	c->wcap = cap;
	return 0;
}

/* Gives c's buffer back once it holds nothing. */
static void conn_wbuf_release(struct conn *c)
{
	if (!c->wbuf || c->wlen > 0 || c->inflight > 0)
		return;
	conn_buf_put(c->cl, c->wbuf, c->wcap);
	c->wbuf = NULL;
	c->wcap = 0;
}

static enum conn_reason conn_write_reason(int status)
{
	return status == UV_ECONNRESET || status == UV_EPIPE ? CONN_ER_RESET : CONN_ER_WRITE_ERROR;
}

static void conn_written_cb(uv_write_t *req, int status);

/* Starts a write of what is queued, if none is in flight. */
static int conn_kick(struct conn *c)
{
	if (c->inflight || !c->wlen)
		return 0;
	uv_buf_t b = uv_buf_init((char *)c->wbuf, (unsigned)c->wlen);
	int rc = uv_write(&c->wreq, &c->h.stream, &b, 1, conn_written_cb);
	if (rc < 0) {
		conn_finalize(c, conn_write_reason(rc));
		return rc;
	}
	c->inflight = c->wlen;
	return 0;
}

/* An eager conn with nothing queued writes what the socket takes now:
 * how many bytes it took (0: none now, or not eager), or < 0 with c
 * finalized (a write error ends c at once). */
static ssize_t conn_try(struct conn *c, const uint8_t *data, size_t len)
{
	if (!c->eager || c->wlen || !len)
		return 0;
	uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
	int rc = uv_try_write(&c->h.stream, &b, 1);
	if (rc == UV_EAGAIN)
		return 0;
	if (rc < 0)
		conn_finalize(c, conn_write_reason(rc));
	return rc;
}

/* Writes data: at once what an eager conn's socket takes, the rest
 * queued. 0 or < 0, c finalized. */
static int conn_put(struct conn *c, const uint8_t *data, size_t len)
{
	ssize_t took = conn_try(c, data, len);

	if (took < 0)
		return (int)took;
	if ((size_t)took == len)
		return 0;
	if (conn_wbuf_reserve(c, len - (size_t)took) < 0) {
		conn_finalize(c, CONN_ER_NO_MEMORY);
		return -ENOMEM;
	}
	memcpy(c->wbuf + c->wlen, data + took, len - (size_t)took);
	c->wlen += len - (size_t)took;
	return conn_kick(c);
}

int conn_flush(struct conn *c)
{
	const uint8_t *p;
	size_t n;
	int rc;

	if (conn_closing(c))
		return -EPIPE;
	while (c->xprt->peek && (n = c->xprt->peek(c, &p)) > 0) {
		if ((rc = conn_put(c, p, n)) < 0)
			return rc;
		c->xprt->consume(c, n);
	}
	return 0;
}

int conn_write(struct conn *c, const uint8_t *data, size_t len)
{
	if (c->state != CONN_ST_OPEN || c->shut_wanted)
		return -ENOTCONN;
	c->bytes_out += len;
	if (c->xprt->send) {
		if (c->xprt->send(c, data, len) < 0) {
			conn_finalize(c, CONN_ER_TLS_ERROR);
			return -EPROTO;
		}
		return conn_flush(c);
	}
	return conn_put(c, data, len);
}

void conn_set_eager(struct conn *c)
{
	c->eager = 1;
}

size_t conn_queued(const struct conn *c)
{
	return c->wlen;
}

static void conn_written_cb(uv_write_t *req, int status)
{
	struct conn *c = req->handle->data;

	free(c->retired);
	c->retired = NULL;
	if (conn_closing(c))
		return; /* the close callback gives the buffer back */
	if (status < 0) {
		conn_finalize(c, conn_write_reason(status));
		return;
	}
	memmove(c->wbuf, c->wbuf + c->inflight, c->wlen - c->inflight);
	c->wlen -= c->inflight;
	c->inflight = 0;
	conn_wbuf_release(c);
	if (conn_kick(c) < 0)
		return;
	conn_advance(c); /* a shutdown waiting for the queue */
	if (!conn_closing(c) && c->ops->drained)
		c->ops->drained(c);
}

/* ---- reading */

static void conn_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct conn *c = h->data;
	(void)hint;
	*buf = uv_buf_init((char *)c->cl->rbuf, sizeof(c->cl->rbuf));
}

static void conn_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	struct conn *c = st->data;
	(void)buf;

	if (n == 0 || conn_closing(c))
		return;
	if (n == UV_EOF) {
		if (c->state != CONN_ST_OPEN) {
			c->why = "peer closed before the connection was set up";
			conn_finalize(c, CONN_ER_RESET);
			return;
		}
		c->eof_tcp = 1;
		conn_advance(c);
		return;
	}
	if (n < 0) {
		if (!c->why)
			c->why = c->state == CONN_ST_OPEN
					 ? "connection reset"
					 : "peer closed before the connection was set up";
		conn_finalize(c, CONN_ER_RESET);
		return;
	}
	c->last_read = uv_now(c->cl->loop);
	if (c->xprt->recv) {
		if (c->xprt->recv(c, c->cl->rbuf, (size_t)n) < 0) {
			conn_finalize(c, CONN_ER_NO_MEMORY);
			return;
		}
		conn_advance(c);
		return;
	}
	/* Plain: the socket's bytes are the plaintext (read only while OPEN
	 * and the owner reads: see conn_update_reading). */
	c->bytes_in += (uint64_t)n;
	if (c->ops->data && c->ops->data(c, c->cl->rbuf, (size_t)n) < 0)
		return;
	if (!conn_closing(c))
		conn_advance(c);
}

/* Reads from the socket when the state needs it: a handshake always, an
 * open connection while the owner reads and the peer has not ended. */
static void conn_update_reading(struct conn *c)
{
	int want = c->state == CONN_ST_HANDSHAKE ||
		   (c->state == CONN_ST_OPEN && c->want_read && !c->eof_tcp);

	if (want == c->reading)
		return;
	if (want && uv_read_start(&c->h.stream, conn_alloc_cb, conn_read_cb) < 0) {
		conn_finalize(c, CONN_ER_RESET);
		return;
	}
	if (!want)
		uv_read_stop(&c->h.stream);
	c->reading = want;
}

/* ---- the driver */

/* HANDSHAKE: 1 when it moved on to OPEN, 0 when it waits. */
static int conn_do_handshake(struct conn *c)
{
	enum conn_reason reason = CONN_ER_HANDSHAKE_FAILED;
	int r = c->xprt->handshake ? c->xprt->handshake(c, &reason) : 1;

	if (c->xprt->handshake && conn_flush(c) < 0)
		return 0;
	if (r < 0) {
		conn_finalize(c, reason);
		return 0;
	}
	if (r == 0)
		return 0;
	c->state = CONN_ST_OPEN;
	if (c->ops->open)
		c->ops->open(c);
	return !conn_closing(c);
}

static void conn_shut_cb(uv_shutdown_t *req, int status)
{
	struct conn *c = req->handle->data;

	if (conn_closing(c))
		return;
	if (status < 0) {
		conn_finalize(c, conn_write_reason(status));
		return;
	}
	if (c->ops->shut)
		c->ops->shut(c);
}

/* OPEN: plaintext the transport holds to the owner (gathered: as much
 * as the plaintext buffer holds in one callback), and our shutdown. */
static void conn_do_open(struct conn *c)
{
	while (c->xprt->read && c->want_read && !c->eof_in && !conn_closing(c)) {
		size_t got = 0;
		int n;
		while ((n = c->xprt->read(c, c->cl->pbuf + got, sizeof(c->cl->pbuf) - got)) > 0 &&
		       (got += (size_t)n) < sizeof(c->cl->pbuf))
			;
		if (conn_flush(c) < 0) /* what TLS answers (key updates) */
			return;
		if (got) {
			c->bytes_in += got;
			if (c->ops->data && c->ops->data(c, c->cl->pbuf, got) < 0)
				return;
			if (conn_closing(c))
				return;
		}
		if (n == 0)
			break;
		if (n == -EPIPE) {
			c->eof_tcp = 1; /* close_notify: nothing more comes */
			break;
		}
		if (n < 0) {
			c->why = "a TLS record did not decrypt";
			conn_finalize(c, CONN_ER_TLS_ERROR);
			return;
		}
	}
	if (conn_closing(c))
		return;
	if (c->eof_tcp && !c->eof_in && (c->want_read || !c->xprt->read)) {
		c->eof_in = 1;
		if (c->ops->eof)
			c->ops->eof(c);
		if (conn_closing(c))
			return;
	}
	if (!c->shut_wanted || c->shut_started || c->wlen)
		return;
	if (c->xprt->shutdown && !c->xprt_shut) {
		c->xprt_shut = 1;
		c->xprt->shutdown(c);
		if (conn_flush(c) < 0 || c->wlen)
			return; /* the write callback comes back here */
	}
	c->shut_started = 1;
	int rc = uv_shutdown(&c->sreq, &c->h.stream, conn_shut_cb);
	if (rc < 0)
		conn_finalize(c, conn_write_reason(rc));
}

void conn_advance(struct conn *c)
{
	if (c->advancing || !c->cl)
		return;
	c->advancing = 1;
	for (;;) {
		if (c->state == CONN_ST_HANDSHAKE && conn_do_handshake(c))
			continue;
		if (c->state == CONN_ST_OPEN)
			conn_do_open(c);
		break;
	}
	if (!conn_closing(c))
		conn_update_reading(c);
	c->advancing = 0;
}

/* ---- starting */

static int conn_init_kind(struct conn *c, struct conn_loop *cl, const struct conn_ops *ops,
			  void *owner, int is_pipe)
{
	int rc;

	memset(c, 0, sizeof(*c));
	if ((rc = is_pipe ? uv_pipe_init(cl->loop, &c->h.pipe, 0)
			  : uv_tcp_init(cl->loop, &c->h.tcp)) < 0)
		return rc;
	c->h.handle.data = c;
	c->handle_init = 1;
	c->is_pipe = is_pipe ? 1 : 0;
	c->cl = cl;
	c->ops = ops;
	c->owner = owner;
	c->xprt = &conn_xprt_plain;
	c->state = CONN_ST_INIT;
	c->last_read = uv_now(cl->loop);
	return 0;
}

int conn_init(struct conn *c, struct conn_loop *cl, const struct conn_ops *ops, void *owner)
{
	return conn_init_kind(c, cl, ops, owner, 0);
}

int conn_init_pipe(struct conn *c, struct conn_loop *cl, const struct conn_ops *ops, void *owner)
{
	return conn_init_kind(c, cl, ops, owner, 1);
}

void conn_set_xprt(struct conn *c, const struct conn_xprt_ops *xprt, void *xprt_ctx)
{
	c->xprt = xprt;
	c->xprt_ctx = xprt_ctx;
}

void conn_start(struct conn *c)
{
	if (c->state != CONN_ST_INIT && c->state != CONN_ST_CONNECTING)
		return;
	c->state = CONN_ST_HANDSHAKE;
	if (!c->is_pipe)
		uv_tcp_nodelay(&c->h.tcp, 1);
	conn_advance(c);
}

static void conn_connect_cb(uv_connect_t *req, int status)
{
	struct conn *c = req->handle->data;

	if (conn_closing(c))
		return;
	if (status < 0) {
		c->why = uv_strerror(status);
		conn_finalize(c, status == UV_ETIMEDOUT ? CONN_ER_CONNECT_TIMEOUT
							: CONN_ER_CONNECT_REFUSED);
		return;
	}
	if (c->ops->connected) {
		c->ops->connected(c);
		if (conn_closing(c))
			return;
	}
	conn_start(c);
}

void conn_connect(struct conn *c, const struct sockaddr *dst)
{
	c->state = CONN_ST_CONNECTING;
	if (c->is_pipe) { /* errors come to the callback */
		uv_pipe_connect(&c->creq, &c->h.pipe, ((const struct sockaddr_un *)dst)->sun_path,
				conn_connect_cb);
		return;
	}
	int rc = uv_tcp_connect(&c->creq, &c->h.tcp, dst, conn_connect_cb);
	if (rc < 0) {
		c->why = uv_strerror(rc);
		conn_finalize(c, CONN_ER_CONNECT_REFUSED);
	}
}

int conn_upgrade(struct conn *c, const struct conn_xprt_ops *xprt, void *xprt_ctx,
		 const uint8_t *data, size_t len)
{
	c->xprt = xprt;
	c->xprt_ctx = xprt_ctx;
	c->state = CONN_ST_HANDSHAKE;
	if (len && xprt->recv(c, data, len) < 0) {
		conn_finalize(c, CONN_ER_NO_MEMORY);
		return -ENOMEM;
	}
	conn_advance(c);
	return 0;
}

void conn_read_start(struct conn *c)
{
	c->want_read = 1;
	conn_advance(c);
}

void conn_read_stop(struct conn *c)
{
	c->want_read = 0;
	if (!c->advancing && !conn_closing(c))
		conn_update_reading(c);
}

void conn_shutdown(struct conn *c)
{
	c->shut_wanted = 1;
	conn_advance(c);
}

void conn_trim(struct conn *c)
{
	c->cl->heap_dirty = 1;
}

/* ---- the end */

static void conn_closed_cb(uv_handle_t *h)
{
	struct conn *c = h->data;

	free(c->retired);
	c->retired = NULL;
	c->wlen = c->inflight = 0; /* no write is in flight any more */
	conn_wbuf_release(c);
	if (c->xprt->free && c->xprt_ctx)
		c->xprt->free(c->xprt_ctx);
	c->xprt_ctx = NULL;
	c->state = CONN_ST_CLOSED;
	c->ops->closed(c); /* may free c */
}

void conn_finalize(struct conn *c, enum conn_reason reason)
{
	if (!c->handle_init || conn_closing(c))
		return;
	c->reason = reason;
	c->state = CONN_ST_CLOSING;
	if (c->ops->end)
		c->ops->end(c, reason);
	if (c->is_pipe || !conn_reason_resets(reason) || c->shut_started ||
	    uv_tcp_close_reset(&c->h.tcp, conn_closed_cb) < 0)
		uv_close(&c->h.handle, conn_closed_cb);
}

/* ---- accepting and listening */

static void conn_spare_closed_cb(uv_handle_t *h)
{
	struct conn_loop *cl = h->data;
	uv_stream_t *waiting = cl->accept_waiting;

	cl->spare_busy[((char *)h - (char *)cl->spare) / sizeof(cl->spare[0])] = 0;
	cl->accept_waiting = NULL;
	if (waiting) {
		int rc = conn_accept(cl, waiting, NULL, 1); /* always -ECONNABORTED */
		(void)rc;
	}
}

int conn_accept(struct conn_loop *cl, uv_stream_t *listener, struct conn *c, int refuse)
{
	int i;

	if (c && !refuse)
		return uv_accept(listener, &c->h.stream);
	cl->refused_at_accept++;
	for (i = 0; i < CONN_SPARES && cl->spare_busy[i]; i++)
		;
	if (i == CONN_SPARES) { /* libuv stops polling until we accept */
		cl->accept_waiting = listener;
		return -ECONNABORTED;
	}
	int is_pipe = listener->type == UV_NAMED_PIPE;
	/* Neither init fails in practice: no socket is made (AF_UNSPEC). */
	if ((is_pipe ? uv_pipe_init(cl->loop, &cl->spare[i].pipe, 0)
		     : uv_tcp_init(cl->loop, &cl->spare[i].tcp)) < 0) {
		cl->accept_waiting = listener;
		return -ECONNABORTED;
	}
	cl->spare_busy[i] = 1;
	cl->spare[i].handle.data = cl;
	if (uv_accept(listener, (uv_stream_t *)&cl->spare[i].handle) < 0 || is_pipe ||
	    uv_tcp_close_reset(&cl->spare[i].tcp, conn_spare_closed_cb) < 0)
		uv_close(&cl->spare[i].handle, conn_spare_closed_cb);
	return -ECONNABORTED;
}

int conn_adopt(struct conn_loop *cl, uv_os_sock_t fd, struct conn *c, int refuse)
{
	struct linger reset = {.l_onoff = 1, .l_linger = 0};
	int rc;

	if (c && !refuse) {
		rc = c->is_pipe ? uv_pipe_open(&c->h.pipe, fd) : uv_tcp_open(&c->h.tcp, fd);
		if (rc < 0)
			close(fd);
		return rc;
	}
	cl->refused_at_accept++;
	if (uv_guess_handle(fd) == UV_TCP) /* a reset, as conn_accept's */
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
	close(fd);
	return -ECONNABORTED;
}

/* group: 0 alone, 1 the first of a SO_REUSEPORT group, 2 joining it. */
static int conn_listen_on(uv_loop_t *loop, uv_tcp_t *listener, const char *host, uint16_t port,
			  int group, uv_connection_cb cb, void *data, uint16_t *bound_port)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss), one = 1;
	int rc;

	if ((rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss)) < 0 &&
	    (rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss)) < 0)
		return rc;
	if (group == 1 && port) { /* free? (a plain bind, as libuv's: SO_REUSEADDR) */
		int s = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (s < 0)
			return uv_translate_sys_error(errno);
		rc = setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
				     bind(s, (struct sockaddr *)&ss,
					  ss.ss_family == AF_INET ? sizeof(struct sockaddr_in)
								  : sizeof(struct sockaddr_in6)) < 0
			     ? uv_translate_sys_error(errno)
			     : 0;
		close(s);
		if (rc < 0)
			return rc;
	}
	if ((rc = uv_tcp_init(loop, listener)) < 0)
		return rc;
	listener->data = data;
	if (group) { /* the socket made here: SO_REUSEPORT before the bind */
		int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
			rc = uv_translate_sys_error(errno);
		else
			rc = uv_tcp_open(listener, fd);
		if (rc < 0 && fd >= 0)
			close(fd);
	}
	if (rc < 0 || (rc = uv_tcp_bind(listener, (struct sockaddr *)&ss, 0)) < 0 ||
	    (rc = uv_listen((uv_stream_t *)listener, CONN_BACKLOG, cb)) < 0)
		return rc;
	if (bound_port) {
		if ((rc = uv_tcp_getsockname(listener, (struct sockaddr *)&ss, &len)) < 0)
			return rc;
		*bound_port =
			ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
						      : ((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	return 0;
}

int conn_listen(uv_loop_t *loop, uv_tcp_t *listener, const char *host, uint16_t port,
		uv_connection_cb cb, void *data, uint16_t *bound_port)
{
	return conn_listen_on(loop, listener, host, port, 0, cb, data, bound_port);
}

int conn_listen_group(uv_loop_t *loop, uv_tcp_t *listener, const char *host, uint16_t port,
		      int first, uv_connection_cb cb, void *data, uint16_t *bound_port)
{
	return conn_listen_on(loop, listener, host, port, first ? 1 : 2, cb, data, bound_port);
}
