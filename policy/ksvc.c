/* ksvc: see ksvc.h.
 *
 * Validation walks the document with a field path kept in a struct pwalk
 * (pwalk.h), as the policy model does, but with the API's rules: unknown
 * fields are ignored, a JSON null (or YAML ~) is the same as an absent field, and a scalar's
 * type comes from how it was written (an unquoted 8080 is a number, a
 * quoted "http" a string), the way the API server's decoder reads it. The
 * document is read into a local struct and appended to the set only when
 * everything was valid. */
#include "ksvc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pwalk.h"

static char *kdup(struct pwalk *k, const char *s)
{
	char *d = strdup(s);
	if (!d)
		k->nomem = k->failed = 1;
	return d;
}

static int is_null(const struct pdoc *d)
{
	return d && d->kind == PDOC_SCALAR && !d->quoted &&
	       (!strcmp(d->text, "null") || !strcmp(d->text, "~") || !d->text[0]);
}

/* The value of `key` in `map`, NULL when absent or null. */
static const struct pdoc *kget(const struct pdoc *map, const char *key)
{
	const struct pdoc *d = map && map->kind == PDOC_MAP ? pdoc_get(map, key) : NULL;
	return is_null(d) ? NULL : d;
}

static int kmap(struct pwalk *k, const struct pdoc *d)
{
	return d && d->kind == PDOC_MAP ? 0 : pwalk_fail(k, d, "must be a mapping");
}

/* A list, or NULL (absent or null: an empty list). -EINVAL: not a list. */
static int klist(struct pwalk *k, const struct pdoc *d, size_t max)
{
	if (!d)
		return 0;
	if (d->kind != PDOC_SEQ)
		return pwalk_fail(k, d, "must be a list");
	if (d->n > max)
		return pwalk_fail(k, d, "more than %zu entries", max);
	return 0;
}

/* One item of a list that klist_each walks: list->items[i], with the path at
 * the item; returns 0 or a negative errno (the walk stops there). */
typedef int (*kitem_cb)(struct pwalk *k, const struct pdoc *list, size_t i, void *ctx);

/* The list `d` of a field (klist: NULL is empty, at most max items) with the
 * path at `field`: *arr gets a zeroed array of one `size` element per item
 * (at least one element, untouched when d is NULL), and item() is called on
 * each in order with *n = i + 1 set first, so that the owner's clear frees
 * what a failing item had filled in. On failure the path stays at the
 * offending place for the error message, as everywhere in this walk. */
static int klist_each(struct pwalk *k, const struct pdoc *d, const char *field, size_t max,
		      void **arr, size_t size, size_t *n, kitem_cb item, void *ctx)
{
	size_t o = pwalk_push(k, field, 0);
	int rc;

	if (klist(k, d, max) < 0)
		return -EINVAL;
	if (d && !(*arr = calloc(d->n ? d->n : 1, size)))
		return k->nomem = -ENOMEM;
	for (size_t i = 0; d && i < d->n; i++) {
		size_t o2 = pwalk_push(k, NULL, (long)i);
		*n = i + 1;
		if ((rc = item(k, d, i, ctx)) < 0)
			return rc;
		pwalk_pop(k, o2);
	}
	pwalk_pop(k, o);
	return 0;
}

static const char *kstr(struct pwalk *k, const struct pdoc *d)
{
	if (!d || d->kind != PDOC_SCALAR) {
		pwalk_fail(k, d, d ? "must be a string" : "required: a string");
		return NULL;
	}
	return d->text;
}

/* A number written as one (not quoted) in [lo, hi]. */
static int kint(struct pwalk *k, const struct pdoc *d, long lo, long hi, long *out)
{
	char *end;
	long v;

	if (!d || d->kind != PDOC_SCALAR || d->quoted || !d->text[0])
		return pwalk_fail(k, d, d ? "must be a number" : "required: a number");
	v = strtol(d->text, &end, 10);
	if (*end || v < lo || v > hi)
		return pwalk_fail(k, d, "must be a number from %ld to %ld, not \"%.40s\"", lo, hi,
			    d->text);
	*out = v;
	return 0;
}

