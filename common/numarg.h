/* numarg: the one parser of whole numbers given on Cinch's command lines
 * and in its small state files (ports, counts, limits, user IDs): decimal
 * digits only, optionally signed when min < 0, nothing after them, within
 * [min, max]. atoi and bare strtol accept "12abc" as 12, "" as 0 and wrap
 * 70000 into a 16-bit port; this refuses all three with a clear error. */
#ifndef CINCH_NUMARG_H
#define CINCH_NUMARG_H

#include <stdint.h>

/* 0 and *out; -EINVAL when s is not a whole number (empty, other
 * characters, a sign where min >= 0), -ERANGE when outside [min, max]. */
int numarg_parse(const char *s, long long min, long long max, long long *out)
	__attribute__((warn_unused_result));

/* The same for the flag `--flag` of `prog` (e.g. "cinch-agent run"); on
 * refusal prints two lines to stderr, the grammar of every Cinch binary:
 *   prog: --flag "s": expected a whole number from MIN to MAX
 *   Run 'prog --help' for usage. */
int numarg_flag(const char *prog, const char *flag, const char *s, long long min, long long max,
		long long *out) __attribute__((warn_unused_result));
/* A TCP port flag: 1 to 65535. */
int numarg_port(const char *prog, const char *flag, const char *s, uint16_t *out)
	__attribute__((warn_unused_result));

#endif
