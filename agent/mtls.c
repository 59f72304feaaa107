/* mtls: see mtls.h.
 *
 * Verification (mtls_verify, the custom-verify callback of both SSL_CTXs):
 * the peer's chain against an X509_STORE of the bundle's roots, then the
 * leaf's SVID rules via svid_spiffe_id() (the one reader of identities in
 * Cinch), then, on the client, the expected identity. The verified ID is
 * kept in the connection. A resumed session skips the callback; the ID is
 * then read again from the session's leaf (verified when the session was
 * made), whose expiry is checked on the server.
 *
 * Client sessions: a small cache in the context, one session per expected
 * identity, filled by the new-session callback.
 *
 * ALPN: the client offers VERDICT_ALPN only (what the app speaks is inside
 * the tunnel); the server selects it when offered and selects nothing
 * otherwise, so a stock client's own ALPN list (h2, http/1.1) is ignored
 * as it always was. */
#include "mtls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "spiffe.h"
#include "svid.h"
#include "tlsbio.h"
#include "verdict.h"

#define MTLS_SESSION_SLOTS     256
#define MTLS_TICKET_LIFETIME_S 600

struct mtls_session {
	char id[SPIFFE_ID_MAX + 1];
	SSL_SESSION *sess;
};

struct mtls_ctx {
	unsigned refs;
	SSL_CTX *server, *client;
	X509_STORE *roots;
	char spiffe_id[SPIFFE_ID_MAX + 1];
	struct mtls_session sessions[MTLS_SESSION_SLOTS];
	unsigned next_slot;
};

struct mtls_conn {
	struct mtls_ctx *ctx;
	SSL *ssl; /* with tlsbio's memory BIOs */
	int client;
	/* Each connection holds only as many bytes of the IDs as they have
	 * (thousands of idle connections are the common case): new strings. */
	char *expected;	   /* client: the server's identity; NULL on a server */
	char *peer;	   /* the peer's verified identity; NULL until then */
	const char *why;   /* what the verify callback refused */
	const char *cause; /* its cause, a name of mtls_conn_failure_cause */
};

static int mtls_ex_index = -1;

/* c->peer from the SVID `leaf`. 0, or -EINVAL with *why, or -ENOMEM. */
static int mtls_set_peer(struct mtls_conn *c, X509 *leaf, const char **why)
{
	char id[SPIFFE_ID_MAX + 1];

	free(c->peer);
	c->peer = NULL;
	if (svid_spiffe_id(leaf, id, sizeof(id), why) < 0)
		return -EINVAL;
	if (!(c->peer = strdup(id))) {
		*why = "out of memory";
		return -ENOMEM;
	}
	return 0;
}

/* ---- verification */

static enum ssl_verify_result_t mtls_verify(SSL *ssl, uint8_t *alert)
{
	struct mtls_conn *c = SSL_get_ex_data(ssl, mtls_ex_index);
	STACK_OF(X509) *chain = SSL_get_peer_full_cert_chain(ssl);
	X509_STORE_CTX *vctx = X509_STORE_CTX_new();
	enum ssl_verify_result_t rc = ssl_verify_invalid;
	const char *why = NULL;
	X509 *leaf;

	*alert = SSL_AD_BAD_CERTIFICATE;
	if (!chain || sk_X509_num(chain) == 0 || !vctx) {
		c->why = "no peer certificate";
		c->cause = "no_client_cert";
		*alert = SSL_AD_CERTIFICATE_REQUIRED;
		goto out;
	}
	leaf = sk_X509_value(chain, 0);
	if (!X509_STORE_CTX_init(vctx, c->ctx->roots, leaf, chain) ||
	    !X509_STORE_CTX_set_purpose(vctx, c->client ? X509_PURPOSE_SSL_SERVER
							: X509_PURPOSE_SSL_CLIENT) ||
	    X509_verify_cert(vctx) != 1) {
		c->why = "peer certificate does not verify against the trust bundle";
		c->cause = X509_STORE_CTX_get_error(vctx) == X509_V_ERR_CERT_HAS_EXPIRED
				   ? "expired"
				   : "untrusted_chain";
		*alert = SSL_AD_UNKNOWN_CA;
		goto out;
	}
	if (X509_check_ca(leaf) != 0) {
		c->why = "peer leaf is a CA certificate";
		c->cause = "invalid_svid";
		goto out;
	}
	if (mtls_set_peer(c, leaf, &why) < 0) {
		c->why = why ? why : "peer certificate is not an X.509-SVID";
		c->cause = "invalid_svid";
		goto out;
	}
	if (c->client && strcmp(c->peer, c->expected) != 0) {
		c->why = "server presents another identity than expected at this address";
		c->cause = "peer_identity_mismatch";
		goto out;
	}
	rc = ssl_verify_ok;
out:
	X509_STORE_CTX_free(vctx);
	ERR_clear_error();
	return rc;
}

