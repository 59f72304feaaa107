/* kview: see kview.h. */
#include "kview.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int kview_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void kview_settle_cb(uv_timer_t *t)
{
	struct kview *v = t->data;
	size_t n = json_object_size(v->docs), i = 0;
	const char **keys = calloc(n ? n : 1, sizeof(*keys));
	json_t *out = json_array();
	const char *key;
	json_t *d;

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
	uv_timer_stop(&v->settle);
	uv_close((uv_handle_t *)&v->settle, kview_closed_cb);
}
