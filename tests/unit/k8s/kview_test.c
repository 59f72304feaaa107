/* kview_test: a view fed by several watches (kview_watch) publishes
 * nothing until every kind has listed once, against tests/lib/kube_api.py
 * in live mode. The API server answers the EndpointSlice list a second
 * after the Service list while the view settles in 50 ms: the first set
 * published must hold both kinds (a consumer shown Services without their
 * EndpointSlices would take every endpoint for gone). Without the hold the
 * first set is the Services alone. */
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
#include "kview.h"
#include "testkube.h"
#include "testloop.h"

static const char *const kinds[] = {"Service", "EndpointSlice"};
static const char *const collections[] = {"/api/v1/services",
					  "/apis/discovery.k8s.io/v1/endpointslices"};

struct run {
	struct kapi *k;
	uv_loop_t *loop;
	struct kview view;
	int started, closed, calls;
	char first[512];
};

static void apply(void *arg, size_t i, const json_t *obj, int deleted)
{
	struct run *r = arg;
	const json_t *meta = json_object_get(obj, "metadata");
	char key[256];

	snprintf(key, sizeof(key), "%s/%s/%s", kinds[i],
		 json_string_value(json_object_get(meta, "namespace")),
		 json_string_value(json_object_get(meta, "name")));
	kview_set(&r->view, key, deleted ? NULL : json_string(kinds[i]));
}

static void view_closed(struct kview *v)
{
	struct run *r = (struct run *)((char *)v - offsetof(struct run, view));
	r->closed = 1;
}

static void on_docs(void *arg, json_t *docs)
{
	struct run *r = arg;
	char *s = json_dumps(docs, JSON_COMPACT);

	if (r->calls++ == 0)
		snprintf(r->first, sizeof(r->first), "%s", s ? s : "");
	free(s);
	kview_close(&r->view, view_closed);
}

/* The objects are in place and the slices' list delayed: watch. */
static void cluster_cb(void *arg, int status, long code, json_t *body, const char *err)
{
	struct run *r = arg;

	assert_int_equal(status, 0);
	assert_int_equal(code, 200);
	assert_int_equal(kview_init(&r->view, r->loop, 50, on_docs, r), 0);
	assert_int_equal(kview_watch(&r->view, r->loop, r->k, 2, kinds, collections, apply, r), 0);
	r->started = 1;
}

static void live_cb(void *arg, int status, long code, json_t *body, const char *err)
{
	struct run *r = arg;
	json_t *req = json_pack("{s:{s:f}}", "list_delay", "endpointslices", 1.0);

	assert_int_equal(status, 0);
	assert_int_equal(code, 200);
	assert_int_equal(kapi_json(r->k, "POST", "/debug/cluster", req, 5000, cluster_cb, r, NULL),
			 0);
	json_decref(req);
}

static void test_held_until_every_kind_listed(void **state)
{
	struct testkube tk;
	struct kapi_config cfg;
	struct run r = {0};
	const char *why;
	uv_loop_t loop;
	json_t *objs = json_pack("{s:[{s:{s:s, s:s}}], s:[{s:{s:s, s:s}}]}", "services", "metadata",
				 "name", "api", "namespace", "shop", "endpointslices", "metadata",
				 "name", "api-x1", "namespace", "shop");

	assert_int_equal(testkube_start(&tk, KUBE_API), 0);
	assert_int_equal(kapi_config_explicit(&cfg, tk.server, tk.ca, tk.token, &why), 0);
	uv_loop_init(&loop);
	r.loop = &loop;
	assert_int_equal(kapi_new(&loop, &cfg, &r.k), 0);
	kapi_config_cleanup(&cfg);
	assert_int_equal(kapi_json(r.k, "POST", "/debug/live", objs, 5000, live_cb, &r, NULL), 0);
	json_decref(objs);
	assert_int_equal(testloop_run(&loop, 20), 0);

	assert_true(r.started);
	assert_true(r.closed);
	assert_int_equal(r.calls, 1);
	/* sorted by key: "EndpointSlice/..." before "Service/..." */
	assert_string_equal(r.first, "[\"EndpointSlice\",\"Service\"]");

	kapi_close(r.k, NULL, NULL);
	assert_int_equal(testloop_run(&loop, 5), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	testkube_stop(&tk);
}

static void closed_noop(struct kview *v)
{
}

/* Bad counts are refused before anything starts. */
static void test_watch_counts(void **state)
{
	struct kview v;
	uv_loop_t loop;
	const char *many[KVIEW_MAX_WATCHES + 1] = {0};

	uv_loop_init(&loop);
	assert_int_equal(kview_init(&v, &loop, 10, NULL, NULL), 0);
	assert_int_equal(kview_watch(&v, &loop, NULL, 0, many, many, NULL, NULL), -EINVAL);
	assert_int_equal(
		kview_watch(&v, &loop, NULL, KVIEW_MAX_WATCHES + 1, many, many, NULL, NULL),
		-EINVAL);
	kview_close(&v, closed_noop);
	assert_int_equal(testloop_run(&loop, 5), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_held_until_every_kind_listed),
		cmocka_unit_test(test_watch_counts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
