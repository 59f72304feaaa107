/* logline_fuzz: the access-log line scanner of `cinchctl policy whatif`
 * (cinchctl/ctl_logline.h) on any bytes, in an exact-size copy so ASan
 * catches a read or a write past the line. It must never accept what it
 * promises to refuse: each value it keeps lies inside the line and is
 * printable ASCII up to its NUL; a failure names a column inside the
 * line (or one past its end). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_logline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const fields[] = {"event", "direction", "src", "dst",
					     "peer_id", "verdict", "rule", "end"};
	struct ctl_logline x;
	char *line = malloc(size ? size : 1);

	if (!line)
		return 0;
	memcpy(line, data, size);
	int rc = ctl_logline_scan(&x, line, size, fields, 8);
	if (rc < 0) {
		if (rc != -EINVAL || !x.why || x.column < 1 || x.column > size + 1)
			abort();
	} else {
		for (size_t i = 0; i < 8; i++) {
			const char *v = x.v[i];
			if (!v)
				continue;
			if (v < line || v >= line + size)
				abort();
			for (; *v; v++)
				if (v >= line + size || *v < 0x20 || *v > 0x7e)
					abort();
		}
	}
	free(line);
	return 0;
}
