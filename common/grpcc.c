/* grpcc: see grpcc.h. Response bytes go through a small framing state
 * machine (PREFIX: collecting the 5-byte header, BODY: collecting the
 * message); headers and trailers are read for content-type, grpc-status
 * and grpc-message; grpcc_done is the one place the outcome is decided.
 * The HTTP-to-gRPC status mapping for non-200 answers follows
 * grpc/doc/http-grpc-status-mapping.md. */
#include "grpcc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum grpcc_frame_state {
	GRPCC_FR_PREFIX = 0,
	GRPCC_FR_BODY,
};

struct grpcc_call {
	struct h2c_req *req;
	grpcc_msg_cb on_message;
	grpcc_open_cb on_open; /* NULL once called */
	grpcc_done_cb on_done;
	void *arg;
	size_t max_message;
	enum grpcc_frame_state fs;
	uint8_t prefix[5];
	size_t have;   /* bytes of prefix or body collected */
	size_t len;    /* body length from the prefix */
	uint8_t *body; /* a message being collected */
	int grpc_status; /* -1 until a grpc-status arrived */
	int content_ok;  /* content-type was application/grpc */
	int local_code;  /* a status we decided (limits, framing), or -1 */
	char message[256];
};

static const char *const grpc_names[] = {
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
};

const char *grpc_code_name(int code)
{
	if (code < 0 || code >= (int)(sizeof(grpc_names) / sizeof(grpc_names[0])))
		return "UNKNOWN";
	return grpc_names[code];
}

/* grpc-message is percent-encoded (PROTOCOL-HTTP2.md). */
static void grpcc_percent_decode(char *dst, size_t cap, const char *s, size_t len)
{
	size_t o = 0;
	for (size_t i = 0; i < len && o + 1 < cap; i++) {
		unsigned v;
		if (s[i] == '%' && i + 2 < len && sscanf(s + i + 1, "%2x", &v) == 1) {
			dst[o++] = (char)v;
			i += 2;
		} else {
			dst[o++] = s[i];
		}
	}
	dst[o] = '\0';
}

static int grpcc_fail(struct grpcc_call *c, int code, const char *msg)
{
	c->local_code = code;
	snprintf(c->message, sizeof(c->message), "%s", msg);
	return -EPROTO;
}

static void grpcc_on_header(struct h2c_req *r, const char *name, size_t nl, const char *value,
			    size_t vl)
{
	struct grpcc_call *c = h2c_req_data(r);

	if (nl == 11 && strncasecmp(name, "grpc-status", 11) == 0) {
		char num[8];
		snprintf(num, sizeof(num), "%.*s", (int)(vl < 7 ? vl : 7), value);
		char *end;
		long v = strtol(num, &end, 10);
		c->grpc_status = (end != num && *end == '\0' && v >= 0 && v <= 16) ? (int)v
										   : GRPC_UNKNOWN;
	} else if (nl == 12 && strncasecmp(name, "grpc-message", 12) == 0) {
		grpcc_percent_decode(c->message, sizeof(c->message), value, vl);
	} else if (nl == 12 && strncasecmp(name, "content-type", 12) == 0) {
		c->content_ok = vl >= 16 && strncmp(value, "application/grpc", 16) == 0;
		if (c->content_ok && c->on_open) {
			grpcc_open_cb cb = c->on_open;
			c->on_open = NULL;
			cb(c->arg);
		}
	}
}

