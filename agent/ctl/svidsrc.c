/* svidsrc: see svidsrc.h.
 *
 * One state machine driven by two timers:
 *   retry   fires when the next Sign call is due (at once, at renewal
 *           time, or after a backoff); at most one call is in flight
 *   expiry  fires at the current certificate's notAfter: fail closed
 * A call moves WAITING -> CALLING -> (installed | failed) -> WAITING. The
 * key of a call lives in the call until its certificate is installed, so a
 * failed call never touches the certificate in use. */
#include "svidsrc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bytestring.h>
#include <openssl/ec_key.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "backoff.h"
#include "cinch/v1/identity.pb-c.h"
#include "certverify.h"
#include "grpcc.h"
#include "log.h"
#include "spiffe.h"
#include "svid.h"

#define SVIDSRC_CALL_TIMEOUT_MS 15000
#define SVIDSRC_MAX_RESPONSE	(256 * 1024)
#define SVIDSRC_MAX_TOKEN	16384

struct svidsrc {
	uv_loop_t *loop;
	struct h2c *h;
	char *url, *boot_ca_pem, *cred_path, *want_id;
	enum svidsrc_cred cred;
	int64_t ttl;
	svidsrc_cb on_svid;
	void *arg;

	uv_timer_t retry, expiry;
	int handles_open; /* timers not yet closed: free when it reaches 0 */
	int stopped;

	/* The call in flight (call != NULL), its key and its response. */
	struct grpcc_call *call;
	EVP_PKEY *call_key;
	int call_renewal;
	uint8_t *resp;
	size_t resp_len;

	/* The certificate in use (key != NULL) and the newest bundle. */
	EVP_PKEY *key;
	STACK_OF(X509) * chain, *roots;
	uint64_t seq;
	char spiffe_id[SPIFFE_ID_MAX + 1];
	char serial[80];
	time_t not_before, not_after;
	char *roots_pem;

	/* Join tokens work once: the hash of the one sent with the call in
	 * flight, and of the one a certificate was bought with. */
	uint8_t call_token[SHA256_DIGEST_LENGTH], used_token[SHA256_DIGEST_LENGTH];
	int token_spent;
	struct backoff backoff;
	struct svidsrc_status st;
};

static void svidsrc_attempt(uv_timer_t *t);

static void svidsrc_fail(struct svidsrc *s, const char *what, const char *detail)
{
	unsigned delay = backoff_next(&s->backoff);

	snprintf(s->st.last_error, sizeof(s->st.last_error), "%s%s%s", what,
		 detail && *detail ? ": " : "", detail ? detail : "");
	s->st.failures++;
	s->st.next_attempt = time(NULL) + delay / 1000;
	log_event(LOG_LVL_WARN, "svid_request_failed",
		  log_pack("{s:s, s:i, s:i, s:b}", "error", s->st.last_error, "failures",
			   (int)s->st.failures, "retry_ms", (int)delay, "renewal",
			   s->call_renewal));
	uv_timer_start(&s->retry, svidsrc_attempt, delay, 0);
}

/* Reads the bootstrap token: the whole file, trailing whitespace cut. */
static char *svidsrc_read_token(const char *path, const char **why)
{
	char *buf = NULL;
	ssize_t n = -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		*why = "cannot open the credential file";
		return NULL;
	}
	buf = malloc(SVIDSRC_MAX_TOKEN + 1);
	if (buf)
		n = read(fd, buf, SVIDSRC_MAX_TOKEN + 1);
	close(fd);
	if (n < 0 || n > SVIDSRC_MAX_TOKEN) {
		*why = n < 0 ? "cannot read the credential file" : "credential file too large";
		goto fail;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		n--;
	buf[n] = '\0';
	if (n == 0 || memchr(buf, '\0', (size_t)n)) {
		*why = "credential file is empty or binary";
		goto fail;
	}
	return buf;
fail:
	if (buf)
		OPENSSL_cleanse(buf, SVIDSRC_MAX_TOKEN + 1);
	free(buf);
	return NULL;
}

