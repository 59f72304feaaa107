/* ctl_status: `cinchctl status`, the mesh as cinch-control sees it: each
 * workload of the registry, its identity, the configuration version it
 * should enforce and the one its agent last reported, its certificate's
 * expiry and how many agents watch it. Answered over the admin socket
 * (request {"op": "status"}, reply {"version": GEN, "workloads": [...]},
 * the objects of hub_status()).
 *
 * Every cell of the table is printed through ctl_status_cell: the strings
 * come from agents (their Report: applied version, error) and from the
 * registry, and a terminal obeys what it is sent, so an agent reporting
 * "\x1b[2J" or a newline could clear the operator's screen or forge rows.
 * Control characters (C0, DEL, C1) and the bidirectional overrides that
 * reorder what is shown are written as escapes instead. */
#include "ctl.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *ctl_status_usage =
	"usage: cinchctl status [--json] [--state-dir DIR]\n"
	"       cinchctl status --cluster [--kubeconfig FILE] [--json]\n"
	"\n"
	"One line per workload: its identity, the version of its configuration\n"
	"it enforces (as its agent reported) and the current one, whether they\n"
	"match, its certificate's expiry and the number of connected agents.\n"
	"--json prints cinch-control's answer as it is. Needs root (the request\n"
	"goes over <state-dir>/admin.sock, default " CTL_DEFAULT_STATE_DIR ").\n"
	"\n"
	"--cluster: the whole mesh through the API server instead (--kubeconfig\n"
	"FILE, else $KUBECONFIG, ~/.kube/config, the pod's service account): one\n"
	"line per injected pod, its identity, whether its agent is ready and the\n"
	"configuration version it enforces, read from the agent's /metrics\n"
	"through the pod proxy. Exit status 1 when an agent is not ready.\n";

/* "2026-11-30T14:00:00Z (in 42m)" or "-". */
static void ctl_status_expiry(json_int_t at, time_t now, char *buf, size_t len)
{
	struct tm tm;
	time_t t = (time_t)at;
	char when[32];
	long long left = (long long)(at - now);

	if (at <= 0 || !gmtime_r(&t, &tm)) {
		snprintf(buf, len, "-");
		return;
	}
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (left <= 0)
		snprintf(buf, len, "%s (expired)", when);
	else if (left < 3600)
		snprintf(buf, len, "%s (in %lldm)", when, left / 60);
	else if (left < 2 * 86400)
		snprintf(buf, len, "%s (in %lldh%02lldm)", when, left / 3600, left % 3600 / 60);
	else
		snprintf(buf, len, "%s (in %lldd)", when, left / 86400);
}

/* A cell for `v` (a JSON string; anything else, or NULL, is "-") that a
 * terminal shows as text: \\, \n, \r, \t, \xNN for other C0 bytes and
 * DEL, \u{XXXX} for C1 controls and bidi overrides; cut at len with "...". */
static const char *ctl_status_cell(const json_t *v, char *buf, size_t len)
{
	const unsigned char *s = (const unsigned char *)json_string_value(v);
	size_t k = 0;

	if (!s)
		return "-";
	for (; *s && k + 12 < len; s++) {
		unsigned cp = 0;
		size_t skip = 0;
		if (s[0] == 0xc2 && s[1] >= 0x80 && s[1] <= 0x9f) {
			cp = s[1]; /* U+0080..U+009F: C1, e.g. an 8-bit CSI */
			skip = 1;
		} else if (s[0] == 0xe2 && ((s[1] == 0x80 && s[2] >= 0xaa && s[2] <= 0xae) ||
					    (s[1] == 0x81 && s[2] >= 0xa6 && s[2] <= 0xa9))) {
			cp = 0x2000 | ((s[1] & 0x3f) << 6) | (s[2] & 0x3f); /* bidi */
			skip = 2;
		}
		if (skip) {
			k += (size_t)snprintf(buf + k, len - k, "\\u{%04x}", cp);
			s += skip;
		} else if (*s == '\\' || *s == '\n' || *s == '\r' || *s == '\t') {
			buf[k++] = '\\';
			buf[k++] = *s == '\n' ? 'n' : *s == '\r' ? 'r' : *s == '\t' ? 't' : '\\';
		} else if (*s < 0x20 || *s == 0x7f) {
			k += (size_t)snprintf(buf + k, len - k, "\\x%02x", *s);
		} else {
			buf[k++] = (char)*s;
		}
	}
	snprintf(buf + k, len - k, "%s", *s ? "..." : "");
	return buf;
}

