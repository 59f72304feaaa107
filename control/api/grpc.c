/* grpc: see grpc.h.
 *
 * A connection goes HANDSHAKE -> H2 -> (closed). gconn_advance() is the one
 * driver, called after every read and every finished write: it runs the TLS
 * handshake or feeds plaintext to nghttp2, then gconn_flush() moves
 * nghttp2's output through TLS to the socket. Everything ends in
 * gconn_finalize(c, reason), idempotent; the TCP handle and the timer close
 * together and the connection is freed when the second close callback runs.
 *
 * Streams: a request's DATA is collected (up to the 5-byte prefix plus
 * max_msg) and handed to the method's service when the client ends its
 * half of the stream. A stream that is refused early (too big, wrong path)
 * gets its trailers-only answer immediately and further DATA for it is
 * dropped.
 *
 * Responses (struct gcall, see grpc.h): a service queues framed messages
 * and finally a status. The stream's nghttp2 data provider drains the
 * queue, answers NGHTTP2_ERR_DEFERRED while it is empty and the call is
 * not finished, and is resumed when a message or the status arrives; the
 * status goes out as trailers once the queue is empty. A call finished
 * before anything was queued gets a trailers-only answer. gcall_send and
 * gcall_finish never write to the socket themselves (they may run inside
 * a hub walk, where closing a stream must not happen): they arm the
 * connection's `kick` timer (0 ms), whose callback runs the driver.
 *
 * Idle connections: the idle timer closes a connection that received
 * nothing for idle_ms, unless a call on it is still streaming (a Watch).
 * Then it sends an HTTP/2 PING instead; the ACK counts as received bytes
 * and re-arms the timer, and a peer that does not answer within another
 * idle_ms is closed as dead. So an open Watch stays open with a live
 * agent, and a vanished one is found within twice the idle timeout. */
#include "api/grpc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "api/config_svc.h"
#include "grpcc.h"
#include "log.h"

#define GRPC_PATH_SIGN	 "/cinch.v1.Identity/Sign"
#define GRPC_PATH_WATCH	 "/cinch.v1.Config/Watch"
#define GRPC_PATH_REPORT "/cinch.v1.Config/Report"
#define GRPC_READ_BUF	 16384

enum gconn_state {
	GCONN_ST_HANDSHAKE = 0,
	GCONN_ST_H2,
};

struct grpc_server {
	uv_tcp_t tcp;
	struct grpc_config cfg;
	struct tls_ctx *tls;
	struct sign_service *svc;
	struct gconn *conns;
	unsigned n_conns;
	int refs; /* the listener + each connection */
	int stopping;
};

struct gconn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_timer_t kick; /* 0 ms: run the driver after gcall_send/finish */
	struct grpc_server *srv;
	struct gconn *next, **pprev;
	struct gcall *calls; /* every stream with state, freed with the conn */
	struct tls_conn *tls;
	nghttp2_session *h2;
	enum gconn_state state;
	size_t inflight; /* bytes handed to uv_write, not yet written */
	int reading;
	int closing;
	int pending_closes;
	int ping_sent; /* an idle PING is out, nothing received since */
	char addr[64];
	char ip[48]; /* addr without the port */
	struct auth_peer_cache peer_cache;
};

enum gcall_method {
	GCALL_M_NONE = 0, /* unknown path */
	GCALL_M_SIGN,
	GCALL_M_WATCH,
	GCALL_M_REPORT,
};

/* One HTTP/2 stream: the request being collected, then the response. */
struct gcall {
	int32_t id;
	struct gconn *c;
	struct gcall *next, **pprev;
	enum gcall_method method;
	uint8_t *buf; /* the request */
	size_t len, cap;
	int bad_method, bad_ct;
	int answered; /* a response was submitted to nghttp2 */
	int deferred; /* the data provider is waiting for gcall_send/finish */
	int finished; /* the status is set: no more messages */
	int code;
	char message[256]; /* percent-encoded grpc-message */
	uint8_t *q;	   /* framed response messages not yet given to nghttp2 */
	size_t q_len, q_off, q_cap;
	gcall_close_cb on_close; /* the service's, until the stream goes */
	void *on_close_arg;
};

