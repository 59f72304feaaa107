/* ctlsock: see ctlsock.h. The socket's connections are on the connection
 * core (common/conn.h, a pipe conn with the plain transport): accepted
 * through conn_accept (which always accepts, refusing what it cannot
 * serve), ended through conn_finalize only. Each connection: reading
 * (until '\n' or EOF) -> writing the reply -> closed once it is written
 * (CLOSED), or at the 5 s deadline (IDLE_TIMEOUT) or on an error; a peer
 * whose uid may not use the socket gets its error at once, unread. The
 * ctlsock itself is freed when its listener and every connection closed
 * (refs). */
#include "admin/ctlsock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conn.h"
#include "list.h"
#include "log.h"

#define CTLSOCK_DEADLINE_MS 5000

struct ctlsock {
	uv_pipe_t pipe;
	struct conn_loop cl; /* the core's per-loop state, for this socket's conns */
	ctlsock_handler_cb cb;
	void *ud;
	int stopping;
	int full; /* at CTLSOCK_MAX_CONNS at the last accept (logged once a time) */
	int refs; /* the listener + one per connection not yet closed */
	struct list_node conns;
};

struct ctlsock_conn {
	struct conn c;
	uv_timer_t timer;
	struct ctlsock *cs;
	struct list_node link; /* on cs->conns until closed */
	char buf[CTLSOCK_MAX_REQ];
	size_t len;
	unsigned uid; /* the peer's (SO_PEERCRED), -1 when unknown */
	int replied;
	int pending_closes; /* the conn and the timer */
};

static void ctlsock_unref(struct ctlsock *cs)
{
	if (--cs->refs > 0)
		return;
	conn_loop_cleanup(&cs->cl);
	free(cs);
}

static void ctlsock_conn_free(struct ctlsock_conn *k)
{
	if (--k->pending_closes > 0)
		return;
	struct ctlsock *cs = k->cs;
	list_del(&k->link);
	free(k);
	ctlsock_unref(cs);
}

static void ctlsock_timer_closed(uv_handle_t *h)
{
	ctlsock_conn_free(h->data);
}

static void ctlsock_conn_end(struct conn *c, enum conn_reason reason)
{
	struct ctlsock_conn *k = c->owner;
	(void)reason;
	uv_close((uv_handle_t *)&k->timer, ctlsock_timer_closed);
}

static void ctlsock_conn_closed(struct conn *c)
{
	ctlsock_conn_free(c->owner);
}

static void ctlsock_timeout_cb(uv_timer_t *t)
{
	struct ctlsock_conn *k = t->data;
	conn_finalize(&k->c, CONN_ER_IDLE_TIMEOUT);
}

/* The reply is written: the connection is done. */
static void ctlsock_drained(struct conn *c)
{
	if (conn_queued(c) == 0)
		conn_finalize(c, CONN_ER_CLOSED);
}

static void ctlsock_reply(struct ctlsock_conn *k, json_t *reply)
{
	k->replied = 1;
	conn_read_stop(&k->c);
	char *s = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
	json_decref(reply);
	size_t n = s ? strlen(s) : 0;
	char *line = s ? realloc(s, n + 1) : NULL;
	if (!line) {
		free(s);
		conn_finalize(&k->c, CONN_ER_NO_MEMORY);
		return;
	}
	line[n] = '\n';
	int rc = conn_write(&k->c, (const uint8_t *)line, n + 1); /* on an error c is finalized */
	(void)rc;
	free(line);
}

static unsigned ctlsock_peer_uid(struct ctlsock_conn *k)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	uv_os_fd_t fd;
	if (uv_fileno(&k->c.h.handle, &fd) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return (unsigned)-1;
	return cred.uid;
}

/* Root, or the user the daemon runs as (the socket's owner). */
static int ctlsock_uid_permitted(unsigned uid)
{
	return uid == 0 || uid == (unsigned)geteuid();
}

