/* grpc: the gRPC server of cinch-control on one libuv loop: TCP and TLS 1.3
 * (tlsserver.h) and HTTP/2 (nghttp2 server sessions), serving the unary method
 * /cinch.v1.Identity/Sign (sign.h) and, when a Config service is given,
 * /cinch.v1.Config/Watch (server streaming) and /cinch.v1.Config/Report
 * (config_svc.h), with standard gRPC framing: a 5-byte
 * prefix (compressed flag, big-endian length), content-type
 * application/grpc, HTTP 200 and grpc-status/grpc-message trailers
 * (gRPC's doc/PROTOCOL-HTTP2.md).
 *
 * Limits, so a slow or hostile client cannot stall others:
 *   max_msg        a message declaring more -> RESOURCE_EXHAUSTED at once
 *   max_streams    SETTINGS_MAX_CONCURRENT_STREAMS per connection
 *   max_conns      further connections are closed on accept
 *   max_per_source connections from one address (more are closed on accept)
 *   max_buffered   request bytes held by the whole server (bytebudget.h), half
 *                  for untrusted connections and half for trusted ones, so
 *                  a flood of strangers cannot starve the agents; a stream
 *                  whose body would go beyond its half is refused with
 *                  RESOURCE_EXHAUSTED ("server busy") and reset
 *   handshake_ms   a TLS handshake must finish within it
 *   idle_ms        a connection with no bytes received for that long closes,
 *                  unless a call on it streams: then it is PINGed, and closed
 *                  only if the peer does not answer within another idle_ms
 *   max_queue      bytes of response messages queued on one call; a call
 *                  (a Watch of a slow agent) that would exceed it ends with
 *                  RESOURCE_EXHAUSTED instead of growing
 *   write backlog  above TLSSERVER_WRITE_HIGH bytes queued to the socket, the
 *                  connection stops reading until the peer drains it
 *
 * Until a connection is trusted it gets little: anyone on the network can
 * open one. Trusted means the TLS handshake verified a client certificate,
 * or a call on the connection succeeded (a Sign with a join or Kubernetes
 * token: the agent that has no certificate yet). Before that the connection
 * is sized for one Sign request: GRPC_PREAUTH_STREAMS concurrent streams,
 * messages up to GRPC_PREAUTH_MSG, stream flow-control windows of just that
 * much and a write backlog of GRPC_PREAUTH_WRITE_HIGH; once trusted, a new
 * SETTINGS frame gives it max_streams and windows for max_msg.
 *
 * Flow control holds what is buffered: a stream's window is opened again
 * only as far as its bytes are handed on (a request is buffered until the
 * client ends its half, so a stream never holds more than its initial
 * window); the connection's window is opened as bytes arrive, the stream
 * windows and the budget bound the rest. A peer that sends beyond a window
 * is cut off by nghttp2 (FLOW_CONTROL_ERROR).
 *
 * The server owns its connections; grpc_server_stop() closes everything
 * and the memory goes in close callbacks (run the loop afterwards). */
#ifndef CINCH_CONTROL_GRPC_H
#define CINCH_CONTROL_GRPC_H

#include <stddef.h>
#include <uv.h>

#include "api/sign.h"
#include "mtls.h"

#define GRPC_DEFAULT_PORT	    15012
#define GRPC_MAX_MSG_DEFAULT	    (64 * 1024)
#define GRPC_MAX_STREAMS_DEFAULT    64
#define GRPC_MAX_CONNS_DEFAULT	    4096
#define GRPC_HANDSHAKE_MS_DEFAULT   10000
#define GRPC_IDLE_MS_DEFAULT	    120000
#define GRPC_MAX_QUEUE_DEFAULT	    (1024 * 1024)
#define GRPC_MAX_PER_SOURCE_DEFAULT 64
#define GRPC_MAX_BUFFERED_DEFAULT   (32u << 20)
/* An untrusted connection: one Sign (a CSR, up to RSA 4096, and a
 * token: a projected service-account token is 1-2 KiB) fits easily. */
#define GRPC_PREAUTH_STREAMS	1
#define GRPC_PREAUTH_MSG	(8 * 1024)
#define GRPC_PREAUTH_WRITE_HIGH (16 * 1024)

struct config_service;

struct grpc_config {
	const char *host; /* numeric address to listen on */
	int port;	  /* 0: any free port */
	size_t max_msg, max_queue, max_buffered;
	unsigned max_streams, max_conns, max_per_source;
	unsigned handshake_ms, idle_ms;
	struct config_service *config; /* borrowed; NULL: Config is UNIMPLEMENTED */
};

struct grpc_server;

/* ---- what a service sees of one call (one HTTP/2 stream)
 *
 * A method handler gets the call and the request message. It queues
 * response messages with gcall_send and ends the call with gcall_finish,
 * either before it returns (unary) or later (a stream). Neither writes to
 * the socket: the connection's loop does, so both may be called from any
 * callback of the loop, also inside a walk the service must not disturb.
 *
 * A call that outlives its handler registers gcall_on_close: the callback
 * runs once when the stream goes away for any reason (finished and sent,
 * reset by the client, connection closed, server stopped); the call must
 * not be used after it. */
struct gcall;

typedef void (*gcall_close_cb)(void *arg);

/* The TLS peer of a call, borrowed while the call lives. */
struct gcall_peer {
	X509 *cert; /* verified client certificate, or NULL */
	STACK_OF(X509) * chain;
	const char *addr;	       /* "ip:port", for logs */
	const char *ip;		       /* textual address without the port ("" if unknown) */
	struct auth_peer_cache *cache; /* the connection's */
};

void gcall_peer(const struct gcall *call, struct gcall_peer *out);
/* Queues one message (copied, framed). 0; -EPIPE when the call is finished
 * or closing; -ENOBUFS when the queue bound is exceeded (the call is then
 * finished with RESOURCE_EXHAUSTED); -ENOMEM. */
int gcall_send(struct gcall *call, const uint8_t *msg, size_t len)
	__attribute__((warn_unused_result));
/* Ends the call with a gRPC status (msg borrowed; copied) after the queued
 * messages. Later calls are ignored. */
void gcall_finish(struct gcall *call, int code, const char *msg);
void gcall_on_close(struct gcall *call, gcall_close_cb cb, void *arg);

/* Starts listening. Borrows cfg (copied) and svc (must outlive the server);
 * takes a reference to tls. 0, *out and *port (the bound port) or -errno. */
int grpc_server_start(uv_loop_t *loop, const struct grpc_config *cfg, struct mtls_ctx *tls,
		      struct sign_service *svc, struct grpc_server **out, int *port)
	__attribute__((warn_unused_result));
void grpc_server_stop(struct grpc_server *srv);
/* New connections use `tls` (a reference is taken); open ones keep theirs. */
void grpc_server_set_tls(struct grpc_server *srv, struct mtls_ctx *tls);
/* Connections currently open (for logs and tests). */
unsigned grpc_server_conns(const struct grpc_server *srv);

#endif
