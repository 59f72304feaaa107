/* admin: see admin.h. */
#include "admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "adminhttp.h"
#include "log.h"
#include "promtext.h"

/* Handshakes take a round trip or two on a cluster network: 1 ms to 2.5 s
 * (the default handshake deadline is 10 s, beyond the last bucket: +Inf). */
static const double admin_hs_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
					 0.1,	0.25,	0.5,   1.0,  2.5};
/* Connections live from a request to hours (pooled, streaming): 10 ms to
 * 1 h. */
static const double admin_dur_bounds[] = {0.01, 0.1, 1, 10, 60, 300, 900, 3600};
static const struct promtext_buckets admin_hs_buckets = {
	admin_hs_bounds, sizeof(admin_hs_bounds) / sizeof(admin_hs_bounds[0])};
static const struct promtext_buckets admin_dur_buckets = {
	admin_dur_bounds, sizeof(admin_dur_bounds) / sizeof(admin_dur_bounds[0])};
/* The bounded label values of cinch_agent_handshake_failures_total. */
static const char *const admin_hs_causes[ADMIN_N_HS_CAUSES] = {
	"peer_identity_mismatch", "untrusted_chain", "expired", "no_client_cert",
	"invalid_svid",		  "protocol",	     "timeout", "reset"};
static const char *const admin_dirs[2] = {"inbound", "outbound"};

struct admin_ctx {
	struct admin_state *st;
	struct proxy *proxy;
};

/* The index of a handshake failure cause; a name not in the table (none
 * should exist) counts as "protocol". */
static int admin_hs_cause(const char *name)
{
	for (int i = 0; i < ADMIN_N_HS_CAUSES; i++)
		if (!strcmp(admin_hs_causes[i], name))
			return i;
	return 5;
}

int admin_counts_init(struct admin_state *st, unsigned n)
{
	if (!(st->counts = calloc(n, sizeof(*st->counts))))
		return -ENOMEM;
	st->n_counts = n;
	for (unsigned i = 0; i < n; i++)
		pthread_mutex_init(&st->counts[i].lock, NULL);
	return 0;
}

void admin_counts_free(struct admin_state *st)
{
	for (unsigned i = 0; i < st->n_counts; i++)
		pthread_mutex_destroy(&st->counts[i].lock);
	free(st->counts);
	st->counts = NULL;
	st->n_counts = 0;
}

/* The per-peer slot of `id` ("" : no identity), claiming a free one while
 * fewer than cap are taken; the "other" slot when full or too long. */
static unsigned admin_peer_slot(struct admin_counts *c, unsigned cap, const char *id)
{
	const char *name = *id ? id : "none";
	unsigned i;

	if (strlen(name) > ADMIN_PEER_ID_MAX)
		return ADMIN_MAX_PEERS;
	for (i = 0; i < cap && c->peers[i].id[0]; i++)
		if (!strcmp(c->peers[i].id, name))
			return i;
	if (i == cap)
		return ADMIN_MAX_PEERS;
	memcpy(c->peers[i].id, name, strlen(name) + 1);
	return i;
}

/* The denial slot of `reason` (static text, see admin.h), claimed if new;
 * -1 when every slot holds another. */
static int admin_denial_slot(struct admin_counts *c, const char *reason)
{
	for (int i = 0; i < ADMIN_MAX_REASONS; i++)
		if (!c->denials[i].reason || !strcmp(c->denials[i].reason, reason)) {
			c->denials[i].reason = reason;
			return i;
		}
	return -1;
}

static void admin_count_locked(struct admin_counts *c, unsigned peer_cap,
			       const struct proxy_record *r)
{
	int out = !strcmp(r->direction, "outbound");
	int v = !strcmp(r->verdict, "allow") ? 0 : !strcmp(r->verdict, "deny") ? 1 : 2;
	int i;

	c->ended++;
	c->conns[out][v]++;
	if (peer_cap)
		c->peers[admin_peer_slot(c, peer_cap, r->peer_id)].conns[out][v]++;
	if (!strcmp(r->end, "policy_change"))
		c->policy_closed[out]++;
	c->bytes[out][0] += r->bytes_out;
	c->bytes[out][1] += r->bytes_in;
	if (r->handshake_s >= 0)
		promtext_hist_observe(&c->handshake[out], &admin_hs_buckets, r->handshake_s);
	if (r->relayed)
		promtext_hist_observe(&c->duration[out], &admin_dur_buckets, r->duration_s);
	if (r->handshake_failure)
		c->hs_failures[out][admin_hs_cause(r->handshake_failure)]++;
	if (r->peer_refusal)
		c->refused_by_peer[r->peer_refusal->code]++;
	if (r->error != CONN_ER_NONE && (unsigned)r->error < CONN_ER__COUNT)
		c->errors[out][r->error]++;
	if (r->denied && r->reason && *r->reason && (i = admin_denial_slot(c, r->reason)) >= 0)
		c->denials[i].n++;
}

