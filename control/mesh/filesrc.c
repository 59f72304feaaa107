/* filesrc: see filesrc.h. The source holds only its watch: the store
 * builds and keeps the generations. */
#include "filesrc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fswatch.h"

struct filesrc {
	struct store *st;
	struct fswatch *watch;
};

int filesrc_reload(struct filesrc *fs)
{
	return store_apply(fs->st, NULL);
}

static void filesrc_changed_cb(void *arg)
{
	(void)filesrc_reload(arg);
}

int filesrc_start(uv_loop_t *loop, const struct filesrc_config *cfg, struct store *st,
		  struct filesrc **out, struct policy_error *err)
{
	struct filesrc *fs = calloc(1, sizeof(*fs));
	const char *paths[2];
	size_t n = 0;
	int rc;

	memset(err, 0, sizeof(*err));
	if (!fs)
		return -ENOMEM;
	fs->st = st;
	store_set_files(st, cfg->registry, cfg->policy);
	if (cfg->registry)
		paths[n++] = cfg->registry;
	if (cfg->policy)
		paths[n++] = cfg->policy;
	/* Watched before the first read: see fswatch.h. */
	if (n && (rc = fswatch_start(loop, paths, n, FILESRC_SETTLE_MS, filesrc_changed_cb, fs,
				     &fs->watch)) < 0) {
		/* a missing or unreadable path: the reader's own words first */
		int bad = store_apply(st, err);
		if (bad < 0)
			rc = bad;
		else
			snprintf(err->msg, sizeof(err->msg), "cannot watch: %s", strerror(-rc));
		goto fail;
	}
	if ((rc = store_apply(st, err)) < 0)
		goto fail;
	*out = fs;
	return 0;
fail:
	fswatch_stop(fs->watch);
	free(fs);
	return rc;
}

void filesrc_stop(struct filesrc *fs)
{
	if (!fs)
		return;
	fswatch_stop(fs->watch);
	free(fs);
}
