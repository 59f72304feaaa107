/* conn: the connection core. Every Cinch connection end is a `struct conn`:
 * one TCP socket, one transport (plain, or TLS over the mtls engine with
 * memory BIOs) and the layer above it (the agent's relay pump, an HTTP or
 * gRPC server). The shape is curl's connection filters / HAProxy's
 * xprt_ops: the core moves bytes between the socket and the transport,
 * the transport turns them into plaintext, the owner sees only plaintext.
 * docs/internals/connection.md tells the whole lifecycle.
 *
 * Types.
 *   struct conn_loop        per-loop state every conn of one uv loop shares:
 *                           the read buffers, the pool of write buffers, the
 *                           accept helper's spare handles. No static state
 *                           anywhere in the core, so one loop per worker
 *                           runs N cores side by side.
 *   struct conn             one end: a socket (TCP, or a unix-domain stream
 *                           socket: conn_init_pipe), its transport, its
 *                           write queue.
 *   struct conn_xprt_ops    a transport (conn_xprt_plain, conn_tls_ops ...).
 *   struct conn_ops         the owner's callbacks.
 *   enum conn_state         where an end is; conn_advance() moves it on.
 *   enum conn_reason        why an end closed; sticky (the first one wins);
 *                           conn_reason_name() is the log word and the
 *                           metric label (bounded: the enum).
 *
 * States (conn_advance is the one driver; callbacks only record what
 * happened and call it):
 *
 *   INIT --conn_start/conn_connect--> [CONNECTING] --> HANDSHAKE --> OPEN
 *     any state --conn_finalize(c, reason)--> CLOSING --close cb--> CLOSED
 *
 *   HANDSHAKE   the transport's handshake runs (plain: done at once); the
 *               core reads whatever the owner wants.
 *   OPEN        plaintext flows: ops->data for what comes in (while the
 *               owner reads: conn_read_start/stop), conn_write for what
 *               goes out. Half-close: ops->eof when the peer ended its
 *               stream; conn_shutdown ends ours (close_notify, then a
 *               TCP write shutdown, once the queue is written).
 *
 * Lifetimes, who frees what.
 *   - The owner allocates the struct conn (usually embedded in its own
 *     session struct) and calls conn_init. From conn_init on, the handle's
 *     data is the conn (handle->data is always a struct conn *).
 *   - The transport's state (xprt_ctx) is taken by conn_set_xprt and
 *     freed by the core just before ops->closed: what the owner wants to
 *     keep of it (peer identity, version, cipher) it takes in ops->open.
 *   - conn_finalize(c, reason) is idempotent: the first call records the
 *     reason, calls ops->end once (the owner then finalizes what else it
 *     must: the other end of a relay) and closes the handle (with a TCP
 *     reset for the error reasons, conn_reason_resets). The conn's memory
 *     may be freed only in or after ops->closed, which runs once, from the
 *     handle's close callback.
 *   - After any call that can reach the owner (conn_advance, conn_write,
 *     conn_read_start ...) check conn_closing(c) before using c again.
 *
 * Errors are negative errno; reasons are enum conn_reason. */
#ifndef CINCH_CONN_H
#define CINCH_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define CONN_CHUNK   16384	 /* one TLS record */
#define CONN_RCAP    (64 * 1024) /* one socket read; plaintext handed over at once */
#define CONN_HIGH    (64 * 1024) /* write queue high-water mark (backpressure) */
#define CONN_WCAP    (CONN_HIGH + CONN_RCAP + 1024) /* a pooled write buffer */
#define CONN_SMALL   4096 /* a first write buffer for a small write */
#define CONN_POOL    8	  /* write buffers kept per loop for reuse */
#define CONN_SPARES  4	  /* accept helper: handles to refuse with */
#define CONN_BACKLOG 1024

enum conn_state {
	CONN_ST_INIT = 0,   /* conn_init done; no socket yet */
	CONN_ST_CONNECTING, /* conn_connect: the TCP connect runs */
	CONN_ST_HANDSHAKE,  /* the transport's handshake runs */
	CONN_ST_OPEN,	    /* plaintext flows */
	CONN_ST_CLOSING,    /* conn_finalize: the handle is closing */
	CONN_ST_CLOSED,	    /* ops->closed ran */
	CONN_ST__COUNT,
};

/* Why a connection ended. Policy refusals are the owner's business
 * (CONN_ER_DENIED says only "the owner refused it"); the rest are
 * connection errors and their names are the values of
 * cinch_agent_connection_errors_total{reason} (docs/metrics.md). */
