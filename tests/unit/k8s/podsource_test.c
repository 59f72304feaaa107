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
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "podsource.h"
#include "testpki.h"
#include "testproc.h"

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
		p += sprintf(p, "%s%s/%s", i ? " " : "",
			     json_string_value(json_object_get(m, "namespace")),
			     json_string_value(json_object_get(m, "name")));
	}
	/* pod-e is not injected; pod-b was deleted: the state after resync. */
	if (strcmp(s->last, "shop/pod-a shop/pod-c shop/pod-d") == 0 && !s->done) {
		s->done = 1;
		podsource_stop(s->ps);
	}
}

static void guard_cb(uv_timer_t *t)
{
	fail_msg("no settled workload set within 20 s");
}

static void test_against_api(void **state)
{
	static const char *const sans[] = { "IP:127.0.0.1" };
	char dir[] = "/tmp/podsource_test.XXXXXX", path[3][128], server[64], cmd[128];
	EVP_PKEY *ca_key = testpki_key(), *key = testpki_key();
	X509 *ca = testpki_root(ca_key, "kube test root", 1);
	X509 *cert = testpki_leaf(ca, ca_key, key, sans, 1, -60, 3600);
	char *pems[3] = { testpki_cert_pem(ca), testpki_cert_pem(cert), testpki_key_pem(key) };
	static const char *const names[3] = { "ca.pem", "api.pem", "api-key.pem" };
	struct testproc api;
	struct kapi_config cfg;
	struct kapi *k;
	struct seen s = { 0 };
	const char *why;
	uv_loop_t loop;
	uv_timer_t guard;

	assert_non_null(mkdtemp(dir));
	for (int i = 0; i < 3; i++) {
		assert_int_equal(testpki_write(dir, names[i], pems[i]), 0);
		snprintf(path[i], sizeof(path[i]), "%s/%s", dir, names[i]);
		free(pems[i]);
	}
	assert_int_equal(testpki_write(dir, "token", "control-token"), 0);
	char *argv[] = { "/usr/bin/python3", KUBE_API, "--cert", path[1], "--key", path[2],
			 "--lifetime", "60", NULL };
	assert_int_equal(testproc_start(&api, argv), 0);
	snprintf(server, sizeof(server), "https://127.0.0.1:%d", api.port);
	snprintf(cmd, sizeof(cmd), "%s/token", dir);
	assert_int_equal(kapi_config_explicit(&cfg, server, path[0], cmd, &why), 0);

	uv_loop_init(&loop);
	assert_int_equal(kapi_new(&loop, &cfg, &k), 0);
	kapi_config_cleanup(&cfg);
	assert_int_equal(podsource_start(&loop, k, on_workloads, &s, &s.ps), 0);
	uv_timer_init(&loop, &guard);
	uv_timer_start(&guard, guard_cb, 20000, 0);
	uv_unref((uv_handle_t *)&guard);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(s.done, 1);
	assert_true(s.calls >= 2); /* the first list, then the changes */
	uv_close((uv_handle_t *)&guard, NULL);
	kapi_close(k, NULL, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);

	testproc_stop(&api);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	X509_free(ca);
	X509_free(cert);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(key);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pod_to_workload),
		cmocka_unit_test(test_against_api),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
