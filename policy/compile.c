/* compile: see compile.h.
 *
 * pcompile_new() indexes the set once: workloads by name, identity,
 * namespace and label; for every AllowPolicy the workloads it selects;
 * for every workload the rules protecting it and the workloads that admit
 * it (its peers), found from each rule's sources through the identity and
 * namespace indexes rather than by testing every pair. A snapshot is then
 * built from the index in time proportional to its own size.
 *
 * The Snapshot is built from protobuf-c structs whose memory comes from one
 * arena (freed at once after packing), so no partially built message ever
 * needs a field-by-field cleanup. Evaluation order, the one documented in
 * docs/policy.md: AllowPolicies sorted by namespace then name, and within
 * one its spec.from entries in order; the first rule that matches decides. */
#include "compile.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/sha.h>

#include "cinch/v1/config.pb-c.h"
#include "spiffe.h"

struct arena {
	struct arena_block *head;
	int failed;
};

struct arena_block {
	struct arena_block *next;
	max_align_t data[];
};

static void *aalloc(struct arena *a, size_t n)
{
	struct arena_block *b = calloc(1, sizeof(*b) + (n ? n : 1));
	if (!b) {
		a->failed = 1;
		return NULL;
	}
	b->next = a->head;
	a->head = b;
	return b->data;
}

static char *astr(struct arena *a, const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = aalloc(a, n);
	if (d)
		memcpy(d, s, n);
	return d;
}

static void afree(struct arena *a)
{
	while (a->head) {
		struct arena_block *n = a->head->next;
		free(a->head);
		a->head = n;
	}
}

int pcompile_spiffe_id(const struct pset *s, const struct pworkload *w, char *buf, size_t len)
{
	return spiffe_id_format(buf, len, s->trust_domain, w->ns, w->sa);
}

const struct pworkload *pcompile_find(const struct pset *s, const char *self,
				      const struct sockaddr_storage *addrs, size_t n_addrs)
{
	const struct pworkload *found = NULL;

	for (size_t i = 0; i < s->n_workloads; i++) {
		const struct pworkload *w = &s->workloads[i];
		if (self) {
			size_t nl = strlen(w->ns);
			if (!strncmp(self, w->ns, nl) && self[nl] == '/' &&
			    !strcmp(self + nl + 1, w->name))
				return w;
			continue;
		}
		for (size_t j = 0; j < w->n_addrs; j++)
			for (size_t k = 0; k < n_addrs; k++)
				if (pcidr_contains(&w->addrs[j],
						   (const struct sockaddr *)&addrs[k])) {
					if (found && found != w)
						return NULL; /* ambiguous: say so rather than guess
							      */
					found = w;
				}
	}
	return found;
}

/* The MeshPolicy settings that apply in namespace `ns`: the namespace's
 * own fields win over the mesh-wide ones, which win over the defaults. */
static void mesh_settings(const struct pset *s, const char *ns, int *permissive, int *audit)
{
	*permissive = 0;
	*audit = 0;
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < s->n_mesh; i++) {
			const struct pmesh *m = &s->mesh[i];
			if (pass == 0 ? m->ns != NULL : !m->ns || strcmp(m->ns, ns))
				continue;
			if (m->has_mtls)
				*permissive = m->mtls == PMTLS_PERMISSIVE;
			if (m->has_default)
				*audit = m->default_audit;
		}
}

static Cinch__V1__PortRange **port_ranges(struct arena *a, const struct pports *p, size_t *n)
{
	Cinch__V1__PortRange **r = aalloc(a, sizeof(*r) * (p->n ? p->n : 1));
	*n = 0;
	for (size_t i = 0; r && i < p->n; i++) {
		Cinch__V1__PortRange *x = aalloc(a, sizeof(*x));
		if (!x)
			return NULL;
		cinch__v1__port_range__init(x);
		x->first = p->r[i].lo;
		x->last = p->r[i].hi;
		r[(*n)++] = x;
	}
	return r;
}

