/* podsource: see podsource.h. The view is a jansson object from
 * "<ns>/<name>" to the Workload document; kwatch's sync replaces it, its
 * events edit it, and a settle timer publishes it. */
#include "podsource.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kwatch.h"

struct podsource {
	struct kwatch *watch;
	uv_timer_t settle;
	json_t *view; /* "<ns>/<name>" -> Workload */
	podsource_cb cb;
	void *arg;
};

static void ps_closed_cb(uv_handle_t *h);

static const char *ps_str(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

json_t *podsource_workload(const json_t *pod)
{
	const json_t *meta = json_object_get(pod, "metadata");
	const json_t *spec = json_object_get(pod, "spec");
	const json_t *status = json_object_get(pod, "status");
	const char *name = ps_str(meta, "name"), *ns = ps_str(meta, "namespace");
	const char *sa = ps_str(spec, "serviceAccountName");
	const char *phase = ps_str(status, "phase");
	const json_t *del = json_object_get(meta, "deletionTimestamp");
	size_t i;
	json_t *ip;

	if (!name || !ns || !json_string_value(json_object_get(json_object_get(meta, "annotations"),
								"cinch.dev/injected")))
		return NULL;
	if (json_is_true(json_object_get(spec, "hostNetwork")) || (del && !json_is_null(del)))
		return NULL;
	if (phase && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0))
		return NULL;

	json_t *addrs = json_array();
	json_array_foreach(json_object_get(status, "podIPs"), i, ip) {
		if (ps_str(ip, "ip"))
			json_array_append_new(addrs, json_string(ps_str(ip, "ip")));
	}
	if (json_array_size(addrs) == 0 && ps_str(status, "podIP"))
		json_array_append_new(addrs, json_string(ps_str(status, "podIP")));
	if (json_array_size(addrs) == 0) {
		json_decref(addrs); /* no IP yet: nobody can reach it */
		return NULL;
	}
	json_t *labels = json_deep_copy(json_object_get(meta, "labels"));
	return json_pack("{s:s, s:s, s:{s:s, s:s, s:o}, s:{s:s, s:o}}", "apiVersion",
			 "cinch.dev/v1alpha1", "kind", "Workload", "metadata", "name", name,
			 "namespace", ns, "labels", labels ? labels : json_object(), "spec",
			 "serviceAccount", sa ? sa : "default", "addresses", addrs);
}

static int ps_key(const json_t *obj, char *key, size_t len)
{
	const json_t *meta = json_object_get(obj, "metadata");
	const char *name = ps_str(meta, "name"), *ns = ps_str(meta, "namespace");
	if (!name || !ns)
		return -EINVAL;
	return (size_t)snprintf(key, len, "%s/%s", ns, name) < len ? 0 : -ENAMETOOLONG;
}

static int ps_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void ps_settle_cb(uv_timer_t *t)
{
	struct podsource *ps = t->data;
	size_t n = json_object_size(ps->view), i = 0;
	const char **keys = calloc(n ? n : 1, sizeof(*keys));
	json_t *out = json_array();
	const char *key;
	json_t *v;

	if (!keys || !out) {
		free(keys);
		json_decref(out);
		uv_timer_start(&ps->settle, ps_settle_cb, PODSOURCE_SETTLE_MS, 0);
		return;
	}
	json_object_foreach(ps->view, key, v) keys[i++] = key;
	qsort(keys, n, sizeof(*keys), ps_cmp);
	for (i = 0; i < n; i++)
		json_array_append(out, json_object_get(ps->view, keys[i]));
	free(keys);
	ps->cb(ps->arg, out);
	json_decref(out);
}

static void ps_changed(struct podsource *ps)
{
	if (!uv_is_active((uv_handle_t *)&ps->settle))
		uv_timer_start(&ps->settle, ps_settle_cb, PODSOURCE_SETTLE_MS, 0);
}

/* Puts the pod's workload in the view, or takes it out. */
static void ps_apply(struct podsource *ps, const json_t *pod, int deleted)
{
	char key[600];
	if (ps_key(pod, key, sizeof(key)) < 0)
		return;
	json_t *w = deleted ? NULL : podsource_workload(pod);
	if (w)
		json_object_set_new(ps->view, key, w);
	else
		json_object_del(ps->view, key);
}

static void ps_sync(void *arg, json_t *items)
{
	struct podsource *ps = arg;
	size_t i;
	json_t *pod;

	json_object_clear(ps->view);
	json_array_foreach(items, i, pod) ps_apply(ps, pod, 0);
	ps_changed(ps);
}

static void ps_event(void *arg, const char *type, json_t *pod)
{
	struct podsource *ps = arg;
	ps_apply(ps, pod, strcmp(type, "DELETED") == 0);
	ps_changed(ps);
}

static const struct kwatch_ops ps_ops = { .sync = ps_sync, .event = ps_event };

int podsource_start(uv_loop_t *loop, struct kapi *k, podsource_cb cb, void *arg,
		    struct podsource **out)
{
	struct podsource *ps = calloc(1, sizeof(*ps));
	int rc;

	if (!ps || !(ps->view = json_object())) {
		free(ps);
		return -ENOMEM;
	}
	ps->cb = cb;
	ps->arg = arg;
	uv_timer_init(loop, &ps->settle);
	ps->settle.data = ps;
	rc = kwatch_start(loop, k, "/api/v1/pods", &ps_ops, ps, &ps->watch);
	if (rc < 0) {
		uv_close((uv_handle_t *)&ps->settle, ps_closed_cb);
		return rc;
	}
	*out = ps;
	return 0;
}

static void ps_closed_cb(uv_handle_t *h)
{
	struct podsource *ps = h->data;
	json_decref(ps->view);
	free(ps);
}

void podsource_stop(struct podsource *ps)
{
	kwatch_stop(ps->watch);
	uv_timer_stop(&ps->settle);
	uv_close((uv_handle_t *)&ps->settle, ps_closed_cb);
}
