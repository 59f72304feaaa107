/* policy_test: the policy library through its public API (policy.h):
 * decisions table-driven over one mesh (every field and the evaluation
 * order), parser and validation errors each checked for its file, line,
 * column, field path and message, whole-set rejection, and snapshots
 * (what the control plane streams) giving the same decisions. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "cinch/v1/config.pb-c.h"
#include "compile.h"
#include "model.h"
#include "pfixture.h"
#include "policy.h"

#define TD_NAME "cluster.local"
#define TD	"spiffe://" TD_NAME

static const char *const WORKLOADS =
	"apiVersion: cinch.dev/v1alpha1\nkind: Workload\n"
	"metadata: {name: web, namespace: shop, labels: {app: web}}\n"
	"spec: {serviceAccount: web, addresses: [\"10.1.0.1\"]}\n"
	"---\n"
	"apiVersion: cinch.dev/v1alpha1\nkind: Workload\n"
	"metadata: {name: api, namespace: shop, labels: {app: api, tier: backend}}\n"
	"spec: {serviceAccount: api, addresses: [\"10.1.0.2\", \"fd00::2\"]}\n"
	"---\n"
	"apiVersion: cinch.dev/v1alpha1\nkind: Workload\n"
	"metadata: {name: db, namespace: shop}\n"
	"spec: {serviceAccount: db, addresses: [\"10.1.0.3\"]}\n"
	"---\n"
	"apiVersion: cinch.dev/v1alpha1\nkind: Workload\n"
	"metadata: {name: legacy, namespace: shop}\n"
	"spec: {serviceAccount: legacy, addresses: [\"10.1.0.4\"]}\n"
	"---\n"
	"apiVersion: cinch.dev/v1alpha1\nkind: Workload\n"
	"metadata: {name: batch, namespace: jobs}\n"
	"spec: {serviceAccount: batch, addresses: [\"10.1.0.9\"]}\n";

static const char *const POLICY =
	"# the shop's rules\n"
	"apiVersion: cinch.dev/v1alpha1\n"
	"kind: AllowPolicy\n"
	"metadata: {name: api-from-web, namespace: shop}\n"
	"spec:\n"
	"  selector: {matchLabels: {app: api}}\n"
	"  ports: [8080, \"9000-9001\"]\n"
	"  from:\n"
	"    - identities: [\"" TD "/ns/shop/sa/web\"]\n"
	"    - namespaces: [jobs]\n"
	"---\n"
	"apiVersion: cinch.dev/v1alpha1\n"
	"kind: AllowPolicy\n"
	"metadata: {name: api-aa-shop, namespace: shop}\n"
	"spec:\n"
	"  selector: {workloads: [api]}\n"
	"  ports: [9001]\n"
	"  from: [{namespaces: [shop]}]\n"
	"---\n"
	"apiVersion: cinch.dev/v1alpha1\n"
	"kind: AllowPolicy\n"
	"metadata: {name: api-plain, namespace: shop}\n"
	"spec:\n"
	"  selector: {workloads: [api]}\n"
	"  ports: [8081]\n"
	"  from: [{unauthenticated: {ipBlocks: [\"192.168.0.0/16\", \"fd99::/16\"]}}]\n"
	"---\n"
	"apiVersion: cinch.dev/v1alpha1\n"
	"kind: AllowPolicy\n"
	"metadata: {name: db-from-shop, namespace: shop}\n"
	"spec:\n"
	"  selector: {workloads: [db]}\n"
	"  ports: [5432]\n"
	"  from: [{identities: [\"" TD "/ns/shop/sa/*\"]}]\n"
	"---\n"
	"apiVersion: cinch.dev/v1alpha1\n"
	"kind: AllowPolicy\n"
	"metadata: {name: legacy-trial, namespace: shop}\n"
	"spec:\n"
	"  selector: {workloads: [legacy]}\n"
	"  mode: audit\n"
	"  from: [{identities: [\"" TD "/ns/shop/sa/web\"]}]\n"
	"---\n"
	"apiVersion: cinch.dev/v1alpha1\n"
	"kind: MeshPolicy\n"
	"metadata: {name: shop, namespace: shop}\n"
	"spec: {mtls: PERMISSIVE, allowPodExclusions: false}\n"
	"---\n"
	"apiVersion: cinch.dev/v1alpha1\n"
	"kind: GuardrailPolicy\n"
	"metadata: {name: shop-may-be-permissive}\n"
	"spec:\n"
	"  priority: 0\n"
	"  subject: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: shop}}}\n"
	"  allowLoosening: [mtls]\n"
	"---\n"
	"apiVersion: cinch.dev/v1alpha1\n"
	"kind: EgressPolicy\n"
	"metadata: {name: api-out, namespace: shop}\n"
	"spec:\n"
	"  selector: {matchLabels: {tier: backend}}\n"
	"  to: [{cidrs: [\"203.0.113.0/24\"], ports: [443]}]\n";

static int setup(void **state)
{
	char p[128];
	if (pfixture_setup(state) < 0)
		return -1;
	pfixture_path(p, sizeof(p), "policy");
	mkdir(p, 0700);
	pfixture_write("policy/shop.yaml", POLICY);
	pfixture_write("workloads.yaml", WORKLOADS);
	return 0;
}

static struct policy_slice *load(const char *self)
{
	char p[128], w[128];
	struct policy_slice *s = NULL;
	struct policy_error err;
	pfixture_path(p, sizeof(p), "policy");
	pfixture_path(w, sizeof(w), "workloads.yaml");
	int rc = policy_slice_load(&s, TD_NAME, p, w, self, NULL, 0, &err);
	if (rc != 0)
		fail_msg("load %s: %s:%d:%d: %s: %s", self, err.file, err.line, err.column,
			 err.path, err.msg);
	return s;
}

struct inbound_case {
	const char *self, *caller, *src; /* caller NULL: plaintext from src */
	uint16_t port;
	enum policy_verdict verdict;
	const char *rule; /* NULL: none */
	const char *reason_part;
};

