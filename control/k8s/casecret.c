/* casecret: see casecret.h. `data` is the Secret's data object as last
 * pulled or pushed (base64 values, as the API server has them) and `rv`
 * its resourceVersion; a pull that brings the same data only moves rv.
 * A synchronous call builds a loop and a kapi client of its own, runs them
 * to the answer or the deadline, and tears them down. The watch only kicks
 * a timer: pulling and reloading never run inside curl's callback. */
#include "casecret.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/base64.h>
#include <openssl/mem.h>

#include "fsutil.h"
#include "kwatch.h"
#include "log.h"

static const char *const cs_files[] = {"ca.key",       "ca.crt",     "next.key",  "next.crt",
				       "activated_at", "bundle.pem", "bundle.seq"};
#define CS_NFILES (sizeof(cs_files) / sizeof(cs_files[0]))

struct casecret {
	uv_loop_t *loop;
	struct kapi *k;
	struct kapi_config kc;
	char ns[64], name[64];
	char dir[4096];
	json_t *data; /* NULL: none seen */
	char *rv;
	struct kwatch *watch;
	uv_timer_t kick;
	int (*accept)(void *arg, const char **why);
	void *accept_arg;
	void (*changed)(void *arg);
	void *arg;
};

/* ---- one synchronous call on a private loop */

struct cs_call {
	int done, status;
	long code;
	json_t *body;
};

static void cs_call_cb(void *arg, int status, long code, json_t *body, const char *err)
{
	struct cs_call *c = arg;

	(void)err;
	c->done = 1;
	c->status = status;
	c->code = code;
	c->body = json_incref(body);
}

static void cs_tick(uv_timer_t *t)
{
	(void)t; /* wakes uv_run(ONCE) */
}

/* The answer (2xx/4xx) within wait_ms, retrying transport errors and 5xx
 * each second. 0 with *code and *body (new reference, may be NULL). */
static int cs_call(struct casecret *cs, const char *method, const char *path, const json_t *body,
		   long wait_ms, long *code, json_t **out)
{
	uv_loop_t loop;
	uv_timer_t tick;
	struct kapi *k = NULL;
	uint64_t deadline;
	int rc;

	*out = NULL;
	if (uv_loop_init(&loop) < 0)
		return -ENOMEM;
	uv_timer_init(&loop, &tick);
	deadline = uv_now(&loop) + (uint64_t)wait_ms;
	rc = kapi_new(&loop, &cs->kc, &k);
	while (rc == 0) {
		struct cs_call c = {0};
		long left = (long)(deadline - uv_now(&loop));
		if ((rc = kapi_json(k, method, path, body, left > 1000 ? left : 1000, cs_call_cb,
				    &c, NULL)) < 0)
			break;
		while (!c.done)
			uv_run(&loop, UV_RUN_ONCE);
		if (c.status == 0 && c.code < 500) {
			*code = c.code;
			*out = c.body;
			break;
		}
		json_decref(c.body);
		uv_update_time(&loop);
		if (uv_now(&loop) + 1000 >= deadline) {
			rc = -ETIMEDOUT;
			break;
		}
		uv_timer_start(&tick, cs_tick, 1000, 0);
		while (uv_is_active((uv_handle_t *)&tick))
			uv_run(&loop, UV_RUN_ONCE);
	}
	if (k)
		kapi_close(k, NULL, NULL);
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	(void)uv_loop_close(&loop);
	return rc;
}

/* ---- files <-> data */

static int cs_path(const struct casecret *cs, const char *file, char *out, size_t len)
{
	int n = snprintf(out, len, "%s/%s", cs->dir, file);
	return n > 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
}

static int cs_known(const char *key)
{
	for (size_t i = 0; i < CS_NFILES; i++)
		if (!strcmp(key, cs_files[i]))
			return 1;
	return 0;
}

/* Decodes one value; new buffer in *out. */
static int cs_decode(const char *b64, uint8_t **out, size_t *len)
{
	size_t n = strlen(b64), max;

	if (n > 4 * ((CASECRET_MAX_VALUE + 2) / 3) || !EVP_DecodedLength(&max, n))
		return -EBADMSG;
	if (!(*out = malloc(max + 1)))
		return -ENOMEM;
	if (!EVP_DecodeBase64(*out, len, max, (const uint8_t *)b64, n) ||
	    *len > CASECRET_MAX_VALUE) {
		free(*out);
		return -EBADMSG;
	}
	return 0;
}

