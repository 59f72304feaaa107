/* ctl_policy: `cinchctl policy check` and `cinchctl policy explain`, on
 * files, with the same library the agents enforce with (policy/). */
#include "ctl.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "policy.h"

static const char *ctl_policy_usage =
	"usage: cinchctl policy check PATH... \n"
	"       cinchctl policy explain --policy PATH --workloads PATH\n"
	"                               --from SPIFFE-ID|IP --to NS/WORKLOAD --port N\n"
	"\n"
	"check: validates policy and workload files (or directories of them) as one\n"
	"set; exit 0 when valid, 1 with the exact place of the first error.\n"
	"explain: would this connection flow? Prints the verdict, the rule that made\n"
	"it or why none did; exit 0 when it would flow, 1 when denied, 2 on error\n"
	"(as `kubectl auth can-i`).\n";

/* "file:line:col: path: message", leaving out what is unknown. */
static void ctl_policy_err(const struct policy_error *e)
{
	if (e->file[0] && e->line)
		fprintf(stderr, "%s:%d:%d: ", e->file, e->line, e->column);
	else if (e->file[0])
		fprintf(stderr, "%s: ", e->file);
	if (e->path[0])
		fprintf(stderr, "%s: ", e->path);
	fprintf(stderr, "%s\n", e->msg);
}

static int ctl_policy_check(int argc, char **argv)
{
	struct pset *s = pset_new("cluster.local");
	struct policy_error err;
	int rc = 1;

	if (!s)
		return 2;
	if (argc < 3) {
		fputs(ctl_policy_usage, stderr);
		pset_free(s);
		return 2;
	}
	for (int i = 2; i < argc; i++)
		if (pset_add_path(s, argv[i], &err) < 0)
			goto out;
	if (pset_finish(s, &err) < 0)
		goto out;
	printf("ok: %zu AllowPolicies, %zu MeshPolicies, %zu EgressPolicies, %zu Workloads\n",
	       s->n_allow, s->n_mesh, s->n_egress, s->n_workloads);
	rc = 0;
out:
	if (rc)
		ctl_policy_err(&err);
	pset_free(s);
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
		{0},
	};
	const char *policy = NULL, *workloads = NULL, *from = NULL, *to = NULL;
	long port = 0;
	int c;

	optind = 2;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			policy = optarg;
			break;
		case 'w':
			workloads = optarg;
			break;
		case 'f':
			from = optarg;
			break;
		case 't':
			to = optarg;
			break;
		case 'P':
			port = strtol(optarg, NULL, 10);
			break;
		default:
			fputs(ctl_policy_usage, stderr);
			return 2;
		}
	}
	if (!policy || !workloads || !from || !to || port < 1 || port > 65535) {
		fputs(ctl_policy_usage, stderr);
		return 2;
	}
	struct policy_slice *s = NULL;
	struct policy_error err;
	if (policy_slice_load(&s, policy, workloads, to, NULL, 0, &err) < 0) {
		ctl_policy_err(&err);
		return 2;
	}
	struct sockaddr_storage src = {0};
	const char *id = NULL;
	if (!strncmp(from, "spiffe://", 9)) {
		id = from;
	} else if (inet_pton(AF_INET, from, &((struct sockaddr_in *)&src)->sin_addr) == 1) {
		src.ss_family = AF_INET;
	} else if (inet_pton(AF_INET6, from, &((struct sockaddr_in6 *)&src)->sin6_addr) == 1) {
		src.ss_family = AF_INET6;
	} else {
		fprintf(stderr, "cinchctl: --from: neither a SPIFFE ID nor an IP address: %s\n",
			from);
		policy_slice_unref(s);
		return 2;
	}
	struct policy_decision d;
	policy_slice_decide_inbound(s, id, id ? NULL : (struct sockaddr *)&src, (uint16_t)port, &d);
	printf("%s -> %s port %ld: %s\n", from, policy_slice_workload(s), port,
	       policy_verdict_name(d.verdict));
	printf("  rule:   %s\n  reason: %s\n", d.rule ? d.rule : "(none)", d.reason);
	policy_slice_unref(s);
	return d.verdict == POLICY_DENY ? 1 : 0;
}

int ctl_policy(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "check"))
		return ctl_policy_check(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "explain"))
		return ctl_policy_explain(argc, argv);
	fputs(ctl_policy_usage, argc >= 2 && !strcmp(argv[1], "--help") ? stdout : stderr);
	return argc >= 2 && !strcmp(argv[1], "--help") ? 0 : 2;
}
