/* ctlsock: see ctlsock.h. Each connection: READING (until '\n' or EOF) ->
 * WRITING (the reply) -> CLOSING; any error or the deadline goes straight
 * to ctlsock_conn_finalize(), the one place a connection ends. Its pipe and
 * timer close together and the memory goes when the second close lands. */
#include "admin/ctlsock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define CTLSOCK_DEADLINE_MS 5000

struct ctlsock {
	uv_pipe_t pipe;
	ctlsock_handler_cb cb;
	void *ud;
	int stopping;
	struct ctlsock_conn *conns;
};

struct ctlsock_conn {
	uv_pipe_t pipe;
	uv_timer_t timer;
	uv_write_t wr;
	struct ctlsock *cs;
	struct ctlsock_conn *next, **pprev;
	char buf[CTLSOCK_MAX_REQ];
	size_t len;
	char *reply;
	int pending_closes;
	int closing;
};

static void ctlsock_conn_close_cb(uv_handle_t *h)
{
	struct ctlsock_conn *c = h->data;
	if (--c->pending_closes > 0)
		return;
	free(c->reply);
	free(c);
}

static void ctlsock_conn_finalize(struct ctlsock_conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	*c->pprev = c->next;
	if (c->next)
		c->next->pprev = c->pprev;
	c->pending_closes = 2;
	uv_close((uv_handle_t *)&c->pipe, ctlsock_conn_close_cb);
	uv_close((uv_handle_t *)&c->timer, ctlsock_conn_close_cb);
}

static void ctlsock_timeout_cb(uv_timer_t *t)
{
	ctlsock_conn_finalize(t->data);
}

static void ctlsock_write_cb(uv_write_t *wr, int status)
{
	ctlsock_conn_finalize(wr->data);
}

static void ctlsock_reply(struct ctlsock_conn *c, json_t *reply)
{
	uv_read_stop((uv_stream_t *)&c->pipe);
	char *s = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
	json_decref(reply);
	size_t n = s ? strlen(s) : 0;
	char *line = s ? realloc(s, n + 2) : NULL;
	if (!line) {
		free(s);
		ctlsock_conn_finalize(c);
		return;
	}
	line[n] = '\n';
	line[n + 1] = '\0';
	c->reply = line;
	uv_buf_t b = uv_buf_init(line, (unsigned)(n + 1));
	c->wr.data = c;
	if (uv_write(&c->wr, (uv_stream_t *)&c->pipe, &b, 1, ctlsock_write_cb) < 0)
		ctlsock_conn_finalize(c);
}

static unsigned ctlsock_peer_uid(struct ctlsock_conn *c)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	uv_os_fd_t fd;
	if (uv_fileno((uv_handle_t *)&c->pipe, &fd) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return (unsigned)-1;
	return cred.uid;
}

static void ctlsock_handle(struct ctlsock_conn *c)
{
	json_error_t err;
	json_t *req = json_loadb(c->buf, c->len, 0, &err);
	json_t *reply;

	if (!json_is_object(req))
		reply = json_pack("{s:s}", "error", "request is not a JSON object");
	else
		reply = c->cs->cb(c->cs->ud, req, ctlsock_peer_uid(c));
	json_decref(req);
	ctlsock_reply(c, reply);
}

static void ctlsock_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct ctlsock_conn *c = h->data;
	*buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - c->len));
}

static void ctlsock_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct ctlsock_conn *c = s->data;
	if (n == UV_EOF) {
		ctlsock_handle(c);
		return;
	}
	if (n < 0) {
		ctlsock_conn_finalize(c);
		return;
	}
	c->len += (size_t)n;
	char *nl = memchr(c->buf, '\n', c->len);
	if (nl) {
		c->len = (size_t)(nl - c->buf);
		ctlsock_handle(c);
	} else if (c->len == sizeof(c->buf)) {
		ctlsock_reply(c, json_pack("{s:s}", "error", "request too large"));
	}
}

static void ctlsock_connection_cb(uv_stream_t *server, int status)
{
	struct ctlsock *cs = server->data;
	struct ctlsock_conn *c;

	if (status < 0 || !(c = calloc(1, sizeof(*c))))
		return;
	c->cs = cs;
	uv_pipe_init(server->loop, &c->pipe, 0);
	uv_timer_init(server->loop, &c->timer);
	c->pipe.data = c->timer.data = c;
	c->next = cs->conns;
	if (c->next)
		c->next->pprev = &c->next;
	c->pprev = &cs->conns;
	cs->conns = c;
	if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0 ||
	    uv_read_start((uv_stream_t *)&c->pipe, ctlsock_alloc_cb, ctlsock_read_cb) < 0 ||
	    uv_timer_start(&c->timer, ctlsock_timeout_cb, CTLSOCK_DEADLINE_MS, 0) < 0)
		ctlsock_conn_finalize(c);
}

int ctlsock_start(uv_loop_t *loop, const char *path, ctlsock_handler_cb cb, void *ud,
		  struct ctlsock **out)
{
	struct ctlsock *cs = calloc(1, sizeof(*cs));
	int rc;

	if (!cs)
		return -ENOMEM;
	cs->cb = cb;
	cs->ud = ud;
	if ((rc = uv_pipe_init(loop, &cs->pipe, 0)) < 0) {
		free(cs);
		return rc;
	}
	cs->pipe.data = cs;
	unlink(path);
	/* The umask makes the socket 0600 from its creation on: no window in
	 * which a group or other user could connect before the chmod. */
	mode_t old = umask(0177);
	rc = uv_pipe_bind(&cs->pipe, path);
	umask(old);
	if (rc == 0 && chmod(path, 0600) < 0)
		rc = -errno;
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&cs->pipe, 16, ctlsock_connection_cb);
	if (rc < 0) {
		ctlsock_stop(cs);
		return rc;
	}
	*out = cs;
	return 0;
}

static void ctlsock_close_cb(uv_handle_t *h)
{
	free(h->data);
}

void ctlsock_stop(struct ctlsock *cs)
{
	if (!cs || cs->stopping)
		return;
	cs->stopping = 1;
	while (cs->conns)
		ctlsock_conn_finalize(cs->conns);
	uv_close((uv_handle_t *)&cs->pipe, ctlsock_close_cb);
}
