/* cinch-control: the mesh CA and configuration server. main() parses flags and hands over to the
 * control library; no logic lives here. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "version.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: cinch-control [--help] [--version]\n"
		"\n"
		"The Cinch control plane: the mesh CA that signs short-lived X.509-SVIDs\n"
		"and streams each agent its policy.\n"
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
			version_print(stdout, "cinch-control");
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	fprintf(stderr, "cinch-control: the CA and its services are not built yet; see --help\n");
	return 2;
}
