/* conn_test: the connection core (common/conn.h) on real loopback TCP
 * sockets and unix-domain stream sockets (pipe conns: conn_init_pipe),
 * one loop, as a normal user.
 *
 *   client conn --connect--> listener --conn_accept--> server conn (echo)
 *
 * Cases: an echo of 200 KiB written at once (the write queue grows past
 * its pooled size while a write is in flight) with half-close both ways
 * (the client's end of stream reaches the server, whose answer still
 * arrives, then its own end); the accept helper refusing a connection it
 * cannot serve (no conn: an allocation failure) still accepts it, so
 * libuv keeps polling the listener and the next connection is served
 * (without the uv_accept the second connection is never accepted and the
 * test times out); a connect to a closed port ends with
 * connect_refused; a write to a peer that reset, by a server that does
 * not read, ends the conn at once with the error; every state and reason
 * has its own name. Eager conns (conn_set_eager: the relay's write path)
 * too: the same echo with a client whose send buffer is tiny (most of the
 * 200 KiB must be queued, and written later: ops->drained comes, every
 * byte arrives once and in order), and the write to a reset peer, which
 * an eager conn learns of in conn_write itself (uv_try_write's error: the
 * call fails and the conn is closing when it returns). On a unix socket too (pipe conns, a pipe listener):
 * the same echo, and the same refusal, which must accept and close the
 * unix connection so that libuv keeps polling the pipe listener (without
 * it the second connection times out). Plain
 * transport only: the TLS transport is tested with the agent
 * (tests/unit/agent/conn_test.c). */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "conn.h"
#include "testloop.h"

#define BIG (200 * 1024)

struct peer {
	struct conn c;
	int is_server;
	uint8_t *got;
	size_t got_len;
	int eof, shut, closed, drained;
	size_t queued_after_write; /* conn_queued right after the client's big write */
	enum conn_reason reason;
};

struct world {
	uv_loop_t loop;
	struct conn_loop cl;
	uv_tcp_t listener;
	uint16_t port;
	uv_pipe_t plistener; /* a unix socket at path */
	char dir[64], path[96];
	int refuse_next; /* the accept callback refuses (as on ENOMEM) */
	int quiet;	 /* the server does not read; it writes once, 200 ms in */
	int eager;	 /* conn_set_eager on both ends; the client's SO_SNDBUF tiny */
	int quiet_rc;	 /* what the quiet server's conn_write returned */
	int quiet_closing; /* and whether its conn was closing right then */
	uv_timer_t quiet_timer;
	int accepted;
	struct peer *server[4];
};

static struct world W;

static void peer_maybe_done(struct peer *p)
{
	if (p->eof && p->shut)
		conn_finalize(&p->c, CONN_ER_CLOSED);
}

static int peer_data(struct conn *c, const uint8_t *buf, size_t len)
{
	struct peer *p = c->owner;

	p->got = realloc(p->got, p->got_len + len);
	assert_non_null(p->got);
	memcpy(p->got + p->got_len, buf, len);
	p->got_len += len;
	if (p->is_server)
		return conn_write(c, buf, len);
	return 0;
}

static void peer_eof(struct conn *c)
{
	struct peer *p = c->owner;

	p->eof = 1;
	if (p->is_server)
		conn_shutdown(c);
	peer_maybe_done(p);
}

static void peer_shut(struct conn *c)
{
	struct peer *p = c->owner;

	p->shut = 1;
	peer_maybe_done(p);
}

static void peer_end(struct conn *c, enum conn_reason reason)
{
	((struct peer *)c->owner)->reason = reason;
}

static void peer_drained(struct conn *c)
{
	((struct peer *)c->owner)->drained++;
}

static void peer_closed(struct conn *c)
{
	((struct peer *)c->owner)->closed++;
}

