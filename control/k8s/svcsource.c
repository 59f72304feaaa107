/* svcsource: see svcsource.h. One kview watching both kinds (kview_watch),
 * as crdsource keeps its own; the view holds the first publish until both
 * have listed: never Services without their EndpointSlices (every endpoint
 * would look gone). */
#include "svcsource.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kview.h"

static const struct svc_kind {
	const char *kind, *api_version, *collection;
} svc_kinds[] = {
	{"Service", "v1", "/api/v1/services"},
	{"EndpointSlice", "discovery.k8s.io/v1", "/apis/discovery.k8s.io/v1/endpointslices"},
};
#define SVC_NKINDS (sizeof(svc_kinds) / sizeof(svc_kinds[0]))

struct svcsource {
	struct kview view;
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

static void svc_apply(void *arg, size_t i, const json_t *obj, int deleted)
{
	struct svcsource *ss = arg;
	const json_t *meta = json_object_get(obj, "metadata");
	const char *name = json_string_value(json_object_get(meta, "name"));
	const char *ns = json_string_value(json_object_get(meta, "namespace"));
	const char *kind = svc_kinds[i].kind;
	char key[700];

	if (!name || !ns ||
	    (size_t)snprintf(key, sizeof(key), "%s/%s/%s", kind, ns, name) >= sizeof(key))
		return;
	kview_set(&ss->view, key, deleted ? NULL : svcsource_document(kind, obj));
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
	if ((rc = kview_init(&ss->view, loop, SVCSOURCE_SETTLE_MS, cb, arg)) < 0) {
		free(ss);
		return rc;
	}
	const char *kinds[SVC_NKINDS], *collections[SVC_NKINDS];
	for (size_t i = 0; i < SVC_NKINDS; i++) {
		kinds[i] = svc_kinds[i].kind;
		collections[i] = svc_kinds[i].collection;
	}
	if ((rc = kview_watch(&ss->view, loop, k, SVC_NKINDS, kinds, collections, svc_apply, ss)) <
	    0) {
		svcsource_stop(ss);
		return rc;
	}
	*out = ss;
	return 0;
}

void svcsource_stop(struct svcsource *ss)
{
	kview_close(&ss->view, svc_view_closed);
}
