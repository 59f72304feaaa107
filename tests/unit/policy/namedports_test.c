/* namedports_test: named ports in AllowPolicy and GuardrailPolicy rules
 * (issue #18), with Kubernetes NetworkPolicy's meaning: a name is the
 * destination workload's TCP container port of that name, resolved per
 * workload by compile into the snapshot's port ranges.
 *
 * Each case attacks one promise: a name opens its number on the workload
 * that has it and nothing else; two workloads with one name on different
 * numbers each open their own; a workload without the name (or with it on
 * UDP only) is reached on no port by that rule, neither in its own slice
 * nor in its callers' peer lists (no ranges would mean every port); a
 * guardrail's named port denies on the number only; names that are not
 * IANA_SVC_NAMEs, in policies and in Workloads, are refused with their
 * place. Plain files in a temporary directory, through the library as the
 * agent uses it. */
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

#include "pfixture.h"
#include "policy.h"

#define TD "spiffe://cluster.local"
#define HDR "apiVersion: cinch.dev/v1alpha1\n"

/* shop: web (no ports), api (http 8080, metrics 9090, dns UDP 53), api2
 * (http 8081), db (pg 5432, no http). */
static const char *const WORLD =
	HDR "kind: Workload\nmetadata: {name: web, namespace: shop}\n"
	"spec: {serviceAccount: web, addresses: [\"10.4.0.1\"]}\n---\n" HDR
	"kind: Workload\nmetadata: {name: api, namespace: shop}\n"
	"spec:\n  serviceAccount: api\n  addresses: [\"10.4.0.2\"]\n"
	"  ports:\n    - {name: http, containerPort: 8080}\n"
	"    - {name: metrics, containerPort: 9090, protocol: TCP}\n"
	"    - {name: dns, containerPort: 53, protocol: UDP}\n"
	"    - {containerPort: 7000}\n---\n" HDR
	"kind: Workload\nmetadata: {name: api2, namespace: shop}\n"
	"spec:\n  serviceAccount: api\n  addresses: [\"10.4.0.3\"]\n"
	"  ports: [{name: http, containerPort: 8081}]\n---\n" HDR
	"kind: Workload\nmetadata: {name: db, namespace: shop}\n"
	"spec:\n  serviceAccount: db\n  addresses: [\"10.4.0.4\"]\n"
	"  ports: [{name: pg, containerPort: 5432}]\n";

static const char *const POLICY =
	HDR "kind: AllowPolicy\nmetadata: {name: named, namespace: shop}\n"
	"spec:\n  selector: {workloads: [api, api2, db]}\n  ports: [http, dns]\n"
	"  from: [{identities: [\"" TD "/ns/shop/sa/web\"]}]\n---\n" HDR
	"kind: AllowPolicy\nmetadata: {name: web, namespace: shop}\n"
	"spec:\n  selector: {workloads: [web]}\n  from: [{namespaces: [shop]}]\n---\n" HDR
	"kind: GuardrailPolicy\nmetadata: {name: no-metrics}\n"
	"spec:\n  priority: 5\n  subject: {namespaceSelector: {}}\n"
	"  rules: [{action: deny, ports: [metrics]}]\n---\n" HDR
	"kind: AllowPolicy\nmetadata: {name: all, namespace: shop}\n"
	"spec:\n  selector: {workloads: [api]}\n"
	"  from: [{identities: [\"" TD "/ns/shop/sa/db\"]}]\n";

