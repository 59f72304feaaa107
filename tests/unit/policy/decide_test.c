/* decide_test: policy_slice_decide_inbound() against a plain reading of
 * docs/policy.md "The evaluation order".
 *
 * The evaluator answers from an index (hashed keys, lists of rules read
 * once per decision, ports kept beside the rules); this test builds
 * random snapshots (guardrail rules with deny, allow and pass, audit mode,
 * every kind of source, one port, a range, several, none, every port;
 * then namespace rules), asks every caller of a pool (IDs that a wildcard
 * or a namespace admits and ones a segment too deep, IDs that are not
 * SPIFFE IDs, plaintext callers from inside and outside the ipBlocks) on
 * several ports, and wants the verdict and the rule that the reference,
 * a loop over the rules in order with string compares, finds. A case that
 * once went wrong is kept on its own, from a snapshot and from policy
 * files: a plaintext caller refused by a guardrail's ipBlock deny placed
 * before an every-caller pass (the evaluator up to 2026-12-04 let it
 * through to the namespace's rules). */
#include <arpa/inet.h>
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
#include "pfixture.h"
#include "policy.h"
#include "spiffe.h"

#define TD	  "spiffe://cluster.local"
#define MAX_RULES 24
#define MAX_SRC	  3

struct tsrc {
	Cinch__V1__Source__KindCase kind;
	const char *text; /* an identity, a namespace or a CIDR */
};

struct trule {
	char id[16];
	int guard, audit;
	Cinch__V1__RuleAction action;
	size_t n_ports; /* 0: every port */
	uint16_t lo[2], hi[2];
	size_t n_src;
	struct tsrc src[MAX_SRC];
};

struct tset {
	int permissive, default_audit;
	size_t n_guard, n;
	struct trule r[MAX_RULES];
};

/* ---- the reference */

/* Does `id` (a SPIFFE ID) start with `prefix` and hold one segment more? */
static int ref_below(const char *id, const char *prefix)
{
	size_t n = strlen(prefix);
	return !strncmp(id, prefix, n) && id[n] && !strchr(id + n, '/');
}

