/* mtls_test: the TLS engine between two in-memory peers. The mesh
 * (SPIFFE) contexts: a handshake and data both ways (also one byte at a
 * time), identities on both sides, resumption, and every refusal: another
 * identity at the address, another CA (either side), no client
 * certificate, a leaf that is not an SVID, an expired certificate, a key
 * that does not match. Tampered records (a byte flipped in the handshake
 * or in application data): a clean -EPROTO, never bytes or a crash. The
 * control's contexts: a client dialing by name or address checks the
 * server's name (a certificate for another name is refused), a gRPC
 * server with an optional client certificate (verified when presented),
 * ALPN required (a client without h2 fails, a server that selects nothing
 * fails a client that requires it) or optional (the webhook). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "mtls.h"
#include "testpki.h"

#define API "spiffe://cluster.local/ns/shop/sa/api"
#define WEB "spiffe://cluster.local/ns/shop/sa/web"

static struct {
	EVP_PKEY *ca_key, *other_key, *k_api, *k_web, *k_bad;
	X509 *ca, *other;
} pki;

static int setup(void **state)
{
	pki.ca_key = testpki_key();
	pki.other_key = testpki_key();
	pki.k_api = testpki_key();
	pki.k_web = testpki_key();
	pki.k_bad = testpki_key();
	pki.ca = testpki_root(pki.ca_key, "mtls test root", 1);
	pki.other = testpki_root(pki.other_key, "another mesh", 1);
	return pki.ca && pki.other ? 0 : -1;
}

static int teardown(void **state)
{
	X509_free(pki.ca);
	X509_free(pki.other);
	EVP_PKEY_free(pki.ca_key);
	EVP_PKEY_free(pki.other_key);
	EVP_PKEY_free(pki.k_api);
	EVP_PKEY_free(pki.k_web);
	EVP_PKEY_free(pki.k_bad);
	return 0;
}

/* A context for `id` (a leaf from `ca` unless told otherwise). */
static struct mtls_ctx *ctx_for(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *key, const char *const *sans,
				size_t n, long not_before, long lifetime, const char **why)
{
	X509 *leaf = testpki_leaf(ca, ca_key, key, sans, n, not_before, lifetime);
	STACK_OF(X509) *chain = sk_X509_new_null(), *roots = sk_X509_new_null();
	struct mtls_ctx *ctx = NULL;

	assert_non_null(leaf);
	sk_X509_push(chain, leaf);
	/* the mesh's root, and the issuer's own when it is another CA (an
	 * intruder trusts anything; its own chain must verify) */
	X509_up_ref(pki.ca);
	sk_X509_push(roots, pki.ca);
	if (ca != pki.ca) {
		X509_up_ref(ca);
		sk_X509_push(roots, ca);
	}
	if (mtls_ctx_new(chain, key, roots, &ctx, why) < 0)
		ctx = NULL;
	sk_X509_pop_free(chain, X509_free);
	sk_X509_pop_free(roots, X509_free);
	return ctx;
}

static struct mtls_ctx *good(const char *id, EVP_PKEY *key)
{
	const char *why = NULL;
	const char *sans[] = {id};
	struct mtls_ctx *c = ctx_for(pki.ca, pki.ca_key, key, sans, 1, -60, 3600, &why);
	assert_non_null(c);
	return c;
}

/* Moves ciphertext between the two ends, at most `step` bytes per move
 * (0: all), until both handshakes end. Returns what the handshakes said. */
struct hs {
	int client_rc, server_rc;
	const char *client_why, *server_why;
};

static void shuttle(struct mtls_conn *from, struct mtls_conn *to, size_t step)
{
	uint8_t buf[65536];
	size_t n;
	while ((n = mtls_conn_take_out(from, buf, step ? step : sizeof(buf))) > 0) {
		assert_int_equal(mtls_conn_feed(to, buf, n), 0);
		if (step)
			break;
	}
}

