/* ctl_whatif: `cinchctl policy whatif`: the connections the agents
 * recorded (their JSON access logs, docs/agent.md) replayed against a
 * proposed policy set; prints every flow whose verdict would change.
 *
 * Three passes, so a log costs one JSON parse per line and one decision
 * per distinct flow:
 *   1. read: each file is streamed (a line is at most WI_LINE_MAX bytes;
 *      nothing else of it is kept), each connection line reduced to its
 *      flow (direction, caller, destination address and port, today's
 *      verdict and rule) and counted in a hash table of distinct flows;
 *   2. replay: the proposed set is compiled once (pcompile_new); the
 *      flows are taken workload by workload, each workload's slice made
 *      from its snapshot, the bytes the control plane streams and the
 *      agent loads (policy_slice_from_snapshot), and dropped after its
 *      flows (one slice held at a time: each carries its peers, so all
 *      of a large mesh's would not fit); each distinct flow is decided by that
 *      slice with the calls agent/proxy.c makes: inbound,
 *      policy_slice_decide_inbound at the workload owning the destination
 *      address; outbound, policy_slice_peer then policy_slice_decide_egress
 *      at the workload owning the source address. No second evaluator;
 *   3. report: the changed flows sorted and merged into groups (source ->
 *      destination:port, old and new verdict and rule), counted.
 *
 * Which lines count (docs/policy.md, "What if"):
 *   - blank lines, and JSON objects whose "event" is not "connection" (the
 *     agent's other events share its log), are skipped and counted;
 *   - any other line that is not a JSON object with an "event", a
 *     connection line without one of its fields, or a line longer than
 *     WI_LINE_MAX is malformed: named by file:line, and the run ends with
 *     status 2 and no report (a report on part of the input would pass
 *     for the whole);
 *   - a connection the policy did not decide (refused before deciding:
 *     budgets, misdirected, handshake failed; or allowed, then failed
 *     with a verdict the log no longer tells) is counted, not replayed. */
#include "ctl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cinch/v1/config.pb-c.h"
#include "compile.h"
#include "ctl_logline.h"
#include "model.h"
#include "policy.h"

#define WI_LINE_MAX   65536	    /* an access line is well under 4 KiB */
#define WI_BUF	      (1u << 20)    /* read size */
#define WI_MAX_ERRORS 20	    /* malformed lines named; the rest counted */
#define WI_MAX_PATHS  256

static const char *wi_cmd = "policy whatif";

/* ---- reading: lines of at most WI_LINE_MAX bytes from a descriptor */

struct wi_reader {
	int fd;
	char *buf; /* WI_BUF + 1 (a NUL after the last line) */
	size_t start, end;
	int eof, skipping; /* skipping: inside a line longer than WI_LINE_MAX */
};

/* The next line, NUL-terminated in place: 1 and *line, *len (*too_long
 * when the line was longer than WI_LINE_MAX: its bytes are dropped), 0
 * at the end, -errno when reading failed. */
static int wi_next(struct wi_reader *r, char **line, size_t *len, int *too_long)
{
	*too_long = 0;
	for (;;) {
		char *p = r->buf + r->start;
		char *nl = memchr(p, '\n', r->end - r->start);
		if (nl || (r->eof && (r->start < r->end || r->skipping))) {
			size_t n = nl ? (size_t)(nl - p) : r->end - r->start;
			p[n] = '\0';
			*line = p;
			*len = n;
			r->start += n + (nl ? 1 : 0);
			*too_long = r->skipping || n > WI_LINE_MAX;
			r->skipping = 0;
			return 1;
		}
		if (r->eof)
			return 0;
		if (r->end - r->start > WI_LINE_MAX) {
			r->skipping = 1;
			r->start = r->end = 0;
		} else if (r->start) {
			memmove(r->buf, p, r->end - r->start);
			r->end -= r->start;
			r->start = 0;
		}
		ssize_t got = read(r->fd, r->buf + r->end, WI_BUF - r->end);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return -errno;
		r->eof = got == 0;
		r->end += (size_t)got;
	}
}

/* ---- flows: distinct (direction, caller, destination, port, verdict,
 * rule), counted */

struct wi_flow {
	uint64_t hash, count;
	struct sockaddr_storage src, dst;
	uint16_t port;
	uint8_t outbound;
	enum policy_verdict today;
	char *key; /* caller, destination address, rule: three strings */
	size_t klen;
	const char *caller, *daddr, *rule; /* into key */
	long w;				   /* replay: the workload that decides it */
};

struct wi_table {
	struct wi_flow **slot;
	size_t cap, n;
};

