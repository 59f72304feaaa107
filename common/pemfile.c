/* pemfile: see pemfile.h. */
#include "pemfile.h"

#include <openssl/err.h>
#include <openssl/pem.h>

/* Every certificate `b` holds (b freed); NULL when none. */
static STACK_OF(X509) * pemfile_read(BIO *b)
{
	STACK_OF(X509) *sk = b ? sk_X509_new_null() : NULL;
	X509 *x;

	while (sk && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)))
		if (!sk_X509_push(sk, x))
			X509_free(x);
	ERR_clear_error(); /* the end of the file reads as an error */
	BIO_free(b);
	if (sk && sk_X509_num(sk) == 0) {
		sk_X509_free(sk);
		sk = NULL;
	}
	return sk;
}

STACK_OF(X509) * pemfile_certs(const char *path)
{
	return pemfile_read(BIO_new_file(path, "r"));
}

STACK_OF(X509) * pemfile_certs_mem(const char *pem)
{
	return pemfile_read(BIO_new_mem_buf(pem, -1));
}
