/* slice: the evaluator behind policy.h.
 *
 * A slice is built from a cinch.v1.Snapshot only (static mode compiles its
 * files into one first), validated whole: every rule id, SPIFFE ID, CIDR
 * and address is parsed here once, so deciding is lookups and compares,
 * with no allocation. Strings point into the unpacked snapshot, which the
 * slice owns.
 *
 * Evaluation order of an inbound decision (docs/policy.md):
 *   1. a plaintext caller in STRICT mode is refused;
 *   2. the rules, in order (the guardrails' first): the first whose ports
 *      include the port and one of whose sources admits the caller decides
 *      by its action: allow, deny (audit-deny for an audit-mode guardrail),
 *      or pass, which skips the other guardrail rules to the namespace's;
 *   3. no rule: refused when an enforce-mode policy selects the workload;
 *      "audit-deny" (allowed, logged) when only audit-mode ones do; when no
 *      policy selects it, the default action (deny, or audit).
 * Step 2 is not a loop over the rules: a caller's ID is read once (is it
 * a SPIFFE ID, the hashes of its two keys: skey.h), its keys are looked up
 * once, and the few ascending lists of rules that may admit it (those of
 * its two keys, the every-caller ones, or for a plaintext caller the
 * ipBlock ones) are read once in step, however many times a pass or an
 * audit-mode deny makes the search go on (docs/benchmarks.md, "## Policy",
 * has the profile this layout comes from). */
#include "policy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cinch/v1/config.pb-c.h"
#include "compile.h"
#include "model.h"
#include "skey.h"
#include "spiffe.h"

struct ssrc {
	enum psrc_kind kind;
	const char *text;
	size_t len; /* IDENTITY_PREFIX: the prefix's length */
	struct pcidr cidr;
};

struct srule {
	const char *id;
	struct pports ports;
	struct ssrc *src;
	size_t n_src;
	int audit;
	int guard;		/* a guardrail's: before every other rule */
	Cinch__V1__RuleAction action; /* ALLOW, DENY or PASS (guardrails only) */
};

struct speer {
	const char *spiffe_id;
	struct pcidr *addrs;
	size_t n_addrs;
	struct pports ports;
	int unchecked, none;
};

struct segress {
	const char *id;
	struct pcidr *cidrs;
	size_t n_cidrs;
	struct pports ports;
};

/* The identity index: every identity-kind source as a key (an exact ID;
 * a wildcard's prefix, up to and with its last '/'; a namespace's
 * "spiffe://<td>/ns/<ns>/sa/", the prefix of exactly its workload
 * identities), each key with the ascending list of rules it appears in.
 * A wildcard "*" and a namespace both stand for exactly one last segment
 * (docs/policy.md), so a caller's ID has two keys (itself, and itself up
 * to its last '/', policy/skey.h): a decision is two hash lookups whatever
 * the number of rules. Open addressing with linear probes over 8-byte
 * slots (eight to a cache line: 16 KiB for 1,000 keys); the table is at
 * least twice the keys. The slot's index bits are the hash's low ones, its
 * tag the high half, so a probe rarely touches a key it does not want. */
struct sslot {
	uint32_t tag; /* the hash's top 32 bits */
	uint32_t key; /* 1 + index in keys; 0: empty */
};

/* A rule in a list of the index, with its ports when they are one range
 * (lo > 0), so that most entries are decided without touching the rule;
 * lo 0: every port (hi 1) or several ranges (hi 0). */
struct sent {
	uint32_t rule;
	uint16_t lo, hi;
};

struct skey {
	const char *text; /* not NUL-terminated at len */
	uint32_t len;
	uint32_t first, count; /* range in ents */
	struct sent one;       /* ents[first]: a key of one rule needs no more */
};

/* A Service of the snapshot, with what its public view points into. */
struct ssvc {
	struct policy_service pub;
	char key[320];
	struct policy_service_port *ports;
	struct policy_endpoint *eps;
	struct sockaddr_storage *addrs; /* every endpoint's, in one block */
};

/* A virtual IP, for the binary search of policy_slice_service. */
struct svip {
	int v6;
	paddr_t a;
	size_t svc;
};

struct policy_slice {
	atomic_uint refs; /* shared by the agent's workers (--workers N) */
	struct sslot *index; /* n_index slots, power of two */
	size_t n_index;
	struct skey *keys;
	struct sent *ents;
	struct sent *cidr_rules; /* rules with unauthenticated sources, ascending */
	size_t n_cidr_rules;
	struct sent *any_rules; /* rules admitting every caller (guardrails'), ascending */
	size_t n_any_rules;
	size_t n_guard; /* rules[0..n_guard) are the guardrails' */
	char **keystore; /* namespace keys built here */
	size_t n_keystore;
	Cinch__V1__Snapshot *snap;
	enum policy_mtls mtls;
	int default_audit, any_enforce;
	int egress_mode; /* Cinch__V1__EgressMode, UNSPECIFIED as DENY */
	struct srule *rules;
	size_t n_rules;
	struct speer *peers;
	size_t n_peers;
	struct segress *egress;
	size_t n_egress;
	struct prange *meshed; /* the meshed set: disjoint, ascending, IPv4 first */
	size_t n_meshed;
	struct ssvc *svcs;
	size_t n_svcs;
	struct svip *vips; /* ascending */
	size_t n_vips;
	char workload[256];
	char ns_prefix[SPIFFE_ID_MAX + 8]; /* "spiffe://<td>/ns/": namespace sources */
	size_t ns_prefix_len;
};

