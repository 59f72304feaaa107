/* ctl_logline: one line of an agent's JSON log (docs/agent.md), checked
 * and read in place for `cinchctl policy whatif`.
 *
 * jansson builds a tree of every value of a line, a dozen allocations for
 * fields whatif never looks at: it was 80 % of whatif's time (about
 * 95,000 lines per CPU-second). This scanner checks the whole line's JSON
 * syntax (RFC 8259: one object; strings and their escapes, numbers,
 * literals, arrays and objects nested up to CTL_LOGLINE_DEPTH) without
 * building anything, and keeps the string values of the top-level fields
 * asked for, decoded in place. Those, and the top-level keys, must be
 * printable ASCII (an agent's keys, SPIFFE IDs, addresses, rule names and
 * the names of verdicts are): anything else is malformed, so no byte of a
 * log reaches a terminal unfiltered. A field asked for given twice is
 * malformed; the other strings are checked for syntax, not for UTF-8. */
#ifndef CINCH_CTL_LOGLINE_H
#define CINCH_CTL_LOGLINE_H

#include <stddef.h>

#define CTL_LOGLINE_MAX_FIELDS 16
#define CTL_LOGLINE_DEPTH      32

struct ctl_logline {
	/* v[i]: the value of fields[i], NUL-terminated inside the line; NULL
	 * when absent or not a string. */
	const char *v[CTL_LOGLINE_MAX_FIELDS];
	const char *why; /* why the line is malformed (static text) */
	size_t column;	 /* where (1-based) */
};

/* Scans line[0..len) (modified: kept strings are decoded over it) for the
 * top-level keys fields[0..n_fields) (at most CTL_LOGLINE_MAX_FIELDS are
 * looked for). 0, or -EINVAL with out->why and out->column. Borrows
 * `fields`; out->v borrows the line. */
int ctl_logline_scan(struct ctl_logline *out, char *line, size_t len, const char *const *fields,
		     size_t n_fields) __attribute__((warn_unused_result));

#endif
