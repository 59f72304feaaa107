/* conn_test: two agents' proxies in one process, on one loop, as a normal
 * user (no root, no namespaces, no iptables, no network): the web agent's
 * outbound and the api agent's inbound driven through the connection
 * core.
 *
 *   client --> [web: outbound] --TLS--> [api: inbound] --> app (echo)
 *
 * The memory transport. Every byte travels over kernel AF_UNIX stream
 * sockets: no IP stack, no port, no address, no root; not one TCP/IP
 * socket is made (the proxies are started with no listeners). A
 * user-space memory transport was not chosen: the core's socket layer is
 * libuv streams (conn.h), and a unix stream socket runs the very same
 * read/write/EOF/shutdown/error paths of it (a pipe conn, conn_init_pipe)
 * that TCP does, where a fake transport would test itself. What AF_UNIX
 * has not is a TCP reset: the core closes a pipe conn plainly, and a peer
 * reset is made as Linux makes one on a unix socket: closed with unread
 * data, the peer's reads fail with ECONNRESET (the app's reset); a write
 * to a closed peer fails with EPIPE (the write error).
 *
 * Interception is faked: a connection "redirected" to a proxy is one end
 * of a socketpair handed to it with proxy_adopt, with the addresses
 * iptables and SO_ORIGINAL_DST would give (source, the listener's local
 * address, the original destination API_IP:port), the other end being
 * the client's; it goes the proxy's one accept path (the accept helper,
 * the checks, the budgets). The pods' own addresses are fake (web's
 * WEB_IP, api's API_IP: proxy_config.own_addrs), so api's own-address
 * check passes with no address on this machine. The proxies' dials go
 * where `route` says: unix sockets in the test's directory, dialed by the
 * core's own (asynchronous) connect: web's to "api-in", whose accepts are
 * adopted by api's inbound, api's to "app". The certificates (testpki)
 * are made at start: web's and api's SVIDs, and db's (a valid SVID of
 * another workload, for the pinning case). Each scenario checks the
 * access-log records both proxies wrote: verdict, end, error, denied.
 *
 * Cases: handshake and relay of 256 KiB both ways with half-close
 * (shutdown(SHUT_WR): an EOF at the peer); pinning failure (api's agent
 * presents db's certificate: peer_identity_mismatch, verdict allow, not a
 * denial); deny (web's policy knows api refuses it on 9090: refused
 * before any dial, a denial); an inbound connection to an address that is
 * not the pod's (another host, the pod's loopback: refused at accept, a
 * denial); connect refused to an allowed app (a unix
 * socket bound but not listening: an error with verdict allow, never a
 * deny); idle timeout; the app resets (a reset carried to the client); a
 * caller that closes right after its handshake (the verdict frame's
 * write fails: the session ends at once, before the relay); an
 * allocation failure at accept (injected: the next session's calloc
 * fails): the connection is closed at once and the proxy serves the next
 * one (that a listener keeps being polled then is common.conn's).
 *
 * Services (a call to a virtual IP, outbound.c): the registry holds
 * shop/api (VIP 10.96.0.10:80 -> 8080 on api and api-2), shop/many
 * (four endpoints, api-2 .. api-5) and shop/empty (none ready). A failing
 * endpoint is routed to the "refuser", a listener that accepts and closes
 * at once, the dialer's ClientHello unread (its accepts counted: the
 * tries). Every endpoint failing: the
 * call ends as a connection error (reset, verdict allow, not a denial)
 * after each endpoint was tried once (shop/api: 2) or at the bound
 * (shop/many: 3 of 4), each retry on a fresh up end (the error is
 * the last try's: connect_refused, or reset when the reset came in the
 * handshake); then the endpoint whose backoff ends first fails again and
 * the call moves to the other (one reset, then relayed, the log naming
 * the endpoint); no ready
 * endpoint: refused at once, a denial with svcpick's reason, nothing
 * dialed. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/x509.h>
#include <uv.h>

#include "conn.h"
#include "mtls.h"
#include "policy.h"
#include "proxy.h"
#include "session.h"
#include "testpki.h"

#define TD  "cluster.local"
#define WEB "spiffe://" TD "/ns/shop/sa/web"
#define API "spiffe://" TD "/ns/shop/sa/api"
#define DB  "spiffe://" TD "/ns/shop/sa/db"
#define BIG (256 * 1024)
/* The pods' (fake) addresses and the agents' ports */
#define WEB_IP	 "198.51.100.7"
#define API_IP	 "198.51.100.6"
#define OUT_PORT 15001
#define IN_PORT	 15006

/* ---- calloc failure injection (linked with --wrap=calloc) */

void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);
static size_t fail_calloc_size; /* the next calloc of this size fails */

