/* ksvc_test: Kubernetes Services and EndpointSlices into the registry
 * model (ksvc.h). The objects are in the API server's own JSON, with the
 * fields a real server sends that we ignore (managedFields, status,
 * sessionAffinity, targetRef, hints...), so "unknown fields are ignored"
 * is tested on what a cluster really sends; every field we use is then
 * broken one at a time and the error must name its path. Files mode: the
 * same kinds in YAML through pset_add_path, with line numbers. */
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
#include <jansson.h>

#include "ksvc.h"
#include "model.h"
#include "pdoc.h"

/* What `kubectl get svc api -o json` prints for a dual-stack Service. */
static const char *const SERVICE_JSON =
	"{\"apiVersion\": \"v1\", \"kind\": \"Service\","
	" \"metadata\": {\"name\": \"api\", \"namespace\": \"shop\","
	"  \"uid\": \"5b0c8a8e-0d4f-4c2a-9a55-8f1b7f0b0c11\", \"resourceVersion\": \"48213\","
	"  \"creationTimestamp\": \"2026-12-01T10:00:00Z\", \"labels\": {\"app\": \"api\"},"
	"  \"annotations\": {\"kubectl.kubernetes.io/last-applied-configuration\": \"{}\"},"
	"  \"managedFields\": [{\"manager\": \"kubectl\", \"operation\": \"Update\","
	"   \"apiVersion\": \"v1\", \"fieldsType\": \"FieldsV1\", \"fieldsV1\": {\"f:spec\": "
	"{}}}]},"
	" \"spec\": {\"type\": \"ClusterIP\", \"clusterIP\": \"10.96.0.10\","
	"  \"clusterIPs\": [\"10.96.0.10\", \"fd00:96::a\"],"
	"  \"ipFamilies\": [\"IPv4\", \"IPv6\"], \"ipFamilyPolicy\": \"PreferDualStack\","
	"  \"internalTrafficPolicy\": \"Cluster\", \"sessionAffinity\": \"None\","
	"  \"selector\": {\"app\": \"api\"},"
	"  \"ports\": [{\"name\": \"http\", \"protocol\": \"TCP\", \"port\": 80,"
	"              \"targetPort\": 8080, \"appProtocol\": \"http\"},"
	"             {\"name\": \"grpc\", \"protocol\": \"TCP\", \"port\": 9090,"
	"              \"targetPort\": \"grpc\"},"
	"             {\"name\": \"metrics\", \"port\": 9100}]},"
	" \"status\": {\"loadBalancer\": {}}}";

/* Its IPv4 EndpointSlice, as the EndpointSlice controller writes it. */
static const char *const SLICE_JSON =
	"{\"apiVersion\": \"discovery.k8s.io/v1\", \"kind\": \"EndpointSlice\","
	" \"metadata\": {\"name\": \"api-x7k2p\", \"namespace\": \"shop\","
	"  \"generateName\": \"api-\", \"generation\": 3,"
	"  \"labels\": {\"kubernetes.io/service-name\": \"api\","
	"   \"endpointslice.kubernetes.io/managed-by\": \"endpointslice-controller.k8s.io\"},"
	"  \"ownerReferences\": [{\"apiVersion\": \"v1\", \"kind\": \"Service\", \"name\": \"api\","
	"   \"uid\": \"5b0c8a8e\", \"controller\": true, \"blockOwnerDeletion\": true}]},"
	" \"addressType\": \"IPv4\","
	" \"endpoints\": [{\"addresses\": [\"10.1.0.2\"],"
	"   \"conditions\": {\"ready\": true, \"serving\": true, \"terminating\": false},"
	"   \"nodeName\": \"node-a\", \"zone\": \"z1\", \"hints\": {\"forZones\": [{\"name\": "
	"\"z1\"}]},"
	"   \"targetRef\": {\"kind\": \"Pod\", \"namespace\": \"shop\", \"name\": \"api-0\"}},"
	"  {\"addresses\": [\"10.1.0.5\"], \"conditions\": {}},"
	"  {\"addresses\": [\"10.1.0.6\"],"
	"   \"conditions\": {\"ready\": false, \"serving\": true, \"terminating\": true}},"
	"  {\"addresses\": [\"10.1.0.7\"], \"conditions\": {\"ready\": false, \"serving\": null}}],"
	" \"ports\": [{\"name\": \"http\", \"protocol\": \"TCP\", \"port\": 8080,"
	"             \"appProtocol\": \"http\"},"
	"            {\"name\": \"grpc\", \"protocol\": \"TCP\", \"port\": 50051}]}";

