/* webhook: see webhook.h. TCP, TLS, timeouts and the write path are
 * api/tlsserver.c's; this file is the HTTP on top (struct wconn, the
 * connection's protocol state) and the certificate reload.
 *
 * After the handshake a connection is HTTP/2 (ALPN "h2") or HTTP/1.1.
 *
 * HTTP/1.1: the head is read up to WEBHOOK_MAX_HEAD, checked (method,
 * path, length, type) before any of the body is read, then the body up to
 * Content-Length; one answer, then close_notify and the connection closes
 * once the answer is written. After an early refusal (413 while the client
 * may still be sending) the connection lingers up to WH_LINGER_MS reading
 * and dropping input, so the client reads the answer rather than a reset.
 *
 * HTTP/2: each stream collects its body and is answered when the client
 * ends its half; a stream refused early (path, method, size) is answered
 * at once and its further DATA dropped. nghttp2 owns flow control. A
 * stream still waiting for its body is on the server's `receiving` list
 * in the order the streams began; the sweep timer answers those older than
 * request_ms with 408 (the connection's own timer is an idle timer, which
 * a client sending PINGs keeps from firing).
 *
 * Every request buffer grows as bytes arrive (api/bytebudget.h), from the
 * server's budget. */
#include "webhook.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <nghttp2/nghttp2.h>

#include "adminhttp.h"
#include "api/bytebudget.h"
#include "mtls.h"
#include "api/tlsserver.h"
#include "fswatch.h"
#include "list.h"
#include "log.h"

#define WH_RELOAD_SETTLE_MS 200
#define WH_LINGER_MS	    1000
#define WH_SWEEP_MS	    500

const struct mtls_opts webhook_https_opts = {
	.roles = MTLS_ROLE_SERVER,
	.verify = MTLS_VERIFY_NONE,
	.alpn = "\x02h2\x08http/1.1",
	.alpn_len = 12,
};

int webhook_tls_new(X509 *cert, EVP_PKEY *key, STACK_OF(X509) * chain, struct mtls_ctx **out)
{
	struct mtls_opts o = webhook_https_opts;
	const char *why;

	o.cert = cert;
	o.key = key;
	o.chain = chain;
	return mtls_ctx_new_opts(&o, out, &why);
}

struct webhook {
	struct webhook_config cfg; /* cert_path and key_path point to ours */
	uv_loop_t *loop;
	char *cert_path, *key_path;
	struct tlsserver *srv;
	struct fswatch *watch;
	struct stat cert_st, key_st;		     /* what the TLS context was loaded from */
	int64_t not_after;			     /* of the context new connections get */
	struct bytebudget budget;		     /* request bytes held by all connections */
	uv_timer_t *sweep;			     /* closed (and freed) by webhook_stop */
	struct wstream *receiving, **receiving_tail; /* oldest first */
	uint64_t requests, errors; /* answered; of them not 200 */
};

/* One HTTP/1.1 request being read. */
struct wh1 {
	struct bytebuf req; /* head, then body */
	struct webhook_h1_head head;
	int have_head;
	int answered; /* the answer is queued: input is dropped */
	int early;    /* answered before the whole body arrived */
	int lingering;
};

/* The protocol state of one connection (tlsconn_data). */
struct wconn {
	struct tlsconn *tc;
	struct webhook *w;
	nghttp2_session *h2;	  /* NULL: HTTP/1.1 */
	struct list_node streams; /* open HTTP/2 streams (wstream), freed with c */
	size_t h2_held;		  /* body bytes they hold: at most max_body */
	struct wh1 h1;
};

/* One HTTP/2 request. */
struct wstream {
	int32_t id;
	struct wconn *c;
	struct list_node link;		/* on c->streams */
	struct wstream *rnext, **rprev; /* on w->receiving until answered */
	uint64_t deadline;		/* uv_now() by which the body must be in */
	struct bytebuf req;
	char method[16];
	char path[2048];
	char ctype[128];
	long long clen; /* content-length, -1 when absent */
	int answered;
	char *resp;
	size_t resp_len, resp_off;
	char status_s[4], len_s[24];
	const char *resp_type;
};

/* ---- the answer, whatever the transport */

