/* mtls: see mtls.h.
 *
 * Verification (mtls_verify, the custom-verify callback of every SSL_CTX
 * that verifies): the peer's chain through certverify against the store
 * of the bundle's roots, for the purpose of the peer's role (through the
 * context's memo of chains that verified: a peer's SVID is verified once
 * per context, not once per full handshake; see certverify.h), then by the
 * context's mode: the leaf's SVID rules via svid_spiffe_id() (the one
 * reader of identities in Cinch) and, on a client, the expected identity;
 * or the name dialed in the leaf's SANs. The verified ID is kept in the
 * connection. A resumed session skips the callback; the ID is then read
 * again from the session's leaf (verified when the session was made),
 * whose expiry is checked on the server.
 *
 * Client sessions (resumption): a small cache in the context, one session
 * per expected identity, filled by the new-session callback.
 *
 * Threads (cinch-agent run --workers N): one context serves the loops of
 * every worker. Its reference count is atomic and the session cache has a
 * lock (taken to store a session and to look one up; BoringSSL's own
 * SSL_CTX and SSL_SESSION references are thread-safe), so a ticket
 * received on one worker resumes on whichever worker the next connection
 * lands. Everything else in the context is read-only once made.
 *
 * ALPN: a server selects the first protocol of ours the client offers;
 * none: a fatal alert when ALPN is required, else no ALPN at all (so a
 * stock client's own list, h2 or http/1.1, is ignored by the mesh). Either
 * side that requires ALPN refuses a handshake that selected nothing (also
 * checked when the handshake ends: this BoringSSL does not abort on the
 * select callback's fatal alert).
 *
 * Byte-queue BIOs: ciphertext in and out through two BIOs of our own
 * (mtls_bio_method) over a struct mtls_buf each, not BoringSSL's memory
 * BIOs: those zero every byte they grow by (BUF_MEM_grow_clean) and move
 * what is left to the front after every read (a 5-byte record header
 * read moved the whole rest), and their output had to be copied out to
 * reach the socket. Ours append with one copy, read by moving an offset,
 * and let the caller write the output to the socket from where it lies
 * (mtls_conn_peek_out / mtls_conn_consume_out). A queue's memory is given
 * back as soon as it is empty, so a quiet connection holds none. An empty
 * input means "more later", not end of file; BoringSSL's 1/0 and
 * SSL_get_error() become -errno here and nowhere else. They grow without
 * bound, so the caller bounds what it feeds and drains the output. */
#include "mtls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certverify.h"
#include "pemfile.h"
#include "spiffe.h"
#include "svid.h"

#define MTLS_SESSION_SLOTS     256
#define MTLS_TICKET_LIFETIME_S 600
#define MTLS_MAX_IO	       (1 << 30)
#define MTLS_WRITE_CHUNK       16384
#define MTLS_ALPN_MAX	       64
#define MTLS_BUF_MIN	       4096 /* a byte queue's first allocation */
#define MTLS_RECORD_OVERHEAD   32   /* a TLS 1.3 record's header, type and AEAD tag, rounded up */

struct mtls_session {
	char id[SPIFFE_ID_MAX + 1];
	SSL_SESSION *sess;
};

struct mtls_ctx {
	atomic_uint refs;
	SSL_CTX *server, *client; /* NULL for a role not played */
	X509_STORE *roots;	  /* NULL with MTLS_VERIFY_NONE */
	/* the chains that verified against roots; NULL with MTLS_VERIFY_NONE */
	struct certverify_memo *verified;
	enum mtls_verify verify;
	uint8_t alpn[MTLS_ALPN_MAX];
	size_t alpn_len;
	int alpn_required;
	char spiffe_id[SPIFFE_ID_MAX + 1];
	struct mtls_session *sessions; /* MTLS_SESSION_SLOTS, with resumption */
	unsigned next_slot;
	pthread_mutex_t sessions_lock; /* sessions and next_slot */
};

