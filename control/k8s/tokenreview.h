/* tokenreview: who a Kubernetes service-account token belongs to, asked of
 * the API server (authentication.k8s.io/v1 TokenReview), for cinch-control
 * to issue spiffe://<td>/ns/<ns>/sa/<sa> to an agent's first CSR.
 *
 * Accepted only when the API server authenticates the token for our
 * audience ("cinch"), the token is bound to a pod (the pod-name and pod-uid
 * claims of projected tokens; legacy Secret tokens are refused), and that
 * pod exists with the same uid, is not being deleted, has not finished and
 * runs as the same service account. The token itself is never logged or
 * kept. */
#ifndef CINCH_TOKENREVIEW_H
#define CINCH_TOKENREVIEW_H

#include "kapi.h"

struct tokenreview_identity {
	char ns[64];
	char sa[254];
	char pod[254];
	char pod_uid[64];
};

/* status 0: authenticated, `id` filled. -EACCES: the token does not
 * authenticate a running pod's service account (reason says why). Any
 * other negative errno: the API server could not answer (unreachable,
 * timeout, HTTP error): refuse and let the agent retry. `id` and `reason`
 * are borrowed for the call. */
typedef void (*tokenreview_cb)(void *arg, int status, const struct tokenreview_identity *id,
			       const char *reason);

/* Borrows `token` and `audience` for the call. The callback runs exactly
 * once when this returns 0, never otherwise. */
int tokenreview_start(struct kapi *k, const char *token, const char *audience,
		      tokenreview_cb cb, void *arg) __attribute__((warn_unused_result));

#endif
