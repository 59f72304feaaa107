/* services_bench: what N Services cost the control plane and an agent
 * ("## Services" in docs/benchmarks.md). One YAML file in DIR: 100 api
 * pods and a caller (web), one AllowPolicy admitting web to the pods on
 * 8080, and N Services (ClusterIP 10.96.x.y, port 80 -> "http") each with
 * an EndpointSlice of two of the pods (named port http = 8080). Measured:
 * parse + validate, the index (pcompile_new), web's snapshot (every
 * Service is one web may call), all 101 snapshots, the snapshot's bytes,
 * the agent's load of it (unpack + policy_slice_from_snapshot) with the
 * heap bytes it holds afterwards (mallinfo2), and a VIP lookup.
 *   services_bench N DIR
 * prints: <N> <parse ms> <index ms> <web snapshot ms> <all snapshots ms>
 *         <snapshot bytes> <agent load ms> <agent heap bytes> <lookup ns> */
#include <arpa/inet.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cinch/v1/config.pb-c.h"
#include "compile.h"
#include "model.h"
#include "policy.h"

#define PODS 100

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void write_set(const char *path, int n)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		perror(path);
		exit(2);
	}
	fprintf(f, "apiVersion: cinch.dev/v1alpha1\nkind: Workload\n"
		   "metadata: {name: web, namespace: shop}\n"
		   "spec: {serviceAccount: web, addresses: [\"10.1.0.1\"]}\n");
	for (int p = 0; p < PODS; p++)
		fprintf(f,
			"---\napiVersion: cinch.dev/v1alpha1\nkind: Workload\n"
			"metadata: {name: api-%d, namespace: shop, labels: {app: api}}\n"
			"spec: {serviceAccount: api, addresses: [\"10.1.1.%d\"]}\n",
			p, p + 1);
	fprintf(f, "---\napiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\n"
		   "metadata: {name: api-from-web, namespace: shop}\n"
		   "spec:\n  selector: {matchLabels: {app: api}}\n  ports: [8080]\n"
		   "  from: [{identities: [\"spiffe://cluster.local/ns/shop/sa/web\"]}]\n");
	for (int i = 0; i < n; i++)
		fprintf(f,
			"---\napiVersion: v1\nkind: Service\nmetadata: {name: s%d, namespace: shop}\n"
			"spec: {clusterIP: 10.96.%d.%d, ports: [{name: http, port: 80, "
			"targetPort: http}]}\n"
			"---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
			"metadata: {name: s%d-x, namespace: shop, labels: "
			"{kubernetes.io/service-name: s%d}}\n"
			"addressType: IPv4\nendpoints: [{addresses: [10.1.1.%d]}, "
			"{addresses: [10.1.1.%d], conditions: {ready: true}}]\n"
			"ports: [{name: http, port: 8080}]\n",
			i, i / 250, i % 250 + 1, i, i, i % PODS + 1, (i + 1) % PODS + 1);
	fclose(f);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: services_bench N DIR\n");
		return 2;
	}
	int n = atoi(argv[1]);
	char path[512];
	snprintf(path, sizeof(path), "%s/set.yaml", argv[2]);
	write_set(path, n);

	struct pset *s = pset_new("cluster.local");
	struct policy_error err;
	double t0 = now_s();
	if (!s || pset_add_path(s, path, &err) < 0 || pset_finish(s, &err) < 0) {
		fprintf(stderr, "%s:%d %s: %s\n", err.file, err.line, err.path, err.msg);
		return 1;
	}
	double t1 = now_s();
	struct pcompiled *c = NULL;
	if (pcompile_new(s, &c) < 0)
		return 1;
	double t2 = now_s();
	uint8_t *buf = NULL;
	size_t len = 0;
	if (pcompile_snapshot(c, 0, &buf, &len) < 0) /* web: the first workload */
		return 1;
	double t3 = now_s();
	for (size_t w = 0; w < s->n_workloads; w++) {
		uint8_t *b;
		size_t l;
		if (pcompile_snapshot(c, w, &b, &l) < 0)
			return 1;
		free(b);
	}
	double t4 = now_s();
	pcompile_free(c);
	pset_free(s);

	/* the agent: unpack and load, and what it holds afterwards */
	struct mallinfo2 m0 = mallinfo2();
	double t5 = now_s();
	Cinch__V1__Snapshot *snap = cinch__v1__snapshot__unpack(NULL, len, buf);
	struct policy_slice *sl = NULL;
	if (!snap || policy_slice_from_snapshot(&sl, snap, &err) < 0) {
		fprintf(stderr, "%s: %s\n", err.path, err.msg);
		return 1;
	}
	cinch__v1__snapshot__free_unpacked(snap, NULL);
	double t6 = now_s();
	struct mallinfo2 m1 = mallinfo2();
	if (policy_slice_n_services(sl) != (size_t)n) {
		fprintf(stderr, "web may call %zu Services, not %d\n", policy_slice_n_services(sl), n);
		return 1;
	}
	/* VIP lookups, cycling through every Service */
	struct sockaddr_in a = {.sin_family = AF_INET};
	size_t port, found = 0;
	int iters = 2000000;
	double t7 = now_s();
	for (int i = 0; i < iters; i++) {
		int k = i % n;
		a.sin_addr.s_addr = htonl((10u << 24) | (96u << 16) | ((unsigned)(k / 250) << 8) |
					  (unsigned)(k % 250 + 1));
		found += policy_slice_service(sl, (struct sockaddr *)&a, 80, &port) != NULL;
	}
	double t8 = now_s();
	if (found != (size_t)iters)
		return 1;
	printf("%d %.1f %.1f %.2f %.1f %zu %.2f %zu %.0f\n", n, 1e3 * (t1 - t0), 1e3 * (t2 - t1),
	       1e3 * (t3 - t2), 1e3 * (t4 - t3), len, 1e3 * (t6 - t5), m1.uordblks - m0.uordblks,
	       1e9 * (t8 - t7) / iters);
	policy_slice_unref(sl);
	free(buf);
	return 0;
}
