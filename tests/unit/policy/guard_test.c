/* guard_test: guardrails, selectors by label and egress modes (issue #18)
 * through the library as the agent uses it: files compiled into the
 * snapshot of one workload, loaded into a slice, asked.
 *
 * Each case attacks one promise: a guardrail's deny wins over a namespace
 * rule that allows; pass hands over and nothing else does; priorities
 * order guardrails; label selectors follow Kubernetes' LabelSelector
 * (NotIn admits a workload without the key); a selector that picks no one
 * still isolates the workload; a namespace cannot loosen the mesh's mode
 * or default unless a guardrail allows it; egress audit lets through and
 * logs, and never sends plaintext to a meshed destination. Plain files in
 * a temporary directory; no certificates (the slice is what decides). */
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
#include "pfixture.h"
#include "policy.h"

#define TD "spiffe://cluster.local"
#define HDR "apiVersion: cinch.dev/v1alpha1\n"

/* prod (env=prod): web, api, exporter; dev (env=dev): tool; monitoring:
 * prom (no Namespace document: only its name label). */
static const char *const WORLD =
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: prod, labels: {env: prod}}\n---\n"
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: dev, labels: {env: dev}}\n---\n"
	HDR "kind: Workload\nmetadata: {name: web, namespace: prod, labels: {app: web}}\n"
	"spec: {serviceAccount: web, addresses: [\"10.3.0.1\"]}\n---\n"
	HDR "kind: Workload\nmetadata: {name: api, namespace: prod, labels: {app: api, tier: be}}\n"
	"spec: {serviceAccount: api, addresses: [\"10.3.0.2\"]}\n---\n"
	HDR "kind: Workload\nmetadata: {name: exporter, namespace: prod, labels: {app: exp}}\n"
	"spec: {serviceAccount: exporter, addresses: [\"10.3.0.3\"]}\n---\n"
	HDR "kind: Workload\nmetadata: {name: tool, namespace: dev, labels: {app: web}}\n"
	"spec: {serviceAccount: tool, addresses: [\"10.3.0.4\"]}\n---\n"
	HDR "kind: Workload\nmetadata: {name: prom, namespace: monitoring, labels: {app: prom}}\n"
	"spec: {serviceAccount: prom, addresses: [\"10.3.0.5\"]}\n";

struct gcase {
	const char *self, *caller; /* caller NULL: plaintext from 10.9.0.1 */
	uint16_t port;
	enum policy_verdict verdict;
	const char *rule; /* NULL: none */
};

static int run_cases(const char *policy, const struct gcase *c, size_t n)
{
	int failed = 0;
	for (size_t i = 0; i < n; i++) {
		struct policy_slice *s = pfixture_must_load(policy, WORLD, c[i].self);
		struct sockaddr_storage src = pfixture_addr("10.9.0.1");
		struct policy_decision d;
		policy_slice_decide_inbound(s, c[i].caller, (struct sockaddr *)&src, c[i].port, &d);
		if (d.verdict != c[i].verdict || (c[i].rule == NULL) != (d.rule == NULL) ||
		    (d.rule && strcmp(d.rule, c[i].rule))) {
			print_error("case %zu (%s <- %s:%u): %s by %s (%s), want %s by %s\n", i,
				    c[i].self, c[i].caller ? c[i].caller : "plaintext", c[i].port,
				    policy_verdict_name(d.verdict), d.rule ? d.rule : "(none)",
				    d.reason, policy_verdict_name(c[i].verdict),
				    c[i].rule ? c[i].rule : "(none)");
			failed++;
		}
		policy_slice_unref(s);
	}
	return failed;
}

/* The examples of the issue: nothing outside monitoring reaches 9100;
 * env=prod never accepts env=dev callers; a pass hands over. */
static const char *const GUARDS =
	HDR "kind: GuardrailPolicy\nmetadata: {name: node-exporter}\n"
	"spec:\n  priority: 10\n  subject: {namespaceSelector: {}}\n  rules:\n"
	"    - action: allow\n      ports: [9100]\n"
	"      from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]\n"
	"    - action: deny\n      ports: [9100]\n---\n"
	HDR "kind: GuardrailPolicy\nmetadata: {name: prod-from-dev}\n"
	"spec:\n  priority: 20\n  subject: {namespaceSelector: {matchLabels: {env: prod}}}\n"
	"  rules:\n"
	"    - action: pass\n      ports: [7000]\n"
	"    - action: deny\n      from: [{namespaceSelector: {matchExpressions: "
	"[{key: env, operator: In, values: [dev]}]}}]\n---\n"
	/* the namespace allows what the guardrails refuse */
	HDR "kind: AllowPolicy\nmetadata: {name: open, namespace: prod}\n"
	"spec:\n  selector: {}\n  from:\n"
	"    - namespaces: [dev, prod, monitoring]\n";