static json_t *load(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
	assert_non_null(j);
	return j;
}

static int add_json(struct pset *s, const json_t *doc, struct policy_error *err)
{
	struct pdoc *d = pdoc_from_json(doc);
	assert_non_null(d);
	int rc = pset_add_doc(s, "Service/shop/api", d, err);
	pdoc_free(d);
	return rc;
}

static void test_real_objects(void **state)
{
	(void)state;
	struct pset *s = pset_new("cluster.local");
	struct policy_error err;
	json_t *svc = load(SERVICE_JSON), *sl = load(SLICE_JSON);

	assert_int_equal(add_json(s, svc, &err), 0);
	assert_int_equal(add_json(s, sl, &err), 0);
	assert_int_equal(pset_finish(s, &err), 0);
	assert_int_equal(s->n_services, 1);
	const struct ksvc *v = ksvc_find(s, "shop", "api");
	assert_non_null(v);
	assert_int_equal(v->headless, 0);
	assert_int_equal(v->n_vips, 2);
	assert_string_equal(v->vips[0].text, "10.96.0.10");
	assert_string_equal(v->vips[1].text, "fd00:96::a");
	assert_int_equal(v->n_ports, 3);
	assert_string_equal(v->ports[0].name, "http");
	assert_int_equal(v->ports[0].port, 80);
	assert_int_equal(v->ports[0].target, 8080);
	assert_null(v->ports[0].target_name);
	assert_string_equal(v->ports[1].target_name, "grpc");
	assert_int_equal(v->ports[1].target, 0);
	assert_string_equal(v->ports[2].protocol, "TCP"); /* the default */
	assert_int_equal(v->ports[2].target, 9100);	  /* absent: port */

	assert_int_equal(s->n_slices, 1);
	const struct kslice *k = &s->slices[0];
	assert_string_equal(k->service, "api");
	assert_int_equal(k->n_eps, 4);
	/* the API's nil meanings: ready nil = true, serving nil = ready,
	 * terminating nil = false */
	assert_int_equal(k->eps[0].ready, 1);
	assert_int_equal(k->eps[1].ready, 1);
	assert_int_equal(k->eps[1].serving, 1);
	assert_int_equal(k->eps[1].terminating, 0);
	assert_int_equal(k->eps[2].ready, 0);
	assert_int_equal(k->eps[2].serving, 1);
	assert_int_equal(k->eps[2].terminating, 1);
	assert_int_equal(k->eps[3].serving, 0);
	/* Service ports reach the endpoints through the slice's ports, by
	 * name: 80 -> 8080, the named "grpc" -> 50051, metrics: not served */
	assert_int_equal(ksvc_target_port(&v->ports[0], k), 8080);
	assert_int_equal(ksvc_target_port(&v->ports[1], k), 50051);
	assert_int_equal(ksvc_target_port(&v->ports[2], k), 0);
	assert_int_equal(ksvc_check_json(svc, &err), 0);
	assert_int_equal(ksvc_check_json(sl, &err), 0);
	json_decref(svc);
	json_decref(sl);
	pset_free(s);
}

/* Each case: a JSON edit of one of the real objects (dotted path, value
 * as JSON; "-" deletes) and the field path the error must name. */
struct bad {
	int slice;
	const char *at, *value, *path, *msg;
};

static json_t *walk(json_t *j, const char *path, char *last, size_t len)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", path);
	char *dot = strrchr(buf, '.');
	snprintf(last, len, "%.100s", dot ? dot + 1 : buf);
	if (!dot)
		return j;
	*dot = '\0';
	for (char *save = NULL, *t = strtok_r(buf, ".", &save); t; t = strtok_r(NULL, ".", &save))
		j = json_is_array(j) ? json_array_get(j, strtoul(t, NULL, 10))
				     : json_object_get(j, t);
	return j;
}

