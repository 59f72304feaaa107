/* httpc_test: the libuv + libcurl client against a real HTTPS server
 * (tests/lib/https_server.py, Python's ssl), with certificates made at test
 * time: a root that signs the server (SANs localhost and 127.0.0.1) and a
 * client SVID; a second root that nobody trusts. It checks the answers and
 * the errors: wrong CA, refused connection, timeout, abort from on_data,
 * cancel, mTLS with the key held in a memfd, bad arguments, many requests
 * at once, close with requests in flight, and that a request with new creds
 * never rides a connection made with freed ones (same memfd numbers). Each scenario runs the loop
 * until every on_done ran, for at most 15 s (tests/lib/testloop). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "httpc.h"
#include "testloop.h"
#include "testpki.h"
#include "testproc.h"

#define CLIENT_ID     "spiffe://cluster.local/ns/shop/sa/web"
#define CLIENT_ID_NEW "spiffe://cluster.local/ns/shop/sa/web-renewed"

struct fixture {
	char dir[64];
	char *ca_pem, *other_ca_pem, *client_cert_pem, *client_key_pem;
	char *new_cert_pem, *new_key_pem; /* a second client certificate */
	struct testproc plain, mtls;	  /* servers: without and with client auth */
};

static struct fixture fx;

static int start_server(struct testproc *p, int mtls)
{
	char cert[128], key[128], ca[128];
	snprintf(cert, sizeof(cert), "%s/server.pem", fx.dir);
	snprintf(key, sizeof(key), "%s/server-key.pem", fx.dir);
	snprintf(ca, sizeof(ca), "%s/ca.pem", fx.dir);
	char *argv[] = {"/usr/bin/python3",
			HTTPS_SERVER,
			"--cert",
			cert,
			"--key",
			key,
			"--lifetime",
			"120",
			mtls ? "--client-ca" : NULL,
			ca,
			NULL};
	return testproc_start(p, argv);
}

static int setup(void **state)
{
	static const char *const server_sans[] = {"DNS:localhost", "IP:127.0.0.1"};
	static const char *const client_sans[] = {CLIENT_ID};
	static const char *const new_sans[] = {CLIENT_ID_NEW};
	EVP_PKEY *ca_key = testpki_key(), *other_key = testpki_key();
	EVP_PKEY *server_key = testpki_key(), *client_key = testpki_key();
	EVP_PKEY *new_key = testpki_key();
	X509 *ca = testpki_root(ca_key, "httpc test root", 1);
	X509 *other = testpki_root(other_key, "untrusted root", 1);
	X509 *server = testpki_leaf(ca, ca_key, server_key, server_sans, 2, -60, 3600);
	X509 *client = testpki_leaf(ca, ca_key, client_key, client_sans, 1, -60, 3600);
	X509 *renewed = testpki_leaf(ca, ca_key, new_key, new_sans, 1, -60, 3600);
	int rc = -1;

	snprintf(fx.dir, sizeof(fx.dir), "/tmp/httpc_test.XXXXXX");
	if (!mkdtemp(fx.dir) || !server || !client || !other || !renewed)
		goto out;
	fx.ca_pem = testpki_cert_pem(ca);
	fx.other_ca_pem = testpki_cert_pem(other);
	fx.client_cert_pem = testpki_cert_pem(client);
	fx.client_key_pem = testpki_key_pem(client_key);
	fx.new_cert_pem = testpki_cert_pem(renewed);
	fx.new_key_pem = testpki_key_pem(new_key);
	char *server_pem = testpki_cert_pem(server), *server_key_pem = testpki_key_pem(server_key);
	if (testpki_write(fx.dir, "ca.pem", fx.ca_pem) == 0 &&
	    testpki_write(fx.dir, "server.pem", server_pem) == 0 &&
	    testpki_write(fx.dir, "server-key.pem", server_key_pem) == 0 &&
	    start_server(&fx.plain, 0) == 0 && start_server(&fx.mtls, 1) == 0)
		rc = 0;
	free(server_pem);
	free(server_key_pem);
out:
	X509_free(ca);
	X509_free(other);
	X509_free(server);
	X509_free(client);
	X509_free(renewed);
	EVP_PKEY_free(new_key);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(other_key);
	EVP_PKEY_free(server_key);
	EVP_PKEY_free(client_key);
	return rc;
}

