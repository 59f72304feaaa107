/* httpc: see httpc.h.
 *
 * The glue follows libcurl's multi-socket contract: curl tells us which
 * sockets to watch (httpc_socket_cb: one uv_poll per socket, attached to
 * curl with curl_multi_assign) and when to wake it (httpc_timer_fn: one
 * uv_timer); we report readiness with curl_multi_socket_action() and then
 * collect finished transfers (httpc_collect). A request is finished in one
 * place, httpc_req_finish(), whether it completed, failed or was
 * cancelled, so on_done runs exactly once.
 *
 * curl refuses multi calls made from inside its own callbacks, and our
 * callers start requests from on_data (an agent reports a snapshot while
 * the stream delivering it is being read): a request started while curl
 * is running is linked but "deferred", and added to the multi handle as
 * soon as curl_multi_socket_action() returns.
 *
 * Connection reuse: curl gives a request a live connection whose TLS
 * settings match, comparing the CA and client-certificate FILE NAMES, and
 * ours are /proc/self/fd/N, which names whatever memfd has number N now.
 * Were N closed with its creds while a connection made with them lived,
 * the next creds would get N again and curl would send their requests on
 * that connection, authenticated by the old certificate (an expired or
 * retired one, which the control plane then refuses on every call). So
 * every socket of a connection holds a reference to the creds it was
 * opened with (httpc_sock_open/close): their memfds, hence their names,
 * outlive the last connection made with them, and a request reuses only a
 * connection made with its own creds. For the same reason curl's TLS
 * session cache, which outlives connections, is off. */
#include "httpc.h"
#include "list.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

struct httpc {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	struct list_node reqs;	/* live requests (httpc_req.link), for httpc_close */
	unsigned open_handles;	/* timer + polls not yet closed */
	int in_curl;		/* inside curl_multi_socket_action() */
	int closing;
	void (*close_cb)(void *arg);
	void *close_arg;
};

/* One socket curl asked us to watch; freed in its poll's close callback. */
struct httpc_sock {
	uv_poll_t poll;
	curl_socket_t fd;
	struct httpc *h;
};

struct httpc_creds {
	unsigned refs;
	int fds[3]; /* ca, cert, key memfds; -1 when absent */
	char paths[3][32];
};

struct httpc_req {
	struct httpc *h;
	struct list_node link; /* in h->reqs */
	CURL *easy;
	struct curl_slist *headers;
	struct httpc_creds *creds;
	httpc_header_cb on_header;
	httpc_data_cb on_data;
	httpc_done_cb on_done;
	void *data;
	int http2;
	int deferred;	 /* started from inside curl: not yet in the multi */
	int abort_errno; /* what on_data returned to abort */
	char err[CURL_ERROR_SIZE];
};

enum { HTTPC_CA = 0, HTTPC_CERT, HTTPC_KEY };

/* --- credentials ----------------------------------------------------- */

/* A sealed memfd holding `pem`; its fd, or -errno. */
static int httpc_memfd(const char *name, const char *pem)
{
	size_t len = strlen(pem), off = 0;
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0)
		return -errno;
	while (off < len) {
		ssize_t n = write(fd, pem + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? -errno : -EIO;
			close(fd);
			return e;
		}
		off += (size_t)n;
	}
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

int httpc_creds_new(const char *ca_pem, const char *cert_pem, const char *key_pem,
		    struct httpc_creds **out)
{
	static const char *const names[] = {"cinch-ca", "cinch-cert", "cinch-key"};
	const char *pems[3] = {ca_pem, cert_pem, key_pem};
	struct httpc_creds *c;
	int rc = 0;