/* A fresh P-256 key and a CSR for it, DER. */
static int svidsrc_csr(EVP_PKEY **key_out, uint8_t **der, size_t *der_len)
{
	EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
	EVP_PKEY *key = EVP_PKEY_new();
	X509_REQ *req = X509_REQ_new();
	uint8_t *buf = NULL;
	int len, rc = -ENOMEM;

	if (!ec || !key || !req || !EC_KEY_generate_key(ec) || !EVP_PKEY_assign_EC_KEY(key, ec))
		goto out;
	ec = NULL; /* owned by key */
	if (!X509_REQ_set_version(req, 0) || !X509_REQ_set_pubkey(req, key) ||
	    !X509_REQ_sign(req, key, EVP_sha256()))
		goto out;
	len = i2d_X509_REQ(req, &buf);
	if (len <= 0)
		goto out;
	*der = buf;
	*der_len = (size_t)len;
	*key_out = key;
	key = NULL;
	rc = 0;
out:
	EC_KEY_free(ec);
	EVP_PKEY_free(key);
	X509_REQ_free(req);
	return rc;
}

/* PEM of every certificate of `sk` appended to `bio`. */
static int svidsrc_pem_certs(BIO *bio, const STACK_OF(X509) * sk)
{
	for (size_t i = 0; i < sk_X509_num(sk); i++)
		if (!PEM_write_bio_X509(bio, sk_X509_value(sk, i)))
			return -ENOMEM;
	return 0;
}

static char *svidsrc_bio_string(BIO *bio)
{
	const uint8_t *data;
	size_t len;

	if (!BIO_mem_contents(bio, &data, &len))
		return NULL;
	char *s = malloc(len + 1);
	if (s) {
		memcpy(s, data, len);
		s[len] = '\0';
	}
	return s;
}

/* TLS credentials for the next call: the control plane is trusted by the
 * bootstrap bundle and the newest one; a renewal adds our certificate. */
static int svidsrc_creds(struct svidsrc *s, int renewal, struct mtls_ctx **out)
{
	BIO *ca = BIO_new(BIO_s_mem()), *cert = BIO_new(BIO_s_mem()), *key = BIO_new(BIO_s_mem());
	char *ca_pem = NULL, *cert_pem = NULL, *key_pem = NULL;
	int rc = -ENOMEM;

	if (!ca || !cert || !key || BIO_puts(ca, s->boot_ca_pem) < 0 ||
	    (s->roots_pem && BIO_puts(ca, s->roots_pem) < 0))
		goto out;
	if (renewal && (svidsrc_pem_certs(cert, s->chain) < 0 ||
			!PEM_write_bio_PrivateKey(key, s->key, NULL, NULL, 0, NULL, NULL)))
		goto out;
	ca_pem = svidsrc_bio_string(ca);
	if (!ca_pem)
		goto out;
	if (renewal) {
		cert_pem = svidsrc_bio_string(cert);
		key_pem = svidsrc_bio_string(key);
		if (!cert_pem || !key_pem)
			goto out;
	}
	rc = h2c_tls_new(ca_pem, cert_pem, key_pem, out);
out:
	if (key_pem) {
		OPENSSL_cleanse(key_pem, strlen(key_pem));
		free(key_pem);
	}
	free(ca_pem);
	free(cert_pem);
	BIO_free(ca);
	BIO_free(cert);
	BIO_free(key); /* BoringSSL's memory BIO cleanses nothing: key text is short-lived */
	return rc;
}

static void svidsrc_drop_current(struct svidsrc *s)
{
	EVP_PKEY_free(s->key);
	sk_X509_pop_free(s->chain, X509_free);
	s->key = NULL;
	s->chain = NULL;
	s->spiffe_id[0] = s->serial[0] = '\0';
	s->not_before = s->not_after = 0;
}

STACK_OF(X509) * svidsrc_der_certs(const ProtobufCBinaryData *ders, size_t n)
{
	STACK_OF(X509) *sk = sk_X509_new_null();

	for (size_t i = 0; sk && i < n; i++) {
		const uint8_t *p = ders[i].data;
		X509 *c = d2i_X509(NULL, &p, (long)ders[i].len);
		if (!c || p != ders[i].data + ders[i].len || !sk_X509_push(sk, c)) {
			X509_free(c);
			sk_X509_pop_free(sk, X509_free);
			return NULL;
		}
	}
	return sk;
}

/* Checks a SignResponse against the key of the call; installs it on
 * success. Returns NULL or why it was refused. */
