/* harness: the policy library, asked questions in batches, for the
 * reference model's differential test (model.py, docs/policy.md).
 *
 * It goes the way the agent goes: the files are read and validated
 * (pset), compiled into one snapshot per workload (pcompile, what
 * cinch-control streams), and each snapshot is loaded into the slice the
 * agent decides with. Nothing here decides anything itself: it only reports
 * what the library says, so the model and the engine share no code.
 *
 * Protocol: one JSON object per line on stdin, one answer per line on
 * stdout.
 *   {"load": {"policy": PATH, "workloads": PATH}}
 *       -> {"ok": true} or {"error": "file:line:column: field: message"}
 *   {"to": "ns/name", "from": SPIFFE-ID, or "ip": ADDRESS, "port": N,
 *    "caller": "ns/name" (optional: the caller's own workload)}
 *       -> {"verdict", "rule" (null), "reason",
 *           "explained": the first rule each_rule reports as matching both
 *                        port and caller (null),
 *           "peers": [[id or null, verdict], ...] what the caller's slice
 *                    says of each address of `to` on `port` (only with
 *                    "caller")}
 * Exit 0 at the end of input, 2 on a malformed line. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cinch/v1/config.pb-c.h"
#include "compile.h"
#include "model.h"
#include "policy.h"

struct world {
	struct pset *set;
	struct policy_slice **slices; /* per workload of set */
};

static void world_clear(struct world *w)
{
	for (size_t i = 0; w->set && w->slices && i < w->set->n_workloads; i++)
		policy_slice_unref(w->slices[i]);
	free(w->slices);
	pset_free(w->set);
	memset(w, 0, sizeof(*w));
}

/* Reads both paths (once when equal), compiles every workload's snapshot
 * and loads it as the agent would. */
static json_t *world_load(struct world *w, const char *policy, const char *workloads)
{
	struct policy_error err;
	struct pcompiled *comp = NULL;
	char where[1024];

	world_clear(w);
	memset(&err, 0, sizeof(err));
	if (!(w->set = pset_new("cluster.local")))
		return NULL;
	if (pset_add_path(w->set, policy, &err) < 0 ||
	    (strcmp(policy, workloads) && pset_add_path(w->set, workloads, &err) < 0) ||
	    pset_finish(w->set, &err) < 0 || pcompile_new(w->set, &comp) < 0) {
		snprintf(where, sizeof(where), "%s:%d:%d: %s: %s", err.file, err.line, err.column,
			 err.path, err.msg);
		world_clear(w);
		pcompile_free(comp);
		return json_pack("{s:s}", "error", where);
	}
	w->slices = calloc(w->set->n_workloads + 1, sizeof(*w->slices));
	for (size_t i = 0; w->slices && i < w->set->n_workloads; i++) {
		uint8_t *buf = NULL;
		size_t len;
		Cinch__V1__Snapshot *snap = NULL;
		int rc = pcompile_snapshot(comp, i, &buf, &len);
		if (rc == 0 && !(snap = cinch__v1__snapshot__unpack(NULL, len, buf)))
			rc = -EINVAL;
		if (rc == 0)
			rc = policy_slice_from_snapshot(&w->slices[i], snap, &err);
		if (snap)
			cinch__v1__snapshot__free_unpacked(snap, NULL);
		free(buf);
		if (rc < 0) {
			snprintf(where, sizeof(where), "snapshot of workload %zu: %d: %s", i, rc,
				 err.msg);
			pcompile_free(comp);
			world_clear(w);
			return json_pack("{s:s}", "error", where);
		}
	}
	pcompile_free(comp);
	return json_pack("{s:b}", "ok", 1);
}

static const struct pworkload *world_find(const struct world *w, const char *nsname, size_t *index)
{
	const struct pworkload *x = w->set ? pcompile_find(w->set, nsname, NULL, 0) : NULL;
	if (x)
		*index = (size_t)(x - w->set->workloads);
	return x;
}

