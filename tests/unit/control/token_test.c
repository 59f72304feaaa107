/* control.token: the join-token store in a temp state dir. A token works
 * once, within its TTL, for the identity it was created for; used tokens
 * stay used after a reopen (a restart); the file holds hashes only, 0600;
 * a corrupt store is an error rather than an empty one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fsutil.h"
#include "token/token.h"

static void test_tokens(void **state)
{
	char dir[] = "/tmp/cinch-token.XXXXXX", path[64], tok[TOKEN_STR_LEN + 1],
	     tok2[TOKEN_STR_LEN + 1], id[SPIFFE_ID_MAX + 1];
	struct token_store *ts;
	enum token_reason why;
	int64_t exp;
	time_t now = 1700000000;
	struct stat st;
	char *buf;
	size_t len;

	assert_non_null(mkdtemp(dir));
	assert_int_equal(token_store_open(dir, "example.org", &ts), 0);
	assert_int_equal(token_create(ts, "default", "web", 600, now, tok, id, &exp), 0);
	assert_int_equal(strlen(tok), TOKEN_STR_LEN);
	assert_memory_equal(tok, "cjt_", 4);
	assert_string_equal(id, "spiffe://example.org/ns/default/sa/web");
	assert_int_equal(exp, now + 600);
	assert_int_equal(token_create(ts, "default", "db", 60, now, tok2, id, &exp), 0);
	assert_string_not_equal(tok, tok2);
	/* Bad identity parts and TTLs create nothing. */
	assert_int_equal(token_create(ts, "a/b", "web", 600, now, tok2, id, &exp), -EINVAL);
	assert_int_equal(token_create(ts, "", "web", 600, now, tok2, id, &exp), -EINVAL);
	assert_int_equal(token_create(ts, "ns", "web", 0, now, tok2, id, &exp), -EINVAL);
	assert_int_equal(token_create(ts, "ns", "web", TOKEN_TTL_MAX_S + 1, now, tok2, id, &exp),
			 -EINVAL);

	/* The file: hashes only, mode 0600. */
	snprintf(path, sizeof(path), "%s/tokens.json", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(fsutil_read_all(path, 1 << 20, &buf, &len), 0);
	assert_null(strstr(buf, tok + 4));
	char h[65];
	token_hash_hex(tok, strlen(tok), h);
	assert_non_null(strstr(buf, h));
	free(buf);

	/* Asking for another identity is refused and does not burn the token. */
	char rh[65];
	assert_int_equal(token_reserve(ts, tok, strlen(tok),
				       "spiffe://example.org/ns/default/sa/db", now + 1, id, rh,
				       &why),
			 -EACCES);
	assert_int_equal(why, TOKEN_ER_IDENTITY);
	memset(id, 0, sizeof(id));
	/* Reserved: a second use is refused as used, even before it is spent;
	 * released (the certificate was not issued), it works again. */
	assert_int_equal(token_reserve(ts, tok, strlen(tok), NULL, now + 1, id, rh, &why), 0);
	assert_string_equal(id, "spiffe://example.org/ns/default/sa/web");
	assert_string_equal(rh, h);
	assert_int_equal(token_reserve(ts, tok, strlen(tok), NULL, now + 1, id, h, &why), -EPERM);
	assert_int_equal(why, TOKEN_ER_USED);
	token_release(ts, rh);
	assert_int_equal(fsutil_read_all(path, 1 << 20, &buf, &len), 0);
	char *used = strstr(strstr(buf, h), "\"used\":"); /* a reservation is never on disk */
	assert_non_null(used);
	assert_int_equal(used[7], '0');
	free(buf);
	assert_int_equal(token_reserve(ts, tok, strlen(tok), NULL, now + 1, id, rh, &why), 0);
	/* Committed: used, on disk; release after that changes nothing. */
	assert_int_equal(token_commit(ts, rh, now + 1), 0);
	assert_int_equal(token_commit(ts, rh, now + 1), -ENOENT);
	token_release(ts, rh);
	assert_int_equal(token_reserve(ts, tok, strlen(tok), NULL, now + 2, id, rh, &why), -EPERM);
	assert_int_equal(why, TOKEN_ER_USED);
	assert_int_equal(token_reserve(ts, "cjt_nope", 8, NULL, now, id, rh, &why), -EPERM);
	assert_int_equal(why, TOKEN_ER_UNKNOWN);
	assert_int_equal(token_reserve(ts, tok, strlen(tok) - 1, NULL, now, id, rh, &why), -EPERM);
	assert_int_equal(why, TOKEN_ER_UNKNOWN);
	assert_int_equal(token_commit(ts, "nope", now), -ENOENT);
	/* tok2 expired at now + 60. */
	assert_int_equal(token_reserve(ts, tok2, strlen(tok2), NULL, now + 60, id, rh, &why),
			 -EPERM);
	assert_int_equal(why, TOKEN_ER_EXPIRED);
	token_store_free(ts);

	/* After a restart the used token stays used, the unused one works. */
	char tok3[TOKEN_STR_LEN + 1];
	assert_int_equal(token_store_open(dir, "example.org", &ts), 0);
	assert_int_equal(token_create(ts, "x", "y", 600, now, tok3, id, &exp), 0);
	token_store_free(ts);
	assert_int_equal(token_store_open(dir, "example.org", &ts), 0);
	assert_int_equal(token_reserve(ts, tok, strlen(tok), NULL, now + 3, id, rh, &why), -EPERM);
	assert_int_equal(why, TOKEN_ER_USED);
	/* A reservation does not survive a restart (nothing was issued). */
	assert_int_equal(token_reserve(ts, tok3, strlen(tok3), NULL, now + 3, id, rh, &why), 0);
	token_store_free(ts);
	assert_int_equal(token_store_open(dir, "example.org", &ts), 0);
	assert_int_equal(token_reserve(ts, tok3, strlen(tok3), NULL, now + 3, id, rh, &why), 0);
	assert_string_equal(id, "spiffe://example.org/ns/x/sa/y");
	token_store_free(ts);

	/* A corrupt store is refused. */
	assert_int_equal(fsutil_write_atomic(path, "{\"not\":\"an array\"}", 18, 0600), 0);
	assert_int_equal(token_store_open(dir, "example.org", &ts), -EBADMSG);
	assert_int_equal(fsutil_write_atomic(path, "[{\"sha256\":1}]", 14, 0600), 0);
	assert_int_equal(token_store_open(dir, "example.org", &ts), -EBADMSG);

	char cmd[64];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tokens),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
