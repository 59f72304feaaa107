/* certverify_test: the one chain verifier. A good leaf verifies; an
 * expired or not yet valid one fails with its X509_V_ERR code (and passes
 * with ignore_time, the check of a chain's shape only); a leaf of another
 * root fails; a leaf under an intermediate verifies with the intermediate
 * given and fails without it; a leaf for servers only fails when verified
 * as a client and passes as a server; the time to verify at is honoured;
 * a store is shared by many calls. The memo answers as certverify does for
 * every chain, purpose and time (run twice, so that its remembered chains
 * answer: a chain that verified now is still refused at a time outside
 * its path's window, for another purpose, without its intermediate, or by
 * a memo over another store); refusals and time-ignoring checks are not
 * remembered; its table stays bounded. */
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
#include "svid.h"
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

/* One verification through the memo and the same without it agree. */
static void agree(struct certverify_memo *m, X509_STORE *store, X509 *l, STACK_OF(X509) * untrusted,
		  const struct certverify_opts *o)
{
	int want_err = -1, got_err = -2;
	int want = certverify(store, l, untrusted, o, &want_err);

	assert_int_equal(certverify_memo_verify(m, l, untrusted, o, &got_err), want);
	assert_int_equal(got_err, want_err);
}

static void test_memo_agrees(void **state)
{
	X509 *good = leaf(pki.root, pki.root_key, -60, 3600);
	X509 *under = leaf(pki.inter, pki.inter_key, -60, 3600);
	X509 *servers = leaf(pki.root, pki.root_key, -60, 3600);
	X509 *foreign = leaf(pki.other, pki.other_key, -60, 3600);
	/* outlives the root (a day): the path's window ends with the root */
	X509 *longer = leaf(pki.root, pki.root_key, -60, 10 * 86400);
	STACK_OF(X509) *with_inter = sk_X509_new_null(), *none = NULL;
	X509_STORE *store = certverify_store_new(pki.roots);
	struct certverify_memo *m = certverify_memo_new(store);
	int64_t now = (int64_t)time(NULL), nb, na;
	assert_int_equal(svid_time_unix(X509_get0_notBefore(good), &nb), 0);
	assert_int_equal(svid_time_unix(X509_get0_notAfter(good), &na), 0);
	/* now; later and earlier; the edges of good's validity, each second */
	const int64_t at[] = {now,    now + 1800, now + 7200, now - 3600, now + 2 * 86400,
			      nb - 1, nb,	  nb + 1,     na - 1,	  na,
			      na + 1, na - 1,	  now};
	const int purposes[] = {0, X509_PURPOSE_SSL_CLIENT, X509_PURPOSE_SSL_SERVER};
	struct {
		X509 *leaf;
		STACK_OF(X509) * *untrusted;
	} cases[] = {{good, &none},    {under, &with_inter}, {under, &none},
		     {servers, &none}, {foreign, &none},     {longer, &none}};
	uint64_t hits, misses;

	assert_non_null(store);
	assert_non_null(m);
	assert_int_equal(testpki_set_eku(servers, pki.root, pki.root_key, "serverAuth"), 0);
	sk_X509_push(with_inter, under);
	sk_X509_push(with_inter, pki.inter);
	for (size_t t = 0; t < sizeof(at) / sizeof(at[0]); t++)
		for (size_t p = 0; p < sizeof(purposes) / sizeof(purposes[0]); p++)
			for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
				for (int twice = 0; twice < 2; twice++) {
					struct certverify_opts o = {.purpose = purposes[p],
								    .at = at[t]};
					agree(m, store, cases[c].leaf, *cases[c].untrusted, &o);
				}
	certverify_memo_counts(m, &hits, &misses);
	assert_true(hits > 0); /* the second of each pair that verified */
	/* the chain that verified in this memo, in a memo over another root */
	STACK_OF(X509) *others = sk_X509_new_null();
	X509_up_ref(pki.other);
	sk_X509_push(others, pki.other);
	X509_STORE *other_store = certverify_store_new(others);
	struct certverify_memo *m2 = certverify_memo_new(other_store);
	X509_STORE_free(other_store); /* the memo holds its own reference */
	int err = X509_V_OK;
	assert_int_equal(certverify_memo_verify(m2, good, NULL, NULL, &err), -EINVAL);
	assert_int_equal(err, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
	assert_int_equal(certverify_memo_verify(m2, foreign, NULL, NULL, &err), 0);
	/* a memo over no store trusts nothing */
	struct certverify_memo *m3 = certverify_memo_new(NULL);
	assert_int_equal(certverify_memo_verify(m3, good, NULL, NULL, &err), -EINVAL);
	certverify_memo_free(m3);
	certverify_memo_free(m2);
	sk_X509_pop_free(others, X509_free);
	certverify_memo_free(m);
	X509_STORE_free(store);
	sk_X509_free(with_inter);
	X509_free(good);
	X509_free(under);
	X509_free(servers);
	X509_free(foreign);
	X509_free(longer);
}

static void test_memo_remembers(void **state)
{
	X509 *good = leaf(pki.root, pki.root_key, -60, 3600);
	X509 *old = leaf(pki.root, pki.root_key, -7200, 3600);
	X509 *foreign = leaf(pki.other, pki.other_key, -60, 3600);
	X509_STORE *store = certverify_store_new(pki.roots);
	struct certverify_memo *m = certverify_memo_new(store);
	struct certverify_opts shape = {.ignore_time = 1};
	uint64_t hits, misses;
	int err = -1;

	X509_STORE_free(store);
	assert_non_null(m);
	/* a chain that verified answers from the memo the second time */
	assert_int_equal(certverify_memo_verify(m, good, NULL, NULL, &err), 0);
	assert_int_equal(certverify_memo_verify(m, good, NULL, NULL, &err), 0);
	assert_int_equal(err, X509_V_OK);
	certverify_memo_counts(m, &hits, &misses);
	assert_int_equal(hits, 1);
	assert_int_equal(misses, 1);
	/* a refusal is verified again each time, with its own code */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(certverify_memo_verify(m, foreign, NULL, NULL, &err), -EINVAL);
		assert_int_equal(err, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
	}
	/* a check of shape only (times ignored) passes an expired leaf and
	 * leaves nothing behind for a check with times */
	assert_int_equal(certverify_memo_verify(m, old, NULL, &shape, &err), 0);
	assert_int_equal(certverify_memo_verify(m, old, NULL, NULL, &err), -EINVAL);
	assert_int_equal(err, X509_V_ERR_CERT_HAS_EXPIRED);
	certverify_memo_counts(m, &hits, &misses);
	assert_int_equal(hits, 1);
	assert_int_equal(misses, 4);
	certverify_memo_free(m);
	X509_free(good);
	X509_free(old);
	X509_free(foreign);
}

/* Many peers' chains: each verifies; the table keeps at most its slots. */
static void test_memo_bounded(void **state)
{
	enum { N = 4 * CERTVERIFY_MEMO_SLOTS };
	X509 *l[N];
	X509_STORE *store = certverify_store_new(pki.roots);
	struct certverify_memo *m = certverify_memo_new(store);
	uint64_t hits, misses;

	X509_STORE_free(store);
	for (int i = 0; i < N; i++)
		l[i] = leaf(pki.root, pki.root_key, -60, 3600 + i);
	for (int round = 0; round < 2; round++)
		for (int i = 0; i < N; i++)
			assert_int_equal(certverify_memo_verify(m, l[i], NULL, NULL, NULL), 0);
	certverify_memo_counts(m, &hits, &misses);
	assert_int_equal(hits + misses, 2 * N);
	assert_true(hits <= CERTVERIFY_MEMO_SLOTS);
	for (int i = 0; i < N; i++)
		X509_free(l[i]);
	certverify_memo_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),	     cmocka_unit_test(test_expired),
		cmocka_unit_test(test_wrong_root),   cmocka_unit_test(test_intermediate),
		cmocka_unit_test(test_wrong_usage),  cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_memo_agrees),  cmocka_unit_test(test_memo_remembers),
		cmocka_unit_test(test_memo_bounded),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
