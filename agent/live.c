/* live: see live.h.
 *
 * State: the current certificate (key, chain, the bundle that came with
 * it) as svidsrc last gave it, and the current snapshot (slice, its
 * bundle). live_rebuild() turns both into material; it runs after every
 * change of either and is the only place that calls on_material, so the
 * proxy never sees a certificate of one identity with a slice of another. */
#include "live.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "fsutil.h"
#include "h2c.h"
#include "log.h"
#include "svid.h"

#define LIVE_MAX_SNAPSHOT (16u << 20)

struct live {
	uv_loop_t *loop;
	struct h2c *h;
	struct svidsrc *svid;
	struct cfgwatch *cfg; /* from the first certificate on */
	char *url, *workload;
	live_material_cb on_material;
	void *arg;

	/* the certificate in use (references), NULL when none is valid */
	EVP_PKEY *key;
	STACK_OF(X509) * chain;
	STACK_OF(X509) * svid_roots;
	uint64_t svid_seq;

	/* the snapshot in force (references), NULL before the first */
	struct policy_slice *slice;
	STACK_OF(X509) * snap_roots; /* NULL: the snapshot carries no bundle */
	uint64_t snap_seq;
};

static void live_drop_certificate(struct live *l)
{
	EVP_PKEY_free(l->key);
	sk_X509_pop_free(l->chain, X509_free);
	sk_X509_pop_free(l->svid_roots, X509_free);
	l->key = NULL;
	l->chain = l->svid_roots = NULL;
}

/* Builds the TLS context for (certificate, slice, roots) and checks that
 * they belong together. 0 and *out, or -EINVAL/-ENOMEM with *why. */
static int live_material(struct live *l, struct policy_slice *slice, STACK_OF(X509) * roots,
			 struct mtls_ctx **out, const char **why)
{
	int rc = mtls_ctx_new(l->chain, l->key, roots, out, why);

	if (rc < 0)
		return rc;
	if (strcmp(policy_slice_spiffe_id(slice), mtls_ctx_spiffe_id(*out)) != 0) {
		*why = "the snapshot is for another identity than our certificate";
		mtls_ctx_unref(*out);
		*out = NULL;
		return -EINVAL;
	}
	return 0;
}

/* The bundle sequence reported is what the agent trusts everywhere: its
 * peers by the snapshot's bundle, but the control plane only by the
 * bundles of its Sign responses (svidsrc). The control switches signing
 * (and its own certificate) to a new root once every agent reports it, so
 * the report is the older of the two: a snapshot alone must not claim it. */
static void live_report_creds(struct live *l)
{
	uint64_t seq = l->snap_roots && l->snap_seq < l->svid_seq ? l->snap_seq : l->svid_seq;
	struct cfgwatch_report r = {.bundle_sequence = seq};
	X509 *leaf = sk_X509_value(l->chain, 0);

	svid_serial_hex(leaf, r.cert_serial_hex, sizeof(r.cert_serial_hex));
	svid_time_unix(X509_get0_notAfter(leaf), &r.cert_not_after);
	cfgwatch_set_report(l->cfg, &r);
}

/* Hands the current certificate and snapshot on, when both are there. A
 * failure here can only come from a new certificate that does not fit the
 * snapshot in force (the snapshot was checked on arrival): it is logged and
 * the previous material stays until the next change. */
static void live_rebuild(struct live *l)
{
	struct mtls_ctx *tls = NULL;
	const char *why = NULL;

	if (!l->key || !l->slice)
		return;
	if (live_material(l, l->slice, l->snap_roots ? l->snap_roots : l->svid_roots, &tls, &why) <
	    0) {
		log_event(LOG_LVL_ERROR, "material_rejected",
			  log_pack("{s:s, s:s}", "error", why, "effect",
				   "the previous certificate and policy stay in use"));
		return;
	}
	struct live_material m = {
		.tls = tls,
		.slice = l->slice,
		.leaf = sk_X509_value(l->chain, 0),
		.bundle_sequence = l->snap_roots ? l->snap_seq : l->svid_seq,
	};
	l->on_material(l->arg, &m);
	mtls_ctx_unref(tls);
	if (l->cfg)
		live_report_creds(l);
}

static int live_on_snapshot(void *arg, const Cinch__V1__Snapshot *snap)
{
	struct live *l = arg;
	struct policy_slice *slice = NULL;
	struct policy_error perr;
	STACK_OF(X509) *roots = NULL;
	struct mtls_ctx *tls = NULL;
	const char *why = NULL;
	int rc;

	if (policy_slice_from_snapshot(&slice, snap, &perr) < 0) {
		log_event(LOG_LVL_ERROR, "config_rejected",
			  log_pack("{s:s, s:s, s:s}", "version", snap->version, "path", perr.path,
				   "error", perr.msg));
		return -EINVAL;
	}
	if (snap->bundle && snap->bundle->n_x509_authorities) {
		roots = svidsrc_der_certs(snap->bundle->x509_authorities,
					  snap->bundle->n_x509_authorities);
		if (!roots) {
			why = "the snapshot's trust bundle holds a malformed certificate";
			rc = -EINVAL;
			goto out;
		}
	}
	/* checked against the certificate in use now, so a bad snapshot is
	 * refused (and reported) instead of failing at the next renewal */
	if (l->key && (rc = live_material(l, slice, roots ? roots : l->svid_roots, &tls, &why)) < 0)
		goto out;
	policy_slice_unref(l->slice);
	sk_X509_pop_free(l->snap_roots, X509_free);
	l->slice = slice;
	l->snap_roots = roots;
	l->snap_seq = snap->bundle ? snap->bundle->sequence : 0;
	slice = NULL;
	roots = NULL;
	live_rebuild(l);
	rc = 0;
out:
	if (why)
		log_event(LOG_LVL_ERROR, "config_rejected",
			  log_pack("{s:s, s:s, s:s}", "version", snap->version, "error", why,
				   "effect", "the previous snapshot stays in force"));
	mtls_ctx_unref(tls);
	policy_slice_unref(slice);
	sk_X509_pop_free(roots, X509_free);
	return rc;
}

