/* grpc: see grpc.h.
 *
 * The TCP/TLS part of a connection is tlsserver's (api/tlsserver.h): it
 * accepts, runs the handshake, feeds plaintext to gconn_input (nghttp2) and
 * asks gconn_flush for nghttp2's output; everything ends in tlsconn_close,
 * idempotent. A struct gconn is the HTTP/2 state of one connection, made
 * when the handshake is done (gconn_start) and freed by tlsserver's close
 * callback (gconn_free); gconn_closing lets the services go first.
 *
 * Streams: a request's DATA is collected (up to the 5-byte prefix plus
 * the connection's message limit, in a bytebuf drawing on the server's
 * budget) and handed to the method's service when the client ends its
 * half of the stream. A stream that is refused early (too big, wrong path,
 * budget spent) gets its trailers-only answer immediately and further DATA
 * for it is dropped (and its window opened again: it holds nothing).
 *
 * Trust (see grpc.h): gconn_start sizes an untrusted connection for one
 * Sign; gconn_trust raises its SETTINGS once a call succeeded.
 *
 * Responses (struct gcall, see grpc.h): a service queues framed messages
 * and finally a status. The stream's nghttp2 data provider drains the
 * queue, answers NGHTTP2_ERR_DEFERRED while it is empty and the call is
 * not finished, and is resumed when a message or the status arrives; the
 * status goes out as trailers once the queue is empty. A call finished
 * before anything was queued gets a trailers-only answer. gcall_send and
 * gcall_finish never write to the socket themselves (they may run inside
 * a hub walk, where closing a stream must not happen): they arm the
 * connection's `kick` timer (0 ms, tlsconn_kick), whose callback runs the
 * driver.
 *
 * Idle connections: the idle timer closes a connection that received
 * nothing for idle_ms, unless a call on it is still streaming (a Watch)
 * or has an answer on its way out. Then it sends an HTTP/2 PING instead
 * (gconn_idle, tlsserver's idle hook); the ACK counts as received bytes
 * and re-arms the timer, and a peer that does not answer within another
 * idle_ms is closed as dead. So an open Watch stays open with a live
 * agent, and a vanished one is found within twice the idle timeout. */
#include "api/grpc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "api/bytebudget.h"
#include "api/config_svc.h"
#include "api/tlsserver.h"
#include "grpcc.h"
#include "list.h"
#include "log.h"

#define GRPC_PATH_SIGN	 "/cinch.v1.Identity/Sign"
#define GRPC_PATH_WATCH	 "/cinch.v1.Config/Watch"
#define GRPC_PATH_REPORT "/cinch.v1.Config/Report"

/* Freed by tlsserver's `stopped` callback, after the last connection. */
struct grpc_server {
	struct tlsserver *ts;
	struct grpc_config cfg;
	struct sign_service *svc;
	/* Request bodies of all connections, in two halves of max_buffered:
	 * untrusted connections cannot take what trusted ones need. */
	struct bytebudget untrusted, trusted;
};

/* The HTTP/2 state of one connection (tlsconn_data of tc), from the end of
 * the handshake until tlsserver's close callback. */
