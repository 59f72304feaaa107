/* webhook: the HTTPS server of the Kubernetes injection webhook, the thin
 * shell around inject.h. The kube-apiserver POSTs an admission.k8s.io/v1
 * AdmissionReview to https://<service>.<namespace>.svc:443/inject (the
 * Service maps 443 to our port, 15017 by default) and expects an
 * AdmissionReview back with HTTP 200.
 *
 * Transport: api/tlsserver.h (TCP, TLS 1.3 with mtls.h's context of
 * webhook_https_opts: certificate and key from PEM files, reloaded when they change
 * on disk, e.g. a cert-manager Secret mount, or the certificate the
 * control issues itself (webhookcert.h) handed over in memory; connections
 * keep the context they started with), then
 * HTTP/2 when ALPN chose "h2" (what the API server uses) or HTTP/1.1
 * otherwise (one request per connection, answered with Connection: close).
 *
 * Answers (the API server treats anything but 200 as a failed call and
 * applies the webhook's failurePolicy, so every refusal is a plain HTTP
 * error with a one-line text/plain reason):
 *   200  the AdmissionReview from inject_review (patched, left alone with
 *        its reason, or refused with allowed:false and a message)
 *   400  the body is not an admission.k8s.io/v1 AdmissionReview request
 *        (malformed JSON, another kind or apiVersion, no uid), or a
 *        malformed HTTP request
 *   404  a path other than /inject (a query string such as ?timeout=10s,
 *        which the API server appends, is ignored)
 *   405  a method other than POST
 *   411  HTTP/1.1 without Content-Length; 501 for chunked bodies
 *   408  an HTTP/2 request whose body did not arrive whole within request_ms
 *   413  a body larger than max_body (refused as soon as it is declared or
 *        seen to be larger, before it is read)
 *   415  a Content-Type other than application/json
 *   431  a request head larger than WEBHOOK_MAX_HEAD
 *   503  the server-wide buffer budget (WEBHOOK_BUDGET) is spent
 *
 * Limits: max_conns open connections (more are closed on accept), at most
 * max_per_source of them from one address, max_streams concurrent HTTP/2
 * streams per connection, request_ms for the TLS handshake and then again
 * for a request to arrive whole (the HTTP/1.1 connection closes; an HTTP/2
 * stream is answered 408 and its bytes freed), idle_ms for an HTTP/2
 * connection without bytes received. Request bytes are held in buffers
 * that grow as the bytes arrive, never on the declared length, drawing on
 * one server-wide budget (WEBHOOK_BUDGET, api/bytebudget.h): a head
 * declaring 4 MiB costs what was sent, and only until request_ms. A
 * connection holds at most max_body in all (an HTTP/2 stream that would
 * go beyond it is answered 503), so one address holds at most
 * max_per_source x max_body: with the defaults half the budget, and the
 * API server's reviews find the other half.
 *
 * The server owns its connections; webhook_stop() closes everything and
 * the memory goes in close callbacks (run the loop afterwards). */
#ifndef CINCH_WEBHOOK_H
#define CINCH_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "inject.h"
#include "mtls.h"

#define WEBHOOK_DEFAULT_PORT	  15017
#define WEBHOOK_PATH		  "/inject"
#define WEBHOOK_MAX_BODY_DEFAULT  (4u << 20)
#define WEBHOOK_MAX_CONNS_DEFAULT 256
/* One address holds at most 8 x max_body (32 MiB), half the budget. */
#define WEBHOOK_MAX_PER_SOURCE_DEFAULT 8
#define WEBHOOK_MAX_STREAMS_DEFAULT    32
#define WEBHOOK_REQUEST_MS_DEFAULT     10000
#define WEBHOOK_IDLE_MS_DEFAULT	       60000
#define WEBHOOK_MAX_HEAD	       16384
/* Request bodies held at once by the whole server (a stream or request
 * that would go beyond it is answered 503). */
#define WEBHOOK_BUDGET (64u << 20)

struct webhook_config {
	const char *host;		  /* numeric address to listen on */
	int port;			  /* 0: any free port */
	const char *cert_path, *key_path; /* PEM files, watched for changes, or */
	struct mtls_ctx *tls;		  /* a context in memory (cert_path NULL;
					   * webhook_set_tls swaps it) */
	size_t max_body;
	unsigned max_conns, max_per_source, max_streams, request_ms, idle_ms;
	const struct inject_config *inject; /* borrowed, must outlive the server */
};

struct webhook;

/* Loads the certificate (or takes a reference to cfg->tls) and starts
 * listening. Copies cfg (paths included). 0, *out and *port (the bound port), or a negative errno with
 * a static reason in *why. */
int webhook_start(uv_loop_t *loop, const struct webhook_config *cfg, struct webhook **out,
		  int *port, const char **why) __attribute__((warn_unused_result));
/* New connections get `tls` (a reference is taken), open ones keep
 * theirs: the issued certificate's renewal. */
void webhook_set_tls(struct webhook *w, struct mtls_ctx *tls);
/* The TLS of the webhook (mtls.h): a server asking for no client
 * certificate, ALPN "h2" then "http/1.1", and a client naming neither
 * speaks HTTP/1.1 (as curl and openssl s_client without -alpn do). No
 * certificate in it: the caller's (webhook_tls_new, or PEM files). */
extern const struct mtls_opts webhook_https_opts;
/* A context of webhook_https_opts for a certificate, its key and
 * intermediates (may be NULL), all borrowed. 0 and *out, or -EINVAL/-ENOMEM. */
int webhook_tls_new(X509 *cert, EVP_PKEY *key, STACK_OF(X509) * chain, struct mtls_ctx **out)
	__attribute__((warn_unused_result));
/* notAfter (Unix seconds) of the certificate new connections get. */
int64_t webhook_cert_not_after(const struct webhook *w);
/* Closes the listener, the file watch and every connection. NULL: no-op. */
void webhook_stop(struct webhook *w);
/* Connections currently open (for logs and tests). */
unsigned webhook_conns(const struct webhook *w);
/* Requests answered, and those answered with another status than 200
 * (w may be NULL: none). */
void webhook_counts(const struct webhook *w, uint64_t *requests, uint64_t *errors);

/* The answer to one HTTP request, whatever the HTTP version: pure, so it
 * is tested and fuzzed without sockets. `content_type` may be NULL (not
 * sent). *status is the HTTP status; *body (new, free()) is the response
 * body of *len bytes, of type *ctype (static). -ENOMEM only. */
int webhook_answer(const struct inject_config *inject, const char *method, const char *path,
		   const char *content_type, const char *body, size_t len, int *status,
		   const char **ctype, char **out, size_t *out_len)
	__attribute__((warn_unused_result));

/* Parses an HTTP/1.1 request head in buf[0..len). Returns 0 when the head
 * is complete: *head_len is its size (up to and including the empty
 * line), method (<16 bytes) and path (<2048 bytes) are copied, *clen is
 * Content-Length (-1 when absent), *ctype the Content-Type (copied, ""
 * when absent), *expect_continue set for "Expect: 100-continue".
 * -EAGAIN: more bytes are needed. Otherwise an HTTP status to answer
 * (positive): 400 malformed, 431 head too large, 501 Transfer-Encoding. */
struct webhook_h1_head {
	size_t head_len;
	char method[16];
	char path[2048];
	char ctype[128];
	long long clen;
	int expect_continue;
};
int webhook_h1_parse(const char *buf, size_t len, struct webhook_h1_head *h);

#endif