struct gwrite {
	uv_write_t req;
	struct gconn *c;
	size_t len;
	uint8_t data[];
};

static void gconn_advance(struct gconn *c);
static void gcall_detach(struct gcall *st);

static const char *gconn_state_name(enum gconn_state s)
{
	return s == GCONN_ST_HANDSHAKE ? "handshake" : "h2";
}

static void gserver_unref(struct grpc_server *srv)
{
	if (--srv->refs > 0)
		return;
	tls_ctx_unref(srv->tls);
	free(srv);
}

/* ---- connection lifetime */

static void gconn_close_cb(uv_handle_t *h)
{
	struct gconn *c = h->data;
	if (--c->pending_closes > 0)
		return;
	nghttp2_session_del(c->h2); /* no stream close callbacks: free them here */
	while (c->calls) {
		struct gcall *st = c->calls;
		c->calls = st->next;
		free(st->buf);
		free(st->q);
		free(st);
	}
	tls_conn_free(c->tls);
	struct grpc_server *srv = c->srv;
	srv->n_conns--;
	free(c);
	gserver_unref(srv);
}

static void gconn_finalize(struct gconn *c, const char *reason)
{
	if (c->closing)
		return;
	c->closing = 1;
	log_event(LOG_LVL_DEBUG, "grpc_conn_closed",
		  json_pack("{s:s, s:s, s:s}", "peer", c->addr, "state", gconn_state_name(c->state),
			    "reason", reason));
	*c->pprev = c->next;
	if (c->next)
		c->next->pprev = c->pprev;
	/* Services let go of their calls now (a Watch closes its hub watch),
	 * not at free time: nothing may reach a closing connection. */
	for (struct gcall *st = c->calls; st; st = st->next)
		gcall_detach(st);
	c->pending_closes = 3;
	uv_close((uv_handle_t *)&c->tcp, gconn_close_cb);
	uv_close((uv_handle_t *)&c->timer, gconn_close_cb);
	uv_close((uv_handle_t *)&c->kick, gconn_close_cb);
}

/* A call whose response has started and not finished: a stream in use. */
static int gconn_streaming(const struct gconn *c)
{
	for (const struct gcall *st = c->calls; st; st = st->next)
		if (st->answered && !st->finished)
			return 1;
	return 0;
}

static void gconn_timeout_cb(uv_timer_t *t)
{
	struct gconn *c = t->data;

	if (c->state == GCONN_ST_H2 && !c->ping_sent && gconn_streaming(c)) {
		if (nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, NULL) == 0) {
			c->ping_sent = 1;
			gconn_advance(c);
			return;
		}
	}
	gconn_finalize(c, c->state == GCONN_ST_HANDSHAKE ? "handshake_timeout" : "idle_timeout");
}

static void gconn_kick_cb(uv_timer_t *t)
{
	struct gconn *c = t->data;
	if (!c->closing)
		gconn_advance(c);
}

/* ---- output: nghttp2 -> TLS -> socket */

static void gconn_write_cb(uv_write_t *req, int status)
{
	struct gwrite *w = req->data;
	struct gconn *c = w->c;
	c->inflight -= w->len;
	free(w);
	if (c->closing)
		return;
	if (status < 0) {
		gconn_finalize(c, "write_error");
		return;
	}
	gconn_advance(c);
}

static int gconn_send_tls(struct gconn *c)
{
	size_t n = tls_conn_pending_out(c->tls);
	if (n == 0)
		return 0;
	struct gwrite *w = malloc(sizeof(*w) + n);
	if (!w)
		return -ENOMEM;
	w->c = c;
	w->len = tls_conn_take_out(c->tls, w->data, n);
	w->req.data = w;
	uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
	int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, gconn_write_cb);
	if (rc < 0) {
		free(w);
		return rc;
	}
	c->inflight += w->len;
	return 0;
}

