/* cinchctl: the operator command line. main() parses flags and hands over to the
 * component libraries; no logic lives here. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "version.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: cinchctl [--help] [--version]\n"
		"\n"
		"Operate a Cinch mesh: tokens, certificates, bundles and policy.\n"
		"\n"
		"  -h, --help     show this help\n"
		"  -V, --version  print the version and the linked library versions\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			version_print(stdout, "cinchctl");
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	fprintf(stderr, "cinchctl: no commands are built yet; see --help\n");
	return 2;
}
