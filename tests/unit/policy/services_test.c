/* services_test: Services through the compiler (Snapshot.services, what
 * each caller may call) and the agent's slice (validation of the field,
 * the virtual IP lookup). One small mesh written as registry files:
 * shop/api has two meshed pods (one dual-stack, its two slices merged),
 * one terminating, and one endpoint outside the mesh; web may reach the
 * api pods on 8080 only; nobody is admitted by db; a Service without
 * endpoints; a headless one. */
#include <arpa/inet.h>
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

#include "cinch/v1/config.pb-c.h"
#include "compile.h"
#include "model.h"
#include "pfixture.h"
#include "policy.h"

#define TD "spiffe://cluster.local"

static const char *const REGISTRY =
	"apiVersion: cinch.dev/v1alpha1\nkind: Workload\n"
	"metadata: {name: web, namespace: shop}\n"
	"spec: {serviceAccount: web, addresses: [\"10.1.0.1\"]}\n"
	"---\n"
	"apiVersion: cinch.dev/v1alpha1\nkind: Workload\n"
	"metadata: {name: api-0, namespace: shop, labels: {app: api}}\n"
	"spec: {serviceAccount: api, addresses: [\"10.1.0.2\", \"fd00::2\"]}\n"
	"---\n"
	"apiVersion: cinch.dev/v1alpha1\nkind: Workload\n"
	"metadata: {name: api-1, namespace: shop, labels: {app: api}}\n"
	"spec: {serviceAccount: api, addresses: [\"10.1.0.3\"]}\n"
	"---\n"
	"apiVersion: cinch.dev/v1alpha1\nkind: Workload\n"
	"metadata: {name: db, namespace: shop}\n"
	"spec: {serviceAccount: db, addresses: [\"10.1.0.4\"]}\n"
	"---\n"
	"apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\n"
	"metadata: {name: api-from-web, namespace: shop}\n"
	"spec:\n  selector: {matchLabels: {app: api}}\n  ports: [8080]\n"
	"  from: [{identities: [\"" TD "/ns/shop/sa/web\"]}]\n"
	"---\n"
	"apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\n"
	"metadata: {name: db-nobody, namespace: shop}\n"
	"spec:\n  selector: {workloads: [db]}\n"
	"  from: [{identities: [\"" TD "/ns/other/sa/x\"]}]\n";

static const char *const SERVICES =
	"apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\n"
	"spec:\n  clusterIP: 10.96.0.10\n  clusterIPs: [10.96.0.10, \"fd00:96::a\"]\n"
	"  ports:\n  - {name: http, port: 80, targetPort: http}\n"
	"  - {name: admin, port: 9000}\n  - {name: dns, port: 53, protocol: UDP}\n"
	"---\n"
	"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
	"metadata: {name: api-v4, namespace: shop, labels: {kubernetes.io/service-name: api}}\n"
	"addressType: IPv4\n"
	"endpoints:\n"
	"- {addresses: [10.1.0.50], conditions: {ready: true}}\n"
	"- {addresses: [10.1.0.3], conditions: {ready: false, serving: true, terminating: true}}\n"
	"- {addresses: [10.1.0.2]}\n"
	"ports: [{name: http, port: 8080}, {name: admin, port: 9000}]\n"
	"---\n"
	"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
	"metadata: {name: api-v6, namespace: shop, labels: {kubernetes.io/service-name: api}}\n"
	"addressType: IPv6\n"
	"endpoints: [{addresses: [\"fd00::2\"]}]\n"
	"ports: [{name: http, port: 8080}, {name: admin, port: 9000}]\n"
	"---\n"
	"apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: shop}\n"
	"spec: {clusterIP: 10.96.0.20, ports: [{port: 5432}]}\n"
	"---\n"
	"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
	"metadata: {name: db-1, namespace: shop, labels: {kubernetes.io/service-name: db}}\n"
	"addressType: IPv4\nendpoints: [{addresses: [10.1.0.4]}]\nports: [{port: 5432}]\n"
	"---\n"
	"apiVersion: v1\nkind: Service\nmetadata: {name: empty, namespace: shop}\n"
	"spec: {clusterIP: 10.96.0.30, ports: [{port: 80}]}\n"
	"---\n"
	"apiVersion: v1\nkind: Service\nmetadata: {name: db-h, namespace: shop}\n"
	"spec: {clusterIP: None, ports: [{port: 5432}]}\n";

