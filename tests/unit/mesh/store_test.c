/* store tests with API documents (what the Kubernetes feeders hand over),
 * no files and no loop: documents of two feeds compile into one
 * generation; a rejected API document is named by its key with the field
 * path and message, and the set goes on with its last accepted version
 * (or without it), so the others' changes still publish; nothing is
 * published until every expected feed delivered; equal inputs give equal
 * versions in two stores (two replicas); MeshPolicy allowPodExclusions as
 * the injector asks for it (namespace over mesh-wide, default no, and
 * kept when only that field changes, which changes no slice). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cinch/v1/config.pb-c.h"
#include "grpcc.h"
#include "store.h"

#define WEB_ID "spiffe://cluster.local/ns/shop/sa/web"

static json_t *workload(const char *name, const char *sa, const char *label, const char *ip)
{
	return json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:{s:s, s:[s]}}", "apiVersion",
			 "cinch.dev/v1alpha1", "kind", "Workload", "metadata", "name", name,
			 "namespace", "shop", "labels", "app", label, "spec", "serviceAccount", sa,
			 "addresses", ip);
}

/* AllowPolicy api-from-web on `port` (70000: invalid). */
static json_t *allow(const char *name, int port)
{
	return json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:{s:{s:s}}, s:[i], s:[{s:[s]}]}}",
			 "apiVersion", "cinch.dev/v1alpha1", "kind", "AllowPolicy", "metadata",
			 "name", name, "namespace", "shop", "spec", "selector", "matchLabels",
			 "app", "api", "ports", port, "from", "identities", WEB_ID);
}

static json_t *pods(void)
{
	return json_pack("[o, o]", workload("web-1", "web", "web", "10.1.0.1"),
			 workload("api-1", "api", "api", "10.1.0.2"));
}

struct verdicts {
	int calls;
	json_t *last;
};

static void on_verdict(void *arg, const json_t *rejected)
{
	struct verdicts *v = arg;
	v->calls++;
	json_decref(v->last);
	v->last = json_deep_copy(rejected);
}

struct sink {
	int sends;
};

static int on_send(void *arg, const uint8_t *snap, size_t len)
{
	(void)snap;
	(void)len;
	((struct sink *)arg)->sends++;
	return 0;
}

static void on_gone(void *arg)
{
	(void)arg;
}

static void set(struct store *st, enum store_feed f, json_t *docs)
{
	assert_non_null(docs);
	store_set_docs(st, f, docs);
	json_decref(docs);
}