const char *policy_verdict_name(enum policy_verdict v)
{
	switch (v) {
	case POLICY_ALLOW:
		return "allow";
	case POLICY_DENY:
		return "deny";
	case POLICY_AUDIT_DENY:
		return "audit-deny";
	}
	return "unknown";
}

static void slice_free(struct policy_slice *s)
{
	for (size_t i = 0; i < s->n_rules; i++) {
		free(s->rules[i].ports.r);
		free(s->rules[i].src);
	}
	for (size_t i = 0; i < s->n_peers; i++) {
		free(s->peers[i].addrs);
		free(s->peers[i].ports.r);
	}
	for (size_t i = 0; i < s->n_egress; i++) {
		free(s->egress[i].cidrs);
		free(s->egress[i].ports.r);
	}
	for (size_t i = 0; i < s->n_svcs; i++) {
		free(s->svcs[i].ports);
		free(s->svcs[i].eps);
		free(s->svcs[i].addrs);
	}
	free(s->svcs);
	free(s->vips);
	free(s->rules);
	free(s->peers);
	free(s->egress);
	free(s->meshed);
	free(s->index);
	free(s->keys);
	free(s->ents);
	free(s->cidr_rules);
	free(s->any_rules);
	for (size_t i = 0; i < s->n_keystore; i++)
		free(s->keystore[i]);
	free(s->keystore);
	if (s->snap)
		cinch__v1__snapshot__free_unpacked(s->snap, NULL);
	free(s);
}

struct policy_slice *policy_slice_ref(struct policy_slice *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
	return s;
}

void policy_slice_unref(struct policy_slice *s)
{
	if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
		slice_free(s);
}

/* An error at field `path` of the snapshot: "msg" or "msg: detail". */
static int serr(struct policy_error *err, const char *path, const char *msg, const char *detail)
{
	memset(err, 0, sizeof(*err));
	snprintf(err->path, sizeof(err->path), "%s", path);
	snprintf(err->msg, sizeof(err->msg), "%s%s%s", msg, detail ? ": " : "",
		 detail ? detail : "");
	return -EINVAL;
}

static int sports(Cinch__V1__PortRange **r, size_t n, struct pports *out, int allow_zero)
{
	out->n = 0;
	out->r = calloc(n ? n : 1, sizeof(*out->r));
	if (!out->r)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		int zero = allow_zero && n == 1 && r[i]->first == 0 && r[i]->last == 0;
		if (!zero && (r[i]->first < 1 || r[i]->last > 65535 || r[i]->last < r[i]->first))
			return -EINVAL;
		out->r[out->n].lo = (uint16_t)r[i]->first;
		out->r[out->n].hi = (uint16_t)r[i]->last;
		out->n++;
	}
	return 0;
}

static int scidrs(char **texts, size_t n, int host_only, struct pcidr **out, size_t *n_out)
{
	*n_out = 0;
	*out = calloc(n ? n : 1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (pcidr_parse(texts[i], host_only, &(*out)[i]) < 0)
			return -EINVAL;
		*n_out = i + 1;
	}
	return 0;
}

/* The meshed set as disjoint ranges in order (overlapping or adjacent
 * CIDRs merged), for a binary search. */
static int slice_meshed_build(struct policy_slice *s, struct policy_error *err)
{
	const Cinch__V1__Snapshot *sn = s->snap;
	char path[64];

	s->meshed = calloc(sn->n_meshed_cidrs + 1, sizeof(*s->meshed));
	if (!s->meshed)
		return -ENOMEM;
	for (size_t i = 0; i < sn->n_meshed_cidrs; i++) {
		struct pcidr c;
		snprintf(path, sizeof(path), "meshed_cidrs[%zu]", i);
		if (pcidr_parse(sn->meshed_cidrs[i], 0, &c) < 0)
			return serr(err, path, "not a CIDR", sn->meshed_cidrs[i]);
		pcidr_range(&c, &s->meshed[i]);
	}
	s->n_meshed = prange_normalize(s->meshed, sn->n_meshed_cidrs);
	return 0;
}

static int svip_cmp(const void *x, const void *y)
{
	const struct svip *a = x, *b = y;
	if (a->v6 != b->v6)
		return a->v6 ? 1 : -1;
	return a->a < b->a ? -1 : a->a > b->a;
}

/* One address of the snapshot into a sockaddr (port 0). */
static int saddr(const char *text, struct sockaddr_storage *out)
{
	struct pcidr c;
	memset(out, 0, sizeof(*out));
	if (pcidr_parse(text, 1, &c) < 0)
		return -EINVAL;
	out->ss_family = (sa_family_t)c.family;
	if (c.family == AF_INET)
		memcpy(&((struct sockaddr_in *)out)->sin_addr, c.addr, 4);
	else
		memcpy(&((struct sockaddr_in6 *)out)->sin6_addr, c.addr, 16);
	return 0;
}

/* Snapshot.services into s->svcs and the virtual IP index. A bad field is
 * an error naming it ("services[2].endpoints[0].target_ports"). */
