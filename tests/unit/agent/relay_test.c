/* relay_test: the relay between real loopback TCP sockets on one loop.
 *
 *   app <-> [a  relay  b] <-> peer
 *
 * The test drives `app` and `peer` as endpoints that send a known stream
 * (optionally shutting their write side after it) and check what they
 * receive. The b side can be TLS: then the relay's b end is an mtls client
 * and the peer an mtls server, their handshake done before the relay
 * starts. Cases: large transfers both ways with backpressure (plain and
 * TLS), half-close (the answer still arrives after the request's FIN), a
 * reset carried through, the idle timeout, relay_stop, a TLS relay
 * that goes quiet long enough to give its buffers back, then carries on,
 * and a head callback (the agents' verdict frame, relay.h) that takes the
 * peer's first bytes across several reads and lets the rest through
 * (without holding the app's request meanwhile: a peer that answers only
 * after the request still gets it), or ends the relay before any byte
 * reached the app. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "mtls.h"
#include "relay.h"
#include "testloop.h"
#include "testpki.h"

#define API "spiffe://cluster.local/ns/shop/sa/api"
#define WEB "spiffe://cluster.local/ns/shop/sa/web"

/* ---- a connected pair of TCP sockets on loopback */

static void tcp_pair(int fds[2])
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(l >= 0);
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&a, &len), 0);
	fds[0] = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(fds[0], (struct sockaddr *)&a, sizeof(a)), 0);
	fds[1] = accept(l, NULL, NULL);
	assert_true(fds[1] >= 0);
	close(l);
}

/* ---- TLS credentials */

static struct {
	EVP_PKEY *ca_key, *k_web, *k_api;
	X509 *ca;
} pki;

static struct mtls_ctx *ctx_for(const char *id, EVP_PKEY *key)
{
	const char *sans[] = {id};
	X509 *leaf = testpki_leaf(pki.ca, pki.ca_key, key, sans, 1, -60, 3600);
	STACK_OF(X509) *chain = sk_X509_new_null(), *roots = sk_X509_new_null();
	struct mtls_ctx *c = NULL;
	const char *why;
	sk_X509_push(chain, leaf);
	X509_up_ref(pki.ca);
	sk_X509_push(roots, pki.ca);
	assert_int_equal(mtls_ctx_new(chain, key, roots, &c, &why), 0);
	sk_X509_pop_free(chain, X509_free);
	sk_X509_pop_free(roots, X509_free);
	return c;
}

/* The handshake over two blocking sockets, before anything is async. */
static void handshake_fds(struct mtls_conn *cl, int cfd, struct mtls_conn *sv, int sfd)
{
	int cdone = 0, sdone = 0;
	const char *why = NULL;
	uint8_t buf[16384];
	fcntl(cfd, F_SETFL, O_NONBLOCK);
	fcntl(sfd, F_SETFL, O_NONBLOCK);
	for (int i = 0; i < 2000 && !(cdone && sdone); i++) {
		if (!cdone) {
			int r = mtls_conn_handshake(cl, &why);
			assert_true(r >= 0);
			cdone = r == MTLS_HS_DONE;
		}
		if (!sdone) {
			int r = mtls_conn_handshake(sv, &why);
			assert_true(r >= 0);
			sdone = r == MTLS_HS_DONE;
		}
		size_t n;
		while ((n = mtls_conn_take_out(cl, buf, sizeof(buf))) > 0)
			assert_int_equal(write(cfd, buf, n), (ssize_t)n);
		while ((n = mtls_conn_take_out(sv, buf, sizeof(buf))) > 0)
			assert_int_equal(write(sfd, buf, n), (ssize_t)n);
		usleep(1000);
		ssize_t m;
		while ((m = read(sfd, buf, sizeof(buf))) > 0)
			assert_int_equal(mtls_conn_feed(sv, buf, (size_t)m), 0);
		while ((m = read(cfd, buf, sizeof(buf))) > 0)
			assert_int_equal(mtls_conn_feed(cl, buf, (size_t)m), 0);
	}
	assert_true(cdone && sdone);
}

/* ---- an endpoint the test drives */