void admin_count(struct admin_state *st, unsigned worker, const struct proxy_record *r)
{
	struct admin_counts *c = &st->counts[worker];

	pthread_mutex_lock(&c->lock);
	admin_count_locked(c, st->peer_cap, r);
	pthread_mutex_unlock(&c->lock);
}

static void admin_hist_add(struct promtext_hist *to, const struct promtext_hist *h)
{
	for (int i = 0; i < PROMTEXT_MAX_BUCKETS; i++)
		to->buckets[i] += h->buckets[i];
	to->count += h->count;
	to->sum += h->sum;
}

/* Adds one worker's counts to `to` (the peers and the denials by name:
 * the workers met them in different orders). */
static void admin_counts_add(struct admin_counts *to, unsigned peer_cap,
			     const struct admin_counts *c)
{
	int i;

	to->ended += c->ended;
	for (int d = 0; d < 2; d++) {
		to->policy_closed[d] += c->policy_closed[d];
		for (int v = 0; v < 3; v++)
			to->conns[d][v] += c->conns[d][v];
		for (int f = 0; f < 2; f++)
			to->bytes[d][f] += c->bytes[d][f];
		admin_hist_add(&to->handshake[d], &c->handshake[d]);
		admin_hist_add(&to->duration[d], &c->duration[d]);
		for (int k = 0; k < ADMIN_N_HS_CAUSES; k++)
			to->hs_failures[d][k] += c->hs_failures[d][k];
		for (int e = 0; e < CONN_ER__COUNT; e++)
			to->errors[d][e] += c->errors[d][e];
	}
	for (int k = 0; k < VERDICT_N_CODES; k++)
		to->refused_by_peer[k] += c->refused_by_peer[k];
	for (unsigned p = 0; p <= ADMIN_MAX_PEERS; p++) {
		if (!c->peers[p].id[0] && p < ADMIN_MAX_PEERS)
			continue;
		unsigned slot = p == ADMIN_MAX_PEERS ? ADMIN_MAX_PEERS
						     : admin_peer_slot(to, peer_cap, c->peers[p].id);
		for (int d = 0; d < 2; d++)
			for (int v = 0; v < 3; v++)
				to->peers[slot].conns[d][v] += c->peers[p].conns[d][v];
	}
	for (int k = 0; k < ADMIN_MAX_REASONS && c->denials[k].reason; k++)
		if ((i = admin_denial_slot(to, c->denials[k].reason)) >= 0)
			to->denials[i].n += c->denials[k].n;
}

void admin_probed(void *arg, int ok, const char *why)
{
	struct admin_state *st = arg;
	enum admin_intercept was = st->intercept;

	if (ok) {
		st->intercept = ADMIN_IC_OK;
		st->intercept_why[0] = '\0';
		if (was != ADMIN_IC_OK)
			log_event(
				LOG_LVL_INFO, "interception_verified",
				log_pack("{s:s}", "by", "self-probe through the redirect rules"));
		return;
	}
	st->probe_failures++;
	st->intercept = ADMIN_IC_BROKEN;
	/* Loud on every change of state or of cause, not every round. */
	if (was != ADMIN_IC_BROKEN || strcmp(st->intercept_why, why) != 0)
		log_event(LOG_LVL_ERROR, "interception_broken",
			  log_pack("{s:s, s:s}", "error", why, "effect",
				    "not ready: the pod's traffic may bypass the mesh"));
	snprintf(st->intercept_why, sizeof(st->intercept_why), "%s", why);
}

/* Ready: material loaded, and interception seen working (or not probed). */
static const char *admin_not_ready(const struct admin_state *st)
{
	if (!st->ready)
		return "no certificate or policy";
	switch (st->intercept) {
	case ADMIN_IC_OK:
	case ADMIN_IC_SKIPPED:
		return NULL;
	case ADMIN_IC_PENDING:
		return "interception not verified yet";
	case ADMIN_IC_BROKEN:
		break;
	}
	return st->intercept_why;
}

/* The identity lifecycle: how long this pod has before the mesh stops
 * working for it if the control plane stays away (0: it has stopped), and
 * in live mode how the certificate source and the configuration stream
 * fare. */