static int slice_services_build(struct policy_slice *s, struct policy_error *err)
{
	const Cinch__V1__Snapshot *sn = s->snap;
	const char *why = NULL;
	size_t n_vips = 0;
	char path[128];

	for (size_t i = 0; i < sn->n_services; i++)
		n_vips += sn->services[i]->n_virtual_ips;
	s->svcs = calloc(sn->n_services + 1, sizeof(*s->svcs));
	s->vips = calloc(n_vips + 1, sizeof(*s->vips));
	if (!s->svcs || !s->vips)
		return -ENOMEM;
	for (size_t i = 0; i < sn->n_services; i++) {
		const Cinch__V1__Service *m = sn->services[i];
		struct ssvc *v = &s->svcs[i];
		size_t n_addrs = 0;
		s->n_svcs = i + 1;
		snprintf(path, sizeof(path), "services[%zu]", i);
		if (!m->namespace_[0] || !m->name[0] || strchr(m->namespace_, '/') ||
		    strchr(m->name, '/'))
			return serr(err, path, "needs a namespace and a name", NULL);
		snprintf(v->key, sizeof(v->key), "%s/%s", m->namespace_, m->name);
		v->pub.key = v->key;
		snprintf(path, sizeof(path), "services[%zu].virtual_ips", i);
		if (m->n_virtual_ips == 0)
			return serr(err, path, "a Service without a virtual IP", NULL);
		for (size_t k = 0; k < m->n_virtual_ips; k++) {
			struct pcidr c;
			snprintf(path, sizeof(path), "services[%zu].virtual_ips[%zu]", i, k);
			if (pcidr_parse(m->virtual_ips[k], 1, &c) < 0)
				return serr(err, path, "not an IP address", m->virtual_ips[k]);
			struct prange r;
			pcidr_range(&c, &r);
			s->vips[s->n_vips++] = (struct svip){r.v6, r.lo, i};
		}
		if (!(v->ports = calloc(m->n_ports + 1, sizeof(*v->ports))))
			return -ENOMEM;
		for (size_t k = 0; k < m->n_ports; k++) {
			const Cinch__V1__ServicePort *p = m->ports[k];
			snprintf(path, sizeof(path), "services[%zu].ports[%zu]", i, k);
			if (p->port < 1 || p->port > 65535 || strcmp(p->protocol, "TCP"))
				return serr(err, path, "a TCP port from 1 to 65535", NULL);
			for (size_t j = 0; j < k; j++)
				if (v->ports[j].port == p->port)
					return serr(err, path, "a second entry for one port", NULL);
			v->ports[k] = (struct policy_service_port){p->name, (uint16_t)p->port};
		}
		v->pub.ports = v->ports;
		v->pub.n_ports = m->n_ports;
		for (size_t e = 0; e < m->n_endpoints; e++)
			n_addrs += m->endpoints[e]->n_addresses;
		v->eps = calloc(m->n_endpoints + 1, sizeof(*v->eps));
		v->addrs = calloc(n_addrs + 1, sizeof(*v->addrs));
		if (!v->eps || !v->addrs)
			return -ENOMEM;
		n_addrs = 0;
		for (size_t e = 0; e < m->n_endpoints; e++) {
			const Cinch__V1__Endpoint *me = m->endpoints[e];
			struct policy_endpoint *d = &v->eps[e];
			snprintf(path, sizeof(path), "services[%zu].endpoints[%zu]", i, e);
			if (me->n_addresses == 0)
				return serr(err, path, "an endpoint without an address", NULL);
			d->addrs = &v->addrs[n_addrs];
			d->addr_text = me->addresses[0];
			for (size_t k = 0; k < me->n_addresses; k++) {
				snprintf(path, sizeof(path),
					 "services[%zu].endpoints[%zu].addresses[%zu]", i, e, k);
				if (saddr(me->addresses[k], &v->addrs[n_addrs++]) < 0)
					return serr(err, path, "not an IP address",
						    me->addresses[k]);
			}
			d->n_addrs = me->n_addresses;
			snprintf(path, sizeof(path), "services[%zu].endpoints[%zu].spiffe_id", i,
				 e);
			if (me->spiffe_id[0] &&
			    spiffe_id_validate(me->spiffe_id, strlen(me->spiffe_id), &why) < 0)
				return serr(err, path, "not a SPIFFE ID", why);
			snprintf(path, sizeof(path), "services[%zu].endpoints[%zu].target_ports", i,
				 e);
			if (me->n_target_ports != m->n_ports)
				return serr(err, path, "one entry per Service port", NULL);
			for (size_t k = 0; k < me->n_target_ports; k++)
				if (me->target_ports[k] > 65535)
					return serr(err, path, "a port from 0 to 65535", NULL);
			d->target_ports = me->target_ports;
			d->ready = me->ready;
			d->serving = me->serving;
			d->terminating = me->terminating;
			d->spiffe_id = me->spiffe_id;
			d->workload = me->workload;
		}
		v->pub.eps = v->eps;
		v->pub.n_eps = m->n_endpoints;
	}
	qsort(s->vips, s->n_vips, sizeof(*s->vips), svip_cmp);
	for (size_t i = 1; i < s->n_vips; i++)
		if (!svip_cmp(&s->vips[i - 1], &s->vips[i])) {
			char which[128];
			snprintf(which, sizeof(which), "%.100s", s->svcs[s->vips[i].svc].key);
			return serr(err, "services", "one virtual IP in two Services", which);
		}
	return 0;
}

