/* kview: a keyed set of JSON documents, published whole and sorted by key
 * once changes have settled. The pod and policy sources both keep their
 * view of the API server this way, so consumers always get a complete,
 * deterministic set, never a stream of edits.
 *
 * Embedded in its owner; the owner frees itself from kview_close's
 * callback (the settle timer is a libuv handle). */
#ifndef CINCH_KVIEW_H
#define CINCH_KVIEW_H

#include <jansson.h>
#include <uv.h>

/* `docs`: a JSON array, borrowed for the call. */
typedef void (*kview_cb)(void *arg, json_t *docs);

struct kview {
	json_t *docs; /* key -> document */
	uv_timer_t settle;
	unsigned settle_ms;
	kview_cb cb;
	void *arg;
	void (*closed)(struct kview *v);
};

int kview_init(struct kview *v, uv_loop_t *loop, unsigned settle_ms, kview_cb cb, void *arg)
	__attribute__((warn_unused_result));
/* Takes `doc`; NULL removes the key. Schedules a publish, unless the key
 * already had an equal document (or, for NULL, none). */
void kview_set(struct kview *v, const char *key, json_t *doc);
/* Removes every key starting with `prefix` ("": all); schedules a publish
 * (an empty set is news too). */
void kview_drop_prefix(struct kview *v, const char *prefix);
/* No publish after this; `closed` runs once the timer is closed. */
void kview_close(struct kview *v, void (*closed)(struct kview *v));

#endif