static void test_guardrails(void **state)
{
	static const struct gcase cases[] = {
		/* namespace allows dev; the guardrail refuses, and says which rule */
		{"prod/api", TD "/ns/dev/sa/tool", 8080, POLICY_DENY,
		 "GuardrailPolicy/prod-from-dev#1"},
		/* pass: the namespace decides (and allows) */
		{"prod/api", TD "/ns/dev/sa/tool", 7000, POLICY_ALLOW, "prod/open#0"},
		{"prod/api", TD "/ns/prod/sa/web", 8080, POLICY_ALLOW, "prod/open#0"},
		/* 9100: monitoring only, by priority before prod-from-dev */
		{"prod/exporter", TD "/ns/monitoring/sa/prom", 9100, POLICY_ALLOW,
		 "GuardrailPolicy/node-exporter#0"},
		{"prod/exporter", TD "/ns/prod/sa/web", 9100, POLICY_DENY,
		 "GuardrailPolicy/node-exporter#1"},
		{"prod/exporter", TD "/ns/dev/sa/tool", 9100, POLICY_DENY,
		 "GuardrailPolicy/node-exporter#1"},
		/* a deny without `from` refuses identities no namespace has */
		{"prod/exporter", "spiffe://other.td/gw/x", 9100, POLICY_DENY,
		 "GuardrailPolicy/node-exporter#1"},
		/* the guardrail's allow lets in what no namespace rule does: dev
		 * has no AllowPolicy (default deny) */
		{"dev/tool", TD "/ns/monitoring/sa/prom", 9100, POLICY_ALLOW,
		 "GuardrailPolicy/node-exporter#0"},
		{"dev/tool", TD "/ns/monitoring/sa/prom", 9101, POLICY_DENY, NULL},
	};
	assert_int_equal(run_cases(GUARDS, cases, sizeof(cases) / sizeof(cases[0])), 0);

	/* audit mode: the deny is logged, not enforced, and still named */
	char audit[4096];
	snprintf(audit, sizeof(audit), "%s",
		 HDR "kind: GuardrailPolicy\nmetadata: {name: try}\n"
		     "spec:\n  priority: 1\n  mode: audit\n"
		     "  subject: {podSelector: {matchLabels: {app: api}}}\n"
		     "  rules: [{action: deny, from: [{serviceAccounts: [prod/web]}]}]\n---\n" HDR
		     "kind: AllowPolicy\nmetadata: {name: a, namespace: prod}\n"
		     "spec: {selector: {}, from: [{namespaces: [prod]}]}\n");
	static const struct gcase audit_cases[] = {
		{"prod/api", TD "/ns/prod/sa/web", 80, POLICY_AUDIT_DENY, "GuardrailPolicy/try#0"},
		{"prod/web", TD "/ns/prod/sa/web", 80, POLICY_ALLOW, "prod/a#0"},
	};
	assert_int_equal(run_cases(audit, audit_cases, 2), 0);
}