/* Whether `secret` is one of ours and complete. */
static int cs_check(const json_t *secret, const char **why)
{
	const json_t *meta = json_object_get(secret, "metadata");
	const char *owner = json_string_value(
		json_object_get(json_object_get(meta, "labels"), CASECRET_OWNER_KEY));
	const char *type = json_string_value(json_object_get(secret, "type"));
	const json_t *data = json_object_get(secret, "data"), *v;
	const char *key;

	if (!owner || strcmp(owner, CASECRET_OWNER) != 0) {
		*why = "the Secret is not labelled " CASECRET_OWNER_KEY "=" CASECRET_OWNER
		       ": not ours, left alone";
		return -EPERM;
	}
	if (!type || strcmp(type, "Opaque") != 0 || !json_is_object(data)) {
		*why = "the Secret is not of type Opaque with data";
		return -EBADMSG;
	}
	json_object_foreach((json_t *)data, key, v)
	{
		uint8_t *buf;
		size_t len;
		if (!cs_known(key)) {
			*why = "the Secret has a key that is not a file of <state>/ca";
			return -EBADMSG;
		}
		if (!json_is_string(v) || cs_decode(json_string_value(v), &buf, &len) < 0) {
			*why = "a value of the Secret is not base64 of at most 64 KiB";
			return -EBADMSG;
		}
		free(buf);
	}
	if (!json_object_get(data, "ca.key") || !json_object_get(data, "ca.crt") ||
	    !json_object_get(data, "bundle.pem") || !json_object_get(data, "bundle.seq") ||
	    !json_object_get(data, "next.key") != !json_object_get(data, "next.crt")) {
		*why = "the Secret is partial: ca.key, ca.crt, bundle.pem and bundle.seq are "
		       "required, next.key and next.crt go together";
		return -EBADMSG;
	}
	return 0;
}

/* The files become `data` (checked): written 0600, the others removed. */
static int cs_write(struct casecret *cs, const json_t *data, const char **why)
{
	char path[4200];
	int rc;

	if ((rc = fsutil_mkdir(cs->dir, 0700)) < 0) {
		*why = "cannot create <state>/ca";
		return rc;
	}
	for (size_t i = 0; i < CS_NFILES; i++) {
		const char *v = json_string_value(json_object_get(data, cs_files[i]));
		uint8_t *buf = NULL;
		size_t len = 0;

		if ((rc = cs_path(cs, cs_files[i], path, sizeof(path))) < 0)
			return rc;
		if (!v) {
			if (unlink(path) < 0 && errno != ENOENT) {
				*why = "cannot remove a file of <state>/ca";
				return -errno;
			}
			continue;
		}
		if ((rc = cs_decode(v, &buf, &len)) < 0)
			return rc;
		rc = fsutil_write_atomic(path, buf, len, 0600);
		free(buf);
		if (rc < 0) {
			*why = "cannot write a file of <state>/ca";
			return rc;
		}
	}
	return 0;
}

/* The files as a Secret's data object (new). */
static json_t *cs_read(struct casecret *cs, const char **why)
{
	json_t *data = json_object();
	char path[4200];

	for (size_t i = 0; data && i < CS_NFILES; i++) {
		char *buf = NULL, *b64 = NULL;
		size_t len = 0, blen = 0;
		int rc = cs_path(cs, cs_files[i], path, sizeof(path));

		if (rc == 0)
			rc = fsutil_read_all(path, CASECRET_MAX_VALUE, &buf, &len);
		if (rc == -ENOENT)
			continue;
		if (rc == 0 && EVP_EncodedLength(&blen, len) && (b64 = malloc(blen)))
			EVP_EncodeBlock((uint8_t *)b64, (const uint8_t *)buf, len);
		if (buf)
			OPENSSL_cleanse(buf, len);
		free(buf);
		if (!b64 || json_object_set_new(data, cs_files[i], json_string(b64)) < 0) {
			*why = "cannot read <state>/ca";
			json_decref(data);
			data = NULL;
		}
		free(b64);
	}
	return data;
}

