/* tls: the server side TLS engine of the gRPC API, BoringSSL over memory
 * BIOs and free of libuv, so tests drive it with plain buffers.
 *
 * The context (struct tls_ctx) is TLS 1.3 only, offers ALPN "h2" and
 * nothing else (a client without h2 fails the handshake: gRPC needs HTTP/2),
 * presents the control's server certificate and REQUESTS a client
 * certificate without requiring one: a client that presents one must chain
 * to the trust bundle or the handshake fails; a client without one may
 * still authenticate with a join token inside the request. Immutable once
 * built; connections take a reference, so a new server certificate can be
 * published later without touching live connections.
 *
 * A connection (struct tls_conn) is a pump:
 *   tls_conn_feed()      ciphertext from the socket in
 *   tls_conn_handshake() TLS_HS_WANT_READ until done (TLS_HS_DONE)
 *   tls_conn_read()      plaintext out, tls_conn_write() plaintext in
 *   tls_conn_take_out()  ciphertext for the socket
 * Errors are negative errno (-EPROTO for anything TLS refused).
 *
 * The HTTPS context (tls_ctx_new_https_files or tls_ctx_new_https, for the
 * injection webhook) is the same engine with a certificate and key read
 * from PEM files or handed over in memory,
 * ALPN "h2" or "http/1.1" (a client naming neither gets HTTP/1.1) and no
 * client certificate asked for. */
#ifndef CINCH_CONTROL_TLS_H
#define CINCH_CONTROL_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

enum tls_hs {
	TLS_HS_WANT_READ = 0,
	TLS_HS_DONE,
};

struct tls_ctx;
struct tls_conn;

/* Builds a server context. Borrows cert, key, chain (intermediates, may be
 * NULL) and takes a reference to bundle. 0 and *out (new; tls_ctx_unref). */
int tls_ctx_new(X509 *cert, EVP_PKEY *key, STACK_OF(X509) * chain, X509_STORE *bundle,
		struct tls_ctx **out) __attribute__((warn_unused_result));
/* The HTTPS context from a PEM certificate file (our certificate first,
 * then its intermediates) and a PEM key file. 0 and *out (new), or
 * -EINVAL/-ENOMEM with a static reason in *why. */
int tls_ctx_new_https_files(const char *cert_path, const char *key_path, struct tls_ctx **out,
			    const char **why) __attribute__((warn_unused_result));
/* The same from a certificate and key in memory (the webhook certificate
 * cinch-control issues itself): borrows all three; `chain` (intermediates)
 * may be NULL. 0 and *out (new), or -EINVAL/-ENOMEM. */
int tls_ctx_new_https(X509 *cert, EVP_PKEY *key, STACK_OF(X509) * chain, struct tls_ctx **out)
	__attribute__((warn_unused_result));
/* The notAfter of the context's certificate (Unix seconds), 0 if unknown. */
int64_t tls_ctx_not_after(const struct tls_ctx *ctx);
void tls_ctx_ref(struct tls_ctx *ctx);
void tls_ctx_unref(struct tls_ctx *ctx);

/* A new server connection holding a reference to ctx. */
int tls_conn_new(struct tls_ctx *ctx, struct tls_conn **out) __attribute__((warn_unused_result));
void tls_conn_free(struct tls_conn *c);

int tls_conn_feed(struct tls_conn *c, const uint8_t *data, size_t len)
	__attribute__((warn_unused_result));
/* >= 0 an enum tls_hs, or -EPROTO (with a static reason in *why). */
int tls_conn_handshake(struct tls_conn *c, const char **why) __attribute__((warn_unused_result));
/* Bytes read (> 0), 0 when more ciphertext is needed, -EPIPE on close_notify,
 * -EPROTO on error. */
int tls_conn_read(struct tls_conn *c, uint8_t *buf, size_t len);
/* Encrypts all of data into the output buffer. 0 or -EPROTO. */
int tls_conn_write(struct tls_conn *c, const uint8_t *data, size_t len)
	__attribute__((warn_unused_result));
/* Pending ciphertext: moves up to len bytes into buf, returns the count. */
size_t tls_conn_take_out(struct tls_conn *c, uint8_t *buf, size_t len);
size_t tls_conn_pending_out(const struct tls_conn *c);
/* Gives back the memory the idle connection's buffers grew to (a memory
 * BIO keeps its largest size): for a connection with nothing pending. */
void tls_conn_trim(struct tls_conn *c);
/* Queues a close_notify (if the handshake finished). */
void tls_conn_shutdown(struct tls_conn *c);

/* The peer's verified leaf and the intermediates it sent (borrowed, valid
 * while c lives; NULL if none). */
X509 *tls_conn_get0_peer(struct tls_conn *c);
STACK_OF(X509) * tls_conn_get0_peer_chain(const struct tls_conn *c);
/* 1 when the handshake chose ALPN "h2", else 0 (HTTP/1.1). */
int tls_conn_is_h2(const struct tls_conn *c);

#endif
