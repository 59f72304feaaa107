/* hub tests: who may watch what, what a publish sends to whom, reports
 * and the status `cinchctl status` shows. Snapshots are opaque bytes to
 * the hub, so the tests use short strings. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "grpcc.h"
#include "hub.h"

#define TD  "spiffe://cluster.local"
#define WEB TD "/ns/shop/sa/web"
#define API TD "/ns/shop/sa/api"

/* One fake stream: what was sent on it, and whether it was ended. */
struct stream {
	char sent[256];
	int sends, gone, fail;
};

static int on_send(void *arg, const uint8_t *snap, size_t len)
{
	struct stream *s = arg;
	size_t n = strlen(s->sent);
	snprintf(s->sent + n, sizeof(s->sent) - n, "%s%.*s", n ? "," : "", (int)len,
		 (const char *)snap);
	s->sends++;
	return s->fail ? -EPIPE : 0;
}

static void on_gone(void *arg)
{
	((struct stream *)arg)->gone++;
}

static const char *const web1_addr[] = {"10.0.0.1"};
static const char *const web2_addr[] = {"10.0.0.2", "fd00::2"};
static const char *const api_addr[] = {"10.0.0.3"};

/* Generation `v`: web-1 and web-2 share the web identity, api has its own.
 * The snapshot of each is "<name>@<v>"; `api_v` lets api's change alone. */
static void publish(struct hub *h, const char *v, const char *api_v, int with_web2)
{
	char s1[32], s2[32], s3[32], v1[32], v3[32];
	snprintf(s1, sizeof(s1), "web-1@%s", v);
	snprintf(s2, sizeof(s2), "web-2@%s", v);
	snprintf(s3, sizeof(s3), "api@%s", api_v);
	snprintf(v1, sizeof(v1), "%s", v);
	snprintf(v3, sizeof(v3), "%s", api_v);
	struct hub_slice sl[] = {
		{"shop/web-1", WEB, web1_addr, 1, (const uint8_t *)s1, strlen(s1), v1},
		{"shop/api", API, api_addr, 1, (const uint8_t *)s3, strlen(s3), v3},
		{"shop/web-2", WEB, web2_addr, 2, (const uint8_t *)s2, strlen(s2), v1},
	};
	assert_int_equal(hub_publish(h, sl, with_web2 ? 3 : 2), 0);
}

static int setup(void **state)
{
	struct hub *h;
	if (hub_new(&h) < 0)
		return -1;
	*state = h;
	return 0;
}

static int teardown(void **state)
{
	hub_free(*state);
	return 0;
}

static void test_open_resolves_and_authorizes(void **state)
{
	struct hub *h = *state;
	struct hub_watch *w = NULL;
	struct stream s = {0};
	const char *why = NULL;

	publish(h, "1", "1", 1);
	/* By name, own identity. */
	assert_int_equal(
		hub_watch_open(h, API, "10.9.9.9", "shop/api", "", on_send, on_gone, &s, &w, &why),
		GRPC_OK);
	assert_string_equal(s.sent, "api@1");
	hub_watch_close(w);
	/* Another identity's workload: refused, nothing sent. */
	memset(&s, 0, sizeof(s));
	assert_int_equal(
		hub_watch_open(h, WEB, "10.0.0.1", "shop/api", "", on_send, on_gone, &s, &w, &why),
		GRPC_PERMISSION_DENIED);
	assert_string_equal(why, "that workload runs under another identity");
	assert_int_equal(s.sends, 0);
	/* Shared identity, no name: the source address picks web-2 (IPv6 too). */
	assert_int_equal(
		hub_watch_open(h, WEB, "fd00::2", NULL, "", on_send, on_gone, &s, &w, &why),
		GRPC_OK);
	assert_string_equal(s.sent, "web-2@1");
	hub_watch_close(w);
	/* Shared identity, unknown address: the caller must name itself. */
	assert_int_equal(hub_watch_open(h, WEB, "10.7.7.7", "", "", on_send, on_gone, &s, &w, &why),
			 GRPC_NOT_FOUND);
	assert_string_equal(why, "several workloads share this identity: name yours");
	/* A single workload for the identity: found from anywhere. */
	memset(&s, 0, sizeof(s));
	assert_int_equal(hub_watch_open(h, API, "10.7.7.7", "", "", on_send, on_gone, &s, &w, &why),
			 GRPC_OK);
	assert_string_equal(s.sent, "api@1");
	hub_watch_close(w);
	/* Unknown identity, unknown workload, no certificate. */
	assert_int_equal(hub_watch_open(h, TD "/ns/x/sa/y", "10.0.0.1", "", "", on_send, on_gone,
					&s, &w, &why),
			 GRPC_NOT_FOUND);
	assert_int_equal(
		hub_watch_open(h, API, "10.0.0.3", "shop/nope", "", on_send, on_gone, &s, &w, &why),
		GRPC_NOT_FOUND);
	assert_int_equal(
		hub_watch_open(h, "", "10.0.0.3", "shop/api", "", on_send, on_gone, &s, &w, &why),
		GRPC_PERMISSION_DENIED);
}

