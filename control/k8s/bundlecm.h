/* bundlecm: the trust bundle where injected pods read it, with no step by
 * the operator. Every namespace that has injection on (the label the
 * webhook's namespaceSelector matches, cinch.dev/inject=enabled) gets a
 * ConfigMap cinch-trust-bundle whose key bundle.pem is the control's
 * trust bundle (PEM, every root in force); the injected agent mounts it
 * (inject.c) to verify the control at bootstrap. Root rotation changes the
 * bundle (bundlecm_set_bundle) and every ConfigMap follows.
 *
 * Two watches (kwatch: list, then watch): the selected namespaces
 * (labelSelector) and the ConfigMaps of that one name in all namespaces
 * (fieldSelector metadata.name, which RBAC can limit by resourceNames).
 * Once both are listed, every change reconciles: a selected namespace
 * without the ConfigMap gets one (POST, labelled
 * app.kubernetes.io/managed-by=cinch-control); one of ours with another
 * bundle is updated (PUT of the object as watched, so its resourceVersion
 * makes a concurrent write a 409, not a lost update); one WITHOUT our
 * label is never written: it is reported (log event
 * trust_bundle_configmap_foreign, once per version, and the count in
 * bundlecm_foreign) and left alone. Nothing is ever deleted: a namespace
 * that leaves the mesh keeps its ConfigMap (pods still running there may
 * mount it). Failed writes are retried, 1 s doubling to 60 s; a 409 waits
 * for the watch to bring the newer object. Several replicas may run this
 * at once: they write the same content and the loser of a race gets 409.
 *
 * RBAC: namespaces list/watch; configmaps list/watch/update limited to the
 * name, create (a create cannot be limited by name). */
#ifndef CINCH_BUNDLECM_H
#define CINCH_BUNDLECM_H

#include <uv.h>

#include "kapi.h"

#define BUNDLECM_NAME	   "cinch-trust-bundle"
#define BUNDLECM_KEY	   "bundle.pem"
#define BUNDLECM_NS_LABEL  "cinch.dev/inject"
#define BUNDLECM_NS_VALUE  "enabled"
#define BUNDLECM_OWNER_KEY "app.kubernetes.io/managed-by"
#define BUNDLECM_OWNER	   "cinch-control"

struct bundlecm;

/* Starts the watches; `pem` is copied. Borrows k until bundlecm_stop. */
int bundlecm_start(uv_loop_t *loop, struct kapi *k, const char *pem, struct bundlecm **out)
	__attribute__((warn_unused_result));
/* A new bundle (copied): every ConfigMap of ours follows. -ENOMEM (the
 * previous bundle stays). */
int bundlecm_set_bundle(struct bundlecm *bc, const char *pem) __attribute__((warn_unused_result));
/* Selected namespaces whose ConfigMap of that name is not ours. */
unsigned bundlecm_foreign(const struct bundlecm *bc);
/* No callback after this; memory goes once the timers are closed and the
 * requests in flight have ended (kapi_close cancels them). NULL: no-op. */
void bundlecm_stop(struct bundlecm *bc);

#endif
