/* webhookcert: the injection webhook's serving certificate, issued by
 * cinch-control's own CA, so an install needs no certificate made by hand.
 *
 * The certificate names the Service the API server calls, DNS
 * <service>.<namespace>.svc and <service>.<namespace>.svc.cluster.local
 * (no URI SAN: it is a TLS server certificate, not a mesh identity), over
 * a P-256 key generated here that never leaves the process's memory. It
 * lives `lifetime_s` (24 h by default; clamped to the CA) and is issued
 * again at half its life, and at once when the CA changes (root
 * rotation); each new context goes to the webhook server (webhook_set_tls)
 * for new connections, open ones keep theirs.
 *
 * The API server trusts it through the caBundle of the webhook's
 * MutatingWebhookConfiguration (`configuration`, cinch-injector): with a
 * Kubernetes client, this module keeps that field equal to the base64 of
 * the CA's trust bundle (PEM, every root in force, so a prepared next root
 * is trusted before it signs). It GETs the object at start, after each
 * issue, on every CA change and at least every WEBHOOKCERT_RESYNC_MS (an
 * apply that wiped caBundle is repaired), and PATCHes only the webhooks
 * whose clientConfig.service is ours, with a strategic merge patch keyed
 * by webhook name and carrying metadata.resourceVersion (409 on a
 * concurrent write: read again). RBAC: get and patch on that one object.
 *
 * States: ISSUED (timer to renewal) and, independently, the caBundle sync:
 * IDLE -> GET -> (PATCH) -> IDLE, errors back off 1 s doubling to 60 s. */
#ifndef CINCH_WEBHOOKCERT_H
#define CINCH_WEBHOOKCERT_H

#include <stdint.h>
#include <uv.h>

#include "mtls.h"
#include "ca/ca.h"
#include "kapi.h"
#include "webhook.h"

#define WEBHOOKCERT_LIFETIME_S	   (24 * 3600)
#define WEBHOOKCERT_LIFETIME_MIN_S 300
#define WEBHOOKCERT_LIFETIME_MAX_S (7 * 86400)
#define WEBHOOKCERT_RESYNC_MS	   60000
#define WEBHOOKCERT_SERVICE	   "cinch-control"
#define WEBHOOKCERT_NAMESPACE	   "cinch-system"
#define WEBHOOKCERT_CONFIGURATION  "cinch-injector"

struct webhookcert_config {
	const char *service, *namespace; /* copied */
	long lifetime_s;
	const char *configuration; /* the MutatingWebhookConfiguration (copied) */
	struct kapi *kapi;	   /* borrowed; NULL: caBundle is not kept */
};

struct webhookcert;

/* Issues the first certificate from `ca` (borrowed until the next
 * webhookcert_set_ca; it must outlive that) and starts the renewal timer
 * and, with a client, the caBundle sync. 0 and *out, or a negative errno
 * with a static reason in *why. */
int webhookcert_start(uv_loop_t *loop, const struct webhookcert_config *cfg, const struct ca *ca,
		      struct webhookcert **out, const char **why)
	__attribute__((warn_unused_result));
/* The context new connections should get (borrowed). */
struct mtls_ctx *webhookcert_get0_tls(const struct webhookcert *wc);
/* Renewals from now on go to `w` too (borrowed until webhookcert_stop). */
void webhookcert_attach(struct webhookcert *wc, struct webhook *w);
/* The CA changed (rotation): a new certificate at once and caBundle
 * brought to the new bundle. */
void webhookcert_set_ca(struct webhookcert *wc, const struct ca *ca);
/* No callback or request after this; memory goes with the timers' close
 * (run the loop). NULL: no-op. */
void webhookcert_stop(struct webhookcert *wc);

#endif