/* A text/plain error answer "<reason>\n". */
static int wh_text(int code, const char *text, int *status, const char **ctype, char **out,
		   size_t *out_len)
{
	size_t n = strlen(text);
	char *b = malloc(n + 2);
	if (!b)
		return -ENOMEM;
	memcpy(b, text, n);
	b[n] = '\n';
	b[n + 1] = '\0';
	*status = code;
	*ctype = "text/plain; charset=utf-8";
	*out = b;
	*out_len = n + 1;
	return 0;
}

/* The refusals that depend only on the request line and headers, checked
 * before a body is read: 0 when the request may go on. */
static int wh_precheck(const char *method, const char *path, const char *ctype, const char **text)
{
	size_t plen = strcspn(path, "?");
	if (plen != strlen(WEBHOOK_PATH) || memcmp(path, WEBHOOK_PATH, plen) != 0) {
		*text = "not found: the injection webhook is POST " WEBHOOK_PATH;
		return 404;
	}
	if (strcmp(method, "POST") != 0) {
		*text = "method not allowed: the injection webhook is POST " WEBHOOK_PATH;
		return 405;
	}
	/* application/json, optionally with parameters (charset). */
	if (ctype && *ctype &&
	    !(strncasecmp(ctype, "application/json", 16) == 0 &&
	      (ctype[16] == '\0' || ctype[16] == ';' || ctype[16] == ' '))) {
		*text = "unsupported media type: send an AdmissionReview as application/json";
		return 415;
	}
	return 0;
}

int webhook_answer(const struct inject_config *inject, const char *method, const char *path,
		   const char *content_type, const char *body, size_t len, int *status,
		   const char **ctype, char **out, size_t *out_len)
{
	const char *text = NULL;
	char *review = NULL, msg[160];
	int code = wh_precheck(method, path, content_type, &text);

	if (code)
		return wh_text(code, text, status, ctype, out, out_len);
	int rc = inject_review(inject, body, len, &review, &text);
	if (rc == -EINVAL) {
		snprintf(msg, sizeof(msg), "bad request: %s", text);
		return wh_text(400, msg, status, ctype, out, out_len);
	}
	if (rc < 0)
		return rc;
	*status = 200;
	*ctype = "application/json";
	*out = review;
	*out_len = strlen(review);
	return 0;
}

/* ---- HTTP/1.1 request head */