static int gconn_flush(struct gconn *c)
{
	while (c->h2 && c->inflight + tls_conn_pending_out(c->tls) < GRPC_WRITE_HIGH) {
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(c->h2, &data);
		if (n < 0)
			return -EPROTO;
		if (n == 0)
			break;
		if (tls_conn_write(c->tls, data, (size_t)n) < 0)
			return -EPROTO;
	}
	return gconn_send_tls(c);
}

/* ---- input */

static void gconn_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	static char slab[65536]; /* one loop thread; consumed before the next read */
	*buf = uv_buf_init(slab, sizeof(slab));
}

static void gconn_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct gconn *c = s->data;
	if (n == 0)
		return;
	if (n < 0) {
		gconn_finalize(c, n == UV_EOF ? "peer_closed" : "read_error");
		return;
	}
	if (tls_conn_feed(c->tls, (const uint8_t *)buf->base, (size_t)n) < 0) {
		gconn_finalize(c, "out_of_memory");
		return;
	}
	if (c->state == GCONN_ST_H2) {
		c->ping_sent = 0;
		uv_timer_again(&c->timer);
	}
	gconn_advance(c);
}

static int gconn_start_h2(struct gconn *c);

/* The driver: handshake, then plaintext into nghttp2, then output, then
 * read-side backpressure and the end-of-connection test. */
static void gconn_advance(struct gconn *c)
{
	const char *why = "";
	uint8_t buf[GRPC_READ_BUF];
	int r;

	if (c->state == GCONN_ST_HANDSHAKE) {
		r = tls_conn_handshake(c->tls, &why);
		if (r < 0) {
			gconn_send_tls(c); /* the alert, best effort */
			log_event(LOG_LVL_INFO, "grpc_handshake_failed",
				  json_pack("{s:s, s:s}", "peer", c->addr, "why", why));
			gconn_finalize(c, "handshake_failed");
			return;
		}
		if (r == TLS_HS_DONE && gconn_start_h2(c) < 0) {
			gconn_finalize(c, "out_of_memory");
			return;
		}
	}
	while (c->state == GCONN_ST_H2 && !c->closing) {
		r = tls_conn_read(c->tls, buf, sizeof(buf));
		if (r == 0)
			break;
		if (r < 0) {
			gconn_finalize(c, r == -EPIPE ? "tls_close_notify" : "tls_error");
			return;
		}
		if (nghttp2_session_mem_recv(c->h2, buf, (size_t)r) < 0) {
			gconn_finalize(c, "h2_protocol_error");
			return;
		}
	}
	if (c->closing)
		return;
	if (gconn_flush(c) < 0) {
		gconn_finalize(c, "write_error");
		return;
	}
	int want_read = c->inflight < GRPC_WRITE_HIGH;
	if (want_read != c->reading) {
		if (want_read)
			uv_read_start((uv_stream_t *)&c->tcp, gconn_alloc_cb, gconn_read_cb);
		else
			uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = want_read;
	}
	if (c->h2 && !nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2) &&
	    c->inflight == 0)
		gconn_finalize(c, "h2_done");
}

/* ---- gRPC on a stream */

/* grpc-message is percent-encoded (PROTOCOL-HTTP2.md, "Responses"). */
static void gcall_pct(char *out, size_t outlen, const char *msg)
{
	size_t w = 0;
	for (const char *p = msg; *p && w + 4 < outlen; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch >= 0x20 && ch <= 0x7e && ch != '%')
			out[w++] = (char)ch;
		else
			w += (size_t)snprintf(out + w, outlen - w, "%%%02X", ch);
	}
	out[w] = '\0';
}

#define GNV(n, v)                                                                                  \
	{                                                                                          \
		(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v),                          \
			NGHTTP2_NV_FLAG_NO_COPY_NAME                                               \
	}

/* A trailers-only response, from the call's status: one HEADERS frame with
 * END_STREAM. */
