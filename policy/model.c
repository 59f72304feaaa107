/* model: see model.h.
 *
 * Validation walks each document with a field path ("spec.from[1]") kept
 * in the vctx (pwalk.h); the first error wins and is reported with the node's
 * position. Each kind has one function that reads its spec into a local
 * struct and appends it to the set only when everything was valid. */
#include "model.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "ksvc.h"
#include "pwalk.h"
#include "spiffe.h"

/* One document's walk (pwalk.h) and the set it is checked against. */
struct vctx {
	struct pwalk w;
	const struct pset *set;
};

/* The value of `key` in `map` (NULL when absent); an error about the
 * missing value is then placed at `map`. */
static const struct pdoc *vget(struct vctx *v, const struct pdoc *map, const char *key)
{
	v->w.parent = map;
	return pdoc_get(map, key);
}

static char *vdup(struct vctx *v, const char *s)
{
	char *d = strdup(s);
	if (!d)
		v->w.nomem = v->w.failed = 1;
	return d;
}

static const char *kind_name(enum pdoc_kind k)
{
	return k == PDOC_MAP ? "a mapping" : k == PDOC_SEQ ? "a list" : "a value";
}

/* Checks that `map` is a mapping whose keys are all in `allowed`. */
static int vmap(struct vctx *v, const struct pdoc *map, const char *const *allowed)
{
	if (!map || map->kind != PDOC_MAP)
		return map ? pwalk_fail(&v->w, map, "must be a mapping, not %s", kind_name(map->kind))
			   : pwalk_fail(&v->w, map, "required: a mapping");
	for (size_t i = 0; i < map->n; i++) {
		const char *k = map->items[2 * i]->text;
		int ok = 0;
		for (const char *const *a = allowed; *a && !ok; a++)
			ok = !strcmp(*a, k);
		if (!ok) {
			size_t o = pwalk_push(&v->w, k, 0);
			pwalk_fail(&v->w, map->items[2 * i], "unknown field");
			pwalk_pop(&v->w, o);
			return -EINVAL;
		}
	}
	return 0;
}

static const char *vstr(struct vctx *v, const struct pdoc *d)
{
	if (!d || d->kind != PDOC_SCALAR) {
		if (d)
			pwalk_fail(&v->w, d, "must be a string, not %s", kind_name(d->kind));
		else
			pwalk_fail(&v->w, d, "required: a string");
		return NULL;
	}
	if (!d->quoted && (!strcmp(d->text, "null") || !strcmp(d->text, "~") || !d->text[0])) {
		pwalk_fail(&v->w, d, "must be a string, not null");
		return NULL;
	}
	return d->text;
}

static int vseq(struct vctx *v, const struct pdoc *d)
{
	if (!d || d->kind != PDOC_SEQ)
		return d ? pwalk_fail(&v->w, d, "must be a list, not %s", kind_name(d->kind))
			 : pwalk_fail(&v->w, d, "required: a list");
	if (d->n == 0)
		return pwalk_fail(&v->w, d, "must not be empty");
	return 0;
}

static char *vdns(struct vctx *v, const struct pdoc *d, int subdomain)
{
	const char *s = vstr(v, d);
	if (!s)
		return NULL;
	if (!pwalk_dns_ok(s, subdomain)) {
		pwalk_fail(&v->w, d, "not a valid %s: \"%.100s\"",
		     subdomain ? "DNS-1123 name" : "DNS-1123 label", s);
		return NULL;
	}
	return vdup(v, s);
}

/* ---- CIDRs and ports */

int pcidr_parse(const char *text, int host_only, struct pcidr *out)
{
	char buf[64];
	const char *slash = strchr(text, '/');
	size_t alen = slash ? (size_t)(slash - text) : strlen(text);
	long prefix;

	memset(out, 0, sizeof(*out));
	if (alen == 0 || alen >= sizeof(buf) || (host_only && slash))
		return -EINVAL;
	memcpy(buf, text, alen);
	buf[alen] = '\0';
	if (inet_pton(AF_INET, buf, out->addr) == 1)
		out->family = AF_INET;
	else if (inet_pton(AF_INET6, buf, out->addr) == 1)
		out->family = AF_INET6;
	else
		return -EINVAL;
	unsigned max = out->family == AF_INET ? 32 : 128;
	if (slash) {
		char *end;
		if (!slash[1] || slash[1] == '+' || slash[1] == '-')
			return -EINVAL;
		prefix = strtol(slash + 1, &end, 10);
		if (*end || prefix < 0 || prefix > (long)max)
			return -EINVAL;
	} else {
		prefix = max;
	}
	out->prefix = (unsigned)prefix;
	/* Host bits must be zero: "10.0.0.1/8" is a typo, not a network. */
	for (unsigned bit = out->prefix; bit < max; bit++)
		if (out->addr[bit / 8] & (0x80 >> (bit % 8)))
			return -EINVAL;
	return 0;
}

static const uint8_t pcidr_v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static paddr_t paddr_bytes(const uint8_t *a, size_t n)
{
	paddr_t x = 0;
	for (size_t i = 0; i < n; i++)
		x = x << 8 | a[i];
	return x;
}

void pcidr_range(const struct pcidr *c, struct prange *out)
{
	unsigned bits = 32, prefix = c->prefix;
	out->v6 = c->family == AF_INET6;
	if (out->v6 && prefix >= 96 && !memcmp(c->addr, pcidr_v4mapped, 12)) {
		out->v6 = 0;
		prefix -= 96;
		out->lo = paddr_bytes(c->addr + 12, 4);
	} else {
		bits = out->v6 ? 128 : 32;
		out->lo = paddr_bytes(c->addr, bits / 8);
	}
	/* host bits are zero (pcidr_parse); a /0 of IPv6 is every address */
	paddr_t span = bits - prefix >= 128 ? ~(paddr_t)0 : ((paddr_t)1 << (bits - prefix)) - 1;
	out->hi = out->lo | span;
}

int prange_cmp(const void *x, const void *y)
{
	const struct prange *a = x, *b = y;
	if (a->v6 != b->v6)
		return a->v6 - b->v6;
	return a->lo < b->lo ? -1 : a->lo > b->lo;
}

size_t prange_normalize(struct prange *r, size_t n)
{
	size_t k = 0;

	qsort(r, n, sizeof(*r), prange_cmp);
	for (size_t i = 0; i < n; i++) {
		struct prange *last = k ? &r[k - 1] : NULL;
		/* r[i].lo > last->hi >= 0 before "- 1": no wrap */
		if (last && last->v6 == r[i].v6 && (r[i].lo <= last->hi || r[i].lo - 1 == last->hi))
			last->hi = r[i].hi > last->hi ? r[i].hi : last->hi;
		else
			r[k++] = r[i];
	}
	return k;
}

