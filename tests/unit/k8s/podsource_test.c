/* podsource_test: which pods become workloads and what the Workload
 * documents hold (table of pod shapes), then the whole source against
 * tests/lib/kube_api.py: after its list, events and resyncs, the published
 * set is the injected, live pods, sorted. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include "podsource.h"
#include "testkube.h"
#include "testloop.h"

#define INJECTED "\"annotations\": {\"cinch.dev/injected\": \"{}\"}"

struct pod_case {
	const char *pod;
	const char *want; /* the Workload, compact with sorted keys; NULL: none */
};

static const struct pod_case pod_cases[] = {
	{ "{\"metadata\": {\"name\": \"web-1\", \"namespace\": \"shop\", \"labels\": {\"app\": \"web\"}, "
	  INJECTED "}, \"spec\": {\"serviceAccountName\": \"web\"}, \"status\": {\"phase\": "
	  "\"Running\", \"podIP\": \"10.1.0.5\", \"podIPs\": [{\"ip\": \"10.1.0.5\"}, {\"ip\": "
	  "\"fd00::5\"}]}}",
	  "{\"apiVersion\":\"cinch.dev/v1alpha1\",\"kind\":\"Workload\",\"metadata\":{\"labels\":"
	  "{\"app\":\"web\"},\"name\":\"web-1\",\"namespace\":\"shop\"},\"spec\":{\"addresses\":"
	  "[\"10.1.0.5\",\"fd00::5\"],\"serviceAccount\":\"web\"}}" },
	/* In its init phase, with an IP, no labels and no service account. */
	{ "{\"metadata\": {\"name\": \"job-1\", \"namespace\": \"batch\", " INJECTED "}, "
	  "\"spec\": {}, \"status\": {\"phase\": \"Pending\", \"podIP\": \"10.1.0.9\"}}",
	  "{\"apiVersion\":\"cinch.dev/v1alpha1\",\"kind\":\"Workload\",\"metadata\":{\"labels\":{},"
	  "\"name\":\"job-1\",\"namespace\":\"batch\"},\"spec\":{\"addresses\":[\"10.1.0.9\"],"
	  "\"serviceAccount\":\"default\"}}" },
	/* Named container ports of every container (what a policy's port name
	 * resolves to), the protocol TCP when absent; unnamed ones left out. */
	{ "{\"metadata\": {\"name\": \"api-1\", \"namespace\": \"shop\", " INJECTED "}, "
	  "\"spec\": {\"serviceAccountName\": \"api\", \"containers\": [{\"name\": \"app\", "
	  "\"ports\": [{\"name\": \"http\", \"containerPort\": 8080}, {\"containerPort\": 7000}, "
	  "{\"name\": \"dns\", \"containerPort\": 53, \"protocol\": \"UDP\", \"hostPort\": 53}]}, "
	  "{\"name\": \"side\", \"ports\": [{\"name\": \"metrics\", \"containerPort\": 9090, "
	  "\"protocol\": \"TCP\"}]}]}, \"status\": {\"podIP\": \"10.1.0.7\"}}",
	  "{\"apiVersion\":\"cinch.dev/v1alpha1\",\"kind\":\"Workload\",\"metadata\":{\"labels\":{},"
	  "\"name\":\"api-1\",\"namespace\":\"shop\"},\"spec\":{\"addresses\":[\"10.1.0.7\"],"
	  "\"ports\":[{\"containerPort\":8080,\"name\":\"http\",\"protocol\":\"TCP\"},"
	  "{\"containerPort\":53,\"name\":\"dns\",\"protocol\":\"UDP\"},{\"containerPort\":9090,"
	  "\"name\":\"metrics\",\"protocol\":\"TCP\"}],\"serviceAccount\":\"api\"}}" },
	{ "{\"metadata\": {\"name\": \"a\", \"namespace\": \"n\"}, \"spec\": {}, \"status\": "
	  "{\"podIP\": \"10.1.0.1\"}}", NULL }, /* not injected */
	{ "{\"metadata\": {\"name\": \"a\", \"namespace\": \"n\", " INJECTED "}, \"spec\": {}, "
	  "\"status\": {\"phase\": \"Pending\"}}", NULL }, /* no IP yet */
	{ "{\"metadata\": {\"name\": \"a\", \"namespace\": \"n\", " INJECTED "}, \"spec\": "
	  "{\"hostNetwork\": true}, \"status\": {\"podIP\": \"192.0.2.1\"}}", NULL },
	{ "{\"metadata\": {\"name\": \"a\", \"namespace\": \"n\", " INJECTED "}, \"spec\": {}, "
	  "\"status\": {\"phase\": \"Succeeded\", \"podIP\": \"10.1.0.1\"}}", NULL },
	{ "{\"metadata\": {\"name\": \"a\", \"namespace\": \"n\", \"deletionTimestamp\": "
	  "\"2026-01-01T00:00:00Z\", " INJECTED "}, \"spec\": {}, \"status\": {\"podIP\": "
	  "\"10.1.0.1\"}}", NULL },
	{ "{\"metadata\": {\"namespace\": \"n\", " INJECTED "}, \"status\": {\"podIP\": \"10.1.0.1\"}}",
	  NULL }, /* no name */
	{ "[]", NULL },
};

