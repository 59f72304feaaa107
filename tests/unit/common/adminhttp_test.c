/* adminhttp_test: the request-head parser, case by case (the server itself
 * is exercised through cinch-control's admin port in control.grpc_e2e). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "adminhttp.h"

static void test_parse_table(void **state)
{
	static const struct {
		const char *in;
		int rc;
		const char *method, *path;
	} cases[] = {
		{"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n", 0, "GET", "/metrics"},
		{"HEAD /ready HTTP/1.0\r\n\r\n", 0, "HEAD", "/ready"},
		{"GET /ready?verbose=1 HTTP/1.1\r\n\r\n", 0, "GET", "/ready"},
		{"GET /ready HTTP/1.1\r\nHost: a\r\n", -EAGAIN, NULL, NULL},
		{"", -EAGAIN, NULL, NULL},
		{"POST /bundle HTTP/1.1\r\n\r\n", -ENOSYS, NULL, NULL},
		{"GET metrics HTTP/1.1\r\n\r\n", -EBADMSG, NULL, NULL},
		{"GET /a b HTTP/1.1\r\n\r\n", -EBADMSG, NULL, NULL},
		{"GET / HTTP/2.0\r\n\r\n", -EBADMSG, NULL, NULL},
		{"GET /\x7f HTTP/1.1\r\n\r\n", -EBADMSG, NULL, NULL},
		{"GETTING-LONG-METHOD / HTTP/1.1\r\n\r\n", -EBADMSG, NULL, NULL},
		{" / HTTP/1.1\r\n\r\n", -EBADMSG, NULL, NULL},
	};
	char method[8], path[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = adminhttp_parse(cases[i].in, strlen(cases[i].in), method, sizeof(method),
					 path, sizeof(path));
		if (rc != cases[i].rc)
			fail_msg("case %zu (%s): %d, want %d", i, cases[i].in, rc, cases[i].rc);
		if (rc == 0) {
			assert_string_equal(method, cases[i].method);
			assert_string_equal(path, cases[i].path);
		}
	}
}

static void test_limits(void **state)
{
	static char big[ADMINHTTP_MAX_HEAD + 16];
	char method[8], path[16];

	memset(big, 'a', sizeof(big));
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	assert_int_equal(
		adminhttp_parse(big, sizeof(big), method, sizeof(method), path, sizeof(path)),
		-E2BIG);
	/* A path longer than the caller's buffer is refused, not cut. */
	const char *lp = "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n";
	assert_int_equal(
		adminhttp_parse(lp, strlen(lp), method, sizeof(method), path, sizeof(path)),
		-EBADMSG);
	/* A NUL inside the head is malformed. */
	const char nul[] = "GET /a\0b HTTP/1.1\r\n\r\n";
	assert_int_equal(
		adminhttp_parse(nul, sizeof(nul) - 1, method, sizeof(method), path, sizeof(path)),
		-EBADMSG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_table),
		cmocka_unit_test(test_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
