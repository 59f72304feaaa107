/* origdst: where a redirected connection was going before iptables sent it
 * to the agent (the REDIRECT target rewrites the destination; conntrack
 * remembers it): SO_ORIGINAL_DST for IPv4, IP6T_SO_ORIGINAL_DST for IPv6. */
#ifndef CINCH_AGENT_ORIGDST_H
#define CINCH_AGENT_ORIGDST_H

#include <sys/socket.h>

/* The original destination of the accepted socket `fd` into *out. 0, or
 * -errno (-ENOENT: the connection was not redirected, e.g. a client that
 * connected to the agent's port directly). */
int origdst_get(int fd, struct sockaddr_storage *out) __attribute__((warn_unused_result));

#endif