static int label_cmp(const void *x, const void *y)
{
	return strcmp((*(Cinch__V1__Label *const *)x)->key, (*(Cinch__V1__Label *const *)y)->key);
}

static Cinch__V1__Workload *workload_msg(struct arena *a, const struct pset *s,
					 const struct pworkload *w)
{
	Cinch__V1__Workload *m = aalloc(a, sizeof(*m));
	char id[SPIFFE_ID_MAX + 1];

	if (!m || pcompile_spiffe_id(s, w, id, sizeof(id)) < 0)
		return NULL;
	cinch__v1__workload__init(m);
	m->namespace_ = astr(a, w->ns);
	m->name = astr(a, w->name);
	m->service_account = astr(a, w->sa);
	m->spiffe_id = astr(a, id);
	m->addresses = aalloc(a, sizeof(char *) * (w->n_addrs + 1));
	m->labels = aalloc(a, sizeof(*m->labels) * (w->n_labels + 1));
	if (a->failed)
		return NULL;
	for (size_t i = 0; i < w->n_addrs; i++)
		m->addresses[m->n_addresses++] = astr(a, w->addrs[i].text);
	for (size_t i = 0; i < w->n_labels; i++) {
		Cinch__V1__Label *l = aalloc(a, sizeof(*l));
		if (!l)
			return NULL;
		cinch__v1__label__init(l);
		l->key = astr(a, w->labels[i].key);
		l->value = astr(a, w->labels[i].value);
		m->labels[m->n_labels++] = l;
	}
	qsort(m->labels, m->n_labels, sizeof(*m->labels), label_cmp);
	return a->failed ? NULL : m;
}

/* ---- the index */

struct ilist {
	size_t *v;
	size_t n, cap;
};

struct pcompiled {
	const struct pset *s;
	const struct pallow **order; /* AllowPolicies in evaluation order */
	struct ilist *sel;	     /* per workload: indices into order, ascending */
	struct ilist *egr;	     /* per workload: indices into s->egress */
	struct ilist *peers;	     /* per workload: (peer, order index) pairs */
	struct ilist open;	     /* workloads every caller may reach */
	struct ilist *lists;	     /* the maps' values */
	size_t n_lists;
	json_t *byname, *byid, *byns, *bylabel; /* key -> workload or list index */
	char **ids;				/* per workload: its SPIFFE ID */
	char **meshed;				/* every snapshot's meshed_cidrs */
	size_t n_meshed;
};

static int ipush(struct ilist *l, size_t x)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 4;
		size_t *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = x;
	return 0;
}

/* The list under `key` in `map`, created on first use. */
static struct ilist *ilist_at(struct pcompiled *c, json_t *map, const char *key, int create)
{
	json_t *i = json_object_get(map, key);
	if (i)
		return &c->lists[json_integer_value(i)];
	if (!create || json_object_set_new(map, key, json_integer((json_int_t)c->n_lists)))
		return NULL;
	return &c->lists[c->n_lists++];
}

static int allow_cmp(const void *a, const void *b)
{
	const struct pallow *x = *(const struct pallow *const *)a,
			    *y = *(const struct pallow *const *)b;
	int c = strcmp(x->ns, y->ns);
	return c ? c : strcmp(x->name, y->name);
}

static void label_key(char *buf, size_t len, const char *ns, const struct plabel *l)
{
	snprintf(buf, len, "%s\x1f%s\x1f%s", ns, l->key, l->value);
}

/* The workloads `sel` (of namespace ns) picks, into out. */
static int select_workloads(struct pcompiled *c, const struct pselector *sel, const char *ns,
			    struct ilist *out)
{
	const struct pset *s = c->s;
	char key[1024];