static void cs_seen(struct casecret *cs, const json_t *secret, json_t *data)
{
	const char *rv = json_string_value(
		json_object_get(json_object_get(secret, "metadata"), "resourceVersion"));

	json_decref(cs->data);
	cs->data = data;
	free(cs->rv);
	cs->rv = rv ? strdup(rv) : NULL;
}

/* ---- the API */

int casecret_pull(struct casecret *cs, long wait_ms, int *changed, const char **why)
{
	char path[300];
	json_t *body = NULL, *data;
	long code = 0;
	int rc;

	*changed = 0;
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/secrets/%s", cs->ns, cs->name);
	if ((rc = cs_call(cs, "GET", path, NULL, wait_ms, &code, &body)) < 0) {
		*why = rc == -ETIMEDOUT ? "the API server did not answer in time"
					: "cannot ask the API server";
		return rc;
	}
	if (code == 404) {
		rc = -ENOENT;
		*why = "no such Secret";
	} else if (code != 200 || !json_is_object(body)) {
		rc = -EIO;
		*why = code == 403 ? "forbidden: check the RBAC Role of the control"
				   : "unexpected answer from the API server";
	} else if ((rc = cs_check(body, why)) == 0) {
		data = json_object_get(body, "data");
		if (!cs->data || !json_equal(cs->data, data)) {
			if ((rc = cs_write(cs, data, why)) == 0)
				*changed = 1;
			if (rc == 0 && cs->accept && cs->accept(cs->accept_arg, why) < 0) {
				/* back to what was in force (nothing at start) */
				json_t *none = json_object();
				const char *ignored;
				if (!none || cs_write(cs, cs->data ? cs->data : none, &ignored) < 0)
					log_event(LOG_LVL_ERROR, "ca_secret_restore_failed",
						  log_pack("{s:s}", "dir", cs->dir));
				json_decref(none);
				*changed = 0;
				rc = -EBADMSG;
			}
		}
		if (rc == 0)
			cs_seen(cs, body, json_incref(data));
	}
	json_decref(body);
	return rc;
}

int casecret_push(struct casecret *cs, long wait_ms, const char **why)
{
	char path[300];
	json_t *data = cs_read(cs, why), *obj = NULL, *body = NULL;
	long code = 0;
	int rc = -ENOMEM;

	if (!data)
		return -EIO;
	obj = json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s, s:s}}, s:s, s:O}", "apiVersion", "v1",
			"kind", "Secret", "metadata", "name", cs->name, "namespace", cs->ns,
			"labels", CASECRET_OWNER_KEY, CASECRET_OWNER, "app.kubernetes.io/part-of",
			"cinch", "type", "Opaque", "data", data);
	if (!obj)
		goto out;
	if (cs->rv) {
		json_object_set_new(json_object_get(obj, "metadata"), "resourceVersion",
				    json_string(cs->rv));
		snprintf(path, sizeof(path), "/api/v1/namespaces/%s/secrets/%s", cs->ns, cs->name);
	} else {
		snprintf(path, sizeof(path), "/api/v1/namespaces/%s/secrets", cs->ns);
	}
	if ((rc = cs_call(cs, cs->rv ? "PUT" : "POST", path, obj, wait_ms, &code, &body)) < 0) {
		*why = rc == -ETIMEDOUT ? "the API server did not answer in time"
					: "cannot ask the API server";
		goto out;
	}
	if (code == 200 || code == 201) {
		cs_seen(cs, body, data);
		data = NULL;
		rc = 0;
	} else if (code == 409 || code == 404) {
		rc = -EEXIST; /* created, changed or deleted meanwhile */
		*why = "the Secret changed meanwhile";
	} else {
		rc = -EIO;
		*why = code == 403 ? "forbidden: check the RBAC Role of the control"
				   : "the API server refused the Secret";
	}
out:
	if (rc < 0) { /* the files may now differ from the Secret: a pull rewrites them */
		json_decref(cs->data);
		cs->data = NULL;
	}
	json_decref(body);
	json_decref(obj);
	json_decref(data);
	return rc;
}

/* ---- the watch */