static uint64_t wi_hash(const char *k, size_t len, uint64_t h)
{
	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)k[i]) * 0x100000001b3ull;
	return h;
}

static int wi_grow(struct wi_table *t)
{
	size_t cap = t->cap ? t->cap * 2 : 1024;
	struct wi_flow **slot = calloc(cap, sizeof(*slot));

	if (!slot)
		return -ENOMEM;
	for (size_t i = 0; i < t->cap; i++) {
		if (!t->slot[i])
			continue;
		size_t j = t->slot[i]->hash & (cap - 1);
		while (slot[j])
			j = (j + 1) & (cap - 1);
		slot[j] = t->slot[i];
	}
	free(t->slot);
	t->slot = slot;
	t->cap = cap;
	return 0;
}

/* Counts one connection of flow `f` (its key not yet allocated): 0 or
 * -ENOMEM. */
static int wi_count(struct wi_table *t, const struct wi_flow *f, const char *key, size_t klen)
{
	uint64_t h = wi_hash(key, klen, 0xcbf29ce484222325ull ^ f->port ^ (uint64_t)f->outbound << 17 ^
						  (uint64_t)f->today << 18);
	size_t j;

	if (2 * (t->n + 1) > t->cap && wi_grow(t) < 0)
		return -ENOMEM;
	for (j = h & (t->cap - 1); t->slot[j]; j = (j + 1) & (t->cap - 1)) {
		struct wi_flow *e = t->slot[j];
		if (e->hash == h && e->port == f->port && e->outbound == f->outbound &&
		    e->today == f->today && e->klen == klen && !memcmp(e->key, key, klen)) {
			e->count++;
			return 0;
		}
	}
	struct wi_flow *e = malloc(sizeof(*e));
	char *k = malloc(klen);
	if (!e || !k) {
		free(e);
		free(k);
		return -ENOMEM;
	}
	*e = *f;
	memcpy(k, key, klen);
	e->hash = h;
	e->count = 1;
	e->key = k;
	e->klen = klen;
	e->caller = k;
	e->daddr = k + strlen(k) + 1;
	e->rule = e->daddr + strlen(e->daddr) + 1;
	t->slot[j] = e;
	t->n++;
	return 0;
}

static void wi_table_free(struct wi_table *t)
{
	for (size_t i = 0; i < t->cap; i++)
		if (t->slot[i]) {
			free(t->slot[i]->key);
			free(t->slot[i]);
		}
	free(t->slot);
}

/* ---- one access line */

struct wi_stats {
	uint64_t lines, connections, skipped, undecided, malformed;
};

/* "addr:port" or "[addr]:port" as an address (an IPv4-mapped IPv6 one
 * made IPv4, the spelling a workload's address has) and its canonical
 * text; 0 or -EINVAL. */
static int wi_addr(const char *s, struct sockaddr_storage *ss, uint16_t *port, char *text,
		   size_t len)
{
	char host[INET6_ADDRSTRLEN];
	const char *colon = strrchr(s, ':'), *h = s;
	size_t hl;
	char *end;

	if (!colon)
		return -EINVAL;
	hl = (size_t)(colon - s);
	if (s[0] == '[') {
		if (hl < 2 || s[hl - 1] != ']')
			return -EINVAL;
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	errno = 0;
	unsigned long p = strtoul(colon + 1, &end, 10);
	if (*end || end == colon + 1 || colon[1] == '-' || colon[1] == '+' || p > 65535 || errno)
		return -EINVAL;
	*port = (uint16_t)p;
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
	if (s[0] != '[' && inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		ss->ss_family = AF_INET;
	} else if (s[0] == '[' && inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		ss->ss_family = AF_INET6;
		if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
			struct in_addr a;
			memcpy(&a, v6->sin6_addr.s6_addr + 12, 4);
			memset(ss, 0, sizeof(*ss));
			v4->sin_family = AF_INET;
			v4->sin_addr = a;
		}
	} else {
		return -EINVAL;
	}
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &v4->sin_addr, text, (socklen_t)len);
	else
		inet_ntop(AF_INET6, &v6->sin6_addr, text, (socklen_t)len);
	return 0;
}

/* The fields of a log line whatif reads (ctl_logline). */
enum {
	WF_EVENT = 0,
	WF_DIRECTION,
	WF_SRC,
	WF_DST,
	WF_PEER_ID,
	WF_VERDICT,
	WF_RULE,
	WF_END,
	WF_N,
};

static const char *const wi_field_names[WF_N] = {
	[WF_EVENT] = "event", [WF_DIRECTION] = "direction", [WF_SRC] = "src",
	[WF_DST] = "dst",     [WF_PEER_ID] = "peer_id",	    [WF_VERDICT] = "verdict",
	[WF_RULE] = "rule",   [WF_END] = "end",
};

