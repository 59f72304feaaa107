/* policy_bench: the policy library's two costs.
 *
 *   policy_bench N [SECONDS [guard]]
 * decisions per second of one workload's slice with N inbound rules (each
 * admitting one exact identity on one port; one in ten a namespace, one in
 * ten a wildcard), asked by callers half of whom a rule admits. With
 * "guard", 8 guardrail rules come first (denies of every caller on other
 * ports, denies and an allow of namespaces no caller is in, and last a
 * pass of every caller on the port asked): every decision then reads the
 * every-caller rules, finds the pass, and goes on to the namespace's
 * rules, the most a guardrail costs. Prints "<rules>
 * <decisions/s> <ns/decision> <slice load ms>" (rules: N, without the
 * guardrails').
 *
 *   policy_bench compile WORKLOADS POLICIES DIR
 * writes a policy set of that size to DIR (100 namespaces with Namespace
 * documents and labels; each policy selects one workload by label and
 * admits two identities, one in ten also a namespace, one in ten a
 * wildcard, one in ten the web workloads of the namespaces of one team by
 * namespaceSelector and podSelector; 10 GuardrailPolicies on namespaces
 * by label, denying a team, allowing monitoring on 9100, passing the
 * rest), then parses and validates it,
 * indexes it and builds every workload's snapshot. Prints "<workloads>
 * <policies> <parse ms> <index ms> <snapshots ms> <snapshot bytes> <max RSS
 * MiB>".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/resource.h>

#include "cinch/v1/config.pb-c.h"
#include "compile.h"
#include "model.h"
#include "policy.h"

/* The process's CPU time: the benchmark is single-threaded, so on an idle
 * machine this is the wall clock, and on a shared one it leaves out the
 * time others had the core. */
