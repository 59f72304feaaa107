/* fswatch: "these files changed", for configuration that is reloaded live
 * (the control plane's workload registry and policy directory, the agent's
 * static certificate and policy files).
 *
 * Each path may be a file or a directory. A file is watched through its
 * parent directory, because editors, `kubectl cp`, ConfigMap mounts and
 * `mv` replace files by renaming over them, which a watch on the file
 * itself would not survive. Events are coalesced: the callback runs once
 * changes have settled for `settle_ms`, so a `cp -r` of a whole directory
 * is one reload, not fifty. Only changes that matter count: events for
 * other names in a file's directory are ignored, and the callback runs
 * only when the bytes the paths hold differ from what they held at the
 * start or at the last callback (a SHA-256 of them; a touch, or the same
 * content written again, is no change). The callback then re-reads
 * everything and validates it whole; fswatch says nothing about what
 * changed.
 *
 * Start the watch before the first read of the files: the start takes the
 * first hash, so a change between the two causes a spare reload instead
 * of a missed one.
 *
 * Embedded nowhere: fswatch_start allocates, fswatch_stop frees once the
 * loop has closed its handles (run the loop afterwards). */
#ifndef CINCH_FSWATCH_H
#define CINCH_FSWATCH_H

#include <stddef.h>
#include <uv.h>

typedef void (*fswatch_cb)(void *arg);

struct fswatch;

/* Watches `paths` (n of them, copied). 0 and *out, -EINVAL, -ENOMEM, or
 * libuv's error for a path that cannot be watched (-ENOENT, ...). */
int fswatch_start(uv_loop_t *loop, const char *const *paths, size_t n, unsigned settle_ms,
		  fswatch_cb cb, void *arg, struct fswatch **out)
	__attribute__((warn_unused_result));
/* No callback after this. */
void fswatch_stop(struct fswatch *w);

#endif