/* Today's verdict of a connection line: 1 and *out, 0 when the policy did
 * not decide it, -1 for a verdict that is none. agent/proxy.c starts every
 * connection at deny with no rule, and pc_refuse() turns an allowed one
 * that fails afterwards into deny keeping its rule: so a deny is the
 * policy's when it ended "denied" (or was closed by a new policy,
 * "policy_change"), an allow when a rule is left, else undecided. */
static int wi_today(const char *verdict, const char *rule, const char *end,
		    enum policy_verdict *out)
{
	if (!strcmp(verdict, "allow"))
		*out = POLICY_ALLOW;
	else if (!strcmp(verdict, "audit-deny"))
		*out = POLICY_AUDIT_DENY;
	else if (strcmp(verdict, "deny"))
		return -1;
	else if (!strcmp(end, "denied") || !strcmp(end, "policy_change"))
		*out = POLICY_DENY;
	else if (rule[0])
		*out = POLICY_ALLOW;
	else
		return 0;
	return 1;
}

static char wi_key[3 * WI_LINE_MAX];

/* One line: NULL when it was counted (or skipped), else why it is
 * malformed (static text). -ENOMEM through *oom. */
static const char *wi_line(struct wi_table *t, struct wi_stats *st, char *line, size_t len,
			   int *oom)
{
	static char why[200];
	struct ctl_logline x;
	size_t i = 0;

	while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
		i++;
	if (i == len) {
		st->skipped++;
		return NULL;
	}
	if (ctl_logline_scan(&x, line, len, wi_field_names, WF_N) < 0) {
		snprintf(why, sizeof(why), "not JSON: %s (column %zu)", x.why, x.column);
		return why;
	}
	const char *event = x.v[WF_EVENT];
	if (!event)
		return "not an agent's log line: no \"event\"";
	if (strcmp(event, "connection")) {
		st->skipped++;
		return NULL;
	}
	st->connections++;
	for (int k = 0; k < WF_N; k++)
		if (!x.v[k]) {
			snprintf(why, sizeof(why), "connection line without a string \"%s\"",
				 wi_field_names[k]);
			return why;
		}
	const char *dir = x.v[WF_DIRECTION], *src = x.v[WF_SRC], *dst = x.v[WF_DST],
		   *peer = x.v[WF_PEER_ID], *verdict = x.v[WF_VERDICT], *rule = x.v[WF_RULE],
		   *end = x.v[WF_END];
	struct wi_flow f = {0};
	char stext[INET6_ADDRSTRLEN], dtext[INET6_ADDRSTRLEN];
	uint16_t sport;
	if (!strcmp(dir, "outbound"))
		f.outbound = 1;
	else if (strcmp(dir, "inbound")) {
		return "connection line: \"direction\" is neither inbound nor outbound";
	}
	if (wi_addr(src, &f.src, &sport, stext, sizeof(stext)) < 0) {
		return "connection line: \"src\" is not an address:port";
	}
	if (wi_addr(dst, &f.dst, &f.port, dtext, sizeof(dtext)) < 0 || f.port == 0) {
		return "connection line: \"dst\" is not an address:port";
	}
	int decided = wi_today(verdict, rule, end, &f.today);
	if (decided < 0) {
		return "connection line: \"verdict\" is not allow, deny or audit-deny";
	}
	if (!decided) {
		st->undecided++;
		return NULL;
	}
	/* The caller as the policy sees it: its SPIFFE ID, or for plaintext
	 * (and every outbound connection: its source is this workload) its
	 * address. */
	const char *caller = !f.outbound && peer[0] ? peer : stext;
	size_t cl = strlen(caller), dl = strlen(dtext), rl = strlen(rule);
	memcpy(wi_key, caller, cl + 1);
	memcpy(wi_key + cl + 1, dtext, dl + 1);
	memcpy(wi_key + cl + dl + 2, rule, rl + 1);
	if (wi_count(t, &f, wi_key, cl + dl + rl + 3) < 0)
		*oom = 1;
	return NULL;
}

/* Reads one file (or "-", standard input) into the table: 0, or 2 after
 * printing why it cannot be read. Malformed lines are printed (the first
 * WI_MAX_ERRORS) and counted in st->malformed. */
