/* spiffe_test: SPIFFE ID validation against the SPIFFE-ID standard's rules,
 * one table row per rule, valid and invalid, with the reason checked so an
 * error message stays precise. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "spiffe.h"

struct id_case {
	const char *id;
	const char *why; /* NULL: valid */
};

static const struct id_case id_cases[] = {
	{ "spiffe://cluster.local/ns/shop/sa/web", NULL },
	{ "spiffe://example.org", NULL },
	{ "spiffe://a_b-c.d/X.y-z_0", NULL },
	{ "http://cluster.local/ns/a/sa/b", "does not start with spiffe://" },
	{ "SPIFFE://cluster.local/x", "does not start with spiffe://" },
	{ "spiffe://", "trust domain is empty" },
	{ "spiffe:///ns/a", "trust domain is empty" },
	{ "spiffe://Cluster.local/x", "trust domain must be lowercase" },
	{ "spiffe://cluster.local:8080/x", "trust domain may only hold a-z, 0-9, '.', '-' and '_'" },
	{ "spiffe://user@td/x", "trust domain may only hold a-z, 0-9, '.', '-' and '_'" },
	{ "spiffe://td/", "path has a trailing '/'" },
	{ "spiffe://td/a/", "path has a trailing '/'" },
	{ "spiffe://td//a", "path has an empty segment" },
	{ "spiffe://td/a/./b", "path has a '.' or '..' segment" },
	{ "spiffe://td/a/..", "path has a '.' or '..' segment" },
	{ "spiffe://td/a?x=1", "path may only hold A-Z, a-z, 0-9, '.', '-', '_' and '/'" },
	{ "spiffe://td/a#frag", "path may only hold A-Z, a-z, 0-9, '.', '-', '_' and '/'" },
	{ "spiffe://td/a%20b", "path may only hold A-Z, a-z, 0-9, '.', '-', '_' and '/'" },
	{ "spiffe://td/a/*", "path may only hold A-Z, a-z, 0-9, '.', '-', '_' and '/'" },
};

static void test_validate_table(void **state)
{
	for (size_t i = 0; i < sizeof(id_cases) / sizeof(id_cases[0]); i++) {
		const char *why = NULL;
		int rc = spiffe_id_validate(id_cases[i].id, strlen(id_cases[i].id), &why);
		print_message("case %zu: %s\n", i, id_cases[i].id);
		if (!id_cases[i].why) {
			assert_int_equal(rc, 0);
		} else {
			assert_int_equal(rc, -EINVAL);
			assert_string_equal(why, id_cases[i].why);
		}
	}
}

static void test_length_limits(void **state)
{
	static char id[SPIFFE_ID_MAX + 2];
	const char *why = NULL;

	/* A 2048-byte ID is valid, 2049 bytes is not (SPIFFE-ID 2.3). */
	memset(id, 'a', sizeof(id) - 1);
	memcpy(id, "spiffe://td/", 12);
	assert_int_equal(spiffe_id_validate(id, SPIFFE_ID_MAX, &why), 0);
	assert_int_equal(spiffe_id_validate(id, SPIFFE_ID_MAX + 1, &why), -EINVAL);
	assert_string_equal(why, "longer than 2048 bytes");

	char td[SPIFFE_TD_MAX + 2];
	memset(td, 'a', sizeof(td));
	assert_int_equal(spiffe_td_validate(td, SPIFFE_TD_MAX, &why), 0);
	assert_int_equal(spiffe_td_validate(td, SPIFFE_TD_MAX + 1, &why), -EINVAL);
	assert_string_equal(why, "trust domain is longer than 255 bytes");
}

static void test_embedded_nul_rejected(void **state)
{
	/* The length, not the NUL, bounds the input: a NUL inside is invalid. */
	static const char id[] = "spiffe://td/ns/a\0/sa/b";
	assert_int_equal(spiffe_id_validate(id, sizeof(id) - 1, NULL), -EINVAL);
}

static void test_parse_workload(void **state)
{
	static const char id[] = "spiffe://cluster.local/ns/shop/sa/web-1";
	struct spiffe_workload w;

	assert_int_equal(spiffe_id_parse_workload(id, strlen(id), &w, NULL), 0);
	assert_int_equal(w.td_len, strlen("cluster.local"));
	assert_memory_equal(w.td, "cluster.local", w.td_len);
	assert_int_equal(w.ns_len, 4);
	assert_memory_equal(w.ns, "shop", 4);
	assert_int_equal(w.sa_len, 5);
	assert_memory_equal(w.sa, "web-1", 5);

	static const char *const bad[] = {
		"spiffe://td/ns/shop",
		"spiffe://td/ns/shop/sa",
		"spiffe://td/ns/shop/sa/web/extra",
		"spiffe://td/sa/web/ns/shop",
		"spiffe://td/nsx/shop/sa/web",
		"spiffe://td",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *why = NULL;
		assert_int_equal(spiffe_id_parse_workload(bad[i], strlen(bad[i]), &w, &why), -EINVAL);
		assert_non_null(strstr(why, "not of the form"));
	}
}

static void test_format(void **state)
{
	char buf[64];

	assert_int_equal(spiffe_id_format(buf, sizeof(buf), "cluster.local", "db", "pg"), 0);
	assert_string_equal(buf, "spiffe://cluster.local/ns/db/sa/pg");
	assert_int_equal(spiffe_id_format(buf, 10, "cluster.local", "db", "pg"), -ENOSPC);
	assert_int_equal(spiffe_id_format(buf, sizeof(buf), "cluster.local", "d/b", "pg"), -EINVAL);
	assert_int_equal(spiffe_id_format(buf, sizeof(buf), "Cluster", "db", "pg"), -EINVAL);
	assert_int_equal(spiffe_id_format(buf, sizeof(buf), "td", "", "pg"), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_validate_table),
		cmocka_unit_test(test_length_limits),
		cmocka_unit_test(test_embedded_nul_rejected),
		cmocka_unit_test(test_parse_workload),
		cmocka_unit_test(test_format),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
