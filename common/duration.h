/* duration: the one syntax of durations on Cinch's command lines and in
 * config files: a whole number with an optional unit, "500ms", "90",
 * "90s", "5m", "1h" (no unit: seconds). */
#ifndef CINCH_DURATION_H
#define CINCH_DURATION_H

/* Milliseconds, or -1 when `s` is not a duration (negative, overflow,
 * unknown unit, trailing text). */
long long duration_ms(const char *s);

#endif