static int wi_read(struct wi_table *t, struct wi_stats *st, const char *path, char *buf)
{
	struct wi_reader r = {.buf = buf};
	const char *name = strcmp(path, "-") ? path : "-";
	char *line = NULL;
	size_t len = 0, n = 0;
	int too_long, rc, oom = 0;

	r.fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC) : STDIN_FILENO;
	if (r.fd < 0) {
		fprintf(stderr, "cinchctl %s: %s: %s\n", wi_cmd, name, strerror(errno));
		return 2;
	}
	while ((rc = wi_next(&r, &line, &len, &too_long)) > 0) {
		const char *why = too_long ? "line longer than 65536 bytes"
					   : wi_line(t, st, line, len, &oom);
		n++;
		st->lines++;
		if (oom) {
			fprintf(stderr, "cinchctl %s: out of memory\n", wi_cmd);
			rc = -ENOMEM;
			break;
		}
		if (why && ++st->malformed <= WI_MAX_ERRORS)
			fprintf(stderr, "%s:%zu: %s\n", name, n, why);
	}
	if (rc < 0 && !oom)
		fprintf(stderr, "cinchctl %s: %s: %s\n", wi_cmd, name, strerror(-rc));
	if (r.fd != STDIN_FILENO)
		close(r.fd);
	return rc < 0 ? 2 : 0;
}

/* ---- replay */

struct wi_owner {
	struct prange r;
	size_t w;
};

struct wi_replay {
	const struct pset *set;
	struct pcompiled *comp;
	struct wi_owner *owners; /* every workload address, sorted */
	size_t n_owners;
	char **names; /* per workload, "ns/name" */
};

static int wi_owner_cmp(const void *a, const void *b)
{
	return prange_cmp(&((const struct wi_owner *)a)->r, &((const struct wi_owner *)b)->r);
}

/* The index of the workload owning address `sa`, or -1. */
static long wi_owner_of(const struct wi_replay *x, const struct sockaddr_storage *sa)
{
	struct prange k;
	size_t lo = 0, hi = x->n_owners;

	if (paddr_of((const struct sockaddr *)sa, &k.v6, &k.lo) < 0)
		return -1;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct prange *m = &x->owners[mid].r;
		if (m->v6 < k.v6 || (m->v6 == k.v6 && m->hi < k.lo))
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < x->n_owners && x->owners[lo].r.v6 == k.v6 && x->owners[lo].r.lo <= k.lo &&
	    k.lo <= x->owners[lo].r.hi)
		return (long)x->owners[lo].w;
	return -1;
}

static int wi_replay_init(struct wi_replay *x, const struct pset *s)
{
	size_t n = 0;

	memset(x, 0, sizeof(*x));
	x->set = s;
	if (pcompile_new(s, &x->comp) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < s->n_workloads; i++)
		n += s->workloads[i].n_addrs;
	x->owners = calloc(n + 1, sizeof(*x->owners));
	x->names = calloc(s->n_workloads + 1, sizeof(*x->names));
	if (!x->owners || !x->names)
		return -ENOMEM;
	for (size_t i = 0; i < s->n_workloads; i++) {
		const struct pworkload *w = &s->workloads[i];
		size_t l = strlen(w->ns) + strlen(w->name) + 2;
		if (!(x->names[i] = malloc(l)))
			return -ENOMEM;
		snprintf(x->names[i], l, "%s/%s", w->ns, w->name);
		for (size_t a = 0; a < w->n_addrs; a++) {
			pcidr_range(&w->addrs[a], &x->owners[x->n_owners].r);
			x->owners[x->n_owners++].w = i;
		}
	}
	qsort(x->owners, x->n_owners, sizeof(*x->owners), wi_owner_cmp);
	return 0;
}

static void wi_replay_cleanup(struct wi_replay *x)
{
	for (size_t i = 0; x->names && i < x->set->n_workloads; i++)
		free(x->names[i]);
	free(x->names);
	free(x->owners);
	pcompile_free(x->comp);
}

/* Workload w's slice, as its agent would load it from the control plane:
 * the compiled snapshot, packed, unpacked and loaded. A new reference, or
 * NULL on failure (printed). */
static struct policy_slice *wi_slice(struct wi_replay *x, size_t w)
{
	uint8_t *buf = NULL;
	size_t len;
	Cinch__V1__Snapshot *snap = NULL;
	struct policy_slice *s = NULL;
	struct policy_error err;

	if (pcompile_snapshot(x->comp, pcompile_index_of(x->comp, &x->set->workloads[w]), &buf,
			      &len) < 0 ||
	    !(snap = cinch__v1__snapshot__unpack(NULL, len, buf)))
		fprintf(stderr, "cinchctl %s: out of memory\n", wi_cmd);
	else if (policy_slice_from_snapshot(&s, snap, &err) < 0)
		ctl_policy_err(&err);
	if (snap)
		cinch__v1__snapshot__free_unpacked(snap, NULL);
	free(buf);
	return s;
}