int paddr_of(const struct sockaddr *sa, int *v6, paddr_t *out)
{
	if (sa->sa_family == AF_INET) {
		*v6 = 0;
		*out = paddr_bytes((const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family != AF_INET6)
		return -EINVAL;
	const uint8_t *a = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
	*v6 = memcmp(a, pcidr_v4mapped, 12) != 0;
	*out = *v6 ? paddr_bytes(a, 16) : paddr_bytes(a + 12, 4);
	return 0;
}

int pcidr_contains(const struct pcidr *c, const struct sockaddr *sa)
{
	const uint8_t *a;
	uint8_t mapped[16];

	if (sa->sa_family == AF_INET && c->family == AF_INET) {
		a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
	} else if (sa->sa_family == AF_INET6) {
		a = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (c->family == AF_INET) { /* ::ffff:a.b.c.d is the IPv4 address */
			if (memcmp(a, pcidr_v4mapped, 12) != 0)
				return 0;
			memcpy(mapped, a + 12, 4);
			a = mapped;
		}
	} else {
		return 0;
	}
	for (unsigned bit = 0; bit < c->prefix; bit++) {
		uint8_t m = 0x80 >> (bit % 8);
		if ((a[bit / 8] & m) != (c->addr[bit / 8] & m))
			return 0;
	}
	return 1;
}

int pports_contains(const struct pports *p, uint16_t port)
{
	if (p->n == 0)
		return 1;
	for (size_t i = 0; i < p->n; i++)
		if (port >= p->r[i].lo && port <= p->r[i].hi)
			return 1;
	return 0;
}

static int port_num(const char *s, size_t len, uint16_t *out)
{
	unsigned long v = 0;
	if (len == 0 || len > 5)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

size_t pports_resolve(const struct pports *p, const struct pworkload *w, struct pport *out)
{
	size_t n = 0;

	for (size_t i = 0; i < p->n; i++) {
		if (!p->r[i].name) {
			out[n++] = p->r[i];
			continue;
		}
		for (size_t k = 0; k < w->n_ports; k++)
			if (w->ports[k].tcp && !strcmp(w->ports[k].name, p->r[i].name))
				out[n++] = (struct pport){w->ports[k].port, w->ports[k].port, NULL};
	}
	return n;
}

void pports_clear(struct pports *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->r[i].name);
	free(p->r);
}

/* Numbers, ranges "first-last" and (named: a workload's rules) port names. */
static int vports(struct vctx *v, const struct pdoc *d, int named, struct pports *out)
{
	if (vseq(v, d) < 0)
		return -EINVAL;
	out->r = calloc(d->n, sizeof(*out->r));
	if (!out->r)
		return v->w.nomem = -ENOMEM;
	for (size_t i = 0; i < d->n; i++) {
		size_t o = pwalk_push(&v->w, NULL, (long)i);
		const char *s = vstr(v, d->items[i]);
		const char *dash = s ? strchr(s, '-') : NULL;
		struct pport *r = &out->r[i];
		if (!s)
			return -EINVAL;
		if (named && strspn(s, "0123456789-") != strlen(s)) {
			if (!pwalk_port_name_ok(s))
				return pwalk_fail(&v->w, d->items[i],
					    "not a port name (IANA_SVC_NAME: 1-15 of a-z, 0-9 "
					    "and '-', a letter, no '-' first, last or twice): "
					    "\"%.40s\"",
					    s);
			if (!(r->name = vdup(v, s)))
				return -ENOMEM;
			r->lo = 1; /* above hi: no number matches it */
			out->n++;
			out->n_named++;
			pwalk_pop(&v->w, o);
			continue;
		}
		if (dash ? port_num(s, (size_t)(dash - s), &r->lo) < 0 ||
				    port_num(dash + 1, strlen(dash + 1), &r->hi) < 0
			 : port_num(s, strlen(s), &r->lo) < 0)
			return pwalk_fail(&v->w, d->items[i],
				    "not a port (1-65535) or a range \"first-last\": \"%.40s\"", s);
		if (!dash)
			r->hi = r->lo;
		if (r->hi < r->lo)
			return pwalk_fail(&v->w, d->items[i], "range ends before it starts: \"%.40s\"", s);
		out->n++;
		pwalk_pop(&v->w, o);
	}
	return 0;
}

static int vcidrs(struct vctx *v, const struct pdoc *d, int host_only, struct pcidr **out,
		  size_t *n)
{
	if (vseq(v, d) < 0)
		return -EINVAL;
	*out = calloc(d->n, sizeof(**out));
	if (!*out)
		return v->w.nomem = -ENOMEM;
	for (size_t i = 0; i < d->n; i++) {
		size_t o = pwalk_push(&v->w, NULL, (long)i);
		const char *s = vstr(v, d->items[i]);
		if (!s)
			return -EINVAL;
		if (pcidr_parse(s, host_only, &(*out)[i]) < 0)
			return pwalk_fail(&v->w, d->items[i],
				    host_only ? "not an IP address: \"%.60s\""
					      : "not a CIDR (address/prefix with "
						"no host bits set): \"%.60s\"",
				    s);
		if (!((*out)[i].text = vdup(v, s)))
			return -ENOMEM;
		(*out)[i].line = d->items[i]->line;
		(*out)[i].column = d->items[i]->column;
		*n = i + 1;
		pwalk_pop(&v->w, o);
	}
	return 0;
}

/* ---- selectors, labels, sources */

static int vlabels(struct vctx *v, const struct pdoc *d, struct plabel **out, size_t *n)
{
	if (!d || d->kind != PDOC_MAP)
		return pwalk_fail(&v->w, d, "must be a mapping of label to value");
	*out = calloc(d->n ? d->n : 1, sizeof(**out));
	if (!*out)
		return v->w.nomem = -ENOMEM;
	for (size_t i = 0; i < d->n; i++) {
		size_t o = pwalk_push(&v->w, d->items[2 * i]->text, 0);
		const char *val =
			d->items[2 * i + 1]->kind == PDOC_SCALAR ? d->items[2 * i + 1]->text : NULL;
		if (!val || strlen(val) > 63)
			return pwalk_fail(&v->w, d->items[2 * i + 1],
				    "a label value is a string of at most 63 "
				    "characters");
		(*out)[i].key = vdup(v, d->items[2 * i]->text);
		(*out)[i].value = vdup(v, val);
		*n = i + 1;
		if (v->w.nomem)
			return -ENOMEM;
		pwalk_pop(&v->w, o);
	}
	return 0;
}

/* A label value (Kubernetes': at most 63 characters, alphanumerics, '-',
 * '_' and '.', starting and ending alphanumeric; may be empty). */
static int label_value_ok(const char *s)
{
	size_t n = strlen(s);
	if (n > 63)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (!alnum && c != '-' && c != '_' && c != '.')
			return 0;
		if (!alnum && (i == 0 || i == n - 1))
			return 0;
	}
	return 1;
}

/* matchExpressions: [{key, operator, values}] */
static int vexprs(struct vctx *v, const struct pdoc *d, struct pselector *sel)
{
	static const char *const keys[] = {"key", "operator", "values", NULL};
	static const char *const ops[] = {"In", "NotIn", "Exists", "DoesNotExist", NULL};

	if (vseq(v, d) < 0)
		return -EINVAL;
	if (!(sel->exprs = calloc(d->n, sizeof(*sel->exprs))))
		return v->w.nomem = -ENOMEM;
	for (size_t i = 0; i < d->n; i++) {
		size_t o = pwalk_push(&v->w, NULL, (long)i);
		struct plexpr *x = &sel->exprs[i];
		const struct pdoc *e = d->items[i], *vals;
		const char *key, *op;
		sel->n_exprs = i + 1;
		if (vmap(v, e, keys) < 0)
			return -EINVAL;
		size_t o2 = pwalk_push(&v->w, "key", 0);
		if (!(key = vstr(v, vget(v, e, "key"))) || !(x->key = vdup(v, key)))
			return -EINVAL;
		pwalk_pop(&v->w, o2);
		o2 = pwalk_push(&v->w, "operator", 0);
		if (!(op = vstr(v, vget(v, e, "operator"))))
			return -EINVAL;
		size_t k = 0;
		while (ops[k] && strcmp(ops[k], op))
			k++;
		if (!ops[k])
			return pwalk_fail(&v->w, vget(v, e, "operator"),
				    "must be In, NotIn, Exists or DoesNotExist, not \"%.40s\"", op);
		x->op = (enum plexpr_op)k;
		pwalk_pop(&v->w, o2);
		o2 = pwalk_push(&v->w, "values", 0);
		vals = vget(v, e, "values");
		if (x->op == PLEXPR_EXISTS || x->op == PLEXPR_DOES_NOT_EXIST) {
			if (vals && !(vals->kind == PDOC_SEQ && vals->n == 0))
				return pwalk_fail(&v->w, vals, "must be absent for %s", op);
		} else {
			if (!vals)
				return pwalk_fail(&v->w, e, "required for %s: a non-empty list", op);
			if (vseq(v, vals) < 0)
				return -EINVAL;
			if (!(x->values = calloc(vals->n, sizeof(char *))))
				return v->w.nomem = -ENOMEM;
			for (size_t j = 0; j < vals->n; j++) {
				size_t o3 = pwalk_push(&v->w, NULL, (long)j);
				const char *val = vals->items[j]->kind == PDOC_SCALAR
							  ? vals->items[j]->text
							  : NULL;
				if (!val || !label_value_ok(val))
					return pwalk_fail(&v->w, vals->items[j], "not a label value");
				if (!(x->values[j] = vdup(v, val)))
					return -ENOMEM;
				x->n_values = j + 1;
				pwalk_pop(&v->w, o3);
			}
		}
		pwalk_pop(&v->w, o2);
		pwalk_pop(&v->w, o);
	}
	return 0;
}

/* A selector at field `field`: matchLabels, matchExpressions and, for a
 * workload selector, workloads; `{}` selects everything (written so on
 * purpose: every empty list or mapping inside is still an error). */
static int vselector_as(struct vctx *v, const struct pdoc *d, struct pselector *sel,
			const char *field, int workloads)
{
	static const char *const wkeys[] = {"matchLabels", "matchExpressions", "workloads", NULL};
	static const char *const lkeys[] = {"matchLabels", "matchExpressions", NULL};
	size_t o = pwalk_push(&v->w, field, 0);
	const struct pdoc *ml, *me, *wl;

	if (vmap(v, d, workloads ? wkeys : lkeys) < 0)
		return -EINVAL;
	ml = vget(v, d, "matchLabels");
	me = vget(v, d, "matchExpressions");
	wl = workloads ? vget(v, d, "workloads") : NULL;
	if (ml) {
		size_t o2 = pwalk_push(&v->w, "matchLabels", 0);
		if (vlabels(v, ml, &sel->labels, &sel->n_labels) < 0)
			return -EINVAL;
		if (sel->n_labels == 0)
			return pwalk_fail(&v->w, ml, "must not be empty (a selector of everything is {})");
		pwalk_pop(&v->w, o2);
	}
	if (me) {
		size_t o2 = pwalk_push(&v->w, "matchExpressions", 0);
		if (vexprs(v, me, sel) < 0)
			return -EINVAL;
		pwalk_pop(&v->w, o2);
	}
	if (wl) {
		size_t o2 = pwalk_push(&v->w, "workloads", 0);
		if (vseq(v, wl) < 0)
			return -EINVAL;
		sel->workloads = calloc(wl->n, sizeof(char *));
		if (!sel->workloads)
			return v->w.nomem = -ENOMEM;
		for (size_t i = 0; i < wl->n; i++) {
			size_t o3 = pwalk_push(&v->w, NULL, (long)i);
			if (!(sel->workloads[i] = vdns(v, wl->items[i], 1)))
				return -EINVAL;
			sel->n_workloads = i + 1;
			pwalk_pop(&v->w, o3);
		}
		pwalk_pop(&v->w, o2);
	}
	pwalk_pop(&v->w, o);
	return 0;
}

static int vselector(struct vctx *v, const struct pdoc *d, struct pselector *sel)
{
	return vselector_as(v, d, sel, "selector", 1);
}

static const char *plabel_get(const struct plabel *l, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(l[i].key, key))
			return l[i].value;
	return NULL;
}

