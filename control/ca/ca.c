/* ca: see ca.h. Loading and creating the CA happen once at start-up
 * (ca_open), so every error there is fatal and explained; signing
 * (ca_sign_csr) runs per request and never touches the disk. BoringSSL's
 * 1/0 results are turned into -errno here, at the module's edge. */
#include "ca.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#include <jansson.h>
#include <openssl/base64.h>
#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "fsutil.h"
#include "certverify.h"
#include "spiffe.h"
#include "svid.h"

#define CA_MAX_ROOTS 8
#define CA_MAX_CHAIN 8
#define CA_FILE_MAX  (1 << 20)

struct ca_der {
	uint8_t *der;
	size_t len;
};

struct ca {
	char td[SPIFFE_TD_MAX + 1];
	X509 *cert;
	EVP_PKEY *key;
	struct ca_der chain[CA_MAX_CHAIN]; /* cert (unless a root) and up, not the root */
	size_t n_chain;
	STACK_OF(X509) * untrusted; /* cert + chain, for verifying renewals */
	struct ca_der roots[CA_MAX_ROOTS];
	X509 *root_x509[CA_MAX_ROOTS];
	size_t n_roots;
	uint64_t seq;
	int64_t not_after;
	int prepared;	      /* a next root waits in next.crt */
	X509 *next;	      /* that root, or NULL */
	int64_t activated_at; /* when the signer last changed; 0: no old root */
	long ttl_default, ttl_min, ttl_max;
};

/* <dir>/<name> into out (PATH_MAX bytes); -ENAMETOOLONG when it does not fit. */
static int ca_join(char *out, const char *dir, const char *name)
{
	int n = snprintf(out, PATH_MAX, "%s/%s", dir, name);
	return n < 0 || n >= PATH_MAX ? -ENAMETOOLONG : 0;
}

static const char *const ca_reason_names[CA_ER_COUNT_] = {
	[CA_ER_NONE] = "none",
	[CA_ER_CSR_PARSE] = "csr_unparseable",
	[CA_ER_CSR_SIGNATURE] = "csr_bad_signature",
	[CA_ER_KEY_TYPE] = "key_unsupported",
	[CA_ER_KEY_WEAK] = "key_too_weak",
	[CA_ER_CA_EXPIRED] = "ca_expired",
	[CA_ER_INTERNAL] = "internal",
};

const char *ca_reason_name(enum ca_reason r)
{
	return (unsigned)r < CA_ER_COUNT_ ? ca_reason_names[r] : "unknown";
}

static int64_t ca_asn1_to_unix(const ASN1_TIME *t)
{
	int days = 0, secs = 0;
	ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
	int ok = epoch && ASN1_TIME_diff(&days, &secs, epoch, t);
	ASN1_TIME_free(epoch);
	return ok ? (int64_t)days * 86400 + secs : -1;
}

static int ca_der_set(struct ca_der *d, X509 *x)
{
	uint8_t *der = NULL;
	int n = i2d_X509(x, &der);
	if (n <= 0)
		return -ENOMEM;
	d->der = der;
	d->len = (size_t)n;
	return 0;
}

/* ---- certificate building, shared by the root, SVIDs and the server cert */

static int ca_add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
	int ok = ext && X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -ENOMEM;
}

static int ca_push_name(GENERAL_NAMES *names, int type, const void *data, size_t len)
{
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_STRING *s = type == GEN_IPADD ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();

	if (!gn || !s || !ASN1_STRING_set(s, data, (int)len))
		goto err;
	GENERAL_NAME_set0_value(gn, type, s);
	s = NULL;
	if (!sk_GENERAL_NAME_push(names, gn))
		goto err;
	return 0;
err:
	ASN1_STRING_free(s);
	GENERAL_NAME_free(gn);
	return -ENOMEM;
}

/* A v3 certificate for `pub` with a random 128-bit serial and the given
 * validity; the caller adds extensions and signs. */
static X509 *ca_cert_new(EVP_PKEY *pub, time_t not_before, time_t not_after, char *serial_hex)
{
	uint8_t serial[16];
	X509 *cert = X509_new();
	BIGNUM *bn = NULL;

	RAND_bytes(serial, sizeof(serial));
	serial[0] &= 0x7f; /* positive, RFC 5280 4.1.2.2 */
	serial[0] |= 0x40; /* and always 127 bits long */
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	if (!cert || !bn || !X509_set_version(cert, X509_VERSION_3) ||
	    !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) ||
	    !ASN1_TIME_set(X509_getm_notBefore(cert), not_before) ||
	    !ASN1_TIME_set(X509_getm_notAfter(cert), not_after) || !X509_set_pubkey(cert, pub)) {
		X509_free(cert);
		cert = NULL;
	} else if (serial_hex) {
		for (size_t i = 0; i < sizeof(serial); i++)
			snprintf(serial_hex + 2 * i, 3, "%02x", serial[i]);
	}
	BN_free(bn);
	return cert;
}

static EVP_PKEY *ca_keygen(void)
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

/* ---- loading and creating */

static int ca_write_pem_cert(const char *path, X509 *cert)
{
	BIO *b = BIO_new(BIO_s_mem());
	const uint8_t *data;
	size_t len;
	int rc = -ENOMEM;

	if (b && PEM_write_bio_X509(b, cert) && BIO_mem_contents(b, &data, &len))
		rc = fsutil_write_atomic(path, data, len, 0644);
	BIO_free(b);
	return rc;
}

