/* h2c: see h2c.h. One connection is a small state machine:
 *
 *   RESOLVING (uv_getaddrinfo) -> CONNECTING (each address in turn)
 *   -> HANDSHAKE (a mtls client connection) -> READY (nghttp2) -> DEAD
 *
 * Requests made before READY wait on the connection (stream_id 0) and are
 * submitted when it gets there. Bytes flow: socket -> mtls_conn_feed ->
 * mtls_conn_read -> nghttp2_session_mem_recv -> callbacks; and
 * nghttp2_session_mem_send -> mtls_conn_write -> mtls_conn_take_out ->
 * uv_write, in h2c_flush after every event. One timer per connection: the connect
 * deadline, then the PING clock while streams are open, then the idle
 * close. h2c_conn_fail is the one way a connection ends: every request on
 * it finishes with the reason, its handles close, and it is freed (its
 * TLS connection and nghttp2 session with it) only from the last close callback, so a
 * callback may end anything, h2c_close included, while nghttp2 is still on
 * the stack. h2c_req_finish is the one place a request ends. */
#include "h2c.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "numarg.h"
#include "pemfile.h"

enum h2c_state {
	H2C_RESOLVING = 0,
	H2C_CONNECTING,
	H2C_HANDSHAKE,
	H2C_READY,
	H2C_DEAD,
};

struct h2c_conn;

struct h2c_req {
	struct h2c *h;
	struct h2c_conn *conn;	       /* NULL once finished */
	struct h2c_req *prev, *next;   /* on conn->reqs */
	int32_t stream_id;	       /* 0 until submitted */
	char *method, *path, *headers; /* headers: "name\0value\0" n_headers times */
	size_t n_headers;
	uint8_t *body;
	size_t body_len, body_off;
	long http_code;
	unsigned hdr_count;
	size_t hdr_bytes;
	int done;
	uv_timer_t timer; /* the request's deadline */
	h2c_header_cb on_header;
	h2c_data_cb on_data;
	h2c_done_cb on_done;
	void *data;
};

struct h2c_conn {
	struct h2c *h;
	struct h2c_conn *next; /* on h->conns while not DEAD */
	struct mtls_ctx *creds;
	enum h2c_state state;
	char host[256], port[8], authority[272];
	int goaway;    /* the server said GOAWAY: no new streams here */
	int ping_out;  /* a PING sent and not answered yet */
	int in_recv;   /* inside nghttp2_session_mem_recv: no mem_send now */
	int refs;      /* open handles and a pending getaddrinfo */
	int resolving; /* gai in flight */
	uv_getaddrinfo_t gai;
	struct addrinfo *ai, *ai_next;
	uv_tcp_t tcp;
	int tcp_open;
	uv_connect_t connect_req;
	uv_timer_t timer;
	struct mtls_conn *tls;
	nghttp2_session *ng;
	struct h2c_req *reqs;
	unsigned n_reqs;
	char why[512]; /* what we told nghttp2 (GOAWAY we sent) */
};

struct h2c {
	uv_loop_t *loop;
	struct h2c_conn *conns;
	unsigned live; /* connections and request timers not freed yet */
	int closing;
	unsigned ping_ms; /* H2C_PING_MS, or h2c_set_ping_ms's */
	void (*closed_cb)(void *arg);
	void *closed_arg;
};

static void h2c_flush(struct h2c_conn *c);
static void h2c_conn_fail(struct h2c_conn *c, int err, const char *why);

/* --- lifetime of the client ------------------------------------------ */

static void h2c_unlive(struct h2c *h)
{
	if (--h->live == 0 && h->closing) {
		void (*cb)(void *) = h->closed_cb;
		void *arg = h->closed_arg;
		free(h);
		if (cb)
			cb(arg);
	}
}

int h2c_new(uv_loop_t *loop, struct h2c **out)
{
	struct h2c *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->loop = loop;
	h->ping_ms = H2C_PING_MS;
	*out = h;
	return 0;
}

/* --- creds ------------------------------------------------------------- */

int h2c_tls_new(const char *ca_pem, const char *cert_pem, const char *key_pem,
		struct mtls_ctx **out)
{
	struct mtls_opts o = {
		.roles = MTLS_ROLE_CLIENT,
		.verify = MTLS_VERIFY_HOSTNAME,
		/* gRPC is HTTP/2 only */
		.alpn = "\x02h2",
		.alpn_len = 3,
		.alpn_required = 1,
		/* no session cache: every connection verifies the server afresh */
		.resumption = 0,
	};
	STACK_OF(X509) *chain = NULL;
	BIO *b = NULL;
	const char *why;
	int rc = -EINVAL;

