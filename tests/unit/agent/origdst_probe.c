/* origdst_probe: a test helper. Listens on [::]:PORT (dual stack), and for
 * each connection writes back "<original destination address> <port>\n"
 * (or "none <errno>\n"), for intercept_test.sh. Exits after `n` connections
 * or 20 s.
 *   origdst_probe PORT N */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "numarg.h"
#include "origdst.h"

int main(int argc, char **argv)
{
	long long port = 15001, n = 1;

	if ((argc > 1 && numarg_parse(argv[1], 1, 65535, &port) < 0) ||
	    (argc > 2 && numarg_parse(argv[2], 1, 1000000, &n) < 0)) {
		fprintf(stderr, "usage: origdst_probe [PORT [COUNT]]\n");
		return 2;
	}
	int s = socket(AF_INET6, SOCK_STREAM, 0), zero = 0, one = 1;
	struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};

	setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 16) < 0) {
		perror("origdst_probe");
		return 1;
	}
	alarm(20);
	for (int i = 0; i < n; i++) {
		int c = accept(s, NULL, NULL);
		struct sockaddr_storage od;
		char line[128], ip[64];
		if (c < 0)
			return 1;
		int rc = origdst_get(c, &od);
		if (rc < 0)
			snprintf(line, sizeof(line), "none %d\n", -rc);
		else if (od.ss_family == AF_INET)
			snprintf(line, sizeof(line), "%s %u\n",
				 inet_ntop(AF_INET, &((struct sockaddr_in *)&od)->sin_addr, ip,
					   sizeof(ip)),
				 ntohs(((struct sockaddr_in *)&od)->sin_port));
		else
			snprintf(line, sizeof(line), "%s %u\n",
				 inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&od)->sin6_addr, ip,
					   sizeof(ip)),
				 ntohs(((struct sockaddr_in6 *)&od)->sin6_port));
		if (write(c, line, strlen(line)) < 0)
			return 1;
		close(c);
	}
	return 0;
}