struct gconn {
	struct tlsconn *tc;
	struct grpc_server *srv;
	struct list_node calls; /* every stream with state (gcall), freed with the conn */
	nghttp2_session *h2;
	struct auth_peer_cache peer_cache;
	int trusted; /* a verified client certificate, or a call succeeded */
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
	struct list_node link; /* on c->calls */
	enum gcall_method method;
	struct bytebuf req;	   /* the request, */
	struct bytebudget *budget; /* drawing on this (by the trust at its start) */
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

static void gcall_detach(struct gcall *st);
static void gconn_trust(struct gconn *c);

/* ---- connection lifetime (tlsserver's ops) */

static void gconn_free(struct tlsconn *tc)
{
	struct gconn *c = tlsconn_data(tc);
	if (!c)
		return;
	nghttp2_session_del(c->h2); /* no stream close callbacks: free them here */
	while (!list_empty(&c->calls)) {
		struct gcall *st = list_entry(c->calls.next, struct gcall, link);
		list_del(&st->link);
		bytebuf_free(&st->req, st->budget);
		free(st->q);
		free(st);
	}
	free(c);
}

/* Services let go of their calls now (a Watch closes its hub watch), not
 * at free time: nothing may reach a closing connection. */
static void gconn_closing(struct tlsconn *tc)
{
	struct gconn *c = tlsconn_data(tc);
	if (!c)
		return;
	struct list_node *n, *next;
	list_for_each_safe(n, next, &c->calls)
	{
		gcall_detach(list_entry(n, struct gcall, link));
	}
}

/* A call whose answer has started, or is decided and not out yet (its
 * trailers wait for the kick timer): its connection is not idle. A call
 * still waiting for its client's request is no reason to stay open. */
static int gconn_streaming(const struct gconn *c)
{
	for (const struct list_node *n = c->calls.next; n != &c->calls; n = n->next) {
		const struct gcall *st = list_entry(n, const struct gcall, link);
		if (st->answered || st->finished)
			return 1;
	}
	return 0;
}

/* The idle timer fired: PING once while a call streams; a second quiet
 * period (the PING unanswered) closes. */
static int gconn_idle(struct tlsconn *tc, unsigned rounds)
{
	struct gconn *c = tlsconn_data(tc);
	return rounds == 1 && gconn_streaming(c) &&
	       nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, NULL) == 0;
}

static int gconn_input(struct tlsconn *tc, const uint8_t *data, size_t len)
{
	struct gconn *c = tlsconn_data(tc);
	if (nghttp2_session_mem_recv(c->h2, data, len) < 0) {
		tlsconn_close(tc, "h2_protocol_error");
		return -EPROTO;
	}
	return 0;
}

static int gconn_flush(struct tlsconn *tc)
{
	struct gconn *c = tlsconn_data(tc);
	return tlsconn_flush_h2(tc, c->h2);
}

static const char *gconn_done(struct tlsconn *tc)
{
	struct gconn *c = tlsconn_data(tc);
	return !nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2) ? "h2_done"
										       : NULL;
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
	if (!st->answered || tlsconn_closing(st->c->tc))
		return;
	if (st->deferred) {
		st->deferred = 0;
		nghttp2_session_resume_data(st->c->h2, st->id);
	}
	tlsconn_kick(st->c->tc);
}

