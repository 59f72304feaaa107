/* bundlecm: see bundlecm.h. The view is three JSON objects keyed by
 * namespace: `nss` (selected namespaces), `cms` (our-named ConfigMaps as
 * the watch last showed them) and `busy` (a write in flight there: true,
 * or "dirty" once an event for it came meanwhile). Reconciling runs from
 * a timer, never inside a watch callback (that is inside curl's). `bc` is
 * freed once both timers are closed and no write is in flight. */
#include "bundlecm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kwatch.h"
#include "log.h"

#define BCM_NS_PATH	   "/api/v1/namespaces?labelSelector=cinch.dev%2Finject%3Denabled"
#define BCM_CM_PATH	   "/api/v1/configmaps?fieldSelector=metadata.name%3D" BUNDLECM_NAME
#define BCM_BACKOFF_MIN_MS 1000
#define BCM_BACKOFF_MAX_MS 60000

struct bundlecm;

/* One of the two watches: it keeps `view` (nss or cms) as its list and
 * events show it, through `apply`; its first list sets `synced_bit`. */
struct bcm_watch {
	struct bundlecm *bc;
	struct kwatch *watch;
	json_t *view;
	unsigned synced_bit;
	void (*apply)(struct bundlecm *bc, json_t *obj, int deleted);
};

struct bundlecm {
	struct kapi *k;
	struct bcm_watch ns_watch, cm_watch;
	json_t *nss, *cms, *busy;
	json_t *reported; /* namespace -> resourceVersion of a foreign one reported */
	char *pem;
	unsigned synced; /* 1: namespaces listed, 2: ConfigMaps listed */
	unsigned foreign;
	unsigned inflight;
	int stopped, closing;
	uint64_t backoff_ms;
	uv_timer_t kick, retry;
};

/* One write in flight. */
struct bcm_write {
	struct bundlecm *bc;
	char ns[];
};

static void bcm_maybe_free(struct bundlecm *bc)
{
	if (bc->closing || bc->inflight)
		return;
	json_decref(bc->nss);
	json_decref(bc->cms);
	json_decref(bc->busy);
	json_decref(bc->reported);
	free(bc->pem);
	free(bc);
}

static const char *bcm_str(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static const json_t *bcm_meta(const json_t *obj)
{
	return json_object_get(obj, "metadata");
}

static void bcm_reconcile_cb(uv_timer_t *t);

/* Reconcile on the next loop turn (after the current watch callback). */
static void bcm_kick(struct bundlecm *bc)
{
	if (!bc->stopped)
		uv_timer_start(&bc->kick, bcm_reconcile_cb, 0, 0);
}

static void bcm_failed(struct bundlecm *bc)
{
	bc->backoff_ms = bc->backoff_ms ? bc->backoff_ms * 2 : BCM_BACKOFF_MIN_MS;
	if (bc->backoff_ms > BCM_BACKOFF_MAX_MS)
		bc->backoff_ms = BCM_BACKOFF_MAX_MS;
	if (!uv_is_active((uv_handle_t *)&bc->retry))
		uv_timer_start(&bc->retry, bcm_reconcile_cb, bc->backoff_ms, 0);
}

/* ---- writes */

static void bcm_write_cb(void *arg, int status, long code, json_t *body, const char *err)
{
	struct bcm_write *wr = arg;
	struct bundlecm *bc = wr->bc;

	bc->inflight--;
	if (bc->stopped) {
		free(wr);
		bcm_maybe_free(bc);
		return;
	}
	/* An event for this ConfigMap came while the write was in flight
	 * (our write's own, or a later change): look again now. */
	int dirty = json_is_string(json_object_get(bc->busy, wr->ns));
	json_object_del(bc->busy, wr->ns);
	if (dirty)
		bcm_kick(bc);
	if (status == 0 && (code == 200 || code == 201)) {
		/* The watch brings the object as written (or what came after
		 * it: the answer may arrive after a later event, so it is not
		 * taken as the state). */
		bc->backoff_ms = 0;
		log_event(LOG_LVL_INFO, "trust_bundle_configmap_written",
			  log_pack("{s:s, s:s, s:s}", "namespace", wr->ns, "configmap",
				    BUNDLECM_NAME, "op", code == 201 ? "create" : "update"));
	} else {
		/* 409: created or changed meanwhile; the watch brings it and the
		 * retry looks again. 404: gone meanwhile. Others: back off. */
		if (status == 0 && code == 404)
			json_object_del(bc->cms, wr->ns);
		log_event(code == 409 ? LOG_LVL_INFO : LOG_LVL_WARN,
			  "trust_bundle_configmap_write_failed",
			  log_pack("{s:s, s:i, s:s}", "namespace", wr->ns, "http_status",
				    (int)code, "error",
				    status < 0	  ? (err ? err : strerror(-status))
				    : code == 409 ? "conflict: written meanwhile, looked at again"
				    : bcm_str(body, "message") ? bcm_str(body, "message")
							       : "HTTP error"));
		bcm_failed(bc);
	}
	free(wr);
}

/* POST (cm NULL) or PUT the ConfigMap of `ns` with our bundle. */
static void bcm_write(struct bundlecm *bc, const char *ns, const json_t *cm)
{
	size_t nlen = strlen(ns);
	struct bcm_write *wr = malloc(sizeof(*wr) + nlen + 1);
	json_t *obj;
	char path[600];
	int rc = -ENOMEM;

	if (cm) {
		obj = json_deep_copy(cm);
		json_t *data = json_object_get(obj, "data");
		if (obj && !json_is_object(data))
			json_object_set_new(obj, "data", data = json_object());
		if (data)
			json_object_set_new(data, BUNDLECM_KEY, json_string(bc->pem));
		snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps/" BUNDLECM_NAME, ns);
	} else {
		obj = json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s, s:s}}, s:{s:s}}", "apiVersion",
				"v1", "kind", "ConfigMap", "metadata", "name", BUNDLECM_NAME,
				"namespace", ns, "labels", BUNDLECM_OWNER_KEY, BUNDLECM_OWNER,
				"app.kubernetes.io/part-of", "cinch", "data", BUNDLECM_KEY,
				bc->pem);
		snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps", ns);
	}
	if (wr && obj) {
		wr->bc = bc;
		memcpy(wr->ns, ns, nlen + 1);
		bc->inflight++;
		json_object_set_new(bc->busy, ns, json_true());
		rc = kapi_json(bc->k, cm ? "PUT" : "POST", path, obj, 10000, bcm_write_cb, wr,
			       NULL);
		if (rc < 0) {
			bc->inflight--;
			json_object_del(bc->busy, ns);
		}
	}
	json_decref(obj);
	if (rc < 0) {
		free(wr);
		log_event(LOG_LVL_WARN, "trust_bundle_configmap_write_failed",
			  log_pack("{s:s, s:s}", "namespace", ns, "error", strerror(-rc)));
		bcm_failed(bc);
	}
}