/* A boolean condition: -1 when nil. */
static int kbool(struct pwalk *k, const struct pdoc *d, int *out)
{
	if (!d) {
		*out = -1;
		return 0;
	}
	if (d->kind != PDOC_SCALAR || d->quoted ||
	    (strcmp(d->text, "true") && strcmp(d->text, "false")))
		return pwalk_fail(k, d, "must be true or false");
	*out = !strcmp(d->text, "true");
	return 0;
}

static char *kprotocol(struct pwalk *k, const struct pdoc *d)
{
	const char *p = d ? kstr(k, d) : "TCP";
	if (!p)
		return NULL;
	if (strcmp(p, "TCP") && strcmp(p, "UDP") && strcmp(p, "SCTP")) {
		pwalk_fail(k, d, "must be TCP, UDP or SCTP, not \"%.40s\"", p);
		return NULL;
	}
	return kdup(k, p);
}

/* metadata.name and metadata.namespace; `labels` gets metadata.labels. */
static int kmeta(struct pwalk *k, const struct pdoc *doc, char **ns, char **name,
		 struct pwhere *where, const struct pdoc **labels)
{
	const struct pdoc *meta = kget(doc, "metadata"), *d;
	size_t o = pwalk_push(k, "metadata", 0);
	const char *s;

	if (kmap(k, meta) < 0)
		return -EINVAL;
	size_t o2 = pwalk_push(k, "name", 0);
	if (!(s = kstr(k, d = kget(meta, "name"))))
		return -EINVAL;
	if (!pwalk_dns_ok(s, 1))
		return pwalk_fail(k, d, "not a valid DNS-1123 name: \"%.100s\"", s);
	if (!(*name = kdup(k, s)))
		return -ENOMEM;
	policy_error_set_file(k->err, k->file);
	memcpy(where->file, k->err->file, sizeof(where->file));
	where->line = d->line;
	where->column = d->column;
	pwalk_pop(k, o2);
	o2 = pwalk_push(k, "namespace", 0);
	if (!(s = kstr(k, d = kget(meta, "namespace"))))
		return -EINVAL;
	if (!pwalk_dns_ok(s, 0))
		return pwalk_fail(k, d, "not a valid DNS-1123 label: \"%.100s\"", s);
	if (!(*ns = kdup(k, s)))
		return -ENOMEM;
	pwalk_pop(k, o2);
	*labels = kget(meta, "labels");
	if (*labels && (*labels)->kind != PDOC_MAP) {
		pwalk_push(k, "labels", 0);
		return pwalk_fail(k, *labels, "must be a mapping of label to value");
	}
	pwalk_pop(k, o);
	return 0;
}

/* An IP address (no prefix) into *out, its text the canonical form. */
static int kaddr(struct pwalk *k, const struct pdoc *d, struct pcidr *out)
{
	char canon[INET6_ADDRSTRLEN];
	const char *s = kstr(k, d);

	if (!s)
		return -EINVAL;
	if (pcidr_parse(s, 1, out) < 0)
		return pwalk_fail(k, d, "not an IP address: \"%.60s\"", s);
	inet_ntop(out->family, out->addr, canon, sizeof(canon));
	if (!(out->text = kdup(k, canon)))
		return -ENOMEM;
	return 0;
}

/* ---- Service */

static int family_of(const char *s)
{
	return !strcmp(s, "IPv4") ? AF_INET : !strcmp(s, "IPv6") ? AF_INET6 : 0;
}