static int teardown(void **state)
{
	char cmd[128];
	testproc_stop(&fx.plain);
	testproc_stop(&fx.mtls);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", fx.dir);
	if (system(cmd) != 0)
		return -1;
	free(fx.ca_pem);
	free(fx.other_ca_pem);
	free(fx.client_cert_pem);
	free(fx.client_key_pem);
	free(fx.new_cert_pem);
	free(fx.new_key_pem);
	return 0;
}

/* One request's outcome, filled by the callbacks. */
struct result {
	int done_called, status, abort_after;
	long code;
	char body[256 * 1024];
	size_t body_len;
	char content_type[64];
	int chunks;
};

static void on_header(struct httpc_req *r, const char *name, size_t nl, const char *value,
		      size_t vl)
{
	struct result *res = httpc_req_data(r);
	if (nl == 12 && strncasecmp(name, "content-type", 12) == 0)
		snprintf(res->content_type, sizeof(res->content_type), "%.*s", (int)vl, value);
}

static int on_data(struct httpc_req *r, const char *data, size_t len)
{
	struct result *res = httpc_req_data(r);
	res->chunks++;
	if (res->abort_after && res->chunks >= res->abort_after)
		return -EMSGSIZE;
	if (res->body_len + len > sizeof(res->body))
		return -E2BIG;
	memcpy(res->body + res->body_len, data, len);
	res->body_len += len;
	return 0;
}

static void on_done(struct httpc_req *r, int status, long code, const char *err)
{
	struct result *res = httpc_req_data(r);
	res->done_called++;
	res->status = status;
	res->code = code;
	if (status)
		print_message("on_done: %d (%s)\n", status, err);
}

static void run(uv_loop_t *loop)
{
	if (testloop_run(loop, 15) < 0)
		fail_msg("the loop ran for 15 s: a request never finished");
}

static void closed_cb(void *arg)
{
	(*(int *)arg)++;
}

/* Makes a client, runs one request to completion, closes the client. */
static void one(const char *method, const char *path, int port, const char *ca_pem, int mtls,
		const void *body, size_t body_len, long timeout_ms, struct result *res)
{
	uv_loop_t loop;
	struct httpc *h;
	struct httpc_creds *creds;
	char url[128];
	int closed = 0;

	snprintf(url, sizeof(url), "https://%s:%d%s",
		 port == fx.mtls.port ? "localhost" : "127.0.0.1", port, path);
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(httpc_new(&loop, &h), 0);
	assert_int_equal(httpc_creds_new(ca_pem, mtls ? fx.client_cert_pem : NULL,
					 mtls ? fx.client_key_pem : NULL, &creds),
			 0);
	struct httpc_req_opts o = {
		.method = method,
		.url = url,
		.body = body,
		.body_len = body_len,
		.timeout_ms = timeout_ms,
		.on_header = on_header,
		.on_data = on_data,
		.on_done = on_done,
		.data = res,
	};
	assert_int_equal(httpc_request(h, &o, creds, NULL), 0);
	httpc_creds_unref(creds); /* the request holds its own reference */
	run(&loop);
	httpc_close(h, closed_cb, &closed);
	run(&loop);
	assert_int_equal(closed, 1);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_int_equal(res->done_called, 1);
}

static void test_get(void **state)
{
	static struct result res;
	memset(&res, 0, sizeof(res));
	one("GET", "/hello", fx.plain.port, fx.ca_pem, 0, NULL, 0, 5000, &res);
	assert_int_equal(res.status, 0);
	assert_int_equal(res.code, 200);
	assert_int_equal(res.body_len, 6);
	assert_memory_equal(res.body, "hello\n", 6);
	assert_string_equal(res.content_type, "text/plain");
}

