/* crdsource: see crdsource.h. The view maps "<Kind>/<ns>/<name>" to the
 * reduced document; `reported` maps the same keys to the last condition
 * written, so unchanged verdicts cause no API writes. `cs` is freed once
 * its timer is closed and no status write is still in flight. */
#include "crdsource.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kview.h"

#define CRD_API_VERSION "cinch.dev/v1alpha1"
#define CRD_GROUP_PATH	"/apis/" CRD_API_VERSION

/* Each kind: where it is listed, whether it lives in a namespace, and
 * whether its verdict is written back (a status subresource). v1
 * Namespaces come for their labels (namespaceSelector), read only. */
static const struct crd_kind {
	const char *kind, *plural, *group_path, *api_version;
	int namespaced, status;
} crd_kinds[] = {
	{"AllowPolicy", "allowpolicies", CRD_GROUP_PATH, CRD_API_VERSION, 1, 1},
	{"MeshPolicy", "meshpolicies", CRD_GROUP_PATH, CRD_API_VERSION, 1, 1},
	{"EgressPolicy", "egresspolicies", CRD_GROUP_PATH, CRD_API_VERSION, 1, 1},
	{"GuardrailPolicy", "guardrailpolicies", CRD_GROUP_PATH, CRD_API_VERSION, 0, 1},
	{"Namespace", "namespaces", "/api/v1", "v1", 0, 0},
};
#define CRD_NKINDS (sizeof(crd_kinds) / sizeof(crd_kinds[0]))

struct crdsource {
	struct kapi *k;
	struct kview view; /* a kwatch a kind (kview_watch) */
	json_t *reported;  /* key -> last message written ("" = accepted) */
	unsigned inflight; /* status patches not yet answered */
	int stopped, view_closed;
};

/* One status write in flight; `key` names the object in `reported`. */
struct crd_patch {
	struct crdsource *cs;
	char key[];
};

static void crd_maybe_free(struct crdsource *cs)
{
	if (!cs->view_closed || cs->inflight)
		return;
	json_decref(cs->reported);
	free(cs);
}