/* A flow decided anew, or not replayed (no workload owns its address). */
struct wi_change {
	const char *source, *dest; /* workload names, SPIFFE IDs or addresses */
	uint16_t port;
	uint8_t outbound;
	enum policy_verdict old, new;
	const char *old_rule, *new_rule, *reason; /* "" for none */
	char *own; /* new_rule and reason, copied: the slice goes first */
	uint64_t count;
	int kind; /* WI_REFUSED ... */
};

enum {
	WI_REFUSED = 0, /* allowed today (allow, audit-deny), deny now */
	WI_ALLOWED,	/* deny today, allowed now */
	WI_OTHER,	/* between allow and audit-deny */
	WI_UNKNOWN,	/* not replayed: no workload owns the address */
	WI_N_KINDS,
};

static int wi_kind_of(enum policy_verdict old, enum policy_verdict now)
{
	if (old != POLICY_DENY && now == POLICY_DENY)
		return WI_REFUSED;
	if (old == POLICY_DENY)
		return WI_ALLOWED;
	return WI_OTHER;
}

/* Decides flow f with s, the slice of its workload f->w (NULL when no
 * workload owns its address): 1 and *c when its verdict changes (or it
 * cannot be replayed), 0 when not, -1 on ENOMEM. */
static int wi_decide(const struct wi_replay *x, const struct policy_slice *s,
		     const struct wi_flow *f, struct wi_change *c)
{
	long w = f->w, dw = f->outbound ? wi_owner_of(x, &f->dst) : w;
	struct policy_decision d;

	*c = (struct wi_change){
		.source = f->caller,
		.dest = dw >= 0 ? x->names[dw] : f->daddr,
		.port = f->port,
		.outbound = f->outbound,
		.old = f->today,
		.old_rule = f->rule,
		.new_rule = "",
		.reason = "",
		.count = f->count,
		.kind = WI_UNKNOWN,
	};
	if (w < 0) {
		c->dest = f->daddr;
		c->reason = f->outbound ? "no workload of the set has the source address"
					: "no workload of the set has the destination address";
		return 1;
	}
	if (f->outbound)
		c->source = x->names[w];
	if (!f->outbound) {
		const char *id = strncmp(f->caller, "spiffe://", 9) ? NULL : f->caller;
		policy_slice_decide_inbound(s, id, (const struct sockaddr *)&f->src, f->port, &d);
	} else if (!policy_slice_peer(s, (const struct sockaddr *)&f->dst, f->port, &d)) {
		policy_slice_decide_egress(s, (const struct sockaddr *)&f->dst, f->port, &d);
	}
	if (d.verdict == f->today)
		return 0;
	const char *rule = d.rule ? d.rule : "", *reason = d.reason ? d.reason : "";
	size_t rl = strlen(rule) + 1, nl = strlen(reason) + 1;
	if (!(c->own = malloc(rl + nl)))
		return -1;
	c->new = d.verdict;
	c->new_rule = memcpy(c->own, rule, rl);
	c->reason = memcpy(c->own + rl, reason, nl);
	c->kind = wi_kind_of(f->today, d.verdict);
	return 1;
}

/* Order of the report: kind, source, destination, port, direction, then
 * the verdicts and rules; equal in all of them is one group. */
static int wi_change_cmp(const void *pa, const void *pb)
{
	const struct wi_change *a = pa, *b = pb;
	int r;

	if (a->kind != b->kind)
		return a->kind < b->kind ? -1 : 1;
	if ((r = strcmp(a->source, b->source)) || (r = strcmp(a->dest, b->dest)))
		return r;
	if (a->port != b->port)
		return a->port < b->port ? -1 : 1;
	if (a->outbound != b->outbound)
		return a->outbound < b->outbound ? -1 : 1;
	if (a->old != b->old)
		return a->old < b->old ? -1 : 1;
	if (a->new != b->new)
		return a->new < b->new ? -1 : 1;
	if ((r = strcmp(a->old_rule, b->old_rule)) || (r = strcmp(a->new_rule, b->new_rule)))
		return r;
	return strcmp(a->reason, b->reason);
}

/* ---- report */

static const char *const wi_kind_title[WI_N_KINDS] = {
	[WI_REFUSED] = "would be refused (allowed today)",
	[WI_ALLOWED] = "would be allowed (refused today)",
	[WI_OTHER] = "would change between allow and audit-deny",
	[WI_UNKNOWN] = "not replayed",
};

static const char *const wi_kind_name[WI_N_KINDS] = {
	[WI_REFUSED] = "refused",
	[WI_ALLOWED] = "allowed",
	[WI_OTHER] = "changed",
	[WI_UNKNOWN] = "not_replayed",
};