static int ca_write_pem_key(const char *path, EVP_PKEY *key)
{
	BIO *b = BIO_new(BIO_s_mem());
	const uint8_t *data;
	size_t len;
	int rc = -ENOMEM;

	if (b && PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) &&
	    BIO_mem_contents(b, &data, &len))
		rc = fsutil_write_atomic(path, data, len, 0600);
	BIO_free(b);
	return rc;
}

/* Reads every certificate of a PEM file into a new stack. */
static int ca_read_certs(const char *path, STACK_OF(X509) * *out)
{
	char *buf = NULL;
	size_t len;
	int rc = fsutil_read_all(path, CA_FILE_MAX, &buf, &len);
	if (rc < 0)
		return rc;
	BIO *b = BIO_new_mem_buf(buf, (int)len);
	STACK_OF(X509) *sk = sk_X509_new_null();
	X509 *x;

	rc = -ENOMEM;
	if (!b || !sk)
		goto out;
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			goto out;
		}
	}
	ERR_clear_error();
	rc = sk_X509_num(sk) ? 0 : -EINVAL;
	if (rc == 0) {
		*out = sk;
		sk = NULL;
	}
out:
	sk_X509_pop_free(sk, X509_free);
	BIO_free(b);
	free(buf);
	return rc;
}

static int ca_read_key(const char *path, EVP_PKEY **out)
{
	char *buf = NULL;
	size_t len;
	int rc = fsutil_read_all(path, CA_FILE_MAX, &buf, &len);
	if (rc < 0)
		return rc;
	BIO *b = BIO_new_mem_buf(buf, (int)len);
	EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
	OPENSSL_cleanse(buf, len);
	free(buf);
	BIO_free(b);
	if (!k)
		return -EINVAL;
	*out = k;
	return 0;
}

static int ca_is_self_signed(X509 *x)
{
	EVP_PKEY *pub = X509_get_pubkey(x);
	int ok = pub && !X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) &&
		 X509_verify(x, pub) == 1;
	EVP_PKEY_free(pub);
	ERR_clear_error();
	return ok;
}

/* A new self-signed root for the trust domain, written to <dir>/<name>.key
 * and <name>.crt; *cert_out and *key_out are new references. */
static int ca_create_root(const struct ca *ca, const char *dir, const char *name, X509 **cert_out,
			  EVP_PKEY **key_out, const char **why)
{
	char file[64];
	char path[PATH_MAX], uri[SPIFFE_TD_MAX + 16];
	time_t now = time(NULL);
	GENERAL_NAMES *names = GENERAL_NAMES_new();
	EVP_PKEY *key = ca_keygen();
	X509 *cert = NULL;
	int rc = -ENOMEM;

	/* roots of one trust domain differ by name too, for the people who
	 * read them during a rotation: "root 20261130T133500Z" */
	char gen[32];
	struct tm tm;
	strftime(gen, sizeof(gen), "root %Y%m%dT%H%M%SZ", gmtime_r(&now, &tm));
	*why = "cannot build the root certificate";
	snprintf(uri, sizeof(uri), "spiffe://%s", ca->td);
	if (!names || !key)
		goto out;
	cert = ca_cert_new(key, now - CA_BACKDATE_S, now + (time_t)CA_ROOT_DAYS * 86400, NULL);
	if (!cert ||
	    !X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "O", MBSTRING_UTF8,
					(const uint8_t *)"Cinch", -1, -1, 0) ||
	    !X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "OU", MBSTRING_UTF8,
					(const uint8_t *)gen, -1, -1, 0) ||
	    !X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_UTF8,
					(const uint8_t *)ca->td, -1, -1, 0) ||
	    !X509_set_issuer_name(cert, X509_get_subject_name(cert)))
		goto out;
	if (ca_add_ext(cert, cert, NID_basic_constraints, "critical,CA:TRUE") < 0 ||
	    ca_add_ext(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
	    ca_add_ext(cert, cert, NID_subject_key_identifier, "hash") < 0 ||
	    ca_push_name(names, GEN_URI, uri, strlen(uri)) < 0 ||
	    !X509_add1_ext_i2d(cert, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT) ||
	    !X509_sign(cert, key, EVP_sha256()))
		goto out;
	/* Key first: a crash between the two writes leaves a key without a
	 * certificate, which the next start overwrites; never the reverse. */
	*why = "cannot write the CA key";
	snprintf(file, sizeof(file), "%s.key", name);
	if ((rc = ca_join(path, dir, file)) < 0 || (rc = ca_write_pem_key(path, key)) < 0)
		goto out;
	*why = "cannot write the CA certificate";
	snprintf(file, sizeof(file), "%s.crt", name);
	if ((rc = ca_join(path, dir, file)) < 0 || (rc = ca_write_pem_cert(path, cert)) < 0)
		goto out;
	*cert_out = cert;
	*key_out = key;
	cert = NULL;
	key = NULL;
	rc = 0;
out:
	GENERAL_NAMES_free(names);
	X509_free(cert);
	EVP_PKEY_free(key);
	return rc;
}

/* Checks that a loaded CA cert can sign SVIDs: CA:TRUE, keyCertSign, key
 * matching, and that the chain given with it verifies up to its root. */
static int ca_check_loaded(struct ca *ca, STACK_OF(X509) * certs, X509 *root, const char **why)
{
	STACK_OF(X509) *roots = sk_X509_new_null();
	int rc = -EINVAL;

	if (!X509_check_private_key(ca->cert, ca->key)) {
		*why = "--ca-key does not match --ca-cert";
		goto out;
	}
	if (X509_check_ca(ca->cert) != 1 || !(X509_get_key_usage(ca->cert) & KU_KEY_CERT_SIGN)) {
		*why = "--ca-cert is not a CA certificate with keyCertSign";
		goto out;
	}
	if (!roots || !sk_X509_push(roots, root)) {
		*why = "out of memory";
		rc = -ENOMEM;
		goto out;
	}
	rc = certverify_roots(roots, ca->cert, certs, NULL, NULL);
	if (rc == -ENOMEM)
		*why = "out of memory";
	else if (rc < 0)
		*why = "--ca-cert does not verify up to its root (give the chain in the file)";
out:
	ERR_clear_error();
	sk_X509_free(roots); /* root is borrowed */
	return rc;
}

