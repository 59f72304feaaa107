/* token: see token.h. The file is a JSON array of
 * {"sha256": hex, "identity": id, "expires": unix, "used": unix-or-0}. */
#include "token/token.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ca/ca.h"
#include "fsutil.h"

#define TOKEN_MAX 100000
#define TOKEN_PRUNE_AFTER_S 3600

struct token_entry {
	char hash[65];
	char id[SPIFFE_ID_MAX + 1];
	int64_t expires, used;
	int reserved; /* between token_reserve and its commit or release */
};

struct token_store {
	char path[PATH_MAX];
	const char *td;
	struct token_entry *v;
	size_t n, cap;
};

static const char *const token_reason_names[TOKEN_ER_COUNT_] = {
	[TOKEN_ER_NONE] = "none",
	[TOKEN_ER_UNKNOWN] = "token_unknown",
	[TOKEN_ER_USED] = "token_used",
	[TOKEN_ER_EXPIRED] = "token_expired",
	[TOKEN_ER_IDENTITY] = "identity_not_granted",
	[TOKEN_ER_STORE] = "token_store_error",
};

const char *token_reason_name(enum token_reason r)
{
	return (unsigned)r < TOKEN_ER_COUNT_ ? token_reason_names[r] : "unknown";
}

void token_hash_hex(const char *tok, size_t len, char out[65])
{
	uint8_t h[32];
	ca_sha256(h, tok, len);
	for (size_t i = 0; i < sizeof(h); i++)
		snprintf(out + 2 * i, 3, "%02x", h[i]);
}

