/* testpki: certificates made at test time for unit tests (never on disk
 * unless a test writes them). A root CA and leaves signed by it, with any
 * URI SANs a test wants, including invalid ones for negative cases. All
 * keys are ECDSA P-256. Objects returned are new references the caller
 * frees (X509_free, EVP_PKEY_free); NULL on failure. */
#ifndef CINCH_TESTPKI_H
#define CINCH_TESTPKI_H

#include <stddef.h>
#include <openssl/base.h>

EVP_PKEY *testpki_key(void);

/* A self-signed CA:TRUE root valid from now-60 s for `days`. */
X509 *testpki_root(EVP_PKEY *key, const char *cn, int days);

/* A CA:FALSE leaf for `leaf_key`, signed by (ca, ca_key), carrying the
 * given URI SANs (n may be 0: no SAN extension at all), valid from
 * now+not_before_s for lifetime_s seconds. */
X509 *testpki_leaf(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *leaf_key, const char *const *uris,
		   size_t n, long not_before_s, long lifetime_s);

#endif