static void test_known_version_not_resent(void **state)
{
	struct hub *h = *state;
	struct hub_watch *w = NULL;
	struct stream s = {0};
	const char *why = NULL;

	publish(h, "1", "1", 1);
	assert_int_equal(
		hub_watch_open(h, API, "10.0.0.3", "shop/api", "1", on_send, on_gone, &s, &w, &why),
		GRPC_OK);
	assert_int_equal(s.sends, 0);
	/* what it holds stands as its report: status shows it in sync */
	json_t *st = hub_status(h);
	json_t *api = json_array_get(st, 1);
	assert_string_equal(json_string_value(json_object_get(api, "workload")), "shop/api");
	assert_true(json_is_true(json_object_get(api, "in_sync")));
	json_decref(st);
	publish(h, "1", "2", 1);
	assert_string_equal(s.sent, "api@2");
	st = hub_status(h);
	assert_false(json_is_true(json_object_get(json_array_get(st, 1), "in_sync")));
	json_decref(st);
	hub_watch_close(w);
}

static void test_publish_sends_only_changes(void **state)
{
	struct hub *h = *state;
	struct hub_watch *wa, *w1, *w2;
	struct stream a = {0}, s1 = {0}, s2 = {0};
	const char *why = NULL;

	publish(h, "1", "1", 1);
	assert_int_equal(
		hub_watch_open(h, API, "10.0.0.3", NULL, NULL, on_send, on_gone, &a, &wa, &why),
		GRPC_OK);
	assert_int_equal(
		hub_watch_open(h, WEB, "10.0.0.1", NULL, NULL, on_send, on_gone, &s1, &w1, &why),
		GRPC_OK);
	assert_int_equal(
		hub_watch_open(h, WEB, "10.0.0.2", NULL, NULL, on_send, on_gone, &s2, &w2, &why),
		GRPC_OK);
	/* Only api's slice changes: only api hears of it. */
	publish(h, "1", "2", 1);
	assert_string_equal(a.sent, "api@1,api@2");
	assert_string_equal(s1.sent, "web-1@1");
	assert_string_equal(s2.sent, "web-2@1");
	/* web-2 leaves the registry: its stream ends, the others get news. */
	publish(h, "3", "3", 0);
	assert_int_equal(s2.gone, 1);
	assert_string_equal(s2.sent, "web-2@1");
	assert_string_equal(s1.sent, "web-1@1,web-1@3");
	assert_string_equal(a.sent, "api@1,api@2,api@3");
	/* A failing stream does not stop the others. */
	s1.fail = 1;
	publish(h, "4", "4", 0);
	assert_int_equal(s1.sends, 3);
	assert_string_equal(a.sent, "api@1,api@2,api@3,api@4");
	hub_watch_close(wa);
	hub_watch_close(w1);
}

static void test_bad_generation_changes_nothing(void **state)
{
	struct hub *h = *state;
	struct hub_watch *w;
	struct stream s = {0};
	const char *why = NULL;
	const char snap[] = "x";

	publish(h, "1", "1", 1);
	assert_int_equal(
		hub_watch_open(h, API, "10.0.0.3", NULL, NULL, on_send, on_gone, &s, &w, &why),
		GRPC_OK);
	struct hub_slice dup[] = {
		{"shop/api", API, api_addr, 1, (const uint8_t *)snap, 1, "9"},
		{"shop/api", API, api_addr, 1, (const uint8_t *)snap, 1, "9"},
	};
	assert_int_equal(hub_publish(h, dup, 2), -EINVAL);
	struct hub_slice empty[] = {{"shop/api", API, api_addr, 1, (const uint8_t *)snap, 0, "9"}};
	assert_int_equal(hub_publish(h, empty, 1), -EINVAL);
	struct hub_slice noid[] = {{"shop/api", "", api_addr, 1, (const uint8_t *)snap, 1, "9"}};
	assert_int_equal(hub_publish(h, noid, 1), -EINVAL);
	assert_string_equal(s.sent, "api@1"); /* nothing reached the agent */
	json_t *st = hub_status(h);
	assert_int_equal(json_array_size(st), 3); /* the last good generation stands */
	json_decref(st);
	hub_watch_close(w);
}