	if (!ca_pem || !cert_pem != !key_pem)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->refs = 1;
	for (int i = 0; i < 3; i++) {
		c->fds[i] = -1;
		if (!pems[i] || rc < 0)
			continue;
		int fd = httpc_memfd(names[i], pems[i]);
		if (fd < 0) {
			rc = fd;
			continue;
		}
		c->fds[i] = fd;
		snprintf(c->paths[i], sizeof(c->paths[i]), "/proc/self/fd/%d", fd);
	}
	if (rc < 0) {
		httpc_creds_unref(c);
		return rc;
	}
	*out = c;
	return 0;
}

struct httpc_creds *httpc_creds_ref(struct httpc_creds *c)
{
	c->refs++;
	return c;
}

void httpc_creds_unref(struct httpc_creds *c)
{
	if (!c || --c->refs)
		return;
	for (int i = 0; i < 3; i++)
		if (c->fds[i] >= 0)
			close(c->fds[i]);
	free(c);
}

/* --- the loop glue --------------------------------------------------- */

static void httpc_handle_closed(struct httpc *h)
{
	if (--h->open_handles == 0 && h->closing) {
		void (*cb)(void *) = h->close_cb;
		void *arg = h->close_arg;
		curl_multi_cleanup(h->multi);
		free(h);
		if (cb)
			cb(arg);
	}
}

static void httpc_sock_closed_cb(uv_handle_t *handle)
{
	struct httpc_sock *s = handle->data;
	struct httpc *h = s->h;
	free(s);
	httpc_handle_closed(h);
}

static void httpc_timer_closed_cb(uv_handle_t *handle)
{
	httpc_handle_closed(handle->data);
}

static int httpc_map_error(const struct httpc_req *r, CURLcode rc)
{
	switch (rc) {
	case CURLE_OK:
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
		return -EHOSTUNREACH;
	case CURLE_UNSUPPORTED_PROTOCOL:
		return -EPROTONOSUPPORT;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_ISSUER_ERROR:
		return -EPROTO;
	case CURLE_WRITE_ERROR:
		return r->abort_errno ? r->abort_errno : -EIO;
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
		return -ECONNRESET;
	default:
		return -EIO;
	}
}

/* The one place a request ends. `status` overrides the curl code when
 * non-zero (cancellation). */
static void httpc_req_finish(struct httpc_req *r, CURLcode rc, int status)
{
	long code = 0, version = 0;
	const char *err = r->err[0] ? r->err : curl_easy_strerror(rc);

	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_getinfo(r->easy, CURLINFO_HTTP_VERSION, &version);
	curl_multi_remove_handle(r->h->multi, r->easy);
	if (!status)
		status = httpc_map_error(r, rc);
	if (status == -ECANCELED)
		err = "cancelled";
	else if (status == 0 && r->http2 && version != CURL_HTTP_VERSION_2_0) {
		status = -EPROTO;
		err = "the server did not negotiate HTTP/2";
	}
	list_del(&r->link);
	r->on_done(r, status, code, err);

	curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->headers);
	httpc_creds_unref(r->creds);
	free(r);
}

static void httpc_collect(struct httpc *h)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(h->multi, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		struct httpc_req *r = NULL;
		CURLcode rc = msg->data.result;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		httpc_req_finish(r, rc, 0);
	}
}

/* Lets curl act on `fd` (or its timeout), then adds the requests started
 * from its callbacks and finishes the completed ones. */
static void httpc_drive(struct httpc *h, curl_socket_t fd, int flags)
{
	int running;

	h->in_curl++;
	curl_multi_socket_action(h->multi, fd, flags, &running);
	h->in_curl--;
	struct list_node *n, *next;
	list_for_each_safe(n, next, &h->reqs)
	{
		struct httpc_req *r = list_entry(n, struct httpc_req, link);
		if (!r->deferred)
			continue;
		r->deferred = 0;
		if (curl_multi_add_handle(h->multi, r->easy) != CURLM_OK)
			httpc_req_finish(r, CURLE_FAILED_INIT, -EIO);
	}
	httpc_collect(h);
}

