/* auth: the three authenticators of auth.h. Each one only decides who the
 * caller is; signing and auditing stay in sign.c. */
#include "api/auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "admin/metrics.h"
#include "grpcc.h"
#include "ca/ca.h"
#include "svid.h"
#include "token/token.h"
#include "tokenreview.h"

static int auth_join_authenticate(void *impl, const struct auth_request *req,
				  struct auth_result *out, const char **msg, const char **reason)
{
	struct token_store *ts = impl;
	enum token_reason why;
	char h[65];
	size_t len = strlen(req->join_token);

	token_hash_hex(req->join_token, len, h);
	snprintf(out->detail, sizeof(out->detail), "token_sha256=%.16s", h);
	int rc = token_reserve(ts, req->join_token, len, req->want, req->now, out->id,
			       out->reserved, &why);
	if (rc == 0)
		return GRPC_OK;
	*reason = token_reason_name(why);
	switch (why) {
	case TOKEN_ER_IDENTITY:
		*msg = "the join token does not grant the requested identity";
		return GRPC_PERMISSION_DENIED;
	case TOKEN_ER_USED:
		*msg = "join token already used";
		return GRPC_UNAUTHENTICATED;
	case TOKEN_ER_EXPIRED:
		*msg = "join token expired";
		return GRPC_UNAUTHENTICATED;
	case TOKEN_ER_STORE:
		*msg = "the token store cannot be written";
		return GRPC_UNAVAILABLE;
	default:
		*msg = "unknown join token";
		return GRPC_UNAUTHENTICATED;
	}
}

static int auth_join_commit(void *impl, const struct auth_result *res, time_t now)
{
	return token_commit(impl, res->reserved, now) < 0 ? GRPC_UNAVAILABLE : GRPC_OK;
}

static void auth_join_release(void *impl, const struct auth_result *res)
{
	token_release(impl, res->reserved);
}

const struct auth_ops auth_join_ops = {
	.name = "join_token",
	.authenticate = auth_join_authenticate,
	.commit = auth_join_commit,
	.release = auth_join_release,
};

/* Renewal: the same identity as the caller's current, valid SVID. The TLS
 * layer verified the chain at the handshake, against the bundle of that
 * moment; verifying again here adds the SVID rules (CA:FALSE, one SPIFFE
 * URI of our trust domain) and the bundle in force now (the connection's
 * cache, auth.h, skips only what cannot have changed since). */
static int auth_renew_authenticate(void *impl, const struct auth_request *req,
				   struct auth_result *out, const char **msg, const char **reason)
{
	const struct ca *ca = impl;
	const char *why = NULL;

	if (!req->peer) {
		*msg = "no credential and no client certificate";
		*reason = "no_credential";
		return GRPC_UNAUTHENTICATED;
	}
	struct auth_peer_cache *pc = req->peer_cache;
	uint64_t seq = ca_bundle_sequence(ca);
	if (pc && pc->id[0] && pc->bundle_sequence == seq && pc->not_before <= req->now &&
	    req->now < pc->not_after) {
		memcpy(out->id, pc->id, sizeof(out->id));
	} else if (ca_verify_svid(ca, req->peer, req->peer_chain, req->now, out->id,
				  sizeof(out->id), &why) < 0) {
		if (pc)
			pc->id[0] = '\0';
		*msg = "client certificate is not a valid SVID of this trust domain";
		*reason = "renewal_cert_invalid";
		return GRPC_UNAUTHENTICATED;
	} else if (pc) {
		memcpy(pc->id, out->id, sizeof(pc->id));
		pc->bundle_sequence = seq;
		if (svid_time_unix(X509_get0_notBefore(req->peer), &pc->not_before) < 0 ||
		    svid_time_unix(X509_get0_notAfter(req->peer), &pc->not_after) < 0)
			pc->id[0] = '\0';
	}
	snprintf(out->detail, sizeof(out->detail), "renewal");
	if (req->want && strcmp(req->want, out->id)) {
		*msg = "renewal grants only the identity of the client certificate";
		*reason = "identity_not_granted";
		return GRPC_PERMISSION_DENIED;
	}
	return GRPC_OK;
}

const struct auth_ops auth_renew_ops = {
	.name = "renewal",
	.authenticate = auth_renew_authenticate,
};

/* ---- Kubernetes: TokenReview on the loop */

struct auth_pending {
	const struct auth_k8s_config *kc;
	auth_done_cb done; /* NULL once cancelled */
	void *arg;
	char want[SPIFFE_ID_MAX + 1]; /* "" when none was asked for */
	uint64_t t0;		      /* when the review was asked for (uv_hrtime) */
};

