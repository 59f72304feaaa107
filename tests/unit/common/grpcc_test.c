/* grpcc_test: our gRPC client against a stock gRPC server (Python grpcio,
 * tests/lib/grpc_server.py, stubs generated from proto/ at start-up), with
 * test-time PKI. Covers unary and server-streaming calls of cinch.v1, the
 * status and percent-encoded message of an error, the response size limit,
 * deadlines, cancelling (from outside and from a message callback), an
 * unknown method, mutual TLS (the server sees our SPIFFE ID) and a server
 * we do not trust. Messages are real protobuf-c messages of proto/. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "cinch/v1/config.pb-c.h"
#include "cinch/v1/identity.pb-c.h"
#include "grpcc.h"
#include "testloop.h"
#include "testpki.h"
#include "testproc.h"

#define CLIENT_ID "spiffe://cluster.local/ns/shop/sa/api"

static struct {
	char dir[64], url[64], mtls_url[64];
	char *ca_pem, *other_pem, *cert_pem, *key_pem;
	struct testproc srv, mtls_srv; /* the second requires client certificates */
} fx;

static int setup(void **state)
{
	static const char *const server_sans[] = { "IP:127.0.0.1" };
	static const char *const client_sans[] = { CLIENT_ID };
	EVP_PKEY *ca_key = testpki_key(), *other_key = testpki_key();
	EVP_PKEY *skey = testpki_key(), *ckey = testpki_key();
	X509 *ca = testpki_root(ca_key, "grpcc test root", 1);
	X509 *other = testpki_root(other_key, "untrusted", 1);
	X509 *server = testpki_leaf(ca, ca_key, skey, server_sans, 1, -60, 3600);
	X509 *client = testpki_leaf(ca, ca_key, ckey, client_sans, 1, -60, 3600);
	char *spem = testpki_cert_pem(server), *skey_pem = testpki_key_pem(skey);
	char cert[128], key[128], cafile[128];
	int rc = -1;

	fx.ca_pem = testpki_cert_pem(ca);
	fx.other_pem = testpki_cert_pem(other);
	fx.cert_pem = testpki_cert_pem(client);
	fx.key_pem = testpki_key_pem(ckey);
	snprintf(fx.dir, sizeof(fx.dir), "/tmp/grpcc_test.XXXXXX");
	if (!mkdtemp(fx.dir) || testpki_write(fx.dir, "ca.pem", fx.ca_pem) ||
	    testpki_write(fx.dir, "server.pem", spem) || testpki_write(fx.dir, "server-key.pem", skey_pem))
		goto out;
	snprintf(cert, sizeof(cert), "%s/server.pem", fx.dir);
	snprintf(key, sizeof(key), "%s/server-key.pem", fx.dir);
	snprintf(cafile, sizeof(cafile), "%s/ca.pem", fx.dir);
	char *argv[] = { "/usr/bin/python3", GRPC_SERVER, "--proto", PROTO_DIR, "--cert", cert,
			 "--key", key, "--ca", cafile, "--lifetime", "120", NULL, NULL };
	if (testproc_start(&fx.srv, argv) < 0)
		goto out;
	argv[12] = "--require-client-auth";
	if (testproc_start(&fx.mtls_srv, argv) == 0)
		rc = 0;
	snprintf(fx.url, sizeof(fx.url), "https://127.0.0.1:%d", fx.srv.port);
	snprintf(fx.mtls_url, sizeof(fx.mtls_url), "https://127.0.0.1:%d", fx.mtls_srv.port);
out:
	free(spem);
	free(skey_pem);
	X509_free(ca);
	X509_free(other);
	X509_free(server);
	X509_free(client);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(other_key);
	EVP_PKEY_free(skey);
	EVP_PKEY_free(ckey);
	return rc;
}

static int teardown(void **state)
{
	char cmd[128];
	testproc_stop(&fx.srv);
	testproc_stop(&fx.mtls_srv);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", fx.dir);
	free(fx.ca_pem);
	free(fx.other_pem);
	free(fx.cert_pem);
	free(fx.key_pem);
	return system(cmd) == 0 ? 0 : -1;
}

struct outcome {
	int done, code, messages, cancel_after;
	char message[256];
	char versions[64];
	char spiffe_id[256];
	struct grpcc_call *call;
};

static int on_sign(void *arg, const uint8_t *msg, size_t len)
{
	struct outcome *o = arg;
	Cinch__V1__SignResponse *r = cinch__v1__sign_response__unpack(NULL, len, msg);
	assert_non_null(r);
	snprintf(o->spiffe_id, sizeof(o->spiffe_id), "%s", r->spiffe_id);
	o->messages++;
	cinch__v1__sign_response__free_unpacked(r, NULL);
	return 0;
}

