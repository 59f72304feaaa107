/* certverify: the one place Cinch verifies a certificate chain against a
 * set of trusted roots (BoringSSL's X509_verify_cert). The TLS engine
 * (mtls), the agent's certificate source, the CA and cinchctl all verify
 * through it, so what "verifies" means (which roots, which purpose, which
 * time) is decided here and named by options, never re-built at a call site.
 *
 * A store (certverify_store_new) holds the roots; it is immutable once
 * built and may be shared (X509_STORE_up_ref). certverify() checks one
 * leaf with the untrusted certificates the peer sent (intermediates; the
 * leaf may be among them) and returns the X509_V_ERR_* code on refusal, so
 * the caller can tell an expired certificate from an unknown issuer. */
#ifndef CINCH_CERTVERIFY_H
#define CINCH_CERTVERIFY_H

#include <stdint.h>

#include <openssl/x509.h>

struct certverify_opts {
	/* X509_PURPOSE_SSL_CLIENT, X509_PURPOSE_SSL_SERVER, or 0: any use
	 * (the extended key usage is then not looked at). */
	int purpose;
	/* The time to verify at (Unix seconds); 0: now. */
	int64_t at;
	/* 1: an expired or not yet valid certificate does not fail (a chain
	 * checked for its shape, whose times are someone else's matter). */
	int ignore_time;
};

/* A new store of `roots` (each up-ref'd; the stack is borrowed). NULL when
 * out of memory. An empty or NULL stack gives a store that trusts nothing. */
X509_STORE *certverify_store_new(STACK_OF(X509) * roots);

/* Verifies `leaf` up to a root of `store` through `untrusted` (may be
 * NULL). o NULL: the defaults (any purpose, now, times checked). 0; or
 * -EINVAL with *err the X509_V_ERR_* code (certverify_error_string names
 * it); or -ENOMEM. err may be NULL. Clears BoringSSL's error queue. */
int certverify(X509_STORE *store, X509 *leaf, STACK_OF(X509) * untrusted,
	       const struct certverify_opts *o, int *err) __attribute__((warn_unused_result));

/* The same against a stack of roots (a store built for this one call). */
int certverify_roots(STACK_OF(X509) * roots, X509 *leaf, STACK_OF(X509) * untrusted,
		     const struct certverify_opts *o, int *err) __attribute__((warn_unused_result));

/* A memo of the chains that verified against one store (a TLS context's
 * trust bundle), so that a peer presenting the same chain again is not
 * verified again: on this machine X509_verify_cert (its ECDSA signature
 * check) is about 40 % of the CPU of a full mutual handshake, both sides
 * (docs/benchmarks.md), and a mesh's peers present the same SVID for hours.
 *
 * What X509_verify_cert answers depends on the chain's bytes, the store,
 * the purpose and the time, and nothing else here (no CRLs, no flags): an
 * entry is keyed by a SHA-256 over the purpose and the DER of the leaf and
 * of each untrusted certificate in order, the memo holds its one store
 * (the caller's reference is not needed after certverify_memo_new), and an
 * entry keeps the window in which every certificate of the verified path
 * is valid. A chain not in the memo, or checked outside its window, is
 * verified in full; a refusal is never remembered (its X509_V_ERR code is
 * the verifier's). What the memo does not replace: the peer's proof that it
 * holds the leaf's key (TLS checks its CertificateVerify signature on every
 * handshake) and the checks of the leaf's identity after verification.
 *
 * A fixed table of CERTVERIFY_MEMO_SLOTS entries; bits of the key pick the
 * slot and a newcomer replaces what is there: memory does not grow with
 * what peers send. Thread safe (the agent's workers share a TLS context):
 * the table is behind a mutex, never held while verifying. */
#define CERTVERIFY_MEMO_SLOTS 64

struct certverify_memo;

/* A new empty memo over `store` (up-ref'd; NULL: a store that trusts
 * nothing). NULL when out of memory. */
struct certverify_memo *certverify_memo_new(X509_STORE *store);
void certverify_memo_free(struct certverify_memo *m);

/* certverify() against the memo's store, answered from the memo when the
 * same chain verified for the same purpose and o's time (or now) is in its
 * window. o->ignore_time: verified in full, never remembered. */
int certverify_memo_verify(struct certverify_memo *m, X509 *leaf, STACK_OF(X509) * untrusted,
			   const struct certverify_opts *o, int *err)
	__attribute__((warn_unused_result));

/* How many calls the memo answered, and how many it verified in full. */
void certverify_memo_counts(struct certverify_memo *m, uint64_t *hits, uint64_t *misses);

/* A static English reason for an X509_V_ERR_* code. */
const char *certverify_error_string(int err);

#endif
