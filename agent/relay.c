/* relay: see relay.h.
 *
 * Two directions, each reading from its source side and writing to its
 * sink side through one linear buffer: bytes to send are appended at
 * wlen, one uv_write is in flight at a time for [0, inflight), and when it
 * completes the rest moves to the front. The source is read only while
 * the buffer holds less than RELAY_HIGH, so what one read can produce (a
 * chunk, or a chunk's plaintext re-encrypted) always fits.
 *
 * A direction ends when its source has ended (FIN or close_notify) and
 * everything is written: then the sink gets close_notify (TLS) and a write
 * shutdown. The relay ends when both directions have, or at the first
 * reset, TLS error, idle timeout or relay_stop().
 *
 * Memory. What a read brings is dealt with before its callback returns
 * (fed to TLS, encrypted, or copied to the sink's buffer), and the agent
 * runs one loop on one thread: so every relay reads into one shared
 * buffer, and decrypts into another. The only per-direction buffer is the
 * sink's, wbuf, and it exists only while it holds bytes: taken when bytes
 * arrive, given back when a write drains it. Given-back buffers wait in a
 * small pool for the next taker (a busy connection takes and gives back
 * at every write), so steady traffic allocates nothing and an idle
 * connection holds no buffer at all. TLS to a plaintext sink decrypts
 * straight into wbuf (no copy). */
#include "relay.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#define RELAY_WCAP (RELAY_HIGH + 2 * RELAY_CHUNK + 1024)
#define RELAY_POOL 8 /* sink buffers kept for reuse */

/* The shared buffers (see the top of the file). */
static uint8_t relay_rbuf[RELAY_CHUNK]; /* socket reads */
static uint8_t relay_pbuf[RELAY_CHUNK]; /* plaintext from TLS, on its way to TLS */
static uint8_t *relay_pool[RELAY_POOL];
static int relay_pooled;
static uint64_t relay_heap_trimmed_at; /* loop time of the last malloc_trim() */
static int relay_heap_dirty;	       /* buffers given back since */

struct rside;

struct rdir {
	struct relay *r;
	struct rside *src, *dst;
	uint8_t *wbuf; /* to the sink: RELAY_WCAP bytes while wlen > 0, else NULL */
	size_t wlen, inflight;
	uv_write_t wreq;
	uv_shutdown_t sreq;
	int shut_started, ended;
	uint64_t bytes;
	relay_head_cb head; /* b to a: until the head callback is done */
};

struct rside {
	uv_tcp_t *tcp;
	struct mtls_conn *tls;
	struct rdir *in, *out; /* reads from this side / writes to this side */
	int read_eof, reading;
};

struct relay {
	uv_timer_t idle; /* ticks every min(idle_ms, RELAY_QUIET_MS / 2) */
	unsigned idle_ms;
	uint64_t last_read; /* loop time of the last read (a timer restart per read costs more) */
	int trimmed;	    /* buffers given back since that read */
	struct rside a, b;
	struct rdir *ab, *ba;
	relay_done_cb done;
	void *arg;
	enum relay_end_reason reason;
	int closing, pending_closes;
};

static void relay_pump(struct rdir *d);

/* Gives d a sink buffer if it has none. 0 or -ENOMEM. */
static int relay_wbuf_take(struct rdir *d)
{
	if (d->wbuf)
		return 0;
	d->wbuf = relay_pooled ? relay_pool[--relay_pooled] : malloc(RELAY_WCAP);
	return d->wbuf ? 0 : -ENOMEM;
}

/* Gives d's sink buffer back once it holds nothing. */
static void relay_wbuf_release(struct rdir *d)
{
	if (!d->wbuf || d->wlen > 0)
		return;
	if (relay_pooled < RELAY_POOL)
		relay_pool[relay_pooled++] = d->wbuf;
	else
		free(d->wbuf);
	d->wbuf = NULL;
}