static int on_snapshot(void *arg, const uint8_t *msg, size_t len)
{
	struct outcome *o = arg;
	Cinch__V1__Snapshot *s = cinch__v1__snapshot__unpack(NULL, len, msg);
	assert_non_null(s);
	strcat(o->versions, s->version);
	o->messages++;
	cinch__v1__snapshot__free_unpacked(s, NULL);
	return o->cancel_after && o->messages >= o->cancel_after ? -ECANCELED : 0;
}

static void on_done(void *arg, int code, const char *message)
{
	struct outcome *o = arg;
	o->done++;
	o->code = code;
	snprintf(o->message, sizeof(o->message), "%s", message);
}

/* Runs one call to its end on a fresh client. `mtls`: to the server that
 * requires client certificates (1: with ours, -1: without). `cancel_ms`:
 * cancel from a timer after that long (0: never). */
static void call(const char *method, const uint8_t *req, size_t len, grpcc_msg_cb cb,
		 const char *ca_pem, int mtls, long timeout_ms, size_t max, long cancel_ms,
		 struct outcome *o);

static void cancel_cb(uv_timer_t *t)
{
	struct outcome *o = t->data;
	if (!o->done)
		grpcc_cancel(o->call);
	uv_close((uv_handle_t *)t, NULL);
}