enum conn_reason {
	CONN_ER_NONE = 0,		/* not ended */
	CONN_ER_CLOSED,			/* both sides ended their streams */
	CONN_ER_DENIED,			/* the owner refused it (policy, budget, ...) */
	CONN_ER_STOPPED,		/* the owner stopped (shutdown, policy change) */
	CONN_ER_CONNECT_REFUSED,	/* the connect failed (refused, unreachable) */
	CONN_ER_CONNECT_TIMEOUT,	/* the connect did not finish in time */
	CONN_ER_HANDSHAKE_FAILED,	/* the TLS handshake failed (not an identity mismatch) */
	CONN_ER_HANDSHAKE_TIMEOUT,	/* the TLS handshake did not finish in time */
	CONN_ER_PEER_IDENTITY_MISMATCH, /* the server is another workload than expected */
	CONN_ER_TLS_ERROR,		/* a TLS record did not decrypt, or TLS failed later */
	CONN_ER_RESET,			/* the peer reset or closed too early, a read error */
	CONN_ER_WRITE_ERROR,		/* a write or a shutdown failed */
	CONN_ER_IDLE_TIMEOUT,		/* nothing read for the idle timeout */
	CONN_ER_NO_MEMORY,		/* an allocation failed */
	CONN_ER_PROTOCOL,		/* the owner's protocol failed (a bad frame ...) */
	CONN_ER__COUNT,
};

const char *conn_state_name(enum conn_state s);
/* The log word and metric label: "closed", "connect_refused", ... */
const char *conn_reason_name(enum conn_reason r);
/* 1: the handle is closed with a TCP reset (errors the peer must see as
 * such, not as a clean end of stream). */
int conn_reason_resets(enum conn_reason r);
/* 1: a connection error (counted in connection_errors), 0: an end
 * (CLOSED, DENIED, STOPPED, NONE). */
int conn_reason_is_error(enum conn_reason r);

struct conn;

/* A transport. All optional members NULL for plain (conn_xprt_plain):
 * the socket's bytes are the plaintext. */
struct conn_xprt_ops {
	const char *name; /* "plain", "tls" */
	/* Runs the handshake on what recv fed. 1 done, 0 wants more bytes,
	 * < 0 failed (*reason: HANDSHAKE_FAILED, PEER_IDENTITY_MISMATCH ...). */
	int (*handshake)(struct conn *c, enum conn_reason *reason);
	/* Bytes from the socket. 0 or -ENOMEM. */
	int (*recv)(struct conn *c, const uint8_t *data, size_t len);
	/* Plaintext out: > 0 bytes, 0 when it needs more, -EPIPE at the
	 * peer's end of stream, other < 0 on an error. */
	int (*read)(struct conn *c, uint8_t *buf, size_t len);
	/* Plaintext in, all of it. 0 or < 0. */
	int (*send)(struct conn *c, const uint8_t *data, size_t len);
	/* Queues the end of our stream (close_notify). */
	void (*shutdown)(struct conn *c);
	/* Bytes for the socket: how many and where they lie (*data, valid
	 * until the next call on the transport), and dropping the first n
	 * once they are written or queued. */
	size_t (*peek)(struct conn *c, const uint8_t **data);
	void (*consume)(struct conn *c, size_t n);
	/* Frees xprt_ctx. */
	void (*free)(void *xprt_ctx);
};

extern const struct conn_xprt_ops conn_xprt_plain;

/* The owner's callbacks; each gets the conn (c->owner is the owner's).
 * Only `closed` is required. */
struct conn_ops {
	/* CONNECTING done: the TCP connection is up, HANDSHAKE begins
	 * (conn_connect only). */
	void (*connected)(struct conn *c);
	/* HANDSHAKE done: the transport is up (peer identity known). */
	void (*open)(struct conn *c);
	/* Plaintext from the peer. 0, or < 0 to stop: the owner then
	 * finalizes (the core reads nothing more from c in this turn). */
	int (*data)(struct conn *c, const uint8_t *buf, size_t len);
	/* The peer ended its stream (FIN or close_notify); c stays open for
	 * writing. */
	void (*eof)(struct conn *c);
	/* A write completed: the queue shrank (conn_queued). On an eager
	 * conn (conn_set_eager) only for bytes that had to be queued. */
	void (*drained)(struct conn *c);
	/* Our shutdown (conn_shutdown) was written and the TCP write side
	 * shut. */
	void (*shut)(struct conn *c);
	/* conn_finalize's first call, before the handle is closed: react
	 * (finalize what else must end with c); do not free c. */
	void (*end)(struct conn *c, enum conn_reason reason);
	/* The handle is closed and the transport freed: the last callback;
	 * the owner may free c in it. */
	void (*closed)(struct conn *c);
};

/* Per-loop state (see the top). One per uv loop; every conn of the loop
 * borrows it; it must outlive them. */
