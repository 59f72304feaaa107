/* h2c_test: the agent's control-plane client (h2c, through grpcc) against a
 * hostile or broken server (tests/lib/h2_hostile.py, python3-h2): frames
 * over our 16 KiB limit, a grpc-status that is not a number or not a
 * code, a message cut short, a 4 GiB length prefix, a compressed message,
 * 200 response headers, a stream ended before its headers, a reset stream,
 * bytes that are not HTTP/2, GOAWAY, a server that answers nothing (the
 * deadline), a certificate for another host name, a server without
 * HTTP/2 (ALPN), a server that stops answering (PINGs), a closed port, a name that does not
 * resolve, and bad arguments. Each must end in one clear gRPC status, without a crash or a leak
 * (ASan), and nothing is delivered as a message that was not one. The well-formed case runs first,
 * so a failure of the others is theirs. */
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

#include "grpcc.h"
#include "h2c.h"
#include "testloop.h"
#include "testpki.h"
#include "testproc.h"

static struct {
	char dir[64];
	char *ca_pem, *key_pem;
	struct testproc srv, other_name, no_h2;
} fx;

static int start(struct testproc *p, const char *cert, const char *key, const char *alpn)
{
	char c[128], k[128];
	snprintf(c, sizeof(c), "%s/%s", fx.dir, cert);
	snprintf(k, sizeof(k), "%s/%s", fx.dir, key);
	char *argv[] = {"/usr/bin/python3", H2_HOSTILE,	  "--cert",	c,     "--key", k,
			"--alpn",	    (char *)alpn, "--lifetime", "120", NULL};
	return testproc_start(p, argv);
}

static int setup(void **state)
{
	static const char *const ip_sans[] = {"IP:127.0.0.1"};
	static const char *const dns_sans[] = {"DNS:other.example"};
	EVP_PKEY *ca_key = testpki_key(), *skey = testpki_key(), *ckey = testpki_key();
	X509 *ca = testpki_root(ca_key, "h2c test root", 1);
	X509 *good = testpki_leaf(ca, ca_key, skey, ip_sans, 1, -60, 3600);
	X509 *other = testpki_leaf(ca, ca_key, skey, dns_sans, 1, -60, 3600);
	char *good_pem = testpki_cert_pem(good), *other_pem = testpki_cert_pem(other);
	char *skey_pem = testpki_key_pem(skey);
	int rc = -1;

	fx.ca_pem = testpki_cert_pem(ca);
	fx.key_pem = testpki_key_pem(ckey); /* a key that matches no certificate here */
	strcpy(fx.dir, "/tmp/h2c_test.XXXXXX");
	if (!mkdtemp(fx.dir) || testpki_write(fx.dir, "good.pem", good_pem) ||
	    testpki_write(fx.dir, "other.pem", other_pem) ||
	    testpki_write(fx.dir, "key.pem", skey_pem))
		goto out;
	if (start(&fx.srv, "good.pem", "key.pem", "h2") == 0 &&
	    start(&fx.other_name, "other.pem", "key.pem", "h2") == 0 &&
	    start(&fx.no_h2, "good.pem", "key.pem", "http/1.1") == 0)
		rc = 0;
out:
	free(good_pem);
	free(other_pem);
	free(skey_pem);
	X509_free(ca);
	X509_free(good);
	X509_free(other);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(skey);
	EVP_PKEY_free(ckey);
	return rc;
}

static int teardown(void **state)
{
	char cmd[128];
	testproc_stop(&fx.srv);
	testproc_stop(&fx.other_name);
	testproc_stop(&fx.no_h2);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", fx.dir);
	free(fx.ca_pem);
	free(fx.key_pem);
	return system(cmd) == 0 ? 0 : -1;
}

static unsigned ping_ms; /* 0: h2c's default */

struct outcome {
	int done, code, messages;
	char message[256];
	char last[64];
};

static int on_msg(void *arg, const uint8_t *msg, size_t len)
{
	struct outcome *o = arg;
	snprintf(o->last, sizeof(o->last), "%.*s", (int)len, (const char *)msg);
	o->messages++;
	return 0;
}

static void on_done(void *arg, int code, const char *message)
{
	struct outcome *o = arg;
	o->done++;
	o->code = code;
	snprintf(o->message, sizeof(o->message), "%s", message);
}

