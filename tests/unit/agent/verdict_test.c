/* verdict_test: the frame the inbound agent sends an agent caller
 * (agent/verdict.h): a refusal survives the trip whole and byte by byte,
 * an allow takes exactly its two bytes and leaves the app's bytes, and
 * what a hostile server agent may send instead (an oversized length, not
 * JSON, another version or code, a port out of range, control bytes or a
 * NUL in the reason, duplicate keys, an overlong reason) is refused with
 * our own words, never relayed nor kept. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "verdict.h"

/* Feeds `len` bytes `step` at a time (0: at once). The reader's last
 * result; *taken: bytes taken in all. */
static int feed(struct verdict_rx *rx, const uint8_t *data, size_t len, size_t step, size_t *taken,
		struct verdict_refusal *out, const char **why)
{
	size_t off = 0;
	int rc = VERDICT_RX_MORE;

	while (off < len && rc == VERDICT_RX_MORE) {
		size_t n = step && len - off > step ? step : len - off, used = 0;
		rc = verdict_rx_feed(rx, data + off, n, &used, out, why);
		assert_true(used <= n);
		off += used;
		if (rc == VERDICT_RX_MORE)
			assert_int_equal(used, n);
	}
	*taken = off;
	return rc;
}

static void test_refusal_round_trip(void **state)
{
	uint8_t buf[2 + VERDICT_MAX + 8];
	(void)state;

	for (size_t step = 0; step <= 3; step++) {
		struct verdict_rx rx = {0};
		struct verdict_refusal r;
		const char *why = NULL;
		size_t taken;
		int n = verdict_encode_refusal(buf, sizeof(buf), VERDICT_POLICY_DENY,
					       "no rule allows this identity on this port", 5432);
		assert_true(n > 2 && n <= 2 + VERDICT_MAX);
		memcpy(buf + n, "tail", 4); /* what follows is not the frame's */
		assert_int_equal(feed(&rx, buf, (size_t)n + 4, step, &taken, &r, &why),
				 VERDICT_RX_REFUSED);
		assert_int_equal(taken, n);
		assert_int_equal(r.code, VERDICT_POLICY_DENY);
		assert_int_equal(r.port, 5432);
		assert_string_equal(r.reason, "no rule allows this identity on this port");
		assert_null(rx.body); /* given back once parsed */
		verdict_rx_cleanup(&rx);
	}
	assert_string_equal(verdict_code_name(VERDICT_POLICY_DENY), "policy_deny");
	assert_string_equal(verdict_code_name(VERDICT_INVALID), "invalid_message");
}

static void test_allow_leaves_the_stream(void **state)
{
	const uint8_t stream[] = {0, 0, 'H', 'T', 'T', 'P'};
	(void)state;

	for (size_t step = 0; step <= 1; step++) {
		struct verdict_rx rx = {0};
		struct verdict_refusal r;
		const char *why = NULL;
		size_t taken;
		assert_int_equal(feed(&rx, stream, sizeof(stream), step, &taken, &r, &why),
				 VERDICT_RX_ALLOW);
		assert_int_equal(taken, 2);
		assert_null(rx.body);
	}
	assert_memory_equal(verdict_allow, stream, 2);
}

static void test_long_reason_is_cut(void **state)
{
	char reason[1000];
	uint8_t buf[2 + VERDICT_MAX];
	struct verdict_rx rx = {0};
	struct verdict_refusal r;
	const char *why = NULL;
	size_t taken;
	(void)state;

	memset(reason, 'x', sizeof(reason) - 1);
	reason[sizeof(reason) - 1] = '\0';
	int n = verdict_encode_refusal(buf, sizeof(buf), VERDICT_POLICY_DENY, reason, 1);
	assert_true(n > 0);
	assert_int_equal(feed(&rx, buf, (size_t)n, 0, &taken, &r, &why), VERDICT_RX_REFUSED);
	assert_int_equal(strlen(r.reason), VERDICT_REASON_MAX);
	assert_int_equal(verdict_encode_refusal(buf, 8, VERDICT_POLICY_DENY, "r", 1), -E2BIG);
}