static struct hs handshake(struct mtls_conn *cl, struct mtls_conn *sv, size_t step)
{
	struct hs r = {MTLS_HS_WANT_READ, MTLS_HS_WANT_READ, NULL, NULL};
	for (int i = 0; i < 200000; i++) {
		if (r.client_rc == MTLS_HS_WANT_READ)
			r.client_rc = mtls_conn_handshake(cl, &r.client_why);
		if (r.server_rc == MTLS_HS_WANT_READ)
			r.server_rc = mtls_conn_handshake(sv, &r.server_why);
		size_t pending = mtls_conn_pending_out(cl) + mtls_conn_pending_out(sv);
		if ((r.client_rc != MTLS_HS_WANT_READ && r.server_rc != MTLS_HS_WANT_READ) ||
		    (r.client_rc < 0 || r.server_rc < 0)) {
			/* let the last flight (or an alert) arrive */
			shuttle(cl, sv, 0);
			shuttle(sv, cl, 0);
			if (r.client_rc == MTLS_HS_WANT_READ)
				r.client_rc = mtls_conn_handshake(cl, &r.client_why);
			if (r.server_rc == MTLS_HS_WANT_READ)
				r.server_rc = mtls_conn_handshake(sv, &r.server_why);
			if (r.client_rc != MTLS_HS_WANT_READ && r.server_rc != MTLS_HS_WANT_READ)
				return r;
			if (mtls_conn_pending_out(cl) + mtls_conn_pending_out(sv) == 0)
				return r;
			continue;
		}
		if (pending == 0 && i > 0)
			return r;
		shuttle(cl, sv, step);
		shuttle(sv, cl, step);
	}
	fail_msg("handshake did not end");
	return r;
}

/* A client of `client` expecting `expected` and a server of `server`,
 * through a handshake (ciphertext moved `step` bytes at a time, 0: all);
 * the two connections in *cl, *sv, however it ended. */
static struct hs start(struct mtls_ctx *client, const char *expected, struct mtls_ctx *server,
		       size_t step, struct mtls_conn **cl, struct mtls_conn **sv)
{
	assert_int_equal(mtls_conn_new_client(client, expected, cl), 0);
	assert_int_equal(mtls_conn_new_server(server, sv), 0);
	return handshake(*cl, *sv, step);
}

/* start() for a handshake both sides must complete. */
static void pair_step(struct mtls_ctx *client, const char *expected, struct mtls_ctx *server,
		      size_t step, struct mtls_conn **cl, struct mtls_conn **sv)
{
	struct hs r = start(client, expected, server, step, cl, sv);
	assert_int_equal(r.client_rc, MTLS_HS_DONE);
	assert_int_equal(r.server_rc, MTLS_HS_DONE);
}

static void pair(struct mtls_ctx *client, const char *expected, struct mtls_ctx *server,
		 struct mtls_conn **cl, struct mtls_conn **sv)
{
	pair_step(client, expected, server, 0, cl, sv);
}

/* Sends len bytes from a to b, through ciphertext moved `step` at a time. */
static void transfer(struct mtls_conn *a, struct mtls_conn *b, size_t len, size_t step)
{
	uint8_t *data = malloc(len), *got = malloc(len);
	size_t have = 0;
	assert_non_null(data);
	assert_non_null(got);
	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)(i * 31 + 7);
	assert_int_equal(mtls_conn_write(a, data, len), 0);
	while (have < len) {
		uint8_t buf[4096];
		size_t n = mtls_conn_take_out(a, buf, step ? step : sizeof(buf));
		assert_true(n > 0 || have < len);
		if (n)
			assert_int_equal(mtls_conn_feed(b, buf, n), 0);
		int r;
		while ((r = mtls_conn_read(b, got + have, len - have)) > 0)
			have += (size_t)r;
		assert_true(r == 0);
	}
	assert_memory_equal(data, got, len);
	free(data);
	free(got);
}