/* spec.clusterIP, spec.clusterIPs and spec.ipFamilies into v. */
static int kvips(struct pwalk *k, const struct pdoc *spec, struct ksvc *v)
{
	const struct pdoc *one = kget(spec, "clusterIP"), *list = kget(spec, "clusterIPs");
	const struct pdoc *fams = kget(spec, "ipFamilies"), *type = kget(spec, "type");
	const char *first = NULL, *t;
	size_t o;

	o = pwalk_push(k, "type", 0);
	if (type && !(t = kstr(k, type)))
		return -EINVAL;
	if (type && strcmp(t, "ClusterIP") && strcmp(t, "NodePort") && strcmp(t, "LoadBalancer") &&
	    strcmp(t, "ExternalName"))
		return pwalk_fail(k, type, "must be ClusterIP, NodePort, LoadBalancer or ExternalName");
	pwalk_pop(k, o);
	if (type && !strcmp(t, "ExternalName"))
		return 0; /* a DNS alias: no virtual IP, nothing to carry */
	o = pwalk_push(k, "clusterIP", 0);
	if (one && !(first = kstr(k, one)))
		return -EINVAL;
	pwalk_pop(k, o);
	o = pwalk_push(k, "clusterIPs", 0);
	if (klist(k, list, 2) < 0)
		return -EINVAL;
	pwalk_pop(k, o);
	o = pwalk_push(k, "ipFamilies", 0);
	if (klist(k, fams, 2) < 0)
		return -EINVAL;
	for (size_t i = 0; fams && i < fams->n; i++) {
		size_t o2 = pwalk_push(k, NULL, (long)i);
		const char *f = kstr(k, fams->items[i]);
		if (!f)
			return -EINVAL;
		if (!family_of(f))
			return pwalk_fail(k, fams->items[i], "must be IPv4 or IPv6, not \"%.40s\"", f);
		pwalk_pop(k, o2);
	}
	pwalk_pop(k, o);
	if (list && list->n && first && first[0]) {
		const char *l0 = list->items[0]->kind == PDOC_SCALAR ? list->items[0]->text : "";
		if (strcmp(l0, first)) {
			pwalk_push(k, "clusterIPs[0]", 0);
			return pwalk_fail(k, list->items[0], "must be spec.clusterIP (\"%.60s\")", first);
		}
	}
	if ((first && !strcmp(first, "None")) ||
	    (list && list->n && list->items[0]->kind == PDOC_SCALAR &&
	     !strcmp(list->items[0]->text, "None"))) {
		if (list && list->n > 1) {
			pwalk_push(k, "clusterIPs", 0);
			return pwalk_fail(k, list, "a headless Service (None) has no other clusterIP");
		}
		v->headless = 1;
		return 0;
	}
	size_t n = list && list->n ? list->n : first && first[0] ? 1 : 0;
	if (!n)
		return 0; /* none allocated */
	if (!(v->vips = calloc(n, sizeof(*v->vips))))
		return k->nomem = -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const struct pdoc *d = list && list->n ? list->items[i] : one;
		o = list && list->n ? pwalk_push(k, "clusterIPs", 0) : pwalk_push(k, "clusterIP", 0);
		size_t o2 = list && list->n ? pwalk_push(k, NULL, (long)i) : strlen(k->path);
		v->n_vips = i + 1;
		if (kaddr(k, d, &v->vips[i]) < 0)
			return -EINVAL;
		if (i > 0 && v->vips[i].family == v->vips[0].family)
			return pwalk_fail(k, d, "two addresses of one family");
		if (fams && i < fams->n && family_of(fams->items[i]->text) != v->vips[i].family)
			return pwalk_fail(k, d, "not of family spec.ipFamilies[%zu] (%s)", i,
				    fams->items[i]->text);
		pwalk_pop(k, o2);
		pwalk_pop(k, o);
	}
	return 0;
}

