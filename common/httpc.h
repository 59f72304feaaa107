/* httpc: an HTTP/1.1 and HTTP/2 client on a libuv loop, built on libcurl's
 * multi-socket interface: no second thread, no blocking call on the loop.
 * It carries the agent's gRPC calls to cinch-control (HTTP/2, trailers)
 * and the control plane's calls to the Kubernetes API (TokenReview, watch
 * streams).
 *
 * Objects and lifetimes:
 *  - struct httpc: one per loop; owns the curl multi handle, one uv_timer
 *    and a uv_poll per socket curl watches. Freed by httpc_close() (its
 *    callback runs once every handle is closed).
 *  - struct httpc_creds: TLS material (trust anchors, optional client
 *    certificate and key), immutable and reference-counted. libcurl's
 *    GnuTLS backend reads these only from files, so each PEM is put in a
 *    sealed memfd and given to curl as /proc/self/fd/N: the private key
 *    stays in this process's memory and never touches a filesystem.
 *    Requests made with new creds (after a rotation) open new connections;
 *    live ones keep theirs. A request reuses only a connection made with
 *    the same creds object (a connection holds a reference to its creds,
 *    so their file names stay theirs: httpc.c).
 *  - struct httpc_req: one request; lives from httpc_request() returning 0
 *    until its on_done callback returns, which happens exactly once.
 *
 * Only https is allowed (CURLOPT_PROTOCOLS_STR), which also keeps curl's
 * ssh backends and their OpenSSL libcrypto out of play (third_party/). */
#ifndef CINCH_HTTPC_H
#define CINCH_HTTPC_H

#include <stddef.h>
#include <stdio.h>
#include <uv.h>

struct httpc;
struct httpc_creds;
struct httpc_req;

/* A response header or, after the body, an HTTP/2 trailer (grpc-status).
 * name and value are borrowed for the call, not NUL-safe beyond `*_len`. */
typedef void (*httpc_header_cb)(struct httpc_req *r, const char *name, size_t name_len,
				const char *value, size_t value_len);
/* Body bytes as they arrive. Return 0, or a negative errno to abort the
 * request (on_done then gets that errno). */
typedef int (*httpc_data_cb)(struct httpc_req *r, const char *data, size_t len);
/* The end: status 0 (a response arrived: see http_code) or a negative
 * errno (-ETIMEDOUT, -ECONNREFUSED, -EPROTO for TLS failures, -ECANCELED,
 * -EIO, or what on_data returned); `err` says more, borrowed. */
typedef void (*httpc_done_cb)(struct httpc_req *r, int status, long http_code, const char *err);

struct httpc_req_opts {
	const char *method; /* "GET", "POST", ... */
	const char *url;    /* https:// only */
	const char *const *headers; /* NULL-terminated "Name: value" strings, copied */
	const void *body;   /* copied; NULL for none */
	size_t body_len;
	long timeout_ms;         /* whole request; 0: none (watch streams) */
	long connect_timeout_ms; /* 0: 10 s */
	long low_speed_s;        /* abort when under 1 B/s for this long; 0: off */
	int http2;               /* require HTTP/2 (ALPN h2), for gRPC */
	httpc_header_cb on_header; /* optional */
	httpc_data_cb on_data;     /* optional: body discarded when NULL */
	httpc_done_cb on_done;     /* required */
	void *data;                /* the caller's, see httpc_req_data() */
};

/* *out set on success; -ENOMEM, -EIO (curl failed to initialise). */
int httpc_new(uv_loop_t *loop, struct httpc **out) __attribute__((warn_unused_result));

/* Cancels every request (each gets on_done(-ECANCELED)), then closes the
 * loop handles and frees `h`; `cb` (may be NULL) runs after that. */
void httpc_close(struct httpc *h, void (*cb)(void *arg), void *arg);

/* New credentials from PEM text (copied). ca_pem is required; cert_pem and
 * key_pem go together or not at all. -EINVAL, -ENOMEM, or -errno of
 * memfd_create. *out set on success with one reference. */
int httpc_creds_new(const char *ca_pem, const char *cert_pem, const char *key_pem,
		    struct httpc_creds **out) __attribute__((warn_unused_result));
struct httpc_creds *httpc_creds_ref(struct httpc_creds *c);
void httpc_creds_unref(struct httpc_creds *c); /* NULL is a no-op */

/* Starts a request. Borrows `o` and `creds` for the call only (the request
 * keeps its own copies and reference). On success (0, *out set if out is
 * not NULL) on_done will run exactly once, from the loop. On failure
 * (-EINVAL, -ENOMEM, -EIO) no callback ever runs. */
int httpc_request(struct httpc *h, const struct httpc_req_opts *o, struct httpc_creds *creds,
		  struct httpc_req **out) __attribute__((warn_unused_result));

/* Stops a request now; its on_done(-ECANCELED) runs before this returns.
 * Not from inside that request's own callbacks: return an errno from
 * on_data instead. */
void httpc_cancel(struct httpc_req *r);

void *httpc_req_data(const struct httpc_req *r);

/* The TLS backend libcurl was built with, e.g. "GnuTLS/3.7.9"; borrowed. */
const char *httpc_curl_tls(void);
/* The --version line of libcurl, after version_print's. */
void httpc_version_print(FILE *out);

#endif
