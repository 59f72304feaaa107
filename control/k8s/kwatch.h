/* kwatch: keep a local view of one Kubernetes collection (pods, or one of
 * the policy CRDs) the way informers do: list (paged), then watch from the
 * list's resourceVersion with bookmarks, and resync when the API server
 * says the version is too old (410 Gone).
 *
 *   LIST ──ok──▶ WATCH ──stream ends──▶ WATCH (from the last version)
 *    ▲            │ 410 / ERROR 410 ──▶ LIST
 *    └─ BACKOFF ◀─┴─ transport or HTTP error (0.5 s doubling to 30 s, jitter)
 *
 * The consumer gets `sync` with the complete list after every (re)list,
 * and `event` for each change in between; bookmarks only move the version.
 * Objects passed to callbacks are borrowed for the call. */
#ifndef CINCH_KWATCH_H
#define CINCH_KWATCH_H

#include "kapi.h"

struct kwatch;

struct kwatch_ops {
	void (*sync)(void *arg, json_t *items);
	void (*event)(void *arg, const char *type, json_t *object);
	/* Optional: something failed and the watch backs off (for logs). */
	void (*error)(void *arg, int status, const char *what);
};

/* `collection` is an API path such as "/api/v1/pods" (copied), optionally
 * with a query that narrows it ("?labelSelector=..." or "?fieldSelector=
 * metadata.name%3D...", URL-encoded by the caller); lists and watches add
 * their own parameters after it. Borrows
 * `ops` and `loop` for the watch's life. *out set on success. */
int kwatch_start(uv_loop_t *loop, struct kapi *k, const char *collection,
		 const struct kwatch_ops *ops, void *arg, struct kwatch **out)
	__attribute__((warn_unused_result));

/* Stops: no callback runs after this returns; memory is freed once the
 * backoff timer's close completes (the loop must run). */
void kwatch_stop(struct kwatch *w);

/* Since the start, over every watch of the process: failures that made a
 * watch back off, and relists forced by the API server (410 Gone: our
 * resourceVersion was too old). */
void kwatch_totals(uint64_t *errors, uint64_t *relists);

/* Page size of lists; the API server may send fewer. */
#define KWATCH_PAGE 500

#endif