struct ep {
	uv_tcp_t tcp;
	struct mtls_conn *tls;
	size_t to_send, sent, received;
	uint32_t seed; /* the stream is (seed + i) * 131 */
	uint32_t peer_seed;
	int shut_after, got_eof, bad, reset, closed;
	size_t send_after; /* sends nothing until it has received this much */
	uv_write_t wr;
	uv_shutdown_t sh;
	uint8_t rbuf[65536], wbuf[65536 + 1024], pbuf[65536];
};

static uint8_t byte_at(uint32_t seed, size_t i)
{
	return (uint8_t)((seed + i) * 131);
}

static void ep_send_more(struct ep *e);

static void ep_written(uv_write_t *w, int status)
{
	struct ep *e = w->data;
	if (status < 0)
		return;
	ep_send_more(e);
}

static void ep_send_more(struct ep *e)
{
	size_t n = e->to_send - e->sent, len;
	if (n == 0) {
		if (e->shut_after == 1) {
			e->shut_after = 2;
			if (e->tls) {
				mtls_conn_shutdown(e->tls);
				len = mtls_conn_take_out(e->tls, e->wbuf, sizeof(e->wbuf));
				uv_buf_t b = uv_buf_init((char *)e->wbuf, (unsigned)len);
				e->wr.data = e;
				uv_try_write((uv_stream_t *)&e->tcp, &b, 1);
			}
			uv_shutdown(&e->sh, (uv_stream_t *)&e->tcp, NULL);
		}
		return;
	}
	if (n > 32768)
		n = 32768;
	uint8_t plain[32768];
	for (size_t i = 0; i < n; i++)
		plain[i] = byte_at(e->seed, e->sent + i);
	if (e->tls) {
		assert_int_equal(mtls_conn_write(e->tls, plain, n), 0);
		len = mtls_conn_take_out(e->tls, e->wbuf, sizeof(e->wbuf));
	} else {
		memcpy(e->wbuf, plain, n);
		len = n;
	}
	e->sent += n;
	uv_buf_t b = uv_buf_init((char *)e->wbuf, (unsigned)len);
	e->wr.data = e;
	assert_int_equal(uv_write(&e->wr, (uv_stream_t *)&e->tcp, &b, 1, ep_written), 0);
}

static void ep_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct ep *e = h->data;
	*buf = uv_buf_init((char *)e->rbuf, sizeof(e->rbuf));
}

static void ep_check(struct ep *e, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != byte_at(e->peer_seed, e->received + i))
			e->bad = 1;
	e->received += n;
	if (e->send_after && e->received >= e->send_after) {
		e->send_after = 0;
		ep_send_more(e);
	}
}

static void ep_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct ep *e = s->data;
	if (n == UV_EOF) {
		e->got_eof = 1;
		uv_read_stop(s);
		return;
	}
	if (n < 0) {
		e->reset = n == UV_ECONNRESET;
		uv_read_stop(s);
		return;
	}
	if (!e->tls) {
		ep_check(e, e->rbuf, (size_t)n);
		return;
	}
	assert_int_equal(mtls_conn_feed(e->tls, e->rbuf, (size_t)n), 0);
	int r;
	while ((r = mtls_conn_read(e->tls, e->pbuf, sizeof(e->pbuf))) > 0)
		ep_check(e, e->pbuf, (size_t)r);
	if (r == -EPIPE)
		e->got_eof = 1;
}

static void ep_start(uv_loop_t *loop, struct ep *e, int fd)
{
	assert_int_equal(uv_tcp_init(loop, &e->tcp), 0);
	assert_int_equal(uv_tcp_open(&e->tcp, fd), 0);
	e->tcp.data = e;
	assert_int_equal(uv_read_start((uv_stream_t *)&e->tcp, ep_alloc, ep_read), 0);
	if (!e->send_after)
		ep_send_more(e);
}

/* ---- one scenario */

struct scenario {
	int tls;
	size_t app_sends, peer_sends;
	int app_shuts, peer_shuts;
	int peer_resets_after_ms; /* 0: never */
	int stop_after_ms;	  /* relay_stop, 0: never */
	int app_more_after_ms;	  /* then the app sends app_more more, and shuts */
	size_t app_more;
	unsigned idle_ms;
	size_t head_take; /* a head callback takes the peer's first bytes; 0: none */
	int peer_answers; /* the peer sends only once it has the app's bytes */
	int head_refuses; /* ... then ends the relay */
};