static int kservice_port(struct pwalk *k, const struct pdoc *d, struct ksvc_port *p)
{
	const struct pdoc *x;
	const char *s;
	long n;
	size_t o;

	if (kmap(k, d) < 0)
		return -EINVAL;
	o = pwalk_push(k, "name", 0);
	if ((x = kget(d, "name"))) {
		if (!(s = kstr(k, x)))
			return -EINVAL;
		if (s[0] && !pwalk_dns_ok(s, 0))
			return pwalk_fail(k, x, "not a valid DNS-1123 label: \"%.60s\"", s);
	}
	if (!(p->name = kdup(k, x ? x->text : "")))
		return -ENOMEM;
	pwalk_pop(k, o);
	o = pwalk_push(k, "protocol", 0);
	if (!(p->protocol = kprotocol(k, kget(d, "protocol"))))
		return -EINVAL;
	pwalk_pop(k, o);
	o = pwalk_push(k, "port", 0);
	if (kint(k, kget(d, "port"), 1, 65535, &n) < 0)
		return -EINVAL;
	p->port = (uint16_t)n;
	pwalk_pop(k, o);
	o = pwalk_push(k, "targetPort", 0);
	if (!(x = kget(d, "targetPort"))) {
		p->target = p->port;
	} else if (x->kind == PDOC_SCALAR &&
		   (x->quoted || strspn(x->text, "0123456789") != strlen(x->text))) {
		/* IntOrString as a string (quoted, or YAML's plain `http`): a
		 * container port's name */
		if (!pwalk_port_name_ok(x->text))
			return pwalk_fail(k, x,
				    "not a port number or a port name (IANA_SVC_NAME): "
				    "\"%.40s\"",
				    x->text);
		if (!(p->target_name = kdup(k, x->text)))
			return -ENOMEM;
	} else {
		if (kint(k, x, 1, 65535, &n) < 0)
			return -EINVAL;
		p->target = (uint16_t)n;
	}
	pwalk_pop(k, o);
	return 0;
}

/* spec.ports[i] of a Service: names are required once there are several
 * ports, and neither a name nor a protocol+port comes twice. */
static int kservice_port_at(struct pwalk *k, const struct pdoc *ports, size_t i, void *ctx)
{
	struct ksvc *v = ctx;
	struct ksvc_port *p = &v->ports[i];

	if (kservice_port(k, ports->items[i], p) < 0)
		return -EINVAL;
	if (ports->n > 1 && !p->name[0]) {
		pwalk_push(k, "name", 0);
		return pwalk_fail(k, ports->items[i], "required when a Service has several ports");
	}
	for (size_t j = 0; j < i; j++) {
		if (ports->n > 1 && !strcmp(v->ports[j].name, p->name))
			return pwalk_fail(k, ports->items[i], "a second port named \"%s\"", p->name);
		if (v->ports[j].port == p->port && !strcmp(v->ports[j].protocol, p->protocol))
			return pwalk_fail(k, ports->items[i], "a second %s port %u", p->protocol,
				    p->port);
	}
	return 0;
}

static int kservice(struct pwalk *k, const struct pdoc *doc, struct ksvc *v)
{
	const struct pdoc *spec = kget(doc, "spec"), *labels;
	size_t o;

	if (kmeta(k, doc, &v->ns, &v->name, &v->where, &labels) < 0)
		return -EINVAL;
	o = pwalk_push(k, "spec", 0);
	if (kmap(k, spec) < 0 || kvips(k, spec, v) < 0)
		return -EINVAL;
	if (klist_each(k, kget(spec, "ports"), "ports", KSVC_MAX_PORTS, (void **)&v->ports,
		       sizeof(*v->ports), &v->n_ports, kservice_port_at, v) < 0)
		return -EINVAL;
	pwalk_pop(k, o);
	return 0;
}

/* ---- EndpointSlice */