static void wi_print_text(const struct wi_change *g, size_t n, const struct wi_stats *st,
			  const uint64_t *by_kind, size_t n_files)
{
	int kind = -1;

	for (size_t i = 0; i < n; i++) {
		const struct wi_change *c = &g[i];
		if (c->kind != kind) {
			kind = c->kind;
			printf("%s:\n", wi_kind_title[kind]);
		}
		printf("  %-8s %s -> %s:%u  %llu connection%s\n", c->outbound ? "outbound" : "inbound",
		       c->source, c->dest, c->port, (unsigned long long)c->count,
		       c->count == 1 ? "" : "s");
		if (kind == WI_UNKNOWN) {
			printf("    %s\n", c->reason);
			continue;
		}
		printf("    %s%s%s -> %s%s%s: %s\n", policy_verdict_name(c->old),
		       c->old_rule[0] ? " by " : "", c->old_rule, policy_verdict_name(c->new),
		       c->new_rule[0] ? " by " : "", c->new_rule, c->reason);
	}
	if (!by_kind[WI_REFUSED] && !by_kind[WI_ALLOWED] && !by_kind[WI_OTHER])
		printf("no verdict would change\n");
	printf("%llu connection%s in %zu file%s: %llu replayed, %llu not decided by a policy, "
	       "%llu not replayed; %llu other line%s skipped\n",
	       (unsigned long long)st->connections, st->connections == 1 ? "" : "s", n_files,
	       n_files == 1 ? "" : "s",
	       (unsigned long long)(st->connections - st->undecided - by_kind[WI_UNKNOWN]),
	       (unsigned long long)st->undecided, (unsigned long long)by_kind[WI_UNKNOWN],
	       (unsigned long long)st->skipped, st->skipped == 1 ? "" : "s");
	printf("%llu would be refused, %llu would be allowed, %llu would change between allow "
	       "and audit-deny\n",
	       (unsigned long long)by_kind[WI_REFUSED], (unsigned long long)by_kind[WI_ALLOWED],
	       (unsigned long long)by_kind[WI_OTHER]);
}

static json_t *wi_verdict_json(enum policy_verdict v, const char *rule, const char *reason)
{
	json_t *o = json_pack("{s:s, s:o}", "verdict", policy_verdict_name(v), "rule",
			      rule[0] ? json_string(rule) : json_null());
	if (o && reason)
		json_object_set_new(o, "reason", json_string(reason));
	return o;
}

static int wi_print_json(const struct wi_change *g, size_t n, const struct wi_stats *st,
			 const uint64_t *by_kind)
{
	json_t *changes = json_array(), *root;

	for (size_t i = 0; changes && i < n; i++) {
		const struct wi_change *c = &g[i];
		json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:I}", "change",
				      wi_kind_name[c->kind], "direction",
				      c->outbound ? "outbound" : "inbound", "source", c->source,
				      "destination", c->dest, "port", (int)c->port, "count",
				      (json_int_t)c->count);
		if (o && c->kind == WI_UNKNOWN) {
			json_object_set_new(o, "reason", json_string(c->reason));
		} else if (o) {
			json_object_set_new(o, "old", wi_verdict_json(c->old, c->old_rule, NULL));
			json_object_set_new(o, "new",
					    wi_verdict_json(c->new, c->new_rule, c->reason));
		}
		if (!o || json_array_append_new(changes, o) < 0) {
			json_decref(changes);
			changes = NULL;
		}
	}
	root = changes ? json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "connections",
				   (json_int_t)st->connections, "replayed",
				   (json_int_t)(st->connections - st->undecided -
						by_kind[WI_UNKNOWN]),
				   "undecided", (json_int_t)st->undecided, "not_replayed",
				   (json_int_t)by_kind[WI_UNKNOWN], "skipped_lines",
				   (json_int_t)st->skipped, "refused",
				   (json_int_t)by_kind[WI_REFUSED], "allowed",
				   (json_int_t)by_kind[WI_ALLOWED], "changed",
				   (json_int_t)by_kind[WI_OTHER], "changes", changes)
			   : NULL;
	if (!root || json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) < 0) {
		json_decref(root);
		fprintf(stderr, "cinchctl %s: out of memory\n", wi_cmd);
		return -ENOMEM;
	}
	putchar('\n');
	json_decref(root);
	return 0;
}

/* Replays every flow of t and prints the report: 0 nothing allowed today
 * would be refused, 1 something would, 2 on failure. */
static int wi_flow_cmp(const void *a, const void *b)
{
	long x = (*(struct wi_flow *const *)a)->w, y = (*(struct wi_flow *const *)b)->w;
	return x < y ? -1 : x > y;
}

