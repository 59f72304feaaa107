/* ctl_cli: the grammar every cinchctl verb shares. A usage error is one
 * line that names what is wrong ("cinchctl policy explain: missing --to")
 * and one line pointing to --help, exit status 2; the full usage goes to
 * stdout only when asked for with --help (exit 0).
 *
 * `-` as a path is standard input: it is copied once into an anonymous
 * memory file whose /proc/self/fd path is handed to the policy library,
 * so a verb that reads its policy several times (policy test) reads the
 * same bytes each time; errors name it "-" again (ctl_display_path), as
 * they name what was read from a cluster (ctl_name_path). */
#include "ctl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int ctl_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "cinchctl %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nRun 'cinchctl %s --help' for usage.\n", cmd);
	return 2;
}

int ctl_getopt(const char *cmd, int argc, char **argv, const struct option *opts)
{
	int c;

	opterr = 0;
	c = getopt_long(argc, argv, ":h", opts, NULL);
	if (c == '?') {
		if (optopt && optopt != '?')
			ctl_usage_error(cmd, "unknown flag -%c", optopt);
		else
			ctl_usage_error(cmd, "unknown flag %s", argv[optind - 1]);
	} else if (c == ':') {
		ctl_usage_error(cmd, "%s needs a value", argv[optind - 1]);
		c = '?';
	}
	return c;
}

static char ctl_stdin_path[32];
static struct {
	char path[32];
	const char *name;
} ctl_names[4];

void ctl_name_path(const char *path, const char *name)
{
	for (size_t i = 0; i < sizeof(ctl_names) / sizeof(ctl_names[0]); i++)
		if (!ctl_names[i].name) {
			snprintf(ctl_names[i].path, sizeof(ctl_names[i].path), "%s", path);
			ctl_names[i].name = name;
			return;
		}
}

const char *ctl_path(const char *arg)
{
	char buf[65536];
	ssize_t n;
	int fd;

	if (strcmp(arg, "-"))
		return arg;
	if (ctl_stdin_path[0])
		return ctl_stdin_path;
	fd = memfd_create("cinchctl-stdin", 0);
	if (fd < 0)
		return NULL;
	while ((n = read(STDIN_FILENO, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || write(fd, buf, (size_t)n) != n) {
			close(fd);
			return NULL;
		}
	}
	/* the descriptor stays open for the life of the process */
	snprintf(ctl_stdin_path, sizeof(ctl_stdin_path), "/proc/self/fd/%d", fd);
	ctl_name_path(ctl_stdin_path, "-");
	return ctl_stdin_path;
}

const char *ctl_display_path(const char *path)
{
	for (size_t i = 0; i < sizeof(ctl_names) / sizeof(ctl_names[0]); i++)
		if (ctl_names[i].name && !strcmp(path, ctl_names[i].path))
			return ctl_names[i].name;
	return path;
}
