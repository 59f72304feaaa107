/* duration_test: the one duration syntax of the command lines, and its
 * variant for the agent's flags documented in milliseconds, where "5s"
 * must mean five seconds (not 5 ms, as atoi read it) and "300" stays
 * 300 ms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "duration.h"

static void test_duration(void **state)
{
	assert_int_equal(duration_ms("300ms"), 300);
	assert_int_equal(duration_ms("5s"), 5000);
	assert_int_equal(duration_ms("90"), 90000);
	assert_int_equal(duration_ms("10m"), 600000);
	assert_int_equal(duration_ms("1h"), 3600000);
	assert_int_equal(duration_ms("-1s"), -1);
	assert_int_equal(duration_ms("5x"), -1);
	assert_int_equal(duration_ms("1.5h"), -1);
	assert_int_equal(duration_ms(""), -1);
	assert_int_equal(duration_ms("99999999999999999999"), -1);
}

static void test_bare_ms(void **state)
{
	assert_int_equal(duration_ms_bare_ms("300"), 300);
	assert_int_equal(duration_ms_bare_ms("300000"), 300000);
	assert_int_equal(duration_ms_bare_ms("5s"), 5000);
	assert_int_equal(duration_ms_bare_ms("300ms"), 300);
	assert_int_equal(duration_ms_bare_ms("5m"), 300000);
	assert_int_equal(duration_ms_bare_ms("5x"), -1);
	assert_int_equal(duration_ms_bare_ms(""), -1);
	assert_int_equal(duration_ms_bare_ms("-300"), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duration),
		cmocka_unit_test(test_bare_ms),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