/* Replays every flow of t (one workload after the other, so one slice is
 * held at a time) and prints the report: 0 nothing allowed today would be
 * refused, 1 something would, 2 on failure. */
static int wi_report(const struct pset *s, const struct wi_table *t, const struct wi_stats *st,
		     size_t n_files, int json)
{
	struct wi_replay x;
	struct wi_flow **fl = NULL;
	struct wi_change *g = NULL;
	struct policy_slice *slice = NULL;
	uint64_t by_kind[WI_N_KINDS] = {0};
	size_t n = 0, m = 0, nf = 0;
	int rc = 2;

	if (wi_replay_init(&x, s) < 0 || !(g = calloc(t->n + 1, sizeof(*g))) ||
	    !(fl = calloc(t->n + 1, sizeof(*fl))))
		goto oom;
	for (size_t i = 0; i < t->cap; i++)
		if ((fl[nf] = t->slot[i])) {
			fl[nf]->w = wi_owner_of(&x, fl[nf]->outbound ? &fl[nf]->src : &fl[nf]->dst);
			nf++;
		}
	qsort(fl, nf, sizeof(*fl), wi_flow_cmp);
	for (size_t i = 0; i < nf; i++) {
		if (fl[i]->w >= 0 && (i == 0 || fl[i]->w != fl[i - 1]->w)) {
			policy_slice_unref(slice);
			if (!(slice = wi_slice(&x, (size_t)fl[i]->w)))
				goto out;
		}
		int r = wi_decide(&x, slice, fl[i], &g[n]);
		if (r < 0)
			goto oom;
		n += (size_t)r;
	}
	qsort(g, n, sizeof(*g), wi_change_cmp);
	for (size_t i = 0; i < n; i++) {
		by_kind[g[i].kind] += g[i].count;
		if (m && !wi_change_cmp(&g[m - 1], &g[i])) {
			g[m - 1].count += g[i].count;
			free(g[i].own);
			g[i].own = NULL;
			continue;
		}
		g[m++] = g[i];
	}
	n = m;
	if (json) {
		if (wi_print_json(g, m, st, by_kind) < 0)
			goto out;
	} else {
		wi_print_text(g, m, st, by_kind, n_files);
	}
	rc = by_kind[WI_REFUSED] ? 1 : 0;
	goto out;
oom:
	fprintf(stderr, "cinchctl %s: out of memory\n", wi_cmd);
out:
	for (size_t i = 0; g && i < n; i++)
		free(g[i].own);
	free(g);
	free(fl);
	policy_slice_unref(slice);
	wi_replay_cleanup(&x);
	return rc;
}

/* ---- the command line */

/* The values after a flag that takes several: the arguments up to the
 * next flag ("-" alone is a value). The index of the last one taken. */
static int wi_values(int argc, char **argv, int i, const char **out, size_t *n)
{
	while (i + 1 < argc && (argv[i + 1][0] != '-' || !argv[i + 1][1])) {
		if (*n < WI_MAX_PATHS)
			out[*n] = argv[i + 1];
		(*n)++;
		i++;
	}
	return i;
}

static const char *wi_usage =
	"usage: cinchctl policy whatif --flows FILE... [--output text|json]\n"
	"                              (--policy PATH... --workloads PATH... |\n"
	"                               --from-cluster [--kubeconfig FILE])\n"
	"\n"
	"Replays the connections of agents' access logs (FILE: a log, - for\n"
	"stdin; any number) against the proposed policy set and prints every\n"
	"flow whose verdict would change, grouped by source -> destination:port\n"
	"with counts, the verdict and rule of today and of the proposal.\n"
	"Lines of other events are skipped; a malformed line is named by\n"
	"file:line. Exit 0 when nothing allowed today would be refused, 1 when\n"
	"something would, 2 on a usage error or bad input (no report).\n";

