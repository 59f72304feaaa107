/* ctlsock: the local admin channel of cinch-control (token creation, the
 * bundle, the mesh status).
 *
 * A Unix stream socket at <state>/admin.sock, mode 0600 inside the 0700
 * state directory, so only root (or the daemon's own user) can connect;
 * the peer's uid is checked again with SO_PEERCRED (root or the daemon's
 * euid, else {"error"} and closed), so a socket or directory mode loosened
 * by hand lets no one else in. At most CTLSOCK_MAX_CONNS connections at
 * once (more are closed at accept: a runaway local client cannot take the
 * daemon's descriptors from the agents' gRPC port). The protocol is one
 * JSON object per connection each way, a line of at most 4 KiB:
 *
 *   -> {"op": "token_create", "identity": "ns/sa", "ttl": 600}
 *   <- {"token": "...", "identity": "spiffe://...", "expires_at": N}
 *      or {"error": "why"}
 *   -> {"op": "bundle"}   <- {"pem", "spiffe", "sequence", "trust_domain"}
 *   -> {"op": "status"}   <- {"version": "<generation>", "workloads": [...]}
 *      (one object per workload, see hub_status in mesh/hub.h)
 *
 * The request is handed to the owner's callback; this module owns only the
 * socket and its connections (each with a 5 s deadline). */
#ifndef CINCH_CONTROL_CTLSOCK_H
#define CINCH_CONTROL_CTLSOCK_H

#include <jansson.h>
#include <uv.h>

#define CTLSOCK_MAX_REQ	  4096
#define CTLSOCK_MAX_CONNS 32

/* Answers one request: returns a new JSON object (the reply). Borrows req. */
typedef json_t *(*ctlsock_handler_cb)(void *ud, const json_t *req, unsigned peer_uid);

struct ctlsock;

/* Binds `path` (an existing stale socket is replaced) and starts listening.
 * 0 and *out or -errno. */
int ctlsock_start(uv_loop_t *loop, const char *path, ctlsock_handler_cb cb, void *ud,
		  struct ctlsock **out) __attribute__((warn_unused_result));
/* Closes the listener and every connection; memory goes in close callbacks,
 * so run the loop afterwards. NULL is a no-op. */
void ctlsock_stop(struct ctlsock *cs);

#endif
