/* tokenreview: see tokenreview.h. Two steps, each a kapi request:
 *   REVIEW  POST tokenreviews -> authenticated? audience? bound pod?
 *   POD     GET the pod       -> same uid, alive, same service account
 * then the callback. The names taken from the review go into a URL and a
 * SPIFFE ID, so they are checked as DNS-1123 names first. The limit is
 * taken in tokenreview_start and given back in tr_finish, the one place a
 * started review ends. */
#include "tokenreview.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TR_SA_PREFIX "system:serviceaccount:"
#define TR_POD_NAME "authentication.kubernetes.io/pod-name"
#define TR_POD_UID "authentication.kubernetes.io/pod-uid"

struct tokenreview {
	struct kapi *k;
	struct tokenreview_limit *limit; /* NULL: none */
	tokenreview_cb cb;
	void *arg;
	char audience[64];
	struct tokenreview_identity id;
	char reason[256];
};

static void tr_finish(struct tokenreview *tr, int status)
{
	if (tr->limit)
		tr->limit->inflight--;
	tr->cb(tr->arg, status, status == 0 ? &tr->id : NULL, tr->reason);
	free(tr);
}

void tokenreview_limit_init(struct tokenreview_limit *l, unsigned max_inflight, unsigned rate,
			    unsigned burst)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	*l = (struct tokenreview_limit){.max_inflight = max_inflight,
					.rate = rate,
					.burst = burst,
					.tokens = burst,
					.last_s = (double)ts.tv_sec + ts.tv_nsec / 1e9};
}

/* Takes one review from the limit: 0, -EBUSY or -EAGAIN. */
static int tr_limit_take(struct tokenreview_limit *l)
{
	struct timespec ts;
	double now;

	if (l->inflight >= l->max_inflight)
		return -EBUSY;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (double)ts.tv_sec + ts.tv_nsec / 1e9;
	l->tokens += (now - l->last_s) * l->rate;
	if (l->tokens > l->burst)
		l->tokens = l->burst;
	l->last_s = now;
	if (l->tokens < 1)
		return -EAGAIN;
	l->tokens -= 1;
	l->inflight++;
	return 0;
}

__attribute__((format(printf, 3, 4))) static void tr_fail(struct tokenreview *tr, int status,
							  const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(tr->reason, sizeof(tr->reason), fmt, ap);
	va_end(ap);
	tr_finish(tr, status);
}

/* A DNS-1123 subdomain (namespaces, pod and service-account names). */
static int tr_dns_name(const char *s, size_t len)
{
	if (len == 0 || len > 253 || s[0] == '-' || s[0] == '.' || s[len - 1] == '-' ||
	    s[len - 1] == '.')
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
		      s[i] == '.'))
			return 0;
	return 1;
}

static const char *tr_first_extra(const json_t *extra, const char *key)
{
	return json_string_value(json_array_get(json_object_get(extra, key), 0));
}

/* Copies a checked name into dst; 0 or -1. */
static int tr_copy_name(char *dst, size_t cap, const char *s, size_t len)
{
	if (!s || len >= cap || !tr_dns_name(s, len))
		return -1;
	memcpy(dst, s, len);
	dst[len] = '\0';
	return 0;
}

static void tr_pod_cb(void *arg, int status, long code, json_t *pod, const char *err)
{
	struct tokenreview *tr = arg;
	const json_t *meta = json_object_get(pod, "metadata");
	const char *phase = json_string_value(json_object_get(json_object_get(pod, "status"), "phase"));
	const char *uid = json_string_value(json_object_get(meta, "uid"));
	const char *sa = json_string_value(
		json_object_get(json_object_get(pod, "spec"), "serviceAccountName"));

	if (status < 0) {
		tr_fail(tr, status, "the API server could not be reached: %s", err);
		return;
	}
	if (code == 404) {
		tr_fail(tr, -EACCES, "the token's pod %s no longer exists", tr->id.pod);
		return;
	}
	if (code != 200 || !json_is_object(pod)) {
		snprintf(tr->reason, sizeof(tr->reason), "reading the pod answered HTTP %ld", code);
		tr_finish(tr, -EIO);
		return;
	}
	if (!uid || strcmp(uid, tr->id.pod_uid) != 0)
		tr_fail(tr, -EACCES, "the token was issued for another pod named %s", tr->id.pod);
	else if (json_object_get(meta, "deletionTimestamp") &&
		 !json_is_null(json_object_get(meta, "deletionTimestamp")))
		tr_fail(tr, -EACCES, "pod %s is being deleted", tr->id.pod);
	else if (phase && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0))
		tr_fail(tr, -EACCES, "pod %s has finished", tr->id.pod);
	else if (!sa || strcmp(sa, tr->id.sa) != 0)
		tr_fail(tr, -EACCES, "pod %s runs as another service account", tr->id.pod);
	else {
		tr->reason[0] = '\0';
		tr_finish(tr, 0);
	}
}