static void test_handshake_and_data(void **state)
{
	struct mtls_ctx *web = good(WEB, pki.k_web), *api = good(API, pki.k_api);
	struct mtls_conn *cl, *sv;

	assert_string_equal(mtls_ctx_spiffe_id(web), WEB);
	pair(web, API, api, &cl, &sv);
	assert_string_equal(mtls_conn_peer_id(cl), API);
	assert_string_equal(mtls_conn_peer_id(sv), WEB); /* the caller's identity */
	assert_string_equal(mtls_conn_version(cl), "TLSv1.3");
	/* two agents: both know the other is one (verdict.h) */
	assert_int_equal(mtls_conn_agent_peer(cl), 1);
	assert_int_equal(mtls_conn_agent_peer(sv), 1);
	assert_non_null(strstr(mtls_conn_cipher(sv), "TLS_"));
	transfer(cl, sv, 300000, 0);
	transfer(sv, cl, 100000, 0);
	/* The output read where it lies, in two parts (a socket that takes
	 * part of it), loses and repeats nothing. */
	uint8_t msg[] = "queued and written in two parts", got[sizeof(msg)];
	const uint8_t *p;
	assert_int_equal(mtls_conn_write(cl, msg, sizeof(msg)), 0);
	size_t queued = mtls_conn_peek_out(cl, &p);
	assert_true(queued > 10);
	assert_int_equal(mtls_conn_feed(sv, p, 10), 0);
	mtls_conn_consume_out(cl, 10);
	assert_int_equal(mtls_conn_read(sv, got, sizeof(got)), 0); /* half a record */
	assert_int_equal(mtls_conn_peek_out(cl, &p), queued - 10);
	assert_int_equal(mtls_conn_feed(sv, p, queued - 10), 0);
	mtls_conn_consume_out(cl, queued - 10);
	assert_int_equal(mtls_conn_pending_out(cl), 0);
	assert_int_equal(mtls_conn_peek_out(cl, &p), 0);
	assert_int_equal(mtls_conn_read(sv, got, sizeof(got)), (int)sizeof(msg));
	assert_memory_equal(got, msg, sizeof(msg));
	/* close_notify ends the stream cleanly */
	mtls_conn_shutdown(cl);
	shuttle(cl, sv, 0);
	uint8_t b[16];
	assert_int_equal(mtls_conn_read(sv, b, sizeof(b)), -EPIPE);
	mtls_conn_free(cl);
	mtls_conn_free(sv);
	mtls_ctx_unref(web);
	mtls_ctx_unref(api);
}

static void test_one_byte_at_a_time(void **state)
{
	struct mtls_ctx *web = good(WEB, pki.k_web), *api = good(API, pki.k_api);
	struct mtls_conn *cl, *sv;

	pair_step(web, API, api, 1, &cl, &sv);
	transfer(cl, sv, 5000, 1);
	transfer(sv, cl, 3000, 1);
	mtls_conn_free(cl);
	mtls_conn_free(sv);
	mtls_ctx_unref(web);
	mtls_ctx_unref(api);
}

static void test_resumption(void **state)
{
	struct mtls_ctx *web = good(WEB, pki.k_web), *api = good(API, pki.k_api);

	for (int round = 0; round < 3; round++) {
		struct mtls_conn *cl, *sv;
		pair(web, API, api, &cl, &sv);
		transfer(sv, cl, 100, 0); /* the tickets travel with data */
		assert_int_equal(mtls_conn_resumed(cl), round > 0);
		assert_string_equal(mtls_conn_peer_id(cl), API);
		assert_string_equal(mtls_conn_peer_id(sv), WEB);
		assert_int_equal(mtls_conn_agent_peer(cl), 1); /* resumed: negotiated again */
		assert_int_equal(mtls_conn_agent_peer(sv), 1);
		mtls_conn_free(cl);
		mtls_conn_free(sv);
	}
	mtls_ctx_unref(web);
	mtls_ctx_unref(api);
}

/* A mesh context with resumption off (cinch-agent run --no-resumption):
 * off on either side, no handshake is resumed; the server issues no
 * ticket, the client keeps none. */
static struct mtls_ctx *mesh(const char *id, EVP_PKEY *key, int resumption)
{
	const char *sans[] = {id};
	X509 *leaf = testpki_leaf(pki.ca, pki.ca_key, key, sans, 1, -60, 3600);
	STACK_OF(X509) *chain = sk_X509_new_null(), *roots = sk_X509_new_null();
	struct mtls_ctx *ctx = NULL;
	const char *why = NULL;

	sk_X509_push(chain, leaf);
	X509_up_ref(pki.ca);
	sk_X509_push(roots, pki.ca);
	assert_int_equal(mtls_ctx_new_mesh(chain, key, roots, resumption, &ctx, &why), 0);
	sk_X509_pop_free(chain, X509_free);
	sk_X509_pop_free(roots, X509_free);
	return ctx;
}