static void test_inbound_table(void **state)
{
	static const struct inbound_case cases[] = {
		{"shop/api", TD "/ns/shop/sa/web", NULL, 8080, POLICY_ALLOW, "shop/api-from-web#0",
		 "allowed"},
		/* evaluation order: api-aa-shop sorts first and admits web on 9001 */
		{"shop/api", TD "/ns/shop/sa/web", NULL, 9001, POLICY_ALLOW, "shop/api-aa-shop#0",
		 "allowed"},
		{"shop/api", TD "/ns/shop/sa/web", NULL, 9000, POLICY_ALLOW, "shop/api-from-web#0",
		 "allowed"},
		{"shop/api", TD "/ns/shop/sa/db", NULL, 9001, POLICY_ALLOW, "shop/api-aa-shop#0",
		 "allowed"},
		{"shop/api", TD "/ns/shop/sa/db", NULL, 9000, POLICY_DENY, NULL, "no rule"},
		{"shop/api", TD "/ns/shop/sa/web", NULL, 9002, POLICY_DENY, NULL,
		 "no rule allows this identity"},
		{"shop/api", TD "/ns/jobs/sa/batch", NULL, 8080, POLICY_ALLOW,
		 "shop/api-from-web#1", "allowed"},
		{"shop/api", TD "/ns/jobs-x/sa/batch", NULL, 8080, POLICY_DENY, NULL, "no rule"},
		/* issue #19: a namespace admits its workload identities only */
		{"shop/api", TD "/ns/jobs/anything", NULL, 8080, POLICY_DENY, NULL, "no rule"},
		{"shop/api", TD "/ns/jobs/sa/batch/x", NULL, 8080, POLICY_DENY, NULL, "no rule"},
		{"shop/api", TD "/ns/jobs/x/batch", NULL, 8080, POLICY_DENY, NULL, "no rule"},
		{"shop/api", TD "/ns/jobs/sa", NULL, 8080, POLICY_DENY, NULL, "no rule"},
		/* not a SPIFFE ID: no identity rule admits it */
		{"shop/api", TD "/ns/jobs/sa/../batch", NULL, 8080, POLICY_DENY, NULL, "no rule"},
		{"shop/api", TD "/ns/jobs/sa/a b", NULL, 8080, POLICY_DENY, NULL, "no rule"},
		{"shop/api", "spiffe://other.td/ns/jobs/sa/batch", NULL, 8080, POLICY_DENY, NULL,
		 "no rule"},
		{"shop/api", TD "/ns/shop/sa/db", NULL, 8080, POLICY_DENY, NULL, "no rule"},
		/* identity callers never match unauthenticated rules */
		{"shop/api", TD "/ns/shop/sa/web", "192.168.1.5", 8081, POLICY_DENY, NULL,
		 "no rule"},
		/* PERMISSIVE in shop: plaintext decided by address */
		{"shop/api", NULL, "192.168.1.5", 8081, POLICY_ALLOW, "shop/api-plain#0",
		 "unauthenticated"},
		{"shop/api", NULL, "fd99::1", 8081, POLICY_ALLOW, "shop/api-plain#0",
		 "unauthenticated"},
		{"shop/api", NULL, "10.9.9.9", 8081, POLICY_DENY, NULL, "no unauthenticated rule"},
		{"shop/api", NULL, "192.168.1.5", 8080, POLICY_DENY, NULL,
		 "no unauthenticated rule"},
		/* wildcard: one whole last segment */
		{"shop/db", TD "/ns/shop/sa/api", NULL, 5432, POLICY_ALLOW, "shop/db-from-shop#0",
		 "allowed"},
		{"shop/db", TD "/ns/shop/sa/api/x", NULL, 5432, POLICY_DENY, NULL, "no rule"},
		{"shop/db", TD "/ns/shop/api", NULL, 5432, POLICY_DENY, NULL, "no rule"},
		{"shop/db", TD "/ns/shop/sa/", NULL, 5432, POLICY_DENY, NULL, "no rule"},
		{"shop/db", TD "/ns/jobs/sa/batch", NULL, 5432, POLICY_DENY, NULL, "no rule"},
		/* audit-only: would-be denials are allowed and flagged */
		{"shop/legacy", TD "/ns/shop/sa/web", NULL, 22, POLICY_ALLOW, "shop/legacy-trial#0",
		 "allowed"},
		{"shop/legacy", TD "/ns/shop/sa/db", NULL, 22, POLICY_AUDIT_DENY, NULL,
		 "audit-mode"},
		/* no policy selects web: the default action (deny) */
		{"shop/web", TD "/ns/shop/sa/api", NULL, 80, POLICY_DENY, NULL,
		 "default action deny"},
		/* jobs is STRICT (mesh default): plaintext refused first */
		{"jobs/batch", NULL, "192.168.1.5", 80, POLICY_DENY, NULL, "STRICT"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct inbound_case *c = &cases[i];
		struct policy_slice *s = load(c->self);
		struct sockaddr_storage src = pfixture_addr(c->src ? c->src : "10.0.0.1");
		struct policy_decision d;
		policy_slice_decide_inbound(s, c->caller, (struct sockaddr *)&src, c->port, &d);
		if (d.verdict != c->verdict ||
		    (c->rule ? !d.rule || strcmp(d.rule, c->rule) : !!d.rule) ||
		    !strstr(d.reason, c->reason_part))
			fail_msg("case %zu (%s <- %s %s:%u): %s %s \"%s\"", i, c->self,
				 c->caller ? c->caller : "plaintext", c->src ? c->src : "", c->port,
				 policy_verdict_name(d.verdict), d.rule ? d.rule : "-", d.reason);
		policy_slice_unref(s);
	}
}

static void test_outbound(void **state)
{
	struct policy_slice *s = load("shop/api");
	struct policy_decision d;
	struct sockaddr_storage a;
	const char *id;

	assert_string_equal(policy_slice_workload(s), "shop/api");
	assert_string_equal(policy_slice_spiffe_id(s), TD "/ns/shop/sa/api");
	assert_int_equal(policy_slice_mtls(s), POLICY_MTLS_PERMISSIVE);
	/* db lets every shop identity in, on 5432 only */
	a = pfixture_addr("10.1.0.3");
	id = policy_slice_peer(s, (struct sockaddr *)&a, 5432, &d);
	assert_string_equal(id, TD "/ns/shop/sa/db");
	assert_int_equal(d.verdict, POLICY_ALLOW);
	id = policy_slice_peer(s, (struct sockaddr *)&a, 5433, &d);
	assert_string_equal(id, TD "/ns/shop/sa/db");
	assert_int_equal(d.verdict, POLICY_DENY);
	/* web admits nobody (selected by nothing, default deny): not a peer
	 * of api, so its address goes the egress way, where nothing allows it */
	a = pfixture_addr("10.1.0.1");
	assert_null(policy_slice_peer(s, (struct sockaddr *)&a, 80, &d));
	policy_slice_decide_egress(s, (struct sockaddr *)&a, 80, &d);
	assert_int_equal(d.verdict, POLICY_DENY);
	/* legacy is audit-only: not refused on the client side */
	a = pfixture_addr("10.1.0.4");
	policy_slice_peer(s, (struct sockaddr *)&a, 1, &d);
	assert_int_equal(d.verdict, POLICY_ALLOW);
	/* its own IPv6 address is meshed too */
	a = pfixture_addr("fd00::2");
	assert_string_equal(policy_slice_peer(s, (struct sockaddr *)&a, 8080, &d),
			    TD "/ns/shop/sa/api");
	/* not meshed */
	a = pfixture_addr("8.8.8.8");
	assert_null(policy_slice_peer(s, (struct sockaddr *)&a, 53, &d));
	/* egress */
	a = pfixture_addr("203.0.113.7");
	policy_slice_decide_egress(s, (struct sockaddr *)&a, 443, &d);
	assert_int_equal(d.verdict, POLICY_ALLOW);
	assert_string_equal(d.rule, "shop/api-out#0");
	policy_slice_decide_egress(s, (struct sockaddr *)&a, 80, &d);
	assert_int_equal(d.verdict, POLICY_DENY);
	a = pfixture_addr("198.51.100.1");
	policy_slice_decide_egress(s, (struct sockaddr *)&a, 443, &d);
	assert_int_equal(d.verdict, POLICY_DENY);
	assert_null(d.rule);
	/* a workload no EgressPolicy selects may open nothing outside */
	policy_slice_unref(s);
	s = load("shop/web");
	a = pfixture_addr("203.0.113.7");
	policy_slice_decide_egress(s, (struct sockaddr *)&a, 443, &d);
	assert_int_equal(d.verdict, POLICY_DENY);
	policy_slice_unref(s);
}

static void test_self_by_address_and_version(void **state)
{
	char p[128], w[128];
	struct policy_slice *s = NULL, *s2 = NULL;
	struct policy_error err;
	struct sockaddr_storage addrs[2] = {pfixture_addr("127.0.0.1"), pfixture_addr("10.1.0.2")};

	pfixture_path(p, sizeof(p), "policy");
	pfixture_path(w, sizeof(w), "workloads.yaml");
	assert_int_equal(policy_slice_load(&s, TD_NAME, p, w, NULL, addrs, 2, &err), 0);
	assert_string_equal(policy_slice_workload(s), "shop/api");
	s2 = load("shop/api");
	assert_string_equal(policy_slice_version(s), policy_slice_version(s2));
	assert_int_equal(strlen(policy_slice_version(s)), 16);
	policy_slice_unref(s2);
	s2 = load("shop/db");
	assert_string_not_equal(policy_slice_version(s), policy_slice_version(s2));
	policy_slice_unref(s2);
	/* references keep a slice alive */
	policy_slice_ref(s);
	policy_slice_unref(s);
	assert_string_equal(policy_slice_workload(s), "shop/api");
	policy_slice_unref(s);
	policy_slice_unref(NULL);
	/* an address nobody owns */
	struct sockaddr_storage none = pfixture_addr("10.77.0.1");
	assert_int_equal(policy_slice_load(&s, TD_NAME, p, w, NULL, &none, 1, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "addresses"));
	assert_int_equal(policy_slice_load(&s, TD_NAME, p, w, "shop/nope", NULL, 0, &err), -EINVAL);
}

/* One bad document: the whole load fails, with this place and message. */
struct bad_case {
	const char *doc;
	int line, column;
	const char *path, *msg_part;
};

static void test_errors(void **state)
{
	static const struct bad_case cases[] = {
		{"apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\nmetadata: {name: a, "
		 "namespace: shop}\n"
		 "spec:\n  selector: {workloads: [api]}\n  ports: [70000]\n  from: [{namespaces: "
		 "[shop]}]\n",
		 6, 11, "spec.ports[0]", "not a port"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\nmetadata: {name: a, "
		 "namespace: shop}\n"
		 "spec:\n  selector: {workloads: [api]}\n  form: [{namespaces: [shop]}]\n",
		 6, 3, "spec.form", "unknown field"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\nmetadata: {name: a, "
		 "namespace: shop}\n"
		 "spec:\n  selector: {workloads: [api]}\n  from:\n    - identities: "
		 "[\"https://x/ns/a/sa/b\"]\n",
		 7, 20, "spec.from[0].identities[0]", "not a SPIFFE ID"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\nmetadata: {name: a, "
		 "namespace: shop}\n"
		 "spec:\n  selector: {workloads: [api]}\n  from:\n    - identities: [\"" TD
		 "/ns/a/sa/b\"]\n"
		 "      namespaces: [shop]\n",
		 7, 7, "spec.from[0]", "exactly one"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\nmetadata: {name: a, "
		 "namespace: shop}\n"
		 "spec:\n  selector: {workloads: [api]}\n  from:\n    - identities: [\"" TD
		 "/ns/*/sa/b\"]\n",
		 7, 20, "spec.from[0].identities[0]", "wildcard"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\nmetadata: {name: a, "
		 "namespace: shop}\n"
		 "spec:\n  selector: {workloads: [api]}\n  from:\n    - identities: [\"" TD
		 "/*\"]\n",
		 7, 20, "spec.from[0].identities[0]", "whole trust domain"},
		/* issue #19: "*" is one last segment, so .../ns/jobs/ "*" would admit
		 * no workload: refused, pointing to namespaces */
		{"apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\nmetadata: {name: a, "
		 "namespace: shop}\n"
		 "spec:\n  selector: {workloads: [api]}\n  from:\n    - identities: [\"" TD
		 "/ns/jobs/*\"]\n",
		 7, 20, "spec.from[0].identities[0]", "write namespaces: [jobs]"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\nmetadata: {name: a, "
		 "namespace: shop}\n"
		 "spec:\n  selector: {workloads: [api]}\n  from:\n    - identities: [\"" TD
		 "/ns/jobs/sa/batch/*\"]\n",
		 7, 20, "spec.from[0].identities[0]", "admits no workload"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\nmetadata: {name: a, "
		 "namespace: shop}\n"
		 "spec:\n  selector: {workloads: [api]}\n  from:\n    - identities: [\"" TD
		 "/ns/*\"]\n",
		 7, 20, "spec.from[0].identities[0]", "admits no workload"},
		/* a missing field: placed where its mapping is */
		{"apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\nmetadata: {name: a, "
		 "namespace: shop}\n"
		 "spec:\n  from: [{namespaces: [shop]}]\n",
		 5, 3, "spec.selector", "required"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\nmetadata: {namespace: shop}\n"
		 "spec: {}\n",
		 3, 11, "metadata.name", "required"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: Workload\nmetadata: {name: w, namespace: "
		 "shop}\nspec: {addresses: [\"10.2.0.1\"]}\n",
		 4, 7, "spec.serviceAccount", "required"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: EgressPolicy\nmetadata: {name: e, "
		 "namespace: shop}\n"
		 "spec:\n  selector: {workloads: [api]}\n",
		 5, 3, "spec.to", "required"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\nmetadata: {name: a, "
		 "namespace: shop}\n"
		 "spec:\n  selector: {workloads: [api]}\n  from: [{unauthenticated: {}}]\n",
		 6, 28, "spec.from[0].unauthenticated.ipBlocks", "required"},
		{"kind: MeshPolicy\nmetadata: {name: m}\nspec: {}\n", 1, 1, "apiVersion",
		 "required"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: MeshPolicy\nmetadata: {name: m}\n", 1, 1,
		 "spec", "required"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\nmetadata: {name: a, "
		 "namespace: shop}\n"
		 "spec:\n  selector: {workloads: [api]}\n  from: [{unauthenticated: {ipBlocks: "
		 "[10.0.0.1/8]}}]\n",
		 6, 40, "spec.from[0].unauthenticated.ipBlocks[0]", "not a CIDR"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\nmetadata: {name: a, "
		 "namespace: shop}\n"
		 "spec:\n  selector: {workloads: [api]}\n  mode: dryrun\n  from: [{namespaces: "
		 "[shop]}]\n",
		 6, 9, "spec.mode", "enforce or audit"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\nmetadata: {name: a, "
		 "namespace: shop}\n"
		 "spec:\n  selector: {matchLabels: {}}\n  from: [{namespaces: [shop]}]\n",
		 5, 27, "spec.selector.matchLabels", "must not be empty"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\nmetadata: {name: a, "
		 "namespace: shop}\n"
		 "spec:\n  selector: {workloads: [api]}\n  ports: [\"9000-8000\"]\n  from: "
		 "[{namespaces: [shop]}]\n",
		 6, 11, "spec.ports[0]", "ends before it starts"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: MeshPolicy\nmetadata: {name: m}\nspec:\n  "
		 "mtls: OFF\n",
		 5, 9, "spec.mtls", "STRICT or PERMISSIVE"},
		{"apiVersion: cinch.dev/v1\nkind: MeshPolicy\nmetadata: {name: m}\nspec: {}\n", 1,
		 13, "apiVersion", "must be cinch.dev/v1alpha1"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: NetworkPolicy\nmetadata: {name: m}\nspec: "
		 "{}\n",
		 2, 7, "kind", "must be AllowPolicy"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\nmetadata: {name: a}\nspec: "
		 "{}\n",
		 3, 11, "metadata.namespace", "required"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: Workload\nmetadata: {name: Web, namespace: "
		 "shop}\n"
		 "spec: {serviceAccount: web, addresses: [\"10.2.0.1\"]}\n",
		 3, 18, "metadata.name", "DNS-1123"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: Workload\nmetadata: {name: w, namespace: "
		 "shop}\n"
		 "spec: {serviceAccount: web, addresses: [\"10.2.0.0/24\"]}\n",
		 4, 41, "spec.addresses[0]", "not an IP address"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: EgressPolicy\nmetadata: {name: e, "
		 "namespace: shop}\n"
		 "spec:\n  selector: {workloads: [api]}\n  to: [{cidrs: [payments.example.com]}]\n",
		 6, 17, "spec.to[0].cidrs[0]", "not a CIDR"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: MeshPolicy\nmetadata: {name: m}\nmetadata: "
		 "{name: n}\nspec: {}\n",
		 4, 1, "", "duplicate key"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: MeshPolicy\nmetadata: {name: m\nspec: {}\n",
		 4, 5, "", ""},
		{"{\"apiVersion\": \"cinch.dev/v1alpha1\", \"kind\": \"MeshPolicy\",\n"
		 " \"metadata\": {\"name\": \"m\"}, \"spec\": {\"defaultAction\": \"allow\"}}\n",
		 2, 55, "spec.defaultAction", "deny or audit"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: MeshPolicy\nmetadata: {name: m}\nspec:\n  "
		 "allowPodExclusions: yes\n",
		 5, 23, "spec.allowPodExclusions", "true or false"},
		{"{\"apiVersion\": \"cinch.dev/v1alpha1\", \"kind\": \"MeshPolicy\",\n"
		 " \"metadata\": {\"name\": \"m\"}, \"spec\": {\"allowPodExclusions\": "
		 "\"true\"}}\n",
		 2, 60, "spec.allowPodExclusions", "true or false"},
	};
	char p[128], w[128];
	int failed = 0;

	pfixture_path(w, sizeof(w), "workloads.yaml");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct bad_case *c = &cases[i];
		struct policy_slice *s = NULL;
		struct policy_error err;
		/* a good file and the bad one: the set is refused whole */
		pfixture_write("bad.yaml", c->doc);
		pfixture_path(p, sizeof(p), "bad.yaml");
		int rc = policy_slice_load(&s, TD_NAME, p, w, "shop/api", NULL, 0, &err);
		if (rc != -EINVAL || s || err.line != c->line || err.column != c->column ||
		    strcmp(err.path, c->path) || !strstr(err.msg, c->msg_part) ||
		    !strstr(err.file, "bad.yaml")) {
			print_error("case %zu: rc %d, %s:%d:%d: %s: %s\n", i, rc, err.file,
				    err.line, err.column, err.path, err.msg);
			failed++;
		}
	}
	assert_int_equal(failed, 0);
}

static void test_set_level_errors(void **state)
{
	char p[128], w[128];
	struct policy_slice *s = NULL;
	struct policy_error err;

	/* two workloads with one address */
	pfixture_write("dup.yaml", "apiVersion: cinch.dev/v1alpha1\nkind: Workload\n"
				   "metadata: {name: web2, namespace: shop}\n"
				   "spec: {serviceAccount: web, addresses: [\"10.1.0.1\"]}\n");
	pfixture_path(p, sizeof(p), "dup.yaml");
	pfixture_path(w, sizeof(w), "workloads.yaml");
	assert_int_equal(policy_slice_load(&s, TD_NAME, w, p, "shop/api", NULL, 0, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "share the address 10.1.0.1"));
	assert_non_null(strstr(err.file, "dup.yaml"));
	assert_int_equal(err.line, 4);
	assert_int_equal(err.column, 41);
	assert_string_equal(err.path, "spec.addresses[0]");
	/* two MeshPolicies for one namespace */
	pfixture_write("mesh2.yaml",
		       "apiVersion: cinch.dev/v1alpha1\nkind: MeshPolicy\n"
		       "metadata: {name: other, namespace: shop}\nspec: {mtls: STRICT}\n");
	pfixture_path(p, sizeof(p), "policy");
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "cp %s/mesh2.yaml %s/policy/ && cp -r %s/policy %s/policy2",
		 pfixture_dir(), pfixture_dir(), pfixture_dir(), pfixture_dir());
	assert_int_equal(system(cmd), 0);
	pfixture_path(p, sizeof(p), "policy2");
	assert_int_equal(policy_slice_load(&s, TD_NAME, p, w, "shop/api", NULL, 0, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "two MeshPolicies"));
	assert_non_null(strstr(err.file, "shop.yaml")); /* sorts after mesh2.yaml */
	assert_int_equal(err.line, 46);
	assert_int_equal(err.column, 18);
	assert_string_equal(err.path, "metadata.name");
	/* issue #19: two for the whole mesh (no namespace, and the control
	 * plane's): refused with file, line, column and field */
	pfixture_write("mesh3.yaml", "apiVersion: cinch.dev/v1alpha1\nkind: MeshPolicy\n"
				     "metadata: {name: a}\nspec: {mtls: STRICT}\n---\n"
				     "apiVersion: cinch.dev/v1alpha1\nkind: MeshPolicy\n"
				     "metadata: {name: b, namespace: cinch-system}\nspec: {}\n");
	pfixture_path(p, sizeof(p), "mesh3.yaml");
	assert_int_equal(policy_slice_load(&s, TD_NAME, p, w, "shop/api", NULL, 0, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "two MeshPolicies for the whole mesh"));
	assert_non_null(strstr(err.file, "mesh3.yaml"));
	assert_int_equal(err.line, 8);
	assert_int_equal(err.column, 18);
	assert_string_equal(err.path, "metadata.name");
	/* two AllowPolicies with one name */
	pfixture_write("dupname.yaml", "apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\n"
				       "metadata: {name: api-plain, namespace: shop}\n"
				       "spec: {selector: {workloads: [api]}, from: [{namespaces: "
				       "[shop]}]}\n");
	pfixture_path(p, sizeof(p), "dupname.yaml");
	char both[300];
	pfixture_path(both, sizeof(both), "policy");
	struct pset *set = pset_new("cluster.local");
	assert_int_equal(pset_add_path(set, both, &err), 0);
	assert_int_equal(pset_add_path(set, p, &err), 0);
	assert_int_equal(pset_finish(set, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "a second AllowPolicy named shop/api-plain"));
	assert_non_null(strstr(err.file, "dupname.yaml"));
	assert_int_equal(err.line, 3);
	assert_int_equal(err.column, 18);
	assert_string_equal(err.path, "metadata.name");
	pset_free(set);
	pfixture_path(p, sizeof(p), "policy2");
	snprintf(cmd, sizeof(cmd), "rm %s/policy/mesh2.yaml %s/policy2/mesh2.yaml", pfixture_dir(),
		 pfixture_dir());
	assert_int_equal(system(cmd), 0);
	/* a directory holds only policy files: anything else is an error */
	pfixture_write("policy2/README.md", "notes\n");
	assert_int_equal(policy_slice_load(&s, TD_NAME, p, w, "shop/api", NULL, 0, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "not a .yaml"));
	snprintf(cmd, sizeof(cmd), "rm %s/policy2/README.md && mkdir %s/policy2/sub",
		 pfixture_dir(), pfixture_dir());
	assert_int_equal(system(cmd), 0);
	assert_int_equal(policy_slice_load(&s, TD_NAME, p, w, "shop/api", NULL, 0, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "a directory inside"));
	assert_null(s);
}

/* Set-level duplicates are found by sorting (pset_finish); the error is
 * still the one of the first document that repeats an earlier one, named
 * with the earliest document it repeats, a name before an address. */
static int finish_file(const char *yaml, struct policy_error *err)
{
	char p[128];
	struct pset *set = pset_new("cluster.local");

	pfixture_write("firstdup.yaml", yaml);
	pfixture_path(p, sizeof(p), "firstdup.yaml");
	assert_non_null(set);
	assert_int_equal(pset_add_path(set, p, err), 0);
	int rc = pset_finish(set, err);
	pset_free(set);
	return rc;
}

#define WL(name, addrs)                                                                            \
	"---\napiVersion: cinch.dev/v1alpha1\nkind: Workload\n"                                    \
	"metadata: {name: " name ", namespace: shop}\n"                                            \
	"spec: {serviceAccount: " name ", addresses: [" addrs "]}\n"
#define AP(name)                                                                                   \
	"---\napiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\n"                                 \
	"metadata: {name: " name ", namespace: shop}\n"                                            \
	"spec: {selector: {workloads: [x]}, from: [{namespaces: [shop]}]}\n"

static void test_first_duplicate_reported(void **state)
{
	struct policy_error err;

	(void)state;
	/* z shares an address with y before a second x comes */
	assert_int_equal(finish_file(WL("x", "10.0.0.1") WL("y", "10.0.0.2")
					     WL("z", "10.0.0.3, 10.0.0.2") WL("x", "10.0.0.4"),
				     &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "workloads shop/y and shop/z share the address 10.0.0.2 "
					"(shop/y: "));
	assert_non_null(strstr(err.msg, "/firstdup.yaml:9)"));
	assert_string_equal(err.path, "spec.addresses[1]");
	assert_int_equal(err.line, 15);
	/* q repeats the name of the second and an address of the first: the
	 * first comes first */
	assert_int_equal(
		finish_file(WL("p", "10.0.0.9") WL("q", "10.0.0.5") WL("q", "10.0.0.9"), &err),
		-EINVAL);
	assert_non_null(strstr(err.msg, "workloads shop/p and shop/q share the address 10.0.0.9 "
					"(shop/p: "));
	assert_non_null(strstr(err.msg, "/firstdup.yaml:4)"));
	/* b repeats b after a repeats a (b sorts after a, a after b): the
	 * second a is named, with the first */
	assert_int_equal(finish_file(AP("b") AP("a") AP("c") AP("a") AP("b"), &err), -EINVAL);
	assert_non_null(strstr(err.msg, "a second AllowPolicy named shop/a (the first: "));
	assert_non_null(strstr(err.msg, "/firstdup.yaml:9)"));
	assert_int_equal(err.line, 19);
	/* an address twice in one workload is not two workloads sharing it */
	assert_int_equal(finish_file(WL("v", "10.0.0.7") WL("w", "10.0.0.8, 10.0.0.8"), &err), 0);
}

/* A file is read one document at a time (pdoc_parse_file_each); an error
 * in the file itself still comes before a document's, wherever it is, as
 * when the whole file was read first. */
static void test_file_error_first(void **state)
{
	struct policy_error err;
	char p[128];
	struct pset *set = pset_new("cluster.local");

	(void)state;
	assert_non_null(set);
	pfixture_write("later.yaml",
		       WL("x", "not-an-address") WL("y", "10.0.0.1") "---\na: 1\na: 2\n");
	pfixture_path(p, sizeof(p), "later.yaml");
	assert_int_equal(pset_add_path(set, p, &err), -EINVAL);
	assert_string_equal(err.msg, "duplicate key \"a\"");
	assert_int_equal(err.line, 13);
	assert_string_equal(err.path, "");
	/* without it, the document's error */
	pfixture_write("later.yaml", WL("x", "not-an-address") WL("y", "10.0.0.1"));
	assert_int_equal(pset_add_path(set, p, &err), -EINVAL);
	assert_string_equal(err.path, "spec.addresses[0]");
	assert_int_equal(err.line, 5);
	pset_free(set);
}

static void test_snapshot_validation(void **state)
{
	struct policy_slice *s = load("shop/api"), *s2 = NULL;
	struct policy_error err;
	Cinch__V1__Snapshot snap = CINCH__V1__SNAPSHOT__INIT;
	Cinch__V1__Workload w = CINCH__V1__WORKLOAD__INIT;
	Cinch__V1__EgressRule e = CINCH__V1__EGRESS_RULE__INIT, *ep = &e;
	char *cidrs[] = {"10.0.0.1/8"};

	/* a snapshot with a bad CIDR is refused whole */
	w.namespace_ = "shop";
	w.name = "api";
	w.spiffe_id = TD "/ns/shop/sa/api";
	snap.version = "v1";
	snap.workload = &w;
	e.id = "shop/x#0";
	e.n_cidrs = 1;
	e.cidrs = cidrs;
	snap.n_egress = 1;
	snap.egress = &ep;
	assert_int_equal(policy_slice_from_snapshot(&s2, &snap, &err), -EINVAL);
	assert_string_equal(err.path, "egress[0]");
	assert_null(s2);
	/* without the egress rule it loads, and denies by default */
	snap.n_egress = 0;
	assert_int_equal(policy_slice_from_snapshot(&s2, &snap, &err), 0);
	assert_int_equal(policy_slice_mtls(s2), POLICY_MTLS_STRICT);
	struct policy_decision d;
	struct sockaddr_storage a = pfixture_addr("10.0.0.1");
	policy_slice_decide_inbound(s2, TD "/ns/shop/sa/web", (struct sockaddr *)&a, 80, &d);
	assert_int_equal(d.verdict, POLICY_DENY);
	/* no workload identity: refused */
	w.spiffe_id = "spiffe://cluster.local";
	assert_int_equal(policy_slice_from_snapshot(&s2, &snap, &err), -EINVAL);
	assert_string_equal(err.path, "workload.spiffe_id");
	policy_slice_unref(s2);
	policy_slice_unref(s);
}

/* Static mode's trust domain (issue #12): the workloads' identities, the
 * peers' and the namespace sources are of the trust domain given, and a
 * caller of another one (same namespace and account) is a stranger. */
static void test_trust_domain(void **state)
{
	char p[128], w[128];
	struct policy_slice *s = NULL;
	struct policy_decision d;
	struct policy_error err;
	struct sockaddr_storage a = pfixture_addr("10.1.0.4");

	pfixture_path(p, sizeof(p), "policy");
	pfixture_path(w, sizeof(w), "workloads.yaml");
	assert_int_equal(policy_slice_load(&s, "example.org", p, w, "shop/api", NULL, 0, &err), 0);
	assert_string_equal(policy_slice_spiffe_id(s), "spiffe://example.org/ns/shop/sa/api");
	/* legacy is open to everyone: a peer, under its identity of ours */
	assert_string_equal(policy_slice_peer(s, (struct sockaddr *)&a, 80, &d),
			    "spiffe://example.org/ns/shop/sa/legacy");
	/* db admits all of cluster.local/ns/shop: not api of example.org */
	a = pfixture_addr("10.1.0.3");
	assert_null(policy_slice_peer(s, (struct sockaddr *)&a, 5432, &d));
	assert_true(policy_slice_meshed(s, (struct sockaddr *)&a));
	/* api-aa-shop#0: "namespaces: [shop]" on 9001, in our trust domain */
	policy_slice_decide_inbound(s, "spiffe://example.org/ns/shop/sa/db", NULL, 9001, &d);
	assert_int_equal(d.verdict, POLICY_ALLOW);
	assert_string_equal(d.rule, "shop/api-aa-shop#0");
	policy_slice_decide_inbound(s, TD "/ns/shop/sa/db", NULL, 9001, &d);
	assert_int_equal(d.verdict, POLICY_DENY);
	policy_slice_unref(s);
	s = NULL;
	static const char *const bad[] = {"", "Example.org", "example.org/x", "a b", "exa:mple"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(policy_slice_load(&s, bad[i], p, w, "shop/api", NULL, 0, &err),
				 -EINVAL);
		assert_null(s);
		assert_string_equal(err.path, "trust_domain");
		assert_non_null(strstr(err.msg, "not a trust domain"));
	}
}

/* Hole 7 of issue #12: an EgressPolicy covering the pod network must not
 * send the app's plaintext to a meshed workload that does not admit it.
 * api may open anything in plaintext (0.0.0.0/0, ::/0); web, batch (they
 * admit nobody) and their other spellings are refused with a named reason
 * before any byte leaves, the addresses between them are not meshed and
 * go out as the EgressPolicy says. The same through a snapshot (live mode)
 * and through the files (static mode). */
static void test_meshed_never_plaintext(void **state)
{
	static const char *const egress_all =
		"---\napiVersion: cinch.dev/v1alpha1\nkind: EgressPolicy\n"
		"metadata: {name: api-anywhere, namespace: shop}\n"
		"spec:\n  selector: {workloads: [api]}\n"
		"  to: [{cidrs: [\"0.0.0.0/0\", \"::/0\"]}]\n";
	static const struct {
		const char *ip;
		enum policy_verdict verdict;
	} cases[] = {
		{"10.1.0.1", POLICY_DENY},	  /* web: meshed, admits nobody */
		{"::ffff:10.1.0.1", POLICY_DENY}, /* the same host, IPv4-mapped */
		{"10.1.0.9", POLICY_DENY},	  /* batch, another namespace */
		{"10.1.0.5", POLICY_ALLOW},	  /* between meshed pods, not one */
		{"10.1.0.8", POLICY_ALLOW},	  {"fd00::3", POLICY_ALLOW},
		{"203.0.113.7", POLICY_ALLOW},
	};
	size_t text_len = strlen(POLICY) + strlen(egress_all) + 1;
	char p[128], w[128], *text = malloc(text_len);
	struct policy_slice *s = NULL;
	struct policy_decision d;
	struct policy_error err;

	assert_non_null(text);
	snprintf(text, text_len, "%s%s", POLICY, egress_all);
	pfixture_path(p, sizeof(p), "policy-egress");
	mkdir(p, 0700);
	pfixture_write("policy-egress/shop.yaml", text);
	free(text);
	pfixture_path(w, sizeof(w), "workloads.yaml");
	assert_int_equal(policy_slice_load(&s, TD_NAME, p, w, "shop/api", NULL, 0, &err), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage a = pfixture_addr(cases[i].ip);
		assert_null(policy_slice_peer(s, (struct sockaddr *)&a, 80, &d));
		policy_slice_decide_egress(s, (struct sockaddr *)&a, 80, &d);
		if (d.verdict != cases[i].verdict)
			fail_msg("%s: %s (%s)", cases[i].ip, policy_verdict_name(d.verdict),
				 d.reason);
		if (d.verdict == POLICY_DENY) {
			assert_null(d.rule);
			assert_string_equal(d.reason,
					    "the destination is meshed and does not admit this "
					    "workload");
		} else {
			assert_string_equal(d.rule, "shop/api-anywhere#0");
		}
	}
	/* db admits api on 5432 only: a peer, refused early on another port,
	 * never sent in plaintext */
	struct sockaddr_storage a = pfixture_addr("10.1.0.3");
	assert_non_null(policy_slice_peer(s, (struct sockaddr *)&a, 80, &d));
	assert_int_equal(d.verdict, POLICY_DENY);
	policy_slice_unref(s);
}

/* The meshed set as it is compiled (adjacent addresses merged into aligned
 * blocks, both spellings of an IPv4 host one, the ends of both address
 * spaces without overflow) and as a slice reads it (validated: a bad CIDR
 * refuses the snapshot whole). */
static void test_meshed_cidrs(void **state)
{
	static const char *const ips[] = {
		"10.2.0.0",	   "10.2.0.1",
		"10.2.0.2",	   "10.2.0.3",
		"10.2.0.4",	   "10.2.0.5",
		"10.2.0.6",	   "10.2.0.7",
		"::ffff:10.2.0.8", "10.2.0.10",
		"255.255.255.254", "255.255.255.255",
		"0.0.0.0",	   "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
		"fd00::1",
	};
	static const char *const want[] = {
		"0.0.0.0/32",
		"10.2.0.0/29",
		"10.2.0.8/32",
		"10.2.0.10/32",
		"255.255.255.254/31",
		"fd00::1/128",
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
	};
	char w[128], doc[512], *text = calloc(1, 16384);
	struct pset *set = pset_new("cluster.local");
	struct pcompiled *c = NULL;
	struct policy_error err;
	uint8_t *buf = NULL;
	size_t len;

	assert_non_null(text);
	assert_non_null(set);
	for (size_t i = 0; i < sizeof(ips) / sizeof(ips[0]); i++) {
		snprintf(doc, sizeof(doc),
			 "---\napiVersion: cinch.dev/v1alpha1\nkind: Workload\n"
			 "metadata: {name: w%zu, namespace: n}\n"
			 "spec: {serviceAccount: w, addresses: [\"%s\"]}\n",
			 i, ips[i]);
		strcat(text, doc);
	}
	pfixture_write("meshed.yaml", text);
	free(text);
	pfixture_path(w, sizeof(w), "meshed.yaml");
	if (pset_add_path(set, w, &err) < 0 || pset_finish(set, &err) < 0)
		fail_msg("%s:%d: %s: %s", err.file, err.line, err.path, err.msg);
	assert_int_equal(pcompile_new(set, &c), 0);
	assert_int_equal(pcompile_snapshot(c, 0, &buf, &len), 0);
	Cinch__V1__Snapshot *snap = cinch__v1__snapshot__unpack(NULL, len, buf);
	assert_non_null(snap);
	assert_int_equal(snap->n_meshed_cidrs, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < snap->n_meshed_cidrs; i++)
		assert_string_equal(snap->meshed_cidrs[i], want[i]);

	/* the agent's side: exactly those addresses are meshed */
	struct policy_slice *s = NULL;
	assert_int_equal(policy_slice_from_snapshot(&s, snap, &err), 0);
	for (size_t i = 0; i < sizeof(ips) / sizeof(ips[0]); i++) {
		struct sockaddr_storage a = pfixture_addr(ips[i]);
		if (!policy_slice_meshed(s, (struct sockaddr *)&a))
			fail_msg("%s is a workload's address, not meshed", ips[i]);
	}
	static const char *const outside[] = {
		"10.2.0.9", "10.2.0.11", "9.255.255.255",  "255.255.255.253", "fd00::",
		"fd00::2",  "::",	 "::ffff:10.2.0.9"};
	for (size_t i = 0; i < sizeof(outside) / sizeof(outside[0]); i++) {
		struct sockaddr_storage a = pfixture_addr(outside[i]);
		if (policy_slice_meshed(s, (struct sockaddr *)&a))
			fail_msg("%s is no workload's address, but meshed", outside[i]);
	}
	policy_slice_unref(s);

	/* overlapping and unordered CIDRs from another control plane are
	 * fine; anything not a CIDR refuses the snapshot whole */
	char *mixed[] = {"10.9.0.0/16", "10.9.1.0/24", "fd00::/64", "10.8.255.255/32"};
	char **compiled = snap->meshed_cidrs;
	size_t n_compiled = snap->n_meshed_cidrs;
	snap->meshed_cidrs = mixed;
	snap->n_meshed_cidrs = 4;
	assert_int_equal(policy_slice_from_snapshot(&s, snap, &err), 0);
	struct sockaddr_storage a = pfixture_addr("10.8.255.255");
	assert_true(policy_slice_meshed(s, (struct sockaddr *)&a));
	a = pfixture_addr("10.9.200.1");
	assert_true(policy_slice_meshed(s, (struct sockaddr *)&a));
	a = pfixture_addr("10.10.0.0");
	assert_false(policy_slice_meshed(s, (struct sockaddr *)&a));
	policy_slice_unref(s);
	s = NULL;
	static const char *const bad[] = {"10.9.0.1/16", "10.9.0.0/33", "not-an-ip", "",
					  "fd00::/129"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		mixed[2] = (char *)bad[i];
		assert_int_equal(policy_slice_from_snapshot(&s, snap, &err), -EINVAL);
		assert_null(s);
		assert_string_equal(err.path, "meshed_cidrs[2]");
		assert_non_null(strstr(err.msg, "not a CIDR"));
	}
	snap->meshed_cidrs = compiled; /* the unpacked one's, to be freed */
	snap->n_meshed_cidrs = n_compiled;
	cinch__v1__snapshot__free_unpacked(snap, NULL);
	free(buf);
	pcompile_free(c);
	pset_free(set);
}

struct each_rule_seen {
	const char *rule;
	int source_match;
};

static void each_rule_cb(void *arg, const char *rule, int port_match, int source_match)
{
	struct each_rule_seen *seen = arg;
	if (port_match && source_match && !seen->rule)
		seen->rule = rule;
}

/* Issue #19 and #12 hole 8: a wildcard "*" is exactly one last segment and
 * a namespace is exactly its workload identities, in enforcement
 * (decide_inbound, its index) and in explain (each_rule) alike. Files can
 * no longer say ".../ns/jobs/" "*" (test_errors), so the rules come as a
 * snapshot, as the control plane would send them. */
static void test_wildcard_one_segment(void **state)
{
	static const struct {
		const char *caller, *rule; /* rule NULL: denied */
	} cases[] = {
		{TD "/ns/jobs/x", "shop/w#0"},
		{TD "/ns/jobs/sa", "shop/w#0"},
		{TD "/ns/jobs/sa/batch", "shop/w#1"},
		{TD "/ns/jobs/a/b/c", NULL},
		{TD "/ns/jobs/sa/batch/x", NULL},
		{TD "/ns/jobs/anything/", NULL},
		{TD "/ns/jobs", NULL},
		{TD "/ns/other/sa/batch", NULL},
		{TD "/gw/edge", "shop/w#2"},
		{TD "/gw/edge/x", NULL},
		{"spiffe://other.td/ns/jobs/sa/batch", NULL},
	};
	Cinch__V1__Snapshot snap = CINCH__V1__SNAPSHOT__INIT;
	Cinch__V1__Workload w = CINCH__V1__WORKLOAD__INIT;
	Cinch__V1__InboundRule r[3], *rp[3];
	Cinch__V1__Source src[3], *sp[3];
	const char *ids[3] = {"shop/w#0", "shop/w#1", "shop/w#2"};
	struct policy_slice *s = NULL;
	struct policy_error err;

	w.namespace_ = "shop";
	w.name = "api";
	w.spiffe_id = TD "/ns/shop/sa/api";
	snap.version = "v1";
	snap.workload = &w;
	for (int i = 0; i < 3; i++) {
		cinch__v1__inbound_rule__init(&r[i]);
		cinch__v1__source__init(&src[i]);
		r[i].id = (char *)ids[i];
		r[i].n_sources = 1;
		sp[i] = &src[i];
		r[i].sources = &sp[i];
		rp[i] = &r[i];
	}
	src[0].kind_case = CINCH__V1__SOURCE__KIND_IDENTITY;
	src[0].identity = TD "/ns/jobs/*";
	src[1].kind_case = CINCH__V1__SOURCE__KIND_NAMESPACE;
	src[1].namespace_ = "jobs";
	src[2].kind_case = CINCH__V1__SOURCE__KIND_IDENTITY;
	src[2].identity = TD "/gw/*";
	snap.n_inbound = 3;
	snap.inbound = rp;
	assert_int_equal(policy_slice_from_snapshot(&s, &snap, &err), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct policy_decision d;
		struct each_rule_seen seen = {0};
		policy_slice_decide_inbound(s, cases[i].caller, NULL, 80, &d);
		policy_slice_each_rule(s, cases[i].caller, NULL, 80, each_rule_cb, &seen);
		if (cases[i].rule ? !d.rule || strcmp(d.rule, cases[i].rule) : !!d.rule)
			fail_msg("%s: decided by %s, want %s", cases[i].caller,
				 d.rule ? d.rule : "none", cases[i].rule ? cases[i].rule : "none");
		if (!seen.rule != !d.rule || (d.rule && strcmp(seen.rule, d.rule)))
			fail_msg("%s: explain says %s, enforcement %s", cases[i].caller,
				 seen.rule ? seen.rule : "none", d.rule ? d.rule : "none");
	}
	policy_slice_unref(s);
}

/* What the control plane sends: the compiled snapshot of shop/api, its
 * contents, its exact re-encoding, and the slice the agent loads from it. */
static void test_snapshot_round_trip(void **state)
{
	char p[128], w[128];
	struct pset *set = pset_new("cluster.local");
	struct pcompiled *c = NULL;
	struct policy_error err;
	uint8_t *buf = NULL, *again;
	size_t len;

	pfixture_path(p, sizeof(p), "policy");
	pfixture_path(w, sizeof(w), "workloads.yaml");
	assert_non_null(set);
	assert_int_equal(pset_add_path(set, p, &err), 0);
	assert_int_equal(pset_add_path(set, w, &err), 0);
	assert_int_equal(pset_finish(set, &err), 0);
	assert_int_equal(pcompile_new(set, &c), 0);
	const struct pworkload *api = pcompile_find(set, "shop/api", NULL, 0);
	assert_non_null(api);
	assert_int_equal(pcompile_snapshot(c, pcompile_index_of(c, api), &buf, &len), 0);

	Cinch__V1__Snapshot *snap = cinch__v1__snapshot__unpack(NULL, len, buf);
	assert_non_null(snap);
	assert_string_equal(snap->workload->spiffe_id, TD "/ns/shop/sa/api");
	assert_int_equal(snap->mtls_mode, CINCH__V1__MTLS_MODE__MTLS_MODE_PERMISSIVE);
	/* rules in evaluation order: policies by name, then from[] order */
	assert_int_equal(snap->n_inbound, 4);
	assert_string_equal(snap->inbound[0]->id, "shop/api-aa-shop#0");
	assert_string_equal(snap->inbound[1]->id, "shop/api-from-web#0");
	assert_string_equal(snap->inbound[2]->id, "shop/api-from-web#1");
	assert_string_equal(snap->inbound[3]->id, "shop/api-plain#0");
	/* peers, in registry order: api itself (api-aa-shop admits all of
	 * shop on 9001), db (every shop identity on 5432), legacy (audit-only:
	 * open to everyone); web admits nobody and is not a peer */
	assert_int_equal(snap->n_peers, 3);
	assert_string_equal(snap->peers[0]->name, "api");
	assert_int_equal(snap->peers[0]->allowed_ports[0]->first, 9001);
	assert_string_equal(snap->peers[1]->name, "db");
	assert_int_equal(snap->peers[1]->n_allowed_ports, 1);
	assert_int_equal(snap->peers[1]->allowed_ports[0]->first, 5432);
	assert_string_equal(snap->peers[2]->name, "legacy");
	assert_int_equal(snap->peers[2]->allowed_ports[0]->last, 65535);
	assert_int_equal(snap->n_egress, 1);
	/* the meshed set: every workload's address (10.1.0.1-4, .9, fd00::2),
	 * the same in every slice, in the fewest CIDRs covering exactly them */
	assert_int_equal(snap->n_meshed_cidrs, 5);
	assert_string_equal(snap->meshed_cidrs[0], "10.1.0.1/32");
	assert_string_equal(snap->meshed_cidrs[1], "10.1.0.2/31");
	assert_string_equal(snap->meshed_cidrs[2], "10.1.0.4/32");
	assert_string_equal(snap->meshed_cidrs[3], "10.1.0.9/32");
	assert_string_equal(snap->meshed_cidrs[4], "fd00::2/128");
	/* the encoding is deterministic: unpack and pack give the same bytes */
	assert_int_equal(cinch__v1__snapshot__get_packed_size(snap), len);
	again = malloc(len);
	assert_non_null(again);
	cinch__v1__snapshot__pack(snap, again);
	assert_memory_equal(again, buf, len);
	/* the agent side loads it and decides as the files said */
	struct policy_slice *sl = NULL;
	struct policy_decision d;
	assert_int_equal(policy_slice_from_snapshot(&sl, snap, &err), 0);
	assert_string_equal(policy_slice_version(sl), snap->version);
	policy_slice_decide_inbound(sl, TD "/ns/shop/sa/web", NULL, 8080, &d);
	assert_string_equal(d.rule, "shop/api-from-web#0");
	policy_slice_unref(sl);
	free(again);
	cinch__v1__snapshot__free_unpacked(snap, NULL);
	free(buf);
	pcompile_free(c);
	pset_free(set);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_inbound_table),
		cmocka_unit_test(test_outbound),
		cmocka_unit_test(test_self_by_address_and_version),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_set_level_errors),
		cmocka_unit_test(test_first_duplicate_reported),
		cmocka_unit_test(test_file_error_first),
		cmocka_unit_test(test_snapshot_validation),
		cmocka_unit_test(test_snapshot_round_trip),
		cmocka_unit_test(test_meshed_never_plaintext),
		cmocka_unit_test(test_trust_domain),
		cmocka_unit_test(test_meshed_cidrs),
		cmocka_unit_test(test_wildcard_one_segment),
	};
	return cmocka_run_group_tests(tests, setup, pfixture_teardown);
}
