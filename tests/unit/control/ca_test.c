/* control.ca: the CA module with in-memory CSRs and a temp state dir.
 *
 * Checks every field of the SVID profile (ca.h), the CSR refusals (garbage,
 * truncated, trailing bytes, bad signature, RSA-1024, P-521, Ed25519), that
 * names asked for in a CSR are ignored, lifetime clamping (bounds and the
 * CA's own expiry), the expired-CA refusal, state-dir persistence (same root
 * after reopen, modes 0700/0600), loading a given root, the bundle JSON and
 * renewal verification. Certificates come from ca_open() itself and from
 * tests/lib/testpki (a foreign root for negative cases). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bytestring.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include "ca/ca.h"
#include "fsutil.h"
#include "spiffe.h"
#include "svid.h"
#include "testpki.h"

#define TD "example.org"
#define ID "spiffe://example.org/ns/default/sa/web"

struct fx {
	char dir[64];
	struct ca *ca;
};

static int rm_rf_cb(const char *dir)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd);
}

static struct ca *open_ca(const char *dir, const char *cert, const char *key)
{
	struct ca_config cfg = {
		.trust_domain = TD, .state_dir = dir, .cert_path = cert, .key_path = key};
	struct ca *ca = NULL;
	const char *why = NULL;
	int rc = ca_open(&cfg, &ca, &why);
	if (rc < 0)
		print_message("ca_open: %d %s\n", rc, why ? why : "");
	return ca;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/cinch-ca-test.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	strcat(f->dir, "/s");
	f->ca = open_ca(f->dir, NULL, NULL);
	assert_non_null(f->ca);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	ca_free(f->ca);
	f->dir[strlen(f->dir) - 2] = '\0';
	assert_int_equal(rm_rf_cb(f->dir), 0);
	free(f);
	return 0;
}

static EVP_PKEY *key_ec(int nid)
{
	EVP_PKEY *pkey = EVP_PKEY_new();
	EC_KEY *ec = EC_KEY_new_by_curve_name(nid);
	assert_true(pkey && ec && EC_KEY_generate_key(ec) && EVP_PKEY_assign_EC_KEY(pkey, ec));
	return pkey;
}

static EVP_PKEY *key_rsa(int bits)
{
	EVP_PKEY *pkey = EVP_PKEY_new();
	RSA *rsa = RSA_new();
	BIGNUM *e = BN_new();
	assert_true(pkey && rsa && e && BN_set_word(e, 65537) &&
		    RSA_generate_key_ex(rsa, bits, e, NULL) && EVP_PKEY_assign_RSA(pkey, rsa));
	BN_free(e);
	return pkey;
}

static EVP_PKEY *key_ed25519(void)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
	EVP_PKEY *pkey = NULL;
	assert_true(ctx && EVP_PKEY_keygen_init(ctx) && EVP_PKEY_keygen(ctx, &pkey));
	EVP_PKEY_CTX_free(ctx);
	return pkey;
}

/* A DER CSR for `key` asking for the given URI SANs and a CN. */
static uint8_t *make_csr(EVP_PKEY *key, const char *const *uris, size_t n, size_t *len)
{
	X509_REQ *req = X509_REQ_new();
	assert_non_null(req);
	assert_true(X509_REQ_set_pubkey(req, key));
	assert_true(X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_UTF8,
					       (const uint8_t *)"evil", -1, -1, 0));
	if (n) {
		GENERAL_NAMES *names = GENERAL_NAMES_new();
		STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
		for (size_t i = 0; i < n; i++) {
			GENERAL_NAME *gn = GENERAL_NAME_new();
			ASN1_IA5STRING *s = ASN1_IA5STRING_new();
			assert_true(ASN1_STRING_set(s, uris[i], -1));
			GENERAL_NAME_set0_value(gn, GEN_URI, s);
			assert_true(sk_GENERAL_NAME_push(names, gn));
		}
		assert_true(X509V3_add1_i2d(&exts, NID_subject_alt_name, names, 0, 0));
		assert_true(X509_REQ_add_extensions(req, exts));
		sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
		GENERAL_NAMES_free(names);
	}
	int is_ed = EVP_PKEY_id(key) == EVP_PKEY_ED25519;
	assert_true(X509_REQ_sign(req, key, is_ed ? NULL : EVP_sha256()));
	uint8_t *der = NULL;
	int l = i2d_X509_REQ(req, &der);
	assert_true(l > 0);
	X509_REQ_free(req);
	*len = (size_t)l;
	return der;
}

