/* filesrc: the file feeder of the configuration store (store.h): a
 * workload registry (Workload documents, docs/policy.md) and a policy set
 * (AllowPolicy, MeshPolicy, EgressPolicy documents), each a file or a
 * directory, named to the store and watched.
 *
 * Live: the paths are watched (common/fswatch, FILESRC_SETTLE_MS of quiet;
 * only their own names, and only when their bytes changed) and every
 * change rebuilds the store's generation (store_apply: the whole
 * set, files and API documents, is accepted or rejected as one);
 * filesrc_reload() does the same on demand (SIGHUP). */
#ifndef CINCH_CONTROL_FILESRC_H
#define CINCH_CONTROL_FILESRC_H

#include <uv.h>

#include "store.h"

#define FILESRC_SETTLE_MS 100

struct filesrc_config {
	const char *registry; /* file or directory; NULL: none */
	const char *policy;   /* file or directory; NULL: none */
};

struct filesrc;

/* Names the paths to `st` (borrowed; it must outlive the source; cfg's
 * strings too), builds the first generation and watches the paths.
 * -EINVAL with *err when that first build fails (nothing is started). */
int filesrc_start(uv_loop_t *loop, const struct filesrc_config *cfg, struct store *st,
		  struct filesrc **out, struct policy_error *err)
	__attribute__((warn_unused_result));
/* Re-reads now: store_apply's result. */
int filesrc_reload(struct filesrc *fs);
/* Stops watching; memory goes once the loop has run. NULL is a no-op. */
void filesrc_stop(struct filesrc *fs);

#endif