static int setup(void **state)
{
	if (pfixture_setup(state) < 0)
		return -1;
	pfixture_write("a-registry.yaml", REGISTRY);
	pfixture_write("b-services.yaml", SERVICES);
	return 0;
}

/* The packed snapshot of `self` from the directory. */
static uint8_t *snapshot_of(const char *self, size_t *len)
{
	struct pset *s = pset_new("cluster.local");
	struct pcompiled *c = NULL;
	struct policy_error err;
	uint8_t *buf = NULL;

	assert_non_null(s);
	if (pset_add_path(s, pfixture_dir(), &err) < 0 || pset_finish(s, &err) < 0)
		fail_msg("%s:%d %s: %s", err.file, err.line, err.path, err.msg);
	assert_int_equal(pcompile_new(s, &c), 0);
	const struct pworkload *w = pcompile_find(s, self, NULL, 0);
	assert_non_null(w);
	assert_int_equal(pcompile_snapshot(c, pcompile_index_of(c, w), &buf, len), 0);
	pcompile_free(c);
	pset_free(s);
	return buf;
}

static struct policy_slice *slice_of(const char *self)
{
	size_t len;
	uint8_t *buf = snapshot_of(self, &len);
	Cinch__V1__Snapshot *snap = cinch__v1__snapshot__unpack(NULL, len, buf);
	struct policy_slice *sl = NULL;
	struct policy_error err;

	assert_non_null(snap);
	if (policy_slice_from_snapshot(&sl, snap, &err) < 0)
		fail_msg("%s: %s", err.path, err.msg);
	cinch__v1__snapshot__free_unpacked(snap, NULL);
	free(buf);
	return sl;
}

static struct sockaddr_storage ip(const char *text)
{
	struct sockaddr_storage a = {0};
	if (strchr(text, ':')) {
		a.ss_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, text, &((struct sockaddr_in6 *)&a)->sin6_addr),
				 1);
	} else {
		a.ss_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, text, &((struct sockaddr_in *)&a)->sin_addr),
				 1);
	}
	return a;
}

static void test_web_calls_api(void **state)
{
	(void)state;
	struct policy_slice *sl = slice_of("shop/web");
	struct sockaddr_storage vip = ip("10.96.0.10"), vip6 = ip("fd00:96::a");
	size_t port;

	const struct policy_service *v =
		policy_slice_service(sl, (struct sockaddr *)&vip, 80, &port);
	assert_non_null(v);
	assert_string_equal(v->key, "shop/api");
	assert_int_equal(port, 0);
	/* UDP is not carried: http and admin only */
	assert_int_equal(v->n_ports, 2);
	assert_int_equal(v->ports[1].port, 9000);
	assert_ptr_equal(policy_slice_service(sl, (struct sockaddr *)&vip6, 9000, &port), v);
	assert_int_equal(port, 1);
	assert_non_null(policy_slice_service(sl, (struct sockaddr *)&vip, 81, &port));
	assert_int_equal(port, SIZE_MAX);

	/* endpoints by address; api-0's two slices merged into one */
	assert_int_equal(v->n_eps, 3);
	const struct policy_endpoint *e = &v->eps[0];
	assert_string_equal(e->addr_text, "10.1.0.2");
	assert_int_equal(e->n_addrs, 2);
	assert_int_equal(e->addrs[1].ss_family, AF_INET6);
	assert_string_equal(e->spiffe_id, TD "/ns/shop/sa/api");
	assert_string_equal(e->workload, "shop/api-0");
	assert_true(e->ready && e->serving && !e->terminating);
	/* named target port resolved through the slice; admin (9000) is not
	 * admitted by the api pods' policy: 0 */
	assert_int_equal(e->target_ports[0], 8080);
	assert_int_equal(e->target_ports[1], 0);
	e = &v->eps[1];
	assert_string_equal(e->addr_text, "10.1.0.3");
	assert_true(!e->ready && e->serving && e->terminating);
	/* outside the mesh: every port it serves, no identity */
	e = &v->eps[2];
	assert_string_equal(e->addr_text, "10.1.0.50");
	assert_string_equal(e->spiffe_id, "");
	assert_int_equal(e->target_ports[1], 9000);

	/* db refuses web on every port: not listed, and its virtual IP is
	 * meshed (never plaintext) */
	struct sockaddr_storage db = ip("10.96.0.20"), empty = ip("10.96.0.30");
	assert_null(policy_slice_service(sl, (struct sockaddr *)&db, 5432, &port));
	assert_true(policy_slice_meshed(sl, (struct sockaddr *)&db));
	assert_true(policy_slice_meshed(sl, (struct sockaddr *)&vip6));
	/* no endpoint at all: listed, so the agent says why at once */
	v = policy_slice_service(sl, (struct sockaddr *)&empty, 80, &port);
	assert_non_null(v);
	assert_int_equal(v->n_eps, 0);
	/* headless: nothing (its name resolves to pod addresses) */
	assert_int_equal(policy_slice_n_services(sl), 2);
	policy_slice_unref(sl);
}

