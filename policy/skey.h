/* skey: the keys of the slice's identity index (policy/slice.c), and a
 * caller's SPIFFE ID read once per decision.
 *
 * The index holds exact IDs and prefixes ending in '/' (a wildcard's, a
 * namespace's "spiffe://<td>/ns/<ns>/sa/"). A caller's ID has two keys:
 * itself, and itself up to and with its last '/'. skey_id_scan() checks in
 * one pass over the bytes that the ID is a SPIFFE ID (exactly the set
 * spiffe_id_validate() accepts: tests/unit/policy/skey_test.c compares
 * them) and finds its length and last '/'; the two hashes are then taken a
 * word at a time. The hash of a key is that of its part up to the last '/'
 * carried on over the rest, so the hash of an ID's prefix is a step of the
 * hash of the ID: both cost one pass.
 *
 * Pure functions with no allocation: not for hostile hash flooding (the
 * index's keys are the operator's rules, a caller only picks where its
 * probe starts). */
#ifndef CINCH_POLICY_SKEY_H
#define CINCH_POLICY_SKEY_H

#include <stddef.h>
#include <stdint.h>

/* The hash of k[0..len) (no NUL needed). */
uint64_t skey_hash(const char *k, size_t len);

struct skey_id {
	size_t len;	 /* strlen */
	size_t l_last;	 /* up to and with the last '/' */
	uint64_t h;	 /* skey_hash(id, len) */
	uint64_t h_last; /* skey_hash(id, l_last) */
};

/* 0 and *out when `id` (NUL-terminated) is a SPIFFE ID; -EINVAL (*out
 * undefined) when spiffe_id_validate(id, strlen(id)) would refuse it. */
int skey_id_scan(const char *id, struct skey_id *out);

#endif
