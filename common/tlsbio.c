/* tlsbio: see tlsbio.h. */
#include "tlsbio.h"

#include <errno.h>

#include <openssl/err.h>

#define TLSBIO_MAX_IO (1 << 30)

int tlsbio_attach(SSL *ssl)
{
	BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new(BIO_s_mem());

	if (!in || !out) {
		BIO_free(in);
		BIO_free(out);
		return -ENOMEM;
	}
	BIO_set_mem_eof_return(in, -1);
	SSL_set_bio(ssl, in, out); /* ssl owns them now */
	return 0;
}

/* The bytes a memory BIO holds allocated. */
static size_t tlsbio_capacity(BIO *b)
{
	BUF_MEM *m = NULL;
	BIO_get_mem_ptr(b, &m);
	return m ? m->max : 0;
}

void tlsbio_trim(SSL *ssl)
{
	BIO *in = SSL_get_rbio(ssl), *out = SSL_get_wbio(ssl);

	if (BIO_pending(in) > 0 || BIO_pending(out) > 0 ||
	    tlsbio_capacity(in) + tlsbio_capacity(out) == 0)
		return;
	if (tlsbio_attach(ssl) < 0)
		return; /* keeps the old pair, which still works */
}

int tlsbio_feed(SSL *ssl, const uint8_t *data, size_t len)
{
	return BIO_write(SSL_get_rbio(ssl), data, (int)len) == (int)len ? 0 : -ENOMEM;
}

int tlsbio_read(SSL *ssl, uint8_t *buf, size_t len)
{
	int r = SSL_read(ssl, buf, (int)(len > TLSBIO_MAX_IO ? TLSBIO_MAX_IO : len));
	if (r > 0)
		return r;
	int e = SSL_get_error(ssl, r);
	ERR_clear_error();
	if (e == SSL_ERROR_WANT_READ)
		return 0;
	return e == SSL_ERROR_ZERO_RETURN ? -EPIPE : -EPROTO;
}

int tlsbio_write(SSL *ssl, const uint8_t *data, size_t len)
{
	while (len > 0) {
		int chunk = len > 16384 ? 16384 : (int)len;
		int r = SSL_write(ssl, data, chunk);
		if (r <= 0) {
			ERR_clear_error();
			return -EPROTO;
		}
		data += r;
		len -= (size_t)r;
	}
	return 0;
}

size_t tlsbio_pending(const SSL *ssl)
{
	return BIO_ctrl_pending(SSL_get_wbio(ssl));
}

size_t tlsbio_take(SSL *ssl, uint8_t *buf, size_t len)
{
	int r = BIO_read(SSL_get_wbio(ssl), buf, (int)(len > TLSBIO_MAX_IO ? TLSBIO_MAX_IO : len));
	return r > 0 ? (size_t)r : 0;
}

void tlsbio_shutdown(SSL *ssl)
{
	if (SSL_is_init_finished(ssl))
		SSL_shutdown(ssl);
	ERR_clear_error();
}
