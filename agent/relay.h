/* relay: carries the bytes of one proxied connection between its two ends
 * once both exist (the app's socket and the peer's), each end plain TCP or
 * TLS (an mtls_conn whose handshake is done).
 *
 * Both directions at once. Backpressure: a direction stops reading its
 * source while its sink has RELAY_HIGH bytes or more queued, and resumes
 * when the sink has drained. Half-close is carried through: end of stream
 * on one side (a FIN, or a TLS close_notify) becomes a close_notify (on a
 * TLS sink) and a write shutdown on the other side, while the other
 * direction keeps flowing. A reset or a TLS error on either side resets
 * the other. Nothing read for `idle_ms`: both sides are closed (checked
 * every RELAY_QUIET_MS / 2, or every idle_ms if shorter).
 *
 * Memory: reads go through buffers all relays share (one loop, one
 * thread), and a direction holds a buffer only while it has bytes queued
 * for its sink, taken from and given back to a small pool: an idle
 * connection holds none, and nothing is allocated per read or per byte
 * in steady traffic. After RELAY_QUIET_MS without a read, the TLS ends give
 * their buffers back too (mtls_conn_trim). The relay owns both
 * TCP handles (malloc'd by the caller, freed by the relay) and both TLS
 * connections from relay_start on and closes them; the done callback runs
 * once, after both handles are closed and before the TLS connections are
 * freed (it may still ask them what they negotiated).
 *
 * A head callback, when given, sees the first plaintext bytes that come
 * from side b before anything of them reaches side a, and says how many
 * of them are its own (a preamble the two ends of b speak, verdict.h):
 * those are neither relayed nor counted. It is called until it says done;
 * it may also end the relay (RELAY_REFUSED). The other direction is not
 * held meanwhile: a's bytes flow to b at once. */
#ifndef CINCH_AGENT_RELAY_H
#define CINCH_AGENT_RELAY_H

#include <stdint.h>
#include <uv.h>

#include "mtls.h"

#define RELAY_CHUNK    16384
#define RELAY_HIGH     (64 * 1024)
#define RELAY_QUIET_MS 2000

enum relay_end_reason {
	RELAY_CLOSED = 0, /* both directions ended with end of stream */
	RELAY_RESET,	  /* a side reset, or an I/O error */
	RELAY_TLS_ERROR,  /* a TLS record did not decrypt */
	RELAY_IDLE,	  /* idle timeout */
	RELAY_STOPPED,	  /* relay_stop() */
	RELAY_REFUSED,	  /* the head callback ended it */
};

struct relay_stats {
	uint64_t a_to_b, b_to_a; /* plaintext bytes each way */
	enum relay_end_reason reason;
};

typedef void (*relay_done_cb)(void *arg, const struct relay_stats *st);
/* b's first plaintext bytes (data, n): 0 when it took them all and wants
 * more, 1 when done (*used: how many it took; the rest is relayed), or
 * < 0 to end the relay (RELAY_REFUSED). */
typedef int (*relay_head_cb)(void *arg, const uint8_t *data, size_t n, size_t *used);

struct relay;

/* Starts relaying between a (with a_tls or NULL) and b (b_tls or NULL).
 * Bytes the TLS ends already decrypted (data that came with the end of
 * the handshake) are delivered first (through head, NULL: none). 0 and
 * *out, or -ENOMEM (then the caller still owns everything). head and done
 * get arg. */
int relay_start(uv_loop_t *loop, uv_tcp_t *a, struct mtls_conn *a_tls, uv_tcp_t *b,
		struct mtls_conn *b_tls, unsigned idle_ms, relay_head_cb head, relay_done_cb done,
		void *arg, struct relay **out) __attribute__((warn_unused_result));
/* Closes both sides now (a policy change that closes the connection). 0,
 * or -EALREADY when the relay was already ending for another reason (the
 * done callback will say which). */
int relay_stop(struct relay *r);

#endif
