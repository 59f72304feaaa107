/* adminhttp_fuzz: the admin port's request-head parser on any bytes. It
 * must never read outside the buffer, and what it accepts must be a GET or
 * HEAD with a printable path that starts with '/'. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adminhttp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char method[8], path[256];
	/* An exact-size copy, so ASan catches any read past the input. */
	char *buf = malloc(size ? size : 1);

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	int rc = adminhttp_parse(buf, size, method, sizeof(method), path, sizeof(path));
	if (rc == 0) {
		if ((strcmp(method, "GET") && strcmp(method, "HEAD")) || path[0] != '/')
			abort();
		for (const char *p = path; *p; p++)
			if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '?')
				abort();
	} else if (rc != -EAGAIN && rc != -EBADMSG && rc != -E2BIG && rc != -ENOSYS) {
		abort();
	}
	free(buf);
	return 0;
}