static void client_open(struct conn *c)
{
	if (W.quiet) { /* resets at once */
		conn_finalize(c, CONN_ER_RESET);
		return;
	}
	uint8_t *big = malloc(BIG);

	assert_non_null(big);
	for (size_t i = 0; i < BIG; i++)
		big[i] = (uint8_t)(i * 7);
	if (W.eager) {
		int sndbuf = 4096;
		conn_set_eager(c);
		assert_int_equal(uv_send_buffer_size(&c->h.handle, &sndbuf), 0);
	}
	assert_int_equal(conn_write(c, big, BIG), 0);
	((struct peer *)c->owner)->queued_after_write = conn_queued(c);
	free(big);
	conn_shutdown(c);
	conn_read_start(c);
}

static const struct conn_ops server_ops = {
	.data = peer_data,
	.eof = peer_eof,
	.shut = peer_shut,
	.drained = peer_drained,
	.end = peer_end,
	.closed = peer_closed,
};
static const struct conn_ops client_ops = {
	.open = client_open,
	.data = peer_data,
	.eof = peer_eof,
	.shut = peer_shut,
	.drained = peer_drained,
	.end = peer_end,
	.closed = peer_closed,
};

/* The quiet server writes to a peer that has reset: the only way it can
 * learn of it, since it does not read. */
static void quiet_write(uv_timer_t *t)
{
	struct peer *p = t->data;

	/* the error may come later (eager: at once) */
	W.quiet_rc = conn_write(&p->c, (const uint8_t *)"late", 4);
	W.quiet_closing = conn_closing(&p->c);
	uv_close((uv_handle_t *)t, NULL);
}

static void on_connection(uv_stream_t *l, int status)
{
	struct world *w = l->data;
	struct peer *p;

	assert_int_equal(status, 0);
	if (w->refuse_next) {
		w->refuse_next = 0;
		assert_int_equal(conn_accept(&w->cl, l, NULL, 1), -ECONNABORTED);
		return;
	}
	p = calloc(1, sizeof(*p));
	assert_non_null(p);
	p->is_server = 1;
	if (l->type == UV_NAMED_PIPE)
		assert_int_equal(conn_init_pipe(&p->c, &w->cl, &server_ops, p), 0);
	else
		assert_int_equal(conn_init(&p->c, &w->cl, &server_ops, p), 0);
	assert_int_equal(conn_accept(&w->cl, l, &p->c, 0), 0);
	w->server[w->accepted++] = p;
	conn_start(&p->c);
	assert_int_equal(p->c.state, CONN_ST_OPEN);
	if (w->eager)
		conn_set_eager(&p->c);
	if (w->quiet) {
		assert_int_equal(uv_timer_init(&w->loop, &w->quiet_timer), 0);
		w->quiet_timer.data = p;
		assert_int_equal(uv_timer_start(&w->quiet_timer, quiet_write, 200, 0), 0);
		return;
	}
	conn_read_start(&p->c);
}

static void closed_listener(uv_handle_t *h)
{
	(void)h;
}

static int setup(void **state)
{
	(void)state;
	memset(&W, 0, sizeof(W));
	assert_int_equal(uv_loop_init(&W.loop), 0);
	conn_loop_init(&W.cl, &W.loop);
	assert_int_equal(
		conn_listen(&W.loop, &W.listener, "127.0.0.1", 0, on_connection, &W, &W.port), 0);
	strcpy(W.dir, "/tmp/conn_test.XXXXXX");
	assert_non_null(mkdtemp(W.dir));
	snprintf(W.path, sizeof(W.path), "%s/s", W.dir);
	assert_int_equal(uv_pipe_init(&W.loop, &W.plistener, 0), 0);
	W.plistener.data = &W;
	assert_int_equal(uv_pipe_bind(&W.plistener, W.path), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&W.plistener, 16, on_connection), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	uv_close((uv_handle_t *)&W.listener, closed_listener);
	uv_close((uv_handle_t *)&W.plistener, closed_listener);
	unlink(W.path);
	rmdir(W.dir);
	assert_int_equal(testloop_run(&W.loop, 5), 0);
	for (int i = 0; i < W.accepted; i++) {
		free(W.server[i]->got);
		free(W.server[i]);
	}
	conn_loop_cleanup(&W.cl);
	assert_int_equal(uv_loop_close(&W.loop), 0);
	return 0;
}

