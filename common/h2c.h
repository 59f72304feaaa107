/* h2c: an HTTP/2 client on a libuv loop, on what the agent already links:
 * nghttp2 for HTTP/2 and Cinch's one TLS engine (mtls, a client context
 * verifying the host name) for TLS. It
 * carries the agent's gRPC calls to cinch-control (grpcc), so the agent
 * maps no libcurl and no GnuTLS (third_party/README.md; the control and
 * cinchctl keep httpc, on libcurl, for the Kubernetes API's HTTP/1.1).
 *
 * https only, HTTP/2 only (ALPN h2, required). The server's certificate must
 * chain to the creds' roots and name the URL's host (a DNS SAN, or an IP
 * SAN for an address), as libcurl's VERIFYPEER + VERIFYHOST did; TLS 1.3
 * (mtls's only version, which cinch-control serves); an optional client
 * certificate; no session resumption (every connection verifies afresh).
 *
 * Objects and lifetimes:
 *  - struct h2c: one per loop; owns its connections. A request reuses a
 *    live connection to the same host and port made with the same creds
 *    object (so a rotation's new creds open a new connection and live
 *    streams keep theirs). A connection with streams sends a PING every
 *    H2C_PING_MS and is closed when one goes unanswered for H2C_PING_MS
 *    (a control that vanished without a FIN); one without streams is
 *    closed after H2C_IDLE_MS. Freed by h2c_close().
 *  - the creds: a struct mtls_ctx (immutable, reference-counted: mtls_ctx_ref,
 *    mtls_ctx_unref), made by h2c_tls_new.
 *  - struct h2c_req: one request (one stream); lives from h2c_request()
 *    returning 0 until its on_done callback returns, which runs exactly once.
 *
 * What a hostile server can send is bounded: frames larger than 16 KiB
 * (our SETTINGS_MAX_FRAME_SIZE) and any other HTTP/2 protocol violation end
 * the connection (nghttp2), a response's header block is limited to
 * H2C_MAX_HEADER_BYTES and H2C_MAX_HEADERS fields (the stream is reset),
 * and body bytes go to the caller as they come (grpcc bounds a message). */
#ifndef CINCH_H2C_H
#define CINCH_H2C_H

#include <stddef.h>
#include <uv.h>

#include "mtls.h"

#define H2C_PING_MS	     30000
#define H2C_IDLE_MS	     60000
#define H2C_MAX_HEADERS	     64
#define H2C_MAX_HEADER_BYTES 16384

struct h2c;
struct h2c_req;

/* A response header or a trailer (":status" is not passed). Borrowed for
 * the call. */
typedef void (*h2c_header_cb)(struct h2c_req *r, const char *name, size_t name_len,
			      const char *value, size_t value_len);
/* Body bytes as they arrive. Return 0, or a negative errno to abort the
 * request (the stream is reset; on_done then gets that errno). */
typedef int (*h2c_data_cb)(struct h2c_req *r, const char *data, size_t len);
/* The end: status 0 (the response ended: see http_code, 0 when the stream
 * ended before its headers) or a negative errno: -ETIMEDOUT, -ECONNREFUSED
 * and other connect errors, -EHOSTUNREACH (name not resolved), -EPROTO (TLS
 * or HTTP/2 failure), -ECONNRESET (stream reset or connection lost),
 * -ECANCELED, or what on_data returned. `err` says more, borrowed. */
typedef void (*h2c_done_cb)(struct h2c_req *r, int status, long http_code, const char *err);

struct h2c_req_opts {
	const char *method;	    /* "POST", "GET" */
	const char *url;	    /* https://host:port/path (port required) */
	const char *const *headers; /* NULL-terminated "name: value", copied */
	const void *body;	    /* copied; NULL for none */
	size_t body_len;
	long timeout_ms;	 /* whole request; 0: none (watch streams) */
	long connect_timeout_ms; /* resolve + connect + TLS; 0: 10 s */
	h2c_header_cb on_header; /* optional */
	h2c_data_cb on_data;	 /* optional: body discarded when NULL */
	h2c_done_cb on_done;	 /* required */
	void *data;		 /* the caller's, see h2c_req_data() */
};

/* *out set on success; -ENOMEM. */
int h2c_new(uv_loop_t *loop, struct h2c **out) __attribute__((warn_unused_result));
/* Cancels every request (each gets on_done(-ECANCELED)), closes every
 * connection and frees `h` once its handles are closed; then `cb` (may be
 * NULL) runs. */
void h2c_close(struct h2c *h, void (*cb)(void *arg), void *arg);

/* The TLS context of h2c's connections, from PEM text (copied): ca_pem
 * (required) the roots the server must chain to; cert_pem (chain, leaf
 * first) and key_pem together or not at all. A mtls client context
 * (MTLS_VERIFY_HOSTNAME, ALPN h2 required, no resumption). -EINVAL
 * (unreadable PEM, a key that does not match), -ENOMEM. */
int h2c_tls_new(const char *ca_pem, const char *cert_pem, const char *key_pem,
		struct mtls_ctx **out) __attribute__((warn_unused_result));

/* Starts a request; borrows `o` and `creds` for the call. 0 (*out set when
 * out is not NULL) and on_done will run exactly once, from the loop; or
 * -EINVAL / -ENOMEM and no callback ever runs. */
int h2c_request(struct h2c *h, const struct h2c_req_opts *o, struct mtls_ctx *creds,
		struct h2c_req **out) __attribute__((warn_unused_result));

/* Stops a request now: its on_done(-ECANCELED) runs before this returns.
 * Not from inside that request's own callbacks (return an errno from
 * on_data instead). */
void h2c_cancel(struct h2c_req *r);

void *h2c_req_data(const struct h2c_req *r);

/* The PING period of connections opened from now on (0: H2C_PING_MS); for
 * tests. */
void h2c_set_ping_ms(struct h2c *h, unsigned ms);

#endif