static void relay_closed(uv_handle_t *h)
{
	struct relay *r = h->data;

	if (--r->pending_closes > 0)
		return;
	struct relay_stats st = {r->ab->bytes, r->ba->bytes, r->reason};
	/* The owner hears first, while the TLS connections can still say what
	 * they negotiated; then everything goes. */
	r->done(r->arg, &st);
	mtls_conn_free(r->a.tls);
	mtls_conn_free(r->b.tls);
	r->ab->wlen = r->ba->wlen = 0; /* no write is in flight any more */
	relay_wbuf_release(r->ab);
	relay_wbuf_release(r->ba);
	free(r->a.tcp);
	free(r->b.tcp);
	free(r->ab);
	free(r->ba);
	free(r);
}

static void relay_end(struct relay *r, enum relay_end_reason reason)
{
	if (r->closing)
		return;
	r->closing = 1;
	r->reason = reason;
	r->pending_closes = 3;
	r->a.tcp->data = r->b.tcp->data = r; /* for relay_closed */
	uv_timer_stop(&r->idle);
	uv_close((uv_handle_t *)&r->idle, relay_closed);
	if (reason == RELAY_RESET || reason == RELAY_TLS_ERROR) {
		if (uv_tcp_close_reset(r->a.tcp, relay_closed) < 0)
			uv_close((uv_handle_t *)r->a.tcp, relay_closed);
		if (uv_tcp_close_reset(r->b.tcp, relay_closed) < 0)
			uv_close((uv_handle_t *)r->b.tcp, relay_closed);
	} else {
		uv_close((uv_handle_t *)r->a.tcp, relay_closed);
		uv_close((uv_handle_t *)r->b.tcp, relay_closed);
	}
}

/* Appends what a TLS side has to send to the direction writing to it.
 * 0 or -ENOMEM. */
static int relay_take_tls(struct rside *s)
{
	struct rdir *d = s->out;
	if (!s->tls || mtls_conn_pending_out(s->tls) == 0)
		return 0;
	if (relay_wbuf_take(d) < 0)
		return -ENOMEM;
	while (d->wlen < RELAY_WCAP) {
		size_t n = mtls_conn_take_out(s->tls, d->wbuf + d->wlen, RELAY_WCAP - d->wlen);
		if (n == 0)
			break;
		d->wlen += n;
	}
	return 0;
}

/* Plaintext from d's source, on its way to d's sink. 0 or -EPROTO. */
static int relay_emit(struct rdir *d, const uint8_t *data, size_t n)
{
	d->bytes += n;
	if (d->dst->tls)
		return mtls_conn_write(d->dst->tls, data, n) < 0 || relay_take_tls(d->dst) < 0
			       ? -EPROTO
			       : 0;
	if (relay_wbuf_take(d) < 0)
		return -EPROTO;
	memcpy(d->wbuf + d->wlen, data, n); /* fits: see the top of the file */
	d->wlen += n;
	return 0;
}

/* Plaintext from d's source while d has a head callback: what it does not
 * take goes on. 0, -EPROTO, or -ECONNREFUSED (the callback ends the relay). */
static int relay_head(struct rdir *d, const uint8_t *data, size_t n)
{
	size_t used = n;
	int rc = d->head(d->r->arg, data, n, &used);

	if (rc < 0)
		return -ECONNREFUSED;
	if (rc == 0)
		return 0;
	d->head = NULL;
	return used < n ? relay_emit(d, data + used, n - used) : 0;
}

/* One read of a TLS source's decrypted bytes into its direction: straight
 * into the sink's buffer when the sink is plaintext. Like mtls_conn_read,
 * and -ECONNREFUSED (relay_head). */
static int relay_read_tls(struct rdir *d)
{
	int n;

	if (d->head) {
		n = mtls_conn_read(d->src->tls, relay_pbuf, sizeof(relay_pbuf));
		int rc = n > 0 ? relay_head(d, relay_pbuf, (size_t)n) : 0;
		return rc < 0 ? rc : n;
	}
	if (d->dst->tls) {
		n = mtls_conn_read(d->src->tls, relay_pbuf, sizeof(relay_pbuf));
		return n > 0 && relay_emit(d, relay_pbuf, (size_t)n) < 0 ? -EPROTO : n;
	}
	if (relay_wbuf_take(d) < 0)
		return -EPROTO;
	n = mtls_conn_read(d->src->tls, d->wbuf + d->wlen, RELAY_CHUNK); /* fits: wlen < HIGH */
	if (n > 0) {
		d->wlen += (size_t)n;
		d->bytes += (size_t)n;
	}
	relay_wbuf_release(d); /* when nothing came */
	return n;
}

