/* ctl_policy: `cinchctl policy check`, `lint`, `test` and `explain`, on
 * files, with the same library the agents enforce with (policy/);
 * `whatif` is ctl_whatif.c. */
#include "ctl.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile.h"
#include "ksvc.h"
#include "model.h"
#include "numarg.h"
#include "pdoc.h"
#include "policy.h"
#include "spiffe.h"

static const char *ctl_policy_usage =
	"usage: cinchctl policy check [--policy PATH] [--workloads PATH] [PATH...]\n"
	"       cinchctl policy lint [--policy PATH] [--workloads PATH] [PATH...]\n"
	"       cinchctl policy test FILE --policy PATH --workloads PATH\n"
	"       cinchctl policy explain --policy PATH --workloads PATH\n"
	"                               --from SPIFFE-ID|IP --to NS/WORKLOAD --port N\n"
	"       cinchctl policy explain ... --to svc/NS/SERVICE --port N\n"
	"       cinchctl policy whatif --flows FILE... --policy PATH... --workloads PATH...\n"
	"\n"
	"A PATH is a file, a directory of them (kustomization.yaml skipped) or -\n"
	"for stdin; what `kubectl get -o yaml|json` prints is read as it is.\n"
	"--from-cluster [--kubeconfig FILE] reads the AllowPolicy, MeshPolicy and\n"
	"EgressPolicy objects and the injected pods (as Workloads) of the cluster,\n"
	"in place of --policy and --workloads where those are not given.\n"
	"\n"
	"check: validates policy and workload files (or directories of them) as one\n"
	"set; exit 0 when valid, 1 with the exact place of the first error.\n"
	"explain: would this connection flow? Prints the verdict, the rule that made\n"
	"it or why none did; exit 0 when it would flow, 1 when denied, 2 on error\n"
	"(as `kubectl auth can-i`). To a Service (svc/NS/NAME, a v1 Service and its\n"
	"EndpointSlices among the files): through its port mapping, one verdict per\n"
	"endpoint on its target port; it flows when a ready endpoint allows it.\n"
	"lint: rules that select no workload, shadowed rules, grants of whole\n"
	"namespaces or of everyone, rules on every port, workloads no rule covers;\n"
	"exit 1 when it found any.\n"
	"test: runs a file of cases (cases: [{name, from, to, port, expect, rule}],\n"
	"expect allow|deny|audit-deny) against the policy; exit 1 when one fails.\n"
	"whatif: replays agents' access logs against the policy, prints the flows\n"
	"whose verdict would change; exit 1 when one allowed today would be refused\n"
	"(cinchctl policy whatif --help).\n"
	"Every verb takes --help (this text, exit 0).\n";

/* `--help` or `-h` anywhere among a verb's arguments: the usage on stdout
 * (asked for, so not an error), before any option parsing complains. */
static int ctl_wants_help(int argc, char **argv)
{
	for (int i = 2; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(ctl_policy_usage, stdout);
			return 1;
		}
	return 0;
}

/* A caller: a SPIFFE ID (*id, validated: the TLS layer only ever hands
 * the policy valid ones) or an IP address (*src, then *id NULL). NULL, or
 * why it is neither (static). */
static const char *ctl_caller(const char *from, const char **id, struct sockaddr_storage *src)
{
	const char *why = NULL;

	memset(src, 0, sizeof(*src));
	*id = NULL;
	if (!strncmp(from, "spiffe://", 9)) {
		if (spiffe_id_validate(from, strlen(from), &why) < 0)
			return why;
		*id = from;
	} else if (inet_pton(AF_INET, from, &((struct sockaddr_in *)src)->sin_addr) == 1) {
		src->ss_family = AF_INET;
	} else if (inet_pton(AF_INET6, from, &((struct sockaddr_in6 *)src)->sin6_addr) == 1) {
		src->ss_family = AF_INET6;
	} else {
		return "neither a SPIFFE ID nor an IP address";
	}
	return NULL;
}

void ctl_policy_err(const struct policy_error *e)
{
	if (e->file[0] && e->line)
		fprintf(stderr, "%s:%d:%d: ", ctl_display_path(e->file), e->line, e->column);
	else if (e->file[0])
		fprintf(stderr, "%s: ", ctl_display_path(e->file));
	if (e->path[0])
		fprintf(stderr, "%s: ", e->path);
	fprintf(stderr, "%s\n", e->msg);
}

int ctl_from_cluster(const char *kubeconfig, char *p, char *w)
{
	struct ctl_kube *k = ctl_kube_open(kubeconfig);
	int rc = k && ctl_cluster_policy(k, p, w, 32) == 0 ? 0 : 2;

	ctl_kube_close(k);
	if (rc == 0) {
		ctl_name_path(p, "cluster:policies");
		ctl_name_path(w, "cluster:workloads");
	}
	return rc;
}

/* The --policy and --workloads of explain and test: with --from-cluster,
 * the cluster's for those not given, fetched into cp and cw (ctl_from_cluster's
 * buffers, which *policy and *workloads may then point into). 0, or 2 after
 * printing why. */
static int ctl_policy_files(const char *cmd, int cluster, const char *kubeconfig,
			    const char **policy, const char **workloads, char *cp, char *cw)
{
	if (cluster && (!*policy || !*workloads)) {
		if (ctl_from_cluster(kubeconfig, cp, cw))
			return 2;
		*policy = *policy ? *policy : cp;
		*workloads = *workloads ? *workloads : cw;
	}
	if (!*policy || !*workloads)
		return ctl_usage_error(cmd, "missing %s", !*policy ? "--policy" : "--workloads");
	return 0;
}

/* check and lint take paths as arguments, and --policy / --workloads
 * like the other verbs; a path given twice is read once. 0 when loaded,
 * 1 with *err (ctl_load_failed set), 2 on a usage error (printed). */
static int ctl_load_failed;
static int ctl_loaded_cluster; /* the set holds the cluster's pods */