static const char *svidsrc_install(struct svidsrc *s, const Cinch__V1__SignResponse *r)
{
	STACK_OF(X509) *chain = NULL, *roots = NULL;
	BIO *pem = NULL;
	char *roots_pem = NULL, id[SPIFFE_ID_MAX + 1];
	int64_t nb, na;
	const char *why = NULL;

	if (r->n_cert_chain == 0 || !r->bundle || r->bundle->n_x509_authorities == 0)
		return "response without certificate or bundle";
	chain = svidsrc_der_certs(r->cert_chain, r->n_cert_chain);
	roots = svidsrc_der_certs(r->bundle->x509_authorities, r->bundle->n_x509_authorities);
	if (!chain || !roots) {
		why = "response holds a malformed certificate";
		goto out;
	}
	X509 *leaf = sk_X509_value(chain, 0);
	if (X509_check_private_key(leaf, s->call_key) != 1) {
		why = "certificate is not for our key";
		goto out;
	}
	if (svid_spiffe_id(leaf, id, sizeof(id), &why) < 0)
		goto out;
	if (strcmp(id, r->spiffe_id) != 0 || (s->want_id && strcmp(id, s->want_id) != 0)) {
		why = "certificate names another identity";
		goto out;
	}
	if (svid_time_unix(X509_get0_notBefore(leaf), &nb) < 0 ||
	    svid_time_unix(X509_get0_notAfter(leaf), &na) < 0 || na <= time(NULL)) {
		why = "certificate has bad or past validity";
		goto out;
	}
	switch (certverify_roots(roots, leaf, chain, NULL, NULL)) {
	case 0:
		break;
	case -ENOMEM:
		goto nomem;
	default:
		why = "certificate does not verify against its bundle";
		goto out;
	}
	pem = BIO_new(BIO_s_mem());
	if (!pem || svidsrc_pem_certs(pem, roots) < 0 || !(roots_pem = svidsrc_bio_string(pem)))
		goto nomem;

	svidsrc_drop_current(s);
	sk_X509_pop_free(s->roots, X509_free);
	free(s->roots_pem);
	s->key = s->call_key;
	s->call_key = NULL;
	s->chain = chain;
	s->roots = roots;
	s->roots_pem = roots_pem;
	chain = roots = NULL;
	s->seq = r->bundle->sequence;
	memcpy(s->spiffe_id, id, sizeof(id));
	snprintf(s->serial, sizeof(s->serial), "%s", r->serial_hex);
	s->not_before = (time_t)nb;
	s->not_after = (time_t)na;
	goto out;
nomem:
	why = "out of memory";
out:
	sk_X509_pop_free(chain, X509_free);
	sk_X509_pop_free(roots, X509_free);
	BIO_free(pem);
	return why;
}

static void svidsrc_expired(uv_timer_t *t)
{
	struct svidsrc *s = t->data;

	if (!s->key || time(NULL) < s->not_after) {
		if (s->key)
			uv_timer_start(&s->expiry, svidsrc_expired, 1000, 0);
		return;
	}
	log_event(LOG_LVL_ERROR, "svid_expired",
		  log_pack("{s:s, s:s, s:s}", "spiffe_id", s->spiffe_id, "serial", s->serial,
			   "effect",
			   "failing closed: no new connections until a certificate arrives"));
	svidsrc_drop_current(s);
	s->st.not_after = 0;
	s->on_svid(s->arg, NULL);
}

/* After a certificate: renew at half of what is left, minus up to a tenth
 * of it, so a fleet spreads its renewals. */
static void svidsrc_schedule_renewal(struct svidsrc *s)
{
	time_t now = time(NULL);
	uint64_t left_ms = s->not_after > now ? (uint64_t)(s->not_after - now) * 1000 : 0;
	uint32_t r = 0;

	RAND_bytes((uint8_t *)&r, sizeof(r));
	uint64_t delay = left_ms / 2 - (left_ms / 10 ? r % (left_ms / 10) : 0);
	s->st.next_attempt = now + (time_t)(delay / 1000);
	uv_timer_start(&s->retry, svidsrc_attempt, delay, 0);
	uv_timer_start(&s->expiry, svidsrc_expired, left_ms + 1000, 0);
}

static int svidsrc_on_message(void *arg, const uint8_t *msg, size_t len)
{
	struct svidsrc *s = arg;

	if (s->resp)
		return -EPROTO; /* unary: exactly one message */
	s->resp = malloc(len ? len : 1);
	if (!s->resp)
		return -ENOMEM;
	memcpy(s->resp, msg, len);
	s->resp_len = len;
	return 0;
}

