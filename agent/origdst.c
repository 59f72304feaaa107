/* origdst: see origdst.h. */
#include "origdst.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>

int origdst_get(int fd, struct sockaddr_storage *out)
{
	struct sockaddr_storage local;
	socklen_t len = sizeof(local);

	memset(out, 0, sizeof(*out));
	if (getsockname(fd, (struct sockaddr *)&local, &len) < 0)
		return -errno;
	len = sizeof(*out);
	if (local.ss_family == AF_INET6) {
		/* An IPv4 connection on a dual-stack socket has a mapped local
		 * address; conntrack knows it under IPv4. */
		const struct in6_addr *a = &((struct sockaddr_in6 *)&local)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a)) {
			if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, out, &len) < 0)
				return errno == ENOENT ? -ENOENT : -errno;
			return 0;
		}
		if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, out, &len) < 0)
			return -errno;
		return 0;
	}
	if (local.ss_family != AF_INET)
		return -EAFNOSUPPORT;
	if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, out, &len) < 0)
		return -errno;
	return 0;
}
