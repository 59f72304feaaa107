/* conn_test: two agents' proxies in one process, on one loop, as a normal
 * user (no root, no namespaces, no iptables): the web agent's outbound
 * and the api agent's inbound driven through the connection core.
 *
 *   client --> [web: outbound] --TLS--> [api: inbound] --> app (echo)
 *
 * Interception is faked by the proxy's test hooks: every accepted
 * socket's original destination is the scenario's (API_IP:port, API_IP
 * being one of this machine's own non-loopback addresses, so api's
 * own-address check passes), and `route` sends web's dial for API_IP to
 * api's inbound listener and api's dial to the app's loopback port. The
 * certificates (testpki) are made at start: web's and api's SVIDs, and
 * db's (a valid SVID of another workload, for the pinning case). Each
 * scenario checks the access-log records both proxies wrote: verdict,
 * end, error, denied.
 *
 * Cases: handshake and relay of 256 KiB both ways with half-close;
 * pinning failure (api's agent presents db's certificate:
 * peer_identity_mismatch, verdict allow, not a denial); deny (web's policy
 * knows api refuses it on 9090: refused before any dial, a denial);
 * connect refused to an allowed app (an error with verdict allow, never
 * a deny); idle timeout; the app resets (a reset carried to the client);
 * a caller that resets right after its handshake (the verdict frame's
 * write fails: the session ends at once, before the relay); an
 * allocation failure at accept (injected: the next session's calloc
 * fails): the connection is accepted and reset at once and the listener
 * keeps serving the next one.
 *
 * Services (a call to a virtual IP, outbound.c): the registry holds
 * shop/api (VIP 10.96.0.10:80 -> 8080 on api and api-2), shop/many
 * (four endpoints, api-2 .. api-5) and shop/empty (none ready). A failing
 * endpoint is routed to the "refuser", a listener that accepts and resets
 * at once (its accepts counted: the tries). Every endpoint failing: the
 * call ends as a connection error (reset, verdict allow, not a denial)
 * after each endpoint was tried once (shop/api: 2) or at the bound
 * (shop/many: 3 of 4), each retry on a fresh up end (the error is
 * the last try's: connect_refused, or reset when the reset came in the
 * handshake); then the endpoint whose backoff ends first fails again and
 * the call moves to the other (one reset, then relayed, the log naming
 * the endpoint); no ready
 * endpoint: refused at once, a denial with svcpick's reason, nothing
 * dialed. Without a non-loopback address the test skips (77). */
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
#include <unistd.h>

#include <cmocka.h>
#include <openssl/x509.h>
#include <uv.h>

#include "conn.h"
#include "localaddr.h"
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
	APP_RESET,    /* resets at the first byte */
};

struct app_conn {
	struct conn c;
	int eof;
};

static struct {
	uv_loop_t loop;
	struct conn_loop cl;
	char dir[64];
	struct sockaddr_storage api_ip; /* a non-loopback local address */
	uint16_t dst_port;		/* the scenario's original destination port */
	struct agent web, api;
	uv_tcp_t app_l;
	uint16_t app_port, closed_port;
	int app_closed_port_route; /* api dials a closed port */
	uint16_t vip_port;	   /* web's original destination is VIP:vip_port */
	uv_tcp_t refuser;	   /* accepts and resets (a failing endpoint) */
	uint16_t refuser_port;
	char fail_ip[64]; /* web's dials to it go to the refuser; "*": all */
	enum app_mode mode;
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

static void set_port(struct sockaddr_storage *a, uint16_t port)
{
	if (a->ss_family == AF_INET)
		((struct sockaddr_in *)a)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)a)->sin6_port = htons(port);
}

static void loopback(struct sockaddr_storage *a, uint16_t port)
{
	memset(a, 0, sizeof(*a));
	assert_int_equal(uv_ip4_addr("127.0.0.1", port, (struct sockaddr_in *)a), 0);
}

#define VIP	  "10.96.0.10"
#define VIP_MANY  "10.96.0.11"
#define VIP_EMPTY "10.96.0.12"
static const char *vip_ip = VIP;

/* Every accepted socket was "redirected" from API_IP:dst_port (web's, in
 * the Service cases: vip_ip:vip_port). */
static int fake_origdst(void *arg, uv_tcp_t *s, struct sockaddr_storage *local,
			struct sockaddr_storage *dst)
{
	int len = sizeof(*local);
	(void)arg;

	if (uv_tcp_getsockname(s, (struct sockaddr *)local, &len) < 0)
		return -EBADF;
	if (arg == &W.web && W.vip_port) {
		assert_int_equal(uv_ip4_addr(vip_ip, W.vip_port, (struct sockaddr_in *)dst), 0);
		return 0;
	}
	*dst = W.api_ip;
	set_port(dst, W.dst_port);
	return 0;
}