static void test_post_echo(void **state)
{
	static struct result res;
	static char body[100 * 1024];
	memset(&res, 0, sizeof(res));
	for (size_t i = 0; i < sizeof(body); i++)
		body[i] = (char)(i * 7);
	one("POST", "/echo", fx.plain.port, fx.ca_pem, 0, body, sizeof(body), 5000, &res);
	assert_int_equal(res.status, 0);
	assert_int_equal(res.code, 200);
	assert_int_equal(res.body_len, sizeof(body));
	assert_memory_equal(res.body, body, sizeof(body));
}

static void test_wrong_ca(void **state)
{
	static struct result res;
	memset(&res, 0, sizeof(res));
	one("GET", "/hello", fx.plain.port, fx.other_ca_pem, 0, NULL, 0, 5000, &res);
	assert_int_equal(res.status, -EPROTO);
	assert_int_equal(res.body_len, 0);
}

static void test_refused(void **state)
{
	static struct result res;
	/* A port that was just free: bind one, read it, close it. */
	memset(&res, 0, sizeof(res));
	uv_loop_t loop;
	uv_tcp_t tcp;
	struct sockaddr_in a;
	int len = sizeof(a);
	uv_loop_init(&loop);
	uv_tcp_init(&loop, &tcp);
	uv_ip4_addr("127.0.0.1", 0, &a);
	assert_int_equal(uv_tcp_bind(&tcp, (struct sockaddr *)&a, 0), 0);
	uv_tcp_getsockname(&tcp, (struct sockaddr *)&a, &len);
	uv_close((uv_handle_t *)&tcp, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	one("GET", "/hello", ntohs(a.sin_port), fx.ca_pem, 0, NULL, 0, 5000, &res);
	assert_int_equal(res.status, -ECONNREFUSED);
}

static void test_timeout(void **state)
{
	static struct result res;
	memset(&res, 0, sizeof(res));
	one("GET", "/slow", fx.plain.port, fx.ca_pem, 0, NULL, 0, 300, &res);
	assert_int_equal(res.status, -ETIMEDOUT);
}

static void test_abort_from_on_data(void **state)
{
	static struct result res;
	memset(&res, 0, sizeof(res));
	res.abort_after = 1;
	one("GET", "/stream", fx.plain.port, fx.ca_pem, 0, NULL, 0, 5000, &res);
	assert_int_equal(res.status, -EMSGSIZE);
	assert_int_equal(res.chunks, 1);
}

static void test_stream(void **state)
{
	static struct result res;
	memset(&res, 0, sizeof(res));
	one("GET", "/stream", fx.plain.port, fx.ca_pem, 0, NULL, 0, 5000, &res);
	assert_int_equal(res.status, 0);
	assert_int_equal(res.body_len, 24);
	assert_memory_equal(res.body, "event 0\nevent 1\nevent 2\n", 24);
	assert_true(res.chunks >= 2); /* delivered as it arrived, not at the end */
}

/* A request started from inside another's on_data (curl refuses multi
 * calls from its callbacks: httpc defers the new one) still runs. */
struct nested {
	struct result outer, inner;
	struct httpc *h;
	struct httpc_creds *creds;
	char url[128];
	int start_rc;
};

static int on_data_nested(struct httpc_req *r, const char *data, size_t len)
{
	struct nested *n = httpc_req_data(r);
	if (n->outer.chunks++ == 0) {
		struct httpc_req_opts o = {
			.method = "GET",
			.url = n->url,
			.timeout_ms = 5000,
			.on_data = on_data,
			.on_done = on_done,
			.data = &n->inner,
		};
		n->start_rc = httpc_request(n->h, &o, n->creds, NULL);
	}
	n->outer.body_len += len;
	(void)data;
	return 0;
}

static void on_done_nested(struct httpc_req *r, int status, long code, const char *err)
{
	struct nested *n = httpc_req_data(r);
	n->outer.done_called++;
	n->outer.status = status;
	n->outer.code = code;
	(void)err;
}

static void test_request_from_callback(void **state)
{
	static struct nested n;
	uv_loop_t loop;
	char url[128];
	int closed = 0;

	memset(&n, 0, sizeof(n));
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/stream", fx.plain.port);
	snprintf(n.url, sizeof(n.url), "https://127.0.0.1:%d/hello", fx.plain.port);
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(httpc_new(&loop, &n.h), 0);
	assert_int_equal(httpc_creds_new(fx.ca_pem, NULL, NULL, &n.creds), 0);
	struct httpc_req_opts o = {
		.method = "GET",
		.url = url,
		.timeout_ms = 5000,
		.on_data = on_data_nested,
		.on_done = on_done_nested,
		.data = &n,
	};
	assert_int_equal(httpc_request(n.h, &o, n.creds, NULL), 0);
	run(&loop);
	httpc_close(n.h, closed_cb, &closed);
	run(&loop);
	httpc_creds_unref(n.creds);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_int_equal(n.start_rc, 0);
	assert_int_equal(n.outer.done_called, 1);
	assert_int_equal(n.outer.status, 0);
	assert_int_equal(n.outer.body_len, 24);
	assert_int_equal(n.inner.done_called, 1);
	assert_int_equal(n.inner.status, 0);
	assert_int_equal(n.inner.code, 200);
	assert_memory_equal(n.inner.body, "hello\n", 6);
}

static void test_mtls(void **state)
{
	static struct result res;
	memset(&res, 0, sizeof(res));
	one("GET", "/whoami", fx.mtls.port, fx.ca_pem, 1, NULL, 0, 5000, &res);
	assert_int_equal(res.status, 0);
	assert_int_equal(res.code, 200);
	assert_int_equal(res.body_len, strlen(CLIENT_ID) + 1);
	assert_memory_equal(res.body, CLIENT_ID "\n", res.body_len);

	/* Without a client certificate the server refuses the handshake. */
	memset(&res, 0, sizeof(res));
	one("GET", "/whoami", fx.mtls.port, fx.ca_pem, 0, NULL, 0, 5000, &res);
	assert_true(res.status == -EPROTO || res.status == -ECONNRESET);
	assert_int_equal(res.code, 0);
}

static void test_bad_arguments(void **state)
{
	uv_loop_t loop;
	struct httpc *h;
	struct httpc_creds *creds;
	struct result res = {0};
	int closed = 0;

	uv_loop_init(&loop);
	assert_int_equal(httpc_new(&loop, &h), 0);
	assert_int_equal(httpc_creds_new(NULL, NULL, NULL, &creds), -EINVAL);
	assert_int_equal(httpc_creds_new(fx.ca_pem, fx.client_cert_pem, NULL, &creds), -EINVAL);
	assert_int_equal(httpc_creds_new(fx.ca_pem, NULL, NULL, &creds), 0);
	struct httpc_req_opts o = {
		.method = "GET", .url = "http://127.0.0.1:1/", .on_done = on_done, .data = &res};
	assert_int_equal(httpc_request(h, &o, creds, NULL), -EINVAL);
	o.url = "ftp://127.0.0.1/";
	assert_int_equal(httpc_request(h, &o, creds, NULL), -EINVAL);
	o.url = "https://127.0.0.1:1/";
	o.on_done = NULL;
	assert_int_equal(httpc_request(h, &o, creds, NULL), -EINVAL);
	httpc_creds_unref(creds);
	httpc_close(h, closed_cb, &closed);
	run(&loop);
	assert_int_equal(closed, 1);
	assert_int_equal(res.done_called, 0); /* a failed start never calls back */
	uv_loop_close(&loop);
}

static void test_many_then_close(void **state)
{
	enum { N = 20 };
	static struct result res[N + 1];
	uv_loop_t loop;
	struct httpc *h;
	struct httpc_creds *creds;
	char url[64], slow[64];
	int closed = 0;

	memset(res, 0, sizeof(res));
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/hello", fx.plain.port);
	snprintf(slow, sizeof(slow), "https://127.0.0.1:%d/slow", fx.plain.port);
	uv_loop_init(&loop);
	assert_int_equal(httpc_new(&loop, &h), 0);
	assert_int_equal(httpc_creds_new(fx.ca_pem, NULL, NULL, &creds), 0);
	for (int i = 0; i < N; i++) {
		struct httpc_req_opts o = {.method = "GET",
					   .url = url,
					   .timeout_ms = 10000,
					   .on_data = on_data,
					   .on_done = on_done,
					   .data = &res[i]};
		assert_int_equal(httpc_request(h, &o, creds, NULL), 0);
	}
	run(&loop);
	for (int i = 0; i < N; i++) {
		assert_int_equal(res[i].done_called, 1);
		assert_int_equal(res[i].status, 0);
		assert_int_equal(res[i].code, 200);
	}
	/* A request still in flight when the client closes is cancelled. */
	struct httpc_req_opts o = {
		.method = "GET", .url = slow, .on_done = on_done, .data = &res[N]};
	assert_int_equal(httpc_request(h, &o, creds, NULL), 0);
	httpc_creds_unref(creds);
	uv_run(&loop, UV_RUN_NOWAIT);
	httpc_close(h, closed_cb, &closed);
	assert_int_equal(res[N].done_called, 1);
	assert_int_equal(res[N].status, -ECANCELED);
	run(&loop);
	assert_int_equal(closed, 1);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* GET /whoami on one client with creds made from (cert, key), the creds
 * freed once the request holds them: the identity the server saw. */
static void whoami(uv_loop_t *loop, struct httpc *h, const char *cert, const char *key,
		   struct result *res)
{
	struct httpc_creds *creds;
	char url[64];

	snprintf(url, sizeof(url), "https://localhost:%d/whoami", fx.mtls.port);
	memset(res, 0, sizeof(*res));
	assert_int_equal(httpc_creds_new(fx.ca_pem, cert, key, &creds), 0);
	struct httpc_req_opts o = {.method = "GET",
				   .url = url,
				   .timeout_ms = 5000,
				   .on_data = on_data,
				   .on_done = on_done,
				   .data = res};
	assert_int_equal(httpc_request(h, &o, creds, NULL), 0);
	httpc_creds_unref(creds);
	run(loop);
	assert_int_equal(res->status, 0);
	assert_int_equal(res->code, 200);
}

/* A renewal: the first creds are freed with their request, but their
 * (keep-alive) connection lives on; the new creds' memfds then usually get
 * the same numbers, so the same /proc/self/fd names. The server must see
 * the new certificate: curl may not reuse the old connection for them. */
static void test_new_creds_new_connection(void **state)
{
	static struct result res;
	uv_loop_t loop;
	struct httpc *h;
	int closed = 0;

	uv_loop_init(&loop);
	assert_int_equal(httpc_new(&loop, &h), 0);
	whoami(&loop, h, fx.client_cert_pem, fx.client_key_pem, &res);
	assert_memory_equal(res.body, CLIENT_ID "\n", strlen(CLIENT_ID) + 1);
	whoami(&loop, h, fx.new_cert_pem, fx.new_key_pem, &res);
	assert_int_equal(res.body_len, strlen(CLIENT_ID_NEW) + 1);
	assert_memory_equal(res.body, CLIENT_ID_NEW "\n", res.body_len);
	httpc_close(h, closed_cb, &closed);
	run(&loop);
	assert_int_equal(closed, 1);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_get),
		cmocka_unit_test(test_post_echo),
		cmocka_unit_test(test_stream),
		cmocka_unit_test(test_wrong_ca),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_abort_from_on_data),
		cmocka_unit_test(test_request_from_callback),
		cmocka_unit_test(test_mtls),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_many_then_close),
		cmocka_unit_test(test_new_creds_new_connection),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