struct outcome {
	struct ep app, peer;
	struct relay_stats st;
	int done;
	struct relay *relay;
	size_t head_seen;
	int head_calls;
};

static struct outcome *g_out;
static const struct scenario *g_sc;

static int head_cb(void *arg, const uint8_t *data, size_t n, size_t *used)
{
	struct outcome *o = arg;
	size_t want = g_sc->head_take - o->head_seen, take = n < want ? n : want;

	o->head_calls++;
	for (size_t i = 0; i < take; i++)
		if (data[i] != byte_at(o->peer.seed, o->head_seen + i))
			o->app.bad = 1;
	o->head_seen += take;
	*used = take;
	if (o->head_seen < g_sc->head_take)
		return 0;
	return g_sc->head_refuses ? -1 : 1;
}

static void on_done(void *arg, const struct relay_stats *st)
{
	struct outcome *o = arg;
	o->st = *st;
	o->done++;
}

static void close_ep(uv_handle_t *h)
{
	((struct ep *)h->data)->closed = 1;
}

static void later(uv_timer_t *t)
{
	struct scenario *sc = t->data;
	if (sc->peer_resets_after_ms)
		uv_tcp_close_reset(&g_out->peer.tcp, close_ep);
	else if (sc->stop_after_ms)
		relay_stop(g_out->relay);
	else if (sc->app_more_after_ms) {
		g_out->app.to_send += sc->app_more;
		g_out->app.shut_after = 1;
		ep_send_more(&g_out->app);
	}
	uv_close((uv_handle_t *)t, NULL);
}

