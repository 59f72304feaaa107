/* pump: the relay of a session (session.h): plaintext between its two
 * ends (common/conn.h), both directions at once, each end plain or TLS.
 *
 * Both ends are eager (conn_set_eager, from accept and dial on: the
 * handshake's flights and the verdict frame go out the same way): what a
 * read brings is written to the other side in the same callback, without
 * a write request when the socket takes it all (keep-alive requests, most
 * of a bulk stream, a handshake flight); session_drained acts only here.
 * Backpressure: a direction stops reading its source while its sink has
 * CONN_HIGH bytes or more queued, and resumes when a write drains it.
 * Half-close is carried through: the end of one side's stream (a FIN, or
 * a TLS close_notify) becomes a shutdown of the other side (close_notify
 * on TLS, then a TCP write shutdown) while the other direction keeps
 * flowing; the session ends CLOSED when both sides are shut. A reset or
 * a TLS error on either side ends the session, and the core resets the
 * other side (conn_reason_resets). Nothing read for idle_ms: IDLE_TIMEOUT
 * (checked every SESSION_QUIET_MS / 2, or every idle_ms if shorter);
 * the ends hold no buffer while nothing is in flight (conn.c, mtls.c);
 * after SESSION_QUIET_MS without a read the loop's heap is trimmed.
 *
 * Outbound to an agent (session.head), the destination's first bytes are
 * its verdict frame (verdict.h): taken off its stream before anything
 * reaches the app; a refusal ends the session (end "refused_by_peer",
 * its reason in the log and cinch_agent_refused_by_peer_total). The
 * app's bytes flow to the destination meanwhile. */
#include <stdio.h>
#include <stdlib.h>

#include "session.h"

void pump_start(struct session *s)
{
	unsigned idle = s->p->cfg.idle_ms;
	unsigned tick = idle < SESSION_QUIET_MS / 2 ? idle : SESSION_QUIET_MS / 2;

	s->state = SESSION_ST_RELAY;
	s->relayed = 1;
	session_timer(s, tick, tick);
	/* The inbound plaintext already read goes to the app first. */
	if (s->plain_len) {
		s->bytes_out += s->plain_len;
		if (conn_write(&s->up, s->plain, s->plain_len) < 0)
			return;
		free(s->plain);
		s->plain = NULL;
		s->plain_len = 0;
	}
	conn_read_start(&s->down);
	if (s->state == SESSION_ST_RELAY)
		conn_read_start(&s->up);
}

/* The destination's verdict frame: 1 when it is done (*used: its bytes),
 * 0 when it took everything and wants more, -1 when the session ended. */
static int pump_head(struct session *s, const uint8_t *data, size_t n, size_t *used)
{
	struct verdict_refusal r;
	const char *why = NULL;
	int rc = verdict_rx_feed(&s->vrx, data, n, used, &r, &why);

	if (rc == VERDICT_RX_MORE)
		return 0;
	if (rc == VERDICT_RX_ALLOW) {
		s->head = 0;
		return 1;
	}
	if (rc < 0) { /* our own words, never the peer's bytes */
		r = (struct verdict_refusal){.code = VERDICT_INVALID, .port = s->port};
		snprintf(r.reason, sizeof(r.reason), "%s", why ? why : "invalid refusal message");
	}
	if ((s->refusal = malloc(sizeof(*s->refusal))))
		*s->refusal = r;
	session_finalize(s, CONN_ER_STOPPED, "refused_by_peer", NULL);
	return -1;
}

int pump_data(struct session *s, struct conn *from, const uint8_t *data, size_t n)
{
	struct conn *to = session_other(s, from);
	size_t used = 0;

	s->trimmed = 0;
	if (s->head && from == &s->up) {
		int rc = pump_head(s, data, n, &used);
		if (rc <= 0)
			return rc;
		data += used;
		n -= used;
		if (n == 0)
			return 0;
	}
	/* app -> peer: down -> up outbound, up -> down inbound */
	*((from == &s->down) == s->outbound ? &s->bytes_out : &s->bytes_in) += n;
	if (conn_write(to, data, n) < 0)
		return -1; /* the session ended with the write's reason */
	if (conn_queued(to) >= CONN_HIGH)
		conn_read_stop(from);
	return 0;
}

void pump_eof(struct session *s, struct conn *from)
{
	conn_shutdown(session_other(s, from));
}

void pump_drained(struct session *s, struct conn *to)
{
	struct conn *from = session_other(s, to);

	if (conn_queued(to) < CONN_HIGH && !from->want_read && !from->eof_in)
		conn_read_start(from);
}

void pump_shut(struct session *s, struct conn *to)
{
	(void)to;
	if (++s->shut == 2)
		session_finalize(s, CONN_ER_CLOSED, NULL, NULL);
}

void pump_tick(struct session *s)
{
	uint64_t now = uv_now(s->p->loop);
	uint64_t last = s->down.last_read > s->up.last_read ? s->down.last_read : s->up.last_read;

	if (now - last >= s->p->cfg.idle_ms) {
		session_finalize(s, CONN_ER_IDLE_TIMEOUT, NULL, "idle timeout");
		return;
	}
	if (now - last >= SESSION_QUIET_MS && !s->trimmed) {
		s->trimmed = 1;
		conn_trim(&s->down);
		conn_trim(&s->up);
	}
	conn_loop_trim_heap(&s->p->cl);
}
