/* numarg_test: the one parser of whole numbers on the command lines. What
 * atoi took silently is refused: trailing text ("12abc"), nothing (""),
 * a sign on an unsigned range ("-1", "+5"), leading space, values out of
 * range (70000 for a port, which a uint16_t cast wrapped to 4464) and
 * overflow; what is right is taken whole. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "numarg.h"

static void test_parse(void **state)
{
	long long v = 0;

	assert_int_equal(numarg_parse("15001", 1, 65535, &v), 0);
	assert_int_equal(v, 15001);
	assert_int_equal(numarg_parse("0", 0, 10, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(numarg_parse("-5", -10, 10, &v), 0);
	assert_int_equal(v, -5);
	v = 42;
	assert_int_equal(numarg_parse("12abc", 0, 100, &v), -EINVAL);
	assert_int_equal(numarg_parse("", 0, 100, &v), -EINVAL);
	assert_int_equal(numarg_parse(NULL, 0, 100, &v), -EINVAL);
	assert_int_equal(numarg_parse("-1", 0, 100, &v), -EINVAL);
	assert_int_equal(numarg_parse("+5", 0, 100, &v), -EINVAL);
	assert_int_equal(numarg_parse(" 5", 0, 100, &v), -EINVAL);
	assert_int_equal(numarg_parse("5 ", 0, 100, &v), -EINVAL);
	assert_int_equal(numarg_parse("0x10", 0, 100, &v), -EINVAL);
	assert_int_equal(numarg_parse("70000", 1, 65535, &v), -ERANGE);
	assert_int_equal(numarg_parse("0", 1, 65535, &v), -ERANGE);
	assert_int_equal(numarg_parse("99999999999999999999", 0, 100, &v), -ERANGE);
	assert_int_equal(numarg_parse("-99999999999999999999", -100, 100, &v), -ERANGE);
	assert_int_equal(v, 42); /* untouched on refusal */
}

static void test_port(void **state)
{
	uint16_t port = 7;

	assert_int_equal(numarg_port("test", "port", "65535", &port), 0);
	assert_int_equal(port, 65535);
	assert_int_equal(numarg_port("test", "port", "65536", &port), -ERANGE);
	assert_int_equal(numarg_port("test", "port", "80x", &port), -EINVAL);
	assert_int_equal(port, 65535);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_port),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
