/* token: single-use bootstrap join tokens (the first way to authenticate
 * Sign, issue #3).
 *
 * A token is "cjt_" + 43 base64url characters (256 random bits) bound to
 * one workload identity and a deadline. The store keeps only the SHA-256 of
 * each token, in <state>/tokens.json (0600, rewritten crash-safe on every
 * change), so a stolen state directory yields no usable token. Redeeming
 * marks the token used and persists that BEFORE the caller signs anything:
 * a crash can lose a certificate, never make a token usable twice. Entries
 * an hour past their deadline are pruned (they would be refused anyway).
 *
 * Owned by the control's loop thread; not thread-safe. */
#ifndef CINCH_CONTROL_TOKEN_H
#define CINCH_CONTROL_TOKEN_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "spiffe.h"

#define TOKEN_STR_LEN (4 + 43)
#define TOKEN_TTL_DEFAULT_S 600
#define TOKEN_TTL_MAX_S (7 * 86400)

enum token_reason {
	TOKEN_ER_NONE = 0,
	TOKEN_ER_UNKNOWN,
	TOKEN_ER_USED,
	TOKEN_ER_EXPIRED,
	TOKEN_ER_IDENTITY,
	TOKEN_ER_STORE,
	TOKEN_ER_COUNT_,
};

const char *token_reason_name(enum token_reason r);

struct token_store;

/* Loads (or starts empty) <state_dir>/tokens.json. `td` is borrowed and
 * must outlive the store. 0 and *out, or -errno (corrupt file: -EBADMSG). */
int token_store_open(const char *state_dir, const char *td, struct token_store **out)
	__attribute__((warn_unused_result));
void token_store_free(struct token_store *ts);

/* Creates a token for spiffe://td/ns/<ns>/sa/<sa> valid ttl_s seconds
 * (1..TOKEN_TTL_MAX_S). Writes the token (NUL-terminated) into tok
 * (TOKEN_STR_LEN + 1 bytes) and the identity into id (SPIFFE_ID_MAX + 1)
 * only once the store is on disk. -EINVAL, -errno. */
int token_create(struct token_store *ts, const char *ns, const char *sa, long ttl_s, time_t now,
		 char *tok, char *id, int64_t *expires) __attribute__((warn_unused_result));

/* Redeems `tok` (len bytes): 0 and the bound identity in id (SPIFFE_ID_MAX
 * + 1 bytes), the token now used and persisted; or -EPERM with *why. When
 * `want` is not NULL and differs from the bound identity: -EACCES
 * (TOKEN_ER_IDENTITY) and the token stays unused, so a caller's mistake
 * does not burn it. */
int token_redeem(struct token_store *ts, const char *tok, size_t len, const char *want,
		 time_t now, char *id, enum token_reason *why) __attribute__((warn_unused_result));

/* The SHA-256 of a token, hex (65 bytes): what audit logs may show. */
void token_hash_hex(const char *tok, size_t len, char out[65]);

#endif
