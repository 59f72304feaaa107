/* config_svc: see config_svc.h.
 *
 * A Watch is a struct cwatch, owned by the call: made when the hub accepts
 * the watch, on the service's list of open watches until the call's close
 * callback (cwatch_close_cb) takes it off, closes the hub watch (unless the
 * hub already did: workload gone) and its timer; freed in the timer's close
 * callback.
 *
 * A stream is authorized by the client certificate of its connection for
 * as long as that certificate authenticates a new call would: cwatch_check
 * runs the same authenticator as a call (with the connection's cache) when
 * the stream opens, at the certificate's notAfter (the timer) and after
 * every change of trust (config_svc_recheck), and ends the stream with
 * UNAUTHENTICATED the first time it refuses. */
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
#include "svid.h"

struct cwatch {
	struct config_service *svc;
	struct gcall *call;
	struct metrics *metrics; /* borrowed */
	struct hub_watch *w;	 /* NULL once the hub closed it */
	struct list_node link;	 /* on svc->watches once the hub accepted it */
	uv_timer_t expiry;	 /* the client certificate's notAfter */
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
		  log_pack("{s:s, s:s, s:s, s:s, s:s}", "method", method, "peer", peer->addr,
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
			  log_pack("{s:s, s:s}", "peer", cw->addr, "spiffe_id", cw->peer_id));
	return rc;
}

static void cwatch_gone_cb(void *arg)
{
	struct cwatch *cw = arg;

	cw->w = NULL;
	gcall_finish(cw->call, GRPC_NOT_FOUND, "the workload left the registry");
}

static void cwatch_free(uv_handle_t *h)
{
	free(h->data);
}

static void cwatch_close_cb(void *arg)
{
	struct cwatch *cw = arg;

	hub_watch_close(cw->w);
	list_del(&cw->link);
	cw->metrics->watch_streams--;
	log_event(LOG_LVL_DEBUG, "config_watch_closed",
		  log_pack("{s:s, s:s}", "peer", cw->addr, "spiffe_id", cw->peer_id));
	uv_close((uv_handle_t *)&cw->expiry, cwatch_free);
}

static void cwatch_expired(uv_timer_t *t);

/* Is the stream's client certificate still good for a call now? If so,
 * the timer is armed for its notAfter; if not, the stream ends. */
static void cwatch_check(struct cwatch *cw)
{
	struct gcall_peer peer;
	struct auth_result who = {0};
	const char *msg = "";
	int64_t not_after = 0;
	struct timespec ts;
	int code = config_svc_peer(cw->svc, cw->call, &peer, &who, &msg);

	if (code == GRPC_OK && strcmp(who.id, cw->peer_id) != 0) {
		code = GRPC_UNAUTHENTICATED; /* cannot happen: one certificate per connection */
		msg = "the client certificate names another identity than at the start";
	}
	if (code != GRPC_OK) {
		uv_timer_stop(&cw->expiry);
		log_event(LOG_LVL_INFO, "config_watch_unauthenticated",
			  log_pack("{s:s, s:s, s:s}", "peer", cw->addr, "spiffe_id", cw->peer_id,
				    "message", msg));
		gcall_finish(cw->call, GRPC_UNAUTHENTICATED, msg);
		return;
	}
	/* to the millisecond of notAfter: the check then fails (at notAfter
	 * a certificate is expired), or, if the clock moved, runs again */
	svid_time_unix(X509_get0_notAfter(peer.cert), &not_after);
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t left_ms = not_after * 1000 - ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
	uv_timer_start(&cw->expiry, cwatch_expired, left_ms > 0 ? (uint64_t)left_ms : 1000, 0);
}

static void cwatch_expired(uv_timer_t *t)
{
	cwatch_check(t->data);
}

void config_svc_recheck(struct config_service *svc)
{
	/* gcall_finish only queues the end: no watch leaves the list here */
	struct list_node *n, *next;
	list_for_each_safe(n, next, &svc->watches)
	{
		cwatch_check(list_entry(n, struct cwatch, link));
	}
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
	cw->svc = svc;
	cw->call = call;
	list_init(&cw->link); /* off the list until the hub accepts it */
	cw->metrics = svc->metrics;
	svc->metrics->watch_streams++; /* the close callback takes it back */
	memcpy(cw->peer_id, who.id, sizeof(cw->peer_id));
	snprintf(cw->addr, sizeof(cw->addr), "%s", peer.addr);
	uv_timer_init(svc->loop, &cw->expiry);
	cw->expiry.data = cw;
	/* The hub may send the first snapshot before it returns: the call
	 * queues it, and the close callback is in place before anything. */
	gcall_on_close(call, cwatch_close_cb, cw);
	code = hub_watch_open(svc->hub, who.id, peer.ip, wr->workload, wr->known_version,
			      cwatch_send_cb, cwatch_gone_cb, cw, &cw->w, &msg);
	if (code != GRPC_OK) {
		gcall_on_close(call, NULL, NULL);
		svc->metrics->watch_streams--;
		uv_close((uv_handle_t *)&cw->expiry, cwatch_free);
		goto out;
	}
	list_add_head(&svc->watches, &cw->link);
	cwatch_check(cw); /* arms the timer: the certificate was good just now */
	log_event(LOG_LVL_INFO, "config_watch_opened",
		  log_pack("{s:s, s:s, s:s, s:s}", "peer", peer.addr, "spiffe_id", who.id,
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
			  log_pack("{s:s, s:s, s:s, s:s}", "peer", peer.addr, "spiffe_id", who.id,
				    "applied_version", rr->applied_version, "error", rr->error));
	}
	gcall_finish(call, code, msg);
	cinch__v1__report_request__free_unpacked(rr, NULL);
}
