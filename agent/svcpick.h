/* svcpick: which endpoint of a Service an outbound call to its virtual IP
 * goes to (the agent's own load balancing, as kube-proxy would otherwise
 * do it blindly).
 *
 * Candidates: the endpoints that serve the called port (a target port not
 * 0: served, and admitted by their policy; compile.h). Of those, the ready
 * ones; only when none is ready, the serving ones (terminating but still
 * serving, EndpointSlice semantics). An endpoint that failed to connect or
 * handshake is skipped until its backoff ends (1 s, doubling at each
 * further failure up to 30 s), unless every candidate is backing off:
 * then the one whose backoff ends first is tried rather than none. A
 * success clears it.
 *
 * Choice: power of two choices. Two distinct candidates at random, the
 * one with the lower cost wins: (in-flight connections + 1) x its recent
 * connect+handshake latency (an EWMA, decaying towards 0 while it is not
 * measured, so an idle endpoint is tried again and measured afresh).
 * Costs within SVCPICK_EQUAL of each other count as equal (the first
 * drawn wins): latency noise, or one cold first handshake, must not send
 * every call to one of two equal endpoints. P2C avoids both the herd of
 * least-loaded (every caller on the one that looked best) and random's
 * blindness to a slow or busy endpoint.
 *
 * State: one entry per (Service, endpoint address), kept across policy
 * snapshots (so a backoff survives an unrelated push), held by the
 * connections that use it (svcpick_put) and dropped by svcpick_sweep once
 * unused and no longer in the slice. No libuv: times are passed in, so
 * the unit test drives the clock. */
#ifndef CINCH_AGENT_SVCPICK_H
#define CINCH_AGENT_SVCPICK_H

#include <stddef.h>
#include <stdint.h>

#include "policy.h"

#define SVCPICK_BACKOFF_MS     1000u
#define SVCPICK_BACKOFF_MAX_MS 30000u
#define SVCPICK_EWMA_TAU_MS    1000u /* decay of an unmeasured latency */
#define SVCPICK_EQUAL	       1.5   /* cost ratio below which two are equal */

struct svcpick;
struct svcpick_ep; /* one endpoint's state (held while a connection uses it) */

/* seed: the random choices' (tests pass a fixed one). NULL on ENOMEM. */
struct svcpick *svcpick_new(uint64_t seed);
void svcpick_free(struct svcpick *p); /* NULL is a no-op */

enum svcpick_why {
	SVCPICK_OK = 0,
	SVCPICK_NO_PORT,     /* the Service has no such port */
	SVCPICK_NO_ENDPOINT, /* nothing serves that port for this caller */
	SVCPICK_NO_READY,    /* endpoints, but none ready nor serving */
	SVCPICK_ALL_TRIED,   /* every candidate already tried by this call */
	SVCPICK_NOMEM,
};
/* The refusal reason: static text (the agent's denial counters keep it). */
const char *svcpick_why_text(enum svcpick_why w);

/* An endpoint of `v` (borrowed) for a call to its port_index-th port
 * (SIZE_MAX: none such), skipping the states in tried[0..n_tried) (the
 * ones this call already failed on). SVCPICK_OK and *ep (the index in
 * v->eps) and *st (held: svcpick_put; one more in flight), or why not. */
enum svcpick_why svcpick_choose(struct svcpick *p, const struct policy_service *v,
				size_t port_index, uint64_t now_ms, struct svcpick_ep *const *tried,
				size_t n_tried, size_t *ep, struct svcpick_ep **st);
/* The outcome of the connect (+ handshake) to a chosen endpoint: ok with
 * how long it took, or failed (no longer in flight; backoff). */
void svcpick_done(struct svcpick_ep *st, int ok, uint64_t latency_us, uint64_t now_ms);
/* The connection lets st go (in_flight: it was still counted, i.e. its
 * attempt did not fail). */
void svcpick_put(struct svcpick_ep *st, int in_flight);
/* Drops the unused states of endpoints `slice` no longer has. */
void svcpick_sweep(struct svcpick *p, const struct policy_slice *slice);
/* For tests and the admin page: the state's in-flight count, and whether
 * it is backing off at now_ms. */
unsigned svcpick_in_flight(const struct svcpick_ep *st);
int svcpick_backing_off(const struct svcpick_ep *st, uint64_t now_ms);
size_t svcpick_states(const struct svcpick *p);

#endif
