/* config_fuzz: any bytes as the request of a cinch.v1.Config call, as an
 * agent with a valid SVID (possibly a compromised workload) sends it to
 * cinch-control's port 15012: a WatchRequest (which slice it wants, from
 * which version) or a ReportRequest (what it enforces; the strings end up
 * in `cinchctl status`). The first input byte picks the method ('W':
 * Watch, anything else: Report), the rest is the message, decoded and
 * handed to the hub as api/config_svc.c does, over a fresh hub holding
 * shop/web-0 and shop/web-1 (the caller's identity, PEER_ID) and shop/db-0
 * (another identity).
 *
 * What must hold, besides no crash, leak or read past the input: every
 * answer is a known gRPC status with a message on refusal; a watch only
 * ever gets the snapshot of a workload of the caller's own identity (never
 * db's); a report is refused or stored as sent; the status table
 * `cinchctl status` reads is always built and serializable. Seeds
 * (corpus/config/) come from tests/fuzz/mkseeds.py. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cinch/v1/config.pb-c.h"
#include "grpcc.h"
#include "hub.h"

#define PEER_ID	 "spiffe://cluster.local/ns/shop/sa/web"
#define OTHER_ID "spiffe://cluster.local/ns/shop/sa/db"
#define PEER_IP	 "10.1.0.2"
#define DB_SNAP	 "db-0@v1"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const web0_addr[] = {PEER_IP};
static const char *const web1_addr[] = {"10.1.0.3", "fd00::3"};
static const char *const db0_addr[] = {"10.1.0.4"};
static const struct hub_slice fz_slices[] = {
	{"shop/web-0", PEER_ID, web0_addr, 1, (const uint8_t *)"web-0@v1", 8, "v1"},
	{"shop/web-1", PEER_ID, web1_addr, 2, (const uint8_t *)"web-1@v1", 8, "v1"},
	{"shop/db-0", OTHER_ID, db0_addr, 1, (const uint8_t *)DB_SNAP, sizeof(DB_SNAP) - 1, "v1"},
};

static int fz_send_cb(void *arg, const uint8_t *snap, size_t len)
{
	int *sent = arg;

	if (len == sizeof(DB_SNAP) - 1 && memcmp(snap, DB_SNAP, len) == 0)
		abort(); /* another identity's slice */
	(*sent)++;
	return 0;
}

static void fz_gone_cb(void *arg)
{
	(void)arg;
	abort(); /* the generation never changes here */
}

static int fz_code_ok(int code, const char *why)
{
	return code == GRPC_OK || ((code == GRPC_INVALID_ARGUMENT || code == GRPC_NOT_FOUND ||
				    code == GRPC_PERMISSION_DENIED || code == GRPC_INTERNAL) &&
				   why && *why);
}

static void fz_watch(struct hub *h, const uint8_t *msg, size_t len)
{
	Cinch__V1__WatchRequest *wr = cinch__v1__watch_request__unpack(NULL, len, msg);
	struct hub_watch *w = NULL;
	const char *why = NULL;
	int sent = 0;

	if (!wr)
		return;
	int code = hub_watch_open(h, PEER_ID, PEER_IP, wr->workload, wr->known_version,
				  fz_send_cb, fz_gone_cb, &sent, &w, &why);
	if (!fz_code_ok(code, why) || (code == GRPC_OK) != (w != NULL) ||
	    (code == GRPC_OK && strcmp(wr->known_version, "v1") != 0 && sent != 1) ||
	    (strcmp(wr->workload, "shop/db-0") == 0 && code != GRPC_PERMISSION_DENIED))
		abort();
	hub_watch_close(w);
	cinch__v1__watch_request__free_unpacked(wr, NULL);
}

static void fz_report(struct hub *h, const uint8_t *msg, size_t len)
{
	Cinch__V1__ReportRequest *rr = cinch__v1__report_request__unpack(NULL, len, msg);
	const char *why = NULL;

	if (!rr)
		return;
	struct hub_report r = {
		.applied_version = rr->applied_version,
		.bundle_sequence = rr->bundle_sequence,
		.cert_serial_hex = rr->cert_serial_hex,
		.cert_expires_at = rr->cert_expires_at_unix,
		.error = rr->error,
	};
	int code = hub_report(h, PEER_ID, PEER_IP, NULL, &r, time(NULL), &why);
	if (!fz_code_ok(code, why))
		abort();
	json_t *st = hub_status(h);
	char *s = st ? json_dumps(st, JSON_COMPACT) : NULL;
	if (!s)
		abort();
	/* web-0 is listed first (publish order) and is the caller's. */
	const char *got = json_string_value(
		json_object_get(json_object_get(json_array_get(st, 0), "report"), "applied_version"));
	if (code == GRPC_OK && (!got || strcmp(got, rr->applied_version) != 0))
		abort();
	free(s);
	json_decref(st);
	cinch__v1__report_request__free_unpacked(rr, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hub *h = NULL;

	if (size == 0 || hub_new(&h) < 0)
		return 0;
	if (hub_publish(h, fz_slices, sizeof(fz_slices) / sizeof(fz_slices[0])) < 0)
		abort();
	if (data[0] == 'W')
		fz_watch(h, data + 1, size - 1);
	else
		fz_report(h, data + 1, size - 1);
	hub_free(h);
	return 0;
}
