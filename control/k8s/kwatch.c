/* kwatch: see kwatch.h. One request at a time is in flight (w->req);
 * every callback first checks w->state, so a stop during a callback, or
 * the synchronous completion that kapi_cancel causes, ends the machine. */
#include "kwatch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kwatch_state {
	KWATCH_ST_LIST = 0,
	KWATCH_ST_WATCH,
	KWATCH_ST_BACKOFF,
	KWATCH_ST_STOPPED,
};

struct kwatch {
	struct kapi *k;
	const struct kwatch_ops *ops;
	void *arg;
	enum kwatch_state state;
	struct kapi_req *req;
	uv_timer_t timer; /* backoff */
	char *collection;
	char rv[64];        /* resourceVersion to watch from */
	char cont[1024];    /* list continue token */
	json_t *items;      /* the list being assembled */
	int relist;         /* the stream said 410: list again */
	int in_event;       /* inside ops->event, i.e. inside curl's callback */
	unsigned failures;  /* consecutive, for the backoff */
};

static void kwatch_list(struct kwatch *w);
static void kwatch_watch(struct kwatch *w);

/* What joins our parameters to the collection (which may carry a selector). */
static char kwatch_sep(const struct kwatch *w)
{
	return strchr(w->collection, '?') ? '&' : '?';
}

static void kwatch_timer_cb(uv_timer_t *t)
{
	struct kwatch *w = t->data;

	if (w->rv[0])
		kwatch_watch(w);
	else
		kwatch_list(w);
}

/* Process-wide tallies for the metrics (loop thread only). */
static uint64_t kwatch_n_errors, kwatch_n_relists;

void kwatch_totals(uint64_t *errors, uint64_t *relists)
{
	*errors = kwatch_n_errors;
	*relists = kwatch_n_relists;
}

static void kwatch_backoff(struct kwatch *w, int status, const char *what)
{
	uint64_t delay = 500;

	kwatch_n_errors++;
	if (w->ops->error)
		w->ops->error(w->arg, status, what);
	for (unsigned i = 0; i < w->failures && delay < 30000; i++)
		delay *= 2;
	if (delay > 30000)
		delay = 30000;
	/* 50-100 % of the delay, so a fleet of replicas does not reconnect
	 * in lockstep; not security-relevant randomness. */
	delay = delay / 2 + (uv_hrtime() / 1000) % (delay / 2 + 1);
	w->failures++;
	w->state = KWATCH_ST_BACKOFF;
	uv_timer_start(&w->timer, kwatch_timer_cb, delay, 0);
}

/* --- list ------------------------------------------------------------ */

static void kwatch_list_cb(void *arg, int status, long code, json_t *body, const char *err)
{
	struct kwatch *w = arg;
	char what[160];

	w->req = NULL;
	if (w->state != KWATCH_ST_LIST)
		return;
	if (status < 0 || code != 200 || !json_is_array(json_object_get(body, "items"))) {
		if (code == 410) /* the continue token expired: start over */
			w->cont[0] = '\0';
		snprintf(what, sizeof(what), "list %s: %s", w->collection,
			 status < 0 ? err : code == 200 ? "not a list" : "HTTP error");
		json_array_clear(w->items);
		kwatch_backoff(w, status < 0 ? status : -EIO, what);
		return;
	}
	json_array_extend(w->items, json_object_get(body, "items"));
	const json_t *meta = json_object_get(body, "metadata");
	const char *cont = json_string_value(json_object_get(meta, "continue"));
	const char *rv = json_string_value(json_object_get(meta, "resourceVersion"));
	if (cont && *cont && strlen(cont) < sizeof(w->cont)) {
		memcpy(w->cont, cont, strlen(cont) + 1);
		kwatch_list(w);
		return;
	}
	if (!rv || !*rv || strlen(rv) >= sizeof(w->rv)) {
		json_array_clear(w->items);
		w->cont[0] = '\0';
		kwatch_backoff(w, -EBADMSG, "list without a resourceVersion");
		return;
	}
	memcpy(w->rv, rv, strlen(rv) + 1);
	w->cont[0] = '\0';
	w->failures = 0;
	w->ops->sync(w->arg, w->items);
	json_array_clear(w->items);
	if (w->state == KWATCH_ST_LIST) /* sync may have stopped us */
		kwatch_watch(w);
}

static void kwatch_list(struct kwatch *w)
{
	char path[1700];
	int rc;

	w->state = KWATCH_ST_LIST;
	w->rv[0] = '\0';
	if (w->cont[0])
		snprintf(path, sizeof(path), "%s%climit=%d&continue=%s", w->collection,
			 kwatch_sep(w), KWATCH_PAGE, w->cont);
	else
		snprintf(path, sizeof(path), "%s%climit=%d", w->collection, kwatch_sep(w),
			 KWATCH_PAGE);
	rc = kapi_json(w->k, "GET", path, NULL, 60000, kwatch_list_cb, w, &w->req);
	if (rc < 0)
		kwatch_backoff(w, rc, "cannot start a list");
}

