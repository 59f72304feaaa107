/* certverify: see certverify.h. X509_STORE_CTX is set up here and nowhere
 * else: the roots, the untrusted chain, the purpose, the time, and a
 * verify callback only when times are to be ignored. */
#include "certverify.h"

#include <errno.h>

#include <openssl/err.h>

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

int certverify(X509_STORE *store, X509 *leaf, STACK_OF(X509) * untrusted,
	       const struct certverify_opts *o, int *err)
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
