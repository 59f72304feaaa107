/* webhook_fuzz: the injection webhook's two parsers on any bytes. The
 * input is split at its first NUL: the part before is an HTTP/1.1 request
 * head for webhook_h1_parse, the part after a request body for
 * webhook_answer (the whole answer: JSON, AdmissionReview checks and the
 * patch). Neither may read outside its buffer; a parsed head has a token
 * method and a path starting with '/'; every answer has a known status
 * and, for 200, is an AdmissionReview. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "inject.h"
#include "webhook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t head_len = nul ? (size_t)(nul - data) : size;
	size_t body_len = nul ? size - head_len - 1 : 0;
	/* Exact-size copies, so ASan catches any read past the input. */
	char *head = malloc(head_len ? head_len : 1);
	char *body = malloc(body_len ? body_len : 1);
	struct webhook_h1_head h;
	struct inject_config cfg;

	if (!head || !body)
		goto out;
	memcpy(head, data, head_len);
	if (body_len)
		memcpy(body, nul + 1, body_len);
	int rc = webhook_h1_parse(head, head_len, &h);
	if (rc == 0) {
		if (!h.method[0] || h.path[0] != '/' || h.head_len > head_len)
			abort();
	} else if (rc != -EAGAIN && rc != 400 && rc != 431 && rc != 501) {
		abort();
	}

	int status;
	const char *ctype;
	char *out = NULL;
	size_t out_len;
	inject_config_defaults(&cfg);
	if (webhook_answer(&cfg, "POST", "/inject", "application/json", body, body_len, &status,
			   &ctype, &out, &out_len) < 0)
		goto out;
	if ((status != 200 && status != 400) || strlen(out) != out_len ||
	    (status == 200 && !strstr(out, "\"kind\":\"AdmissionReview\"")))
		abort();
	free(out);
out:
	free(head);
	free(body);
	return 0;
}