	if (!ca_pem || !cert_pem != !key_pem)
		return -EINVAL;
	if (!(o.roots = pemfile_certs_mem(ca_pem)))
		goto out;
	if (cert_pem) {
		/* ours: the leaf first, then its intermediates */
		if (!(chain = pemfile_certs_mem(cert_pem)) || !(b = BIO_new_mem_buf(key_pem, -1)) ||
		    !(o.key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL)))
			goto out;
		o.cert = sk_X509_shift(chain);
		o.chain = chain;
	}
	rc = mtls_ctx_new_opts(&o, out, &why);
out:
	ERR_clear_error();
	BIO_free(b);
	X509_free(o.cert);
	EVP_PKEY_free(o.key);
	sk_X509_pop_free(chain, X509_free);
	sk_X509_pop_free(o.roots, X509_free);
	return rc;
}

/* --- requests ---------------------------------------------------------- */

static void h2c_req_freed(uv_handle_t *t)
{
	struct h2c_req *r = t->data;
	struct h2c *h = r->h;
	free(r->method);
	free(r->path);
	free(r->headers);
	free(r->body);
	free(r);
	h2c_unlive(h);
}

static void h2c_conn_arm(struct h2c_conn *c);

/* Takes r off its connection (its stream, if any, no longer reaches it). */
static void h2c_req_detach(struct h2c_req *r)
{
	struct h2c_conn *c = r->conn;
	if (!c)
		return;
	if (r->prev)
		r->prev->next = r->next;
	else
		c->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	c->n_reqs--;
	if (r->stream_id > 0 && c->ng)
		nghttp2_session_set_stream_user_data(c->ng, r->stream_id, NULL);
	r->conn = NULL;
	if (c->n_reqs == 0 && c->state == H2C_READY)
		h2c_conn_arm(c);
	else if (c->n_reqs == 0 && c->state != H2C_DEAD) /* nobody waits for it */
		h2c_conn_fail(c, -ECANCELED, "cancelled");
}

static void h2c_req_finish(struct h2c_req *r, int status, const char *err)
{
	if (r->done)
		return;
	r->done = 1;
	h2c_req_detach(r);
	uv_timer_stop(&r->timer);
	r->on_done(r, status, r->http_code, err ? err : "");
	uv_close((uv_handle_t *)&r->timer, h2c_req_freed);
}

/* Ends r early: its stream (if any) is reset, on_done(status) runs now. */
static void h2c_req_abort(struct h2c_req *r, int status, const char *err)
{
	struct h2c_conn *c = r->conn;
	if (c && c->ng && r->stream_id > 0)
		nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, r->stream_id, NGHTTP2_CANCEL);
	h2c_req_finish(r, status, err);
}

static void h2c_req_timeout(uv_timer_t *t)
{
	struct h2c_req *r = t->data;
	struct h2c_conn *c = r->conn;
	char why[512];
	snprintf(why, sizeof(why), "the request timed out after %llu ms",
		 (unsigned long long)uv_timer_get_repeat(t));
	h2c_req_abort(r, -ETIMEDOUT, why);
	if (c)
		h2c_flush(c);
}

void h2c_cancel(struct h2c_req *r)
{
	struct h2c_conn *c = r->conn;
	h2c_req_abort(r, -ECANCELED, "cancelled");
	if (c)
		h2c_flush(c);
}

void *h2c_req_data(const struct h2c_req *r)
{
	return r->data;
}

