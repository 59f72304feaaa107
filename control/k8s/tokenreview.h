/* tokenreview: who a Kubernetes service-account token belongs to, asked of
 * the API server (authentication.k8s.io/v1 TokenReview), for cinch-control
 * to issue spiffe://<td>/ns/<ns>/sa/<sa> to an agent's first CSR.
 *
 * Accepted only when the API server authenticates the token for our
 * audience ("cinch"), the token is bound to a pod (the pod-name and pod-uid
 * claims of projected tokens; legacy Secret tokens are refused), and that
 * pod exists with the same uid, is not being deleted, has not finished and
 * runs as the same service account. The token itself is never logged or
 * kept.
 *
 * Anyone who can reach the control's gRPC port can send a Kubernetes token
 * and so make it ask the API server, so the reviews one control starts are
 * bounded (struct tokenreview_limit): at most max_inflight at once (a review
 * counts until its callback, also when the Sign call that asked for it went
 * away) and a token bucket of `rate` new reviews per second with room for
 * `burst`. A review over either is not started: the caller refuses the call
 * (UNAVAILABLE, the agent retries with backoff). */
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

#define TOKENREVIEW_MAX_INFLIGHT_DEFAULT 32
#define TOKENREVIEW_RATE_DEFAULT	 20 /* per second; the burst is twice that */

struct tokenreview_limit {
	unsigned max_inflight;
	unsigned rate, burst;
	/* state, from tokenreview_limit_init */
	unsigned inflight;
	double tokens;
	double last_s; /* CLOCK_MONOTONIC of the last refill */
};

/* The bucket starts full. */
void tokenreview_limit_init(struct tokenreview_limit *l, unsigned max_inflight, unsigned rate,
			    unsigned burst);

/* Borrows `token` and `audience` for the call and `limit` (NULL: no limit)
 * until the callback. The callback runs exactly once when this returns 0,
 * never otherwise. -EBUSY: max_inflight reviews are running; -EAGAIN: over
 * the rate; -EINVAL, -ENOMEM, or kapi's errors. */
int tokenreview_start(struct kapi *k, struct tokenreview_limit *limit, const char *token,
		      const char *audience, tokenreview_cb cb, void *arg)
	__attribute__((warn_unused_result));

#endif