/* Drains a TLS source's decrypted bytes into its direction. */
static int relay_drain_tls(struct rdir *d)
{
	for (;;) {
		if (d->wlen >= RELAY_HIGH)
			return 0; /* the rest waits in the TLS buffers */
		int n = relay_read_tls(d);
		if (n == 0)
			return 0;
		if (n == -EPIPE) {
			d->src->read_eof = 1;
			return 0;
		}
		if (n < 0)
			return n == -ECONNREFUSED ? n : -EPROTO;
	}
}

/* The end of a relay whose bytes could not go on (rc < 0, from the
 * functions above). */
static void relay_fail(struct relay *r, int rc)
{
	relay_end(r, rc == -ECONNREFUSED ? RELAY_REFUSED : RELAY_TLS_ERROR);
}

static void relay_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	(void)h;
	(void)hint;
	*buf = uv_buf_init((char *)relay_rbuf, sizeof(relay_rbuf));
}

static void relay_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	struct rside *s = st->data;
	struct rdir *d = s->in;
	struct relay *r = d->r;
	(void)buf;

	if (r->closing || n == 0)
		return;
	if (n == UV_EOF) {
		s->read_eof = 1;
	} else if (n < 0) {
		relay_end(r, RELAY_RESET);
		return;
	} else {
		r->last_read = uv_now(r->idle.loop);
		r->trimmed = 0;
		int rc = 0;
		if (s->tls) {
			/* and what the TLS stack answers (tickets, key updates) */
			if (mtls_conn_feed(s->tls, relay_rbuf, (size_t)n) < 0 ||
			    (rc = relay_drain_tls(d)) < 0 || (rc = relay_take_tls(s)) < 0) {
				relay_fail(r, rc);
				return;
			}
		} else if ((rc = d->head ? relay_head(d, relay_rbuf, (size_t)n)
					 : relay_emit(d, relay_rbuf, (size_t)n)) < 0) {
			relay_fail(r, rc);
			return;
		}
	}
	relay_pump(d);
	if (!r->closing)
		relay_pump(s->out);
}

static void relay_shut_done(uv_shutdown_t *req, int status)
{
	struct rdir *d = req->data;
	struct relay *r = d->r;

	if (r->closing)
		return;
	d->ended = 1;
	if (status < 0)
		relay_end(r, RELAY_RESET);
	else if (r->ab->ended && r->ba->ended)
		relay_end(r, RELAY_CLOSED);
}

static void relay_written(uv_write_t *req, int status)
{
	struct rdir *d = req->data;

	if (d->r->closing)
		return;
	if (status < 0) {
		relay_end(d->r, RELAY_RESET);
		return;
	}
	memmove(d->wbuf, d->wbuf + d->inflight, d->wlen - d->inflight);
	d->wlen -= d->inflight;
	d->inflight = 0;
	relay_wbuf_release(d);
	/* Room again: a TLS source may hold decrypted bytes we left there. */
	int rc;
	if (d->src->tls && !d->src->read_eof && (rc = relay_drain_tls(d)) < 0) {
		relay_fail(d->r, rc);
		return;
	}
	relay_pump(d);
}