/* ---- reconcile */

static int bcm_owned(const json_t *cm)
{
	const char *v = bcm_str(json_object_get(bcm_meta(cm), "labels"), BUNDLECM_OWNER_KEY);
	return v && !strcmp(v, BUNDLECM_OWNER);
}

/* A foreign ConfigMap of our name: reported once per version. */
static void bcm_report(struct bundlecm *bc, const char *ns, const json_t *cm)
{
	const char *rv = bcm_str(bcm_meta(cm), "resourceVersion");
	const char *seen = bcm_str(bc->reported, ns);

	if (seen && rv && !strcmp(seen, rv))
		return;
	json_object_set_new(bc->reported, ns, json_string(rv ? rv : ""));
	log_event(LOG_LVL_WARN, "trust_bundle_configmap_foreign",
		  log_pack("{s:s, s:s, s:s}", "namespace", ns, "configmap", BUNDLECM_NAME,
			    "effect",
			    "left alone (no label " BUNDLECM_OWNER_KEY "=" BUNDLECM_OWNER
			    "): injected pods of this namespace mount it as the trust bundle; "
			    "delete it to let cinch-control manage it"));
}

static void bcm_reconcile_cb(uv_timer_t *t)
{
	struct bundlecm *bc = t->data;
	const char *ns;
	json_t *v;
	unsigned foreign = 0;

	if (bc->stopped || bc->synced != 3)
		return;
	uv_timer_stop(&bc->retry);
	json_object_foreach(bc->nss, ns, v)
	{
		const json_t *cm = json_object_get(bc->cms, ns);
		const char *have = bcm_str(json_object_get(cm, "data"), BUNDLECM_KEY);

		if (cm && !bcm_owned(cm)) {
			foreign++;
			bcm_report(bc, ns, cm);
			continue;
		}
		json_object_del(bc->reported, ns);
		if (json_object_get(bc->busy, ns) || (have && !strcmp(have, bc->pem)))
			continue;
		bcm_write(bc, ns, cm);
	}
	bc->foreign = foreign;
}

/* ---- the watches */

static const char *bcm_ns_of_cm(const json_t *cm)
{
	const char *name = bcm_str(bcm_meta(cm), "name");
	return name && !strcmp(name, BUNDLECM_NAME) ? bcm_str(bcm_meta(cm), "namespace") : NULL;
}

