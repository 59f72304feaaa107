/* numarg: see numarg.h. strtoll with errno, end and range checked, and a
 * leading sign or space refused before strtoll sees it (strtoll skips
 * spaces and takes "-" for unsigned ranges). */
#include "numarg.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int numarg_parse(const char *s, long long min, long long max, long long *out)
{
	const char *digits = s;
	char *end;
	long long v;

	if (!s)
		return -EINVAL;
	if (*digits == '-' && min < 0)
		digits++;
	if (!isdigit((unsigned char)*digits))
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (*end)
		return -EINVAL;
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int numarg_flag(const char *prog, const char *flag, const char *s, long long min, long long max,
		long long *out)
{
	int rc = numarg_parse(s, min, max, out);

	if (rc < 0)
		fprintf(stderr,
			"%s: --%s \"%s\": expected a whole number from %lld to %lld\n"
			"Run '%s --help' for usage.\n",
			prog, flag, s ? s : "", min, max, prog);
	return rc;
}

int numarg_port(const char *prog, const char *flag, const char *s, uint16_t *out)
{
	long long v;
	int rc = numarg_flag(prog, flag, s, 1, 65535, &v);

	if (rc == 0)
		*out = (uint16_t)v;
	return rc;
}
