/* tls: see tls.h. BoringSSL's 1/0 and SSL_get_error() are translated into
 * -errno here and nowhere else. Memory BIOs grow without bound, so the
 * caller (grpc.c) bounds what it feeds and drains the output promptly. */
#include "api/tls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "pemfile.h"
#include "svid.h"
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

/* RFC 7301: the first protocol of ours (`arg`, in wire format, in our
 * order of preference) that the client offers. The gRPC context offers
 * only "h2" and refuses a client without it; the HTTPS context offers
 * "h2" then "http/1.1" and lets a client that names neither speak
 * HTTP/1.1 (NOACK), as curl and openssl s_client without -alpn do. */
struct tls_alpn {
	const uint8_t *wire;
	size_t len;
	int required;
};

static const struct tls_alpn tls_alpn_grpc = {(const uint8_t *)"\x02h2", 3, 1};
static const struct tls_alpn tls_alpn_https = {(const uint8_t *)"\x02h2\x08http/1.1", 12, 0};

static int tls_alpn_select_cb(SSL *ssl, const uint8_t **out, uint8_t *outlen, const uint8_t *in,
			      unsigned inlen, void *arg)
{
	const struct tls_alpn *ours = arg;
	for (size_t j = 0; j < ours->len; j += 1u + ours->wire[j]) {
		const uint8_t *want = ours->wire + j + 1;
		size_t wlen = ours->wire[j];
		for (unsigned i = 0; i < inlen;) {
			unsigned n = in[i];
			if (i + 1 + n > inlen)
				break;
			if (n == wlen && !memcmp(in + i + 1, want, n)) {
				*out = in + i + 1;
				*outlen = (uint8_t)n;
				return SSL_TLSEXT_ERR_OK;
			}
			i += 1 + n;
		}
	}
	return ours->required ? SSL_TLSEXT_ERR_ALERT_FATAL : SSL_TLSEXT_ERR_NOACK;
}

/* The context both servers share: TLS 1.3, our certificate and chain, no
 * session resumption. `bundle` NULL: no client certificate is asked for. */
static int tls_ctx_build(X509 *cert, EVP_PKEY *key, STACK_OF(X509) * chain, X509_STORE *bundle,
			 const struct tls_alpn *alpn, struct tls_ctx **out)
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
	if (bundle) {
		if (!X509_STORE_up_ref(bundle))
			goto out;
		SSL_CTX_set_cert_store(s, bundle);
		/* Request, verify if presented, do not require (see tls.h). */
		SSL_CTX_set_verify(s, SSL_VERIFY_PEER, NULL);
	}
	SSL_CTX_set_alpn_select_cb(s, tls_alpn_select_cb, (void *)alpn);
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

int tls_ctx_new(X509 *cert, EVP_PKEY *key, STACK_OF(X509) * chain, X509_STORE *bundle,
		struct tls_ctx **out)
{
	return tls_ctx_build(cert, key, chain, bundle, &tls_alpn_grpc, out);
}

int tls_ctx_new_https(X509 *cert, EVP_PKEY *key, STACK_OF(X509) * chain, struct tls_ctx **out)
{
	return tls_ctx_build(cert, key, chain, NULL, &tls_alpn_https, out);
}

int tls_ctx_new_https_files(const char *cert_path, const char *key_path, struct tls_ctx **out,
			    const char **why)
{
	STACK_OF(X509) *certs = pemfile_certs(cert_path);
	BIO *b = BIO_new_file(key_path, "r");
	EVP_PKEY *key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
	int rc = -EINVAL;

	if (!certs) {
		*why = "the certificate file cannot be read or holds no PEM certificate";
		goto out;
	}
	if (!key) {
		*why = "the key file cannot be read or holds no PEM private key";
		goto out;
	}
	/* The first certificate is ours, the rest its chain. */
	X509 *leaf = sk_X509_shift(certs);
	rc = tls_ctx_new_https(leaf, key, certs, out);
	X509_free(leaf);
	if (rc < 0)
		*why = rc == -ENOMEM ? "out of memory"
				     : "the key does not match the certificate, or the "
				       "certificate cannot be used";
out:
	ERR_clear_error();
	EVP_PKEY_free(key);
	BIO_free(b);
	sk_X509_pop_free(certs, X509_free);
	return rc;
}

int64_t tls_ctx_not_after(const struct tls_ctx *ctx)
{
	X509 *cert = SSL_CTX_get0_certificate(ctx->ssl_ctx);
	int64_t t = 0;

	if (!cert || svid_time_unix(X509_get0_notAfter(cert), &t) < 0)
		t = 0;
	return t;
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

void tls_conn_trim(struct tls_conn *c)
{
	tlsbio_trim(c->ssl);
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

int tls_conn_is_h2(const struct tls_conn *c)
{
	const uint8_t *p;
	unsigned len;
	SSL_get0_alpn_selected(c->ssl, &p, &len);
	return len == 2 && !memcmp(p, "h2", 2);
}
