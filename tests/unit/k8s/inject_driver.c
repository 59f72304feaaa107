/* inject_driver: feeds one AdmissionReview from stdin to inject_review()
 * and prints the answer, for the kubectl-based script test. Test-only.
 *   inject_driver [--classic] < review.json > answer.json */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inject.h"

int main(int argc, char **argv)
{
	struct inject_config cfg;
	char buf[1 << 20];
	const char *why = NULL;
	char *out = NULL;

	inject_config_defaults(&cfg);
	if (argc > 1 && strcmp(argv[1], "--classic") == 0)
		cfg.native_sidecar = 0;
	size_t n = fread(buf, 1, sizeof(buf), stdin);
	if (inject_review(&cfg, buf, n, &out, &why) < 0) {
		fprintf(stderr, "inject_driver: %s\n", why);
		return 1;
	}
	puts(out);
	free(out);
	return 0;
}
