/* kview: see kview.h. */
#include "kview.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kwatch.h"

static int kview_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void kview_settle_cb(uv_timer_t *t)
{
	struct kview *v = t->data;
	size_t n = json_object_size(v->docs), i = 0;
	const char **keys;
	json_t *out;
	const char *key;
	json_t *d;

	/* held until every watched kind has listed once (kview_watch) */
	if (v->synced != (1u << v->n_watches) - 1)
		return;
	keys = calloc(n ? n : 1, sizeof(*keys));
	out = json_array();
	if (!keys || !out) { /* try again shortly rather than publish a partial set */
		free(keys);
		json_decref(out);
		uv_timer_start(&v->settle, kview_settle_cb, v->settle_ms, 0);
		return;
	}
	json_object_foreach(v->docs, key, d) keys[i++] = key;
	qsort(keys, n, sizeof(*keys), kview_cmp);
	for (i = 0; i < n; i++)
		json_array_append(out, json_object_get(v->docs, keys[i]));
	free(keys);
	v->cb(v->arg, out);
	json_decref(out);
}

int kview_init(struct kview *v, uv_loop_t *loop, unsigned settle_ms, kview_cb cb, void *arg)
{
	v->docs = json_object();
	if (!v->docs)
		return -ENOMEM;
	v->settle_ms = settle_ms;
	v->cb = cb;
	v->arg = arg;
	v->n_watches = 0;
	v->synced = 0;
	uv_timer_init(loop, &v->settle);
	v->settle.data = v;
	return 0;
}

static void kview_changed(struct kview *v)
{
	if (!uv_is_active((uv_handle_t *)&v->settle))
		uv_timer_start(&v->settle, kview_settle_cb, v->settle_ms, 0);
}

void kview_set(struct kview *v, const char *key, json_t *doc)
{
	const json_t *was = json_object_get(v->docs, key);

	/* The same document again (a pod's status churn, our own status
	 * write on a policy object): no news, no rebuild downstream. */
	if (doc ? json_equal(was, doc) : !was) {
		json_decref(doc);
		return;
	}
	if (doc)
		json_object_set_new(v->docs, key, doc);
	else
		json_object_del(v->docs, key);
	kview_changed(v);
}

void kview_drop_prefix(struct kview *v, const char *prefix)
{
	const char *key;
	json_t *d;
	void *tmp;
	size_t n = strlen(prefix);

	json_object_foreach_safe(v->docs, tmp, key, d)
	{
		if (strncmp(key, prefix, n) == 0)
			json_object_del(v->docs, key);
	}
	kview_changed(v);
}

static void kview_sync(void *arg, json_t *items)
{
	struct kview_watch *w = arg;
	struct kview *v = w->v;
	size_t kind = (size_t)(w - v->watches), i;
	char prefix[64];
	json_t *obj;

	v->synced |= 1u << kind;
	snprintf(prefix, sizeof(prefix), "%s/", w->kind);
	kview_drop_prefix(v, prefix);
	json_array_foreach(items, i, obj) v->apply(v->apply_arg, kind, obj, 0);
}

static void kview_event(void *arg, const char *type, json_t *obj)
{
	struct kview_watch *w = arg;

	w->v->apply(w->v->apply_arg, (size_t)(w - w->v->watches), obj, !strcmp(type, "DELETED"));
}

static const struct kwatch_ops kview_watch_ops = {.sync = kview_sync, .event = kview_event};

static void kview_unwatch(struct kview *v)
{
	for (size_t i = 0; i < v->n_watches; i++)
		if (v->watches[i].watch)
			kwatch_stop(v->watches[i].watch);
	v->n_watches = 0;
}

int kview_watch(struct kview *v, uv_loop_t *loop, struct kapi *k, size_t n,
		const char *const kinds[], const char *const collections[], kview_apply_cb apply,
		void *arg)
{
	int rc = 0;

	if (n == 0 || n > KVIEW_MAX_WATCHES || v->n_watches)
		return -EINVAL;
	v->apply = apply;
	v->apply_arg = arg;
	v->n_watches = n;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct kview_watch *w = &v->watches[i];
		w->v = v;
		w->kind = kinds[i];
		w->watch = NULL;
		rc = kwatch_start(loop, k, collections[i], &kview_watch_ops, w, &w->watch);
	}
	if (rc < 0)
		kview_unwatch(v);
	return rc;
}

static void kview_closed_cb(uv_handle_t *h)
{
	struct kview *v = h->data;
	json_decref(v->docs);
	v->docs = NULL;
	v->closed(v);
}

void kview_close(struct kview *v, void (*closed)(struct kview *v))
{
	v->closed = closed;
	kview_unwatch(v);
	uv_timer_stop(&v->settle);
	uv_close((uv_handle_t *)&v->settle, kview_closed_cb);
}