static int wh1_tchar(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* One header line [p, e) (no CRLF): 0 or an HTTP status. */
static int wh1_header(const char *p, const char *e, struct webhook_h1_head *h)
{
	const char *colon = memchr(p, ':', (size_t)(e - p));
	if (!colon || colon == p)
		return 400;
	for (const char *q = p; q < colon; q++)
		if (!wh1_tchar(*q))
			return 400;
	size_t nlen = (size_t)(colon - p);
	const char *v = colon + 1, *ve = e;
	while (v < ve && (*v == ' ' || *v == '\t'))
		v++;
	while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
		ve--;
	size_t vlen = (size_t)(ve - v);
	for (const char *q = v; q < ve; q++)
		if ((unsigned char)*q < 0x20 && *q != '\t')
			return 400;

	if (nlen == 14 && !strncasecmp(p, "content-length", 14)) {
		long long n = 0;
		if (vlen == 0 || vlen > 15)
			return 400;
		for (size_t i = 0; i < vlen; i++) {
			if (v[i] < '0' || v[i] > '9')
				return 400;
			n = n * 10 + (v[i] - '0');
		}
		if (h->clen >= 0 && h->clen != n) /* RFC 9112 6.3: conflicting */
			return 400;
		h->clen = n;
	} else if (nlen == 17 && !strncasecmp(p, "transfer-encoding", 17)) {
		return 501;
	} else if (nlen == 12 && !strncasecmp(p, "content-type", 12)) {
		if (vlen >= sizeof(h->ctype))
			return 400;
		memcpy(h->ctype, v, vlen);
		h->ctype[vlen] = '\0';
	} else if (nlen == 6 && !strncasecmp(p, "expect", 6)) {
		h->expect_continue = vlen == 12 && !strncasecmp(v, "100-continue", 12);
	}
	return 0;
}

int webhook_h1_parse(const char *buf, size_t len, struct webhook_h1_head *h)
{
	size_t scan = len < WEBHOOK_MAX_HEAD ? len : WEBHOOK_MAX_HEAD;
	const char *end = NULL;

	for (size_t i = 0; i + 4 <= scan; i++)
		if (!memcmp(buf + i, "\r\n\r\n", 4)) {
			end = buf + i;
			break;
		}
	if (!end)
		return len >= WEBHOOK_MAX_HEAD ? 431 : -EAGAIN;
	*h = (struct webhook_h1_head){.head_len = (size_t)(end - buf) + 4, .clen = -1};

	/* METHOD SP request-target SP HTTP/1.x */
	const char *p = buf, *eol = memchr(p, '\r', (size_t)(end - p) + 1);
	const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
	if (!sp1 || !sp2 || sp1 == p || (size_t)(sp1 - p) >= sizeof(h->method) || sp2 == sp1 + 1 ||
	    (size_t)(sp2 - sp1 - 1) >= sizeof(h->path) || sp1[1] != '/' || eol - sp2 - 1 != 8 ||
	    memcmp(sp2 + 1, "HTTP/1.", 7) != 0 || (sp2[8] != '0' && sp2[8] != '1'))
		return 400;
	for (const char *q = p; q < sp1; q++)
		if (!wh1_tchar(*q))
			return 400;
	for (const char *q = sp1 + 1; q < sp2; q++)
		if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f)
			return 400;
	memcpy(h->method, p, (size_t)(sp1 - p));
	h->method[sp1 - p] = '\0';
	memcpy(h->path, sp1 + 1, (size_t)(sp2 - sp1 - 1));
	h->path[sp2 - sp1 - 1] = '\0';

	for (p = eol + 2; p < end + 2;) {
		const char *e = memchr(p, '\r', (size_t)(end + 2 - p));
		if (!e || e[1] != '\n')
			return 400;
		int st = wh1_header(p, e, h);
		if (st)
			return st;
		p = e + 2;
	}
	return 0;
}

/* ---- connection lifetime */

/* The stream is answered or goes: off the list of bodies awaited. */
static void wstream_settle(struct webhook *w, struct wstream *st)
{
	if (!st->rprev)
		return;
	*st->rprev = st->rnext;
	if (st->rnext)
		st->rnext->rprev = st->rprev;
	else
		w->receiving_tail = st->rprev;
	st->rprev = NULL;
}

/* What a stream's body holds goes (answered early, overdue, or gone). */
static void wstream_drop_body(struct wstream *st)
{
	st->c->h2_held -= st->req.len;
	bytebuf_free(&st->req, &st->c->w->budget);
}

static void wstream_free(struct webhook *w, struct wstream *st)
{
	list_del(&st->link);
	wstream_settle(w, st);
	wstream_drop_body(st);
	free(st->resp);
	free(st);
}

static void wconn_free(struct tlsconn *tc)
{
	struct wconn *c = tlsconn_data(tc);
	if (!c)
		return;
	/* nghttp2_session_del does not run the stream close callback. */
	nghttp2_session_del(c->h2);
	while (!list_empty(&c->streams))
		wstream_free(c->w, list_entry(c->streams.next, struct wstream, link));
	bytebuf_free(&c->h1.req, &c->w->budget);
	free(c);
}

/* ---- HTTP/1.1 */

/* Queues the whole answer, then close_notify. */
static int wh1_respond(struct wconn *c, int status, const char *ctype, const char *body, size_t len)
{
	char head[512];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
			 "Connection: close\r\n\r\n",
			 status, adminhttp_reason(status), ctype, len,
			 status == 405 ? "Allow: POST\r\n" : "");
	c->h1.answered = 1;
	if (tlsconn_write(c->tc, (const uint8_t *)head, (size_t)n) < 0 ||
	    tlsconn_write(c->tc, (const uint8_t *)body, len) < 0)
		return -EPROTO;
	mtls_conn_shutdown(tlsconn_tls(c->tc));
	return 0;
}

