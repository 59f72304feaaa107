/* verdict_fuzz: the caller agent's reader of the destination agent's
 * verdict frame (agent/verdict.h) on any bytes, fed in chunks whose size
 * the first byte picks. It must never read outside the input, take more
 * than it was given, nor accept a refusal that is not whole and clean: a
 * known code, a port 1..65535, a reason of 1..256 printable ASCII bytes. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "verdict.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct verdict_rx rx = {0};
	struct verdict_refusal r;
	const char *why = NULL;
	size_t step, off = 1;
	int rc = VERDICT_RX_MORE;

	if (size < 1)
		return 0;
	step = data[0] % 64 + 1;
	while (off < size && rc == VERDICT_RX_MORE) {
		size_t n = size - off < step ? size - off : step, used = n + 1;
		/* an exact-size copy, so ASan catches any read past it */
		uint8_t *chunk = malloc(n);
		if (!chunk)
			break;
		memcpy(chunk, data + off, n);
		rc = verdict_rx_feed(&rx, chunk, n, &used, &r, &why);
		free(chunk);
		if (used > n || (rc == VERDICT_RX_MORE && used != n))
			abort();
		off += used;
	}
	if (rc == VERDICT_RX_REFUSED) {
		size_t len = strlen(r.reason);
		if (r.code != VERDICT_POLICY_DENY || r.port == 0 || len == 0 ||
		    len > VERDICT_REASON_MAX)
			abort();
		for (size_t i = 0; i < len; i++)
			if (r.reason[i] < 0x20 || r.reason[i] > 0x7e)
				abort();
	} else if (rc < 0 && ((rc != -EBADMSG && rc != -ENOMEM) || !why)) {
		abort();
	}
	verdict_rx_cleanup(&rx);
	return 0;
}