static void ctl_status_table(const json_t *r)
{
	const json_t *ws = json_object_get(r, "workloads"), *w;
	time_t now = time(NULL);
	size_t i;

	char c[7][256];

	printf("configuration version %s, %zu workloads\n",
	       ctl_status_cell(json_object_get(r, "version"), c[0], sizeof(c[0])),
	       json_array_size(ws));
	printf("%-24s %-48s %-17s %-17s %-7s %-36s %s\n", "WORKLOAD", "IDENTITY", "ENFORCES",
	       "CURRENT", "IN-SYNC", "CERT-EXPIRES", "CONNECTED");
	json_array_foreach(ws, i, w)
	{
		const json_t *rep = json_object_get(w, "report");
		const char *err = json_string_value(json_object_get(rep, "error"));
		char exp[64];

		ctl_status_expiry(json_integer_value(json_object_get(rep, "cert_expires_at")), now,
				  exp, sizeof(exp));
		printf("%-24s %-48s %-17s %-17s %-7s %-36s %lld%s%s\n",
		       ctl_status_cell(json_object_get(w, "workload"), c[1], sizeof(c[1])),
		       ctl_status_cell(json_object_get(w, "spiffe_id"), c[2], sizeof(c[2])),
		       ctl_status_cell(json_object_get(rep, "applied_version"), c[3], sizeof(c[3])),
		       ctl_status_cell(json_object_get(w, "version"), c[4], sizeof(c[4])),
		       json_is_true(json_object_get(w, "in_sync")) ? "yes" : "no", exp,
		       (long long)json_integer_value(json_object_get(w, "connected")),
		       err && *err ? "  last snapshot refused: " : "",
		       err && *err
			       ? ctl_status_cell(json_object_get(rep, "error"), c[5], sizeof(c[5]))
			       : "");
	}
}

/* --cluster: the agents of every injected pod, through the API server. */
static int ctl_status_cluster(const char *kubeconfig, int json)
{
	struct ctl_kube *k = ctl_kube_open(kubeconfig);
	json_t *agents = k ? ctl_cluster_agents(k) : NULL, *a;
	size_t i, ready = 0;

	ctl_kube_close(k);
	if (!agents)
		return 2;
	json_array_foreach(agents, i, a) ready += json_is_true(json_object_get(a, "ready"));
	if (json) {
		json_dumpf(agents, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
	} else {
		printf("%zu injected pods, %zu agents ready\n", json_array_size(agents), ready);
		printf("%-40s %-56s %-5s %-17s %s\n", "POD", "IDENTITY", "READY", "ENFORCES",
		       "ERROR");
		json_array_foreach(agents, i, a)
		{
			/* ctl_cluster_agents made every string printable */
			char pod[520];
			snprintf(pod, sizeof(pod), "%s/%s",
				 json_string_value(json_object_get(a, "namespace")),
				 json_string_value(json_object_get(a, "pod")));
			printf("%-40s %-56s %-5s %-17s %s\n", pod,
			       json_string_value(json_object_get(a, "spiffe_id")),
			       json_is_true(json_object_get(a, "ready")) ? "yes" : "no",
			       json_string_value(json_object_get(a, "version")) ?: "-",
			       json_string_value(json_object_get(a, "error")) ?: "");
		}
	}
	int rc = ready == json_array_size(agents) ? 0 : 1;
	json_decref(agents);
	return rc;
}

int ctl_status(int argc, char **argv)
{
	static const struct option opts[] = {
		{"state-dir", required_argument, NULL, 's'},
		{"json", no_argument, NULL, 'j'},
		{"cluster", no_argument, NULL, 'c'},
		{"kubeconfig", required_argument, NULL, 'k'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *state = NULL, *kubeconfig = NULL;
	int json = 0, cluster = 0, c;

	optind = 1;
	while ((c = ctl_getopt("status", argc, argv, opts)) != -1) {
		switch (c) {
		case 's':
			state = optarg;
			break;
		case 'j':
			json = 1;
			break;
		case 'c':
			cluster = 1;
			break;
		case 'k':
			kubeconfig = optarg;
			cluster = 1;
			break;
		case 'h':
			fputs(ctl_status_usage, stdout);
			return 0;
		default:
			return 2;
		}
	}
	if (optind < argc)
		return ctl_usage_error("status", "unexpected argument %s", argv[optind]);
	if (cluster && state)
		return ctl_usage_error("status",
				       "--state-dir is for the admin socket, not --cluster");
	if (cluster)
		return ctl_status_cluster(kubeconfig, json);
	if (!state)
		state = CTL_DEFAULT_STATE_DIR;
	json_t *req = json_pack("{s:s}", "op", "status");
	json_t *r = req ? ctl_admin_call(state, req) : NULL;
	json_decref(req);
	if (!r)
		return 2;
	if (json) {
		json_dumpf(r, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
	} else {
		ctl_status_table(r);
	}
	json_decref(r);
	return 0;
}