static void wh_log(struct wconn *c, const char *proto, const char *method, const char *path,
		   int status)
{
	c->w->requests++;
	c->w->errors += status != 200;
	log_event(status == 200 ? LOG_LVL_DEBUG : LOG_LVL_INFO, "webhook_request",
		  log_pack("{s:s, s:s, s:s, s:s, s:i}", "peer", tlsconn_peer(c->tc), "proto",
			    proto, "method", method, "path", path, "status", status));
}

void webhook_counts(const struct webhook *w, uint64_t *requests, uint64_t *errors)
{
	*requests = w ? w->requests : 0;
	*errors = w ? w->errors : 0;
}

static int wh1_error(struct wconn *c, int status, const char *text)
{
	wh_log(c, "http/1.1", c->h1.have_head ? c->h1.head.method : "", c->h1.head.path, status);
	char line[200];
	int n = snprintf(line, sizeof(line), "%s\n", text);
	c->h1.early = 1;
	return wh1_respond(c, status, "text/plain; charset=utf-8", line, (size_t)n);
}

/* The head is complete: refuse what can be refused before the body. */
static int wh1_check_head(struct wconn *c)
{
	struct webhook_h1_head *h = &c->h1.head;
	const char *text = NULL;
	int st = wh_precheck(h->method, h->path, h->ctype, &text);

	if (st)
		return wh1_error(c, st, text);
	if (h->clen < 0)
		return wh1_error(c, 411, "length required: send the body with Content-Length");
	/* Nothing is reserved for the declared length: the buffer grows as
	 * the body arrives (wh1_input). */
	if ((unsigned long long)h->clen > c->w->cfg.max_body)
		return wh1_error(c, 413,
				 "content too large: the AdmissionReview exceeds the limit");
	if (h->expect_continue) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		if (tlsconn_write(c->tc, (const uint8_t *)cont, sizeof(cont) - 1) < 0)
			return -EPROTO;
	}
	return 0;
}

/* The whole request is in: the answer. */
static int wh1_dispatch(struct wconn *c)
{
	struct wh1 *r = &c->h1;
	int status;
	const char *ctype;
	char *body;
	size_t blen;
	int rc = webhook_answer(c->w->cfg.inject, r->head.method, r->head.path, r->head.ctype,
				(const char *)r->req.data + r->head.head_len, (size_t)r->head.clen,
				&status, &ctype, &body, &blen);
	if (rc < 0)
		return rc;
	wh_log(c, "http/1.1", r->head.method, r->head.path, status);
	rc = wh1_respond(c, status, ctype, body, blen);
	free(body);
	return rc;
}

/* Plaintext of an HTTP/1.1 connection: the head (up to WEBHOOK_MAX_HEAD),
 * then exactly Content-Length bytes of body; bytes after those
 * (pipelining) are not served. 0, or <0 to close at once. */
static int wh1_input(struct wconn *c, const uint8_t *data, size_t n)
{
	struct wh1 *r = &c->h1;
	int rc;

	while (n > 0 && !r->answered) {
		size_t room =
			r->have_head ? r->head.head_len + (size_t)r->head.clen : WEBHOOK_MAX_HEAD;
		size_t take = n < room - r->req.len ? n : room - r->req.len;
		if (take == 0)
			break;
		rc = bytebuf_append(&r->req, &c->w->budget, data, take, room);
		if (rc == -ENOBUFS)
			return wh1_error(c, 503, "busy: too many request bodies held, retry");
		if (rc < 0)
			return rc;
		data += take;
		n -= take;
		if (!r->have_head) {
			rc = webhook_h1_parse((const char *)r->req.data, r->req.len, &r->head);
			if (rc == -EAGAIN)
				continue;
			if (rc > 0)
				return wh1_error(
					c, rc,
					rc == 431   ? "request head too large"
					: rc == 501 ? "not implemented: chunked bodies; send "
						      "Content-Length"
						    : "bad request: malformed HTTP/1.1 request");
			r->have_head = 1;
			/* Bytes past the head already read are the body's start. */
			if ((rc = wh1_check_head(c)) < 0)
				return rc;
		}
		if (!r->answered && r->req.len >= r->head.head_len + (size_t)r->head.clen)
			return wh1_dispatch(c);
	}
	return 0;
}

