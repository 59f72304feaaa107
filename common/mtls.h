/* mtls: the one TLS engine of Cinch (agent and control). BoringSSL, TLS
 * 1.3 only, over memory BIOs: no socket in it, so tests drive it with
 * buffers and the caller's connection code moves the bytes.
 *
 * A mtls_ctx is immutable and reference-counted: connections keep theirs,
 * so new credentials (a renewal, a reload) never change what a live
 * connection uses. It is built from options (struct mtls_opts) that say
 * which roles it plays and how it verifies its peer:
 *
 *   MTLS_VERIFY_SPIFFE    the mesh (the agent, mtls_ctx_new): the peer's
 *                         chain must verify against the bundle and its leaf
 *                         be an X.509-SVID (CA:FALSE, exactly one URI SAN, a
 *                         SPIFFE ID); a client also pins the server's ID to
 *                         the one expected at that address (a valid
 *                         certificate of another workload is refused)
 *   MTLS_VERIFY_CHAIN     the control's gRPC server: a client certificate is
 *                         asked for, and when one is presented it must chain
 *                         to the bundle (peer_optional: a client without one
 *                         may still authenticate with a join token)
 *   MTLS_VERIFY_HOSTNAME  a client dialing the control (agents, cinchctl):
 *                         the server's chain to the bundle, and the name
 *                         dialed (DNS name or IP address) in its SANs
 *   MTLS_VERIFY_NONE      a server that asks for no certificate (the
 *                         injection webhook's HTTPS)
 *
 * Verification runs in BoringSSL's custom-verify callback through
 * certverify (the one chain verifier). ALPN is an option: the protocols in
 * our order of preference, and whether a peer naming none of them fails
 * the handshake (gRPC needs h2) or goes on without ALPN (the mesh, HTTPS).
 *
 * Resumption (the mesh only) uses TLS 1.3 tickets; a client resumes only a
 * session made for the same expected identity under the same credentials,
 * and a resumed server session is refused once the client certificate it
 * carries has expired.
 *
 * A mtls_conn is a pump: feed() ciphertext in, handshake() until done,
 * read()/write() plaintext, take_out() ciphertext for the socket. Errors
 * are -EPROTO with a static reason (for the access log and metrics). */
#ifndef CINCH_MTLS_H
#define CINCH_MTLS_H

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

enum mtls_verify {
	MTLS_VERIFY_SPIFFE = 0,
	MTLS_VERIFY_CHAIN,
	MTLS_VERIFY_HOSTNAME,
	MTLS_VERIFY_NONE,
};

/* Which SSL_CTXs a context holds. */
#define MTLS_ROLE_SERVER 1u
#define MTLS_ROLE_CLIENT 2u

/* The protocol the mesh's agents negotiate between themselves (the
 * agent's verdict.h: VERDICT_ALPN). */
#define MTLS_MESH_ALPN "cinch-deny/1"

struct mtls_opts {
	unsigned roles; /* MTLS_ROLE_* */
	/* Ours: the leaf, its key and the intermediates (may be NULL), all
	 * borrowed. A client-only context may have no certificate (cert and
	 * key NULL). */
	X509 *cert;
	EVP_PKEY *key;
	STACK_OF(X509) * chain;
	/* The trust bundle (borrowed; each root up-ref'd). Required unless
	 * verify is MTLS_VERIFY_NONE. */
	STACK_OF(X509) * roots;
	enum mtls_verify verify;
	/* A server: a client without a certificate is let through (the chain
	 * of one that presents a certificate is still verified). */
	int peer_optional;
	/* ALPN in wire format (each protocol length-prefixed), our order of
	 * preference; NULL: none. A client offers them; a server selects the
	 * first of ours the client offers. alpn_required: a peer naming none
	 * of them fails the handshake, else the connection goes on without. */
	const char *alpn;
	size_t alpn_len;
	int alpn_required;
	/* TLS 1.3 tickets and the client's session cache (see above). */
	int resumption;
};

/* A context from options. 0 and *out, -EINVAL with *why (static), or
 * -ENOMEM. A context holding a certificate and verifying SPIFFE IDs
 * also checks its own leaf is an SVID and its own chain verifies against
 * the bundle (peers would refuse it otherwise). */
int mtls_ctx_new_opts(const struct mtls_opts *o, struct mtls_ctx **out, const char **why)
	__attribute__((warn_unused_result));
/* The same, our certificate (first) and intermediates read from a PEM
 * file and the key from another: o's cert, key and chain are ignored. */
int mtls_ctx_new_pem_files(const struct mtls_opts *o, const char *cert_path,
			   const char *key_path, struct mtls_ctx **out, const char **why)
	__attribute__((warn_unused_result));
/* The mesh context (server and client, SPIFFE, MTLS_MESH_ALPN, resumption)
 * from the workload's certificate chain (leaf first; borrowed, up-ref'd),
 * its key (borrowed, up-ref'd) and the bundle's roots (borrowed). The leaf
 * must match the key and be an SVID. 0 and *out, -EINVAL with *why, or
 * -ENOMEM. */
