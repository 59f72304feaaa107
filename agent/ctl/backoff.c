/* backoff: see backoff.h. */
#include "backoff.h"

#include <stdint.h>

#include <openssl/rand.h>

void backoff_reset(struct backoff *b)
{
	b->cur_ms = BACKOFF_MIN_MS;
}

unsigned backoff_next(struct backoff *b)
{
	uint32_t r = 0;
	unsigned delay;

	if (b->cur_ms < BACKOFF_MIN_MS)
		b->cur_ms = BACKOFF_MIN_MS;
	RAND_bytes((uint8_t *)&r, sizeof(r));
	delay = b->cur_ms / 2 + r % (b->cur_ms / 2 + 1);
	b->cur_ms = b->cur_ms > BACKOFF_MAX_MS / 2 ? BACKOFF_MAX_MS : b->cur_ms * 2;
	return delay;
}
