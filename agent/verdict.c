/* verdict: see verdict.h.
 *
 * The refusal's body is parsed with jansson (duplicate keys refused) and
 * checked whole before anything of it is used: v is 1, code one this
 * agent knows, reason printable ASCII of VERDICT_REASON_MAX bytes at most,
 * port 1..65535. Anything else is -EBADMSG: the caller counts it as
 * invalid_message and logs only its own static text, never the peer's
 * bytes. */
#include "verdict.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

const uint8_t verdict_allow[2] = {0, 0};

static const char *const verdict_names[VERDICT_N_CODES] = {
	[VERDICT_POLICY_DENY] = "policy_deny",
	[VERDICT_INVALID] = "invalid_message",
};

const char *verdict_code_name(enum verdict_code code)
{
	return code < VERDICT_N_CODES ? verdict_names[code] : "invalid_message";
}

int verdict_encode_refusal(uint8_t *buf, size_t cap, enum verdict_code code, const char *reason,
			   uint16_t port)
{
	char cut[VERDICT_REASON_MAX + 1];
	json_t *j;
	size_t n;

	if (code >= VERDICT_N_CODES || cap < 2)
		return -E2BIG;
	strncpy(cut, reason ? reason : "", sizeof(cut) - 1);
	cut[sizeof(cut) - 1] = '\0';
	j = json_pack("{s:i, s:s, s:s, s:i}", "v", 1, "code", verdict_names[code], "reason", cut,
		      "port", (int)port);
	if (!j)
		return -ENOMEM;
	n = json_dumpb(j, (char *)buf + 2, cap - 2, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(j);
	if (n == 0 || n > VERDICT_MAX || n > cap - 2)
		return -E2BIG;
	buf[0] = (uint8_t)(n >> 8);
	buf[1] = (uint8_t)n;
	return (int)(n + 2);
}

/* The body, checked whole (see the top). 0 or -EBADMSG with *why. */
static int verdict_parse(const uint8_t *body, size_t len, struct verdict_refusal *out,
			 const char **why)
{
	json_t *j = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, NULL);
	json_t *v, *code, *reason, *port;
	const char *r;
	size_t rl;
	int rc = -EBADMSG;

	*why = "refusal message is not a JSON object";
	if (!j || !json_is_object(j))
		goto out;
	v = json_object_get(j, "v");
	code = json_object_get(j, "code");
	reason = json_object_get(j, "reason");
	port = json_object_get(j, "port");
	*why = "refusal message of another version";
	if (!json_is_integer(v) || json_integer_value(v) != 1)
		goto out;
	*why = "refusal message with an unknown code";
	if (!json_is_string(code) || strcmp(json_string_value(code), "policy_deny") != 0)
		goto out;
	*why = "refusal message without a valid port";
	if (!json_is_integer(port) || json_integer_value(port) < 1 ||
	    json_integer_value(port) > 65535)
		goto out;
	*why = "refusal message without a printable reason";
	if (!json_is_string(reason) || (rl = json_string_length(reason)) == 0 ||
	    rl > VERDICT_REASON_MAX)
		goto out;
	r = json_string_value(reason);
	for (size_t i = 0; i < rl; i++)
		if (r[i] < 0x20 || r[i] > 0x7e)
			goto out;
	out->code = VERDICT_POLICY_DENY;
	out->port = (uint16_t)json_integer_value(port);
	memcpy(out->reason, r, rl + 1);
	*why = NULL;
	rc = 0;
out:
	json_decref(j);
	return rc;
}

int verdict_rx_feed(struct verdict_rx *rx, const uint8_t *data, size_t n, size_t *used,
		    struct verdict_refusal *out, const char **why)
{
	size_t i = 0;

	for (; i < n && rx->have < 2; i++)
		rx->hdr[rx->have++] = data[i];
	*used = i;
	if (rx->have < 2)
		return VERDICT_RX_MORE;
	rx->len = (uint16_t)(rx->hdr[0] << 8 | rx->hdr[1]);
	if (rx->len == 0)
		return VERDICT_RX_ALLOW;
	if (rx->len > VERDICT_MAX) {
		*why = "refusal message longer than 512 bytes";
		return -EBADMSG;
	}
	if (!rx->body && !(rx->body = malloc(rx->len))) {
		*why = "out of memory";
		return -ENOMEM;
	}
	size_t got = rx->have - 2u, take = n - i < rx->len - got ? n - i : rx->len - got;
	memcpy(rx->body + got, data + i, take);
	rx->have += (uint16_t)take;
	*used = i + take;
	if (rx->have - 2u < rx->len)
		return VERDICT_RX_MORE;
	int rc = verdict_parse(rx->body, rx->len, out, why);
	free(rx->body);
	rx->body = NULL;
	return rc < 0 ? rc : VERDICT_RX_REFUSED;
}

void verdict_rx_cleanup(struct verdict_rx *rx)
{
	free(rx->body);
	*rx = (struct verdict_rx){0};
}