static int kendpoint(struct pwalk *k, const struct pdoc *d, int family, struct kslice_ep *e)
{
	const struct pdoc *addrs = kget(d, "addresses"), *cond;
	size_t o;

	if (kmap(k, d) < 0)
		return -EINVAL;
	o = pwalk_push(k, "addresses", 0);
	if (!addrs)
		return pwalk_fail(k, d, "required: a list of addresses");
	if (klist(k, addrs, KSVC_MAX_ADDRESSES) < 0)
		return -EINVAL;
	if (addrs->n == 0)
		return pwalk_fail(k, addrs, "must not be empty");
	if (family && !(e->addrs = calloc(addrs->n, sizeof(*e->addrs))))
		return k->nomem = -ENOMEM;
	for (size_t i = 0; i < addrs->n; i++) {
		size_t o2 = pwalk_push(k, NULL, (long)i);
		if (!kstr(k, addrs->items[i]))
			return -EINVAL;
		if (family) {
			e->n_addrs = i + 1;
			if (kaddr(k, addrs->items[i], &e->addrs[i]) < 0)
				return -EINVAL;
			if (e->addrs[i].family != family)
				return pwalk_fail(k, addrs->items[i], "not of the addressType %s",
					    family == AF_INET ? "IPv4" : "IPv6");
		}
		pwalk_pop(k, o2);
	}
	pwalk_pop(k, o);
	o = pwalk_push(k, "conditions", 0);
	cond = kget(d, "conditions");
	if (cond && kmap(k, cond) < 0)
		return -EINVAL;
	size_t o2 = pwalk_push(k, "ready", 0);
	if (kbool(k, kget(cond, "ready"), &e->ready) < 0)
		return -EINVAL;
	pwalk_pop(k, o2);
	o2 = pwalk_push(k, "serving", 0);
	if (kbool(k, kget(cond, "serving"), &e->serving) < 0)
		return -EINVAL;
	pwalk_pop(k, o2);
	o2 = pwalk_push(k, "terminating", 0);
	if (kbool(k, kget(cond, "terminating"), &e->terminating) < 0)
		return -EINVAL;
	pwalk_pop(k, o2);
	pwalk_pop(k, o);
	/* the API's nil meanings (ksvc.h) */
	if (e->ready < 0)
		e->ready = 1;
	if (e->serving < 0)
		e->serving = e->ready;
	if (e->terminating < 0)
		e->terminating = 0;
	return 0;
}

static int kslice_port(struct pwalk *k, const struct pdoc *d, struct kslice_port *p)
{
	const struct pdoc *x;
	long n;
	size_t o;

	if (kmap(k, d) < 0)
		return -EINVAL;
	o = pwalk_push(k, "name", 0);
	x = kget(d, "name");
	if (x && !kstr(k, x))
		return -EINVAL;
	if (x && x->text[0] && !pwalk_dns_ok(x->text, 0))
		return pwalk_fail(k, x, "not a valid DNS-1123 label: \"%.60s\"", x->text);
	if (!(p->name = kdup(k, x ? x->text : "")))
		return -ENOMEM;
	pwalk_pop(k, o);
	o = pwalk_push(k, "protocol", 0);
	if (!(p->protocol = kprotocol(k, kget(d, "protocol"))))
		return -EINVAL;
	pwalk_pop(k, o);
	o = pwalk_push(k, "port", 0);
	if ((x = kget(d, "port"))) {
		if (kint(k, x, 1, 65535, &n) < 0)
			return -EINVAL;
		p->port = (uint16_t)n;
	}
	pwalk_pop(k, o);
	return 0;
}

/* An EndpointSlice and its addressType, for the walk of its endpoints. */
struct kslice_walk {
	struct kslice *v;
	int family;
};

static int kslice_ep_at(struct pwalk *k, const struct pdoc *eps, size_t i, void *ctx)
{
	struct kslice_walk *w = ctx;

	return kendpoint(k, eps->items[i], w->family, &w->v->eps[i]) < 0 ? -EINVAL : 0;
}

/* ports[i] of an EndpointSlice: no name comes twice for one protocol. */
static int kslice_port_at(struct pwalk *k, const struct pdoc *ports, size_t i, void *ctx)
{
	struct kslice *v = ctx;

	if (kslice_port(k, ports->items[i], &v->ports[i]) < 0)
		return -EINVAL;
	for (size_t j = 0; j < i; j++)
		if (!strcmp(v->ports[j].name, v->ports[i].name) &&
		    !strcmp(v->ports[j].protocol, v->ports[i].protocol))
			return pwalk_fail(k, ports->items[i], "a second %s port named \"%s\"",
				    v->ports[i].protocol, v->ports[i].name);
	return 0;
}

