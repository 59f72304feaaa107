/* init: `cinch-agent init`, what the pod's init container runs: flags in,
 * interception rules out (intercept.h). */
#include "init.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "intercept.h"
#include "numarg.h"

static void init_usage(FILE *out)
{
	fprintf(out,
		"usage: cinch-agent init [options]\n"
		"\n"
		"Installs, in this network namespace, the iptables rules that send the pod's\n"
		"TCP through its agent: inbound to the inbound port, outbound from every UID\n"
		"but the agent's to the outbound port; and the guard that rejects TCP to\n"
		"those two ports unless it came through the redirect. One iptables-restore\n"
		"run per address family; running it again changes nothing.\n"
		"\n"
		"  --uid N                      the agent's UID, never captured (1337)\n"
		"  --inbound-port N             (15006)\n"
		"  --outbound-port N            (15001)\n"
		"  --admin-port N               (15000)\n"
		"  --exclude-inbound-ports L    ports reaching the app directly: 80,8081\n"
		"  --exclude-outbound-ports L   destination ports not captured\n"
		"  --exclude-cidrs L            destinations not captured: 10.0.0.0/8,fd00::/8\n"
		"  --dry-run                    print the rules, change nothing\n"
		"  --remove                     take Cinch's rules out, leave the rest\n");
}

int init_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"uid", required_argument, NULL, 'u'},
		{"inbound-port", required_argument, NULL, 'i'},
		{"outbound-port", required_argument, NULL, 'o'},
		{"admin-port", required_argument, NULL, 'a'},
		{"exclude-inbound-ports", required_argument, NULL, 'I'},
		{"exclude-outbound-ports", required_argument, NULL, 'O'},
		{"exclude-cidrs", required_argument, NULL, 'C'},
		{"dry-run", no_argument, NULL, 'n'},
		{"remove", no_argument, NULL, 'r'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct intercept_config cfg;
	const char *why = NULL;
	int c, li = 0, dry = 0, remove = 0, bad = 0;
	long long v;

	intercept_config_defaults(&cfg);
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, &li)) != -1) {
		switch (c) {
		case 'u':
			bad = numarg_parse(optarg, 0, UINT32_MAX - 1, &v) < 0;
			why = "expected a user ID from 0 to 4294967294";
			cfg.uid = bad ? cfg.uid : (unsigned)v;
			break;
		case 'i':
			bad = numarg_parse(optarg, 1, 65535, &v) < 0;
			why = "expected a port from 1 to 65535";
			cfg.inbound_port = bad ? cfg.inbound_port : (uint16_t)v;
			break;
		case 'o':
			bad = numarg_parse(optarg, 1, 65535, &v) < 0;
			why = "expected a port from 1 to 65535";
			cfg.outbound_port = bad ? cfg.outbound_port : (uint16_t)v;
			break;
		case 'a':
			bad = numarg_parse(optarg, 1, 65535, &v) < 0;
			why = "expected a port from 1 to 65535";
			cfg.admin_port = bad ? cfg.admin_port : (uint16_t)v;
			break;
		case 'I':
			bad = intercept_parse_ports(optarg, cfg.exclude_in, &cfg.n_exclude_in,
						    &why) < 0;
			break;
		case 'O':
			bad = intercept_parse_ports(optarg, cfg.exclude_out, &cfg.n_exclude_out,
						    &why) < 0;
			break;
		case 'C':
			bad = intercept_parse_cidrs(optarg, cfg.exclude_cidrs, &cfg.n_exclude_cidrs,
						    &why) < 0;
			break;
		case 'n':
			dry = 1;
			break;
		case 'r':
			remove = 1;
			break;
		case 'h':
			init_usage(stdout);
			return 0;
		default: /* getopt named the flag */
			fputs("Run 'cinch-agent init --help' for usage.\n", stderr);
			return 2;
		}
		if (bad) {
			fprintf(stderr,
				"cinch-agent init: --%s \"%s\": %s\n"
				"Run 'cinch-agent init --help' for usage.\n",
				opts[li].name, optarg, why ? why : "not a valid value");
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr,
			"cinch-agent init: unexpected argument \"%s\"\n"
			"Run 'cinch-agent init --help' for usage.\n",
			argv[optind]);
		return 2;
	}
	if (dry) {
		for (int fam = 0; fam < 2; fam++) {
			char *r = intercept_rules(&cfg, fam ? AF_INET6 : AF_INET);
			if (!r)
				return 1;
			char *g = intercept_guard_rules(&cfg);
			if (!g) {
				free(r);
				return 1;
			}
			printf("# %s (nat table)\n%s# %s (filter table)\n%s",
			       fam ? "ip6tables" : "iptables", r, fam ? "ip6tables" : "iptables", g);
			free(r);
			free(g);
		}
		return 0;
	}
	if (intercept_apply(&cfg, remove) < 0)
		return 1;
	fprintf(stderr, "cinch-agent init: interception %s\n", remove ? "removed" : "installed");
	return 0;
}
