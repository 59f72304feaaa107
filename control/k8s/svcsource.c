/* svcsource: see svcsource.h. One kview for both kinds, as crdsource keeps
 * its three; `synced` holds the first publish until both have listed. */
#include "svcsource.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kview.h"
#include "kwatch.h"

static const struct svc_kind {
	const char *kind, *api_version, *collection;
} svc_kinds[] = {
	{"Service", "v1", "/api/v1/services"},
	{"EndpointSlice", "discovery.k8s.io/v1", "/apis/discovery.k8s.io/v1/endpointslices"},
};
#define SVC_NKINDS (sizeof(svc_kinds) / sizeof(svc_kinds[0]))

struct svcsource;

struct svc_watch {
	struct svcsource *ss;
	const struct svc_kind *kind;
	struct kwatch *watch;
};

struct svcsource {
	struct svc_watch watches[SVC_NKINDS];
	struct kview view;
	unsigned synced; /* 1 << kind: listed once */
	svcsource_cb cb;
	void *arg;
};

static const struct svc_kind *svc_kind_named(const char *kind)
{
	for (size_t i = 0; i < SVC_NKINDS; i++)
		if (strcmp(svc_kinds[i].kind, kind) == 0)
			return &svc_kinds[i];
	return NULL;
}

json_t *svcsource_document(const char *kind, const json_t *obj)
{
	const struct svc_kind *k = svc_kind_named(kind);
	const json_t *meta = json_object_get(obj, "metadata");
	json_t *doc;

	if (!k || !json_is_object(obj) || !json_string_value(json_object_get(meta, "name")) ||
	    !json_string_value(json_object_get(meta, "namespace")))
		return NULL;
	if (!(doc = json_deep_copy(obj)))
		return NULL;
	json_object_del(json_object_get(doc, "metadata"), "managedFields");
	if (json_object_set_new(doc, "apiVersion", json_string(k->api_version)) < 0 ||
	    json_object_set_new(doc, "kind", json_string(k->kind)) < 0) {
		json_decref(doc);
		return NULL;
	}
	return doc;
}

static void svc_apply(struct svc_watch *sw, const json_t *obj, int deleted)
{
	const json_t *meta = json_object_get(obj, "metadata");
	const char *name = json_string_value(json_object_get(meta, "name"));
	const char *ns = json_string_value(json_object_get(meta, "namespace"));
	char key[700];

	if (!name || !ns ||
	    (size_t)snprintf(key, sizeof(key), "%s/%s/%s", sw->kind->kind, ns, name) >= sizeof(key))
		return;
	kview_set(&sw->ss->view, key, deleted ? NULL : svcsource_document(sw->kind->kind, obj));
}

static void svc_sync(void *arg, json_t *items)
{
	struct svc_watch *sw = arg;
	char prefix[64];
	size_t i;
	json_t *obj;

	sw->ss->synced |= 1u << (sw->kind - svc_kinds);
	/* Replace this kind's objects, keep the other kind's. */
	snprintf(prefix, sizeof(prefix), "%s/", sw->kind->kind);
	kview_drop_prefix(&sw->ss->view, prefix);
	json_array_foreach(items, i, obj) svc_apply(sw, obj, 0);
}

static void svc_event(void *arg, const char *type, json_t *obj)
{
	svc_apply(arg, obj, strcmp(type, "DELETED") == 0);
}

static const struct kwatch_ops svc_ops = {.sync = svc_sync, .event = svc_event};

/* Held until both kinds were listed once: never Services without their
 * EndpointSlices (every endpoint would look gone). */
static void svc_view_cb(void *arg, json_t *docs)
{
	struct svcsource *ss = arg;

	if (ss->synced == (1u << SVC_NKINDS) - 1)
		ss->cb(ss->arg, docs);
}

static void svc_view_closed(struct kview *v)
{
	free((char *)v - offsetof(struct svcsource, view));
}

int svcsource_start(uv_loop_t *loop, struct kapi *k, svcsource_cb cb, void *arg,
		    struct svcsource **out)
{
	struct svcsource *ss = calloc(1, sizeof(*ss));
	int rc;

	if (!ss)
		return -ENOMEM;
	ss->cb = cb;
	ss->arg = arg;
	if ((rc = kview_init(&ss->view, loop, SVCSOURCE_SETTLE_MS, svc_view_cb, ss)) < 0) {
		free(ss);
		return rc;
	}
	for (size_t i = 0; rc == 0 && i < SVC_NKINDS; i++) {
		struct svc_watch *sw = &ss->watches[i];
		sw->ss = ss;
		sw->kind = &svc_kinds[i];
		rc = kwatch_start(loop, k, svc_kinds[i].collection, &svc_ops, sw, &sw->watch);
	}
	if (rc < 0) {
		svcsource_stop(ss);
		return rc;
	}
	*out = ss;
	return 0;
}

void svcsource_stop(struct svcsource *ss)
{
	for (size_t i = 0; i < SVC_NKINDS; i++)
		if (ss->watches[i].watch)
			kwatch_stop(ss->watches[i].watch);
	kview_close(&ss->view, svc_view_closed);
}