static int gcall_submit_status(struct gcall *st)
{
	char code_s[8];
	snprintf(code_s, sizeof(code_s), "%d", st->code);
	const nghttp2_nv nva[] = {
		GNV(":status", "200"),
		GNV("content-type", "application/grpc"),
		GNV("grpc-status", code_s),
		GNV("grpc-message", st->message),
	};
	st->answered = st->finished = 1;
	return nghttp2_submit_response(st->c->h2, st->id, nva, st->code == GRPC_OK ? 3 : 4, NULL);
}

static int gcall_answer_status(struct gcall *st, int code, const char *msg)
{
	st->code = code;
	gcall_pct(st->message, sizeof(st->message), msg);
	return gcall_submit_status(st);
}

/* The data provider: queued messages, then the status as trailers. */
static ssize_t gcall_read_cb(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len,
			     uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct gcall *st = src->ptr;
	size_t n = st->q_len - st->q_off;

	if (n > len)
		n = len;
	if (n) {
		memcpy(buf, st->q + st->q_off, n);
		st->q_off += n;
	}
	if (st->q_off == st->q_len)
		st->q_off = st->q_len = 0;
	if (st->q_len == 0 && st->finished) {
		char code_s[8];
		snprintf(code_s, sizeof(code_s), "%d", st->code);
		const nghttp2_nv trailers[] = {
			GNV("grpc-status", code_s),
			GNV("grpc-message", st->message),
		};
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (nghttp2_submit_trailer(h2, id, trailers, st->code == GRPC_OK ? 1 : 2) == 0)
			*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
	} else if (n == 0) {
		st->deferred = 1;
		return NGHTTP2_ERR_DEFERRED;
	}
	return (ssize_t)n;
}

/* After gcall_send/finish: let the data provider run again, later. */
static void gcall_wake(struct gcall *st)
{
	if (!st->answered || st->c->closing)
		return;
	if (st->deferred) {
		st->deferred = 0;
		nghttp2_session_resume_data(st->c->h2, st->id);
	}
	if (!uv_is_active((uv_handle_t *)&st->c->kick))
		uv_timer_start(&st->c->kick, gconn_kick_cb, 0, 0);
}

int gcall_send(struct gcall *st, const uint8_t *msg, size_t len)
{
	size_t max = st->c->srv->cfg.max_queue;

	if (st->finished || st->c->closing)
		return -EPIPE;
	if (len > UINT32_MAX || st->q_len - st->q_off + 5 + len > max) {
		gcall_finish(st, GRPC_RESOURCE_EXHAUSTED,
			     "the client does not read its stream fast enough");
		return -ENOBUFS;
	}
	if (st->q_off) {
		memmove(st->q, st->q + st->q_off, st->q_len - st->q_off);
		st->q_len -= st->q_off;
		st->q_off = 0;
	}
	if (st->q_len + 5 + len > st->q_cap) {
		size_t cap = st->q_len + 5 + len;
		uint8_t *q = realloc(st->q, cap);
		if (!q)
			return -ENOMEM;
		st->q = q;
		st->q_cap = cap;
	}
	uint8_t *p = st->q + st->q_len;
	p[0] = 0;
	p[1] = (uint8_t)(len >> 24);
	p[2] = (uint8_t)(len >> 16);
	p[3] = (uint8_t)(len >> 8);
	p[4] = (uint8_t)len;
	memcpy(p + 5, msg, len);
	st->q_len += 5 + len;
	gcall_wake(st);
	return 0;
}

void gcall_finish(struct gcall *st, int code, const char *msg)
{
	if (st->finished || st->c->closing)
		return;
	st->finished = 1;
	st->code = code;
	gcall_pct(st->message, sizeof(st->message), msg ? msg : "");
	gcall_wake(st);
}

void gcall_on_close(struct gcall *st, gcall_close_cb cb, void *arg)
{
	st->on_close = cb;
	st->on_close_arg = arg;
}

