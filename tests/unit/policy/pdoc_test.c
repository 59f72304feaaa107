/* pdoc_test: the policy YAML reader's resource bounds (policy/pdoc.c)
 * against files built to exhaust cinch-control or cinchctl.
 *
 * An alias bomb of a few KiB (a 4 KiB scalar aliased 65,536 times through
 * four nested lists: 256 MiB expanded, under the node bound) and a file of
 * two documents each within the budget but over it together must be
 * refused with the error at the node that crosses the budget; without the
 * bound they load (the assertions fail), and bigger bombs would exhaust
 * memory. A mapping of 99,990 keys (the node bound's most) must load within a CPU-time bound (the
 * pairwise duplicate check took minutes under ASan; CMake's TIMEOUT also
 * catches it), and its duplicate at the end is named at its line. The
 * duplicate reported is the first key in document order that repeats an
 * earlier one, not the first in sort order, and errors inside the pairs
 * before it, or inside its own value, still come first. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "pdoc.h"

/* A growing text. */
struct text {
	char *s;
	size_t len, cap;
};

static void __attribute__((format(printf, 2, 3))) add(struct text *t, const char *fmt, ...)
{
	va_list ap;
	char line[256];

	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	assert_true(n >= 0 && (size_t)n < sizeof(line));
	if (t->len + (size_t)n + 1 > t->cap) {
		t->cap = 2 * (t->len + (size_t)n + 1);
		t->s = realloc(t->s, t->cap);
		assert_non_null(t->s);
	}
	memcpy(t->s + t->len, line, (size_t)n + 1);
	t->len += (size_t)n;
}

/* A document: a: &a an `size`-byte scalar, then one list a level for
 * each of `fan` (0-terminated), each item an alias of the level before. */
static void bomb(struct text *t, size_t size, const int *fan)
{
	char *big = malloc(size + 1);

	assert_non_null(big);
	memset(big, 'x', size);
	big[size] = '\0';
	add(t, "a: &l0 ");
	for (size_t off = 0; off < size; off += 200)
		add(t, "%.200s", big + off);
	add(t, "\n");
	free(big);
	for (int l = 0; fan[l]; l++) {
		add(t, "l%d: &l%d [", l + 1, l + 1);
		for (int i = 0; i < fan[l]; i++)
			add(t, "%s*l%d", i ? ", " : "", l);
		add(t, "]\n");
	}
}

static int parse(const struct text *t, struct policy_error *err)
{
	struct pdoc **docs = NULL;
	size_t n = 0;
	int rc = pdoc_parse_buf("bomb.yaml", t->s, t->len, &docs, &n, err);

	if (rc < 0)
		print_message("%d:%d: %s\n", err->line, err->column, err->msg);

	for (size_t i = 0; i < n; i++)
		pdoc_free(docs[i]);
	free(docs);
	return rc;
}

static void test_alias_bomb(void **state)
{
	static const int fan16[] = {16, 16, 16, 16, 0}, fan10[] = {16, 16, 16, 10, 0};
	struct text t = {0};
	struct policy_error err;

	(void)state;
	/* 4 KiB x 16^4: 256 MiB from 5 KiB, 70,000 nodes */
	bomb(&t, 4096, fan16);
	assert_true(t.len < 8192);
	assert_int_equal(parse(&t, &err), -EINVAL);
	assert_string_equal(err.msg,
			    "document too large: aliases expand to more than 64 MiB in this file");
	assert_string_equal(err.file, "bomb.yaml");
	assert_int_equal(err.line, 1); /* the scalar whose copy crosses the budget */
	assert_int_equal(err.column, 4);

	/* 1 KiB x 16^3 x 10: 40 MiB, within the budget alone */
	t.len = 0;
	bomb(&t, 1024, fan10);
	assert_int_equal(parse(&t, &err), 0);
	/* twice in one file: the second document is refused */
	add(&t, "---\n");
	bomb(&t, 1024, fan10);
	assert_int_equal(parse(&t, &err), -EINVAL);
	assert_string_equal(err.msg,
			    "document too large: aliases expand to more than 64 MiB in this file");
	assert_int_equal(err.line, 7);
	free(t.s);
}

