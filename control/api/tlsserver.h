/* tlsserver: a TCP listener on one libuv loop whose connections speak TLS
 * (mtls.h, the one TLS engine), with the protocol on top given as an ops
 * table. Each connection is a struct conn of the connection core
 * (common/conn.h) with the TLS transport (xprt_tls.h): accept, reading,
 * the handshake, the plaintext pump, the write path and the one close path
 * (conn_finalize) are the core's. This file is what every TLS server of
 * cinch-control adds on top (the injection webhook and the gRPC server in
 * api/grpc.c run on it): the connection limits, the handshake timeout, the
 * idle timer (with a keepalive hook), a deferred driver run
 * (tlsconn_kick), backpressure by the protocol's high-water mark and the
 * log lines. *
 * Admission, before anything is read: at most max_conns connections, and
 * at most max_per_source from one peer address, so one host (an attacker
 * on the pod network) cannot take every slot; a connection over either is
 * closed at once (logged <name>_conn_refused with the reason, at most
 * once a second for the per-source cap, with the count left out). A
 * connection that has not finished its handshake within handshake_ms is
 * closed. The TLS engine's buffers exist only while they hold bytes
 * (mtls.c), so a quiet connection costs its fixed state only.
 *
 * A connection goes HANDSHAKE -> OPEN -> (closed), the core's states
 * (conn_advance drives them: the handshake, plaintext to ops->input).
 * tlsconn_advance() is this layer's step, run when the handshake ends,
 * after every write the socket finished (and by the protocol after it
 * queued an answer later, e.g. from a callback): it lets ops->flush put
 * pending output into TLS while there is room, stops reading while more
 * than its write high-water mark (TLSSERVER_WRITE_HIGH, or what the
 * protocol set) waits for the peer, and closes the connection when
 * ops->done says so. A reason given to tlsconn_close is the log's word
 * and becomes the core's enum conn_reason (errors reset the TCP
 * connection; orderly ends close it).
 *
 * Lifetimes: the server owns its connections; a connection's protocol
 * state (tlsconn_set_data) is freed by ops->free, called exactly once from
 * the close callback (ops->closing runs earlier, when the close starts, so
 * the protocol can let go of what must not reach a closing connection). tlsserver_stop() closes
 * everything; `stopped` runs once every handle is closed, after the last ops->free, so the owner
 * may free what the protocol callbacks use only then. */
#ifndef CINCH_CONTROL_TLSSERVER_H
#define CINCH_CONTROL_TLSSERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "mtls.h"

struct nghttp2_session;

#define TLSSERVER_WRITE_HIGH (256 * 1024)

struct tlsserver;
struct tlsconn;

struct tlsserver_ops {
	/* The handshake finished: set up the protocol (tlsconn_set_data).
	 * 0, or a negative errno to close the connection (with the reason
	 * given to tlsconn_close, else "protocol_start_failed"). */
	int (*start)(struct tlsconn *c);
	/* Plaintext from the peer (borrowed). 0, or a negative errno to close
	 * (with the reason given to tlsconn_close, else "protocol_error"). */
	int (*input)(struct tlsconn *c, const uint8_t *data, size_t len);
	/* Optional: move pending output into TLS with tlsconn_write while
	 * tlsconn_room() > 0. 0 or a negative errno (closes). */
	int (*flush)(struct tlsconn *c);
	/* Nothing is waiting to be written: a static reason to close the
	 * connection now, or NULL to keep it. */
	const char *(*done)(struct tlsconn *c);
	/* Optional: the idle timer (tlsconn_set_timeout with idle) fired and
	 * nothing was received for `rounds` periods in a row (1, 2, ...).
	 * 1 keeps the connection (the timer runs another period), e.g. after
	 * queueing a keepalive probe; 0 closes it with the timer's reason. */
	int (*idle)(struct tlsconn *c, unsigned rounds);
	/* Optional: the connection starts closing (once, from tlsconn_close,
	 * also before start ran): drop what may still reach it. Nothing is
	 * written any more. */
	void (*closing)(struct tlsconn *c);
	/* The connection is gone: free the protocol state (may be NULL if
	 * start never ran). */
	void (*free)(struct tlsconn *c);
};

