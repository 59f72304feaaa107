/* log: see log.h. The line is built as a jansson object and dumped with
 * JSON_COMPACT, so any string a peer controls (a SPIFFE ID, a reason) is
 * escaped by jansson, never spliced into the output by hand. */
#include "log.h"

#include <errno.h>
#include <string.h>
#include <time.h>

static struct {
	const char *component;
	FILE *out;
	enum log_level min;
} log_cfg = { "cinch", NULL, LOG_LVL_INFO };

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
