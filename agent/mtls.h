/* mtls: the only TLS code of the agent. BoringSSL, TLS 1.3 only, over
 * memory BIOs (free of libuv, so tests drive it with buffers).
 *
 * A mtls_ctx is built from one workload certificate (chain and key) and the
 * trust bundle; it is immutable and reference-counted: connections keep
 * theirs, so new credentials (a renewal, a reload) never change what a live
 * connection uses. It holds a server and a client SSL_CTX:
 *
 *   server (inbound)   requires a client certificate; the peer's chain must
 *                      verify against the bundle and its leaf be an X.509-SVID
 *                      (CA:FALSE, exactly one URI SAN, a SPIFFE ID): the caller's
 *                      identity is that ID
 *   client (outbound)  the same checks on the server, plus: its SPIFFE ID is
 *                      exactly the identity expected at that address (a valid
 *                      certificate of another workload is refused)
 *
 * Verification runs in BoringSSL's custom-verify callback. Resumption uses
 * TLS 1.3 tickets; a client resumes only a session made for the same
 * expected identity under the same credentials, and a resumed server
 * session is refused once the client certificate it carries has expired.
 *
 * A mtls_conn is a pump: feed() ciphertext in, handshake() until done,
 * read()/write() plaintext, take_out() ciphertext for the socket. Errors
 * are -EPROTO with a static reason (for the access log and metrics). */
#ifndef CINCH_AGENT_MTLS_H
#define CINCH_AGENT_MTLS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/base.h>
#include <openssl/x509.h>

struct mtls_ctx;
struct mtls_conn;

enum mtls_hs {
	MTLS_HS_WANT_READ = 0,
	MTLS_HS_DONE,
};

/* From the workload's certificate chain (leaf first; borrowed, up-ref'd),
 * its key (borrowed, up-ref'd) and the bundle's roots (borrowed). The leaf
 * must match the key and be an SVID. 0 and *out, -EINVAL with *why, or
 * -ENOMEM. */
int mtls_ctx_new(STACK_OF(X509) * chain, EVP_PKEY *key, STACK_OF(X509) * roots,
		 struct mtls_ctx **out, const char **why) __attribute__((warn_unused_result));
struct mtls_ctx *mtls_ctx_ref(struct mtls_ctx *ctx);
void mtls_ctx_unref(struct mtls_ctx *ctx); /* NULL is a no-op */
/* No resumption from now on: the server side issues no ticket, the client
 * side keeps no session (for benchmarks of full handshakes). */
void mtls_ctx_no_resumption(struct mtls_ctx *ctx);
/* This workload's own SPIFFE ID. */
const char *mtls_ctx_spiffe_id(const struct mtls_ctx *ctx);

/* A server connection, or a client one that accepts only `expected_id`
 * (copied). Each holds a reference to ctx. -ENOMEM. */
int mtls_conn_new_server(struct mtls_ctx *ctx, struct mtls_conn **out)
	__attribute__((warn_unused_result));
int mtls_conn_new_client(struct mtls_ctx *ctx, const char *expected_id, struct mtls_conn **out)
	__attribute__((warn_unused_result));
void mtls_conn_free(struct mtls_conn *c);

int mtls_conn_feed(struct mtls_conn *c, const uint8_t *data, size_t len)
	__attribute__((warn_unused_result));
/* >= 0: an enum mtls_hs; -EPROTO with *why. */
int mtls_conn_handshake(struct mtls_conn *c, const char **why) __attribute__((warn_unused_result));
/* After mtls_conn_handshake failed: why, as one of a bounded set of names
 * (static): "no_client_cert", "untrusted_chain", "expired", "invalid_svid",
 * "peer_identity_mismatch", or "protocol" (anything else TLS refused). */
const char *mtls_conn_failure_cause(const struct mtls_conn *c);
/* > 0 bytes read; 0 when more ciphertext is needed; -EPIPE at close_notify;
 * -EPROTO on an error. */
int mtls_conn_read(struct mtls_conn *c, uint8_t *buf, size_t len);
/* Encrypts all of it. 0 or -EPROTO. */
int mtls_conn_write(struct mtls_conn *c, const uint8_t *data, size_t len)
	__attribute__((warn_unused_result));
size_t mtls_conn_pending_out(const struct mtls_conn *c);
size_t mtls_conn_take_out(struct mtls_conn *c, uint8_t *buf, size_t len);
/* Gives back the buffers of a quiet connection (see tlsbio_trim). */
void mtls_conn_trim(struct mtls_conn *c);
/* Queues close_notify (after the handshake). */
void mtls_conn_shutdown(struct mtls_conn *c);

/* After the handshake: the peer's verified SPIFFE ID, the protocol and
 * cipher names, and whether the session was resumed. */
const char *mtls_conn_peer_id(const struct mtls_conn *c);
const char *mtls_conn_version(const struct mtls_conn *c);
const char *mtls_conn_cipher(const struct mtls_conn *c);
int mtls_conn_resumed(const struct mtls_conn *c);
/* After the handshake: 1 when both ends are agents (they negotiated
 * VERDICT_ALPN, verdict.h), else 0. */
int mtls_conn_agent_peer(const struct mtls_conn *c);

#endif