static X509 *parse(const struct ca_issued *is)
{
	const uint8_t *p = is->der;
	X509 *x = d2i_X509(NULL, &p, (long)is->der_len);
	assert_non_null(x);
	assert_ptr_equal(p, is->der + is->der_len);
	return x;
}

static int ext_critical(X509 *x, int nid)
{
	int i = X509_get_ext_by_NID(x, nid, -1);
	assert_true(i >= 0);
	assert_int_equal(X509_get_ext_by_NID(x, nid, i), -1); /* only once */
	return X509_EXTENSION_get_critical(X509_get_ext(x, i));
}

static int64_t t_unix(const ASN1_TIME *t)
{
	int d, s;
	ASN1_TIME *e = ASN1_TIME_set(NULL, 0);
	assert_true(ASN1_TIME_diff(&d, &s, e, t));
	ASN1_TIME_free(e);
	return (int64_t)d * 86400 + s;
}

/* Every field of the profile, for the identity the caller authenticated. */
static void check_profile(struct ca *ca, X509 *x, const char *id, time_t now, long ttl)
{
	char got[SPIFFE_ID_MAX + 1];
	assert_int_equal(X509_get_version(x), X509_VERSION_3);
	assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(x)), 0);
	assert_int_equal(svid_spiffe_id(x, got, sizeof(got), NULL), 0);
	assert_string_equal(got, id);
	GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	assert_int_equal(sk_GENERAL_NAME_num(names), 1); /* no DNS, no second URI */
	GENERAL_NAMES_free(names);
	assert_true(ext_critical(x, NID_subject_alt_name));
	assert_true(ext_critical(x, NID_basic_constraints));
	assert_int_equal(X509_check_ca(x), 0);
	assert_true(ext_critical(x, NID_key_usage));
	assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
	assert_false(ext_critical(x, NID_ext_key_usage));
	assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_SERVER | XKU_SSL_CLIENT);
	EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL);
	assert_int_equal(sk_ASN1_OBJECT_num(eku), 2);
	sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
	BIGNUM *serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	assert_true(BN_num_bits(serial) >= 64);
	assert_false(BN_is_negative(serial));
	BN_free(serial);
	int64_t nb = t_unix(X509_get0_notBefore(x)), na = t_unix(X509_get0_notAfter(x));
	assert_in_range(nb, now - 60, now);
	int64_t want = now + ttl < ca_not_after(ca) ? now + ttl : ca_not_after(ca);
	assert_int_equal(na, want);
	/* It chains to the bundle. */
	char id2[SPIFFE_ID_MAX + 1];
	const char *why = NULL;
	assert_int_equal(ca_verify_svid(ca, x, NULL, now, id2, sizeof(id2), &why), 0);
	assert_string_equal(id2, id);
}