static void test_no_resumption(void **state)
{
	for (int side = 0; side < 2; side++) {
		struct mtls_ctx *web = mesh(WEB, pki.k_web, side == 1);
		struct mtls_ctx *api = mesh(API, pki.k_api, side == 0);
		for (int round = 0; round < 3; round++) {
			struct mtls_conn *cl, *sv;
			pair(web, API, api, &cl, &sv);
			transfer(sv, cl, 100, 0);
			assert_int_equal(mtls_conn_resumed(cl), 0);
			assert_int_equal(mtls_conn_resumed(sv), 0);
			assert_string_equal(mtls_conn_peer_id(cl), API);
			mtls_conn_free(cl);
			mtls_conn_free(sv);
		}
		mtls_ctx_unref(web);
		mtls_ctx_unref(api);
	}
}

/* A handshake that the client (client_fails) or the server refuses with
 * -EPROTO, a reason containing reason_part and the failure cause `cause`
 * (each checked unless NULL); the other side never gets a usable
 * connection. */
static void refusal(struct mtls_ctx *client, const char *expected, struct mtls_ctx *server,
		    int client_fails, const char *reason_part, const char *cause)
{
	struct mtls_conn *cl, *sv;
	struct hs r = start(client, expected, server, 0, &cl, &sv);
	const char *why = client_fails ? r.client_why : r.server_why;
	assert_int_equal(client_fails ? r.client_rc : r.server_rc, -EPROTO);
	assert_non_null(why);
	if (reason_part && !strstr(why, reason_part))
		fail_msg("reason \"%s\", expected \"%s\"", why, reason_part);
	if (cause)
		assert_string_equal(mtls_conn_failure_cause(client_fails ? cl : sv), cause);
	assert_true((client_fails ? r.server_rc : r.client_rc) != MTLS_HS_DONE ||
		    mtls_conn_read(client_fails ? sv : cl, (uint8_t[8]){0}, 8) < 0);
	mtls_conn_free(cl);
	mtls_conn_free(sv);
}

static void expect_refusal(struct mtls_ctx *client, const char *expected, struct mtls_ctx *server,
			   int client_fails, const char *reason_part)
{
	refusal(client, expected, server, client_fails, reason_part, NULL);
}

static void test_refusals(void **state)
{
	struct mtls_ctx *web = good(WEB, pki.k_web), *api = good(API, pki.k_api);
	const char *why = NULL;

	/* a valid certificate of another workload at the address */
	expect_refusal(web, "spiffe://cluster.local/ns/shop/sa/db", api, 1, "another identity");
	/* a server from another mesh */
	const char *api_sans[] = {API};
	struct mtls_ctx *foreign =
		ctx_for(pki.other, pki.other_key, pki.k_bad, api_sans, 1, -60, 3600, &why);
	assert_non_null(foreign);
	expect_refusal(web, API, foreign, 1, "trust bundle");
	/* a caller from another mesh */
	expect_refusal(foreign, API, api, 0, "trust bundle");
	mtls_ctx_unref(foreign);
	/* an expired caller */
	const char *web_sans[] = {WEB};
	struct mtls_ctx *old =
		ctx_for(pki.ca, pki.ca_key, pki.k_web, web_sans, 1, -7200, 3600, &why);
	assert_non_null(old);
	expect_refusal(old, API, api, 0, "trust bundle");
	mtls_ctx_unref(old);
	mtls_ctx_unref(web);
	mtls_ctx_unref(api);
}

static void test_no_client_certificate(void **state)
{
	struct mtls_ctx *api = good(API, pki.k_api);
	struct mtls_conn *sv;
	SSL_CTX *plain = SSL_CTX_new(TLS_method());
	SSL *ssl = SSL_new(plain);
	BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new(BIO_s_mem());
	const char *why = NULL;
	uint8_t buf[65536];
	int rc = MTLS_HS_WANT_READ;

	SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
	BIO_set_mem_eof_return(in, -1);
	SSL_set_bio(ssl, in, out);
	SSL_set_connect_state(ssl);
	assert_int_equal(mtls_conn_new_server(api, &sv), 0);
	for (int i = 0; i < 20 && rc == MTLS_HS_WANT_READ; i++) {
		SSL_do_handshake(ssl);
		int n;
		while ((n = BIO_read(out, buf, sizeof(buf))) > 0)
			assert_int_equal(mtls_conn_feed(sv, buf, (size_t)n), 0);
		rc = mtls_conn_handshake(sv, &why);
		size_t m;
		while ((m = mtls_conn_take_out(sv, buf, sizeof(buf))) > 0)
			BIO_write(in, buf, (int)m);
	}
	assert_int_equal(rc, -EPROTO);
	ERR_clear_error();
	SSL_free(ssl);
	SSL_CTX_free(plain);
	mtls_conn_free(sv);
	mtls_ctx_unref(api);
}

