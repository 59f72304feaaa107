/* policy_parse_fuzz: any bytes as a policy file. Parsing and validation
 * must end in a set or an error with a message, never a crash, a leak or
 * a read past the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pdoc **docs = NULL;
	size_t n = 0;
	struct policy_error err;
	struct pset *s = pset_new("cluster.local");
	int rc;

	if (!s)
		return 0;
	rc = pdoc_parse_buf("fuzz.yaml", (const char *)data, size, &docs, &n, &err);
	if (rc < 0 && !err.msg[0])
		abort(); /* every refusal says why */
	for (size_t i = 0; rc == 0 && i < n; i++) {
		rc = pset_add_doc(s, "fuzz.yaml", docs[i], &err);
		if (rc < 0 && !err.msg[0])
			abort();
	}
	if (rc == 0 && pset_finish(s, &err) < 0 && !err.msg[0])
		abort();
	for (size_t i = 0; i < n; i++)
		pdoc_free(docs[i]);
	free(docs);
	pset_free(s);
	return 0;
}