struct conn_loop {
	uv_loop_t *loop;
	uint8_t *pool[CONN_POOL]; /* write buffers of CONN_WCAP bytes, free */
	int pooled;
	int heap_dirty;		  /* buffers given back since the last malloc_trim */
	uint64_t heap_trimmed_at; /* loop ms */
	union {
		uv_handle_t handle;
		uv_tcp_t tcp;
		uv_pipe_t pipe;
	} spare[CONN_SPARES]; /* of the listener's kind */
	int spare_busy[CONN_SPARES];
	uv_stream_t *accept_waiting; /* a listener whose accept waits for a spare */
	unsigned refused_at_accept;  /* connections the accept helper closed at once */
	/* Last, and not zeroed by conn_loop_init: a loop that never carries
	 * a bulk read touches only their first pages (idle RSS). */
	uint8_t rbuf[CONN_RCAP]; /* socket reads (dealt with before the callback returns) */
	uint8_t pbuf[CONN_RCAP]; /* plaintext out of a transport */
};

struct conn {
	union {
		uv_handle_t handle;
		uv_stream_t stream;
		uv_tcp_t tcp;
		uv_pipe_t pipe; /* conn_init_pipe */
	} h;			/* h.handle.data == this conn, always */
	struct conn_loop *cl;	/* borrowed */
	const struct conn_ops *ops;
	void *owner;
	const struct conn_xprt_ops *xprt;
	void *xprt_ctx; /* owned (xprt->free) */
	enum conn_state state;
	enum conn_reason reason; /* sticky: the first conn_finalize's */
	const char *why;	 /* static prose for the log (the transport's), or NULL */
	uint64_t last_read;	 /* loop ms of the last socket read (idle timeouts) */
	uv_connect_t creq;
	uv_write_t wreq;
	uv_shutdown_t sreq;
	uint8_t *wbuf;	  /* bytes for the socket; NULL while empty */
	uint8_t *retired; /* the buffer a write in flight uses, after wbuf grew */
	size_t wlen, wcap, inflight;
	uint64_t bytes_in, bytes_out; /* plaintext */
	unsigned handle_init : 1;     /* the handle must be closed */
	unsigned is_pipe : 1;	      /* h.pipe, not h.tcp */
	unsigned want_read : 1;	      /* the owner reads (conn_read_start) */
	unsigned reading : 1;	      /* uv_read_start is on */
	unsigned eof_tcp : 1;	      /* the socket read its FIN */
	unsigned eof_in : 1;	      /* the peer ended its stream (told to ops->eof) */
	unsigned advancing : 1;	      /* conn_advance runs (no nesting) */
	unsigned xprt_shut : 1;	      /* xprt->shutdown called */
	unsigned shut_wanted : 1;     /* conn_shutdown called */
	unsigned shut_started : 1;    /* uv_shutdown issued */
	unsigned eager : 1;	      /* conn_set_eager */
};

/* Sets up a conn_loop. */
void conn_loop_init(struct conn_loop *cl, uv_loop_t *loop);
/* Gives the pooled buffers back. Every conn of cl must be CLOSED and the
 * spares closed (run the loop after the last finalize). */
void conn_loop_cleanup(struct conn_loop *cl);
/* At most once a second: malloc_trim after buffers were given back. */
void conn_loop_trim_heap(struct conn_loop *cl);

/* Initialises c (zeroed by the caller or not) with its uv handle, plain
 * transport, state INIT. 0, or a libuv error (then nothing to close). */
int conn_init(struct conn *c, struct conn_loop *cl, const struct conn_ops *ops, void *owner)
	__attribute__((warn_unused_result));
/* The same with a unix-domain stream socket (h.pipe): no TCP options,
 * and a plain close (no reset: a unix socket has none) for every reason. */
int conn_init_pipe(struct conn *c, struct conn_loop *cl, const struct conn_ops *ops, void *owner)
	__attribute__((warn_unused_result));
/* Takes xprt_ctx (freed with xprt->free when c is closed); only before
 * HANDSHAKE. */
void conn_set_xprt(struct conn *c, const struct conn_xprt_ops *xprt, void *xprt_ctx);

/* The accept helper: always calls uv_accept for the listener's pending
 * connection, so libuv keeps polling it. c NULL (the caller could not
 * allocate one) or `refuse` non-zero: the connection is taken into a
 * spare handle of the listener's kind (TCP or pipe) and closed at once (a
 * reset on TCP), counted in
 * cl->refused_at_accept, and -ECONNABORTED returned (when every spare is
 * busy closing, the accept is done from the next spare's close callback).
 * Else c (conn_init'ed, INIT) holds the connection: 0, or a libuv error
 * (the caller finalizes c). */
int conn_accept(struct conn_loop *cl, uv_stream_t *listener, struct conn *c, int refuse)
	__attribute__((warn_unused_result));
