/* k8s.webhook_parse: the pure halves of the injection webhook, without
 * sockets: the HTTP/1.1 request-head parser (complete, partial, every
 * refusal: malformed lines, conflicting or bad Content-Length,
 * Transfer-Encoding, an oversized head) and webhook_answer's status for
 * each kind of request (the socket-level behaviour is k8s.webhook). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inject.h"
#include "webhook.h"

static int parse(const char *s, struct webhook_h1_head *h)
{
	return webhook_h1_parse(s, strlen(s), h);
}

static void test_h1_complete_head(void **state)
{
	struct webhook_h1_head h;
	const char *req = "POST /inject?timeout=10s HTTP/1.1\r\n"
			  "Host: cinch-control.cinch-system.svc\r\n"
			  "content-type:  application/json \r\n"
			  "Content-Length: 42\r\n"
			  "Expect: 100-continue\r\n\r\n{\"body\":";

	assert_int_equal(parse(req, &h), 0);
	assert_string_equal(h.method, "POST");
	assert_string_equal(h.path, "/inject?timeout=10s");
	assert_string_equal(h.ctype, "application/json");
	assert_int_equal(h.clen, 42);
	assert_true(h.expect_continue);
	assert_int_equal(h.head_len, strstr(req, "{") - req);

	assert_int_equal(parse("GET /x HTTP/1.0\r\n\r\n", &h), 0);
	assert_int_equal(h.clen, -1);
	assert_string_equal(h.ctype, "");
	assert_false(h.expect_continue);
}

static void test_h1_partial_and_refused(void **state)
{
	static const struct {
		const char *req;
		int want;
	} cases[] = {
		{"POST /inject HTTP/1.1\r\nContent-Length: 2\r\n", -EAGAIN},
		{"POST /inject HTTP/1.1\r\n\r", -EAGAIN},
		{"", -EAGAIN},
		{"POST /inject HTTP/2.0\r\n\r\n", 400},
		{"POST inject HTTP/1.1\r\n\r\n", 400},
		{"POST  /inject HTTP/1.1\r\n\r\n", 400},
		{"PO(ST /inject HTTP/1.1\r\n\r\n", 400},
		{"POST /in ject HTTP/1.1\r\n\r\n", 400},
		{"POST /inject HTTP/1.1\r\nno colon\r\n\r\n", 400},
		{"POST /inject HTTP/1.1\r\n folded: x\r\n\r\n", 400},
		{"POST /inject HTTP/1.1\r\nBad Name: x\r\n\r\n", 400},
		{"POST /inject HTTP/1.1\r\nX: a\nb\r\n\r\n", 400},
		{"POST /inject HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
		{"POST /inject HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400},
		{"POST /inject HTTP/1.1\r\nContent-Length: 9999999999999999\r\n\r\n", 400},
		{"POST /inject HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
		{"POST /inject HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct webhook_h1_head h;
		print_message("%zu: %s\n", i, cases[i].req);
		assert_int_equal(parse(cases[i].req, &h), cases[i].want);
	}
}

static void test_h1_head_limit(void **state)
{
	struct webhook_h1_head h;
	char *big = malloc(WEBHOOK_MAX_HEAD + 64);

	assert_non_null(big);
	memset(big, 'a', WEBHOOK_MAX_HEAD + 64);
	memcpy(big, "POST /inject HTTP/1.1\r\nX: ", 26);
	assert_int_equal(webhook_h1_parse(big, WEBHOOK_MAX_HEAD - 1, &h), -EAGAIN);
	assert_int_equal(webhook_h1_parse(big, WEBHOOK_MAX_HEAD, &h), 431);
	/* The end of the head just past the limit is not looked for. */
	memcpy(big + WEBHOOK_MAX_HEAD - 2, "\r\n\r\n", 4);
	assert_int_equal(webhook_h1_parse(big, WEBHOOK_MAX_HEAD + 2, &h), 431);
	free(big);
}

static int answer(const char *method, const char *path, const char *ctype, const char *body,
		  char **out)
{
	struct inject_config cfg;
	const char *type;
	size_t len;
	int status;

	inject_config_defaults(&cfg);
	assert_int_equal(webhook_answer(&cfg, method, path, ctype, body, strlen(body), &status,
					&type, out, &len),
			 0);
	assert_int_equal(strlen(*out), len);
	assert_string_equal(type, status == 200 ? "application/json" : "text/plain; charset=utf-8");
	return status;
}

static void test_answer_statuses(void **state)
{
	static const char review[] =
		"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\","
		"\"request\":{\"uid\":\"u-1\",\"kind\":{\"group\":\"\",\"version\":\"v1\","
		"\"kind\":\"Pod\"},\"operation\":\"CREATE\",\"namespace\":\"shop\","
		"\"object\":{\"metadata\":{\"generateName\":\"web-\"},"
		"\"spec\":{\"containers\":[{\"name\":\"web\",\"image\":\"x\"}]}}}}";
	static const struct {
		const char *method, *path, *ctype, *body;
		int want;
		const char *text;
	} cases[] = {
		{"POST", "/inject?timeout=10s", "application/json", review, 200, "\"uid\":\"u-1\""},
		{"POST", "/inject", NULL, review, 200, "\"patch\""},
		{"POST", "/inject", "application/json; charset=utf-8", review, 200,
		 "\"allowed\":true"},
		{"POST", "/inject", "application/json", "{", 400, "not a JSON document"},
		{"POST", "/inject", "application/json", "{\"kind\":\"Pod\"}", 400,
		 "not an admission.k8s.io/v1 AdmissionReview"},
		{"GET", "/inject", NULL, "", 405, "POST /inject"},
		{"POST", "/injected", "application/json", review, 404, "not found"},
		{"POST", "/", "application/json", review, 404, "not found"},
		{"POST", "/inject", "application/jsonx", review, 415, "application/json"},
		{"POST", "/inject", "text/plain", review, 415, "application/json"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *out = NULL;
		print_message("%zu: %s %s\n", i, cases[i].method, cases[i].path);
		assert_int_equal(
			answer(cases[i].method, cases[i].path, cases[i].ctype, cases[i].body, &out),
			cases[i].want);
		if (!strstr(out, cases[i].text))
			fail_msg("answer %s lacks %s", out, cases[i].text);
		free(out);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_h1_complete_head),
		cmocka_unit_test(test_h1_partial_and_refused),
		cmocka_unit_test(test_h1_head_limit),
		cmocka_unit_test(test_answer_statuses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