static void run(const struct scenario *sc, struct outcome *o)
{
	uv_loop_t loop;
	int app_pair[2], peer_pair[2];
	uv_tcp_t *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	struct mtls_ctx *web = NULL, *api = NULL;
	struct mtls_conn *b_tls = NULL;
	uv_timer_t t;

	memset(o, 0, sizeof(*o));
	g_out = o;
	g_sc = sc;
	assert_int_equal(uv_loop_init(&loop), 0);
	tcp_pair(app_pair);  /* app_pair[0]: the app, [1]: relay side a */
	tcp_pair(peer_pair); /* peer_pair[0]: relay side b, [1]: the peer */
	if (sc->tls) {
		web = ctx_for(WEB, pki.k_web);
		api = ctx_for(API, pki.k_api);
		assert_int_equal(mtls_conn_new_client(web, API, &b_tls), 0);
		assert_int_equal(mtls_conn_new_server(api, &o->peer.tls), 0);
		handshake_fds(b_tls, peer_pair[0], o->peer.tls, peer_pair[1]);
	}
	o->app.seed = 1;
	o->app.peer_seed = 2;
	o->peer.seed = 2;
	o->peer.peer_seed = 1;
	o->app.to_send = sc->app_sends;
	o->peer.to_send = sc->peer_sends;
	o->app.shut_after = sc->app_shuts;
	o->app.received = sc->head_refuses ? 0 : sc->head_take; /* the app's stream starts after */
	o->peer.shut_after = sc->peer_shuts;
	o->peer.send_after = sc->peer_answers ? sc->app_sends : 0;
	assert_int_equal(uv_tcp_init(&loop, a), 0);
	assert_int_equal(uv_tcp_open(a, app_pair[1]), 0);
	assert_int_equal(uv_tcp_init(&loop, b), 0);
	assert_int_equal(uv_tcp_open(b, peer_pair[0]), 0);
	assert_int_equal(relay_start(&loop, a, NULL, b, b_tls, sc->idle_ms,
				     sc->head_take ? head_cb : NULL, on_done, o, &o->relay),
			 0);
	ep_start(&loop, &o->app, app_pair[0]);
	ep_start(&loop, &o->peer, peer_pair[1]);
	if (sc->peer_resets_after_ms || sc->stop_after_ms || sc->app_more_after_ms) {
		uv_timer_init(&loop, &t);
		t.data = (void *)sc;
		uv_timer_start(&t, later,
			       sc->peer_resets_after_ms + sc->stop_after_ms + sc->app_more_after_ms,
			       0);
	}
	/* Run until the relay is done and the endpoints have seen the end. */
	for (int i = 0; i < 3000 && !(o->done && (o->app.got_eof || o->app.reset) &&
				      (o->peer.got_eof || o->peer.reset || o->peer.closed));
	     i++) {
		uv_run(&loop, UV_RUN_ONCE);
	}
	if (!o->app.closed)
		uv_close((uv_handle_t *)&o->app.tcp, close_ep);
	if (!o->peer.closed && !uv_is_closing((uv_handle_t *)&o->peer.tcp))
		uv_close((uv_handle_t *)&o->peer.tcp, close_ep);
	assert_int_equal(testloop_run(&loop, 10), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	mtls_conn_free(o->peer.tls);
	mtls_ctx_unref(web);
	mtls_ctx_unref(api);
}

static void test_plain_both_ways(void **state)
{
	static struct outcome o;
	struct scenario sc = {.app_sends = 3 << 20,
			      .peer_sends = 2 << 20,
			      .app_shuts = 1,
			      .peer_shuts = 1,
			      .idle_ms = 10000};
	run(&sc, &o);
	assert_int_equal(o.done, 1);
	assert_int_equal(o.st.reason, RELAY_CLOSED);
	assert_int_equal(o.peer.received, 3 << 20);
	assert_int_equal(o.app.received, 2 << 20);
	assert_false(o.peer.bad || o.app.bad);
	assert_int_equal(o.st.a_to_b, 3 << 20);
	assert_int_equal(o.st.b_to_a, 2 << 20);
	assert_true(o.app.got_eof && o.peer.got_eof);
}

static void test_tls_both_ways(void **state)
{
	static struct outcome o;
	struct scenario sc = {.tls = 1,
			      .app_sends = 3 << 20,
			      .peer_sends = 2 << 20,
			      .app_shuts = 1,
			      .peer_shuts = 1,
			      .idle_ms = 10000};
	run(&sc, &o);
	assert_int_equal(o.st.reason, RELAY_CLOSED);
	assert_int_equal(o.peer.received, 3 << 20);
	assert_int_equal(o.app.received, 2 << 20);
	assert_false(o.peer.bad || o.app.bad);
	/* the app's FIN reached the peer as close_notify, and back */
	assert_true(o.peer.got_eof && o.app.got_eof);
}

static void test_half_close(void **state)
{
	/* The app sends a request and shuts its write side at once; the
	 * peer answers only afterwards: the whole answer still arrives. */
	static struct outcome o;
	struct scenario sc = {.tls = 1,
			      .app_sends = 1000,
			      .peer_sends = 1 << 20,
			      .app_shuts = 1,
			      .peer_shuts = 1,
			      .idle_ms = 10000};
	run(&sc, &o);
	assert_int_equal(o.st.reason, RELAY_CLOSED);
	assert_int_equal(o.app.received, 1 << 20);
	assert_false(o.app.bad);
}

static void test_reset_carried(void **state)
{
	static struct outcome o;
	struct scenario sc = {.app_sends = 100, .peer_resets_after_ms = 200, .idle_ms = 10000};
	run(&sc, &o);
	assert_int_equal(o.st.reason, RELAY_RESET);
	assert_true(o.app.reset);
}

/* Quiet for longer than RELAY_QUIET_MS plus a tick: the relay gives its
 * TLS buffers back (mtls_conn_trim) and the stream goes on intact. */
static void test_quiet_then_more(void **state)
{
	static struct outcome o;
	struct scenario sc = {.tls = 1,
			      .app_sends = 100000,
			      .peer_shuts = 1,
			      .app_more_after_ms = RELAY_QUIET_MS * 3 / 2 + 200,
			      .app_more = 300000,
			      .idle_ms = 10000};
	run(&sc, &o);
	assert_int_equal(o.st.reason, RELAY_CLOSED);
	assert_int_equal(o.peer.received, 400000);
	assert_int_equal(o.st.a_to_b, 400000);
	assert_false(o.peer.bad);
	assert_true(o.app.got_eof);
}

/* The head takes 40000 bytes (several reads of the TLS source), the rest
 * reaches the app intact and only the rest is counted; the app's bytes
 * flowed to the peer meanwhile. */
static void test_head_takes_the_first_bytes(void **state)
{
	static struct outcome o;
	struct scenario sc = {.tls = 1,
			      .app_sends = 100000,
			      .peer_sends = 1 << 20,
			      .app_shuts = 1,
			      .peer_shuts = 1,
			      .idle_ms = 10000,
			      .head_take = 40000};
	run(&sc, &o);
	assert_int_equal(o.st.reason, RELAY_CLOSED);
	assert_true(o.head_calls >= 2);
	assert_int_equal(o.head_seen, 40000);
	assert_int_equal(o.app.received, 1 << 20); /* counted from 40000 on */
	assert_int_equal(o.st.b_to_a, (1 << 20) - 40000);
	assert_int_equal(o.peer.received, 100000);
	assert_false(o.app.bad || o.peer.bad);
}

/* No wait for the head: the peer sends (its frame, then its answer) only
 * once the app's request has reached it, so a relay that held the app's
 * bytes until the head is done would never end. */
static void test_head_does_not_hold_the_request(void **state)
{
	static struct outcome o;
	struct scenario sc = {.tls = 1,
			      .app_sends = 5000,
			      .peer_sends = 70000,
			      .app_shuts = 1,
			      .peer_shuts = 1,
			      .peer_answers = 1,
			      .idle_ms = 3000,
			      .head_take = 2};
	run(&sc, &o);
	assert_int_equal(o.st.reason, RELAY_CLOSED);
	assert_int_equal(o.peer.received, 5000);
	assert_int_equal(o.app.received, 70000);
	assert_int_equal(o.st.b_to_a, 70000 - 2);
	assert_false(o.app.bad || o.peer.bad);
}

/* The head ends the relay: nothing of the peer's reached the app. */
static void test_head_refuses(void **state)
{
	static struct outcome o;
	struct scenario sc = {.tls = 1,
			      .peer_sends = 1 << 20,
			      .idle_ms = 10000,
			      .head_take = 20,
			      .head_refuses = 1};
	run(&sc, &o);
	assert_int_equal(o.done, 1);
	assert_int_equal(o.st.reason, RELAY_REFUSED);
	assert_int_equal(o.app.received, 0);
	assert_int_equal(o.st.b_to_a, 0);
	assert_true(o.app.got_eof || o.app.reset);
}

static void test_idle(void **state)
{
	static struct outcome o;
	struct scenario sc = {.app_sends = 10, .idle_ms = 300};
	run(&sc, &o);
	assert_int_equal(o.st.reason, RELAY_IDLE);
	assert_int_equal(o.peer.received, 10);
	assert_true(o.app.got_eof);
}

static void test_stop(void **state)
{
	static struct outcome o;
	struct scenario sc = {.tls = 1, .app_sends = 10, .stop_after_ms = 200, .idle_ms = 10000};
	run(&sc, &o);
	assert_int_equal(o.st.reason, RELAY_STOPPED);
	assert_true(o.app.got_eof);
}

static int setup(void **state)
{
	pki.ca_key = testpki_key();
	pki.k_web = testpki_key();
	pki.k_api = testpki_key();
	pki.ca = testpki_root(pki.ca_key, "relay test root", 1);
	return pki.ca ? 0 : -1;
}

static int teardown(void **state)
{
	X509_free(pki.ca);
	EVP_PKEY_free(pki.ca_key);
	EVP_PKEY_free(pki.k_web);
	EVP_PKEY_free(pki.k_api);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_both_ways),
		cmocka_unit_test(test_tls_both_ways),
		cmocka_unit_test(test_half_close),
		cmocka_unit_test(test_reset_carried),
		cmocka_unit_test(test_idle),
		cmocka_unit_test(test_head_takes_the_first_bytes),
		cmocka_unit_test(test_head_does_not_hold_the_request),
		cmocka_unit_test(test_head_refuses),
		cmocka_unit_test(test_quiet_then_more),
		cmocka_unit_test(test_stop),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