static void admin_metrics_lifecycle(FILE *f, const struct admin_state *st)
{
	time_t now = time(NULL);
	long long left = st->ready && st->cert_not_after > now ? st->cert_not_after - now : 0;
	struct svidsrc_status svid;
	struct cfgwatch_status cfg;

	fprintf(f,
		"# HELP cinch_agent_ready 1 when /ready says ready: material loaded and "
		"interception verified; 0 while failing closed.\n"
		"# TYPE cinch_agent_ready gauge\n"
		"cinch_agent_ready %d\n"
		"# HELP cinch_agent_cert_remaining_seconds Seconds until the certificate expires "
		"and the agent fails closed unless renewed (0: expired or none).\n"
		"# TYPE cinch_agent_cert_remaining_seconds gauge\n"
		"cinch_agent_cert_remaining_seconds %lld\n",
		admin_not_ready(st) == NULL, left);
	if (!st->live)
		return;
	live_status(st->live, &svid, &cfg);
	fprintf(f,
		"# HELP cinch_agent_svid_failures Consecutive failed certificate requests.\n"
		"# TYPE cinch_agent_svid_failures gauge\n"
		"cinch_agent_svid_failures %u\n"
		"# HELP cinch_agent_svid_issued_total Certificates received from the control "
		"plane.\n"
		"# TYPE cinch_agent_svid_issued_total counter\n"
		"cinch_agent_svid_issued_total %llu\n"
		"# HELP cinch_agent_config_stream_connected 1 while the configuration stream is "
		"open.\n"
		"# TYPE cinch_agent_config_stream_connected gauge\n"
		"cinch_agent_config_stream_connected %d\n"
		"# HELP cinch_agent_config_stream_reconnects_total Configuration streams started "
		"after the first.\n"
		"# TYPE cinch_agent_config_stream_reconnects_total counter\n"
		"cinch_agent_config_stream_reconnects_total %llu\n",
		svid.failures, (unsigned long long)svid.issued, cfg.connected ? 1 : 0,
		(unsigned long long)cfg.reconnects);
}

/* A label value, escaped as the text format wants. */
static void admin_put_label(FILE *f, const char *v)
{
	for (const char *p = v; *p; p++)
		fputs(*p == '"'	   ? "\\\""
		      : *p == '\\' ? "\\\\"
		      : *p == '\n' ? "\\n"
				   : (char[]){*p, 0},
		      f);
}

static void admin_metrics_peers(FILE *f, const struct admin_counts *st)
{
	static const char *const verdicts[] = {"allow", "deny", "audit-deny"};

	promtext_family(f, "cinch_agent_peer_connections_total", "counter",
			"Connections ended, by peer identity (the first --peer-metrics "
			"identities seen; then other), direction and verdict.");
	for (unsigned i = 0; i <= ADMIN_MAX_PEERS; i++) {
		const char *id = i == ADMIN_MAX_PEERS ? "other" : st->peers[i].id;
		if (!*id)
			continue;
		for (int d = 0; d < 2; d++)
			for (int v = 0; v < 3; v++) {
				if (!st->peers[i].conns[d][v])
					continue;
				fprintf(f, "cinch_agent_peer_connections_total{peer=\"");
				admin_put_label(f, id);
				fprintf(f, "\",direction=\"%s\",verdict=\"%s\"} %llu\n",
					admin_dirs[d], verdicts[v],
					(unsigned long long)st->peers[i].conns[d][v]);
			}
	}
}

/* Handshake and connection durations, handshake failures by cause. */
static void admin_metrics_tls(FILE *f, const struct admin_counts *st)
{
	char l[32];

	promtext_family(f, "cinch_agent_handshake_duration_seconds", "histogram",
			"Time from the first TLS record to a finished mTLS handshake, by "
			"direction.");
	for (int d = 0; d < 2; d++) {
		snprintf(l, sizeof(l), "direction=\"%s\"", admin_dirs[d]);
		promtext_hist_write(f, "cinch_agent_handshake_duration_seconds", l,
				    &admin_hs_buckets, &st->handshake[d]);
	}
	promtext_family(f, "cinch_agent_connection_duration_seconds", "histogram",
			"Lifetime of the connections relayed, from accept to close, by "
			"direction.");
	for (int d = 0; d < 2; d++) {
		snprintf(l, sizeof(l), "direction=\"%s\"", admin_dirs[d]);
		promtext_hist_write(f, "cinch_agent_connection_duration_seconds", l,
				    &admin_dur_buckets, &st->duration[d]);
	}
	promtext_family(f, "cinch_agent_handshake_failures_total", "counter",
			"TLS handshakes that failed, by direction and cause.");
	for (int d = 0; d < 2; d++)
		for (int i = 0; i < ADMIN_N_HS_CAUSES; i++)
			fprintf(f,
				"cinch_agent_handshake_failures_total{direction=\"%s\",cause=\"%"
				"s\"} "
				"%llu\n",
				admin_dirs[d], admin_hs_causes[i],
				(unsigned long long)st->hs_failures[d][i]);
}