/* Selectors by label with Kubernetes' semantics. */
static void test_selectors(void **state)
{
	static const char *const pol =
		HDR "kind: AllowPolicy\nmetadata: {name: sel, namespace: prod}\n"
		"spec:\n  selector: {matchExpressions: [{key: tier, operator: Exists}]}\n"
		"  from:\n"
		/* #0: web pods of env=prod namespaces (not dev's tool, labelled app=web) */
		"    - namespaceSelector: {matchLabels: {env: prod}}\n"
		"      podSelector: {matchLabels: {app: web}}\n"
		/* #1: pods of this namespace without tier=be: NotIn admits the unlabelled */
		"    - podSelector: {matchExpressions: [{key: tier, operator: NotIn, values: [be]},"
		" {key: app, operator: In, values: [exp, x]}]}\n"
		/* #2: a service account by name, whatever the trust domain */
		"    - serviceAccounts: [monitoring/prom]\n"
		/* #3: namespaces without an env label */
		"    - namespaceSelector: {matchExpressions: [{key: env, operator: DoesNotExist}]}\n"
		"      podSelector: {}\n";
	static const struct gcase cases[] = {
		{"prod/api", TD "/ns/prod/sa/web", 80, POLICY_ALLOW, "prod/sel#0"},
		{"prod/api", TD "/ns/dev/sa/tool", 80, POLICY_DENY, NULL},
		{"prod/api", TD "/ns/prod/sa/exporter", 80, POLICY_ALLOW, "prod/sel#1"},
		{"prod/api", TD "/ns/prod/sa/api", 80, POLICY_DENY, NULL},
		{"prod/api", TD "/ns/monitoring/sa/prom", 80, POLICY_ALLOW, "prod/sel#2"},
		/* web has no tier: not selected, the default applies */
		{"prod/web", TD "/ns/prod/sa/web", 80, POLICY_DENY, NULL},
	};
	assert_int_equal(run_cases(pol, cases, sizeof(cases) / sizeof(cases[0])), 0);

	/* #3 admits monitoring (no env label) through its workloads; a caller
	 * of monitoring that is no workload's is not admitted by a podSelector */
	static const struct gcase c3[] = {
		{"prod/api", TD "/ns/monitoring/sa/other", 80, POLICY_DENY, NULL},
	};
	assert_int_equal(run_cases(pol, c3, 1), 0);

	/* A selector that picks no one still isolates: the default (audit) does
	 * not let everyone in. */
	static const char *const none =
		HDR "kind: MeshPolicy\nmetadata: {name: m}\nspec: {defaultAction: audit}\n---\n" HDR
		"kind: AllowPolicy\nmetadata: {name: nobody, namespace: prod}\n"
		"spec:\n  selector: {workloads: [api]}\n"
		"  from: [{podSelector: {matchLabels: {app: nobody}}}]\n";
	static const struct gcase cn[] = {
		{"prod/api", TD "/ns/prod/sa/web", 80, POLICY_DENY, NULL},
		{"prod/web", TD "/ns/prod/sa/web", 80, POLICY_AUDIT_DENY, NULL},
	};
	assert_int_equal(run_cases(none, cn, 2), 0);
}

/* A namespace MeshPolicy tightens; it loosens only where a guardrail
 * allows it. */
static void test_mesh_tighten_only(void **state)
{
	static const char *const pol =
		HDR "kind: MeshPolicy\nmetadata: {name: m}\nspec: {defaultAction: deny}\n---\n" HDR
		"kind: MeshPolicy\nmetadata: {name: p, namespace: prod}\n"
		"spec: {mtls: PERMISSIVE, defaultAction: audit, egress: allow}\n---\n" HDR
		"kind: MeshPolicy\nmetadata: {name: d, namespace: dev}\n"
		"spec: {mtls: PERMISSIVE, defaultAction: audit}\n---\n" HDR
		"kind: GuardrailPolicy\nmetadata: {name: dev-may}\n"
		"spec:\n  priority: 5\n  subject: {namespaceSelector: {matchLabels: {env: dev}}}\n"
		"  allowLoosening: [defaultAction]\n";
	static const struct gcase cases[] = {
		/* prod's loosening refused: STRICT and deny stay */
		{"prod/web", NULL, 80, POLICY_DENY, NULL},
		{"prod/web", TD "/ns/prod/sa/api", 80, POLICY_DENY, NULL},
		/* dev may loosen its default, not its mode */
		{"dev/tool", TD "/ns/prod/sa/api", 80, POLICY_AUDIT_DENY, NULL},
	};
	assert_int_equal(run_cases(pol, cases, sizeof(cases) / sizeof(cases[0])), 0);
	struct policy_slice *s = pfixture_must_load(pol, WORLD, "dev/tool");
	assert_int_equal(policy_slice_mtls(s), POLICY_MTLS_STRICT);
	policy_slice_unref(s);
	/* prod's egress: allow refused, deny stays */
	s = pfixture_must_load(pol, WORLD, "prod/web");
	struct sockaddr_storage out = pfixture_addr("198.51.100.7");
	struct policy_decision d;
	policy_slice_decide_egress(s, (struct sockaddr *)&out, 443, &d);
	assert_int_equal(d.verdict, POLICY_DENY);
	policy_slice_unref(s);
}