/* 2 nodes a pair and the mapping: as many as PDOC_MAX_NODES allows */
#define KEYS 99990

static void test_many_keys(void **state)
{
	struct text t = {0};
	struct policy_error err;
	struct pdoc **docs = NULL;
	size_t n = 0;

	(void)state;
	for (int i = 0; i < KEYS; i++)
		add(&t, "key%d: %d\n", i, i);
	clock_t start = clock();
	int rc = pdoc_parse_buf("keys.yaml", t.s, t.len, &docs, &n, &err);
	if (rc < 0)
		print_message("%d:%d: %s\n", err.line, err.column, err.msg);
	assert_int_equal(rc, 0);
	assert_int_equal(n, 1);
	assert_int_equal(docs[0]->kind, PDOC_MAP);
	assert_int_equal(docs[0]->n, KEYS);
	assert_string_equal(pdoc_get(docs[0], "key99989")->text, "99989");
	pdoc_free(docs[0]);
	free(docs);
	/* the pairwise check: 5e9 comparisons, minutes under ASan */
	assert_true((double)(clock() - start) / CLOCKS_PER_SEC < 10);

	add(&t, "key5: again\n");
	assert_int_equal(pdoc_parse_buf("keys.yaml", t.s, t.len, &docs, &n, &err), -EINVAL);
	assert_string_equal(err.msg, "duplicate key \"key5\"");
	assert_int_equal(err.line, KEYS + 1);
	assert_int_equal(err.column, 1);
	assert_true((double)(clock() - start) / CLOCKS_PER_SEC < 20);
	free(t.s);
}

static void expect_error(const char *yaml, const char *msg, int line, int column)
{
	struct text t = {0};
	struct policy_error err;

	add(&t, "%s", yaml);
	assert_int_equal(parse(&t, &err), -EINVAL);
	assert_string_equal(err.msg, msg);
	assert_int_equal(err.line, line);
	assert_int_equal(err.column, column);
	free(t.s);
}

static void test_first_duplicate(void **state)
{
	struct text t = {0};
	struct policy_error err;

	(void)state;
	/* z repeats before a does; b (sorting between) after both */
	expect_error("{z: 1, b: 1, a: 1, z: 2, a: 2, b: 2}", "duplicate key \"z\"", 1, 20);
	expect_error("{b: 1, a: 1, z: 1, a: 2, z: 2, b: 2}", "duplicate key \"a\"", 1, 20);
	/* the same past the small mappings, keys on their own lines */
	for (int i = 0; i < 40; i++)
		add(&t, "f%02d: %d\n", i, i);
	add(&t, "z: 1\nb: 1\na: 1\nf39: 2\nb: 2\na: 2\n");
	assert_int_equal(parse(&t, &err), -EINVAL);
	assert_string_equal(err.msg, "duplicate key \"f39\"");
	assert_int_equal(err.line, 44);
	free(t.s);
	/* a key is compared with earlier ones after its value is read, and
	 * before the pairs after it */
	expect_error("a: 1\na: {x: 1, x: 2}\n", "duplicate key \"x\"", 2, 11);
	expect_error("a: 1\na: 2\nb: \"\\0\"\n", "duplicate key \"a\"", 2, 1);
	expect_error("b: \"\\0\"\na: 1\na: 2\n", "a NUL byte inside a value", 1, 4);
	/* a key that is not a string before a duplicate */
	expect_error("a: 1\n[x]: 1\na: 2\n", "a mapping key must be a plain string", 1, 1);
	/* equal prefixes are not equal keys */
	struct pdoc **docs = NULL;
	size_t n = 0;
	assert_int_equal(pdoc_parse_buf("p.yaml", "{ab: 1, a: 2, abc: 3, \"\": 4}", 28, &docs, &n,
					&err),
			 0);
	assert_int_equal(docs[0]->n, 4);
	pdoc_free(docs[0]);
	free(docs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alias_bomb),
		cmocka_unit_test(test_many_keys),
		cmocka_unit_test(test_first_duplicate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