void gcall_peer(const struct gcall *st, struct gcall_peer *out)
{
	struct gconn *c = st->c;

	out->cert = tls_conn_get0_peer(c->tls);
	out->chain = tls_conn_get0_peer_chain(c->tls);
	out->addr = c->addr;
	out->ip = c->ip;
	out->cache = &c->peer_cache;
}

/* The stream goes (closed, reset, or its connection closes): the service
 * hears it once. */
static void gcall_detach(struct gcall *st)
{
	gcall_close_cb cb = st->on_close;

	st->on_close = NULL;
	if (cb)
		cb(st->on_close_arg);
}

/* After the service's handler: the response starts (headers and the data
 * provider), or, when it finished without a message, a trailers-only
 * answer. */
static int gcall_respond(struct gcall *st)
{
	const nghttp2_nv nva[] = {
		GNV(":status", "200"),
		GNV("content-type", "application/grpc"),
	};

	if (st->finished && st->q_len == 0)
		return gcall_submit_status(st);
	nghttp2_data_provider dp = {.source.ptr = st, .read_callback = gcall_read_cb};
	st->answered = 1;
	return nghttp2_submit_response(st->c->h2, st->id, nva, 2, &dp);
}

static void gcall_sign_peer(struct gcall *st, struct sign_peer *peer)
{
	struct gcall_peer p;

	gcall_peer(st, &p);
	*peer = (struct sign_peer){p.cert, p.chain, p.addr, p.cache};
}

static int gcall_refuse(struct gcall *st, int code, const char *msg, const char *reason)
{
	struct sign_peer peer;

	if (st->method == GCALL_M_SIGN || st->method == GCALL_M_NONE) {
		gcall_sign_peer(st, &peer);
		sign_refuse_early(st->c->srv->svc, &peer, code, msg, reason);
	}
	return gcall_answer_status(st, code, msg);
}

/* The stream went before Sign answered: nothing is signed. */
static void gcall_sign_gone(void *arg)
{
	sign_cancel(arg);
}

/* Identity/Sign's answer, at once or from sign_start's callback. */
static void gcall_sign_done(void *arg, int code, const char *why, uint8_t *resp,
			    size_t resp_len)
{
	struct gcall *st = arg;

	gcall_on_close(st, NULL, NULL);
	if (code == GRPC_OK && gcall_send(st, resp, resp_len) < 0) {
		code = GRPC_INTERNAL;
		why = "out of memory";
	}
	free(resp);
	gcall_finish(st, code, why);
}

/* Identity/Sign: one answer, at once or when a Kubernetes token has been
 * reviewed. */
static void gcall_sign(struct gcall *st, const uint8_t *msg, size_t len)
{
	struct sign_peer peer;
	struct sign_pending *pending = NULL;
	uint8_t *resp = NULL;
	size_t resp_len = 0;
	const char *why = "";

	gcall_sign_peer(st, &peer);
	int code = sign_start(st->c->srv->svc, &peer, msg, len, &resp, &resp_len, &why,
			      gcall_sign_done, st, &pending);
	if (code == SIGN_PENDING) {
		gcall_on_close(st, gcall_sign_gone, pending);
		return;
	}
	gcall_sign_done(st, code, why, resp, resp_len);
}

/* The client finished its request: check the framing and hand it over. */
static int gcall_dispatch(struct gcall *st)
{
	struct config_service *cs = st->c->srv->cfg.config;

	if (st->len < 5)
		return gcall_refuse(st, GRPC_INVALID_ARGUMENT, "request carries no gRPC message",
				    "request_malformed");
	size_t declared = (size_t)st->buf[1] << 24 | (size_t)st->buf[2] << 16 |
			  (size_t)st->buf[3] << 8 | st->buf[4];
	if (st->buf[0] != 0)
		return gcall_refuse(st, GRPC_UNIMPLEMENTED, "compressed messages are not supported",
				    "request_compressed");
	if (declared != st->len - 5)
		return gcall_refuse(st, GRPC_INVALID_ARGUMENT,
				    "gRPC message length does not match the data",
				    "request_malformed");
	switch (st->method) {
	case GCALL_M_SIGN:
		gcall_sign(st, st->buf + 5, declared);
		break;
	case GCALL_M_WATCH:
		config_svc_watch(cs, st, st->buf + 5, declared);
		break;
	case GCALL_M_REPORT:
		config_svc_report(cs, st, st->buf + 5, declared);
		break;
	case GCALL_M_NONE:
		return gcall_refuse(st, GRPC_UNIMPLEMENTED, "unknown method", "unknown_method");
	}
	free(st->buf); /* the request is done with */
	st->buf = NULL;
	st->len = st->cap = 0;
	return gcall_respond(st);
}