static int kslice(struct pwalk *k, const struct pdoc *doc, struct kslice *v)
{
	const struct pdoc *labels, *t, *svc;
	const char *s;
	int family;
	size_t o;

	if (kmeta(k, doc, &v->ns, &v->name, &v->where, &labels) < 0)
		return -EINVAL;
	if ((svc = kget(labels, KSVC_SERVICE_NAME_LABEL))) {
		o = pwalk_push(k, "metadata.labels." KSVC_SERVICE_NAME_LABEL, 0);
		if (!(s = kstr(k, svc)))
			return -EINVAL;
		if (!pwalk_dns_ok(s, 1))
			return pwalk_fail(k, svc, "not a valid Service name: \"%.100s\"", s);
		if (!(v->service = kdup(k, s)))
			return -ENOMEM;
		pwalk_pop(k, o);
	}
	o = pwalk_push(k, "addressType", 0);
	if (!(s = kstr(k, t = kget(doc, "addressType"))))
		return -EINVAL;
	family = family_of(s);
	v->fqdn = !strcmp(s, "FQDN");
	if (!family && !v->fqdn)
		return pwalk_fail(k, t, "must be IPv4, IPv6 or FQDN, not \"%.40s\"", s);
	pwalk_pop(k, o);
	if (klist_each(k, kget(doc, "endpoints"), "endpoints", KSVC_MAX_ENDPOINTS,
		       (void **)&v->eps, sizeof(*v->eps), &v->n_eps, kslice_ep_at,
		       &(struct kslice_walk){.v = v, .family = family}) < 0 ||
	    klist_each(k, kget(doc, "ports"), "ports", KSVC_MAX_PORTS, (void **)&v->ports,
		       sizeof(*v->ports), &v->n_ports, kslice_port_at, v) < 0)
		return -EINVAL;
	return 0;
}

/* ---- the API */

enum ksvc_kind ksvc_kind_of(const struct pdoc *doc)
{
	const struct pdoc *api = kget(doc, "apiVersion"), *kind = kget(doc, "kind");

	if (!api || !kind || api->kind != PDOC_SCALAR || kind->kind != PDOC_SCALAR)
		return KSVC_NONE;
	if (!strcmp(api->text, "v1") && !strcmp(kind->text, "Service"))
		return KSVC_SERVICE;
	if (!strcmp(api->text, "discovery.k8s.io/v1") && !strcmp(kind->text, "EndpointSlice"))
		return KSVC_SLICE;
	return KSVC_NONE;
}

void ksvc_clear(struct ksvc *v)
{
	for (size_t i = 0; i < v->n_vips; i++)
		free(v->vips[i].text);
	for (size_t i = 0; i < v->n_ports; i++) {
		free(v->ports[i].name);
		free(v->ports[i].protocol);
		free(v->ports[i].target_name);
	}
	free(v->vips);
	free(v->ports);
	free(v->ns);
	free(v->name);
	memset(v, 0, sizeof(*v));
}

void kslice_clear(struct kslice *v)
{
	for (size_t i = 0; i < v->n_eps; i++) {
		for (size_t j = 0; j < v->eps[i].n_addrs; j++)
			free(v->eps[i].addrs[j].text);
		free(v->eps[i].addrs);
	}
	for (size_t i = 0; i < v->n_ports; i++) {
		free(v->ports[i].name);
		free(v->ports[i].protocol);
	}
	free(v->eps);
	free(v->ports);
	free(v->ns);
	free(v->name);
	free(v->service);
	memset(v, 0, sizeof(*v));
}

/* Validates doc into *svc or *sl (by its kind); cleared on failure. */
static int ksvc_parse(const char *file, const struct pdoc *doc, struct ksvc *svc, struct kslice *sl,
		      struct policy_error *err)
{
	struct pwalk k = {.file = file, .err = err};
	enum ksvc_kind kind = ksvc_kind_of(doc);
	int rc;

