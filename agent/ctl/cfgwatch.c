/* cfgwatch: see cfgwatch.h.
 *
 * States: IDLE (timer armed for the next Watch) -> WATCHING (call != NULL).
 * A Report is a separate unary call; at most one is in flight and a newer
 * version to report waits in `report_pending` until the current one ends,
 * so the control plane always ends up with the latest version. */
#include "cfgwatch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "grpcc.h"
#include "log.h"

#define CFGWATCH_REPORT_TIMEOUT_MS 10000

struct cfgwatch {
	uv_loop_t *loop;
	struct h2c *h;
	struct mtls_ctx *creds;
	char *url, *workload;
	size_t max_snapshot;
	cfgwatch_snapshot_cb on_snapshot;
	void *arg;

	uv_timer_t timer;
	struct grpcc_call *call, *report_call;
	int stopped, report_pending, got_snapshot;
	char reject_error[200]; /* why the last snapshot was refused, for Report */
	struct backoff backoff;
	struct cfgwatch_report report;
	struct cfgwatch_status st;
};

static void cfgwatch_connect(uv_timer_t *t);
static void cfgwatch_send_report(struct cfgwatch *w);

static void cfgwatch_report_done(void *arg, int code, const char *message)
{
	struct cfgwatch *w = arg;

	w->report_call = NULL;
	if (w->stopped)
		return;
	if (code != GRPC_OK)
		log_event(LOG_LVL_WARN, "config_report_failed",
			  log_pack("{s:s, s:s, s:s}", "version", w->st.version, "status",
				   grpc_code_name(code), "message", message));
	if (w->report_pending)
		cfgwatch_send_report(w);
}

/* ReportResponse is empty: nothing to read in it. */
static int cfgwatch_report_msg(void *arg, const uint8_t *msg, size_t len)
{
	(void)arg;
	(void)msg;
	(void)len;
	return 0;
}

static void cfgwatch_send_report(struct cfgwatch *w)
{
	Cinch__V1__ReportRequest req = CINCH__V1__REPORT_REQUEST__INIT;
	uint8_t *buf;
	size_t len;

	if (w->report_call) {
		w->report_pending = 1;
		return;
	}
	w->report_pending = 0;
	req.applied_version = w->st.version;
	req.bundle_sequence = w->report.bundle_sequence;
	req.cert_serial_hex = w->report.cert_serial_hex;
	req.cert_expires_at_unix = w->report.cert_not_after;
	req.error = w->reject_error;
	len = cinch__v1__report_request__get_packed_size(&req);
	buf = malloc(len ? len : 1);
	if (!buf)
		return;
	cinch__v1__report_request__pack(&req, buf);
	struct grpcc_opts o = {
		.base_url = w->url,
		.method = "/cinch.v1.Config/Report",
		.request = buf,
		.request_len = len,
		.timeout_ms = CFGWATCH_REPORT_TIMEOUT_MS,
		.max_message = 4096,
		.on_message = cfgwatch_report_msg,
		.on_done = cfgwatch_report_done,
		.arg = w,
	};
	int rc = grpcc_call(w->h, w->creds, &o, &w->report_call);
	if (rc < 0)
		log_event(LOG_LVL_WARN, "config_report_failed",
			  log_pack("{s:s, s:s, s:s}", "version", w->st.version, "status",
				   "not sent", "error", strerror(-rc)));
	free(buf);
}

static int cfgwatch_on_message(void *arg, const uint8_t *msg, size_t len)
{
	struct cfgwatch *w = arg;
	Cinch__V1__Snapshot *snap = cinch__v1__snapshot__unpack(NULL, len, msg);
	int rc;

	w->st.snapshots++;
	if (snap && strlen(snap->version) >= sizeof(w->st.version)) {
		cinch__v1__snapshot__free_unpacked(snap, NULL);
		snap = NULL;
	}
	if (!snap) {
		w->st.rejected++;
		log_event(LOG_LVL_ERROR, "config_rejected",
			  log_pack("{s:s, s:I}", "error", "malformed Snapshot or version too long",
				   "bytes", (json_int_t)len));
		return 0; /* keep the stream: the next snapshot may be good */
	}
	rc = w->on_snapshot(w->arg, snap);
	if (rc < 0) {
		w->st.rejected++;
		snprintf(w->reject_error, sizeof(w->reject_error), "snapshot %.64s refused: %s",
			 snap->version, strerror(-rc));
		log_event(LOG_LVL_ERROR, "config_rejected",
			  log_pack("{s:s, s:s}", "version", snap->version, "error", strerror(-rc)));
	} else {
		snprintf(w->st.version, sizeof(w->st.version), "%s", snap->version);
		w->reject_error[0] = '\0';
	}
	cfgwatch_send_report(w);
	cinch__v1__snapshot__free_unpacked(snap, NULL);
	if (!w->got_snapshot) {
		w->got_snapshot = 1;
		backoff_reset(&w->backoff);
	}
	return 0;
}

