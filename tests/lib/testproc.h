/* testproc: start a helper server process for a test and stop it. The
 * child runs `argv`, must print "PORT <n>" on its first stdout line within
 * 10 s, and is killed (SIGTERM, then reaped) by testproc_stop. */
#ifndef CINCH_TESTPROC_H
#define CINCH_TESTPROC_H

#include <sys/types.h>

struct testproc {
	pid_t pid;
	int port;
};

/* 0 on success (proc->port set), -1 when it did not start in time. */
int testproc_start(struct testproc *proc, char *const argv[]);
void testproc_stop(struct testproc *proc);

#endif
