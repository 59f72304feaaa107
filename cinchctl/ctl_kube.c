/* ctl_kube: cinchctl's way to a cluster's API server, with the client
 * cinch-control uses (control/k8s/kapi.c, on httpc: libuv + libcurl)
 * driven synchronously: each call runs a private loop until its answer.
 *
 * Where the API server is and how to authenticate to it, as kubectl finds
 * it: --kubeconfig FILE, else the first file of $KUBECONFIG, else
 * ~/.kube/config, else the pod's service account (in-cluster). From the
 * kubeconfig, the current context's cluster (server, certificate-authority-
 * data or certificate-authority) and user (token or tokenFile) are used;
 * client certificates and exec plugins are refused with a message, since
 * kapi speaks bearer tokens only. An inline token is put in an anonymous
 * memory file, because kapi reads the token from a file per request.
 *
 * The clock of the API server is its Date header (RFC 9110), which kapi
 * does not show: ctl_kube_clock asks /version with httpc directly. */
#include "ctl.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <openssl/base64.h>

#include "httpc.h"
#include "kapi.h"
#include "pdoc.h"

#define CTL_KUBE_TIMEOUT_MS 10000
#define CTL_KUBE_MAX_TEXT   (4u << 20)

struct ctl_kube {
	uv_loop_t loop;
	struct kapi *api;
	struct kapi_config cfg;
	int token_fd; /* the memfd of an inline token, or -1 */
};

/* The item of a kubeconfig list (clusters, users, contexts) called
 * `name`, and its member `what` ("cluster", ...). */
/* A message into why[len], cut if it must be: paths may be long (gcc
 * cannot see that the messages fit, and a cut message is still useful). */
static void __attribute__((format(printf, 3, 4)))
ctl_kube_why(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
}

static const struct pdoc *ctl_kube_named(const struct pdoc *root, const char *list,
					 const char *name, const char *what)
{
	const struct pdoc *l = pdoc_get(root, list);

	for (size_t i = 0; name && l && l->kind == PDOC_SEQ && i < l->n; i++) {
		const struct pdoc *n = pdoc_get(l->items[i], "name");
		if (n && n->kind == PDOC_SCALAR && !strcmp(n->text, name))
			return pdoc_get(l->items[i], what);
	}
	return NULL;
}

static const char *ctl_kube_str(const struct pdoc *map, const char *key)
{
	const struct pdoc *d = pdoc_get(map, key);
	return d && d->kind == PDOC_SCALAR && d->text[0] ? d->text : NULL;
}