/* A byte queue: bytes [off, off + len) of p (cap bytes); p NULL while
 * empty. */
struct mtls_buf {
	uint8_t *p;
	size_t off, len, cap;
};

struct mtls_conn {
	struct mtls_ctx *ctx;
	SSL *ssl;		  /* with the byte-queue BIOs over in and out */
	struct mtls_buf in, out; /* ciphertext from and for the socket */
	int client;
	/* Each connection holds only as many bytes of the names as they have
	 * (thousands of idle connections are the common case): new strings. */
	char *expected;	   /* client: the server's identity or name; NULL on a server */
	char *peer;	   /* the peer's verified SPIFFE ID; NULL until then */
	X509 *peer_cert;   /* cached by mtls_conn_get0_peer */
	const char *why;   /* what a callback refused */
	const char *cause; /* its cause, a name of mtls_conn_failure_cause */
};

static int mtls_ex_index = -1;

/* ---- byte-queue BIOs */

static void mtls_buf_free(struct mtls_buf *q)
{
	free(q->p);
	*q = (struct mtls_buf){0};
}

/* Room for len more bytes at the end. 0 or -ENOMEM. */
static int mtls_buf_reserve(struct mtls_buf *q, size_t len)
{
	if (q->cap - q->off - q->len < len) {
		if (q->off) { /* the free front first */
			memmove(q->p, q->p + q->off, q->len);
			q->off = 0;
		}
		if (q->cap - q->len < len) {
			size_t cap = q->cap ? q->cap : MTLS_BUF_MIN;
			while (cap - q->len < len)
				cap *= 2;
			uint8_t *p = realloc(q->p, cap);
			if (!p)
				return -ENOMEM;
			q->p = p;
			q->cap = cap;
		}
	}
	return 0;
}

static int mtls_buf_append(struct mtls_buf *q, const uint8_t *data, size_t len)
{
	if (mtls_buf_reserve(q, len) < 0)
		return -ENOMEM;
	memcpy(q->p + q->off + q->len, data, len);
	q->len += len;
	return 0;
}

/* Drops n bytes from the front; an empty queue gives its memory back. */
static void mtls_buf_consume(struct mtls_buf *q, size_t n)
{
	q->off += n;
	q->len -= n;
	if (q->len == 0)
		mtls_buf_free(q);
}

static int mtls_bio_write(BIO *b, const char *data, int len)
{
	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	return mtls_buf_append(BIO_get_data(b), (const uint8_t *)data, (size_t)len) < 0 ? -1
											 : len;
}

static int mtls_bio_read(BIO *b, char *out, int len)
{
	struct mtls_buf *q = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	if (q->len == 0) { /* more later */
		BIO_set_retry_read(b);
		return -1;
	}
	size_t n = q->len < (size_t)len ? q->len : (size_t)len;
	memcpy(out, q->p + q->off, n);
	mtls_buf_consume(q, n);
	return (int)n;
}

static long mtls_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_PENDING:
		return (long)((struct mtls_buf *)BIO_get_data(b))->len;
	case BIO_CTRL_FLUSH:
		return 1;
	default:
		return 0;
	}
}

static BIO_METHOD *mtls_bio_meth;
static pthread_once_t mtls_bio_once = PTHREAD_ONCE_INIT;

static void mtls_bio_meth_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_TYPE_SOURCE_SINK | BIO_get_new_index(), "cinch queue");

	if (m && BIO_meth_set_write(m, mtls_bio_write) && BIO_meth_set_read(m, mtls_bio_read) &&
	    BIO_meth_set_ctrl(m, mtls_bio_ctrl)) {
		mtls_bio_meth = m;
		return;
	}
	BIO_meth_free(m);
}

static BIO *mtls_bio_new(struct mtls_buf *q)
{
	BIO *b;

	if (pthread_once(&mtls_bio_once, mtls_bio_meth_init) != 0 || !mtls_bio_meth ||
	    !(b = BIO_new(mtls_bio_meth)))
		return NULL;
	BIO_set_data(b, q);
	BIO_set_init(b, 1);
	return b;
}