static void test_bad_credentials(void **state)
{
	const char *why = NULL;
	/* a leaf that is not an SVID: two URI SANs */
	const char *two[] = {WEB, API};
	assert_null(ctx_for(pki.ca, pki.ca_key, pki.k_web, two, 2, -60, 3600, &why));
	assert_non_null(why);
	/* no SAN at all */
	why = NULL;
	assert_null(ctx_for(pki.ca, pki.ca_key, pki.k_web, NULL, 0, -60, 3600, &why));
	assert_non_null(why);
	/* a key that does not match */
	X509 *leaf = testpki_leaf(pki.ca, pki.ca_key, pki.k_web, (const char *const[]){WEB}, 1, -60,
				  3600);
	STACK_OF(X509) *chain = sk_X509_new_null(), *roots = sk_X509_new_null();
	struct mtls_ctx *ctx = NULL;
	sk_X509_push(chain, leaf);
	X509_up_ref(pki.ca);
	sk_X509_push(roots, pki.ca);
	assert_int_equal(mtls_ctx_new(chain, pki.k_api, roots, &ctx, &why), -EINVAL);
	assert_string_equal(why, "the key does not match the certificate");
	assert_int_equal(mtls_ctx_new(chain, pki.k_web, NULL, &ctx, &why), -EINVAL);
	/* a bundle that does not hold our own root: every peer would refuse us */
	STACK_OF(X509) *foreign = sk_X509_new_null();
	X509_up_ref(pki.other);
	sk_X509_push(foreign, pki.other);
	assert_int_equal(mtls_ctx_new(chain, pki.k_web, foreign, &ctx, &why), -EINVAL);
	assert_string_equal(why, "our own certificate does not verify against the trust bundle");
	/* ... and the same bundle with the root added is fine */
	X509_up_ref(pki.ca);
	sk_X509_push(foreign, pki.ca);
	assert_int_equal(mtls_ctx_new(chain, pki.k_web, foreign, &ctx, &why), 0);
	mtls_ctx_unref(ctx);
	sk_X509_pop_free(foreign, X509_free);
	sk_X509_pop_free(chain, X509_free);
	sk_X509_pop_free(roots, X509_free);
}

/* Every byte of a record flipped in turn: the reader gets -EPROTO (the
 * AEAD tag fails, or the header is malformed), never plaintext. */
