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
#include "ksvc.h"
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

/* The ranges of p at destination w (its port names resolved, pports_resolve);
 * ports that resolve to nothing are the range 0-0, no port, since no
 * ranges would be every port. */
static Cinch__V1__PortRange **port_ranges(struct arena *a, const struct pports *p,
					  const struct pworkload *w, size_t *n)
{
	static const struct pport zero = {0, 0, NULL};
	const struct pport *src = p->r;
	size_t m = p->n;

	if (p->n_named) {
		struct pport *res = aalloc(a, sizeof(*res) * (p->n + p->n_named * w->n_ports));
		if (!res)
			return NULL;
		m = pports_resolve(p, w, res);
		src = m ? res : &zero;
		m = m ? m : 1;
	}
	Cinch__V1__PortRange **r = aalloc(a, sizeof(*r) * (m ? m : 1));
	*n = 0;
	for (size_t i = 0; r && i < m; i++) {
		Cinch__V1__PortRange *x = aalloc(a, sizeof(*x));
		if (!x)
			return NULL;
		cinch__v1__port_range__init(x);
		x->first = src[i].lo;
		x->last = src[i].hi;
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

/* One endpoint of a Service as every caller sees it; a meshed pod's
 * entries in several EndpointSlices (one per family) are merged. */
struct cep {
	long wl; /* the workload owning its addresses; -1: outside the mesh */
	const struct kslice_ep *e;
	const char *addrs[2 * KSVC_MAX_ADDRESSES];
	size_t n_addrs;
	uint16_t *targets; /* per carried port (csvc.ports) */
};

/* A Service with a virtual IP: its TCP ports and its endpoints. */
struct csvc {
	const struct ksvc *v;
	const struct ksvc_port **ports;
	size_t n_ports;
	struct cep *eps;
	size_t n_eps;
};

/* What a selector source (namespaceSelector, podSelector) stands for in
 * this set: the namespaces it admits whole (namespaceSelector alone), or
 * the workloads it picks (their identities). */
struct pexpand {
	const struct psrc *src;
	struct ilist ns; /* indices into nsnames */
	struct ilist wl; /* workload indices, ascending */
};

struct pcompiled {
	const struct pset *s;
	const struct pallow **order; /* AllowPolicies in evaluation order */
	const struct pguard **gorder; /* GuardrailPolicies in evaluation order */
	struct ilist *gsel;	      /* per workload: indices into gorder, ascending */
	const struct pports **ptab;   /* peers' second halves: n_allow policies' ports, then
					 every guardrail rule's */
	char **nsnames;		      /* every namespace: Namespace documents' and workloads' */
	size_t n_nsnames;
	struct pexpand *exp; /* one per selector source */
	size_t n_exp;
	json_t *byexp; /* "%p" of a selector source -> index into exp */
	struct ilist *sel;	     /* per workload: indices into order, ascending */
	struct ilist *egr;	     /* per workload: indices into s->egress */
	struct ilist *peers;	     /* per workload: (peer, order index) pairs */
	struct ilist open;	     /* (workload, ptab index or SIZE_MAX: every port)
				      * pairs every caller may reach, by workload */
	struct ilist *lists;	     /* the maps' values */
	size_t n_lists;
	json_t *byname, *byid, *byns, *bylabel; /* key -> workload or list index */
	char **ids;				/* per workload: its SPIFFE ID */
	char **meshed;				/* every snapshot's meshed_cidrs */
	size_t n_meshed;
	struct csvc *svcs; /* Services with a virtual IP, by namespace and name */
	size_t n_svcs;
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

	if (!sel->n_workloads && !sel->n_labels) { /* `{}` or matchExpressions only */
		struct ilist *l = ilist_at(c, c->byns, ns, 0);
		for (size_t i = 0; l && i < l->n; i++)
			if (pselector_matches(sel, ns, &s->workloads[l->v[i]]) &&
			    ipush(out, l->v[i]) < 0)
				return -ENOMEM;
		return 0;
	}

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

static struct pexpand *pexpand_of(const struct pcompiled *c, const struct psrc *x)
{
	char key[32];
	snprintf(key, sizeof(key), "%p", (const void *)x);
	return &c->exp[json_integer_value(json_object_get(c->byexp, key))];
}

static int size_cmp(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return x < y ? -1 : x > y;
}

static int ns_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every namespace of the set, sorted, once. */
static int nsnames_build(struct pcompiled *c)
{
	const struct pset *s = c->s;
	size_t n = 0;

	c->nsnames = calloc(s->n_namespaces + s->n_workloads + 1, sizeof(char *));
	if (!c->nsnames)
		return -ENOMEM;
	for (size_t i = 0; i < s->n_namespaces; i++)
		c->nsnames[n++] = s->namespaces[i].name;
	for (size_t i = 0; i < s->n_workloads; i++)
		c->nsnames[n++] = s->workloads[i].ns;
	qsort(c->nsnames, n, sizeof(char *), ns_name_cmp);
	for (size_t i = 0; i < n; i++)
		if (!c->n_nsnames || strcmp(c->nsnames[c->n_nsnames - 1], c->nsnames[i]))
			c->nsnames[c->n_nsnames++] = c->nsnames[i];
	return 0;
}

/* Expands selector source x of a policy in namespace `own` (NULL: a
 * guardrail, every namespace): NetworkPolicy's meaning, namespaceSelector
 * alone admits whole namespaces, a podSelector the workloads it picks in
 * the namespaces the namespaceSelector picks (the policy's own when there
 * is none). */
static int pexpand_add(struct pcompiled *c, const struct psrc *x, const char *own)
{
	const struct pset *s = c->s;
	struct pexpand *e = &c->exp[c->n_exp];
	char key[32];

	e->src = x;
	snprintf(key, sizeof(key), "%p", (const void *)x);
	if (json_object_set_new(c->byexp, key, json_integer((json_int_t)c->n_exp++)))
		return -ENOMEM;
	for (size_t i = 0; i < c->n_nsnames; i++) {
		const char *ns = c->nsnames[i];
		int in = x->ns_sel ? pset_namespace_matches(s, x->ns_sel, ns)
				   : !own || !strcmp(own, ns);
		if (!in)
			continue;
		struct ilist *l = ilist_at(c, c->byns, ns, 0);
		if (!x->pod_sel && ipush(&e->ns, i) < 0)
			return -ENOMEM;
		for (size_t k = 0; l && k < l->n; k++) {
			const struct pworkload *w = &s->workloads[l->v[k]];
			if (!x->pod_sel || pselector_labels_match(x->pod_sel, w->labels, w->n_labels)) {
				/* the identity is what is admitted: every workload
				 * that has it (a shared service account) is a caller */
				struct ilist *same = ilist_at(c, c->byid, c->ids[l->v[k]], 0);
				for (size_t m = 0; same && m < same->n; m++)
					if (ipush(&e->wl, same->v[m]) < 0)
						return -ENOMEM;
			}
		}
	}
	if (e->wl.n)
		qsort(e->wl.v, e->wl.n, sizeof(size_t), size_cmp);
	size_t u = 0;
	for (size_t i = 0; i < e->wl.n; i++)
		if (!u || e->wl.v[u - 1] != e->wl.v[i])
			e->wl.v[u++] = e->wl.v[i];
	e->wl.n = u;
	return 0;
}

static int pguard_cmp(const void *a, const void *b)
{
	const struct pguard *x = *(const struct pguard *const *)a,
			    *y = *(const struct pguard *const *)b;
	if (x->priority != y->priority)
		return x->priority < y->priority ? -1 : 1;
	return strcmp(x->name, y->name);
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
	case PSRC_SELECTOR:
		return &pexpand_of(c, x)->wl;
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
	for (size_t i = 0; i < nw; i++)
		if (c->gsel)
			free(c->gsel[i].v);
	for (size_t i = 0; i < c->n_exp; i++) {
		free(c->exp[i].ns.v);
		free(c->exp[i].wl.v);
	}
	free(c->exp);
	free(c->gsel);
	free(c->gorder);
	free(c->ptab);
	free(c->nsnames);
	json_decref(c->byexp);
	for (size_t i = 0; i < c->n_lists; i++)
		free(c->lists[i].v);
	for (size_t i = 0; i < c->n_meshed; i++)
		free(c->meshed[i]);
	for (size_t i = 0; c->svcs && i < c->n_svcs; i++) {
		for (size_t k = 0; k < c->svcs[i].n_eps; k++)
			free(c->svcs[i].eps[k].targets);
		free(c->svcs[i].eps);
		free(c->svcs[i].ports);
	}
	free(c->svcs);
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
	for (size_t i = 0; i < s->n_services; i++)
		n += s->services[i].n_vips;
	r = calloc(n + 1, sizeof(*r));
	c->meshed = calloc(n + 1, sizeof(*c->meshed));
	if (!r || !c->meshed)
		goto out;
	n = 0;
	for (size_t i = 0; i < s->n_workloads; i++)
		for (size_t j = 0; j < s->workloads[i].n_addrs; j++)
			pcidr_range(&s->workloads[i].addrs[j], &r[n++]);
	/* Virtual IPs too: a call to one is meshed, never plaintext (a
	 * Service this workload may call is carried in its snapshot; any
	 * other is refused like a meshed pod that does not admit it). */
	for (size_t i = 0; i < s->n_services; i++)
		for (size_t j = 0; j < s->services[i].n_vips; j++)
			pcidr_range(&s->services[i].vips[j], &r[n++]);
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

/* ---- Services */

static int csvc_cmp(const void *x, const void *y)
{
	const struct csvc *a = x, *b = y;
	int c = strcmp(a->v->ns, b->v->ns);
	return c ? c : strcmp(a->v->name, b->v->name);
}

static int cep_cmp(const void *x, const void *y)
{
	const struct cep *a = x, *b = y;
	return strcmp(a->n_addrs ? a->addrs[0] : "", b->n_addrs ? b->addrs[0] : "");
}

/* The EndpointSlices naming a Service, sorted by namespace and Service
 * so that each Service finds its own by binary search (not a scan of all
 * slices per Service: 10,000 Services would be 10^8 compares). */
static int kslice_cmp(const void *x, const void *y)
{
	const struct kslice *a = *(const struct kslice *const *)x,
			    *b = *(const struct kslice *const *)y;
	int c = strcmp(a->ns, b->ns);
	return c ? c : strcmp(a->service, b->service);
}

/* The endpoints of one Service from the slices byname[lo..hi) naming it. */
static int csvc_endpoints(json_t *byaddr, struct csvc *cs, const struct kslice *const *slices,
			  size_t n_slices)
{
	size_t n = 0;

	for (size_t i = 0; i < n_slices; i++)
		n += slices[i]->n_eps;
	if (!(cs->eps = calloc(n + 1, sizeof(*cs->eps))))
		return -ENOMEM;
	for (size_t i = 0; i < n_slices; i++) {
		const struct kslice *sl = slices[i];
		for (size_t k = 0; k < sl->n_eps; k++) {
			const struct kslice_ep *e = &sl->eps[k];
			long wl = -1;
			for (size_t a = 0; a < e->n_addrs && wl < 0; a++) {
				json_t *x = json_object_get(byaddr, e->addrs[a].text);
				wl = x ? (long)json_integer_value(x) : -1;
			}
			struct cep *ep = NULL;
			for (size_t m = 0; wl >= 0 && m < cs->n_eps && !ep; m++)
				if (cs->eps[m].wl == wl)
					ep = &cs->eps[m];
			if (!ep) {
				ep = &cs->eps[cs->n_eps++];
				ep->wl = wl;
				ep->e = e;
				if (!(ep->targets = calloc(cs->n_ports + 1, sizeof(*ep->targets))))
					return -ENOMEM;
			}
			for (size_t a = 0; a < e->n_addrs && ep->n_addrs < 2 * KSVC_MAX_ADDRESSES;
			     a++)
				ep->addrs[ep->n_addrs++] = e->addrs[a].text;
			for (size_t p = 0; p < cs->n_ports; p++)
				if (!ep->targets[p])
					ep->targets[p] = ksvc_target_port(cs->ports[p], sl);
		}
	}
	qsort(cs->eps, cs->n_eps, sizeof(*cs->eps), cep_cmp);
	return 0;
}

/* Every Service with a virtual IP, with its endpoints resolved to meshed
 * workloads (by address) and target ports. */
static int services_index(struct pcompiled *c)
{
	const struct pset *s = c->s;
	json_t *byaddr = json_object();
	const struct kslice **named = calloc(s->n_slices + 1, sizeof(*named));
	char ip[INET6_ADDRSTRLEN];
	size_t n_named = 0;
	int rc = -ENOMEM;

	if (!byaddr || !named || !(c->svcs = calloc(s->n_services + 1, sizeof(*c->svcs))))
		goto out;
	for (size_t i = 0; i < s->n_slices; i++)
		if (!s->slices[i].fqdn && s->slices[i].service)
			named[n_named++] = &s->slices[i];
	qsort(named, n_named, sizeof(*named), kslice_cmp);
	for (size_t i = 0; i < s->n_workloads; i++)
		for (size_t j = 0; j < s->workloads[i].n_addrs; j++) {
			const struct pcidr *a = &s->workloads[i].addrs[j];
			inet_ntop(a->family, a->addr, ip, sizeof(ip));
			if (json_object_set_new(byaddr, ip, json_integer((json_int_t)i)) < 0)
				goto out;
		}
	for (size_t i = 0; i < s->n_services; i++) {
		const struct ksvc *v = &s->services[i];
		if (!v->n_vips)
			continue; /* headless, ExternalName, none allocated: pod addresses */
		struct csvc *cs = &c->svcs[c->n_svcs++];
		cs->v = v;
		if (!(cs->ports = calloc(v->n_ports + 1, sizeof(*cs->ports))))
			goto out;
		for (size_t p = 0; p < v->n_ports; p++)
			if (!strcmp(v->ports[p].protocol, "TCP"))
				cs->ports[cs->n_ports++] = &v->ports[p];
		/* the first slice naming it, then the run of them */
		struct kslice key = {.ns = v->ns, .service = v->name};
		const struct kslice *kp = &key;
		size_t lo = 0, hi = n_named;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (kslice_cmp(&named[mid], &kp) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (hi = lo; hi < n_named && !kslice_cmp(&named[hi], &kp); hi++)
			;
		if (csvc_endpoints(byaddr, cs, named + lo, hi - lo) < 0)
			goto out;
	}
	qsort(c->svcs, c->n_svcs, sizeof(*c->svcs), csvc_cmp);
	rc = 0;
out:
	free(named);
	json_decref(byaddr);
	return rc;
}

int pcompile_new(const struct pset *s, struct pcompiled **out)
{
	struct pcompiled *c = calloc(1, sizeof(*c));
	size_t nw = s->n_workloads, n_labels = 0;
	struct ilist selected = {0};
	char key[1024];
	struct ilist *anyone = NULL; /* per workload: guardrail allows of every caller (ptab) */
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
	c->gorder = calloc(s->n_guards + 1, sizeof(*c->gorder));
	c->gsel = calloc(nw + 1, sizeof(*c->gsel));
	c->byexp = json_object();
	size_t n_sel = 0, n_grules = 0;
	for (size_t i = 0; i < s->n_allow; i++)
		for (size_t f = 0; f < s->allow[i].n_from; f++)
			for (size_t k = 0; k < s->allow[i].n_src[f]; k++)
				n_sel += s->allow[i].from[f][k].kind == PSRC_SELECTOR;
	for (size_t i = 0; i < s->n_guards; i++)
		for (size_t r = 0; r < s->guards[i].n_rules; r++) {
			n_grules++;
			for (size_t k = 0; k < s->guards[i].rules[r].n_src; k++)
				n_sel += s->guards[i].rules[r].src[k].kind == PSRC_SELECTOR;
		}
	c->exp = calloc(n_sel + 1, sizeof(*c->exp));
	c->ptab = calloc(s->n_allow + n_grules + 1, sizeof(*c->ptab));
	anyone = calloc(nw + 1, sizeof(*anyone));
	c->byname = json_object();
	c->byid = json_object();
	c->byns = json_object();
	c->bylabel = json_object();
	if (!c->sel || !c->egr || !c->peers || !c->ids || !c->lists || !c->order || !c->byname ||
	    !c->byid || !c->byns || !c->bylabel || !c->gorder || !c->gsel || !c->byexp || !c->exp ||
	    !c->ptab || !anyone || nsnames_build(c) < 0)
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
		c->ptab[i] = &a->ports;
		for (size_t f = 0; f < a->n_from; f++)
			for (size_t k = 0; k < a->n_src[f]; k++)
				if (a->from[f][k].kind == PSRC_SELECTOR &&
				    pexpand_add(c, &a->from[f][k], a->ns) < 0)
					goto out;
	}
	for (size_t i = 0; i < s->n_guards; i++)
		c->gorder[i] = &s->guards[i];
	qsort(c->gorder, s->n_guards, sizeof(*c->gorder), pguard_cmp);
	size_t pt = s->n_allow;
	for (size_t g = 0; g < s->n_guards; g++) {
		const struct pguard *gd = c->gorder[g];
		selected.n = 0;
		for (size_t i = 0; i < nw; i++)
			if (pguard_selects(s, gd, &s->workloads[i]) &&
			    (ipush(&c->gsel[i], g) < 0 || ipush(&selected, i) < 0))
				goto out;
		for (size_t r = 0; r < gd->n_rules; r++, pt++) {
			const struct pguard_rule *gr = &gd->rules[r];
			c->ptab[pt] = &gr->ports;
			for (size_t k = 0; k < gr->n_src; k++) {
				const struct psrc *x = &gr->src[k];
				if (x->kind == PSRC_SELECTOR && pexpand_add(c, x, NULL) < 0)
					goto out;
				/* A guardrail's allow makes its callers peers of its
				 * subject (a deny is left to the destination's agent:
				 * the caller's side only ever allows more). */
				if (gr->action != PACT_ALLOW)
					continue;
				const struct ilist *callers = admitted(c, x);
				for (size_t q = 0; x->kind == PSRC_ANY && q < selected.n; q++)
					if (ipush(&anyone[selected.v[q]], pt) < 0)
						goto out;
				for (size_t m = 0; callers && m < callers->n; m++)
					for (size_t q = 0; q < selected.n; q++)
						if (ipush(&c->peers[callers->v[m]], selected.v[q]) <
							    0 ||
						    ipush(&c->peers[callers->v[m]], pt) < 0)
							goto out;
			}
		}
	}
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
	if (meshed_cover(c) < 0 || services_index(c) < 0)
		goto out;
	/* Open workloads: nothing selects them and their default is audit, or
	 * only audit-mode policies do: every caller gets through, on every
	 * port (SIZE_MAX); and on the ports of a guardrail's allow of every
	 * caller. (workload, ptab index) pairs, by workload. */
	for (size_t i = 0; i < nw; i++) {
		struct pmesh_settings ms;
		int enforce = 0;
		pset_mesh_settings(s, s->workloads[i].ns, &ms);
		for (size_t k = 0; k < c->sel[i].n; k++)
			enforce |= !c->order[c->sel[i].v[k]]->audit;
		if (((c->sel[i].n == 0 && ms.default_audit) || (c->sel[i].n && !enforce)) &&
		    (ipush(&c->open, i) < 0 || ipush(&c->open, SIZE_MAX) < 0))
			goto out;
		for (size_t k = 0; k < anyone[i].n; k++)
			if (ipush(&c->open, i) < 0 || ipush(&c->open, anyone[i].v[k]) < 0)
				goto out;
	}
	*out = c;
	c = NULL;
	rc = 0;
out:
	for (size_t i = 0; anyone && i < nw; i++)
		free(anyone[i].v);
	free(anyone);
	free(selected.v);
	pcompile_free(c);
	return rc;
}

size_t pcompile_index_of(const struct pcompiled *c, const struct pworkload *w)
{
	return (size_t)(w - c->s->workloads);
}

/* ---- one snapshot */

static int str_ptr_cmp(const void *x, const void *y)
{
	return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* Appends to r the sources of x, a selector expanded to namespaces or to
 * its workloads' identities (each once). */
static int emit_source(struct arena *a, const struct pcompiled *c, const struct psrc *src,
		       Cinch__V1__InboundRule *r, size_t *cap)
{
	const struct pexpand *e = src->kind == PSRC_SELECTOR ? pexpand_of(c, src) : NULL;
	size_t want = e ? e->ns.n + e->wl.n : 1;
	const char **ids = NULL;
	size_t n_ids = 0;

	if (r->n_sources + want > *cap) {
		size_t ncap = 2 * (*cap + want);
		Cinch__V1__Source **g = aalloc(a, sizeof(*g) * ncap);
		if (!g)
			return -ENOMEM;
		if (r->n_sources)
			memcpy(g, r->sources, sizeof(*g) * r->n_sources);
		r->sources = g;
		*cap = ncap;
	}
	if (e && e->wl.n && src->pod_sel) {
		if (!(ids = malloc(sizeof(*ids) * e->wl.n)))
			return -ENOMEM;
		for (size_t i = 0; i < e->wl.n; i++)
			ids[i] = c->ids[e->wl.v[i]];
		qsort(ids, e->wl.n, sizeof(*ids), str_ptr_cmp);
		for (size_t i = 0; i < e->wl.n; i++)
			if (!n_ids || strcmp(ids[n_ids - 1], ids[i]))
				ids[n_ids++] = ids[i];
	}
	for (size_t i = 0; i < (e ? (src->pod_sel ? n_ids : e->ns.n) : 1); i++) {
		Cinch__V1__Source *m = aalloc(a, sizeof(*m));
		if (!m)
			break;
		cinch__v1__source__init(m);
		if (e && src->pod_sel) {
			m->kind_case = CINCH__V1__SOURCE__KIND_IDENTITY;
			m->identity = astr(a, ids[i]);
		} else if (e || src->kind == PSRC_NAMESPACE) {
			m->kind_case = CINCH__V1__SOURCE__KIND_NAMESPACE;
			m->namespace_ = astr(a, e ? c->nsnames[e->ns.v[i]] : src->text);
		} else if (src->kind == PSRC_UNAUTH_CIDR) {
			m->kind_case = CINCH__V1__SOURCE__KIND_UNAUTHENTICATED_CIDR;
			m->unauthenticated_cidr = astr(a, src->text);
		} else if (src->kind == PSRC_ANY) {
			m->kind_case = CINCH__V1__SOURCE__KIND_ANY_CALLER;
			m->any_caller = 1;
		} else {
			char buf[SPIFFE_ID_MAX + 3];
			snprintf(buf, sizeof(buf), "%s%s", src->text,
				 src->kind == PSRC_IDENTITY_PREFIX ? "*" : "");
			m->kind_case = CINCH__V1__SOURCE__KIND_IDENTITY;
			m->identity = astr(a, buf);
		}
		r->sources[r->n_sources++] = m;
	}
	free(ids);
	return a->failed ? -ENOMEM : 0;
}

/* One rule into the snapshot. A namespace's rule whose sources expand to
 * nothing (a selector that picks no one) is still there, admitting no one:
 * its policy still selects the workload, so what no rule allows is denied,
 * not left to the default action. A guardrail's is left out: it decides
 * nothing. */
static int emit_rule(struct arena *a, const struct pcompiled *c, Cinch__V1__Snapshot *snap,
		     const struct pworkload *w, const char *id, const struct pports *ports,
		     const struct psrc *src, size_t n, int audit, int guard, enum paction act)
{
	Cinch__V1__InboundRule *r = aalloc(a, sizeof(*r));
	size_t cap = 0;

	if (!r)
		return -ENOMEM;
	cinch__v1__inbound_rule__init(r);
	for (size_t k = 0; k < n; k++)
		if (emit_source(a, c, &src[k], r, &cap) < 0)
			return -ENOMEM;
	if (!r->n_sources && guard)
		return 0;
	if (!r->sources && !(r->sources = aalloc(a, sizeof(*r->sources))))
		return -ENOMEM;
	r->id = astr(a, id);
	r->mode = audit ? CINCH__V1__RULE_MODE__RULE_MODE_AUDIT
			: CINCH__V1__RULE_MODE__RULE_MODE_ENFORCE;
	r->ports = port_ranges(a, ports, w, &r->n_ports);
	r->guardrail = guard;
	if (guard)
		r->action = act == PACT_DENY   ? CINCH__V1__RULE_ACTION__RULE_ACTION_DENY
			    : act == PACT_PASS ? CINCH__V1__RULE_ACTION__RULE_ACTION_PASS
					       : CINCH__V1__RULE_ACTION__RULE_ACTION_ALLOW;
	snap->inbound[snap->n_inbound++] = r;
	return a->failed ? -ENOMEM : 0;
}

/* The guardrails' rules (priority, name, position), then the namespace's. */
static int inbound_rules(struct arena *a, const struct pcompiled *c, size_t w,
			 Cinch__V1__Snapshot *snap)
{
	size_t total = 0;
	char id[512];

	for (size_t i = 0; i < c->sel[w].n; i++)
		total += c->order[c->sel[w].v[i]]->n_from;
	for (size_t i = 0; i < c->gsel[w].n; i++)
		total += c->gorder[c->gsel[w].v[i]]->n_rules;
	snap->inbound = aalloc(a, sizeof(*snap->inbound) * (total + 1));
	if (!snap->inbound)
		return -ENOMEM;
	for (size_t i = 0; i < c->gsel[w].n; i++) {
		const struct pguard *g = c->gorder[c->gsel[w].v[i]];
		for (size_t r = 0; r < g->n_rules; r++) {
			const struct pguard_rule *gr = &g->rules[r];
			snprintf(id, sizeof(id), "GuardrailPolicy/%s#%zu", g->name, r);
			if (emit_rule(a, c, snap, &c->s->workloads[w], id, &gr->ports, gr->src,
				      gr->n_src, g->audit, 1, gr->action) < 0)
				return -ENOMEM;
		}
	}
	for (size_t i = 0; i < c->sel[w].n; i++) {
		const struct pallow *al = c->order[c->sel[w].v[i]];
		for (size_t f = 0; f < al->n_from; f++) {
			snprintf(id, sizeof(id), "%s/%s#%zu", al->ns, al->name, f);
			if (emit_rule(a, c, snap, &c->s->workloads[w], id, &al->ports, al->from[f],
				      al->n_src[f], al->audit, 0, PACT_ALLOW) < 0)
				return -ENOMEM;
		}
	}
	return 0;
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
			r->ports = port_ranges(a, &e->to[t].ports, NULL, &r->n_ports);
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
static int peers(struct arena *a, const struct pcompiled *c, size_t w, Cinch__V1__Snapshot *snap,
		 size_t **peer_wl)
{
	static const struct pport all = {1, 65535, NULL}, zero = {0, 0, NULL};
	static const struct pports every = {(struct pport *)&all, 1, 0},
				   none = {(struct pport *)&zero, 1, 0};
	struct ilist *pl = &c->peers[w];
	size_t n = pl->n / 2, i = 0, o = 0;
	struct pport *acc = NULL;
	int rc = -ENOMEM;

	if (n)
		qsort(pl->v, n, 2 * sizeof(size_t), pair_cmp);
	snap->peers = aalloc(a, sizeof(*snap->peers) * (n + c->open.n / 2 + 1));
	*peer_wl = aalloc(a, sizeof(**peer_wl) * (n + c->open.n / 2 + 1));
	if (!snap->peers || !*peer_wl)
		return -ENOMEM;
	/* Merge the sorted pairs and the (sorted) open pairs. */
	while (i < n || o < c->open.n / 2) {
		size_t p = i < n ? pl->v[2 * i] : SIZE_MAX;
		size_t q = o < c->open.n / 2 ? c->open.v[2 * o] : SIZE_MAX;
		size_t cur = p < q ? p : q, n_acc = 0;
		int everything = 0;
		for (int from_open = 0; from_open < 2; from_open++) {
			const struct ilist *l = from_open ? &c->open : pl;
			size_t *k = from_open ? &o : &i, lim = from_open ? c->open.n / 2 : n;
			for (; *k < lim && l->v[2 * *k] == cur; (*k)++) {
				size_t pt = l->v[2 * *k + 1];
				const struct pports *pp = pt == SIZE_MAX ? NULL : c->ptab[pt];
				if (!pp || pp->n == 0)
					everything = 1;
				if (everything)
					continue;
				const struct pworkload *dst = &c->s->workloads[cur];
				struct pport *g =
					realloc(acc, sizeof(*g) * (n_acc + pp->n +
								   pp->n_named * dst->n_ports));
				if (!g)
					goto out;
				acc = g;
				n_acc += pports_resolve(pp, dst, acc + n_acc);
			}
		}
		/* Rules whose port names cur does not have: a peer on no port
		 * (0-0), never on every port. */
		Cinch__V1__Peer *m = peer_msg(a, c, cur);
		struct pports got = {acc, n_acc, 0};
		if (!m || !(m->allowed_ports = port_ranges(a,
							   everything ? &every
							   : n_acc    ? &got
								      : &none,
							   NULL, &m->n_allowed_ports)))
			goto out;
		(*peer_wl)[snap->n_peers] = cur;
		snap->peers[snap->n_peers++] = m;
	}
	rc = 0;
out:
	free(acc);
	return rc;
}

/* Does peer list (ascending workload indices peer_wl, n entries) let the
 * caller reach workload `wl` on `port`? */
static int admits(const Cinch__V1__Snapshot *snap, const size_t *peer_wl, long wl, uint16_t port)
{
	size_t key = (size_t)wl;
	const size_t *at = bsearch(&key, peer_wl, snap->n_peers, sizeof(key), size_cmp);
	if (!at)
		return 0;
	const Cinch__V1__Peer *p = snap->peers[at - peer_wl];
	for (size_t i = 0; i < p->n_allowed_ports; i++)
		if (port >= p->allowed_ports[i]->first && port <= p->allowed_ports[i]->last)
			return 1;
	return p->n_allowed_ports == 0;
}

static Cinch__V1__Service *service_msg(struct arena *a, const struct pcompiled *c,
				       const struct csvc *cs, const Cinch__V1__Snapshot *snap,
				       const size_t *peer_wl)
{
	Cinch__V1__Service *m = aalloc(a, sizeof(*m));
	int reachable = cs->n_eps == 0, refused = 0;

	if (!m)
		return NULL;
	cinch__v1__service__init(m);
	m->namespace_ = cs->v->ns;
	m->name = cs->v->name;
	m->virtual_ips = aalloc(a, sizeof(char *) * (cs->v->n_vips + 1));
	m->ports = aalloc(a, sizeof(*m->ports) * (cs->n_ports + 1));
	m->endpoints = aalloc(a, sizeof(*m->endpoints) * (cs->n_eps + 1));
	if (a->failed)
		return NULL;
	for (size_t i = 0; i < cs->v->n_vips; i++)
		m->virtual_ips[m->n_virtual_ips++] = cs->v->vips[i].text;
	for (size_t i = 0; i < cs->n_ports; i++) {
		Cinch__V1__ServicePort *p = aalloc(a, sizeof(*p));
		if (!p)
			return NULL;
		cinch__v1__service_port__init(p);
		p->name = cs->ports[i]->name;
		p->port = cs->ports[i]->port;
		p->protocol = cs->ports[i]->protocol;
		m->ports[m->n_ports++] = p;
	}
	for (size_t i = 0; i < cs->n_eps; i++) {
		const struct cep *ep = &cs->eps[i];
		Cinch__V1__Endpoint *e = aalloc(a, sizeof(*e));
		int any = 0;
		if (!e)
			return NULL;
		cinch__v1__endpoint__init(e);
		e->target_ports = aalloc(a, sizeof(uint32_t) * (cs->n_ports + 1));
		if (!e->target_ports)
			return NULL;
		/* A meshed endpoint's port this caller is not admitted on is
		 * left out (0): its agent would refuse the connection. */
		for (size_t p = 0; p < cs->n_ports; p++) {
			uint16_t t = ep->targets[p];
			if (t && ep->wl >= 0 && !admits(snap, peer_wl, ep->wl, t)) {
				refused = 1;
				t = 0;
			}
			e->target_ports[e->n_target_ports++] = t;
			any |= t != 0;
		}
		if (!any)
			continue;
		reachable = 1;
		e->addresses = (char **)ep->addrs;
		e->n_addresses = ep->n_addrs;
		e->ready = ep->e->ready;
		e->serving = ep->e->serving;
		e->terminating = ep->e->terminating;
		if (ep->wl >= 0) {
			const struct pworkload *wl = &c->s->workloads[ep->wl];
			char name[600];
			snprintf(name, sizeof(name), "%s/%s", wl->ns, wl->name);
			e->spiffe_id = c->ids[ep->wl];
			e->workload = astr(a, name);
		}
		m->endpoints[m->n_endpoints++] = e;
	}
	/* Every endpoint refuses this caller: not a Service it may call (its
	 * virtual IPs are in the meshed set, so a call is refused early). */
	if (!reachable && refused)
		return NULL;
	return a->failed ? NULL : m;
}

/* The Services w may call (compile.h), in namespace and name order. */
static int services(struct arena *a, const struct pcompiled *c, Cinch__V1__Snapshot *snap,
		    const size_t *peer_wl)
{
	snap->services = aalloc(a, sizeof(*snap->services) * (c->n_svcs + 1));
	for (size_t i = 0; snap->services && i < c->n_svcs; i++) {
		Cinch__V1__Service *m = service_msg(a, c, &c->svcs[i], snap, peer_wl);
		if (m)
			snap->services[snap->n_services++] = m;
		else if (a->failed)
			return -ENOMEM;
	}
	return a->failed ? -ENOMEM : 0;
}

int pcompile_snapshot(const struct pcompiled *c, size_t w, uint8_t **buf, size_t *len)
{
	const struct pset *s = c->s;
	struct arena a = {0};
	Cinch__V1__Snapshot snap = CINCH__V1__SNAPSHOT__INIT;
	struct pmesh_settings ms;
	int rc = -ENOMEM;
	uint8_t *out = NULL, digest[SHA256_DIGEST_LENGTH];
	size_t *peer_wl = NULL;
	char version[32];

	pset_mesh_settings(s, s->workloads[w].ns, &ms);
	snap.mtls_mode = ms.permissive ? CINCH__V1__MTLS_MODE__MTLS_MODE_PERMISSIVE
				       : CINCH__V1__MTLS_MODE__MTLS_MODE_STRICT;
	snap.default_action = ms.default_audit ? CINCH__V1__DEFAULT_ACTION__DEFAULT_ACTION_AUDIT
					       : CINCH__V1__DEFAULT_ACTION__DEFAULT_ACTION_DENY;
	snap.egress_mode = ms.egress == PEGRESS_ALLOW   ? CINCH__V1__EGRESS_MODE__EGRESS_MODE_ALLOW
			   : ms.egress == PEGRESS_AUDIT ? CINCH__V1__EGRESS_MODE__EGRESS_MODE_AUDIT
							: CINCH__V1__EGRESS_MODE__EGRESS_MODE_DENY;
	snap.workload = workload_msg(&a, s, &s->workloads[w]);
	snap.meshed_cidrs = c->meshed;
	snap.n_meshed_cidrs = c->n_meshed;
	if (!snap.workload || inbound_rules(&a, c, w, &snap) < 0 ||
	    egress_rules(&a, c, w, &snap) < 0 || peers(&a, c, w, &snap, &peer_wl) < 0 ||
	    services(&a, c, &snap, peer_wl) < 0 || a.failed)
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
