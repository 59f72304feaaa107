/* localaddr_test: the comparisons the proxy's accept checks rest on
 * (agent/localaddr.h): an IPv4-mapped address is the IPv4 one, loopback in
 * every spelling, and the cached list of the namespace's own addresses
 * (read from the kernel: this process's loopback is always in it, and
 * 127.0.0.1 is local but never "own" unless loopback is allowed). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "localaddr.h"

static struct sockaddr_storage addr(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		ss.ss_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons(port);
	} else {
		assert_int_equal(inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)&ss)->sin6_addr),
				 1);
		ss.ss_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
	}
	return ss;
}
#define SA(ss) ((const struct sockaddr *)&(ss))

static void test_same(void **state)
{
	struct sockaddr_storage v4 = addr("10.1.2.3", 8080), mapped = addr("::ffff:10.1.2.3", 8080),
				other_port = addr("10.1.2.3", 15001), v6 = addr("fd00::1", 8080),
				other = addr("10.1.2.4", 8080);
	(void)state;
	assert_true(localaddr_same(SA(v4), SA(mapped), 1));
	assert_true(localaddr_same(SA(mapped), SA(v4), 1));
	assert_true(localaddr_same(SA(v4), SA(other_port), 0));
	assert_false(localaddr_same(SA(v4), SA(other_port), 1));
	assert_false(localaddr_same(SA(v4), SA(other), 0));
	assert_false(localaddr_same(SA(v4), SA(v6), 0));
	struct sockaddr_storage none = {0};
	assert_false(localaddr_same(SA(none), SA(none), 0)); /* no family: never the same */
}

static void test_loopback(void **state)
{
	static const char *const lo[] = {"127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"};
	static const char *const not_lo[] = {"10.0.0.1", "::", "fd00::1", "::ffff:10.0.0.1",
					     "128.0.0.1"};
	(void)state;
	for (size_t i = 0; i < sizeof(lo) / sizeof(lo[0]); i++) {
		struct sockaddr_storage a = addr(lo[i], 1);
		if (!localaddr_is_loopback(SA(a)))
			fail_msg("%s not loopback", lo[i]);
	}
	for (size_t i = 0; i < sizeof(not_lo) / sizeof(not_lo[0]); i++) {
		struct sockaddr_storage a = addr(not_lo[i], 1);
		if (localaddr_is_loopback(SA(a)))
			fail_msg("%s loopback", not_lo[i]);
	}
}

static void test_match(void **state)
{
	struct localaddr la = {0};
	struct sockaddr_storage lo = addr("127.0.0.1", 8080), far = addr("192.0.2.1", 8080);
	(void)state;
	assert_true(localaddr_match(&la, 5000, SA(lo), 1));
	assert_false(localaddr_match(&la, 5000, SA(lo), 0));  /* never "own" */
	assert_false(localaddr_match(&la, 5000, SA(far), 1)); /* TEST-NET-1: nobody's */
	assert_true(la.valid);
	assert_true(la.n >= 1); /* at least the loopback's */
	/* a non-loopback address the list holds is own (the test may run
	 * where the loopback is the only interface: then there is none) */
	for (size_t i = 0; i < la.n; i++)
		if (!localaddr_is_loopback(SA(la.a[i])))
			assert_true(localaddr_match(&la, 5000, SA(la.a[i]), 0));
	/* the list is read again only once it is older than its maximum age */
	la.n = 0;
	localaddr_match(&la, 5000 + LOCALADDR_MAX_AGE_MS - 1, SA(far), 0);
	assert_int_equal(la.n, 0);
	localaddr_match(&la, 5000 + LOCALADDR_MAX_AGE_MS, SA(far), 0);
	assert_true(la.n >= 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same),
		cmocka_unit_test(test_loopback),
		cmocka_unit_test(test_match),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
