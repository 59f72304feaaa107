/* config_svc: the cinch.v1.Config service (proto/cinch/v1/config.proto)
 * between the gRPC transport (grpc.h: struct gcall) and the mesh state
 * (mesh/hub.h).
 *
 * Both methods need an authenticated client: a certificate over mutual TLS
 * that is a valid SVID of this CA (checked by the same authenticator as
 * Sign's renewal, with the connection's cache). The SPIFFE ID it names and
 * the connection's source address (without port) go to the hub, which
 * decides which workload's slice the caller may see.
 *
 *   Watch   hub_watch_open; each snapshot the hub sends becomes one message
 *           on the stream. The stream stays open until the workload leaves
 *           the registry (NOT_FOUND), the client certificate stops
 *           authenticating it (UNAUTHENTICATED: at its notAfter, or when a
 *           new trust bundle no longer verifies it, config_svc_recheck),
 *           the client cancels, the connection closes, or the client reads
 *           too slowly (RESOURCE_EXHAUSTED); in every case the hub watch is
 *           closed when the stream goes. The agent then comes back with
 *           its current certificate, on a connection made with it.
 *   Report  hub_report; an empty ReportResponse.
 *
 * Refusals: no or invalid client certificate UNAUTHENTICATED; a workload
 * of another identity PERMISSION_DENIED; unknown workload NOT_FOUND; an
 * undecodable request INVALID_ARGUMENT. Each logs one line. */
#ifndef CINCH_CONTROL_CONFIG_SVC_H
#define CINCH_CONTROL_CONFIG_SVC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "admin/metrics.h"
#include "api/auth.h"
#include "list.h"

struct gcall;
struct hub;
struct cwatch;

struct config_service {
	uv_loop_t *loop;
	struct hub *hub;	   /* borrowed */
	struct authenticator peer; /* auth_renew_ops and its CA */
	struct list_node watches;  /* the open Watch streams (cwatch, config_svc.c); list_init it */
	struct metrics *metrics;   /* borrowed; Watch and Report counters */
};

/* The authenticator's trust changed (peer.impl is a new CA: a root was
 * added or retired): every open Watch is authenticated again at once, and
 * those whose certificate no longer verifies end with UNAUTHENTICATED. */
void config_svc_recheck(struct config_service *svc);

/* The method handlers grpc.c calls with the request message (borrowed). */
void config_svc_watch(struct config_service *svc, struct gcall *call, const uint8_t *req,
		      size_t len);
void config_svc_report(struct config_service *svc, struct gcall *call, const uint8_t *req,
		       size_t len);

#endif
