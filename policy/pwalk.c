/* pwalk: see pwalk.h. */
#include "pwalk.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int pwalk_fail(struct pwalk *w, const struct pdoc *at, const char *fmt, ...)
{
	va_list ap;

	if (w->failed)
		return -EINVAL;
	w->failed = 1;
	if (!at)
		at = w->parent;
	memset(w->err, 0, sizeof(*w->err));
	policy_error_set_file(w->err, w->file);
	w->err->line = at ? at->line : 0;
	w->err->column = at ? at->column : 0;
	snprintf(w->err->path, sizeof(w->err->path), "%s", w->path);
	va_start(ap, fmt);
	vsnprintf(w->err->msg, sizeof(w->err->msg), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

size_t pwalk_push(struct pwalk *w, const char *key, long index)
{
	size_t old = strlen(w->path);

	if (key)
		snprintf(w->path + old, sizeof(w->path) - old, "%s%s", old ? "." : "", key);
	else
		snprintf(w->path + old, sizeof(w->path) - old, "[%ld]", index);
	return old;
}

void pwalk_pop(struct pwalk *w, size_t old)
{
	w->path[old] = '\0';
}
