/* metrics: see metrics.h. Fixed tables, no allocation until rendering. */
#include "admin/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double metrics_bounds[METRICS_N_BUCKETS] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
};
static const struct promtext_buckets metrics_sign_buckets = {metrics_bounds, METRICS_N_BUCKETS};
/* A TokenReview is a round trip to the API server: 5 ms to 10 s (kapi's
 * request timeout). */
static const double metrics_tr_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
static const struct promtext_buckets metrics_tr_buckets = {
	metrics_tr_bounds, sizeof(metrics_tr_bounds) / sizeof(metrics_tr_bounds[0])};

void metrics_tokenreview(struct metrics *m, double s, const char *failure)
{
	promtext_hist_observe(&m->tokenreview, &metrics_tr_buckets, s);
	if (failure)
		m->tokenreview_failures[strcmp(failure, "refused") != 0]++;
}

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
	promtext_hist_observe(&m->sign, &metrics_sign_buckets, s);
}

char *metrics_render(const struct metrics *m)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	promtext_build_info(f, "cinch_control");
	promtext_process(f);
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
	promtext_hist_write(f, "cinch_control_sign_duration_seconds", NULL, &metrics_sign_buckets,
			    &m->sign);
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
			"# HELP cinch_control_webhook_cert_expiry_timestamp_seconds notAfter of "
			"the "
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
	fprintf(f,
		"# HELP cinch_control_watch_streams Config Watch streams open (one per "
		"connected agent).\n"
		"# TYPE cinch_control_watch_streams gauge\n"
		"cinch_control_watch_streams %lld\n"
		"# HELP cinch_control_snapshots_sent_total Configuration snapshots sent on "
		"Watch streams.\n"
		"# TYPE cinch_control_snapshots_sent_total counter\n"
		"cinch_control_snapshots_sent_total %llu\n"
		"# HELP cinch_control_config_reports_total Agents' Reports of a snapshot: "
		"applied (the ack) or rejected.\n"
		"# TYPE cinch_control_config_reports_total counter\n"
		"cinch_control_config_reports_total{result=\"applied\"} %llu\n"
		"cinch_control_config_reports_total{result=\"rejected\"} %llu\n"
		"# HELP cinch_control_config_refused_total Config service calls refused, by "
		"method.\n"
		"# TYPE cinch_control_config_refused_total counter\n"
		"cinch_control_config_refused_total{method=\"Watch\"} %llu\n"
		"cinch_control_config_refused_total{method=\"Report\"} %llu\n",
		(long long)m->watch_streams, (unsigned long long)m->snapshots_sent,
		(unsigned long long)m->reports[0], (unsigned long long)m->reports[1],
		(unsigned long long)m->config_refused[0], (unsigned long long)m->config_refused[1]);
	promtext_family(f, "cinch_control_tokenreview_duration_seconds", "histogram",
			"Time the Kubernetes API server took to review an agent's service-account "
			"token.");
	promtext_hist_write(f, "cinch_control_tokenreview_duration_seconds", NULL,
			    &metrics_tr_buckets, &m->tokenreview);
	if (m->config_version && m->config_version[0])
		fprintf(f,
			"# HELP cinch_control_config_info The configuration in force: its version "
			"(a digest of its contents, the same on every replica in sync).\n"
			"# TYPE cinch_control_config_info gauge\n"
			"cinch_control_config_info{version=\"%s\"} 1\n",
			m->config_version);
	fprintf(f,
		"# HELP cinch_control_tokenreview_failures_total TokenReviews that did not "
		"validate the token: refused (not valid) or unavailable (no verdict).\n"
		"# TYPE cinch_control_tokenreview_failures_total counter\n"
		"cinch_control_tokenreview_failures_total{reason=\"refused\"} %llu\n"
		"cinch_control_tokenreview_failures_total{reason=\"unavailable\"} %llu\n"
		"# HELP cinch_control_config_generations_total Mesh configurations (policy and "
		"registry generations) published to the Watch streams.\n"
		"# TYPE cinch_control_config_generations_total counter\n"
		"cinch_control_config_generations_total %llu\n"
		"# HELP cinch_control_config_rejected_total Configuration changes rejected as "
		"invalid (the last good configuration stays).\n"
		"# TYPE cinch_control_config_rejected_total counter\n"
		"cinch_control_config_rejected_total %llu\n"
		"# HELP cinch_control_kube_watch_errors_total Kubernetes watches and lists that "
		"failed and backed off.\n"
		"# TYPE cinch_control_kube_watch_errors_total counter\n"
		"cinch_control_kube_watch_errors_total %llu\n"
		"# HELP cinch_control_kube_relists_total Full relists after the API server "
		"expired a watch's resourceVersion (410 Gone).\n"
		"# TYPE cinch_control_kube_relists_total counter\n"
		"cinch_control_kube_relists_total %llu\n"
		"# HELP cinch_control_webhook_requests_total Requests the injection webhook "
		"answered.\n"
		"# TYPE cinch_control_webhook_requests_total counter\n"
		"cinch_control_webhook_requests_total %llu\n"
		"# HELP cinch_control_webhook_errors_total Webhook requests answered with an "
		"HTTP error.\n"
		"# TYPE cinch_control_webhook_errors_total counter\n"
		"cinch_control_webhook_errors_total %llu\n",
		(unsigned long long)m->tokenreview_failures[0],
		(unsigned long long)m->tokenreview_failures[1],
		(unsigned long long)m->config_generations, (unsigned long long)m->config_rejected,
		(unsigned long long)m->kube_watch_errors, (unsigned long long)m->kube_relists,
		(unsigned long long)m->webhook_requests, (unsigned long long)m->webhook_errors);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}