static void test_bad_fields(void **state)
{
	(void)state;
	static const struct bad cases[] = {
		{0, "spec.ports.0.port", "0", "spec.ports[0].port", "1 to 65535"},
		{0, "spec.ports.0.port", "\"80\"", "spec.ports[0].port", "must be a number"},
		{0, "spec.ports.0.port", "-", "spec.ports[0].port", "required"},
		{0, "spec.ports.1.targetPort", "\"no_such!\"", "spec.ports[1].targetPort",
		 "port name"},
		{0, "spec.ports.1.targetPort", "70000", "spec.ports[1].targetPort", "65535"},
		{0, "spec.ports.0.protocol", "\"ICMP\"", "spec.ports[0].protocol", "TCP, UDP"},
		{0, "spec.ports.2.name", "-", "spec.ports[2].name", "several ports"},
		{0, "spec.ports.2.name", "\"http\"", "spec.ports[2]", "second port named"},
		{0, "spec.clusterIP", "\"10.96.0.11\"", "spec.clusterIPs[0]", "spec.clusterIP"},
		{0, "spec.clusterIPs", "[\"10.96.0.10\", \"10.96.0.12\"]", "spec.clusterIPs[1]",
		 "one family"},
		{0, "spec.clusterIPs", "[\"10.96.0.10\", \"nope\"]", "spec.clusterIPs[1]",
		 "not an IP"},
		{0, "spec.ipFamilies", "[\"IPv6\", \"IPv4\"]", "spec.clusterIPs[0]", "ipFamilies"},
		{0, "spec.ipFamilies", "[\"IPv5\"]", "spec.ipFamilies[0]", "IPv4 or IPv6"},
		{0, "spec.type", "\"Magic\"", "spec.type", "ExternalName"},
		{0, "spec.ports", "{}", "spec.ports", "must be a list"},
		{0, "spec", "-", "spec", "mapping"},
		{0, "metadata.namespace", "-", "metadata.namespace", "required"},
		{0, "metadata.name", "\"Bad_Name\"", "metadata.name", "DNS-1123"},
		{1, "addressType", "\"IPv7\"", "addressType", "IPv4, IPv6 or FQDN"},
		{1, "addressType", "\"IPv6\"", "endpoints[0].addresses[0]", "addressType IPv6"},
		{1, "endpoints.1.addresses", "[]", "endpoints[1].addresses", "empty"},
		{1, "endpoints.1.addresses", "-", "endpoints[1].addresses", "required"},
		{1, "endpoints.1.conditions.ready", "\"yes\"", "endpoints[1].conditions.ready",
		 "true or false"},
		{1, "endpoints.2.conditions", "[]", "endpoints[2].conditions", "mapping"},
		{1, "ports.0.port", "0", "ports[0].port", "1 to 65535"},
		{1, "ports.1.name", "\"http\"", "ports[1]", "second TCP port"},
		{1, "metadata.labels.kubernetes.io/service-name", "\"A B\"",
		 "metadata.labels.kubernetes.io/service-name", "Service name"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct bad *c = &cases[i];
		json_t *doc = load(c->slice ? SLICE_JSON : SERVICE_JSON);
		char last[128];
		json_t *parent;
		if (!strncmp(c->at, "metadata.labels.", 16)) {
			parent = json_object_get(json_object_get(doc, "metadata"), "labels");
			snprintf(last, sizeof(last), "%s", c->at + 16);
		} else {
			parent = walk(doc, c->at, last, sizeof(last));
		}
		assert_non_null(parent);
		if (!strcmp(c->value, "-"))
			json_object_del(parent, last);
		else
			json_object_set_new(parent, last, load(c->value));
		struct pset *s = pset_new("cluster.local");
		struct policy_error err;
		int rc = add_json(s, doc, &err);
		if (rc != -EINVAL || strcmp(err.path, c->path) || !strstr(err.msg, c->msg))
			fail_msg("case %zu (%s = %s): rc %d, path \"%s\", msg \"%s\"", i, c->at,
				 c->value, rc, err.path, err.msg);
		/* refused whole: nothing of it in the set */
		assert_int_equal(s->n_services + s->n_slices, 0);
		assert_int_equal(ksvc_check_json(doc, &err), -EINVAL);
		assert_string_equal(err.path, c->path);
		pset_free(s);
		json_decref(doc);
	}
}

static void test_headless_and_none(void **state)
{
	(void)state;
	static const char *const docs[] = {
		"{\"apiVersion\": \"v1\", \"kind\": \"Service\","
		" \"metadata\": {\"name\": \"db\", \"namespace\": \"shop\"},"
		" \"spec\": {\"clusterIP\": \"None\", \"clusterIPs\": [\"None\"],"
		"  \"ports\": [{\"port\": 5432}]}}",
		"{\"apiVersion\": \"v1\", \"kind\": \"Service\","
		" \"metadata\": {\"name\": \"ext\", \"namespace\": \"shop\"},"
		" \"spec\": {\"type\": \"ExternalName\", \"externalName\": \"example.com\"}}",
		"{\"apiVersion\": \"discovery.k8s.io/v1\", \"kind\": \"EndpointSlice\","
		" \"metadata\": {\"name\": \"db-1\", \"namespace\": \"shop\"},"
		" \"addressType\": \"FQDN\", \"endpoints\": null, \"ports\": null}",
	};
	struct pset *s = pset_new("cluster.local");
	struct policy_error err;
	for (size_t i = 0; i < 3; i++) {
		json_t *d = load(docs[i]);
		assert_int_equal(add_json(s, d, &err), 0);
		json_decref(d);
	}
	assert_int_equal(s->services[0].headless, 1);
	assert_int_equal(s->services[0].n_vips, 0);
	assert_int_equal(s->services[1].n_vips, 0);
	assert_int_equal(s->slices[0].fqdn, 1);
	assert_null(s->slices[0].service);
	assert_int_equal(pset_finish(s, &err), 0);
	pset_free(s);
}

static void test_files(void **state)
{
	(void)state;
	char dir[] = "/tmp/ksvc_test.XXXXXX", path[300];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/svc.yaml", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\n"
	      "spec:\n  clusterIP: 10.96.0.10\n  ports:\n  - {name: http, port: 80, targetPort: "
	      "8080}\n"
	      "---\n"
	      "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n"
	      "spec:\n  clusterIP: 10.96.0.10\n  ports:\n  - {port: 80}\n",
	      f);
	fclose(f);
	struct pset *s = pset_new("cluster.local");
	struct policy_error err;
	assert_int_equal(pset_add_path(s, path, &err), 0);
	/* one virtual IP, two Services: refused, at the second one's name */
	assert_int_equal(pset_finish(s, &err), -EINVAL);
	assert_int_equal(err.line, 11);
	assert_string_equal(err.path, "spec.clusterIPs");
	assert_non_null(strstr(err.msg, "share the virtual IP 10.96.0.10"));
	pset_free(s);

	f = fopen(path, "w");
	fputs("apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\n"
	      "spec:\n  clusterIP: 10.96.0.10\n  ports:\n  - {name: http, port: 80, targetPort: "
	      "99999}\n",
	      f);
	fclose(f);
	s = pset_new("cluster.local");
	assert_int_equal(pset_add_path(s, path, &err), -EINVAL);
	assert_int_equal(err.line, 7);
	assert_string_equal(err.path, "spec.ports[0].targetPort");
	pset_free(s);
	unlink(path);
	rmdir(dir);
}

