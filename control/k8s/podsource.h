/* podsource: the workload registry fed from the Kubernetes API.
 *
 * Watches pods (kwatch) and keeps one `kind: Workload` document (the
 * format of docs/policy.md: metadata.name/namespace/labels,
 * spec.serviceAccount, spec.addresses) per meshed pod: injected by Cinch
 * (annotation cinch.dev/injected), not on the host network, with an IP,
 * and neither finished nor being deleted. Pods still in their init phase
 * count: their native-sidecar agent needs its policy before the app starts.
 *
 * Changes are coalesced for PODSOURCE_SETTLE_MS and then the whole current
 * set goes to the callback, sorted by namespace/name, so a registry built
 * from it is the same whatever order events came in. */
#ifndef CINCH_PODSOURCE_H
#define CINCH_PODSOURCE_H

#include "kapi.h"

#define PODSOURCE_SETTLE_MS 100

struct podsource;

/* `workloads` is a JSON array, borrowed for the call. */
typedef void (*podsource_cb)(void *arg, json_t *workloads);

int podsource_start(uv_loop_t *loop, struct kapi *k, podsource_cb cb, void *arg,
		    struct podsource **out) __attribute__((warn_unused_result));
/* No callback runs after this returns; memory goes once the loop runs. */
void podsource_stop(struct podsource *ps);

/* The Workload document for `pod`, new; NULL when the pod is not meshed
 * and alive (or is malformed). */
json_t *podsource_workload(const json_t *pod);

#endif