static char *admin_metrics(const struct admin_ctx *a)
{
	static const char *const verdicts[] = {"allow", "deny", "audit-deny"};
	const struct admin_state *as = a->st;
	struct admin_counts *st = calloc(1, sizeof(*st)); /* the workers' sum */
	char *buf = NULL;
	size_t len = 0;
	FILE *f = st ? open_memstream(&buf, &len) : NULL;

	if (!f) {
		free(st);
		return NULL;
	}
	for (unsigned w = 0; w < as->n_counts; w++) {
		pthread_mutex_lock(&as->counts[w].lock);
		admin_counts_add(st, as->peer_cap, &as->counts[w]);
		pthread_mutex_unlock(&as->counts[w].lock);
	}
	promtext_build_info(f, "cinch_agent");
	promtext_process(f);
	fprintf(f, "# HELP cinch_agent_connections_total Connections ended, by direction and "
		   "verdict.\n"
		   "# TYPE cinch_agent_connections_total counter\n");
	for (int d = 0; d < 2; d++)
		for (int v = 0; v < 3; v++)
			fprintf(f,
				"cinch_agent_connections_total{direction=\"%s\",verdict=\"%s\"} "
				"%llu\n",
				admin_dirs[d], verdicts[v], (unsigned long long)st->conns[d][v]);
	fprintf(f, "# HELP cinch_agent_denials_total Connections refused by the policy or the "
		   "agent's own rules, by reason.\n"
		   "# TYPE cinch_agent_denials_total counter\n");
	for (int i = 0; i < ADMIN_MAX_REASONS && st->denials[i].reason; i++) {
		fprintf(f, "cinch_agent_denials_total{reason=\"");
		admin_put_label(f, st->denials[i].reason);
		fprintf(f, "\"} %llu\n", (unsigned long long)st->denials[i].n);
	}
	promtext_family(f, "cinch_agent_connection_errors_total", "counter",
			"Connections that ended on an error (not a policy decision), by "
			"direction and reason.");
	for (int d = 0; d < 2; d++)
		for (int e = 0; e < CONN_ER__COUNT; e++)
			if (conn_reason_is_error((enum conn_reason)e))
				fprintf(f,
					"cinch_agent_connection_errors_total{direction=\"%s\","
					"reason=\"%s\"} %llu\n",
					admin_dirs[d], conn_reason_name((enum conn_reason)e),
					(unsigned long long)st->errors[d][e]);
	if (as->peer_cap)
		admin_metrics_peers(f, st);
	if (as->n_counts > 1) { /* --workers N: where the connections went */
		promtext_family(f, "cinch_agent_worker_connections_total", "counter",
				"Connections ended, by the worker (event loop) that carried them.");
		for (unsigned w = 0; w < as->n_counts; w++) {
			pthread_mutex_lock(&as->counts[w].lock);
			fprintf(f, "cinch_agent_worker_connections_total{worker=\"%u\"} %llu\n", w,
				(unsigned long long)as->counts[w].ended);
			pthread_mutex_unlock(&as->counts[w].lock);
		}
	}
	promtext_family(f, "cinch_agent_bytes_total", "counter",
			"Bytes relayed, by the connection's direction and by flow (sent: from the "
			"app to the peer, received: from the peer to the app).");
	for (int d = 0; d < 2; d++)
		for (int fl = 0; fl < 2; fl++)
			fprintf(f, "cinch_agent_bytes_total{direction=\"%s\",flow=\"%s\"} %llu\n",
				admin_dirs[d], fl ? "received" : "sent",
				(unsigned long long)st->bytes[d][fl]);
	admin_metrics_tls(f, st);
	fprintf(f,
		"# HELP cinch_agent_open_connections Connections open now.\n"
		"# TYPE cinch_agent_open_connections gauge\n"
		"cinch_agent_open_connections %u\n"
		"# HELP cinch_agent_cert_expiry_timestamp_seconds The workload certificate's "
		"notAfter.\n"
		"# TYPE cinch_agent_cert_expiry_timestamp_seconds gauge\n"
		"cinch_agent_cert_expiry_timestamp_seconds %lld\n"
		"# HELP cinch_agent_policy_info The policy version enforced.\n"
		"# TYPE cinch_agent_policy_info gauge\n"
		"cinch_agent_policy_info{version=\"%s\"} 1\n"
		"# HELP cinch_agent_interception_verified 1 when the last self-probe went "
		"through the redirect rules.\n"
		"# TYPE cinch_agent_interception_verified gauge\n"
		"cinch_agent_interception_verified %d\n"
		"# HELP cinch_agent_probe_failures_total Self-probe rounds that failed.\n"
		"# TYPE cinch_agent_probe_failures_total counter\n"
		"cinch_agent_probe_failures_total %llu\n"
		"# HELP cinch_agent_policy_closed_total Open connections closed because a new "
		"policy denies them.\n"
		"# TYPE cinch_agent_policy_closed_total counter\n"
		"cinch_agent_policy_closed_total{direction=\"inbound\"} %llu\n"
		"cinch_agent_policy_closed_total{direction=\"outbound\"} %llu\n",
		proxy_conns(a->proxy), (long long)as->cert_not_after, as->policy_version,
		as->intercept == ADMIN_IC_OK, (unsigned long long)as->probe_failures,
		(unsigned long long)st->policy_closed[0], (unsigned long long)st->policy_closed[1]);
	fprintf(f, "# HELP cinch_agent_refused_by_peer_total Outbound connections the "
		   "destination's agent refused, by the reason it gave.\n"
		   "# TYPE cinch_agent_refused_by_peer_total counter\n");
	for (int i = 0; i < VERDICT_N_CODES; i++)
		fprintf(f, "cinch_agent_refused_by_peer_total{reason=\"%s\"} %llu\n",
			verdict_code_name((enum verdict_code)i),
			(unsigned long long)st->refused_by_peer[i]);
	admin_metrics_lifecycle(f, as);
	free(st);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static void admin_serve(void *arg, const char *method, const char *path,
			struct adminhttp_response *out)
{
	struct admin_ctx *a = arg;
	const struct admin_state *st = a->st;
	(void)method;

	out->status = 200;
	if (!strcmp(path, "/live")) {
		out->body = strdup("live\n");
	} else if (!strcmp(path, "/ready")) {
		const char *why = admin_not_ready(st);
		out->status = why ? 503 : 200;
		if (!why)
			out->body = strdup("ready\n");
		else if (asprintf(&out->body, "not ready: %s\n", why) < 0)
			out->body = NULL;
	} else if (!strcmp(path, "/metrics")) {
		out->content_type = "text/plain; version=0.0.4; charset=utf-8";
		out->body = admin_metrics(a);
	} else if (!strcmp(path, "/config")) {
		static const char *const ic[] = {"pending", "verified", "broken", "not probed"};
		json_t *j = json_pack(
			"{s:s, s:s, s:s, s:I, s:s, s:{s:i, s:i, s:i}, s:b, s:s}", "spiffe_id",
			st->spiffe_id, "workload", st->workload, "cert_serial", st->serial,
			"cert_not_after", (json_int_t)st->cert_not_after, "policy_version",
			st->policy_version, "ports", "outbound", st->outbound_port, "inbound",
			st->inbound_port, "admin", st->admin_port, "ready",
			admin_not_ready(st) == NULL, "interception", ic[st->intercept]);
		out->content_type = "application/json";
		out->body = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
		json_decref(j);
	} else {
		out->status = 404;
		out->body = strdup("not found\n");
	}
	out->len = out->body ? strlen(out->body) : 0;
}

int admin_start(uv_loop_t *loop, const char *host, uint16_t port, struct admin_state *st,
		struct proxy *p, struct adminhttp **out)
{
	static struct admin_ctx ctx; /* one admin port per process */
	/* What Prometheus and the kubelet's probes need from the pod network;
	 * /config (identity, certificate serial, ports) and anything added
	 * later stay on loopback. */
	static const char *const network_paths[] = {"/metrics", "/ready", "/live", NULL};
	int bound, rc;

	ctx.st = st;
	ctx.proxy = p;
	if ((rc = adminhttp_start(loop, host, port, admin_serve, &ctx, out, &bound)) < 0)
		return rc;
	adminhttp_set_network_paths(*out, network_paths);
	return 0;
}
