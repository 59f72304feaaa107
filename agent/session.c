/* session: see session.h. The callbacks of both conn ends come here and
 * go on to the module of the session's state; the timer's too. */
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xprt_tls.h"

static const char *const session_state_names[SESSION_ST__COUNT] = {
	[SESSION_ST_WAIT] = "wait",
	[SESSION_ST_PEEK] = "peek",
	[SESSION_ST_HANDSHAKE] = "handshake",
	[SESSION_ST_CONNECT] = "connect",
	[SESSION_ST_UP_HANDSHAKE] = "up_handshake",
	[SESSION_ST_RELAY] = "relay",
	[SESSION_ST_CLOSING] = "closing",
};

const char *session_state_name(enum session_state s)
{
	return (unsigned)s < SESSION_ST__COUNT ? session_state_names[s] : "unknown";
}

/* The access log's `end` of a reason (the words it had before the core:
 * dashboards and tests grep them). */
static const char *session_end_word(enum conn_reason r)
{
	switch (r) {
	case CONN_ER_CLOSED:
		return "closed";
	case CONN_ER_DENIED:
		return "denied";
	case CONN_ER_STOPPED:
		return "stopped";
	case CONN_ER_CONNECT_REFUSED:
		return "connect_failed";
	case CONN_ER_CONNECT_TIMEOUT:
	case CONN_ER_HANDSHAKE_TIMEOUT:
		return "timeout";
	case CONN_ER_HANDSHAKE_FAILED:
	case CONN_ER_PEER_IDENTITY_MISMATCH:
		return "handshake_failed";
	case CONN_ER_TLS_ERROR:
		return "tls_error";
	case CONN_ER_IDLE_TIMEOUT:
		return "idle";
	case CONN_ER_NO_MEMORY:
		return "refused";
	case CONN_ER_WRITE_ERROR:
		return "write_error";
	case CONN_ER_RESET:
	case CONN_ER_PROTOCOL:
	case CONN_ER_NONE:
	case CONN_ER__COUNT:
		break;
	}
	return "reset";
}

static void session_log(struct session *s)
{
	struct proxy *p = s->p;
	int error = conn_reason_is_error(s->reason);
	const char *reason = s->d.reason && *s->d.reason ? s->d.reason : "";

	/* An error's own words; a refusal's are the policy's (or the agent's,
	 * set into d by session_finalize). */
	if (error && s->why)
		reason = s->why;
	struct proxy_record r = {
		.direction = s->outbound ? "outbound" : "inbound",
		.src = s->src_s,
		.dst = s->dst_s,
		.local_id = s->tls ? mtls_ctx_spiffe_id(s->tls) : "",
		.peer_id = s->peer_id ? s->peer_id : "",
		.verdict = policy_verdict_name(s->d.verdict),
		.rule = s->d.rule ? s->d.rule : "",
		.reason = reason,
		.tls_version = s->relayed && s->tls_version ? s->tls_version : "",
		.cipher = s->relayed && s->cipher ? s->cipher : "",
		.bytes_out = s->bytes_out,
		.bytes_in = s->bytes_in,
		.duration_s = (double)(uv_hrtime() - s->t0) / 1e9,
		.end = s->end,
		.peer_refusal = s->refusal,
		.relayed = s->relayed,
		.handshake_s = s->hs_s,
		.handshake_failure = s->hs_failure,
		.error = error ? s->reason : CONN_ER_NONE,
		.denied = s->reason == CONN_ER_DENIED,
		.state = session_state_name(s->ended_in),
		.service = s->svc ? s->svc->key : "",
		.endpoint = s->svc ? s->svc->endpoint : "",
	};
	p->log(p->arg, &r);
}

/* One of the session's handles closed; the last frees it. */
static void session_put(struct session *s)
{
	struct proxy *p = s->p;

	if (--s->handles > 0)
		return;
	list_del(&s->link);
	proxy_uncount(s);
	mtls_conn_free(s->up_tls);
	mtls_ctx_unref(s->tls);
	policy_slice_unref(s->slice);
	free(s->plain);
	free(s->peer_id);
	free(s->refusal);
	verdict_rx_cleanup(&s->vrx);
	outbound_svc_free(s);
	free(s);
	proxy_unref(p);
}

static void session_timer_closed(uv_handle_t *h)
{
	session_put(((struct conn *)h->data)->owner);
}

void session_finalize(struct session *s, enum conn_reason reason, const char *end, const char *why)
{
	if (s->state == SESSION_ST_CLOSING)
		return;
	if (reason == CONN_ER_DENIED) {
		s->d.verdict = s->d.verdict == POLICY_ALLOW ? POLICY_DENY : s->d.verdict;
		if (why)
			s->d.reason = why;
	}
	if (s->state == SESSION_ST_HANDSHAKE || s->state == SESSION_ST_UP_HANDSHAKE) {
		struct mtls_conn *t =
			xprt_tls_get(s->state == SESSION_ST_HANDSHAKE ? &s->down : &s->up);
		if (reason == CONN_ER_HANDSHAKE_FAILED || reason == CONN_ER_PEER_IDENTITY_MISMATCH)
			s->hs_failure = t ? mtls_conn_failure_cause(t) : "protocol";
		else if (reason == CONN_ER_HANDSHAKE_TIMEOUT)
			s->hs_failure = "timeout";
		else if (reason == CONN_ER_RESET)
			s->hs_failure = "reset";
	}
	s->reason = reason;
	s->end = end ? end : session_end_word(reason);
	s->why = why;
	proxy_unfinished_end(s);
	s->ended_in = s->state;
	s->state = SESSION_ST_CLOSING;
	if (!s->probe)
		session_log(s);
	uv_timer_stop(&s->timer);
	uv_close((uv_handle_t *)&s->timer, session_timer_closed);
	conn_finalize(&s->down, reason);
	conn_finalize(&s->up, reason);
}