static int mtls_bio_attach(struct mtls_conn *c)
{
	BIO *in = mtls_bio_new(&c->in), *out = mtls_bio_new(&c->out);

	if (!in || !out) {
		BIO_free(in);
		BIO_free(out);
		return -ENOMEM;
	}
	SSL_set_bio(c->ssl, in, out); /* ssl owns them now */
	return 0;
}

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

/* The name dialed, DNS name or IP address, among the leaf's SANs. */
static int mtls_check_name(X509 *leaf, const char *name)
{
	struct in6_addr a6;
	struct in_addr a4;

	if (inet_pton(AF_INET, name, &a4) == 1 || inet_pton(AF_INET6, name, &a6) == 1)
		return X509_check_ip_asc(leaf, name, 0) == 1 ? 0 : -1;
	return X509_check_host(leaf, name, strlen(name), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
			       NULL) == 1
		       ? 0
		       : -1;
}

static enum ssl_verify_result_t mtls_verify(SSL *ssl, uint8_t *alert)
{
	struct mtls_conn *c = SSL_get_ex_data(ssl, mtls_ex_index);
	STACK_OF(X509) *chain = SSL_get_peer_full_cert_chain(ssl);
	struct certverify_opts vo = {
		.purpose = c->client ? X509_PURPOSE_SSL_SERVER : X509_PURPOSE_SSL_CLIENT,
	};
	enum ssl_verify_result_t rc = ssl_verify_invalid;
	const char *why = NULL;
	X509 *leaf;
	int err;

	*alert = SSL_AD_BAD_CERTIFICATE;
	if (!chain || sk_X509_num(chain) == 0) {
		c->why = "no peer certificate";
		c->cause = "no_client_cert";
		*alert = SSL_AD_CERTIFICATE_REQUIRED;
		goto out;
	}
	leaf = sk_X509_value(chain, 0);
	if (certverify_memo_verify(c->ctx->verified, leaf, chain, &vo, &err) < 0) {
		c->why = "peer certificate does not verify against the trust bundle";
		c->cause = err == X509_V_ERR_CERT_HAS_EXPIRED ? "expired" : "untrusted_chain";
		*alert = SSL_AD_UNKNOWN_CA;
		goto out;
	}
	switch (c->ctx->verify) {
	case MTLS_VERIFY_SPIFFE:
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
		break;
	case MTLS_VERIFY_HOSTNAME:
		if (c->client && mtls_check_name(leaf, c->expected) < 0) {
			c->why = "server certificate is not for the name dialed";
			c->cause = "hostname_mismatch";
			goto out;
		}
		break;
	case MTLS_VERIFY_CHAIN:
	case MTLS_VERIFY_NONE:
		break;
	}
	rc = ssl_verify_ok;
out:
	ERR_clear_error();
	return rc;
}

/* ---- contexts */

static int mtls_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct mtls_conn *c = SSL_get_ex_data(ssl, mtls_ex_index);
	struct mtls_ctx *ctx = c->ctx;
	struct mtls_session *slot = NULL;

	pthread_mutex_lock(&ctx->sessions_lock);
	for (unsigned i = 0; i < MTLS_SESSION_SLOTS && !slot; i++)
		if (ctx->sessions[i].sess && !strcmp(ctx->sessions[i].id, c->expected))
			slot = &ctx->sessions[i];
	if (!slot)
		slot = &ctx->sessions[ctx->next_slot++ % MTLS_SESSION_SLOTS];
	SSL_SESSION_free(slot->sess);
	slot->sess = sess; /* we own the reference we return 1 for */
	snprintf(slot->id, sizeof(slot->id), "%s", c->expected);
	pthread_mutex_unlock(&ctx->sessions_lock);
	return 1;
}