static void test_tampered_records(void **state)
{
	struct mtls_ctx *web = good(WEB, pki.k_web), *api = good(API, pki.k_api);
	const uint8_t msg[] = "a record an attacker on the path flips a bit of";
	uint8_t rec[512], got[512];

	for (size_t at = 0;; at++) {
		struct mtls_conn *cl, *sv;
		pair(web, API, api, &cl, &sv);
		transfer(sv, cl, 10, 0); /* the tickets, out of the way */
		assert_int_equal(mtls_conn_write(cl, msg, sizeof(msg)), 0);
		size_t n = mtls_conn_take_out(cl, rec, sizeof(rec));
		assert_true(n > sizeof(msg));
		if (at >= n) {
			mtls_conn_free(cl);
			mtls_conn_free(sv);
			break;
		}
		rec[at] ^= 0x01;
		assert_int_equal(mtls_conn_feed(sv, rec, n), 0);
		int r = mtls_conn_read(sv, got, sizeof(got));
		/* a flipped length (bytes 3 and 4 of the header) may just ask for
		 * more bytes, which never come (the caller's timeout ends it);
		 * any other byte is an error at once */
		if (at == 3 || at == 4 ? r > 0 : r != -EPROTO)
			fail_msg("byte %zu of %zu flipped: read gave %d", at, n, r);
		/* and stays broken */
		assert_true(mtls_conn_read(sv, got, sizeof(got)) <= 0);
		assert_true(r < 0 || mtls_conn_feed(sv, rec, n) < 0 ||
			    mtls_conn_read(sv, got, sizeof(got)) <= 0);
		mtls_conn_free(cl);
		mtls_conn_free(sv);
	}
	/* A byte of the server's first flight flipped: the client's handshake
	 * fails, and so does the server's after the alert. */
	for (size_t at = 0;; at += 37) {
		struct mtls_conn *cl, *sv;
		const char *why = NULL;
		uint8_t buf[8192];
		assert_int_equal(mtls_conn_new_client(web, API, &cl), 0);
		assert_int_equal(mtls_conn_new_server(api, &sv), 0);
		assert_int_equal(mtls_conn_handshake(cl, &why), MTLS_HS_WANT_READ);
		shuttle(cl, sv, 0);
		assert_int_equal(mtls_conn_handshake(sv, &why), MTLS_HS_WANT_READ);
		size_t n = mtls_conn_take_out(sv, buf, sizeof(buf));
		if (at >= n) {
			mtls_conn_free(cl);
			mtls_conn_free(sv);
			break;
		}
		buf[at] ^= 0x80;
		assert_int_equal(mtls_conn_feed(cl, buf, n), 0);
		int rc = MTLS_HS_WANT_READ;
		for (int i = 0; i < 4 && rc == MTLS_HS_WANT_READ; i++)
			rc = mtls_conn_handshake(cl, &why);
		if (rc != -EPROTO)
			fail_msg("server flight byte %zu flipped: handshake gave %d", at, rc);
		assert_non_null(why);
		shuttle(cl, sv, 0); /* the alert */
		assert_int_equal(mtls_conn_handshake(sv, &why), -EPROTO);
		mtls_conn_free(cl);
		mtls_conn_free(sv);
	}
	mtls_ctx_unref(web);
	mtls_ctx_unref(api);
}

/* The failure cause names a wrong SPIFFE ID as such. */
static void test_wrong_spiffe_id(void **state)
{
	struct mtls_ctx *web = good(WEB, pki.k_web), *api = good(API, pki.k_api);
	struct mtls_conn *cl, *sv;

	struct hs r = start(web, "spiffe://cluster.local/ns/shop/sa/db", api, 1, &cl, &sv);
	assert_int_equal(r.client_rc, -EPROTO);
	assert_string_equal(mtls_conn_failure_cause(cl), "peer_identity_mismatch");
	assert_true(r.server_rc < 0 || mtls_conn_read(sv, (uint8_t[8]){0}, 8) < 0);
	assert_string_equal(mtls_conn_peer_id(sv), "");
	mtls_conn_free(cl);
	mtls_conn_free(sv);
	mtls_ctx_unref(web);
	mtls_ctx_unref(api);
}

/* ---- the control's contexts */

#define CONTROL_DNS "cinch-control.cinch-system.svc"

static STACK_OF(X509) * roots_of(X509 *ca)
{
	STACK_OF(X509) *roots = sk_X509_new_null();
	assert_non_null(roots);
	X509_up_ref(ca);
	sk_X509_push(roots, ca);
	return roots;
}

/* The control's gRPC server: its certificate for CONTROL_DNS and
 * 127.0.0.1, client certificate optional, h2 required. */
static struct mtls_ctx *control_server(const char *alpn, size_t alpn_len, int required)
{
	static const char dns[] = "DNS:" CONTROL_DNS;
	const char *sans[] = {"spiffe://cluster.local/cinch/control", dns, "IP:127.0.0.1"};
	X509 *leaf = testpki_leaf(pki.ca, pki.ca_key, pki.k_api, sans, 3, -60, 3600);
	STACK_OF(X509) *roots = roots_of(pki.ca);
	struct mtls_opts o = {
		.roles = MTLS_ROLE_SERVER,
		.cert = leaf,
		.key = pki.k_api,
		.roots = roots,
		.verify = MTLS_VERIFY_CHAIN,
		.peer_optional = 1,
		.alpn = alpn,
		.alpn_len = alpn_len,
		.alpn_required = required,
	};
	struct mtls_ctx *ctx = NULL;
	const char *why = NULL;