/* A frame of body `json` must be refused. */
static void expect_bad(const char *json, const char *why_part)
{
	uint8_t buf[2 + 2048];
	size_t len = strlen(json), taken;
	struct verdict_rx rx = {0};
	struct verdict_refusal r;
	const char *why = NULL;

	assert_true(len <= 2048);
	buf[0] = (uint8_t)(len >> 8);
	buf[1] = (uint8_t)len;
	memcpy(buf + 2, json, len);
	for (size_t step = 0; step <= 1; step++) {
		int rc = feed(&rx, buf, len + 2, step, &taken, &r, &why);
		if (rc != -EBADMSG)
			fail_msg("accepted: %s (rc %d)", json, rc);
		assert_non_null(why);
		if (!strstr(why, why_part))
			fail_msg("%s: said '%s', expected '%s'", json, why, why_part);
		verdict_rx_cleanup(&rx);
	}
}

static void test_hostile_frames(void **state)
{
	char big[1000];
	(void)state;

	/* longer than the bound: refused from the header, nothing allocated */
	const uint8_t huge[] = {0xff, 0xff, '{'};
	struct verdict_rx rx = {0};
	struct verdict_refusal r;
	const char *why = NULL;
	size_t used;
	assert_int_equal(verdict_rx_feed(&rx, huge, sizeof(huge), &used, &r, &why), -EBADMSG);
	assert_null(rx.body);
	assert_non_null(strstr(why, "longer than 512"));
	memset(big, ' ', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	expect_bad(big, "longer than 512");

	expect_bad("not json at all", "not a JSON object");
	expect_bad("[1,2]", "not a JSON object");
	expect_bad("{\"v\":2,\"code\":\"policy_deny\",\"reason\":\"r\",\"port\":1}", "version");
	expect_bad("{\"code\":\"policy_deny\",\"reason\":\"r\",\"port\":1}", "version");
	expect_bad("{\"v\":1,\"code\":\"rm -rf\",\"reason\":\"r\",\"port\":1}", "unknown code");
	expect_bad("{\"v\":1,\"code\":\"invalid_message\",\"reason\":\"r\",\"port\":1}",
		   "unknown code");
	expect_bad("{\"v\":1,\"code\":\"policy_deny\",\"reason\":\"r\",\"port\":0}", "port");
	expect_bad("{\"v\":1,\"code\":\"policy_deny\",\"reason\":\"r\",\"port\":65536}", "port");
	expect_bad("{\"v\":1,\"code\":\"policy_deny\",\"reason\":\"r\",\"port\":\"80\"}", "port");
	expect_bad("{\"v\":1,\"code\":\"policy_deny\",\"reason\":\"\",\"port\":1}", "reason");
	expect_bad("{\"v\":1,\"code\":\"policy_deny\",\"reason\":\"a\\u001b[31mb\",\"port\":1}",
		   "reason");
	/* jansson refuses \u0000 itself */
	expect_bad("{\"v\":1,\"code\":\"policy_deny\",\"reason\":\"a\\u0000b\",\"port\":1}",
		   "not a JSON object");
	expect_bad("{\"v\":1,\"code\":\"policy_deny\",\"reason\":\"caf\\u00e9\",\"port\":1}",
		   "reason");
	expect_bad(
		"{\"v\":1,\"code\":\"policy_deny\",\"reason\":\"r\",\"reason\":\"s\",\"port\":1}",
		"not a JSON object");
	memset(big, 'a', 300);
	big[300] = '\0';
	char obj[sizeof(big) + 64];
	snprintf(obj, sizeof(obj),
		 "{\"v\":1,\"code\":\"policy_deny\",\"reason\":\"%s\",\"port\":1}", big);
	expect_bad(obj, "reason");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_refusal_round_trip),
		cmocka_unit_test(test_allow_leaves_the_stream),
		cmocka_unit_test(test_long_reason_is_cut),
		cmocka_unit_test(test_hostile_frames),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
