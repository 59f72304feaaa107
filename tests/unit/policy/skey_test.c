/* skey_test: the decision's one-pass reading of a caller's ID
 * (policy/skey.c) against spiffe_id_validate(), the reference.
 *
 * skey_id_scan() replaced spiffe_id_validate() on the evaluator's hot
 * path; if it accepted one string the reference refuses, an identity rule
 * could admit a caller that is not a SPIFFE ID (a '.' or ".." segment, an
 * uppercase trust domain...). So every case asks both and wants the same
 * answer: a list of tricky IDs, the length limits, then a few hundred
 * thousand random strings and one-byte mutations of valid IDs, each in a
 * buffer of its exact size (ASan sees any read past the NUL). For an
 * accepted ID the length, last '/' and both hashes must be what
 * skey_hash() gives for those keys, at any alignment. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "skey.h"
#include "spiffe.h"

/* Both readings of `id` (copied into an exact-size buffer at offset
 * `shift`): the number of disagreements (0 or 1), printed. */
static int check_one(const char *id, size_t shift)
{
	size_t len = strlen(id);
	char *buf = malloc(shift + len + 1);
	struct skey_id k;
	int bad = 0;

	assert_non_null(buf);
	memcpy(buf + shift, id, len + 1);
	const char *s = buf + shift;
	int want = spiffe_id_validate(s, len, NULL) == 0;
	int got = skey_id_scan(s, &k) == 0;
	if (got != want) {
		print_error("%.80s%s: scan says %s, spiffe_id_validate %s\n", s,
			    len > 80 ? "..." : "", got ? "valid" : "invalid",
			    want ? "valid" : "invalid");
		bad = 1;
	} else if (got) {
		const char *slash = strrchr(s, '/');
		size_t l_last = (size_t)(slash - s) + 1;
		if (k.len != len || k.l_last != l_last || k.h != skey_hash(s, len) ||
		    k.h_last != skey_hash(s, l_last)) {
			print_error("%.80s: len %zu/%zu, last %zu/%zu, or a hash differs\n", s,
				    k.len, len, k.l_last, l_last);
			bad = 1;
		}
	}
	free(buf);
	return bad;
}