static void httpc_poll_cb(uv_poll_t *p, int status, int events)
{
	struct httpc_sock *s = p->data;
	int flags = 0;

	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	/* s may be freed inside socket_action (CURL_POLL_REMOVE): pass h. */
	httpc_drive(s->h, s->fd, flags);
}

static void httpc_timer_cb(uv_timer_t *t)
{
	httpc_drive(t->data, CURL_SOCKET_TIMEOUT, 0);
}

static int httpc_timer_fn(CURLM *multi, long timeout_ms, void *userp)
{
	struct httpc *h = userp;

	if (timeout_ms < 0)
		uv_timer_stop(&h->timer);
	else
		uv_timer_start(&h->timer, httpc_timer_cb, (uint64_t)timeout_ms, 0);
	return 0;
}

static int httpc_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct httpc *h = userp;
	struct httpc_sock *s = socketp;

	if (what == CURL_POLL_REMOVE) {
		if (s) {
			uv_poll_stop(&s->poll);
			uv_close((uv_handle_t *)&s->poll, httpc_sock_closed_cb);
			curl_multi_assign(h->multi, fd, NULL);
		}
		return 0;
	}
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s || uv_poll_init_socket(h->loop, &s->poll, fd) < 0) {
			free(s);
			return -1; /* curl fails the transfer */
		}
		s->fd = fd;
		s->h = h;
		s->poll.data = s;
		h->open_handles++;
		curl_multi_assign(h->multi, fd, s);
	}
	int events = ((what & CURL_POLL_IN) ? UV_READABLE : 0) |
		     ((what & CURL_POLL_OUT) ? UV_WRITABLE : 0);
	return uv_poll_start(&s->poll, events, httpc_poll_cb) < 0 ? -1 : 0;
}

int httpc_new(uv_loop_t *loop, struct httpc **out)
{
	static int global_done;
	struct httpc *h;

	/* Once per process; the daemons are single-threaded. */
	if (!global_done) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			return -EIO;
		global_done = 1;
	}
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->loop = loop;
	list_init(&h->reqs);
	h->multi = curl_multi_init();
	if (!h->multi) {
		free(h);
		return -EIO;
	}
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, httpc_socket_cb);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, httpc_timer_fn);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
	uv_timer_init(loop, &h->timer);
	h->timer.data = h;
	h->open_handles = 1;
	*out = h;
	return 0;
}

void httpc_close(struct httpc *h, void (*cb)(void *arg), void *arg)
{
	while (!list_empty(&h->reqs))
		httpc_req_finish(list_entry(h->reqs.next, struct httpc_req, link), CURLE_OK,
				 -ECANCELED);
	h->closing = 1;
	h->close_cb = cb;
	h->close_arg = arg;
	uv_timer_stop(&h->timer);
	uv_close((uv_handle_t *)&h->timer, httpc_timer_closed_cb);
}

/* --- requests -------------------------------------------------------- */

/* The sockets of a connection and the creds it was made with (see the
 * top): curl calls these with the creds of the request that opened the
 * connection, for every socket it opens and closes. */
static curl_socket_t httpc_sock_open(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
	curl_socket_t fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);

	if (fd != CURL_SOCKET_BAD)
		httpc_creds_ref(clientp);
	return fd;
}

static int httpc_sock_close(void *clientp, curl_socket_t fd)
{
	httpc_creds_unref(clientp);
	return close(fd);
}

static size_t httpc_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct httpc_req *r = userdata;
	size_t n = size * nmemb;

	if (r->on_data) {
		int rc = r->on_data(r, ptr, n);
		if (rc < 0) {
			r->abort_errno = rc;
			return 0; /* curl stops with CURLE_WRITE_ERROR */
		}
	}
	return n;
}

