/* podsource: see podsource.h. The view (kview) maps "<ns>/<name>" to the
 * Workload document; kwatch's sync replaces it, its events edit it. */
#include "podsource.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kview.h"
#include "kwatch.h"

struct podsource {
	struct kwatch *watch;
	struct kview view;
};

static const char *ps_str(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* The named container ports (name, containerPort, protocol) of every
 * container: what a policy's port name resolves to. The registry checks
 * them (the API server already has). */
static json_t *ps_ports(const json_t *spec)
{
	json_t *out = json_array(), *c, *p;
	size_t i, k;

	json_array_foreach(json_object_get(spec, "containers"), i, c)
	{
		json_array_foreach(json_object_get(c, "ports"), k, p)
		{
			const char *name = ps_str(p, "name"), *proto = ps_str(p, "protocol");
			json_t *num = json_object_get(p, "containerPort");
			if (!name || !json_is_integer(num))
				continue;
			json_array_append_new(out,
					      json_pack("{s:s, s:I, s:s}", "name", name,
							"containerPort", json_integer_value(num),
							"protocol", proto ? proto : "TCP"));
		}
	}
	return out;
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
	json_t *w = json_pack("{s:s, s:s, s:{s:s, s:s, s:o}, s:{s:s, s:o}}", "apiVersion",
			      "cinch.dev/v1alpha1", "kind", "Workload", "metadata", "name", name,
			      "namespace", ns, "labels", labels ? labels : json_object(), "spec",
			      "serviceAccount", sa ? sa : "default", "addresses", addrs);
	json_t *ports = ps_ports(spec);
	if (w && ports && json_array_size(ports))
		json_object_set(json_object_get(w, "spec"), "ports", ports);
	json_decref(ports);
	return w;
}

/* Puts the pod's workload in the view, or takes it out. */
static void ps_apply(struct podsource *ps, const json_t *pod, int deleted)
{
	const json_t *meta = json_object_get(pod, "metadata");
	const char *name = ps_str(meta, "name"), *ns = ps_str(meta, "namespace");
	char key[600];

	if (!name || !ns || (size_t)snprintf(key, sizeof(key), "%s/%s", ns, name) >= sizeof(key))
		return;
	kview_set(&ps->view, key, deleted ? NULL : podsource_workload(pod));
}

static void ps_sync(void *arg, json_t *items)
{
	struct podsource *ps = arg;
	size_t i;
	json_t *pod;

	kview_drop_prefix(&ps->view, "");
	json_array_foreach(items, i, pod) ps_apply(ps, pod, 0);
}

static void ps_event(void *arg, const char *type, json_t *pod)
{
	ps_apply(arg, pod, strcmp(type, "DELETED") == 0);
}

static const struct kwatch_ops ps_ops = { .sync = ps_sync, .event = ps_event };

static void ps_closed(struct kview *v)
{
	free((char *)v - offsetof(struct podsource, view));
}

int podsource_start(uv_loop_t *loop, struct kapi *k, podsource_cb cb, void *arg,
		    struct podsource **out)
{
	struct podsource *ps = calloc(1, sizeof(*ps));
	int rc;

	if (!ps)
		return -ENOMEM;
	if (kview_init(&ps->view, loop, PODSOURCE_SETTLE_MS, cb, arg) < 0) {
		free(ps);
		return -ENOMEM;
	}
	rc = kwatch_start(loop, k, "/api/v1/pods", &ps_ops, ps, &ps->watch);
	if (rc < 0) {
		kview_close(&ps->view, ps_closed);
		return rc;
	}
	*out = ps;
	return 0;
}

void podsource_stop(struct podsource *ps)
{
	kwatch_stop(ps->watch);
	kview_close(&ps->view, ps_closed);
}
