/* ctl_logline: see ctl_logline.h.
 *
 * A recursive descent over RFC 8259's grammar that builds nothing: the
 * position only moves forward, strings that are kept are decoded over
 * their own bytes (an escape is never shorter than what it decodes to),
 * and the depth of nesting is bounded, so a line costs one pass and no
 * allocation whatever it holds. */
#include "ctl_logline.h"

#include <errno.h>
#include <string.h>

struct logline_scan {
	char *p, *end;
	struct ctl_logline *out;
	const char *const *fields;
	size_t n_fields;
	int nonstring[CTL_LOGLINE_MAX_FIELDS]; /* there, with another type */
};

static void logline_ws(struct logline_scan *x)
{
	while (x->p < x->end && (*x->p == ' ' || *x->p == '\t' || *x->p == '\r' || *x->p == '\n'))
		x->p++;
}

static int logline_fail(struct logline_scan *x, const char *why)
{
	if (!x->out->why)
		x->out->why = why;
	return -1;
}

static int logline_hex(char c)
{
	return c >= '0' && c <= '9'	  ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
				      : -1;
}

/* A string at x->p (its opening quote). keep: decode it in place and
 * NUL-terminate it (into *out), printable ASCII only. */
static int logline_string(struct logline_scan *x, int keep, const char **out)
{
	char *w = ++x->p, *start = w;
	int ascii = 1;

	for (;;) {
		if (x->p == x->end)
			return logline_fail(x, "a string that does not end");
		unsigned char c = (unsigned char)*x->p++;
		if (c == '"')
			break;
		if (c < 0x20)
			return logline_fail(x, "a control character in a string");
		if (c == '\\') {
			if (x->p == x->end)
				return logline_fail(x, "a string that does not end");
			c = (unsigned char)*x->p++;
			switch (c) {
			case '"': case '\\': case '/': break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'n': c = '\n'; break;
			case 'r': c = '\r'; break;
			case 't': c = '\t'; break;
			case 'u': {
				unsigned u = 0;
				for (int i = 0; i < 4; i++) {
					int h = x->p < x->end ? logline_hex(*x->p) : -1;
					if (h < 0)
						return logline_fail(x, "a \\u escape without 4 hex digits");
					u = u << 4 | (unsigned)h;
					x->p++;
				}
				c = u < 0x80 ? (unsigned char)u : 0x80; /* 0x80: not ASCII */
				break;
			}
			default:
				return logline_fail(x, "an unknown escape in a string");
			}
		}
		if (keep) {
			ascii &= c >= 0x20 && c <= 0x7e;
			*w++ = (char)c;
		}
	}
	if (keep) {
		if (!ascii)
			return logline_fail(x, "a key, or a field read, that is not printable "
					       "ASCII");
		*w = '\0'; /* at or before the closing quote, already passed */
		*out = start;
	}
	return 0;
}

static int logline_value(struct logline_scan *x, int depth);

/* An object or an array at x->p; `top`: the line's object, whose fields
 * asked for are kept. */
static int logline_container(struct logline_scan *x, int depth, int top)
{
	int object = *x->p++ == '{';
	char close = object ? '}' : ']';

	if (depth > CTL_LOGLINE_DEPTH)
		return logline_fail(x, "values nested too deep");
	logline_ws(x);
	if (x->p < x->end && *x->p == close) {
		x->p++;
		return 0;
	}
	for (;;) {
		int field = -1;
		if (object) {
			const char *key = NULL;
			if (x->p == x->end || *x->p != '"')
				return logline_fail(x, "an object key that is not a string");
			/* The line's own keys decoded (an agent writes ASCII
			 * ones), so an escaped spelling is the same field. */
			if (logline_string(x, top, &key) < 0)
				return -1;
			for (size_t i = 0; i < x->n_fields && field < 0 && key; i++)
				if (!strcmp(x->fields[i], key))
					field = (int)i;
			logline_ws(x);
			if (x->p == x->end || *x->p != ':')
				return logline_fail(x, "a ':' expected after an object key");
			x->p++;
			logline_ws(x);
		}
		if (field >= 0) {
			if (x->out->v[field] || x->nonstring[field])
				return logline_fail(x, "a field given twice");
			if (x->p < x->end && *x->p == '"') {
				if (logline_string(x, 1, &x->out->v[field]) < 0)
					return -1;
			} else {
				x->nonstring[field] = 1;
				if (logline_value(x, depth + 1) < 0)
					return -1;
			}
		} else if (logline_value(x, depth + 1) < 0) {
			return -1;
		}
		logline_ws(x);
		if (x->p == x->end)
			return logline_fail(x, object ? "an object that does not end"
						 : "an array that does not end");
		if (*x->p == close) {
			x->p++;
			return 0;
		}
		if (*x->p++ != ',')
			return logline_fail(x, "a ',' expected between values");
		logline_ws(x);
	}
}

static int logline_value(struct logline_scan *x, int depth)
{
	static const char *const lit[] = {"true", "false", "null"};

	if (x->p == x->end)
		return logline_fail(x, "a value expected");
	if (*x->p == '"')
		return logline_string(x, 0, NULL);
	if (*x->p == '{' || *x->p == '[')
		return logline_container(x, depth, 0);
	for (size_t i = 0; i < 3; i++) {
		size_t l = strlen(lit[i]);
		if ((size_t)(x->end - x->p) >= l && !memcmp(x->p, lit[i], l)) {
			x->p += l;
			return 0;
		}
	}
	/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
	char *p = x->p, *e = x->end;
	if (p < e && *p == '-')
		p++;
	if (p < e && *p == '0')
		p++;
	else if (p < e && *p >= '1' && *p <= '9')
		while (p < e && *p >= '0' && *p <= '9')
			p++;
	else
		return logline_fail(x, "a value expected");
	if (p < e && *p == '.') {
		if (++p == e || *p < '0' || *p > '9')
			return logline_fail(x, "a number without digits after '.'");
		while (p < e && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < e && (*p == 'e' || *p == 'E')) {
		if (++p < e && (*p == '+' || *p == '-'))
			p++;
		if (p == e || *p < '0' || *p > '9')
			return logline_fail(x, "a number without digits in its exponent");
		while (p < e && *p >= '0' && *p <= '9')
			p++;
	}
	x->p = p;
	return 0;
}

int ctl_logline_scan(struct ctl_logline *out, char *line, size_t len, const char *const *fields,
		     size_t n_fields)
{
	struct logline_scan x = {.p = line, .end = line + len, .out = out, .fields = fields};

	memset(out, 0, sizeof(*out));
	x.n_fields = n_fields < CTL_LOGLINE_MAX_FIELDS ? n_fields : CTL_LOGLINE_MAX_FIELDS;
	logline_ws(&x);
	if (x.p == x.end || *x.p != '{')
		logline_fail(&x, "'{' expected");
	else if (logline_container(&x, 0, 1) == 0 && (logline_ws(&x), x.p != x.end))
		logline_fail(&x, "more after the object");
	out->column = (size_t)(x.p - line) + 1;
	return out->why ? -EINVAL : 0;
}