/* ---- HTTP/2 */

#define WNV(n, v, vlen)                                                                            \
	{                                                                                          \
		(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vlen),                             \
			NGHTTP2_NV_FLAG_NO_COPY_NAME                                               \
	}

static ssize_t wh2_read_cb(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len,
			   uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct wstream *st = src->ptr;
	size_t n = st->resp_len - st->resp_off;
	if (n > len)
		n = len;
	memcpy(buf, st->resp + st->resp_off, n);
	st->resp_off += n;
	if (st->resp_off == st->resp_len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

/* Takes `body` (malloc()ed). */
static int wh2_respond(struct wconn *c, struct wstream *st, int status, const char *ctype,
		       char *body, size_t len)
{
	wh_log(c, "h2", st->method, st->path, status);
	st->answered = 1;
	wstream_settle(c->w, st);
	st->resp = body;
	st->resp_len = len;
	st->resp_type = ctype;
	snprintf(st->status_s, sizeof(st->status_s), "%d", status);
	snprintf(st->len_s, sizeof(st->len_s), "%zu", len);
	const nghttp2_nv nva[] = {
		WNV(":status", st->status_s, strlen(st->status_s)),
		WNV("content-type", st->resp_type, strlen(st->resp_type)),
		WNV("content-length", st->len_s, strlen(st->len_s)),
		WNV("allow", "POST", 4),
	};
	nghttp2_data_provider dp = {.source.ptr = st, .read_callback = wh2_read_cb};
	return nghttp2_submit_response(c->h2, st->id, nva, status == 405 ? 4 : 3, &dp) == 0
		       ? 0
		       : -ENOMEM;
}

static int wh2_error(struct wconn *c, struct wstream *st, int status, const char *text)
{
	const char *ctype;
	char *body;
	size_t len;
	if (wh_text(status, text, &status, &ctype, &body, &len) < 0)
		return -ENOMEM;
	return wh2_respond(c, st, status, ctype, body, len);
}

static int wh2_begin_headers_cb(nghttp2_session *h2, const nghttp2_frame *frame, void *ud)
{
	struct wconn *c = ud;
	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	struct wstream *st = calloc(1, sizeof(*st));
	if (!st)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	st->id = frame->hd.stream_id;
	st->c = c;
	st->clen = -1;
	st->deadline = uv_now(c->w->loop) + c->w->cfg.request_ms;
	st->rprev = c->w->receiving_tail;
	*c->w->receiving_tail = st;
	c->w->receiving_tail = &st->rnext;
	list_add_head(&c->streams, &st->link);
	nghttp2_session_set_stream_user_data(h2, st->id, st);
	return 0;
}

static void wh2_copy(char *dst, size_t cap, const uint8_t *v, size_t len)
{
	if (len >= cap)
		len = cap - 1; /* a truncated path or type still fails its check */
	memcpy(dst, v, len);
	dst[len] = '\0';
}

/* nghttp2 has already checked the pseudo-headers and content-length
 * syntax (RFC 9113 8.1.1, 8.3). */
static int wh2_header_cb(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
			 size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
			 void *ud)
{
	struct wstream *st = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (!st || frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (namelen == 5 && !memcmp(name, ":path", 5))
		wh2_copy(st->path, sizeof(st->path), value, valuelen);
	else if (namelen == 7 && !memcmp(name, ":method", 7))
		wh2_copy(st->method, sizeof(st->method), value, valuelen);
	else if (namelen == 12 && !memcmp(name, "content-type", 12))
		wh2_copy(st->ctype, sizeof(st->ctype), value, valuelen);
	else if (namelen == 14 && !memcmp(name, "content-length", 14) && valuelen <= 15) {
		st->clen = 0;
		for (size_t i = 0; i < valuelen; i++)
			st->clen = st->clen * 10 + (value[i] - '0');
	}
	return 0;
}

static int wh2_data_chunk_cb(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data,
			     size_t len, void *ud)
{
	struct wconn *c = ud;
	struct wstream *st = nghttp2_session_get_stream_user_data(h2, id);

	if (!st || st->answered)
		return 0;
	/* One connection holds at most max_body in all, as an HTTP/1.1 one. */
	int rc = c->h2_held + len > c->w->cfg.max_body && st->req.len + len <= c->w->cfg.max_body
			 ? -ENOBUFS
			 : bytebuf_append(&st->req, &c->w->budget, data, len, c->w->cfg.max_body);
	if (rc == 0)
		c->h2_held += len;
	else if (rc == -E2BIG)
		rc = wh2_error(c, st, 413,
			       "content too large: the AdmissionReview exceeds the limit");
	else if (rc == -ENOBUFS)
		rc = wh2_error(c, st, 503, "busy: too many request bodies held, retry");
	if (st->answered) /* refused: its bytes go now */
		wstream_drop_body(st);
	return rc < 0 ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

static int wh2_dispatch(struct wconn *c, struct wstream *st)
{
	int status;
	const char *ctype;
	char *body;
	size_t len;
	if (webhook_answer(c->w->cfg.inject, st->method, st->path, st->ctype,
			   (const char *)st->req.data, st->req.len, &status, &ctype, &body,
			   &len) < 0)
		return -ENOMEM;
	return wh2_respond(c, st, status, ctype, body, len);
}

static int wh2_frame_recv_cb(nghttp2_session *h2, const nghttp2_frame *frame, void *ud)
{
	struct wconn *c = ud;
	struct wstream *st = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	int rc = 0;

	if (!st || st->answered)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
		const char *text = NULL;
		int code = wh_precheck(st->method, st->path, st->ctype, &text);
		if (code)
			rc = wh2_error(c, st, code, text);
		else if (st->clen > 0 && (unsigned long long)st->clen > c->w->cfg.max_body)
			rc = wh2_error(c, st, 413,
				       "content too large: the AdmissionReview exceeds the limit");
	}
	if (rc == 0 && !st->answered &&
	    (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
	    (frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		rc = wh2_dispatch(c, st);
	return rc < 0 ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

static int wh2_stream_close_cb(nghttp2_session *h2, int32_t id, uint32_t error_code, void *ud)
{
	struct wconn *c = ud;
	struct wstream *st = nghttp2_session_get_stream_user_data(h2, id);
	if (!st)
		return 0;
	nghttp2_session_set_stream_user_data(h2, id, NULL);
	wstream_free(c->w, st);
	return 0;
}

static int wh2_error_cb(nghttp2_session *h2, int code, const char *msg, size_t len, void *ud)
{
	struct wconn *c = ud;
	log_event(LOG_LVL_INFO, "webhook_h2_error",
		  log_pack("{s:s, s:s%}", "peer", tlsconn_peer(c->tc), "error", msg, len));
	return 0;
}

static int wconn_start_h2(struct wconn *c)
{
	nghttp2_session_callbacks *cbs;
	int rc = -ENOMEM;

	if (nghttp2_session_callbacks_new(&cbs) < 0)
		return -ENOMEM;
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, wh2_begin_headers_cb);
	nghttp2_session_callbacks_set_on_header_callback(cbs, wh2_header_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, wh2_data_chunk_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, wh2_frame_recv_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, wh2_stream_close_cb);
	nghttp2_session_callbacks_set_error_callback2(cbs, wh2_error_cb);
	if (nghttp2_session_server_new(&c->h2, cbs, c) == 0) {
		const nghttp2_settings_entry iv[] = {
			{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, c->w->cfg.max_streams},
			{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, WEBHOOK_MAX_HEAD},
		};
		rc = nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 2) == 0 ? 0 : -ENOMEM;
	}
	nghttp2_session_callbacks_del(cbs);
	if (rc == 0)
		tlsconn_set_timeout(c->tc, c->w->cfg.idle_ms, 1, "idle_timeout");
	return rc;
}

/* ---- tlsserver's ops */

static int wconn_start(struct tlsconn *tc)
{
	struct wconn *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->tc = tc;
	list_init(&c->streams);
	c->w = tlsconn_owner(tc);
	tlsconn_set_data(tc, c);
	if (mtls_conn_alpn_is(tlsconn_tls(tc), "h2"))
		return wconn_start_h2(c);
	tlsconn_set_timeout(tc, c->w->cfg.request_ms, 0, "request_timeout");
	return 0;
}

static int wconn_input(struct tlsconn *tc, const uint8_t *data, size_t len)
{
	struct wconn *c = tlsconn_data(tc);
	if (!c->h2)
		return wh1_input(c, data, len);
	if (nghttp2_session_mem_recv(c->h2, data, len) < 0) {
		tlsconn_close(tc, "h2_protocol_error");
		return -EPROTO;
	}
	return 0;
}

/* Moves nghttp2's output into TLS while the socket keeps up. */
static int wconn_flush(struct tlsconn *tc)
{
	struct wconn *c = tlsconn_data(tc);
	return c->h2 ? tlsconn_flush_h2(tc, c->h2) : 0;
}

static const char *wconn_done(struct tlsconn *tc)
{
	struct wconn *c = tlsconn_data(tc);
	if (c->h2)
		return !nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2)
			       ? "h2_done"
			       : NULL;
	if (!c->h1.answered)
		return NULL;
	if (!c->h1.early)
		return "answered";
	if (!c->h1.lingering) {
		c->h1.lingering = 1;
		tlsconn_set_timeout(tc, WH_LINGER_MS, 0, "answered_early");
	}
	return NULL;
}

static const struct tlsserver_ops webhook_ops = {
	.start = wconn_start,
	.input = wconn_input,
	.flush = wconn_flush,
	.done = wconn_done,
	.free = wconn_free,
};

/* ---- the server and its certificate */

/* Whether either file is another one than the context was loaded from.
 * The watch is on the files' directories, which may see other changes
 * (and a Secret mount swaps a symlink: stat follows it). */
static int webhook_files_changed(struct webhook *w, struct stat *cert, struct stat *key)
{
	if (stat(w->cert_path, cert) < 0 || stat(w->key_path, key) < 0)
		return 1; /* let the load say what is wrong */
	return cert->st_ino != w->cert_st.st_ino || cert->st_dev != w->cert_st.st_dev ||
	       cert->st_size != w->cert_st.st_size ||
	       cert->st_mtim.tv_sec != w->cert_st.st_mtim.tv_sec ||
	       cert->st_mtim.tv_nsec != w->cert_st.st_mtim.tv_nsec ||
	       key->st_ino != w->key_st.st_ino || key->st_dev != w->key_st.st_dev ||
	       key->st_size != w->key_st.st_size ||
	       key->st_mtim.tv_sec != w->key_st.st_mtim.tv_sec ||
	       key->st_mtim.tv_nsec != w->key_st.st_mtim.tv_nsec;
}

/* The certificate files changed: a new context for new connections, or
 * the old one kept (with the reason logged) when the new files do not
 * make one, e.g. the certificate was written but not yet its key. */
static void webhook_reload_cb(void *arg)
{
	struct webhook *w = arg;
	struct mtls_ctx *tls;
	struct stat cert = {0}, key = {0};
	const char *why = NULL;

	if (!webhook_files_changed(w, &cert, &key))
		return;
	w->cert_st = cert;
	w->key_st = key;
	if (mtls_ctx_new_pem_files(&webhook_https_opts, w->cert_path, w->key_path, &tls, &why) < 0) {
		log_event(LOG_LVL_WARN, "webhook_cert_reload_failed",
			  log_pack("{s:s, s:s, s:s}", "cert", w->cert_path, "key", w->key_path,
				    "error", why));
		return;
	}
	webhook_set_tls(w, tls);
	mtls_ctx_unref(tls);
	log_event(LOG_LVL_INFO, "webhook_cert_reloaded",
		  log_pack("{s:s, s:s}", "cert", w->cert_path, "key", w->key_path));
}

/* Answers 408 to every HTTP/2 stream whose body is overdue, oldest
 * first, and frees what it held. */
static void webhook_sweep_cb(uv_timer_t *t)
{
	struct webhook *w = t->data;
	uint64_t now = uv_now(t->loop);

	while (w->receiving && w->receiving->deadline <= now) {
		struct wstream *st = w->receiving;
		struct wconn *c = st->c;
		wstream_settle(w, st);
		if (wh2_error(c, st, 408, "request timeout: the body did not arrive in time") < 0) {
			tlsconn_close(c->tc, "out_of_memory");
			continue; /* its streams went with it */
		}
		wstream_drop_body(st);
		tlsconn_kick(c->tc);
	}
}

static void webhook_sweep_close_cb(uv_handle_t *h)
{
	free(h);
}

void webhook_set_tls(struct webhook *w, struct mtls_ctx *tls)
{
	tlsserver_set_tls(w->srv, tls);
	w->not_after = mtls_ctx_not_after(tls);
}

int64_t webhook_cert_not_after(const struct webhook *w)
{
	return w->not_after;
}

static void webhook_free(void *arg)
{
	struct webhook *w = arg;
	free(w->cert_path);
	free(w->key_path);
	free(w);
}

/* The operator's certificate files: loaded, and watched for changes. */
static int webhook_watch_files(uv_loop_t *loop, struct webhook *w, struct mtls_ctx **tls,
			       const char **why)
{
	int rc;

	*why = "out of memory";
	w->cert_path = strdup(w->cfg.cert_path);
	w->key_path = strdup(w->cfg.key_path);
	w->cfg.cert_path = w->cert_path;
	w->cfg.key_path = w->key_path;
	if (!w->cert_path || !w->key_path)
		return -ENOMEM;
	webhook_files_changed(w, &w->cert_st, &w->key_st);
	if ((rc = mtls_ctx_new_pem_files(&webhook_https_opts, w->cert_path, w->key_path, tls, why)) < 0)
		return rc;
	const char *paths[] = {w->cert_path, w->key_path};
	if ((rc = fswatch_start(loop, paths, 2, WH_RELOAD_SETTLE_MS, webhook_reload_cb, w,
				&w->watch)) < 0) {
		mtls_ctx_unref(*tls);
		*tls = NULL;
		*why = "cannot watch the certificate files";
	}
	return rc;
}

int webhook_start(uv_loop_t *loop, const struct webhook_config *cfg, struct webhook **out,
		  int *port, const char **why)
{
	struct webhook *w = calloc(1, sizeof(*w));
	struct mtls_ctx *tls = NULL;
	int rc = -ENOMEM;

	*why = "out of memory";
	if (!w)
		return -ENOMEM;
	w->cfg = *cfg;
	w->cfg.host = NULL;
	w->loop = loop;
	w->budget.limit = WEBHOOK_BUDGET;
	w->receiving_tail = &w->receiving;
	w->cfg.tls = NULL;
	if (cfg->tls) { /* issued in memory: the owner renews it */
		tls = cfg->tls;
		mtls_ctx_ref(tls);
	} else if ((rc = webhook_watch_files(loop, w, &tls, why)) < 0) {
		goto fail;
	}
	w->not_after = mtls_ctx_not_after(tls);
	struct tlsserver_config sc = {
		.host = cfg->host,
		.port = cfg->port,
		.max_conns = cfg->max_conns,
		.max_per_source = cfg->max_per_source,
		.handshake_ms = cfg->request_ms,
		.name = "webhook",
		.log_refused = 1,
	};
	if (!(w->sweep = malloc(sizeof(*w->sweep)))) {
		rc = -ENOMEM;
		fswatch_stop(w->watch);
		goto fail;
	}
	if ((rc = tlsserver_start(loop, &sc, &webhook_ops, tls, w, &w->srv, port)) < 0) {
		*why = uv_strerror(rc);
		fswatch_stop(w->watch);
		free(w->sweep);
		goto fail;
	}
	uv_timer_init(loop, w->sweep);
	w->sweep->data = w;
	uv_timer_start(w->sweep, webhook_sweep_cb, WH_SWEEP_MS, WH_SWEEP_MS);
	mtls_ctx_unref(tls);
	*out = w;
	return 0;
fail:
	mtls_ctx_unref(tls);
	webhook_free(w);
	return rc;
}

void webhook_stop(struct webhook *w)
{
	if (!w)
		return;
	fswatch_stop(w->watch);
	uv_close((uv_handle_t *)w->sweep, webhook_sweep_close_cb);
	tlsserver_stop(w->srv, webhook_free);
}

unsigned webhook_conns(const struct webhook *w)
{
	return tlsserver_conns(w->srv);
}
