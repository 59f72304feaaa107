/* fswatch: see fswatch.h.
 *
 * One uv_fs_event per watched path (on the path's directory when it is a
 * file) and one settle timer. An event restarts the timer only when its
 * name is one the path's reader reads (fswatch_wants): a log file written
 * beside the policy file, or an editor's dotfile inside the policy
 * directory, is not news. Names that start with ".." always count: a
 * ConfigMap update swaps a "..data" symlink, not the file's own name.
 *
 * When the timer fires, fswatch hashes what the paths hold (SHA-256 of
 * each file's bytes; for a directory, of each entry a reader takes: name
 * and bytes, in name order; a missing path hashes its errno) and calls
 * back only when that differs from the last hash. A `touch`, or the same
 * bytes written again, is then no reload; each reload drops TLS resumption
 * state and re-decides every connection, so a storm of them is an outage
 * of its own (issue #12). The hash is taken before the callback reads the
 * files: bytes that change after it make a new event and a new hash, so a
 * change can cause one reload too many, never one too few. */
#include "fswatch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/sha.h>

struct fswatch_dir {
	uv_fs_event_t ev;
	struct fswatch *w;
	const char *path; /* as given (w->paths[i]) */
	const char *base; /* a file's own name; NULL for a directory */
};

struct fswatch {
	uv_timer_t settle;
	unsigned settle_ms;
	fswatch_cb cb;
	void *arg;
	size_t n_dirs;
	unsigned open_handles; /* freed when the last one is closed */
	int stopped;
	uint8_t seen[SHA256_DIGEST_LENGTH]; /* what the paths held at the last callback */
	char **paths;
	struct fswatch_dir dirs[];
};

/* Hashes the bytes of `path` into out; -errno when it cannot be read. */
static int fswatch_hash_file(const char *path, uint8_t out[SHA256_DIGEST_LENGTH])
{
	SHA256_CTX c;
	char buf[16384];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	SHA256_Init(&c);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		SHA256_Update(&c, buf, (size_t)n);
	SHA256_Final(out, &c);
	close(fd);
	return n < 0 ? -EIO : 0;
}

/* Feeds one named part into the outer hash: the name, then what it holds
 * (a file's digest, "dir", or its errno), each length-delimited. */
static void fswatch_hash_part(SHA256_CTX *c, const char *name, const char *path, int is_dir)
{
	uint8_t d[SHA256_DIGEST_LENGTH];
	char what[16];
	int rc = is_dir ? 0 : fswatch_hash_file(path, d);

	SHA256_Update(c, name, strlen(name) + 1);
	if (is_dir) {
		SHA256_Update(c, "D", 1);
	} else if (rc < 0) {
		int n = snprintf(what, sizeof(what), "E%d", -rc);
		SHA256_Update(c, what, (size_t)n + 1);
	} else {
		SHA256_Update(c, "F", 1);
		SHA256_Update(c, d, sizeof(d));
	}
}

static int fswatch_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A directory as its readers see it: the entries that are not dotfiles. */
static void fswatch_hash_dir(SHA256_CTX *c, const char *path, DIR *dir)
{
	struct dirent *e;
	char **names = NULL, full[4096];
	size_t n = 0, cap = 0;
	struct stat st;

	while ((e = readdir(dir))) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			char **v = realloc(names, (cap = cap ? 2 * cap : 16) * sizeof(*v));
			if (!v)
				break; /* out of memory: hashes what it has, so differs */
			names = v;
		}
		if (!(names[n] = strdup(e->d_name)))
			break;
		n++;
	}
	if (n)
		qsort(names, n, sizeof(*names), fswatch_name_cmp);
	for (size_t i = 0; i < n; i++) {
		snprintf(full, sizeof(full), "%s/%s", path, names[i]);
		fswatch_hash_part(c, names[i], full, stat(full, &st) == 0 && S_ISDIR(st.st_mode));
		free(names[i]);
	}
	free(names);
}