static void test_tricky(void **state)
{
	static const char *const ids[] = {
		"",
		"s",
		"spiffe",
		"spiffe:",
		"spiffe:/",
		"spiffe://",
		"spiffe:///",
		"spiffe:///ns",
		"spiffe://a",
		"spiffe://a/",
		"spiffe://a/b",
		"spiffe://a/b/",
		"spiffe://a//b",
		"spiffe://a/b//",
		"spiffe://A/b",
		"spiffe://aB/b",
		"spiffe://a/B",
		"spiffe://cluster.local/ns/shop/sa/web",
		"spiffe://cluster.local/ns/Shop/sa/WEB",
		"spiffe://a_b-c.d/E_f-G.h/0-9",
		"spiffe://.",
		"spiffe://..",
		"spiffe://./a",
		"spiffe://../a",
		"spiffe://a/.",
		"spiffe://a/..",
		"spiffe://a/...",
		"spiffe://a/.b",
		"spiffe://a/b.",
		"spiffe://a/..b",
		"spiffe://a/./b",
		"spiffe://a/../b",
		"spiffe://a/b/.",
		"spiffe://a/b/..",
		"spiffe://a/-",
		"spiffe://a/_",
		"spiffe://-/_",
		"SPIFFE://a/b",
		"Spiffe://a/b",
		"spiffe:/a/b",
		"spiffe:a/b",
		"spiffex://a/b",
		" spiffe://a/b",
		"spiffe://a/b ",
		"spiffe://a b/c",
		"spiffe://a/b?x=1",
		"spiffe://a/b#frag",
		"spiffe://a:8443/b",
		"spiffe://user@a/b",
		"spiffe://a/b%2Fc",
		"spiffe://a/b\\c",
		"spiffe://a/b\x80",
		"spiffe://a\xff/b",
		"spiffe://a/\xc3\xa9",
		"spiffe://a/b\t",
		"spiffe://a/b\n",
		"spiffe://a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p",
		"spiffe://a/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
		"spiffe://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};
	int bad = 0;
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		for (size_t shift = 0; shift < 8; shift++)
			bad += check_one(ids[i], shift);
	assert_int_equal(bad, 0);
}

/* The trust domain's 255 bytes and the ID's 2048, each side of the limit,
 * with and without a path. */
static void test_limits(void **state)
{
	char id[SPIFFE_ID_MAX + 64];
	int bad = 0;

	for (size_t td = 250; td <= 260; td++) {
		memcpy(id, "spiffe://", 9);
		memset(id + 9, 't', td);
		id[9 + td] = 0;
		bad += check_one(id, 0);
		memcpy(id + 9 + td, "/ns/a", 6);
		bad += check_one(id, 1);
		id[9 + td - 1] = 'T';
		bad += check_one(id, 0);
	}
	for (size_t len = SPIFFE_ID_MAX - 3; len <= SPIFFE_ID_MAX + 3; len++) {
		memcpy(id, "spiffe://td/", 12);
		memset(id + 12, 'p', len - 12);
		id[len] = 0;
		bad += check_one(id, 0);
		id[len - 4] = '/'; /* a last segment of three bytes */
		bad += check_one(id, 3);
		id[len - 4] = 'p';
		memcpy(id + len - 3, "/..", 3); /* a last segment ".." */
		bad += check_one(id, 0);
	}
	assert_int_equal(bad, 0);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Random strings over the bytes that matter, behind prefixes that get
 * past the scheme; and valid IDs with one byte changed, dropped or added. */
static void test_random(void **state)
{
	static const char *const heads[] = {
		"",
		"spiffe:/",
		"spiffe://",
		"spiffe://a",
		"spiffe://cluster.local/",
		"spiffe://cluster.local/ns/",
		"spiffe://Cluster/",
	};
	static const char bytes[] = "aZz09./-_:%?#@ \x80\xff/..//";
	static const char *const valid[] = {
		"spiffe://cluster.local/ns/shop/sa/web",
		"spiffe://example.org/a/b.c/d-e/f_g",
		"spiffe://x.y/.a/..b/c./d..",
	};
	char s[128];
	int bad = 0;

	for (int n = 0; n < 200000 && bad < 10; n++) {
		const char *h = heads[rng() % (sizeof(heads) / sizeof(heads[0]))];
		size_t len = strlen(h), extra = rng() % 24;
		memcpy(s, h, len);
		for (size_t i = 0; i < extra; i++)
			s[len++] = bytes[rng() % (sizeof(bytes) - 1)];
		s[len] = 0;
		bad += check_one(s, rng() % 8);
	}
	for (int n = 0; n < 100000 && bad < 10; n++) {
		const char *v = valid[rng() % (sizeof(valid) / sizeof(valid[0]))];
		size_t len = strlen(v), at = rng() % (len + 1);
		char c = bytes[rng() % (sizeof(bytes) - 1)];
		memcpy(s, v, len + 1);
		switch (rng() % 3) {
		case 0: /* change */
			if (at < len)
				s[at] = c;
			break;
		case 1: /* drop */
			memmove(s + at, s + at + (at < len), len + 1 - at - (at < len));
			break;
		default: /* add */
			memmove(s + at + 1, s + at, len + 1 - at);
			s[at] = c;
		}
		bad += check_one(s, rng() % 8);
	}
	assert_int_equal(bad, 0);
}

/* The hash is of the bytes only: not of where they are, nor of what
 * follows them. */
static void test_hash(void **state)
{
	const char *id = "spiffe://cluster.local/ns/shop/sa/web";
	size_t len = strlen(id);
	char buf[128];
	uint64_t h = skey_hash(id, len), h5 = skey_hash(id, 5);

	for (size_t shift = 0; shift < 16; shift++) {
		memset(buf, 'x', sizeof(buf));
		memcpy(buf + shift, id, len);
		assert_true(skey_hash(buf + shift, len) == h);
		assert_true(skey_hash(buf + shift, 5) == h5);
	}
	/* a key and its prefix, and keys one byte apart, hash apart */
	assert_true(skey_hash(id, len) != skey_hash(id, len - 1));
	assert_true(skey_hash("spiffe://a/ns/b/sa/", 19) != skey_hash("spiffe://a/ns/c/sa/", 19));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tricky),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_hash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