/* Inbound at each destination: the name opens its own number there. */
static void test_inbound(void **state)
{
	static const struct {
		const char *self, *caller;
		uint16_t port;
		enum policy_verdict verdict;
		const char *rule;
	} c[] = {
		{"shop/api", TD "/ns/shop/sa/web", 8080, POLICY_ALLOW, "shop/named#0"},
		{"shop/api", TD "/ns/shop/sa/web", 8081, POLICY_DENY, NULL},
		{"shop/api2", TD "/ns/shop/sa/web", 8081, POLICY_ALLOW, "shop/named#0"},
		{"shop/api2", TD "/ns/shop/sa/web", 8080, POLICY_DENY, NULL},
		/* a UDP port's name opens no TCP port */
		{"shop/api", TD "/ns/shop/sa/web", 53, POLICY_DENY, NULL},
		/* db has no http: the rule opens nothing there, on no port */
		{"shop/db", TD "/ns/shop/sa/web", 5432, POLICY_DENY, NULL},
		{"shop/db", TD "/ns/shop/sa/web", 8080, POLICY_DENY, NULL},
		{"shop/db", TD "/ns/shop/sa/web", 1, POLICY_DENY, NULL},
		{"shop/db", TD "/ns/shop/sa/web", 65535, POLICY_DENY, NULL},
		{"shop/db", TD "/ns/shop/sa/web", 0, POLICY_DENY, NULL},
		/* the guardrail's named port: 9090 on api, and only it */
		{"shop/api", TD "/ns/shop/sa/db", 9090, POLICY_DENY, "GuardrailPolicy/no-metrics#0"},
		{"shop/api", TD "/ns/shop/sa/db", 9091, POLICY_ALLOW, "shop/all#0"},
		{"shop/api", TD "/ns/shop/sa/db", 8080, POLICY_ALLOW, "shop/all#0"},
	};
	int failed = 0;

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct policy_slice *s = pfixture_must_load(POLICY, WORLD, c[i].self);
		struct sockaddr_storage src = pfixture_addr("10.9.0.1");
		struct policy_decision d;
		policy_slice_decide_inbound(s, c[i].caller, (struct sockaddr *)&src, c[i].port, &d);
		if (d.verdict != c[i].verdict || (c[i].rule == NULL) != (d.rule == NULL) ||
		    (d.rule && strcmp(d.rule, c[i].rule))) {
			print_error("case %zu (%s <- %s:%u): %s by %s (%s)\n", i, c[i].self,
				    c[i].caller, c[i].port, policy_verdict_name(d.verdict),
				    d.rule ? d.rule : "(none)", d.reason);
			failed++;
		}
		policy_slice_unref(s);
	}
	assert_int_equal(failed, 0);
}

/* The caller's side: web's peer list carries each destination's own
 * number, and db (no http) as a peer on no port, not on every port. */
static void test_peers(void **state)
{
	static const struct {
		const char *ip;
		uint16_t port;
		int allowed;
	} c[] = {
		{"10.4.0.2", 8080, 1}, {"10.4.0.2", 8081, 0}, {"10.4.0.2", 53, 0},
		{"10.4.0.3", 8081, 1}, {"10.4.0.3", 8080, 0}, {"10.4.0.4", 5432, 0},
		{"10.4.0.4", 8080, 0}, {"10.4.0.4", 1, 0},
	};
	struct policy_slice *s = pfixture_must_load(POLICY, WORLD, "shop/web");
	int failed = 0;

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct sockaddr_storage dst = pfixture_addr(c[i].ip);
		struct policy_decision d = {0};
		const char *id = policy_slice_peer(s, (struct sockaddr *)&dst, c[i].port, &d);
		int allowed = id && d.verdict == POLICY_ALLOW;
		if (allowed != c[i].allowed) {
			print_error("case %zu (web -> %s:%u): %s %s\n", i, c[i].ip, c[i].port,
				    id ? id : "not a peer", policy_verdict_name(d.verdict));
			failed++;
		}
	}
	policy_slice_unref(s);
	assert_int_equal(failed, 0);
}

