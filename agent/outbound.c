/* outbound: the app's redirected connection (proxy.h), on its session
 * (session.h): its original destination decides (outbound_begin), then
 * CONNECT -> [meshed: UP_HANDSHAKE, TLS 1.3 as a client expecting exactly
 * the destination's SPIFFE ID] -> RELAY. Between agents the server's
 * first bytes are its verdict frame (verdict.h): pump.c takes it off the
 * stream (session.head), so an allow costs no round trip. */
#include <stdlib.h>
#include <string.h>

#include "session.h"
#include "xprt_tls.h"

/* The one outbound step: original destination -> peer (a meshed
 * workload: its identity and the policy's verdict) or egress decision
 * (not meshed: plaintext only when an EgressPolicy allows it) -> dial. */
void outbound_begin(struct session *s)
{
	const struct sockaddr *dst = (const struct sockaddr *)&s->dst;
	const char *peer = policy_slice_peer(s->slice, dst, s->port, &s->d);
	struct mtls_conn *t = NULL;

	if (peer) {
		if (!(s->peer_id = strdup(peer))) {
			session_finalize(s, CONN_ER_NO_MEMORY, NULL, "out of memory");
			return;
		}
		if (s->d.verdict == POLICY_DENY) {
			session_finalize(s, CONN_ER_DENIED, "denied", NULL);
			return;
		}
		if (mtls_conn_new_client(s->tls, peer, &t) < 0) {
			session_finalize(s, CONN_ER_NO_MEMORY, NULL, "out of memory");
			return;
		}
	} else {
		policy_slice_decide_egress(s->slice, dst, s->port, &s->d);
		if (s->d.verdict == POLICY_DENY) {
			session_finalize(s, CONN_ER_DENIED, "denied", NULL);
			return;
		}
	}
	session_dial(s, t);
}

/* The destination is up: connected (plain), or its handshake done (the
 * identity checked in it). */
void outbound_up_open(struct session *s)
{
	struct mtls_conn *t = xprt_tls_get(&s->up);

	if (t) {
		s->hs_s = (double)(uv_hrtime() - s->t_hs) / 1e9;
		s->tls_version = mtls_conn_version(t);
		s->cipher = mtls_conn_cipher(t);
		s->head = mtls_conn_agent_peer(t) != 0;
	}
	pump_start(s);
}