static void svidsrc_on_done(void *arg, int code, const char *message)
{
	struct svidsrc *s = arg;
	Cinch__V1__SignResponse *r = NULL;
	const char *why = NULL;
	char detail[200];

	s->call = NULL;
	if (s->stopped)
		goto out;
	if (code != GRPC_OK) {
		snprintf(detail, sizeof(detail), "%s: %s", grpc_code_name(code), message);
		svidsrc_fail(s, "Sign refused", detail);
		goto out;
	}
	r = s->resp ? cinch__v1__sign_response__unpack(NULL, s->resp_len, s->resp) : NULL;
	why = r ? svidsrc_install(s, r) : "malformed SignResponse";
	if (why) {
		svidsrc_fail(s, "certificate refused", why);
		goto out;
	}
	if (!s->call_renewal && s->cred == SVIDSRC_JOIN_TOKEN) {
		memcpy(s->used_token, s->call_token, sizeof(s->used_token));
		s->token_spent = 1;
	}
	backoff_reset(&s->backoff);
	s->st.failures = 0;
	s->st.last_error[0] = '\0';
	s->st.issued++;
	s->st.not_after = s->not_after;
	log_event(LOG_LVL_INFO, "svid_issued",
		  log_pack("{s:s, s:s, s:I, s:I, s:b}", "spiffe_id", s->spiffe_id, "serial",
			   s->serial, "not_after", (json_int_t)s->not_after, "bundle_sequence",
			   (json_int_t)s->seq, "renewal", s->call_renewal));
	svidsrc_schedule_renewal(s);
	struct svidsrc_svid v = {
		.key = s->key,
		.chain = s->chain,
		.roots = s->roots,
		.bundle_sequence = s->seq,
		.spiffe_id = s->spiffe_id,
		.serial_hex = s->serial,
		.not_before = s->not_before,
		.not_after = s->not_after,
	};
	s->on_svid(s->arg, &v);
out:
	if (r)
		cinch__v1__sign_response__free_unpacked(r, NULL);
	free(s->resp);
	s->resp = NULL;
	EVP_PKEY_free(s->call_key);
	s->call_key = NULL;
}

/* The bootstrap credential into `cred`; `token` is the caller's to cleanse
 * and free. NULL or why there is none to use. */
static const char *svidsrc_bootstrap(struct svidsrc *s, Cinch__V1__Credential *cred, char **token)
{
	const char *why = NULL;
	uint8_t hash[SHA256_DIGEST_LENGTH];

	*token = svidsrc_read_token(s->cred_path, &why);
	if (!*token)
		return why;
	if (s->cred == SVIDSRC_JOIN_TOKEN) {
		SHA256((const uint8_t *)*token, strlen(*token), hash);
		if (s->token_spent && CRYPTO_memcmp(hash, s->used_token, sizeof(hash)) == 0)
			return "the join token was spent on an earlier certificate; write a new "
			       "one to the token file";
		cred->kind_case = CINCH__V1__CREDENTIAL__KIND_JOIN_TOKEN;
		cred->join_token = *token;
	} else {
		cred->kind_case = CINCH__V1__CREDENTIAL__KIND_KUBERNETES_TOKEN;
		cred->kubernetes_token = *token;
	}
	return NULL;
}