static void test_profile(void **state)
{
	struct fx *f = *state;
	EVP_PKEY *k = key_ec(NID_X9_62_prime256v1);
	size_t len;
	uint8_t *csr = make_csr(k, NULL, 0, &len);
	struct ca_issued is;
	enum ca_reason why;
	time_t now = time(NULL);

	assert_int_equal(ca_sign_csr(f->ca, csr, len, ID, 0, now, &is, &why), 0);
	assert_int_equal(why, CA_ER_NONE);
	X509 *x = parse(&is);
	check_profile(f->ca, x, ID, now, CA_TTL_DEFAULT_S);
	assert_int_equal(is.not_after, now + CA_TTL_DEFAULT_S);
	assert_int_equal(strlen(is.serial_hex), 32);
	/* The certificate's key is the CSR's. */
	EVP_PKEY *pub = X509_get_pubkey(x);
	assert_int_equal(EVP_PKEY_cmp(pub, k), 1);
	EVP_PKEY_free(pub);
	X509_free(x);
	ca_issued_cleanup(&is);
	/* Serials differ. */
	struct ca_issued is2;
	assert_int_equal(ca_sign_csr(f->ca, csr, len, ID, 0, now, &is2, &why), 0);
	assert_string_not_equal(is.serial_hex, is2.serial_hex);
	ca_issued_cleanup(&is2);
	OPENSSL_free(csr);
	EVP_PKEY_free(k);
}

static void test_csr_names_ignored(void **state)
{
	struct fx *f = *state;
	EVP_PKEY *k = key_ec(NID_secp384r1);
	const char *uris[] = {"spiffe://example.org/ns/kube-system/sa/admin",
			      "spiffe://evil.org/ns/a/sa/b"};
	size_t len;
	uint8_t *csr = make_csr(k, uris, 2, &len);
	struct ca_issued is;
	enum ca_reason why;
	time_t now = time(NULL);

	assert_int_equal(ca_sign_csr(f->ca, csr, len, ID, 600, now, &is, &why), 0);
	X509 *x = parse(&is);
	check_profile(f->ca, x, ID, now, 600);
	X509_free(x);
	ca_issued_cleanup(&is);
	OPENSSL_free(csr);
	EVP_PKEY_free(k);
}

static void test_rsa_ok(void **state)
{
	struct fx *f = *state;
	EVP_PKEY *k = key_rsa(2048);
	size_t len;
	uint8_t *csr = make_csr(k, NULL, 0, &len);
	struct ca_issued is;
	enum ca_reason why;
	time_t now = time(NULL);

	assert_int_equal(ca_sign_csr(f->ca, csr, len, ID, 0, now, &is, &why), 0);
	X509 *x = parse(&is);
	check_profile(f->ca, x, ID, now, CA_TTL_DEFAULT_S);
	X509_free(x);
	ca_issued_cleanup(&is);
	OPENSSL_free(csr);
	EVP_PKEY_free(k);
}

#define expect_refused(ca, csr, len, want) expect_refused_at(ca, csr, len, want, __LINE__)
static void expect_refused_at(struct ca *ca, const uint8_t *csr, size_t len, enum ca_reason want,
			      int line)
{
	struct ca_issued is = {0};
	enum ca_reason why = CA_ER_NONE;
	if (ca_sign_csr(ca, csr, len, ID, 0, time(NULL), &is, &why) != -EINVAL || why != want)
		fail_msg("line %d: CSR not refused as %s (got %s)", line, ca_reason_name(want),
			 ca_reason_name(why));
	assert_null(is.der);
}