/* The accept helper for a connection accepted elsewhere: fd, a connected
 * stream socket, is taken in every case. c NULL or `refuse`: closed at
 * once (a reset on TCP), counted in cl->refused_at_accept,
 * -ECONNABORTED. Else c (conn_init'ed for TCP, conn_init_pipe'd for a
 * unix-domain socket; INIT) holds it: 0, or a libuv error (fd closed; the
 * caller finalizes c). */
int conn_adopt(struct conn_loop *cl, uv_os_sock_t fd, struct conn *c, int refuse)
	__attribute__((warn_unused_result));
/* Listens on host:port (port 0: any; *bound_port then says which) with
 * cb for each connection; listener->data = data. 0 or a libuv error
 * (when listener->loop is set, the caller still closes it). */
int conn_listen(uv_loop_t *loop, uv_tcp_t *listener, const char *host, uint16_t port,
		uv_connection_cb cb, void *data, uint16_t *bound_port)
	__attribute__((warn_unused_result));
/* As conn_listen, the socket in a SO_REUSEPORT group (one listener per
 * loop on the same port, the kernel spreading connections among them).
 * `first`: the group's first socket; the port must then be free (a plain
 * bind is tried first): a port someone else holds is UV_EADDRINUSE, not
 * shared. The kernel admits to a group only sockets of the same effective
 * UID. */
int conn_listen_group(uv_loop_t *loop, uv_tcp_t *listener, const char *host, uint16_t port,
		      int first, uv_connection_cb cb, void *data, uint16_t *bound_port)
	__attribute__((warn_unused_result));

/* An accepted conn (INIT) starts: HANDSHAKE with its transport (plain:
 * OPEN at once, ops->open called). */
void conn_start(struct conn *c);
/* Connects c (INIT) to dst (a sockaddr_un's path for a pipe conn):
 * CONNECTING, then as conn_start. A failure
 * finalizes c with CONNECT_REFUSED (or CONNECT_TIMEOUT), possibly before
 * this returns: check conn_closing. */
void conn_connect(struct conn *c, const struct sockaddr *dst);

/* An OPEN plain conn becomes a `xprt` one (takes xprt_ctx), starting
 * its handshake with the `data` already read from the socket (the
 * agent's inbound peeks the first bytes: TLS or plaintext). From the
 * owner's data callback too. 0, or -ENOMEM (c finalized). */
int conn_upgrade(struct conn *c, const struct conn_xprt_ops *xprt, void *xprt_ctx,
		 const uint8_t *data, size_t len) __attribute__((warn_unused_result));

/* The one driver: runs c's state until it must wait for the socket, the
 * owner or a write (see the top). Callbacks call it; owners call it after
 * they changed what c should do (conn_read_start does). */
void conn_advance(struct conn *c);

/* The owner reads (ops->data) or stops (backpressure; c keeps what the
 * transport decrypted). Starting may deliver at once. */
void conn_read_start(struct conn *c);
void conn_read_stop(struct conn *c);
/* Queues plaintext (encrypted by the transport) and starts writing it.
 * OPEN only. 0, or < 0 (-ENOTCONN, -ENOMEM, -EPROTO, a libuv error): c is
 * then already finalized with the reason (NO_MEMORY, TLS_ERROR,
 * WRITE_ERROR): a write error is never dropped. */
int conn_write(struct conn *c, const uint8_t *data, size_t len) __attribute__((warn_unused_result));
/* Writes what the transport queued itself (a handshake's reply, a
 * ticket); conn_advance does it, owners that drive the transport directly
 * call it. 0 or < 0, c finalized as by conn_write. */
int conn_flush(struct conn *c) __attribute__((warn_unused_result));
/* Writes go to the socket at once (uv_try_write) when nothing is queued,
 * and only what the socket does not take is queued (and written with
 * uv_write, whose completion calls ops->drained): no write request, no
 * copy and no epoll change for a write the socket takes whole. For an
 * owner that needs ops->drained only to resume after backpressure (the
 * relay pump); others are told of every write's completion. */
void conn_set_eager(struct conn *c);
/* Bytes queued for the socket and not yet written. */
size_t conn_queued(const struct conn *c);
/* Ends our stream once the queue is written (close_notify first on TLS);
 * ops->shut when done. */
void conn_shutdown(struct conn *c);
/* A quiet connection: its transport's buffers are already given back
 * (they exist only while they hold bytes); the loop's heap is trimmed at
 * the next conn_loop_trim_heap. */
void conn_trim(struct conn *c);

/* The one close path (see the top). Idempotent; a no-op on a conn that
 * was zeroed and never conn_init'ed. */
void conn_finalize(struct conn *c, enum conn_reason reason);
static inline int conn_closing(const struct conn *c)
{
	return c->state >= CONN_ST_CLOSING;
}

#endif
