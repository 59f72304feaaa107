/* log_test: every line is one JSON object with the fixed keys, fields from
 * the caller are kept, hostile strings are escaped, and levels filter.
 * log_pack: a string that is not UTF-8 (a SPIFFE ID, a CSR subject, a token
 * name from a peer) keeps its line's every field, its bad bytes as \xNN;
 * the rest of json_pack's format language packs as jansson does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "log.h"

/* Logs through a memory stream and returns the parsed lines as an array. */
static json_t *capture(void (*emit)(void))
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);

	log_init("test", f, LOG_LVL_INFO);
	emit();
	fclose(f);
	log_init("test", NULL, LOG_LVL_INFO);

	json_t *lines = json_array();
	char *save = NULL;
	for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		json_error_t err;
		json_t *o = json_loads(l, 0, &err);
		if (!o)
			fail_msg("not JSON: %s (%s)", l, err.text);
		json_array_append_new(lines, o);
	}
	free(buf);
	return lines;
}

static void emit_basic(void)
{
	log_event(LOG_LVL_INFO, "cert_issued",
		  json_pack("{s:s, s:i}", "spiffe_id", "spiffe://td/ns/a/sa/b", "ttl", 3600));
	log_event(LOG_LVL_DEBUG, "dropped", NULL);
	log_event(LOG_LVL_ERROR, "bad\"event\n", json_pack("{s:s}", "event", "spoofed"));
	log_event(LOG_LVL_WARN, "no_fields", NULL);
}

static void test_lines(void **state)
{
	json_t *lines = capture(emit_basic);

	assert_int_equal(json_array_size(lines), 3); /* debug filtered out */

	json_t *l0 = json_array_get(lines, 0);
	assert_string_equal(json_string_value(json_object_get(l0, "event")), "cert_issued");
	assert_string_equal(json_string_value(json_object_get(l0, "level")), "info");
	assert_string_equal(json_string_value(json_object_get(l0, "component")), "test");
	assert_string_equal(json_string_value(json_object_get(l0, "spiffe_id")),
			    "spiffe://td/ns/a/sa/b");
	assert_int_equal(json_integer_value(json_object_get(l0, "ttl")), 3600);
	const char *ts = json_string_value(json_object_get(l0, "ts"));
	assert_non_null(ts);
	assert_int_equal(strlen(ts), strlen("2026-01-01T00:00:00.000Z"));

	/* A caller's "event" field cannot override ours; quotes and newlines
	 * in the event name stay inside one escaped JSON string. */
	json_t *l1 = json_array_get(lines, 1);
	assert_string_equal(json_string_value(json_object_get(l1, "event")), "bad\"event\n");
	assert_string_equal(json_string_value(json_object_get(l1, "level")), "error");

	assert_string_equal(json_string_value(json_object_get(json_array_get(lines, 2), "event")),
			    "no_fields");
	json_decref(lines);
}

static void test_level_parse(void **state)
{
	enum log_level l;
	assert_int_equal(log_level_parse("warn", &l), 0);
	assert_int_equal(l, LOG_LVL_WARN);
	assert_int_equal(log_level_parse("verbose", &l), -22);
}

static void emit_hostile(void)
{
	/* What an audit line of a Sign call carries, each with bytes a peer
	 * chose: a lone continuation byte, a truncated sequence, an overlong
	 * '/', a UTF-16 surrogate, a byte that never occurs in UTF-8. */
	log_event(LOG_LVL_WARN, "sign_refused",
		  log_pack("{s:s, s:s, s:s, s:I, s:s?, s:s%}", "spiffe_id",
			   "spiffe://td/ns/\x80"
			   "evil",
			   "csr_subject", "CN=caf\xc3", "token_name",
			   "a\xc0\xaf"
			   "b\xed\xa0\x80"
			   "c\xff",
			   "expires_at_unix", (json_int_t)42, "absent", NULL, "peer",
			   "1.2.3.4\xfe:5", (size_t)9));
}

static void test_invalid_utf8_keeps_fields(void **state)
{
	/* Why log_pack exists: jansson fails the whole object. */
	json_t *j = json_pack("{s:s, s:i}", "spiffe_id", "spiffe://td/\x80", "ttl", 1);
	assert_null(j);

	json_t *lines = capture(emit_hostile);
	assert_int_equal(json_array_size(lines), 1);
	json_t *l = json_array_get(lines, 0);
	assert_string_equal(json_string_value(json_object_get(l, "event")), "sign_refused");
	assert_string_equal(json_string_value(json_object_get(l, "spiffe_id")),
			    "spiffe://td/ns/\\x80evil");
	assert_string_equal(json_string_value(json_object_get(l, "csr_subject")), "CN=caf\\xc3");
	assert_string_equal(json_string_value(json_object_get(l, "token_name")),
			    "a\\xc0\\xafb\\xed\\xa0\\x80c\\xff");
	assert_int_equal(json_integer_value(json_object_get(l, "expires_at_unix")), 42);
	assert_true(json_is_null(json_object_get(l, "absent")));
	assert_string_equal(json_string_value(json_object_get(l, "peer")), "1.2.3.4\\xfe:");
	json_decref(lines);
}

static void test_pack_language(void **state)
{
	/* Valid UTF-8 of every length passes unchanged. */
	json_t *v = log_stringn("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf", 13);
	assert_string_equal(json_string_value(v),
			    "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf");
	json_decref(v);
	/* Above U+10FFFF, and a NUL inside a counted string. */
	v = log_stringn("\xf4\x90\x80\x80x\0y", 7);
	assert_int_equal(json_string_length(v), 4 * 4 + 3);
	assert_memory_equal(json_string_value(v), "\\xf4\\x90\\x80\\x80x\0y", 19);
	json_decref(v);

	json_t *inner = json_pack("{s:i}", "n", 1);
	v = log_pack("{s:[s, i, b, f, n], s:{s:o, s:O}, s:o?, s:s#}", "list", "a", 2, 1, 0.5, "obj",
		     "own", json_string("x"), "ref", inner, "none", NULL, "cut", "abcdef", 3);
	assert_non_null(v);
	char *dump = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(dump, "{\"cut\":\"abc\",\"list\":[\"a\",2,true,0.5,null],"
				  "\"none\":null,\"obj\":{\"own\":\"x\",\"ref\":{\"n\":1}}}");
	free(dump);
	json_decref(v);
	assert_int_equal(inner->refcount, 1); /* 'O' added the object's one */
	json_decref(inner);

	/* Outside the language, or a NULL where one is not allowed: NULL, and
	 * every 'o' reference is released (the leak checker would say). */
	assert_null(log_pack("{s:o, s:x}", "a", json_string("leak?"), "b"));
	assert_null(log_pack("{s:i, s:s#, s:o}", "a", 1, "b", "x", -1, "c", json_string("leak?")));
	/* A NULL string costs nothing but itself. */
	v = log_pack("{s:s, s:s%, s:i}", "a", NULL, "b", NULL, (size_t)3, "c", 7);
	dump = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(dump, "{\"a\":null,\"b\":null,\"c\":7}");
	free(dump);
	json_decref(v);
	assert_null(log_pack("{s:o, s:o}", "a", json_string("leak?"), "b", NULL));
	assert_null(log_pack("{s:i", "a", 1));
	assert_null(log_pack("{s:i} x", "a", 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_level_parse),
		cmocka_unit_test(test_invalid_utf8_keeps_fields),
		cmocka_unit_test(test_pack_language),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
