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

int pwalk_dns_ok(const char *s, int subdomain)
{
	size_t n = strlen(s);

	if (n == 0 || n > (subdomain ? 253u : 63u))
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (!alnum && c != '-' && !(subdomain && c == '.'))
			return 0;
		if (!alnum && (i == 0 || i == n - 1))
			return 0;
	}
	return 1;
}

int pwalk_port_name_ok(const char *s)
{
	size_t n = strlen(s);
	int letter = 0;

	if (n == 0 || n > 15 || s[0] == '-' || s[n - 1] == '-' || strstr(s, "--"))
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] >= 'a' && s[i] <= 'z')
			letter = 1;
		else if (!(s[i] >= '0' && s[i] <= '9') && s[i] != '-')
			return 0;
	}
	return letter;
}