static ssize_t h2c_body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
			     uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct h2c_req *r = nghttp2_session_get_stream_user_data(s, id);
	if (!r)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	size_t n = r->body_len - r->body_off < len ? r->body_len - r->body_off : len;
	if (n)
		memcpy(buf, r->body + r->body_off, n);
	r->body_off += n;
	if (r->body_off == r->body_len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

#define H2C_NV(n, v, vl)                                                                           \
	{                                                                                          \
		(uint8_t *)(n), (uint8_t *)(v), strlen(n), (vl), NGHTTP2_NV_FLAG_NONE              \
	}

/* Puts a waiting request on the wire as a new stream. */
static void h2c_req_submit(struct h2c_conn *c, struct h2c_req *r)
{
	nghttp2_nv nv[4 + 32];
	size_t n = 0;
	const char *p = r->headers;

	nv[n++] = (nghttp2_nv)H2C_NV(":method", r->method, strlen(r->method));
	nv[n++] = (nghttp2_nv)H2C_NV(":scheme", "https", 5);
	nv[n++] = (nghttp2_nv)H2C_NV(":authority", c->authority, strlen(c->authority));
	nv[n++] = (nghttp2_nv)H2C_NV(":path", r->path, strlen(r->path));
	for (size_t i = 0; i < r->n_headers; i++) {
		const char *v = p + strlen(p) + 1;
		nv[n++] = (nghttp2_nv)H2C_NV(p, v, strlen(v));
		p = v + strlen(v) + 1;
	}
	nghttp2_data_provider dp = {.source.ptr = r, .read_callback = h2c_body_read};
	int32_t id = nghttp2_submit_request(c->ng, NULL, nv, n, r->body ? &dp : NULL, r);
	if (id < 0) {
		h2c_req_finish(r, -EIO, nghttp2_strerror(id));
		return;
	}
	r->stream_id = id;
}

/* --- HTTP/2 callbacks -------------------------------------------------- */

static struct h2c_req *h2c_stream_req(nghttp2_session *s, int32_t id)
{
	return id > 0 ? nghttp2_session_get_stream_user_data(s, id) : NULL;
}

static int h2c_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
			 const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
	struct h2c_req *r = h2c_stream_req(s, f->hd.stream_id);
	if (!r || f->hd.type != NGHTTP2_HEADERS)
		return 0;
	r->hdr_bytes += nl + vl;
	if (++r->hdr_count > H2C_MAX_HEADERS || r->hdr_bytes > H2C_MAX_HEADER_BYTES) {
		h2c_req_abort(r, -EPROTO, "the response's headers are over the limit");
		return 0;
	}
	if (nl == 7 && memcmp(name, ":status", 7) == 0) {
		char num[4] = {0};
		if (vl == 3)
			memcpy(num, value, 3);
		r->http_code = strtol(num, NULL, 10);
		return 0;
	}
	if (r->on_header)
		r->on_header(r, (const char *)name, nl, (const char *)value, vl);
	return 0;
}

static int h2c_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
		       size_t len, void *ud)
{
	struct h2c_req *r = h2c_stream_req(s, id);
	if (!r || !r->on_data)
		return 0;
	int rc = r->on_data(r, (const char *)data, len);
	if (rc < 0 && !r->done)
		h2c_req_abort(r, rc, "aborted by the response's reader");
	return 0;
}

static int h2c_on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
	struct h2c_req *r = h2c_stream_req(s, id);
	char why[512];
	if (!r)
		return 0;
	if (code == NGHTTP2_NO_ERROR) {
		h2c_req_finish(r, 0, NULL);
	} else {
		snprintf(why, sizeof(why), "the server reset the stream (%s)",
			 nghttp2_http2_strerror(code));
		h2c_req_finish(r, -ECONNRESET, why);
	}
	return 0;
}

static int h2c_on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct h2c_conn *c = ud;
	if (f->hd.type == NGHTTP2_PING && (f->hd.flags & NGHTTP2_FLAG_ACK))
		c->ping_out = 0;
	else if (f->hd.type == NGHTTP2_GOAWAY)
		c->goaway = 1;
	return 0;
}

static int h2c_on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct h2c_conn *c = ud;
	if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR)
		snprintf(c->why, sizeof(c->why), "HTTP/2 protocol error from the server (%s)",
			 nghttp2_http2_strerror(f->goaway.error_code));
	return 0;
}

static int h2c_start_session(struct h2c_conn *c)
{
	nghttp2_session_callbacks *cb;
	nghttp2_option *opt;
	int rc;

	if (nghttp2_session_callbacks_new(&cb) != 0)
		return -ENOMEM;
	if (nghttp2_option_new(&opt) != 0) {
		nghttp2_session_callbacks_del(cb);
		return -ENOMEM;
	}
	nghttp2_session_callbacks_set_on_header_callback(cb, h2c_on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2c_on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2c_on_stream_close);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, h2c_on_frame_recv);
	nghttp2_session_callbacks_set_on_frame_send_callback(cb, h2c_on_frame_send);
	/* the server's header table may not grow ours past 4 KiB */
	nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
	rc = nghttp2_session_client_new2(&c->ng, cb, c, opt);
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(opt);
	if (rc != 0)
		return -ENOMEM;
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 16},
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, H2C_MAX_HEADER_BYTES},
	};
	if (nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])))
		return -ENOMEM;
	return 0;
}