/* ---- nghttp2 callbacks */

static int gh2_begin_headers_cb(nghttp2_session *h2, const nghttp2_frame *frame, void *ud)
{
	struct gconn *c = ud;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	struct gcall *st = calloc(1, sizeof(*st));
	if (!st)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	st->id = frame->hd.stream_id;
	st->c = c;
	st->bad_method = st->bad_ct = 1;
	st->next = c->calls;
	if (st->next)
		st->next->pprev = &st->next;
	st->pprev = &c->calls;
	c->calls = st;
	nghttp2_session_set_stream_user_data(h2, st->id, st);
	return 0;
}

static int gh2_path_is(const uint8_t *value, size_t len, const char *path)
{
	return len == strlen(path) && !memcmp(value, path, len);
}

static int gh2_header_cb(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
			 size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
			 void *ud)
{
	struct gconn *c = ud;
	struct gcall *st = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (!st || frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (namelen == 5 && !memcmp(name, ":path", 5)) {
		st->method = GCALL_M_NONE;
		if (gh2_path_is(value, valuelen, GRPC_PATH_SIGN))
			st->method = GCALL_M_SIGN;
		else if (c->srv->cfg.config && gh2_path_is(value, valuelen, GRPC_PATH_WATCH))
			st->method = GCALL_M_WATCH;
		else if (c->srv->cfg.config && gh2_path_is(value, valuelen, GRPC_PATH_REPORT))
			st->method = GCALL_M_REPORT;
	} else if (namelen == 7 && !memcmp(name, ":method", 7))
		st->bad_method = !(valuelen == 4 && !memcmp(value, "POST", 4));
	else if (namelen == 12 && !memcmp(name, "content-type", 12))
		/* application/grpc, optionally +proto or ;params */
		st->bad_ct = !(valuelen >= 16 && !memcmp(value, "application/grpc", 16) &&
			       (valuelen == 16 || value[16] == '+' || value[16] == ';'));
	return 0;
}

static int gh2_data_chunk_cb(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data,
			     size_t len, void *ud)
{
	struct gconn *c = ud;
	struct gcall *st = nghttp2_session_get_stream_user_data(h2, id);
	size_t limit = 5 + c->srv->cfg.max_msg;

	if (!st || st->answered)
		return 0;
	if (st->len + len > limit) {
		gcall_refuse(st, GRPC_RESOURCE_EXHAUSTED, "message larger than the limit",
			     "message_too_large");
		return 0;
	}
	if (st->len + len > st->cap) {
		size_t cap = st->cap ? st->cap : 1024;
		while (cap < st->len + len)
			cap *= 2;
		if (cap > limit)
			cap = limit;
		uint8_t *b = realloc(st->buf, cap);
		if (!b)
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		st->buf = b;
		st->cap = cap;
	}
	memcpy(st->buf + st->len, data, len);
	st->len += len;
	/* Refuse as soon as the prefix declares too much, not after reading it. */
	if (st->len >= 5) {
		size_t declared = (size_t)st->buf[1] << 24 | (size_t)st->buf[2] << 16 |
				  (size_t)st->buf[3] << 8 | st->buf[4];
		if (declared > c->srv->cfg.max_msg)
			gcall_refuse(st, GRPC_RESOURCE_EXHAUSTED, "message larger than the limit",
				     "message_too_large");
	}
	return 0;
}

static int gh2_frame_recv_cb(nghttp2_session *h2, const nghttp2_frame *frame, void *ud)
{
	struct gcall *st;

	if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
		st = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
		if (!st || st->answered)
			return 0;
		if (st->bad_method || st->bad_ct) {
			/* Not gRPC at all: plain HTTP answer (PROTOCOL-HTTP2.md). */
			const nghttp2_nv nva[] = {GNV(":status", "415")};
			st->answered = st->finished = 1;
			nghttp2_submit_response(h2, st->id, nva, 1, NULL);
			return 0;
		}
		if (st->method == GCALL_M_NONE) {
			gcall_refuse(st, GRPC_UNIMPLEMENTED, "unknown method", "unknown_method");
			return 0;
		}
	}
	if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
	    (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
		st = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
		if (st && !st->answered && gcall_dispatch(st) < 0)
			return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	return 0;
}

static int gh2_stream_close_cb(nghttp2_session *h2, int32_t id, uint32_t error_code, void *ud)
{
	struct gcall *st = nghttp2_session_get_stream_user_data(h2, id);
	if (!st)
		return 0;
	nghttp2_session_set_stream_user_data(h2, id, NULL);
	gcall_detach(st);
	*st->pprev = st->next;
	if (st->next)
		st->next->pprev = st->pprev;
	free(st->buf);
	free(st->q);
	free(st);
	return 0;
}

/* Why nghttp2 gave up on a peer (it then sends GOAWAY): for the log. */
static int gh2_error_cb(nghttp2_session *h2, int code, const char *msg, size_t len, void *ud)
{
	struct gconn *c = ud;
	log_event(LOG_LVL_INFO, "grpc_h2_error",
		  json_pack("{s:s, s:s%}", "peer", c->addr, "error", msg, len));
	return 0;
}
static int gconn_start_h2(struct gconn *c)
{
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;
	int rc = -ENOMEM;

	if (nghttp2_session_callbacks_new(&cbs) < 0)
		return -ENOMEM;
	if (nghttp2_option_new(&opt) < 0) {
		nghttp2_session_callbacks_del(cbs);
		return -ENOMEM;
	}
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, gh2_begin_headers_cb);
	nghttp2_session_callbacks_set_on_header_callback(cbs, gh2_header_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, gh2_data_chunk_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, gh2_frame_recv_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, gh2_stream_close_cb);
	nghttp2_session_callbacks_set_error_callback2(cbs, gh2_error_cb);
	nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
	/* Rapid-reset protection (CVE-2023-44487), sized for real clients:
	 * libcurl sends RST_STREAM after every finished call (seen with the
	 * agent's client under load), so nghttp2's default (burst 1000, 33/s)
	 * would GOAWAY a busy but honest client. 10,000/s is above what one
	 * core can sign (docs/benchmarks.md), so only a reset flood, the
	 * attack's pattern, is cut off. */
	nghttp2_option_set_stream_reset_rate_limit(opt, 20000, 10000);
	if (nghttp2_session_server_new2(&c->h2, cbs, c, opt) == 0) {
		const nghttp2_settings_entry iv[] = {
			{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, c->srv->cfg.max_streams},
			{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 16384},
		};
		rc = nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 2) == 0 ? 0 : -ENOMEM;
	}
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cbs);
	if (rc == 0) {
		c->state = GCONN_ST_H2;
		uv_timer_start(&c->timer, gconn_timeout_cb, c->srv->cfg.idle_ms,
			       c->srv->cfg.idle_ms);
	}
	return rc;
}