static void auth_k8s_review_cb(void *arg, int status, const struct tokenreview_identity *id,
			       const char *why)
{
	struct auth_pending *p = arg;
	struct auth_result res = {0};
	const char *reason = NULL;
	char msg[320];
	int code;

	if (p->kc->metrics)
		metrics_tokenreview(p->kc->metrics, (double)(uv_hrtime() - p->t0) / 1e9,
				    status == 0		? NULL
				    : status == -EACCES ? "refused"
							: "unavailable");
	if (!p->done) {
		free(p);
		return;
	}
	if (status == 0) {
		code = GRPC_OK;
		msg[0] = '\0';
		snprintf(res.detail, sizeof(res.detail), "pod=%.30s/%.40s", id->ns, id->pod);
		if (spiffe_id_format(res.id, sizeof(res.id), p->kc->trust_domain, id->ns, id->sa) <
		    0) {
			code = GRPC_UNAUTHENTICATED;
			snprintf(msg, sizeof(msg),
				 "the service account's names do not make a "
				 "SPIFFE ID");
			reason = "k8s_identity_invalid";
		} else if (p->want[0] && strcmp(p->want, res.id) != 0) {
			code = GRPC_PERMISSION_DENIED;
			snprintf(msg, sizeof(msg), "the service-account token grants %.250s only",
				 res.id);
			reason = "identity_not_granted";
		}
	} else if (status == -EACCES) {
		code = GRPC_UNAUTHENTICATED;
		snprintf(msg, sizeof(msg), "kubernetes token refused: %.280s", why);
		reason = "k8s_token_refused";
	} else {
		/* Not a verdict on the token: the agent may retry. */
		code = GRPC_UNAVAILABLE;
		snprintf(msg, sizeof(msg), "cannot validate the kubernetes token now: %.270s", why);
		reason = "k8s_api_unavailable";
	}
	p->done(p->arg, code, &res, msg, reason);
	free(p);
}

static int auth_k8s_start(void *impl, const struct auth_request *req, struct auth_result *out,
			  const char **msg, const char **reason, auth_done_cb done, void *arg,
			  struct auth_pending **pending)
{
	const struct auth_k8s_config *kc = impl;
	struct auth_pending *p;

	if (!kc) {
		*msg = "kubernetes token authentication is not configured (--kube-api)";
		*reason = "kubernetes_not_configured";
		return GRPC_UNAUTHENTICATED;
	}
	if (!req->k8s_token || !*req->k8s_token) {
		*msg = "empty kubernetes token";
		*reason = "k8s_token_refused";
		return GRPC_UNAUTHENTICATED;
	}
	if (!(p = calloc(1, sizeof(*p)))) {
		*msg = "out of memory";
		*reason = "internal";
		return GRPC_INTERNAL;
	}
	p->kc = kc;
	p->t0 = uv_hrtime();
	p->done = done;
	p->arg = arg;
	if (req->want)
		snprintf(p->want, sizeof(p->want), "%s", req->want);
	snprintf(out->detail, sizeof(out->detail), "tokenreview");
	int rc = tokenreview_start(kc->kapi, kc->limit, req->k8s_token, AUTH_K8S_AUDIENCE,
				   auth_k8s_review_cb, p);
	if (rc < 0) {
		free(p);
		*msg = rc == -EBUSY ? "too many kubernetes token reviews in progress, retry later"
		       : rc == -EAGAIN
			       ? "kubernetes token reviews are over their rate limit, retry later"
			       : "cannot ask the Kubernetes API server to review the token";
		*reason = rc == -EBUSY || rc == -EAGAIN ? "k8s_review_limited"
							: "k8s_api_unavailable";
		return GRPC_UNAVAILABLE;
	}
	*pending = p;
	return AUTH_PENDING;
}

static void auth_k8s_cancel(struct auth_pending *p)
{
	p->done = NULL; /* freed when the review ends (kapi runs it exactly once) */
}

/* A transport that cannot wait (sign_call) cannot use TokenReview. */
static int auth_k8s_authenticate(void *impl, const struct auth_request *req,
				 struct auth_result *out, const char **msg, const char **reason)
{
	if (!impl)
		return auth_k8s_start(impl, req, out, msg, reason, NULL, NULL, NULL);
	*msg = "kubernetes token authentication needs the asynchronous Sign path";
	*reason = "kubernetes_sync_unsupported";
	return GRPC_UNAUTHENTICATED;
}

const struct auth_ops auth_k8s_ops = {
	.name = "kubernetes",
	.authenticate = auth_k8s_authenticate,
	.start = auth_k8s_start,
	.cancel = auth_k8s_cancel,
};