static int token_push(struct token_store *ts, const struct token_entry *e)
{
	if (ts->n == ts->cap) {
		size_t cap = ts->cap ? ts->cap * 2 : 16;
		if (cap > TOKEN_MAX)
			return -ENOSPC;
		struct token_entry *v = realloc(ts->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		ts->v = v;
		ts->cap = cap;
	}
	ts->v[ts->n++] = *e;
	return 0;
}

static int token_load(struct token_store *ts)
{
	char *buf = NULL;
	size_t len, i;
	json_t *doc = NULL, *it;
	int rc = fsutil_read_all(ts->path, 64u << 20, &buf, &len);

	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	rc = -EBADMSG;
	doc = json_loadb(buf, len, 0, NULL);
	if (!json_is_array(doc))
		goto out;
	json_array_foreach(doc, i, it) {
		struct token_entry e = { 0 };
		const char *h, *id;
		json_int_t exp, used;
		if (json_unpack(it, "{s:s, s:s, s:I, s:I}", "sha256", &h, "identity", &id,
				"expires", &exp, "used", &used) ||
		    strlen(h) != 64 || strlen(id) > SPIFFE_ID_MAX)
			goto out;
		memcpy(e.hash, h, 65);
		memcpy(e.id, id, strlen(id) + 1);
		e.expires = exp;
		e.used = used;
		if ((rc = token_push(ts, &e)) < 0)
			goto out;
		rc = -EBADMSG;
	}
	rc = 0;
out:
	json_decref(doc);
	free(buf);
	return rc;
}

static int token_save(const struct token_store *ts)
{
	json_t *doc = json_array();
	char *s = NULL;
	int rc = -ENOMEM;

	for (size_t i = 0; doc && i < ts->n; i++) {
		const struct token_entry *e = &ts->v[i];
		if (json_array_append_new(doc, json_pack("{s:s, s:s, s:I, s:I}", "sha256", e->hash,
							 "identity", e->id, "expires",
							 (json_int_t)e->expires, "used",
							 (json_int_t)e->used)))
			goto out;
	}
	if (doc && (s = json_dumps(doc, JSON_COMPACT)))
		rc = fsutil_write_atomic(ts->path, s, strlen(s), 0600);
out:
	free(s);
	json_decref(doc);
	return rc;
}

int token_store_open(const char *state_dir, const char *td, struct token_store **out)
{
	struct token_store *ts = calloc(1, sizeof(*ts));
	int rc;

	if (!ts)
		return -ENOMEM;
	ts->td = td;
	if (snprintf(ts->path, sizeof(ts->path), "%s/tokens.json", state_dir) >=
	    (int)sizeof(ts->path)) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	if ((rc = token_load(ts)) < 0)
		goto out;
	*out = ts;
	ts = NULL;
out:
	token_store_free(ts);
	return rc;
}

void token_store_free(struct token_store *ts)
{
	if (!ts)
		return;
	free(ts->v);
	free(ts);
}

static void token_prune(struct token_store *ts, time_t now)
{
	size_t w = 0;
	for (size_t r = 0; r < ts->n; r++)
		if (ts->v[r].expires + TOKEN_PRUNE_AFTER_S > now)
			ts->v[w++] = ts->v[r];
	ts->n = w;
}

/* base64url without padding (RFC 4648 section 5). */
static void token_b64url(char *out, const uint8_t *in, size_t len)
{
	static const char a[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < len; i++) {
		acc = (acc << 8) | in[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			*out++ = a[(acc >> bits) & 63];
		}
	}
	if (bits)
		*out++ = a[(acc << (6 - bits)) & 63];
	*out = '\0';
}

int token_create(struct token_store *ts, const char *ns, const char *sa, long ttl_s, time_t now,
		 char *tok, char *id, int64_t *expires)
{
	struct token_entry e = { 0 };
	char t[TOKEN_STR_LEN + 1];
	uint8_t raw[32];
	int rc;

	if (ttl_s <= 0 || ttl_s > TOKEN_TTL_MAX_S)
		return -EINVAL;
	if ((rc = spiffe_id_format(e.id, sizeof(e.id), ts->td, ns, sa)) < 0)
		return rc;
	ca_random(raw, sizeof(raw));
	memcpy(t, "cjt_", 4);
	token_b64url(t + 4, raw, sizeof(raw));
	token_hash_hex(t, strlen(t), e.hash);
	e.expires = (int64_t)now + ttl_s;
	token_prune(ts, now);
	if ((rc = token_push(ts, &e)) < 0)
		return rc;
	if ((rc = token_save(ts)) < 0) {
		ts->n--;
		return rc;
	}
	memcpy(tok, t, sizeof(t));
	memcpy(id, e.id, strlen(e.id) + 1);
	*expires = e.expires;
	return 0;
}

static struct token_entry *token_find(struct token_store *ts, const char *hash)
{
	for (size_t i = 0; i < ts->n; i++)
		if (!strcmp(ts->v[i].hash, hash))
			return &ts->v[i];
	return NULL;
}

int token_reserve(struct token_store *ts, const char *tok, size_t len, const char *want,
		  time_t now, char *id, char *hash, enum token_reason *why)
{
	char h[65];
	struct token_entry *e;

	token_hash_hex(tok, len, h);
	if (!(e = token_find(ts, h))) {
		*why = TOKEN_ER_UNKNOWN;
		return -EPERM;
	}
	if (e->used || e->reserved) {
		*why = TOKEN_ER_USED;
		return -EPERM;
	}
	if (e->expires <= now) {
		*why = TOKEN_ER_EXPIRED;
		return -EPERM;
	}
	if (want && strcmp(want, e->id)) {
		*why = TOKEN_ER_IDENTITY;
		return -EACCES;
	}
	e->reserved = 1;
	memcpy(id, e->id, strlen(e->id) + 1);
	memcpy(hash, h, sizeof(h));
	*why = TOKEN_ER_NONE;
	return 0;
}

int token_commit(struct token_store *ts, const char *hash, time_t now)
{
	struct token_entry *e = token_find(ts, hash);
	int rc;

	if (!e || !e->reserved)
		return -ENOENT;
	e->used = now;
	if ((rc = token_save(ts)) < 0) {
		e->used = 0;
		return rc;
	}
	e->reserved = 0;
	return 0;
}

void token_release(struct token_store *ts, const char *hash)
{
	struct token_entry *e = token_find(ts, hash);

	if (e)
		e->reserved = 0;
}
