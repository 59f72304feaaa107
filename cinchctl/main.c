/* cinchctl: the operator command line. main() dispatches to one command
 * family per file (ctl.h); no logic lives here. */
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "httpc.h"
#include "version.h"

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *help;
} ctl_families[] = {
	{"token", ctl_token, "token create --identity NS/SA    a single-use join token"},
	{"bundle", ctl_bundle, "bundle show [--pem]               the mesh's trust bundle"},
	{"ca", ctl_ca, "ca rotate|retire|status           rotate the mesh's root"},
	{"cert", ctl_cert, "cert inspect FILE [--bundle F]    what a certificate says"},
	{"policy", ctl_policy, "policy check|lint|test|explain    validate and ask the policy"},
	{"status", ctl_status, "status [--json] [--cluster]       which agent enforces what"},
	{"check", ctl_check, "check [--kubeconfig F]            is the cluster's mesh healthy"},
};

static void usage(FILE *out)
{
	fprintf(out, "usage: cinchctl COMMAND ...   (cinchctl COMMAND --help for more)\n"
		     "\n"
		     "Operate a Cinch mesh: tokens, certificates, bundles, policy, health.\n"
		     "\n");
	for (size_t i = 0; i < sizeof(ctl_families) / sizeof(ctl_families[0]); i++)
		fprintf(out, "  %s\n", ctl_families[i].help);
	fprintf(out, "\n"
		     "  -h, --help     this help\n"
		     "  -V, --version  the version and the linked library versions\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "cinchctl: missing a command\nRun 'cinchctl --help' for usage.\n");
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
		version_print(stdout, "cinchctl");
		httpc_version_print(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof(ctl_families) / sizeof(ctl_families[0]); i++)
		if (!strcmp(argv[1], ctl_families[i].name))
			return ctl_families[i].run(argc - 1, argv + 1);
	fprintf(stderr, "cinchctl: unknown command \"%s\"\nRun 'cinchctl --help' for usage.\n",
		argv[1]);
	return 2;
}