	assert_non_null(leaf);
	assert_int_equal(mtls_ctx_new_opts(&o, &ctx, &why), 0);
	X509_free(leaf);
	sk_X509_pop_free(roots, X509_free);
	return ctx;
}

/* A client of the control (an agent joining with a token, cinchctl):
 * trusts `ca`, may present `cert` (NULL: none). */
static struct mtls_ctx *control_client(X509 *ca, X509 *cert, EVP_PKEY *key, const char *alpn,
				       size_t alpn_len, int required)
{
	STACK_OF(X509) *roots = roots_of(ca);
	struct mtls_opts o = {
		.roles = MTLS_ROLE_CLIENT,
		.cert = cert,
		.key = cert ? key : NULL,
		.roots = roots,
		.verify = MTLS_VERIFY_HOSTNAME,
		.alpn = alpn,
		.alpn_len = alpn_len,
		.alpn_required = required,
	};
	struct mtls_ctx *ctx = NULL;
	const char *why = NULL;

	if (mtls_ctx_new_opts(&o, &ctx, &why) < 0)
		fail_msg("client context: %s", why);
	sk_X509_pop_free(roots, X509_free);
	return ctx;
}

/* expect_refusal() that names the failure's cause (its metric label). */
static void expect_cause(struct mtls_ctx *client, const char *expected, struct mtls_ctx *server,
			 int client_fails, const char *cause)
{
	refusal(client, expected, server, client_fails, NULL, cause);
}

static void test_hostname(void **state)
{
	struct mtls_ctx *srv = control_server("\x02h2", 3, 1);
	struct mtls_ctx *cli = control_client(pki.ca, NULL, NULL, "\x02h2", 3, 1);
	struct mtls_conn *cl, *sv;

	/* by name and by address, one byte at a time for the name */
	pair_step(cli, CONTROL_DNS, srv, 1, &cl, &sv);
	assert_int_equal(mtls_conn_alpn_is(sv, "h2"), 1);
	assert_int_equal(mtls_conn_alpn_is(cl, "h2"), 1);
	assert_null(mtls_conn_get0_peer(sv)); /* no client certificate: a token caller */
	assert_non_null(mtls_conn_get0_peer(cl));
	assert_string_equal(mtls_conn_peer_id(cl), ""); /* names, not SPIFFE IDs, here */
	transfer(cl, sv, 2000, 0);
	mtls_conn_free(cl);
	mtls_conn_free(sv);
	pair(cli, "127.0.0.1", srv, &cl, &sv);
	mtls_conn_free(cl);
	mtls_conn_free(sv);
	/* a name or address the certificate does not carry */
	expect_cause(cli, "evil.example.com", srv, 1, "hostname_mismatch");
	expect_cause(cli, "cinch-control.cinch-system.svc.evil", srv, 1, "hostname_mismatch");
	expect_cause(cli, "127.0.0.2", srv, 1, "hostname_mismatch");
	/* the right name, but the client trusts another CA */
	struct mtls_ctx *other = control_client(pki.other, NULL, NULL, "\x02h2", 3, 1);
	expect_cause(other, CONTROL_DNS, srv, 1, "untrusted_chain");
	mtls_ctx_unref(other);
	mtls_ctx_unref(cli);
	/* a client certificate: verified when presented */
	X509 *mine = testpki_leaf(pki.ca, pki.ca_key, pki.k_web, (const char *const[]){WEB}, 1, -60,
				  3600);
	cli = control_client(pki.ca, mine, pki.k_web, "\x02h2", 3, 1);
	pair(cli, CONTROL_DNS, srv, &cl, &sv);
	assert_non_null(mtls_conn_get0_peer(sv));
	assert_non_null(mtls_conn_get0_peer_chain(sv));
	mtls_conn_free(cl);
	mtls_conn_free(sv);
	mtls_ctx_unref(cli);
	X509_free(mine);
	X509 *theirs = testpki_leaf(pki.other, pki.other_key, pki.k_bad, (const char *const[]){WEB},
				    1, -60, 3600);
	cli = control_client(pki.ca, theirs, pki.k_bad, "\x02h2", 3, 1);
	expect_cause(cli, CONTROL_DNS, srv, 0, "untrusted_chain");
	mtls_ctx_unref(cli);
	X509_free(theirs);
	mtls_ctx_unref(srv);
}