/* --- the connection ---------------------------------------------------- */

static void h2c_conn_release(struct h2c_conn *c)
{
	if (--c->refs > 0)
		return;
	struct h2c *h = c->h;
	if (c->ng)
		nghttp2_session_del(c->ng);
	mtls_conn_free(c->tls);
	if (c->ai)
		uv_freeaddrinfo(c->ai);
	mtls_ctx_unref(c->creds);
	free(c);
	h2c_unlive(h);
}

static void h2c_handle_closed(uv_handle_t *hd)
{
	h2c_conn_release(hd->data);
}

static void h2c_conn_fail(struct h2c_conn *c, int err, const char *why)
{
	char msg[512];
	if (c->state == H2C_DEAD)
		return;
	c->state = H2C_DEAD;
	for (struct h2c_conn **p = &c->h->conns; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	snprintf(msg, sizeof(msg), "%s", c->why[0] ? c->why : why);
	while (c->reqs)
		h2c_req_finish(c->reqs, err, msg);
	uv_close((uv_handle_t *)&c->timer, h2c_handle_closed);
	if (c->tcp_open && !uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, h2c_handle_closed);
	if (c->resolving)
		uv_cancel((uv_req_t *)&c->gai); /* h2c_resolved gets UV_ECANCELED */
}

static void h2c_timer_cb(uv_timer_t *t)
{
	struct h2c_conn *c = t->data;
	char why[512];

	if (c->state != H2C_READY) {
		snprintf(why, sizeof(why), "connecting to %s timed out", c->authority);
		h2c_conn_fail(c, -ETIMEDOUT, why);
	} else if (c->n_reqs == 0) {
		h2c_conn_fail(c, -ECANCELED, "idle connection closed");
	} else if (c->ping_out) {
		snprintf(why, sizeof(why), "%s did not answer a PING within %d ms", c->authority,
			 c->h->ping_ms);
		h2c_conn_fail(c, -ETIMEDOUT, why);
	} else {
		if (nghttp2_submit_ping(c->ng, NGHTTP2_FLAG_NONE, NULL) == 0)
			c->ping_out = 1;
		h2c_flush(c);
	}
}

/* READY: the PING clock while streams are open, else the idle close; an
 * idle connection does not keep the loop running (uv_unref), as a pooled
 * connection should not. */
static void h2c_conn_arm(struct h2c_conn *c)
{
	c->ping_out = 0;
	if (c->n_reqs) {
		uv_ref((uv_handle_t *)&c->timer);
		uv_ref((uv_handle_t *)&c->tcp);
	} else {
		uv_unref((uv_handle_t *)&c->timer);
		uv_unref((uv_handle_t *)&c->tcp);
	}
	uv_timer_start(&c->timer, h2c_timer_cb, c->n_reqs ? c->h->ping_ms : H2C_IDLE_MS,
		       c->h->ping_ms);
}

static void h2c_write_done(uv_write_t *w, int status)
{
	struct h2c_conn *c = w->data;
	free(w);
	if (status < 0 && status != UV_ECANCELED)
		h2c_conn_fail(c, -ECONNRESET, "cannot write to the server");
}

/* Everything nghttp2 and TLS have to send, out to the socket. */
static void h2c_flush(struct h2c_conn *c)
{
	if (c->in_recv) /* a callback's request or cancel: h2c_read_cb flushes next */
		return;
	if (c->state == H2C_READY) {
		const uint8_t *p;
		ssize_t n;
		while ((n = nghttp2_session_mem_send(c->ng, &p)) > 0)
			if (mtls_conn_write(c->tls, p, (size_t)n) < 0) {
				h2c_conn_fail(c, -EPROTO, "TLS failed while writing");
				return;
			}
		if (n < 0) {
			h2c_conn_fail(c, -EPROTO, nghttp2_strerror((int)n));
			return;
		}
	}
	if (c->state == H2C_DEAD || !c->tls) /* dead, or no TLS yet: nothing to send */
		return;
	size_t len = mtls_conn_pending_out(c->tls);
	if (len) {
		uv_write_t *w = malloc(sizeof(*w) + len);
		if (!w) {
			h2c_conn_fail(c, -ENOMEM, "out of memory");
			return;
		}
		uv_buf_t b = uv_buf_init((char *)(w + 1), (unsigned)len);
		mtls_conn_take_out(c->tls, (uint8_t *)b.base, len);
		w->data = c;
		if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, h2c_write_done) < 0) {
			free(w);
			h2c_conn_fail(c, -ECONNRESET, "cannot write to the server");
			return;
		}
	}
	if (c->state == H2C_READY && !nghttp2_session_want_read(c->ng) &&
	    !nghttp2_session_want_write(c->ng))
		h2c_conn_fail(c, c->why[0] ? -EPROTO : -ECONNRESET,
			      "the server closed the HTTP/2 connection");
}

