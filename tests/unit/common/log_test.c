/* log_test: every line is one JSON object with the fixed keys, fields from
 * the caller are kept, hostile strings are escaped, and levels filter. */
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_level_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
