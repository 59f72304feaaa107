/* token: single-use bootstrap join tokens (the first way to authenticate
 * Sign, issue #3).
 *
 * A token is "cjt_" + 43 base64url characters (256 random bits) bound to
 * one workload identity and a deadline. The store keeps only the SHA-256 of
 * each token, in <state>/tokens.json (0600, rewritten crash-safe on every
 * change), so a stolen state directory yields no usable token. Entries an
 * hour past their deadline are pruned (they would be refused anyway).
 *
 * Spending is two steps, so that a token is spent only for a certificate
 * actually issued: token_reserve checks the token and holds it (a second
 * reserve is refused as used, so two callers can never both get one);
 * then token_commit marks it used and persists that BEFORE the certificate
 * leaves the process (a crash can lose a certificate, never make a token
 * usable twice), or token_release hands it back when signing failed. A
 * reservation lives in memory only: a restart releases it.
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

/* Reserves `tok` (len bytes): 0, the bound identity in id (SPIFFE_ID_MAX
 * + 1 bytes) and the token's hash in hash (65 bytes: what commit and
 * release take); or -EPERM with *why (reserved counts as used). When
 * `want` is not NULL and differs from the bound identity: -EACCES
 * (TOKEN_ER_IDENTITY) and the token stays usable, so a caller's mistake
 * does not burn it. */
int token_reserve(struct token_store *ts, const char *tok, size_t len, const char *want,
		  time_t now, char *id, char *hash, enum token_reason *why)
	__attribute__((warn_unused_result));
/* Spends a reserved token: used, on disk. 0; -ENOENT when `hash` is not
 * reserved; -errno when the store cannot be written (still reserved: the
 * caller releases it and gives no certificate). */
int token_commit(struct token_store *ts, const char *hash, time_t now)
	__attribute__((warn_unused_result));
/* Makes a reserved token usable again; anything else is a no-op. */
void token_release(struct token_store *ts, const char *hash);

/* The SHA-256 of a token, hex (65 bytes): what audit logs may show. */
void token_hash_hex(const char *tok, size_t len, char out[65]);

#endif