	if (sel->n_workloads) {
		for (size_t i = 0; i < sel->n_workloads; i++) {
			/* A name listed twice still picks its workload once
			 * (found by the reference model: its rules came twice). */
			int again = 0;
			for (size_t k = 0; k < i && !again; k++)
				again = !strcmp(sel->workloads[k], sel->workloads[i]);
			if (again)
				continue;
			snprintf(key, sizeof(key), "%s/%s", ns, sel->workloads[i]);
			json_t *w = json_object_get(c->byname, key);
			if (w && pselector_matches(sel, ns, &s->workloads[json_integer_value(w)]) &&
			    ipush(out, (size_t)json_integer_value(w)) < 0)
				return -ENOMEM;
		}
		return 0;
	}
	label_key(key, sizeof(key), ns, &sel->labels[0]);
	struct ilist *l = ilist_at(c, c->bylabel, key, 0);
	for (size_t i = 0; l && i < l->n; i++)
		if (pselector_matches(sel, ns, &s->workloads[l->v[i]]) && ipush(out, l->v[i]) < 0)
			return -ENOMEM;
	return 0;
}

/* The workloads a source admits (identity kinds only). NULL: none. */
static const struct ilist *admitted(struct pcompiled *c, const struct psrc *x)
{
	char pfx[SPIFFE_ID_MAX + 16];
	size_t pl;

	switch (x->kind) {
	case PSRC_IDENTITY:
		return ilist_at(c, c->byid, x->text, 0);
	case PSRC_NAMESPACE:
		return ilist_at(c, c->byns, x->text, 0);
	case PSRC_IDENTITY_PREFIX:
		/* Only "spiffe://<td>/ns/<ns>/sa/" can admit workloads. */
		pl = (size_t)snprintf(pfx, sizeof(pfx), "spiffe://%s/ns/", c->s->trust_domain);
		if (strncmp(x->text, pfx, pl) != 0)
			return NULL;
		const char *ns = x->text + pl, *slash = strchr(ns, '/');
		if (!slash || strcmp(slash, "/sa/") != 0 || slash == ns ||
		    (size_t)(slash - ns) >= sizeof(pfx))
			return NULL;
		memcpy(pfx, ns, (size_t)(slash - ns));
		pfx[slash - ns] = '\0';
		return ilist_at(c, c->byns, pfx, 0);
	default:
		return NULL;
	}
}

void pcompile_free(struct pcompiled *c)
{
	if (!c)
		return;
	size_t nw = c->s->n_workloads;
	for (size_t i = 0; i < nw; i++) {
		if (c->sel)
			free(c->sel[i].v);
		if (c->egr)
			free(c->egr[i].v);
		if (c->peers)
			free(c->peers[i].v);
		if (c->ids)
			free(c->ids[i]);
	}
	for (size_t i = 0; i < c->n_lists; i++)
		free(c->lists[i].v);
	for (size_t i = 0; i < c->n_meshed; i++)
		free(c->meshed[i]);
	free(c->meshed);
	free(c->open.v);
	free(c->lists);
	free(c->sel);
	free(c->egr);
	free(c->peers);
	free(c->ids);
	free(c->order);
	json_decref(c->byname);
	json_decref(c->byid);
	json_decref(c->byns);
	json_decref(c->bylabel);
	free(c);
}

/* 2^k - 1 without overflowing at k = 128. */
static paddr_t span_of(unsigned k)
{
	return k >= 128 ? ~(paddr_t)0 : ((paddr_t)1 << k) - 1;
}

/* Appends "addr/prefix" of the block [lo, lo + 2^k) to the meshed set. */
static int meshed_push(struct pcompiled *c, int v6, paddr_t lo, unsigned k)
{
	unsigned n = v6 ? 16 : 4;
	uint8_t b[16];
	char ip[INET6_ADDRSTRLEN];

	for (unsigned i = 0; i < n; i++)
		b[n - 1 - i] = (uint8_t)(lo >> (8 * i));
	inet_ntop(v6 ? AF_INET6 : AF_INET, b, ip, sizeof(ip));
	if (asprintf(&c->meshed[c->n_meshed], "%s/%u", ip, 8 * n - k) < 0)
		return -ENOMEM;
	c->n_meshed++;
	return 0;
}

