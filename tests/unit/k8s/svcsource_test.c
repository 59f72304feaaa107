/* svcsource_test: the documents the Service source keeps, from objects in
 * the exact shape an API server lists them (fixtures/services/): the
 * object as sent, less metadata.managedFields, with apiVersion and kind
 * (which list items lack) set; the registry's parser (ksvc) accepts every
 * one of them, and refuses the raw list item (no kind). Objects without a
 * name or namespace, and other kinds, give no document. The list-watch
 * itself (list, watch events, 410) is control.kube_e2e's. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ksvc.h"
#include "svcsource.h"

static json_t *items_of(const char *file)
{
	char path[512];
	json_error_t e;

	snprintf(path, sizeof(path), "%s/%s", FIXTURES, file);
	json_t *list = json_load_file(path, 0, &e);
	assert_non_null(list);
	json_t *items = json_incref(json_object_get(list, "items"));
	json_decref(list);
	assert_true(json_array_size(items) >= 2);
	return items;
}

static void check_kind(const char *file, const char *kind, const char *api_version)
{
	json_t *items = items_of(file), *item;
	struct policy_error err;
	size_t i;

	json_array_foreach(items, i, item)
	{
		assert_null(json_object_get(item, "kind")); /* as the API server lists them */
		assert_non_null(
			json_object_get(json_object_get(item, "metadata"), "managedFields"));
		assert_int_equal(ksvc_check_json(item, &err), -EINVAL);

		json_t *doc = svcsource_document(kind, item);
		assert_non_null(doc);
		assert_string_equal(json_string_value(json_object_get(doc, "kind")), kind);
		assert_string_equal(json_string_value(json_object_get(doc, "apiVersion")),
				    api_version);
		assert_null(json_object_get(json_object_get(doc, "metadata"), "managedFields"));
		/* everything else as sent: the input untouched */
		json_t *want = json_deep_copy(item);
		json_object_del(json_object_get(want, "metadata"), "managedFields");
		json_object_set_new(want, "kind", json_string(kind));
		json_object_set_new(want, "apiVersion", json_string(api_version));
		assert_true(json_equal(doc, want));
		assert_non_null(
			json_object_get(json_object_get(item, "metadata"), "managedFields"));
		assert_int_equal(ksvc_check_json(doc, &err), 0);
		json_decref(want);
		json_decref(doc);
	}
	json_decref(items);
}

static void services(void **state)
{
	check_kind("services_list.json", "Service", "v1");
}

static void endpointslices(void **state)
{
	check_kind("endpointslices_list.json", "EndpointSlice", "discovery.k8s.io/v1");
}

static void refused(void **state)
{
	json_t *items = items_of("services_list.json");
	json_t *svc = json_deep_copy(json_array_get(items, 0));
	struct policy_error err;

	assert_null(svcsource_document("Pod", svc));
	assert_null(svcsource_document("Service", json_null()));
	json_object_del(json_object_get(svc, "metadata"), "namespace");
	assert_null(svcsource_document("Service", svc));
	json_decref(svc);

	/* kept as sent: a bad port is the parser's to refuse, with its path */
	svc = json_deep_copy(json_array_get(items, 0));
	json_t *ports = json_object_get(json_object_get(svc, "spec"), "ports");
	json_integer_set(json_object_get(json_array_get(ports, 0), "port"), 70000);
	json_t *doc = svcsource_document("Service", svc);
	assert_non_null(doc);
	assert_int_equal(ksvc_check_json(doc, &err), -EINVAL);
	assert_string_equal(err.path, "spec.ports[0].port");
	json_decref(doc);
	json_decref(svc);
	json_decref(items);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(services),
		cmocka_unit_test(endpointslices),
		cmocka_unit_test(refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