/* RFC 7301: the first protocol of ours, in our order of preference, that
 * the client offers. */
static int mtls_alpn_select(SSL *ssl, const uint8_t **out, uint8_t *out_len, const uint8_t *in,
			    unsigned in_len, void *arg)
{
	const struct mtls_ctx *ctx = arg;

	for (size_t j = 0; j < ctx->alpn_len; j += 1u + ctx->alpn[j])
		for (unsigned i = 0; i < in_len && i + 1u + in[i] <= in_len; i += 1u + in[i])
			if (in[i] == ctx->alpn[j] && !memcmp(in + i + 1, ctx->alpn + j + 1, in[i])) {
				*out = in + i + 1;
				*out_len = in[i];
				return SSL_TLSEXT_ERR_OK;
			}
	if (!ctx->alpn_required)
		return SSL_TLSEXT_ERR_NOACK;
	struct mtls_conn *c = SSL_get_ex_data(ssl, mtls_ex_index);
	c->why = "the client offers none of our ALPN protocols";
	c->cause = "alpn_mismatch";
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* A well-formed ALPN list: each entry 1..255 bytes, no trailing byte. */
static int mtls_alpn_valid(const char *wire, size_t len)
{
	size_t i = 0;

	if (len > MTLS_ALPN_MAX)
		return 0;
	while (i < len) {
		if (wire[i] == 0 || i + 1u + (uint8_t)wire[i] > len)
			return 0;
		i += 1u + (uint8_t)wire[i];
	}
	return 1;
}

static SSL_CTX *mtls_ssl_ctx(struct mtls_ctx *ctx, const struct mtls_opts *o, int server)
{
	SSL_CTX *s = SSL_CTX_new(TLS_method());
	int mode;

	if (!s || !SSL_CTX_set_min_proto_version(s, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(s, TLS1_3_VERSION))
		goto fail;
	if (o->cert && (!SSL_CTX_use_certificate(s, o->cert) ||
			!SSL_CTX_use_PrivateKey(s, o->key) || !SSL_CTX_check_private_key(s)))
		goto fail;
	for (size_t i = 0; o->cert && o->chain && i < sk_X509_num(o->chain); i++)
		if (!SSL_CTX_add1_chain_cert(s, sk_X509_value(o->chain, i)))
			goto fail;
	/* X25519 and P-256 for the key exchange; the TLS 1.3 suites are
	 * AES-GCM and ChaCha20-Poly1305 only. */
	if (!SSL_CTX_set1_curves_list(s, "X25519:P-256"))
		goto fail;
	if (o->verify != MTLS_VERIFY_NONE) {
		mode = SSL_VERIFY_PEER;
		if (server && !o->peer_optional)
			mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
		SSL_CTX_set_custom_verify(s, mode, mtls_verify);
	}
	if (server) {
		if (ctx->alpn_len)
			SSL_CTX_set_alpn_select_cb(s, mtls_alpn_select, ctx);
		/* Resumption is by stateless TLS 1.3 tickets: no server-side cache
		 * (it would keep every session, peer chain included, in memory). */
		SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
		if (o->resumption)
			SSL_CTX_set_timeout(s, MTLS_TICKET_LIFETIME_S);
		else
			SSL_CTX_set_num_tickets(s, 0);
	} else {
		if (o->resumption) {
			SSL_CTX_set_session_cache_mode(
				s, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
			SSL_CTX_sess_set_new_cb(s, mtls_new_session);
		} else {
			SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
		}
		/* BoringSSL: 0 is success here */
		if (ctx->alpn_len && SSL_CTX_set_alpn_protos(s, ctx->alpn, ctx->alpn_len) != 0)
			goto fail;
	}
	return s;
fail:
	SSL_CTX_free(s);
	return NULL;
}

/* What the options must hold. NULL or why not. */
static const char *mtls_opts_check(const struct mtls_opts *o)
{
	if (!o->roles || (o->roles & ~(MTLS_ROLE_SERVER | MTLS_ROLE_CLIENT)))
		return "a TLS context needs a server or client role";
	if (!o->cert != !o->key)
		return "a certificate and its key go together";
	if (!o->cert && (o->roles & MTLS_ROLE_SERVER))
		return "a server needs a certificate and its key";
	if (!o->cert && o->verify == MTLS_VERIFY_SPIFFE)
		return "a certificate, its key and a trust bundle are all required";
	if (o->verify == MTLS_VERIFY_NONE ? (o->roles & MTLS_ROLE_CLIENT) != 0
					  : !o->roots || sk_X509_num(o->roots) == 0)
		return o->verify == MTLS_VERIFY_NONE
			       ? "a client always verifies the server"
			       : "a certificate, its key and a trust bundle are all required";
	if (o->verify > MTLS_VERIFY_NONE)
		return "unknown verification mode";
	if (!mtls_alpn_valid(o->alpn, o->alpn ? o->alpn_len : 0))
		return "malformed ALPN list";
	return NULL;
}

int mtls_ctx_new_opts(const struct mtls_opts *o, struct mtls_ctx **out, const char **why)
{
	struct mtls_ctx *ctx;
	int err;

	if (mtls_ex_index < 0)
		mtls_ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if ((*why = mtls_opts_check(o)))
		return -EINVAL;
	if (o->cert && X509_check_private_key(o->cert, o->key) != 1) {
		*why = "the key does not match the certificate";
		ERR_clear_error();
		return -EINVAL;
	}
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	atomic_init(&ctx->refs, 1);
	pthread_mutex_init(&ctx->sessions_lock, NULL);
	ctx->verify = o->verify;
	ctx->alpn_required = o->alpn_required;
	if (o->alpn) {
		memcpy(ctx->alpn, o->alpn, o->alpn_len);
		ctx->alpn_len = o->alpn_len;
	}
	if (o->cert && svid_spiffe_id(o->cert, ctx->spiffe_id, sizeof(ctx->spiffe_id), why) < 0) {
		ctx->spiffe_id[0] = '\0';
		if (o->verify == MTLS_VERIFY_SPIFFE) {
			mtls_ctx_unref(ctx);
			return -EINVAL;
		}
	}
	*why = "cannot build the TLS context";
	if (o->roots && !(ctx->roots = certverify_store_new(o->roots)))
		goto nomem;
	if (o->verify != MTLS_VERIFY_NONE && !(ctx->verified = certverify_memo_new(ctx->roots)))
		goto nomem;
	if (o->resumption &&
	    !(ctx->sessions = calloc(MTLS_SESSION_SLOTS, sizeof(*ctx->sessions))))
		goto nomem;
	if ((o->roles & MTLS_ROLE_SERVER) && !(ctx->server = mtls_ssl_ctx(ctx, o, 1)))
		goto nomem;
	if ((o->roles & MTLS_ROLE_CLIENT) && !(ctx->client = mtls_ssl_ctx(ctx, o, 0)))
		goto nomem;
	/* Peers verify us against the same bundle: a bundle that does not hold
	 * our own chain's root would make every connection fail, so it is
	 * refused as a whole (the chain, not the clock: expiry is the
	 * certificate source's matter). */
	if (o->cert && o->verify == MTLS_VERIFY_SPIFFE) {
		STACK_OF(X509) *mine = o->chain ? sk_X509_dup(o->chain) : sk_X509_new_null();
		struct certverify_opts vo = {.ignore_time = 1};
		int rc = mine ? certverify(ctx->roots, o->cert, mine, &vo, &err) : -ENOMEM;

		sk_X509_free(mine);
		if (rc == -ENOMEM)
			goto nomem;
		if (rc < 0) {
			*why = "our own certificate does not verify against the trust bundle";
			mtls_ctx_unref(ctx);
			return -EINVAL;
		}
	}
	*why = NULL;
	*out = ctx;
	return 0;
nomem:
	mtls_ctx_unref(ctx);
	ERR_clear_error();
	return -ENOMEM;
}

int mtls_ctx_new_pem_files(const struct mtls_opts *o, const char *cert_path,
			   const char *key_path, struct mtls_ctx **out, const char **why)
{
	STACK_OF(X509) *certs = pemfile_certs(cert_path);
	BIO *b = BIO_new_file(key_path, "r");
	EVP_PKEY *key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
	struct mtls_opts fo = *o;
	X509 *leaf = NULL;
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
	leaf = sk_X509_shift(certs);
	fo.cert = leaf;
	fo.key = key;
	fo.chain = certs;
	rc = mtls_ctx_new_opts(&fo, out, why);
out:
	ERR_clear_error();
	X509_free(leaf);
	EVP_PKEY_free(key);
	BIO_free(b);
	sk_X509_pop_free(certs, X509_free);
	return rc;
}

int mtls_ctx_new(STACK_OF(X509) * chain, EVP_PKEY *key, STACK_OF(X509) * roots,
		 struct mtls_ctx **out, const char **why)
{
	return mtls_ctx_new_mesh(chain, key, roots, 1, out, why);
}

int mtls_ctx_new_mesh(STACK_OF(X509) * chain, EVP_PKEY *key, STACK_OF(X509) * roots,
		      int resumption, struct mtls_ctx **out, const char **why)
{
	STACK_OF(X509) *inter = NULL;
	int rc;

	if (!chain || sk_X509_num(chain) == 0 || !key || !roots || sk_X509_num(roots) == 0) {
		*why = "a certificate, its key and a trust bundle are all required";
		return -EINVAL;
	}
	if (!(inter = sk_X509_dup(chain)))
		return -ENOMEM;
	sk_X509_shift(inter); /* the leaf, borrowed */
	struct mtls_opts o = {
		.roles = MTLS_ROLE_SERVER | MTLS_ROLE_CLIENT,
		.cert = sk_X509_value(chain, 0),
		.key = key,
		.chain = inter,
		.roots = roots,
		.verify = MTLS_VERIFY_SPIFFE,
		.alpn = "\x0c" MTLS_MESH_ALPN,
		.alpn_len = sizeof(MTLS_MESH_ALPN),
		.resumption = resumption,
	};
	_Static_assert(sizeof(MTLS_MESH_ALPN) - 1 == 0x0c, "the mesh ALPN's length byte");
	rc = mtls_ctx_new_opts(&o, out, why);
	sk_X509_free(inter);
	return rc;
}

struct mtls_ctx *mtls_ctx_ref(struct mtls_ctx *ctx)
{
	atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
	return ctx;
}

void mtls_ctx_unref(struct mtls_ctx *ctx)
{
	/* release: this thread's uses come before the free; acquire: the
	 * last one sees every other thread's */
	if (!ctx || atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) > 1)
		return;
	for (unsigned i = 0; ctx->sessions && i < MTLS_SESSION_SLOTS; i++)
		SSL_SESSION_free(ctx->sessions[i].sess);
	free(ctx->sessions);
	pthread_mutex_destroy(&ctx->sessions_lock);
	SSL_CTX_free(ctx->server);
	SSL_CTX_free(ctx->client);
	certverify_memo_free(ctx->verified);
	X509_STORE_free(ctx->roots);
	free(ctx);
}

const char *mtls_ctx_spiffe_id(const struct mtls_ctx *ctx)
{
	return ctx->spiffe_id;
}

int64_t mtls_ctx_not_after(const struct mtls_ctx *ctx)
{
	X509 *cert = SSL_CTX_get0_certificate(ctx->server ? ctx->server : ctx->client);
	int64_t t = 0;

	if (!cert || svid_time_unix(X509_get0_notAfter(cert), &t) < 0)
		t = 0;
	return t;
}

/* ---- connections */

static int mtls_conn_new(struct mtls_ctx *ctx, int client, const char *expected,
			 struct mtls_conn **out)
{
	struct mtls_conn *c = calloc(1, sizeof(*c));
	struct in6_addr a6;
	struct in_addr a4;

	if (!c)
		return -ENOMEM;
	c->ssl = SSL_new(client ? ctx->client : ctx->server);
	if (!c->ssl || !SSL_set_ex_data(c->ssl, mtls_ex_index, c) || mtls_bio_attach(c) < 0) {
		SSL_free(c->ssl);
		free(c);
		return -ENOMEM;
	}
	c->ctx = mtls_ctx_ref(ctx);
	c->client = client;
	if (!client) {
		SSL_set_accept_state(c->ssl);
		*out = c;
		return 0;
	}
	if (!(c->expected = strdup(expected))) {
		mtls_conn_free(c);
		return -ENOMEM;
	}
	SSL_set_connect_state(c->ssl);
	if (ctx->verify == MTLS_VERIFY_HOSTNAME && inet_pton(AF_INET, expected, &a4) != 1 &&
	    inet_pton(AF_INET6, expected, &a6) != 1 && !SSL_set_tlsext_host_name(c->ssl, expected)) {
		mtls_conn_free(c);
		ERR_clear_error();
		return -ENOMEM;
	}
	pthread_mutex_lock(&ctx->sessions_lock);
	for (unsigned i = 0; ctx->sessions && i < MTLS_SESSION_SLOTS; i++)
		if (ctx->sessions[i].sess && !strcmp(ctx->sessions[i].id, expected)) {
			SSL_set_session(c->ssl, ctx->sessions[i].sess);
			break;
		}
	pthread_mutex_unlock(&ctx->sessions_lock);
	*out = c;
	return 0;
}

int mtls_conn_new_server(struct mtls_ctx *ctx, struct mtls_conn **out)
{
	if (!ctx->server)
		return -EINVAL;
	return mtls_conn_new(ctx, 0, NULL, out);
}

int mtls_conn_new_client(struct mtls_ctx *ctx, const char *expected, struct mtls_conn **out)
{
	if (!ctx->client || !expected || !*expected || strlen(expected) > SPIFFE_ID_MAX)
		return -EINVAL;
	return mtls_conn_new(ctx, 1, expected, out);
}

void mtls_conn_free(struct mtls_conn *c)
{
	if (!c)
		return;
	X509_free(c->peer_cert);
	SSL_free(c->ssl);
	mtls_buf_free(&c->in);
	mtls_buf_free(&c->out);
	mtls_ctx_unref(c->ctx);
	free(c->expected);
	free(c->peer);
	free(c);
}

int mtls_conn_feed(struct mtls_conn *c, const uint8_t *data, size_t len)
{
	if (len > MTLS_MAX_IO)
		return -ENOMEM;
	return mtls_buf_append(&c->in, data, len);
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
	const uint8_t *p;
	unsigned n;

	if (r == 1) {
		if (SSL_session_reused(c->ssl) && c->ctx->verify == MTLS_VERIFY_SPIFFE &&
		    mtls_resumed_identity(c, why) < 0)
			return -EPROTO;
		/* This BoringSSL goes on when the select callback returns a fatal
		 * alert: a required ALPN is checked here, on both sides. */
		SSL_get0_alpn_selected(c->ssl, &p, &n);
		if (c->ctx->alpn_required && n == 0) {
			*why = c->client ? "the server selected none of our ALPN protocols"
					 : "the client offers none of our ALPN protocols";
			c->cause = "alpn_mismatch";
			SSL_send_fatal_alert(c->ssl, SSL_AD_NO_APPLICATION_PROTOCOL);
			ERR_clear_error();
			return -EPROTO;
		}
		return MTLS_HS_DONE;
	}
	if (SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_READ)
		return MTLS_HS_WANT_READ;
	uint32_t e = ERR_peek_error();
	*why = c->why ? c->why : e ? ERR_reason_error_string(e) : "handshake failed";
	if (!*why)
		*why = "handshake failed";
	if (!c->cause) { /* a client that sent no certificate never reaches mtls_verify */
		int reason = ERR_GET_LIB(e) == ERR_LIB_SSL ? ERR_GET_REASON(e) : 0;
		c->cause = reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE ? "no_client_cert"
			   : reason == SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL ? "alpn_mismatch"
										 : "protocol";
	}
	ERR_clear_error();
	return -EPROTO;
}

const char *mtls_conn_failure_cause(const struct mtls_conn *c)
{
	return c->cause ? c->cause : "protocol";
}

int mtls_conn_read(struct mtls_conn *c, uint8_t *buf, size_t len)
{
	int r = SSL_read(c->ssl, buf, (int)(len > MTLS_MAX_IO ? MTLS_MAX_IO : len));

	if (r > 0)
		return r;
	/* SSL_read clears the error queue on entry: only a failure leaves one */
	int e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ)
		return 0;
	if (e == SSL_ERROR_ZERO_RETURN)
		return -EPIPE;
	ERR_clear_error();
	return -EPROTO;
}

int mtls_conn_write(struct mtls_conn *c, const uint8_t *data, size_t len)
{
	/* room for all the records at once, not grown record by record (on
	 * failure the BIO's appends try again) */
	(void)mtls_buf_reserve(&c->out, len + (len / MTLS_WRITE_CHUNK + 1) * MTLS_RECORD_OVERHEAD);
	while (len > 0) {
		int chunk = len > MTLS_WRITE_CHUNK ? MTLS_WRITE_CHUNK : (int)len;
		int r = SSL_write(c->ssl, data, chunk);

		if (r <= 0) {
			ERR_clear_error();
			return -EPROTO;
		}
		data += r;
		len -= (size_t)r;
	}
	return 0;
}

size_t mtls_conn_pending_out(const struct mtls_conn *c)
{
	return c->out.len;
}

size_t mtls_conn_peek_out(const struct mtls_conn *c, const uint8_t **data)
{
	*data = c->out.p ? c->out.p + c->out.off : NULL;
	return c->out.len;
}

void mtls_conn_consume_out(struct mtls_conn *c, size_t n)
{
	mtls_buf_consume(&c->out, n < c->out.len ? n : c->out.len);
}

size_t mtls_conn_take_out(struct mtls_conn *c, uint8_t *buf, size_t len)
{
	const uint8_t *p;
	size_t n = mtls_conn_peek_out(c, &p);

	if (n > len)
		n = len;
	if (n) {
		memcpy(buf, p, n);
		mtls_conn_consume_out(c, n);
	}
	return n;
}

void mtls_conn_shutdown(struct mtls_conn *c)
{
	if (SSL_is_init_finished(c->ssl))
		SSL_shutdown(c->ssl);
	ERR_clear_error();
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

int mtls_conn_alpn_is(const struct mtls_conn *c, const char *proto)
{
	const uint8_t *p;
	unsigned n;

	SSL_get0_alpn_selected(c->ssl, &p, &n);
	return n > 0 && n == strlen(proto) && !memcmp(p, proto, n);
}

int mtls_conn_agent_peer(const struct mtls_conn *c)
{
	return mtls_conn_alpn_is(c, MTLS_MESH_ALPN);
}

int mtls_conn_resumed(const struct mtls_conn *c)
{
	return SSL_session_reused(c->ssl);
}

X509 *mtls_conn_get0_peer(struct mtls_conn *c)
{
	if (!c->peer_cert)
		c->peer_cert = SSL_get_peer_certificate(c->ssl);
	return c->peer_cert;
}

STACK_OF(X509) * mtls_conn_get0_peer_chain(const struct mtls_conn *c)
{
	return SSL_get_peer_cert_chain(c->ssl);
}