void *__wrap_calloc(size_t n, size_t size)
{
	if (fail_calloc_size && n == 1 && size == fail_calloc_size) {
		fail_calloc_size = 0;
		return NULL;
	}
	return __real_calloc(n, size);
}

/* ---- the world: two proxies, an app, PKI */

struct rec {
	int outbound;
	char verdict[16], end[32], reason[160], tls[16], state[16];
	char service[32], endpoint[64];
	enum conn_reason error;
	int denied;
	uint64_t bytes_out, bytes_in;
};

struct agent {
	struct proxy *p;
	struct rec recs[16];
	int n;
};

enum app_mode {
	APP_ECHO = 0, /* echoes, shuts after the client's end */
	APP_SILENT,   /* reads, never answers */
	APP_RESET,    /* resets at the first byte (app_reset) */
};

struct app_conn {
	struct conn c;
	int eof;
};

static struct {
	uv_loop_t loop;
	struct conn_loop cl;
	char dir[64];
	const char *dst_ip; /* the scenario's original destination: API_IP ... */
	uint16_t dst_port;  /* ... and port */
	struct agent web, api;
	uv_pipe_t api_in; /* web's dials to api: adopted by api's inbound */
	uv_pipe_t app_l;
	int app_closed_route; /* api dials a socket nobody listens on */
	uint16_t vip_port;    /* web's original destination is VIP:vip_port */
	uv_pipe_t refuser;    /* accepts and closes (a failing endpoint) */
	char fail_ip[64];     /* web's dials to it go to the refuser; "*": all */
	uint16_t next_port;   /* the adopted connections' source ports */
	enum app_mode mode;
	uv_poll_t reset_poll; /* APP_RESET: the app's socket */
	int reset_fd;
	EVP_PKEY *ca_key, *key;
	X509 *ca;
	struct mtls_ctx *web_tls, *api_tls, *db_tls;
	struct policy_slice *web_slice, *api_slice;
} W;

static void on_log(void *arg, const struct proxy_record *r)
{
	struct agent *a = arg;
	struct rec *x;

	assert_true(a->n < 16);
	x = &a->recs[a->n++];
	x->outbound = !strcmp(r->direction, "outbound");
	snprintf(x->verdict, sizeof(x->verdict), "%s", r->verdict);
	snprintf(x->end, sizeof(x->end), "%s", r->end);
	snprintf(x->reason, sizeof(x->reason), "%s", r->reason);
	snprintf(x->tls, sizeof(x->tls), "%s", r->tls_version);
	snprintf(x->state, sizeof(x->state), "%s", r->state);
	snprintf(x->service, sizeof(x->service), "%s", r->service ? r->service : "");
	snprintf(x->endpoint, sizeof(x->endpoint), "%s", r->endpoint ? r->endpoint : "");
	x->error = r->error;
	x->denied = r->denied;
	x->bytes_out = r->bytes_out;
	x->bytes_in = r->bytes_in;
}

static void ip4(struct sockaddr_storage *a, const char *ip, uint16_t port)
{
	memset(a, 0, sizeof(*a));
	assert_int_equal(uv_ip4_addr(ip, port, (struct sockaddr_in *)a), 0);
}

/* The unix socket `name` in the test's directory. */
static void unix_addr(struct sockaddr_storage *a, const char *name)
{
	struct sockaddr_un *u = (struct sockaddr_un *)a;

	memset(a, 0, sizeof(*a));
	u->sun_family = AF_UNIX;
	assert_true(snprintf(u->sun_path, sizeof(u->sun_path), "%s/%s", W.dir, name) <
		    (int)sizeof(u->sun_path));
}

static void listen_unix(uv_pipe_t *l, const char *name, uv_connection_cb cb)
{
	struct sockaddr_storage a;

	unix_addr(&a, name);
	assert_int_equal(uv_pipe_init(&W.loop, l, 0), 0);
	assert_int_equal(uv_pipe_bind(l, ((struct sockaddr_un *)&a)->sun_path), 0);
	assert_int_equal(uv_listen((uv_stream_t *)l, 16, cb), 0);
}

static void tmp_closed(uv_handle_t *h)
{
	free(h);
}

/* The listener's pending connection, as a socket of the test's own. */
static int accept_fd(uv_stream_t *l)
{
	uv_pipe_t *t = malloc(sizeof(*t));
	uv_os_fd_t fd;
	int own;

	assert_non_null(t);
	assert_int_equal(uv_pipe_init(&W.loop, t, 0), 0);
	assert_int_equal(uv_accept(l, (uv_stream_t *)t), 0);
	assert_int_equal(uv_fileno((uv_handle_t *)t, &fd), 0);
	assert_true((own = fcntl(fd, F_DUPFD_CLOEXEC, 0)) >= 0);
	uv_close((uv_handle_t *)t, tmp_closed);
	return own;
}

