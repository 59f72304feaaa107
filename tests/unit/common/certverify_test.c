/* certverify_test: the one chain verifier. A good leaf verifies; an
 * expired or not yet valid one fails with its X509_V_ERR code (and passes
 * with ignore_time, the check of a chain's shape only); a leaf of another
 * root fails; a leaf under an intermediate verifies with the intermediate
 * given and fails without it; a leaf for servers only fails when verified
 * as a client and passes as a server; the time to verify at is honoured;
 * a store is shared by many calls. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certverify.h"
#include "testpki.h"

#define WEB "spiffe://cluster.local/ns/shop/sa/web"

static struct {
	EVP_PKEY *root_key, *other_key, *inter_key, *leaf_key;
	X509 *root, *other, *inter;
	STACK_OF(X509) * roots;
} pki;

static int setup(void **state)
{
	pki.root_key = testpki_key();
	pki.other_key = testpki_key();
	pki.inter_key = testpki_key();
	pki.leaf_key = testpki_key();
	pki.root = testpki_root(pki.root_key, "certverify root", 1);
	pki.other = testpki_root(pki.other_key, "another root", 1);
	pki.inter = testpki_intermediate(pki.root, pki.root_key, pki.inter_key, "intermediate");
	pki.roots = sk_X509_new_null();
	if (!pki.root || !pki.other || !pki.inter || !pki.roots)
		return -1;
	X509_up_ref(pki.root);
	sk_X509_push(pki.roots, pki.root);
	return 0;
}

static int teardown(void **state)
{
	sk_X509_pop_free(pki.roots, X509_free);
	X509_free(pki.root);
	X509_free(pki.other);
	X509_free(pki.inter);
	EVP_PKEY_free(pki.root_key);
	EVP_PKEY_free(pki.other_key);
	EVP_PKEY_free(pki.inter_key);
	EVP_PKEY_free(pki.leaf_key);
	return 0;
}

static X509 *leaf(X509 *ca, EVP_PKEY *ca_key, long not_before, long lifetime)
{
	const char *sans[] = {WEB};
	X509 *l = testpki_leaf(ca, ca_key, pki.leaf_key, sans, 1, not_before, lifetime);
	assert_non_null(l);
	return l;
}

static void test_good(void **state)
{
	X509 *l = leaf(pki.root, pki.root_key, -60, 3600);
	int err = -1;

	assert_int_equal(certverify_roots(pki.roots, l, NULL, NULL, &err), 0);
	assert_int_equal(err, X509_V_OK);
	/* one store, many calls */
	X509_STORE *store = certverify_store_new(pki.roots);
	assert_non_null(store);
	for (int i = 0; i < 3; i++)
		assert_int_equal(certverify(store, l, NULL, NULL, NULL), 0);
	X509_STORE_free(store);
	X509_free(l);
}

static void test_expired(void **state)
{
	X509 *old = leaf(pki.root, pki.root_key, -7200, 3600);
	X509 *early = leaf(pki.root, pki.root_key, 3600, 3600);
	struct certverify_opts shape = {.ignore_time = 1};
	int err = X509_V_OK;

	assert_int_equal(certverify_roots(pki.roots, old, NULL, NULL, &err), -EINVAL);
	assert_int_equal(err, X509_V_ERR_CERT_HAS_EXPIRED);
	assert_non_null(certverify_error_string(err));
	assert_int_equal(certverify_roots(pki.roots, early, NULL, NULL, &err), -EINVAL);
	assert_int_equal(err, X509_V_ERR_CERT_NOT_YET_VALID);
	assert_int_equal(certverify_roots(pki.roots, old, NULL, &shape, &err), 0);
	assert_int_equal(certverify_roots(pki.roots, early, NULL, &shape, &err), 0);
	/* the time to verify at: a good leaf two hours from now has expired */
	X509 *now = leaf(pki.root, pki.root_key, -60, 3600);
	struct certverify_opts later = {.at = (int64_t)time(NULL) + 7200};
	assert_int_equal(certverify_roots(pki.roots, now, NULL, NULL, &err), 0);
	assert_int_equal(certverify_roots(pki.roots, now, NULL, &later, &err), -EINVAL);
	assert_int_equal(err, X509_V_ERR_CERT_HAS_EXPIRED);
	X509_free(now);
	X509_free(old);
	X509_free(early);
}