/* The meshed set: every workload address, as the fewest CIDRs covering
 * exactly them (runs of adjacent addresses merged, each run cut into
 * aligned blocks), so a slice carries the whole mesh in a few strings when
 * pod addresses are dense. Never more CIDRs than addresses. */
static int meshed_cover(struct pcompiled *c)
{
	const struct pset *s = c->s;
	struct prange *r;
	size_t n = 0;
	int rc = -ENOMEM;

	for (size_t i = 0; i < s->n_workloads; i++)
		n += s->workloads[i].n_addrs;
	r = calloc(n + 1, sizeof(*r));
	c->meshed = calloc(n + 1, sizeof(*c->meshed));
	if (!r || !c->meshed)
		goto out;
	n = 0;
	for (size_t i = 0; i < s->n_workloads; i++)
		for (size_t j = 0; j < s->workloads[i].n_addrs; j++)
			pcidr_range(&s->workloads[i].addrs[j], &r[n++]);
	n = prange_normalize(r, n);
	for (size_t i = 0; i < n; i++) {
		int v6 = r[i].v6;
		unsigned bits = v6 ? 128 : 32;
		paddr_t lo = r[i].lo, hi = r[i].hi;
		for (;;) {
			unsigned k = 0;
			while (k < bits && !(lo >> k & 1) && lo + span_of(k + 1) <= hi)
				k++;
			if (meshed_push(c, v6, lo, k) < 0)
				goto out;
			if (lo + span_of(k) >= hi)
				break;
			lo += span_of(k) + 1;
		}
	}
	rc = 0;
out:
	free(r);
	return rc;
}