static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int bench_compile(size_t nw, size_t np, const char *dir)
{
	char path[512];
	size_t per_ns = (nw + 99) / 100;

	snprintf(path, sizeof(path), "%s/set.yaml", dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return 1;
	for (size_t i = 0; i < nw; i++)
		fprintf(f,
			"---\napiVersion: cinch.dev/v1alpha1\nkind: Workload\n"
			"metadata: {name: w%zu, namespace: ns%zu, labels: {app: w%zu}}\n"
			"spec: {serviceAccount: w%zu, addresses: [\"10.%zu.%zu.%zu\"]}\n",
			i % per_ns, i / per_ns, i % per_ns, i % per_ns, (i >> 16) & 255,
			(i >> 8) & 255, i & 255);
	for (size_t i = 0; i < 100; i++)
		fprintf(f,
			"---\napiVersion: v1\nkind: Namespace\n"
			"metadata: {name: ns%zu, labels: {team: t%zu, env: %s}}\n",
			i, i % 10, i % 2 ? "prod" : "dev");
	for (size_t i = 0; i < 10; i++)
		fprintf(f,
			"---\napiVersion: cinch.dev/v1alpha1\nkind: GuardrailPolicy\n"
			"metadata: {name: g%zu}\nspec:\n  priority: %zu\n"
			"  subject: {namespaceSelector: {matchLabels: {team: t%zu}}}\n  rules:\n"
			"    - {action: allow, ports: [9100], from: [{namespaceSelector: "
			"{matchLabels: {kubernetes.io/metadata.name: monitoring}}}]}\n"
			"    - {action: deny, from: [{namespaceSelector: {matchExpressions: "
			"[{key: team, operator: In, values: [t%zu]}]}}]}\n"
			"    - {action: pass}\n",
			i, 10 * i, i, (i + 5) % 10);
	for (size_t i = 0; i < np; i++) {
		size_t ns = i % 100, w = (i / 100) % per_ns;
		fprintf(f,
			"---\napiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\n"
			"metadata: {name: p%zu, namespace: ns%zu}\n"
			"spec:\n  selector: {matchLabels: {app: w%zu}}\n  ports: [8080, "
			"\"9000-9010\"]\n"
			"  from:\n    - identities: [\"spiffe://cluster.local/ns/ns%zu/sa/w%zu\", "
			"\"spiffe://cluster.local/ns/ns%zu/sa/w%zu\"]\n",
			i, ns, w, ns, (w + 1) % per_ns, (ns + 1) % 100, w);
		if (i % 10 == 3)
			fprintf(f, "    - namespaces: [ns%zu]\n", (ns + 7) % 100);
		if (i % 10 == 7)
			fprintf(f, "    - identities: [\"spiffe://cluster.local/ns/ns%zu/sa/*\"]\n",
				(ns + 3) % 100);
		if (i % 10 == 5)
			fprintf(f,
				"    - namespaceSelector: {matchLabels: {team: t%zu}}\n"
				"      podSelector: {matchExpressions: [{key: app, operator: In, "
				"values: [w%zu, w%zu]}]}\n",
				(ns + 1) % 10, w, (w + 1) % per_ns);
	}
	if (fclose(f) != 0)
		return 1;

	struct pset *set = pset_new("cluster.local");
	struct pcompiled *c = NULL;
	struct policy_error err;
	size_t bytes = 0;
	double t0 = now_s();
	if (!set || pset_add_path(set, path, &err) < 0 || pset_finish(set, &err) < 0) {
		fprintf(stderr, "policy_bench: %s:%d: %s: %s\n", err.file, err.line, err.path,
			err.msg);
		return 1;
	}
	double t1 = now_s();
	if (pcompile_new(set, &c) < 0)
		return 1;
	double t2 = now_s();
	for (size_t i = 0; i < set->n_workloads; i++) {
		uint8_t *buf;
		size_t len;
		if (pcompile_snapshot(c, i, &buf, &len) < 0)
			return 1;
		bytes += len;
		free(buf);
	}
	double t3 = now_s();
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("%zu %zu %.0f %.0f %.0f %zu %.1f\n", set->n_workloads, set->n_allow,
	       (t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000, bytes, ru.ru_maxrss / 1024.0);
	pcompile_free(c);
	pset_free(set);
	unlink(path);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "compile"))
		return bench_compile(strtoul(argv[2], NULL, 10), strtoul(argv[3], NULL, 10),
				     argv[4]);
	size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000;
	double secs = argc > 2 ? atof(argv[2]) : 1.0;
	size_t ng = argc > 3 && !strcmp(argv[3], "guard") ? 8 : 0;
	Cinch__V1__Snapshot snap = CINCH__V1__SNAPSHOT__INIT;
	Cinch__V1__Workload w = CINCH__V1__WORKLOAD__INIT;
	Cinch__V1__InboundRule *rules = calloc(n + ng, sizeof(*rules)),
			       **rp = calloc(n + ng, sizeof(*rp));
	Cinch__V1__Source *src = calloc(n + ng, sizeof(*src)), **sp = calloc(n + ng, sizeof(*sp));
	Cinch__V1__PortRange pr = CINCH__V1__PORT_RANGE__INIT, *prp = &pr;
	Cinch__V1__PortRange other = CINCH__V1__PORT_RANGE__INIT, *otherp = &other;
	char **strs = calloc((n + ng) * 2, sizeof(char *));
	enum { N_CALLERS = 4096 };
	char *callers[N_CALLERS];

	if (!rules || !rp || !src || !sp || !strs)
		return 1;
	w.namespace_ = "shop";
	w.name = "api";
	w.spiffe_id = "spiffe://cluster.local/ns/shop/sa/api";
	snap.version = "bench";
	snap.workload = &w;
	pr.first = pr.last = 8080;
	other.first = other.last = 9100;
	/* the guardrails' rules, at the end of the arrays, moved first below */
	for (size_t g = 0; g < ng; g++) {
		size_t i = n + g;
		char buf[64];
		cinch__v1__inbound_rule__init(&rules[i]);
		cinch__v1__source__init(&src[i]);
		if (g < 2 || g == ng - 1) { /* every caller: 9100 twice, 8080 to pass */
			src[i].kind_case = CINCH__V1__SOURCE__KIND_ANY_CALLER;
			src[i].any_caller = 1;
		} else {
			snprintf(buf, sizeof(buf), g == ng - 2 ? "monitoring" : "dev%zu", g);
			src[i].kind_case = CINCH__V1__SOURCE__KIND_NAMESPACE;
			src[i].namespace_ = strs[2 * i] = strdup(buf);
		}
		snprintf(buf, sizeof(buf), "GuardrailPolicy/g#%zu", g);
		rules[i].id = strs[2 * i + 1] = strdup(buf);
		rules[i].guardrail = 1;
		rules[i].action = g == ng - 1   ? CINCH__V1__RULE_ACTION__RULE_ACTION_PASS
				  : g == ng - 2 ? CINCH__V1__RULE_ACTION__RULE_ACTION_ALLOW
						: CINCH__V1__RULE_ACTION__RULE_ACTION_DENY;
		rules[i].n_ports = 1;
		rules[i].ports = g < 2 ? &otherp : &prp;
		rules[i].n_sources = 1;
		sp[i] = &src[i];
		rules[i].sources = &sp[i];
		rp[g] = &rules[i];
	}
	for (size_t i = 0; i < n; i++) {
		char buf[128], id[32];
		cinch__v1__inbound_rule__init(&rules[i]);
		cinch__v1__source__init(&src[i]);
		if (i % 10 == 3) {
			snprintf(buf, sizeof(buf), "team%zu", i);
			src[i].kind_case = CINCH__V1__SOURCE__KIND_NAMESPACE;
			src[i].namespace_ = strs[2 * i] = strdup(buf);
		} else {
			snprintf(buf, sizeof(buf), "spiffe://cluster.local/ns/ns%zu/sa/%s", i,
				 i % 10 == 7 ? "*" : "client");
			src[i].kind_case = CINCH__V1__SOURCE__KIND_IDENTITY;
			src[i].identity = strs[2 * i] = strdup(buf);
		}
		snprintf(id, sizeof(id), "r#%zu", i);
		rules[i].id = strs[2 * i + 1] = strdup(id);
		rules[i].mode = CINCH__V1__RULE_MODE__RULE_MODE_ENFORCE;
		rules[i].n_ports = 1;
		rules[i].ports = &prp;
		rules[i].n_sources = 1;
		sp[i] = &src[i];
		rules[i].sources = &sp[i];
		rp[ng + i] = &rules[i];
	}
	snap.n_inbound = n + ng;
	snap.inbound = rp;
	for (size_t i = 0; i < N_CALLERS; i++) {
		char buf[128];
		size_t r = (i * 7919) % (n ? n : 1);
		if (i % 2) /* nobody admits these */
			snprintf(buf, sizeof(buf), "spiffe://cluster.local/ns/x%zu/sa/stranger", i);
		else if (r % 10 == 3)
			snprintf(buf, sizeof(buf), "spiffe://cluster.local/ns/team%zu/sa/any", r);
		else
			snprintf(buf, sizeof(buf), "spiffe://cluster.local/ns/ns%zu/sa/client", r);
		callers[i] = strdup(buf);
	}

	struct policy_slice *s;
	struct policy_error err;
	double t0 = now_s();
	if (policy_slice_from_snapshot(&s, &snap, &err) < 0) {
		fprintf(stderr, "policy_bench: %s: %s\n", err.path, err.msg);
		return 1;
	}
	double load_ms = (now_s() - t0) * 1000;

	struct policy_decision d;
	unsigned long long count = 0, allowed = 0;
	t0 = now_s();
	double end = t0 + secs, t;
	do {
		for (size_t i = 0; i < N_CALLERS; i++) {
			policy_slice_decide_inbound(s, callers[i], NULL, 8080, &d);
			allowed += d.verdict == POLICY_ALLOW;
		}
		count += N_CALLERS;
	} while ((t = now_s()) < end);
	double el = t - t0;
	/* Half the callers are admitted (when there are rules to admit them). */
	if (n && allowed * 2 != count) {
		fprintf(stderr, "policy_bench: %llu of %llu allowed, expected half\n", allowed,
			count);
		return 1;
	}
	printf("%zu %.0f %.1f %.2f\n", n, count / el, el * 1e9 / count, load_ms);
	policy_slice_unref(s);
	for (size_t i = 0; i < N_CALLERS; i++)
		free(callers[i]);
	for (size_t i = 0; i < 2 * (n + ng); i++)
		free(strs[i]);
	free(strs);
	free(rules);
	free(rp);
	free(src);
	free(sp);
	return 0;
}