static const char *crd_str(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

json_t *crdsource_document(const json_t *obj)
{
	const json_t *meta = json_object_get(obj, "metadata");
	const char *kind = crd_str(obj, "kind"), *api = crd_str(obj, "apiVersion");
	const char *name = crd_str(meta, "name"), *ns = crd_str(meta, "namespace");
	int is_ns = kind && api && !strcmp(kind, "Namespace") && !strcmp(api, "v1");
	json_t *doc, *m;

	/* A Namespace is its name and labels; the rest of it means nothing to
	 * the policy. A cluster-scoped kind has no namespace (the policy set
	 * says whether a kind needs one). */
	if (!kind || !api || !name ||
	    (!is_ns && !json_is_object(json_object_get(obj, "spec"))))
		return NULL;
	m = json_pack("{s:s}", "name", name);
	if (m && ns && !is_ns)
		json_object_set_new(m, "namespace", json_string(ns));
	if (m && json_is_object(json_object_get(meta, "labels")))
		json_object_set_new(m, "labels", json_deep_copy(json_object_get(meta, "labels")));
	if (is_ns)
		return json_pack("{s:s, s:s, s:o}", "apiVersion", api, "kind", kind, "metadata", m);
	doc = json_pack("{s:s, s:s, s:o, s:o}", "apiVersion", api, "kind", kind, "metadata", m,
			"spec", json_deep_copy(json_object_get(obj, "spec")));
	return doc;
}

json_t *crdsource_list_document(const json_t *obj, const char *kind, const char *api_version)
{
	json_t *typed, *doc;

	if (json_object_get(obj, "kind") || json_object_get(obj, "apiVersion") ||
	    !json_is_object(obj) || !kind || !api_version)
		return crdsource_document(obj);
	/* shallow: crdsource_document copies what it keeps */
	if (!(typed = json_copy((json_t *)obj)) ||
	    json_object_set_new(typed, "kind", json_string(kind)) < 0 ||
	    json_object_set_new(typed, "apiVersion", json_string(api_version)) < 0) {
		json_decref(typed);
		return NULL;
	}
	doc = crdsource_document(typed);
	json_decref(typed);
	return doc;
}

static void crd_apply(void *arg, size_t i, const json_t *obj, int deleted)
{
	struct crdsource *cs = arg;
	const json_t *meta = json_object_get(obj, "metadata");
	const char *name = crd_str(meta, "name"), *ns = crd_str(meta, "namespace");
	char key[700];

	/* the key store_doc_key gives: "<Kind>/<ns>/<name>", ns "" when none */
	if (!crd_kinds[i].namespaced)
		ns = "";
	if (!name || !ns ||
	    (size_t)snprintf(key, sizeof(key), "%s/%s/%s", crd_kinds[i].kind, ns, name) >=
		    sizeof(key))
		return;
	json_t *doc =
		deleted ? NULL
			: crdsource_list_document(obj, crd_kinds[i].kind, crd_kinds[i].api_version);
	if (!doc)
		json_object_del(cs->reported, key);
	kview_set(&cs->view, key, doc);
}

static void crd_patch_cb(void *arg, int status, long code, json_t *body, const char *err)
{
	struct crd_patch *p = arg;
	struct crdsource *cs = p->cs;

	/* Not written: forget it, so the next report tries again. */
	if (!cs->stopped && (status < 0 || code < 200 || code > 299))
		json_object_del(cs->reported, p->key);
	free(p);
	cs->inflight--;
	crd_maybe_free(cs);
}

static const struct crd_kind *crd_kind_of(const char *kind, size_t len)
{
	for (size_t i = 0; i < CRD_NKINDS; i++)
		if (strlen(crd_kinds[i].kind) == len && memcmp(crd_kinds[i].kind, kind, len) == 0)
			return &crd_kinds[i];
	return NULL;
}

void crdsource_report(struct crdsource *cs, const json_t *rejected)
{
	const char *key;
	json_t *doc;
	char path[800];

	json_object_foreach(cs->view.docs, key, doc)
	{
		const char *msg = crd_str(rejected, key);
		const char *was = crd_str(cs->reported, key);
		if (!msg)
			msg = "";
		if (was && strcmp(was, msg) == 0)
			continue;
		const char *slash = strchr(key, '/');
		const struct crd_kind *kind = crd_kind_of(key, (size_t)(slash - key));
		const json_t *m = json_object_get(doc, "metadata");
		if (!kind || !kind->status)
			continue;
		if (kind->namespaced)
			snprintf(path, sizeof(path), "%s/namespaces/%s/%s/%s/status",
				 kind->group_path, crd_str(m, "namespace"), kind->plural,
				 crd_str(m, "name"));
		else
			snprintf(path, sizeof(path), "%s/%s/%s/status", kind->group_path,
				 kind->plural, crd_str(m, "name"));
		json_t *patch = json_pack("{s:{s:[{s:s, s:s, s:s, s:s}]}}", "status", "conditions",
					  "type", "Accepted", "status", *msg ? "False" : "True",
					  "reason", *msg ? "Invalid" : "Valid", "message",
					  *msg ? msg : "accepted into the policy set");
		size_t key_len = strlen(key);
		struct crd_patch *p = malloc(sizeof(*p) + key_len + 1);
		if (p) {
			p->cs = cs;
			memcpy(p->key, key, key_len + 1);
		}
		if (p && patch &&
		    kapi_json(cs->k, "PATCH", path, patch, 10000, crd_patch_cb, p, NULL) == 0) {
			cs->inflight++;
			json_object_set_new(cs->reported, key, json_string(msg));
		} else {
			free(p);
		}
		json_decref(patch);
	}
}

int crdsource_start(uv_loop_t *loop, struct kapi *k, crdsource_cb cb, void *arg,
		    struct crdsource **out)
{
	struct crdsource *cs = calloc(1, sizeof(*cs));

	if (!cs)
		return -ENOMEM;
	cs->reported = json_object();
	cs->k = k;
	int rc = cs->reported ? kview_init(&cs->view, loop, CRDSOURCE_SETTLE_MS, cb, arg) : -ENOMEM;
	if (rc < 0) {
		json_decref(cs->reported);
		free(cs);
		return rc;
	}
	const char *kinds[CRD_NKINDS], *collections[CRD_NKINDS];
	char paths[CRD_NKINDS][128];
	for (size_t i = 0; i < CRD_NKINDS; i++) {
		kinds[i] = crd_kinds[i].kind;
		snprintf(paths[i], sizeof(paths[i]), "%s/%s", crd_kinds[i].group_path,
			 crd_kinds[i].plural);
		collections[i] = paths[i];
	}
	rc = kview_watch(&cs->view, loop, k, CRD_NKINDS, kinds, collections, crd_apply, cs);
	if (rc < 0) {
		crdsource_stop(cs);
		return rc;
	}
	*out = cs;
	return 0;
}

static void crd_view_closed(struct kview *v)
{
	struct crdsource *cs = (struct crdsource *)((char *)v - offsetof(struct crdsource, view));
	cs->view_closed = 1;
	crd_maybe_free(cs);
}

void crdsource_stop(struct crdsource *cs)
{
	cs->stopped = 1;
	kview_close(&cs->view, crd_view_closed);
}