static size_t httpc_header_cb_curl(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct httpc_req *r = userdata;
	size_t n = size * nmemb, len = n;

	while (len && (ptr[len - 1] == '\n' || ptr[len - 1] == '\r'))
		len--;
	/* Status lines ("HTTP/2 200") and the blank line are not headers. */
	if (!r->on_header || len == 0 || (len > 5 && memcmp(ptr, "HTTP/", 5) == 0))
		return n;
	const char *colon = memchr(ptr, ':', len);
	if (!colon)
		return n;
	const char *v = colon + 1, *end = ptr + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	r->on_header(r, ptr, (size_t)(colon - ptr), v, (size_t)(end - v));
	return n;
}

int httpc_request(struct httpc *h, const struct httpc_req_opts *o, struct httpc_creds *creds,
		  struct httpc_req **out)
{
	struct httpc_req *r;
	CURL *e;

	if (!o->url || !o->method || !o->on_done || !creds || h->closing ||
	    strncmp(o->url, "https://", 8) != 0)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	e = r->easy = curl_easy_init();
	if (!e) {
		free(r);
		return -EIO;
	}
	for (const char *const *hd = o->headers; hd && *hd; hd++) {
		struct curl_slist *l = curl_slist_append(r->headers, *hd);
		if (!l)
			goto nomem;
		r->headers = l;
	}
	r->h = h;
	r->creds = httpc_creds_ref(creds);
	r->on_header = o->on_header;
	r->on_data = o->on_data;
	r->on_done = o->on_done;
	r->data = o->data;
	r->http2 = o->http2;

	int bad = 0;
	bad |= curl_easy_setopt(e, CURLOPT_URL, o->url);
	bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
	bad |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->err);
	bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, httpc_write_cb);
	bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	bad |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, httpc_header_cb_curl);
	bad |= curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
	bad |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, o->method);
	if (o->body)
		bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len) |
		       curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, o->body);
	bad |= curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
				o->http2 ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_1_1);
	bad |= curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
	bad |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o->timeout_ms);
	bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
				o->connect_timeout_ms ? o->connect_timeout_ms : 10000L);
	if (o->low_speed_s)
		bad |= curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L) |
		       curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, o->low_speed_s);
	bad |= curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, httpc_sock_open) |
	       curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, creds) |
	       curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, httpc_sock_close) |
	       curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, creds);
	bad |= curl_easy_setopt(e, CURLOPT_SSL_SESSIONID_CACHE, 0L);
	/* Trust only the anchors given, never the system store. */
	bad |= curl_easy_setopt(e, CURLOPT_CAINFO, creds->paths[HTTPC_CA]);
	bad |= curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
	bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	bad |= curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (creds->fds[HTTPC_CERT] >= 0)
		bad |= curl_easy_setopt(e, CURLOPT_SSLCERT, creds->paths[HTTPC_CERT]) |
		       curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM") |
		       curl_easy_setopt(e, CURLOPT_SSLKEY, creds->paths[HTTPC_KEY]) |
		       curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
	r->deferred = h->in_curl > 0;
	if (bad || (!r->deferred && curl_multi_add_handle(h->multi, e) != CURLM_OK)) {
		httpc_creds_unref(r->creds);
		curl_slist_free_all(r->headers);
		curl_easy_cleanup(e);
		free(r);
		return -EIO;
	}
	list_add_head(&h->reqs, &r->link);
	if (out)
		*out = r;
	return 0;
nomem:
	curl_slist_free_all(r->headers);
	curl_easy_cleanup(e);
	free(r);
	return -ENOMEM;
}

void httpc_cancel(struct httpc_req *r)
{
	httpc_req_finish(r, CURLE_OK, -ECANCELED);
}

void *httpc_req_data(const struct httpc_req *r)
{
	return r->data;
}

const char *httpc_curl_tls(void)
{
	const curl_version_info_data *ci = curl_version_info(CURLVERSION_NOW);
	return ci->ssl_version ? ci->ssl_version : "none";
}

void httpc_version_print(FILE *out)
{
	fprintf(out, "  libcurl     %s (TLS: %s)\n", curl_version_info(CURLVERSION_NOW)->version,
		httpc_curl_tls());
}