struct tlsserver_config {
	const char *host; /* numeric address to listen on */
	int port;	  /* 0: any free port */
	unsigned max_conns;
	unsigned max_per_source; /* connections from one peer address (0: no cap) */
	unsigned handshake_ms;	 /* from accept to the end of the handshake */
	const char *name;	 /* log events <name>_conn_closed, ... (static) */
	const char *open_state;	 /* the open state in logs (static; NULL: "open") */
	int log_refused;	 /* log <name>_conn_refused (WARN) at max_conns */
};

/* Starts listening. Copies cfg (except host, used during the call);
 * borrows ops (static) and owner; takes a reference to tls. 0, *out and
 * *port (the bound port), or a libuv error (nothing to stop). */
int tlsserver_start(uv_loop_t *loop, const struct tlsserver_config *cfg,
		    const struct tlsserver_ops *ops, struct mtls_ctx *tls, void *owner,
		    struct tlsserver **out, int *port) __attribute__((warn_unused_result));
/* Closes the listener and every connection; `stopped(owner)` (may be
 * NULL) runs once all is closed and freed. NULL: no-op. */
void tlsserver_stop(struct tlsserver *s, void (*stopped)(void *owner));
/* New connections use `tls` (a reference is taken); open ones keep theirs. */
void tlsserver_set_tls(struct tlsserver *s, struct mtls_ctx *tls);
unsigned tlsserver_conns(const struct tlsserver *s);

/* ---- for the protocol, on its connection */

void *tlsconn_owner(const struct tlsconn *c);
void tlsconn_set_data(struct tlsconn *c, void *data);
void *tlsconn_data(const struct tlsconn *c);
/* "ip:port" ("[ip]:port" for IPv6; an IPv4-mapped peer is its IPv4
 * address), "unknown" if the socket has no peer address. */
const char *tlsconn_peer(const struct tlsconn *c);
const char *tlsconn_ip(const struct tlsconn *c); /* without the port; "" if unknown */
struct mtls_conn *tlsconn_tls(struct tlsconn *c);
/* Plaintext for the peer, encrypted at once. 0 or -EPROTO. */
int tlsconn_write(struct tlsconn *c, const uint8_t *data, size_t len)
	__attribute__((warn_unused_result));
/* How much more output may be queued before the high-water mark. */
size_t tlsconn_room(const struct tlsconn *c);
/* The connection's write high-water mark (TLSSERVER_WRITE_HIGH at accept):
 * smaller for a peer not yet trusted, so one that never reads costs
 * little. */
void tlsconn_set_write_high(struct tlsconn *c, size_t bytes);
/* The flush of an HTTP/2 protocol: moves h2's output into TLS while
 * there is room. 0 or -EPROTO. */
int tlsconn_flush_h2(struct tlsconn *c, struct nghttp2_session *h2)
	__attribute__((warn_unused_result));
/* (Re)arms the connection's one timer: close with `reason` (static) after
 * ms; with `idle`, every read restarts it. Replaces the handshake timer. */
void tlsconn_set_timeout(struct tlsconn *c, unsigned ms, int idle, const char *reason);
/* Runs the driver: for output queued outside of ops->input. */
void tlsconn_advance(struct tlsconn *c);
/* Runs the driver soon (a 0 ms timer), not now: for output queued where
 * nothing may be written or closed yet (e.g. inside a walk of a list the
 * driver could change). No-op while closing. */
void tlsconn_kick(struct tlsconn *c);
/* Closes the connection (idempotent); ops->free runs later. */
void tlsconn_close(struct tlsconn *c, const char *reason);
int tlsconn_closing(const struct tlsconn *c);

#endif