static void test_egress_modes(void **state)
{
	static const char *const modes[] = {"deny", "audit", "allow"};
	static const enum policy_verdict want[] = {POLICY_DENY, POLICY_AUDIT_DENY, POLICY_ALLOW};
	char pol[512];

	for (int i = 0; i < 3; i++) {
		snprintf(pol, sizeof(pol),
			 HDR "kind: MeshPolicy\nmetadata: {name: m}\nspec: {egress: %s}\n", modes[i]);
		struct policy_slice *s = pfixture_must_load(pol, WORLD, "prod/web");
		struct sockaddr_storage out = pfixture_addr("198.51.100.7"),
					meshed = pfixture_addr("10.3.0.4");
		struct policy_decision d;
		policy_slice_decide_egress(s, (struct sockaddr *)&out, 443, &d);
		assert_int_equal(d.verdict, want[i]);
		/* a meshed workload that does not admit web: never plaintext */
		assert_null(policy_slice_peer(s, (struct sockaddr *)&meshed, 80, &d));
		policy_slice_decide_egress(s, (struct sockaddr *)&meshed, 80, &d);
		assert_int_equal(d.verdict, POLICY_DENY);
		policy_slice_unref(s);
	}
}

/* The caller's side never refuses what a guardrail allows at the
 * destination: a guardrail's allow makes a peer. */
static void test_guard_peers(void **state)
{
	struct policy_slice *s = pfixture_must_load(GUARDS, WORLD, "monitoring/prom");
	struct sockaddr_storage tool = pfixture_addr("10.3.0.4");
	struct policy_decision d;
	const char *id = policy_slice_peer(s, (struct sockaddr *)&tool, 9100, &d);
	assert_non_null(id);
	assert_string_equal(id, TD "/ns/dev/sa/tool");
	assert_int_equal(d.verdict, POLICY_ALLOW);
	policy_slice_unref(s);
}

struct bad {
	const char *doc, *path, *msg;
};

static void test_bad_documents(void **state)
{
	static const struct bad cases[] = {
		{HDR "kind: GuardrailPolicy\nmetadata: {name: g, namespace: prod}\nspec: {}\n",
		 "metadata.namespace", "cluster-scoped"},
		{HDR "kind: GuardrailPolicy\nmetadata: {name: g}\n"
		     "spec: {priority: 1001, subject: {podSelector: {}}, rules: [{action: deny}]}\n",
		 "spec.priority", "0 to 1000"},
		{HDR "kind: GuardrailPolicy\nmetadata: {name: g}\n"
		     "spec: {priority: 1, subject: {}, rules: [{action: deny}]}\n",
		 "spec.subject", "namespaceSelector or podSelector"},
		{HDR "kind: GuardrailPolicy\nmetadata: {name: g}\n"
		     "spec: {priority: 1, subject: {podSelector: {}}, rules: [{action: drop}]}\n",
		 "spec.rules[0].action", "allow, deny or pass"},
		{HDR "kind: GuardrailPolicy\nmetadata: {name: g}\n"
		     "spec: {priority: 1, subject: {podSelector: {}}}\n",
		 "spec.rules", "required"},
		{HDR "kind: AllowPolicy\nmetadata: {name: a, namespace: prod}\n"
		     "spec: {selector: {matchExpressions: [{key: a, operator: In}]}, "
		     "from: [{namespaces: [prod]}]}\n",
		 "spec.selector.matchExpressions[0].values", "required for In"},
		{HDR "kind: AllowPolicy\nmetadata: {name: a, namespace: prod}\n"
		     "spec: {selector: {matchExpressions: [{key: a, operator: Exists, values: [x]}]}, "
		     "from: [{namespaces: [prod]}]}\n",
		 "spec.selector.matchExpressions[0].values", "absent for Exists"},
		{HDR "kind: AllowPolicy\nmetadata: {name: a, namespace: prod}\n"
		     "spec: {selector: {matchExpressions: [{key: a, operator: Is, values: [x]}]}, "
		     "from: [{namespaces: [prod]}]}\n",
		 "spec.selector.matchExpressions[0].operator", "In, NotIn"},
		{HDR "kind: AllowPolicy\nmetadata: {name: a, namespace: prod}\n"
		     "spec: {selector: {}, from: [{serviceAccounts: [web]}]}\n",
		 "spec.from[0].serviceAccounts[0]", "<namespace>/<serviceAccount>"},
		{HDR "kind: AllowPolicy\nmetadata: {name: a, namespace: prod}\n"
		     "spec: {selector: {}, from: [{podSelector: {}, namespaces: [x]}]}\n",
		 "spec.from[0]", "exactly one of"},
		{HDR "kind: MeshPolicy\nmetadata: {name: m}\nspec: {egress: open}\n", "spec.egress",
		 "deny, audit or allow"},
		{"apiVersion: cinch.dev/v1alpha1\nkind: Namespace\nmetadata: {name: x}\n", "apiVersion",
		 "v1 for a Namespace"},
		{"apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: "
		 "{kubernetes.io/metadata.name: y}}\n",
		 "metadata.labels.kubernetes.io/metadata.name", "must be the name"},
	};
	int failed = 0;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct policy_error err;
		struct policy_slice *s = pfixture_load(cases[i].doc, WORLD, "prod/web", &err);
		if (s || strcmp(err.path, cases[i].path) || !strstr(err.msg, cases[i].msg)) {
			print_error("case %zu: %s: %s\n", i, err.path, err.msg);
			failed++;
		}
		policy_slice_unref(s);
	}
	assert_int_equal(failed, 0);
}