/* What all the paths hold, as one digest. */
static void fswatch_fingerprint(const struct fswatch *w, uint8_t out[SHA256_DIGEST_LENGTH])
{
	SHA256_CTX c;

	SHA256_Init(&c);
	for (size_t i = 0; i < w->n_dirs; i++) {
		const char *path = w->dirs[i].path;
		DIR *dir = opendir(path);
		if (dir) {
			SHA256_Update(&c, "dir", 4);
			fswatch_hash_dir(&c, path, dir);
			closedir(dir);
		} else {
			fswatch_hash_part(&c, path, path, 0);
		}
	}
	SHA256_Final(out, &c);
}

static void fswatch_fire(uv_timer_t *t)
{
	struct fswatch *w = t->data;
	uint8_t now[SHA256_DIGEST_LENGTH];

	if (w->stopped)
		return;
	fswatch_fingerprint(w, now);
	if (!memcmp(now, w->seen, sizeof(now)))
		return; /* touched, or written with the same bytes */
	memcpy(w->seen, now, sizeof(now));
	w->cb(w->arg);
}

/* Whether an event for `name` in d's directory can change what d's
 * reader reads. */
static int fswatch_wants(const struct fswatch_dir *d, const char *name)
{
	if (!name || !strncmp(name, "..", 2))
		return 1; /* unknown, or a ConfigMap's "..data" swap */
	if (d->base)
		return !strcmp(name, d->base);
	return name[0] != '.';
}

static void fswatch_event(uv_fs_event_t *ev, const char *name, int events, int status)
{
	struct fswatch_dir *d = ev->data;

	(void)events;
	/* An error is news too: the reload will say what is wrong. */
	if (!d->w->stopped && (status < 0 || fswatch_wants(d, name)))
		uv_timer_start(&d->w->settle, fswatch_fire, d->w->settle_ms, 0);
}

static void fswatch_release(struct fswatch *w)
{
	if (--w->open_handles)
		return;
	for (size_t i = 0; i < w->n_dirs; i++)
		free(w->paths[i]);
	free(w->paths);
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

/* The directory to watch for `path`, into buf; *is_dir says which. */
static int fswatch_dir_of(const char *path, char *buf, size_t len, int *is_dir)
{
	struct stat st;

	if (strlen(path) >= len)
		return -ENAMETOOLONG;
	if (stat(path, &st) < 0)
		return -errno;
	memcpy(buf, path, strlen(path) + 1);
	*is_dir = S_ISDIR(st.st_mode);
	if (!*is_dir) {
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
	int rc = 0, is_dir = 0; /* set by fswatch_dir_of before any use */

	if (!n || !cb)
		return -EINVAL;
	w = calloc(1, sizeof(*w) + n * sizeof(w->dirs[0]));
	if (!w || !(w->paths = calloc(n, sizeof(*w->paths)))) {
		free(w);
		return -ENOMEM;
	}
	w->settle_ms = settle_ms;
	w->cb = cb;
	w->arg = arg;
	uv_timer_init(loop, &w->settle);
	w->settle.data = w;
	w->open_handles = 1;
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct fswatch_dir *d = &w->dirs[i];
		rc = fswatch_dir_of(paths[i], dir, sizeof(dir), &is_dir);
		if (rc == 0 && !(w->paths[i] = strdup(paths[i])))
			rc = -ENOMEM;
		if (rc == 0)
			rc = uv_fs_event_init(loop, &d->ev);
		if (rc < 0) {
			free(w->paths[i]);
			break;
		}
		d->w = w;
		d->ev.data = d;
		d->path = w->paths[i];
		d->base = is_dir		  ? NULL
			  : strrchr(d->path, '/') ? strrchr(d->path, '/') + 1
						  : d->path;
		w->open_handles++;
		w->n_dirs++;
		rc = uv_fs_event_start(&d->ev, fswatch_event, dir, 0);
	}
	if (rc < 0) {
		fswatch_stop(w);
		return rc;
	}
	fswatch_fingerprint(w, w->seen);
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
