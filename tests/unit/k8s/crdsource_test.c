/* crdsource_test: the policy CRD source against tests/lib/kube_api.py.
 * Objects are reduced to what the policy library reads (no uid,
 * managedFields or status), all the kinds (the cluster-scoped
 * GuardrailPolicy, and v1 Namespaces for their labels) arrive as one
 * sorted set, a
 * change streamed by a watch is published, and reporting a rejection
 * writes an Accepted=False condition (merge patch to /status) while an
 * unchanged report writes nothing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crdsource.h"
#include "testkube.h"
#include "testloop.h"

struct run {
	struct crdsource *cs;
	struct kapi *k;
	uv_timer_t step;
	int calls, phase;
	char first[1024], last[1024];
	json_t *requests;
};

static void dump(json_t *docs, char *out, size_t len)
{
	char *s = json_dumps(docs, JSON_COMPACT | JSON_SORT_KEYS);
	snprintf(out, len, "%s", s ? s : "");
	free(s);
}

static void on_docs(void *arg, json_t *docs)
{
	struct run *r = arg;
	if (r->calls++ == 0)
		dump(docs, r->first, sizeof(r->first));
	dump(docs, r->last, sizeof(r->last));
}

static void requests_cb(void *arg, int status, long code, json_t *body, const char *err)
{
	struct run *r = arg;
	assert_int_equal(status, 0);
	r->requests = json_incref(body);
	crdsource_stop(r->cs);
	uv_close((uv_handle_t *)&r->step, NULL);
}

/* Phases 300 ms apart: report, report the same again, read the log. */
static void step_cb(uv_timer_t *t)
{
	struct run *r = t->data;
	json_t *rejected = json_pack("{s:s}", "AllowPolicy/shop/bad",
				     "spec.ports[0]: port 70000 is out of range");

	switch (r->phase++) {
	case 0:
	case 1:
		crdsource_report(r->cs, rejected);
		break;
	default:
		uv_timer_stop(t);
		assert_int_equal(kapi_json(r->k, "GET", "/debug/requests", NULL, 5000, requests_cb,
					   r, NULL), 0);
	}
	json_decref(rejected);
}

static void test_crd_source(void **state)
{
	struct testkube tk;
	struct kapi_config cfg;
	struct run r = { 0 };
	const char *why;
	uv_loop_t loop;

	assert_int_equal(testkube_start(&tk, KUBE_API), 0);
	assert_int_equal(kapi_config_explicit(&cfg, tk.server, tk.ca, tk.token, &why), 0);
	uv_loop_init(&loop);
	assert_int_equal(kapi_new(&loop, &cfg, &r.k), 0);
	kapi_config_cleanup(&cfg);
	assert_int_equal(crdsource_start(&loop, r.k, on_docs, &r, &r.cs), 0);
	uv_timer_init(&loop, &r.step);
	r.step.data = &r;
	uv_timer_start(&r.step, step_cb, 600, 300);
	assert_int_equal(testloop_run(&loop, 20), 0);

	/* The first set: all kinds, sorted, reduced (the watch's MODIFIED may
	 * already be in it: five kinds are listed before the first publish). */
	char *mod = strstr(r.first, "[8080,8443]");
	if (mod)
		memmove(mod + 5, mod + 10, strlen(mod + 10) + 1);
	assert_string_equal(
		r.first,
		"[{\"apiVersion\":\"cinch.dev/v1alpha1\",\"kind\":\"AllowPolicy\",\"metadata\":"
		"{\"labels\":{\"team\":\"shop\"},\"name\":\"api-from-web\",\"namespace\":\"shop\"},"
		"\"spec\":{\"from\":[{\"identities\":[\"spiffe://cluster.local/ns/shop/sa/web\"]}],"
		"\"ports\":[8080],\"selector\":{\"matchLabels\":{\"app\":\"api\"}}}},"
		"{\"apiVersion\":\"cinch.dev/v1alpha1\",\"kind\":\"AllowPolicy\",\"metadata\":"
		"{\"labels\":{\"team\":\"shop\"},\"name\":\"bad\",\"namespace\":\"shop\"},\"spec\":"
		"{\"ports\":[70000]}},"
		/* cluster-scoped: no namespace */
		"{\"apiVersion\":\"cinch.dev/v1alpha1\",\"kind\":\"GuardrailPolicy\",\"metadata\":"
		"{\"labels\":{\"team\":\"shop\"},\"name\":\"no-dev\"},\"spec\":{\"priority\":10,"
		"\"rules\":[{\"action\":\"deny\",\"from\":[{\"namespaceSelector\":{\"matchLabels\":"
		"{\"env\":\"dev\"}}}]}],\"subject\":{\"namespaceSelector\":{\"matchLabels\":"
		"{\"env\":\"prod\"}}}}},"
		"{\"apiVersion\":\"cinch.dev/v1alpha1\",\"kind\":\"MeshPolicy\",\"metadata\":"
		"{\"labels\":{\"team\":\"shop\"},\"name\":\"default\",\"namespace\":\"cinch-system\"},"
		"\"spec\":{\"mtls\":\"STRICT\"}},"
		/* a Namespace: its name and labels only */
		"{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"labels\":"
		"{\"env\":\"prod\",\"kubernetes.io/metadata.name\":\"shop\"},\"name\":\"shop\"}}]");
	/* The watch's MODIFIED (port 8443 added) was published. */
	assert_non_null(strstr(r.last, "\"ports\":[8080,8443]"));

	/* Exactly one status write per object, with the right condition. */
	size_t i, patches = 0;
	json_t *line;
	json_array_foreach(r.requests, i, line) {
		const char *l = json_string_value(line);
		if (strncmp(l, "PATCH ", 6) != 0)
			continue;
		patches++;
		assert_non_null(strstr(l, " application/merge-patch+json "));
		if (strstr(l, "/namespaces/shop/allowpolicies/bad/status")) {
			assert_non_null(strstr(l, "\"status\":\"False\""));
			assert_non_null(strstr(l, "\"reason\":\"Invalid\""));
			assert_non_null(strstr(l, "spec.ports[0]: port 70000 is out of range"));
		} else {
			assert_true(strstr(l, "/namespaces/shop/allowpolicies/api-from-web/status") ||
				    strstr(l, "/namespaces/cinch-system/meshpolicies/default/status") ||
				    strstr(l, " /apis/cinch.dev/v1alpha1/guardrailpolicies/no-dev/status "));
			assert_non_null(strstr(l, "\"status\":\"True\""));
		}
	}
	assert_int_equal(patches, 4); /* not the Namespace: the control never writes one */
	json_decref(r.requests);

	kapi_close(r.k, NULL, NULL);
	assert_int_equal(testloop_run(&loop, 5), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	testkube_stop(&tk);
}

static void test_document_of_malformed(void **state)
{
	json_t *o = json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", "cinch.dev/v1alpha1", "kind",
			      "AllowPolicy", "metadata", "name", "x"); /* no namespace, no spec */
	assert_null(crdsource_document(o));
	json_decref(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crd_source),
		cmocka_unit_test(test_document_of_malformed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