static void test_reports_and_status(void **state)
{
	struct hub *h = *state;
	struct hub_watch *wa, *w1;
	struct stream a = {0}, s1 = {0};
	const char *why = NULL;

	publish(h, "1", "1", 1);
	assert_int_equal(hub_min_bundle_sequence(h), UINT64_MAX);
	assert_int_equal(
		hub_watch_open(h, API, "10.0.0.3", NULL, NULL, on_send, on_gone, &a, &wa, &why),
		GRPC_OK);
	assert_int_equal(
		hub_watch_open(h, WEB, "10.0.0.1", NULL, NULL, on_send, on_gone, &s1, &w1, &why),
		GRPC_OK);
	assert_int_equal(hub_min_bundle_sequence(h), 0); /* connected, not reported yet */
	struct hub_report ra = {"1", 2, "0a", 1700000000, ""};
	struct hub_report r1 = {"1", 1, "0b", 1700000100, ""};
	assert_int_equal(hub_report(h, API, "10.0.0.3", NULL, &ra, 100, &why), GRPC_OK);
	assert_int_equal(hub_report(h, WEB, "10.0.0.1", "", &r1, 101, &why), GRPC_OK);
	assert_int_equal(hub_min_bundle_sequence(h), 1);
	/* Reports for another identity's workload, or empty, are refused. */
	assert_int_equal(hub_report(h, WEB, "10.0.0.1", "shop/api", &r1, 102, &why),
			 GRPC_PERMISSION_DENIED);
	struct hub_report empty = {"", 1, "0b", 0, ""};
	assert_int_equal(hub_report(h, API, "10.0.0.3", NULL, &empty, 102, &why),
			 GRPC_INVALID_ARGUMENT);
	/* Strings that are not UTF-8 (proto3 requires it): the caller's
	 * error, not the server's, and nothing stored. */
	struct hub_report bad = {"1", 1, "0b", 0, "disk \xff\xfe full"};
	assert_int_equal(hub_report(h, API, "10.0.0.3", NULL, &bad, 102, &why),
			 GRPC_INVALID_ARGUMENT);
	assert_string_equal(why, "a string field is not valid UTF-8");
	struct hub_report badv = {"\xc0\xaf", 1, "0b", 0, ""}; /* overlong '/' */
	assert_int_equal(hub_report(h, API, "10.0.0.3", NULL, &badv, 102, &why),
			 GRPC_INVALID_ARGUMENT);

	/* api moves to version 2 and has not reported it yet. */
	publish(h, "1", "2", 1);
	json_t *st = hub_status(h);
	assert_int_equal(json_array_size(st), 3);
	json_t *api = json_array_get(st, 1);
	assert_string_equal(json_string_value(json_object_get(api, "workload")), "shop/api");
	assert_string_equal(json_string_value(json_object_get(api, "version")), "2");
	assert_false(json_is_true(json_object_get(api, "in_sync")));
	assert_int_equal(json_integer_value(json_object_get(api, "connected")), 1);
	json_t *rep = json_object_get(api, "report");
	assert_string_equal(json_string_value(json_object_get(rep, "applied_version")), "1");
	assert_string_equal(json_string_value(json_object_get(rep, "cert_serial_hex")), "0a");
	json_t *web1 = json_array_get(st, 0);
	assert_true(json_is_true(json_object_get(web1, "in_sync")));
	json_t *web2 = json_array_get(st, 2);
	assert_int_equal(json_integer_value(json_object_get(web2, "connected")), 0);
	assert_true(json_is_null(json_object_get(web2, "report")));
	json_decref(st);

	/* web-1's report goes when web-1 leaves the registry, and does not
	 * come back with it; api's watch ends when api leaves. */
	hub_watch_close(w1);
	struct hub_slice only_api[] = {
		{"shop/api", API, api_addr, 1, (const uint8_t *)"a", 1, "5"},
	};
	struct hub_slice only_web1[] = {
		{"shop/web-1", WEB, web1_addr, 1, (const uint8_t *)"w", 1, "5"},
	};
	assert_int_equal(hub_publish(h, only_api, 1), 0);
	assert_int_equal(hub_publish(h, only_web1, 1), 0);
	assert_int_equal(a.gone, 1);
	st = hub_status(h);
	assert_int_equal(json_array_size(st), 1);
	assert_true(json_is_null(json_object_get(json_array_get(st, 0), "report")));
	json_decref(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_resolves_and_authorizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_known_version_not_resent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_sends_only_changes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_generation_changes_nothing, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reports_and_status, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
