/* svid_test: reading the SPIFFE ID out of certificates made at test time by
 * tests/lib/testpki: exactly one URI SAN that is a SPIFFE ID is accepted;
 * none, two, or a non-SPIFFE URI are refused with a reason. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "spiffe.h"
#include "svid.h"
#include "testpki.h"

struct pki {
	EVP_PKEY *ca_key, *leaf_key;
	X509 *ca;
};

static int pki_setup(void **state)
{
	static struct pki p;
	p.ca_key = testpki_key();
	p.leaf_key = testpki_key();
	p.ca = testpki_root(p.ca_key, "svid test root", 1);
	*state = &p;
	return p.ca_key && p.leaf_key && p.ca ? 0 : -1;
}

static int pki_teardown(void **state)
{
	struct pki *p = *state;
	X509_free(p->ca);
	EVP_PKEY_free(p->ca_key);
	EVP_PKEY_free(p->leaf_key);
	return 0;
}

/* Issues a leaf with `uris` and returns what svid_spiffe_id() says. */
static int leaf_id(struct pki *p, const char *const *uris, size_t n, char *out, size_t outlen,
		   const char **why)
{
	X509 *leaf = testpki_leaf(p->ca, p->ca_key, p->leaf_key, uris, n, -60, 3600);
	assert_non_null(leaf);
	int rc = svid_spiffe_id(leaf, out, outlen, why);
	X509_free(leaf);
	return rc;
}

static void test_one_uri(void **state)
{
	static const char *const uris[] = {"spiffe://cluster.local/ns/shop/sa/web"};
	char id[SPIFFE_ID_MAX + 1];

	assert_int_equal(leaf_id(*state, uris, 1, id, sizeof(id), NULL), 0);
	assert_string_equal(id, uris[0]);
}

static void test_refusals(void **state)
{
	static const char *const two[] = {"spiffe://td/ns/a/sa/b", "spiffe://td/ns/c/sa/d"};
	static const char *const http[] = {"https://td/ns/a/sa/b"};
	static const char *const wild[] = {"spiffe://td/ns/a/sa/*"};
	char id[SPIFFE_ID_MAX + 1];
	const char *why = NULL;

	assert_int_equal(leaf_id(*state, NULL, 0, id, sizeof(id), &why), -EBADMSG);
	assert_string_equal(why, "certificate has no subjectAltName");
	assert_int_equal(leaf_id(*state, two, 2, id, sizeof(id), &why), -EBADMSG);
	assert_string_equal(why, "certificate has more than one URI SAN");
	assert_int_equal(leaf_id(*state, http, 1, id, sizeof(id), &why), -EBADMSG);
	assert_string_equal(why, "does not start with spiffe://");
	assert_int_equal(leaf_id(*state, wild, 1, id, sizeof(id), &why), -EBADMSG);
	assert_string_equal(why, "path may only hold A-Z, a-z, 0-9, '.', '-', '_' and '/'");
}

static void test_small_buffer(void **state)
{
	static const char *const uris[] = {"spiffe://cluster.local/ns/shop/sa/web"};
	char id[8];
	const char *why = NULL;

	assert_int_equal(leaf_id(*state, uris, 1, id, sizeof(id), &why), -ENOSPC);
}

/* Certificate times as Unix seconds, both the UTCTime and the
 * GeneralizedTime encodings (RFC 5280 4.1.2.5: 2050 and later). */
static void test_time_unix(void **state)
{
	static const char *const uris[] = {"spiffe://cluster.local/ns/shop/sa/web"};
	struct pki *p = *state;
	X509 *leaf = testpki_leaf(p->ca, p->ca_key, p->leaf_key, uris, 1, -60, 3600);
	ASN1_TIME *t = ASN1_TIME_set(NULL, 2524608000); /* 2050-01-01T00:00:00Z */
	int64_t nb = 0, na = 0, later = 0;
	time_t now = time(NULL);

	assert_non_null(leaf);
	assert_int_equal(svid_time_unix(X509_get0_notBefore(leaf), &nb), 0);
	assert_int_equal(svid_time_unix(X509_get0_notAfter(leaf), &na), 0);
	assert_true(nb >= now - 61 && nb <= now - 59);
	assert_int_equal(na - nb, 3600); /* testpki: lifetime counted from notBefore */
	assert_int_equal(svid_time_unix(t, &later), 0);
	assert_int_equal(later, 2524608000);
	assert_int_equal(svid_time_unix(NULL, &later), -EINVAL);
	ASN1_TIME_free(t);
	X509_free(leaf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_uri),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_small_buffer),
		cmocka_unit_test(test_time_unix),
	};
	return cmocka_run_group_tests(tests, pki_setup, pki_teardown);
}