static void test_refusals(void **state)
{
	struct fx *f = *state;
	size_t len;

	EVP_PKEY *weak = key_rsa(1024);
	uint8_t *csr = make_csr(weak, NULL, 0, &len);
	expect_refused(f->ca, csr, len, CA_ER_KEY_WEAK);
	OPENSSL_free(csr);
	EVP_PKEY_free(weak);

	EVP_PKEY *p521 = key_ec(NID_secp521r1);
	csr = make_csr(p521, NULL, 0, &len);
	expect_refused(f->ca, csr, len, CA_ER_KEY_TYPE);
	OPENSSL_free(csr);
	EVP_PKEY_free(p521);

	EVP_PKEY *ed = key_ed25519();
	csr = make_csr(ed, NULL, 0, &len);
	expect_refused(f->ca, csr, len, CA_ER_KEY_TYPE);
	OPENSSL_free(csr);
	EVP_PKEY_free(ed);

	EVP_PKEY *k = key_ec(NID_X9_62_prime256v1);
	csr = make_csr(k, NULL, 0, &len);
	/* Truncated, every length. */
	for (size_t cut = 0; cut < len; cut += 7)
		expect_refused(f->ca, csr, cut, CA_ER_CSR_PARSE);
	/* Trailing bytes. */
	uint8_t *longer = malloc(len + 1);
	memcpy(longer, csr, len);
	longer[len] = 0;
	expect_refused(f->ca, longer, len + 1, CA_ER_CSR_PARSE);
	free(longer);
	/* Garbage. */
	expect_refused(f->ca, (const uint8_t *)"hello, world", 12, CA_ER_CSR_PARSE);
	/* A bad signature: flip the last byte (inside the ECDSA signature's s). */
	csr[len - 1] ^= 0x01;
	expect_refused(f->ca, csr, len, CA_ER_CSR_SIGNATURE);
	csr[len - 1] ^= 0x01;
	/* A CSR claiming one key, signed by another. */
	EVP_PKEY *other = key_ec(NID_X9_62_prime256v1);
	X509_REQ *req = X509_REQ_new();
	assert_non_null(req);
	assert_true(X509_REQ_set_pubkey(req, other));
	assert_true(X509_REQ_sign(req, k, EVP_sha256()));
	uint8_t *forged = NULL;
	int flen = i2d_X509_REQ(req, &forged);
	assert_true(flen > 0);
	expect_refused(f->ca, forged, (size_t)flen, CA_ER_CSR_SIGNATURE);
	OPENSSL_free(forged);
	X509_REQ_free(req);
	EVP_PKEY_free(other);
	OPENSSL_free(csr);
	EVP_PKEY_free(k);
}

static void test_ttl_clamp(void **state)
{
	struct fx *f = *state;
	assert_int_equal(ca_clamp_ttl(f->ca, 0), CA_TTL_DEFAULT_S);
	assert_int_equal(ca_clamp_ttl(f->ca, -5), CA_TTL_DEFAULT_S);
	assert_int_equal(ca_clamp_ttl(f->ca, 10), CA_TTL_MIN_S);
	assert_int_equal(ca_clamp_ttl(f->ca, 7200), 7200);
	assert_int_equal(ca_clamp_ttl(f->ca, 10 * 86400), CA_TTL_MAX_S);
}

/* A loaded root that expires in a day minus a minute: a 24 h request ends
 * at the CA's notAfter; past it the CA refuses. */
static void test_given_root_and_expiry(void **state)
{
	struct fx *f = *state;
	char cpath[128], kpath[128], dir[128];
	EVP_PKEY *rk = testpki_key();
	X509 *root = testpki_root(rk, "given", 1);
	assert_non_null(root);
	snprintf(cpath, sizeof(cpath), "%s/given.crt", f->dir);
	snprintf(kpath, sizeof(kpath), "%s/given.key", f->dir);
	snprintf(dir, sizeof(dir), "%s/g", f->dir);
	BIO *b = BIO_new_file(cpath, "w");
	assert_true(PEM_write_bio_X509(b, root));
	BIO_free(b);
	b = BIO_new_file(kpath, "w");
	assert_true(PEM_write_bio_PrivateKey(b, rk, NULL, NULL, 0, NULL, NULL));
	BIO_free(b);

	struct ca *ca = open_ca(dir, cpath, kpath);
	assert_non_null(ca);
	EVP_PKEY *k = key_ec(NID_X9_62_prime256v1);
	size_t len;
	uint8_t *csr = make_csr(k, NULL, 0, &len);
	struct ca_issued is;
	enum ca_reason why;
	time_t now = time(NULL);
	assert_int_equal(ca_sign_csr(ca, csr, len, ID, CA_TTL_MAX_S, now, &is, &why), 0);
	X509 *x = parse(&is);
	check_profile(ca, x, ID, now, CA_TTL_MAX_S);
	assert_int_equal(is.not_after, ca_not_after(ca));
	assert_true(is.not_after < now + CA_TTL_MAX_S);
	X509_free(x);
	ca_issued_cleanup(&is);
	/* Expired CA. */
	assert_int_equal(ca_sign_csr(ca, csr, len, ID, 0, (time_t)ca_not_after(ca) + 1, &is, &why),
			 -EKEYEXPIRED);
	assert_int_equal(why, CA_ER_CA_EXPIRED);
	ca_free(ca);

	/* A key that does not match the certificate is refused. */
	EVP_PKEY *wrong = testpki_key();
	b = BIO_new_file(kpath, "w");
	assert_true(PEM_write_bio_PrivateKey(b, wrong, NULL, NULL, 0, NULL, NULL));
	BIO_free(b);
	assert_null(open_ca(dir, cpath, kpath));
	/* A leaf (CA:FALSE) given as CA is refused. */
	X509 *leaf = testpki_leaf(root, rk, wrong, NULL, 0, -60, 3600);
	b = BIO_new_file(cpath, "w");
	assert_true(PEM_write_bio_X509(b, leaf) && PEM_write_bio_X509(b, root));
	BIO_free(b);
	assert_null(open_ca(dir, cpath, kpath));
	X509_free(leaf);
	EVP_PKEY_free(wrong);
	OPENSSL_free(csr);
	EVP_PKEY_free(k);
	X509_free(root);
	EVP_PKEY_free(rk);
}

