/* grpcc: gRPC calls over h2c (HTTP/2 + TLS), for the agent's calls to
 * cinch-control: unary (Identity.Sign, Config.Report) and server streaming
 * (Config.Watch). Messages are opaque bytes here; callers pack and unpack
 * them with protobuf-c.
 *
 * The wire format is gRPC's own (PROTOCOL-HTTP2.md): POST to
 * /<package>.<Service>/<Method>, content-type application/grpc, te:
 * trailers, grpc-timeout; each message framed by a compressed flag (we send
 * and accept only 0: no compression is negotiated) and a 32-bit big-endian
 * length; the status comes in the grpc-status and grpc-message trailers
 * (or in the headers of a trailers-only answer). A message longer than the
 * caller's limit ends the call with RESOURCE_EXHAUSTED instead of being
 * buffered.
 *
 * A call lives from grpcc_call() returning 0 until its done callback
 * returns; done runs exactly once, and no msg callback after it. */
#ifndef CINCH_GRPCC_H
#define CINCH_GRPCC_H

#include <stddef.h>
#include <stdint.h>

#include "h2c.h"

/* The gRPC status codes (grpc/doc/statuscodes.md). */
enum grpc_code {
	GRPC_OK = 0,
	GRPC_CANCELLED = 1,
	GRPC_UNKNOWN = 2,
	GRPC_INVALID_ARGUMENT = 3,
	GRPC_DEADLINE_EXCEEDED = 4,
	GRPC_NOT_FOUND = 5,
	GRPC_ALREADY_EXISTS = 6,
	GRPC_PERMISSION_DENIED = 7,
	GRPC_RESOURCE_EXHAUSTED = 8,
	GRPC_FAILED_PRECONDITION = 9,
	GRPC_ABORTED = 10,
	GRPC_OUT_OF_RANGE = 11,
	GRPC_UNIMPLEMENTED = 12,
	GRPC_INTERNAL = 13,
	GRPC_UNAVAILABLE = 14,
	GRPC_DATA_LOSS = 15,
	GRPC_UNAUTHENTICATED = 16,
};

/* "OK", "UNAVAILABLE", ...; "UNKNOWN" for codes outside the table. */
const char *grpc_code_name(int code);

struct grpcc_call;

/* One response message, borrowed for the call. Return 0, or a negative
 * errno to cancel the call (done then reports CANCELLED). */
typedef int (*grpcc_msg_cb)(void *arg, const uint8_t *msg, size_t len);
/* The server answered as gRPC (response headers with content-type
 * application/grpc): for a stream, it is open now, before any message. */
typedef void (*grpcc_open_cb)(void *arg);
/* The end: the gRPC status (transport failures map to UNAVAILABLE or
 * DEADLINE_EXCEEDED, as gRPC clients do) and its message, borrowed. */
typedef void (*grpcc_done_cb)(void *arg, int code, const char *message);

struct grpcc_opts {
	const char *base_url;   /* "https://host:port" */
	const char *method;     /* "/cinch.v1.Identity/Sign" */
	const uint8_t *request; /* one request message, copied */
	size_t request_len;
	long timeout_ms;        /* 0: none (watch streams) */
	size_t max_message;     /* largest response message accepted */
	grpcc_msg_cb on_message;
	grpcc_open_cb on_open;  /* optional: at most once, before any message */
	grpcc_done_cb on_done;
	void *arg;
};

/* Starts a call on `h` with `creds` (borrowed). 0 and *out (optional), or
 * -EINVAL / -ENOMEM / h2c's errors, and then no callback runs. */
int grpcc_call(struct h2c *h, struct mtls_ctx *creds, const struct grpcc_opts *o,
	       struct grpcc_call **out) __attribute__((warn_unused_result));

/* Cancels now: done(CANCELLED) runs before this returns. Not from inside
 * the call's own callbacks (return an errno from on_message instead). */
void grpcc_cancel(struct grpcc_call *c);

#endif