static void connect_client(struct peer *cl, uint16_t port)
{
	struct sockaddr_in a;

	memset(cl, 0, sizeof(*cl));
	assert_int_equal(uv_ip4_addr("127.0.0.1", port, &a), 0);
	assert_int_equal(conn_init(&cl->c, &W.cl, &client_ops, cl), 0);
	conn_connect(&cl->c, (struct sockaddr *)&a);
}

static void connect_pipe_client(struct peer *cl)
{
	struct sockaddr_un a;

	memset(cl, 0, sizeof(*cl));
	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	strcpy(a.sun_path, W.path);
	assert_int_equal(conn_init_pipe(&cl->c, &W.cl, &client_ops, cl), 0);
	conn_connect(&cl->c, (struct sockaddr *)&a);
}

static void watchdog_cb(uv_timer_t *t)
{
	*(int *)t->data = 1;
}

/* Runs the loop until p is closed, for at most 5 s. */
static void run_until_closed(struct peer *p)
{
	uv_timer_t dog;
	int expired = 0;

	assert_int_equal(uv_timer_init(&W.loop, &dog), 0);
	dog.data = &expired;
	assert_int_equal(uv_timer_start(&dog, watchdog_cb, 5000, 0), 0);
	while (!p->closed && !expired)
		uv_run(&W.loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&dog, NULL);
	uv_run(&W.loop, UV_RUN_NOWAIT);
	assert_int_equal(p->closed, 1);
}

static void check_echo(struct peer *cl)
{
	assert_int_equal(cl->reason, CONN_ER_CLOSED);
	assert_int_equal(cl->got_len, BIG);
	for (size_t i = 0; i < BIG; i++)
		if (cl->got[i] != (uint8_t)(i * 7))
			fail_msg("byte %zu differs", i);
}

/* A client over TCP or a unix socket (pipe) to the echo server. */
static void connect_to_server(struct peer *cl, int pipe)
{
	if (pipe)
		connect_pipe_client(cl);
	else
		connect_client(cl, W.port);
}

/* One client sends BIG bytes and half-closes; the server echoes them and
 * closes: both ends see every byte and a clean close. */
static void echo_round(struct peer *cl, int pipe)
{
	connect_to_server(cl, pipe);
	run_until_closed(cl);
	check_echo(cl);
	assert_int_equal(cl->c.bytes_out, BIG);
	assert_int_equal(cl->c.bytes_in, BIG);
	run_until_closed(W.server[0]);
	assert_int_equal(W.server[0]->reason, CONN_ER_CLOSED);
	assert_int_equal(W.server[0]->got_len, BIG);
}

static void test_echo_half_close(void **state)
{
	struct peer cl;
	(void)state;

	echo_round(&cl, 0);
	free(cl.got);
}

static void test_pipe_echo(void **state)
{
	struct peer cl;
	(void)state;

	echo_round(&cl, 1);
	assert_true(cl.c.is_pipe);
	assert_true(W.server[0]->c.is_pipe);
	free(cl.got);
}

static void test_eager_echo_half_close(void **state)
{
	struct peer cl;
	(void)state;

	W.eager = 1;
	echo_round(&cl, 0);
	/* the tiny send buffer took a part; the rest was queued, written
	 * with uv_write, and its completion told */
	assert_true(cl.queued_after_write > 0 && cl.queued_after_write < BIG);
	assert_true(cl.drained >= 1);
	free(cl.got);
}

/* The accept callback cannot serve one connection: it is accepted and
 * closed at once (the client never gets an echo), and the listener is
 * still polled: the next one is served. */
static void accept_refused_round(int pipe)
{
	struct peer a, b;

	W.refuse_next = 1;
	connect_to_server(&a, pipe);
	run_until_closed(&a);
	assert_int_equal(a.got_len, 0);
	assert_int_equal(W.cl.refused_at_accept, 1);
	assert_int_equal(W.accepted, 0);
	connect_to_server(&b, pipe);
	run_until_closed(&b);
	assert_int_equal(W.accepted, 1);
	check_echo(&b);
	run_until_closed(W.server[0]);
	free(a.got);
	free(b.got);
}

