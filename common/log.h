/* log: JSON-lines logging for every Cinch process.
 *
 * One line per event on stderr (or the stream given to log_init), a JSON
 * object with at least "ts" (RFC 3339, UTC, milliseconds), "level",
 * "component" and "event" (a stable snake_case name operators grep for).
 * Fields are passed as a jansson object built by the caller, usually with
 * json_pack(); log_event() takes that reference whatever happens, so a
 * failed json_pack() (NULL) still logs the event without fields.
 *
 * Never log private keys or tokens: callers pass identities, serials and
 * token hashes only. Not thread-safe by design: each daemon runs one loop. */
#ifndef CINCH_LOG_H
#define CINCH_LOG_H

#include <stdio.h>
#include <jansson.h>

enum log_level {
	LOG_LVL_DEBUG = 0,
	LOG_LVL_INFO,
	LOG_LVL_WARN,
	LOG_LVL_ERROR,
};

/* Sets the component name (borrowed: must outlive logging), the output
 * stream (NULL: stderr) and the lowest level written. */
void log_init(const char *component, FILE *out, enum log_level min);

/* Parses "debug", "info", "warn" or "error"; -EINVAL otherwise. */
int log_level_parse(const char *s, enum log_level *out);

/* Writes one line. Takes `fields` (NULL allowed); keys in it override
 * nothing: "ts", "level", "component" and "event" are always ours. */
void log_event(enum log_level lvl, const char *event, json_t *fields);

#endif