/* Conflicts between documents: the later one is named, whole_set. */
static void test_set_conflicts(void **state)
{
	(void)state;
	static const char *const wl =
		"{\"apiVersion\": \"cinch.dev/v1alpha1\", \"kind\": \"Workload\","
		" \"metadata\": {\"name\": \"api-0\", \"namespace\": \"shop\"},"
		" \"spec\": {\"serviceAccount\": \"api\", \"addresses\": [\"10.96.0.10\"]}}";
	struct {
		const char *a, *b, *path, *msg;
	} cases[] = {
		{SERVICE_JSON, SERVICE_JSON, "metadata.name", "a second Service named shop/api"},
		{SLICE_JSON, SLICE_JSON, "metadata.name",
		 "a second EndpointSlice named shop/api-x7k2p"},
		{wl, SERVICE_JSON, "spec.clusterIPs", "is the address of workload shop/api-0"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct pset *s = pset_new("cluster.local");
		struct policy_error err;
		json_t *a = load(cases[i].a), *b = load(cases[i].b);
		assert_int_equal(add_json(s, a, &err), 0);
		assert_int_equal(add_json(s, b, &err), 0);
		assert_int_equal(pset_finish(s, &err), -EINVAL);
		assert_string_equal(err.path, cases[i].path);
		if (!strstr(err.msg, cases[i].msg))
			fail_msg("case %zu: %s", i, err.msg);
		assert_true(err.whole_set);
		json_decref(a);
		json_decref(b);
		pset_free(s);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_real_objects),	  cmocka_unit_test(test_bad_fields),
		cmocka_unit_test(test_headless_and_none), cmocka_unit_test(test_files),
		cmocka_unit_test(test_set_conflicts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
