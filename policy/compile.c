/* compile: see compile.h.
 *
 * The Snapshot is built from protobuf-c structs whose memory comes from one
 * arena (freed at once after packing), so no partially built message ever
 * needs a field-by-field cleanup. Evaluation order, the one documented in
 * docs/policy.md: AllowPolicies sorted by namespace then name, and within
 * one its spec.from entries in order; the first rule that matches decides. */
#include "compile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	char *d = aalloc(a, strlen(s) + 1);
	if (d)
		strcpy(d, s);
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

static int allow_cmp(const void *a, const void *b)
{
	const struct pallow *x = *(const struct pallow *const *)a,
			    *y = *(const struct pallow *const *)b;
	int c = strcmp(x->ns, y->ns);
	return c ? c : strcmp(x->name, y->name);
}

/* AllowPolicies selecting w, in evaluation order (new array, free()). */
static const struct pallow **selecting(const struct pset *s, const struct pworkload *w, size_t *n)
{
	const struct pallow **out = calloc(s->n_allow ? s->n_allow : 1, sizeof(*out));
	*n = 0;
	for (size_t i = 0; out && i < s->n_allow; i++)
		if (pselector_matches(&s->allow[i].sel, s->allow[i].ns, w))
			out[(*n)++] = &s->allow[i];
	if (out)
		qsort(out, *n, sizeof(*out), allow_cmp);
	return out;
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

/* Does source `src` admit the authenticated caller `id` (in namespace
 * `caller_ns` of this trust domain)? */
static int src_admits(const struct psrc *src, const char *id, const char *caller_ns)
{
	switch (src->kind) {
	case PSRC_IDENTITY:
		return !strcmp(src->text, id);
	case PSRC_IDENTITY_PREFIX: {
		size_t n = strlen(src->text);
		return !strncmp(src->text, id, n) && id[n] && !strchr(id + n, '/');
	}
	case PSRC_NAMESPACE:
		return !strcmp(src->text, caller_ns);
	default:
		return 0;
	}
}

/* The ports server `p` lets caller `w` reach, as allowed_ports. */
static Cinch__V1__PortRange **peer_ports(struct arena *a, const struct pset *s,
					 const struct pworkload *p, const struct pworkload *w,
					 size_t *n)
{
	static const struct pport all = {1, 65535}, none = {0, 0};
	char id[SPIFFE_ID_MAX + 1];
	size_t n_sel;
	const struct pallow **sel = selecting(s, p, &n_sel);
	int permissive, audit, enforce = 0, everything = 0;
	struct pports acc = {0};
	Cinch__V1__PortRange **r = NULL;

	if (!sel || pcompile_spiffe_id(s, w, id, sizeof(id)) < 0)
		goto out;
	mesh_settings(s, p->ns, &permissive, &audit);
	for (size_t i = 0; i < n_sel; i++) {
		const struct pallow *al = sel[i];
		enforce |= !al->audit;
		for (size_t f = 0; f < al->n_from; f++)
			for (size_t k = 0; k < al->n_src[f]; k++) {
				if (!src_admits(&al->from[f][k], id, w->ns))
					continue;
				if (al->ports.n == 0)
					everything = 1;
				for (size_t q = 0; q < al->ports.n; q++) {
					struct pport *g = realloc(acc.r, sizeof(*g) * (acc.n + 1));
					if (!g)
						goto out;
					acc.r = g;
					acc.r[acc.n++] = al->ports.r[q];
				}
			}
	}
	/* Nothing selects p: its default action decides; audit-only
	 * policies let everything through. */
	if ((n_sel == 0 && audit) || (n_sel && !enforce))
		everything = 1;
	if (everything) {
		acc.n = 1;
		acc.r = realloc(acc.r, sizeof(*acc.r));
		if (!acc.r)
			goto out;
		acc.r[0] = all;
	} else if (acc.n == 0) {
		acc.r = malloc(sizeof(*acc.r));
		if (!acc.r)
			goto out;
		acc.r[0] = none;
		acc.n = 1;
	}
	r = port_ranges(a, &acc, n);
out:
	if (!r)
		a->failed = 1;
	free(acc.r);
	free(sel);
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

static int inbound_rules(struct arena *a, const struct pset *s, const struct pworkload *w,
			 Cinch__V1__Snapshot *snap)
{
	size_t n_sel, total = 0;
	const struct pallow **sel = selecting(s, w, &n_sel);
	char id[512];

	if (!sel)
		return -ENOMEM;
	for (size_t i = 0; i < n_sel; i++)
		total += sel[i]->n_from;
	snap->inbound = aalloc(a, sizeof(*snap->inbound) * (total + 1));
	for (size_t i = 0; snap->inbound && i < n_sel; i++) {
		const struct pallow *al = sel[i];
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
	free(sel);
	return a->failed ? -ENOMEM : 0;
}

static int egress_rules(struct arena *a, const struct pset *s, const struct pworkload *w,
			Cinch__V1__Snapshot *snap)
{
	size_t total = 0;
	char id[512];

	for (size_t i = 0; i < s->n_egress; i++)
		if (pselector_matches(&s->egress[i].sel, s->egress[i].ns, w))
			total += s->egress[i].n_to;
	snap->egress = aalloc(a, sizeof(*snap->egress) * (total + 1));
	for (size_t i = 0; snap->egress && i < s->n_egress; i++) {
		const struct pegress *e = &s->egress[i];
		if (!pselector_matches(&e->sel, e->ns, w))
			continue;
		for (size_t t = 0; t < e->n_to; t++) {
			Cinch__V1__EgressRule *r = aalloc(a, sizeof(*r));
			if (!r)
				break;
			cinch__v1__egress_rule__init(r);
			snprintf(id, sizeof(id), "%s/%s#%zu", e->ns, e->name, t);
			r->id = astr(a, id);
			r->cidrs = aalloc(a, sizeof(char *) * (e->to[t].n_cidrs + 1));
			for (size_t c = 0; r->cidrs && c < e->to[t].n_cidrs; c++)
				r->cidrs[r->n_cidrs++] = astr(a, e->to[t].cidrs[c].text);
			r->ports = port_ranges(a, &e->to[t].ports, &r->n_ports);
			snap->egress[snap->n_egress++] = r;
		}
	}
	return a->failed ? -ENOMEM : 0;
}

int pcompile_snapshot(const struct pset *s, const struct pworkload *w, uint8_t **buf, size_t *len)
{
	struct arena a = {0};
	Cinch__V1__Snapshot snap = CINCH__V1__SNAPSHOT__INIT;
	int permissive, audit, rc = -ENOMEM;
	uint8_t *out = NULL, digest[SHA256_DIGEST_LENGTH];
	char version[32];

	mesh_settings(s, w->ns, &permissive, &audit);
	snap.mtls_mode = permissive ? CINCH__V1__MTLS_MODE__MTLS_MODE_PERMISSIVE
				    : CINCH__V1__MTLS_MODE__MTLS_MODE_STRICT;
	snap.default_action = audit ? CINCH__V1__DEFAULT_ACTION__DEFAULT_ACTION_AUDIT
				    : CINCH__V1__DEFAULT_ACTION__DEFAULT_ACTION_DENY;
	snap.workload = workload_msg(&a, s, w);
	if (!snap.workload || inbound_rules(&a, s, w, &snap) < 0 ||
	    egress_rules(&a, s, w, &snap) < 0)
		goto out;
	snap.peers = aalloc(&a, sizeof(*snap.peers) * (s->n_workloads + 1));
	for (size_t i = 0; snap.peers && i < s->n_workloads; i++) {
		const struct pworkload *p = &s->workloads[i];
		Cinch__V1__Workload *pw = workload_msg(&a, s, p);
		Cinch__V1__Peer *m = aalloc(&a, sizeof(*m));
		if (!pw || !m)
			goto out;
		cinch__v1__peer__init(m);
		m->spiffe_id = pw->spiffe_id;
		m->n_addresses = pw->n_addresses;
		m->addresses = pw->addresses;
		m->namespace_ = pw->namespace_;
		m->name = pw->name;
		m->allowed_ports = peer_ports(&a, s, p, w, &m->n_allowed_ports);
		if (!m->allowed_ports)
			goto out;
		snap.peers[snap.n_peers++] = m;
	}
	if (a.failed)
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
