/* config_svc: see config_svc.h.
 *
 * A Watch is a struct cwatch, owned by the call: made when the hub accepts
 * the watch, freed by the call's close callback (cwatch_close_cb), which
 * also closes the hub watch unless the hub already did (workload gone). */
#include "api/config_svc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/grpc.h"
#include "cinch/v1/config.pb-c.h"
#include "grpcc.h"
#include "log.h"
#include "mesh/hub.h"

struct cwatch {
	struct gcall *call;
	struct metrics *metrics; /* borrowed */
	struct hub_watch *w;	 /* NULL once the hub closed it */
	char peer_id[SPIFFE_ID_MAX + 1];
	char addr[64];
};

/* Who the caller is: 0 and its SPIFFE ID, or a gRPC status with *msg. */
static int config_svc_peer(struct config_service *svc, struct gcall *call, struct gcall_peer *peer,
			   struct auth_result *who, const char **msg)
{
	const char *reason = "", *why = "";
	struct auth_request req = {0};

	gcall_peer(call, peer);
	if (!peer->cert) {
		*msg = "the Config service needs a client certificate (an SVID of this CA)";
		return GRPC_UNAUTHENTICATED;
	}
	req.peer = peer->cert;
	req.peer_chain = peer->chain;
	req.peer_cache = peer->cache;
	req.now = time(NULL);
	int code = svc->peer.ops->authenticate(svc->peer.impl, &req, who, &why, &reason);
	if (code != GRPC_OK)
		*msg = why;
	return code;
}

static void config_svc_refused(const char *method, const struct gcall_peer *peer, const char *id,
			       int code, const char *msg)
{
	log_event(LOG_LVL_INFO, "config_refused",
		  json_pack("{s:s, s:s, s:s, s:s, s:s}", "method", method, "peer", peer->addr,
			    "spiffe_id", id, "status", grpc_code_name(code), "message", msg));
}

static int cwatch_send_cb(void *arg, const uint8_t *snap, size_t len)
{
	struct cwatch *cw = arg;
	int rc = gcall_send(cw->call, snap, len);

	if (rc >= 0)
		cw->metrics->snapshots_sent++;
	if (rc == -ENOBUFS)
		log_event(LOG_LVL_WARN, "config_watch_overflow",
			  json_pack("{s:s, s:s}", "peer", cw->addr, "spiffe_id", cw->peer_id));
	return rc;
}

static void cwatch_gone_cb(void *arg)
{
	struct cwatch *cw = arg;

	cw->w = NULL;
	gcall_finish(cw->call, GRPC_NOT_FOUND, "the workload left the registry");
}

static void cwatch_close_cb(void *arg)
{
	struct cwatch *cw = arg;

	hub_watch_close(cw->w);
	cw->metrics->watch_streams--;
	log_event(LOG_LVL_DEBUG, "config_watch_closed",
		  json_pack("{s:s, s:s}", "peer", cw->addr, "spiffe_id", cw->peer_id));
	free(cw);
}

void config_svc_watch(struct config_service *svc, struct gcall *call, const uint8_t *req,
		      size_t len)
{
	struct gcall_peer peer;
	struct auth_result who = {0};
	const char *msg = "";
	Cinch__V1__WatchRequest *wr = NULL;
	struct cwatch *cw = NULL;
	int code = config_svc_peer(svc, call, &peer, &who, &msg);

	if (code != GRPC_OK)
		goto out;
	wr = cinch__v1__watch_request__unpack(NULL, len, req);
	if (!wr) {
		code = GRPC_INVALID_ARGUMENT;
		msg = "not a WatchRequest";
		goto out;
	}
	cw = calloc(1, sizeof(*cw));
	if (!cw) {
		code = GRPC_INTERNAL;
		msg = "out of memory";
		goto out;
	}
	cw->call = call;
	cw->metrics = svc->metrics;
	svc->metrics->watch_streams++; /* the close callback takes it back */
	memcpy(cw->peer_id, who.id, sizeof(cw->peer_id));
	snprintf(cw->addr, sizeof(cw->addr), "%s", peer.addr);
	/* The hub may send the first snapshot before it returns: the call
	 * queues it, and the close callback is in place before anything. */
	gcall_on_close(call, cwatch_close_cb, cw);
	code = hub_watch_open(svc->hub, who.id, peer.ip, wr->workload, wr->known_version,
			      cwatch_send_cb, cwatch_gone_cb, cw, &cw->w, &msg);
	if (code != GRPC_OK) {
		gcall_on_close(call, NULL, NULL);
		svc->metrics->watch_streams--;
		free(cw);
		goto out;
	}
	log_event(LOG_LVL_INFO, "config_watch_opened",
		  json_pack("{s:s, s:s, s:s, s:s}", "peer", peer.addr, "spiffe_id", who.id,
			    "workload", wr->workload, "known_version", wr->known_version));
out:
	if (code != GRPC_OK) {
		svc->metrics->config_refused[0]++;
		config_svc_refused("Watch", &peer, who.id, code, msg);
		gcall_finish(call, code, msg);
	}
	cinch__v1__watch_request__free_unpacked(wr, NULL);
}

void config_svc_report(struct config_service *svc, struct gcall *call, const uint8_t *req,
		       size_t len)
{
	struct gcall_peer peer;
	struct auth_result who = {0};
	const char *msg = "";
	Cinch__V1__ReportRequest *rr = NULL;
	int code = config_svc_peer(svc, call, &peer, &who, &msg);
	uint8_t empty[1];

	if (code == GRPC_OK && !(rr = cinch__v1__report_request__unpack(NULL, len, req))) {
		code = GRPC_INVALID_ARGUMENT;
		msg = "not a ReportRequest";
	}
	if (code == GRPC_OK) {
		struct hub_report r = {
			.applied_version = rr->applied_version,
			.bundle_sequence = rr->bundle_sequence,
			.cert_serial_hex = rr->cert_serial_hex,
			.cert_expires_at = rr->cert_expires_at_unix,
			.error = rr->error,
		};
		/* the workload: found from the identity and address, as for Watch */
		code = hub_report(svc->hub, who.id, peer.ip, NULL, &r, time(NULL), &msg);
	}
	if (code == GRPC_OK && gcall_send(call, empty, 0) < 0) {
		code = GRPC_INTERNAL;
		msg = "out of memory";
	}
	if (code != GRPC_OK) {
		svc->metrics->config_refused[1]++;
		config_svc_refused("Report", &peer, who.id, code, msg);
	} else {
		svc->metrics->reports[rr->error && *rr->error ? 1 : 0]++;
		log_event(LOG_LVL_DEBUG, "config_reported",
			  json_pack("{s:s, s:s, s:s, s:s}", "peer", peer.addr, "spiffe_id", who.id,
				    "applied_version", rr->applied_version, "error", rr->error));
	}
	gcall_finish(call, code, msg);
	cinch__v1__report_request__free_unpacked(rr, NULL);
}