/* ---- the two ends' callbacks */

static void session_connected(struct conn *c)
{
	struct session *s = c->owner;

	if (c == &s->up && s->outbound && xprt_tls_get(c)) {
		s->state = SESSION_ST_UP_HANDSHAKE;
		s->t_hs = uv_hrtime();
		session_timer(s, s->p->cfg.handshake_ms, 0);
	}
}

static void session_open(struct conn *c)
{
	struct session *s = c->owner;

	if (c == &s->down) {
		if (s->state == SESSION_ST_HANDSHAKE)
			inbound_tls_done(s);
		return; /* the accepted plain socket: nothing to wait for */
	}
	if (s->outbound)
		outbound_up_open(s);
	else
		pump_start(s); /* the app answered */
}

static int session_data(struct conn *c, const uint8_t *data, size_t n)
{
	struct session *s = c->owner;

	if (s->state == SESSION_ST_RELAY)
		return pump_data(s, c, data, n);
	if (s->state == SESSION_ST_PEEK && c == &s->down)
		return inbound_peek(s, data, n);
	return 0;
}

static void session_eof(struct conn *c)
{
	struct session *s = c->owner;

	if (s->state == SESSION_ST_RELAY)
		pump_eof(s, c);
	else
		session_finalize(s, CONN_ER_RESET, NULL,
				 "peer closed before the connection was set up");
}

static void session_drained(struct conn *c)
{
	struct session *s = c->owner;

	if (s->state == SESSION_ST_RELAY)
		pump_drained(s, c);
}

static void session_shut(struct conn *c)
{
	struct session *s = c->owner;

	if (s->state == SESSION_ST_RELAY)
		pump_shut(s, c);
}

static void session_end(struct conn *c, enum conn_reason reason)
{
	struct session *s = c->owner;

	if (c == &s->up && s->svc && outbound_up_failed(s, reason))
		return; /* another endpoint, once up has closed (session_closed) */
	session_finalize(s, reason, NULL, c->why);
}

static void session_closed(struct conn *c)
{
	struct session *s = c->owner;

	if (c == &s->up && s->redial && s->state != SESSION_ST_CLOSING) {
		s->redial = 0;
		s->handles--; /* down and the timer are open: never the last */
		outbound_redial(s);
		return;
	}
	session_put(s);
}

const struct conn_ops session_conn_ops = {
	.connected = session_connected,
	.open = session_open,
	.data = session_data,
	.eof = session_eof,
	.drained = session_drained,
	.shut = session_shut,
	.end = session_end,
	.closed = session_closed,
};

static void session_timer_cb(uv_timer_t *t)
{
	struct session *s = ((struct conn *)t->data)->owner;

	switch (s->state) {
	case SESSION_ST_RELAY:
		pump_tick(s);
		return;
	case SESSION_ST_CONNECT:
	case SESSION_ST_UP_HANDSHAKE: {
		int connect = s->state == SESSION_ST_CONNECT;
		enum conn_reason r = connect ? CONN_ER_CONNECT_TIMEOUT : CONN_ER_HANDSHAKE_TIMEOUT;
		const char *why = connect ? "connect timed out" : "handshake timed out";
		/* Through up's end callback as its other failures (session_end):
		 * a Service call may try another endpoint. */
		if (s->up.handle_init && !conn_closing(&s->up)) {
			s->up.why = why;
			conn_finalize(&s->up, r);
		} else {
			session_finalize(s, r, NULL, why);
		}
		return;
	}
	default:
		session_finalize(s, CONN_ER_HANDSHAKE_TIMEOUT, NULL, "handshake timed out");
		return;
	}
}

void session_timer(struct session *s, uint64_t ms, uint64_t repeat)
{
	uv_timer_start(&s->timer, session_timer_cb, ms, repeat);
}

void session_dial(struct session *s, struct mtls_conn *t)
{
	struct proxy *p = s->p;
	struct sockaddr_storage to = s->dst;

	s->state = SESSION_ST_CONNECT;
	if (p->cfg.route)
		p->cfg.route(p->cfg.hook_arg, &s->dst, &to);
	int is_pipe = to.ss_family == AF_UNIX; /* a test's (proxy.h) */
	if ((is_pipe ? conn_init_pipe : conn_init)(&s->up, &p->cl, &session_conn_ops, s) < 0) {
		mtls_conn_free(t);
		session_finalize(s, CONN_ER_NO_MEMORY, NULL, "out of memory");
		return;
	}
	s->handles++;
	conn_set_eager(&s->up); /* both ends, from the start (pump.c) */
	if (t)
		conn_set_xprt(&s->up, &xprt_tls_ops, t);
	session_timer(s, p->cfg.connect_ms, 0);
	conn_connect(&s->up, (struct sockaddr *)&to);
}