static int slice_build(struct policy_slice *s, struct policy_error *err)
{
	const Cinch__V1__Snapshot *sn = s->snap;
	const Cinch__V1__Workload *w = sn->workload;
	struct spiffe_workload sw;
	const char *why = NULL;
	char path[64];

	if (!w || !w->spiffe_id ||
	    spiffe_id_parse_workload(w->spiffe_id, strlen(w->spiffe_id), &sw, &why) < 0)
		return serr(err, "workload.spiffe_id", "not a workload SPIFFE ID", why);
	if (!sn->version[0] || strlen(sn->version) > 64)
		return serr(err, "version", "must be 1 to 64 characters", NULL);
	snprintf(s->workload, sizeof(s->workload), "%s/%s", w->namespace_, w->name);
	snprintf(s->ns_prefix, sizeof(s->ns_prefix), "spiffe://%.*s/ns/", (int)sw.td_len, sw.td);
	s->ns_prefix_len = strlen(s->ns_prefix);
	s->mtls = sn->mtls_mode == CINCH__V1__MTLS_MODE__MTLS_MODE_PERMISSIVE
			  ? POLICY_MTLS_PERMISSIVE
			  : POLICY_MTLS_STRICT;
	if (sn->mtls_mode > CINCH__V1__MTLS_MODE__MTLS_MODE_PERMISSIVE)
		return serr(err, "mtls_mode", "unknown mode", NULL);
	if (sn->default_action > CINCH__V1__DEFAULT_ACTION__DEFAULT_ACTION_AUDIT)
		return serr(err, "default_action", "unknown action", NULL);
	s->default_audit = sn->default_action == CINCH__V1__DEFAULT_ACTION__DEFAULT_ACTION_AUDIT;
	if (sn->egress_mode > CINCH__V1__EGRESS_MODE__EGRESS_MODE_ALLOW)
		return serr(err, "egress_mode", "unknown mode", NULL);
	s->egress_mode = sn->egress_mode;

	s->rules = calloc(sn->n_inbound + 1, sizeof(*s->rules));
	s->peers = calloc(sn->n_peers + 1, sizeof(*s->peers));
	s->egress = calloc(sn->n_egress + 1, sizeof(*s->egress));
	if (!s->rules || !s->peers || !s->egress)
		return -ENOMEM;
	for (size_t i = 0; i < sn->n_inbound; i++) {
		const Cinch__V1__InboundRule *r = sn->inbound[i];
		struct srule *d = &s->rules[i];
		s->n_rules = i + 1;
		snprintf(path, sizeof(path), "inbound[%zu]", i);
		d->id = r->id;
		d->audit = r->mode == CINCH__V1__RULE_MODE__RULE_MODE_AUDIT;
		d->guard = r->guardrail;
		d->action = r->action == CINCH__V1__RULE_ACTION__RULE_ACTION_UNSPECIFIED
				    ? CINCH__V1__RULE_ACTION__RULE_ACTION_ALLOW
				    : r->action;
		if (!d->guard)
			s->any_enforce |= !d->audit;
		/* A namespace's rule may admit no one (a selector that picks no
		 * one): its policy still selects the workload. */
		if (!r->id[0] || r->mode > CINCH__V1__RULE_MODE__RULE_MODE_AUDIT ||
		    (r->n_sources == 0 && d->guard))
			return serr(err, path, "needs an id, a known mode and a source", NULL);
		/* Guardrails first, and only they deny or pass: a namespace's
		 * rule that denied could refuse what a guardrail hands over. */
		if (d->guard ? i != s->n_guard : d->action != CINCH__V1__RULE_ACTION__RULE_ACTION_ALLOW)
			return serr(err, path,
				    "a guardrail rule after a namespace rule, or a namespace rule "
				    "that does not allow",
				    NULL);
		if (d->action > CINCH__V1__RULE_ACTION__RULE_ACTION_PASS)
			return serr(err, path, "unknown action", NULL);
		s->n_guard += d->guard;
		/* 0-0: port names the workload does not have, no port at all
		 * (1 above 0 matches none) */
		if (sports(r->ports, r->n_ports, &d->ports, 1) < 0)
			return serr(err, path, "bad port range", NULL);
		if (d->ports.n == 1 && d->ports.r[0].lo == 0)
			d->ports.r[0].lo = 1;
		d->src = calloc(r->n_sources + 1, sizeof(*d->src));
		if (!d->src)
			return -ENOMEM;
		for (size_t k = 0; k < r->n_sources; k++) {
			const Cinch__V1__Source *m = r->sources[k];
			struct ssrc *x = &d->src[k];
			d->n_src = k + 1;
			if (m->kind_case == CINCH__V1__SOURCE__KIND_IDENTITY) {
				size_t len = strlen(m->identity);
				int wild = len > 2 && !strcmp(m->identity + len - 2, "/*");
				x->kind = wild ? PSRC_IDENTITY_PREFIX : PSRC_IDENTITY;
				x->text = m->identity;
				x->len = wild ? len - 1 : len;
				if (spiffe_id_validate(m->identity, wild ? len - 2 : len, &why) < 0)
					return serr(err, path, "source: not a SPIFFE ID", why);
			} else if (m->kind_case == CINCH__V1__SOURCE__KIND_NAMESPACE) {
				x->kind = PSRC_NAMESPACE;
				x->text = m->namespace_;
				x->len = strlen(m->namespace_);
				if (!x->len || strchr(x->text, '/'))
					return serr(err, path, "source: bad namespace", NULL);
			} else if (m->kind_case == CINCH__V1__SOURCE__KIND_ANY_CALLER && d->guard) {
				x->kind = PSRC_ANY;
			} else if (m->kind_case == CINCH__V1__SOURCE__KIND_UNAUTHENTICATED_CIDR) {
				x->kind = PSRC_UNAUTH_CIDR;
				x->text = m->unauthenticated_cidr;
				if (pcidr_parse(m->unauthenticated_cidr, 0, &x->cidr) < 0)
					return serr(err, path, "source: not a CIDR",
						    m->unauthenticated_cidr);
			} else {
				return serr(err, path, "source without a kind", NULL);
			}
		}
	}
	for (size_t i = 0; i < sn->n_peers; i++) {
		const Cinch__V1__Peer *p = sn->peers[i];
		struct speer *d = &s->peers[i];
		s->n_peers = i + 1;
		snprintf(path, sizeof(path), "peers[%zu]", i);
		d->spiffe_id = p->spiffe_id;
		if (spiffe_id_validate(p->spiffe_id, strlen(p->spiffe_id), &why) < 0)
			return serr(err, path, "not a SPIFFE ID", why);
		if (scidrs(p->addresses, p->n_addresses, 1, &d->addrs, &d->n_addrs) < 0)
			return serr(err, path, "bad address", NULL);
		if (sports(p->allowed_ports, p->n_allowed_ports, &d->ports, 1) < 0)
			return serr(err, path, "bad allowed_ports", NULL);
		d->unchecked = p->n_allowed_ports == 0;
		d->none = d->ports.n == 1 && d->ports.r[0].lo == 0;
	}
	for (size_t i = 0; i < sn->n_egress; i++) {
		const Cinch__V1__EgressRule *e = sn->egress[i];
		struct segress *d = &s->egress[i];
		s->n_egress = i + 1;
		snprintf(path, sizeof(path), "egress[%zu]", i);
		d->id = e->id;
		if (!e->id[0] || e->n_cidrs == 0 ||
		    scidrs(e->cidrs, e->n_cidrs, 0, &d->cidrs, &d->n_cidrs) < 0 ||
		    sports(e->ports, e->n_ports, &d->ports, 0) < 0)
			return serr(err, path, "needs an id, valid CIDRs and ports", NULL);
	}
	int rc = slice_meshed_build(s, err);
	return rc < 0 ? rc : slice_services_build(s, err);
}