#define VIP	  "10.96.0.10"
#define VIP_MANY  "10.96.0.11"
#define VIP_EMPTY "10.96.0.12"
static const char *vip_ip = VIP;

/* A connection "redirected" to agent a: fd, from src_ip, to the
 * original destination dst_ip:dst_port (web's, in the Service cases:
 * vip_ip:vip_port). */
static void redirect(struct agent *a, int fd, const char *src_ip)
{
	struct sockaddr_storage src, local, dst;
	int outbound = a == &W.web;

	ip4(&src, src_ip, W.next_port++);
	/* where REDIRECT sends it: the outbound port on loopback for the
	 * pod's own calls, the inbound port on the pod's address */
	ip4(&local, outbound ? "127.0.0.1" : API_IP, outbound ? OUT_PORT : IN_PORT);
	if (outbound && W.vip_port)
		ip4(&dst, vip_ip, W.vip_port);
	else
		ip4(&dst, W.dst_ip, W.dst_port);
	proxy_adopt(a->p, outbound, fd, &src, &local, &dst);
}

/* web dials api (its inbound, through "api-in"), or the refuser; api
 * dials the app. */
static void route(void *arg, const struct sockaddr_storage *dst, struct sockaddr_storage *to)
{
	if (arg == &W.web) {
		char ip[64] = "";
		uv_ip4_name((const struct sockaddr_in *)dst, ip, sizeof(ip));
		unix_addr(to,
			  !strcmp(W.fail_ip, "*") || !strcmp(W.fail_ip, ip) ? "refuser" : "api-in");
	} else {
		unix_addr(to, W.app_closed_route ? "closed" : "app");
	}
}

/* web's agent dialed api's: api's inbound takes it. */
static void api_in_accept(uv_stream_t *l, int status)
{
	assert_int_equal(status, 0);
	redirect(&W.api, accept_fd(l), WEB_IP);
}

/* ---- the app */

static int app_data(struct conn *c, const uint8_t *buf, size_t len)
{
	if (W.mode == APP_SILENT)
		return 0;
	return conn_write(c, buf, len);
}

static void app_eof(struct conn *c)
{
	if (W.mode == APP_ECHO)
		conn_shutdown(c);
	else
		conn_finalize(c, CONN_ER_CLOSED);
}

static void app_shut(struct conn *c)
{
	conn_finalize(c, CONN_ER_CLOSED);
}

static void app_closed(struct conn *c)
{
	free(c);
}

static const struct conn_ops app_ops = {
	.data = app_data, .eof = app_eof, .shut = app_shut, .closed = app_closed};

/* A failing endpoint: accepted and closed at once (counted in
 * W.cl.refused_at_accept). */
static void refuser_accept(uv_stream_t *l, int status)
{
	assert_int_equal(status, 0);
	assert_int_equal(conn_accept(&W.cl, l, NULL, 1), -ECONNABORTED);
}

/* APP_RESET: the first bytes came; the app closes without reading them,
 * which Linux tells the peer as a reset (ECONNRESET). */
static void app_reset(uv_poll_t *h, int status, int events)
{
	(void)status;
	(void)events;
	uv_close((uv_handle_t *)h, NULL);
	close(W.reset_fd);
}

static void app_accept(uv_stream_t *l, int status)
{
	struct conn *c;

	assert_int_equal(status, 0);
	if (W.mode == APP_RESET) {
		W.reset_fd = accept_fd(l);
		assert_int_equal(uv_poll_init(&W.loop, &W.reset_poll, W.reset_fd), 0);
		assert_int_equal(uv_poll_start(&W.reset_poll, UV_READABLE, app_reset), 0);
		return;
	}
	assert_non_null(c = calloc(1, sizeof(*c)));
	assert_int_equal(conn_init_pipe(c, &W.cl, &app_ops, NULL), 0);
	assert_int_equal(conn_accept(&W.cl, l, c, 0), 0);
	conn_start(c);
	conn_read_start(c);
}

/* ---- the client (the web pod's app) */

struct client {
	struct conn c;
	size_t sent_want;
	uint8_t *got;
	size_t got_len;
	int eof, closed, hello_then_reset;
	enum conn_reason reason;
};

static void client_open(struct conn *c)
{
	struct client *k = c->owner;
	uint8_t *buf;

	conn_read_start(c);
	if (!k->sent_want)
		return;
	buf = malloc(k->sent_want);
	assert_non_null(buf);
	for (size_t i = 0; i < k->sent_want; i++)
		buf[i] = (uint8_t)(i * 13);
	assert_int_equal(conn_write(c, buf, k->sent_want), 0);
	free(buf);
	conn_shutdown(c);
}