static void svidsrc_attempt(uv_timer_t *t)
{
	struct svidsrc *s = t->data;
	Cinch__V1__SignRequest req = CINCH__V1__SIGN_REQUEST__INIT;
	Cinch__V1__Credential cred = CINCH__V1__CREDENTIAL__INIT;
	struct mtls_ctx *creds = NULL;
	uint8_t *csr = NULL, *packed = NULL;
	size_t csr_len = 0, packed_len;
	char *token = NULL;
	const char *why = NULL;

	s->call_renewal = s->key && time(NULL) < s->not_after;
	if (!s->call_renewal) {
		why = svidsrc_bootstrap(s, &cred, &token);
		if (why)
			goto fail;
		req.credential = &cred;
	}
	if (svidsrc_csr(&s->call_key, &csr, &csr_len) < 0 ||
	    svidsrc_creds(s, s->call_renewal, &creds) < 0) {
		why = "cannot build the request";
		goto fail;
	}
	req.csr.data = csr;
	req.csr.len = csr_len;
	req.requested_spiffe_id = s->want_id ? s->want_id : "";
	req.requested_ttl_seconds = s->ttl;
	packed_len = cinch__v1__sign_request__get_packed_size(&req);
	packed = malloc(packed_len ? packed_len : 1);
	if (!packed) {
		why = "out of memory";
		goto fail;
	}
	cinch__v1__sign_request__pack(&req, packed);
	struct grpcc_opts o = {
		.base_url = s->url,
		.method = "/cinch.v1.Identity/Sign",
		.request = packed,
		.request_len = packed_len,
		.timeout_ms = SVIDSRC_CALL_TIMEOUT_MS,
		.max_message = SVIDSRC_MAX_RESPONSE,
		.on_message = svidsrc_on_message,
		.on_done = svidsrc_on_done,
		.arg = s,
	};
	if (grpcc_call(s->h, creds, &o, &s->call) < 0) {
		why = "cannot start the call";
		goto fail;
	}
	if (token && s->cred == SVIDSRC_JOIN_TOKEN)
		SHA256((const uint8_t *)token, strlen(token), s->call_token);
	goto out;
fail:
	EVP_PKEY_free(s->call_key);
	s->call_key = NULL;
	svidsrc_fail(s, "cannot ask for a certificate", why);
out:
	if (token) {
		OPENSSL_cleanse(token, strlen(token));
		free(token);
	}
	OPENSSL_free(csr);
	if (packed)
		OPENSSL_cleanse(packed, packed_len); /* holds the token */
	free(packed);
	mtls_ctx_unref(creds);
}

static char *svidsrc_strdup(const char *v, int *bad)
{
	char *d = v ? strdup(v) : NULL;

	if (v && !d)
		*bad = 1;
	return d;
}

int svidsrc_start(uv_loop_t *loop, struct h2c *h, const struct svidsrc_opts *o,
		  struct svidsrc **out)
{
	struct svidsrc *s;
	int bad = 0;

	if (!o->control_url || !o->control_ca_pem || !o->cred_path || !o->on_svid ||
	    (o->cred != SVIDSRC_JOIN_TOKEN && o->cred != SVIDSRC_K8S_TOKEN) ||
	    (o->spiffe_id && spiffe_id_validate(o->spiffe_id, strlen(o->spiffe_id), NULL) < 0) ||
	    o->ttl_seconds < 0)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->url = svidsrc_strdup(o->control_url, &bad);
	s->boot_ca_pem = svidsrc_strdup(o->control_ca_pem, &bad);
	s->cred_path = svidsrc_strdup(o->cred_path, &bad);
	s->want_id = svidsrc_strdup(o->spiffe_id, &bad);
	if (bad) {
		free(s->url);
		free(s->boot_ca_pem);
		free(s->cred_path);
		free(s->want_id);
		free(s);
		return -ENOMEM;
	}
	s->loop = loop;
	s->h = h;
	s->cred = o->cred;
	s->ttl = o->ttl_seconds;
	s->on_svid = o->on_svid;
	s->arg = o->arg;
	backoff_reset(&s->backoff);
	uv_timer_init(loop, &s->retry);
	uv_timer_init(loop, &s->expiry);
	s->retry.data = s->expiry.data = s;
	s->handles_open = 2;
	s->st.next_attempt = time(NULL);
	uv_timer_start(&s->retry, svidsrc_attempt, 0, 0);
	*out = s;
	return 0;
}

static void svidsrc_closed(uv_handle_t *hd)
{
	struct svidsrc *s = hd->data;

	if (--s->handles_open > 0)
		return;
	svidsrc_drop_current(s);
	sk_X509_pop_free(s->roots, X509_free);
	free(s->roots_pem);
	free(s->url);
	free(s->boot_ca_pem);
	free(s->cred_path);
	free(s->want_id);
	OPENSSL_cleanse(s, sizeof(*s));
	free(s);
}

void svidsrc_stop(struct svidsrc *s)
{
	if (!s)
		return;
	s->stopped = 1;
	if (s->call)
		grpcc_cancel(s->call); /* on_done runs now and frees the call's state */
	uv_close((uv_handle_t *)&s->retry, svidsrc_closed);
	uv_close((uv_handle_t *)&s->expiry, svidsrc_closed);
}

int svidsrc_mtls_creds(struct svidsrc *s, struct mtls_ctx **out)
{
	return s->key ? svidsrc_creds(s, 1, out) : -ENOENT;
}

void svidsrc_status(const struct svidsrc *s, struct svidsrc_status *out)
{
	*out = s->st;
}