static void h2c_handshake(struct h2c_conn *c)
{
	const char *why = NULL;
	char msg[512];
	int rc = mtls_conn_handshake(c->tls, &why);

	if (rc == MTLS_HS_WANT_READ) {
		h2c_flush(c);
		return;
	}
	if (rc < 0) {
		/* the chain, the host name and ALPN h2 are the context's checks */
		snprintf(msg, sizeof(msg), "TLS handshake with %s failed: %s (%s)", c->authority,
			 why, mtls_conn_failure_cause(c->tls));
		h2c_flush(c); /* our alert, best effort */
		h2c_conn_fail(c, -EPROTO, msg);
		return;
	}
	if (h2c_start_session(c) < 0) {
		h2c_conn_fail(c, -ENOMEM, "out of memory");
		return;
	}
	c->state = H2C_READY;
	h2c_conn_arm(c);
	for (struct h2c_req *r = c->reqs, *next; r; r = next) {
		next = r->next;
		h2c_req_submit(c, r);
	}
}

static void h2c_alloc(uv_handle_t *hd, size_t hint, uv_buf_t *b)
{
	static char buf[16384]; /* one loop: the bytes are consumed before the next read */
	*b = uv_buf_init(buf, sizeof(buf));
}

static void h2c_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	struct h2c_conn *c = s->data;
	uint8_t plain[16384];
	char why[512];

	if (nread == 0 || c->state == H2C_DEAD)
		return;
	if (nread < 0) {
		snprintf(why, sizeof(why), "%s closed the connection%s%s", c->authority,
			 nread == UV_EOF ? "" : ": ",
			 nread == UV_EOF ? "" : uv_strerror((int)nread));
		h2c_conn_fail(c, -ECONNRESET, why);
		return;
	}
	if (mtls_conn_feed(c->tls, (const uint8_t *)b->base, (size_t)nread) < 0) {
		h2c_conn_fail(c, -ENOMEM, "out of memory");
		return;
	}
	if (c->state == H2C_HANDSHAKE)
		h2c_handshake(c);
	while (c->state == H2C_READY) {
		int n = mtls_conn_read(c->tls, plain, sizeof(plain));
		if (n == 0)
			break;
		if (n < 0) {
			h2c_conn_fail(c, n == -EPIPE ? -ECONNRESET : -EPROTO,
				      n == -EPIPE ? "the server closed TLS"
						  : "TLS failed while reading");
			return;
		}
		c->in_recv = 1;
		ssize_t rc = nghttp2_session_mem_recv(c->ng, plain, (size_t)n);
		c->in_recv = 0;
		if (rc < 0) {
			snprintf(why, sizeof(why), "HTTP/2 failure: %s", nghttp2_strerror((int)rc));
			h2c_conn_fail(c, -EPROTO, why);
			return;
		}
	}
	if (c->state != H2C_DEAD)
		h2c_flush(c);
}

static void h2c_try_next(struct h2c_conn *c, int last_err);

static void h2c_retry_closed(uv_handle_t *hd)
{
	struct h2c_conn *c = hd->data;
	int err = c->connect_req.data ? (int)(intptr_t)c->connect_req.data : -ECONNREFUSED;
	c->tcp_open = 0;
	if (c->state != H2C_DEAD)
		h2c_try_next(c, err);
	h2c_conn_release(c);
}