static int ctl_load_set(struct pset *s, int argc, char **argv, struct policy_error *err)
{
	const char *seen[64], *kubeconfig = NULL;
	size_t n_seen = 0;
	char cmd[32];
	static char cp[32], cw[32];
	int cluster = 0;

	snprintf(cmd, sizeof(cmd), "policy %s", argv[1]);
	ctl_load_failed = 0;
	for (int i = 2; i < argc; i++) {
		const char *path = argv[i];
		if (!strcmp(path, "--from-cluster")) {
			cluster = 1;
			continue;
		}
		if (!strcmp(path, "--kubeconfig")) {
			if (++i == argc)
				return ctl_usage_error(cmd, "%s needs a value", path);
			kubeconfig = argv[i];
			continue;
		}
		if (!strcmp(path, "--policy") || !strcmp(path, "--workloads")) {
			if (++i == argc)
				return ctl_usage_error(cmd, "%s needs a value", path);
			path = argv[i];
		} else if (path[0] == '-' && path[1]) {
			return ctl_usage_error(cmd, "unknown flag %s", path);
		}
		if (!(path = ctl_path(path))) {
			fprintf(stderr, "cinchctl %s: -: cannot read standard input\n", cmd);
			return 2;
		}
		int dup = 0;
		for (size_t k = 0; k < n_seen && !dup; k++)
			dup = !strcmp(seen[k], path);
		if (dup)
			continue;
		if (n_seen < 64)
			seen[n_seen++] = path;
		if (pset_add_path(s, path, err) < 0) {
			ctl_load_failed = 1;
			return 1;
		}
	}
	if (kubeconfig && !cluster)
		return ctl_usage_error(cmd, "--kubeconfig goes with --from-cluster");
	ctl_loaded_cluster = cluster;
	if (cluster) {
		if (ctl_from_cluster(kubeconfig, cp, cw))
			return 2;
		if (pset_add_path(s, cp, err) < 0 || pset_add_path(s, cw, err) < 0) {
			ctl_load_failed = 1;
			return 1;
		}
		n_seen++;
	}
	if (n_seen == 0)
		return ctl_usage_error(cmd, "missing a PATH (files, directories or - for stdin)");
	return 0;
}

/* The validated set the arguments name; NULL after printing why, with
 * *status 2 for a usage error or `invalid` for an invalid set. */
static struct pset *ctl_open_set(int argc, char **argv, int invalid, int *status)
{
	struct pset *s = pset_new(POLICY_TRUST_DOMAIN_DEFAULT);
	struct policy_error err;
	int rc;

	*status = 2;
	if (!s)
		return NULL;
	rc = ctl_load_set(s, argc, argv, &err);
	if (rc != 2 && (ctl_load_failed || pset_finish(s, &err) < 0)) {
		ctl_policy_err(&err);
		rc = 1;
		*status = invalid;
	}
	if (rc != 0) {
		pset_free(s);
		return NULL;
	}
	return s;
}

/* In a cluster a workload is a pod, named anew by every rollout: a
 * selector naming workloads matches today's pods and nothing after the
 * next deployment. check says so (a warning: the set is still valid). */
static void ctl_warn_pod_name(const char *kind, const char *ns, const char *name,
			      const struct pwhere *w, const struct pselector *sel)
{
	if (sel->n_workloads)
		fprintf(stderr,
			"%s:%d: warning: %s %s/%s selects workloads by name; in a cluster they "
			"are pods, renamed by every rollout: select them by matchLabels\n",
			ctl_display_path(w->file), w->line, kind, ns, name);
}

static void ctl_warn_pod_names(const struct pset *s)
{
	for (size_t i = 0; i < s->n_allow; i++)
		ctl_warn_pod_name("AllowPolicy", s->allow[i].ns, s->allow[i].name,
				  &s->allow[i].where, &s->allow[i].sel);
	for (size_t i = 0; i < s->n_egress; i++)
		ctl_warn_pod_name("EgressPolicy", s->egress[i].ns, s->egress[i].name,
				  &s->egress[i].where, &s->egress[i].sel);
}

static int ctl_policy_check(int argc, char **argv)
{
	int status;
	struct pset *s;

	if (ctl_wants_help(argc, argv))
		return 0;
	if (!(s = ctl_open_set(argc, argv, 1, &status)))
		return status;
	if (ctl_loaded_cluster)
		ctl_warn_pod_names(s);
	printf("ok: %zu AllowPolicies, %zu MeshPolicies, %zu EgressPolicies, %zu Workloads",
	       s->n_allow, s->n_mesh, s->n_egress, s->n_workloads);
	if (s->n_guards)
		printf(", %zu GuardrailPolicies", s->n_guards);
	if (s->n_namespaces)
		printf(", %zu Namespaces", s->n_namespaces);
	printf("\n");
	pset_free(s);
	return 0;
}

/* The ports of rule `id` ("<ns>/<policy>#<i>" or "GuardrailPolicy/<name>#<i>"),
 * NULL when the set has no such rule. */
static const struct pports *ctl_rule_ports(const struct pset *set, const char *id)
{
	const char *hash = strrchr(id, '#'), *slash = strchr(id, '/');
	char *end;

	if (!hash || !slash || slash > hash)
		return NULL;
	unsigned long i = strtoul(hash + 1, &end, 10);
	if (*end)
		return NULL;
	size_t nl = (size_t)(slash - id), ml = (size_t)(hash - slash - 1);
	if (!strncmp(id, "GuardrailPolicy/", 16)) {
		for (size_t g = 0; g < set->n_guards; g++)
			if (strlen(set->guards[g].name) == ml &&
			    !strncmp(set->guards[g].name, slash + 1, ml) && i < set->guards[g].n_rules)
				return &set->guards[g].rules[i].ports;
		return NULL;
	}
	for (size_t a = 0; a < set->n_allow; a++) {
		const struct pallow *x = &set->allow[a];
		if (strlen(x->ns) == nl && !strncmp(x->ns, id, nl) && strlen(x->name) == ml &&
		    !strncmp(x->name, slash + 1, ml))
			return &x->ports;
	}
	return NULL;
}

/* "  names:  http -> 8080; dns -> none ..." for a rule that names ports:
 * what each name is on the destination w. */
