/* certverify: see certverify.h. X509_STORE_CTX is set up here and nowhere
 * else: the roots, the untrusted chain, the purpose, the time, and a
 * verify callback only when times are to be ignored. The memo keeps, for
 * each chain that verified, the window of time its whole path is valid in
 * (the latest notBefore and the earliest notAfter of the path X509_verify_cert
 * built, roots included). */
#include "certverify.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/sha.h>

#include "svid.h"

X509_STORE *certverify_store_new(STACK_OF(X509) * roots)
{
	X509_STORE *store = X509_STORE_new();

	for (size_t i = 0; store && roots && i < sk_X509_num(roots); i++)
		if (!X509_STORE_add_cert(store, sk_X509_value(roots, i))) {
			X509_STORE_free(store);
			store = NULL;
		}
	ERR_clear_error();
	return store;
}

/* Expiry and not-yet-valid pass; every other error stands. */
static int certverify_ignore_time_cb(int ok, X509_STORE_CTX *vc)
{
	int err = X509_STORE_CTX_get_error(vc);

	return ok || err == X509_V_ERR_CERT_HAS_EXPIRED || err == X509_V_ERR_CERT_NOT_YET_VALID;
}

/* The window [latest notBefore, earliest notAfter] of the path vc built;
 * an empty one (nothing is ever in it) when a time cannot be read. */
static void certverify_window(X509_STORE_CTX *vc, int64_t window[2])
{
	STACK_OF(X509) *path = X509_STORE_CTX_get0_chain(vc);

	window[0] = INT64_MIN;
	window[1] = INT64_MAX;
	for (size_t i = 0; i < sk_X509_num(path); i++) {
		X509 *x = sk_X509_value(path, i);
		int64_t nb, na;

		if (svid_time_unix(X509_get0_notBefore(x), &nb) < 0 ||
		    svid_time_unix(X509_get0_notAfter(x), &na) < 0) {
			window[0] = INT64_MAX;
			window[1] = INT64_MIN;
			return;
		}
		window[0] = nb > window[0] ? nb : window[0];
		window[1] = na < window[1] ? na : window[1];
	}
}

/* certverify, and on success the path's window when window is not NULL. */
static int certverify_path(X509_STORE *store, X509 *leaf, STACK_OF(X509) * untrusted,
			   const struct certverify_opts *o, int *err, int64_t window[2])
{
	static const struct certverify_opts defaults;
	X509_STORE_CTX *vc = X509_STORE_CTX_new();
	int rc = -ENOMEM, e = X509_V_OK;

	if (!o)
		o = &defaults;
	if (!store || !leaf) {
		rc = -EINVAL;
		e = X509_V_ERR_UNSPECIFIED;
		goto out;
	}
	if (!vc || !X509_STORE_CTX_init(vc, store, leaf, untrusted))
		goto out;
	if (o->purpose && !X509_STORE_CTX_set_purpose(vc, o->purpose))
		goto out;
	if (o->at)
		X509_STORE_CTX_set_time(vc, 0, (time_t)o->at);
	if (o->ignore_time)
		X509_STORE_CTX_set_verify_cb(vc, certverify_ignore_time_cb);
	if (X509_verify_cert(vc) == 1) {
		rc = 0;
		if (window)
			certverify_window(vc, window);
	} else {
		rc = -EINVAL;
		e = X509_STORE_CTX_get_error(vc);
		if (e == X509_V_OK)
			e = X509_V_ERR_UNSPECIFIED;
	}
out:
	if (err)
		*err = e;
	X509_STORE_CTX_free(vc);
	ERR_clear_error();
	return rc;
}

int certverify(X509_STORE *store, X509 *leaf, STACK_OF(X509) * untrusted,
	       const struct certverify_opts *o, int *err)
{
	return certverify_path(store, leaf, untrusted, o, err, NULL);
}

