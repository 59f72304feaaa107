/* cfgwatch: the agent's configuration stream from cinch-control
 * (cinch.v1.Config/Watch, issue #6).
 *
 * One Watch call at a time, authenticated with the agent's current SVID
 * over mutual TLS. Each Snapshot received goes to on_snapshot, which
 * applies it atomically or refuses it; an applied version is then told
 * back with Report (version, bundle sequence, certificate serial and
 * expiry), so `cinchctl status` shows what each pod enforces.
 *
 * When the stream ends, for any reason, the watch reconnects with
 * exponential backoff and full jitter (1 s doubling up to 30 s; reset once
 * a snapshot arrives), sending the version it holds so the control plane
 * can skip an unchanged snapshot. Meanwhile the agent keeps enforcing the
 * last snapshot it applied: nothing is dropped because the control plane
 * is away.
 *
 * Credentials change with every certificate renewal (cfgwatch_set_creds):
 * the open stream keeps the TLS session it was authenticated with, the
 * next connection uses the new credentials; a watch waiting to reconnect
 * (its certificate expired, say) tries them at once. */
#ifndef CINCH_AGENT_CFGWATCH_H
#define CINCH_AGENT_CFGWATCH_H

#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "cinch/v1/config.pb-c.h"
#include "h2c.h"

/* Borrowed for the call. Return 0 when applied, a negative errno when
 * refused (the snapshot is then not reported and the last one stays). */
typedef int (*cfgwatch_snapshot_cb)(void *arg, const Cinch__V1__Snapshot *snap);

struct cfgwatch_opts {
	const char *control_url; /* "https://host:15012", copied */
	const char *workload;	 /* "<ns>/<name>" or NULL, copied */
	size_t max_snapshot;	 /* largest snapshot accepted, bytes */
	cfgwatch_snapshot_cb on_snapshot;
	void *arg;
};

/* What Report says besides the version; set by the agent as it changes. */
struct cfgwatch_report {
	uint64_t bundle_sequence;
	char cert_serial_hex[80];
	int64_t cert_not_after;
};

struct cfgwatch_status {
	int connected;	      /* a stream is open: the control plane answered */
	char version[128];    /* last applied, "" before the first */
	uint64_t snapshots;   /* received */
	uint64_t rejected;    /* refused by on_snapshot or malformed */
	uint64_t reconnects;  /* streams started after the first */
	char last_error[160]; /* why the last stream ended, "" if none */
};

struct cfgwatch;

/* Borrows `h` (must outlive the watch) and takes a reference to `creds`
 * (the agent's SVID and the control plane's bundle). Starts at once.
 * 0 and *out, or -EINVAL / -ENOMEM. */
int cfgwatch_start(uv_loop_t *loop, struct h2c *h, struct mtls_ctx *creds,
		   const struct cfgwatch_opts *o, struct cfgwatch **out)
	__attribute__((warn_unused_result));
/* Replaces the credentials for the next connection (takes a reference);
 * when no stream is open, that connection starts now. */
void cfgwatch_set_creds(struct cfgwatch *w, struct mtls_ctx *creds);
void cfgwatch_set_report(struct cfgwatch *w, const struct cfgwatch_report *r);
/* Cancels the stream and frees the watch once its timer is closed (run the
 * loop afterwards). No callback runs after this. */
void cfgwatch_stop(struct cfgwatch *w);
void cfgwatch_status(const struct cfgwatch *w, struct cfgwatch_status *out);

#endif