/* Rule `i` as an entry of the index's lists. */
static struct sent sent_of(const struct policy_slice *s, size_t i)
{
	const struct pports *p = &s->rules[i].ports;
	struct sent e = {(uint32_t)i, 0, p->n == 0};

	if (p->n == 1 && p->r[0].lo > 0) {
		e.lo = p->r[0].lo;
		e.hi = p->r[0].hi;
	}
	return e;
}

struct skey_entry {
	const char *key;
	size_t len;
	uint32_t rule;
};

static int skey_entry_cmp(const void *a, const void *b)
{
	const struct skey_entry *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->key, y->key, n);
	if (c)
		return c;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return x->rule < y->rule ? -1 : x->rule > y->rule;
}

static int slice_index(struct policy_slice *s)
{
	size_t n = 0, cap = 0, n_keys = 0;
	struct skey_entry *e = NULL;
	int rc = -ENOMEM;

	for (size_t i = 0; i < s->n_rules; i++)
		cap += s->rules[i].n_src;
	e = calloc(cap + 1, sizeof(*e));
	s->ents = calloc(cap + 1, sizeof(*s->ents));
	s->keys = calloc(cap + 1, sizeof(*s->keys));
	s->cidr_rules = calloc(s->n_rules + 1, sizeof(*s->cidr_rules));
	s->any_rules = calloc(s->n_rules + 1, sizeof(*s->any_rules));
	s->keystore = calloc(cap + 1, sizeof(*s->keystore));
	if (!e || !s->ents || !s->keys || !s->cidr_rules || !s->any_rules || !s->keystore)
		goto out;
	for (size_t i = 0; i < s->n_rules; i++) {
		int has_cidr = 0, has_any = 0;
		for (size_t k = 0; k < s->rules[i].n_src; k++) {
			const struct ssrc *x = &s->rules[i].src[k];
			struct skey_entry *d = &e[n];
			if (x->kind == PSRC_UNAUTH_CIDR || x->kind == PSRC_ANY) {
				has_cidr |= x->kind == PSRC_UNAUTH_CIDR;
				has_any |= x->kind == PSRC_ANY;
				continue;
			}
			d->rule = (uint32_t)i;
			if (x->kind == PSRC_NAMESPACE) {
				size_t len = strlen(s->ns_prefix) + x->len + sizeof("/sa/");
				char *key = malloc(len);
				if (!key)
					goto out;
				snprintf(key, len, "%s%s/sa/", s->ns_prefix, x->text);
				s->keystore[s->n_keystore++] = key;
				d->key = key;
				d->len = len - 1;
			} else {
				d->key = x->text;
				d->len = x->len;
			}
			n++;
		}
		if (has_cidr)
			s->cidr_rules[s->n_cidr_rules++] = sent_of(s, i);
		if (has_any)
			s->any_rules[s->n_any_rules++] = sent_of(s, i);
	}
	qsort(e, n, sizeof(*e), skey_entry_cmp);
	for (size_t i = 0; i < n; i++) {
		s->ents[i] = sent_of(s, e[i].rule);
		if (i > 0 && e[i].len == e[i - 1].len && !memcmp(e[i].key, e[i - 1].key, e[i].len))
			s->keys[n_keys - 1].count++;
		else
			s->keys[n_keys++] = (struct skey){e[i].key, (uint32_t)e[i].len, (uint32_t)i,
							  1, s->ents[i]};
	}
	for (s->n_index = 8; s->n_index < 2 * n_keys; s->n_index *= 2)
		;
	s->index = calloc(s->n_index, sizeof(*s->index));
	if (!s->index)
		goto out;
	for (size_t k = 0; k < n_keys; k++) {
		uint64_t hash = skey_hash(s->keys[k].text, s->keys[k].len);
		size_t h = hash & (s->n_index - 1);
		while (s->index[h].key)
			h = (h + 1) & (s->n_index - 1);
		s->index[h] = (struct sslot){(uint32_t)(hash >> 32), (uint32_t)k + 1};
	}
	rc = 0;
out:
	free(e);
	return rc;
}

