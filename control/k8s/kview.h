/* kview: a keyed set of JSON documents, published whole and sorted by key
 * once changes have settled. The pod and policy sources both keep their
 * view of the API server this way, so consumers always get a complete,
 * deterministic set, never a stream of edits.
 *
 * Embedded in its owner; the owner frees itself from kview_close's
 * callback (the settle timer is a libuv handle).
 *
 * A view may be fed by several kwatches, one a kind (kview_watch): the
 * Service source keeps Services and EndpointSlices in one view, the CRD
 * source its policy kinds and Namespaces. Each kind's keys start with
 * "<kind>/"; a kind's list replaces its keys and leaves the others'. */
#ifndef CINCH_KVIEW_H
#define CINCH_KVIEW_H

#include <jansson.h>
#include <uv.h>

/* `docs`: a JSON array, borrowed for the call. */
typedef void (*kview_cb)(void *arg, json_t *docs);

/* Puts `obj` of the view's kind `i` (kview_watch's kinds[i]) into the view
 * (kview_set), or takes it out when `deleted`. `obj` is borrowed. */
typedef void (*kview_apply_cb)(void *arg, size_t i, const json_t *obj, int deleted);

struct kapi;
struct kview;

#define KVIEW_MAX_WATCHES 8

/* One watched kind; `v` is the back-pointer its callbacks need. */
struct kview_watch {
	struct kview *v;
	struct kwatch *watch;
	const char *kind;
};

struct kview {
	json_t *docs; /* key -> document */
	uv_timer_t settle;
	unsigned settle_ms;
	kview_cb cb;
	void *arg;
	void (*closed)(struct kview *v);
	struct kview_watch watches[KVIEW_MAX_WATCHES];
	size_t n_watches;
	unsigned synced; /* 1 << i: watches[i] listed once */
	kview_apply_cb apply;
	void *apply_arg;
};

int kview_init(struct kview *v, uv_loop_t *loop, unsigned settle_ms, kview_cb cb, void *arg)
	__attribute__((warn_unused_result));
/* Takes `doc`; NULL removes the key. Schedules a publish, unless the key
 * already had an equal document (or, for NULL, none). */
void kview_set(struct kview *v, const char *key, json_t *doc);
/* Removes every key starting with `prefix` ("": all); schedules a publish
 * (an empty set is news too). */
void kview_drop_prefix(struct kview *v, const char *prefix);
/* Feeds the view from n (1..KVIEW_MAX_WATCHES) API collections, a kwatch
 * each (kwatch_start's `collection`, copied): the list of collections[i]
 * replaces the keys "<kinds[i]>/..." with what apply() makes of its items,
 * and its events go to apply(). The view publishes nothing until every
 * collection has listed once, so a consumer never sees one kind without
 * the others (Services without their EndpointSlices would look like
 * services with no endpoints). Once per view; borrows the strings of
 * `kinds`, `k` and `loop` until kview_close, which stops the watches. On
 * failure no watch runs. */
int kview_watch(struct kview *v, uv_loop_t *loop, struct kapi *k, size_t n,
		const char *const kinds[], const char *const collections[], kview_apply_cb apply,
		void *arg) __attribute__((warn_unused_result));
/* No publish after this (nor any apply); `closed` runs once the timer is closed. */
void kview_close(struct kview *v, void (*closed)(struct kview *v));

#endif