int pselector_labels_match(const struct pselector *sel, const struct plabel *l, size_t n)
{
	for (size_t i = 0; i < sel->n_labels; i++) {
		const char *have = plabel_get(l, n, sel->labels[i].key);
		if (!have || strcmp(have, sel->labels[i].value))
			return 0;
	}
	for (size_t i = 0; i < sel->n_exprs; i++) {
		const struct plexpr *x = &sel->exprs[i];
		const char *have = plabel_get(l, n, x->key);
		int in = 0;
		for (size_t j = 0; have && j < x->n_values && !in; j++)
			in = !strcmp(have, x->values[j]);
		if ((x->op == PLEXPR_IN && !in) || (x->op == PLEXPR_NOT_IN && in) ||
		    (x->op == PLEXPR_EXISTS && !have) || (x->op == PLEXPR_DOES_NOT_EXIST && have))
			return 0;
	}
	return 1;
}

#define PNS_NAME_LABEL "kubernetes.io/metadata.name"

/* The Namespace document named `ns`, or NULL: a binary search once
 * pset_finish has sorted them (the index asks for every guardrail and
 * workload, every selector and namespace), else a walk. */
static const struct pnamespace *pset_namespace(const struct pset *s, const char *ns)
{
	if (s->ns_by_name && s->n_by_name == s->n_namespaces) {
		size_t lo = 0, hi = s->n_by_name;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			const struct pnamespace *n = &s->namespaces[s->ns_by_name[mid]];
			int c = strcmp(n->name, ns);
			if (!c)
				return n;
			if (c < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		return NULL;
	}
	for (size_t i = 0; i < s->n_namespaces; i++)
		if (!strcmp(s->namespaces[i].name, ns))
			return &s->namespaces[i];
	return NULL;
}

int pset_namespace_matches(const struct pset *s, const struct pselector *sel, const char *ns)
{
	const struct pnamespace *n = pset_namespace(s, ns);
	if (n)
		return pselector_labels_match(sel, n->labels, n->n_labels);
	struct plabel only = {(char *)PNS_NAME_LABEL, (char *)ns};
	return pselector_labels_match(sel, &only, 1);
}

int pguard_selects(const struct pset *s, const struct pguard *g, const struct pworkload *w)
{
	return (!g->ns_sel || pset_namespace_matches(s, g->ns_sel, w->ns)) &&
	       (!g->pod_sel || pselector_labels_match(g->pod_sel, w->labels, w->n_labels));
}

int pselector_matches(const struct pselector *sel, const char *ns, const struct pworkload *w)
{
	if (strcmp(ns, w->ns) != 0)
		return 0;
	if (sel->n_workloads) {
		int found = 0;
		for (size_t i = 0; i < sel->n_workloads && !found; i++)
			found = !strcmp(sel->workloads[i], w->name);
		if (!found)
			return 0;
	}
	return pselector_labels_match(sel, w->labels, w->n_labels);
}

/* A wildcard `s` (valid, ending in "/" "*") in the workload tree
 * ("/ns/...") that is not ".../ns/<ns>/sa/" "*": since "*" is exactly one
 * last segment,
 * it would admit only IDs such as ".../ns/shop/x", never a workload's
 * (spiffe://<td>/ns/<ns>/sa/<sa>). It is what someone writes meaning a
 * whole namespace, so it is refused rather than kept admitting nothing. */
static int vwildcard_admits_nothing(const char *s, size_t len)
{
	const char *path = strchr(s + strlen("spiffe://"), '/');
	size_t plen = (size_t)(s + len - 1 - path); /* "/ns/<ns>/sa/" without the '*' */
	const char *ns_end;

	if (strncmp(path, "/ns/", 4) != 0)
		return 0;
	ns_end = memchr(path + 4, '/', plen - 4);
	return !ns_end || ns_end == path + 4 || (size_t)(path + plen - ns_end) != 4 ||
	       strncmp(ns_end, "/sa/", 4) != 0;
}

static void pselector_clear(struct pselector *s);

/* A namespaceSelector or podSelector of a source, on the heap. */
static struct pselector *vselector_new(struct vctx *v, const struct pdoc *d, const char *field)
{
	struct pselector *sel = calloc(1, sizeof(*sel));
	if (!sel) {
		v->w.nomem = v->w.failed = 1;
		return NULL;
	}
	if (vselector_as(v, d, sel, field, 0) < 0) {
		pselector_clear(sel);
		free(sel);
		return NULL;
	}
	return sel;
}

/* serviceAccounts: ["<ns>/<name>"]: the workload identity of that service
 * account in the set's trust domain, whatever that domain is. */
static int vservice_account(struct vctx *v, const struct pdoc *d, const char *s, struct psrc *src)
{
	const char *slash = strchr(s, '/');
	char ns[64], id[SPIFFE_ID_MAX + 1];

	if (!slash || (size_t)(slash - s) >= sizeof(ns))
		return pwalk_fail(&v->w, d, "not <namespace>/<serviceAccount>: \"%.100s\"", s);
	memcpy(ns, s, (size_t)(slash - s));
	ns[slash - s] = '\0';
	if (!pwalk_dns_ok(ns, 0) || !pwalk_dns_ok(slash + 1, 1) ||
	    spiffe_id_format(id, sizeof(id), v->set->trust_domain, ns, slash + 1) < 0)
		return pwalk_fail(&v->w, d, "not <namespace>/<serviceAccount>: \"%.100s\"", s);
	src->kind = PSRC_IDENTITY;
	return (src->text = vdup(v, id)) ? 0 : -ENOMEM;
}

/* One spec.from[] entry: exactly one of identities, namespaces,
 * serviceAccounts, unauthenticated, or a namespaceSelector and/or a
 * podSelector (with NetworkPolicy's meaning: pods of the namespaces the
 * first picks, of the policy's own namespace when it is absent, that the
 * second picks; in a guardrail, which has no namespace, of every
 * namespace). */
static int vsource(struct vctx *v, const struct pdoc *d, struct psrc **out, size_t *n)
{
	static const char *const keys[] = {"identities",	"namespaces",  "unauthenticated",
					   "serviceAccounts",	"namespaceSelector", "podSelector",
					   NULL};
	static const char *const unauth_keys[] = {"ipBlocks", NULL};

	if (vmap(v, d, keys) < 0)
		return -EINVAL;
	const struct pdoc *nss = pdoc_get(d, "namespaceSelector"), *pods = pdoc_get(d, "podSelector");
	if ((nss || pods) && d->n == (size_t)(!!nss + !!pods)) {
		if (!(*out = calloc(1, sizeof(**out))))
			return v->w.nomem = -ENOMEM;
		(*out)->kind = PSRC_SELECTOR;
		*n = 1;
		if ((nss && !((*out)->ns_sel = vselector_new(v, nss, "namespaceSelector"))) ||
		    (pods && !((*out)->pod_sel = vselector_new(v, pods, "podSelector"))))
			return -EINVAL;
		return 0;
	}
	if (d->n != 1)
		return pwalk_fail(&v->w, d,
			    "must hold exactly one of identities, namespaces, serviceAccounts, "
			    "unauthenticated, or namespaceSelector and podSelector (write several "
			    "entries for several kinds)");
	const char *kind = d->items[0]->text;
	const struct pdoc *val = d->items[1];
	size_t o = pwalk_push(&v->w, kind, 0);

	if (!strcmp(kind, "unauthenticated")) {
		struct pcidr *c = NULL;
		size_t nc = 0;
		if (vmap(v, val, unauth_keys) < 0)
			return -EINVAL;
		size_t o2 = pwalk_push(&v->w, "ipBlocks", 0);
		int rc = vcidrs(v, vget(v, val, "ipBlocks"), 0, &c, &nc);
		if (rc == 0 && !(*out = calloc(nc, sizeof(**out))))
			rc = v->w.nomem = -ENOMEM;
		for (size_t i = 0; rc == 0 && i < nc; i++) {
			(*out)[i].kind = PSRC_UNAUTH_CIDR;
			(*out)[i].cidr = c[i];
			(*out)[i].text = c[i].text;
			c[i].text = NULL;
			*n = i + 1;
		}
		for (size_t i = 0; i < nc; i++)
			free(c[i].text);
		free(c);
		if (rc < 0)
			return rc;
		pwalk_pop(&v->w, o2);
		pwalk_pop(&v->w, o);
		return 0;
	}
	if (vseq(v, val) < 0)
		return -EINVAL;
	*out = calloc(val->n, sizeof(**out));
	if (!*out)
		return v->w.nomem = -ENOMEM;
	for (size_t i = 0; i < val->n; i++) {
		size_t o2 = pwalk_push(&v->w, NULL, (long)i);
		const char *s = vstr(v, val->items[i]);
		struct psrc *src = &(*out)[i];
		const char *why = NULL;
		if (!s)
			return -EINVAL;
		if (!strcmp(kind, "serviceAccounts")) {
			if (vservice_account(v, val->items[i], s, src) < 0)
				return -EINVAL;
			*n = i + 1;
			pwalk_pop(&v->w, o2);
			continue;
		}
		if (!strcmp(kind, "namespaces")) {
			src->kind = PSRC_NAMESPACE;
			if (!pwalk_dns_ok(s, 0))
				return pwalk_fail(&v->w, val->items[i], "not a namespace name: \"%.100s\"",
					    s);
		} else {
			size_t len = strlen(s);
			int wild = len > 2 && !strcmp(s + len - 2, "/*");
			src->kind = wild ? PSRC_IDENTITY_PREFIX : PSRC_IDENTITY;
			if (strchr(s, '*') && !wild)
				return pwalk_fail(&v->w, val->items[i],
					    "a wildcard is only a whole last segment "
					    "\"/*\": \"%.100s\"",
					    s);
			if (spiffe_id_validate(s, wild ? len - 2 : len, &why) < 0)
				return pwalk_fail(&v->w, val->items[i], "not a SPIFFE ID: %s: \"%.100s\"",
					    why, s);
			if (wild &&
			    !memchr(s + strlen("spiffe://"), '/', len - strlen("spiffe://") - 2))
				return pwalk_fail(&v->w, val->items[i],
					    "a wildcard must keep at least one path "
					    "segment (it would grant the whole trust "
					    "domain): \"%.100s\"",
					    s);
			if (wild && vwildcard_admits_nothing(s, len)) {
				/* Name the namespace the author probably meant. */
				const char *ns = strstr(s + strlen("spiffe://"), "/ns/") + 4;
				int nl = (int)strcspn(ns, "/*");
				return pwalk_fail(&v->w, val->items[i],
					    "\"%.100s\" admits no workload: \"*\" is exactly one "
					    "last segment, and a workload is .../ns/<ns>/sa/<sa>; "
					    "for every workload of a namespace write "
					    "namespaces: [%.*s]",
					    s, nl ? (nl > 63 ? 63 : nl) : 4, nl ? ns : "<ns>");
			}
		}
		src->text = vdup(v, src->kind == PSRC_IDENTITY_PREFIX ? s : s);
		if (!src->text)
			return -ENOMEM;
		if (src->kind == PSRC_IDENTITY_PREFIX)
			src->text[strlen(src->text) - 1] = '\0'; /* keep "…/sa/" */
		*n = i + 1;
		pwalk_pop(&v->w, o2);
	}
	pwalk_pop(&v->w, o);
	return 0;
}

/* ---- freeing */

static void pselector_clear(struct pselector *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_labels; i++) {
		free(s->labels[i].key);
		free(s->labels[i].value);
	}
	free(s->labels);
	for (size_t i = 0; i < s->n_exprs; i++) {
		free(s->exprs[i].key);
		for (size_t j = 0; j < s->exprs[i].n_values; j++)
			free(s->exprs[i].values[j]);
		free(s->exprs[i].values);
	}
	free(s->exprs);
	for (size_t i = 0; i < s->n_workloads; i++)
		free(s->workloads[i]);
	free(s->workloads);
}

