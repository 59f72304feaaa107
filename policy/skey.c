/* skey: see skey.h. The hash was FNV-1a, a byte at a time: a multiply's
 * latency per byte, which was the largest part of a decision (the profile
 * in docs/benchmarks.md, "## Policy"); a word at a time it is an eighth. */
#include "skey.h"

#include <errno.h>
#include <string.h>

#include "spiffe.h"

#define SKEY_SEED 0x2d358dccaa6c78a5ULL

/* 8 bytes as a little-endian word whatever the host's order, so a key's
 * hash does not depend on it. */
static uint64_t skey_le64(const char *p)
{
	uint64_t w;
	memcpy(&w, p, sizeof(w));
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	w = __builtin_bswap64(w);
#endif
	return w;
}

/* A multiply spreads each word's bits upwards; the rotation brings the
 * well-mixed top down for the next word. */
static uint64_t skey_step(uint64_t h, uint64_t w)
{
	h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
	return h << 29 | h >> 35;
}

static uint64_t skey_final(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	return h ^ (h >> 33);
}

/* k[i..b) on top of h, a word at a time. The last, short word is read as
 * the 8 bytes that end at b (k[0..b) holds them for every key, all longer
 * than "spiffe://"), so nothing outside k[0..b) is read. */
static uint64_t skey_part(uint64_t h, const char *k, size_t i, size_t b)
{
	for (; i + 8 <= b; i += 8)
		h = skey_step(h, skey_le64(k + i));
	if (i < b) {
		uint64_t w = 0;
		if (b >= 8)
			w = skey_le64(k + b - 8) >> (8 * (8 - (b - i)));
		else
			for (size_t j = b; j-- > i;)
				w = w << 8 | (uint8_t)k[j];
		h = skey_step(h, w);
	}
	return h;
}

uint64_t skey_hash(const char *k, size_t len)
{
	const char *slash = memrchr(k, '/', len);
	size_t p = slash ? (size_t)(slash - k) + 1 : 0;

	return skey_final(skey_part(skey_part(SKEY_SEED, k, 0, p), k, p, len));
}

/* The bytes of a SPIFFE ID (common/spiffe.c; SPIFFE-ID 2.1 and 2.2). */
#define SKEY_TD	  1 /* a trust domain's: a-z 0-9 . - _ */
#define SKEY_PATH 2 /* a path segment's: those and A-Z */
static const uint8_t skey_class[256] = {
	['a' ... 'z'] = SKEY_TD | SKEY_PATH, ['0' ... '9'] = SKEY_TD | SKEY_PATH,
	['.'] = SKEY_TD | SKEY_PATH,	     ['-'] = SKEY_TD | SKEY_PATH,
	['_'] = SKEY_TD | SKEY_PATH,	     ['A' ... 'Z'] = SKEY_PATH,
};

#define SKEY_SCHEME_LEN (sizeof("spiffe://") - 1)

int skey_id_scan(const char *id, struct skey_id *out)
{
	size_t i = SKEY_SCHEME_LEN, last = SKEY_SCHEME_LEN;

	for (size_t k = 0; k < SKEY_SCHEME_LEN; k++) /* stops at a NUL: no call */
		if (id[k] != "spiffe://"[k])
			return -EINVAL;
	/* the trust domain: 1 to 255 of its bytes, then the end or a '/' */
	while (skey_class[(uint8_t)id[i]] & SKEY_TD)
		i++;
	if (i == SKEY_SCHEME_LEN || i - SKEY_SCHEME_LEN > SPIFFE_TD_MAX)
		return -EINVAL;
	/* segments: not empty (no "//", no trailing '/'), not "." or ".." */
	while (id[i] == '/') {
		size_t start = ++i;
		while (skey_class[(uint8_t)id[i]] & SKEY_PATH)
			i++;
		if (i == start || (id[start] == '.' &&
				   (i - start == 1 || (i - start == 2 && id[start + 1] == '.'))))
			return -EINVAL;
		last = start;
	}
	/* anything else (uppercase in the trust domain, '?', ':', ...) */
	if (id[i] || i > SPIFFE_ID_MAX)
		return -EINVAL;
	out->len = i;
	out->l_last = last;
	uint64_t h = skey_part(SKEY_SEED, id, 0, last);
	out->h_last = skey_final(h);
	out->h = skey_final(skey_part(h, id, last, i));
	return 0;
}