static void h2c_connected(uv_connect_t *cr, int status)
{
	struct h2c_conn *c = cr->handle->data;
	int rc;

	if (c->state == H2C_DEAD)
		return;
	if (status < 0) { /* this address failed: close, then the next one */
		cr->data = (void *)(intptr_t)status;
		uv_close((uv_handle_t *)&c->tcp, h2c_retry_closed);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	uv_tcp_keepalive(&c->tcp, 1, 60);
	/* the server's certificate must name the host of the URL (a DNS or an
	 * IP SAN); a name is also sent as SNI */
	if ((rc = mtls_conn_new_client(c->creds, c->host, &c->tls)) < 0) {
		h2c_conn_fail(c, rc, rc == -ENOMEM ? "out of memory" : "cannot start TLS");
		return;
	}
	c->state = H2C_HANDSHAKE;
	if (uv_read_start((uv_stream_t *)&c->tcp, h2c_alloc, h2c_read_cb) < 0) {
		h2c_conn_fail(c, -ECONNRESET, "cannot read from the server");
		return;
	}
	h2c_handshake(c);
}

static void h2c_try_next(struct h2c_conn *c, int last_err)
{
	char why[512];
	while (c->ai_next) {
		struct addrinfo *a = c->ai_next;
		c->ai_next = a->ai_next;
		if (uv_tcp_init(c->h->loop, &c->tcp) < 0)
			break;
		c->tcp.data = c;
		c->tcp_open = 1;
		c->refs++;
		c->connect_req.data = NULL;
		int rc = uv_tcp_connect(&c->connect_req, &c->tcp, a->ai_addr, h2c_connected);
		if (rc == 0)
			return;
		c->connect_req.data = (void *)(intptr_t)rc;
		uv_close((uv_handle_t *)&c->tcp, h2c_retry_closed);
		return;
	}
	snprintf(why, sizeof(why), "cannot connect to %s: %s", c->authority, uv_strerror(last_err));
	h2c_conn_fail(c, last_err, why);
}

static void h2c_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *ai)
{
	struct h2c_conn *c = g->data;
	char why[512];

	c->ai = ai;
	c->resolving = 0;
	if (c->state != H2C_DEAD) {
		if (status < 0) {
			snprintf(why, sizeof(why), "cannot resolve %s: %s", c->host,
				 uv_strerror(status));
			h2c_conn_fail(c, -EHOSTUNREACH, why);
		} else {
			c->state = H2C_CONNECTING;
			c->ai_next = ai;
			h2c_try_next(c, UV_EADDRNOTAVAIL);
		}
	}
	h2c_conn_release(c);
}

static struct h2c_conn *h2c_conn_new(struct h2c *h, struct mtls_ctx *creds, const char *host,
				     const char *port, long connect_timeout_ms)
{
	struct h2c_conn *c = calloc(1, sizeof(*c));
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};

	if (!c)
		return NULL;
	c->h = h;
	c->creds = mtls_ctx_ref(creds);
	snprintf(c->host, sizeof(c->host), "%s", host);
	snprintf(c->port, sizeof(c->port), "%s", port);
	snprintf(c->authority, sizeof(c->authority), strchr(host, ':') ? "[%s]:%s" : "%s:%s", host,
		 port);
	uv_timer_init(h->loop, &c->timer);
	c->timer.data = c;
	c->refs = 1; /* the timer */
	h->live++;
	c->gai.data = c;
	if (uv_getaddrinfo(h->loop, &c->gai, h2c_resolved, c->host, c->port, &hints) < 0) {
		h2c_conn_fail(c, -EHOSTUNREACH, "cannot resolve the host");
		return NULL;
	}
	c->refs++;
	c->resolving = 1;
	uv_timer_start(&c->timer, h2c_timer_cb, connect_timeout_ms, 0);
	c->next = h->conns;
	h->conns = c;
	return c;
}

/* --- h2c_request ------------------------------------------------------- */

/* "https://host:port/path" -> host (brackets taken off), port, path. */
static int h2c_parse_url(const char *url, char *host, size_t hcap, char *port, char *path,
			 size_t pcap)
{
	const char *p, *hend, *slash;
	size_t hl;

	if (strncmp(url, "https://", 8) != 0)
		return -EINVAL;
	p = url + 8;
	slash = strchr(p, '/');
	if (!slash)
		slash = p + strlen(p);
	if (*p == '[') {
		hend = memchr(p, ']', (size_t)(slash - p));
		if (!hend)
			return -EINVAL;
		hl = (size_t)(hend - p - 1);
		p++;
		hend++;
	} else {
		hend = memchr(p, ':', (size_t)(slash - p));
		if (!hend)
			hend = slash;
		hl = (size_t)(hend - p);
	}
	if (hl == 0 || hl >= hcap)
		return -EINVAL;
	memcpy(host, p, hl);
	host[hl] = '\0';
	if (*hend == ':') {
		size_t pl = (size_t)(slash - hend - 1);
		long long v;
		if (pl == 0 || pl > 5)
			return -EINVAL;
		memcpy(port, hend + 1, pl);
		port[pl] = '\0';
		if (numarg_parse(port, 1, 65535, &v) < 0)
			return -EINVAL;
	} else if (hend == slash) {
		memcpy(port, "443", 4);
	} else {
		return -EINVAL;
	}
	if ((size_t)snprintf(path, pcap, "%s", *slash ? slash : "/") >= pcap)
		return -EINVAL;
	return 0;
}

