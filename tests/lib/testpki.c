/* testpki: see testpki.h. Test code, but built like production code: every
 * BoringSSL failure returns NULL rather than a half-made certificate. */
#include "testpki.h"

#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/obj.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

EVP_PKEY *testpki_key(void)
{
	EVP_PKEY *pkey = EVP_PKEY_new();
	EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);

	if (!pkey || !ec || !EC_KEY_generate_key(ec) || !EVP_PKEY_assign_EC_KEY(pkey, ec)) {
		EC_KEY_free(ec);
		EVP_PKEY_free(pkey);
		return NULL;
	}
	return pkey;
}

static int testpki_add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
	int ok = ext && X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok;
}

static X509 *testpki_cert(EVP_PKEY *subject_key, const char *cn, long not_before_s, long lifetime_s)
{
	X509 *cert = X509_new();
	uint8_t serial[8];

	RAND_bytes(serial, sizeof(serial));
	serial[0] &= 0x7f;
	BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
	if (!cert || !bn || !X509_set_version(cert, X509_VERSION_3) ||
	    !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) ||
	    !X509_gmtime_adj(X509_getm_notBefore(cert), not_before_s) ||
	    !X509_gmtime_adj(X509_getm_notAfter(cert), not_before_s + lifetime_s) ||
	    !X509_set_pubkey(cert, subject_key))
		goto err;
	if (cn && !X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_UTF8,
					      (const uint8_t *)cn, -1, -1, 0))
		goto err;
	BN_free(bn);
	return cert;
err:
	BN_free(bn);
	X509_free(cert);
	return NULL;
}

X509 *testpki_root(EVP_PKEY *key, const char *cn, int days)
{
	X509 *cert = testpki_cert(key, cn, -60, (long)days * 86400);

	if (!cert || !X509_set_issuer_name(cert, X509_get_subject_name(cert)) ||
	    !testpki_add_ext(cert, cert, NID_basic_constraints, "critical,CA:TRUE") ||
	    !testpki_add_ext(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign") ||
	    !testpki_add_ext(cert, cert, NID_subject_key_identifier, "hash") ||
	    !X509_sign(cert, key, EVP_sha256())) {
		X509_free(cert);
		return NULL;
	}
	return cert;
}

/* One SAN: "DNS:x", "IP:x", or else a URI. */
static GENERAL_NAME *testpki_san(const char *v)
{
	GENERAL_NAME *gn = GENERAL_NAME_new();
	if (!gn)
		return NULL;
	if (strncmp(v, "IP:", 3) == 0) {
		ASN1_OCTET_STRING *ip = a2i_IPADDRESS(v + 3);
		if (!ip)
			goto err;
		GENERAL_NAME_set0_value(gn, GEN_IPADD, ip);
		return gn;
	}
	int dns = strncmp(v, "DNS:", 4) == 0;
	ASN1_IA5STRING *s = ASN1_IA5STRING_new();
	if (!s || !ASN1_STRING_set(s, dns ? v + 4 : v, -1)) {
		ASN1_IA5STRING_free(s);
		goto err;
	}
	GENERAL_NAME_set0_value(gn, dns ? GEN_DNS : GEN_URI, s);
	return gn;
err:
	GENERAL_NAME_free(gn);
	return NULL;
}

X509 *testpki_intermediate(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *key, const char *cn)
{
	X509 *cert = testpki_cert(key, cn, -60, 86400);

	if (!cert || !X509_set_issuer_name(cert, X509_get_subject_name(ca)) ||
	    !testpki_add_ext(cert, ca, NID_basic_constraints, "critical,CA:TRUE") ||
	    !testpki_add_ext(cert, ca, NID_key_usage, "critical,keyCertSign,cRLSign") ||
	    !testpki_add_ext(cert, cert, NID_subject_key_identifier, "hash") ||
	    !X509_sign(cert, ca_key, EVP_sha256())) {
		X509_free(cert);
		return NULL;
	}
	return cert;
}

int testpki_set_eku(X509 *cert, X509 *ca, EVP_PKEY *ca_key, const char *eku)
{
	int at = X509_get_ext_by_NID(cert, NID_ext_key_usage, -1);

	if (at >= 0)
		X509_EXTENSION_free(X509_delete_ext(cert, at));
	return testpki_add_ext(cert, ca, NID_ext_key_usage, eku) &&
			       X509_sign(cert, ca_key, EVP_sha256())
		       ? 0
		       : -1;
}

X509 *testpki_leaf(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *leaf_key, const char *const *uris,
		   size_t n, long not_before_s, long lifetime_s)
{
	X509 *cert = testpki_cert(leaf_key, NULL, not_before_s, lifetime_s);
	GENERAL_NAMES *names = GENERAL_NAMES_new();

	if (!cert || !names || !X509_set_issuer_name(cert, X509_get_subject_name(ca)) ||
	    !testpki_add_ext(cert, ca, NID_basic_constraints, "critical,CA:FALSE") ||
	    !testpki_add_ext(cert, ca, NID_key_usage, "critical,digitalSignature") ||
	    !testpki_add_ext(cert, ca, NID_ext_key_usage, "serverAuth,clientAuth"))
		goto err;
	for (size_t i = 0; i < n; i++) {
		GENERAL_NAME *gn = testpki_san(uris[i]);
		if (!gn)
			goto err;
		if (!sk_GENERAL_NAME_push(names, gn)) {
			GENERAL_NAME_free(gn);
			goto err;
		}
	}
	if (n && !X509_add1_ext_i2d(cert, NID_subject_alt_name, names, 1, X509V3_ADD_DEFAULT))
		goto err;
	if (!X509_sign(cert, ca_key, EVP_sha256()))
		goto err;
	GENERAL_NAMES_free(names);
	return cert;
err:
	GENERAL_NAMES_free(names);
	X509_free(cert);
	return NULL;
}

/* Drains a memory BIO into a new NUL-terminated string. */
static char *testpki_bio_string(BIO *bio, int ok)
{
	const uint8_t *data;
	size_t len;
	char *s = NULL;

	if (ok && BIO_mem_contents(bio, &data, &len) && (s = malloc(len + 1))) {
		memcpy(s, data, len);
		s[len] = '\0';
	}
	BIO_free(bio);
	return s;
}

char *testpki_cert_pem(X509 *cert)
{
	BIO *bio = BIO_new(BIO_s_mem());
	return bio ? testpki_bio_string(bio, PEM_write_bio_X509(bio, cert)) : NULL;
}

char *testpki_key_pem(EVP_PKEY *key)
{
	BIO *bio = BIO_new(BIO_s_mem());
	return bio ? testpki_bio_string(bio, PEM_write_bio_PKCS8PrivateKey(bio, key, NULL, NULL, 0,
									   NULL, NULL))
		   : NULL;
}

int testpki_write(const char *dir, const char *name, const char *pem)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	int ok = fputs(pem, f) >= 0;
	return fclose(f) == 0 && ok ? 0 : -1;
}

uint8_t *testpki_csr(EVP_PKEY *key, size_t *len)
{
	X509_REQ *req = X509_REQ_new();
	uint8_t *der = NULL;
	int n = -1;

	if (req && X509_REQ_set_pubkey(req, key) &&
	    X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_UTF8,
				       (const uint8_t *)"test", -1, -1, 0) &&
	    X509_REQ_sign(req, key, EVP_sha256()))
		n = i2d_X509_REQ(req, &der);
	X509_REQ_free(req);
	if (n <= 0)
		return NULL;
	*len = (size_t)n;
	return der;
}