static void tr_review_cb(void *arg, int status, long code, json_t *body, const char *err)
{
	struct tokenreview *tr = arg;
	const json_t *st = json_object_get(body, "status");
	const json_t *user = json_object_get(st, "user");
	const char *name = json_string_value(json_object_get(user, "username"));
	char path[700];

	if (status < 0) {
		tr_fail(tr, status, "the API server could not be reached: %s", err);
		return;
	}
	if ((code != 200 && code != 201) || !json_is_object(st)) {
		snprintf(tr->reason, sizeof(tr->reason), "TokenReview answered HTTP %ld", code);
		tr_finish(tr, -EIO);
		return;
	}
	if (!json_is_true(json_object_get(st, "authenticated"))) {
		const char *e = json_string_value(json_object_get(st, "error"));
		tr_fail(tr, -EACCES, "the API server did not authenticate the token: %.200s",
			e ? e : "no reason given");
		return;
	}
	/* The API server echoes the audiences it validated the token for. */
	int aud_ok = 0;
	size_t i;
	json_t *a;
	json_array_foreach(json_object_get(st, "audiences"), i, a) {
		aud_ok |= json_string_value(a) && strcmp(json_string_value(a), tr->audience) == 0;
	}
	if (!aud_ok) {
		tr_fail(tr, -EACCES, "the token is not for audience %s", tr->audience);
		return;
	}
	/* system:serviceaccount:<ns>:<sa> */
	const char *rest = name && strncmp(name, TR_SA_PREFIX, strlen(TR_SA_PREFIX)) == 0
				   ? name + strlen(TR_SA_PREFIX) : NULL;
	const char *colon = rest ? strchr(rest, ':') : NULL;
	if (!colon || tr_copy_name(tr->id.ns, sizeof(tr->id.ns), rest, (size_t)(colon - rest)) ||
	    tr_copy_name(tr->id.sa, sizeof(tr->id.sa), colon + 1, strlen(colon + 1))) {
		tr_fail(tr, -EACCES, "not a service-account token: user %.150s",
			name ? name : "(none)");
		return;
	}
	const json_t *extra = json_object_get(user, "extra");
	const char *pod = tr_first_extra(extra, TR_POD_NAME);
	const char *uid = tr_first_extra(extra, TR_POD_UID);
	if (!pod || !uid || tr_copy_name(tr->id.pod, sizeof(tr->id.pod), pod, strlen(pod)) ||
	    strlen(uid) >= sizeof(tr->id.pod_uid)) {
		tr_fail(tr, -EACCES, "not a pod-bound (projected) service-account token");
		return;
	}
	memcpy(tr->id.pod_uid, uid, strlen(uid) + 1);
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s", tr->id.ns, tr->id.pod);
	int rc = kapi_json(tr->k, "GET", path, NULL, 10000, tr_pod_cb, tr, NULL);
	if (rc < 0)
		tr_fail(tr, rc, "cannot ask the API server for the pod");
}

int tokenreview_start(struct kapi *k, struct tokenreview_limit *limit, const char *token,
		      const char *audience, tokenreview_cb cb, void *arg)
{
	struct tokenreview *tr;
	json_t *body;
	int rc;

	if (!token || !*token || strlen(audience) >= sizeof(tr->audience))
		return -EINVAL;
	tr = calloc(1, sizeof(*tr));
	if (!tr)
		return -ENOMEM;
	if (limit && (rc = tr_limit_take(limit)) < 0) {
		free(tr);
		return rc;
	}
	tr->k = k;
	tr->limit = limit;
	tr->cb = cb;
	tr->arg = arg;
	memcpy(tr->audience, audience, strlen(audience) + 1);
	body = json_pack("{s:s, s:s, s:{s:s, s:[s]}}", "apiVersion", "authentication.k8s.io/v1",
			 "kind", "TokenReview", "spec", "token", token, "audiences", audience);
	rc = body ? kapi_json(k, "POST", "/apis/authentication.k8s.io/v1/tokenreviews", body,
			      10000, tr_review_cb, tr, NULL)
		  : -ENOMEM;
	json_decref(body);
	if (rc < 0) {
		if (limit)
			limit->inflight--; /* not started: only the rate keeps it */
		free(tr);
	}
	return rc;
}