/* Moves d along: the next write, the end of the direction, reading. */
static void relay_pump(struct rdir *d)
{
	struct relay *r = d->r;

	if (r->closing)
		return;
	if (d->inflight == 0 && d->wlen > 0) {
		uv_buf_t b = uv_buf_init((char *)d->wbuf, (unsigned)d->wlen);
		d->inflight = d->wlen;
		d->wreq.data = d;
		if (uv_write(&d->wreq, (uv_stream_t *)d->dst->tcp, &b, 1, relay_written) < 0) {
			relay_end(r, RELAY_RESET);
			return;
		}
	}
	if (d->src->read_eof && !d->shut_started) {
		if (d->dst->tls && d->wlen == 0) {
			mtls_conn_shutdown(d->dst->tls); /* close_notify first */
			if (relay_take_tls(d->dst) < 0) {
				relay_end(r, RELAY_RESET);
				return;
			}
			if (d->wlen) {
				relay_pump(d);
				return;
			}
		}
		if (d->wlen == 0) {
			d->shut_started = 1;
			d->sreq.data = d;
			if (uv_shutdown(&d->sreq, (uv_stream_t *)d->dst->tcp, relay_shut_done) <
			    0) {
				relay_end(r, RELAY_RESET);
				return;
			}
		}
	}
	int want = !d->src->read_eof && d->wlen < RELAY_HIGH;
	if (want != d->src->reading) {
		if (want)
			uv_read_start((uv_stream_t *)d->src->tcp, relay_alloc, relay_read);
		else
			uv_read_stop((uv_stream_t *)d->src->tcp);
		d->src->reading = want;
	}
}

static void relay_tick(uv_timer_t *t)
{
	struct relay *r = t->data;
	uint64_t quiet = uv_now(t->loop) - r->last_read;

	if (quiet >= r->idle_ms) {
		relay_end(r, RELAY_IDLE);
		return;
	}
	if (quiet >= RELAY_QUIET_MS && !r->trimmed) {
		r->trimmed = 1;
		relay_heap_dirty = 1;
		if (r->a.tls)
			mtls_conn_trim(r->a.tls);
		if (r->b.tls)
			mtls_conn_trim(r->b.tls);
	}
	/* What a burst of many connections freed stays resident in the heap
	 * until given back: at most once a second for the process, by
	 * whichever relay ticks first once a second has passed. */
	if (relay_heap_dirty && uv_now(t->loop) - relay_heap_trimmed_at >= 1000) {
		relay_heap_trimmed_at = uv_now(t->loop);
		relay_heap_dirty = 0;
		malloc_trim(0);
	}
}

int relay_start(uv_loop_t *loop, uv_tcp_t *a, struct mtls_conn *a_tls, uv_tcp_t *b,
		struct mtls_conn *b_tls, unsigned idle_ms, relay_head_cb head, relay_done_cb done,
		void *arg, struct relay **out)
{
	struct relay *r = calloc(1, sizeof(*r));

	if (r) {
		r->ab = calloc(1, sizeof(*r->ab));
		r->ba = calloc(1, sizeof(*r->ba));
	}
	if (!r || !r->ab || !r->ba) {
		if (r) {
			free(r->ab);
			free(r->ba);
		}
		free(r);
		return -ENOMEM;
	}
	r->a = (struct rside){.tcp = a, .tls = a_tls, .in = r->ab, .out = r->ba};
	r->b = (struct rside){.tcp = b, .tls = b_tls, .in = r->ba, .out = r->ab};
	*r->ab = (struct rdir){.r = r, .src = &r->a, .dst = &r->b};
	*r->ba = (struct rdir){.r = r, .src = &r->b, .dst = &r->a, .head = head};
	a->data = &r->a;
	b->data = &r->b;
	r->done = done;
	r->arg = arg;
	r->idle_ms = idle_ms;
	uv_timer_init(loop, &r->idle);
	r->idle.data = r;
	r->last_read = uv_now(loop);
	unsigned tick = idle_ms < RELAY_QUIET_MS / 2 ? idle_ms : RELAY_QUIET_MS / 2;
	uv_timer_start(&r->idle, relay_tick, tick, tick);
	*out = r;
	/* What the handshakes left: decrypted bytes and TLS messages to send. */
	int rc = 0;
	if (relay_take_tls(&r->a) < 0 || relay_take_tls(&r->b) < 0 ||
	    (a_tls && (rc = relay_drain_tls(r->ab)) < 0) ||
	    (b_tls && (rc = relay_drain_tls(r->ba)) < 0)) {
		relay_fail(r, rc);
		return 0;
	}
	relay_pump(r->ab);
	relay_pump(r->ba);
	return 0;
}

int relay_stop(struct relay *r)
{
	if (r->closing)
		return -EALREADY;
	relay_end(r, RELAY_STOPPED);
	return 0;
}
