/* kfeed: the Kubernetes feeders of the configuration store (store.h):
 * the pod source's Workloads, the CRD source's policy documents and the
 * Service source's Services and EndpointSlices join the file documents in
 * one set. The store publishes nothing before all three have listed once
 * (store_expect), and its verdicts go back to the policy
 * objects as their Accepted condition (crdsource_report): a rejected
 * object says why on itself, with the field path and the library's
 * message. */
#ifndef CINCH_KFEED_H
#define CINCH_KFEED_H

#include "kapi.h"
#include "store.h"

struct kfeed;

/* Borrows `k` and `st`; both must outlive the feed. */
int kfeed_start(uv_loop_t *loop, struct kapi *k, struct store *st, struct kfeed **out)
	__attribute__((warn_unused_result));
/* No callback runs after this; the sources' memory goes once the loop has
 * run (kapi_close afterwards cancels their requests). NULL is a no-op. */
void kfeed_stop(struct kfeed *kf);

#endif
