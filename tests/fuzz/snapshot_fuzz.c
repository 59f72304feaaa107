/* snapshot_fuzz: any bytes as a cinch.v1.Snapshot from the control plane.
 * The agent must refuse what is not a valid slice and decide with what is,
 * never crashing: decode, load, and ask every kind of question. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cinch/v1/config.pb-c.h"
#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Cinch__V1__Snapshot *snap = cinch__v1__snapshot__unpack(NULL, size, data);
	struct policy_slice *s = NULL;
	struct policy_error err;
	struct policy_decision d;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0a010002)};
	struct sockaddr_in6 b = {.sin6_family = AF_INET6};

	if (!snap)
		return 0;
	if (policy_slice_from_snapshot(&s, snap, &err) == 0) {
		b.sin6_addr.s6_addr[15] = 2;
		policy_slice_decide_inbound(s, "spiffe://cluster.local/ns/shop/sa/web", NULL, 8080,
					    &d);
		policy_slice_decide_inbound(s, NULL, (struct sockaddr *)&a, 8081, &d);
		policy_slice_decide_inbound(s, NULL, (struct sockaddr *)&b, 1, &d);
		policy_slice_peer(s, (struct sockaddr *)&a, 5432, &d);
		policy_slice_peer(s, (struct sockaddr *)&b, 5432, &d);
		policy_slice_decide_egress(s, (struct sockaddr *)&a, 443, &d);
		policy_slice_decide_egress(s, (struct sockaddr *)&b, 443, &d);
		if (!d.reason || !policy_slice_version(s) || !policy_slice_workload(s))
			abort();
		policy_slice_unref(s);
	} else if (!err.msg[0]) {
		abort();
	}
	cinch__v1__snapshot__free_unpacked(snap, NULL);
	return 0;
}
