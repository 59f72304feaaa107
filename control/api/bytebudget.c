/* bytebudget: see bytebudget.h. */
#include "api/bytebudget.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BYTEBUF_MIN_CAP 1024

int bytebuf_append(struct bytebuf *buf, struct bytebudget *b, const void *data, size_t n,
		   size_t max)
{
	size_t want = buf->len + n;

	if (want < buf->len || want > max)
		return -E2BIG;
	if (want > buf->cap) {
		size_t cap = buf->cap ? buf->cap : BYTEBUF_MIN_CAP;
		while (cap < want)
			cap *= 2;
		if (cap > max)
			cap = max;
		size_t grow = cap - buf->cap;
		if (b->used + grow > b->limit || b->used + grow < b->used) {
			b->refused++;
			return -ENOBUFS;
		}
		uint8_t *p = realloc(buf->data, cap);
		if (!p)
			return -ENOMEM;
		b->used += grow;
		if (b->used > b->peak)
			b->peak = b->used;
		buf->data = p;
		buf->cap = cap;
	}
	if (n)
		memcpy(buf->data + buf->len, data, n);
	buf->len = want;
	return 0;
}

void bytebuf_free(struct bytebuf *buf, struct bytebudget *b)
{
	b->used -= buf->cap;
	free(buf->data);
	*buf = (struct bytebuf){0};
}
