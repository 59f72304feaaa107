/* webhookcert: see webhookcert.h. Two timers: `renew` (the certificate)
 * and `sync` (the caBundle: resync and backoff); one API request at a time
 * (wc->req). The struct is freed when both timers' closes are done. */
#include "webhookcert.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/base64.h>
#include <openssl/x509.h>

#include "log.h"

#define WC_MWC_PATH	  "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"
#define WC_BACKOFF_MIN_MS 1000
#define WC_BACKOFF_MAX_MS 60000
#define WC_RETRY_ISSUE_MS 10000

struct webhookcert {
	const struct ca *ca;
	struct kapi *kapi;
	struct webhook *server;
	struct mtls_ctx *tls;
	char *service, *namespace, *configuration;
	char *want;	  /* base64 of the bundle PEM: the caBundle we keep */
	char dns[2][300]; /* the certificate's names */
	long lifetime_s;
	uint64_t resync_ms;   /* min(WEBHOOKCERT_RESYNC_MS, the renewal interval) */
	uint64_t backoff_ms;  /* 0: no failure since the last success */
	struct kapi_req *req; /* the GET or PATCH in flight */
	int again;	      /* a sync was asked for while one was in flight */
	int warned_not_ours;  /* webhook_configuration_not_ours logged */
	int stopped;
	int closing; /* timers whose close is still pending */
	uv_timer_t renew, sync;
};

static void wc_sync(struct webhookcert *wc);

/* base64(PEM of the bundle), new string. */
static char *wc_bundle_b64(const struct ca *ca)
{
	char *pem = ca_bundle_pem(ca), *out = NULL;
	size_t len;

	if (pem && EVP_EncodedLength(&len, strlen(pem)) && (out = malloc(len)))
		EVP_EncodeBlock((uint8_t *)out, (const uint8_t *)pem, strlen(pem));
	free(pem);
	return out;
}

/* ---- the certificate */

/* A new certificate from the CA in force into a new context; the context
 * in use stays when this fails. 0 or a negative errno. */
static int wc_issue(struct webhookcert *wc)
{
	const char *dns[2] = {wc->dns[0], wc->dns[1]};
	STACK_OF(X509) *chain = ca_chain_new(wc->ca); /* intermediates, if any */
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	struct mtls_ctx *tls = NULL;
	int rc = -ENOMEM;

	if (!chain)
		return -ENOMEM;
	if ((rc = ca_issue_server(wc->ca, NULL, dns, 2, NULL, 0, wc->lifetime_s, &cert, &key)) <
		    0 ||
	    (rc = webhook_tls_new(cert, key, chain, &tls)) < 0)
		goto out;
	mtls_ctx_unref(wc->tls);
	wc->tls = tls;
	if (wc->server)
		webhook_set_tls(wc->server, tls);
	log_event(LOG_LVL_INFO, "webhook_cert_issued",
		  log_pack("{s:s, s:s, s:I}", "dns", wc->dns[0], "dns_fqdn", wc->dns[1],
			   "not_after", (json_int_t)mtls_ctx_not_after(tls)));
out:
	X509_free(cert);
	EVP_PKEY_free(key); /* BoringSSL clears the key's memory */
	sk_X509_pop_free(chain, X509_free);
	return rc;
}

static void wc_renew_cb(uv_timer_t *t);

/* Arms the renewal at half the certificate's remaining life (the CA may
 * have clamped it), or a retry after a failed issue. */
static void wc_arm(struct webhookcert *wc, int issued)
{
	int64_t left = mtls_ctx_not_after(wc->tls) - (int64_t)time(NULL);
	uint64_t delay = WC_RETRY_ISSUE_MS;

	if (issued)
		delay = left > 2 ? (uint64_t)left * 500 : 1000;
	uv_timer_start(&wc->renew, wc_renew_cb, delay, 0);
	wc->resync_ms = delay < WEBHOOKCERT_RESYNC_MS ? delay : WEBHOOKCERT_RESYNC_MS;
}

static void wc_issue_and_arm(struct webhookcert *wc, const char *trigger)
{
	int rc = wc_issue(wc);

	if (rc < 0)
		log_event(LOG_LVL_ERROR, "webhook_cert_renewal_failed",
			  log_pack("{s:s, s:s, s:I}", "trigger", trigger, "error", strerror(-rc),
				   "current_not_after", (json_int_t)mtls_ctx_not_after(wc->tls)));
	wc_arm(wc, rc == 0);
}

static void wc_renew_cb(uv_timer_t *t)
{
	struct webhookcert *wc = t->data;

	wc_issue_and_arm(wc, "half_lifetime");
	wc_sync(wc); /* also a resync of caBundle */
}

