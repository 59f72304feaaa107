/* xprt_tls: the connection core's TLS transport (conn.h) over the mtls
 * engine: a conn whose xprt_ctx is a struct mtls_conn (taken: freed with
 * the conn). The handshake's failure becomes the reason
 * PEER_IDENTITY_MISMATCH (a valid certificate of another workload) or
 * HANDSHAKE_FAILED, with mtls's static text in c->why; the cause for the
 * handshake-failure metric stays mtls_conn_failure_cause(c->xprt_ctx)
 * until the conn is closed. The agent's and the control's TLS servers use
 * it alike. */
#ifndef CINCH_XPRT_TLS_H
#define CINCH_XPRT_TLS_H

#include "conn.h"
#include "mtls.h"

extern const struct conn_xprt_ops xprt_tls_ops;

/* The mtls_conn of a TLS conn, or NULL (plain, or closed). */
static inline struct mtls_conn *xprt_tls_get(const struct conn *c)
{
	return c->xprt == &xprt_tls_ops ? c->xprt_ctx : NULL;
}

#endif
