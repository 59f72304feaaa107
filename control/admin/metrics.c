/* metrics: see metrics.h. Fixed tables, no allocation until rendering. */
#include "admin/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double metrics_bounds[METRICS_N_BUCKETS] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
};

static void metrics_count(struct metrics_counter *t, const char *label)
{
	for (size_t i = 0; i < METRICS_MAX_LABELS; i++) {
		if (!t[i].label)
			t[i].label = label;
		if (t[i].label == label || !strcmp(t[i].label, label)) {
			t[i].n++;
			return;
		}
	}
	/* Full: the last slot becomes "other" rather than losing counts. */
	t[METRICS_MAX_LABELS - 1].label = "other";
	t[METRICS_MAX_LABELS - 1].n++;
}

void metrics_issued(struct metrics *m, const char *method)
{
	metrics_count(m->issued, method);
}

void metrics_refused(struct metrics *m, const char *reason)
{
	metrics_count(m->refused, reason);
}

void metrics_observe_sign(struct metrics *m, double s)
{
	for (size_t i = 0; i < METRICS_N_BUCKETS; i++)
		if (s <= metrics_bounds[i])
			m->buckets[i]++;
	m->count++;
	m->sum += s;
}

char *metrics_render(const struct metrics *m)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	fputs("# HELP cinch_control_certs_issued_total Certificates issued, by authentication "
	      "method.\n# TYPE cinch_control_certs_issued_total counter\n",
	      f);
	for (size_t i = 0; i < METRICS_MAX_LABELS && m->issued[i].label; i++)
		fprintf(f, "cinch_control_certs_issued_total{method=\"%s\"} %llu\n",
			m->issued[i].label, (unsigned long long)m->issued[i].n);
	fputs("# HELP cinch_control_sign_refused_total Sign calls refused, by reason.\n"
	      "# TYPE cinch_control_sign_refused_total counter\n",
	      f);
	for (size_t i = 0; i < METRICS_MAX_LABELS && m->refused[i].label; i++)
		fprintf(f, "cinch_control_sign_refused_total{reason=\"%s\"} %llu\n",
			m->refused[i].label, (unsigned long long)m->refused[i].n);
	fputs("# HELP cinch_control_sign_duration_seconds Time to handle one Sign call.\n"
	      "# TYPE cinch_control_sign_duration_seconds histogram\n",
	      f);
	for (size_t i = 0; i < METRICS_N_BUCKETS; i++)
		fprintf(f, "cinch_control_sign_duration_seconds_bucket{le=\"%g\"} %llu\n",
			metrics_bounds[i], (unsigned long long)m->buckets[i]);
	fprintf(f,
		"cinch_control_sign_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
		"cinch_control_sign_duration_seconds_sum %.6f\n"
		"cinch_control_sign_duration_seconds_count %llu\n",
		(unsigned long long)m->count, m->sum, (unsigned long long)m->count);
	fprintf(f,
		"# HELP cinch_control_ca_expiry_timestamp_seconds notAfter of the signing CA.\n"
		"# TYPE cinch_control_ca_expiry_timestamp_seconds gauge\n"
		"cinch_control_ca_expiry_timestamp_seconds %lld\n"
		"# HELP cinch_control_bundle_sequence Sequence of the trust bundle in force.\n"
		"# TYPE cinch_control_bundle_sequence gauge\n"
		"cinch_control_bundle_sequence %llu\n"
		"# HELP cinch_control_ca_rotations_total Root rotation steps done.\n"
		"# TYPE cinch_control_ca_rotations_total counter\n"
		"cinch_control_ca_rotations_total %llu\n",
		(long long)m->ca_expiry, (unsigned long long)m->bundle_sequence,
		(unsigned long long)m->ca_rotations);
	if (m->webhook_cert_expiry)
		fprintf(f,
			"# HELP cinch_control_webhook_cert_expiry_timestamp_seconds notAfter of the "
			"injection webhook's serving certificate.\n"
			"# TYPE cinch_control_webhook_cert_expiry_timestamp_seconds gauge\n"
			"cinch_control_webhook_cert_expiry_timestamp_seconds %lld\n",
			(long long)m->webhook_cert_expiry);
	if (m->trust_bundle_on)
		fprintf(f,
			"# HELP cinch_control_trust_bundle_foreign_configmaps Meshed namespaces "
			"whose trust-bundle ConfigMap cinch-control does not own (left alone).\n"
			"# TYPE cinch_control_trust_bundle_foreign_configmaps gauge\n"
			"cinch_control_trust_bundle_foreign_configmaps %u\n",
			m->trust_bundle_foreign);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}