static void live_on_svid(void *arg, const struct svidsrc_svid *v)
{
	struct live *l = arg;
	struct mtls_ctx *creds = NULL;
	int rc;

	live_drop_certificate(l);
	if (!v) {
		l->on_material(l->arg, NULL);
		return;
	}
	l->chain = X509_chain_up_ref(v->chain);
	l->svid_roots = X509_chain_up_ref(v->roots);
	if (!l->chain || !l->svid_roots) {
		live_drop_certificate(l);
		log_event(LOG_LVL_ERROR, "material_rejected",
			  log_pack("{s:s}", "error", "out of memory"));
		return;
	}
	EVP_PKEY_up_ref(v->key);
	l->key = v->key;
	l->svid_seq = v->bundle_sequence;
	if ((rc = svidsrc_mtls_creds(l->svid, &creds)) < 0) {
		log_event(LOG_LVL_ERROR, "config_watch_failed",
			  log_pack("{s:s, s:s}", "error", strerror(-rc), "effect",
				   "the configuration stream keeps its previous credentials"));
	} else if (l->cfg) {
		cfgwatch_set_creds(l->cfg, creds);
	} else {
		struct cfgwatch_opts o = {
			.control_url = l->url,
			.workload = l->workload,
			.max_snapshot = LIVE_MAX_SNAPSHOT,
			.on_snapshot = live_on_snapshot,
			.arg = l,
		};
		if ((rc = cfgwatch_start(l->loop, l->h, creds, &o, &l->cfg)) < 0)
			log_event(LOG_LVL_ERROR, "config_watch_failed",
				  log_pack("{s:s}", "error", strerror(-rc)));
	}
	mtls_ctx_unref(creds);
	live_rebuild(l);
}

int live_start(uv_loop_t *loop, const struct live_opts *o, struct live **out, const char **why)
{
	struct live *l = NULL;
	char *ca_pem = NULL;
	size_t ca_len;
	int rc;

	if (!o->control_url || !o->control_bundle_path || !o->token_path || !o->on_material) {
		*why = "--control, --control-bundle and --token-file are required";
		return -EINVAL;
	}
	if ((rc = fsutil_read_all(o->control_bundle_path, 1 << 20, &ca_pem, &ca_len)) < 0) {
		*why = "cannot read --control-bundle";
		return -EINVAL;
	}
	l = calloc(1, sizeof(*l));
	if (!l || !(l->url = strdup(o->control_url)) ||
	    (o->workload && !(l->workload = strdup(o->workload)))) {
		rc = -ENOMEM;
		*why = "out of memory";
		goto fail;
	}
	l->loop = loop;
	l->on_material = o->on_material;
	l->arg = o->arg;
	if ((rc = h2c_new(loop, &l->h)) < 0) {
		*why = "cannot start the HTTP client";
		goto fail;
	}
	struct svidsrc_opts so = {
		.control_url = o->control_url,
		.control_ca_pem = ca_pem,
		.cred = o->cred,
		.cred_path = o->token_path,
		.spiffe_id = o->spiffe_id,
		.ttl_seconds = o->ttl_seconds,
		.on_svid = live_on_svid,
		.arg = l,
	};
	if ((rc = svidsrc_start(loop, l->h, &so, &l->svid)) < 0) {
		*why = "invalid identity source options";
		goto fail;
	}
	free(ca_pem);
	*out = l;
	return 0;
fail:
	free(ca_pem);
	if (l && l->h) {
		live_stop(l);
		return rc;
	}
	if (l) {
		free(l->url);
		free(l->workload);
	}
	free(l);
	return rc;
}

static void live_closed(void *arg)
{
	struct live *l = arg;

	live_drop_certificate(l);
	policy_slice_unref(l->slice);
	sk_X509_pop_free(l->snap_roots, X509_free);
	free(l->url);
	free(l->workload);
	free(l);
}

void live_stop(struct live *l)
{
	if (l->cfg)
		cfgwatch_stop(l->cfg);
	if (l->svid)
		svidsrc_stop(l->svid);
	l->cfg = NULL;
	l->svid = NULL;
	h2c_close(l->h, live_closed, l);
}

void live_status(const struct live *l, struct svidsrc_status *svid, struct cfgwatch_status *cfg)
{
	memset(svid, 0, sizeof(*svid));
	memset(cfg, 0, sizeof(*cfg));
	if (l->svid)
		svidsrc_status(l->svid, svid);
	if (l->cfg)
		cfgwatch_status(l->cfg, cfg);
}