static int ca_load_given(struct ca *ca, const struct ca_config *cfg, X509 **root_out,
			 const char **why)
{
	STACK_OF(X509) *certs = NULL;
	int rc;

	if ((rc = ca_read_certs(cfg->cert_path, &certs)) < 0) {
		*why = "cannot read a certificate from --ca-cert";
		return rc;
	}
	if ((rc = ca_read_key(cfg->key_path, &ca->key)) < 0) {
		*why = "cannot read a private key from --ca-key";
		goto out;
	}
	rc = -EINVAL;
	ca->cert = X509_dup(sk_X509_value(certs, 0));
	X509 *root = sk_X509_value(certs, sk_X509_num(certs) - 1);
	if (!ca->cert || !ca_is_self_signed(root)) {
		*why = "--ca-cert must end with its self-signed root";
		goto out;
	}
	if (sk_X509_num(certs) > CA_MAX_CHAIN + 1) {
		*why = "--ca-cert chain is too long";
		goto out;
	}
	if ((rc = ca_check_loaded(ca, certs, root, why)) < 0)
		goto out;
	/* The chain sent after each SVID (and after our own server
	 * certificate): the signing intermediate itself and those above it,
	 * up to and not including the root. */
	for (size_t i = 0; i + 1 < sk_X509_num(certs); i++)
		if ((rc = ca_der_set(&ca->chain[ca->n_chain++], sk_X509_value(certs, i))) < 0)
			goto out;
	*root_out = X509_dup(root);
	rc = *root_out ? 0 : -ENOMEM;
out:
	sk_X509_pop_free(certs, X509_free);
	return rc;
}

/* An activation (see ca_rotate) renames next.key, then next.crt, over the
 * signer's files; a crash between the two leaves the new key beside the old
 * certificate. The start after it completes the step. 0 or -1. */
static int ca_activate_finish(struct ca *ca, const char *dir)
{
	char npath[PATH_MAX], cpath[PATH_MAX];
	STACK_OF(X509) *next = NULL;
	int rc = -1;

	if (ca_join(npath, dir, "next.crt") < 0 || ca_join(cpath, dir, "ca.crt") < 0 ||
	    ca_read_certs(npath, &next) < 0)
		return -1;
	if (X509_check_private_key(sk_X509_value(next, 0), ca->key) == 1 &&
	    rename(npath, cpath) == 0) {
		X509_free(ca->cert);
		ca->cert = X509_dup(sk_X509_value(next, 0));
		rc = ca->cert ? 0 : -1;
	}
	sk_X509_pop_free(next, X509_free);
	return rc;
}

static int ca_load_or_create(struct ca *ca, const char *dir, X509 **root_out, const char **why)
{
	char cpath[PATH_MAX], kpath[PATH_MAX];
	STACK_OF(X509) *certs = NULL;
	int rc;

	if (ca_join(cpath, dir, "ca.crt") < 0 || ca_join(kpath, dir, "ca.key") < 0)
		return -ENAMETOOLONG;
	rc = ca_read_certs(cpath, &certs);
	if (rc == -ENOENT) {
		if ((rc = ca_create_root(ca, dir, "ca", &ca->cert, &ca->key, why)) < 0)
			return rc;
		*root_out = X509_dup(ca->cert);
		return *root_out ? 0 : -ENOMEM;
	}
	if (rc < 0) {
		*why = "cannot read <state>/ca/ca.crt";
		return rc;
	}
	ca->cert = X509_dup(sk_X509_value(certs, 0));
	sk_X509_pop_free(certs, X509_free);
	if ((rc = ca_read_key(kpath, &ca->key)) < 0) {
		*why = "cannot read <state>/ca/ca.key";
		return rc;
	}
	if (ca->cert && !X509_check_private_key(ca->cert, ca->key) &&
	    ca_activate_finish(ca, dir) == 0)
		ERR_clear_error();
	if (!ca->cert || !X509_check_private_key(ca->cert, ca->key)) {
		ERR_clear_error();
		*why = "<state>/ca/ca.key does not match ca.crt";
		return -EINVAL;
	}
	*root_out = X509_dup(ca->cert);
	return *root_out ? 0 : -ENOMEM;
}

static int ca_add_root(struct ca *ca, X509 *root)
{
	struct ca_der d;
	for (size_t i = 0; i < ca->n_roots; i++)
		if (!X509_cmp(ca->root_x509[i], root))
			return 0;
	if (ca->n_roots == CA_MAX_ROOTS)
		return -ENOSPC;
	if (ca_der_set(&d, root) < 0 || !X509_up_ref(root))
		return -ENOMEM;
	ca->roots[ca->n_roots] = d;
	ca->root_x509[ca->n_roots++] = root;
	return 1;
}