static void psel_free(struct pselector *sel)
{
	pselector_clear(sel);
	free(sel);
}

static void psrcs_free(struct psrc *x, size_t n)
{
	for (size_t j = 0; x && j < n; j++) {
		free(x[j].text);
		psel_free(x[j].ns_sel);
		psel_free(x[j].pod_sel);
	}
	free(x);
}

static void pguard_clear(struct pguard *g)
{
	free(g->name);
	psel_free(g->ns_sel);
	psel_free(g->pod_sel);
	for (size_t i = 0; i < g->n_rules; i++) {
		pports_clear(&g->rules[i].ports);
		psrcs_free(g->rules[i].src, g->rules[i].n_src);
	}
	free(g->rules);
}

static void pnamespace_clear(struct pnamespace *n)
{
	free(n->name);
	for (size_t i = 0; i < n->n_labels; i++) {
		free(n->labels[i].key);
		free(n->labels[i].value);
	}
	free(n->labels);
}

static void pallow_clear(struct pallow *a)
{
	free(a->ns);
	free(a->name);
	pselector_clear(&a->sel);
	pports_clear(&a->ports);
	for (size_t i = 0; i < a->n_from; i++)
		psrcs_free(a->from[i], a->n_src[i]);
	free(a->from);
	free(a->n_src);
}

static void pegress_clear(struct pegress *e)
{
	free(e->ns);
	free(e->name);
	pselector_clear(&e->sel);
	for (size_t i = 0; i < e->n_to; i++) {
		for (size_t j = 0; j < e->to[i].n_cidrs; j++)
			free(e->to[i].cidrs[j].text);
		free(e->to[i].cidrs);
		pports_clear(&e->to[i].ports);
	}
	free(e->to);
}

static void pworkload_clear(struct pworkload *w)
{
	free(w->ns);
	free(w->name);
	free(w->sa);
	for (size_t i = 0; i < w->n_labels; i++) {
		free(w->labels[i].key);
		free(w->labels[i].value);
	}
	free(w->labels);
	for (size_t i = 0; i < w->n_addrs; i++)
		free(w->addrs[i].text);
	free(w->addrs);
	for (size_t i = 0; i < w->n_ports; i++)
		free(w->ports[i].name);
	free(w->ports);
}

struct pset *pset_new(const char *trust_domain)
{
	struct pset *s = calloc(1, sizeof(*s));
	if (s && (!(s->trust_domain = strdup(trust_domain)) ||
		  !(s->mesh_namespace = strdup("cinch-system")))) {
		pset_free(s);
		return NULL;
	}
	return s;
}

void pset_free(struct pset *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_allow; i++)
		pallow_clear(&s->allow[i]);
	for (size_t i = 0; i < s->n_mesh; i++) {
		free(s->mesh[i].ns);
		free(s->mesh[i].name);
	}
	for (size_t i = 0; i < s->n_egress; i++)
		pegress_clear(&s->egress[i]);
	for (size_t i = 0; i < s->n_workloads; i++)
		pworkload_clear(&s->workloads[i]);
	for (size_t i = 0; i < s->n_services; i++)
		ksvc_clear(&s->services[i]);
	for (size_t i = 0; i < s->n_slices; i++)
		kslice_clear(&s->slices[i]);
	free(s->services);
	free(s->slices);
	for (size_t i = 0; i < s->n_guards; i++)
		pguard_clear(&s->guards[i]);
	for (size_t i = 0; i < s->n_namespaces; i++)
		pnamespace_clear(&s->namespaces[i]);
	free(s->guards);
	free(s->namespaces);
	free(s->ns_by_name);
	free(s->allow);
	free(s->mesh);
	free(s->egress);
	free(s->workloads);
	free(s->trust_domain);
	free(s->mesh_namespace);
	free(s);
}

/* ---- the four kinds */

static int vallow(struct vctx *v, const struct pdoc *spec, struct pallow *a)
{
	static const char *const keys[] = {"selector", "ports", "from", "mode", NULL};
	const struct pdoc *d;
	size_t o = pwalk_push(&v->w, "spec", 0);

	if (vmap(v, spec, keys) < 0 || vselector(v, vget(v, spec, "selector"), &a->sel) < 0)
		return -EINVAL;
	if ((d = vget(v, spec, "ports"))) {
		size_t o2 = pwalk_push(&v->w, "ports", 0);
		if (vports(v, d, 1, &a->ports) < 0)
			return -EINVAL;
		pwalk_pop(&v->w, o2);
	}
	if ((d = vget(v, spec, "mode"))) {
		size_t o2 = pwalk_push(&v->w, "mode", 0);
		const char *m = vstr(v, d);
		if (!m)
			return -EINVAL;
		if (strcmp(m, "enforce") && strcmp(m, "audit"))
			return pwalk_fail(&v->w, d, "must be enforce or audit, not \"%.40s\"", m);
		a->audit = !strcmp(m, "audit");
		pwalk_pop(&v->w, o2);
	}
	d = vget(v, spec, "from");
	size_t o2 = pwalk_push(&v->w, "from", 0);
	if (!d)
		return pwalk_fail(&v->w, spec,
			    "required: who may connect (identities, namespaces or "
			    "unauthenticated)");
	if (vseq(v, d) < 0)
		return -EINVAL;
	a->from = calloc(d->n, sizeof(*a->from));
	a->n_src = calloc(d->n, sizeof(*a->n_src));
	if (!a->from || !a->n_src)
		return v->w.nomem = -ENOMEM;
	a->n_from = d->n;
	for (size_t i = 0; i < d->n; i++) {
		size_t o3 = pwalk_push(&v->w, NULL, (long)i);
		if (vsource(v, d->items[i], &a->from[i], &a->n_src[i]) < 0)
			return -EINVAL;
		pwalk_pop(&v->w, o3);
	}
	pwalk_pop(&v->w, o2);
	pwalk_pop(&v->w, o);
	return 0;
}

static int vmesh(struct vctx *v, const struct pdoc *spec, struct pmesh *m)
{
	static const char *const keys[] = {"mtls", "defaultAction", "allowPodExclusions", "egress",
					   NULL};
	const struct pdoc *d;
	size_t o = pwalk_push(&v->w, "spec", 0);

	if (vmap(v, spec, keys) < 0)
		return -EINVAL;
	if ((d = vget(v, spec, "mtls"))) {
		size_t o2 = pwalk_push(&v->w, "mtls", 0);
		const char *s = vstr(v, d);
		if (!s)
			return -EINVAL;
		if (strcmp(s, "STRICT") && strcmp(s, "PERMISSIVE"))
			return pwalk_fail(&v->w, d, "must be STRICT or PERMISSIVE, not \"%.40s\"", s);
		m->has_mtls = 1;
		m->mtls = strcmp(s, "STRICT") ? PMTLS_PERMISSIVE : PMTLS_STRICT;
		pwalk_pop(&v->w, o2);
	}
	if ((d = vget(v, spec, "defaultAction"))) {
		size_t o2 = pwalk_push(&v->w, "defaultAction", 0);
		const char *s = vstr(v, d);
		if (!s)
			return -EINVAL;
		if (strcmp(s, "deny") && strcmp(s, "audit"))
			return pwalk_fail(&v->w, d, "must be deny or audit, not \"%.40s\"", s);
		m->has_default = 1;
		m->default_audit = !strcmp(s, "audit");
		pwalk_pop(&v->w, o2);
	}
	if ((d = vget(v, spec, "egress"))) {
		size_t o2 = pwalk_push(&v->w, "egress", 0);
		const char *s = vstr(v, d);
		if (!s)
			return -EINVAL;
		if (strcmp(s, "deny") && strcmp(s, "audit") && strcmp(s, "allow"))
			return pwalk_fail(&v->w, d, "must be deny, audit or allow, not \"%.40s\"", s);
		m->has_egress = 1;
		m->egress = !strcmp(s, "deny")	  ? PEGRESS_DENY
			    : !strcmp(s, "audit") ? PEGRESS_AUDIT
						  : PEGRESS_ALLOW;
		pwalk_pop(&v->w, o2);
	}
	if ((d = pdoc_get(spec, "allowPodExclusions"))) {
		size_t o2 = pwalk_push(&v->w, "allowPodExclusions", 0);
		if (d->kind != PDOC_SCALAR || d->quoted ||
		    (strcmp(d->text, "true") && strcmp(d->text, "false")))
			return pwalk_fail(&v->w, d, "must be true or false");
		m->has_pod_exclusions = 1;
		m->allow_pod_exclusions = !strcmp(d->text, "true");
		pwalk_pop(&v->w, o2);
	}
	pwalk_pop(&v->w, o);
	return 0;
}