static int grpcc_on_data(struct h2c_req *r, const char *data, size_t len)
{
	struct grpcc_call *c = h2c_req_data(r);
	const uint8_t *p = (const uint8_t *)data;

	while (len) {
		if (c->fs == GRPCC_FR_PREFIX) {
			size_t n = 5 - c->have < len ? 5 - c->have : len;
			memcpy(c->prefix + c->have, p, n);
			c->have += n;
			p += n;
			len -= n;
			if (c->have < 5)
				break;
			if (c->prefix[0] != 0)
				return grpcc_fail(c, GRPC_INTERNAL,
						  "compressed message, but no compression was negotiated");
			c->len = (size_t)c->prefix[1] << 24 | (size_t)c->prefix[2] << 16 |
				 (size_t)c->prefix[3] << 8 | c->prefix[4];
			if (c->len > c->max_message)
				return grpcc_fail(c, GRPC_RESOURCE_EXHAUSTED,
						  "response message larger than the limit");
			c->body = malloc(c->len ? c->len : 1);
			if (!c->body)
				return grpcc_fail(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
			c->fs = GRPCC_FR_BODY;
			c->have = 0;
		}
		size_t n = c->len - c->have < len ? c->len - c->have : len;
		memcpy(c->body + c->have, p, n);
		c->have += n;
		p += n;
		len -= n;
		if (c->have < c->len)
			break;
		int rc = c->on_message(c->arg, c->body, c->len);
		free(c->body);
		c->body = NULL;
		c->fs = GRPCC_FR_PREFIX;
		c->have = 0;
		if (rc < 0)
			return grpcc_fail(c, GRPC_CANCELLED, "cancelled by the caller");
	}
	return 0;
}

/* HTTP status of a non-gRPC answer -> gRPC code. */
static int grpcc_http_code(long http)
{
	switch (http) {
	case 400:
		return GRPC_INTERNAL;
	case 401:
		return GRPC_UNAUTHENTICATED;
	case 403:
		return GRPC_PERMISSION_DENIED;
	case 404:
		return GRPC_UNIMPLEMENTED;
	case 429:
	case 502:
	case 503:
	case 504:
		return GRPC_UNAVAILABLE;
	default:
		return GRPC_UNKNOWN;
	}
}

static void grpcc_on_done(struct h2c_req *r, int status, long http, const char *err)
{
	struct grpcc_call *c = h2c_req_data(r);
	int code;

	if (c->local_code >= 0) {
		code = c->local_code;
	} else if (status == -ECANCELED) {
		code = GRPC_CANCELLED;
		snprintf(c->message, sizeof(c->message), "cancelled");
	} else if (status == -ETIMEDOUT) {
		code = GRPC_DEADLINE_EXCEEDED;
		snprintf(c->message, sizeof(c->message), "%s", err);
	} else if (status < 0) {
		code = GRPC_UNAVAILABLE;
		snprintf(c->message, sizeof(c->message), "%s", err);
	} else if (http == 0) {
		code = GRPC_INTERNAL;
		snprintf(c->message, sizeof(c->message), "the answer ended before its headers");
	} else if (http != 200) {
		code = grpcc_http_code(http);
		snprintf(c->message, sizeof(c->message), "HTTP status %ld", http);
	} else if (!c->content_ok) {
		code = GRPC_UNKNOWN;
		snprintf(c->message, sizeof(c->message), "the answer is not application/grpc");
	} else if (c->grpc_status < 0) {
		code = GRPC_INTERNAL;
		snprintf(c->message, sizeof(c->message), "the answer ended without grpc-status");
	} else if (c->fs != GRPCC_FR_PREFIX || c->have) {
		code = GRPC_INTERNAL;
		snprintf(c->message, sizeof(c->message), "the answer ended inside a message");
	} else {
		code = c->grpc_status;
	}
	c->on_done(c->arg, code, c->message);
	free(c->body);
	free(c);
}

int grpcc_call(struct h2c *h, struct mtls_ctx *creds, const struct grpcc_opts *o,
	       struct grpcc_call **out)
{
	char url[512], timeout[48];
	struct grpcc_call *c;
	uint8_t *framed;
	int rc;

	if (!o->base_url || !o->method || o->method[0] != '/' || !o->on_message || !o->on_done ||
	    o->request_len > UINT32_MAX ||
	    (size_t)snprintf(url, sizeof(url), "%s%s", o->base_url, o->method) >= sizeof(url))
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	framed = malloc(o->request_len + 5);
	if (!c || !framed) {
		free(c);
		free(framed);
		return -ENOMEM;
	}
	c->on_message = o->on_message;
	c->on_open = o->on_open;
	c->on_done = o->on_done;
	c->arg = o->arg;
	c->max_message = o->max_message;
	c->grpc_status = -1;
	c->local_code = -1;

	framed[0] = 0;
	framed[1] = (uint8_t)(o->request_len >> 24);
	framed[2] = (uint8_t)(o->request_len >> 16);
	framed[3] = (uint8_t)(o->request_len >> 8);
	framed[4] = (uint8_t)o->request_len;
	if (o->request_len)
		memcpy(framed + 5, o->request, o->request_len);
	/* grpc-timeout: at most 8 digits, so milliseconds up to ~27 hours. */
	snprintf(timeout, sizeof(timeout), "grpc-timeout: %ldm",
		 o->timeout_ms > 99999999 ? 99999999L : o->timeout_ms);
	const char *headers[] = { "content-type: application/grpc", "te: trailers",
				  "user-agent: cinch-grpcc/1", o->timeout_ms ? timeout : NULL, NULL };
	struct h2c_req_opts ho = {
		.method = "POST", .url = url, .headers = headers, .body = framed,
		.body_len = o->request_len + 5, .timeout_ms = o->timeout_ms,
		.on_header = grpcc_on_header, .on_data = grpcc_on_data,
		.on_done = grpcc_on_done, .data = c,
	};
	rc = h2c_request(h, &ho, creds, &c->req);
	free(framed);
	if (rc < 0) {
		free(c);
		return rc;
	}
	if (out)
		*out = c;
	return 0;
}

void grpcc_cancel(struct grpcc_call *c)
{
	h2c_cancel(c->req);
}