/* Replaces bundle.pem with the roots of `ca` and bundle.seq with `seq`. */
static int ca_bundle_write(const struct ca *ca, const char *dir, uint64_t seq)
{
	char bpath[PATH_MAX], spath[PATH_MAX], num[32];
	char *pem = ca_bundle_pem(ca);
	int n = snprintf(num, sizeof(num), "%" PRIu64 "\n", seq), rc;

	if (ca_join(bpath, dir, "bundle.pem") < 0 || ca_join(spath, dir, "bundle.seq") < 0)
		rc = -ENAMETOOLONG;
	else
		rc = pem ? fsutil_write_atomic(bpath, pem, strlen(pem), 0644) : -ENOMEM;
	free(pem);
	if (rc == 0)
		rc = fsutil_write_atomic(spath, num, (size_t)n, 0644);
	return rc;
}

/* The bundle keeps every root it has held until a rotation retires it, so
 * certificates from a previous root still verify while a new one takes
 * over. spiffe_sequence grows each time the set changes. `root` is the
 * signer's, `next` (may be NULL) a prepared next root. */
static int ca_bundle_load(struct ca *ca, const char *dir, X509 *root, X509 *next, const char **why)
{
	char bpath[PATH_MAX], spath[PATH_MAX];
	STACK_OF(X509) *old = NULL;
	char *seqbuf = NULL;
	size_t len;
	int rc, added;

	if (ca_join(bpath, dir, "bundle.pem") < 0 || ca_join(spath, dir, "bundle.seq") < 0)
		return -ENAMETOOLONG;
	rc = ca_read_certs(bpath, &old);
	if (rc < 0 && rc != -ENOENT) {
		*why = "cannot read <state>/ca/bundle.pem";
		return rc;
	}
	for (size_t i = 0; old && i < sk_X509_num(old); i++)
		if ((rc = ca_add_root(ca, sk_X509_value(old, i))) < 0)
			goto out;
	if (fsutil_read_all(spath, 64, &seqbuf, &len) == 0)
		ca->seq = strtoull(seqbuf, NULL, 10);
	if ((added = ca_add_root(ca, root)) < 0) {
		rc = added;
		goto out;
	}
	if (next && (rc = ca_add_root(ca, next)) != 0) {
		if (rc < 0)
			goto out;
		added = 1;
	}
	rc = 0;
	if (added || ca->seq == 0) {
		*why = "cannot write <state>/ca/bundle.pem";
		rc = ca_bundle_write(ca, dir, ca->seq + 1);
		if (rc == 0)
			ca->seq++;
	}
out:
	free(seqbuf);
	sk_X509_pop_free(old, X509_free);
	return rc;
}

/* The rotation state: a prepared next root (*next, a new reference, or
 * NULL) and when the signer last changed (<dir>/activated_at). */
static int ca_rotation_load(struct ca *ca, const char *dir, X509 **next, const char **why)
{
	char path[PATH_MAX], *buf = NULL;
	STACK_OF(X509) *certs = NULL;
	size_t len;
	int rc;

	if (ca_join(path, dir, "next.crt") < 0)
		return -ENAMETOOLONG;
	rc = ca_read_certs(path, &certs);
	if (rc < 0 && rc != -ENOENT) {
		*why = "cannot read <state>/ca/next.crt";
		return rc;
	}
	if (certs) {
		*next = X509_dup(sk_X509_value(certs, 0));
		sk_X509_pop_free(certs, X509_free);
		if (!*next)
			return -ENOMEM;
		ca->prepared = 1;
	}
	if (ca_join(path, dir, "activated_at") < 0)
		return -ENAMETOOLONG;
	if (fsutil_read_all(path, 64, &buf, &len) == 0)
		ca->activated_at = strtoll(buf, NULL, 10);
	free(buf);
	return 0;
}

int ca_open(const struct ca_config *cfg, struct ca **out, const char **why)
{
	char dir[PATH_MAX];
	struct ca *ca = calloc(1, sizeof(*ca));
	X509 *root = NULL, *next = NULL;
	int rc = -EINVAL;

	if (!ca)
		return -ENOMEM;
	if (!cfg->trust_domain ||
	    spiffe_td_validate(cfg->trust_domain, strlen(cfg->trust_domain), why) < 0)
		goto out;
	snprintf(ca->td, sizeof(ca->td), "%s", cfg->trust_domain);
	ca->ttl_default = cfg->ttl_default_s ? cfg->ttl_default_s : CA_TTL_DEFAULT_S;
	ca->ttl_min = cfg->ttl_min_s ? cfg->ttl_min_s : CA_TTL_MIN_S;
	ca->ttl_max = cfg->ttl_max_s ? cfg->ttl_max_s : CA_TTL_MAX_S;
	if (ca->ttl_min < CA_TTL_MIN_TEST_S || ca->ttl_max > CA_TTL_MAX_S ||
	    ca->ttl_min > ca->ttl_max || ca->ttl_default < ca->ttl_min ||
	    ca->ttl_default > ca->ttl_max) {
		*why = "certificate lifetimes must satisfy min <= default <= max within 5 min..24 "
		       "h";
		goto out;
	}
	if (!cfg->cert_path != !cfg->key_path) {
		*why = "--ca-cert and --ca-key go together";
		goto out;
	}
	*why = "cannot create the state directory";
	if ((rc = fsutil_mkdir(cfg->state_dir, 0700)) < 0)
		goto out;
	if (snprintf(dir, sizeof(dir), "%s/ca", cfg->state_dir) >= (int)sizeof(dir) - 16) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	if ((rc = fsutil_mkdir(dir, 0700)) < 0)
		goto out;
	rc = cfg->cert_path ? ca_load_given(ca, cfg, &root, why)
			    : ca_load_or_create(ca, dir, &root, why);
	if (rc < 0)
		goto out;
	if (!cfg->cert_path && (rc = ca_rotation_load(ca, dir, &next, why)) < 0)
		goto out;
	if ((rc = ca_bundle_load(ca, dir, root, next, why)) < 0)
		goto out;
	ca->next = next;
	next = NULL;
	ca->not_after = ca_asn1_to_unix(X509_get0_notAfter(ca->cert));
	ca->untrusted = sk_X509_new_null();
	rc = -ENOMEM;
	*why = "out of memory";
	if (!ca->untrusted || !X509_up_ref(ca->cert) || !sk_X509_push(ca->untrusted, ca->cert))
		goto out;
	for (size_t i = 0; i < ca->n_chain; i++) {
		const uint8_t *p = ca->chain[i].der;
		X509 *x = d2i_X509(NULL, &p, (long)ca->chain[i].len);
		if (!x || !sk_X509_push(ca->untrusted, x)) {
			X509_free(x);
			goto out;
		}
	}
	*out = ca;
	ca = NULL;
	*why = NULL;
	rc = 0;
out:
	X509_free(root);
	X509_free(next);
	ca_free(ca);
	return rc;
}

