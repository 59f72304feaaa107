/* duration: the one syntax of durations on Cinch's command lines and in
 * config files: a whole number with an optional unit, "500ms", "90",
 * "90s", "5m", "1h" (no unit: seconds). */
#ifndef CINCH_DURATION_H
#define CINCH_DURATION_H

/* Milliseconds, or -1 when `s` is not a duration (negative, overflow,
 * unknown unit, trailing text). */
long long duration_ms(const char *s);
/* The same for the flags documented in milliseconds before durations
 * came (cinch-agent run --idle-timeout MS): a bare number is milliseconds,
 * "300" is 300 ms; with a unit as above, "5s" is 5000. */
long long duration_ms_bare_ms(const char *s);

#endif
