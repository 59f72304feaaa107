/* verdict: what the inbound agent tells the outbound agent of its policy
 * decision, on connections where both are agents (docs/agent.md, "The
 * denial reason reaches the caller").
 *
 * Negotiated by ALPN: the outbound agent offers VERDICT_ALPN; the inbound
 * agent selects it when offered (a stock TLS client offers no such thing
 * and sees nothing new: a refused connection is closed). When selected,
 * the server's plaintext stream opens with one frame:
 *
 *   2 bytes, big-endian length L, then L bytes
 *   L = 0             allowed: what follows is the app's stream
 *   1 <= L <= 512     refused: a JSON object {"v":1,"code":"policy_deny",
 *                     "reason":"...","port":5432}; the connection closes
 *   L > 512           invalid (the caller closes the connection)
 *
 * The inbound agent sends the frame as soon as it has decided (an allow
 * costs two bytes, no round trip: the outbound agent relays the app's
 * bytes at once and only strips the frame from the server's stream).
 * What the frame may carry is what the caller is entitled to know: the
 * reason (static text of the policy engine) and the port. Never a rule
 * of the other team's policy (the engine names none on a deny), and the
 * destination's identity is not in it: the caller takes that from the
 * certificate it verified.
 *
 * The reader (verdict_rx) holds no buffer until a refusal's body comes:
 * an allowed connection costs it four bytes of state. */
#ifndef CINCH_AGENT_VERDICT_H
#define CINCH_AGENT_VERDICT_H

#include <stddef.h>
#include <stdint.h>

#include "mtls.h"

#define VERDICT_ALPN	   MTLS_MESH_ALPN /* mtls.h */
#define VERDICT_MAX	   512 /* a refusal's JSON body, at most */
#define VERDICT_REASON_MAX 256 /* its reason, at most (printable ASCII) */

/* Why the caller was refused, as counted (bounded: a metric label). */
enum verdict_code {
	VERDICT_POLICY_DENY = 0, /* the destination's policy refuses the caller */
	VERDICT_INVALID,	 /* the peer sent a frame that is not one (caller side) */
	VERDICT_N_CODES,
};

struct verdict_refusal {
	enum verdict_code code;
	uint16_t port;
	char reason[VERDICT_REASON_MAX + 1];
};

/* "policy_deny", "invalid_message". */
const char *verdict_code_name(enum verdict_code code);

/* The allow frame. */
extern const uint8_t verdict_allow[2];

/* Writes the frame of a refusal into buf (at most cap bytes); the reason
 * is cut to VERDICT_REASON_MAX bytes. The frame's length, or -E2BIG or
 * -ENOMEM. */
int verdict_encode_refusal(uint8_t *buf, size_t cap, enum verdict_code code, const char *reason,
			   uint16_t port) __attribute__((warn_unused_result));

enum verdict_rx_state {
	VERDICT_RX_MORE = 0, /* took everything; the frame is not complete */
	VERDICT_RX_ALLOW,    /* allowed: *used bytes taken, the rest is the app's */
	VERDICT_RX_REFUSED,  /* *out says why */
};

struct verdict_rx {
	uint16_t len;  /* the body's length, once the header is in */
	uint16_t have; /* bytes of the frame taken so far */
	uint8_t hdr[2];
	uint8_t *body; /* while a body is coming */
};

/* Takes the server's first plaintext bytes (data, n) until the frame is
 * complete: an enum verdict_rx_state with *used (bytes of data taken), or
 * -EBADMSG (*why: a static text; the frame is too long, not JSON, or not
 * a refusal) or -ENOMEM. After a result other than VERDICT_RX_MORE the
 * reader must not be fed again. */
int verdict_rx_feed(struct verdict_rx *rx, const uint8_t *data, size_t n, size_t *used,
		    struct verdict_refusal *out, const char **why)
	__attribute__((warn_unused_result));
/* Frees what a reader holds (it may be reused after). */
void verdict_rx_cleanup(struct verdict_rx *rx);

#endif