/* --- watch ----------------------------------------------------------- */

static int kwatch_line_cb(void *arg, const char *line, size_t len)
{
	struct kwatch *w = arg;
	json_error_t jerr;
	json_t *ev = json_loadb(line, len, 0, &jerr);
	const char *type = json_string_value(json_object_get(ev, "type"));
	json_t *obj = json_object_get(ev, "object");
	const char *rv = json_string_value(
		json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
	int rc = 0;

	if (w->state != KWATCH_ST_WATCH) {
		rc = -ECANCELED;
	} else if (!type || !json_is_object(obj)) {
		rc = -EBADMSG;
	} else if (strcmp(type, "ERROR") == 0) {
		/* A Status object; 410 means our version is too old. */
		w->relist = json_integer_value(json_object_get(obj, "code")) == 410;
		rc = w->relist ? -ESTALE : -EIO;
	} else if (strcmp(type, "BOOKMARK") == 0 || strcmp(type, "ADDED") == 0 ||
		   strcmp(type, "MODIFIED") == 0 || strcmp(type, "DELETED") == 0) {
		if (rv && *rv && strlen(rv) < sizeof(w->rv))
			memcpy(w->rv, rv, strlen(rv) + 1);
		w->failures = 0;
		if (type[0] != 'B') {
			w->in_event = 1;
			w->ops->event(w->arg, type, obj);
			w->in_event = 0;
		}
		if (w->state != KWATCH_ST_WATCH)
			rc = -ECANCELED;
	} else {
		rc = -EBADMSG;
	}
	json_decref(ev);
	return rc;
}

static void kwatch_watch_cb(void *arg, int status, long code, json_t *body, const char *err)
{
	struct kwatch *w = arg;
	char what[160];

	w->req = NULL;
	if (w->state != KWATCH_ST_WATCH)
		return;
	if (w->relist || code == 410) {
		w->relist = 0;
		kwatch_n_relists++;
		kwatch_list(w);
	} else if (status == 0 && code == 200) {
		kwatch_watch(w); /* the server's timeoutSeconds: carry on */
	} else {
		snprintf(what, sizeof(what), "watch %s: %s", w->collection,
			 status == -EBADMSG ? "malformed event"
			 : status < 0	    ? err
					    : "HTTP error");
		if (status == -EBADMSG) /* our view may be wrong now: relist */
			w->rv[0] = '\0';
		kwatch_backoff(w, status < 0 ? status : -EIO, what);
	}
}

static void kwatch_watch(struct kwatch *w)
{
	char path[600];
	int rc;

	w->state = KWATCH_ST_WATCH;
	snprintf(path, sizeof(path),
		 "%s%cwatch=1&resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=290",
		 w->collection, kwatch_sep(w), w->rv);
	rc = kapi_stream(w->k, path, kwatch_line_cb, kwatch_watch_cb, w, &w->req);
	if (rc < 0)
		kwatch_backoff(w, rc, "cannot start a watch");
}

/* --- life ------------------------------------------------------------ */

int kwatch_start(uv_loop_t *loop, struct kapi *k, const char *collection,
		 const struct kwatch_ops *ops, void *arg, struct kwatch **out)
{
	struct kwatch *w;

	if (collection[0] != '/' || strlen(collection) > 400)
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->collection = strdup(collection);
	w->items = json_array();
	if (!w->collection || !w->items) {
		free(w->collection);
		json_decref(w->items);
		free(w);
		return -ENOMEM;
	}
	w->k = k;
	w->ops = ops;
	w->arg = arg;
	uv_timer_init(loop, &w->timer);
	w->timer.data = w;
	kwatch_list(w);
	*out = w;
	return 0;
}

static void kwatch_closed_cb(uv_handle_t *h)
{
	struct kwatch *w = h->data;
	json_decref(w->items);
	free(w->collection);
	free(w);
}

void kwatch_stop(struct kwatch *w)
{
	w->state = KWATCH_ST_STOPPED;
	/* From inside an event the transfer cannot be removed (we are in
	 * curl's write callback): kwatch_line_cb then returns -ECANCELED and
	 * curl ends it right after, before the timer's close frees `w`. */
	if (w->req && !w->in_event)
		kapi_cancel(w->req); /* its callback sees STOPPED */
	uv_timer_stop(&w->timer);
	uv_close((uv_handle_t *)&w->timer, kwatch_closed_cb);
}