static void cs_kick_cb(uv_timer_t *t)
{
	struct casecret *cs = t->data;
	const char *why = NULL;
	int changed = 0;
	int rc = casecret_pull(cs, CASECRET_EVENT_MS, &changed, &why);

	if (rc == -ETIMEDOUT || rc == -EIO || rc == -ENOMEM) {
		log_event(LOG_LVL_WARN, "ca_secret_read_failed",
			  log_pack("{s:s, s:s, s:s, s:i}", "namespace", cs->ns, "secret", cs->name,
				    "error", why, "retry_ms", CASECRET_EVENT_RETRY_MS));
		uv_timer_start(&cs->kick, cs_kick_cb, CASECRET_EVENT_RETRY_MS, 0);
		return;
	}
	if (rc < 0) {
		log_event(LOG_LVL_ERROR, "ca_secret_refused",
			  log_pack("{s:s, s:s, s:s, s:s}", "namespace", cs->ns, "secret", cs->name,
				    "error", why, "effect",
				    "the CA in force stays; nothing is written to the Secret"));
		return;
	}
	if (changed && cs->changed)
		cs->changed(cs->arg);
}

static void cs_event(void *arg, const char *type, json_t *obj)
{
	struct casecret *cs = arg;
	const char *rv = json_string_value(
		json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));

	if (!strcmp(type, "DELETED")) {
		log_event(LOG_LVL_WARN, "ca_secret_deleted",
			  log_pack("{s:s, s:s, s:s}", "namespace", cs->ns, "secret", cs->name,
				    "effect",
				    "the CA in force stays; a restart of every replica "
				    "makes a new root"));
		return;
	}
	if (rv && cs->rv && !strcmp(rv, cs->rv))
		return;
	uv_timer_start(&cs->kick, cs_kick_cb, 0, 0);
}

static void cs_sync(void *arg, json_t *items)
{
	size_t i;
	json_t *obj;

	json_array_foreach(items, i, obj) cs_event(arg, "ADDED", obj);
}

static void cs_watch_error(void *arg, int status, const char *what)
{
	(void)arg;
	log_event(LOG_LVL_WARN, "ca_secret_watch_failed",
		  log_pack("{s:s, s:s}", "what", what, "error", strerror(-status)));
}

static const struct kwatch_ops cs_ops = {
	.sync = cs_sync, .event = cs_event, .error = cs_watch_error};

int casecret_watch(struct casecret *cs, void (*changed)(void *arg), void *arg)
{
	char path[300];

	cs->changed = changed;
	cs->arg = arg;
	snprintf(path, sizeof(path),
		 "/api/v1/namespaces/%s/secrets?fieldSelector=metadata.name%%3D%s", cs->ns,
		 cs->name);
	return kwatch_start(cs->loop, cs->k, path, &cs_ops, cs, &cs->watch);
}

/* ---- life */

int casecret_new(uv_loop_t *loop, struct kapi *k, const struct casecret_config *cfg,
		 struct casecret **out)
{
	struct casecret *cs = calloc(1, sizeof(*cs));

	if (!cs)
		return -ENOMEM;
	cs->loop = loop;
	cs->k = k;
	cs->accept = cfg->accept;
	cs->accept_arg = cfg->accept_arg;
	cs->kc.server = strdup(cfg->kc->server);
	cs->kc.ca_pem = strdup(cfg->kc->ca_pem);
	cs->kc.token_path = strdup(cfg->kc->token_path);
	if (!cs->kc.server || !cs->kc.ca_pem || !cs->kc.token_path ||
	    snprintf(cs->ns, sizeof(cs->ns), "%s", cfg->namespace) >= (int)sizeof(cs->ns) ||
	    snprintf(cs->name, sizeof(cs->name), "%s", cfg->name) >= (int)sizeof(cs->name) ||
	    snprintf(cs->dir, sizeof(cs->dir), "%s/ca", cfg->state_dir) >= (int)sizeof(cs->dir)) {
		kapi_config_cleanup(&cs->kc);
		free(cs);
		return -EINVAL;
	}
	uv_timer_init(loop, &cs->kick);
	cs->kick.data = cs;
	*out = cs;
	return 0;
}

static void cs_closed_cb(uv_handle_t *h)
{
	struct casecret *cs = h->data;

	kapi_config_cleanup(&cs->kc);
	json_decref(cs->data);
	free(cs->rv);
	free(cs);
}

void casecret_stop(struct casecret *cs)
{
	if (!cs)
		return;
	if (cs->watch)
		kwatch_stop(cs->watch);
	cs->watch = NULL;
	cs->changed = NULL;
	uv_close((uv_handle_t *)&cs->kick, cs_closed_cb);
}