static int bcm_ns_selected(const json_t *ns)
{
	const char *v = bcm_str(json_object_get(bcm_meta(ns), "labels"), BUNDLECM_NS_LABEL);
	return v && !strcmp(v, BUNDLECM_NS_VALUE);
}

static void bcm_ns_apply(struct bundlecm *bc, json_t *obj, int deleted)
{
	const char *name = bcm_str(bcm_meta(obj), "name");

	if (!name)
		return;
	if (deleted || !bcm_ns_selected(obj))
		json_object_del(bc->nss, name);
	else
		json_object_set_new(bc->nss, name, json_true());
}

static void bcm_cm_apply(struct bundlecm *bc, json_t *obj, int deleted)
{
	const char *ns = bcm_ns_of_cm(obj);

	if (!ns)
		return;
	if (deleted)
		json_object_del(bc->cms, ns);
	else
		json_object_set(bc->cms, ns, obj);
	if (json_object_get(bc->busy, ns)) /* see bcm_write_cb */
		json_object_set_new(bc->busy, ns, json_string("dirty"));
}

/* A (re)list replaces the watch's view whole. */
static void bcm_sync(void *arg, json_t *items)
{
	struct bcm_watch *w = arg;
	size_t i;
	json_t *obj;

	json_object_clear(w->view);
	json_array_foreach(items, i, obj) w->apply(w->bc, obj, 0);
	w->bc->synced |= w->synced_bit;
	bcm_kick(w->bc);
}

static void bcm_event(void *arg, const char *type, json_t *obj)
{
	struct bcm_watch *w = arg;

	w->apply(w->bc, obj, strcmp(type, "DELETED") == 0);
	bcm_kick(w->bc);
}

static void bcm_watch_error(void *arg, int status, const char *what)
{
	(void)arg;
	log_event(LOG_LVL_WARN, "trust_bundle_watch_failed",
		  log_pack("{s:s, s:s}", "what", what, "error", strerror(-status)));
}

static const struct kwatch_ops bcm_watch_ops = {
	.sync = bcm_sync, .event = bcm_event, .error = bcm_watch_error};

static int bcm_watch_start(uv_loop_t *loop, struct bundlecm *bc, struct bcm_watch *w,
			   const char *path, json_t *view, unsigned synced_bit,
			   void (*apply)(struct bundlecm *bc, json_t *obj, int deleted))
{
	w->bc = bc;
	w->view = view;
	w->synced_bit = synced_bit;
	w->apply = apply;
	return kwatch_start(loop, bc->k, path, &bcm_watch_ops, w, &w->watch);
}

/* ---- life */

static void bcm_closed_cb(uv_handle_t *h)
{
	struct bundlecm *bc = h->data;

	bc->closing--;
	bcm_maybe_free(bc);
}

int bundlecm_start(uv_loop_t *loop, struct kapi *k, const char *pem, struct bundlecm **out)
{
	struct bundlecm *bc = calloc(1, sizeof(*bc));
	int rc = -ENOMEM;

	if (!bc)
		return -ENOMEM;
	bc->k = k;
	bc->nss = json_object();
	bc->cms = json_object();
	bc->busy = json_object();
	bc->reported = json_object();
	bc->pem = strdup(pem);
	uv_timer_init(loop, &bc->kick);
	uv_timer_init(loop, &bc->retry);
	bc->kick.data = bc->retry.data = bc;
	if (bc->nss && bc->cms && bc->busy && bc->reported && bc->pem &&
	    !(rc = bcm_watch_start(loop, bc, &bc->ns_watch, BCM_NS_PATH, bc->nss, 1,
				   bcm_ns_apply)) &&
	    !(rc = bcm_watch_start(loop, bc, &bc->cm_watch, BCM_CM_PATH, bc->cms, 2,
				   bcm_cm_apply))) {
		*out = bc;
		return 0;
	}
	bundlecm_stop(bc);
	return rc;
}

int bundlecm_set_bundle(struct bundlecm *bc, const char *pem)
{
	char *p = strdup(pem);

	if (!p)
		return -ENOMEM;
	free(bc->pem);
	bc->pem = p;
	bc->backoff_ms = 0;
	bcm_kick(bc);
	return 0;
}

unsigned bundlecm_foreign(const struct bundlecm *bc)
{
	return bc->foreign;
}

void bundlecm_stop(struct bundlecm *bc)
{
	if (!bc)
		return;
	bc->stopped = 1;
	if (bc->ns_watch.watch)
		kwatch_stop(bc->ns_watch.watch);
	if (bc->cm_watch.watch)
		kwatch_stop(bc->cm_watch.watch);
	bc->closing = 2;
	uv_close((uv_handle_t *)&bc->kick, bcm_closed_cb);
	uv_close((uv_handle_t *)&bc->retry, bcm_closed_cb);
}