int pcompile_new(const struct pset *s, struct pcompiled **out)
{
	struct pcompiled *c = calloc(1, sizeof(*c));
	size_t nw = s->n_workloads, n_labels = 0;
	struct ilist selected = {0};
	char key[1024];
	int rc = -ENOMEM;

	if (!c)
		return -ENOMEM;
	c->s = s;
	for (size_t i = 0; i < nw; i++)
		n_labels += s->workloads[i].n_labels;
	c->sel = calloc(nw + 1, sizeof(*c->sel));
	c->egr = calloc(nw + 1, sizeof(*c->egr));
	c->peers = calloc(nw + 1, sizeof(*c->peers));
	c->ids = calloc(nw + 1, sizeof(*c->ids));
	c->lists = calloc(3 * nw + n_labels + 1, sizeof(*c->lists));
	c->order = calloc(s->n_allow + 1, sizeof(*c->order));
	c->byname = json_object();
	c->byid = json_object();
	c->byns = json_object();
	c->bylabel = json_object();
	if (!c->sel || !c->egr || !c->peers || !c->ids || !c->lists || !c->order || !c->byname ||
	    !c->byid || !c->byns || !c->bylabel)
		goto out;

	for (size_t i = 0; i < nw; i++) {
		const struct pworkload *w = &s->workloads[i];
		char id[SPIFFE_ID_MAX + 1];
		struct ilist *l;
		if (pcompile_spiffe_id(s, w, id, sizeof(id)) < 0) {
			rc = -EINVAL;
			goto out;
		}
		if (!(c->ids[i] = strdup(id)))
			goto out;
		snprintf(key, sizeof(key), "%s/%s", w->ns, w->name);
		if (json_object_set_new(c->byname, key, json_integer((json_int_t)i)) ||
		    !(l = ilist_at(c, c->byid, id, 1)) || ipush(l, i) < 0 ||
		    !(l = ilist_at(c, c->byns, w->ns, 1)) || ipush(l, i) < 0)
			goto out;
		for (size_t k = 0; k < w->n_labels; k++) {
			label_key(key, sizeof(key), w->ns, &w->labels[k]);
			if (!(l = ilist_at(c, c->bylabel, key, 1)) || ipush(l, i) < 0)
				goto out;
		}
	}

	for (size_t i = 0; i < s->n_allow; i++)
		c->order[i] = &s->allow[i];
	qsort(c->order, s->n_allow, sizeof(*c->order), allow_cmp);
	for (size_t i = 0; i < s->n_allow; i++) {
		const struct pallow *a = c->order[i];
		selected.n = 0;
		if (select_workloads(c, &a->sel, a->ns, &selected) < 0)
			goto out;
		for (size_t k = 0; k < selected.n; k++)
			if (ipush(&c->sel[selected.v[k]], i) < 0)
				goto out;
		/* Every caller a rule admits gets the selected workloads as peers. */
		for (size_t f = 0; f < a->n_from; f++)
			for (size_t k = 0; k < a->n_src[f]; k++) {
				const struct ilist *callers = admitted(c, &a->from[f][k]);
				for (size_t m = 0; callers && m < callers->n; m++)
					for (size_t q = 0; q < selected.n; q++)
						if (ipush(&c->peers[callers->v[m]], selected.v[q]) <
							    0 ||
						    ipush(&c->peers[callers->v[m]], i) < 0)
							goto out;
			}
	}
	for (size_t e = 0; e < s->n_egress; e++) {
		selected.n = 0;
		if (select_workloads(c, &s->egress[e].sel, s->egress[e].ns, &selected) < 0)
			goto out;
		for (size_t k = 0; k < selected.n; k++)
			if (ipush(&c->egr[selected.v[k]], e) < 0)
				goto out;
	}
	if (meshed_cover(c) < 0)
		goto out;
	/* Open workloads: nothing selects them and their default is audit, or
	 * only audit-mode policies do: every caller gets through. */
	for (size_t i = 0; i < nw; i++) {
		int permissive, audit, enforce = 0;
		mesh_settings(s, s->workloads[i].ns, &permissive, &audit);
		for (size_t k = 0; k < c->sel[i].n; k++)
			enforce |= !c->order[c->sel[i].v[k]]->audit;
		if (((c->sel[i].n == 0 && audit) || (c->sel[i].n && !enforce)) &&
		    ipush(&c->open, i) < 0)
			goto out;
	}
	*out = c;
	c = NULL;
	rc = 0;
out:
	free(selected.v);
	pcompile_free(c);
	return rc;
}

size_t pcompile_index_of(const struct pcompiled *c, const struct pworkload *w)
{
	return (size_t)(w - c->s->workloads);
}

/* ---- one snapshot */

static int inbound_rules(struct arena *a, const struct pcompiled *c, size_t w,
			 Cinch__V1__Snapshot *snap)
{
	size_t total = 0;
	char id[512];

	for (size_t i = 0; i < c->sel[w].n; i++)
		total += c->order[c->sel[w].v[i]]->n_from;
	snap->inbound = aalloc(a, sizeof(*snap->inbound) * (total + 1));
	for (size_t i = 0; snap->inbound && i < c->sel[w].n; i++) {
		const struct pallow *al = c->order[c->sel[w].v[i]];
		for (size_t f = 0; f < al->n_from; f++) {
			Cinch__V1__InboundRule *r = aalloc(a, sizeof(*r));
			if (!r)
				break;
			cinch__v1__inbound_rule__init(r);
			snprintf(id, sizeof(id), "%s/%s#%zu", al->ns, al->name, f);
			r->id = astr(a, id);
			r->mode = al->audit ? CINCH__V1__RULE_MODE__RULE_MODE_AUDIT
					    : CINCH__V1__RULE_MODE__RULE_MODE_ENFORCE;
			r->ports = port_ranges(a, &al->ports, &r->n_ports);
			r->sources = aalloc(a, sizeof(*r->sources) * (al->n_src[f] + 1));
			for (size_t k = 0; r->sources && k < al->n_src[f]; k++) {
				const struct psrc *src = &al->from[f][k];
				Cinch__V1__Source *m = aalloc(a, sizeof(*m));
				if (!m)
					break;
				cinch__v1__source__init(m);
				if (src->kind == PSRC_NAMESPACE) {
					m->kind_case = CINCH__V1__SOURCE__KIND_NAMESPACE;
					m->namespace_ = astr(a, src->text);
				} else if (src->kind == PSRC_UNAUTH_CIDR) {
					m->kind_case = CINCH__V1__SOURCE__KIND_UNAUTHENTICATED_CIDR;
					m->unauthenticated_cidr = astr(a, src->text);
				} else {
					char buf[SPIFFE_ID_MAX + 3];
					snprintf(buf, sizeof(buf), "%s%s", src->text,
						 src->kind == PSRC_IDENTITY_PREFIX ? "*" : "");
					m->kind_case = CINCH__V1__SOURCE__KIND_IDENTITY;
					m->identity = astr(a, buf);
				}
				r->sources[r->n_sources++] = m;
			}
			snap->inbound[snap->n_inbound++] = r;
		}
	}
	return a->failed ? -ENOMEM : 0;
}