static void ctl_port_names(const struct pset *set, const struct pworkload *w, const char *id,
			   const char *indent)
{
	const struct pports *p = set && w && id ? ctl_rule_ports(set, id) : NULL;

	if (!p || !p->n_named)
		return;
	printf("%snames:  ", indent);
	for (size_t i = 0, shown = 0; i < p->n; i++) {
		if (!p->r[i].name)
			continue;
		printf("%s%s ->", shown++ ? "; " : "", p->r[i].name);
		int found = 0;
		for (size_t k = 0; k < w->n_ports; k++)
			if (w->ports[k].tcp && !strcmp(w->ports[k].name, p->r[i].name))
				printf("%s %u", found++ ? "," : "", w->ports[k].port);
		if (!found)
			printf(" none (%s/%s has no TCP port of that name)", w->ns, w->name);
	}
	printf("\n");
}

/* Rules that almost matched a denied connection: one of the two
 * conditions (ports, source) held. At most three are shown. */
struct ctl_near {
	unsigned shown;
	uint16_t port;
	const struct pset *set; /* for the rules' port names (NULL: none shown) */
	const struct pworkload *w;
};

static void ctl_near_rule(void *arg, const char *rule, int port_match, int source_match)
{
	struct ctl_near *n = arg;
	/* a guardrail's rule is not one to widen: it names itself when it decides */
	if (port_match == source_match || n->shown == 3 || !strncmp(rule, "GuardrailPolicy/", 16))
		return;
	printf("  near:   %s %s\n", rule,
	       source_match ? "admits this caller, but not on this port"
			    : "covers this port, but does not admit this caller");
	ctl_port_names(n->set, n->w, rule, "          ");
	n->shown++;
}

/* One endpoint of a Service call, decided as its agent would: 1 when it
 * would take the call. */
static int ctl_explain_endpoint(const struct pset *set, const char *policy, const char *workloads,
				const char *id, const struct sockaddr_storage *src,
				const struct kslice_ep *e, uint16_t target)
{
	struct sockaddr_storage a = {.ss_family = (sa_family_t)e->addrs[0].family};
	const char *state = e->ready ? "ready" : e->serving ? "serving, not ready" : "not ready";
	char self[600];

	if (a.ss_family == AF_INET)
		memcpy(&((struct sockaddr_in *)&a)->sin_addr, e->addrs[0].addr, 4);
	else
		memcpy(&((struct sockaddr_in6 *)&a)->sin6_addr, e->addrs[0].addr, 16);
	printf("  endpoint %s (%s) -> port %u: ", e->addrs[0].text, state, target);
	if (!target) {
		printf("does not serve this port\n");
		return 0;
	}
	const struct pworkload *w = pcompile_find(set, NULL, &a, 1);
	if (!w) {
		printf("outside the mesh: the caller's egress rules decide\n");
		return e->ready;
	}
	snprintf(self, sizeof(self), "%s/%s", w->ns, w->name);
	struct policy_slice *s = NULL;
	struct policy_error err;
	if (policy_slice_load(&s, POLICY_TRUST_DOMAIN_DEFAULT, policy, workloads, self, NULL, 0,
			      &err) < 0) {
		printf("error\n");
		ctl_policy_err(&err);
		return 0;
	}
	struct policy_decision d;
	policy_slice_decide_inbound(s, id, id ? NULL : (const struct sockaddr *)src, target, &d);
	printf("workload %s: %s\n", self, policy_verdict_name(d.verdict));
	printf("    rule:   %s\n    reason: %s\n", d.rule ? d.rule : "(none)", d.reason);
	policy_slice_unref(s);
	return e->ready && d.verdict != POLICY_DENY;
}

/* explain --to svc/NS/NAME: through the Service's port mapping to each
 * endpoint's target port (named ports resolved through its EndpointSlice).
 * 0: a ready endpoint would take the call; 1: none; 2: error. */
static int ctl_explain_service(const char *policy, const char *workloads, const char *from,
			       const char *to, long port)
{
	const char *ns = to + 4, *slash = strchr(ns, '/');
	struct pset *set = pset_new(POLICY_TRUST_DOMAIN_DEFAULT);
	struct policy_error err;
	char nsbuf[256];
	int rc = 2, flows = 0;

	if (!set)
		return 2;
	if (!slash || slash == ns || !slash[1] || (size_t)(slash - ns) >= sizeof(nsbuf)) {
		fprintf(stderr, "cinchctl: --to: not svc/NAMESPACE/NAME: %s\n", to);
		goto out;
	}
	memcpy(nsbuf, ns, (size_t)(slash - ns));
	nsbuf[slash - ns] = '\0';
	/* one path for both (as the agents' files may be): read once */
	if (pset_add_path(set, policy, &err) < 0 ||
	    (strcmp(policy, workloads) && pset_add_path(set, workloads, &err) < 0) ||
	    pset_finish(set, &err) < 0) {
		ctl_policy_err(&err);
		goto out;
	}
	struct sockaddr_storage src;
	const char *id, *why = ctl_caller(from, &id, &src);
	if (why) {
		fprintf(stderr, "cinchctl: --from: %s: %s\n", why, from);
		goto out;
	}
	const struct ksvc *v = ksvc_find(set, nsbuf, slash + 1);
	if (!v) {
		fprintf(stderr, "cinchctl: --to: no Service %s/%s in the files\n", nsbuf,
			slash + 1);
		goto out;
	}
	const struct ksvc_port *sp = NULL;
	for (size_t i = 0; i < v->n_ports && !sp; i++)
		if (v->ports[i].port == port && !strcmp(v->ports[i].protocol, "TCP"))
			sp = &v->ports[i];
	printf("%s -> service %s/%s port %ld", from, v->ns, v->name, port);
	if (!sp) {
		printf(": deny\n  reason: the Service has no TCP port %ld\n", port);
		rc = 1;
		goto out;
	}
	if (sp->target_name)
		printf(" (%s%s-> target port \"%s\")\n", sp->name, sp->name[0] ? " " : "",
		       sp->target_name);
	else
		printf(" (%s%s-> target port %u)\n", sp->name, sp->name[0] ? " " : "", sp->target);
	if (v->headless)
		printf("  headless: callers resolve the endpoints' own addresses\n");
	size_t n = 0;
	for (size_t i = 0; i < set->n_slices; i++) {
		const struct kslice *sl = &set->slices[i];
		if (sl->fqdn || !sl->service || strcmp(sl->ns, v->ns) ||
		    strcmp(sl->service, v->name))
			continue;
		for (size_t k = 0; k < sl->n_eps; k++, n++)
			flows |= ctl_explain_endpoint(set, policy, workloads, id, &src, &sl->eps[k],
						      ksvc_target_port(sp, sl));
	}
	if (!n)
		printf("  no endpoint: the call is refused at once\n");
	printf("%s\n", flows ? "allow: a ready endpoint takes the call"
			     : "deny: no ready endpoint would take the call");
	rc = flows ? 0 : 1;
out:
	pset_free(set);
	return rc;
}

