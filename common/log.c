/* log: see log.h. The line is built as a jansson object and dumped with
 * JSON_COMPACT, so any string a peer controls (a SPIFFE ID, a reason) is
 * escaped by jansson, never spliced into the output by hand.
 *
 * log_pack walks json_pack's format itself rather than calling it: jansson
 * fails the whole object on one invalid UTF-8 string and has by then
 * consumed the 'o' references, so there is no retrying it with the
 * strings repaired. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct {
	const char *component;
	FILE *out;
	enum log_level min;
} log_cfg = {"cinch", NULL, LOG_LVL_INFO};

static const char *const log_level_names[] = {
	[LOG_LVL_DEBUG] = "debug",
	[LOG_LVL_INFO] = "info",
	[LOG_LVL_WARN] = "warn",
	[LOG_LVL_ERROR] = "error",
};

void log_init(const char *component, FILE *out, enum log_level min)
{
	log_cfg.component = component;
	log_cfg.out = out;
	log_cfg.min = min;
}

int log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(log_level_names) / sizeof(log_level_names[0]); i++) {
		if (strcmp(s, log_level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

static void log_timestamp(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

void log_event(enum log_level lvl, const char *event, json_t *fields)
{
	char ts[40];
	FILE *out = log_cfg.out ? log_cfg.out : stderr;

	if (lvl < log_cfg.min) {
		json_decref(fields);
		return;
	}
	json_t *line = json_object();
	if (!line) {
		json_decref(fields);
		return;
	}
	if (fields && json_is_object(fields))
		json_object_update(line, fields);
	json_decref(fields);

	log_timestamp(ts, sizeof(ts));
	json_object_set_new(line, "ts", json_string(ts));
	json_object_set_new(line, "level", json_string(log_level_names[lvl]));
	json_object_set_new(line, "component", json_string(log_cfg.component));
	json_object_set_new(line, "event", json_string(event));

	char *s = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (s) {
		fprintf(out, "%s\n", s);
		fflush(out);
		free(s);
	}
	json_decref(line);
}

/* The length of the valid UTF-8 sequence at s (n bytes left), 0 if none
 * starts there (RFC 3629: no overlong forms, no surrogates, <= U+10FFFF). */
static size_t log_utf8_len(const unsigned char *s, size_t n)
{
	size_t len;
	unsigned char lo = 0x80, hi = 0xbf;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (s[0] == 0xe0)
		lo = 0xa0;
	else if (s[0] == 0xed)
		hi = 0x9f;
	else if (s[0] == 0xf0)
		lo = 0x90;
	else if (s[0] == 0xf4)
		hi = 0x8f;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

int log_utf8_valid(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s), len;

	for (size_t i = 0; i < n; i += len)
		if (!(len = log_utf8_len(u + i, n - i)))
			return 0;
	return 1;
}

json_t *log_stringn(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	char *buf = malloc(4 * n + 1); /* every byte escaped at worst */
	size_t k = 0;
	json_t *v;

	if (!buf)
		return NULL;
	for (size_t i = 0; i < n;) {
		size_t len = log_utf8_len(u + i, n - i);
		if (len) {
			memcpy(buf + k, u + i, len);
			k += len;
			i += len;
		} else {
			k += (size_t)snprintf(buf + k, 5, "\\x%02x", u[i]);
			i++;
		}
	}
	v = json_stringn(buf, k);
	free(buf);
	return v;
}

struct log_scan {
	const char *f;
	va_list ap;
	int err; /* once set, values are still read (to release 'o') and dropped */
};

static void log_scan_skip(struct log_scan *sc)
{
	while (*sc->f == ' ' || *sc->f == '\t' || *sc->f == '\n' || *sc->f == ',' || *sc->f == ':')
		sc->f++;
}

static json_t *log_scan_value(struct log_scan *sc);

/* After '{' or '['. */
static json_t *log_scan_container(struct log_scan *sc, char close)
{
	json_t *c = close == '}' ? json_object() : json_array();

	if (!c)
		sc->err = 1;
	for (;;) {
		const char *key = NULL;
		json_t *v;

		log_scan_skip(sc);
		if (*sc->f == close) {
			sc->f++;
			break;
		}
		if (close == '}') {
			if (*sc->f != 's') {
				sc->err = 1;
				break; /* the arguments' types are unknown from here */
			}
			sc->f++;
			key = va_arg(sc->ap, const char *);
			log_scan_skip(sc);
		}
		if (!*sc->f) {
			sc->err = 1;
			break;
		}
		v = log_scan_value(sc);
		if (!v || sc->err) {
			json_decref(v);
			sc->err = 1;
		} else if ((key ? json_object_set_new(c, key, v) : json_array_append_new(c, v)) <
			   0) {
			sc->err = 1; /* both take v even when they fail */
		}
		if (sc->err && !*sc->f)
			break;
	}
	if (sc->err) {
		json_decref(c);
		return NULL;
	}
	return c;
}

static json_t *log_scan_value(struct log_scan *sc)
{
	char t = *sc->f++;
	const char *str;
	json_t *o;

	switch (t) {
	case '{':
		return log_scan_container(sc, '}');
	case '[':
		return log_scan_container(sc, ']');
	case 's':
		/* A NULL string is a JSON null, with or without '?': for a log
		 * line, a missing value must not cost the others. */
		str = va_arg(sc->ap, const char *);
		if (*sc->f == '#') {
			sc->f++;
			int len = va_arg(sc->ap, int);
			return !str ? json_null() : len < 0 ? NULL : log_stringn(str, (size_t)len);
		}
		if (*sc->f == '%') {
			sc->f++;
			size_t len = va_arg(sc->ap, size_t);
			return str ? log_stringn(str, len) : json_null();
		}
		if (*sc->f == '?')
			sc->f++;
		return str ? log_stringn(str, strlen(str)) : json_null();
	case 'n':
		return json_null();
	case 'b':
		return json_boolean(va_arg(sc->ap, int));
	case 'i':
		return json_integer(va_arg(sc->ap, int));
	case 'I':
		return json_integer(va_arg(sc->ap, json_int_t));
	case 'f':
		return json_real(va_arg(sc->ap, double));
	case 'o':
	case 'O':
		o = va_arg(sc->ap, json_t *);
		if (t == 'O')
			json_incref(o);
		if (*sc->f == '?') {
			sc->f++;
			if (!o)
				return json_null();
		}
		return o;
	default:
		sc->err = 1;
		sc->f--; /* stop here: what follows cannot be read */
		while (*sc->f)
			sc->f++;
		return NULL;
	}
}

json_t *log_pack(const char *fmt, ...)
{
	struct log_scan sc = {.f = fmt};
	json_t *v;

	va_start(sc.ap, fmt);
	log_scan_skip(&sc);
	v = *sc.f ? log_scan_value(&sc) : NULL;
	log_scan_skip(&sc);
	va_end(sc.ap);
	if (!v || sc.err || *sc.f) {
		json_decref(v);
		return NULL;
	}
	return v;
}
