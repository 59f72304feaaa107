/* outbound: the app's redirected connection (proxy.h), on its session
 * (session.h): its original destination decides (outbound_begin), then
 * CONNECT -> [meshed: UP_HANDSHAKE, TLS 1.3 as a client expecting exactly
 * the destination's SPIFFE ID] -> RELAY. Between agents the server's
 * first bytes are its verdict frame (verdict.h): pump.c takes it off the
 * stream (session.head), so an allow costs no round trip.
 *
 * A call to a Service's virtual IP (policy_slice_service) becomes, in
 * outbound_begin and nowhere else, a call to the endpoint svcpick chooses
 * (its address of the virtual IP's family, the target port, the
 * endpoint's identity pinned): from there on it is the same as a call to
 * that address and port (its policy, its egress rules when outside the
 * mesh). Its outcome feeds svcpick: the connect+handshake latency when up
 * opens, a failure when up ends in CONNECT or UP_HANDSHAKE (no app byte
 * has moved: the app's end is not read before the relay). A failed
 * endpoint is retried on another, at most OUTBOUND_SVC_TRIES endpoints a
 * call, on a fresh up end once the old one has closed (session.h). How
 * the call ends:
 *   - no endpoint to choose at first (svcpick's reason), or the chosen
 *     endpoint's identity not its address's workload's: a refusal
 *     (CONN_ER_DENIED: cinch_agent_denials_total, verdict deny);
 *   - every try failed (the bound, or no endpoint left untried): a
 *     connection error with the last failure's reason (verdict the
 *     policy's; cinch_agent_connection_errors_total);
 *   - a try that failed and was retried is not an end: it is logged
 *     (service_endpoint_failed) and reported to svcpick. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "session.h"
#include "xprt_tls.h"

/* The endpoint's address of the virtual IP's family (else its first),
 * with the target port. */
static void outbound_svc_dst(const struct policy_endpoint *e, const struct sockaddr_storage *vip,
			     uint16_t port, struct sockaddr_storage *out)
{
	size_t k = 0;

	for (size_t i = 0; i < e->n_addrs; i++)
		if (e->addrs[i].ss_family == vip->ss_family) {
			k = i;
			break;
		}
	*out = e->addrs[k];
	if (out->ss_family == AF_INET)
		((struct sockaddr_in *)out)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)out)->sin6_port = htons(port);
}

/* A call to a virtual IP: an endpoint becomes s->dst (and s->port). 0: go
 * on (also when dst is no virtual IP); -1: the session was finalized. The
 * refusal reasons are static text (the denial counters keep the pointer). */
static int outbound_service(struct session *s)
{
	struct proxy *p = s->p;
	struct session_svc *v = s->svc;
	const struct policy_service *sv;
	struct policy_decision d;
	struct svcpick_ep *st;
	size_t port_index, ep;

	if (!v) {
		sv = policy_slice_service(s->slice, (struct sockaddr *)&s->dst, s->port,
					  &port_index);
		if (!sv)
			return 0;
		if (!(v = s->svc = calloc(1, sizeof(*v)))) {
			session_finalize(s, CONN_ER_NO_MEMORY, NULL, "out of memory");
			return -1;
		}
		v->vip = s->dst;
		v->vport = s->port;
		snprintf(v->key, sizeof(v->key), "%s", sv->key);
	} else if (!(sv = policy_slice_service(s->slice, (struct sockaddr *)&v->vip, v->vport,
					       &port_index))) {
		/* a policy change in between took the Service away */
		session_finalize(s, CONN_ER_DENIED, "denied",
				 "no longer a Service this workload may call");
		return -1;
	}
	enum svcpick_why why = svcpick_choose(p->pick, sv, port_index, uv_now(p->loop), v->tried,
					      v->n_tried, &ep, &st);
	if (why != SVCPICK_OK) {
		if (v->n_tried) /* every endpoint this call could try failed */
			session_finalize(s, v->last_error, NULL, svcpick_why_text(why));
		else
			session_finalize(s, CONN_ER_DENIED, "denied", svcpick_why_text(why));
		return -1;
	}
	const struct policy_endpoint *e = &sv->eps[ep];
	v->tried[v->n_tried++] = st;
	v->open = 1;
	v->t_try = uv_hrtime();
	s->port = (uint16_t)e->target_ports[port_index];
	outbound_svc_dst(e, &v->vip, s->port, &s->dst);
	proxy_addr_str(&s->dst, v->endpoint, sizeof(v->endpoint));
	/* The identity the slice names for this endpoint is the one pinned:
	 * it must be the peer's that its address is (one workload, one ID). */
	const char *peer = policy_slice_peer(s->slice, (struct sockaddr *)&s->dst, s->port, &d);
	if (e->spiffe_id[0] ? !peer || strcmp(peer, e->spiffe_id) : peer != NULL) {
		session_finalize(s, CONN_ER_DENIED, "denied",
				 "the endpoint's identity is not its workload's");
		return -1;
	}
	return 0;
}