void ca_free(struct ca *ca)
{
	if (!ca)
		return;
	X509_free(ca->cert);
	X509_free(ca->next);
	EVP_PKEY_free(ca->key);
	for (size_t i = 0; i < ca->n_chain; i++)
		OPENSSL_free(ca->chain[i].der);
	for (size_t i = 0; i < ca->n_roots; i++) {
		OPENSSL_free(ca->roots[i].der);
		X509_free(ca->root_x509[i]);
	}
	sk_X509_pop_free(ca->untrusted, X509_free);
	free(ca);
}

/* ---- root rotation */

static int ca_rotate_prepare(const struct ca *ca, const char *dir, const char **why)
{
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	int rc;

	if (ca->prepared) {
		*why = "a next root is already prepared: activate it first";
		return -EEXIST;
	}
	/* the next open adds next.crt to the bundle (sequence + 1) */
	rc = ca_create_root(ca, dir, "next", &cert, &key, why);
	X509_free(cert);
	EVP_PKEY_free(key);
	return rc;
}

static int ca_rotate_activate(const struct ca *ca, const char *dir, time_t now, const char **why)
{
	char from[PATH_MAX], to[PATH_MAX], num[32];
	int n = snprintf(num, sizeof(num), "%lld\n", (long long)now), rc;

	if (!ca->prepared) {
		*why = "no next root is prepared";
		return -ENOENT;
	}
	*why = "cannot record the activation";
	if ((rc = ca_join(to, dir, "activated_at")) < 0 ||
	    (rc = fsutil_write_atomic(to, num, (size_t)n, 0644)) < 0)
		return rc;
	/* key first: ca_activate_finish() completes a step cut in between */
	*why = "cannot make the next root the signer";
	if (ca_join(from, dir, "next.key") < 0 || ca_join(to, dir, "ca.key") < 0 ||
	    rename(from, to) < 0)
		return -errno;
	if (ca_join(from, dir, "next.crt") < 0 || ca_join(to, dir, "ca.crt") < 0 ||
	    rename(from, to) < 0)
		return -errno;
	return 0;
}

static int ca_rotate_retire(struct ca *ca, const char *dir, const char **why)
{
	char path[PATH_MAX];
	size_t kept = 0;
	int rc;

	/* ca is a private copy here: its roots are rewritten in place */
	for (size_t i = 0; i < ca->n_roots; i++) {
		if (X509_cmp(ca->root_x509[i], ca->cert) == 0 ||
		    (ca->next && X509_cmp(ca->root_x509[i], ca->next) == 0)) {
			ca->roots[kept] = ca->roots[i];
			ca->root_x509[kept++] = ca->root_x509[i];
			continue;
		}
		OPENSSL_free(ca->roots[i].der);
		X509_free(ca->root_x509[i]);
	}
	if (kept == ca->n_roots) {
		*why = "no old root to retire";
		return -EALREADY;
	}
	ca->n_roots = kept;
	*why = "cannot write <state>/ca/bundle.pem";
	if ((rc = ca_bundle_write(ca, dir, ca->seq + 1)) < 0)
		return rc;
	if (ca_join(path, dir, "activated_at") == 0)
		unlink(path);
	return 0;
}

int ca_rotate(const struct ca_config *cfg, enum ca_rotate_step step, time_t now, const char **why)
{
	char dir[PATH_MAX];
	struct ca *ca = NULL;
	int rc;

	if (cfg->cert_path) {
		*why = "the root is given with --ca-cert: rotate it outside, then restart";
		return -ENOTSUP;
	}
	if ((rc = ca_open(cfg, &ca, why)) < 0)
		return rc;
	snprintf(dir, sizeof(dir), "%s/ca", cfg->state_dir);
	switch (step) {
	case CA_ROTATE_PREPARE:
		rc = ca_rotate_prepare(ca, dir, why);
		break;
	case CA_ROTATE_ACTIVATE:
		rc = ca_rotate_activate(ca, dir, now, why);
		break;
	case CA_ROTATE_RETIRE:
		rc = ca_rotate_retire(ca, dir, why);
		break;
	default:
		*why = "unknown rotation step";
		rc = -EINVAL;
	}
	ca_free(ca);
	return rc;
}

int ca_root_info(const struct ca *ca, size_t i, struct ca_root_info *out)
{
	X509 *x;

	if (i >= ca->n_roots)
		return -EINVAL;
	x = ca->root_x509[i];
	if (!X509_NAME_oneline(X509_get_subject_name(x), out->subject, sizeof(out->subject)))
		out->subject[0] = '\0';
	out->not_before = ca_asn1_to_unix(X509_get0_notBefore(x));
	out->not_after = ca_asn1_to_unix(X509_get0_notAfter(x));
	out->signer = X509_cmp(x, ca->cert) == 0;
	out->next = ca->next && X509_cmp(x, ca->next) == 0;
	return 0;
}

