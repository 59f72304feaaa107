/* localaddr: this network namespace's own addresses, as the kernel lists
 * them (getifaddrs), and the comparisons the agent makes with them:
 *   - agentd finds which workload this is by its addresses;
 *   - the proxy lets an inbound connection through only when its original
 *     destination is one of the pod's own, non-loopback addresses (a
 *     caller must not use the agent to reach another host, or a service
 *     bound to the pod's loopback), and takes an outbound connection only
 *     from a local source (the pod's own address or loopback: the kernel
 *     drops packets from outside that claim either as their source).
 * The proxy keeps a cached list (struct localaddr), read again when it is
 * more than LOCALADDR_MAX_AGE_MS old: a pod's addresses hardly change, and
 * a flood of lookups costs at most one read of the list a second. A test
 * fixes the list instead (localaddr_set).
 * IPv4 addresses seen through a dual-stack socket (::ffff:a.b.c.d) compare
 * as the IPv4 address they map. */
#ifndef CINCH_AGENT_LOCALADDR_H
#define CINCH_AGENT_LOCALADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define LOCALADDR_MAX	     64
#define LOCALADDR_MAX_AGE_MS 1000

struct localaddr {
	struct sockaddr_storage a[LOCALADDR_MAX];
	size_t n;
	uint64_t read_at; /* caller's clock (ms) at the last read */
	int valid;	  /* read at least once */
	int fixed;	  /* localaddr_set: never read */
};

/* Every interface's IPv4 and IPv6 address, up or not, loopback included,
 * into out (at most max). The count; 0 when the list cannot be read. */
size_t localaddr_list(struct sockaddr_storage *out, size_t max);

/* 127.0.0.0/8, ::1, or an IPv4-mapped 127.0.0.0/8. */
int localaddr_is_loopback(const struct sockaddr *a);

/* The same address (and, with ports, the same port), an IPv4-mapped IPv6
 * address being the IPv4 one. */
int localaddr_same(const struct sockaddr *a, const struct sockaddr *b, int ports);

/* Makes la a fixed list of n addresses (at most LOCALADDR_MAX kept), never
 * read from the kernel: a test's fake pod addresses (proxy_config). */
void localaddr_set(struct localaddr *la, const struct sockaddr_storage *a, size_t n);

/* 1 when `a` is one of this namespace's addresses (a loopback address only
 * when `loopback_ok`), the cached list `la` read again first when older
 * than LOCALADDR_MAX_AGE_MS at `now_ms`; 0 otherwise, and when the list
 * cannot be read (fail closed). */
int localaddr_match(struct localaddr *la, uint64_t now_ms, const struct sockaddr *a,
		    int loopback_ok);

#endif
