/* cinch-agent: the per-pod proxy. main() parses flags and hands over to the
 * agent library; no logic lives here. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "agentd.h"
#include "init.h"
#include "version.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: cinch-agent COMMAND [options]   (cinch-agent COMMAND --help for more)\n"
		"       cinch-agent [--help] [--version]\n"
		"\n"
		"The Cinch sidecar: intercepts a pod's TCP, speaks mutual TLS 1.3 with\n"
		"SPIFFE identities to other agents and enforces allow rules.\n"
		"\n"
		"  run            the agent itself (the sidecar container)\n"
		"  init           install the traffic interception (the init container)\n"
		"\n"
		"  -h, --help     show this help\n"
		"  -V, --version  print the version and the linked library versions\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{0},
	};
	int c;

	if (argc > 1 && !strcmp(argv[1], "init"))
		return init_main(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "run"))
		return agentd_main(argc - 1, argv + 1);
	opterr = 0;
	while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			version_print(stdout, "cinch-agent");
			return 0;
		default:
			fprintf(stderr,
				"cinch-agent: unknown flag %s\nRun 'cinch-agent --help' for "
				"usage.\n",
				argv[optind - 1]);
			return 2;
		}
	}
	fprintf(stderr,
		optind < argc ? "cinch-agent: unknown command \"%s\"\n"
				"Run 'cinch-agent --help' for usage.\n"
			      : "cinch-agent: missing a command (run or init)%s\n"
				"Run 'cinch-agent --help' for usage.\n",
		optind < argc ? argv[optind] : "");
	return 2;
}
