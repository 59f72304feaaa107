/* kapi_test: TokenReview and list/watch against tests/lib/kube_api.py, a
 * real HTTPS server that answers in the Kubernetes API's own formats (no
 * cluster runs here). Certificates are made at test time; the control
 * plane's bearer token is a file, as in a pod.
 *
 * TokenReview: a pod-bound token for our audience is accepted with its
 * namespace, service account and pod; every other case is refused with its
 * reason (wrong audience, unknown, legacy, pod gone, uid reused, finished,
 * being deleted, another service account, not a service account, names
 * that would escape a URL path), and an unreachable or unauthorised API
 * server is an error, not a refusal.
 * Watch: paged list, events, bookmarks, an ERROR 410 in the stream, a
 * normal end of stream, an HTTP 410, and the exact requests made. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include "kapi.h"
#include "kwatch.h"
#include "testkube.h"
#include "testloop.h"
#include "tokenreview.h"

static struct testkube fx;

static int setup(void **state)
{
	return testkube_start(&fx, KUBE_API);
}

static int teardown(void **state)
{
	testkube_stop(&fx);
	return 0;
}

static void run(uv_loop_t *loop)
{
	if (testloop_run(loop, 20) < 0)
		fail_msg("the loop ran for 20 s: a request never finished");
}

static struct kapi *client(uv_loop_t *loop, const char *server, const char *token)
{
	struct kapi_config cfg;
	struct kapi *k;
	const char *why = NULL;

	assert_int_equal(uv_loop_init(loop), 0);
	if (kapi_config_explicit(&cfg, server, fx.ca, token, &why) != 0)
		fail_msg("config: %s", why);
	assert_int_equal(kapi_new(loop, &cfg, &k), 0);
	kapi_config_cleanup(&cfg);
	return k;
}

static void finish(uv_loop_t *loop, struct kapi *k)
{
	kapi_close(k, NULL, NULL);
	run(loop);
	assert_int_equal(uv_loop_close(loop), 0);
}

/* --- TokenReview ----------------------------------------------------- */

struct tr_result {
	int calls, status;
	struct tokenreview_identity id;
	char reason[256];
};

static void tr_cb(void *arg, int status, const struct tokenreview_identity *id, const char *reason)
{
	struct tr_result *r = arg;
	r->calls++;
	r->status = status;
	if (id)
		r->id = *id;
	snprintf(r->reason, sizeof(r->reason), "%s", reason);
}

static void review(const char *server, const char *token_file, const char *token,
		   struct tr_result *r)
{
	uv_loop_t loop;
	struct kapi *k = client(&loop, server, token_file);
	memset(r, 0, sizeof(*r));
	assert_int_equal(tokenreview_start(k, NULL, token, "cinch", tr_cb, r), 0);
	run(&loop);
	finish(&loop, k);
	assert_int_equal(r->calls, 1);
}

static void test_tokenreview_accepts_bound_token(void **state)
{
	struct tr_result r;
	review(fx.server, fx.token, "tok-web", &r);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.id.ns, "shop");
	assert_string_equal(r.id.sa, "web");
	assert_string_equal(r.id.pod, "web-abc");
	assert_string_equal(r.id.pod_uid, "uid-web");
}