static int egress_rules(struct arena *a, const struct pcompiled *c, size_t w,
			Cinch__V1__Snapshot *snap)
{
	const struct pset *s = c->s;
	size_t total = 0;
	char id[512];

	for (size_t i = 0; i < c->egr[w].n; i++)
		total += s->egress[c->egr[w].v[i]].n_to;
	snap->egress = aalloc(a, sizeof(*snap->egress) * (total + 1));
	for (size_t i = 0; snap->egress && i < c->egr[w].n; i++) {
		const struct pegress *e = &s->egress[c->egr[w].v[i]];
		for (size_t t = 0; t < e->n_to; t++) {
			Cinch__V1__EgressRule *r = aalloc(a, sizeof(*r));
			if (!r)
				break;
			cinch__v1__egress_rule__init(r);
			snprintf(id, sizeof(id), "%s/%s#%zu", e->ns, e->name, t);
			r->id = astr(a, id);
			r->cidrs = aalloc(a, sizeof(char *) * (e->to[t].n_cidrs + 1));
			for (size_t k = 0; r->cidrs && k < e->to[t].n_cidrs; k++)
				r->cidrs[r->n_cidrs++] = astr(a, e->to[t].cidrs[k].text);
			r->ports = port_ranges(a, &e->to[t].ports, &r->n_ports);
			snap->egress[snap->n_egress++] = r;
		}
	}
	return a->failed ? -ENOMEM : 0;
}

static int pair_cmp(const void *x, const void *y)
{
	const size_t *a = x, *b = y;
	return a[0] != b[0] ? (a[0] < b[0] ? -1 : 1) : (a[1] < b[1] ? -1 : a[1] > b[1]);
}

static Cinch__V1__Peer *peer_msg(struct arena *a, const struct pcompiled *c, size_t p)
{
	const struct pworkload *w = &c->s->workloads[p];
	Cinch__V1__Peer *m = aalloc(a, sizeof(*m));

	if (!m)
		return NULL;
	cinch__v1__peer__init(m);
	m->spiffe_id = c->ids[p];
	m->namespace_ = w->ns;
	m->name = w->name;
	m->addresses = aalloc(a, sizeof(char *) * (w->n_addrs + 1));
	for (size_t i = 0; m->addresses && i < w->n_addrs; i++)
		m->addresses[m->n_addresses++] = w->addrs[i].text;
	return a->failed ? NULL : m;
}

/* The peers of w: the workloads whose rules admit it (with the union of
 * those rules' ports), and the open ones (every port). Sorts w's pairs. */
