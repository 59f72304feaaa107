/* localaddr: see localaddr.h. */
#include "localaddr.h"

#include <ifaddrs.h>
#include <netinet/in.h>
#include <string.h>

size_t localaddr_list(struct sockaddr_storage *out, size_t max)
{
	struct ifaddrs *ifs, *i;
	size_t k = 0;

	/* Every interface's, up or not yet: libuv's list skips links whose
	 * carrier is still being settled, the state of a pod's interface at
	 * start-up. */
	if (getifaddrs(&ifs) < 0)
		return 0;
	for (i = ifs; i && k < max; i = i->ifa_next) {
		if (!i->ifa_addr ||
		    (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
			continue;
		memset(&out[k], 0, sizeof(out[k]));
		memcpy(&out[k], i->ifa_addr,
		       i->ifa_addr->sa_family == AF_INET ? sizeof(struct sockaddr_in)
							 : sizeof(struct sockaddr_in6));
		k++;
	}
	freeifaddrs(ifs);
	return k;
}

/* The address bytes of `a` (4 for IPv4, mapped IPv4 included; 16 for
 * IPv6) and its port; 0 bytes for another family. */
static size_t localaddr_bytes(const struct sockaddr *a, const uint8_t **bytes, uint16_t *port)
{
	if (a->sa_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)a;
		*bytes = (const uint8_t *)&s->sin_addr;
		*port = s->sin_port;
		return 4;
	}
	if (a->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)a;
		*port = s->sin6_port;
		if (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr)) {
			*bytes = s->sin6_addr.s6_addr + 12;
			return 4;
		}
		*bytes = s->sin6_addr.s6_addr;
		return 16;
	}
	return 0;
}

int localaddr_is_loopback(const struct sockaddr *a)
{
	const uint8_t *b;
	uint16_t port;
	size_t n = localaddr_bytes(a, &b, &port);

	if (n == 4)
		return b[0] == 127;
	return n == 16 && IN6_IS_ADDR_LOOPBACK((const struct in6_addr *)b);
}

int localaddr_same(const struct sockaddr *a, const struct sockaddr *b, int ports)
{
	const uint8_t *ab = NULL, *bb = NULL;
	uint16_t ap = 0, bp = 0;
	size_t an = localaddr_bytes(a, &ab, &ap), bn = localaddr_bytes(b, &bb, &bp);

	return an && an == bn && !memcmp(ab, bb, an) && (!ports || ap == bp);
}

void localaddr_set(struct localaddr *la, const struct sockaddr_storage *a, size_t n)
{
	la->n = n < LOCALADDR_MAX ? n : LOCALADDR_MAX;
	memcpy(la->a, a, la->n * sizeof(*a));
	la->valid = la->fixed = 1;
}

int localaddr_match(struct localaddr *la, uint64_t now_ms, const struct sockaddr *a,
		    int loopback_ok)
{
	if (!la->fixed && (!la->valid || now_ms - la->read_at >= LOCALADDR_MAX_AGE_MS)) {
		size_t n = localaddr_list(la->a, LOCALADDR_MAX);
		if (n) { /* a failed read keeps the last list */
			la->n = n;
			la->valid = 1;
		}
		la->read_at = now_ms;
	}
	if (localaddr_is_loopback(a))
		return loopback_ok;
	for (size_t i = 0; i < la->n; i++)
		if (localaddr_same((const struct sockaddr *)&la->a[i], a, 0))
			return 1;
	return 0;
}