/* ---- listener */

static void gconn_peer_name(struct gconn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	char ip[48];

	snprintf(c->addr, sizeof(c->addr), "unknown");
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) < 0)
		return;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		uv_ip4_name(a, ip, sizeof(ip));
		snprintf(c->addr, sizeof(c->addr), "%s:%d", ip, ntohs(a->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		/* An IPv4 client of a dual-stack listener is its IPv4 address
		 * (the registry knows it as such). */
		int v4 = IN6_IS_ADDR_V4MAPPED(&a->sin6_addr);
		if (v4)
			inet_ntop(AF_INET, a->sin6_addr.s6_addr + 12, ip, sizeof(ip));
		else
			uv_ip6_name(a, ip, sizeof(ip));
		snprintf(c->addr, sizeof(c->addr), v4 ? "%s:%d" : "[%s]:%d", ip,
			 ntohs(a->sin6_port));
	} else {
		return;
	}
	snprintf(c->ip, sizeof(c->ip), "%s", ip);
}

static void gserver_connection_cb(uv_stream_t *server, int status)
{
	struct grpc_server *srv = server->data;
	struct gconn *c;

	if (status < 0 || !(c = calloc(1, sizeof(*c))))
		return;
	c->srv = srv;
	srv->refs++;
	srv->n_conns++;
	uv_tcp_init(server->loop, &c->tcp);
	uv_timer_init(server->loop, &c->timer);
	uv_timer_init(server->loop, &c->kick);
	c->tcp.data = c->timer.data = c->kick.data = c;
	c->next = srv->conns;
	if (c->next)
		c->next->pprev = &c->next;
	c->pprev = &srv->conns;
	srv->conns = c;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
		gconn_finalize(c, "accept_failed");
		return;
	}
	gconn_peer_name(c);
	if (srv->n_conns > srv->cfg.max_conns) {
		gconn_finalize(c, "too_many_connections");
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	if (tls_conn_new(srv->tls, &c->tls) < 0 ||
	    uv_timer_start(&c->timer, gconn_timeout_cb, srv->cfg.handshake_ms, 0) < 0 ||
	    uv_read_start((uv_stream_t *)&c->tcp, gconn_alloc_cb, gconn_read_cb) < 0) {
		gconn_finalize(c, "out_of_memory");
		return;
	}
	c->reading = 1;
}

