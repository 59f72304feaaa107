/* metrics: the counters behind GET /metrics (Prometheus text format 0.0.4).
 *
 *   cinch_control_certs_issued_total{method}   per authentication method
 *   cinch_control_sign_refused_total{reason}   reason = the code's names
 *                                               (ca_reason_name, token_...)
 *   cinch_control_sign_duration_seconds        histogram of Sign handling
 *   cinch_control_ca_expiry_timestamp_seconds  the signing CA's notAfter
 *   cinch_control_bundle_sequence              the trust bundle's sequence
 *   cinch_control_ca_rotations_total           root rotation steps done
 *   cinch_control_webhook_cert_expiry_timestamp_seconds
 *                                               notAfter of the injection
 *                                               webhook's certificate (with
 *                                               the webhook on)
 *   cinch_control_trust_bundle_foreign_configmaps
 *                                               meshed namespaces whose
 *                                               cinch-trust-bundle is not
 *                                               ours (with the distribution on)
 *   cinch_control_watch_streams                Config Watch streams open
 *   cinch_control_snapshots_sent_total         snapshots sent on them
 *   cinch_control_config_reports_total{result} agents' Reports: applied
 *                                               (the ack) or rejected
 *   cinch_control_config_refused_total{method} Watch/Report calls refused
 *   cinch_control_config_generations_total     configurations published
 *   cinch_control_config_info{version}         1, labelled with the version
 *                                               of the configuration in force
 *                                               (replicas in sync agree)
 *   cinch_control_config_rejected_total        changes rejected (invalid)
 *   cinch_control_tokenreview_duration_seconds histogram of TokenReviews
 *   cinch_control_tokenreview_failures_total{reason}  refused, unavailable
 *   cinch_control_kube_watch_errors_total      watches that backed off
 *   cinch_control_kube_relists_total           relists after 410 Gone
 *   cinch_control_webhook_requests_total       injection webhook requests
 *   cinch_control_webhook_errors_total         of them answered with an error
 * with cinch_control_build_info and the process_* families (promtext.h).
 * Every family is described in docs/metrics.md.
 *
 * Labels are static strings owned by the modules that name them; the table
 * holds at most METRICS_MAX_LABELS of each (further ones count as "other").
 * Loop thread only. */
#ifndef CINCH_CONTROL_METRICS_H
#define CINCH_CONTROL_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "promtext.h"

#define METRICS_MAX_LABELS 24
#define METRICS_N_BUCKETS  11

struct metrics_counter {
	const char *label;
	uint64_t n;
};

struct metrics {
	struct metrics_counter issued[METRICS_MAX_LABELS];
	struct metrics_counter refused[METRICS_MAX_LABELS];
	struct promtext_hist sign;
	int64_t ca_expiry;
	uint64_t bundle_sequence;
	uint64_t ca_rotations;
	int64_t webhook_cert_expiry; /* 0: no webhook */
	int trust_bundle_on;	     /* the ConfigMaps are distributed: */
	unsigned trust_bundle_foreign;
	int64_t watch_streams;
	uint64_t snapshots_sent;
	uint64_t reports[2];	    /* [rejected?] */
	uint64_t config_refused[2]; /* [Report?] */
	struct promtext_hist tokenreview;
	uint64_t tokenreview_failures[2]; /* [unavailable?] (else refused) */
	/* Copied from the modules that keep them just before rendering. */
	uint64_t kube_watch_errors, kube_relists;
	uint64_t config_generations, config_rejected;
	const char *config_version; /* borrowed from the store; "" before the first */
	uint64_t webhook_requests, webhook_errors;
};

void metrics_issued(struct metrics *m, const char *method);
void metrics_refused(struct metrics *m, const char *reason);
void metrics_observe_sign(struct metrics *m, double seconds);
/* One TokenReview that took `seconds`; failure: NULL, "refused" (the API
 * server said the token is not valid) or "unavailable" (no verdict). */
void metrics_tokenreview(struct metrics *m, double seconds, const char *failure);
/* The exposition text, new string (free()), NULL on ENOMEM. */
char *metrics_render(const struct metrics *m);

#endif