	memset(err, 0, sizeof(*err));
	if (kind == KSVC_NONE) {
		pwalk_fail(&k, doc, "not a v1 Service nor a discovery.k8s.io/v1 EndpointSlice");
		return -EINVAL;
	}
	rc = kind == KSVC_SERVICE ? kservice(&k, doc, svc) : kslice(&k, doc, sl);
	if (rc == 0)
		return 0;
	if (kind == KSVC_SERVICE)
		ksvc_clear(svc);
	else
		kslice_clear(sl);
	if (k.nomem) {
		snprintf(err->msg, sizeof(err->msg), "out of memory");
		return -ENOMEM;
	}
	return -EINVAL;
}

int ksvc_add_doc(struct pset *s, const char *file, const struct pdoc *doc, struct policy_error *err)
{
	struct ksvc svc = {0};
	struct kslice sl = {0};
	int rc = ksvc_parse(file, doc, &svc, &sl, err);

	if (rc < 0)
		return rc;
	if (svc.name) {
		if (pset_grow((void **)&s->services, s->n_services, sizeof(svc)) < 0) {
			ksvc_clear(&svc);
			return -ENOMEM;
		}
		s->services[s->n_services++] = svc;
	} else {
		if (pset_grow((void **)&s->slices, s->n_slices, sizeof(sl)) < 0) {
			kslice_clear(&sl);
			return -ENOMEM;
		}
		s->slices[s->n_slices++] = sl;
	}
	return 0;
}

int ksvc_check_json(const json_t *doc, struct policy_error *err)
{
	struct pdoc *d = pdoc_from_json(doc);
	struct ksvc svc = {0};
	struct kslice sl = {0};
	int rc;

	if (!d) {
		memset(err, 0, sizeof(*err));
		snprintf(err->msg, sizeof(err->msg), "out of memory, or a value JSON cannot hold");
		return -ENOMEM;
	}
	rc = ksvc_parse("", d, &svc, &sl, err);
	ksvc_clear(&svc);
	kslice_clear(&sl);
	pdoc_free(d);
	return rc;
}

uint16_t ksvc_target_port(const struct ksvc_port *sp, const struct kslice *sl)
{
	for (size_t i = 0; i < sl->n_ports; i++) {
		const struct kslice_port *p = &sl->ports[i];
		if (!strcmp(p->name, sp->name) && !strcmp(p->protocol, sp->protocol))
			return p->port ? p->port : sp->target;
	}
	return 0;
}

const struct ksvc *ksvc_find(const struct pset *s, const char *ns, const char *name)
{
	for (size_t i = 0; i < s->n_services; i++)
		if (!strcmp(s->services[i].ns, ns) && !strcmp(s->services[i].name, name))
			return &s->services[i];
	return NULL;
}

/* The checks sort (name, or address) so that 10,000 Services cost
 * n log n, not n^2. A row: an address or a name, and who has it. */
struct krow {
	const struct pcidr *addr; /* NULL: a name row */
	const char *ns, *name;
	long svc; /* index in services, or -1 - workload index */
	size_t order;
};

static int krow_cmp(const void *x, const void *y)
{
	const struct krow *a = x, *b = y;
	int c;
	if (a->addr) {
		c = a->addr->family - b->addr->family;
		c = c ? c : memcmp(a->addr->addr, b->addr->addr, 16);
	} else {
		c = strcmp(a->ns, b->ns);
		c = c ? c : strcmp(a->name, b->name);
	}
	return c ? c : (a->order > b->order) - (a->order < b->order);
}

