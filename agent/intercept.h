/* intercept: the iptables rules that send a pod's TCP through its agent
 * (`cinch-agent init`, run by the pod's init container in the pod's
 * network namespace).
 *
 *   inbound   TCP arriving at the pod -> the agent's inbound port (15006),
 *             except the agent's own ports and --exclude-inbound-ports
 *   outbound  TCP leaving from any UID but the agent's (1337) -> the
 *             outbound port (15001), except loopback destinations,
 *             --exclude-outbound-ports and --exclude-cidrs
 *
 * Two probe rules come first in the outbound chain: connections from the
 * agent's own UID to the probe address (127.0.0.7, or ::1 for IPv6) on
 * INTERCEPT_PROBE_PORT_OUT / _IN go through the outbound / inbound redirect
 * chains. The agent connects there at start-up and periodically
 * (agent/probe.c): a probe arriving on its own listener with that original
 * destination shows the rules are in place and the redirect works. Nothing
 * else can match them (only the agent's UID, only loopback), and without
 * the rules the probe address has no listener, so a missing rule can only
 * make the probe fail, never pass.
 *
 * The guard (filter table, INPUT, before anyone else's rules): TCP to the
 * outbound or the inbound port is rejected (a reset) unless its destination
 * was rewritten by NAT (conntrack state DNAT), i.e. unless it came through
 * one of the redirects above. Nothing from the network reaches 15001, and
 * 15006 only through the redirect; the app cannot reach the agent's ports
 * on loopback directly, and the agent cannot connect to its own listeners
 * (a self-loop). The agent checks the same itself (proxy.h) and says why
 * it refused; the guard keeps such connections from using its sockets at
 * all.
 *
 * Both address families get the same rules (iptables and ip6tables). Every
 * change is one iptables-restore run over the nat and filter tables: the
 * current tables are read, Cinch's chains and jumps taken out, the new ones
 * put in, and the result restored at once. So applying twice gives the same
 * tables (idempotent), removing leaves others' rules as they were, and a
 * failure changes nothing (with iptables' nf_tables backend, the default,
 * the run is one transaction; the legacy backend commits table by table,
 * nat first, so a filter table it refuses leaves the new nat rules). */
#ifndef CINCH_AGENT_INTERCEPT_H
#define CINCH_AGENT_INTERCEPT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define INTERCEPT_MAX_LIST     64
#define INTERCEPT_CHAIN_PREFIX "CINCH_"

/* The self-probe's destinations (see above): reserved, never listened on. */
#define INTERCEPT_PROBE_ADDR4	 "127.0.0.7"
#define INTERCEPT_PROBE_ADDR6	 "::1"
#define INTERCEPT_PROBE_PORT_OUT 15011
#define INTERCEPT_PROBE_PORT_IN	 15016

struct intercept_cidr {
	int family; /* AF_INET or AF_INET6 */
	char text[64];
};

struct intercept_config {
	unsigned uid; /* the agent's UID, exempt from outbound capture */
	uint16_t inbound_port, outbound_port, admin_port;
	uint16_t exclude_in[INTERCEPT_MAX_LIST], exclude_out[INTERCEPT_MAX_LIST];
	size_t n_exclude_in, n_exclude_out;
	struct intercept_cidr exclude_cidrs[INTERCEPT_MAX_LIST];
	size_t n_exclude_cidrs;
};

/* The defaults: UID 1337, ports 15006/15001/15000, no exclusions. */
void intercept_config_defaults(struct intercept_config *cfg);

/* Parses "80,443,8000" into cfg's inbound or outbound exclusions;
 * "10.0.0.0/8,fd00::/8" into its CIDRs. -EINVAL with *why on a bad item. */
int intercept_parse_ports(const char *list, uint16_t *out, size_t *n, const char **why);
int intercept_parse_cidrs(const char *list, struct intercept_cidr *out, size_t *n,
			  const char **why);

/* Cinch's part of the nat table for `family`, in iptables-restore syntax
 * (chain declarations and rules, no *nat/COMMIT). New string (free()). */
char *intercept_rules(const struct intercept_config *cfg, int family);

/* Cinch's part of the filter table (the guard, above), the same for both
 * families, in the same syntax. New string (free()). */
char *intercept_guard_rules(const struct intercept_config *cfg);

/* `saved` (iptables-save output holding `table`, "nat" or "filter", or ""
 * when empty) with Cinch's chains and jumps taken out of that table and,
 * unless `rules` is NULL, the given ones put in: a complete "*TABLE ...
 * COMMIT" input for iptables-restore. In nat, Cinch's rules come after
 * others' in each chain; in filter (the guard) before them. New string
 * (free()), NULL on ENOMEM. */
char *intercept_merge(const char *saved, const char *table, const char *rules);

/* Applies (or with remove, takes out) the rules for both families through
 * iptables-save / iptables-restore (and the ip6tables ones). 0, or -errno
 * with a message on stderr; nothing is changed for a family that failed. */
int intercept_apply(const struct intercept_config *cfg, int remove);

#endif