static void test_feeds_and_quarantine(void **state)
{
	struct hub *hub;
	struct store *st;
	struct hub_watch *w;
	struct verdicts v = {0};
	struct sink sink = {0};
	struct policy_error err;
	const char *why;
	char v1[STORE_VERSION_LEN + 1], v2[STORE_VERSION_LEN + 1];

	assert_int_equal(hub_new(&hub), 0);
	assert_int_equal(store_new("cluster.local", hub, &st), 0);
	store_set_verdict_cb(st, on_verdict, &v);
	store_expect(st, STORE_FEED_PODS);
	store_expect(st, STORE_FEED_POLICIES);

	/* Pods alone: validated, not published (the policies are not listed). */
	set(st, STORE_FEED_PODS, pods());
	assert_int_equal(store_apply(st, &err), 0);
	assert_string_equal(store_version(st), "");
	assert_int_equal(v.calls, 0);

	set(st, STORE_FEED_POLICIES, json_pack("[o]", allow("api-from-web", 8080)));
	assert_int_equal(store_apply(st, &err), 0);
	snprintf(v1, sizeof(v1), "%s", store_version(st));
	assert_int_equal(strlen(v1), STORE_VERSION_LEN);
	assert_int_equal(v.calls, 1);
	assert_int_equal(json_object_size(v.last), 0);
	assert_int_equal(hub_watch_open(hub, WEB_ID, "10.1.0.1", "shop/web-1", "", on_send, on_gone,
					&sink, &w, &why),
			 GRPC_OK);
	assert_int_equal(sink.sends, 1);

	/* The policy turns invalid: its last accepted version stays, nothing
	 * changes, the verdict names it with the field path. */
	set(st, STORE_FEED_POLICIES, json_pack("[o]", allow("api-from-web", 70000)));
	assert_int_equal(store_apply(st, &err), 0);
	assert_string_equal(store_version(st), v1);
	assert_int_equal(sink.sends, 1);
	assert_int_equal(v.calls, 2);
	const char *msg =
		json_string_value(json_object_get(v.last, "AllowPolicy/shop/api-from-web"));
	assert_non_null(msg);
	assert_non_null(strstr(msg, "spec.ports[0]"));

	/* A new pod meanwhile still goes out (the bad object holds nobody
	 * back), with the old policy. */
	json_t *p = pods();
	json_array_append_new(p, workload("web-2", "web", "web", "10.1.0.3"));
	set(st, STORE_FEED_PODS, p);
	assert_int_equal(store_apply(st, &err), 0);
	assert_string_not_equal(store_version(st), v1);
	snprintf(v2, sizeof(v2), "%s", store_version(st));
	assert_non_null(json_object_get(v.last, "AllowPolicy/shop/api-from-web"));
	/* ... and web's agent gets it: the meshed set of its slice grew */
	assert_int_equal(sink.sends, 2);

	/* A new invalid object that never was accepted is left out. */
	set(st, STORE_FEED_POLICIES,
	    json_pack("[o, o]", allow("api-from-web", 70000), allow("new-bad", 0)));
	assert_int_equal(store_apply(st, &err), 0);
	assert_string_equal(store_version(st), v2);
	assert_int_equal(json_object_size(v.last), 2);

	/* Fixed: accepted, published, verdict empty. */
	set(st, STORE_FEED_POLICIES, json_pack("[o]", allow("api-from-web", 9090)));
	assert_int_equal(store_apply(st, &err), 0);
	assert_string_not_equal(store_version(st), v2);
	assert_int_equal(json_object_size(v.last), 0);
	assert_int_equal(sink.sends, 3);

	/* A pod that is invalid by itself (no address is not a Workload):
	 * left out, the others stay. */
	p = pods();
	json_array_append_new(p, json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:[s]}}", "apiVersion",
					   "cinch.dev/v1alpha1", "kind", "Workload", "metadata",
					   "name", "odd", "namespace", "shop", "spec",
					   "serviceAccount", "odd", "addresses", "not-an-ip"));
	set(st, STORE_FEED_PODS, p);
	assert_int_equal(store_apply(st, &err), 0);
	assert_non_null(json_object_get(v.last, "Workload/shop/odd"));

	/* A document without a name rejects the build: nothing to name. */
	set(st, STORE_FEED_POLICIES, json_pack("[{s:s}]", "kind", "AllowPolicy"));
	snprintf(v1, sizeof(v1), "%s", store_version(st));
	assert_int_equal(store_apply(st, &err), -EINVAL);
	assert_string_equal(store_version(st), v1);
	assert_true(err.msg[0] != '\0');

	hub_watch_close(w);
	store_free(st);
	store_free(NULL);
	hub_free(hub);
	json_decref(v.last);
}

/* Two stores (two replicas) fed the same documents: the same version. */
static void test_replicas_agree(void **state)
{
	struct hub *h[2];
	struct store *st[2];

	for (int i = 0; i < 2; i++) {
		assert_int_equal(hub_new(&h[i]), 0);
		assert_int_equal(store_new("cluster.local", h[i], &st[i]), 0);
		set(st[i], STORE_FEED_PODS, pods());
		set(st[i], STORE_FEED_POLICIES, json_pack("[o]", allow("a", 8080)));
		assert_int_equal(store_apply(st[i], NULL), 0);
	}
	assert_string_equal(store_version(st[0]), store_version(st[1]));
	assert_int_equal(strlen(store_version(st[0])), STORE_VERSION_LEN);
	for (int i = 0; i < 2; i++) {
		store_free(st[i]);
		hub_free(h[i]);
	}
}

static json_t *mesh(const char *ns, int allow)
{
	return json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:b}}", "apiVersion", "cinch.dev/v1alpha1",
			 "kind", "MeshPolicy", "metadata", "name", "m", "namespace", ns, "spec",
			 "allowPodExclusions", allow);
}

static void test_pod_exclusions(void **state)
{
	struct hub *h;
	struct store *st;

	assert_int_equal(hub_new(&h), 0);
	assert_int_equal(store_new("cluster.local", h, &st), 0);
	assert_int_equal(store_pod_exclusions(st, "shop"), 0); /* no generation yet */
	set(st, STORE_FEED_PODS, pods());
	set(st, STORE_FEED_POLICIES, json_pack("[o]", allow("a", 8080)));
	assert_int_equal(store_apply(st, NULL), 0);
	assert_int_equal(store_pod_exclusions(st, "shop"), 0); /* no MeshPolicy: no */
	set(st, STORE_FEED_POLICIES,
	    json_pack("[o, o]", allow("a", 8080), mesh("cinch-system", 1)));
	assert_int_equal(store_apply(st, NULL), 0);
	assert_int_equal(store_pod_exclusions(st, "shop"), 1);
	assert_int_equal(store_pod_exclusions(st, "other"), 1);
	set(st, STORE_FEED_POLICIES,
	    json_pack("[o, o, o]", allow("a", 8080), mesh("cinch-system", 1), mesh("shop", 0)));
	assert_int_equal(store_apply(st, NULL), 0);
	assert_int_equal(store_pod_exclusions(st, "shop"), 0);
	assert_int_equal(store_pod_exclusions(st, "other"), 1);
	store_free(st);
	hub_free(h);
}