int ctl_policy_whatif(int argc, char **argv)
{
	const char *flows[WI_MAX_PATHS], *paths[2 * WI_MAX_PATHS + 2], *kubeconfig = NULL;
	size_t n_flows = 0, n_policy = 0, n_workloads = 0, n_paths = 0;
	const char *policy[WI_MAX_PATHS], *workloads[WI_MAX_PATHS];
	int json = 0, cluster = 0, stdin_used = 0, rc = 2;
	struct wi_table t = {0};
	struct wi_stats st = {0};
	struct policy_error err;
	struct pset *s = NULL;
	char cp[32], cw[32], *buf = NULL;

	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(wi_usage, stdout);
			return 0;
		}
	}
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		size_t *n = !strcmp(a, "--flows")     ? &n_flows
			    : !strcmp(a, "--policy")    ? &n_policy
			    : !strcmp(a, "--workloads") ? &n_workloads
							: NULL;
		if (n) {
			size_t before = *n;
			i = wi_values(argc, argv, i, n == &n_flows	  ? flows
						     : n == &n_policy ? policy
								      : workloads,
				      n);
			if (*n == before)
				return ctl_usage_error(wi_cmd, "%s needs a value", a);
		} else if (!strcmp(a, "--output")) {
			if (++i == argc)
				return ctl_usage_error(wi_cmd, "%s needs a value", a);
			if (strcmp(argv[i], "json") && strcmp(argv[i], "text"))
				return ctl_usage_error(wi_cmd, "--output: text or json, not %s",
						       argv[i]);
			json = !strcmp(argv[i], "json");
		} else if (!strcmp(a, "--from-cluster")) {
			cluster = 1;
		} else if (!strcmp(a, "--kubeconfig")) {
			if (++i == argc)
				return ctl_usage_error(wi_cmd, "%s needs a value", a);
			kubeconfig = argv[i];
		} else if (a[0] == '-' && a[1]) {
			return ctl_usage_error(wi_cmd, "unknown flag %s", a);
		} else {
			return ctl_usage_error(wi_cmd, "unexpected argument %s", a);
		}
	}
	if (n_flows > WI_MAX_PATHS || n_policy > WI_MAX_PATHS || n_workloads > WI_MAX_PATHS)
		return ctl_usage_error(wi_cmd, "more than %d paths after one flag", WI_MAX_PATHS);
	if (kubeconfig && !cluster)
		return ctl_usage_error(wi_cmd, "--kubeconfig goes with --from-cluster");
	if (!n_flows)
		return ctl_usage_error(wi_cmd, "missing --flows");
	if (!cluster && (!n_policy || !n_workloads))
		return ctl_usage_error(wi_cmd, "missing %s", !n_policy ? "--policy" : "--workloads");
	for (size_t i = 0; i < n_flows; i++)
		stdin_used += !strcmp(flows[i], "-");
	for (size_t i = 0; i < n_policy; i++)
		stdin_used += !strcmp(policy[i], "-");
	for (size_t i = 0; i < n_workloads; i++)
		stdin_used += !strcmp(workloads[i], "-");
	if (stdin_used > 1)
		return ctl_usage_error(wi_cmd, "- (standard input) given more than once");
	if (cluster && (!n_policy || !n_workloads)) {
		if (ctl_from_cluster(kubeconfig, cp, cw))
			return 2;
		if (!n_policy)
			policy[n_policy++] = cp;
		if (!n_workloads)
			workloads[n_workloads++] = cw;
	}

	/* The proposed set first: an invalid one needs no log read. */
	if (!(s = pset_new(POLICY_TRUST_DOMAIN_DEFAULT)))
		goto oom;
	for (size_t i = 0; i < n_policy + n_workloads; i++) {
		const char *p = ctl_path(i < n_policy ? policy[i] : workloads[i - n_policy]);
		int dup = 0;
		if (!p) {
			fprintf(stderr, "cinchctl %s: -: cannot read standard input\n", wi_cmd);
			goto out;
		}
		for (size_t k = 0; k < n_paths && !dup; k++)
			dup = !strcmp(paths[k], p);
		if (dup)
			continue;
		paths[n_paths++] = p;
		if (pset_add_path(s, p, &err) < 0) {
			ctl_policy_err(&err);
			goto out;
		}
	}
	if (pset_finish(s, &err) < 0) {
		ctl_policy_err(&err);
		goto out;
	}
	if (!s->n_workloads) {
		fprintf(stderr, "cinchctl %s: the set has no Workload: flows are replayed at the "
				"workloads owning their addresses\n",
			wi_cmd);
		goto out;
	}
	if (!(buf = malloc(WI_BUF + 1)))
		goto oom;
	for (size_t i = 0; i < n_flows; i++)
		if (wi_read(&t, &st, flows[i], buf))
			goto out;
	if (st.malformed) {
		if (st.malformed > WI_MAX_ERRORS)
			fprintf(stderr, "... and %llu more malformed lines\n",
				(unsigned long long)(st.malformed - WI_MAX_ERRORS));
		fprintf(stderr, "cinchctl %s: %llu malformed line%s of %llu: no report\n", wi_cmd,
			(unsigned long long)st.malformed, st.malformed == 1 ? "" : "s",
			(unsigned long long)st.lines);
		goto out;
	}
	rc = wi_report(s, &t, &st, n_flows, json);
	goto out;
oom:
	fprintf(stderr, "cinchctl %s: out of memory\n", wi_cmd);
out:
	free(buf);
	wi_table_free(&t);
	pset_free(s);
	return rc;
}
