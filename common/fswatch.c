/* fswatch: see fswatch.h.
 *
 * One uv_fs_event per watched directory (a file's parent counts as one)
 * and one settle timer. Every event restarts the timer; the callback runs
 * when it fires. Any event in a file's directory counts: a ConfigMap
 * update swaps a "..data" symlink, not the file's own name, so filtering
 * by name would miss exactly the updates that matter. A spurious reload
 * costs a parse that finds nothing new. */
#include "fswatch.h"

#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct fswatch_dir {
	uv_fs_event_t ev;
	struct fswatch *w;
};

struct fswatch {
	uv_timer_t settle;
	unsigned settle_ms;
	fswatch_cb cb;
	void *arg;
	size_t n_dirs;
	unsigned open_handles; /* freed when the last one is closed */
	int stopped;
	struct fswatch_dir dirs[];
};

static void fswatch_fire(uv_timer_t *t)
{
	struct fswatch *w = t->data;

	if (!w->stopped)
		w->cb(w->arg);
}

static void fswatch_event(uv_fs_event_t *ev, const char *name, int events, int status)
{
	struct fswatch_dir *d = ev->data;

	(void)name;
	(void)events;
	(void)status; /* an error is news too: the reload will say what is wrong */
	if (!d->w->stopped)
		uv_timer_start(&d->w->settle, fswatch_fire, d->w->settle_ms, 0);
}

static void fswatch_release(struct fswatch *w)
{
	if (--w->open_handles == 0)
		free(w);
}

static void fswatch_dir_closed(uv_handle_t *h)
{
	fswatch_release(((struct fswatch_dir *)h->data)->w);
}

static void fswatch_timer_closed(uv_handle_t *h)
{
	fswatch_release(h->data);
}

/* The directory to watch for `path`, into buf. */
static int fswatch_dir_of(const char *path, char *buf, size_t len)
{
	struct stat st;

	if (strlen(path) >= len)
		return -ENAMETOOLONG;
	if (stat(path, &st) < 0)
		return -errno;
	strcpy(buf, path);
	if (!S_ISDIR(st.st_mode)) {
		char *dir = dirname(buf); /* may return a static "." */
		memmove(buf, dir, strlen(dir) + 1);
	}
	return 0;
}

int fswatch_start(uv_loop_t *loop, const char *const *paths, size_t n, unsigned settle_ms,
		  fswatch_cb cb, void *arg, struct fswatch **out)
{
	struct fswatch *w;
	char dir[4096];
	int rc = 0;

	if (!n || !cb)
		return -EINVAL;
	w = calloc(1, sizeof(*w) + n * sizeof(w->dirs[0]));
	if (!w)
		return -ENOMEM;
	w->settle_ms = settle_ms;
	w->cb = cb;
	w->arg = arg;
	uv_timer_init(loop, &w->settle);
	w->settle.data = w;
	w->open_handles = 1;
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct fswatch_dir *d = &w->dirs[i];
		rc = fswatch_dir_of(paths[i], dir, sizeof(dir));
		if (rc == 0)
			rc = uv_fs_event_init(loop, &d->ev);
		if (rc < 0)
			break;
		d->w = w;
		d->ev.data = d;
		w->open_handles++;
		w->n_dirs++;
		rc = uv_fs_event_start(&d->ev, fswatch_event, dir, 0);
	}
	if (rc < 0) {
		fswatch_stop(w);
		return rc;
	}
	*out = w;
	return 0;
}

void fswatch_stop(struct fswatch *w)
{
	if (!w)
		return;
	w->stopped = 1;
	uv_timer_stop(&w->settle);
	for (size_t i = 0; i < w->n_dirs; i++) {
		uv_fs_event_stop(&w->dirs[i].ev);
		uv_close((uv_handle_t *)&w->dirs[i].ev, fswatch_dir_closed);
	}
	uv_close((uv_handle_t *)&w->settle, fswatch_timer_closed);
}
