/* hub: which agent gets which configuration, and what each one reports
 * back (the control plane's side of cinch.v1.Config, issue #6), apart from
 * any transport.
 *
 * Input is a generation: for every workload of the registry, its key
 * ("<ns>/<name>"), identity, addresses and its packed cinch.v1.Snapshot
 * with a version, compiled elsewhere from the registry and the policy set.
 * hub_publish() replaces the whole generation at once; every open watch
 * whose snapshot changed gets the new one, the others hear nothing.
 *
 * A watch is opened for a caller authenticated by mutual TLS. It may only
 * see a workload whose identity is the caller's own SPIFFE ID (a
 * certificate never unlocks another identity's slice). When several
 * workloads share that identity (replicas of one service account), the
 * caller names its workload, or the one whose address is the caller's
 * source address is taken.
 *
 * Reports (the version an agent enforces, its bundle sequence, its
 * certificate) are kept per workload, for `cinchctl status` and for trust
 * bundle rotation, which waits until every connected agent trusts the new
 * bundle. */
#ifndef CINCH_CONTROL_HUB_H
#define CINCH_CONTROL_HUB_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

struct hub;
struct hub_watch;

/* One workload's slice, borrowed by hub_publish (which copies it). */
struct hub_slice {
	const char *workload;  /* "<ns>/<name>" */
	const char *spiffe_id; /* its identity */
	const char *const *addresses;
	size_t n_addresses;
	const uint8_t *snapshot; /* packed cinch.v1.Snapshot */
	size_t snapshot_len;
	const char *version; /* the snapshot's version */
};

/* Sends one packed Snapshot on the watch's stream (bytes borrowed for the
 * call: copy them). Return 0, or a negative errno when the stream cannot
 * take it (the transport then ends the stream later, from its own loop
 * callback). Neither callback may close any watch: they run inside
 * hub_publish's walk over the watches. */
typedef int (*hub_send_cb)(void *arg, const uint8_t *snap, size_t len);
/* The workload of the watch is gone from the registry: end the stream
 * with NOT_FOUND. The watch is closed by the hub before this runs. */
typedef void (*hub_gone_cb)(void *arg);

struct hub_report {
	const char *applied_version;
	uint64_t bundle_sequence;
	const char *cert_serial_hex;
	int64_t cert_expires_at;
	const char *error; /* "" or why the last snapshot was refused */
};

int hub_new(struct hub **out) __attribute__((warn_unused_result));
void hub_free(struct hub *h); /* every watch must be closed first */

/* Replaces the generation (n slices, copied). -EINVAL on a duplicate
 * workload key or an empty field, and then nothing changes; -ENOMEM. */
int hub_publish(struct hub *h, const struct hub_slice *slices, size_t n)
	__attribute__((warn_unused_result));

/* Opens a watch for the authenticated `peer_id` connecting from
 * `peer_addr` (textual address, no port), for `workload` (NULL or "":
 * find it). When its snapshot's version differs from `known_version`, it
 * is sent before this returns. Returns a gRPC status: 0 and *out;
 * PERMISSION_DENIED (workload of another identity), NOT_FOUND (no such
 * workload, or several and none at peer_addr), INVALID_ARGUMENT; with a
 * static message in *why. */
int hub_watch_open(struct hub *h, const char *peer_id, const char *peer_addr, const char *workload,
		   const char *known_version, hub_send_cb send, hub_gone_cb gone, void *arg,
		   struct hub_watch **out, const char **why);
void hub_watch_close(struct hub_watch *w);

/* Records a report from `peer_id` at `peer_addr` (the workload is found as
 * for a watch). A gRPC status, with *why on a refusal. */
int hub_report(struct hub *h, const char *peer_id, const char *peer_addr, const char *workload,
	       const struct hub_report *r, time_t now, const char **why);

/* What `cinchctl status` shows: a JSON array, one object per workload of
 * the generation (workload, spiffe_id, version, connected watches, and the
 * last report: applied_version, in_sync, bundle_sequence, cert serial and
 * expiry, error, reported_at). New reference. */
json_t *hub_status(const struct hub *h);

/* The smallest bundle sequence reported by a workload with an open watch;
 * UINT64_MAX when no agent is connected. */
uint64_t hub_min_bundle_sequence(const struct hub *h);

#endif