/* Snapshots from elsewhere: guardrail rules first, only they deny or pass,
 * only they admit every caller. */
static void test_snapshot_rules(void **state)
{
	struct policy_slice *s = pfixture_must_load(GUARDS, WORLD, "prod/api");
	(void)s;
	policy_slice_unref(s);

	Cinch__V1__Snapshot snap = CINCH__V1__SNAPSHOT__INIT;
	Cinch__V1__Workload w = CINCH__V1__WORKLOAD__INIT;
	Cinch__V1__InboundRule r0 = CINCH__V1__INBOUND_RULE__INIT, r1 = r0;
	Cinch__V1__Source any = CINCH__V1__SOURCE__INIT;
	Cinch__V1__Source *srcs[] = {&any};
	Cinch__V1__InboundRule *rules[] = {&r0, &r1};
	struct policy_error err;

	w.namespace_ = "prod";
	w.name = "api";
	w.spiffe_id = TD "/ns/prod/sa/api";
	snap.version = "v1";
	snap.workload = &w;
	any.kind_case = CINCH__V1__SOURCE__KIND_ANY_CALLER;
	any.any_caller = 1;
	r0.id = "prod/a#0";
	r0.sources = srcs;
	r0.n_sources = 1;
	r1 = r0;
	r1.id = "GuardrailPolicy/g#0";
	snap.inbound = rules;
	snap.n_inbound = 1;

	/* a namespace rule admitting everyone */
	assert_int_equal(policy_slice_from_snapshot(&s, &snap, &err), -EINVAL);
	/* a namespace rule that denies */
	any.kind_case = CINCH__V1__SOURCE__KIND_NAMESPACE;
	any.namespace_ = "dev";
	r0.action = CINCH__V1__RULE_ACTION__RULE_ACTION_DENY;
	assert_int_equal(policy_slice_from_snapshot(&s, &snap, &err), -EINVAL);
	/* a guardrail rule after a namespace rule */
	r0.action = CINCH__V1__RULE_ACTION__RULE_ACTION_ALLOW;
	r1.guardrail = 1;
	r1.action = CINCH__V1__RULE_ACTION__RULE_ACTION_DENY;
	snap.n_inbound = 2;
	assert_int_equal(policy_slice_from_snapshot(&s, &snap, &err), -EINVAL);
	/* in order it loads, and the guardrail decides */
	rules[0] = &r1;
	rules[1] = &r0;
	assert_int_equal(policy_slice_from_snapshot(&s, &snap, &err), 0);
	struct policy_decision d;
	policy_slice_decide_inbound(s, TD "/ns/dev/sa/tool", NULL, 80, &d);
	assert_int_equal(d.verdict, POLICY_DENY);
	assert_string_equal(d.rule, "GuardrailPolicy/g#0");
	policy_slice_unref(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_guardrails),	  cmocka_unit_test(test_selectors),
		cmocka_unit_test(test_mesh_tighten_only), cmocka_unit_test(test_egress_modes),
		cmocka_unit_test(test_guard_peers),	  cmocka_unit_test(test_bad_documents),
		cmocka_unit_test(test_snapshot_rules),
	};
	return cmocka_run_group_tests(tests, pfixture_setup, pfixture_teardown);
}
