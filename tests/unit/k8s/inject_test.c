/* inject_test: the admission decision on real AdmissionReview documents
 * (tests/unit/k8s/fixtures/): which pods are patched, left alone or refused
 * and why, that the uid is echoed, that a body that is no review at all is
 * refused without crashing, and that no truncation of a valid review
 * crashes. Refusals that keep the mesh's promise (issue #12): a container
 * running as the agent's UID 1337 (pod or container securityContext), and
 * cinch.dev/exclude-* annotations unless the MeshPolicy allows them for
 * the pod's namespace. The patches themselves are applied with kubectl by
 * inject_kubectl_test.py. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "inject.h"

static char *slurp(const char *name, size_t *len)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", FIXTURES, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s", path);
	char *buf = malloc(1 << 20);
	*len = fread(buf, 1, 1 << 20, f);
	fclose(f);
	return buf;
}

/* A mesh whose MeshPolicy lets namespace "shop" exclude ports. */
static int allow_shop(void *arg, const char *ns)
{
	++*(int *)arg;
	return ns && strcmp(ns, "shop") == 0;
}

static int allow_calls;

/* Runs a fixture and returns the parsed "response" object (a new ref);
 * `excl`: under a mesh that lets "shop" exclude ports. */
static json_t *answer_in(const char *name, int native, int excl)
{
	struct inject_config cfg;
	size_t len;
	char *body = slurp(name, &len);
	char *out = NULL;
	const char *why = NULL;

	inject_config_defaults(&cfg);
	cfg.native_sidecar = native;
	if (excl) {
		cfg.pod_exclusions = allow_shop;
		cfg.pod_exclusions_arg = &allow_calls;
	}
	int rc = inject_review(&cfg, body, len, &out, &why);
	if (rc != 0)
		fail_msg("%s: %d %s", name, rc, why);
	json_t *doc = json_loads(out, 0, NULL);
	assert_non_null(doc);
	assert_string_equal(json_string_value(json_object_get(doc, "apiVersion")),
			    "admission.k8s.io/v1");
	assert_string_equal(json_string_value(json_object_get(doc, "kind")), "AdmissionReview");
	json_t *resp = json_incref(json_object_get(doc, "response"));
	json_decref(doc);
	free(out);
	free(body);
	return resp;
}

struct outcome_case {
	const char *fixture;
	const char *uid;
	int allowed, patched;
	const char *reason; /* auditAnnotations.injection or status.message */
	int excl;	    /* under a mesh that lets "shop" exclude ports */
};

#define NO_EXCLUSIONS(a)                                                                          \
	"cinch: annotation cinch.dev/" a ": this mesh does not let pods of namespace shop "     \
	"exclude traffic from interception (MeshPolicy spec.allowPodExclusions)"
#define AGENT_UID(c)                                                                             \
	"cinch: container " c " runs as UID 1337, the mesh agent's: its traffic would bypass "  \
	"interception; run it as another user (securityContext.runAsUser)"

static const struct outcome_case outcomes[] = {
	{ "rs_pod.json", "705ab4f5-6393-11e8-b7cc-42010a800002", 1, 1, "injected", 0 },
	{ "init_pod.json", "11111111-2222-3333-4444-555555555555", 1, 1, "injected", 1 },
	{ "init_pod.json", "11111111-2222-3333-4444-555555555555", 0, 0,
	  NO_EXCLUSIONS("exclude-inbound-ports"), 0 },
	{ "exclude_outbound.json", "u-exclude", 0, 0, NO_EXCLUSIONS("exclude-outbound-ports"), 0 },
	{ "exclude_outbound.json", "u-exclude", 1, 1, "injected", 1 },
	{ "uid_1337_pod.json", "u-uid-pod", 0, 0, AGENT_UID("web"), 0 },
	{ "uid_1337_pod.json", "u-uid-pod", 0, 0, AGENT_UID("web"), 1 },
	{ "uid_1337_init.json", "u-uid-init", 0, 0, AGENT_UID("setup"), 0 },
	{ "uid_overridden.json", "u-uid-override", 1, 1, "injected", 0 },
	{ "already_injected.json", "u-injected", 1, 0, "already injected", 0 },
	{ "control_namespace.json", "u-system", 1, 0,
	  "the control plane's namespace is never injected", 0 },
	{ "opted_out.json", "u-optout", 1, 0, "opted out with cinch.dev/inject", 0 },
	{ "host_network.json", "u-hostnet", 1, 0, "hostNetwork pods share the node's network", 0 },
	{ "deployment.json", "u-deploy", 1, 0, "not a v1 Pod", 0 },
	{ "update.json", "u-update", 1, 0, "not a CREATE", 0 },
	{ "bad_annotation.json", "u-badann", 0, 0,
	  "cinch: annotation cinch.dev/exclude-inbound-ports: invalid value \"80,http\"", 0 },
	{ "unknown_annotation.json", "u-typo", 0, 0,
	  "cinch: unknown annotation cinch.dev/exclude-inbound-port", 0 },
};