/* ---- contexts */

static int mtls_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct mtls_conn *c = SSL_get_ex_data(ssl, mtls_ex_index);
	struct mtls_ctx *ctx = c->ctx;
	struct mtls_session *slot = NULL;

	for (unsigned i = 0; i < MTLS_SESSION_SLOTS && !slot; i++)
		if (ctx->sessions[i].sess && !strcmp(ctx->sessions[i].id, c->expected))
			slot = &ctx->sessions[i];
	if (!slot)
		slot = &ctx->sessions[ctx->next_slot++ % MTLS_SESSION_SLOTS];
	SSL_SESSION_free(slot->sess);
	slot->sess = sess; /* we own the reference we return 1 for */
	snprintf(slot->id, sizeof(slot->id), "%s", c->expected);
	return 1;
}

/* The ALPN list of the client: one length-prefixed protocol. */
static const char mtls_alpn[] = "\x0c" VERDICT_ALPN;
_Static_assert(sizeof(VERDICT_ALPN) - 1 == 0x0c, "mtls_alpn's length byte");

static int mtls_alpn_select(SSL *ssl, const uint8_t **out, uint8_t *out_len, const uint8_t *in,
			    unsigned in_len, void *arg)
{
	(void)ssl;
	(void)arg;
	for (unsigned i = 0; i < in_len && i + 1u + in[i] <= in_len; i += 1u + in[i])
		if (in[i] == sizeof(VERDICT_ALPN) - 1 &&
		    !memcmp(in + i + 1, VERDICT_ALPN, sizeof(VERDICT_ALPN) - 1)) {
			*out = in + i + 1;
			*out_len = in[i];
			return SSL_TLSEXT_ERR_OK;
		}
	return SSL_TLSEXT_ERR_NOACK;
}