int policy_slice_from_snapshot(struct policy_slice **out, const Cinch__V1__Snapshot *snap,
			       struct policy_error *err)
{
	/* A private copy the slice owns: repack and unpack. */
	size_t len = cinch__v1__snapshot__get_packed_size(snap);
	uint8_t *buf = malloc(len ? len : 1);
	struct policy_slice *s = calloc(1, sizeof(*s));
	int rc = -ENOMEM;

	memset(err, 0, sizeof(*err));
	if (!buf || !s)
		goto out;
	cinch__v1__snapshot__pack(snap, buf);
	atomic_init(&s->refs, 1);
	s->snap = cinch__v1__snapshot__unpack(NULL, len, buf);
	if (!s->snap) {
		/* It decoded once, but does not survive re-encoding (e.g. an
		 * unknown field numbered 0): not a snapshot we can trust. */
		rc = serr(err, "", "the snapshot does not re-encode: malformed", NULL);
		goto out;
	}
	rc = slice_build(s, err);
	if (rc == 0)
		rc = slice_index(s);
	if (rc == 0) {
		*out = s;
		s = NULL;
	} else if (rc == -ENOMEM) {
		snprintf(err->msg, sizeof(err->msg), "out of memory");
	}
out:
	free(buf);
	if (s)
		slice_free(s);
	return rc;
}

int policy_slice_load(struct policy_slice **out, const char *trust_domain, const char *policy_path,
		      const char *workloads_path, const char *self,
		      const struct sockaddr_storage *addrs, size_t n_addrs,
		      struct policy_error *err)
{
	struct pset *set = NULL;
	struct pcompiled *comp = NULL;
	Cinch__V1__Snapshot *snap = NULL;
	uint8_t *buf = NULL;
	size_t len;
	const char *why = NULL;
	int rc = -ENOMEM;

	memset(err, 0, sizeof(*err));
	if (spiffe_td_validate(trust_domain, strlen(trust_domain), &why) < 0) {
		rc = serr(err, "trust_domain", "not a trust domain", why);
		goto out;
	}
	if (!(set = pset_new(trust_domain)))
		goto out;
	/* One directory may hold both: read it once. */
	if ((rc = pset_add_path(set, policy_path, err)) < 0 ||
	    (strcmp(policy_path, workloads_path) &&
	     (rc = pset_add_path(set, workloads_path, err)) < 0) ||
	    (rc = pset_finish(set, err)) < 0)
		goto out;
	const struct pworkload *w = pcompile_find(set, self, addrs, n_addrs);
	if (!w) {
		rc = serr(err, "",
			  self ? "no such workload in the workload list"
			       : "none of this host's addresses belongs to exactly one workload",
			  self);
		goto out;
	}
	rc = -ENOMEM;
	if (pcompile_new(set, &comp) < 0 ||
	    pcompile_snapshot(comp, pcompile_index_of(comp, w), &buf, &len) < 0 ||
	    !(snap = cinch__v1__snapshot__unpack(NULL, len, buf)))
		goto out;
	rc = policy_slice_from_snapshot(out, snap, err);
out:
	if (snap)
		cinch__v1__snapshot__free_unpacked(snap, NULL);
	free(buf);
	pcompile_free(comp);
	pset_free(set);
	return rc;
}

/* ---- deciding: no allocation, no failure */

static void decided(struct policy_decision *out, enum policy_verdict v, const char *rule,
		    const char *reason)
{
	out->verdict = v;
	out->rule = rule;
	out->reason = reason;
}

/* A caller's ID as the rules see it: a valid SPIFFE ID (the TLS layer
 * checks the peer's; cinchctl's --from is anyone's text), or no identity
 * rule admits it. */
static int slice_id_ok(const char *id)
{
	return id && spiffe_id_validate(id, strlen(id), NULL) == 0;
}

/* Does `id` (valid) start with prefix[0..len) and hold exactly one more
 * segment? */
static int one_segment_below(const char *id, const char *prefix, size_t len)
{
	return !strncmp(id, prefix, len) && id[len] && !strchr(id + len, '/');
}

/* Source `x` against a caller: `id` valid (slice_id_ok) or NULL. */
static int ssrc_admits(const struct policy_slice *s, const struct ssrc *x, const char *id,
		       const struct sockaddr *src)
{
	size_t pl = s->ns_prefix_len;

	switch (x->kind) {
	case PSRC_IDENTITY:
		return id && !strcmp(id, x->text);
	case PSRC_IDENTITY_PREFIX:
		return id && one_segment_below(id, x->text, x->len);
	case PSRC_NAMESPACE: /* spiffe://<td>/ns/<ns>/sa/<one segment> */
		return id && !strncmp(id, s->ns_prefix, pl) && !strncmp(id + pl, x->text, x->len) &&
		       one_segment_below(id + pl + x->len, "/sa/", 4);
	case PSRC_UNAUTH_CIDR:
		return !id && src && pcidr_contains(&x->cidr, src);
	case PSRC_ANY:
		return 1;
	case PSRC_SELECTOR: /* compiled away: never in a slice */
		return 0;
	}
	return 0;
}

/* An ascending list of the rules that may admit a caller (one key's, the
 * every-caller rules, the unauthenticated ones), read once per decision
 * however many times a guardrail's pass or audit-mode deny makes it search
 * on: every entry before `e` is below where the search now starts or does
 * not match the caller, so it never will. */
struct slist {
	const struct sent *e, *end;
	int cidr; /* the rules' unauthenticated sources must admit the caller */
};

/* A caller as the index sees it, computed once per decision. */
struct scaller {
	const struct sockaddr *src;
	struct slist l[3];
	size_t n;
};