static int ref_in_cidr(const char *cidr, const struct sockaddr *sa)
{
	char a[64];
	const char *slash = strchr(cidr, '/');
	unsigned bits = (unsigned)atoi(slash + 1);
	uint8_t net[16], addr[16];
	int v6 = strchr(cidr, ':') != NULL;

	snprintf(a, sizeof(a), "%.*s", (int)(slash - cidr), cidr);
	assert_int_equal(inet_pton(v6 ? AF_INET6 : AF_INET, a, net), 1);
	if (sa->sa_family != (v6 ? AF_INET6 : AF_INET))
		return 0;
	if (v6)
		memcpy(addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	else
		memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	for (unsigned i = 0; i < bits; i++)
		if ((net[i / 8] ^ addr[i / 8]) & (0x80 >> (i % 8)))
			return 0;
	return 1;
}

static int ref_admits(const struct tsrc *x, const char *id, int valid, const struct sockaddr *src)
{
	char prefix[128];
	size_t n;

	switch (x->kind) {
	case CINCH__V1__SOURCE__KIND_IDENTITY:
		n = strlen(x->text);
		if (!valid)
			return 0;
		if (n > 2 && !strcmp(x->text + n - 2, "/*")) {
			snprintf(prefix, sizeof(prefix), "%.*s", (int)(n - 1), x->text);
			return ref_below(id, prefix);
		}
		return !strcmp(id, x->text);
	case CINCH__V1__SOURCE__KIND_NAMESPACE:
		snprintf(prefix, sizeof(prefix), TD "/ns/%s/sa/", x->text);
		return valid && ref_below(id, prefix);
	case CINCH__V1__SOURCE__KIND_UNAUTHENTICATED_CIDR:
		return !id && src && ref_in_cidr(x->text, src);
	case CINCH__V1__SOURCE__KIND_ANY_CALLER:
		return 1;
	default:
		return 0;
	}
}

static int ref_port(const struct trule *r, uint16_t port)
{
	if (r->n_ports == 0)
		return 1;
	if (r->n_ports == 1 && r->lo[0] == 0)
		return 0; /* 0-0: no port */
	for (size_t i = 0; i < r->n_ports; i++)
		if (port >= r->lo[i] && port <= r->hi[i])
			return 1;
	return 0;
}

static void ref_decide(const struct tset *t, const char *id, const struct sockaddr *src,
		       uint16_t port, enum policy_verdict *v, const char **rule)
{
	int valid = id && spiffe_id_validate(id, strlen(id), NULL) == 0;
	const struct trule *audit = NULL, *hit = NULL;
	int any_enforce = 0;

	*rule = NULL;
	if (!id && !t->permissive) {
		*v = POLICY_DENY;
		return;
	}
	for (size_t i = t->n_guard; i < t->n; i++)
		any_enforce |= !t->r[i].audit;
	for (size_t i = 0; i < t->n && !hit; i++) {
		const struct trule *r = &t->r[i];
		int admits = 0;
		for (size_t k = 0; k < r->n_src; k++)
			admits |= ref_admits(&r->src[k], id, valid, src);
		if (!admits || !ref_port(r, port))
			continue;
		if (r->action == CINCH__V1__RULE_ACTION__RULE_ACTION_PASS)
			i = t->n_guard - 1; /* on to the namespace's rules */
		else if (r->action == CINCH__V1__RULE_ACTION__RULE_ACTION_DENY && r->audit)
			audit = audit ? audit : r;
		else
			hit = r;
	}
	if (hit) {
		int deny = hit->action == CINCH__V1__RULE_ACTION__RULE_ACTION_DENY;
		*v = deny ? POLICY_DENY : audit ? POLICY_AUDIT_DENY : POLICY_ALLOW;
		*rule = deny || !audit ? hit->id : audit->id;
	} else if (audit && (t->n > t->n_guard ? !any_enforce : t->default_audit)) {
		*v = POLICY_AUDIT_DENY;
		*rule = audit->id;
	} else {
		*v = any_enforce			     ? POLICY_DENY
		     : t->n > t->n_guard || t->default_audit ? POLICY_AUDIT_DENY
							     : POLICY_DENY;
	}
}

/* ---- the slice of a tset */

struct tsnap {
	Cinch__V1__Snapshot snap;
	Cinch__V1__Workload w;
	Cinch__V1__InboundRule rules[MAX_RULES], *rp[MAX_RULES];
	Cinch__V1__Source src[MAX_RULES][MAX_SRC], *sp[MAX_RULES][MAX_SRC];
	Cinch__V1__PortRange pr[MAX_RULES][2], *prp[MAX_RULES][2];
};

static struct policy_slice *tset_slice(const struct tset *t, struct tsnap *m)
{
	struct policy_slice *s = NULL;
	struct policy_error err;

	cinch__v1__snapshot__init(&m->snap);
	cinch__v1__workload__init(&m->w);
	m->w.namespace_ = "shop";
	m->w.name = "api";
	m->w.spiffe_id = TD "/ns/shop/sa/api";
	m->snap.version = "decide_test";
	m->snap.workload = &m->w;
	m->snap.mtls_mode = t->permissive ? CINCH__V1__MTLS_MODE__MTLS_MODE_PERMISSIVE
					  : CINCH__V1__MTLS_MODE__MTLS_MODE_STRICT;
	m->snap.default_action = t->default_audit ? CINCH__V1__DEFAULT_ACTION__DEFAULT_ACTION_AUDIT
						  : CINCH__V1__DEFAULT_ACTION__DEFAULT_ACTION_DENY;
	for (size_t i = 0; i < t->n; i++) {
		const struct trule *r = &t->r[i];
		Cinch__V1__InboundRule *d = &m->rules[i];
		cinch__v1__inbound_rule__init(d);
		d->id = (char *)r->id;
		d->guardrail = r->guard;
		d->mode = r->audit ? CINCH__V1__RULE_MODE__RULE_MODE_AUDIT
				   : CINCH__V1__RULE_MODE__RULE_MODE_ENFORCE;
		d->action = r->action;
		for (size_t k = 0; k < r->n_ports; k++) {
			cinch__v1__port_range__init(&m->pr[i][k]);
			m->pr[i][k].first = r->lo[k];
			m->pr[i][k].last = r->hi[k];
			m->prp[i][k] = &m->pr[i][k];
		}
		d->n_ports = r->n_ports;
		d->ports = m->prp[i];
		for (size_t k = 0; k < r->n_src; k++) {
			Cinch__V1__Source *x = &m->src[i][k];
			cinch__v1__source__init(x);
			x->kind_case = r->src[k].kind;
			if (x->kind_case == CINCH__V1__SOURCE__KIND_IDENTITY)
				x->identity = (char *)r->src[k].text;
			else if (x->kind_case == CINCH__V1__SOURCE__KIND_NAMESPACE)
				x->namespace_ = (char *)r->src[k].text;
			else if (x->kind_case == CINCH__V1__SOURCE__KIND_UNAUTHENTICATED_CIDR)
				x->unauthenticated_cidr = (char *)r->src[k].text;
			else
				x->any_caller = 1;
			m->sp[i][k] = x;
		}
		d->n_sources = r->n_src;
		d->sources = m->sp[i];
		m->rp[i] = d;
	}
	m->snap.n_inbound = t->n;
	m->snap.inbound = m->rp;
	if (policy_slice_from_snapshot(&s, &m->snap, &err) < 0)
		fail_msg("snapshot refused: %s: %s", err.path, err.msg);
	return s;
}

/* ---- the callers */

static const char *const CALLERS[] = {
	TD "/ns/a/sa/x", TD "/ns/a/sa/y", TD "/ns/b/sa/x",
	TD "/ns/a/sa/x/z", /* a segment below a wildcard of x, too deep for ns a */
	TD "/ns/a/sa", TD "/ns/A/sa/x", "spiffe://other/ns/a/sa/x",
	/* not SPIFFE IDs: only every-caller sources admit them */
	TD "/ns/a/sa/", TD "/ns/a/sa/.", TD "/ns/a/sa/..", TD "/ns/a//sa/x",
	"spiffe://Cluster.local/ns/a/sa/x", "SPIFFE://cluster.local/ns/a/sa/x", "", "not an id",
	NULL, /* plaintext, from each of ADDRS */
};
static const char *const ADDRS[] = {"10.1.2.3", "10.2.0.1", "192.168.1.7", "172.16.0.1",
				    "::1",	"::2",	    NULL};
static const uint16_t PORTS[] = {1, 80, 8080, 8085, 8091, 9100};

/* Every caller on every port: the number of answers unlike the
 * reference's, the first few printed. */
static int compare(const struct tset *t)
{
	struct tsnap *m = calloc(1, sizeof(*m));
	int bad = 0;

	assert_non_null(m);
	struct policy_slice *s = tset_slice(t, m);
	for (size_t c = 0; c < sizeof(CALLERS) / sizeof(CALLERS[0]); c++)
		for (size_t a = 0; a < (CALLERS[c] ? 1 : sizeof(ADDRS) / sizeof(ADDRS[0])); a++) {
			struct sockaddr_storage ss;
			const struct sockaddr *src = NULL;
			if (!CALLERS[c] && ADDRS[a]) {
				ss = pfixture_addr(ADDRS[a]);
				src = (const struct sockaddr *)&ss;
			}
			for (size_t p = 0; p < sizeof(PORTS) / sizeof(PORTS[0]); p++) {
				struct policy_decision d;
				enum policy_verdict v;
				const char *rule;
				policy_slice_decide_inbound(s, CALLERS[c], src, PORTS[p], &d);
				ref_decide(t, CALLERS[c], src, PORTS[p], &v, &rule);
				if (d.verdict == v && (d.rule == NULL) == (rule == NULL) &&
				    (!rule || !strcmp(d.rule, rule)))
					continue;
				if (bad++ < 5)
					print_error(
						"%s from %s on %u: %s by %s (%s), the reference "
						"says %s by %s\n",
						CALLERS[c] ? CALLERS[c] : "plaintext",
						ADDRS[a] ? ADDRS[a] : "nowhere", PORTS[p],
						policy_verdict_name(d.verdict),
						d.rule ? d.rule : "(none)", d.reason,
						policy_verdict_name(v), rule ? rule : "(none)");
			}
		}
	policy_slice_unref(s);
	free(m);
	return bad;
}

/* ---- random sets */

static uint64_t rng_state = 0x243f6a8885a308d3ULL;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

#define PICK(a) (a)[rng() % (sizeof(a) / sizeof((a)[0]))]

static void random_rule(struct trule *r, size_t i, int guard)
{
	static const char *const ids[] = {
		TD "/ns/a/sa/x",
		TD "/ns/a/sa/y",
		TD "/ns/b/sa/x",
		TD "/ns/a/sa/*",
		TD "/ns/b/sa/*",
		TD "/ns/a/sa/x/*",
		TD "/ns/a/*",
		TD "/ns/A/sa/x",
		"spiffe://other/ns/a/sa/x",
		"spiffe://other/ns/a/sa/*",
	};
	static const char *const nss[] = {"a", "b", "A", "c"};
	static const char *const cidrs[] = {"10.0.0.0/8", "10.1.0.0/16", "192.168.1.0/24",
					    "::1/128", "0.0.0.0/0"};
	static const Cinch__V1__RuleAction actions[] = {
		CINCH__V1__RULE_ACTION__RULE_ACTION_ALLOW,
		CINCH__V1__RULE_ACTION__RULE_ACTION_DENY,
		CINCH__V1__RULE_ACTION__RULE_ACTION_PASS,
	};

	memset(r, 0, sizeof(*r));
	snprintf(r->id, sizeof(r->id), "%s#%zu", guard ? "g" : "n", i);
	r->guard = guard;
	r->audit = rng() % 3 == 0;
	r->action = guard ? PICK(actions) : CINCH__V1__RULE_ACTION__RULE_ACTION_ALLOW;
	switch (rng() % 6) {
	case 0: /* every port */
		break;
	case 1:
		r->n_ports = 1, r->lo[0] = r->hi[0] = 8080;
		break;
	case 2:
		r->n_ports = 1, r->lo[0] = 8080, r->hi[0] = 8090;
		break;
	case 3:
		r->n_ports = 2, r->lo[0] = r->hi[0] = 80, r->lo[1] = r->hi[1] = 8085;
		break;
	case 4: /* 0-0: a named port the workload lacks */
		r->n_ports = 1;
		break;
	default:
		r->n_ports = 1, r->lo[0] = r->hi[0] = 9100;
	}
	r->n_src = rng() % (MAX_SRC + 1);
	if (guard && r->n_src == 0)
		r->n_src = 1;
	for (size_t k = 0; k < r->n_src; k++) {
		struct tsrc *x = &r->src[k];
		switch (rng() % (guard ? 5 : 4)) {
		case 0:
		case 1:
			x->kind = CINCH__V1__SOURCE__KIND_IDENTITY, x->text = PICK(ids);
			break;
		case 2:
			x->kind = CINCH__V1__SOURCE__KIND_NAMESPACE, x->text = PICK(nss);
			break;
		case 3:
			x->kind = CINCH__V1__SOURCE__KIND_UNAUTHENTICATED_CIDR,
			x->text = PICK(cidrs);
			break;
		default:
			x->kind = CINCH__V1__SOURCE__KIND_ANY_CALLER;
		}
	}
}

static void test_random_sets(void **state)
{
	int bad = 0;

	for (int n = 0; n < 3000 && !bad; n++) {
		struct tset t = {0};
		t.permissive = rng() % 4 != 0;
		t.default_audit = rng() % 2;
		t.n_guard = rng() % 6;
		t.n = t.n_guard + rng() % (MAX_RULES - t.n_guard);
		if (rng() % 4 == 0)
			t.n = t.n_guard; /* no namespace rule: the default decides */
		for (size_t i = 0; i < t.n; i++)
			random_rule(&t.r[i], i, i < t.n_guard);
		bad = compare(&t);
		if (bad)
			print_error("in set %d\n", n);
	}
	assert_int_equal(bad, 0);
}

/* A guardrail's deny of an ipBlock, then a pass of every caller: the
 * plaintext caller from that block is refused; from elsewhere it goes on
 * to the namespace's rule. */
static void test_cidr_deny_before_pass(void **state)
{
	struct tset t = {.permissive = 1, .n_guard = 2, .n = 3};
	struct trule *r = t.r;

	r[0] = (struct trule){.id = "g#0",
			      .guard = 1,
			      .action = CINCH__V1__RULE_ACTION__RULE_ACTION_DENY,
			      .n_src = 1};
	r[0].src[0] = (struct tsrc){CINCH__V1__SOURCE__KIND_UNAUTHENTICATED_CIDR, "10.0.0.0/8"};
	r[1] = (struct trule){.id = "g#1",
			      .guard = 1,
			      .action = CINCH__V1__RULE_ACTION__RULE_ACTION_PASS,
			      .n_src = 1};
	r[1].src[0] = (struct tsrc){CINCH__V1__SOURCE__KIND_ANY_CALLER, NULL};
	r[2] = (struct trule){
		.id = "n#2", .action = CINCH__V1__RULE_ACTION__RULE_ACTION_ALLOW, .n_src = 1};
	r[2].src[0] = (struct tsrc){CINCH__V1__SOURCE__KIND_UNAUTHENTICATED_CIDR, "0.0.0.0/0"};
	assert_int_equal(compare(&t), 0);

	struct tsnap *m = calloc(1, sizeof(*m));
	assert_non_null(m);
	struct policy_slice *s = tset_slice(&t, m);
	struct sockaddr_storage in = pfixture_addr("10.1.2.3"), out = pfixture_addr("192.168.1.7");
	struct policy_decision d;
	policy_slice_decide_inbound(s, NULL, (struct sockaddr *)&in, 8080, &d);
	assert_int_equal(d.verdict, POLICY_DENY);
	assert_string_equal(d.rule, "g#0");
	policy_slice_decide_inbound(s, NULL, (struct sockaddr *)&out, 8080, &d);
	assert_int_equal(d.verdict, POLICY_ALLOW);
	assert_string_equal(d.rule, "n#2");
	policy_slice_unref(s);
	free(m);
}

/* The same through files, as an operator writes it: a PERMISSIVE mesh, a
 * guardrail denying a legacy ipBlock then passing everyone, a namespace
 * admitting 10.0.0.0/8 in plaintext. */
static void test_cidr_deny_before_pass_files(void **state)
{
	static const char *const world =
		"apiVersion: cinch.dev/v1alpha1\nkind: Workload\n"
		"metadata: {name: api, namespace: shop, labels: {app: api}}\n"
		"spec: {serviceAccount: api, addresses: [\"10.3.0.2\"]}\n";
	static const char *const policy =
		"apiVersion: cinch.dev/v1alpha1\nkind: MeshPolicy\nmetadata: {name: mesh}\n"
		"spec: {mtls: PERMISSIVE}\n---\n"
		"apiVersion: cinch.dev/v1alpha1\nkind: GuardrailPolicy\n"
		"metadata: {name: no-legacy}\nspec:\n  priority: 10\n  subject: "
		"{namespaceSelector: {}}\n"
		"  rules:\n    - {action: deny, from: [{unauthenticated: {ipBlocks: "
		"[10.9.0.0/16]}}]}\n    - {action: pass}\n---\n"
		"apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\n"
		"metadata: {name: plain, namespace: shop}\n"
		"spec:\n  selector: {matchLabels: {app: api}}\n"
		"  from: [{unauthenticated: {ipBlocks: [10.0.0.0/8]}}]\n";
	struct policy_slice *s = pfixture_must_load(policy, world, "shop/api");
	struct policy_decision d;

	(void)state;
	struct sockaddr_storage legacy = pfixture_addr("10.9.0.5"),
				other = pfixture_addr("10.1.0.5");
	policy_slice_decide_inbound(s, NULL, (struct sockaddr *)&legacy, 8080, &d);
	assert_int_equal(d.verdict, POLICY_DENY);
	assert_string_equal(d.rule, "GuardrailPolicy/no-legacy#0");
	policy_slice_decide_inbound(s, NULL, (struct sockaddr *)&other, 8080, &d);
	assert_int_equal(d.verdict, POLICY_ALLOW);
	assert_string_equal(d.rule, "shop/plain#0");
	policy_slice_unref(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cidr_deny_before_pass),
		cmocka_unit_test(test_cidr_deny_before_pass_files),
		cmocka_unit_test(test_random_sets),
	};
	return cmocka_run_group_tests(tests, pfixture_setup, pfixture_teardown);
}
