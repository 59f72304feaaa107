/* cfgwatch tests: the agent's Config/Watch client against a stock gRPC
 * server (Debian's python3-grpcio, tests/lib/grpc_server.py) requiring
 * client certificates, as cinch-control does.
 *
 * The server streams v1, v2, v3 and ends the stream; a Watch that says it
 * holds v3 gets v4, whose policy_version tells the last Report the server
 * received. So one run shows: every snapshot delivered in order, the
 * reconnect after the stream ended carrying the version held, Reports of
 * the applied version reaching the control plane, refusals kept out. */
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

#include "cfgwatch.h"
#include "testloop.h"
#include "testpki.h"
#include "testproc.h"

#define CLIENT_ID "spiffe://cluster.local/ns/shop/sa/api"

static struct {
	char dir[64], url[64];
	char *ca_pem, *other_pem, *cert_pem, *key_pem;
	struct testproc srv;
} fx;

static int setup(void **state)
{
	static const char *const server_sans[] = {"IP:127.0.0.1"};
	static const char *const client_sans[] = {CLIENT_ID};
	EVP_PKEY *ca_key = testpki_key(), *other_key = testpki_key();
	EVP_PKEY *skey = testpki_key(), *ckey = testpki_key();
	X509 *ca = testpki_root(ca_key, "cfgwatch test root", 1);
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
	snprintf(fx.dir, sizeof(fx.dir), "/tmp/cfgwatch_test.XXXXXX");
	if (!mkdtemp(fx.dir) || testpki_write(fx.dir, "ca.pem", fx.ca_pem) ||
	    testpki_write(fx.dir, "server.pem", spem) ||
	    testpki_write(fx.dir, "server-key.pem", skey_pem))
		goto out;
	snprintf(cert, sizeof(cert), "%s/server.pem", fx.dir);
	snprintf(key, sizeof(key), "%s/server-key.pem", fx.dir);
	snprintf(cafile, sizeof(cafile), "%s/ca.pem", fx.dir);
	char *argv[] = {"/usr/bin/python3",
			GRPC_SERVER,
			"--proto",
			PROTO_DIR,
			"--cert",
			cert,
			"--key",
			key,
			"--ca",
			cafile,
			"--lifetime",
			"120",
			"--require-client-auth",
			NULL};
	if (testproc_start(&fx.srv, argv) == 0)
		rc = 0;
	snprintf(fx.url, sizeof(fx.url), "https://127.0.0.1:%d", fx.srv.port);
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
	snprintf(cmd, sizeof(cmd), "rm -rf %s", fx.dir);
	free(fx.ca_pem);
	free(fx.other_pem);
	free(fx.cert_pem);
	free(fx.key_pem);
	return system(cmd) == 0 ? 0 : -1;
}

/* One run: a watch on its own loop, stopped when `until` arrives or when
 * `seconds` have passed. */
struct run {
	uv_loop_t loop;
	uv_timer_t stop_timer;
	struct h2c *h;
	struct cfgwatch *w;
	const char *until, *refuse, *workload; /* workload: "shop/api" if NULL */
	char seen[256], policy_version[256];
	char kept[128]; /* the version held when the snapshot after a refusal came */
	int refused;
	struct cfgwatch_status st;
	/* switch_creds: the watch starts with a bundle that does not verify
	 * the server and gets good credentials once it has failed 4 times */
	int switch_creds;
	uv_timer_t poll;
	uint64_t failing_ms, switched_ms, snapshot_ms; /* loop time, 0: not yet */
};

static void run_stop(uv_timer_t *t)
{
	struct run *r = t->data;

	cfgwatch_status(r->w, &r->st);
	cfgwatch_stop(r->w);
	h2c_close(r->h, NULL, NULL);
	uv_close((uv_handle_t *)t, NULL);
	if (r->switch_creds)
		uv_close((uv_handle_t *)&r->poll, NULL);
}

/* Every 50 ms: once the 4th attempt has started (it fails at the
 * handshake in a few ms and the next one is 4 to 8 s away), wait 0.5 s
 * and hand the watch credentials that work. */
static void run_poll(uv_timer_t *t)
{
	struct run *r = t->data;
	struct cfgwatch_status st;
	struct mtls_ctx *good = NULL;

	cfgwatch_status(r->w, &st);
	if (!r->failing_ms && st.reconnects >= 3)
		r->failing_ms = uv_now(&r->loop);
	if (r->failing_ms && !r->switched_ms && uv_now(&r->loop) >= r->failing_ms + 500) {
		assert_int_equal(h2c_tls_new(fx.ca_pem, fx.cert_pem, fx.key_pem, &good), 0);
		cfgwatch_set_creds(r->w, good);
		mtls_ctx_unref(good);
		r->switched_ms = uv_now(&r->loop);
		uv_timer_stop(t);
	}
}

static int on_snapshot(void *arg, const Cinch__V1__Snapshot *snap)
{
	struct run *r = arg;
	size_t n = strlen(r->seen);

	snprintf(r->seen + n, sizeof(r->seen) - n, "%s%s", n ? "," : "", snap->version);
	if (!r->snapshot_ms)
		r->snapshot_ms = uv_now(&r->loop);
	if (r->refused == 1 && !r->until) {
		/* the first snapshot after the refusal: what does the watch hold? */
		struct cfgwatch_status st;
		cfgwatch_status(r->w, &st);
		snprintf(r->kept, sizeof(r->kept), "%s", st.version);
		r->refused = 2;
		uv_timer_start(&r->stop_timer, run_stop, 0, 0);
	}
	if (r->refuse && strcmp(snap->version, r->refuse) == 0) {
		if (!r->refused)
			r->refused = 1;
		return -EINVAL;
	}
	if (r->until && strcmp(snap->version, r->until) == 0) {
		snprintf(r->policy_version, sizeof(r->policy_version), "%s", snap->policy_version);
		uv_timer_start(&r->stop_timer, run_stop, 0, 0);
	}
	return 0;
}