int h2c_request(struct h2c *h, const struct h2c_req_opts *o, struct mtls_ctx *creds,
		struct h2c_req **out)
{
	char host[256], port[8], path[1024];
	struct h2c_req *r;
	struct h2c_conn *c;
	size_t hl = 0, n = 0;

	if (h->closing || !o->method || !o->url || !o->on_done || !creds ||
	    h2c_parse_url(o->url, host, sizeof(host), port, path, sizeof(path)) < 0)
		return -EINVAL;
	for (const char *const *hd = o->headers; hd && *hd; hd++, n++) {
		const char *colon = strchr(*hd, ':');
		if (!colon || colon == *hd || n >= 32)
			return -EINVAL;
		hl += strlen(*hd) + 1;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->h = h;
	r->method = strdup(o->method);
	r->path = strdup(path);
	r->headers = malloc(hl + 1);
	r->body = o->body ? malloc(o->body_len ? o->body_len : 1) : NULL;
	if (!r->method || !r->path || !r->headers || (o->body && !r->body))
		goto nomem;
	/* "name: value" -> "name\0value\0", the name in lower case (HTTP/2) */
	char *w = r->headers;
	for (const char *const *hd = o->headers; hd && *hd; hd++) {
		const char *colon = strchr(*hd, ':'), *v = colon + 1;
		for (const char *s = *hd; s < colon; s++)
			*w++ = (char)((*s >= 'A' && *s <= 'Z') ? *s + 32 : *s);
		*w++ = '\0';
		while (*v == ' ')
			v++;
		size_t vl = strlen(v) + 1;
		memcpy(w, v, vl);
		w += vl;
	}
	r->n_headers = n;
	if (o->body_len)
		memcpy(r->body, o->body, o->body_len);
	r->body_len = o->body_len;
	r->on_header = o->on_header;
	r->on_data = o->on_data;
	r->on_done = o->on_done;
	r->data = o->data;

	for (c = h->conns; c; c = c->next)
		if (c->creds == creds && !c->goaway && !strcmp(c->host, host) &&
		    !strcmp(c->port, port))
			break;
	if (!c && !(c = h2c_conn_new(h, creds, host, port,
				     o->connect_timeout_ms ? o->connect_timeout_ms : 10000)))
		goto nomem;
	uv_timer_init(h->loop, &r->timer);
	r->timer.data = r;
	h->live++;
	if (o->timeout_ms > 0)
		uv_timer_start(&r->timer, h2c_req_timeout, (uint64_t)o->timeout_ms,
			       (uint64_t)o->timeout_ms);
	r->conn = c;
	r->next = c->reqs;
	if (c->reqs)
		c->reqs->prev = r;
	c->reqs = r;
	if (c->n_reqs++ == 0 && c->state == H2C_READY)
		h2c_conn_arm(c);
	if (c->state == H2C_READY) {
		h2c_req_submit(c, r);
		h2c_flush(c);
	}
	if (out)
		*out = r;
	return 0;
nomem:
	free(r->method);
	free(r->path);
	free(r->headers);
	free(r->body);
	free(r);
	return -ENOMEM;
}

void h2c_close(struct h2c *h, void (*cb)(void *arg), void *arg)
{
	h->closing = 1;
	h->closed_cb = cb;
	h->closed_arg = arg;
	h->live++; /* this call's own hold, so nothing frees h under the loop below */
	while (h->conns)
		h2c_conn_fail(h->conns, -ECANCELED, "cancelled");
	h2c_unlive(h);
}

void h2c_set_ping_ms(struct h2c *h, unsigned ms)
{
	h->ping_ms = ms ? ms : H2C_PING_MS;
}