/* Names that are not IANA_SVC_NAMEs: refused with their place. */
static void test_bad_names(void **state)
{
	static const char *const bad[] = {
		"HTTP", "a--b", "-http", "http-", "abcdefghijklmnop", "h_t", "ht.p", "\"\"",
	};
	char doc[4096];
	int failed = 0;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct policy_error err;
		snprintf(doc, sizeof(doc),
			 HDR "kind: AllowPolicy\nmetadata: {name: p, namespace: shop}\n"
			     "spec:\n  selector: {}\n  ports: [8080, %s]\n"
			     "  from: [{namespaces: [shop]}]\n",
			 bad[i]);
		struct policy_slice *s = pfixture_load(doc, WORLD, "shop/api", &err);
		if (s || err.line != 6 || err.column != 17 || strcmp(err.path, "spec.ports[1]") ||
		    !strstr(err.msg, bad[i][0] != '"' ? "not a port name" : "not a port")) {
			print_error("policy %s: %d:%d %s: %s\n", bad[i], err.line, err.column,
				    err.path, err.msg);
			failed++;
		}
		policy_slice_unref(s);
		/* the same name on a workload's port */
		snprintf(doc, sizeof(doc),
			 "%s---\n" HDR "kind: Workload\nmetadata: {name: x, namespace: shop}\n"
			 "spec:\n  serviceAccount: x\n  addresses: [\"10.4.0.9\"]\n"
			 "  ports: [{containerPort: 80, name: %s}]\n",
			 WORLD, bad[i]);
		s = pfixture_load(POLICY, doc, "shop/api", &err);
		if (s || err.line != 40 || err.column != 37 ||
		    strcmp(err.path, "spec.ports[0].name") || !strstr(err.msg, "not a port name")) {
			print_error("workload %s: %d:%d %s: %s\n", bad[i], err.line, err.column,
				    err.path, err.msg);
			failed++;
		}
		policy_slice_unref(s);
	}
	/* fifteen characters, digits and single dashes: a name */
	struct policy_error err;
	struct policy_slice *s =
		pfixture_load(HDR "kind: AllowPolicy\nmetadata: {name: p, namespace: shop}\n"
				  "spec: {selector: {}, ports: [a-1-b-2-c-3-d45], from: "
				  "[{namespaces: [shop]}]}\n",
			      WORLD, "shop/api", &err);
	if (!s) {
		print_error("valid name refused: %s: %s\n", err.path, err.msg);
		failed++;
	}
	policy_slice_unref(s);
	/* an EgressPolicy's destination is no workload: no names there */
	s = pfixture_load(HDR
			  "kind: EgressPolicy\nmetadata: {name: e, namespace: shop}\n"
			  "spec: {selector: {}, to: [{cidrs: [\"10.8.0.0/16\"], ports: [http]}]}\n",
			  WORLD, "shop/api", &err);
	if (s || !strstr(err.msg, "not a port")) {
		print_error("egress name: %s: %s\n", err.path, err.msg);
		failed++;
	}
	policy_slice_unref(s);
	/* a name needs a letter: "8080" would read as the number in a policy */
	s = pfixture_load(
		POLICY,
		HDR "kind: Workload\nmetadata: {name: x, namespace: shop}\n"
		    "spec: {serviceAccount: x, addresses: [\"10.4.0.9\"], ports: [{name: \"8-0\", "
		    "containerPort: 80}]}\n",
		"shop/x", &err);
	if (s || !strstr(err.msg, "not a port name")) {
		print_error("digits only: %s: %s\n", err.path, err.msg);
		failed++;
	}
	policy_slice_unref(s);
	/* a workload's port: a number and a known protocol */
	s = pfixture_load(POLICY,
			  HDR
			  "kind: Workload\nmetadata: {name: x, namespace: shop}\n"
			  "spec: {serviceAccount: x, addresses: [\"10.4.0.9\"], ports: [{name: a, "
			  "containerPort: 80, protocol: ICMP}]}\n",
			  "shop/x", &err);
	if (s || !strstr(err.msg, "not TCP, UDP or SCTP")) {
		print_error("protocol: %s: %s\n", err.path, err.msg);
		failed++;
	}
	policy_slice_unref(s);
	assert_int_equal(failed, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_inbound),
		cmocka_unit_test(test_peers),
		cmocka_unit_test(test_bad_names),
	};
	return cmocka_run_group_tests(tests, pfixture_setup, pfixture_teardown);
}