/* The control plane answered: the stream is open, even when it has nothing
 * to send (an agent that reconnects holding the current version is told
 * nothing until the next change). */
static void cfgwatch_on_open(void *arg)
{
	struct cfgwatch *w = arg;

	w->st.connected = 1;
}

static void cfgwatch_on_done(void *arg, int code, const char *message)
{
	struct cfgwatch *w = arg;
	unsigned delay;

	w->call = NULL;
	w->st.connected = 0;
	if (w->stopped)
		return;
	snprintf(w->st.last_error, sizeof(w->st.last_error), "%s: %s", grpc_code_name(code),
		 message);
	delay = backoff_next(&w->backoff);
	log_event(LOG_LVL_WARN, "config_stream_ended",
		  log_pack("{s:s, s:s, s:s, s:i}", "status", grpc_code_name(code), "message",
			   message, "version", w->st.version, "retry_ms", (int)delay));
	uv_timer_start(&w->timer, cfgwatch_connect, delay, 0);
}

static void cfgwatch_connect(uv_timer_t *t)
{
	struct cfgwatch *w = t->data;
	Cinch__V1__WatchRequest req = CINCH__V1__WATCH_REQUEST__INIT;
	uint8_t *buf;
	size_t len;

	req.known_version = w->st.version;
	req.workload = w->workload ? w->workload : "";
	len = cinch__v1__watch_request__get_packed_size(&req);
	buf = malloc(len ? len : 1);
	if (buf) {
		cinch__v1__watch_request__pack(&req, buf);
		struct grpcc_opts o = {
			.base_url = w->url,
			.method = "/cinch.v1.Config/Watch",
			.request = buf,
			.request_len = len,
			.max_message = w->max_snapshot,
			.on_message = cfgwatch_on_message,
			.on_open = cfgwatch_on_open,
			.on_done = cfgwatch_on_done,
			.arg = w,
		};
		if (w->st.snapshots || w->st.last_error[0])
			w->st.reconnects++;
		w->got_snapshot = 0;
		if (grpcc_call(w->h, w->creds, &o, &w->call) == 0) {
			free(buf);
			return;
		}
		free(buf);
	}
	/* Could not even start: same as a stream that ended at once. */
	cfgwatch_on_done(w, GRPC_UNAVAILABLE, "cannot start the Watch call");
}

int cfgwatch_start(uv_loop_t *loop, struct h2c *h, struct mtls_ctx *creds,
		   const struct cfgwatch_opts *o, struct cfgwatch **out)
{
	struct cfgwatch *w;

	if (!o->control_url || !o->on_snapshot || !creds || !o->max_snapshot)
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->url = strdup(o->control_url);
	w->workload = o->workload ? strdup(o->workload) : NULL;
	if (!w->url || (o->workload && !w->workload)) {
		free(w->url);
		free(w->workload);
		free(w);
		return -ENOMEM;
	}
	w->loop = loop;
	w->h = h;
	w->creds = mtls_ctx_ref(creds);
	w->max_snapshot = o->max_snapshot;
	w->on_snapshot = o->on_snapshot;
	w->arg = o->arg;
	backoff_reset(&w->backoff);
	uv_timer_init(loop, &w->timer);
	w->timer.data = w;
	uv_timer_start(&w->timer, cfgwatch_connect, 0, 0);
	*out = w;
	return 0;
}

void cfgwatch_set_creds(struct cfgwatch *w, struct mtls_ctx *creds)
{
	mtls_ctx_unref(w->creds);
	w->creds = mtls_ctx_ref(creds);
	/* Waiting to reconnect: the old credentials may be why (an expired
	 * certificate is refused at the handshake): try the new ones now
	 * rather than at the end of a backoff of up to 30 s. At most once per
	 * certificate, so no retry storm. */
	if (!w->call && !w->stopped)
		uv_timer_start(&w->timer, cfgwatch_connect, 0, 0);
}

void cfgwatch_set_report(struct cfgwatch *w, const struct cfgwatch_report *r)
{
	w->report = *r;
	if (w->st.version[0])
		cfgwatch_send_report(w);
}

static void cfgwatch_closed(uv_handle_t *hd)
{
	struct cfgwatch *w = hd->data;

	mtls_ctx_unref(w->creds);
	free(w->url);
	free(w->workload);
	free(w);
}

void cfgwatch_stop(struct cfgwatch *w)
{
	if (!w)
		return;
	w->stopped = 1;
	if (w->call)
		grpcc_cancel(w->call);
	if (w->report_call)
		grpcc_cancel(w->report_call);
	uv_close((uv_handle_t *)&w->timer, cfgwatch_closed);
}

void cfgwatch_status(const struct cfgwatch *w, struct cfgwatch_status *out)
{
	*out = w->st;
}