/* Does rule entry `e` take `port`? */
static int sent_port(const struct policy_slice *s, const struct sent *e, uint16_t port)
{
	if (e->lo)
		return port >= e->lo && port <= e->hi;
	return e->hi || pports_contains(&s->rules[e->rule].ports, port);
}

/* memcmp(a, b, len) == 0 a word at a time, inline: the key of a hash that
 * matched is nearly always the caller's. */
static int slice_key_eq(const char *a, const char *b, size_t len)
{
	uint64_t x, y, d = 0;

	if (len < sizeof(x))
		return !memcmp(a, b, len);
	for (size_t i = 0; i + sizeof(x) < len; i += sizeof(x)) {
		memcpy(&x, a + i, sizeof(x));
		memcpy(&y, b + i, sizeof(y));
		d |= x ^ y;
	}
	memcpy(&x, a + len - sizeof(x), sizeof(x));
	memcpy(&y, b + len - sizeof(y), sizeof(y));
	return !(d | (x ^ y));
}

/* The rules of key id[0..len), empty when no rule has it. */
static struct slist slice_lookup(const struct policy_slice *s, const char *id, size_t len,
				 uint64_t hash)
{
	size_t mask = s->n_index - 1;

	for (size_t h = hash & mask; s->index[h].key; h = (h + 1) & mask) {
		if (s->index[h].tag != (uint32_t)(hash >> 32))
			continue;
		const struct skey *k = &s->keys[s->index[h].key - 1];
		if (k->len != len || !slice_key_eq(k->text, id, len))
			continue;
		if (k->count == 1)
			return (struct slist){&k->one, &k->one + 1, 0};
		return (struct slist){&s->ents[k->first], &s->ents[k->first + k->count], 0};
	}
	return (struct slist){NULL, NULL, 0};
}

static void scaller_init(const struct policy_slice *s, struct scaller *c, const char *spiffe_id,
			 const struct sockaddr *src)
{
	struct skey_id k;

	c->src = src;
	c->l[0] = (struct slist){s->any_rules, s->any_rules + s->n_any_rules, 0};
	c->n = 1;
	if (!spiffe_id) {
		c->l[c->n++] = (struct slist){s->cidr_rules, s->cidr_rules + s->n_cidr_rules, 1};
	} else if (skey_id_scan(spiffe_id, &k) == 0) {
		c->l[c->n++] = slice_lookup(s, spiffe_id, k.len, k.h);
		c->l[c->n++] = slice_lookup(s, spiffe_id, k.l_last, k.h_last);
	} /* else not a SPIFFE ID: no identity rule admits it */
}

/* Does one of rule `r`'s unauthenticated sources admit address `src`? */
static int slice_cidr_admits(const struct policy_slice *s, size_t r, const struct sockaddr *src)
{
	for (size_t k = 0; k < s->rules[r].n_src; k++)
		if (ssrc_admits(s, &s->rules[r].src[k], NULL, src))
			return 1;
	return 0;
}

/* The first rule from `from` on that admits the caller on `port`,
 * SIZE_MAX when none does; `from` never decreases from one call to the
 * next. */
static size_t slice_next(const struct policy_slice *s, struct scaller *c, uint16_t port,
			 size_t from)
{
	size_t best = SIZE_MAX;

	for (size_t k = 0; k < c->n; k++) {
		struct slist *l = &c->l[k];
		for (; l->e < l->end && l->e->rule < best; l->e++)
			if (l->e->rule >= from && sent_port(s, l->e, port) &&
			    (!l->cidr || slice_cidr_admits(s, l->e->rule, c->src))) {
				best = l->e->rule;
				break;
			}
	}
	return best;
}

void policy_slice_decide_inbound(const struct policy_slice *s, const char *spiffe_id,
				 const struct sockaddr *src, uint16_t port,
				 struct policy_decision *out)
{
	if (!spiffe_id && s->mtls == POLICY_MTLS_STRICT) {
		decided(out, POLICY_DENY, NULL, "plaintext refused: mTLS mode is STRICT");
		return;
	}
	/* An audit-mode guardrail's deny changes nothing: it is noted, and
	 * the evaluation goes on; when the connection then flows, it is
	 * "audit-deny" naming that rule. */
	const struct srule *audit = NULL;
	size_t best, from = 0;
	struct scaller caller;
	scaller_init(s, &caller, spiffe_id, src);
	for (;;) {
		best = slice_next(s, &caller, port, from);
		if (best == SIZE_MAX)
			break;
		const struct srule *r = &s->rules[best];
		if (r->action == CINCH__V1__RULE_ACTION__RULE_ACTION_PASS)
			from = s->n_guard;
		else if (r->action == CINCH__V1__RULE_ACTION__RULE_ACTION_DENY && r->audit)
			audit = audit ? audit : r, from = best + 1;
		else
			break;
	}
	if (best != SIZE_MAX && s->rules[best].action == CINCH__V1__RULE_ACTION__RULE_ACTION_DENY) {
		decided(out, POLICY_DENY, s->rules[best].id, "denied by a guardrail");
		return;
	}
	if (best != SIZE_MAX) {
		decided(out, POLICY_ALLOW, s->rules[best].id,
			s->rules[best].guard ? "allowed by a guardrail"
			: spiffe_id	     ? "allowed"
					     : "allowed: unauthenticated caller in an ipBlock");
		if (audit)
			decided(out, POLICY_AUDIT_DENY, audit->id,
				"would be denied by a guardrail in audit mode");
		return;
	}
	if (audit && (s->n_rules > s->n_guard ? !s->any_enforce : s->default_audit)) {
		decided(out, POLICY_AUDIT_DENY, audit->id, "would be denied by a guardrail in audit mode");
		return;
	}
	if (s->any_enforce)
		decided(out, POLICY_DENY, NULL,
			spiffe_id ? "no rule allows this identity on this port"
				  : "no unauthenticated rule allows this address on this port");
	else if (s->n_rules > s->n_guard)
		decided(out, POLICY_AUDIT_DENY, NULL,
			"would be denied: only audit-mode policies select this workload");
	else if (s->default_audit)
		decided(out, POLICY_AUDIT_DENY, NULL,
			"no AllowPolicy selects this workload; default action audit");
	else
		decided(out, POLICY_DENY, NULL,
			"no AllowPolicy selects this workload; default action deny");
}