int mtls_ctx_new(STACK_OF(X509) * chain, EVP_PKEY *key, STACK_OF(X509) * roots,
		 struct mtls_ctx **out, const char **why) __attribute__((warn_unused_result));
/* The same, resumption on or off: off, the server issues no ticket and the
 * client keeps no session, so every handshake is a full one (cinch-agent
 * run --no-resumption, for benchmarks). */
int mtls_ctx_new_mesh(STACK_OF(X509) * chain, EVP_PKEY *key, STACK_OF(X509) * roots,
		      int resumption, struct mtls_ctx **out, const char **why)
	__attribute__((warn_unused_result));
struct mtls_ctx *mtls_ctx_ref(struct mtls_ctx *ctx);
void mtls_ctx_unref(struct mtls_ctx *ctx); /* NULL is a no-op */
/* Our own SPIFFE ID ("" when the certificate is not an SVID or absent). */
const char *mtls_ctx_spiffe_id(const struct mtls_ctx *ctx);
/* The notAfter of our certificate (Unix seconds), 0 if none. */
int64_t mtls_ctx_not_after(const struct mtls_ctx *ctx);

/* A server connection, or a client one that accepts only the server named
 * `expected` (copied): its SPIFFE ID (MTLS_VERIFY_SPIFFE) or the host
 * name or IP address dialed (MTLS_VERIFY_HOSTNAME; also sent as SNI when a
 * name). Each holds a reference to ctx. -EINVAL (no such role, or an
 * expected name missing or too long), -ENOMEM. */
int mtls_conn_new_server(struct mtls_ctx *ctx, struct mtls_conn **out)
	__attribute__((warn_unused_result));
int mtls_conn_new_client(struct mtls_ctx *ctx, const char *expected, struct mtls_conn **out)
	__attribute__((warn_unused_result));
void mtls_conn_free(struct mtls_conn *c);

/* Ciphertext from the socket. 0 or -ENOMEM. */
int mtls_conn_feed(struct mtls_conn *c, const uint8_t *data, size_t len)
	__attribute__((warn_unused_result));
/* >= 0: an enum mtls_hs; -EPROTO with *why. */
int mtls_conn_handshake(struct mtls_conn *c, const char **why) __attribute__((warn_unused_result));
/* After mtls_conn_handshake failed: why, as one of a bounded set of names
 * (static): "no_client_cert", "untrusted_chain", "expired", "invalid_svid",
 * "peer_identity_mismatch", "hostname_mismatch", "alpn_mismatch", or
 * "protocol" (anything else TLS refused). */
const char *mtls_conn_failure_cause(const struct mtls_conn *c);
/* > 0 bytes read; 0 when more ciphertext is needed; -EPIPE at close_notify;
 * -EPROTO on an error. */
int mtls_conn_read(struct mtls_conn *c, uint8_t *buf, size_t len);
/* Encrypts all of it. 0 or -EPROTO. */
int mtls_conn_write(struct mtls_conn *c, const uint8_t *data, size_t len)
	__attribute__((warn_unused_result));
/* Ciphertext for the socket: how many bytes are queued; moving up to len
 * of them out; or, without a copy, where they lie (*data, valid until the
 * next call on c) and dropping the first n once the socket took them. A
 * queue holds memory only while it holds bytes (a quiet connection none). */
size_t mtls_conn_pending_out(const struct mtls_conn *c);
size_t mtls_conn_take_out(struct mtls_conn *c, uint8_t *buf, size_t len);
size_t mtls_conn_peek_out(const struct mtls_conn *c, const uint8_t **data);
void mtls_conn_consume_out(struct mtls_conn *c, size_t n);
/* Queues close_notify (after the handshake). */
void mtls_conn_shutdown(struct mtls_conn *c);

/* After the handshake: the peer's verified SPIFFE ID ("" unless
 * MTLS_VERIFY_SPIFFE), the protocol and cipher names, and whether the
 * session was resumed. */
const char *mtls_conn_peer_id(const struct mtls_conn *c);
const char *mtls_conn_version(const struct mtls_conn *c);
const char *mtls_conn_cipher(const struct mtls_conn *c);
int mtls_conn_resumed(const struct mtls_conn *c);
/* After the handshake: 1 when both ends are agents (they negotiated
 * MTLS_MESH_ALPN), else 0. */
int mtls_conn_agent_peer(const struct mtls_conn *c);
/* After the handshake: 1 when ALPN selected `proto` (e.g. "h2"), else 0. */
int mtls_conn_alpn_is(const struct mtls_conn *c, const char *proto);
/* The peer's verified leaf and the chain it sent (borrowed, valid while c
 * lives; NULL when it presented none). */
X509 *mtls_conn_get0_peer(struct mtls_conn *c);
STACK_OF(X509) * mtls_conn_get0_peer_chain(const struct mtls_conn *c);

#endif
