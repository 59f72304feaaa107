/* crdsource: the policy documents platform teams apply as Kubernetes
 * objects (AllowPolicy, MeshPolicy, EgressPolicy and the cluster-scoped
 * GuardrailPolicy in cinch.dev/v1alpha1), and v1 Namespaces for their
 * labels (namespaceSelector), fed into the same policy store as files.
 *
 * One kwatch per kind. Each object is reduced to what the policy library
 * reads (apiVersion, kind, metadata.name/namespace/labels, spec); server
 * fields (uid, managedFields, status, ...) are dropped. After changes
 * settle, the whole set goes to the callback, sorted by kind, namespace and
 * name, and the consumer validates it as one policy set. The first set
 * goes out only once every kind has been listed.
 *
 * The consumer reports back which objects it rejected and why
 * (crdsource_report); each object then gets a status condition
 * `Accepted` (True, or False with reason Invalid and the library's error
 * message), written with a merge patch to its status subresource, and
 * only when the condition changes. */
#ifndef CINCH_CRDSOURCE_H
#define CINCH_CRDSOURCE_H

#include "kapi.h"

#define CRDSOURCE_SETTLE_MS 100

struct crdsource;

/* `docs`: JSON array of policy documents, borrowed for the call. */
typedef void (*crdsource_cb)(void *arg, json_t *docs);

int crdsource_start(uv_loop_t *loop, struct kapi *k, crdsource_cb cb, void *arg,
		    struct crdsource **out) __attribute__((warn_unused_result));
void crdsource_stop(struct crdsource *cs);

/* After a callback: `rejected` maps "<Kind>/<ns>/<name>" to the error
 * message (borrowed; NULL or empty: everything was accepted). Objects not
 * named are marked Accepted=True. */
void crdsource_report(struct crdsource *cs, const json_t *rejected);

/* The document for one API object, new; NULL when malformed. */
json_t *crdsource_document(const json_t *obj);
/* The same for an item of a list of `kind` (api_version): the API server
 * encodes a built-in kind's list items (Namespaces) without apiVersion and
 * kind (only watch events' objects carry them), so an item with neither is
 * taken as what the list says it is. */
json_t *crdsource_list_document(const json_t *obj, const char *kind, const char *api_version);

#endif
