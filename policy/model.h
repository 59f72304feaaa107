/* model: the validated policy set: AllowPolicy, MeshPolicy, EgressPolicy,
 * GuardrailPolicy and Workload documents, and v1 Namespace objects for
 * their labels (docs/policy.md), read from pdoc trees with every
 * field checked. Nothing is silently ignored: an unknown field, an
 * unsupported value, a port out of range is an error naming the file, line,
 * column and field path. A set is validated whole: pset_add_* either adds
 * everything of a document or nothing, and the caller keeps or drops the
 * whole set.
 *
 * A pset owns all its memory (pset_free). Immutable once built. */
#ifndef CINCH_POLICY_MODEL_H
#define CINCH_POLICY_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "pdoc.h"
#include "policy.h"

#define PSET_API_VERSION "cinch.dev/v1alpha1"

/* A port, a range, or a named port (name set, lo 1 > hi 0: it matches no
 * number until pports_resolve turns it into a destination workload's
 * TCP container ports of that name). */
struct pport {
	uint16_t lo, hi; /* inclusive */
	char *name;	 /* an IANA_SVC_NAME, or NULL */
};

struct pports {
	struct pport *r; /* none: every port */
	size_t n;
	size_t n_named; /* entries with a name */
};

struct pcidr {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	unsigned prefix;
	char *text;
	int line, column; /* where it was written (0: unknown) */
};

/* Where a document came from, for the errors about the set as a whole
 * (pset_finish): its file and the position of its metadata.name (0 when
 * the source has none, as a document from the Kubernetes API). */
struct pwhere {
	char file[256];
	int line, column;
};

/* Makes room for item n (zeroed) in an array of n items of `size` bytes
 * that only ever grows by one item through here; -ENOMEM. */
int pset_grow(void **arr, size_t n, size_t size);

/* A set-level error (err->whole_set), placed at a document's `where` and
 * field (pset_finish, ksvc_finish). Returns -EINVAL. */
int pset_err(struct policy_error *err, const struct pwhere *at, const char *field, const char *fmt,
	     ...) __attribute__((format(printf, 4, 5)));

/* What a source admits (docs/policy.md): an exact ID; a wildcard, any ID
 * that is its prefix plus exactly one last segment; a namespace, exactly
 * the workload identities spiffe://<td>/ns/<ns>/sa/<sa> of the set's
 * trust domain (the same as the wildcard "spiffe://<td>/ns/<ns>/sa/" + "*"). */
enum psrc_kind {
	PSRC_IDENTITY = 0,    /* exact SPIFFE ID */
	PSRC_IDENTITY_PREFIX, /* ".../sa/" + "*" written: text holds the part before "*" */
	PSRC_NAMESPACE,
	PSRC_UNAUTH_CIDR,
	PSRC_SELECTOR, /* namespaceSelector and/or podSelector: compile expands it */
	PSRC_ANY,      /* every caller: a guardrail rule without `from` */
};

struct plabel {
	char *key, *value;
};

/* matchExpressions operators, with Kubernetes' LabelSelector semantics:
 * In (the key is present with one of the values), NotIn (absent, or
 * present with none of them), Exists, DoesNotExist. */
enum plexpr_op {
	PLEXPR_IN = 0,
	PLEXPR_NOT_IN,
	PLEXPR_EXISTS,
	PLEXPR_DOES_NOT_EXIST,
};

struct plexpr {
	char *key;
	enum plexpr_op op;
	char **values;
	size_t n_values;
};

/* A workload selector (AllowPolicy, EgressPolicy) or a label selector
 * (namespaceSelector, podSelector, a guardrail's subject): every part
 * present must match; none present (`{}`, written so) selects everything. */
struct pselector {
	struct plabel *labels; /* matchLabels, all must match */
	size_t n_labels;
	struct plexpr *exprs; /* matchExpressions, all must match */
	size_t n_exprs;
	char **workloads; /* names in the policy's namespace */
	size_t n_workloads;
};

struct psrc {
	enum psrc_kind kind;
	char *text;
	struct pcidr cidr;		   /* PSRC_UNAUTH_CIDR */
	struct pselector *ns_sel, *pod_sel; /* PSRC_SELECTOR: either may be NULL */
};

