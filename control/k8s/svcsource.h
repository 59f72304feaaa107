/* svcsource: the Services of the cluster, fed into the configuration
 * store like the pods and the policy objects (kfeed.h).
 *
 * Two kwatches, `v1 services` and `discovery.k8s.io/v1 endpointslices`,
 * across all namespaces, into one view keyed "<Kind>/<ns>/<name>". Each
 * object is kept as the API server sent it (the registry's Service and
 * EndpointSlice parser, policy/ksvc.h, reads that format and ignores what
 * it does not use), less metadata.managedFields (the largest part of most
 * objects, read by nobody here), and with apiVersion and kind set: the
 * items of a list carry neither, only watch events do. An object the
 * parser refuses is left out by the store (config_rejected names it), the
 * rest of the set stays. After changes settle, the whole set goes to the
 * callback, sorted by key; the first set goes out once both kinds were
 * listed. */
#ifndef CINCH_SVCSOURCE_H
#define CINCH_SVCSOURCE_H

#include "kapi.h"

#define SVCSOURCE_SETTLE_MS 100

struct svcsource;

/* `docs`: JSON array of Service and EndpointSlice documents, borrowed for
 * the call. */
typedef void (*svcsource_cb)(void *arg, json_t *docs);

int svcsource_start(uv_loop_t *loop, struct kapi *k, svcsource_cb cb, void *arg,
		    struct svcsource **out) __attribute__((warn_unused_result));
/* No callback runs after this returns; memory goes once the loop runs. */
void svcsource_stop(struct svcsource *ss);

/* The document kept for one API object of `kind` ("Service" or
 * "EndpointSlice"), new; NULL when it has no metadata.name/namespace. */
json_t *svcsource_document(const char *kind, const json_t *obj);

#endif