static int vegress(struct vctx *v, const struct pdoc *spec, struct pegress *e)
{
	static const char *const keys[] = {"selector", "to", NULL};
	static const char *const to_keys[] = {"cidrs", "ports", NULL};
	const struct pdoc *d;
	size_t o = pwalk_push(&v->w, "spec", 0);

	if (vmap(v, spec, keys) < 0 || vselector(v, vget(v, spec, "selector"), &e->sel) < 0)
		return -EINVAL;
	d = vget(v, spec, "to");
	size_t o2 = pwalk_push(&v->w, "to", 0);
	if (vseq(v, d) < 0)
		return -EINVAL;
	e->to = calloc(d->n, sizeof(*e->to));
	if (!e->to)
		return v->w.nomem = -ENOMEM;
	e->n_to = d->n;
	for (size_t i = 0; i < d->n; i++) {
		size_t o3 = pwalk_push(&v->w, NULL, (long)i);
		const struct pdoc *t = d->items[i], *p;
		if (vmap(v, t, to_keys) < 0)
			return -EINVAL;
		size_t o4 = pwalk_push(&v->w, "cidrs", 0);
		if (vcidrs(v, vget(v, t, "cidrs"), 0, &e->to[i].cidrs, &e->to[i].n_cidrs) < 0)
			return -EINVAL;
		pwalk_pop(&v->w, o4);
		if ((p = vget(v, t, "ports"))) {
			o4 = pwalk_push(&v->w, "ports", 0);
			if (vports(v, p, 0, &e->to[i].ports) < 0)
				return -EINVAL;
			pwalk_pop(&v->w, o4);
		}
		pwalk_pop(&v->w, o3);
	}
	pwalk_pop(&v->w, o2);
	pwalk_pop(&v->w, o);
	return 0;
}


static int vguard_rule(struct vctx *v, const struct pdoc *d, struct pguard_rule *r)
{
	static const char *const keys[] = {"action", "ports", "from", NULL};
	const struct pdoc *x;
	const char *act;

	if (vmap(v, d, keys) < 0)
		return -EINVAL;
	size_t o = pwalk_push(&v->w, "action", 0);
	if (!(act = vstr(v, vget(v, d, "action"))))
		return -EINVAL;
	if (strcmp(act, "allow") && strcmp(act, "deny") && strcmp(act, "pass"))
		return pwalk_fail(&v->w, vget(v, d, "action"), "must be allow, deny or pass, not \"%.40s\"",
			    act);
	r->action = !strcmp(act, "allow") ? PACT_ALLOW : !strcmp(act, "deny") ? PACT_DENY : PACT_PASS;
	pwalk_pop(&v->w, o);
	if ((x = vget(v, d, "ports"))) {
		o = pwalk_push(&v->w, "ports", 0);
		if (vports(v, x, 1, &r->ports) < 0)
			return -EINVAL;
		pwalk_pop(&v->w, o);
	}
	if (!(x = vget(v, d, "from"))) { /* every caller */
		if (!(r->src = calloc(1, sizeof(*r->src))))
			return v->w.nomem = -ENOMEM;
		r->src->kind = PSRC_ANY;
		r->n_src = 1;
		return 0;
	}
	o = pwalk_push(&v->w, "from", 0);
	if (vseq(v, x) < 0)
		return -EINVAL;
	for (size_t i = 0; i < x->n; i++) {
		size_t o2 = pwalk_push(&v->w, NULL, (long)i);
		struct psrc *got = NULL;
		size_t n = 0;
		int rc = vsource(v, x->items[i], &got, &n);
		struct psrc *all = rc < 0 ? NULL : realloc(r->src, (r->n_src + n) * sizeof(*all));
		if (!all) {
			if (rc == 0)
				v->w.nomem = v->w.failed = 1;
			psrcs_free(got, n);
			return rc < 0 ? rc : -ENOMEM;
		}
		memcpy(all + r->n_src, got, n * sizeof(*all));
		free(got);
		r->src = all;
		r->n_src += n;
		pwalk_pop(&v->w, o2);
	}
	pwalk_pop(&v->w, o);
	return 0;
}

static int vguard(struct vctx *v, const struct pdoc *spec, struct pguard *g)
{
	static const char *const keys[] = {"priority", "subject",	 "rules",
					   "mode",     "allowLoosening", NULL};
	static const char *const subj_keys[] = {"namespaceSelector", "podSelector", NULL};
	const struct pdoc *d, *ns, *pods;
	size_t o = pwalk_push(&v->w, "spec", 0), o2;

	if (vmap(v, spec, keys) < 0)
		return -EINVAL;
	o2 = pwalk_push(&v->w, "priority", 0);
	d = vget(v, spec, "priority");
	uint16_t prio;
	if (!vstr(v, d))
		return -EINVAL;
	if (!strcmp(d->text, "0"))
		prio = 0;
	else if (d->quoted || port_num(d->text, strlen(d->text), &prio) < 0 || prio > 1000)
		return pwalk_fail(&v->w, d, "must be a number from 0 to 1000 (lower first), not \"%.40s\"",
			    d->text);
	g->priority = prio;
	pwalk_pop(&v->w, o2);
	o2 = pwalk_push(&v->w, "subject", 0);
	d = vget(v, spec, "subject");
	if (vmap(v, d, subj_keys) < 0)
		return -EINVAL;
	ns = pdoc_get(d, "namespaceSelector");
	pods = pdoc_get(d, "podSelector");
	if (!ns && !pods)
		return pwalk_fail(&v->w, d,
			    "needs namespaceSelector or podSelector (every workload: "
			    "namespaceSelector: {})");
	if ((ns && !(g->ns_sel = vselector_new(v, ns, "namespaceSelector"))) ||
	    (pods && !(g->pod_sel = vselector_new(v, pods, "podSelector"))))
		return -EINVAL;
	pwalk_pop(&v->w, o2);
	if ((d = vget(v, spec, "mode"))) {
		o2 = pwalk_push(&v->w, "mode", 0);
		const char *m = vstr(v, d);
		if (!m)
			return -EINVAL;
		if (strcmp(m, "enforce") && strcmp(m, "audit"))
			return pwalk_fail(&v->w, d, "must be enforce or audit, not \"%.40s\"", m);
		g->audit = !strcmp(m, "audit");
		pwalk_pop(&v->w, o2);
	}
	if ((d = vget(v, spec, "allowLoosening"))) {
		o2 = pwalk_push(&v->w, "allowLoosening", 0);
		if (vseq(v, d) < 0)
			return -EINVAL;
		for (size_t i = 0; i < d->n; i++) {
			size_t o3 = pwalk_push(&v->w, NULL, (long)i);
			const char *f = vstr(v, d->items[i]);
			if (!f)
				return -EINVAL;
			if (!strcmp(f, "mtls"))
				g->loosen |= PGUARD_LOOSEN_MTLS;
			else if (!strcmp(f, "defaultAction"))
				g->loosen |= PGUARD_LOOSEN_DEFAULT;
			else if (!strcmp(f, "egress"))
				g->loosen |= PGUARD_LOOSEN_EGRESS;
			else
				return pwalk_fail(&v->w, d->items[i],
					    "must be mtls, defaultAction or egress, not \"%.40s\"", f);
			pwalk_pop(&v->w, o3);
		}
		pwalk_pop(&v->w, o2);
	}
	d = vget(v, spec, "rules");
	o2 = pwalk_push(&v->w, "rules", 0);
	if (!d && !g->loosen)
		return pwalk_fail(&v->w, spec, "required: rules (or allowLoosening)");
	if (d) {
		if (vseq(v, d) < 0)
			return -EINVAL;
		if (!(g->rules = calloc(d->n, sizeof(*g->rules))))
			return v->w.nomem = -ENOMEM;
		g->n_rules = d->n;
		for (size_t i = 0; i < d->n; i++) {
			size_t o3 = pwalk_push(&v->w, NULL, (long)i);
			if (vguard_rule(v, d->items[i], &g->rules[i]) < 0)
				return -EINVAL;
			pwalk_pop(&v->w, o3);
		}
	}
	pwalk_pop(&v->w, o2);
	pwalk_pop(&v->w, o);
	return 0;
}

/* A v1 Namespace: metadata only (spec.finalizers and status, which the API
 * server writes, are accepted and not read). */
static int vnamespace(struct vctx *v, const struct pdoc *spec)
{
	static const char *const keys[] = {"finalizers", NULL};
	size_t o = pwalk_push(&v->w, "spec", 0);

	if (spec && vmap(v, spec, keys) < 0)
		return -EINVAL;
	pwalk_pop(&v->w, o);
	return 0;
}

/* spec.ports: [{name, containerPort, protocol}], a pod's container ports
 * (protocol TCP, UDP or SCTP; TCP when absent). Unnamed ones are of no
 * use to a policy and are not kept. */
