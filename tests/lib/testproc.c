/* testproc: see testproc.h. */
#include "testproc.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int testproc_start(struct testproc *proc, char *const argv[])
{
	int fds[2];
	char line[64];
	size_t got = 0;

	if (pipe(fds) < 0)
		return -1;
	proc->pid = fork();
	if (proc->pid < 0)
		return -1;
	if (proc->pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execv(argv[0], argv);
		_exit(127);
	}
	close(fds[1]);
	proc->port = -1;
	while (got < sizeof(line) - 1) {
		struct pollfd p = { .fd = fds[0], .events = POLLIN };
		if (poll(&p, 1, 10000) <= 0)
			break;
		ssize_t n = read(fds[0], line + got, 1);
		if (n <= 0)
			break;
		if (line[got] == '\n') {
			line[got] = '\0';
			sscanf(line, "PORT %d", &proc->port);
			break;
		}
		got++;
	}
	close(fds[0]);
	if (proc->port <= 0) {
		testproc_stop(proc);
		return -1;
	}
	return 0;
}

void testproc_stop(struct testproc *proc)
{
	if (proc->pid > 0) {
		kill(proc->pid, SIGTERM);
		waitpid(proc->pid, NULL, 0);
		proc->pid = 0;
	}
}