/* The Services feed (v1 Service + discovery.k8s.io/v1 EndpointSlice as the
 * API sends them): web's snapshot carries the Service; a bad one is kept
 * at its last accepted version, named with its field path. */
struct svc_sink {
	int sends;
	size_t n_services, n_endpoints;
};

static int on_svc_send(void *arg, const uint8_t *snap, size_t len)
{
	struct svc_sink *k = arg;
	Cinch__V1__Snapshot *s = cinch__v1__snapshot__unpack(NULL, len, snap);
	assert_non_null(s);
	k->sends++;
	k->n_services = s->n_services;
	k->n_endpoints = s->n_services ? s->services[0]->n_endpoints : 0;
	cinch__v1__snapshot__free_unpacked(s, NULL);
	return 0;
}

static json_t *service(int port)
{
	return json_pack("{s:s, s:s, s:{s:s, s:s, s:s}, s:{s:s, s:[{s:s, s:i, s:s}]}}",
			 "apiVersion", "v1", "kind", "Service", "metadata", "name", "api",
			 "namespace", "shop", "resourceVersion", "12", "spec", "clusterIP",
			 "10.96.0.10", "ports", "name", "http", "port", port, "targetPort", "http");
}

static json_t *endpoint_slice(void)
{
	return json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:s, s:[{s:[s], s:{s:b}}],"
			 " s:[{s:s, s:i}]}",
			 "apiVersion", "discovery.k8s.io/v1", "kind", "EndpointSlice", "metadata",
			 "name", "api-x", "namespace", "shop", "labels",
			 "kubernetes.io/service-name", "api", "addressType", "IPv4", "endpoints",
			 "addresses", "10.1.0.2", "conditions", "ready", 1, "ports", "name", "http",
			 "port", 8080);
}

static void test_services_feed(void **state)
{
	struct hub *hub;
	struct store *st;
	struct hub_watch *w;
	struct verdicts v = {0};
	struct svc_sink k = {0};
	struct policy_error err;
	const char *why;
	(void)state;

	assert_int_equal(hub_new(&hub), 0);
	assert_int_equal(store_new("cluster.local", hub, &st), 0);
	store_set_verdict_cb(st, on_verdict, &v);
	set(st, STORE_FEED_PODS, pods());
	set(st, STORE_FEED_POLICIES, json_pack("[o]", allow("api-from-web", 8080)));
	set(st, STORE_FEED_SERVICES, json_pack("[o, o]", service(80), endpoint_slice()));
	assert_int_equal(store_apply(st, &err), 0);
	assert_int_equal(hub_watch_open(hub, WEB_ID, "10.1.0.1", "shop/web-1", "", on_svc_send,
					on_gone, &k, &w, &why),
			 GRPC_OK);
	assert_int_equal(k.sends, 1);
	assert_int_equal(k.n_services, 1);
	assert_int_equal(k.n_endpoints, 1);

	/* port 0: refused with its path, the accepted version stays */
	set(st, STORE_FEED_SERVICES, json_pack("[o, o]", service(0), endpoint_slice()));
	assert_int_equal(store_apply(st, &err), 0);
	const char *msg = json_string_value(json_object_get(v.last, "Service/shop/api"));
	assert_non_null(msg);
	assert_non_null(strstr(msg, "spec.ports[0].port"));
	assert_int_equal(k.sends, 1);
	assert_int_equal(k.n_services, 1);

	/* the Service deleted: web's next snapshot has none */
	set(st, STORE_FEED_SERVICES, json_pack("[o]", endpoint_slice()));
	assert_int_equal(store_apply(st, &err), 0);
	assert_int_equal(k.sends, 2);
	assert_int_equal(k.n_services, 0);
	hub_watch_close(w);
	store_free(st);
	hub_free(hub);
	json_decref(v.last);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_feeds_and_quarantine),
		cmocka_unit_test(test_services_feed),
		cmocka_unit_test(test_replicas_agree),
		cmocka_unit_test(test_pod_exclusions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
