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

/* A static English reason for an X509_V_ERR_* code. */
const char *certverify_error_string(int err);

#endif