/* Equal inputs, equal bytes: the order of the documents does not matter. */
static void test_deterministic(void **state)
{
	(void)state;
	size_t l1, l2;
	uint8_t *a = snapshot_of("shop/web", &l1);
	char path[128];
	/* the same documents, the slices listed before their Services */
	pfixture_path(path, sizeof(path), "b-services.yaml");
	unlink(path);
	const char *sep = strstr(SERVICES, "---\napiVersion: discovery.k8s.io/v1");
	char *swapped = NULL;
	assert_true(asprintf(&swapped, "%s---\n%.*s", sep + 4, (int)(sep - SERVICES), SERVICES) >
		    0);
	pfixture_write("b-services.yaml", swapped);
	uint8_t *b = snapshot_of("shop/web", &l2);
	assert_int_equal(l1, l2);
	assert_memory_equal(a, b, l1);
	pfixture_write("b-services.yaml", SERVICES);
	free(swapped);
	free(a);
	free(b);
}

/* A bad Snapshot.services refuses the whole snapshot, naming the field. */
static void test_slice_refuses(void **state)
{
	(void)state;
	size_t len;
	uint8_t *buf = snapshot_of("shop/web", &len);
	Cinch__V1__Snapshot *snap;
	struct policy_slice *sl = NULL;
	struct policy_error err;
	char *bad_ip = "10.96.0.300", *bad_id = "spiffe://", *dup_vip = "10.96.0.10";
	uint32_t big = 70000;

	for (int i = 0; i < 5; i++) {
		snap = cinch__v1__snapshot__unpack(NULL, len, buf);
		assert_non_null(snap);
		Cinch__V1__Service *v = snap->services[0], *other = snap->services[1];
		Cinch__V1__Endpoint *e = v->endpoints[0];
		/* borrowed pointers put in, restored before freeing */
		char *saved_ip = v->virtual_ips[1], *saved_id = e->spiffe_id,
		     *saved_other = other->virtual_ips[0];
		uint32_t *saved_t = e->target_ports;
		size_t saved_n = e->n_target_ports, saved_np = v->n_ports;
		const char *want;
		switch (i) {
		case 0:
			v->virtual_ips[1] = bad_ip;
			want = "services[0].virtual_ips[1]";
			break;
		case 1:
			e->spiffe_id = bad_id;
			want = "services[0].endpoints[0].spiffe_id";
			break;
		case 2:
			e->n_target_ports = 1;
			want = "services[0].endpoints[0].target_ports";
			break;
		case 3:
			e->target_ports = &big;
			e->n_target_ports = 1;
			v->n_ports = 1;
			want = "services[0].endpoints[0].target_ports";
			break;
		default:
			other->virtual_ips[0] = dup_vip;
			want = "services";
			break;
		}
		assert_int_equal(policy_slice_from_snapshot(&sl, snap, &err), -EINVAL);
		assert_null(sl);
		assert_string_equal(err.path, want);
		v->virtual_ips[1] = saved_ip;
		e->spiffe_id = saved_id;
		e->target_ports = saved_t;
		e->n_target_ports = saved_n;
		v->n_ports = saved_np;
		other->virtual_ips[0] = saved_other;
		cinch__v1__snapshot__free_unpacked(snap, NULL);
	}
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_web_calls_api),
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_slice_refuses),
	};
	return cmocka_run_group_tests(tests, setup, pfixture_teardown);
}