static int client_data(struct conn *c, const uint8_t *buf, size_t len)
{
	struct client *k = c->owner;

	k->got = realloc(k->got, k->got_len + len);
	assert_non_null(k->got);
	memcpy(k->got + k->got_len, buf, len);
	k->got_len += len;
	return 0;
}

static void client_eof(struct conn *c)
{
	struct client *k = c->owner;

	k->eof = 1;
	conn_finalize(c, CONN_ER_CLOSED);
}

static void client_end(struct conn *c, enum conn_reason r)
{
	((struct client *)c->owner)->reason = r;
}

static void client_closed(struct conn *c)
{
	((struct client *)c->owner)->closed = 1;
}

static const struct conn_ops client_ops = {
	.open = client_open,
	.data = client_data,
	.eof = client_eof,
	.end = client_end,
	.closed = client_closed,
};

/* The web pod's app calls API_IP:dst_port (or the VIP): a socketpair,
 * one end the client's, the other redirected to web's outbound. */
static void client_connect(struct client *k, size_t send)
{
	int sv[2];

	memset(k, 0, sizeof(*k));
	k->sent_want = send;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(conn_init_pipe(&k->c, &W.cl, &client_ops, k), 0);
	assert_int_equal(uv_pipe_open(&k->c.h.pipe, sv[0]), 0);
	redirect(&W.web, sv[1], WEB_IP);
	conn_start(&k->c);
}

static void dog_cb(uv_timer_t *t)
{
	*(int *)t->data = 1;
}

/* Runs the loop until *flag and both agents logged n_web / n_api
 * records, for at most `ms`. */
static void run_until(int *flag, int n_web, int n_api, unsigned ms)
{
	uv_timer_t dog;
	int expired = 0;

	assert_int_equal(uv_timer_init(&W.loop, &dog), 0);
	dog.data = &expired;
	assert_int_equal(uv_timer_start(&dog, dog_cb, ms, 0), 0);
	while (!expired && !(*flag && W.web.n >= n_web && W.api.n >= n_api))
		uv_run(&W.loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&dog, NULL);
	uv_run(&W.loop, UV_RUN_NOWAIT);
	assert_true(*flag);
	assert_true(W.web.n >= n_web);
	assert_true(W.api.n >= n_api);
}

/* ---- set-up */

static struct mtls_ctx *svid(const char *id)
{
	const char *sans[] = {id}, *why = NULL;
	X509 *leaf = testpki_leaf(W.ca, W.ca_key, W.key, sans, 1, -60, 3600);
	STACK_OF(X509) *chain = sk_X509_new_null(), *roots = sk_X509_new_null();
	struct mtls_ctx *ctx = NULL;

	assert_non_null(leaf);
	sk_X509_push(chain, leaf);
	X509_up_ref(W.ca);
	sk_X509_push(roots, W.ca);
	assert_int_equal(mtls_ctx_new(chain, W.key, roots, &ctx, &why), 0);
	sk_X509_pop_free(chain, X509_free);
	sk_X509_pop_free(roots, X509_free);
	return ctx;
}

static void write_file(const char *name, const char *text)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", W.dir, name);
	assert_non_null(f = fopen(path, "w"));
	fputs(text, f);
	fclose(f);
}

static struct policy_slice *slice_for(const char *self)
{
	char wl[128], pol[128];
	struct policy_slice *s = NULL;
	struct policy_error err;

	snprintf(wl, sizeof(wl), "%s/workloads.yaml", W.dir);
	snprintf(pol, sizeof(pol), "%s/policy", W.dir);
	if (policy_slice_load(&s, TD, pol, wl, self, NULL, 0, &err) < 0)
		fail_msg("policy: %s:%d: %s", err.file, err.line, err.msg);
	return s;
}

static struct proxy *start_agent(struct agent *a)
{
	struct sockaddr_storage own;
	struct proxy_config cfg = {
		.host = NULL, /* no listeners: connections come by proxy_adopt */
		.outbound_port = OUT_PORT,
		.inbound_port = IN_PORT,
		.connect_ms = 2000,
		.handshake_ms = 3000,
		.idle_ms = 600,
		.max_conns = 64,
		.outbound_reserve = 8,
		.max_handshakes = 16,
		.max_pending_per_source = 16,
		.route = route,
		.hook_arg = a,
		.own_addrs = &own,
		.n_own_addrs = 1,
	};
	struct proxy *p = NULL;

	ip4(&own, a == &W.web ? WEB_IP : API_IP, 0);

	assert_int_equal(proxy_start(&W.loop, &cfg, on_log, a, &p), 0);
	return p;
}