static int ksvc_dup_err(const struct pset *s, struct policy_error *err, const struct krow *first,
			const struct krow *later)
{
	const struct ksvc *v = &s->services[later->svc];
	if (!later->addr)
		return pset_err(err, &v->where, "metadata.name",
				"a second Service named %s/%s (the first: %s:%d)", v->ns, v->name,
				s->services[first->svc].where.file,
				s->services[first->svc].where.line);
	if (first->svc < 0) {
		const struct pworkload *w = &s->workloads[-1 - first->svc];
		return pset_err(
			err, &v->where, "spec.clusterIPs",
			"the virtual IP %s of Service %s/%s is the address of workload %s/%s",
			later->addr->text, v->ns, v->name, w->ns, w->name);
	}
	const struct ksvc *x = &s->services[first->svc];
	return pset_err(err, &v->where, "spec.clusterIPs",
			"Services %s/%s and %s/%s share the virtual IP %s", x->ns, x->name, v->ns,
			v->name, later->addr->text);
}

int ksvc_finish(const struct pset *s, struct policy_error *err)
{
	size_t n = s->n_services, n_rows = 0, n_addr = 0;
	struct krow *rows;
	int rc = 0;

	for (size_t i = 0; i < s->n_services; i++)
		n += s->services[i].n_vips;
	for (size_t i = 0; i < s->n_workloads; i++)
		n += s->workloads[i].n_addrs;
	n += s->n_slices;
	if (!(rows = calloc(n + 1, sizeof(*rows)))) {
		memset(err, 0, sizeof(*err));
		snprintf(err->msg, sizeof(err->msg), "out of memory");
		return -ENOMEM;
	}
	/* names: the later document is the one named in the error */
	for (size_t i = 0; i < s->n_services; i++)
		rows[n_rows++] =
			(struct krow){NULL, s->services[i].ns, s->services[i].name, (long)i, i};
	qsort(rows, n_rows, sizeof(*rows), krow_cmp);
	for (size_t i = 1; i < n_rows && !rc; i++)
		if (!strcmp(rows[i].ns, rows[i - 1].ns) && !strcmp(rows[i].name, rows[i - 1].name))
			rc = ksvc_dup_err(s, err, &rows[i - 1], &rows[i]);
	/* addresses: workloads' first, so a virtual IP on a pod names both */
	for (size_t w = 0; w < s->n_workloads && !rc; w++)
		for (size_t a = 0; a < s->workloads[w].n_addrs; a++, n_addr++)
			rows[n_addr] = (struct krow){&s->workloads[w].addrs[a], NULL, NULL,
						     -1 - (long)w, n_addr};
	for (size_t i = 0; i < s->n_services && !rc; i++)
		for (size_t a = 0; a < s->services[i].n_vips; a++, n_addr++)
			rows[n_addr] =
				(struct krow){&s->services[i].vips[a], NULL, NULL, (long)i, n_addr};
	if (!rc)
		qsort(rows, n_addr, sizeof(*rows), krow_cmp);
	for (size_t i = 1; i < n_addr && !rc; i++)
		if (rows[i].svc >= 0 && rows[i].addr->family == rows[i - 1].addr->family &&
		    !memcmp(rows[i].addr->addr, rows[i - 1].addr->addr, 16))
			rc = ksvc_dup_err(s, err, &rows[i - 1], &rows[i]);
	/* EndpointSlice names */
	n_rows = 0;
	for (size_t i = 0; i < s->n_slices && !rc; i++)
		rows[n_rows++] =
			(struct krow){NULL, s->slices[i].ns, s->slices[i].name, (long)i, i};
	if (!rc)
		qsort(rows, n_rows, sizeof(*rows), krow_cmp);
	for (size_t i = 1; i < n_rows && !rc; i++)
		if (!strcmp(rows[i].ns, rows[i - 1].ns) &&
		    !strcmp(rows[i].name, rows[i - 1].name)) {
			const struct kslice *a = &s->slices[rows[i - 1].svc],
					    *b = &s->slices[rows[i].svc];
			rc = pset_err(err, &b->where, "metadata.name",
				      "a second EndpointSlice named %s/%s (the first: %s:%d)",
				      b->ns, b->name, a->where.file, a->where.line);
		}
	free(rows);
	return rc;
}