/* ---- caBundle */

static void wc_sync_cb(uv_timer_t *t)
{
	wc_sync(t->data);
}

/* The sync ended: the next one after the resync period, or a backoff. */
static void wc_sync_done(struct webhookcert *wc, int failed)
{
	uint64_t delay = wc->resync_ms;

	if (failed) {
		wc->backoff_ms = wc->backoff_ms ? wc->backoff_ms * 2 : WC_BACKOFF_MIN_MS;
		if (wc->backoff_ms > WC_BACKOFF_MAX_MS)
			wc->backoff_ms = WC_BACKOFF_MAX_MS;
		delay = wc->backoff_ms;
	} else {
		wc->backoff_ms = 0;
	}
	if (wc->again) {
		wc->again = 0;
		delay = 0;
	}
	uv_timer_start(&wc->sync, wc_sync_cb, delay, 0);
}

static void wc_sync_error(struct webhookcert *wc, const char *what, int status, long code,
			  const char *err)
{
	log_event(LOG_LVL_WARN, "webhook_ca_bundle_sync_failed",
		  log_pack("{s:s, s:s, s:i, s:s}", "configuration", wc->configuration, "step", what,
			   "http_status", (int)code, "error",
			   status < 0 ? (err ? err : strerror(-status)) : "HTTP error"));
}

static void wc_patch_cb(void *arg, int status, long code, json_t *body, const char *err)
{
	struct webhookcert *wc = arg;
	(void)body;

	wc->req = NULL;
	if (wc->stopped)
		return;
	if (status == 0 && code == 200) {
		log_event(LOG_LVL_INFO, "webhook_ca_bundle_patched",
			  log_pack("{s:s}", "configuration", wc->configuration));
		wc_sync_done(wc, 0);
	} else if (status == 0 && code == 409) { /* written meanwhile: read again */
		wc->again = 1;
		wc_sync_done(wc, 0);
	} else {
		wc_sync_error(wc, "patch", status, code, err);
		wc_sync_done(wc, 1);
	}
}

/* The strategic merge patch bringing every webhook of ours to `want`, or
 * NULL when none needs it (*ours: how many call our Service). */
