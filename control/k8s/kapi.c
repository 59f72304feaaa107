/* kapi: see kapi.h. Each request is a struct kapi_req wrapping one httpc
 * request: the body is accumulated (JSON) or cut into lines (streams) in
 * kapi_on_data, and kapi_on_done is the one place a request ends. */
#include "kapi.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "httpc.h"

#define KAPI_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define KAPI_MAX_FILE (1u << 20)

struct kapi {
	struct httpc *http;
	struct httpc_creds *creds;
	char *server;
	char *token_path;
	void (*close_cb)(void *arg);
	void *close_arg;
};

struct kapi_req {
	struct kapi *k;
	struct httpc_req *hr;
	kapi_json_cb cb;
	kapi_line_cb on_line; /* NULL: a JSON request */
	void *arg;
	char *buf;
	size_t len, cap;
};

/* Reads a whole small file into a new NUL-terminated string. */
static int kapi_read_file(const char *path, char **out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf;
	size_t len = 0;
	int rc = 0;

	if (fd < 0)
		return -errno;
	buf = malloc(KAPI_MAX_FILE + 1);
	while (buf) {
		ssize_t n = read(fd, buf + len, KAPI_MAX_FILE - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == KAPI_MAX_FILE) {
			rc = -EFBIG;
			break;
		}
	}
	close(fd);
	if (!buf)
		return -ENOMEM;
	if (rc < 0) {
		free(buf);
		return rc;
	}
	buf[len] = '\0';
	*out = buf;
	return 0;
}

void kapi_config_cleanup(struct kapi_config *c)
{
	free(c->server);
	free(c->ca_pem);
	free(c->token_path);
	memset(c, 0, sizeof(*c));
}

int kapi_config_explicit(struct kapi_config *out, const char *server, const char *ca_file,
			 const char *token_file, const char **why)
{
	struct kapi_config c = { 0 };

	if (strncmp(server, "https://", 8) != 0) {
		*why = "the API server URL must start with https://";
		return -EINVAL;
	}
	if (kapi_read_file(ca_file, &c.ca_pem) < 0) {
		*why = "cannot read the API server's CA file";
		return -ENOENT;
	}
	c.server = strdup(server);
	c.token_path = strdup(token_file);
	if (!c.server || !c.token_path) {
		kapi_config_cleanup(&c);
		*why = "out of memory";
		return -ENOMEM;
	}
	/* "https://host:port/" and "https://host:port" mean the same. */
	size_t n = strlen(c.server);
	if (c.server[n - 1] == '/')
		c.server[n - 1] = '\0';
	*out = c;
	return 0;
}

int kapi_config_in_cluster(struct kapi_config *out, const char **why)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	char url[300];

	if (!host || !*host || !port || !*port) {
		*why = "KUBERNETES_SERVICE_HOST/PORT are not set: not running in a cluster";
		return -ENOENT;
	}
	/* An IPv6 service address needs brackets in a URL. */
	snprintf(url, sizeof(url), strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
		 port);
	return kapi_config_explicit(out, url, KAPI_SA_DIR "/ca.crt", KAPI_SA_DIR "/token", why);
}

int kapi_new(uv_loop_t *loop, const struct kapi_config *cfg, struct kapi **out)
{
	struct kapi *k = calloc(1, sizeof(*k));
	int rc;

	if (!k)
		return -ENOMEM;
	k->server = strdup(cfg->server);
	k->token_path = strdup(cfg->token_path);
	rc = k->server && k->token_path ? 0 : -ENOMEM;
	if (rc == 0)
		rc = httpc_creds_new(cfg->ca_pem, NULL, NULL, &k->creds);
	if (rc == 0)
		rc = httpc_new(loop, &k->http);
	if (rc < 0) {
		httpc_creds_unref(k->creds);
		free(k->server);
		free(k->token_path);
		free(k);
		return rc;
	}
	*out = k;
	return 0;
}

static void kapi_closed_cb(void *arg)
{
	struct kapi *k = arg;
	void (*cb)(void *) = k->close_cb;
	void *cb_arg = k->close_arg;

	httpc_creds_unref(k->creds);
	free(k->server);
	free(k->token_path);
	free(k);
	if (cb)
		cb(cb_arg);
}

void kapi_close(struct kapi *k, void (*cb)(void *arg), void *arg)
{
	k->close_cb = cb;
	k->close_arg = arg;
	httpc_close(k->http, kapi_closed_cb, k);
}