/* One call of /test.Hostile/<mode> to base_url; the loop runs until the
 * call and the client are gone. */
static void call_url(const char *base_url, const char *mode, long timeout_ms, struct outcome *o)
{
	uv_loop_t loop;
	struct h2c *h;
	struct mtls_ctx *creds;
	char method[64];

	snprintf(method, sizeof(method), "/test.Hostile/%s", mode);
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(h2c_new(&loop, &h), 0);
	h2c_set_ping_ms(h, ping_ms);
	assert_int_equal(h2c_tls_new(fx.ca_pem, NULL, NULL, &creds), 0);
	struct grpcc_opts opts = {.base_url = base_url,
				  .method = method,
				  .request = (const uint8_t *)"q",
				  .request_len = 1,
				  .timeout_ms = timeout_ms,
				  .max_message = 1 << 20,
				  .on_message = on_msg,
				  .on_done = on_done,
				  .arg = o};
	assert_int_equal(grpcc_call(h, creds, &opts, NULL), 0);
	mtls_ctx_unref(creds);
	assert_int_equal(testloop_run(&loop, 20), 0);
	h2c_close(h, NULL, NULL);
	assert_int_equal(testloop_run(&loop, 5), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_int_equal(o->done, 1);
}

static void call(struct testproc *p, const char *mode, long timeout_ms, struct outcome *o)
{
	char url[64];
	snprintf(url, sizeof(url), "https://127.0.0.1:%d", p->port);
	call_url(url, mode, timeout_ms, o);
}

static void expect(const char *mode, int code, const char *in_message)
{
	struct outcome o = {0};
	call(&fx.srv, mode, 5000, &o);
	if (o.code != code || o.messages || (in_message && !strstr(o.message, in_message)))
		fail_msg("%s: got %s \"%s\" (%d messages), want %s with \"%s\"", mode,
			 grpc_code_name(o.code), o.message, o.messages, grpc_code_name(code),
			 in_message ? in_message : "");
}

static void test_well_formed(void **state)
{
	struct outcome o = {0};
	call(&fx.srv, "ok", 5000, &o);
	assert_int_equal(o.code, GRPC_OK);
	assert_int_equal(o.messages, 1);
	assert_string_equal(o.last, "hello");
}

static void test_oversized_frame(void **state)
{
	expect("bigframe", GRPC_UNAVAILABLE, "FRAME_SIZE_ERROR");
}

static void test_bad_grpc_status(void **state)
{
	expect("badstatus", GRPC_UNKNOWN, NULL);
	expect("status99", GRPC_UNKNOWN, NULL);
}

static void test_truncated_message(void **state)
{
	expect("truncated", GRPC_INTERNAL, "ended inside a message");
}

static void test_huge_length_prefix(void **state)
{
	expect("hugelen", GRPC_RESOURCE_EXHAUSTED, "larger than the limit");
}

static void test_compressed(void **state)
{
	expect("compressed", GRPC_INTERNAL, "compress");
}

static void test_too_many_headers(void **state)
{
	expect("manyheaders", GRPC_UNAVAILABLE, "headers are over the limit");
}

static void test_broken_streams(void **state)
{
	expect("noheaders", GRPC_UNAVAILABLE, NULL);
	expect("reset", GRPC_UNAVAILABLE, "INTERNAL_ERROR");
	expect("garbage", GRPC_UNAVAILABLE, NULL);
	expect("goaway", GRPC_UNAVAILABLE, NULL);
}

static void test_deadline(void **state)
{
	struct outcome o = {0};
	call(&fx.srv, "hang", 400, &o);
	assert_int_equal(o.code, GRPC_DEADLINE_EXCEEDED);
	assert_int_equal(o.messages, 0);
}

/* A stream without a deadline (a Watch) on a control that stops answering
 * without closing the connection: an unanswered PING ends it. */
static void test_silent_server(void **state)
{
	struct outcome o = {0};
	ping_ms = 200;
	call(&fx.srv, "silent", 0, &o);
	ping_ms = 0;
	assert_int_equal(o.code, GRPC_DEADLINE_EXCEEDED);
	if (!strstr(o.message, "PING"))
		fail_msg("want an unanswered PING, got \"%s\"", o.message);
}

/* A certificate from the right CA for another name: refused, as libcurl's
 * VERIFYHOST did. */
static void test_wrong_host_name(void **state)
{
	struct outcome o = {0};
	call(&fx.other_name, "ok", 5000, &o);
	assert_int_equal(o.code, GRPC_UNAVAILABLE);
	assert_int_equal(o.messages, 0);
	if (!strstr(o.message, "mismatch"))
		fail_msg("want a name mismatch, got \"%s\"", o.message);
}

static void test_no_http2(void **state)
{
	struct outcome o = {0};
	call(&fx.no_h2, "ok", 5000, &o);
	assert_int_equal(o.code, GRPC_UNAVAILABLE);
	assert_int_equal(o.messages, 0);
}

static void test_unreachable(void **state)
{
	struct outcome o = {0};
	call_url("https://127.0.0.1:1", "ok", 5000, &o);
	assert_int_equal(o.code, GRPC_UNAVAILABLE);
	assert_non_null(strstr(o.message, "cannot connect"));

	memset(&o, 0, sizeof(o));
	call_url("https://no-such-host.invalid:443", "ok", 5000, &o);
	assert_int_equal(o.code, GRPC_UNAVAILABLE);
	assert_non_null(strstr(o.message, "resolve"));
}

static void done_count(struct h2c_req *r, int status, long code, const char *err)
{
	int *n = h2c_req_data(r);
	(*n)++;
	assert_int_equal(status, -ECANCELED);
}

static void test_bad_arguments_and_cancel(void **state)
{
	uv_loop_t loop;
	struct h2c *h;
	struct mtls_ctx *creds = NULL;
	struct h2c_req *r;
	int n = 0;
	char url[64];

	assert_int_equal(h2c_tls_new(fx.ca_pem, fx.ca_pem, fx.key_pem, &creds), -EINVAL);
	assert_int_equal(h2c_tls_new(fx.ca_pem, fx.ca_pem, NULL, &creds), -EINVAL);
	assert_int_equal(h2c_tls_new("not PEM", NULL, NULL, &creds), -EINVAL);
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(h2c_new(&loop, &h), 0);
	assert_int_equal(h2c_tls_new(fx.ca_pem, NULL, NULL, &creds), 0);
	static const char *const bad[] = {"http://127.0.0.1:1/", "https://:1/",	  "https://h:0/",
					  "https://h:99999/",	 "https://h:1x/", "https://[::1/"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct h2c_req_opts o = {
			.method = "GET", .url = bad[i], .on_done = done_count, .data = &n};
		assert_int_equal(h2c_request(h, &o, creds, NULL), -EINVAL);
	}
	const char *const no_colon[] = {"no colon", NULL};
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/x", fx.srv.port);
	struct h2c_req_opts o = {.method = "GET",
				 .url = url,
				 .headers = no_colon,
				 .on_done = done_count,
				 .data = &n};
	assert_int_equal(h2c_request(h, &o, creds, NULL), -EINVAL);
	/* cancelled while connecting: done once, now; the connection stays for
	 * the other request waiting on it (it has no TLS yet: nothing to flush) */
	o.headers = NULL;
	assert_int_equal(h2c_request(h, &o, creds, &r), 0);
	assert_int_equal(h2c_request(h, &o, creds, NULL), 0);
	h2c_cancel(r);
	assert_int_equal(n, 1);
	/* still in flight when the client closes: done once */
	mtls_ctx_unref(creds);
	h2c_close(h, NULL, NULL);
	assert_int_equal(n, 2);
	assert_int_equal(testloop_run(&loop, 5), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_well_formed),
		cmocka_unit_test(test_oversized_frame),
		cmocka_unit_test(test_bad_grpc_status),
		cmocka_unit_test(test_truncated_message),
		cmocka_unit_test(test_huge_length_prefix),
		cmocka_unit_test(test_compressed),
		cmocka_unit_test(test_too_many_headers),
		cmocka_unit_test(test_broken_streams),
		cmocka_unit_test(test_deadline),
		cmocka_unit_test(test_silent_server),
		cmocka_unit_test(test_wrong_host_name),
		cmocka_unit_test(test_no_http2),
		cmocka_unit_test(test_unreachable),
		cmocka_unit_test(test_bad_arguments_and_cancel),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