/* The reasons a Service call's endpoint failed for, before the relay:
 * another endpoint may do (not: the agent's own memory, a refusal). */
static int outbound_svc_retryable(enum conn_reason r)
{
	switch (r) {
	case CONN_ER_CONNECT_REFUSED:
	case CONN_ER_CONNECT_TIMEOUT:
	case CONN_ER_HANDSHAKE_FAILED:
	case CONN_ER_HANDSHAKE_TIMEOUT:
	case CONN_ER_PEER_IDENTITY_MISMATCH:
	case CONN_ER_TLS_ERROR:
	case CONN_ER_RESET:
	case CONN_ER_WRITE_ERROR:
		return 1;
	default:
		return 0;
	}
}

int outbound_up_failed(struct session *s, enum conn_reason reason)
{
	struct session_svc *v = s->svc;

	if ((s->state != SESSION_ST_CONNECT && s->state != SESSION_ST_UP_HANDSHAKE) || !v->open ||
	    !outbound_svc_retryable(reason))
		return 0;
	svcpick_done(v->tried[v->n_tried - 1], 0, 0, uv_now(s->p->loop));
	v->open = 0;
	v->last_error = reason;
	log_event(LOG_LVL_WARN, "service_endpoint_failed",
		  log_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "src", s->src_s, "service", v->key,
			   "endpoint", v->endpoint, "error", conn_reason_name(reason), "why",
			   s->up.why ? s->up.why : "", "try", (int)v->n_tried));
	if (v->n_tried >= OUTBOUND_SVC_TRIES)
		return 0;
	s->redial = 1;
	uv_timer_stop(&s->timer); /* session_dial arms it again */
	return 1;
}

void outbound_redial(struct session *s)
{
	/* what the failed attempt left: the next one starts from the VIP */
	free(s->peer_id);
	s->peer_id = NULL;
	s->hs_s = -1;
	s->hs_failure = NULL;
	s->state = SESSION_ST_CONNECT;
	s->dst = s->svc->vip;
	s->port = s->svc->vport;
	outbound_begin(s);
}

void outbound_svc_free(struct session *s)
{
	struct session_svc *v = s->svc;

	if (!v)
		return;
	for (unsigned i = 0; i < v->n_tried; i++)
		svcpick_put(v->tried[i], i + 1 == v->n_tried && v->open);
	free(v);
	s->svc = NULL;
}

/* The one outbound step: original destination -> peer (a meshed
 * workload: its identity and the policy's verdict) or egress decision
 * (not meshed: plaintext only when an EgressPolicy allows it) -> dial. */
void outbound_begin(struct session *s)
{
	const struct sockaddr *dst = (const struct sockaddr *)&s->dst;
	struct mtls_conn *t = NULL;

	if (outbound_service(s) < 0)
		return;
	const char *peer = policy_slice_peer(s->slice, dst, s->port, &s->d);
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
	struct session_svc *v = s->svc;

	if (v) /* the endpoint is healthy: its connect+handshake latency */
		svcpick_done(v->tried[v->n_tried - 1], 1, (uv_hrtime() - v->t_try) / 1000,
			     uv_now(s->p->loop));
	if (t) {
		s->hs_s = (double)(uv_hrtime() - s->t_hs) / 1e9;
		s->tls_version = mtls_conn_version(t);
		s->cipher = mtls_conn_cipher(t);
		s->head = mtls_conn_agent_peer(t) != 0;
	}
	pump_start(s);
}