static int setup(void **state)
{
	char text[2048];
	(void)state;

	memset(&W, 0, sizeof(W));
	W.next_port = 40000;
	snprintf(W.dir, sizeof(W.dir), "/tmp/cinch-conn-test-XXXXXX");
	assert_non_null(mkdtemp(W.dir));
	snprintf(text, sizeof(text), "%s/policy", W.dir);
	assert_int_equal(mkdir(text, 0700), 0);
	snprintf(text, sizeof(text),
		 "apiVersion: cinch.dev/v1alpha1\nkind: Workload\n"
		 "metadata: {name: web, namespace: shop}\n"
		 "spec: {serviceAccount: web, addresses: [\"198.51.100.7\"]}\n---\n"
		 "apiVersion: cinch.dev/v1alpha1\nkind: Workload\n"
		 "metadata: {name: api, namespace: shop}\n"
		 "spec: {serviceAccount: api, addresses: [\"" API_IP "\"]}\n");
	for (int i = 2; i <= 5; i++) /* Service endpoints that fail, of identity sa/api */
		snprintf(text + strlen(text), sizeof(text) - strlen(text),
			 "---\napiVersion: cinch.dev/v1alpha1\nkind: Workload\n"
			 "metadata: {name: api-%d, namespace: shop}\n"
			 "spec: {serviceAccount: api, addresses: [\"198.51.100.%d\"]}\n",
			 i, 6 + i);
	write_file("workloads.yaml", text);
	snprintf(text, sizeof(text), "%s",
		 "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\n"
		 "spec: {clusterIP: " VIP ", ports: [{port: 80, targetPort: 8080}]}\n---\n"
		 "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
		 "metadata: {name: api-1, namespace: shop, labels: {kubernetes.io/service-name: "
		 "api}}\n"
		 "addressType: IPv4\nendpoints:\n"
		 "- {addresses: [\"" API_IP "\"], conditions: {ready: true}}\n"
		 "- {addresses: [198.51.100.8], conditions: {ready: true}}\n"
		 "ports: [{port: 8080}]\n---\n"
		 "apiVersion: v1\nkind: Service\nmetadata: {name: many, namespace: shop}\n"
		 "spec: {clusterIP: " VIP_MANY ", ports: [{port: 80, targetPort: 8080}]}\n---\n"
		 "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
		 "metadata: {name: many-1, namespace: shop, labels: {kubernetes.io/service-name: "
		 "many}}\n"
		 "addressType: IPv4\nendpoints:\n"
		 "- {addresses: [198.51.100.8], conditions: {ready: true}}\n"
		 "- {addresses: [198.51.100.9], conditions: {ready: true}}\n"
		 "- {addresses: [198.51.100.10], conditions: {ready: true}}\n"
		 "- {addresses: [198.51.100.11], conditions: {ready: true}}\n"
		 "ports: [{port: 8080}]\n---\n"
		 "apiVersion: v1\nkind: Service\nmetadata: {name: empty, namespace: shop}\n"
		 "spec: {clusterIP: " VIP_EMPTY ", ports: [{port: 80, targetPort: 8080}]}\n---\n"
		 "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
		 "metadata: {name: empty-1, namespace: shop, labels: {kubernetes.io/service-name: "
		 "empty}}\n"
		 "addressType: IPv4\n"
		 "endpoints: [{addresses: [\"" API_IP "\"], conditions: {ready: false, serving: "
		 "false}}]\n"
		 "ports: [{port: 8080}]\n");
	write_file("policy/services.yaml", text);
	write_file("policy/allow.yaml", "apiVersion: cinch.dev/v1alpha1\nkind: AllowPolicy\n"
					"metadata: {name: api-from-web, namespace: shop}\n"
					"spec:\n  selector: {workloads: [api, api-2, api-3, api-4, "
					"api-5]}\n  ports: [8080]\n"
					"  from: [{identities: [\"" WEB "\"]}]\n");
	W.ca_key = testpki_key();
	W.key = testpki_key();
	W.ca = testpki_root(W.ca_key, "conn-test root", 1);
	W.web_tls = svid(WEB);
	W.api_tls = svid(API);
	W.db_tls = svid(DB);
	W.web_slice = slice_for("shop/web");
	W.api_slice = slice_for("shop/api");

	assert_int_equal(uv_loop_init(&W.loop), 0);
	conn_loop_init(&W.cl, &W.loop);
	listen_unix(&W.api_in, "api-in", api_in_accept);
	listen_unix(&W.app_l, "app", app_accept);
	listen_unix(&W.refuser, "refuser", refuser_accept);
	W.web.p = start_agent(&W.web);
	W.api.p = start_agent(&W.api);
	proxy_set_material(W.web.p, W.web_tls, W.web_slice);
	proxy_set_material(W.api.p, W.api_tls, W.api_slice);
	W.dst_ip = API_IP;
	W.dst_port = 8080;
	return 0;
}