static int parse_ip(const char *text, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, text, &((struct sockaddr_in *)ss)->sin_addr) == 1)
		ss->ss_family = AF_INET;
	else if (inet_pton(AF_INET6, text, &((struct sockaddr_in6 *)ss)->sin6_addr) == 1)
		ss->ss_family = AF_INET6;
	else
		return -1;
	return 0;
}

struct first_rule {
	const char *rule;
};

static void first_rule_cb(void *arg, const char *rule, int port_match, int source_match)
{
	struct first_rule *f = arg;
	if (port_match && source_match && !f->rule)
		f->rule = rule;
}

static json_t *world_ask(const struct world *w, const json_t *q)
{
	const char *to = json_string_value(json_object_get(q, "to"));
	const char *from = json_string_value(json_object_get(q, "from"));
	const char *ip = json_string_value(json_object_get(q, "ip"));
	const char *caller = json_string_value(json_object_get(q, "caller"));
	json_int_t port = json_integer_value(json_object_get(q, "port"));
	struct sockaddr_storage src;
	struct policy_decision d;
	struct first_rule first = {0};
	size_t ti, ci;

	if (!to || !world_find(w, to, &ti) || port < 1 || port > 65535 || (!from && !ip) ||
	    (ip && parse_ip(ip, &src) < 0))
		return json_pack("{s:s}", "error", "bad query or no such workload");
	const struct policy_slice *s = w->slices[ti];
	const struct sockaddr *sa = ip ? (const struct sockaddr *)&src : NULL;
	policy_slice_decide_inbound(s, ip ? NULL : from, sa, (uint16_t)port, &d);
	policy_slice_each_rule(s, ip ? NULL : from, sa, (uint16_t)port, first_rule_cb, &first);
	json_t *a = json_pack("{s:s, s:s?, s:s, s:s?}", "verdict", policy_verdict_name(d.verdict),
			      "rule", d.rule, "reason", d.reason, "explained", first.rule);
	if (!a || !caller)
		return a;
	const struct pworkload *tw = &w->set->workloads[ti];
	json_t *peers = json_array();
	if (!world_find(w, caller, &ci) || !peers) {
		json_decref(a);
		json_decref(peers);
		return json_pack("{s:s}", "error", "no such caller");
	}
	for (size_t i = 0; i < tw->n_addrs; i++) {
		struct sockaddr_storage dst;
		struct policy_decision pd;
		if (parse_ip(tw->addrs[i].text, &dst) < 0)
			continue;
		const char *id = policy_slice_peer(w->slices[ci], (struct sockaddr *)&dst,
						   (uint16_t)port, &pd);
		json_array_append_new(peers,
				      json_pack("[s?, s]", id, policy_verdict_name(pd.verdict)));
	}
	json_object_set_new(a, "peers", peers);
	return a;
}

int main(void)
{
	struct world w = {0};
	char *line = NULL;
	size_t cap = 0;
	int rc = 0;

	while (getline(&line, &cap, stdin) > 0) {
		json_error_t je;
		json_t *q = json_loads(line, 0, &je), *a, *load;
		if (!q) {
			fprintf(stderr, "harness: bad line: %s\n", je.text);
			rc = 2;
			break;
		}
		if ((load = json_object_get(q, "load")))
			a = world_load(&w, json_string_value(json_object_get(load, "policy")) ?: "",
				       json_string_value(json_object_get(load, "workloads")) ?: "");
		else
			a = world_ask(&w, q);
		json_decref(q);
		if (!a) {
			fprintf(stderr, "harness: out of memory\n");
			rc = 2;
			break;
		}
		char *out = json_dumps(a, JSON_COMPACT);
		json_decref(a);
		if (!out) {
			rc = 2;
			break;
		}
		puts(out);
		fflush(stdout);
		free(out);
	}
	free(line);
	world_clear(&w);
	return rc;
}