/* One AllowPolicy; each spec.from entry is a rule "<ns>/<name>#<index>". */
struct pallow {
	char *ns, *name;
	struct pselector sel;
	struct pports ports;
	struct psrc **from; /* from[i]: n_src[i] sources */
	size_t *n_src;
	size_t n_from;
	int audit;
	struct pwhere where;
	int line; /* the document's first line (lint names it) */
};

enum paction {
	PACT_ALLOW = 0,
	PACT_DENY,
	PACT_PASS, /* hand over to the namespace's AllowPolicies */
};

/* One rule of a GuardrailPolicy: its `from` ORed into one rule, named
 * "GuardrailPolicy/<name>#<index>" (a namespace is lowercase, so no
 * AllowPolicy's rule can be named so). */
struct pguard_rule {
	enum paction action;
	struct pports ports;
	struct psrc *src; /* PSRC_ANY alone when `from` is absent */
	size_t n_src;
};

/* Loosenings of the mesh-wide MeshPolicy a guardrail lets the namespaces
 * of its subject make (PGUARD_LOOSEN_*). */
#define PGUARD_LOOSEN_MTLS    1u
#define PGUARD_LOOSEN_DEFAULT 2u
#define PGUARD_LOOSEN_EGRESS  4u

/* A GuardrailPolicy: cluster-scoped, evaluated before every AllowPolicy,
 * ordered by priority (lower first), then name. */
struct pguard {
	char *name;
	unsigned priority; /* 0-1000 */
	struct pselector *ns_sel, *pod_sel; /* spec.subject; NULL: unconstrained */
	struct pguard_rule *rules;
	size_t n_rules;
	int audit; /* spec.mode: audit: a deny is logged, not enforced */
	unsigned loosen; /* PGUARD_LOOSEN_* */
	struct pwhere where;
	int line;
};

/* A v1 Namespace: only its name and labels matter (namespaceSelector).
 * "kubernetes.io/metadata.name: <name>" is always among the labels, as
 * the API server sets it. */
struct pnamespace {
	char *name;
	struct plabel *labels;
	size_t n_labels;
	struct pwhere where;
};

enum pegress_mode {
	PEGRESS_DENY = 0,
	PEGRESS_AUDIT,
	PEGRESS_ALLOW,
};

enum pmtls {
	PMTLS_STRICT = 0,
	PMTLS_PERMISSIVE,
};

struct pmesh {
	char *ns; /* NULL: mesh-wide */
	char *name;
	int has_mtls, has_default, has_pod_exclusions, has_egress;
	enum pmtls mtls;
	int default_audit;
	enum pegress_mode egress;
	int allow_pod_exclusions; /* cinch.dev/exclude-* honoured by the injector */
	struct pwhere where;
};

struct pegress_to {
	struct pcidr *cidrs;
	size_t n_cidrs;
	struct pports ports;
};

struct pegress {
	char *ns, *name;
	struct pselector sel;
	struct pegress_to *to;
	size_t n_to;
	struct pwhere where;
};

/* A workload's named container port (spec.ports; a pod's
 * spec.containers[].ports[]). Only TCP ones resolve a policy's name. */
struct pwport {
	char *name;
	uint16_t port;
	int tcp;
};

struct pworkload {
	char *ns, *name, *sa;
	struct plabel *labels;
	size_t n_labels;
	struct pwport *ports; /* named ports only */
	size_t n_ports;
	struct pcidr *addrs; /* host addresses (prefix = full length) */
	size_t n_addrs;
	struct pwhere where;
};

struct ksvc;   /* ksvc.h */
struct kslice; /* ksvc.h */

struct pset {
	char *trust_domain;   /* for the workloads' SPIFFE IDs */
	char *mesh_namespace; /* MeshPolicy here is mesh-wide ("cinch-system") */
	struct pallow *allow;
	size_t n_allow;
	struct pmesh *mesh;
	size_t n_mesh;
	struct pegress *egress;
	size_t n_egress;
	struct pworkload *workloads;
	size_t n_workloads;
	struct ksvc *services; /* v1 Services (ksvc.h) */
	size_t n_services;
	struct kslice *slices; /* discovery.k8s.io/v1 EndpointSlices */
	size_t n_slices;
	struct pguard *guards;
	size_t n_guards;
	struct pnamespace *namespaces;
	size_t n_namespaces;
	/* pset_finish: the namespaces' indexes sorted by name, for
	 * pset_namespace_matches; used while n_by_name == n_namespaces */
	size_t *ns_by_name, n_by_name;
};