static void ctlsock_handle(struct ctlsock_conn *k)
{
	json_error_t err;
	json_t *req = json_loadb(k->buf, k->len, 0, &err);
	json_t *reply;

	if (!json_is_object(req))
		reply = json_pack("{s:s}", "error", "request is not a JSON object");
	else
		reply = k->cs->cb(k->cs->ud, req, k->uid);
	json_decref(req);
	ctlsock_reply(k, reply);
}

static int ctlsock_data(struct conn *c, const uint8_t *buf, size_t n)
{
	struct ctlsock_conn *k = c->owner;
	size_t take = n < sizeof(k->buf) - k->len ? n : sizeof(k->buf) - k->len;

	if (k->replied)
		return 0;
	memcpy(k->buf + k->len, buf, take);
	k->len += take;
	char *nl = memchr(k->buf, '\n', k->len);
	if (nl) {
		k->len = (size_t)(nl - k->buf);
		ctlsock_handle(k);
	} else if (k->len == sizeof(k->buf)) {
		ctlsock_reply(k, json_pack("{s:s}", "error", "request too large"));
	}
	return conn_closing(c) ? -1 : 0;
}

/* The request ends at the peer's end of stream too. */
static void ctlsock_eof(struct conn *c)
{
	struct ctlsock_conn *k = c->owner;

	if (!k->replied)
		ctlsock_handle(k);
}

static const struct conn_ops ctlsock_conn_ops = {
	.data = ctlsock_data,
	.eof = ctlsock_eof,
	.drained = ctlsock_drained,
	.end = ctlsock_conn_end,
	.closed = ctlsock_conn_closed,
};

static void ctlsock_connection_cb(uv_stream_t *server, int status)
{
	struct ctlsock *cs = server->data;
	struct ctlsock_conn *k = NULL;
	int full = cs->refs - 1 >= CTLSOCK_MAX_CONNS; /* refs: the listener + conns */

	if (status < 0)
		return;
	if (full && !cs->full)
		log_event(LOG_LVL_WARN, "admin_socket_full",
			  log_pack("{s:i}", "max_connections", CTLSOCK_MAX_CONNS));
	cs->full = full;
	if (full || !(k = calloc(1, sizeof(*k))) ||
	    conn_init_pipe(&k->c, &cs->cl, &ctlsock_conn_ops, k) < 0) {
		free(k);
		int rc = conn_accept(&cs->cl, server, NULL, 1); /* always -ECONNABORTED */
		(void)rc;
		return;
	}
	k->cs = cs;
	cs->refs++;
	list_add_tail(&cs->conns, &k->link);
	k->pending_closes = 2;
	uv_timer_init(server->loop, &k->timer); /* only fills the handle in */
	k->timer.data = k;
	if (conn_accept(&cs->cl, server, &k->c, 0) < 0 ||
	    uv_timer_start(&k->timer, ctlsock_timeout_cb, CTLSOCK_DEADLINE_MS, 0) < 0) {
		conn_finalize(&k->c, CONN_ER_RESET);
		return;
	}
	conn_start(&k->c);
	if (!ctlsock_uid_permitted(k->uid = ctlsock_peer_uid(k))) {
		log_event(LOG_LVL_WARN, "admin_socket_refused",
			  log_pack("{s:i}", "uid", (int)k->uid));
		ctlsock_reply(k, json_pack("{s:s}", "error",
					   "permission denied: only root or the daemon's user"));
		return;
	}
	conn_read_start(&k->c);
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
	cs->refs = 1;
	list_init(&cs->conns);
	conn_loop_init(&cs->cl, loop);
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
	ctlsock_unref(h->data);
}

void ctlsock_stop(struct ctlsock *cs)
{
	struct list_node *n, *next;

	if (!cs || cs->stopping)
		return;
	cs->stopping = 1;
	list_for_each_safe(n, next, &cs->conns)
		conn_finalize(&list_entry(n, struct ctlsock_conn, link)->c, CONN_ER_STOPPED);
	uv_close((uv_handle_t *)&cs->pipe, ctlsock_close_cb);
}