static void run_watch(struct run *r, const char *url, const char *ca_pem, unsigned seconds)
{
	struct mtls_ctx *creds = NULL;
	struct cfgwatch_report rep = {.bundle_sequence = 7, .cert_serial_hex = "0a1b"};

	assert_int_equal(uv_loop_init(&r->loop), 0);
	assert_int_equal(h2c_new(&r->loop, &r->h), 0);
	assert_int_equal(h2c_tls_new(ca_pem, fx.cert_pem, fx.key_pem, &creds), 0);
	struct cfgwatch_opts o = {
		.control_url = url,
		.workload = r->workload ? r->workload : "shop/api",
		.max_snapshot = 1 << 20,
		.on_snapshot = on_snapshot,
		.arg = r,
	};
	assert_int_equal(cfgwatch_start(&r->loop, r->h, creds, &o, &r->w), 0);
	mtls_ctx_unref(creds); /* the watch holds its own reference */
	cfgwatch_set_report(r->w, &rep);
	uv_timer_init(&r->loop, &r->stop_timer);
	r->stop_timer.data = r;
	uv_timer_start(&r->stop_timer, run_stop, seconds * 1000, 0);
	if (r->switch_creds) {
		uv_timer_init(&r->loop, &r->poll);
		r->poll.data = r;
		uv_timer_start(&r->poll, run_poll, 50, 50);
	}
	assert_int_equal(testloop_run(&r->loop, seconds + 10), 0);
	assert_int_equal(uv_loop_close(&r->loop), 0);
}

static void test_stream_report_reconnect(void **state)
{
	struct run r = {.until = "v4"};

	run_watch(&r, fx.url, fx.ca_pem, 15);
	assert_string_equal(r.seen, "v1,v2,v3,v4");
	/* The reconnect said it holds v3 (else no v4), and v3 was reported
	 * with our certificate serial and no error. */
	assert_string_equal(r.policy_version, "reported:v3:0a1b:");
	assert_string_equal(r.st.version, "v4");
	assert_int_equal(r.st.snapshots, 4);
	assert_int_equal(r.st.rejected, 0);
	assert_int_equal(r.st.reconnects, 1);
	assert_non_null(strstr(r.st.last_error, "OK"));
}

static void test_refused_snapshot_keeps_last(void **state)
{
	struct run r = {.until = "v4", .refuse = "v2"};

	run_watch(&r, fx.url, fx.ca_pem, 15);
	assert_string_equal(r.seen, "v1,v2,v3,v4");
	assert_int_equal(r.st.rejected, 1);
	assert_string_equal(r.policy_version, "reported:v3:0a1b:");
}

static void test_refusal_reported(void **state)
{
	/* v3 refused: the watch keeps v2; a Watch holding v2 gets v1..v3
	 * again, and at its first snapshot the watch still holds v2. */
	struct run r = {.refuse = "v3"};

	run_watch(&r, fx.url, fx.ca_pem, 10);
	assert_non_null(strstr(r.seen, "v1,v2,v3,v1"));
	assert_string_equal(r.kept, "v2");
	assert_true(r.st.rejected >= 1);
}

static void test_quiet_stream_connected(void **state)
{
	/* The control plane answers and has nothing to send (the agent holds
	 * the current version): the stream is open all the same. */
	struct run r = {.workload = "shop/quiet"};

	run_watch(&r, fx.url, fx.ca_pem, 3);
	assert_string_equal(r.seen, "");
	assert_int_equal(r.st.connected, 1);
	assert_int_equal(r.st.reconnects, 0);
	assert_string_equal(r.st.last_error, "");
}

static void test_new_creds_reconnect_now(void **state)
{
	/* Refused at the handshake (as an expired certificate is), the watch
	 * backs off; new credentials make it reconnect at once, not when the
	 * backoff (4 s or more by then) would. */
	struct run r = {.until = "v1", .switch_creds = 1};

	run_watch(&r, fx.url, fx.other_pem, 20);
	assert_true(r.switched_ms > 0);
	assert_true(r.snapshot_ms >= r.switched_ms);
	assert_true(r.snapshot_ms - r.switched_ms < 2500);
	assert_string_equal(r.seen, "v1");
	assert_int_equal(r.st.reconnects, 4);
}

static void test_control_down(void **state)
{
	/* Nothing listens on port 1 of loopback: the watch keeps retrying,
	 * backing off, and never delivers anything. */
	struct run r = {0};

	run_watch(&r, "https://127.0.0.1:1", fx.ca_pem, 4);
	assert_string_equal(r.seen, "");
	assert_int_equal(r.st.connected, 0);
	assert_true(r.st.reconnects >= 1 && r.st.reconnects <= 4);
	assert_non_null(strstr(r.st.last_error, "UNAVAILABLE"));
}

static void test_untrusted_control(void **state)
{
	/* The control plane's certificate does not chain to the bundle we
	 * were given: nothing is accepted from it. */
	struct run r = {0};

	run_watch(&r, fx.url, fx.other_pem, 3);
	assert_string_equal(r.seen, "");
	assert_int_equal(r.st.snapshots, 0);
	assert_non_null(strstr(r.st.last_error, "UNAVAILABLE"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stream_report_reconnect),
		cmocka_unit_test(test_refused_snapshot_keeps_last),
		cmocka_unit_test(test_refusal_reported),
		cmocka_unit_test(test_quiet_stream_connected),
		cmocka_unit_test(test_new_creds_reconnect_now),
		cmocka_unit_test(test_control_down),
		cmocka_unit_test(test_untrusted_control),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