int gcall_send(struct gcall *st, const uint8_t *msg, size_t len)
{
	size_t max = st->c->srv->cfg.max_queue;

	if (st->finished || tlsconn_closing(st->c->tc))
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
	if (st->finished || tlsconn_closing(st->c->tc))
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

	out->cert = mtls_conn_get0_peer(tlsconn_tls(c->tc));
	out->chain = mtls_conn_get0_peer_chain(tlsconn_tls(c->tc));
	out->addr = tlsconn_peer(c->tc);
	out->ip = tlsconn_ip(c->tc);
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
static void gcall_sign_done(void *arg, int code, const char *why, uint8_t *resp, size_t resp_len)
{
	struct gcall *st = arg;

	gcall_on_close(st, NULL, NULL);
	if (code == GRPC_OK && gcall_send(st, resp, resp_len) < 0) {
		code = GRPC_INTERNAL;
		why = "out of memory";
	}
	if (code == GRPC_OK)
		gconn_trust(st->c);
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
	const uint8_t *buf = st->req.data;

	if (st->req.len < 5)
		return gcall_refuse(st, GRPC_INVALID_ARGUMENT, "request carries no gRPC message",
				    "request_malformed");
	size_t declared =
		(size_t)buf[1] << 24 | (size_t)buf[2] << 16 | (size_t)buf[3] << 8 | buf[4];
	if (buf[0] != 0)
		return gcall_refuse(st, GRPC_UNIMPLEMENTED, "compressed messages are not supported",
				    "request_compressed");
	if (declared != st->req.len - 5)
		return gcall_refuse(st, GRPC_INVALID_ARGUMENT,
				    "gRPC message length does not match the data",
				    "request_malformed");
	switch (st->method) {
	case GCALL_M_SIGN:
		gcall_sign(st, buf + 5, declared);
		break;
	case GCALL_M_WATCH:
		config_svc_watch(cs, st, buf + 5, declared);
		break;
	case GCALL_M_REPORT:
		config_svc_report(cs, st, buf + 5, declared);
		break;
	case GCALL_M_NONE:
		return gcall_refuse(st, GRPC_UNIMPLEMENTED, "unknown method", "unknown_method");
	}
	bytebuf_free(&st->req, st->budget); /* the request is done with */
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
	st->budget = c->trusted ? &c->srv->trusted : &c->srv->untrusted;
	st->bad_method = st->bad_ct = 1;
	list_add_head(&c->calls, &st->link);
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

/* The largest message the connection may send now. */
static size_t gconn_max_msg(const struct gconn *c)
{
	size_t max = c->srv->cfg.max_msg;
	return c->trusted || max < GRPC_PREAUTH_MSG ? max : GRPC_PREAUTH_MSG;
}

static int gh2_data_chunk_cb(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data,
			     size_t len, void *ud)
{
	struct gconn *c = ud;
	struct gcall *st = nghttp2_session_get_stream_user_data(h2, id);
	size_t max = gconn_max_msg(c);
	int rc;

	/* The connection window reopens as bytes arrive; the stream's only
	 * for bytes not kept (see the top of the file). */
	nghttp2_session_consume_connection(h2, len);
	if (!st || st->answered) {
		nghttp2_session_consume_stream(h2, id, len);
		return 0;
	}
	rc = bytebuf_append(&st->req, st->budget, data, len, 5 + max);
	if (rc == -E2BIG) {
		gcall_refuse(st, GRPC_RESOURCE_EXHAUSTED,
			     c->trusted ? "message larger than the limit"
					: "message larger than the limit of a connection that has "
					  "not authenticated",
			     "message_too_large");
	} else if (rc == -ENOBUFS) {
		log_event(LOG_LVL_WARN, "grpc_budget_exhausted",
			  log_pack("{s:s, s:b, s:I, s:I}", "peer", tlsconn_peer(c->tc), "trusted",
				    c->trusted, "buffered", (json_int_t)st->budget->used, "limit",
				    (json_int_t)st->budget->limit));
		gcall_refuse(st, GRPC_RESOURCE_EXHAUSTED,
			     "server busy: the request buffer budget is spent, retry later",
			     "buffer_budget_exhausted");
	} else if (rc < 0) {
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	} else if (st->req.len >= 5) {
		/* Refuse as soon as the prefix declares too much, not after reading it. */
		const uint8_t *b = st->req.data;
		size_t declared =
			(size_t)b[1] << 24 | (size_t)b[2] << 16 | (size_t)b[3] << 8 | b[4];
		if (declared > max)
			gcall_refuse(st, GRPC_RESOURCE_EXHAUSTED, "message larger than the limit",
				     "message_too_large");
	}
	if (st->answered) { /* refused: what it held goes, its window reopens */
		nghttp2_session_consume_stream(h2, id, st->req.len);
		bytebuf_free(&st->req, st->budget);
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
	list_del(&st->link);
	bytebuf_free(&st->req, st->budget);
	free(st->q);
	free(st);
	return 0;
}

/* Why nghttp2 gave up on a peer (it then sends GOAWAY): for the log. */
static int gh2_error_cb(nghttp2_session *h2, int code, const char *msg, size_t len, void *ud)
{
	struct gconn *c = ud;
	log_event(LOG_LVL_INFO, "grpc_h2_error",
		  log_pack("{s:s, s:s%}", "peer", tlsconn_peer(c->tc), "error", msg, len));
	return 0;
}

/* SETTINGS for what the connection is trusted with (grpc.h): its stream
 * windows carry exactly one message of the limit. */
static int gconn_settings(struct gconn *c)
{
	const nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
		 c->trusted ? c->srv->cfg.max_streams : GRPC_PREAUTH_STREAMS},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint32_t)(5 + gconn_max_msg(c))},
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 16384},
	};
	tlsconn_set_write_high(c->tc, c->trusted ? TLSSERVER_WRITE_HIGH : GRPC_PREAUTH_WRITE_HIGH);
	return nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 3) == 0 ? 0 : -ENOMEM;
}