static json_t *wc_patch_for(struct webhookcert *wc, const json_t *obj, size_t *ours)
{
	const json_t *hooks = json_object_get(obj, "webhooks"), *h;
	const char *rv = json_string_value(
		json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
	json_t *list = json_array(), *patch = NULL;
	size_t i;

	*ours = 0;
	json_array_foreach(hooks, i, h)
	{
		const json_t *cc = json_object_get(h, "clientConfig");
		const json_t *svc = json_object_get(cc, "service");
		const char *name = json_string_value(json_object_get(h, "name"));
		const char *sn = json_string_value(json_object_get(svc, "name"));
		const char *sns = json_string_value(json_object_get(svc, "namespace"));
		const char *have = json_string_value(json_object_get(cc, "caBundle"));

		if (!name || !sn || !sns || strcmp(sn, wc->service) || strcmp(sns, wc->namespace))
			continue; /* not ours: another Service, or a URL */
		(*ours)++;
		if (have && !strcmp(have, wc->want))
			continue;
		json_array_append_new(list, json_pack("{s:s, s:{s:s}}", "name", name,
						      "clientConfig", "caBundle", wc->want));
	}
	if (list && json_array_size(list) && rv)
		patch = json_pack("{s:{s:s}, s:O}", "metadata", "resourceVersion", rv, "webhooks",
				  list);
	json_decref(list);
	return patch;
}

static void wc_get_cb(void *arg, int status, long code, json_t *body, const char *err)
{
	struct webhookcert *wc = arg;
	char path[512];
	size_t ours;

	wc->req = NULL;
	if (wc->stopped)
		return;
	if (status < 0 || code != 200) {
		if (status == 0 && code == 404)
			log_event(LOG_LVL_WARN, "webhook_configuration_missing",
				  log_pack("{s:s, s:s}", "configuration", wc->configuration,
					   "effect",
					   "nothing to keep current; looked for again later"));
		else
			wc_sync_error(wc, "get", status, code, err);
		wc_sync_done(wc, status < 0 || code != 404);
		return;
	}
	json_t *patch = wc_patch_for(wc, body, &ours);
	if (ours == 0 && !wc->warned_not_ours) /* once: it is re-read every minute */
		log_event(LOG_LVL_WARN, "webhook_configuration_not_ours",
			  log_pack("{s:s, s:s, s:s}", "configuration", wc->configuration, "service",
				   wc->service, "namespace", wc->namespace));
	wc->warned_not_ours = ours == 0;
	if (!patch) {
		wc_sync_done(wc, 0);
		return;
	}
	snprintf(path, sizeof(path), WC_MWC_PATH "%s", wc->configuration);
	if (kapi_patch(wc->kapi, path, KAPI_PATCH_STRATEGIC, patch, 10000, wc_patch_cb, wc,
		       &wc->req) < 0) {
		wc_sync_error(wc, "patch", -EIO, 0, "cannot start the request");
		wc_sync_done(wc, 1);
	}
	json_decref(patch);
}

static void wc_sync(struct webhookcert *wc)
{
	char path[512];

	if (!wc->kapi || wc->stopped)
		return;
	if (wc->req) {
		wc->again = 1;
		return;
	}
	uv_timer_stop(&wc->sync);
	snprintf(path, sizeof(path), WC_MWC_PATH "%s", wc->configuration);
	if (kapi_json(wc->kapi, "GET", path, NULL, 10000, wc_get_cb, wc, &wc->req) < 0) {
		wc_sync_error(wc, "get", -EIO, 0, "cannot start the request");
		wc_sync_done(wc, 1);
	}
}

/* ---- life */

static void wc_free(struct webhookcert *wc)
{
	mtls_ctx_unref(wc->tls);
	free(wc->service);
	free(wc->namespace);
	free(wc->configuration);
	free(wc->want);
	free(wc);
}

static void wc_closed_cb(uv_handle_t *h)
{
	struct webhookcert *wc = h->data;

	if (--wc->closing == 0)
		wc_free(wc);
}

int webhookcert_start(uv_loop_t *loop, const struct webhookcert_config *cfg, const struct ca *ca,
		      struct webhookcert **out, const char **why)
{
	struct webhookcert *wc = calloc(1, sizeof(*wc));
	int rc;

	*why = "out of memory";
	if (!wc)
		return -ENOMEM;
	wc->ca = ca;
	wc->kapi = cfg->kapi;
	wc->lifetime_s = cfg->lifetime_s;
	wc->service = strdup(cfg->service);
	wc->namespace = strdup(cfg->namespace);
	wc->configuration = strdup(cfg->configuration);
	wc->want = wc_bundle_b64(ca);
	if (!wc->service || !wc->namespace || !wc->configuration || !wc->want) {
		wc_free(wc);
		return -ENOMEM;
	}
	if ((size_t)snprintf(wc->dns[0], sizeof(wc->dns[0]), "%s.%s.svc", wc->service,
			     wc->namespace) >= sizeof(wc->dns[0]) ||
	    (size_t)snprintf(wc->dns[1], sizeof(wc->dns[1]), "%s.cluster.local", wc->dns[0]) >=
		    sizeof(wc->dns[1])) {
		*why = "the webhook's service and namespace names are too long";
		wc_free(wc);
		return -EINVAL;
	}
	if ((rc = wc_issue(wc)) < 0) {
		*why = "the CA cannot issue the webhook certificate (check the service and "
		       "namespace names: DNS labels)";
		wc_free(wc);
		return rc;
	}
	uv_timer_init(loop, &wc->renew);
	uv_timer_init(loop, &wc->sync);
	wc->renew.data = wc->sync.data = wc;
	wc_arm(wc, 1);
	wc_sync(wc);
	*out = wc;
	return 0;
}

struct mtls_ctx *webhookcert_get0_tls(const struct webhookcert *wc)
{
	return wc->tls;
}

void webhookcert_attach(struct webhookcert *wc, struct webhook *w)
{
	wc->server = w;
}

void webhookcert_set_ca(struct webhookcert *wc, const struct ca *ca)
{
	char *want = wc_bundle_b64(ca);

	wc->ca = ca;
	if (want) { /* else the old caBundle is kept until the next change */
		free(wc->want);
		wc->want = want;
	}
	wc_issue_and_arm(wc, "ca_rotation");
	wc_sync(wc);
}

void webhookcert_stop(struct webhookcert *wc)
{
	if (!wc)
		return;
	wc->stopped = 1;
	wc->server = NULL;
	if (wc->req)
		kapi_cancel(wc->req); /* its callback sees `stopped` */
	wc->req = NULL;
	uv_timer_stop(&wc->renew);
	uv_timer_stop(&wc->sync);
	wc->closing = 2;
	uv_close((uv_handle_t *)&wc->renew, wc_closed_cb);
	uv_close((uv_handle_t *)&wc->sync, wc_closed_cb);
}
