/* ctl_policy: `cinchctl policy check` and `cinchctl policy explain`, on
 * files, with the same library the agents enforce with (policy/). */
#include "ctl.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	"(as `kubectl auth can-i`).\n"
	"lint: rules that select no workload, shadowed rules, grants of whole\n"
	"namespaces or of everyone, rules on every port, workloads no rule covers;\n"
	"exit 1 when it found any.\n"
	"test: runs a file of cases (cases: [{name, from, to, port, expect, rule}],\n"
	"expect allow|deny|audit-deny) against the policy; exit 1 when one fails.\n"
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

/* "file:line:col: path: message", leaving out what is unknown. */
static void ctl_policy_err(const struct policy_error *e)
{
	if (e->file[0] && e->line)
		fprintf(stderr, "%s:%d:%d: ", ctl_display_path(e->file), e->line, e->column);
	else if (e->file[0])
		fprintf(stderr, "%s: ", ctl_display_path(e->file));
	if (e->path[0])
		fprintf(stderr, "%s: ", e->path);
	fprintf(stderr, "%s\n", e->msg);
}

/* The cluster's policies and workloads as two paths (p, w: 32 bytes);
 * 0, or 2 after printing why. */
static int ctl_from_cluster(const char *kubeconfig, char *p, char *w)
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
	printf("ok: %zu AllowPolicies, %zu MeshPolicies, %zu EgressPolicies, %zu Workloads\n",
	       s->n_allow, s->n_mesh, s->n_egress, s->n_workloads);
	pset_free(s);
	return 0;
}

/* Rules that almost matched a denied connection: one of the two
 * conditions (ports, source) held. At most three are shown. */
struct ctl_near {
	unsigned shown;
	uint16_t port;
};

static void ctl_near_rule(void *arg, const char *rule, int port_match, int source_match)
{
	struct ctl_near *n = arg;
	if (port_match == source_match || n->shown == 3)
		return;
	printf("  near:   %s %s\n", rule,
	       source_match ? "admits this caller, but not on this port"
			    : "covers this port, but does not admit this caller");
	n->shown++;
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
	if (cluster && (!policy || !workloads)) {
		if (ctl_from_cluster(kubeconfig, cp, cw))
			return 2;
		policy = policy ? policy : cp;
		workloads = workloads ? workloads : cw;
	}
	if (!policy || !workloads)
		return ctl_usage_error(cmd, "missing %s", !policy ? "--policy" : "--workloads");
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
	if (d.verdict != POLICY_ALLOW) {
		struct ctl_near near = {0, (uint16_t)port};
		policy_slice_each_rule(s, id, id ? NULL : (struct sockaddr *)&src, (uint16_t)port,
				       ctl_near_rule, &near);
	}
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
			ok = x->r[j].lo <= y->r[i].lo && y->r[i].hi <= x->r[j].hi;
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

static void ctl_lint_set(const struct pset *s)
{
	for (size_t i = 0; i < s->n_allow; i++) {
		const struct pallow *a = &s->allow[i];
		size_t selected = 0;
		for (size_t w = 0; w < s->n_workloads; w++)
			selected += pselector_matches(&a->sel, a->ns, &s->workloads[w]);
		if (!selected)
			ctl_lint(a, (size_t)-1, "selects no workload", NULL);
		if (a->ports.n == 0)
			ctl_lint(a, (size_t)-1,
				 "allows every port: list the ports the workload serves", NULL);
		for (size_t f = 0; f < a->n_from; f++)
			for (size_t k = 0; k < a->n_src[f]; k++) {
				const struct psrc *x = &a->from[f][k];
				char wild[SPIFFE_ID_MAX + 2];
				snprintf(wild, sizeof(wild), "%s*", x->text);
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
		int covered = 0;
		for (size_t i = 0; i < s->n_allow && !covered; i++)
			covered = pselector_matches(&s->allow[i].sel, s->allow[i].ns,
						    &s->workloads[w]);
		if (!covered) {
			printf("workload %s/%s: no AllowPolicy selects it: every connection to it "
			       "is "
			       "refused by default\n",
			       s->workloads[w].ns, s->workloads[w].name);
			ctl_lint_n++;
		}
	}
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
	if (cluster && (!policy || !workloads)) {
		if (ctl_from_cluster(kubeconfig, cp, cw))
			return 2;
		policy = policy ? policy : cp;
		workloads = workloads ? workloads : cw;
	}
	if (!policy || !workloads)
		return ctl_usage_error(cmd, "missing %s", !policy ? "--policy" : "--workloads");
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
		return ctl_usage_error("policy", "missing a verb (check, lint, test, explain)");
	return ctl_usage_error("policy", "unknown verb \"%s\"", argv[1]);
}
