/* control.bytebudget: the request buffer and the server-wide budget it
 * draws on (api/bytebudget.h), in memory. Checked: memory is taken as
 * bytes arrive (a buffer holds at most twice what arrived, never what a
 * peer declared), capped at the caller's limit (-E2BIG, nothing changes),
 * refused once the budget cannot give the growth (-ENOBUFS, counted,
 * nothing changes), and all of it given back on free. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "api/bytebudget.h"

static void test_grows_as_bytes_arrive(void **state)
{
	struct bytebudget b = {.limit = 1 << 20};
	struct bytebuf buf = {0};
	uint8_t chunk[100];

	memset(chunk, 'x', sizeof(chunk));
	assert_int_equal(bytebuf_append(&buf, &b, chunk, 10, 4 << 20), 0);
	assert_int_equal(buf.len, 10);
	assert_int_equal(buf.cap, 1024); /* the smallest buffer, not the 4 MiB allowed */
	assert_int_equal(b.used, 1024);
	for (int i = 0; i < 30; i++)
		assert_int_equal(bytebuf_append(&buf, &b, chunk, sizeof(chunk), 4 << 20), 0);
	assert_int_equal(buf.len, 3010);
	assert_int_equal(buf.cap, 4096);
	assert_int_equal(b.used, 4096);
	assert_memory_equal(buf.data + 3000, chunk, 10);
	bytebuf_free(&buf, &b);
	assert_int_equal(b.used, 0);
	assert_null(buf.data);
	assert_int_equal(buf.len, 0);
	assert_int_equal(b.peak, 4096);
}

static void test_caller_limit(void **state)
{
	struct bytebudget b = {.limit = 1 << 20};
	struct bytebuf buf = {0};
	uint8_t chunk[1500] = {0};

	assert_int_equal(bytebuf_append(&buf, &b, chunk, 1500, 2000), 0);
	assert_int_equal(buf.cap, 2000); /* doubling stops at the limit */
	assert_int_equal(bytebuf_append(&buf, &b, chunk, 501, 2000), -E2BIG);
	assert_int_equal(buf.len, 1500);
	assert_int_equal(bytebuf_append(&buf, &b, chunk, 500, 2000), 0);
	assert_int_equal(b.used, 2000);
	assert_int_equal(b.refused, 0);
	bytebuf_free(&buf, &b);
	assert_int_equal(b.used, 0);
}

static void test_budget_spent(void **state)
{
	struct bytebudget b = {.limit = 3000};
	struct bytebuf one = {0}, two = {0}, three = {0};
	uint8_t chunk[1024] = {0};

	assert_int_equal(bytebuf_append(&one, &b, chunk, 1000, 1 << 20), 0);
	assert_int_equal(bytebuf_append(&two, &b, chunk, 1000, 1 << 20), 0);
	/* Growing `one` to 2048 would take 1024 more: 3072 > 3000. */
	assert_int_equal(bytebuf_append(&one, &b, chunk, 100, 1 << 20), -ENOBUFS);
	assert_int_equal(one.len, 1000);
	assert_int_equal(b.used, 2048);
	assert_int_equal(b.refused, 1);
	/* What fits in its buffer needs nothing from the budget. */
	assert_int_equal(bytebuf_append(&one, &b, chunk, 24, 1 << 20), 0);
	assert_int_equal(bytebuf_append(&three, &b, chunk, 1, 1 << 20), -ENOBUFS);
	bytebuf_free(&two, &b);
	assert_int_equal(bytebuf_append(&three, &b, chunk, 1, 1 << 20), 0);
	bytebuf_free(&one, &b);
	bytebuf_free(&three, &b);
	assert_int_equal(b.used, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grows_as_bytes_arrive),
		cmocka_unit_test(test_caller_limit),
		cmocka_unit_test(test_budget_spent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