static char *ctl_kube_read(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t cap = 0;

	if (!f)
		return NULL;
	ssize_t n = getdelim(&buf, &cap, '\0', f);
	fclose(f);
	if (n < 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* Fills `c` from the kubeconfig at `path`; 0, or -1 with *why. */
static int ctl_kube_config(struct ctl_kube *k, const char *path, struct kapi_config *c, char *why,
			   size_t whylen)
{
	struct pdoc **docs = NULL;
	size_t n = 0;
	struct policy_error err;
	const char *v;
	int rc = -1;

	if (pdoc_parse_file(path, &docs, &n, &err) < 0) {
		ctl_kube_why(why, whylen, "%s:%d: %s", path, err.line, err.msg);
		return -1;
	}
	const struct pdoc *root = n == 1 ? docs[0] : NULL;
	const char *cur = ctl_kube_str(root, "current-context");
	const struct pdoc *ctx = ctl_kube_named(root, "contexts", cur, "context");
	const struct pdoc *cl =
		ctl_kube_named(root, "clusters", ctl_kube_str(ctx, "cluster"), "cluster");
	const struct pdoc *user = ctl_kube_named(root, "users", ctl_kube_str(ctx, "user"), "user");
	if (!cl || !ctl_kube_str(cl, "server")) {
		ctl_kube_why(why, whylen,
			     "%s: no cluster with a server for the current context \"%s\"", path,
			     cur ? cur : "");
		goto out;
	}
	if ((v = ctl_kube_str(cl, "certificate-authority-data"))) {
		size_t len, max;
		if (!EVP_DecodedLength(&max, strlen(v)) || !(c->ca_pem = calloc(1, max + 1)) ||
		    !EVP_DecodeBase64((uint8_t *)c->ca_pem, &len, max, (const uint8_t *)v,
				      strlen(v))) {
			ctl_kube_why(why, whylen, "%s: certificate-authority-data is not base64",
				     path);
			goto out;
		}
	} else if ((v = ctl_kube_str(cl, "certificate-authority"))) {
		if (!(c->ca_pem = ctl_kube_read(v))) {
			ctl_kube_why(why, whylen, "%s: %s", v, strerror(errno));
			goto out;
		}
	} else {
		ctl_kube_why(why, whylen, "%s: the cluster has no certificate-authority(-data)",
			     path);
		goto out;
	}
	if ((v = ctl_kube_str(user, "tokenFile"))) {
		c->token_path = strdup(v);
	} else if ((v = ctl_kube_str(user, "token"))) {
		char p[32];
		k->token_fd = memfd_create("cinchctl-token", MFD_CLOEXEC);
		if (k->token_fd < 0 || write(k->token_fd, v, strlen(v)) != (ssize_t)strlen(v)) {
			ctl_kube_why(why, whylen, "cannot hold the token: %s", strerror(errno));
			goto out;
		}
		snprintf(p, sizeof(p), "/proc/self/fd/%d", k->token_fd);
		c->token_path = strdup(p);
	} else {
		ctl_kube_why(why, whylen,
			     "%s: the user of context \"%s\" has no token or tokenFile (client "
			     "certificates and exec plugins are not supported)",
			     path, cur ? cur : "");
		goto out;
	}
	c->server = strdup(ctl_kube_str(cl, "server"));
	if (!c->server || !c->token_path) {
		ctl_kube_why(why, whylen, "out of memory");
		goto out;
	}
	size_t sl = strlen(c->server);
	if (sl && c->server[sl - 1] == '/')
		c->server[sl - 1] = '\0';
	rc = 0;
out:
	for (size_t i = 0; i < n; i++)
		pdoc_free(docs[i]);
	free(docs);
	return rc;
}

struct ctl_kube *ctl_kube_open(const char *kubeconfig)
{
	struct ctl_kube *k = calloc(1, sizeof(*k));
	struct kapi_config c = {0};
	char why[600] = "", home[PATH_MAX], first[PATH_MAX];
	const char *env = getenv("KUBECONFIG"), *reason = NULL;
	int rc = -1;

	if (!k)
		return NULL;
	k->token_fd = -1;
	if (!kubeconfig && env && *env) {
		snprintf(first, sizeof(first), "%.*s", (int)strcspn(env, ":"), env);
		kubeconfig = first;
	}
	if (!kubeconfig && getenv("HOME")) {
		snprintf(home, sizeof(home), "%s/.kube/config", getenv("HOME"));
		if (access(home, F_OK) == 0)
			kubeconfig = home;
	}
	if (kubeconfig) {
		rc = ctl_kube_config(k, kubeconfig, &c, why, sizeof(why));
	} else if ((rc = kapi_config_in_cluster(&c, &reason)) < 0) {
		snprintf(why, sizeof(why),
			 "no kubeconfig (--kubeconfig, $KUBECONFIG, ~/.kube/config) and not in a "
			 "pod: %s",
			 reason);
	}
	if (rc == 0 && (uv_loop_init(&k->loop) < 0 ||
			(kapi_new(&k->loop, &c, &k->api) < 0 && (uv_loop_close(&k->loop), 1)))) {
		snprintf(why, sizeof(why), "cannot start the Kubernetes client");
		rc = -1;
	}
	k->cfg = c;
	if (rc < 0) {
		kapi_config_cleanup(&k->cfg);
		fprintf(stderr, "cinchctl: %s\n", why);
		if (k->token_fd >= 0)
			close(k->token_fd);
		free(k);
		return NULL;
	}
	return k;
}

static void ctl_kube_closed(void *arg)
{
	*(int *)arg = 1;
}

void ctl_kube_close(struct ctl_kube *k)
{
	int closed = 0;

	if (!k)
		return;
	kapi_close(k->api, ctl_kube_closed, &closed);
	while (!closed)
		uv_run(&k->loop, UV_RUN_ONCE);
	uv_run(&k->loop, UV_RUN_NOWAIT);
	uv_loop_close(&k->loop);
	kapi_config_cleanup(&k->cfg);
	if (k->token_fd >= 0)
		close(k->token_fd);
	free(k);
}

struct ctl_kube_date {
	int done;
	time_t date; /* 0: no Date header */
	char why[256];
};

static void ctl_kube_date_header(struct httpc_req *r, const char *name, size_t name_len,
				 const char *value, size_t value_len)
{
	struct ctl_kube_date *d = httpc_req_data(r);
	char v[64];
	struct tm tm = {0};

	if (name_len != 4 || strncasecmp(name, "date", 4) || value_len >= sizeof(v))
		return;
	memcpy(v, value, value_len);
	v[value_len] = '\0';
	/* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
	if (strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm))
		d->date = timegm(&tm);
}

static void ctl_kube_date_done(struct httpc_req *r, int status, long code, const char *err)
{
	struct ctl_kube_date *d = httpc_req_data(r);

	d->done = 1;
	if (status < 0)
		snprintf(d->why, sizeof(d->why), "%s", err && *err ? err : strerror(-status));
}

int ctl_kube_clock(struct ctl_kube *k, long long *skew_s, char *why, size_t whylen)
{
	struct ctl_kube_date d = {0};
	struct httpc *h = NULL;
	struct httpc_creds *creds = NULL;
	char url[1024], *token = ctl_kube_read(k->cfg.token_path), *auth = NULL;
	int closed = 0, rc = -1;

	snprintf(url, sizeof(url), "%s/version", k->cfg.server);
	if (!token ||
	    asprintf(&auth, "Authorization: Bearer %.*s", (int)strcspn(token, "\r\n"), token) < 0) {
		auth = NULL;
		ctl_kube_why(why, whylen, "cannot read the token");
		goto out;
	}
	const char *headers[] = {"Accept: application/json", auth, NULL};
	struct httpc_req_opts o = {.method = "GET",
				   .url = url,
				   .headers = headers,
				   .timeout_ms = CTL_KUBE_TIMEOUT_MS,
				   .on_header = ctl_kube_date_header,
				   .on_done = ctl_kube_date_done,
				   .data = &d};
	if (httpc_new(&k->loop, &h) < 0 || httpc_creds_new(k->cfg.ca_pem, NULL, NULL, &creds) < 0 ||
	    httpc_request(h, &o, creds, NULL) < 0) {
		ctl_kube_why(why, whylen, "cannot send the request");
		goto out;
	}
	time_t before = time(NULL);
	while (!d.done)
		uv_run(&k->loop, UV_RUN_ONCE);
	time_t after = time(NULL);
	if (d.why[0])
		ctl_kube_why(why, whylen, "%s", d.why);
	else if (!d.date)
		ctl_kube_why(why, whylen, "the API server sent no Date header");
	else {
		*skew_s = (long long)d.date - (long long)(before + (after - before) / 2);
		rc = 0;
	}
out:
	if (h) {
		httpc_close(h, ctl_kube_closed, &closed);
		while (!closed)
			uv_run(&k->loop, UV_RUN_ONCE);
	}
	httpc_creds_unref(creds);
	if (token) {
		explicit_bzero(token, strlen(token));
		free(token);
	}
	if (auth) {
		explicit_bzero(auth, strlen(auth));
		free(auth);
	}
	return rc;
}

struct ctl_kube_call {
	int done;
	long code;
	json_t *body;
	char *text;
	size_t len;
	char why[256];
	struct kapi_req *req;
};

static void ctl_kube_done(void *arg, int status, long code, json_t *body, const char *err)
{
	struct ctl_kube_call *c = arg;

	c->done = 1;
	c->code = status < 0 ? 0 : code;
	c->body = json_incref(body);
	if (status < 0)
		snprintf(c->why, sizeof(c->why), "%s", err && *err ? err : strerror(-status));
	else if (code < 200 || code > 299)
		snprintf(c->why, sizeof(c->why), "HTTP %ld%s%s", code,
			 json_string_value(json_object_get(body, "message")) ? ": " : "",
			 json_string_value(json_object_get(body, "message"))
				 ? json_string_value(json_object_get(body, "message"))
				 : "");
}

static int ctl_kube_line(void *arg, const char *line, size_t len)
{
	struct ctl_kube_call *c = arg;

	if (c->len + len + 2 > CTL_KUBE_MAX_TEXT)
		return -E2BIG;
	char *t = realloc(c->text, c->len + len + 2);
	if (!t)
		return -ENOMEM;
	memcpy(t + c->len, line, len);
	c->len += len;
	t[c->len++] = '\n';
	t[c->len] = '\0';
	c->text = t;
	return 0;
}

static void ctl_kube_timeout(uv_timer_t *t)
{
	struct ctl_kube_call *c = t->data;
	if (!c->done)
		kapi_cancel(c->req);
}

json_t *ctl_kube_get(struct ctl_kube *k, const char *path, char *why, size_t whylen)
{
	struct ctl_kube_call c = {0};

	if (kapi_json(k->api, "GET", path, NULL, CTL_KUBE_TIMEOUT_MS, ctl_kube_done, &c, NULL) <
	    0) {
		ctl_kube_why(why, whylen, "cannot send the request");
		return NULL;
	}
	while (!c.done)
		uv_run(&k->loop, UV_RUN_ONCE);
	if (c.code >= 200 && c.code <= 299 && c.body)
		return c.body;
	ctl_kube_why(why, whylen, "%s", c.why[0] ? c.why : "not JSON");
	json_decref(c.body);
	return NULL;
}

char *ctl_kube_text(struct ctl_kube *k, const char *path, long *code, char *why, size_t whylen)
{
	struct ctl_kube_call c = {0};
	uv_timer_t timer;

	if (kapi_stream(k->api, path, ctl_kube_line, ctl_kube_done, &c, &c.req) < 0) {
		ctl_kube_why(why, whylen, "cannot send the request");
		return NULL;
	}
	uv_timer_init(&k->loop, &timer);
	timer.data = &c;
	uv_timer_start(&timer, ctl_kube_timeout, CTL_KUBE_TIMEOUT_MS, 0);
	while (!c.done)
		uv_run(&k->loop, UV_RUN_ONCE);
	uv_timer_stop(&timer);
	uv_close((uv_handle_t *)&timer, NULL);
	uv_run(&k->loop, UV_RUN_NOWAIT);
	json_decref(c.body);
	*code = c.code;
	if (c.why[0])
		ctl_kube_why(why, whylen, "%s", c.why);
	if (!c.text)
		c.text = strdup("");
	return c.text;
}