static SSL_CTX *mtls_ssl_ctx(STACK_OF(X509) * chain, EVP_PKEY *key, int server)
{
	SSL_CTX *s = SSL_CTX_new(TLS_method());

	if (!s || !SSL_CTX_set_min_proto_version(s, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(s, TLS1_3_VERSION) ||
	    !SSL_CTX_use_certificate(s, sk_X509_value(chain, 0)) ||
	    !SSL_CTX_use_PrivateKey(s, key) || !SSL_CTX_check_private_key(s))
		goto fail;
	for (size_t i = 1; i < sk_X509_num(chain); i++)
		if (!SSL_CTX_add1_chain_cert(s, sk_X509_value(chain, i)))
			goto fail;
	/* P-256 (and X25519 for the key exchange); the TLS 1.3 suites are
	 * AES-GCM and ChaCha20-Poly1305 only. */
	if (!SSL_CTX_set1_curves_list(s, "X25519:P-256"))
		goto fail;
	SSL_CTX_set_custom_verify(
		s, server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER,
		mtls_verify);
	if (server) {
		SSL_CTX_set_alpn_select_cb(s, mtls_alpn_select, NULL);
		/* Resumption is by stateless TLS 1.3 tickets: no server-side cache
		 * (it would keep every session, peer chain included, in memory). */
		SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_timeout(s, MTLS_TICKET_LIFETIME_S);
	} else {
		SSL_CTX_set_session_cache_mode(s,
					       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
		SSL_CTX_sess_set_new_cb(s, mtls_new_session);
		/* BoringSSL: 0 is success here */
		if (SSL_CTX_set_alpn_protos(s, (const uint8_t *)mtls_alpn, sizeof(mtls_alpn) - 1) !=
		    0)
			goto fail;
	}
	return s;
fail:
	SSL_CTX_free(s);
	return NULL;
}

/* The chain, not the clock: expiry is the certificate source's matter. */
static int mtls_verify_own_cb(int ok, X509_STORE_CTX *vc)
{
	int err = X509_STORE_CTX_get_error(vc);

	return ok || err == X509_V_ERR_CERT_HAS_EXPIRED || err == X509_V_ERR_CERT_NOT_YET_VALID;
}

/* Peers verify us against the same bundle: a bundle that does not hold
 * our own chain's root would make every connection fail, so it is refused
 * as a whole. 0 or -1. */
static int mtls_verify_own(X509_STORE *roots, STACK_OF(X509) * chain)
{
	X509_STORE_CTX *vc = X509_STORE_CTX_new();
	int ok = vc && X509_STORE_CTX_init(vc, roots, sk_X509_value(chain, 0), chain);

	if (ok)
		X509_STORE_CTX_set_verify_cb(vc, mtls_verify_own_cb);
	ok = ok && X509_verify_cert(vc) == 1;
	X509_STORE_CTX_free(vc);
	return ok ? 0 : -1;
}

int mtls_ctx_new(STACK_OF(X509) * chain, EVP_PKEY *key, STACK_OF(X509) * roots,
		 struct mtls_ctx **out, const char **why)
{
	struct mtls_ctx *ctx;

	if (mtls_ex_index < 0)
		mtls_ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if (!chain || sk_X509_num(chain) == 0 || !key || !roots || sk_X509_num(roots) == 0) {
		*why = "a certificate, its key and a trust bundle are all required";
		return -EINVAL;
	}
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	ctx->refs = 1;
	if (svid_spiffe_id(sk_X509_value(chain, 0), ctx->spiffe_id, sizeof(ctx->spiffe_id), why) <
	    0) {
		free(ctx);
		return -EINVAL;
	}
	if (X509_check_private_key(sk_X509_value(chain, 0), key) != 1) {
		*why = "the key does not match the certificate";
		free(ctx);
		ERR_clear_error();
		return -EINVAL;
	}
	ctx->roots = X509_STORE_new();
	for (size_t i = 0; ctx->roots && i < sk_X509_num(roots); i++)
		if (!X509_STORE_add_cert(ctx->roots, sk_X509_value(roots, i)))
			goto nomem;
	ctx->server = mtls_ssl_ctx(chain, key, 1);
	ctx->client = mtls_ssl_ctx(chain, key, 0);
	if (!ctx->roots || !ctx->server || !ctx->client)
		goto nomem;
	if (mtls_verify_own(ctx->roots, chain) < 0) {
		*why = "our own certificate does not verify against the trust bundle";
		mtls_ctx_unref(ctx);
		ERR_clear_error();
		return -EINVAL;
	}
	*out = ctx;
	return 0;
nomem:
	*why = "cannot build the TLS context";
	ctx->refs = 1;
	mtls_ctx_unref(ctx);
	ERR_clear_error();
	return -ENOMEM;
}

void mtls_ctx_no_resumption(struct mtls_ctx *ctx)
{
	SSL_CTX_set_options(ctx->server, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(ctx->client, SSL_SESS_CACHE_OFF);
}

struct mtls_ctx *mtls_ctx_ref(struct mtls_ctx *ctx)
{
	ctx->refs++;
	return ctx;
}

void mtls_ctx_unref(struct mtls_ctx *ctx)
{
	if (!ctx || --ctx->refs > 0)
		return;
	for (unsigned i = 0; i < MTLS_SESSION_SLOTS; i++)
		SSL_SESSION_free(ctx->sessions[i].sess);
	SSL_CTX_free(ctx->server);
	SSL_CTX_free(ctx->client);
	X509_STORE_free(ctx->roots);
	free(ctx);
}

const char *mtls_ctx_spiffe_id(const struct mtls_ctx *ctx)
{
	return ctx->spiffe_id;
}

/* ---- connections */

static int mtls_conn_new(struct mtls_ctx *ctx, int client, const char *expected,
			 struct mtls_conn **out)
{
	struct mtls_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->ssl = SSL_new(client ? ctx->client : ctx->server);
	if (!c->ssl || !SSL_set_ex_data(c->ssl, mtls_ex_index, c) || tlsbio_attach(c->ssl) < 0) {
		SSL_free(c->ssl);
		free(c);
		return -ENOMEM;
	}
	c->ctx = mtls_ctx_ref(ctx);
	c->client = client;
	if (client) {
		if (!(c->expected = strdup(expected))) {
			mtls_conn_free(c);
			return -ENOMEM;
		}
		SSL_set_connect_state(c->ssl);
		for (unsigned i = 0; i < MTLS_SESSION_SLOTS; i++)
			if (ctx->sessions[i].sess && !strcmp(ctx->sessions[i].id, expected)) {
				SSL_set_session(c->ssl, ctx->sessions[i].sess);
				break;
			}
	} else {
		SSL_set_accept_state(c->ssl);
	}
	*out = c;
	return 0;
}

int mtls_conn_new_server(struct mtls_ctx *ctx, struct mtls_conn **out)
{
	return mtls_conn_new(ctx, 0, NULL, out);
}

int mtls_conn_new_client(struct mtls_ctx *ctx, const char *expected_id, struct mtls_conn **out)
{
	if (!expected_id || strlen(expected_id) > SPIFFE_ID_MAX)
		return -EINVAL;
	return mtls_conn_new(ctx, 1, expected_id, out);
}

void mtls_conn_free(struct mtls_conn *c)
{
	if (!c)
		return;
	SSL_free(c->ssl);
	mtls_ctx_unref(c->ctx);
	free(c->expected);
	free(c->peer);
	free(c);
}

int mtls_conn_feed(struct mtls_conn *c, const uint8_t *data, size_t len)
{
	return tlsbio_feed(c->ssl, data, len);
}

/* A resumed session: its identity from the session's leaf, which was
 * verified when the session was made; expired means refused. */
static int mtls_resumed_identity(struct mtls_conn *c, const char **why)
{
	X509 *leaf = SSL_get_peer_certificate(c->ssl);
	int64_t na;
	int rc = -EPROTO;

	if (!leaf || mtls_set_peer(c, leaf, why) < 0) {
		*why = "resumed session without a peer identity";
		c->cause = "invalid_svid";
	} else if (svid_time_unix(X509_get0_notAfter(leaf), &na) < 0 || na <= time(NULL)) {
		*why = "resumed session of an expired peer certificate";
		c->cause = "expired";
	} else if (c->client && strcmp(c->peer, c->expected) != 0) {
		*why = "resumed session of another identity";
		c->cause = "peer_identity_mismatch";
	} else {
		rc = 0;
	}
	X509_free(leaf);
	return rc;
}

int mtls_conn_handshake(struct mtls_conn *c, const char **why)
{
	int r = SSL_do_handshake(c->ssl);

	if (r == 1) {
		if (SSL_session_reused(c->ssl) && mtls_resumed_identity(c, why) < 0)
			return -EPROTO;
		return MTLS_HS_DONE;
	}
	if (SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_READ)
		return MTLS_HS_WANT_READ;
	uint32_t e = ERR_peek_error();
	*why = c->why ? c->why : e ? ERR_reason_error_string(e) : "handshake failed";
	if (!*why)
		*why = "handshake failed";
	if (!c->cause) /* a client that sent no certificate never reaches mtls_verify */
		c->cause =
			ERR_GET_LIB(e) == ERR_LIB_SSL &&
					ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE
				? "no_client_cert"
				: "protocol";
	ERR_clear_error();
	return -EPROTO;
}

const char *mtls_conn_failure_cause(const struct mtls_conn *c)
{
	return c->cause ? c->cause : "protocol";
}

int mtls_conn_read(struct mtls_conn *c, uint8_t *buf, size_t len)
{
	return tlsbio_read(c->ssl, buf, len);
}

int mtls_conn_write(struct mtls_conn *c, const uint8_t *data, size_t len)
{
	return tlsbio_write(c->ssl, data, len);
}

size_t mtls_conn_pending_out(const struct mtls_conn *c)
{
	return tlsbio_pending(c->ssl);
}

size_t mtls_conn_take_out(struct mtls_conn *c, uint8_t *buf, size_t len)
{
	return tlsbio_take(c->ssl, buf, len);
}

void mtls_conn_trim(struct mtls_conn *c)
{
	tlsbio_trim(c->ssl);
}

void mtls_conn_shutdown(struct mtls_conn *c)
{
	tlsbio_shutdown(c->ssl);
}

const char *mtls_conn_peer_id(const struct mtls_conn *c)
{
	return c->peer ? c->peer : "";
}

const char *mtls_conn_version(const struct mtls_conn *c)
{
	return SSL_get_version(c->ssl);
}

const char *mtls_conn_cipher(const struct mtls_conn *c)
{
	const SSL_CIPHER *ci = SSL_get_current_cipher(c->ssl);
	return ci ? SSL_CIPHER_get_name(ci) : "";
}

int mtls_conn_agent_peer(const struct mtls_conn *c)
{
	const uint8_t *p;
	unsigned n;

	SSL_get0_alpn_selected(c->ssl, &p, &n);
	return n == sizeof(VERDICT_ALPN) - 1 && !memcmp(p, VERDICT_ALPN, n);
}

int mtls_conn_resumed(const struct mtls_conn *c)
{
	return SSL_session_reused(c->ssl);
}