static void walk_cb(uv_handle_t *h, void *arg)
{
	(void)arg;
	fprintf(stderr, "left open: %s closing=%d\n", uv_handle_type_name(h->type),
		uv_is_closing(h));
}

static int teardown(void **state)
{
	char cmd[128];
	(void)state;

	proxy_stop(W.web.p);
	proxy_stop(W.api.p);
	uv_close((uv_handle_t *)&W.api_in, NULL);
	uv_close((uv_handle_t *)&W.app_l, NULL);
	uv_close((uv_handle_t *)&W.refuser, NULL);
	for (int i = 0; i < 50 && uv_loop_alive(&W.loop); i++)
		uv_run(&W.loop, UV_RUN_NOWAIT);
	uv_walk(&W.loop, walk_cb, NULL);
	conn_loop_cleanup(&W.cl);
	assert_int_equal(uv_loop_close(&W.loop), 0);
	mtls_ctx_unref(W.web_tls);
	mtls_ctx_unref(W.api_tls);
	mtls_ctx_unref(W.db_tls);
	policy_slice_unref(W.web_slice);
	policy_slice_unref(W.api_slice);
	X509_free(W.ca);
	EVP_PKEY_free(W.ca_key);
	EVP_PKEY_free(W.key);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", W.dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

/* ---- the scenarios */

static void test_handshake_relay_half_close(void **state)
{
	struct client k;
	(void)state;

	client_connect(&k, BIG);
	run_until(&k.closed, 1, 1, 5000);
	assert_int_equal(k.reason, CONN_ER_CLOSED);
	assert_int_equal(k.got_len, BIG);
	for (size_t i = 0; i < BIG; i++)
		if (k.got[i] != (uint8_t)(i * 13))
			fail_msg("byte %zu differs", i);
	struct rec *w = &W.web.recs[0], *a = &W.api.recs[0];
	assert_int_equal(w->outbound, 1);
	assert_string_equal(w->verdict, "allow");
	assert_string_equal(w->end, "closed");
	assert_string_equal(w->tls, "TLSv1.3");
	assert_int_equal(w->error, CONN_ER_NONE);
	assert_int_equal(w->bytes_out, BIG);
	assert_int_equal(w->bytes_in, BIG);
	assert_int_equal(a->outbound, 0);
	assert_string_equal(a->verdict, "allow");
	assert_string_equal(a->end, "closed");
	assert_int_equal(a->bytes_in, BIG);
	free(k.got);
}

static void test_pinning_failure(void **state)
{
	struct client k;
	(void)state;

	proxy_set_material(W.api.p, W.db_tls, W.api_slice); /* api presents db's SVID */
	client_connect(&k, 100);
	run_until(&k.closed, 1, 1, 5000);
	assert_int_equal(k.got_len, 0);
	struct rec *w = &W.web.recs[0];
	assert_string_equal(w->end, "handshake_failed");
	assert_int_equal(w->error, CONN_ER_PEER_IDENTITY_MISMATCH);
	assert_string_equal(w->state, "up_handshake");
	assert_string_equal(w->verdict, "allow"); /* the policy allowed it */
	assert_int_equal(w->denied, 0);
	assert_non_null(strstr(w->reason, "identity"));
	free(k.got);
}

static void test_deny(void **state)
{
	struct client k;
	(void)state;

	W.dst_port = 9090; /* api's policy does not open it to web */
	client_connect(&k, 100);
	run_until(&k.closed, 1, 0, 5000);
	assert_int_equal(k.got_len, 0);
	struct rec *w = &W.web.recs[0];
	assert_string_equal(w->verdict, "deny");
	assert_string_equal(w->end, "denied");
	assert_int_equal(w->denied, 1);
	assert_int_equal(w->error, CONN_ER_NONE);
	assert_int_equal(W.api.n, 0); /* refused before any dial */
	free(k.got);
}

/* The own-address check, fed the pod's (fake) addresses: an inbound
 * connection whose original destination is not one of api's addresses
 * (another host, or the pod's loopback) is refused at accept, whatever
 * the policy, a denial; nothing is read or dialed. */
static void test_not_own_address(void **state)
{
	const char *dst[] = {"198.51.100.99", "127.0.0.1"};
	int sv[2], flag = 1;
	(void)state;

	for (int i = 0; i < 2; i++) {
		W.dst_ip = dst[i];
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		redirect(&W.api, sv[1], WEB_IP);
		run_until(&flag, 0, i + 1, 5000);
		close(sv[0]);
		struct rec *r = &W.api.recs[i];
		assert_string_equal(r->verdict, "deny");
		assert_int_equal(r->denied, 1);
		assert_int_equal(r->error, CONN_ER_NONE);
		assert_string_equal(r->end, "refused");
		assert_string_equal(r->state, "wait");
		assert_string_equal(r->reason, "original destination is not this pod's address");
	}
}

static void test_connect_refused_is_no_denial(void **state)
{
	struct client k;
	struct sockaddr_storage a;
	int fd;
	(void)state;

	/* a unix socket bound, nobody listening on it: ECONNREFUSED */
	unix_addr(&a, "closed");
	assert_true((fd = socket(AF_UNIX, SOCK_STREAM, 0)) >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(struct sockaddr_un)), 0);
	close(fd);
	W.app_closed_route = 1;
	client_connect(&k, 100);
	run_until(&k.closed, 1, 1, 5000);
	struct rec *r = &W.api.recs[0];
	assert_string_equal(r->verdict, "allow");
	assert_int_equal(r->error, CONN_ER_CONNECT_REFUSED);
	assert_int_equal(r->denied, 0);
	assert_string_equal(r->end, "connect_failed");
	assert_string_equal(r->state, "connect");
	free(k.got);
}

