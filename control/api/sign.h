/* sign: the cinch.v1.Identity/Sign service, independent of the transport.
 *
 * grpc.c hands it one decoded gRPC message (a serialized SignRequest) and
 * the TLS peer; it answers with a gRPC status, a message for the caller and,
 * on success, a serialized SignResponse. Order of checks (cheapest first,
 * and nothing consumed before the request is known to be good):
 *   1. protobuf decoding, requested_spiffe_id syntax     INVALID_ARGUMENT
 *   2. CSR parse, signature, key policy                  INVALID_ARGUMENT
 *   3. the CA can sign (not expired)                     UNAVAILABLE
 *   4. authentication via an authenticator (auth.h)      UNAUTHENTICATED /
 *                                                        PERMISSION_DENIED
 *   5. signing with the identity from step 4 only
 * Every outcome writes one audit line (event svid_issued or sign_refused)
 * and counts in the metrics. Never logs tokens or keys.
 *
 * Step 4 may have to wait (a Kubernetes token is reviewed by the API
 * server): sign_start() then returns SIGN_PENDING and finishes steps 4-5
 * from the loop, handing the answer to the caller's callback. sign_call()
 * is the synchronous form, for transports that answer at once; through it
 * a Kubernetes token is refused. */
#ifndef CINCH_CONTROL_SIGN_H
#define CINCH_CONTROL_SIGN_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "api/auth.h"
#include "admin/metrics.h"

struct ca;

struct sign_service {
	const struct ca *ca;	   /* borrowed */
	struct authenticator join; /* the three ways in */
	struct authenticator renew;
	struct authenticator k8s;
	struct metrics *metrics; /* borrowed */
};

struct sign_peer {
	X509 *cert; /* verified client certificate or NULL (borrowed) */
	STACK_OF(X509) * chain;
	const char *addr;	       /* "ip:port", for the audit line */
	struct auth_peer_cache *cache; /* the connection's renewal cache */
};

/* Handles one call. Returns a grpc_status; *msg is a static message for
 * grpc-message; on GRPC_OK, *resp (*resp_len bytes) is a new buffer (free()). */
int sign_call(struct sign_service *svc, const struct sign_peer *peer, const uint8_t *req,
	      size_t len, uint8_t **resp, size_t *resp_len, const char **msg);

#define SIGN_PENDING (-EINPROGRESS)

struct sign_pending;

/* The late answer of sign_start: a grpc_status, `msg` for grpc-message
 * (borrowed for the call) and on GRPC_OK *resp (resp_len bytes, taken by
 * the callback: free()). */
typedef void (*sign_done_cb)(void *arg, int code, const char *msg, uint8_t *resp, size_t resp_len);

/* As sign_call, when the answer is known at once (done never runs). Or
 * SIGN_PENDING and *pending: `done` runs exactly once later from the loop
 * unless sign_cancel(*pending) runs first (the stream went away). `peer`
 * and `req` are borrowed for the call only (the address is copied). */
int sign_start(struct sign_service *svc, const struct sign_peer *peer, const uint8_t *req,
	       size_t len, uint8_t **resp, size_t *resp_len, const char **msg, sign_done_cb done,
	       void *arg, struct sign_pending **pending);
/* Drops a pending call: its callback does not run; nothing is signed. */
void sign_cancel(struct sign_pending *p);

/* Audits and counts a refusal decided before sign_call (transport limits). */
void sign_refuse_early(struct sign_service *svc, const struct sign_peer *peer, int code,
		       const char *msg, const char *reason);

#endif
