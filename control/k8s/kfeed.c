/* kfeed: see kfeed.h. Each source's callback hands its whole current set
 * to the store and rebuilds; the store's verdict callback reports on the
 * policy objects. */
#include "kfeed.h"

#include <errno.h>
#include <stdlib.h>

#include "crdsource.h"
#include "podsource.h"
#include "svcsource.h"

struct kfeed {
	struct store *st;
	struct podsource *pods;
	struct crdsource *crds;
	struct svcsource *svcs;
};

static void kfeed_pods_cb(void *arg, json_t *workloads)
{
	struct kfeed *kf = arg;

	store_set_docs(kf->st, STORE_FEED_PODS, workloads);
	(void)store_apply(kf->st, NULL); /* a rejection is logged by the store */
}

static void kfeed_crds_cb(void *arg, json_t *docs)
{
	struct kfeed *kf = arg;

	store_set_docs(kf->st, STORE_FEED_POLICIES, docs);
	(void)store_apply(kf->st, NULL);
}

static void kfeed_svcs_cb(void *arg, json_t *docs)
{
	struct kfeed *kf = arg;

	store_set_docs(kf->st, STORE_FEED_SERVICES, docs);
	(void)store_apply(kf->st, NULL);
}

static void kfeed_verdict_cb(void *arg, const json_t *rejected)
{
	struct kfeed *kf = arg;

	crdsource_report(kf->crds, rejected);
}

int kfeed_start(uv_loop_t *loop, struct kapi *k, struct store *st, struct kfeed **out)
{
	struct kfeed *kf = calloc(1, sizeof(*kf));
	int rc;

	if (!kf)
		return -ENOMEM;
	kf->st = st;
	store_expect(st, STORE_FEED_PODS);
	store_expect(st, STORE_FEED_POLICIES);
	store_expect(st, STORE_FEED_SERVICES);
	if ((rc = crdsource_start(loop, k, kfeed_crds_cb, kf, &kf->crds)) < 0 ||
	    (rc = podsource_start(loop, k, kfeed_pods_cb, kf, &kf->pods)) < 0 ||
	    (rc = svcsource_start(loop, k, kfeed_svcs_cb, kf, &kf->svcs)) < 0) {
		kfeed_stop(kf);
		return rc;
	}
	store_set_verdict_cb(st, kfeed_verdict_cb, kf);
	*out = kf;
	return 0;
}

void kfeed_stop(struct kfeed *kf)
{
	if (!kf)
		return;
	store_set_verdict_cb(kf->st, NULL, NULL);
	if (kf->pods)
		podsource_stop(kf->pods);
	if (kf->crds)
		crdsource_stop(kf->crds);
	if (kf->svcs)
		svcsource_stop(kf->svcs);
	free(kf);
}