static void test_pod_to_workload(void **state)
{
	for (size_t i = 0; i < sizeof(pod_cases) / sizeof(pod_cases[0]); i++) {
		json_error_t err;
		json_t *pod = json_loads(pod_cases[i].pod, 0, &err);
		if (!pod)
			fail_msg("case %zu is not JSON: %s", i, err.text);
		json_t *w = podsource_workload(pod);
		print_message("case %zu\n", i);
		if (!pod_cases[i].want) {
			assert_null(w);
		} else {
			assert_non_null(w);
			char *s = json_dumps(w, JSON_COMPACT | JSON_SORT_KEYS);
			assert_string_equal(s, pod_cases[i].want);
			free(s);
		}
		json_decref(w);
		json_decref(pod);
	}
}

/* --- against the fake API server ------------------------------------- */

struct seen {
	int calls, done;
	char last[256];
	struct podsource *ps;
};

static void on_workloads(void *arg, json_t *ws)
{
	struct seen *s = arg;
	char *p = s->last;
	size_t i;
	json_t *w;

	s->calls++;
	p[0] = '\0';
	json_array_foreach(ws, i, w) {
		const json_t *m = json_object_get(w, "metadata");
		size_t room = sizeof(s->last) - (size_t)(p - s->last);
		int n = snprintf(p, room, "%s%s/%s", i ? " " : "",
				 json_string_value(json_object_get(m, "namespace")),
				 json_string_value(json_object_get(m, "name")));
		assert_true(n >= 0 && (size_t)n < room);
		p += n;
	}
	/* pod-e is not injected; pod-b was deleted: the state after resync. */
	if (strcmp(s->last, "shop/pod-a shop/pod-c shop/pod-d") == 0 && !s->done) {
		s->done = 1;
		podsource_stop(s->ps);
	}
}

static void test_against_api(void **state)
{
	struct testkube tk;
	struct kapi_config cfg;
	struct kapi *k;
	struct seen s = { 0 };
	const char *why;
	uv_loop_t loop;

	assert_int_equal(testkube_start(&tk, KUBE_API), 0);
	assert_int_equal(kapi_config_explicit(&cfg, tk.server, tk.ca, tk.token, &why), 0);
	uv_loop_init(&loop);
	assert_int_equal(kapi_new(&loop, &cfg, &k), 0);
	kapi_config_cleanup(&cfg);
	assert_int_equal(podsource_start(&loop, k, on_workloads, &s, &s.ps), 0);
	assert_int_equal(testloop_run(&loop, 20), 0);
	assert_int_equal(s.done, 1);
	assert_true(s.calls >= 2); /* the first list, then the changes */
	kapi_close(k, NULL, NULL);
	assert_int_equal(testloop_run(&loop, 5), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	testkube_stop(&tk);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pod_to_workload),
		cmocka_unit_test(test_against_api),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