static int peers(struct arena *a, const struct pcompiled *c, size_t w, Cinch__V1__Snapshot *snap)
{
	static const struct pport all = {1, 65535};
	static const struct pports every = {(struct pport *)&all, 1};
	struct ilist *pl = &c->peers[w];
	size_t n = pl->n / 2, i = 0, o = 0;
	struct pport *acc = NULL;
	int rc = -ENOMEM;

	if (n)
		qsort(pl->v, n, 2 * sizeof(size_t), pair_cmp);
	snap->peers = aalloc(a, sizeof(*snap->peers) * (n + c->open.n + 1));
	if (!snap->peers)
		return -ENOMEM;
	/* Merge the sorted pairs and the (ascending) open list. */
	while (i < n || o < c->open.n) {
		size_t p = i < n ? pl->v[2 * i] : SIZE_MAX;
		size_t q = o < c->open.n ? c->open.v[o] : SIZE_MAX;
		size_t cur = p < q ? p : q, n_acc = 0;
		int everything = q == cur;
		for (; i < n && pl->v[2 * i] == cur; i++) {
			const struct pallow *al = c->order[pl->v[2 * i + 1]];
			if (al->ports.n == 0)
				everything = 1;
			if (everything)
				continue;
			struct pport *g = realloc(acc, sizeof(*g) * (n_acc + al->ports.n));
			if (!g)
				goto out;
			acc = g;
			memcpy(acc + n_acc, al->ports.r, sizeof(*g) * al->ports.n);
			n_acc += al->ports.n;
		}
		if (q == cur)
			o++;
		Cinch__V1__Peer *m = peer_msg(a, c, cur);
		struct pports got = {acc, n_acc};
		if (!m || !(m->allowed_ports = port_ranges(a, everything ? &every : &got,
							   &m->n_allowed_ports)))
			goto out;
		snap->peers[snap->n_peers++] = m;
	}
	rc = 0;
out:
	free(acc);
	return rc;
}

int pcompile_snapshot(const struct pcompiled *c, size_t w, uint8_t **buf, size_t *len)
{
	const struct pset *s = c->s;
	struct arena a = {0};
	Cinch__V1__Snapshot snap = CINCH__V1__SNAPSHOT__INIT;
	int permissive, audit, rc = -ENOMEM;
	uint8_t *out = NULL, digest[SHA256_DIGEST_LENGTH];
	char version[32];

	mesh_settings(s, s->workloads[w].ns, &permissive, &audit);
	snap.mtls_mode = permissive ? CINCH__V1__MTLS_MODE__MTLS_MODE_PERMISSIVE
				    : CINCH__V1__MTLS_MODE__MTLS_MODE_STRICT;
	snap.default_action = audit ? CINCH__V1__DEFAULT_ACTION__DEFAULT_ACTION_AUDIT
				    : CINCH__V1__DEFAULT_ACTION__DEFAULT_ACTION_DENY;
	snap.workload = workload_msg(&a, s, &s->workloads[w]);
	snap.meshed_cidrs = c->meshed;
	snap.n_meshed_cidrs = c->n_meshed;
	if (!snap.workload || inbound_rules(&a, c, w, &snap) < 0 ||
	    egress_rules(&a, c, w, &snap) < 0 || peers(&a, c, w, &snap) < 0 || a.failed)
		goto out;
	/* The version: a digest of everything else, so equal versions are
	 * equal contents. */
	*len = cinch__v1__snapshot__get_packed_size(&snap);
	out = malloc(*len ? *len : 1);
	if (!out)
		goto out;
	cinch__v1__snapshot__pack(&snap, out);
	SHA256(out, *len, digest);
	for (int i = 0; i < 8; i++)
		snprintf(version + 2 * i, 3, "%02x", digest[i]);
	free(out);
	snap.version = version;
	snap.policy_version = version;
	*len = cinch__v1__snapshot__get_packed_size(&snap);
	out = malloc(*len);
	if (!out)
		goto out;
	cinch__v1__snapshot__pack(&snap, out);
	*buf = out;
	rc = 0;
out:
	afree(&a);
	return rc;
}
