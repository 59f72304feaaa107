/* inject_driver: feeds one AdmissionReview from stdin to inject_review()
 * and prints the answer, for the kubectl-based script test. Test-only.
 *   inject_driver [--classic] [--allow-pod-exclusions] < review.json > answer.json
 * --allow-pod-exclusions: as under a MeshPolicy with allowPodExclusions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inject.h"

static int allow_all(void *arg, const char *ns)
{
	(void)arg;
	(void)ns;
	return 1;
}

int main(int argc, char **argv)
{
	struct inject_config cfg;
	char buf[1 << 20];
	const char *why = NULL;
	char *out = NULL;

	inject_config_defaults(&cfg);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--classic") == 0) {
			cfg.native_sidecar = 0;
		} else if (strcmp(argv[i], "--allow-pod-exclusions") == 0) {
			cfg.pod_exclusions = allow_all;
		} else {
			fprintf(stderr,
				"usage: inject_driver [--classic] [--allow-pod-exclusions]\n");
			return 2;
		}
	}
	size_t n = fread(buf, 1, sizeof(buf), stdin);
	if (inject_review(&cfg, buf, n, &out, &why) < 0) {
		fprintf(stderr, "inject_driver: %s\n", why);
		return 1;
	}
	puts(out);
	free(out);
	return 0;
}