int ca_rotation_prepared(const struct ca *ca)
{
	return ca->prepared;
}

int64_t ca_activated_at(const struct ca *ca)
{
	return ca->activated_at;
}

/* ---- CSRs and signing */

static int ca_key_acceptable(EVP_PKEY *pub, enum ca_reason *why)
{
	switch (EVP_PKEY_id(pub)) {
	case EVP_PKEY_EC: {
		const EC_GROUP *g = EC_KEY_get0_group(EVP_PKEY_get0_EC_KEY(pub));
		int nid = g ? EC_GROUP_get_curve_name(g) : NID_undef;
		if (nid == NID_X9_62_prime256v1 || nid == NID_secp384r1)
			return 0;
		*why = CA_ER_KEY_TYPE;
		return -EINVAL;
	}
	case EVP_PKEY_RSA: {
		int bits = EVP_PKEY_bits(pub);
		if (bits >= 2048 && bits <= 8192)
			return 0;
		*why = bits < 2048 ? CA_ER_KEY_WEAK : CA_ER_KEY_TYPE;
		return -EINVAL;
	}
	default:
		*why = CA_ER_KEY_TYPE;
		return -EINVAL;
	}
}

int ca_csr_check(const uint8_t *der, size_t len, EVP_PKEY **pub, enum ca_reason *why)
{
	const uint8_t *p = der;
	X509_REQ *req = NULL;
	EVP_PKEY *key = NULL;
	int rc = -EINVAL;

	*why = CA_ER_CSR_PARSE;
	if (len == 0 || len > CA_CSR_MAX)
		goto out;
	req = d2i_X509_REQ(NULL, &p, (long)len);
	if (!req || p != der + len)
		goto out;
	key = X509_REQ_get_pubkey(req);
	if (!key)
		goto out;
	/* Key policy before the signature, so a huge RSA key costs nothing. */
	if (ca_key_acceptable(key, why) < 0)
		goto out;
	if (X509_REQ_verify(req, key) != 1) {
		*why = CA_ER_CSR_SIGNATURE;
		goto out;
	}
	*pub = key;
	key = NULL;
	*why = CA_ER_NONE;
	rc = 0;
out:
	ERR_clear_error();
	EVP_PKEY_free(key);
	X509_REQ_free(req);
	return rc;
}

long ca_clamp_ttl(const struct ca *ca, long ttl_s)
{
	if (ttl_s <= 0)
		return ca->ttl_default;
	if (ttl_s < ca->ttl_min)
		return ca->ttl_min;
	return ttl_s > ca->ttl_max ? ca->ttl_max : ttl_s;
}

/* Builds and signs a leaf for `pub`: the SVID profile of ca.h, plus the
 * given DNS/IP names for the control's own server certificate. */
