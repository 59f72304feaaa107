/* compile: a validated policy set plus the workload registry, compiled into
 * what one workload's agent enforces: a cinch.v1.Snapshot (its inbound
 * rules in evaluation order, mTLS mode and default action, the identity,
 * addresses and allowed ports of every workload it may call, its egress
 * rules). The control plane streams these; static mode loads the same
 * bytes, so a decision is the same wherever it is made.
 *
 * A peer's allowed_ports, seen from the caller: empty means "not checked",
 * [1-65535] every port, [0-0] none (the server's policy would refuse the
 * caller on every port). */
#ifndef CINCH_POLICY_COMPILE_H
#define CINCH_POLICY_COMPILE_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* The packed Snapshot of workload `w` (an element of s->workloads), with
 * its version set (a digest of the rest). 0 and *buf (free()) / *len, or
 * -ENOMEM. */
int pcompile_snapshot(const struct pset *s, const struct pworkload *w, uint8_t **buf, size_t *len)
	__attribute__((warn_unused_result));

/* The workload named "<ns>/<name>", or the one owning one of `addrs`;
 * NULL when none (or, by address, several) match. */
const struct pworkload *pcompile_find(const struct pset *s, const char *self,
				      const struct sockaddr_storage *addrs, size_t n_addrs);

/* spiffe://<td>/ns/<ns>/sa/<sa> of a workload into buf. */
int pcompile_spiffe_id(const struct pset *s, const struct pworkload *w, char *buf, size_t len);

#endif