static void test_idle_timeout(void **state)
{
	struct client k;
	(void)state;

	W.mode = APP_SILENT;
	client_connect(&k, 0); /* connects, sends nothing */
	run_until(&k.closed, 1, 1, 5000);
	/* whichever agent's relay went quiet first */
	struct rec *r =
		W.api.recs[0].error == CONN_ER_IDLE_TIMEOUT ? &W.api.recs[0] : &W.web.recs[0];
	assert_int_equal(r->error, CONN_ER_IDLE_TIMEOUT);
	assert_string_equal(r->end, "idle");
	assert_string_equal(r->verdict, "allow");
	assert_int_equal(r->denied, 0);
	free(k.got);
}

static void test_peer_reset(void **state)
{
	struct client k;
	(void)state;

	W.mode = APP_RESET;
	client_connect(&k, 100);
	run_until(&k.closed, 1, 1, 5000);
	assert_int_equal(W.api.recs[0].error, CONN_ER_RESET);
	assert_string_equal(W.api.recs[0].verdict, "allow");
	assert_int_equal(k.got_len, 0);
	free(k.got);
}

/* A caller that finishes its handshake and closes at once: the api
 * agent's first write after the handshake (the verdict frame, the caller
 * being an agent) fails (EPIPE), and that write is all it does then (it
 * reads nothing until the relay): the session must end with the error
 * before the relay. A dropped write error lets it reach the relay. The
 * test drives the caller's TLS by hand over its end of a socketpair
 * (non-blocking), between turns of the loop. */