static void test_outcomes(void **state)
{
	for (size_t i = 0; i < sizeof(outcomes) / sizeof(outcomes[0]); i++) {
		const struct outcome_case *c = &outcomes[i];
		print_message("%s\n", c->fixture);
		json_t *r = answer_in(c->fixture, 1, c->excl);
		assert_string_equal(json_string_value(json_object_get(r, "uid")), c->uid);
		assert_int_equal(json_is_true(json_object_get(r, "allowed")), c->allowed);
		assert_int_equal(json_object_get(r, "patch") != NULL, c->patched);
		if (c->patched)
			assert_string_equal(json_string_value(json_object_get(r, "patchType")),
					    "JSONPatch");
		const char *reason =
			c->allowed ? json_string_value(json_object_get(
					     json_object_get(r, "auditAnnotations"), "injection"))
				   : json_string_value(json_object_get(
					     json_object_get(r, "status"), "message"));
		assert_non_null(reason);
		assert_string_equal(reason, c->reason);
		if (!c->allowed)
			assert_int_equal(json_integer_value(json_object_get(
						 json_object_get(r, "status"), "code")), 400);
		json_decref(r);
	}
}

static void test_grpc_probe_warned(void **state)
{
	allow_calls = 0;
	json_t *r = answer_in("init_pod.json", 1, 1);
	assert_true(allow_calls > 0); /* the mesh was asked, for namespace shop */
	json_t *w = json_object_get(r, "warnings");
	assert_int_equal(json_array_size(w), 1);
	assert_non_null(strstr(json_string_value(json_array_get(w, 0)),
			       "container metrics: gRPC readinessProbe is not rewritten"));
	json_decref(r);
}

static void test_not_a_review(void **state)
{
	static const struct {
		const char *body, *why;
	} bad[] = {
		{ "{\"apiVersion\": \"admission.k8s.io/v1\",", "body is not a JSON document" },
		{ "", "body is not a JSON document" },
		{ "[1,2,3]", "not an admission.k8s.io/v1 AdmissionReview" },
		{ "{\"apiVersion\":\"admission.k8s.io/v1beta1\",\"kind\":\"AdmissionReview\","
		  "\"request\":{\"uid\":\"x\"}}", "not an admission.k8s.io/v1 AdmissionReview" },
		{ "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"}",
		  "AdmissionReview has no request with a uid" },
		{ "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\","
		  "\"request\":{\"uid\":\"\"}}", "AdmissionReview has no request with a uid" },
		{ "{\"apiVersion\":\"admission.k8s.io/v1\",\"apiVersion\":\"x\"}",
		  "body is not a JSON document" },
	};
	struct inject_config cfg;
	inject_config_defaults(&cfg);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *out = (char *)"untouched";
		const char *why = NULL;
		assert_int_equal(inject_review(&cfg, bad[i].body, strlen(bad[i].body), &out, &why),
				 -EINVAL);
		assert_string_equal(why, bad[i].why);
		assert_string_equal(out, "untouched");
	}
}

static void test_review_without_object_refused(void **state)
{
	static const char body[] =
		"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":"
		"{\"uid\":\"u1\",\"kind\":{\"group\":\"\",\"version\":\"v1\",\"kind\":\"Pod\"},"
		"\"operation\":\"CREATE\",\"object\":{\"spec\":7}}}";
	struct inject_config cfg;
	char *out = NULL;
	const char *why = NULL;

	inject_config_defaults(&cfg);
	assert_int_equal(inject_review(&cfg, body, sizeof(body) - 1, &out, &why), 0);
	assert_non_null(strstr(out, "\"allowed\":false"));
	assert_non_null(strstr(out, "the review holds no Pod object"));
	free(out);
}

static void test_truncations_do_not_crash(void **state)
{
	struct inject_config cfg;
	size_t len;
	char *body = slurp("init_pod.json", &len);

	inject_config_defaults(&cfg);
	for (size_t cut = 0; cut < len; cut++) {
		char *out = NULL;
		const char *why = NULL;
		int rc = inject_review(&cfg, body, cut, &out, &why);
		assert_true(rc == 0 || rc == -EINVAL);
		free(out);
	}
	free(body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_outcomes),
		cmocka_unit_test(test_grpc_probe_warned),
		cmocka_unit_test(test_not_a_review),
		cmocka_unit_test(test_review_without_object_refused),
		cmocka_unit_test(test_truncations_do_not_crash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
