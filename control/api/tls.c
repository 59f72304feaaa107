/* tls: see tls.h. BoringSSL's 1/0 and SSL_get_error() are translated into
 * -errno here and nowhere else. Memory BIOs grow without bound, so the
 * caller (grpc.c) bounds what it feeds and drains the output promptly. */
#include "api/tls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tlsbio.h"

struct tls_ctx {
	SSL_CTX *ssl_ctx;
	int refs;
};

struct tls_conn {
	struct tls_ctx *ctx;
	SSL *ssl;   /* with tlsbio's memory BIOs */
	X509 *peer; /* cached by tls_conn_get0_peer */
};

/* RFC 7301: pick "h2" or refuse the connection. */
static int tls_alpn_select_cb(SSL *ssl, const uint8_t **out, uint8_t *outlen, const uint8_t *in,
			      unsigned inlen, void *arg)
{
	for (unsigned i = 0; i < inlen;) {
		unsigned n = in[i];
		if (i + 1 + n > inlen)
			break;
		if (n == 2 && !memcmp(in + i + 1, "h2", 2)) {
			*out = in + i + 1;
			*outlen = 2;
			return SSL_TLSEXT_ERR_OK;
		}
		i += 1 + n;
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

int tls_ctx_new(X509 *cert, EVP_PKEY *key, STACK_OF(X509) * chain, X509_STORE *bundle,
		struct tls_ctx **out)
{
	struct tls_ctx *ctx = calloc(1, sizeof(*ctx));
	SSL_CTX *s = SSL_CTX_new(TLS_method());
	int rc = -EINVAL;

	if (!ctx || !s) {
		rc = -ENOMEM;
		goto out;
	}
	if (!SSL_CTX_set_min_proto_version(s, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(s, TLS1_3_VERSION) ||
	    !SSL_CTX_use_certificate(s, cert) || !SSL_CTX_use_PrivateKey(s, key) ||
	    !SSL_CTX_check_private_key(s))
		goto out;
	for (size_t i = 0; chain && i < sk_X509_num(chain); i++)
		if (!SSL_CTX_add1_chain_cert(s, sk_X509_value(chain, i)))
			goto out;
	if (!X509_STORE_up_ref(bundle))
		goto out;
	SSL_CTX_set_cert_store(s, bundle);
	/* Request, verify if presented, do not require (see tls.h). */
	SSL_CTX_set_verify(s, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_alpn_select_cb(s, tls_alpn_select_cb, NULL);
	SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(s, 0);
	ctx->ssl_ctx = s;
	ctx->refs = 1;
	*out = ctx;
	return 0;
out:
	ERR_clear_error();
	SSL_CTX_free(s);
	free(ctx);
	return rc;
}

void tls_ctx_ref(struct tls_ctx *ctx)
{
	ctx->refs++;
}

void tls_ctx_unref(struct tls_ctx *ctx)
{
	if (!ctx || --ctx->refs > 0)
		return;
	SSL_CTX_free(ctx->ssl_ctx);
	free(ctx);
}

int tls_conn_new(struct tls_ctx *ctx, struct tls_conn **out)
{
	struct tls_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->ssl = SSL_new(ctx->ssl_ctx);
	if (!c->ssl || tlsbio_attach(c->ssl) < 0) {
		SSL_free(c->ssl);
		free(c);
		return -ENOMEM;
	}
	SSL_set_accept_state(c->ssl);
	c->ctx = ctx;
	ctx->refs++;
	*out = c;
	return 0;
}

void tls_conn_free(struct tls_conn *c)
{
	if (!c)
		return;
	X509_free(c->peer);
	SSL_free(c->ssl);
	tls_ctx_unref(c->ctx);
	free(c);
}

int tls_conn_feed(struct tls_conn *c, const uint8_t *data, size_t len)
{
	return tlsbio_feed(c->ssl, data, len);
}

int tls_conn_handshake(struct tls_conn *c, const char **why)
{
	int r = SSL_do_handshake(c->ssl);
	if (r == 1)
		return TLS_HS_DONE;
	int e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ)
		return TLS_HS_WANT_READ;
	uint32_t code = ERR_peek_error();
	*why = code ? ERR_reason_error_string(code) : "handshake failed";
	if (!*why)
		*why = "handshake failed";
	ERR_clear_error();
	return -EPROTO;
}

int tls_conn_read(struct tls_conn *c, uint8_t *buf, size_t len)
{
	return tlsbio_read(c->ssl, buf, len);
}

int tls_conn_write(struct tls_conn *c, const uint8_t *data, size_t len)
{
	return tlsbio_write(c->ssl, data, len);
}

size_t tls_conn_pending_out(const struct tls_conn *c)
{
	return tlsbio_pending(c->ssl);
}

size_t tls_conn_take_out(struct tls_conn *c, uint8_t *buf, size_t len)
{
	return tlsbio_take(c->ssl, buf, len);
}

void tls_conn_shutdown(struct tls_conn *c)
{
	tlsbio_shutdown(c->ssl);
}

X509 *tls_conn_get0_peer(struct tls_conn *c)
{
	if (!c->peer)
		c->peer = SSL_get_peer_certificate(c->ssl);
	return c->peer;
}

STACK_OF(X509) * tls_conn_get0_peer_chain(const struct tls_conn *c)
{
	return SSL_get_peer_cert_chain(c->ssl);
}