/* web dials api's inbound listener; api dials the app. */
static void route(void *arg, const struct sockaddr_storage *dst, struct sockaddr_storage *to)
{
	uint16_t out, in;
	(void)dst;

	if (arg == &W.web) {
		char ip[64] = "";
		uv_ip4_name((const struct sockaddr_in *)dst, ip, sizeof(ip));
		proxy_ports(W.api.p, &out, &in);
		loopback(to,
			 !strcmp(W.fail_ip, "*") || !strcmp(W.fail_ip, ip) ? W.refuser_port : in);
	} else {
		loopback(to, W.app_closed_port_route ? W.closed_port : W.app_port);
	}
}

/* ---- the app */

static int app_data(struct conn *c, const uint8_t *buf, size_t len)
{
	if (W.mode == APP_RESET) {
		conn_finalize(c, CONN_ER_RESET);
		return -1;
	}
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

/* A failing endpoint: accepted and reset at once (counted in
 * W.cl.refused_at_accept). */
static void refuser_accept(uv_stream_t *l, int status)
{
	assert_int_equal(status, 0);
	assert_int_equal(conn_accept(&W.cl, l, NULL, 1), -ECONNABORTED);
}

static void app_accept(uv_stream_t *l, int status)
{
	struct conn *c = calloc(1, sizeof(*c));

	assert_int_equal(status, 0);
	assert_non_null(c);
	assert_int_equal(conn_init(c, &W.cl, &app_ops, NULL), 0);
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

static void client_connect(struct client *k, uint16_t port, size_t send)
{
	struct sockaddr_storage a;

	memset(k, 0, sizeof(*k));
	k->sent_want = send;
	loopback(&a, port);
	assert_int_equal(conn_init(&k->c, &W.cl, &client_ops, k), 0);
	conn_connect(&k->c, (struct sockaddr *)&a);
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

static int find_api_ip(void)
{
	struct sockaddr_storage a[LOCALADDR_MAX];
	size_t n = localaddr_list(a, LOCALADDR_MAX);

	for (size_t i = 0; i < n; i++) {
		if (a[i].ss_family != AF_INET || localaddr_is_loopback((struct sockaddr *)&a[i]))
			continue;
		W.api_ip = a[i];
		return 0;
	}
	return -1;
}

static struct proxy *start_agent(struct agent *a)
{
	struct proxy_config cfg = {
		.host = "127.0.0.1",
		.connect_ms = 2000,
		.handshake_ms = 3000,
		.idle_ms = 600,
		.max_conns = 64,
		.outbound_reserve = 8,
		.max_handshakes = 16,
		.max_pending_per_source = 16,
		.origdst = fake_origdst,
		.route = route,
		.hook_arg = a,
	};
	struct proxy *p = NULL;

	assert_int_equal(proxy_start(&W.loop, &cfg, on_log, a, &p), 0);
	return p;
}

static int setup(void **state)
{
	char ip[64], text[2048];
	(void)state;

	memset(&W, 0, sizeof(W));
	if (find_api_ip() < 0) {
		fprintf(stderr, "SKIP: no non-loopback IPv4 address on this machine\n");
		exit(77);
	}
	uv_ip4_name((struct sockaddr_in *)&W.api_ip, ip, sizeof(ip));
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
		 "spec: {serviceAccount: api, addresses: [\"%s\"]}\n",
		 ip);
	for (int i = 2; i <= 5; i++) /* Service endpoints that fail, of identity sa/api */
		snprintf(text + strlen(text), sizeof(text) - strlen(text),
			 "---\napiVersion: cinch.dev/v1alpha1\nkind: Workload\n"
			 "metadata: {name: api-%d, namespace: shop}\n"
			 "spec: {serviceAccount: api, addresses: [\"198.51.100.%d\"]}\n",
			 i, 6 + i);
	write_file("workloads.yaml", text);
	snprintf(text, sizeof(text),
		 "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\n"
		 "spec: {clusterIP: " VIP ", ports: [{port: 80, targetPort: 8080}]}\n---\n"
		 "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
		 "metadata: {name: api-1, namespace: shop, labels: {kubernetes.io/service-name: "
		 "api}}\n"
		 "addressType: IPv4\nendpoints:\n"
		 "- {addresses: [\"%s\"], conditions: {ready: true}}\n"
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
		 "endpoints: [{addresses: [\"%s\"], conditions: {ready: false, serving: false}}]\n"
		 "ports: [{port: 8080}]\n",
		 ip, ip);
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
	assert_int_equal(
		conn_listen(&W.loop, &W.app_l, "127.0.0.1", 0, app_accept, NULL, &W.app_port), 0);
	assert_int_equal(conn_listen(&W.loop, &W.refuser, "127.0.0.1", 0, refuser_accept, NULL,
				     &W.refuser_port),
			 0);
	W.web.p = start_agent(&W.web);
	W.api.p = start_agent(&W.api);
	proxy_set_material(W.web.p, W.web_tls, W.web_slice);
	proxy_set_material(W.api.p, W.api_tls, W.api_slice);
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

static uint16_t web_out_port(void)
{
	uint16_t out, in;

	proxy_ports(W.web.p, &out, &in);
	return out;
}

/* ---- the scenarios */

static void test_handshake_relay_half_close(void **state)
{
	struct client k;
	(void)state;

	client_connect(&k, web_out_port(), BIG);
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
	client_connect(&k, web_out_port(), 100);
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
	client_connect(&k, web_out_port(), 100);
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

static void test_connect_refused_is_no_denial(void **state)
{
	struct client k;
	uv_tcp_t t;
	struct sockaddr_storage a;
	int len = sizeof(a);
	(void)state;

	/* a port nobody listens on */
	loopback(&a, 0);
	assert_int_equal(uv_tcp_init(&W.loop, &t), 0);
	assert_int_equal(uv_tcp_bind(&t, (struct sockaddr *)&a, 0), 0);
	assert_int_equal(uv_tcp_getsockname(&t, (struct sockaddr *)&a, &len), 0);
	W.closed_port = ntohs(((struct sockaddr_in *)&a)->sin_port);
	uv_close((uv_handle_t *)&t, NULL);
	W.app_closed_port_route = 1;
	client_connect(&k, web_out_port(), 100);
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
	client_connect(&k, web_out_port(), 0); /* connects, sends nothing */
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
	client_connect(&k, web_out_port(), 100);
	run_until(&k.closed, 1, 1, 5000);
	assert_int_equal(W.api.recs[0].error, CONN_ER_RESET);
	assert_string_equal(W.api.recs[0].verdict, "allow");
	assert_int_equal(k.got_len, 0);
	free(k.got);
}

/* A caller that finishes its handshake and resets at once: the api
 * agent's first write after the handshake (the verdict frame, the caller
 * being an agent) fails, and that write is all it does then (it reads
 * nothing until the relay): the session must end with the error before
 * the relay. A dropped write error lets it reach the relay and fail on
 * its first read. The test drives the caller's TLS by hand over a
 * non-blocking socket, between turns of the loop. */
static void test_write_error(void **state)
{
	struct mtls_conn *t = NULL;
	uint8_t buf[16384];
	size_t n;
	ssize_t got;
	uint16_t out, in;
	struct sockaddr_in a = {.sin_family = AF_INET};
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	const char *why = NULL;
	int fd, flag = 1, rc = MTLS_HS_WANT_READ;
	(void)state;

	assert_int_equal(mtls_conn_new_client(W.web_tls, API, &t), 0);
	proxy_ports(W.api.p, &out, &in);
	a.sin_port = htons(in);
	a.sin_addr.s_addr = htonl(0x7f000001);
	assert_true((fd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
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
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	close(fd); /* a reset, right behind the client's Finished */
	run_until(&flag, 0, 1, 5000);
	struct rec *r = &W.api.recs[0];
	assert_true(r->error == CONN_ER_RESET || r->error == CONN_ER_WRITE_ERROR);
	assert_string_equal(r->verdict, "allow");
	assert_int_equal(r->denied, 0);
	/* libuv reports the write's error from the next turn of the loop,
	 * while the app is being dialed: the session ends there, never
	 * reaching the relay (where a dropped write error would surface, on
	 * the next read) */
	assert_string_equal(r->state, "connect");
	mtls_conn_free(t);
}

static void test_alloc_failure_at_accept(void **state)
{
	struct client k1, k2;
	(void)state;

	fail_calloc_size = sizeof(struct session);
	client_connect(&k1, web_out_port(), 100);
	run_until(&k1.closed, 0, 0, 5000);
	assert_int_equal(fail_calloc_size, 0); /* the injected failure happened */
	assert_int_equal(k1.got_len, 0);
	assert_int_equal(W.web.p->cl.refused_at_accept, 1);
	/* the listener is still polled: the next connection goes through */
	client_connect(&k2, web_out_port(), 1000);
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
	static char ip[64];

	if (!strncmp(r->endpoint, "198.51.100.8:", 13)) {
		uv_ip4_name((struct sockaddr_in *)&W.api_ip, ip, sizeof(ip));
		return ip;
	}
	return "198.51.100.8";
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
	client_connect(&k, web_out_port(), 100);
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
	client_connect(&k, web_out_port(), 100);
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
	client_connect(&k, web_out_port(), 100);
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
	client_connect(&k, web_out_port(), 100);
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