/* What applies in one namespace (pset_mesh_settings). */
struct pmesh_settings {
	int permissive, default_audit;
	enum pegress_mode egress;
	/* which of the namespace's MeshPolicy fields were not applied: they
	 * loosen the mesh-wide ones and no guardrail allows it (PGUARD_LOOSEN_*) */
	unsigned refused;
};

/* An empty set for `trust_domain` (copied). NULL on ENOMEM. */
struct pset *pset_new(const char *trust_domain);
void pset_free(struct pset *s);

/* Validates one document and adds it to the set: any of the four kinds,
 * or a Kubernetes Service or EndpointSlice (ksvc.h).
 * `file` names the source for errors. 0, or -EINVAL with *err filled (the
 * set is then unchanged), -ENOMEM. */
int pset_add_doc(struct pset *s, const char *file, const struct pdoc *doc, struct policy_error *err)
	__attribute__((warn_unused_result));

/* Reads a file, or every *.yaml, *.yml and *.json file of a directory (in
 * name order; subdirectories are an error, so nothing is ignored). */
int pset_add_path(struct pset *s, const char *path, struct policy_error *err)
	__attribute__((warn_unused_result));

/* Checks of the set as a whole: duplicate names, two workloads with one
 * address, two MeshPolicies for one scope. 0 or -EINVAL with *err, which
 * names the later document's file, line, column and field. */
int pset_finish(struct pset *s, struct policy_error *err) __attribute__((warn_unused_result));

/* Helpers shared with the evaluator. */
int pcidr_parse(const char *text, int host_only, struct pcidr *out);
int pcidr_contains(const struct pcidr *c, const struct sockaddr *sa);
/* An address or a CIDR as a range of integers (hi inclusive) in one of two
 * spaces, IPv4 (v6 = 0, 32 bits) and IPv6; an IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d) is IPv4, so both spellings of one host meet. */
typedef unsigned __int128 paddr_t;
struct prange {
	int v6;
	paddr_t lo, hi;
};
void pcidr_range(const struct pcidr *c, struct prange *out);
/* Sorts r[0..n) (IPv4 first, then by start) and merges overlapping or
 * adjacent ranges in place: the number of disjoint ranges left. */
size_t prange_normalize(struct prange *r, size_t n);
int prange_cmp(const void *a, const void *b); /* qsort/bsearch order */
/* The destination of a connection in the same spaces: 0, or -EINVAL when
 * it is neither IPv4 nor IPv6. */
int paddr_of(const struct sockaddr *sa, int *v6, paddr_t *out);
int pports_contains(const struct pports *p, uint16_t port);
/* `p` for destination `w`: its numbers and ranges, and each name as w's
 * TCP container ports of that name (none when w has no such port, as
 * Kubernetes). out holds p->n + p->n_named * w->n_ports entries; the
 * number written. 0 with p->n > 0 means no port at all, never every port. */
size_t pports_resolve(const struct pports *p, const struct pworkload *w, struct pport *out);
void pports_clear(struct pports *p);
/* Does `sel` (in namespace `ns`) pick workload `w`? */
int pselector_matches(const struct pselector *sel, const char *ns, const struct pworkload *w);
/* Does the label part of `sel` (matchLabels, matchExpressions) match
 * these labels? */
int pselector_labels_match(const struct pselector *sel, const struct plabel *l, size_t n);
/* Does `sel` match the labels of namespace `ns` (its Namespace document's,
 * or only "kubernetes.io/metadata.name" when the set has none)? */
int pset_namespace_matches(const struct pset *s, const struct pselector *sel, const char *ns);
/* Does guardrail `g` apply to workload `w`? */
int pguard_selects(const struct pset *s, const struct pguard *g, const struct pworkload *w);
/* The MeshPolicy settings of namespace `ns`: the mesh-wide MeshPolicy over
 * the defaults (STRICT, deny, egress deny); then the namespace's own
 * fields where they tighten, or where a guardrail whose subject's
 * namespaceSelector matches `ns` allows loosening that field. */
void pset_mesh_settings(const struct pset *s, const char *ns, struct pmesh_settings *out);

#endif