static void test_alpn(void **state)
{
	struct mtls_ctx *grpc = control_server("\x02h2", 3, 1);
	struct mtls_ctx *https = control_server("\x02h2\x08http/1.1", 12, 0);
	struct mtls_ctx *h1 = control_client(pki.ca, NULL, NULL, "\x08http/1.1", 9, 0);
	struct mtls_ctx *h2 = control_client(pki.ca, NULL, NULL, "\x02h2", 3, 1);
	struct mtls_ctx *none = control_client(pki.ca, NULL, NULL, NULL, 0, 0);
	struct mtls_ctx *quiet = control_server(NULL, 0, 0);
	struct mtls_conn *cl, *sv;

	/* gRPC needs h2: a client offering only http/1.1 is refused */
	expect_cause(h1, CONTROL_DNS, grpc, 0, "alpn_mismatch");
	/* ... and so is one offering nothing */
	expect_cause(none, CONTROL_DNS, grpc, 0, "alpn_mismatch");
	/* the HTTPS server prefers h2, takes http/1.1, and goes on without */
	pair(h2, CONTROL_DNS, https, &cl, &sv);
	assert_int_equal(mtls_conn_alpn_is(sv, "h2"), 1);
	mtls_conn_free(cl);
	mtls_conn_free(sv);
	pair(h1, CONTROL_DNS, https, &cl, &sv);
	assert_int_equal(mtls_conn_alpn_is(sv, "http/1.1"), 1);
	assert_int_equal(mtls_conn_alpn_is(sv, "h2"), 0);
	mtls_conn_free(cl);
	mtls_conn_free(sv);
	pair(none, CONTROL_DNS, https, &cl, &sv);
	assert_int_equal(mtls_conn_alpn_is(sv, "h2"), 0);
	mtls_conn_free(cl);
	mtls_conn_free(sv);
	/* a client that requires h2 refuses a server that selects nothing */
	expect_cause(h2, CONTROL_DNS, quiet, 1, "alpn_mismatch");
	/* malformed lists are refused when the context is built */
	struct mtls_opts bad = {.roles = MTLS_ROLE_SERVER, .verify = MTLS_VERIFY_NONE,
				.alpn = "\x05h2", .alpn_len = 3};
	struct mtls_ctx *ctx = NULL;
	const char *why = NULL;
	assert_int_equal(mtls_ctx_new_opts(&bad, &ctx, &why), -EINVAL);
	assert_non_null(why);
	mtls_ctx_unref(grpc);
	mtls_ctx_unref(https);
	mtls_ctx_unref(h1);
	mtls_ctx_unref(h2);
	mtls_ctx_unref(none);
	mtls_ctx_unref(quiet);
}

static void test_bad_options(void **state)
{
	struct mtls_ctx *ctx = NULL, *srv = control_server("\x02h2", 3, 1);
	struct mtls_conn *c = NULL;
	const char *why = NULL;
	struct mtls_opts o = {.roles = MTLS_ROLE_CLIENT, .verify = MTLS_VERIFY_NONE};

	/* a client that verifies nothing, a server without a certificate */
	assert_int_equal(mtls_ctx_new_opts(&o, &ctx, &why), -EINVAL);
	o.roles = MTLS_ROLE_SERVER;
	assert_int_equal(mtls_ctx_new_opts(&o, &ctx, &why), -EINVAL);
	/* a role the context does not play */
	assert_int_equal(mtls_conn_new_client(srv, CONTROL_DNS, &c), -EINVAL);
	mtls_ctx_unref(srv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_handshake_and_data),
		cmocka_unit_test(test_one_byte_at_a_time),
		cmocka_unit_test(test_resumption),
		cmocka_unit_test(test_no_resumption),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_no_client_certificate),
		cmocka_unit_test(test_bad_credentials),
		cmocka_unit_test(test_tampered_records),
		cmocka_unit_test(test_wrong_spiffe_id),
		cmocka_unit_test(test_hostname),
		cmocka_unit_test(test_alpn),
		cmocka_unit_test(test_bad_options),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
