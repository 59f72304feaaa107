/* testpki: certificates made at test time for unit tests (never on disk
 * unless a test writes them). A root CA and leaves signed by it, with any
 * URI SANs a test wants, including invalid ones for negative cases. All
 * keys are ECDSA P-256. Objects returned are new references the caller
 * frees (X509_free, EVP_PKEY_free); NULL on failure. */
#ifndef CINCH_TESTPKI_H
#define CINCH_TESTPKI_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/base.h>

EVP_PKEY *testpki_key(void);

/* A self-signed CA:TRUE root valid from now-60 s for `days`. */
X509 *testpki_root(EVP_PKEY *key, const char *cn, int days);

/* A CA:FALSE leaf for `leaf_key`, signed by (ca, ca_key), carrying the
 * given SANs (n may be 0: no SAN extension at all), valid from
 * now+not_before_s for lifetime_s seconds. A SAN written "DNS:name" or
 * "IP:addr" is of that type; any other string is a URI. */
X509 *testpki_leaf(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *leaf_key, const char *const *uris,
		   size_t n, long not_before_s, long lifetime_s);

/* A CA:TRUE intermediate for `key`, signed by (ca, ca_key), valid a day. */
X509 *testpki_intermediate(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *key, const char *cn);

/* Replaces cert's extended key usage with `eku` (e.g. "serverAuth") and
 * signs it again with (ca, ca_key), before anything reads it (BoringSSL
 * caches a certificate's decoded extensions). 0 or -1. */
int testpki_set_eku(X509 *cert, X509 *ca, EVP_PKEY *ca_key, const char *eku);

/* PEM text of a certificate or of a private key (PKCS#8), new; free(). */
char *testpki_cert_pem(X509 *cert);
char *testpki_key_pem(EVP_PKEY *key);

/* A DER PKCS#10 request for `key` (subject CN=test, no extensions), new
 * (OPENSSL_free); *len its size. NULL on failure. */
uint8_t *testpki_csr(EVP_PKEY *key, size_t *len);

/* Writes PEM text to dir/name; 0 or -1. */
int testpki_write(const char *dir, const char *name, const char *pem);

#endif
