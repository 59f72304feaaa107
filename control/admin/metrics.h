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
 *
 * Labels are static strings owned by the modules that name them; the table
 * holds at most METRICS_MAX_LABELS of each (further ones count as "other").
 * Loop thread only. */
#ifndef CINCH_CONTROL_METRICS_H
#define CINCH_CONTROL_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define METRICS_MAX_LABELS 24
#define METRICS_N_BUCKETS  11

struct metrics_counter {
	const char *label;
	uint64_t n;
};

struct metrics {
	struct metrics_counter issued[METRICS_MAX_LABELS];
	struct metrics_counter refused[METRICS_MAX_LABELS];
	uint64_t buckets[METRICS_N_BUCKETS];
	uint64_t count;
	double sum;
	int64_t ca_expiry;
	uint64_t bundle_sequence;
	uint64_t ca_rotations;
	int64_t webhook_cert_expiry; /* 0: no webhook */
	int trust_bundle_on;	     /* the ConfigMaps are distributed: */
	unsigned trust_bundle_foreign;
};

void metrics_issued(struct metrics *m, const char *method);
void metrics_refused(struct metrics *m, const char *reason);
void metrics_observe_sign(struct metrics *m, double seconds);
/* The exposition text, new string (free()), NULL on ENOMEM. */
char *metrics_render(const struct metrics *m);

#endif