int certverify_roots(STACK_OF(X509) * roots, X509 *leaf, STACK_OF(X509) * untrusted,
		     const struct certverify_opts *o, int *err)
{
	X509_STORE *store = certverify_store_new(roots);
	int rc;

	if (!store) {
		if (err)
			*err = X509_V_ERR_OUT_OF_MEM;
		return -ENOMEM;
	}
	rc = certverify(store, leaf, untrusted, o, err);
	X509_STORE_free(store);
	return rc;
}

const char *certverify_error_string(int err)
{
	return X509_verify_cert_error_string(err);
}

/* ---- the memo */

struct certverify_memo_slot {
	uint8_t key[SHA256_DIGEST_LENGTH];
	int64_t window[2]; /* Unix seconds: latest notBefore, earliest notAfter */
	int used;
};

struct certverify_memo {
	X509_STORE *store;    /* its own reference */
	pthread_mutex_t lock; /* slot, hits, misses */
	struct certverify_memo_slot slot[CERTVERIFY_MEMO_SLOTS];
	uint64_t hits, misses;
};

struct certverify_memo *certverify_memo_new(X509_STORE *store)
{
	struct certverify_memo *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	if (store)
		X509_STORE_up_ref(store);
	m->store = store;
	pthread_mutex_init(&m->lock, NULL);
	return m;
}

void certverify_memo_free(struct certverify_memo *m)
{
	if (!m)
		return;
	X509_STORE_free(m->store);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

/* SHA-256 over the purpose and the DER of each certificate, in order. */
static int certverify_memo_key(X509 *leaf, STACK_OF(X509) * untrusted, int purpose,
			       uint8_t key[SHA256_DIGEST_LENGTH])
{
	uint8_t p[4] = {(uint8_t)(purpose >> 24), (uint8_t)(purpose >> 16), (uint8_t)(purpose >> 8),
			(uint8_t)purpose};
	SHA256_CTX sha;

	SHA256_Init(&sha);
	SHA256_Update(&sha, p, sizeof(p));
	for (size_t i = 0; i <= (untrusted ? sk_X509_num(untrusted) : 0); i++) {
		X509 *x = i == 0 ? leaf : sk_X509_value(untrusted, i - 1);
		uint8_t md[SHA256_DIGEST_LENGTH];
		unsigned md_len = 0;

		if (!X509_digest(x, EVP_sha256(), md, &md_len))
			return -ENOMEM;
		SHA256_Update(&sha, md, md_len);
	}
	SHA256_Final(key, &sha);
	return 0;
}

int certverify_memo_verify(struct certverify_memo *m, X509 *leaf, STACK_OF(X509) * untrusted,
			   const struct certverify_opts *o, int *err)
{
	static const struct certverify_opts defaults;
	uint8_t key[SHA256_DIGEST_LENGTH];
	int64_t window[2];
	int rc;

	if (!o)
		o = &defaults;
	if (o->ignore_time || !leaf || certverify_memo_key(leaf, untrusted, o->purpose, key) < 0)
		return certverify(m->store, leaf, untrusted, o, err);
	int64_t now = o->at ? o->at : (int64_t)time(NULL);
	struct certverify_memo_slot *s = &m->slot[key[0] % CERTVERIFY_MEMO_SLOTS];

	pthread_mutex_lock(&m->lock);
	/* strictly inside: BoringSSL counts notAfter itself as expired */
	int hit = s->used && memcmp(s->key, key, sizeof(key)) == 0 && s->window[0] < now &&
		  now < s->window[1];
	if (hit)
		m->hits++;
	else
		m->misses++;
	pthread_mutex_unlock(&m->lock);
	if (hit) {
		if (err)
			*err = X509_V_OK;
		return 0;
	}
	rc = certverify_path(m->store, leaf, untrusted, o, err, window);
	if (rc < 0 || window[0] > window[1])
		return rc;
	pthread_mutex_lock(&m->lock);
	memcpy(s->key, key, sizeof(key));
	memcpy(s->window, window, sizeof(window));
	s->used = 1;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

void certverify_memo_counts(struct certverify_memo *m, uint64_t *hits, uint64_t *misses)
{
	pthread_mutex_lock(&m->lock);
	*hits = m->hits;
	*misses = m->misses;
	pthread_mutex_unlock(&m->lock);
}
