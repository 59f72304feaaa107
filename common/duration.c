/* duration: see duration.h. */
#include "duration.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

long long duration_ms(const char *s)
{
	static const struct {
		const char *unit;
		long long ms;
	} units[] = {{"ms", 1}, {"", 1000}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
	char *end;
	long long v;

	if (!s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno)
		return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (!strcmp(end, units[i].unit))
			return v > LLONG_MAX / units[i].ms ? -1 : v * units[i].ms;
	return -1;
}

long long duration_ms_bare_ms(const char *s)
{
	long long ms = duration_ms(s);

	return ms >= 0 && s[strspn(s, "0123456789")] == '\0' ? ms / 1000 : ms;
}