static void test_tokenreview_refusals(void **state)
{
	static const struct {
		const char *token, *reason;
	} cases[] = {
		{ "tok-api-audience", "the API server did not authenticate the token: [invalid bearer "
				      "token, token audiences [\"https://kubernetes.default.svc\"] is "
				      "invalid for the target audiences [\"cinch\"]]" },
		{ "tok-unknown", "the API server did not authenticate the token: [invalid bearer token]" },
		{ "tok-legacy", "not a pod-bound (projected) service-account token" },
		{ "tok-gone", "the token's pod web-gone no longer exists" },
		{ "tok-stale-uid", "the token was issued for another pod named web-other" },
		{ "tok-done", "pod web-done has finished" },
		{ "tok-dying", "pod web-dying is being deleted" },
		{ "tok-sa-mismatch", "pod web-db runs as another service account" },
		{ "tok-node", "not a service-account token: user system:node:node-1" },
		{ "tok-evil-name", "not a service-account token: user system:serviceaccount:../x:web" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tr_result r;
		print_message("%s\n", cases[i].token);
		review(fx.server, fx.token, cases[i].token, &r);
		assert_int_equal(r.status, -EACCES);
		assert_string_equal(r.reason, cases[i].reason);
	}
}

static void test_tokenreview_api_errors(void **state)
{
	struct tr_result r;

	/* Our own credential rejected by the API server: an error, not "no". */
	review(fx.server, fx.bad_token, "tok-web", &r);
	assert_int_equal(r.status, -EIO);
	assert_string_equal(r.reason, "TokenReview answered HTTP 401");

	/* Nobody listening (port 1 on loopback): unreachable. */
	review("https://127.0.0.1:1", fx.token, "tok-web", &r);
	assert_int_equal(r.status, -ECONNREFUSED);
	assert_non_null(strstr(r.reason, "the API server could not be reached"));
}

static void test_config_errors(void **state)
{
	struct kapi_config cfg;
	const char *why = NULL;
	char *host = getenv("KUBERNETES_SERVICE_HOST");

	assert_int_equal(kapi_config_explicit(&cfg, "http://127.0.0.1:1", fx.ca, fx.token, &why),
			 -EINVAL);
	assert_string_equal(why, "the API server URL must start with https://");
	assert_int_equal(kapi_config_explicit(&cfg, fx.server, "/nonexistent", fx.token, &why),
			 -ENOENT);
	if (!host) {
		assert_int_equal(kapi_config_in_cluster(&cfg, &why), -ENOENT);
		assert_non_null(strstr(why, "not running in a cluster"));
	}
}

/* --- watch ----------------------------------------------------------- */

struct watch_log {
	char lines[16][128];
	int n, syncs;
	struct kwatch *w;
};

static const char *obj_name(json_t *o)
{
	return json_string_value(json_object_get(json_object_get(o, "metadata"), "name"));
}

static void w_sync(void *arg, json_t *items)
{
	struct watch_log *l = arg;
	char *p = l->lines[l->n++];
	size_t i;
	json_t *o;
	size_t used = (size_t)snprintf(p, sizeof(l->lines[0]), "sync");
	json_array_foreach(items, i, o)
	{
		int n = snprintf(p + used, sizeof(l->lines[0]) - used, " %s", obj_name(o));
		assert_true(n >= 0 && (size_t)n < sizeof(l->lines[0]) - used);
		used += (size_t)n;
	}
	if (++l->syncs == 3)
		kwatch_stop(l->w); /* from inside a callback */
}

static void w_event(void *arg, const char *type, json_t *obj)
{
	struct watch_log *l = arg;
	snprintf(l->lines[l->n++], sizeof(l->lines[0]), "%s %s", type, obj_name(obj));
}

static void requests_cb(void *arg, int status, long code, json_t *body, const char *err)
{
	json_t **out = arg;
	assert_int_equal(status, 0);
	*out = json_incref(body);
}

static void test_list_watch(void **state)
{
	static const struct kwatch_ops ops = { .sync = w_sync, .event = w_event };
	static const char *const want[] = {
		"sync pod-a pod-b pod-c", "ADDED pod-d", "MODIFIED pod-a", "DELETED pod-b",
		"sync pod-a pod-c pod-d pod-e", "sync pod-a pod-c pod-d pod-e",
	};
	static const char *const want_requests[] = {
		"GET /api/v1/pods?limit=500",
		"GET /api/v1/pods?limit=500&continue=p2",
		"GET /api/v1/pods?watch=1&resourceVersion=100&allowWatchBookmarks=true&timeoutSeconds=290",
		"GET /api/v1/pods?limit=500",
		"GET /api/v1/pods?limit=500&continue=p2",
		"GET /api/v1/pods?watch=1&resourceVersion=200&allowWatchBookmarks=true&timeoutSeconds=290",
		"GET /api/v1/pods?watch=1&resourceVersion=250&allowWatchBookmarks=true&timeoutSeconds=290",
		"GET /api/v1/pods?limit=500",
		"GET /api/v1/pods?limit=500&continue=p2",
	};
	struct watch_log log = { 0 };
	uv_loop_t loop;
	struct kapi *k = client(&loop, fx.server, fx.token);
	json_t *seen = NULL;

	assert_int_equal(kwatch_start(&loop, k, "api/v1/pods", &ops, &log, &log.w), -EINVAL);
	assert_int_equal(kwatch_start(&loop, k, "/api/v1/pods", &ops, &log, &log.w), 0);
	run(&loop); /* ends when the third sync stops the watch */
	assert_int_equal(log.n, 6);
	for (int i = 0; i < 6; i++)
		assert_string_equal(log.lines[i], want[i]);

	assert_int_equal(kapi_json(k, "GET", "/debug/requests", NULL, 5000, requests_cb, &seen,
				   NULL), 0);
	run(&loop);
	finish(&loop, k);
	size_t n = sizeof(want_requests) / sizeof(want_requests[0]);
	assert_true(json_array_size(seen) >= n);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(json_string_value(json_array_get(seen, i)), want_requests[i]);
	json_decref(seen);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_list_watch), /* first: the fake's list state is fresh */
		cmocka_unit_test(test_tokenreview_accepts_bound_token),
		cmocka_unit_test(test_tokenreview_refusals),
		cmocka_unit_test(test_tokenreview_api_errors),
		cmocka_unit_test(test_config_errors),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
