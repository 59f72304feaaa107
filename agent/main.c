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
	fprintf(out, "usage: cinch-agent init [options]   (cinch-agent init --help)\n"
		     "       cinch-agent [--help] [--version]\n"
		     "\n"
		     "The Cinch sidecar: intercepts a pod's TCP, speaks mutual TLS 1.3 with\n"
		     "SPIFFE identities to other agents and enforces allow rules.\n"
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
	while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			version_print(stdout, "cinch-agent");
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	fprintf(stderr, "cinch-agent: a command is needed: run or init (see --help)\n");
	return 2;
}