/* A call succeeded on an untrusted connection (a Sign for a token): it
 * gets what a trusted one gets. */
static void gconn_trust(struct gconn *c)
{
	if (c->trusted || tlsconn_closing(c->tc))
		return;
	c->trusted = 1;
	if (gconn_settings(c) < 0)
		tlsconn_close(c->tc, "out_of_memory");
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
	nghttp2_option_set_no_auto_window_update(opt, 1);
	/* Rapid-reset protection (CVE-2023-44487), sized for real clients:
	 * libcurl sends RST_STREAM after every finished call (seen with the
	 * agent's client under load), so nghttp2's default (burst 1000, 33/s)
	 * would GOAWAY a busy but honest client. 10,000/s is above what one
	 * core can sign (docs/benchmarks.md), so only a reset flood, the
	 * attack's pattern, is cut off. */
	nghttp2_option_set_stream_reset_rate_limit(opt, 20000, 10000);
	if (nghttp2_session_server_new2(&c->h2, cbs, c, opt) == 0)
		rc = gconn_settings(c);
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cbs);
	if (rc == 0)
		tlsconn_set_timeout(c->tc, c->srv->cfg.idle_ms, 1, "idle_timeout");
	return rc;
}

/* The handshake is done: the HTTP/2 session, its SETTINGS and the idle
 * timer. */
static int gconn_start(struct tlsconn *tc)
{
	struct gconn *c = calloc(1, sizeof(*c));
	if (!c) {
		tlsconn_close(tc, "out_of_memory");
		return -ENOMEM;
	}
	c->tc = tc;
	list_init(&c->calls);
	c->srv = tlsconn_owner(tc);
	c->trusted = mtls_conn_get0_peer(tlsconn_tls(tc)) != NULL; /* verified in the handshake */
	tlsconn_set_data(tc, c);
	if (gconn_start_h2(c) < 0) {
		tlsconn_close(tc, "out_of_memory");
		return -ENOMEM;
	}
	return 0;
}

static const struct tlsserver_ops gconn_ops = {
	.start = gconn_start,
	.input = gconn_input,
	.flush = gconn_flush,
	.done = gconn_done,
	.idle = gconn_idle,
	.closing = gconn_closing,
	.free = gconn_free,
};

/* ---- server */

int grpc_server_start(uv_loop_t *loop, const struct grpc_config *cfg, struct mtls_ctx *tls,
		      struct sign_service *svc, struct grpc_server **out, int *port)
{
	struct grpc_server *srv = calloc(1, sizeof(*srv));
	int rc;

	if (!srv)
		return -ENOMEM;
	srv->cfg = *cfg;
	srv->cfg.host = NULL;
	srv->svc = svc;
	srv->untrusted.limit = cfg->max_buffered / 2;
	srv->trusted.limit = cfg->max_buffered - srv->untrusted.limit;
	const struct tlsserver_config sc = {
		.host = cfg->host,
		.port = cfg->port,
		.max_conns = cfg->max_conns,
		.max_per_source = cfg->max_per_source,
		.handshake_ms = cfg->handshake_ms,
		.name = "grpc",
		.open_state = "h2",
	};
	if ((rc = tlsserver_start(loop, &sc, &gconn_ops, tls, srv, &srv->ts, port)) < 0) {
		free(srv);
		return rc;
	}
	*out = srv;
	return 0;
}

static void gserver_free(void *owner)
{
	free(owner);
}

void grpc_server_stop(struct grpc_server *srv)
{
	if (srv)
		tlsserver_stop(srv->ts, gserver_free);
}

void grpc_server_set_tls(struct grpc_server *srv, struct mtls_ctx *tls)
{
	tlsserver_set_tls(srv->ts, tls);
}

unsigned grpc_server_conns(const struct grpc_server *srv)
{
	return tlsserver_conns(srv->ts);
}
