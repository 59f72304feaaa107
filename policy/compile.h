/* compile: a validated policy set plus the workload registry, compiled into
 * what one workload's agent enforces: a cinch.v1.Snapshot (its inbound
 * rules in evaluation order, mTLS mode and default action, the identity,
 * addresses and allowed ports of every workload it may call, its egress
 * rules). The control plane streams these; static mode loads the same
 * bytes, so a decision is the same wherever it is made.
 *
 * Peers are the workloads whose policy admits this workload on some port
 * (allowed_ports: the union of those rules' ports), and the workloads that
 * admit everyone (nothing selects them and their default is audit, or
 * only audit-mode policies do: [1-65535]). A workload that would refuse
 * this one on every port is not a peer: its agent would refuse the
 * connection, and this one's refuses it before connecting, because it is
 * in the meshed set.
 *
 * Every snapshot carries the meshed set (meshed_cidrs): the addresses of
 * all workloads, as the fewest CIDRs covering exactly them. It is what
 * lets an agent tell "meshed, and does not admit me" from "outside the
 * mesh": the former is refused whatever the egress rules say, so no app
 * plaintext ever goes to a meshed pod. Computed once per index, shared by
 * every snapshot. The virtual IPs of every Service are in it too.
 *
 * Services (ksvc.h): a snapshot carries the Services with a virtual IP its
 * workload may call: at least one endpoint admits it on that endpoint's
 * target port (by the peers' allowed ports), or an endpoint is outside
 * the mesh (egress rules decide at the agent), or the Service has no
 * endpoint at all (the agent refuses at once, "no ready endpoint"). Each
 * with every virtual IP, its TCP ports, and its endpoints (a meshed pod's
 * entries of several EndpointSlices merged): addresses, conditions,
 * SPIFFE ID and workload when meshed, and per Service port the target
 * port (0: not served, or not admitted). In namespace and name order,
 * endpoints by address, so versions compare by bytes. */
#ifndef CINCH_POLICY_COMPILE_H
#define CINCH_POLICY_COMPILE_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* An index over a validated set, for building its snapshots. Borrows `s`
 * (it must outlive the index). 0 and *out, -ENOMEM, -EINVAL. */
struct pcompiled;
int pcompile_new(const struct pset *s, struct pcompiled **out) __attribute__((warn_unused_result));
void pcompile_free(struct pcompiled *c);
/* The index of workload `w` (an element of the set's workloads). */
size_t pcompile_index_of(const struct pcompiled *c, const struct pworkload *w);

/* The packed Snapshot of the w-th workload, with its version set (a digest
 * of the rest). 0 and *buf (free()) / *len, or -ENOMEM. Not reentrant on
 * one index (it sorts the workload's peer list in place). */
int pcompile_snapshot(const struct pcompiled *c, size_t w, uint8_t **buf, size_t *len)
	__attribute__((warn_unused_result));

/* The workload named "<ns>/<name>", or the one owning one of `addrs`;
 * NULL when none (or, by address, several) match. */
const struct pworkload *pcompile_find(const struct pset *s, const char *self,
				      const struct sockaddr_storage *addrs, size_t n_addrs);

/* spiffe://<td>/ns/<ns>/sa/<sa> of a workload into buf. */
int pcompile_spiffe_id(const struct pset *s, const struct pworkload *w, char *buf, size_t len);

#endif
