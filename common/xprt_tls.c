/* xprt_tls: see xprt_tls.h. Each operation is the mtls_conn one. */
#include "xprt_tls.h"

#include <string.h>

static int xprt_tls_handshake(struct conn *c, enum conn_reason *reason)
{
	const char *why = NULL;
	int r = mtls_conn_handshake(c->xprt_ctx, &why);

	if (r >= 0)
		return r == MTLS_HS_DONE;
	c->why = why;
	*reason = strcmp(mtls_conn_failure_cause(c->xprt_ctx), "peer_identity_mismatch") == 0
			  ? CONN_ER_PEER_IDENTITY_MISMATCH
			  : CONN_ER_HANDSHAKE_FAILED;
	return r;
}

static int xprt_tls_recv(struct conn *c, const uint8_t *data, size_t len)
{
	return mtls_conn_feed(c->xprt_ctx, data, len);
}

static int xprt_tls_read(struct conn *c, uint8_t *buf, size_t len)
{
	return mtls_conn_read(c->xprt_ctx, buf, len);
}

static int xprt_tls_send(struct conn *c, const uint8_t *data, size_t len)
{
	return mtls_conn_write(c->xprt_ctx, data, len);
}

static void xprt_tls_shutdown(struct conn *c)
{
	mtls_conn_shutdown(c->xprt_ctx);
}

static size_t xprt_tls_peek(struct conn *c, const uint8_t **data)
{
	return mtls_conn_peek_out(c->xprt_ctx, data);
}

static void xprt_tls_consume(struct conn *c, size_t n)
{
	mtls_conn_consume_out(c->xprt_ctx, n);
}

static void xprt_tls_free(void *ctx)
{
	mtls_conn_free(ctx);
}

const struct conn_xprt_ops xprt_tls_ops = {
	.name = "tls",
	.handshake = xprt_tls_handshake,
	.recv = xprt_tls_recv,
	.read = xprt_tls_read,
	.send = xprt_tls_send,
	.shutdown = xprt_tls_shutdown,
	.peek = xprt_tls_peek,
	.consume = xprt_tls_consume,
	.free = xprt_tls_free,
};