static int vwports(struct vctx *v, const struct pdoc *d, struct pworkload *w)
{
	static const char *const keys[] = {"name", "containerPort", "protocol", NULL};

	if (vseq(v, d) < 0)
		return -EINVAL;
	if (!(w->ports = calloc(d->n, sizeof(*w->ports))))
		return v->w.nomem = -ENOMEM;
	for (size_t i = 0; i < d->n; i++) {
		size_t o = pwalk_push(&v->w, NULL, (long)i), o2;
		const struct pdoc *x;
		const char *name = NULL, *proto = "TCP", *num;
		uint16_t port;
		if (vmap(v, d->items[i], keys) < 0)
			return -EINVAL;
		o2 = pwalk_push(&v->w, "containerPort", 0);
		if (!(num = vstr(v, vget(v, d->items[i], "containerPort"))))
			return -EINVAL;
		if (port_num(num, strlen(num), &port) < 0)
			return pwalk_fail(&v->w, vget(v, d->items[i], "containerPort"),
				    "not a port (1-65535): \"%.40s\"", num);
		pwalk_pop(&v->w, o2);
		if ((x = vget(v, d->items[i], "protocol"))) {
			o2 = pwalk_push(&v->w, "protocol", 0);
			if (!(proto = vstr(v, x)))
				return -EINVAL;
			if (strcmp(proto, "TCP") && strcmp(proto, "UDP") && strcmp(proto, "SCTP"))
				return pwalk_fail(&v->w, x, "not TCP, UDP or SCTP: \"%.40s\"", proto);
			pwalk_pop(&v->w, o2);
		}
		if ((x = vget(v, d->items[i], "name"))) {
			o2 = pwalk_push(&v->w, "name", 0);
			if (!(name = vstr(v, x)))
				return -EINVAL;
			if (!pwalk_port_name_ok(name))
				return pwalk_fail(
					&v->w, x,
					"not a port name (IANA_SVC_NAME: 1-15 of a-z, 0-9 and "
					"'-', a letter, no '-' first, last or twice): \"%.40s\"",
					name);
			pwalk_pop(&v->w, o2);
			struct pwport *p = &w->ports[w->n_ports];
			if (!(p->name = vdup(v, name)))
				return -ENOMEM;
			p->port = port;
			p->tcp = !strcmp(proto, "TCP");
			w->n_ports++;
		}
		pwalk_pop(&v->w, o);
	}
	return 0;
}

static int vworkload(struct vctx *v, const struct pdoc *spec, struct pworkload *w)
{
	static const char *const keys[] = {"serviceAccount", "addresses", "ports", NULL};
	size_t o = pwalk_push(&v->w, "spec", 0);

	if (vmap(v, spec, keys) < 0)
		return -EINVAL;
	size_t o2 = pwalk_push(&v->w, "serviceAccount", 0);
	if (!(w->sa = vdns(v, vget(v, spec, "serviceAccount"), 1)))
		return -EINVAL;
	pwalk_pop(&v->w, o2);
	o2 = pwalk_push(&v->w, "addresses", 0);
	if (vcidrs(v, vget(v, spec, "addresses"), 1, &w->addrs, &w->n_addrs) < 0)
		return -EINVAL;
	pwalk_pop(&v->w, o2);
	const struct pdoc *p = vget(v, spec, "ports");
	if (p) {
		o2 = pwalk_push(&v->w, "ports", 0);
		if (vwports(v, p, w) < 0)
			return -EINVAL;
		pwalk_pop(&v->w, o2);
	}
	pwalk_pop(&v->w, o);
	return 0;
}

int pset_grow(void **arr, size_t n, size_t size)
{
	/* room for n items is n rounded up to a power of two: the array
	 * doubles, so adding n items copies O(n) bytes, not O(n^2) */
	if (!n || !(n & (n - 1))) {
		void *p = realloc(*arr, (n ? 2 * n : 1) * size);
		if (!p)
			return -ENOMEM;
		*arr = p;
	}
	memset((char *)*arr + n * size, 0, size);
	return 0;
}

static void pwhere_set(struct pwhere *w, const char *file, const struct pdoc *at)
{
	struct policy_error named; /* the file named as errors name it */

	policy_error_set_file(&named, file);
	memcpy(w->file, named.file, sizeof(w->file));
	w->line = at->line;
	w->column = at->column;
}

/* The label the API server puts on every Namespace: its name. A document
 * that says otherwise is not a namespace the API server would hold. */
static int namespace_name_label(struct vctx *v, struct pnamespace *n)
{
	const char *have = plabel_get(n->labels, n->n_labels, PNS_NAME_LABEL);
	if (have && strcmp(have, n->name)) {
		snprintf(v->w.path, sizeof(v->w.path), "metadata.labels." PNS_NAME_LABEL);
		return pwalk_fail(&v->w, NULL, "must be the name of the namespace");
	}
	if (have)
		return 0;
	struct plabel *l = realloc(n->labels, (n->n_labels + 1) * sizeof(*l));
	if (!l)
		return v->w.nomem = -ENOMEM;
	n->labels = l;
	l[n->n_labels].key = vdup(v, PNS_NAME_LABEL);
	l[n->n_labels].value = vdup(v, n->name);
	n->n_labels++;
	return v->w.nomem ? -ENOMEM : 0;
}

int pset_add_doc(struct pset *s, const char *file, const struct pdoc *doc, struct policy_error *err)
{
	/* What the API server adds to an object (kubectl get -o yaml prints
	 * it) is accepted and ignored: status, and the server-set metadata. */
	static const char *const top_keys[] = {"apiVersion", "kind",   "metadata",
					       "spec",	     "status", NULL};
	static const char *const meta_keys[] = {"name",
						"namespace",
						"labels",
						"annotations",
						"uid",
						"resourceVersion",
						"generation",
						"creationTimestamp",
						"deletionTimestamp",
						"deletionGracePeriodSeconds",
						"managedFields",
						"ownerReferences",
						"finalizers",
						"selfLink",
						"generateName",
						NULL};
	struct vctx v = {.w = {.file = file, .err = err}, .set = s};
	const struct pdoc *meta, *d;
	const char *api, *kind;
	char *name = NULL, *ns = NULL;
	struct pwhere where = {.line = 0};
	struct plabel *labels = NULL;
	size_t n_labels = 0, o;
	int rc = -EINVAL;

	memset(err, 0, sizeof(*err));
	if (ksvc_kind_of(doc) != KSVC_NONE)
		return ksvc_add_doc(s, file, doc, err);
	if (vmap(&v, doc, top_keys) < 0)
		goto out;
	o = pwalk_push(&v.w, "apiVersion", 0);
	if (!(api = vstr(&v, vget(&v, doc, "apiVersion"))))
		goto out;
	/* v1 Namespaces, for their labels; every other kind is ours */
	const struct pdoc *kd = pdoc_get(doc, "kind");
	int is_ns = kd && kd->kind == PDOC_SCALAR && !strcmp(kd->text, "Namespace");
	if (strcmp(api, is_ns ? "v1" : PSET_API_VERSION) != 0) {
		pwalk_fail(&v.w, vget(&v, doc, "apiVersion"), "must be %s, not \"%.60s\"",
		     is_ns ? "v1 for a Namespace" : PSET_API_VERSION, api);
		goto out;
	}
	pwalk_pop(&v.w, o);
	o = pwalk_push(&v.w, "kind", 0);
	if (!(kind = vstr(&v, vget(&v, doc, "kind"))))
		goto out;
	if (strcmp(kind, "AllowPolicy") && strcmp(kind, "MeshPolicy") &&
	    strcmp(kind, "EgressPolicy") && strcmp(kind, "Workload") &&
	    strcmp(kind, "GuardrailPolicy") && !is_ns) {
		pwalk_fail(&v.w, vget(&v, doc, "kind"),
		     "must be AllowPolicy, MeshPolicy, EgressPolicy, GuardrailPolicy, "
		     "Workload or (apiVersion v1) Namespace, not \"%.60s\"",
		     kind);
		goto out;
	}
	pwalk_pop(&v.w, o);
	o = pwalk_push(&v.w, "metadata", 0);
	meta = vget(&v, doc, "metadata");
	if (vmap(&v, meta, meta_keys) < 0)
		goto out;
	size_t o2 = pwalk_push(&v.w, "name", 0);
	if (!(name = vdns(&v, vget(&v, meta, "name"), 1)))
		goto out;
	pwhere_set(&where, file, vget(&v, meta, "name"));
	pwalk_pop(&v.w, o2);
	o2 = pwalk_push(&v.w, "namespace", 0);
	int cluster_scoped = is_ns || !strcmp(kind, "GuardrailPolicy");
	if ((d = vget(&v, meta, "namespace")) && cluster_scoped) {
		pwalk_fail(&v.w, d, "a %s is cluster-scoped: no namespace", kind);
		goto out;
	} else if (d) {
		if (!(ns = vdns(&v, d, 0)))
			goto out;
	} else if (strcmp(kind, "MeshPolicy") != 0 && !cluster_scoped) {
		pwalk_fail(&v.w, meta, "required for %s", kind);
		goto out;
	}
	pwalk_pop(&v.w, o2);
	if ((d = vget(&v, meta, "labels"))) {
		o2 = pwalk_push(&v.w, "labels", 0);
		if (vlabels(&v, d, &labels, &n_labels) < 0)
			goto out;
		pwalk_pop(&v.w, o2);
	}
	pwalk_pop(&v.w, o);
	d = vget(&v, doc, "spec");
	if (!d && !is_ns) {
		o = pwalk_push(&v.w, "spec", 0);
		pwalk_fail(&v.w, doc, "required");
		goto out;
	}

	rc = -ENOMEM;
	if (is_ns) {
		struct pnamespace n = {.name = name, .labels = labels, .n_labels = n_labels,
				       .where = where};
		name = NULL;
		labels = NULL;
		n_labels = 0;
		if (vnamespace(&v, d) < 0 || namespace_name_label(&v, &n) < 0 ||
		    pset_grow((void **)&s->namespaces, s->n_namespaces, sizeof(n)) < 0) {
			pnamespace_clear(&n);
			goto fail;
		}
		s->namespaces[s->n_namespaces++] = n;
	} else if (!strcmp(kind, "GuardrailPolicy")) {
		struct pguard g = {.name = name, .where = where, .line = doc->line};
		name = NULL;
		if (vguard(&v, d, &g) < 0 || pset_grow((void **)&s->guards, s->n_guards, sizeof(g)) < 0) {
			pguard_clear(&g);
			goto fail;
		}
		s->guards[s->n_guards++] = g;
	} else if (!strcmp(kind, "AllowPolicy")) {
		struct pallow a = {.ns = ns, .name = name, .where = where, .line = doc->line};
		ns = name = NULL;
		if (vallow(&v, d, &a) < 0 || pset_grow((void **)&s->allow, s->n_allow, sizeof(a)) < 0) {
			pallow_clear(&a);
			goto fail;
		}
		s->allow[s->n_allow++] = a;
	} else if (!strcmp(kind, "MeshPolicy")) {
		struct pmesh m = {.ns = ns, .name = name, .where = where};
		ns = name = NULL;
		/* A MeshPolicy in the control plane's namespace is mesh-wide. */
		if (m.ns && !strcmp(m.ns, s->mesh_namespace)) {
			free(m.ns);
			m.ns = NULL;
		}
		if (vmesh(&v, d, &m) < 0 || pset_grow((void **)&s->mesh, s->n_mesh, sizeof(m)) < 0) {
			free(m.ns);
			free(m.name);
			goto fail;
		}
		s->mesh[s->n_mesh++] = m;
	} else if (!strcmp(kind, "EgressPolicy")) {
		struct pegress e = {.ns = ns, .name = name, .where = where};
		ns = name = NULL;
		if (vegress(&v, d, &e) < 0 ||
		    pset_grow((void **)&s->egress, s->n_egress, sizeof(e)) < 0) {
			pegress_clear(&e);
			goto fail;
		}
		s->egress[s->n_egress++] = e;
	} else {
		struct pworkload w = {.ns = ns,
				      .name = name,
				      .labels = labels,
				      .n_labels = n_labels,
				      .where = where};
		ns = name = NULL;
		labels = NULL;
		n_labels = 0;
		if (vworkload(&v, d, &w) < 0 ||
		    pset_grow((void **)&s->workloads, s->n_workloads, sizeof(w)) < 0) {
			pworkload_clear(&w);
			goto fail;
		}
		s->workloads[s->n_workloads++] = w;
	}
	rc = 0;
	goto out;
fail:
	rc = v.w.failed && !v.w.nomem ? -EINVAL : -ENOMEM;
	if (rc == -ENOMEM)
		pwalk_fail(&v.w, doc, "out of memory");
out:
	free(name);
	free(ns);
	for (size_t i = 0; i < n_labels; i++) {
		free(labels[i].key);
		free(labels[i].value);
	}
	free(labels);
	return rc;
}