static void test_accept_refused_keeps_listening(void **state)
{
	(void)state;
	accept_refused_round(0);
}

static void test_pipe_accept_refused_keeps_listening(void **state)
{
	(void)state;
	accept_refused_round(1);
}

static void test_connect_refused(void **state)
{
	struct peer cl;
	uv_tcp_t t;
	struct sockaddr_in a;
	int len = sizeof(a);
	(void)state;

	/* a port nobody listens on: bound, never listened, then closed */
	assert_int_equal(uv_tcp_init(&W.loop, &t), 0);
	assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &a), 0);
	assert_int_equal(uv_tcp_bind(&t, (struct sockaddr *)&a, 0), 0);
	assert_int_equal(uv_tcp_getsockname(&t, (struct sockaddr *)&a, &len), 0);
	uv_close((uv_handle_t *)&t, closed_listener);
	uv_run(&W.loop, UV_RUN_NOWAIT);
	connect_client(&cl, ntohs(a.sin_port));
	run_until_closed(&cl);
	assert_int_equal(cl.reason, CONN_ER_CONNECT_REFUSED);
	assert_string_equal(conn_reason_name(cl.reason), "connect_refused");
	assert_non_null(cl.c.why);
	assert_int_equal(cl.c.state, CONN_ST_CLOSED);
}

/* The server writes to a client that reset (W.quiet: the client closes
 * with the server's bytes unread); the server conn must end with the
 * error, not wait for a timeout. */
static void reset_round(void)
{
	struct peer cl;

	W.quiet = 1;
	connect_client(&cl, W.port);
	run_until_closed(&cl);
	for (int i = 0; i < 50 && !W.accepted; i++)
		uv_run(&W.loop, UV_RUN_NOWAIT);
	assert_int_equal(W.accepted, 1);
	run_until_closed(W.server[0]);
	assert_true(W.server[0]->reason == CONN_ER_RESET ||
		    W.server[0]->reason == CONN_ER_WRITE_ERROR);
	assert_true(conn_reason_resets(W.server[0]->reason));
}

/* A write to a peer that reset ends the conn at once with the error
 * (the agent once dropped such errors: they surfaced seconds later as a
 * timeout). The server never reads, so the write is what must notice. */
static void test_write_error(void **state)
{
	(void)state;
	reset_round();
}

/* An eager conn's write to a peer that reset fails in conn_write itself,
 * the conn closing with the reason before the call returns. */
static void test_eager_write_error(void **state)
{
	(void)state;
	W.eager = 1;
	reset_round();
	assert_true(W.quiet_rc < 0);
	assert_true(W.quiet_closing);
}

static void test_names(void **state)
{
	(void)state;
	for (int i = 0; i < CONN_ST__COUNT; i++) {
		assert_string_not_equal(conn_state_name((enum conn_state)i), "unknown");
		for (int j = 0; j < i; j++)
			assert_string_not_equal(conn_state_name((enum conn_state)i),
						conn_state_name((enum conn_state)j));
	}
	for (int i = 0; i < CONN_ER__COUNT; i++) {
		assert_string_not_equal(conn_reason_name((enum conn_reason)i), "unknown");
		for (int j = 0; j < i; j++)
			assert_string_not_equal(conn_reason_name((enum conn_reason)i),
						conn_reason_name((enum conn_reason)j));
	}
	assert_string_equal(conn_reason_name(CONN_ER__COUNT), "unknown");
	assert_false(conn_reason_is_error(CONN_ER_DENIED));
	assert_true(conn_reason_is_error(CONN_ER_CONNECT_REFUSED));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_echo_half_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_accept_refused_keeps_listening, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_pipe_echo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pipe_accept_refused_keeps_listening, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eager_echo_half_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eager_write_error, setup, teardown),
		cmocka_unit_test(test_names),
	};
	signal(SIGPIPE, SIG_IGN); /* as the daemons: a write to a closed unix socket is EPIPE */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
