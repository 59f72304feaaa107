/* grpc: the gRPC server of cinch-control on one libuv loop: TCP, TLS 1.3
 * (tls.h) and HTTP/2 (nghttp2 server sessions), serving the unary method
 * /cinch.v1.Identity/Sign (sign.h) with standard gRPC framing: a 5-byte
 * prefix (compressed flag, big-endian length), content-type
 * application/grpc, HTTP 200 and grpc-status/grpc-message trailers
 * (gRPC's doc/PROTOCOL-HTTP2.md).
 *
 * Limits, so a slow or hostile client cannot stall others:
 *   max_msg        a message declaring more -> RESOURCE_EXHAUSTED at once
 *   max_streams    SETTINGS_MAX_CONCURRENT_STREAMS per connection
 *   max_conns      further connections are closed on accept
 *   handshake_ms   a TLS handshake must finish within it
 *   idle_ms        a connection with no bytes received for that long closes
 *   write backlog  above GRPC_WRITE_HIGH bytes queued to the socket, the
 *                  connection stops reading until the peer drains it
 *
 * The server owns its connections; grpc_server_stop() closes everything
 * and the memory goes in close callbacks (run the loop afterwards). */
#ifndef CINCH_CONTROL_GRPC_H
#define CINCH_CONTROL_GRPC_H

#include <stddef.h>
#include <uv.h>

#include "api/sign.h"
#include "api/tls.h"

#define GRPC_DEFAULT_PORT 15012
#define GRPC_MAX_MSG_DEFAULT (64 * 1024)
#define GRPC_MAX_STREAMS_DEFAULT 64
#define GRPC_MAX_CONNS_DEFAULT 4096
#define GRPC_HANDSHAKE_MS_DEFAULT 10000
#define GRPC_IDLE_MS_DEFAULT 120000
#define GRPC_WRITE_HIGH (256 * 1024)

struct grpc_config {
	const char *host; /* numeric address to listen on */
	int port;	  /* 0: any free port */
	size_t max_msg;
	unsigned max_streams, max_conns;
	unsigned handshake_ms, idle_ms;
};

struct grpc_server;

/* Starts listening. Borrows cfg (copied) and svc (must outlive the server);
 * takes a reference to tls. 0, *out and *port (the bound port) or -errno. */
int grpc_server_start(uv_loop_t *loop, const struct grpc_config *cfg, struct tls_ctx *tls,
		      struct sign_service *svc, struct grpc_server **out, int *port)
	__attribute__((warn_unused_result));
void grpc_server_stop(struct grpc_server *srv);
/* New connections use `tls` (a reference is taken); open ones keep theirs. */
void grpc_server_set_tls(struct grpc_server *srv, struct tls_ctx *tls);
/* Connections currently open (for logs and tests). */
unsigned grpc_server_conns(const struct grpc_server *srv);

#endif