static int has_ext(const char *name)
{
	const char *dot = strrchr(name, '.');
	return dot && (!strcmp(dot, ".yaml") || !strcmp(dot, ".yml") || !strcmp(dot, ".json"));
}

/* A .json file is JSON by jansson's strict reading first (no comments, no
 * YAML-only syntax, no duplicate keys), then read with positions like
 * YAML; it holds one document or an array of them. */
static int check_json(const char *path, struct policy_error *err)
{
	json_error_t je;
	json_t *v = json_load_file(path, JSON_REJECT_DUPLICATES, &je);

	if (v) {
		json_decref(v);
		return 0;
	}
	memset(err, 0, sizeof(*err));
	policy_error_set_file(err, path);
	err->line = je.line > 0 ? je.line : 0;
	err->column = je.column > 0 ? je.column : 0;
	snprintf(err->msg, sizeof(err->msg), "not valid JSON: %s", je.text);
	return -EINVAL;
}

/* The items of a `kind: List` (what `kubectl get -o yaml` prints for
 * several objects, apiVersion v1 or none), or NULL for any other document. */
static const struct pdoc *list_items(const struct pdoc *doc)
{
	const struct pdoc *kind = pdoc_get(doc, "kind"), *api = pdoc_get(doc, "apiVersion");
	const struct pdoc *items = pdoc_get(doc, "items");

	if (!kind || kind->kind != PDOC_SCALAR || strcmp(kind->text, "List") ||
	    (api && (api->kind != PDOC_SCALAR || strcmp(api->text, "v1"))) || !items ||
	    items->kind != PDOC_SEQ)
		return NULL;
	return items;
}

/* add_file's `each`: a document, or the items of a List, into the set. */
struct add_ctx {
	struct pset *s;
	const char *path;
	int json;
};

static int add_doc(void *ctx, struct pdoc *doc, struct policy_error *err)
{
	const struct add_ctx *a = ctx;
	const struct pdoc *items = list_items(doc);
	int rc = 0;

	if (!items && a->json && doc->kind == PDOC_SEQ)
		items = doc;
	if (items)
		for (size_t k = 0; rc == 0 && k < items->n; k++)
			rc = pset_add_doc(a->s, a->path, items->items[k], err);
	else
		rc = pset_add_doc(a->s, a->path, doc, err);
	pdoc_free(doc);
	return rc;
}

/* One document is read, checked and freed before the next is read: the
 * file's trees are never all in memory at once. */