static int ctl_policy_explain(int argc, char **argv)
{
	static const struct option opts[] = {
		{"policy", required_argument, NULL, 'p'},
		{"workloads", required_argument, NULL, 'w'},
		{"from", required_argument, NULL, 'f'},
		{"to", required_argument, NULL, 't'},
		{"port", required_argument, NULL, 'P'},
		{"from-cluster", no_argument, NULL, 'c'},
		{"kubeconfig", required_argument, NULL, 'k'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	static const char *cmd = "policy explain";
	const char *policy = NULL, *workloads = NULL, *from = NULL, *to = NULL, *kubeconfig = NULL;
	long long port = 0;
	char cp[32], cw[32];
	int c, cluster = 0;

	if (ctl_wants_help(argc, argv))
		return 0;
	optind = 2;
	while ((c = ctl_getopt(cmd, argc, argv, opts)) != -1) {
		switch (c) {
		case 'p':
			policy = ctl_path(optarg);
			break;
		case 'w':
			workloads = ctl_path(optarg);
			break;
		case 'f':
			from = optarg;
			break;
		case 't':
			to = optarg;
			break;
		case 'P':
			if (numarg_parse(optarg, 1, 65535, &port) < 0)
				return ctl_usage_error(cmd, "--port: not a port (1-65535): %s",
						       optarg);
			break;
		case 'c':
			cluster = 1;
			break;
		case 'k':
			kubeconfig = optarg;
			break;
		case 'h':
			fputs(ctl_policy_usage, stdout);
			return 0;
		default:
			return 2;
		}
	}
	if (optind < argc)
		return ctl_usage_error(cmd, "unexpected argument %s", argv[optind]);
	if (kubeconfig && !cluster)
		return ctl_usage_error(cmd, "--kubeconfig goes with --from-cluster");
	if (!from || !to || !port)
		return ctl_usage_error(cmd, "missing %s",
				       !from ? "--from"
				       : !to ? "--to"
					     : "--port");
	if (ctl_policy_files(cmd, cluster, kubeconfig, &policy, &workloads, cp, cw))
		return 2;
	if (!strncmp(to, "svc/", 4))
		return ctl_explain_service(policy, workloads, from, to, port);
	struct policy_slice *s = NULL;
	struct policy_error err;
	if (policy_slice_load(&s, POLICY_TRUST_DOMAIN_DEFAULT, policy, workloads, to, NULL, 0,
			      &err) < 0) {
		ctl_policy_err(&err);
		return 2;
	}
	struct sockaddr_storage src;
	const char *id, *why = ctl_caller(from, &id, &src);
	if (why) {
		fprintf(stderr, "cinchctl: --from: %s: %s\n", why, from);
		policy_slice_unref(s);
		return 2;
	}
	struct policy_decision d;
	policy_slice_decide_inbound(s, id, id ? NULL : (struct sockaddr *)&src, (uint16_t)port, &d);
	printf("%s -> %s port %lld: %s\n", from, policy_slice_workload(s), port,
	       policy_verdict_name(d.verdict));
	printf("  rule:   %s\n  reason: %s\n", d.rule ? d.rule : "(none)", d.reason);
	/* port names: what they are on this workload (the set read again) */
	struct pset *set = pset_new(POLICY_TRUST_DOMAIN_DEFAULT);
	if (set && (pset_add_path(set, policy, &err) < 0 ||
		    (strcmp(policy, workloads) && pset_add_path(set, workloads, &err) < 0) ||
		    pset_finish(set, &err) < 0)) {
		pset_free(set);
		set = NULL;
	}
	const struct pworkload *w = set ? pcompile_find(set, to, NULL, 0) : NULL;
	ctl_port_names(set, w, d.rule, "  ");
	if (d.verdict != POLICY_ALLOW && !d.rule) { /* not when a guardrail refused */
		struct ctl_near near = {0, (uint16_t)port, set, w};
		policy_slice_each_rule(s, id, id ? NULL : (struct sockaddr *)&src, (uint16_t)port,
				       ctl_near_rule, &near);
	}
	pset_free(set);
	policy_slice_unref(s);
	return d.verdict == POLICY_DENY ? 1 : 0;
}

/* ---- lint */

static unsigned ctl_lint_n;

/* One finding: "file:line: ns/name[#rule]: msg[: detail]". */
static void ctl_lint(const struct pallow *a, size_t rule, const char *msg, const char *detail)
{
	char id[300];

	if (rule == (size_t)-1)
		snprintf(id, sizeof(id), "%s/%s", a->ns, a->name);
	else
		snprintf(id, sizeof(id), "%s/%s#%zu", a->ns, a->name, rule);
	printf("%s:%d: %s: %s%s%s\n", ctl_display_path(a->where.file), a->line, id, msg,
	       detail ? ": " : "", detail ? detail : "");
	ctl_lint_n++;
}

/* The prefix whose one-more-segment IDs a source admits: a wildcard's
 * text, "spiffe://<td>/ns/<ns>/sa/" for a namespace (docs/policy.md: the
 * two mean the same); NULL for an exact ID or a CIDR. */
static const char *ctl_src_prefix(const struct psrc *x, const char *td, char *buf, size_t len)
{
	if (x->kind == PSRC_IDENTITY_PREFIX)
		return x->text;
	if (x->kind != PSRC_NAMESPACE)
		return NULL;
	snprintf(buf, len, "spiffe://%s/ns/%s/sa/", td, x->text);
	return buf;
}

/* Does source `x` admit everything source `y` admits? */
static int ctl_src_covers(const struct psrc *x, const struct psrc *y, const char *td)
{
	char xb[512], yb[512];
	const char *xp = ctl_src_prefix(x, td, xb, sizeof(xb));
	const char *yp = ctl_src_prefix(y, td, yb, sizeof(yb));

	/* a selector's callers depend on labels: only a rule with the very
	 * same selector is known to cover it (not worth a finding) */
	if (x->kind == PSRC_SELECTOR || y->kind == PSRC_SELECTOR || x->kind == PSRC_ANY ||
	    y->kind == PSRC_ANY)
		return x->kind == PSRC_ANY;
	if (x->kind == PSRC_UNAUTH_CIDR || y->kind == PSRC_UNAUTH_CIDR) {
		if (x->kind != y->kind || x->cidr.family != y->cidr.family ||
		    x->cidr.prefix > y->cidr.prefix)
			return 0;
		struct sockaddr_storage ss = {.ss_family = (sa_family_t)y->cidr.family};
		if (y->cidr.family == AF_INET)
			memcpy(&((struct sockaddr_in *)&ss)->sin_addr, y->cidr.addr, 4);
		else
			memcpy(&((struct sockaddr_in6 *)&ss)->sin6_addr, y->cidr.addr, 16);
		return pcidr_contains(&x->cidr, (struct sockaddr *)&ss);
	}
	if (!xp) /* an exact ID covers only itself */
		return y->kind == PSRC_IDENTITY && !strcmp(x->text, y->text);
	if (yp)
		return !strcmp(xp, yp);
	return !strncmp(y->text, xp, strlen(xp)) && !strchr(y->text + strlen(xp), '/');
}

/* A wildcard that grants a whole namespace: "spiffe://<td>/ns/<ns>/sa/". */
static int ctl_is_namespace_wildcard(const char *prefix)
{
	const char *p = strchr(prefix + strlen("spiffe://"), '/');
	const char *sa = p && !strncmp(p, "/ns/", 4) ? strchr(p + 4, '/') : NULL;
	return sa && sa > p + 4 && !strcmp(sa, "/sa/");
}

static int ctl_ports_cover(const struct pports *x, const struct pports *y)
{
	if (x->n == 0)
		return 1;
	if (y->n == 0)
		return 0;
	for (size_t i = 0; i < y->n; i++) {
		int ok = 0;
		for (size_t j = 0; j < x->n && !ok; j++)
			ok = y->r[i].name ? x->r[j].name && !strcmp(x->r[j].name, y->r[i].name)
					  : x->r[j].lo <= y->r[i].lo && y->r[i].hi <= x->r[j].hi;
		if (!ok)
			return 0;
	}
	return 1;
}

static int ctl_same_selection(const struct pset *s, const struct pallow *a, const struct pallow *b)
{
	for (size_t i = 0; i < s->n_workloads; i++)
		if (pselector_matches(&a->sel, a->ns, &s->workloads[i]) !=
		    pselector_matches(&b->sel, b->ns, &s->workloads[i]))
			return 0;
	return 1;
}

/* ---- lint: guardrails */

/* The namespace every caller of allow source y is in ("" when unknown). */
static const char *ctl_src_ns(const struct pset *s, const struct psrc *y, char *ns, size_t len)
{
	char pfx[300];

	if (y->kind == PSRC_NAMESPACE)
		return y->text;
	if (y->kind != PSRC_IDENTITY && y->kind != PSRC_IDENTITY_PREFIX)
		return "";
	int pl = snprintf(pfx, sizeof(pfx), "spiffe://%s/ns/", s->trust_domain);
	const char *rest = !strncmp(y->text, pfx, (size_t)pl) ? y->text + pl : NULL;
	const char *slash = rest ? strchr(rest, '/') : NULL;
	if (!slash || strncmp(slash, "/sa/", 4) || (size_t)(slash - rest) >= len)
		return "";
	memcpy(ns, rest, (size_t)(slash - rest));
	ns[slash - rest] = '\0';
	return ns;
}

/* Selector x (of a guardrail) against selector y of a policy in `own`,
 * over the namespaces the set knows: 1 when x picks every caller of every
 * namespace y picks, -1 when they share no namespace, else 0. */
static int ctl_guard_sel_meets(const struct pset *s, const struct psrc *x, const struct psrc *y,
			       const char *own)
{
	int all = 1, some = 0;

	for (size_t i = 0; i < s->n_namespaces + s->n_workloads; i++) {
		const char *n = i < s->n_namespaces ? s->namespaces[i].name
						    : s->workloads[i - s->n_namespaces].ns;
		int yin = y->ns_sel ? pset_namespace_matches(s, y->ns_sel, n) : !strcmp(n, own);
		int xin = !x->ns_sel || pset_namespace_matches(s, x->ns_sel, n);
		if (!yin)
			continue;
		all &= xin;
		some |= xin;
	}
	return !some ? -1 : all && !x->pod_sel ? 1 : 0;
}

/* Does guardrail source x match every caller allow source y (of a policy
 * in `own`) admits (1), provably none of them (-1), or some perhaps (0)? */
static int ctl_guard_src_meets(const struct pset *s, const struct psrc *x, const struct psrc *y,
			       const char *own)
{
	char buf[64];
	const char *ns = ctl_src_ns(s, y, buf, sizeof(buf));

	if (x->kind == PSRC_ANY)
		return 1;
	if (x->kind == PSRC_SELECTOR && y->kind == PSRC_SELECTOR)
		return ctl_guard_sel_meets(s, x, y, own);
	if (x->kind == PSRC_SELECTOR && x->ns_sel && *ns &&
	    !pset_namespace_matches(s, x->ns_sel, ns))
		return -1;
	if (x->kind == PSRC_SELECTOR)
		return x->ns_sel && !x->pod_sel && *ns ? 1 : 0;
	if (y->kind == PSRC_SELECTOR || y->kind == PSRC_ANY)
		return 0;
	if (ctl_src_covers(x, y, s->trust_domain))
		return 1;
	if ((x->kind == PSRC_UNAUTH_CIDR) != (y->kind == PSRC_UNAUTH_CIDR))
		return -1; /* plaintext callers and identities are apart */
	char xb[64];
	const char *xns = ctl_src_ns(s, x, xb, sizeof(xb));
	return *xns && *ns && strcmp(xns, ns) ? -1 : 0;
}

static int ctl_ports_meet(const struct pports *x, const struct pports *y)
{
	if (!x->n || !y->n)
		return 1;
	for (size_t i = 0; i < x->n; i++)
		for (size_t j = 0; j < y->n; j++)
			if (x->r[i].lo <= y->r[j].hi && y->r[j].lo <= x->r[i].hi)
				return 1;
	return 0;
}

/* p with its port names resolved at w (pports_resolve) into *out, its r
 * in *buf (freed by the caller): 1, or 0 when p's ports are all names w
 * does not have (no port at all), -1 out of memory. */
static int ctl_ports_at(const struct pports *p, const struct pworkload *w, struct pports *out,
			struct pport **buf)
{
	*out = *p;
	*buf = NULL;
	if (!p->n_named)
		return 1;
	if (!(*buf = malloc(sizeof(**buf) * (p->n + p->n_named * w->n_ports + 1))))
		return -1;
	*out = (struct pports){*buf, pports_resolve(p, w, *buf), 0};
	return out->n != 0;
}

/* The first enforce-mode guardrail deny that refuses all of rule f of
 * `a` at workload w before any guardrail rule could allow or pass some of
 * it: NULL when the rule can still decide something there (or opens no
 * port there: its port names are not w's). Port names are compared as
 * what they are on w. */
static const struct pguard *ctl_guard_kills(const struct pset *s, const struct pallow *a, size_t f,
					    const struct pworkload *w, size_t *rule)
{
	const struct pguard *best = NULL, *dead = NULL;
	size_t best_rule = 0;
	struct pports ap, rp;
	struct pport *abuf, *rbuf = NULL;

	if (ctl_ports_at(&a->ports, w, &ap, &abuf) <= 0)
		goto out;
	/* guardrails in evaluation order: priority, then name */
	for (;;) {
		const struct pguard *next = NULL;
		for (size_t i = 0; i < s->n_guards; i++) {
			const struct pguard *g = &s->guards[i];
			if (best && (g->priority < best->priority ||
				     (g->priority == best->priority && strcmp(g->name, best->name) <= 0)))
				continue;
			if (!next || g->priority < next->priority ||
			    (g->priority == next->priority && strcmp(g->name, next->name) < 0))
				next = g;
		}
		if (!next)
			goto out;
		best = next;
		if (!pguard_selects(s, best, w))
			continue;
		for (best_rule = 0; best_rule < best->n_rules; best_rule++) {
			const struct pguard_rule *r = &best->rules[best_rule];
			int all = 1, apart = 1;
			for (size_t k = 0; k < a->n_src[f]; k++) {
				int one = 0, none = 1;
				for (size_t m = 0; m < r->n_src; m++) {
					int meets = ctl_guard_src_meets(s, &r->src[m], &a->from[f][k],
									a->ns);
					one |= meets == 1;
					none &= meets == -1;
				}
				all &= one;
				apart &= none;
			}
			free(rbuf);
			int at = ctl_ports_at(&r->ports, w, &rp, &rbuf);
			if (at < 0)
				goto out;
			if (apart || !at || !ctl_ports_meet(&rp, &ap))
				continue;
			if (r->action == PACT_DENY && !best->audit && all && ctl_ports_cover(&rp, &ap)) {
				*rule = best_rule;
				dead = best;
				goto out;
			}
			/* an allow or pass that may meet this rule's traffic: not
			 * provably dead (nor is it after a partial deny) */
			if (r->action != PACT_DENY)
				goto out;
		}
	}
out:
	free(abuf);
	free(rbuf);
	return dead;
}

/* Rules a guardrail makes dead: at every workload the policy selects, an
 * enforce-mode guardrail denies all of the rule's callers on all of its
 * ports before anything could let them through; and namespace
 * MeshPolicies whose loosening no guardrail allows. */
static void ctl_lint_guards(const struct pset *s)
{
	char why[400];

	for (size_t i = 0; i < s->n_allow; i++) {
		const struct pallow *a = &s->allow[i];
		for (size_t f = 0; f < a->n_from; f++) {
			const struct pguard *g = NULL;
			size_t rule = 0, selected = 0;
			int dead = 1;
			for (size_t w = 0; w < s->n_workloads && dead; w++) {
				if (!pselector_matches(&a->sel, a->ns, &s->workloads[w]))
					continue;
				selected++;
				dead = (g = ctl_guard_kills(s, a, f, &s->workloads[w], &rule)) != NULL;
			}
			if (selected && dead) {
				snprintf(why, sizeof(why), "GuardrailPolicy/%s#%zu", g->name, rule);
				ctl_lint(a, f, "dead: a guardrail denies everything it allows", why);
			}
		}
	}
	for (size_t i = 0; i < s->n_mesh; i++) {
		const struct pmesh *m = &s->mesh[i];
		struct pmesh_settings ms;
		if (!m->ns)
			continue;
		pset_mesh_settings(s, m->ns, &ms);
		if (!ms.refused)
			continue;
		printf("%s:%d: MeshPolicy %s/%s: loosens the mesh's %s%s%s%s%s: not applied (no "
		       "GuardrailPolicy allowLoosening for this namespace)\n",
		       ctl_display_path(m->where.file), m->where.line, m->ns, m->name,
		       ms.refused & PGUARD_LOOSEN_MTLS ? "mtls" : "",
		       ms.refused & PGUARD_LOOSEN_MTLS && ms.refused > PGUARD_LOOSEN_MTLS ? ", " : "",
		       ms.refused & PGUARD_LOOSEN_DEFAULT ? "defaultAction" : "",
		       ms.refused & PGUARD_LOOSEN_DEFAULT && ms.refused & PGUARD_LOOSEN_EGRESS ? ", "
											 : "",
		       ms.refused & PGUARD_LOOSEN_EGRESS ? "egress" : "");
		ctl_lint_n++;
	}
}

/* An AllowPolicy's port names: what each is on every workload it selects,
 * reported when one of them has no TCP port of that name (the name opens
 * nothing there, as in Kubernetes: a typo, or a pod without the port). */
static void ctl_lint_names(const struct pset *s, const struct pallow *a)
{
	char detail[1024];

	for (size_t i = 0; i < a->ports.n; i++) {
		const char *name = a->ports.r[i].name;
		size_t len = 0, missing = 0;
		if (!name)
			continue;
		detail[0] = '\0';
		for (size_t w = 0; w < s->n_workloads; w++) {
			const struct pworkload *x = &s->workloads[w];
			uint16_t port = 0;
			if (!pselector_matches(&a->sel, a->ns, x))
				continue;
			for (size_t k = 0; k < x->n_ports && !port; k++)
				if (x->ports[k].tcp && !strcmp(x->ports[k].name, name))
					port = x->ports[k].port;
			missing += !port;
			int n = port ? snprintf(detail + len, sizeof(detail) - len, "%s%s/%s %u",
						len ? ", " : "", x->ns, x->name, port)
				     : snprintf(detail + len, sizeof(detail) - len, "%s%s/%s none",
						len ? ", " : "", x->ns, x->name);
			if (n > 0 && (size_t)n < sizeof(detail) - len)
				len += (size_t)n;
		}
		if (missing) {
			char msg[128];
			snprintf(msg, sizeof(msg), "port name %s matches nothing on %zu selected workload%s",
				 name, missing, missing == 1 ? "" : "s");
			ctl_lint(a, (size_t)-1, msg, detail);
		}
	}
}

static void ctl_lint_set(const struct pset *s)
{
	for (size_t i = 0; i < s->n_allow; i++) {
		const struct pallow *a = &s->allow[i];
		size_t selected = 0;
		for (size_t w = 0; w < s->n_workloads; w++)
			selected += pselector_matches(&a->sel, a->ns, &s->workloads[w]);
		ctl_lint_names(s, a);
		if (!selected)
			ctl_lint(a, (size_t)-1, "selects no workload", NULL);
		if (a->ports.n == 0)
			ctl_lint(a, (size_t)-1,
				 "allows every port: list the ports the workload serves", NULL);
		for (size_t f = 0; f < a->n_from; f++)
			for (size_t k = 0; k < a->n_src[f]; k++) {
				const struct psrc *x = &a->from[f][k];
				char wild[SPIFFE_ID_MAX + 2];
				snprintf(wild, sizeof(wild), "%s*", x->text ? x->text : "");
				if (x->kind == PSRC_NAMESPACE)
					ctl_lint(a, f, "grants every workload of a namespace",
						 x->text);
				else if (x->kind == PSRC_IDENTITY_PREFIX &&
					 ctl_is_namespace_wildcard(x->text))
					ctl_lint(a, f, "grants every workload of a namespace",
						 wild);
				else if (x->kind == PSRC_IDENTITY_PREFIX)
					ctl_lint(a, f, "grants every SPIFFE ID of one more segment",
						 wild);
				else if (x->kind == PSRC_UNAUTH_CIDR && x->cidr.prefix == 0)
					ctl_lint(a, f, "grants every plaintext caller anywhere",
						 x->text);
			}
		/* A rule is shadowed when a rule selecting the same workloads
		 * admits every source of it on every port of it. */
		for (size_t f = 0; f < a->n_from; f++) {
			int shadowed = 0;
			for (size_t j = 0; j < s->n_allow && !shadowed; j++) {
				const struct pallow *b = &s->allow[j];
				if (b->audit != a->audit || !ctl_same_selection(s, a, b) ||
				    !ctl_ports_cover(&b->ports, &a->ports))
					continue;
				for (size_t g = 0; g < b->n_from && !shadowed; g++) {
					if (j == i && g == f)
						continue;
					int all = 1;
					for (size_t k = 0; k < a->n_src[f] && all; k++) {
						int one = 0;
						for (size_t m = 0; m < b->n_src[g] && !one; m++)
							one = ctl_src_covers(&b->from[g][m],
									     &a->from[f][k],
									     s->trust_domain);
						all = one;
					}
					/* Of two equal rules, only the later one is flagged. */
					if (all && (j != i || g < f ||
						    !ctl_ports_cover(&a->ports, &b->ports)))
						shadowed = 1;
				}
			}
			if (shadowed)
				ctl_lint(a, f, "shadowed: a broader rule already allows it", NULL);
		}
	}
	for (size_t w = 0; w < s->n_workloads; w++) {
		const struct pworkload *wl = &s->workloads[w];
		struct pmesh_settings ms;
		int covered = 0;
		for (size_t i = 0; i < s->n_allow && !covered; i++)
			covered = pselector_matches(&s->allow[i].sel, s->allow[i].ns, wl);
		pset_mesh_settings(s, wl->ns, &ms);
		if (!covered) {
			/* what enforcement does: the namespace's default, as it
			 * applies (a loosening no guardrail allows does not) */
			printf("workload %s/%s: no AllowPolicy selects it: every connection %s\n",
			       wl->ns, wl->name,
			       !ms.default_audit  ? (s->n_guards ? "no guardrail allows is refused by "
								   "default"
								 : "to it is refused by default")
			       : s->n_guards ? "no guardrail decides is let through and logged "
					       "(defaultAction audit)"
					     : "to it is let through and logged (defaultAction audit)");
			ctl_lint_n++;
		}
	}
	ctl_lint_guards(s);
}

static int ctl_policy_lint(int argc, char **argv)
{
	int status;
	struct pset *s;

	if (ctl_wants_help(argc, argv))
		return 0;
	if (!(s = ctl_open_set(argc, argv, 2, &status)))
		return status;
	ctl_lint_n = 0;
	ctl_lint_set(s);
	printf("%u finding%s\n", ctl_lint_n, ctl_lint_n == 1 ? "" : "s");
	pset_free(s);
	return ctl_lint_n ? 1 : 0;
}

/* ---- test: given/expect cases against a policy */

static int ctl_policy_test(int argc, char **argv)
{
	static const struct option opts[] = {
		{"policy", required_argument, NULL, 'p'},
		{"workloads", required_argument, NULL, 'w'},
		{"from-cluster", no_argument, NULL, 'c'},
		{"kubeconfig", required_argument, NULL, 'k'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	static const char *cmd = "policy test";
	const char *policy = NULL, *workloads = NULL, *kubeconfig = NULL;
	char cp[32], cw[32];
	int cluster = 0;
	struct pdoc **docs = NULL;
	size_t n_docs = 0;
	struct policy_error err;
	unsigned pass = 0, fail = 0;
	int c, rc = 2;
	/* Each destination's slice, loaded once for all its cases: cases[i]
	 * borrows slices[k] where tos[k] is its `to`. */
	struct policy_slice **slices = NULL;
	const char **tos = NULL;
	size_t n_slices = 0;

	if (ctl_wants_help(argc, argv))
		return 0;
	optind = 2;
	while ((c = ctl_getopt(cmd, argc, argv, opts)) != -1) {
		if (c == 'p') {
			policy = ctl_path(optarg);
		} else if (c == 'w') {
			workloads = ctl_path(optarg);
		} else if (c == 'c') {
			cluster = 1;
		} else if (c == 'k') {
			kubeconfig = optarg;
		} else if (c == 'h') {
			fputs(ctl_policy_usage, stdout);
			return 0;
		} else {
			return 2;
		}
	}
	if (kubeconfig && !cluster)
		return ctl_usage_error(cmd, "--kubeconfig goes with --from-cluster");
	if (optind != argc - 1)
		return ctl_usage_error(cmd, optind == argc ? "missing the FILE of cases"
							   : "one FILE of cases, not several");
	if (ctl_policy_files(cmd, cluster, kubeconfig, &policy, &workloads, cp, cw))
		return 2;
	if (pdoc_parse_file(argv[optind], &docs, &n_docs, &err) < 0) {
		ctl_policy_err(&err);
		return 2;
	}
	const struct pdoc *cases = n_docs == 1 ? pdoc_get(docs[0], "cases") : NULL;
	if (!cases || cases->kind != PDOC_SEQ) {
		fprintf(stderr, "%s: expected one document with a list `cases`\n", argv[optind]);
		goto out;
	}
	slices = calloc(cases->n + 1, sizeof(*slices));
	tos = calloc(cases->n + 1, sizeof(*tos));
	if (!slices || !tos) {
		fprintf(stderr, "cinchctl: out of memory\n");
		goto out;
	}
	for (size_t i = 0; i < cases->n; i++) {
		const struct pdoc *t = cases->items[i];
		const struct pdoc *name = pdoc_get(t, "name"), *from = pdoc_get(t, "from"),
				  *to = pdoc_get(t, "to"), *port = pdoc_get(t, "port"),
				  *expect = pdoc_get(t, "expect"), *rule = pdoc_get(t, "rule");
		if (!name || !from || !to || !port || !expect || name->kind || from->kind ||
		    to->kind || port->kind || expect->kind || (rule && rule->kind)) {
			fprintf(stderr,
				"%s:%d: cases[%zu]: needs name, from, to, port, expect "
				"(and optionally rule), all values\n",
				argv[optind], t->line, i);
			goto out;
		}
		struct sockaddr_storage src;
		const char *id, *why = ctl_caller(from->text, &id, &src);
		if (why) {
			fprintf(stderr, "%s:%d:%d: cases[%zu].from: %s: %s\n", argv[optind],
				from->line, from->column, i, why, from->text);
			goto out;
		}
		struct policy_slice *s = NULL;
		for (size_t k = 0; k < n_slices && !s; k++)
			if (!strcmp(tos[k], to->text))
				s = slices[k];
		if (!s) {
			if (policy_slice_load(&s, POLICY_TRUST_DOMAIN_DEFAULT, policy, workloads,
					      to->text, NULL, 0, &err) < 0) {
				ctl_policy_err(&err);
				goto out;
			}
			tos[n_slices] = to->text;
			slices[n_slices++] = s;
		}
		struct policy_decision d;
		long long p;
		if (numarg_parse(port->text, 1, 65535, &p) < 0)
			p = 0;
		policy_slice_decide_inbound(s, id, id ? NULL : (struct sockaddr *)&src,
					    (uint16_t)p, &d);
		int ok = !strcmp(policy_verdict_name(d.verdict), expect->text) &&
			 (!rule || (d.rule && !strcmp(d.rule, rule->text)));
		if (ok) {
			printf("PASS %s\n", name->text);
			pass++;
		} else {
			printf("FAIL %s: got %s by %s (%s); see cinchctl policy explain --from %s "
			       "--to %s --port %s\n",
			       name->text, policy_verdict_name(d.verdict),
			       d.rule ? d.rule : "no rule", d.reason, from->text, to->text,
			       port->text);
			fail++;
		}
	}
	printf("%u passed, %u failed\n", pass, fail);
	rc = fail ? 1 : 0;
out:
	for (size_t k = 0; k < n_slices; k++)
		policy_slice_unref(slices[k]);
	free(slices);
	free(tos);
	for (size_t i = 0; i < n_docs; i++)
		pdoc_free(docs[i]);
	free(docs);
	return rc;
}

/* --help anywhere among a verb's arguments (check and lint read the
 * others as paths). */
static int ctl_policy_wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return 1;
	return 0;
}

int ctl_policy(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "whatif"))
		return ctl_policy_whatif(argc, argv); /* its own --help */
	if (ctl_policy_wants_help(argc, argv)) {
		fputs(ctl_policy_usage, stdout);
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "lint"))
		return ctl_policy_lint(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "test"))
		return ctl_policy_test(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "check"))
		return ctl_policy_check(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "explain"))
		return ctl_policy_explain(argc, argv);
	if (argc < 2)
		return ctl_usage_error("policy", "missing a verb (check, lint, test, explain, whatif)");
	return ctl_usage_error("policy", "unknown verb \"%s\"", argv[1]);
}