static void test_write_error(void **state)
{
	struct mtls_conn *t = NULL;
	uint8_t buf[16384];
	size_t n;
	ssize_t got;
	const char *why = NULL;
	int sv[2], fd, flag = 1, rc = MTLS_HS_WANT_READ;
	(void)state;

	assert_int_equal(mtls_conn_new_client(W.web_tls, API, &t), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	fd = sv[0];
	redirect(&W.api, sv[1], WEB_IP);
	assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
	for (int i = 0; i < 5000 && rc != MTLS_HS_DONE; i++) {
		rc = mtls_conn_handshake(t, &why);
		assert_true(rc >= 0);
		while ((n = mtls_conn_take_out(t, buf, sizeof(buf))) > 0)
			assert_int_equal(write(fd, buf, n), (ssize_t)n);
		if (rc == MTLS_HS_DONE)
			break;
		uv_run(&W.loop, UV_RUN_NOWAIT);
		if ((got = read(fd, buf, sizeof(buf))) > 0)
			assert_int_equal(mtls_conn_feed(t, buf, (size_t)got), 0);
		else
			usleep(1000);
	}
	assert_int_equal(rc, MTLS_HS_DONE);
	close(fd); /* gone, right behind the client's Finished */
	run_until(&flag, 0, 1, 5000);
	struct rec *r = &W.api.recs[0];
	assert_true(r->error == CONN_ER_RESET || r->error == CONN_ER_WRITE_ERROR);
	assert_string_equal(r->verdict, "allow");
	assert_int_equal(r->denied, 0);
	/* The session's ends are eager (pump.c): the server's write right
	 * after the handshake (its tickets) goes to the socket in the same
	 * turn and fails there, so the session ends in the handshake, never
	 * reaching the dial or the relay (where a dropped write error would
	 * go unseen) */
	assert_string_equal(r->state, "handshake");
	mtls_conn_free(t);
}

static void test_alloc_failure_at_accept(void **state)
{
	struct client k1, k2;
	(void)state;

	fail_calloc_size = sizeof(struct session);
	client_connect(&k1, 100);
	run_until(&k1.closed, 0, 0, 5000);
	assert_int_equal(fail_calloc_size, 0); /* the injected failure happened */
	assert_int_equal(k1.got_len, 0);
	assert_int_equal(W.web.p->cl.refused_at_accept, 1);
	/* the proxy still serves: the next connection goes through */
	client_connect(&k2, 1000);
	run_until(&k2.closed, 1, 1, 5000);
	assert_int_equal(k2.got_len, 1000);
	assert_string_equal(W.web.recs[0].end, "closed");
	free(k1.got);
	free(k2.got);
}

/* ---- Services */

/* The first endpoint tried, in the log of record r: the one it ended on
 * is the last; of shop/api's two, the other. */
static const char *other_endpoint(const struct rec *r)
{
	return !strncmp(r->endpoint, "198.51.100.8:", 13) ? API_IP : "198.51.100.8";
}

/* How an endpoint that accepts and resets fails: a connect the reset
 * beat to its callback, or a reset in the handshake. */
static int endpoint_failure(enum conn_reason e)
{
	return e == CONN_ER_CONNECT_REFUSED || e == CONN_ER_RESET;
}

static void test_service_retry(void **state)
{
	struct client k;
	(void)state;

	/* every endpoint fails: each tried once, then a connection error */
	W.vip_port = 80;
	snprintf(W.fail_ip, sizeof(W.fail_ip), "*");
	client_connect(&k, 100);
	run_until(&k.closed, 1, 0, 5000);
	free(k.got);
	struct rec *r = &W.web.recs[0];
	assert_int_equal(W.cl.refused_at_accept, 2);
	assert_string_equal(r->service, "shop/api");
	assert_true(endpoint_failure(r->error));
	assert_string_equal(r->verdict, "allow");
	assert_int_equal(r->denied, 0);
	assert_non_null(strstr(r->reason, "every endpoint"));
	assert_int_equal(W.api.n, 0);

	/* both back off; the one whose backoff ends first is tried first
	 * (the two failed in the same loop tick, so either may be): the
	 * failing one fails again and the call moves to the other, or the
	 * other serves at once; never a third failure */
	snprintf(W.fail_ip, sizeof(W.fail_ip), "%s", other_endpoint(r));
	client_connect(&k, 100);
	run_until(&k.closed, 2, 1, 5000);
	r = &W.web.recs[1];
	assert_in_range(W.cl.refused_at_accept, 2, 3);
	assert_int_equal(k.reason, CONN_ER_CLOSED);
	assert_int_equal(k.got_len, 100);
	assert_string_equal(r->service, "shop/api");
	assert_null(strstr(r->endpoint, W.fail_ip));
	assert_string_equal(r->verdict, "allow");
	assert_string_equal(r->end, "closed");
	assert_string_equal(r->tls, "TLSv1.3");
	assert_int_equal(r->error, CONN_ER_NONE);
	assert_int_equal(r->bytes_out, 100);
	free(k.got);
}

static void test_service_bound(void **state)
{
	struct client k;
	(void)state;

	/* four endpoints, all failing: three tried, the third's error ends it */
	vip_ip = VIP_MANY;
	W.vip_port = 80;
	snprintf(W.fail_ip, sizeof(W.fail_ip), "*");
	client_connect(&k, 100);
	run_until(&k.closed, 1, 0, 5000);
	vip_ip = VIP;
	struct rec *r = &W.web.recs[0];
	assert_int_equal(W.cl.refused_at_accept, OUTBOUND_SVC_TRIES);
	assert_string_equal(r->service, "shop/many");
	assert_true(endpoint_failure(r->error));
	assert_int_equal(r->denied, 0);
	assert_null(strstr(r->reason, "every endpoint"));
	free(k.got);
}

static void test_service_no_ready(void **state)
{
	struct client k;
	(void)state;

	vip_ip = VIP_EMPTY;
	W.vip_port = 80;
	client_connect(&k, 100);
	run_until(&k.closed, 1, 0, 5000);
	vip_ip = VIP;
	struct rec *r = &W.web.recs[0];
	assert_string_equal(r->service, "shop/empty");
	assert_string_equal(r->verdict, "deny");
	assert_int_equal(r->denied, 1);
	assert_int_equal(r->error, CONN_ER_NONE);
	assert_string_equal(r->reason, "the Service has no ready endpoint");
	assert_int_equal(W.cl.refused_at_accept, 0);
	assert_int_equal(W.api.n, 0);
	free(k.got);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN); /* as the agent does: a write to a reset peer is an error */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_handshake_relay_half_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pinning_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deny, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_own_address, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connect_refused_is_no_denial, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_peer_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alloc_failure_at_accept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_service_retry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_service_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_service_no_ready, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
