/* log: JSON-lines logging for every Cinch process.
 *
 * One line per event on stderr (or the stream given to log_init), a JSON
 * object with at least "ts" (RFC 3339, UTC, milliseconds), "level",
 * "component" and "event" (a stable snake_case name operators grep for).
 * Fields are passed as a jansson object built by the caller with
 * log_pack(); log_event() takes that reference whatever happens, so a
 * NULL (out of memory) still logs the event without fields.
 *
 * log_pack, not json_pack: jansson refuses a string that is not valid
 * UTF-8 and then fails the whole object, so one hostile byte in a peer's
 * SPIFFE ID, a CSR subject or a token name would erase every field of the
 * line that audits it. log_pack keeps every field and writes each byte
 * that is not part of valid UTF-8 as the four characters \xNN.
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

/* json_pack() for log fields, with its format language: objects {},
 * arrays [], keys s; values s, s?, s# (int length), s% (size_t length),
 * n, b, i, I, f, o, O, o? and O? ('o' takes the reference, 'O' adds one).
 * Strings are never refused: invalid UTF-8 is escaped as above, and a NULL
 * string is null (with or without '?'). NULL only when out of memory, for
 * a NULL 'o' without '?', or for a format outside that language (a
 * programming error; every 'o' reference is then released, as jansson
 * does). */
json_t *log_pack(const char *fmt, ...) __attribute__((warn_unused_result));

/* 1 when the NUL-terminated s is valid UTF-8 (RFC 3629, the rule log_pack
 * escapes by), else 0: for protocol strings that must be UTF-8, such as
 * proto3 `string` fields, which protobuf-c does not check. */
int log_utf8_valid(const char *s);

/* A JSON string of the n bytes at s, invalid UTF-8 escaped as \xNN. */
json_t *log_stringn(const char *s, size_t n) __attribute__((warn_unused_result));

/* Writes one line. Takes `fields` (NULL allowed); keys in it override
 * nothing: "ts", "level", "component" and "event" are always ours. */
void log_event(enum log_level lvl, const char *event, json_t *fields);

#endif
