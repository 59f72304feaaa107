/* ctl_admin: the client side of cinch-control's admin socket (one JSON
 * line each way, see control/admin/ctlsock.h). Blocking I/O with a 5 s
 * limit: cinchctl is a short-lived command, not a daemon. */
#include "ctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

json_t *ctl_admin_call(const char *state_dir, const json_t *req)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = 5};
	char *buf = NULL;
	size_t len = 0, cap = 0;
	json_t *reply = NULL;
	char *line = json_dumps(req, JSON_COMPACT);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (!line || fd < 0 ||
	    (size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/admin.sock", state_dir) >=
		    sizeof(sa.sun_path)) {
		fprintf(stderr, "cinchctl: cannot reach the admin socket\n");
		goto out;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr,
			"cinchctl: %s: %s (is cinch-control running with --state-dir %s, "
			"and are you root?)\n",
			sa.sun_path, strerror(errno), state_dir);
		goto out;
	}
	if (write(fd, line, strlen(line)) < 0 || write(fd, "\n", 1) < 0) {
		fprintf(stderr, "cinchctl: %s: %s\n", sa.sun_path, strerror(errno));
		goto out;
	}
	/* One line, as long as the answer needs (`status` grows with the
	 * mesh), up to CTL_ADMIN_MAX_REPLY. */
	for (;;) {
		if (cap - len < 4096) {
			char *nb = cap < CTL_ADMIN_MAX_REPLY ? realloc(buf, cap + 65536) : NULL;
			if (!nb)
				break;
			buf = nb;
			cap += 65536;
		}
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		if (memchr(buf + len - (size_t)n, '\n', (size_t)n))
			break;
	}
	if (buf)
		buf[len] = '\0';
	reply = buf ? json_loads(buf, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
	if (!json_is_object(reply)) {
		fprintf(stderr, "cinchctl: no answer from cinch-control\n");
		json_decref(reply);
		reply = NULL;
	} else if (json_object_get(reply, "error")) {
		fprintf(stderr, "cinchctl: cinch-control says: %s\n",
			json_string_value(json_object_get(reply, "error")));
		json_decref(reply);
		reply = NULL;
	}
out:
	free(buf);
	free(line);
	if (fd >= 0)
		close(fd);
	return reply;
}
