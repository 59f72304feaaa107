/* inbound: a redirected connection to the pod (proxy.h), on its session
 * (session.h): WAIT (proxy.c's budget) -> PEEK -> [TLS: HANDSHAKE] ->
 * decide -> CONNECT to the app at the original destination -> RELAY.
 *
 * The first bytes say TLS (a handshake record: the down end becomes a
 * TLS server, conn_upgrade) or plaintext (refused in STRICT, else kept to
 * be sent to the app first and decided by address). Between agents (they
 * negotiated VERDICT_ALPN, verdict.h) the caller is told the decision in
 * the first bytes of the stream: two bytes on an allow, the reason on a
 * refusal (inbound_tell_refusal). */
#include <stdlib.h>
#include <string.h>

#include "session.h"
#include "xprt_tls.h"

void inbound_begin(struct session *s)
{
	s->state = SESSION_ST_PEEK;
	conn_read_start(&s->down);
}

/* Refused, the caller an agent: the reason goes to it before the
 * connection closes. It never waits: the frame and close_notify are a
 * few hundred bytes for a socket whose send buffer is empty after the
 * handshake; what does not go at once is dropped (the caller then sees a
 * plain close, as from an agent without the frame), and the session
 * ends as denied whatever happened to them. */
static void inbound_tell_refusal(struct session *s, struct mtls_conn *t)
{
	uint8_t frame[2 + VERDICT_MAX], out[4096];
	int n = verdict_encode_refusal(frame, sizeof(frame), VERDICT_POLICY_DENY, s->d.reason,
				       s->port);
	size_t len;

	if (n < 0 || mtls_conn_write(t, frame, (size_t)n) < 0)
		return;
	mtls_conn_shutdown(t);
	while ((len = mtls_conn_take_out(t, out, sizeof(out))) > 0) {
		uv_buf_t b = uv_buf_init((char *)out, (unsigned)len);
		if (uv_try_write(&s->down.h.stream, &b, 1) != (int)len)
			return;
	}
}

/* After the TLS handshake or for plaintext: the policy, then the app. */
static void inbound_decide(struct session *s)
{
	struct mtls_conn *t = xprt_tls_get(&s->down);
	const char *id = t ? mtls_conn_peer_id(t) : NULL;

	proxy_unfinished_end(s);
	if (id && !(s->peer_id = strdup(id))) {
		session_finalize(s, CONN_ER_NO_MEMORY, NULL, "out of memory");
		return;
	}
	policy_slice_decide_inbound(s->slice, id, (struct sockaddr *)&s->src, s->port, &s->d);
	int agent = t && mtls_conn_agent_peer(t);
	if (s->d.verdict == POLICY_DENY) {
		if (agent)
			inbound_tell_refusal(s, t);
		session_finalize(s, CONN_ER_DENIED, "denied", NULL);
		return;
	}
	/* A write error ends the session at once, with its reason. */
	if (agent && conn_write(&s->down, verdict_allow, sizeof(verdict_allow)) < 0)
		return;
	session_dial(s, NULL);
}

int inbound_peek(struct session *s, const uint8_t *data, size_t n)
{
	struct proxy *p = s->p;
	struct mtls_conn *t;

	if (data[0] == 0x16) { /* a TLS handshake record */
		if (mtls_conn_new_server(s->tls, &t) < 0) {
			session_finalize(s, CONN_ER_NO_MEMORY, NULL, "out of memory");
			return -1;
		}
		s->state = SESSION_ST_HANDSHAKE;
		s->t_hs = uv_hrtime();
		if (conn_upgrade(&s->down, &xprt_tls_ops, t, data, n) < 0)
			return -1;
		return conn_closing(&s->down) ? -1 : 0;
	}
	if (p->cfg.force_strict || policy_slice_mtls(s->slice) == POLICY_MTLS_STRICT) {
		session_finalize(s, CONN_ER_DENIED, "denied",
				 "plaintext refused: mTLS mode is STRICT");
		return -1;
	}
	if (!(s->plain = malloc(n))) {
		session_finalize(s, CONN_ER_NO_MEMORY, NULL, "out of memory");
		return -1;
	}
	memcpy(s->plain, data, n);
	s->plain_len = n;
	conn_read_stop(&s->down);
	inbound_decide(s);
	return conn_closing(&s->down) ? -1 : 0;
}

void inbound_tls_done(struct session *s)
{
	struct mtls_conn *t = xprt_tls_get(&s->down);

	conn_read_stop(&s->down); /* what follows waits for the relay */
	s->hs_s = (double)(uv_hrtime() - s->t_hs) / 1e9;
	s->tls_version = mtls_conn_version(t);
	s->cipher = mtls_conn_cipher(t);
	inbound_decide(s);
}