static void test_wrong_root(void **state)
{
	X509 *l = leaf(pki.other, pki.other_key, -60, 3600);
	struct certverify_opts shape = {.ignore_time = 1};
	int err = X509_V_OK;

	assert_int_equal(certverify_roots(pki.roots, l, NULL, NULL, &err), -EINVAL);
	assert_int_equal(err, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
	/* ignoring time does not ignore the issuer */
	assert_int_equal(certverify_roots(pki.roots, l, NULL, &shape, &err), -EINVAL);
	/* the other root itself, offered as an untrusted intermediate, does not help */
	STACK_OF(X509) *untrusted = sk_X509_new_null();
	sk_X509_push(untrusted, pki.other);
	assert_int_equal(certverify_roots(pki.roots, l, untrusted, NULL, &err), -EINVAL);
	sk_X509_free(untrusted);
	/* nothing trusted at all */
	assert_int_equal(certverify_roots(NULL, l, NULL, NULL, &err), -EINVAL);
	X509_free(l);
}

static void test_intermediate(void **state)
{
	X509 *l = leaf(pki.inter, pki.inter_key, -60, 3600);
	STACK_OF(X509) *untrusted = sk_X509_new_null();
	int err = X509_V_OK;

	/* without the intermediate: no path to the root */
	assert_int_equal(certverify_roots(pki.roots, l, NULL, NULL, &err), -EINVAL);
	assert_int_equal(err, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
	/* with it (and the leaf among the untrusted, as a peer sends it) */
	sk_X509_push(untrusted, l);
	sk_X509_push(untrusted, pki.inter);
	assert_int_equal(certverify_roots(pki.roots, l, untrusted, NULL, &err), 0);
	/* an intermediate alone in the store is no trust anchor (partial
	 * chains are off): the path must end at a root */
	STACK_OF(X509) *inter_only = sk_X509_new_null();
	sk_X509_push(inter_only, pki.inter);
	assert_int_equal(certverify_roots(inter_only, l, NULL, NULL, &err), -EINVAL);
	sk_X509_free(inter_only);
	sk_X509_free(untrusted);
	X509_free(l);
}

static void test_wrong_usage(void **state)
{
	X509 *l = leaf(pki.root, pki.root_key, -60, 3600);
	struct certverify_opts as_client = {.purpose = X509_PURPOSE_SSL_CLIENT};
	struct certverify_opts as_server = {.purpose = X509_PURPOSE_SSL_SERVER};
	int err = X509_V_OK;

	assert_int_equal(testpki_set_eku(l, pki.root, pki.root_key, "serverAuth"), 0);
	assert_int_equal(certverify_roots(pki.roots, l, NULL, &as_server, &err), 0);
	assert_int_equal(certverify_roots(pki.roots, l, NULL, &as_client, &err), -EINVAL);
	assert_int_equal(err, X509_V_ERR_INVALID_PURPOSE);
	/* any purpose: the usage is not looked at */
	assert_int_equal(certverify_roots(pki.roots, l, NULL, NULL, &err), 0);
	X509_free(l);
	/* a fresh one: BoringSSL caches a certificate's decoded extensions */
	l = leaf(pki.root, pki.root_key, -60, 3600);
	assert_int_equal(testpki_set_eku(l, pki.root, pki.root_key, "clientAuth"), 0);
	assert_int_equal(certverify_roots(pki.roots, l, NULL, &as_server, &err), -EINVAL);
	assert_int_equal(certverify_roots(pki.roots, l, NULL, &as_client, &err), 0);
	X509_free(l);
}

static void test_bad_input(void **state)
{
	int err = X509_V_OK;

	assert_int_equal(certverify(NULL, pki.root, NULL, NULL, &err), -EINVAL);
	X509_STORE *store = certverify_store_new(pki.roots);
	assert_int_equal(certverify(store, NULL, NULL, NULL, &err), -EINVAL);
	X509_STORE_free(store);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),	     cmocka_unit_test(test_expired),
		cmocka_unit_test(test_wrong_root),   cmocka_unit_test(test_intermediate),
		cmocka_unit_test(test_wrong_usage), cmocka_unit_test(test_bad_input),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