static void test_persistence(void **state)
{
	struct fx *f = *state;
	char path[128];
	struct stat st;
	size_t l1, l2;
	const uint8_t *r1 = ca_bundle_der(f->ca, 0, &l1);

	snprintf(path, sizeof(path), "%s/ca/ca.key", f->dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(stat(f->dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	snprintf(path, sizeof(path), "%s/ca", f->dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(ca_bundle_sequence(f->ca), 1);

	struct ca *again = open_ca(f->dir, NULL, NULL);
	assert_non_null(again);
	assert_int_equal(ca_bundle_len(again), 1);
	const uint8_t *r2 = ca_bundle_der(again, 0, &l2);
	assert_int_equal(l1, l2);
	assert_memory_equal(r1, r2, l1);
	assert_int_equal(ca_bundle_sequence(again), 1);
	ca_free(again);

	/* The root: 10 years, CA:TRUE critical, keyCertSign, URI SAN spiffe://td. */
	const uint8_t *p = r1;
	X509 *root = d2i_X509(NULL, &p, (long)l1);
	assert_non_null(root);
	assert_true(ext_critical(root, NID_basic_constraints));
	assert_int_equal(X509_check_ca(root), 1);
	assert_true(X509_get_key_usage(root) & KU_KEY_CERT_SIGN);
	assert_true(ext_critical(root, NID_key_usage));
	int64_t life = t_unix(X509_get0_notAfter(root)) - t_unix(X509_get0_notBefore(root));
	assert_in_range(life, 3650L * 86400, 3650L * 86400 + 60);
	GENERAL_NAMES *names = X509_get_ext_d2i(root, NID_subject_alt_name, NULL, NULL);
	assert_int_equal(sk_GENERAL_NAME_num(names), 1);
	const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, 0);
	assert_int_equal(gn->type, GEN_URI);
	assert_string_equal((const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier),
			    "spiffe://" TD);
	GENERAL_NAMES_free(names);
	X509_free(root);

	/* A corrupt key file is an error, not a new root. */
	snprintf(path, sizeof(path), "%s/ca/ca.key", f->dir);
	assert_int_equal(fsutil_write_atomic(path, "junk", 4, 0600), 0);
	assert_null(open_ca(f->dir, NULL, NULL));
}

static void test_bundle_json(void **state)
{
	struct fx *f = *state;
	char *s = ca_bundle_json(f->ca);
	assert_non_null(s);
	json_error_t err;
	json_t *doc = json_loads(s, 0, &err);
	assert_non_null(doc);
	assert_int_equal(json_integer_value(json_object_get(doc, "spiffe_sequence")), 1);
	json_t *keys = json_object_get(doc, "keys");
	assert_int_equal(json_array_size(keys), 1);
	json_t *k = json_array_get(keys, 0);
	assert_string_equal(json_string_value(json_object_get(k, "use")), "x509-svid");
	assert_string_equal(json_string_value(json_object_get(k, "kty")), "EC");
	assert_string_equal(json_string_value(json_object_get(k, "crv")), "P-256");
	assert_int_equal(strlen(json_string_value(json_object_get(k, "x"))), 43);
	assert_int_equal(strlen(json_string_value(json_object_get(k, "y"))), 43);
	const char *x5c = json_string_value(json_array_get(json_object_get(k, "x5c"), 0));
	assert_non_null(x5c);
	uint8_t buf[4096];
	size_t n, l;
	assert_true(EVP_DecodeBase64(buf, &n, sizeof(buf), (const uint8_t *)x5c, strlen(x5c)));
	const uint8_t *der = ca_bundle_der(f->ca, 0, &l);
	assert_int_equal(n, l);
	assert_memory_equal(buf, der, l);
	json_decref(doc);
	free(s);
}

/* Renewal refuses a certificate from a foreign root, an expired SVID and a
 * CA certificate. */
static void test_verify_svid_negative(void **state)
{
	struct fx *f = *state;
	char id[SPIFFE_ID_MAX + 1];
	const char *why = NULL;
	const char *uris[] = {ID};
	EVP_PKEY *rk = testpki_key(), *lk = testpki_key();
	X509 *foreign = testpki_root(rk, "foreign", 1);
	X509 *leaf = testpki_leaf(foreign, rk, lk, uris, 1, -60, 3600);
	assert_int_equal(ca_verify_svid(f->ca, leaf, NULL, time(NULL), id, sizeof(id), &why),
			 -EPERM);
	assert_non_null(why);
	X509_free(leaf);

	size_t len;
	uint8_t *csr = make_csr(lk, NULL, 0, &len);
	struct ca_issued is;
	enum ca_reason r;
	time_t now = time(NULL);
	assert_int_equal(ca_sign_csr(f->ca, csr, len, ID, 0, now, &is, &r), 0);
	X509 *x = parse(&is);
	assert_int_equal(
		ca_verify_svid(f->ca, x, NULL, now + CA_TTL_DEFAULT_S + 5, id, sizeof(id), &why),
		-EPERM);
	X509_free(x);
	ca_issued_cleanup(&is);
	/* The root itself is not an SVID. */
	size_t rl;
	const uint8_t *rd = ca_bundle_der(f->ca, 0, &rl);
	X509 *root = d2i_X509(NULL, &rd, (long)rl);
	assert_int_equal(ca_verify_svid(f->ca, root, NULL, now, id, sizeof(id), &why), -EPERM);
	X509_free(root);
	OPENSSL_free(csr);
	X509_free(foreign);
	EVP_PKEY_free(rk);
	EVP_PKEY_free(lk);
}

static void test_server_cert(void **state)
{
	struct fx *f = *state;
	const char *dns[] = {"localhost"}, *ips[] = {"127.0.0.1", "::1"}, *bad[] = {"x"};
	X509 *cert;
	EVP_PKEY *key;
	assert_int_equal(ca_issue_server(f->ca, "spiffe://" TD "/ns/cinch-system/sa/cinch-control",
					 dns, 1, ips, 2, 86400, &cert, &key),
			 0);
	assert_int_equal(X509_check_host(cert, "localhost", 9, 0, NULL), 1);
	assert_int_equal(X509_check_ip_asc(cert, "127.0.0.1", 0), 1);
	assert_int_equal(X509_check_private_key(cert, key), 1);
	X509_free(cert);
	EVP_PKEY_free(key);
	assert_int_equal(
		ca_issue_server(f->ca, "spiffe://" TD "/x", dns, 1, bad, 1, 60, &cert, &key),
		-EINVAL);
}

static void test_bad_config(void **state)
{
	struct fx *f = *state;
	struct ca *ca = NULL;
	const char *why = NULL;
	struct ca_config cfg = {.trust_domain = "Bad_TD", .state_dir = f->dir};
	assert_int_equal(ca_open(&cfg, &ca, &why), -EINVAL);
	cfg.trust_domain = TD;
	cfg.ttl_min_s = 60; /* under even the test minimum */
	assert_int_equal(ca_open(&cfg, &ca, &why), -EINVAL);
	cfg.ttl_min_s = 0;
	cfg.ttl_max_s = 2 * 86400;
	assert_int_equal(ca_open(&cfg, &ca, &why), -EINVAL);
	cfg.ttl_max_s = 0;
	cfg.cert_path = "/nonexistent";
	assert_int_equal(ca_open(&cfg, &ca, &why), -EINVAL);
	assert_null(ca);
}

/* Signs a fresh P-256 key for ID with `ca`; the leaf (new reference). */
static X509 *issue(struct ca *ca, time_t now)
{
	EVP_PKEY *k = key_ec(NID_X9_62_prime256v1);
	struct ca_issued is;
	enum ca_reason why;
	size_t len;
	uint8_t *csr = make_csr(k, NULL, 0, &len);

	assert_int_equal(ca_sign_csr(ca, csr, len, ID, 0, now, &is, &why), 0);
	X509 *x = parse(&is);
	ca_issued_cleanup(&is);
	OPENSSL_free(csr);
	EVP_PKEY_free(k);
	return x;
}

static X509 *root_at(struct ca *ca, size_t i)
{
	size_t len;
	const uint8_t *p = ca_bundle_der(ca, i, &len);
	X509 *x = d2i_X509(NULL, &p, (long)len);
	assert_non_null(x);
	return x;
}

static int signed_by(X509 *leaf, X509 *root)
{
	EVP_PKEY *pub = X509_get_pubkey(root);
	int ok = X509_verify(leaf, pub) == 1;
	EVP_PKEY_free(pub);
	ERR_clear_error();
	return ok;
}

static int verifies(struct ca *ca, X509 *leaf, time_t now)
{
	char id[SPIFFE_ID_MAX + 1];
	const char *why = NULL;
	return ca_verify_svid(ca, leaf, NULL, now, id, sizeof(id), &why) == 0;
}

static int rotate(struct fx *f, enum ca_rotate_step step, time_t now)
{
	struct ca_config cfg = {.trust_domain = TD, .state_dir = f->dir};
	const char *why = NULL;
	return ca_rotate(&cfg, step, now, &why);
}

/* What ca_root_info says of the bundle's two roots, in bundle order:
 * "signer", "next" or "old" each. */
static void assert_roles(const struct ca *ca, const char *r0, const char *r1)
{
	const char *want[2] = {r0, r1};
	struct ca_root_info ri;

	assert_int_equal(ca_bundle_len(ca), 2);
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(ca_root_info(ca, i, &ri), 0);
		assert_string_equal(ri.signer ? "signer" : ri.next ? "next" : "old", want[i]);
		assert_true(ri.not_before < ri.not_after);
		assert_true(ri.not_after > (int64_t)time(NULL) + 86400);
		assert_non_null(strstr(ri.subject, "CN="));
	}
	assert_int_equal(ca_root_info(ca, 2, &ri), -EINVAL);
}

/* prepare -> activate -> retire: the bundle grows before the signer
 * changes, what the old root signed verifies until it is retired, and
 * every step survives a reopen. */
static void test_rotation(void **state)
{
	struct fx *f = *state;
	time_t now = time(NULL);
	X509 *old_leaf = issue(f->ca, now);
	uint64_t seq = ca_bundle_sequence(f->ca);

	assert_int_equal(rotate(f, CA_ROTATE_ACTIVATE, now), -ENOENT);
	assert_int_equal(rotate(f, CA_ROTATE_RETIRE, now), -EALREADY);
	assert_int_equal(rotate(f, CA_ROTATE_PREPARE, now), 0);
	assert_int_equal(rotate(f, CA_ROTATE_PREPARE, now), -EEXIST);
	struct ca *ca = open_ca(f->dir, NULL, NULL);
	assert_non_null(ca);
	assert_int_equal(ca_bundle_len(ca), 2);
	assert_int_equal(ca_bundle_sequence(ca), seq + 1);
	assert_true(ca_rotation_prepared(ca));
	X509 *old_root = root_at(f->ca, 0);
	X509 *mid_leaf = issue(ca, now);
	assert_true(signed_by(mid_leaf, old_root)); /* still the old root signing */
	assert_true(verifies(ca, old_leaf, now));
	assert_roles(ca, "signer", "next");
	ca_free(ca);

	assert_int_equal(rotate(f, CA_ROTATE_ACTIVATE, now + 5), 0);
	ca = open_ca(f->dir, NULL, NULL);
	assert_non_null(ca);
	assert_false(ca_rotation_prepared(ca));
	assert_int_equal(ca_activated_at(ca), now + 5);
	assert_int_equal(ca_bundle_len(ca), 2);
	assert_int_equal(ca_bundle_sequence(ca), seq + 1);
	X509 *new_leaf = issue(ca, now);
	assert_false(signed_by(new_leaf, old_root)); /* the new root signs now */
	assert_true(verifies(ca, old_leaf, now));    /* the old root still trusted */
	assert_true(verifies(ca, new_leaf, now));
	assert_roles(ca, "old", "signer");
	ca_free(ca);

	assert_int_equal(rotate(f, CA_ROTATE_RETIRE, now), 0);
	assert_int_equal(rotate(f, CA_ROTATE_RETIRE, now), -EALREADY);
	ca = open_ca(f->dir, NULL, NULL);
	assert_non_null(ca);
	assert_int_equal(ca_bundle_len(ca), 1);
	assert_int_equal(ca_bundle_sequence(ca), seq + 2);
	assert_int_equal(ca_activated_at(ca), 0);
	assert_false(verifies(ca, old_leaf, now));
	assert_true(verifies(ca, new_leaf, now));
	ca_free(ca);

	/* with a given root there is nothing of ours to rotate */
	struct ca_config given = {.trust_domain = TD,
				  .state_dir = f->dir,
				  .cert_path = "/nonexistent",
				  .key_path = "/nonexistent"};
	const char *why = NULL;
	assert_int_equal(ca_rotate(&given, CA_ROTATE_PREPARE, now, &why), -ENOTSUP);
	X509_free(old_root);
	X509_free(old_leaf);
	X509_free(mid_leaf);
	X509_free(new_leaf);
}

/* A crash inside ACTIVATE, between renaming the key and the certificate:
 * the next start completes it. */
static void test_rotation_crash(void **state)
{
	struct fx *f = *state;
	char from[128], to[128];

	assert_int_equal(rotate(f, CA_ROTATE_PREPARE, time(NULL)), 0);
	snprintf(from, sizeof(from), "%s/ca/next.key", f->dir);
	snprintf(to, sizeof(to), "%s/ca/ca.key", f->dir);
	assert_int_equal(rename(from, to), 0);
	struct ca *ca = open_ca(f->dir, NULL, NULL);
	assert_non_null(ca);
	assert_false(ca_rotation_prepared(ca));
	assert_int_equal(ca_bundle_len(ca), 2);
	X509 *leaf = issue(ca, time(NULL)), *old_root = root_at(f->ca, 0);
	assert_true(verifies(ca, leaf, time(NULL)));
	assert_false(signed_by(leaf, old_root)); /* the new root signs */
	X509_free(old_root);
	X509_free(leaf);
	ca_free(ca);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_profile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_csr_names_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rsa_ok, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ttl_clamp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_given_root_and_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_persistence, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bundle_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_svid_negative, setup, teardown),
		cmocka_unit_test_setup_teardown(test_server_cert, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rotation_crash, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