static void call(const char *method, const uint8_t *req, size_t len, grpcc_msg_cb cb,
		 const char *ca_pem, int mtls, long timeout_ms, size_t max, long cancel_ms,
		 struct outcome *o)
{
	uv_loop_t loop;
	uv_timer_t t;
	struct h2c *h;
	struct mtls_ctx *creds;

	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(h2c_new(&loop, &h), 0);
	assert_int_equal(h2c_tls_new(ca_pem, mtls > 0 ? fx.cert_pem : NULL,
					 mtls > 0 ? fx.key_pem : NULL, &creds), 0);
	struct grpcc_opts opts = { .base_url = mtls ? fx.mtls_url : fx.url, .method = method, .request = req,
				   .request_len = len, .timeout_ms = timeout_ms, .max_message = max,
				   .on_message = cb, .on_done = on_done, .arg = o };
	assert_int_equal(grpcc_call(h, creds, &opts, &o->call), 0);
	mtls_ctx_unref(creds);
	if (cancel_ms) {
		uv_timer_init(&loop, &t);
		t.data = o;
		uv_timer_start(&t, cancel_cb, (uint64_t)cancel_ms, 0);
	}
	assert_int_equal(testloop_run(&loop, 20), 0);
	h2c_close(h, NULL, NULL);
	assert_int_equal(testloop_run(&loop, 5), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_int_equal(o->done, 1);
}

/* A packed SignRequest. */
static size_t sign_request(uint8_t *buf, const char *csr, const char *requested)
{
	Cinch__V1__SignRequest r = CINCH__V1__SIGN_REQUEST__INIT;
	r.csr.data = (uint8_t *)csr;
	r.csr.len = strlen(csr);
	r.requested_spiffe_id = (char *)requested;
	return cinch__v1__sign_request__pack(&r, buf);
}

#define SIGN "/cinch.v1.Identity/Sign"
#define WATCH "/cinch.v1.Config/Watch"

static void test_unary(void **state)
{
	uint8_t buf[256];
	struct outcome o = { 0 };
	call(SIGN, buf, sign_request(buf, "ok", ""), on_sign, fx.ca_pem, 0, 5000, 1 << 20, 0, &o);
	assert_int_equal(o.code, GRPC_OK);
	assert_int_equal(o.messages, 1);
	assert_string_equal(o.spiffe_id, "spiffe://cluster.local/ns/shop/sa/web");
}

static void test_error_status(void **state)
{
	uint8_t buf[256];
	struct outcome o = { 0 };
	call(SIGN, buf, sign_request(buf, "ok", "deny"), on_sign, fx.ca_pem, 0, 5000, 1 << 20, 0,
	     &o);
	assert_int_equal(o.code, GRPC_PERMISSION_DENIED);
	assert_int_equal(o.messages, 0);
	assert_string_equal(o.message, "not yours: \xc3\xbcn\xc3\xaf" "code %");
	assert_string_equal(grpc_code_name(o.code), "PERMISSION_DENIED");
}

static void test_message_limit(void **state)
{
	uint8_t buf[256];
	struct outcome o = { 0 };
	call(SIGN, buf, sign_request(buf, "big", ""), on_sign, fx.ca_pem, 0, 5000, 64 * 1024, 0, &o);
	assert_int_equal(o.code, GRPC_RESOURCE_EXHAUSTED);
	assert_int_equal(o.messages, 0);
}

static void test_deadline(void **state)
{
	uint8_t buf[256];
	struct outcome o = { 0 };
	call(SIGN, buf, sign_request(buf, "slow", ""), on_sign, fx.ca_pem, 0, 500, 1 << 20, 0, &o);
	assert_int_equal(o.code, GRPC_DEADLINE_EXCEEDED);
}

static void test_stream(void **state)
{
	uint8_t buf[64];
	Cinch__V1__WatchRequest w = CINCH__V1__WATCH_REQUEST__INIT;
	struct outcome o = { 0 };
	call(WATCH, buf, cinch__v1__watch_request__pack(&w, buf), on_snapshot, fx.ca_pem, 0, 0,
	     1 << 20, 0, &o);
	assert_int_equal(o.code, GRPC_OK);
	assert_int_equal(o.messages, 3);
	assert_string_equal(o.versions, "v1v2v3");
}

static void test_cancel(void **state)
{
	uint8_t buf[64];
	Cinch__V1__WatchRequest w = CINCH__V1__WATCH_REQUEST__INIT;
	struct outcome o = { 0 };

	w.known_version = "hold";
	size_t len = cinch__v1__watch_request__pack(&w, buf);
	call(WATCH, buf, len, on_snapshot, fx.ca_pem, 0, 0, 1 << 20, 700, &o);
	assert_int_equal(o.code, GRPC_CANCELLED);
	assert_int_equal(o.messages, 1);

	/* From the message callback, without waiting for the stream's end. */
	memset(&o, 0, sizeof(o));
	o.cancel_after = 1;
	call(WATCH, buf, len, on_snapshot, fx.ca_pem, 0, 0, 1 << 20, 0, &o);
	assert_int_equal(o.code, GRPC_CANCELLED);
	assert_int_equal(o.messages, 1);
}

static void test_unimplemented(void **state)
{
	uint8_t buf[256];
	struct outcome o = { 0 };
	call("/cinch.v1.Identity/Nope", buf, sign_request(buf, "ok", ""), on_sign, fx.ca_pem, 0,
	     5000, 1 << 20, 0, &o);
	assert_int_equal(o.code, GRPC_UNIMPLEMENTED);
}

static void test_mtls_identity(void **state)
{
	uint8_t buf[256];
	struct outcome o = { 0 };
	call(SIGN, buf, sign_request(buf, "whoami", ""), on_sign, fx.ca_pem, 1, 5000, 1 << 20, 0,
	     &o);
	assert_int_equal(o.code, GRPC_OK);
	assert_string_equal(o.spiffe_id, CLIENT_ID);

	/* That server refuses a client without a certificate. */
	memset(&o, 0, sizeof(o));
	call(SIGN, buf, sign_request(buf, "whoami", ""), on_sign, fx.ca_pem, -1, 5000, 1 << 20, 0,
	     &o);
	assert_int_equal(o.code, GRPC_UNAVAILABLE);
	assert_int_equal(o.messages, 0);
}

static void test_untrusted_server(void **state)
{
	uint8_t buf[256];
	struct outcome o = { 0 };
	call(SIGN, buf, sign_request(buf, "ok", ""), on_sign, fx.other_pem, 0, 5000, 1 << 20, 0,
	     &o);
	assert_int_equal(o.code, GRPC_UNAVAILABLE);
	assert_non_null(strstr(o.message, "certificate"));
}

static void test_report_invalid(void **state)
{
	uint8_t buf[64];
	Cinch__V1__ReportRequest r = CINCH__V1__REPORT_REQUEST__INIT;
	struct outcome o = { 0 };
	call("/cinch.v1.Config/Report", buf, cinch__v1__report_request__pack(&r, buf), on_sign,
	     fx.ca_pem, 0, 5000, 1 << 20, 0, &o);
	assert_int_equal(o.code, GRPC_INVALID_ARGUMENT);
	assert_string_equal(o.message, "applied_version is empty");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unary),
		cmocka_unit_test(test_error_status),
		cmocka_unit_test(test_message_limit),
		cmocka_unit_test(test_deadline),
		cmocka_unit_test(test_stream),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_unimplemented),
		cmocka_unit_test(test_mtls_identity),
		cmocka_unit_test(test_untrusted_server),
		cmocka_unit_test(test_report_invalid),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