static int kapi_on_data(struct httpc_req *hr, const char *data, size_t len)
{
	struct kapi_req *r = httpc_req_data(hr);
	size_t limit = r->on_line ? KAPI_MAX_LINE : KAPI_MAX_BODY;

	if (r->len + len > limit)
		return -E2BIG;
	if (r->len + len + 1 > r->cap) {
		size_t cap = r->cap ? r->cap : 4096;
		while (cap < r->len + len + 1)
			cap *= 2;
		char *b = realloc(r->buf, cap);
		if (!b)
			return -ENOMEM;
		r->buf = b;
		r->cap = cap;
	}
	memcpy(r->buf + r->len, data, len);
	r->len += len;
	if (!r->on_line)
		return 0;

	/* Hand over every complete line; keep the partial one. */
	size_t start = 0;
	for (size_t i = r->len - len; i < r->len; i++) {
		if (r->buf[i] != '\n')
			continue;
		r->buf[i] = '\0';
		int rc = i > start ? r->on_line(r->arg, r->buf + start, i - start) : 0;
		if (rc < 0)
			return rc;
		start = i + 1;
	}
	memmove(r->buf, r->buf + start, r->len - start);
	r->len -= start;
	return 0;
}

static void kapi_on_done(struct httpc_req *hr, int status, long code, const char *err)
{
	struct kapi_req *r = httpc_req_data(hr);
	json_t *body = NULL;

	if (status == 0 && !r->on_line && r->len) {
		json_error_t jerr;
		body = json_loadb(r->buf, r->len, 0, &jerr);
	}
	r->cb(r->arg, status, code, body, err);
	json_decref(body);
	free(r->buf);
	free(r);
}

static int kapi_start(struct kapi *k, const char *method, const char *path,
		      const char *patch_type, const json_t *body, long timeout_ms,
		      kapi_line_cb on_line, kapi_json_cb cb, void *arg, struct kapi_req **out)
{
	char url[2048], *token = NULL, *auth = NULL, *text = NULL;
	struct kapi_req *r = NULL;
	int rc;

	if (path[0] != '/' ||
	    (size_t)snprintf(url, sizeof(url), "%s%s", k->server, path) >= sizeof(url))
		return -EINVAL;
	rc = kapi_read_file(k->token_path, &token);
	if (rc < 0)
		return rc;
	token[strcspn(token, "\r\n")] = '\0';
	rc = -ENOMEM;
	if (asprintf(&auth, "Authorization: Bearer %s", token) < 0) {
		auth = NULL;
		goto out;
	}
	if (body && !(text = json_dumps(body, JSON_COMPACT)))
		goto out;
	r = calloc(1, sizeof(*r));
	if (!r)
		goto out;
	r->k = k;
	r->cb = cb;
	r->on_line = on_line;
	r->arg = arg;
	char ctype[80];
	snprintf(ctype, sizeof(ctype), "Content-Type: %s",
		 strcmp(method, "PATCH") ? "application/json" : patch_type);
	const char *headers[] = { "Accept: application/json", ctype, auth, NULL };
	struct httpc_req_opts o = {
		.method = method, .url = url, .headers = headers, .body = text,
		.body_len = text ? strlen(text) : 0, .timeout_ms = timeout_ms,
		/* A watch is quiet for long stretches; bookmarks come each minute. */
		.low_speed_s = on_line ? 0 : 30,
		.on_data = kapi_on_data, .on_done = kapi_on_done, .data = r,
	};
	rc = httpc_request(k->http, &o, k->creds, &r->hr);
	if (rc == 0) {
		if (out)
			*out = r;
		r = NULL;
	}
out:
	free(r);
	free(text);
	if (auth) {
		explicit_bzero(auth, strlen(auth));
		free(auth);
	}
	explicit_bzero(token, strlen(token));
	free(token);
	return rc;
}

int kapi_json(struct kapi *k, const char *method, const char *path, const json_t *body,
	      long timeout_ms, kapi_json_cb cb, void *arg, struct kapi_req **out)
{
	/* PATCH bodies are JSON merge patches (RFC 7386) unless kapi_patch. */
	return kapi_start(k, method, path, KAPI_PATCH_MERGE, body, timeout_ms, NULL, cb, arg, out);
}

int kapi_patch(struct kapi *k, const char *path, const char *type, const json_t *body,
	       long timeout_ms, kapi_json_cb cb, void *arg, struct kapi_req **out)
{
	return kapi_start(k, "PATCH", path, type, body, timeout_ms, NULL, cb, arg, out);
}

int kapi_stream(struct kapi *k, const char *path, kapi_line_cb on_line, kapi_json_cb done,
		void *arg, struct kapi_req **out)
{
	return kapi_start(k, "GET", path, NULL, NULL, 0, on_line, done, arg, out);
}

void kapi_cancel(struct kapi_req *r)
{
	httpc_cancel(r->hr);
}
