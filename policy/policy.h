/* policy: the agent-facing API of the policy library (issue #4 builds the
 * library; this header is the contract the agent codes against).
 *
 * A policy_slice is everything one agent enforces for its own workload: its
 * inbound decision table, its mTLS mode and default action, the meshed
 * peers it may call (address -> expected SPIFFE ID, and the ports the
 * server side would allow), and its egress rules. A slice comes either from
 * a cinch.v1.Snapshot (live mode, streamed by cinch-control) or from policy
 * and workload files compiled locally (static mode); both paths end in the
 * same structure, so a decision is the same wherever it is made.
 *
 * Lifetime: a slice is immutable once built and reference-counted. The
 * agent publishes one as "current"; each connection takes a reference when
 * it is accepted, so a slice never changes under a decision being made. A
 * policy push does reach live connections, though: the agent decides its
 * open connections again with the new slice and closes those it denies
 * (unless told to keep them: the agent's proxy_set_material). Deciding
 * never allocates and never fails: every input gets a verdict, and every
 * verdict names the rule that made it or why none did.
 */
#ifndef CINCH_POLICY_H
#define CINCH_POLICY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct policy_slice;
struct Cinch__V1__Snapshot;

enum policy_verdict {
	POLICY_ALLOW = 0,
	POLICY_DENY,
	POLICY_AUDIT_DENY, /* would be denied; allowed because of audit mode */
};

enum policy_mtls {
	POLICY_MTLS_STRICT = 0,
	POLICY_MTLS_PERMISSIVE,
};

/* The outcome of one decision. Strings are borrowed from the slice (or
 * static) and live as long as the caller's reference to the slice. */
struct policy_decision {
	enum policy_verdict verdict;
	const char *rule;   /* "shop/api-from-web#0"; NULL when no rule matched */
	const char *reason; /* e.g. "no rule allows spiffe://.../sa/web on port 5432" */
};

/* An error while building a slice: where and what, for logs and CLIs. */
struct policy_error {
	char file[256];	  /* "" when not from a file */
	int line, column; /* 0 when unknown */
	char path[128];	  /* field path, "spec.from[1].identities[0]" */
	char msg[256];
	int whole_set; /* a conflict between documents (two with one name): the
			* place is the later one's, but neither alone is wrong */
};

/* The trust domain of the workloads' identities when none is given. */
#define POLICY_TRUST_DOMAIN_DEFAULT "cluster.local"

/* Static mode: parse the policy directory/file and the workload list, find
 * the workload `self` ("<ns>/<name>"), or when NULL the workload owning one
 * of `addrs` (the agent's interface addresses), and compile its slice, the
 * workloads' identities in `trust_domain`. *out is set only on success (a
 * new reference). -EINVAL with *err filled on any invalid input (an invalid
 * trust domain too); nothing partial is ever returned. */
int policy_slice_load(struct policy_slice **out, const char *trust_domain, const char *policy_path,
		      const char *workloads_path, const char *self,
		      const struct sockaddr_storage *addrs, size_t n_addrs,
		      struct policy_error *err) __attribute__((warn_unused_result));

/* Live mode: validate and load a snapshot. *out set only on success. */
int policy_slice_from_snapshot(struct policy_slice **out, const struct Cinch__V1__Snapshot *snap,
			       struct policy_error *err) __attribute__((warn_unused_result));

struct policy_slice *policy_slice_ref(struct policy_slice *s);
void policy_slice_unref(struct policy_slice *s); /* NULL is a no-op */

/* Inbound: may `spiffe_id` (NULL for a plaintext caller, then `src` is
 * decided against unauthenticated ipBlocks, and only in PERMISSIVE mode)
 * reach this workload on `port`? */
void policy_slice_decide_inbound(const struct policy_slice *s, const char *spiffe_id,
				 const struct sockaddr *src, uint16_t port,
				 struct policy_decision *out);

/* Outbound to a meshed destination: the SPIFFE ID the server at `dst` must
 * present, or NULL when `dst` is not a peer (a workload that admits this
 * one). When not NULL and *out says DENY, the server side is known to
 * refuse us on `port`. */
const char *policy_slice_peer(const struct policy_slice *s, const struct sockaddr *dst,
			      uint16_t port, struct policy_decision *out);

/* Outbound plaintext to a destination that is not a peer: refused when
 * `dst` is meshed (policy_slice_meshed: a meshed workload that does not
 * admit us), whatever the EgressPolicies say; else an EgressPolicy decides. */
void policy_slice_decide_egress(const struct policy_slice *s, const struct sockaddr *dst,
				uint16_t port, struct policy_decision *out);

/* 1 when `dst` is in the snapshot's meshed set (meshed_cidrs): the address
 * of a meshed workload, to which plaintext is never sent. */
int policy_slice_meshed(const struct policy_slice *s, const struct sockaddr *dst);

/* For explaining a decision: every inbound rule in evaluation order, with
 * whether its ports include `port` and whether one of its sources admits
 * the caller (same arguments as decide_inbound). */
typedef void (*policy_rule_cb)(void *arg, const char *rule, int port_match, int source_match);
void policy_slice_each_rule(const struct policy_slice *s, const char *spiffe_id,
			    const struct sockaddr *src, uint16_t port, policy_rule_cb cb,
			    void *arg);

/* Services (Snapshot.services): what a call to a virtual IP may reach.
 * Everything borrowed from the slice. */
struct policy_endpoint {
	const struct sockaddr_storage *addrs; /* port 0 */
	size_t n_addrs;
	const char *addr_text; /* the first address, for logs and keys */
	int ready, serving, terminating;
	const char *spiffe_id;	      /* "" outside the mesh (egress rules decide) */
	const char *workload;	      /* "<ns>/<name>"; "" outside the mesh */
	const uint32_t *target_ports; /* per Service port; 0: not to be used */
};

struct policy_service_port {
	const char *name;
	uint16_t port;
};

struct policy_service {
	const char *key; /* "<ns>/<name>" */
	const struct policy_service_port *ports;
	size_t n_ports;
	const struct policy_endpoint *eps;
	size_t n_eps;
};

/* The Service whose virtual IP `dst` is, or NULL; *port_index is then the
 * index of `port` among its ports, or SIZE_MAX when it has no such port.
 * A binary search: no allocation. */
const struct policy_service *policy_slice_service(const struct policy_slice *s,
						  const struct sockaddr *dst, uint16_t port,
						  size_t *port_index);
/* The i-th Service (i < policy_slice_n_services), in the snapshot's order. */
size_t policy_slice_n_services(const struct policy_slice *s);
const struct policy_service *policy_slice_service_at(const struct policy_slice *s, size_t i);

enum policy_mtls policy_slice_mtls(const struct policy_slice *s);
const char *policy_slice_version(const struct policy_slice *s);
/* This workload: "<ns>/<name>" and its SPIFFE ID. */
const char *policy_slice_workload(const struct policy_slice *s);
const char *policy_slice_spiffe_id(const struct policy_slice *s);

const char *policy_verdict_name(enum policy_verdict v); /* "allow", "deny", "audit-deny" */

#endif