const char *policy_slice_peer(const struct policy_slice *s, const struct sockaddr *dst,
			      uint16_t port, struct policy_decision *out)
{
	for (size_t i = 0; i < s->n_peers; i++) {
		const struct speer *p = &s->peers[i];
		for (size_t j = 0; j < p->n_addrs; j++) {
			if (!pcidr_contains(&p->addrs[j], dst))
				continue;
			if (p->unchecked || (!p->none && pports_contains(&p->ports, port)))
				decided(out, POLICY_ALLOW, NULL, "meshed destination");
			else
				decided(out, POLICY_DENY, NULL,
					p->none ? "the destination's policy allows this workload "
						  "on no "
						  "port"
						: "the destination's policy does not allow this "
						  "port");
			return p->spiffe_id;
		}
	}
	decided(out, POLICY_ALLOW, NULL, "not a meshed destination");
	return NULL;
}

int policy_slice_meshed(const struct policy_slice *s, const struct sockaddr *dst)
{
	struct prange key;
	size_t lo = 0, hi = s->n_meshed;

	if (paddr_of(dst, &key.v6, &key.lo) < 0)
		return 0;
	/* the last range starting at or before dst */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (prange_cmp(&s->meshed[mid], &key) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 && s->meshed[lo - 1].v6 == key.v6 && key.lo <= s->meshed[lo - 1].hi;
}

void policy_slice_decide_egress(const struct policy_slice *s, const struct sockaddr *dst,
				uint16_t port, struct policy_decision *out)
{
	if (policy_slice_meshed(s, dst)) {
		/* Meshed, and not a peer (policy_slice_peer() said so first):
		 * it does not admit us, and its app must never see our
		 * plaintext, whatever an EgressPolicy covers. */
		decided(out, POLICY_DENY, NULL,
			"the destination is meshed and does not admit this workload");
		return;
	}
	for (size_t i = 0; i < s->n_egress; i++) {
		const struct segress *e = &s->egress[i];
		if (!pports_contains(&e->ports, port))
			continue;
		for (size_t j = 0; j < e->n_cidrs; j++)
			if (pcidr_contains(&e->cidrs[j], dst)) {
				decided(out, POLICY_ALLOW, e->id, "allowed by an EgressPolicy");
				return;
			}
	}
	if (s->egress_mode == CINCH__V1__EGRESS_MODE__EGRESS_MODE_ALLOW)
		decided(out, POLICY_ALLOW, NULL, "outside the mesh; egress mode allow");
	else if (s->egress_mode == CINCH__V1__EGRESS_MODE__EGRESS_MODE_AUDIT)
		decided(out, POLICY_AUDIT_DENY, NULL,
			"would be denied: no EgressPolicy allows this destination and port; "
			"egress mode audit");
	else
		decided(out, POLICY_DENY, NULL, "no EgressPolicy allows this destination and port");
}

void policy_slice_each_rule(const struct policy_slice *s, const char *spiffe_id,
			    const struct sockaddr *src, uint16_t port, policy_rule_cb cb, void *arg)
{
	/* An ID that is not a SPIFFE ID is admitted by no source, as in
	 * decide_inbound. */
	int valid = !spiffe_id || slice_id_ok(spiffe_id);

	for (size_t i = 0; i < s->n_rules; i++) {
		const struct srule *r = &s->rules[i];
		int admits = 0;
		for (size_t k = 0; k < r->n_src && !admits; k++) /* every caller: valid or not */
			admits = (valid || r->src[k].kind == PSRC_ANY) &&
				 ssrc_admits(s, &r->src[k], spiffe_id, src);
		cb(arg, r->id, pports_contains(&r->ports, port), admits);
	}
}

enum policy_mtls policy_slice_mtls(const struct policy_slice *s)
{
	return s->mtls;
}

const char *policy_slice_version(const struct policy_slice *s)
{
	return s->snap->version;
}

const char *policy_slice_workload(const struct policy_slice *s)
{
	return s->workload;
}

const char *policy_slice_spiffe_id(const struct policy_slice *s)
{
	return s->snap->workload->spiffe_id;
}

const struct policy_service *policy_slice_service(const struct policy_slice *s,
						  const struct sockaddr *dst, uint16_t port,
						  size_t *port_index)
{
	struct svip key = {0};

	if (!s->n_vips || paddr_of(dst, &key.v6, &key.a) < 0)
		return NULL;
	const struct svip *at = bsearch(&key, s->vips, s->n_vips, sizeof(key), svip_cmp);
	if (!at)
		return NULL;
	const struct policy_service *v = &s->svcs[at->svc].pub;
	*port_index = SIZE_MAX;
	for (size_t i = 0; i < v->n_ports; i++)
		if (v->ports[i].port == port)
			*port_index = i;
	return v;
}

size_t policy_slice_n_services(const struct policy_slice *s)
{
	return s->n_svcs;
}

const struct policy_service *policy_slice_service_at(const struct policy_slice *s, size_t i)
{
	return &s->svcs[i].pub;
}