static int add_file(struct pset *s, const char *path, struct policy_error *err)
{
	size_t plen = strlen(path);
	struct add_ctx a = {s, path, plen > 5 && !strcmp(path + plen - 5, ".json")};
	int rc = a.json ? check_json(path, err) : 0;

	return rc < 0 ? rc : pdoc_parse_file_each(path, add_doc, &a, err);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int pset_add_path(struct pset *s, const char *path, struct policy_error *err)
{
	struct stat st;
	DIR *dir;
	struct dirent *e;
	char **names = NULL;
	size_t n = 0;
	int rc = 0;

	memset(err, 0, sizeof(*err));
	if (stat(path, &st) < 0) {
		policy_error_set_file(err, path);
		snprintf(err->msg, sizeof(err->msg), "%s", strerror(errno));
		return -EINVAL;
	}
	if (!S_ISDIR(st.st_mode))
		return add_file(s, path, err);
	if (!(dir = opendir(path))) {
		policy_error_set_file(err, path);
		snprintf(err->msg, sizeof(err->msg), "%s", strerror(errno));
		return -EINVAL;
	}
	while (rc == 0 && (e = readdir(dir))) {
		char full[4096];
		if (e->d_name[0] == '.')
			continue; /* dotfiles, and Kubernetes ConfigMap "..data" links */
		if (!strcmp(e->d_name, "kustomization.yaml") ||
		    !strcmp(e->d_name, "kustomization.yml") || !strcmp(e->d_name, "Kustomization"))
			continue; /* kustomize's file, not a policy */
		size_t pl = strlen(path);
		snprintf(full, sizeof(full), "%.*s/%s",
			 (int)(pl > 1 && path[pl - 1] == '/' ? pl - 1 : pl), path, e->d_name);
		if (stat(full, &st) == 0 && S_ISDIR(st.st_mode)) {
			policy_error_set_file(err, full);
			snprintf(err->msg, sizeof(err->msg),
				 "a directory inside a policy directory: not read, so an error");
			rc = -EINVAL;
		} else if (!has_ext(e->d_name)) {
			policy_error_set_file(err, full);
			snprintf(err->msg, sizeof(err->msg),
				 "not a .yaml, .yml or .json file: not read, so an error");
			rc = -EINVAL;
		} else if (pset_grow((void **)&names, n, sizeof(char *)) < 0 ||
			   !(names[n] = strdup(full))) {
			rc = -ENOMEM;
		} else {
			n++;
		}
	}
	closedir(dir);
	if (n)
		qsort(names, n, sizeof(char *), name_cmp);
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = add_file(s, names[i], err);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

int pset_err(struct policy_error *err, const struct pwhere *at, const char *field, const char *fmt, ...)
{
	va_list ap;

	memset(err, 0, sizeof(*err));
	memcpy(err->file, at->file, sizeof(err->file));
	err->line = at->line;
	err->column = at->column;
	snprintf(err->path, sizeof(err->path), "%s", field);
	err->whole_set = 1;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int dup_err(struct policy_error *err, const char *what, const char *ns, const char *name,
		   const struct pwhere *later, const struct pwhere *first)
{
	return pset_err(err, later, "metadata.name", "a second %s named %s%s%s (the first: %s:%d)",
		       what, ns ? ns : "", ns ? "/" : "", name, first->file, first->line);
}

static int same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

/* Finding duplicates across documents. Comparing every document with every
 * earlier one is n^2/2 comparisons, 50 million for 10,000 workloads; so
 * the keys are sorted instead, by key then index, which puts each key's
 * first document at the head of its run. The smallest index found after
 * a head is where the pairwise loops below start: they report exactly
 * what they reported when they started at 0, at the cost of one document. */
struct dkey {
	const char *ns, *name;	 /* or: */
	const struct pcidr *addr; /* when set, the key is the address */
	size_t i;
};

static int nullcmp(const char *a, const char *b)
{
	return a && b ? strcmp(a, b) : (a != NULL) - (b != NULL);
}

static int dkey_key_cmp(const struct dkey *x, const struct dkey *y)
{
	if (x->addr)
		return x->addr->family != y->addr->family
			       ? (x->addr->family > y->addr->family) - (x->addr->family < y->addr->family)
			       : memcmp(x->addr->addr, y->addr->addr, 16);
	int c = nullcmp(x->ns, y->ns);
	return c ? c : nullcmp(x->name, y->name);
}

static int dkey_cmp(const void *a, const void *b)
{
	const struct dkey *x = a, *y = b;
	int c = dkey_key_cmp(x, y);
	return c ? c : (x->i > y->i) - (x->i < y->i);
}

/* The smallest index of a key equal to one of a smaller index, or `none`. */
static size_t dkey_first_dup(struct dkey *k, size_t n, size_t none)
{
	size_t first = none, head = 0;

	qsort(k, n, sizeof(*k), dkey_cmp);
	for (size_t x = 1; x < n; x++)
		if (dkey_key_cmp(&k[head], &k[x]))
			head = x;
		else if (k[x].i > k[head].i && k[x].i < first)
			first = k[x].i;
	return first;
}

/* The same for the namespaces and names of `n` documents at `arr`, each
 * `size` bytes with its char * fields at the offsets (NO_FIELD: not part
 * of the key). */
#define NO_FIELD ((size_t)-1)
static size_t first_dup_name(struct dkey *k, const void *arr, size_t n, size_t size,
			     size_t ns_off, size_t name_off)
{
	for (size_t i = 0; i < n; i++) {
		const char *doc = (const char *)arr + i * size;
		k[i] = (struct dkey){
			.ns = ns_off == NO_FIELD ? NULL : *(char *const *)(doc + ns_off),
			.name = name_off == NO_FIELD ? NULL : *(char *const *)(doc + name_off),
			.i = i};
	}
	return dkey_first_dup(k, n, n);
}

int pset_finish(struct pset *s, struct policy_error *err)
{
	size_t n_keys = s->n_allow, n_addrs = 0, i;
	struct dkey *k;
	int rc = 0;

	for (size_t w = 0; w < s->n_workloads; w++)
		n_addrs += s->workloads[w].n_addrs;
	const size_t sizes[] = {s->n_egress, s->n_guards, s->n_namespaces, s->n_mesh,
				s->n_workloads, n_addrs};
	for (size_t x = 0; x < sizeof(sizes) / sizeof(sizes[0]); x++)
		n_keys = sizes[x] > n_keys ? sizes[x] : n_keys;
	if (!(k = malloc((n_keys + 1) * sizeof(*k)))) {
		memset(err, 0, sizeof(*err));
		snprintf(err->msg, sizeof(err->msg), "out of memory");
		return -ENOMEM;
	}
	i = first_dup_name(k, s->allow, s->n_allow, sizeof(*s->allow), offsetof(struct pallow, ns),
			   offsetof(struct pallow, name));
	for (; i < s->n_allow; i++)
		for (size_t j = 0; j < i; j++)
			if (same(s->allow[i].ns, s->allow[j].ns) &&
			    same(s->allow[i].name, s->allow[j].name)) {
				rc = dup_err(err, "AllowPolicy", s->allow[i].ns, s->allow[i].name,
					     &s->allow[i].where, &s->allow[j].where);
				goto out;
			}
	i = first_dup_name(k, s->egress, s->n_egress, sizeof(*s->egress),
			   offsetof(struct pegress, ns), offsetof(struct pegress, name));
	for (; i < s->n_egress; i++)
		for (size_t j = 0; j < i; j++)
			if (same(s->egress[i].ns, s->egress[j].ns) &&
			    same(s->egress[i].name, s->egress[j].name)) {
				rc = dup_err(err, "EgressPolicy", s->egress[i].ns,
					     s->egress[i].name, &s->egress[i].where,
					     &s->egress[j].where);
				goto out;
			}
	i = first_dup_name(k, s->guards, s->n_guards, sizeof(*s->guards), NO_FIELD,
			   offsetof(struct pguard, name));
	for (; i < s->n_guards; i++)
		for (size_t j = 0; j < i; j++)
			if (!strcmp(s->guards[i].name, s->guards[j].name)) {
				rc = dup_err(err, "GuardrailPolicy", NULL, s->guards[i].name,
					     &s->guards[i].where, &s->guards[j].where);
				goto out;
			}
	i = first_dup_name(k, s->namespaces, s->n_namespaces, sizeof(*s->namespaces), NO_FIELD,
			   offsetof(struct pnamespace, name));
	for (; i < s->n_namespaces; i++)
		for (size_t j = 0; j < i; j++)
			if (!strcmp(s->namespaces[i].name, s->namespaces[j].name)) {
				rc = dup_err(err, "Namespace", NULL, s->namespaces[i].name,
					     &s->namespaces[i].where, &s->namespaces[j].where);
				goto out;
			}
	/* the keys are the namespaces' names, sorted, without a duplicate */
	free(s->ns_by_name);
	s->n_by_name = 0;
	if (!(s->ns_by_name = malloc((s->n_namespaces + 1) * sizeof(*s->ns_by_name)))) {
		memset(err, 0, sizeof(*err));
		snprintf(err->msg, sizeof(err->msg), "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	for (size_t x = 0; x < s->n_namespaces; x++)
		s->ns_by_name[x] = k[x].i;
	s->n_by_name = s->n_namespaces;
	i = first_dup_name(k, s->mesh, s->n_mesh, sizeof(*s->mesh), offsetof(struct pmesh, ns),
			   NO_FIELD);
	for (; i < s->n_mesh; i++)
		for (size_t j = 0; j < i; j++)
			if (same(s->mesh[i].ns, s->mesh[j].ns)) {
				rc = pset_err(err, &s->mesh[i].where, "metadata.name",
					      "two MeshPolicies for %s%s (%s here, %s at %s:%d): "
					      "which one applies would be a guess",
					      s->mesh[i].ns ? "namespace " : "the whole mesh",
					      s->mesh[i].ns ? s->mesh[i].ns : "", s->mesh[i].name,
					      s->mesh[j].name, s->mesh[j].where.file,
					      s->mesh[j].where.line);
				goto out;
			}
	/* a workload's name or one of its addresses: the first of the two */
	i = first_dup_name(k, s->workloads, s->n_workloads, sizeof(*s->workloads),
			   offsetof(struct pworkload, ns), offsetof(struct pworkload, name));
	n_keys = 0;
	for (size_t w = 0; w < s->n_workloads; w++)
		for (size_t a = 0; a < s->workloads[w].n_addrs; a++)
			k[n_keys++] = (struct dkey){.addr = &s->workloads[w].addrs[a], .i = w};
	size_t by_addr = dkey_first_dup(k, n_keys, s->n_workloads);
	for (i = by_addr < i ? by_addr : i; i < s->n_workloads; i++) {
		struct pworkload *w = &s->workloads[i];
		for (size_t j = 0; j < i; j++) {
			struct pworkload *x = &s->workloads[j];
			if (same(w->ns, x->ns) && same(w->name, x->name)) {
				rc = dup_err(err, "Workload", w->ns, w->name, &w->where, &x->where);
				goto out;
			}
			for (size_t a = 0; a < w->n_addrs; a++)
				for (size_t b = 0; b < x->n_addrs; b++)
					if (w->addrs[a].family == x->addrs[b].family &&
					    !memcmp(w->addrs[a].addr, x->addrs[b].addr, 16)) {
						struct pwhere at = w->where;
						char field[64];
						at.line = w->addrs[a].line;
						at.column = w->addrs[a].column;
						snprintf(field, sizeof(field),
							 "spec.addresses[%zu]", a);
						rc = pset_err(err, &at, field,
							      "workloads %s/%s and %s/%s share "
							      "the address %s (%s/%s: %s:%d)",
							      x->ns, x->name, w->ns, w->name,
							      w->addrs[a].text, x->ns, x->name,
							      x->where.file, x->where.line);
						goto out;
					}
		}
	}
	rc = ksvc_finish(s, err);
out:
	free(k);
	return rc;
}

void pset_mesh_settings(const struct pset *s, const char *ns, struct pmesh_settings *out)
{
	const struct pmesh *own = NULL;
	unsigned may = 0;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < s->n_mesh; i++) {
		const struct pmesh *m = &s->mesh[i];
		if (m->ns) {
			if (!strcmp(m->ns, ns))
				own = m;
			continue;
		}
		if (m->has_mtls)
			out->permissive = m->mtls == PMTLS_PERMISSIVE;
		if (m->has_default)
			out->default_audit = m->default_audit;
		if (m->has_egress)
			out->egress = m->egress;
	}
	if (!own)
		return;
	for (size_t i = 0; i < s->n_guards; i++)
		if (s->guards[i].loosen &&
		    (!s->guards[i].ns_sel || pset_namespace_matches(s, s->guards[i].ns_sel, ns)))
			may |= s->guards[i].loosen;
	/* Tightening always applies; loosening only where a guardrail allows. */
	if (own->has_mtls) {
		int p = own->mtls == PMTLS_PERMISSIVE;
		if (p > out->permissive && !(may & PGUARD_LOOSEN_MTLS))
			out->refused |= PGUARD_LOOSEN_MTLS;
		else
			out->permissive = p;
	}
	if (own->has_default) {
		if (own->default_audit > out->default_audit && !(may & PGUARD_LOOSEN_DEFAULT))
			out->refused |= PGUARD_LOOSEN_DEFAULT;
		else
			out->default_audit = own->default_audit;
	}
	if (own->has_egress) {
		if (own->egress > out->egress && !(may & PGUARD_LOOSEN_EGRESS))
			out->refused |= PGUARD_LOOSEN_EGRESS;
		else
			out->egress = own->egress;
	}
}