int grpc_server_start(uv_loop_t *loop, const struct grpc_config *cfg, struct tls_ctx *tls,
		      struct sign_service *svc, struct grpc_server **out, int *port)
{
	struct grpc_server *srv = calloc(1, sizeof(*srv));
	struct sockaddr_storage ss;
	int rc, len = sizeof(ss);

	if (!srv)
		return -ENOMEM;
	srv->cfg = *cfg;
	srv->cfg.host = NULL;
	srv->svc = svc;
	srv->refs = 1;
	if ((rc = uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&ss)) < 0 &&
	    (rc = uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&ss)) < 0) {
		free(srv);
		return rc;
	}
	if ((rc = uv_tcp_init(loop, &srv->tcp)) < 0) {
		free(srv);
		return rc;
	}
	srv->tcp.data = srv;
	srv->tls = tls;
	tls_ctx_ref(tls);
	if ((rc = uv_tcp_bind(&srv->tcp, (struct sockaddr *)&ss, 0)) < 0 ||
	    (rc = uv_listen((uv_stream_t *)&srv->tcp, 1024, gserver_connection_cb)) < 0 ||
	    (rc = uv_tcp_getsockname(&srv->tcp, (struct sockaddr *)&ss, &len)) < 0) {
		grpc_server_stop(srv);
		return rc;
	}
	*port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
					      : ((struct sockaddr_in6 *)&ss)->sin6_port);
	*out = srv;
	return 0;
}

static void gserver_close_cb(uv_handle_t *h)
{
	gserver_unref(h->data);
}

void grpc_server_stop(struct grpc_server *srv)
{
	if (!srv || srv->stopping)
		return;
	srv->stopping = 1;
	while (srv->conns)
		gconn_finalize(srv->conns, "server_stopping");
	uv_close((uv_handle_t *)&srv->tcp, gserver_close_cb);
}

void grpc_server_set_tls(struct grpc_server *srv, struct tls_ctx *tls)
{
	tls_ctx_ref(tls);
	tls_ctx_unref(srv->tls);
	srv->tls = tls;
}

unsigned grpc_server_conns(const struct grpc_server *srv)
{
	return srv->n_conns;
}
