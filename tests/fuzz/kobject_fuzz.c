/* kobject_fuzz: any bytes as the Kubernetes objects cinch-control reads
 * from the API server: pods (whose labels and annotations a pod owner
 * writes) and the policy objects AllowPolicy, MeshPolicy, EgressPolicy
 * (which app teams write). The input is JSON text, an array of objects;
 * each one goes through both reducers, podsource_workload() and
 * crdsource_document(), and the two feeds are then built into one
 * generation exactly as the store does (pdoc_from_json, the policy set,
 * the compiler, one Snapshot per workload), first with store_load, then
 * through a store publishing to a hub (store_apply, with its quarantine of
 * rejected objects).
 *
 * What must hold, besides no crash, leak or read past the input: a build
 * is accepted or refused with a message; every Snapshot the control builds
 * is one the agent accepts (policy_slice_from_snapshot), so no object an
 * app team can write makes the control publish what agents refuse; every
 * verdict names rejected objects with a reason. Seeds (corpus/kobject/)
 * are API objects like those of tests/unit/k8s/fixtures. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cinch/v1/config.pb-c.h"
#include "crdsource.h"
#include "log.h"
#include "podsource.h"
#include "policy.h"
#include "store.h"

#define FZ_TD "cluster.local"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *log_out;

/* Every slice of g is a Snapshot the agent loads. */
static void fz_check_gen(const struct store_gen *g)
{
	for (size_t i = 0; i < g->n; i++) {
		const struct hub_slice *sl = &g->slices[i];
		Cinch__V1__Snapshot *snap =
			cinch__v1__snapshot__unpack(NULL, sl->snapshot_len, sl->snapshot);
		struct policy_slice *s = NULL;
		struct policy_error err;

		if (!snap || policy_slice_from_snapshot(&s, snap, &err) < 0)
			abort();
		policy_slice_unref(s);
		cinch__v1__snapshot__free_unpacked(snap, NULL);
	}
}

static void fz_verdict_cb(void *arg, const json_t *rejected)
{
	const char *key;
	json_t *why;

	(void)arg;
	json_object_foreach((json_t *)rejected, key, why) {
		if (!*key || !json_string_value(why) || !*json_string_value(why))
			abort();
	}
}

static void fz_apply(json_t *pods, json_t *policies)
{
	struct hub *h = NULL;
	struct store *st = NULL;
	struct policy_error err = {0};

	if (hub_new(&h) < 0 || store_new(FZ_TD, h, &st) < 0)
		goto out;
	store_set_verdict_cb(st, fz_verdict_cb, NULL);
	store_set_docs(st, STORE_FEED_PODS, pods);
	store_set_docs(st, STORE_FEED_POLICIES, policies);
	int rc = store_apply(st, &err);
	if (rc < 0 && rc != -ENOMEM && (rc != -EINVAL || !err.msg[0]))
		abort();
	json_t *status = hub_status(h);
	if (!status)
		abort();
	json_decref(status);
out:
	store_free(st);
	hub_free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *in = json_loadb((const char *)data, size, 0, NULL);
	json_t *pods = json_array(), *policies = json_array(), *obj;
	struct store_gen *g = NULL;
	struct policy_error err;
	size_t i;

	if (!log_out) {
		/* Every log line is built and written, where nobody reads it. */
		log_out = fopen("/dev/null", "w");
		log_init("kobject_fuzz", log_out, LOG_LVL_DEBUG);
	}
	if (!json_is_array(in) || !pods || !policies)
		goto out;
	json_array_foreach(in, i, obj) {
		json_t *w = podsource_workload(obj), *d = crdsource_document(obj);
		if (w)
			json_array_append_new(pods, w);
		if (d)
			json_array_append_new(policies, d);
	}
	struct store_inputs si = {.trust_domain = FZ_TD, .docs = {pods, policies}};
	int rc = store_load(&si, &g, &err);
	if (rc == 0)
		fz_check_gen(g);
	else if (rc != -ENOMEM && (rc != -EINVAL || !err.msg[0]))
		abort();
	store_gen_free(g);
	fz_apply(pods, policies);
out:
	json_decref(pods);
	json_decref(policies);
	json_decref(in);
	return 0;
}