static X509 *ca_leaf(const struct ca *ca, EVP_PKEY *pub, const char *spiffe_id,
		     const char *const *dns, size_t n_dns, const char *const *ips, size_t n_ips,
		     long ttl_s, time_t now, char *serial_hex)
{
	time_t not_after = now + ttl_s;
	GENERAL_NAMES *names = GENERAL_NAMES_new();
	X509 *cert = NULL;

	if (not_after > ca->not_after)
		not_after = (time_t)ca->not_after;
	if (!names || (spiffe_id && ca_push_name(names, GEN_URI, spiffe_id, strlen(spiffe_id)) < 0))
		goto err;
	for (size_t i = 0; i < n_dns; i++)
		if (ca_push_name(names, GEN_DNS, dns[i], strlen(dns[i])) < 0)
			goto err;
	for (size_t i = 0; i < n_ips; i++) {
		uint8_t addr[16];
		if (inet_pton(AF_INET, ips[i], addr) == 1) {
			if (ca_push_name(names, GEN_IPADD, addr, 4) < 0)
				goto err;
		} else if (inet_pton(AF_INET6, ips[i], addr) == 1) {
			if (ca_push_name(names, GEN_IPADD, addr, 16) < 0)
				goto err;
		} else {
			goto err;
		}
	}
	cert = ca_cert_new(pub, now - CA_BACKDATE_S, not_after, serial_hex);
	if (!cert || !X509_set_issuer_name(cert, X509_get_subject_name(ca->cert)))
		goto err;
	/* Empty subject, so the SAN must be critical (RFC 5280 4.2.1.6). */
	if (ca_add_ext(cert, ca->cert, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    ca_add_ext(cert, ca->cert, NID_key_usage, "critical,digitalSignature") < 0 ||
	    ca_add_ext(cert, ca->cert, NID_ext_key_usage, "serverAuth,clientAuth") < 0 ||
	    !X509_add1_ext_i2d(cert, NID_subject_alt_name, names, 1, X509V3_ADD_DEFAULT))
		goto err;
	if (X509_get_ext_by_NID(ca->cert, NID_subject_key_identifier, -1) >= 0 &&
	    ca_add_ext(cert, ca->cert, NID_authority_key_identifier, "keyid") < 0)
		goto err;
	if (!X509_sign(cert, ca->key, EVP_sha256()))
		goto err;
	GENERAL_NAMES_free(names);
	return cert;
err:
	ERR_clear_error();
	GENERAL_NAMES_free(names);
	X509_free(cert);
	return NULL;
}

int ca_sign_pubkey(const struct ca *ca, EVP_PKEY *pub, const char *spiffe_id, long ttl_s,
		   time_t now, struct ca_issued *out, enum ca_reason *why)
{
	X509 *cert = NULL;
	uint8_t *der = NULL;
	int rc, n;

	/* An SVID must end before its CA; a CA with under a minute left
	 * cannot issue anything useful. */
	if ((int64_t)now + 60 >= ca->not_after) {
		*why = CA_ER_CA_EXPIRED;
		return -EKEYEXPIRED;
	}
	memset(out, 0, sizeof(*out));
	rc = -ENOMEM;
	*why = CA_ER_INTERNAL;
	cert = ca_leaf(ca, pub, spiffe_id, NULL, 0, NULL, 0, ca_clamp_ttl(ca, ttl_s), now,
		       out->serial_hex);
	if (!cert || (n = i2d_X509(cert, &der)) <= 0)
		goto out;
	out->der = der;
	out->der_len = (size_t)n;
	out->not_before = ca_asn1_to_unix(X509_get0_notBefore(cert));
	out->not_after = ca_asn1_to_unix(X509_get0_notAfter(cert));
	*why = CA_ER_NONE;
	rc = 0;
out:
	X509_free(cert);
	return rc;
}

int ca_sign_csr(const struct ca *ca, const uint8_t *csr, size_t csr_len, const char *spiffe_id,
		long ttl_s, time_t now, struct ca_issued *out, enum ca_reason *why)
{
	EVP_PKEY *pub = NULL;
	int rc = ca_csr_check(csr, csr_len, &pub, why);
	if (rc == 0)
		rc = ca_sign_pubkey(ca, pub, spiffe_id, ttl_s, now, out, why);
	EVP_PKEY_free(pub);
	return rc;
}

void ca_key_free(EVP_PKEY *key)
{
	EVP_PKEY_free(key);
}

void ca_issued_cleanup(struct ca_issued *is)
{
	OPENSSL_free(is->der);
	is->der = NULL;
}

int ca_issue_server(const struct ca *ca, const char *spiffe_id, const char *const *dns,
		    size_t n_dns, const char *const *ips, size_t n_ips, long lifetime_s,
		    X509 **cert, EVP_PKEY **key)
{
	EVP_PKEY *k = ca_keygen();
	X509 *c =
		k ? ca_leaf(ca, k, spiffe_id, dns, n_dns, ips, n_ips, lifetime_s, time(NULL), NULL)
		  : NULL;
	if (!c) {
		EVP_PKEY_free(k);
		return -EINVAL;
	}
	*cert = c;
	*key = k;
	return 0;
}

/* ---- renewal */

int ca_verify_svid(const struct ca *ca, X509 *leaf, STACK_OF(X509) * untrusted, time_t now,
		   char *id, size_t idlen, const char **why)
{
	STACK_OF(X509) *roots = ca_bundle_roots_new(ca);
	STACK_OF(X509) *chain = untrusted ? sk_X509_dup(untrusted) : sk_X509_new_null();
	struct certverify_opts vo = {.purpose = X509_PURPOSE_SSL_CLIENT, .at = (int64_t)now};
	struct spiffe_workload w;
	int rc = -EPERM, err;

	*why = "out of memory";
	if (!roots || !chain)
		goto out;
	/* Our own intermediates too, so a client sending only its leaf works. */
	for (size_t i = 0; i < (size_t)sk_X509_num(ca->untrusted); i++)
		if (!sk_X509_push(chain, sk_X509_value(ca->untrusted, i)))
			goto out;
	if ((rc = certverify_roots(roots, leaf, chain, &vo, &err)) < 0) {
		if (rc == -EINVAL)
			*why = certverify_error_string(err);
		rc = -EPERM;
		goto out;
	}
	rc = -EPERM;
	if (X509_check_ca(leaf) != 0) {
		*why = "certificate is a CA certificate";
		goto out;
	}
	if (svid_spiffe_id(leaf, id, idlen, why) < 0)
		goto out;
	if (spiffe_id_parse_workload(id, strlen(id), &w, why) < 0)
		goto out;
	if (w.td_len != strlen(ca->td) || memcmp(w.td, ca->td, w.td_len)) {
		*why = "certificate is from another trust domain";
		goto out;
	}
	rc = 0;
out:
	ERR_clear_error();
	sk_X509_free(chain);
	sk_X509_pop_free(roots, X509_free);
	return rc;
}

/* ---- accessors and the bundle */

const char *ca_trust_domain(const struct ca *ca)
{
	return ca->td;
}

int64_t ca_not_after(const struct ca *ca)
{
	return ca->not_after;
}

size_t ca_chain_len(const struct ca *ca)
{
	return ca->n_chain;
}

STACK_OF(X509) * ca_chain_new(const struct ca *ca)
{
	STACK_OF(X509) *chain = sk_X509_new_null();

	for (size_t i = 0; chain && i < ca->n_chain; i++) {
		const uint8_t *p = ca->chain[i].der;
		X509 *x = d2i_X509(NULL, &p, (long)ca->chain[i].len);
		if (!x || !sk_X509_push(chain, x)) {
			X509_free(x);
			sk_X509_pop_free(chain, X509_free);
			chain = NULL;
		}
	}
	return chain;
}

const uint8_t *ca_chain_der(const struct ca *ca, size_t i, size_t *len)
{
	*len = ca->chain[i].len;
	return ca->chain[i].der;
}

size_t ca_bundle_len(const struct ca *ca)
{
	return ca->n_roots;
}

const uint8_t *ca_bundle_der(const struct ca *ca, size_t i, size_t *len)
{
	*len = ca->roots[i].len;
	return ca->roots[i].der;
}

uint64_t ca_bundle_sequence(const struct ca *ca)
{
	return ca->seq;
}

STACK_OF(X509) * ca_bundle_roots_new(const struct ca *ca)
{
	STACK_OF(X509) *roots = sk_X509_new_null();

	for (size_t i = 0; roots && i < ca->n_roots; i++) {
		if (!sk_X509_push(roots, ca->root_x509[i])) {
			sk_X509_pop_free(roots, X509_free);
			return NULL;
		}
		X509_up_ref(ca->root_x509[i]);
	}
	return roots;
}

char *ca_bundle_pem(const struct ca *ca)
{
	BIO *b = BIO_new(BIO_s_mem());
	const uint8_t *data;
	size_t len;
	char *s = NULL;

	for (size_t i = 0; b && i < ca->n_roots; i++)
		if (!PEM_write_bio_X509(b, ca->root_x509[i]))
			goto out;
	if (b && BIO_mem_contents(b, &data, &len) && (s = malloc(len + 1))) {
		memcpy(s, data, len);
		s[len] = '\0';
	}
out:
	BIO_free(b);
	return s;
}

/* RFC 7515 base64url without padding (JWK coordinates), or standard
 * base64 (x5c, RFC 7517 4.7). New string or NULL. */
static char *ca_b64(const uint8_t *in, size_t len, int url)
{
	size_t n;
	if (!EVP_EncodedLength(&n, len))
		return NULL;
	char *s = malloc(n);
	if (!s)
		return NULL;
	EVP_EncodeBlock((uint8_t *)s, in, len);
	if (url) {
		char *w = s;
		for (char *r = s; *r && *r != '='; r++)
			*w++ = *r == '+' ? '-' : *r == '/' ? '_' : *r;
		*w = '\0';
	}
	return s;
}

static int ca_jwk_set_b64(json_t *jwk, const char *key, const uint8_t *in, size_t len, int url)
{
	char *s = ca_b64(in, len, url);
	int rc = s ? json_object_set_new(jwk, key, json_string(s)) : -1;
	free(s);
	return rc;
}

static int ca_jwk_bn(json_t *jwk, const char *key, const BIGNUM *bn, size_t width)
{
	uint8_t buf[1024];
	size_t n = width ? width : BN_num_bytes(bn);
	if (n > sizeof(buf) || !BN_bn2bin_padded(buf, n, bn))
		return -1;
	return ca_jwk_set_b64(jwk, key, buf, n, 1);
}

/* One JWK for a root (RFC 7517, SPIFFE bundle section 4.2.1). */
static json_t *ca_jwk(X509 *root, const struct ca_der *der)
{
	EVP_PKEY *pub = X509_get_pubkey(root);
	json_t *jwk = json_object(), *x5c = json_array();
	BIGNUM *x = BN_new(), *y = BN_new();
	int ok = pub && jwk && x5c && x && y;

	if (ok && EVP_PKEY_id(pub) == EVP_PKEY_EC) {
		const EC_KEY *ec = EVP_PKEY_get0_EC_KEY(pub);
		const EC_GROUP *g = EC_KEY_get0_group(ec);
		int nid = EC_GROUP_get_curve_name(g);
		size_t w = nid == NID_secp384r1 ? 48 : 32;
		ok = (nid == NID_X9_62_prime256v1 || nid == NID_secp384r1) &&
		     EC_POINT_get_affine_coordinates_GFp(g, EC_KEY_get0_public_key(ec), x, y,
							 NULL) &&
		     !json_object_set_new(jwk, "kty", json_string("EC")) &&
		     !json_object_set_new(jwk, "crv", json_string(w == 48 ? "P-384" : "P-256")) &&
		     !ca_jwk_bn(jwk, "x", x, w) && !ca_jwk_bn(jwk, "y", y, w);
	} else if (ok && EVP_PKEY_id(pub) == EVP_PKEY_RSA) {
		const RSA *rsa = EVP_PKEY_get0_RSA(pub);
		ok = !json_object_set_new(jwk, "kty", json_string("RSA")) &&
		     !ca_jwk_bn(jwk, "n", RSA_get0_n(rsa), 0) &&
		     !ca_jwk_bn(jwk, "e", RSA_get0_e(rsa), 0);
	} else {
		ok = 0;
	}
	char *b = ok ? ca_b64(der->der, der->len, 0) : NULL;
	ok = ok && b && !json_array_append_new(x5c, json_string(b)) &&
	     !json_object_set_new(jwk, "use", json_string("x509-svid")) &&
	     !json_object_set(jwk, "x5c", x5c);
	free(b);
	BN_free(x);
	BN_free(y);
	json_decref(x5c);
	EVP_PKEY_free(pub);
	if (!ok) {
		json_decref(jwk);
		return NULL;
	}
	return jwk;
}

char *ca_bundle_json(const struct ca *ca)
{
	json_t *keys = json_array();
	json_t *doc = json_pack("{s:o, s:I, s:i}", "keys", keys, "spiffe_sequence",
				(json_int_t)ca->seq, "spiffe_refresh_hint", 300);
	char *s = NULL;

	if (!doc)
		return NULL;
	for (size_t i = 0; i < ca->n_roots; i++) {
		json_t *jwk = ca_jwk(ca->root_x509[i], &ca->roots[i]);
		if (!jwk || json_array_append_new(keys, jwk))
			goto out;
	}
	s = json_dumps(doc, JSON_INDENT(2) | JSON_ENSURE_ASCII);
out:
	json_decref(doc);
	return s;
}

void ca_random(uint8_t *out, size_t len)
{
	RAND_bytes(out, len);
}

void ca_sha256(uint8_t out[32], const void *in, size_t len)
{
	SHA256(in, len, out);
}
