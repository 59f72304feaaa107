/* sign: see sign.h. */
#include "api/sign.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grpcc.h"
#include "ca/ca.h"
#include "cinch/v1/identity.pb-c.h"
#include "log.h"

static double sign_now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void sign_refuse_early(struct sign_service *svc, const struct sign_peer *peer, int code,
		       const char *msg, const char *reason)
{
	metrics_refused(svc->metrics, reason);
	log_event(LOG_LVL_WARN, "sign_refused",
		  log_pack("{s:s, s:s, s:i, s:s}", "peer", peer->addr, "reason", reason,
			   "grpc_status", code, "message", msg));
}

static void sign_refused(struct sign_service *svc, const struct sign_peer *peer, const char *auth,
			 const char *want, const char *id, int code, const char *msg,
			 const char *reason)
{
	metrics_refused(svc->metrics, reason);
	log_event(LOG_LVL_WARN, "sign_refused",
		  log_pack("{s:s, s:s, s:s?, s:s?, s:s, s:i, s:s}", "peer", peer->addr, "auth",
			   auth, "requested_spiffe_id", want, "authenticated_spiffe_id",
			   id && *id ? id : NULL, "reason", reason, "grpc_status", code, "message",
			   msg));
}

/* Packs the SignResponse for an issued certificate. */
static int sign_pack(const struct ca *ca, const struct ca_issued *is, const char *id,
		     uint8_t **resp, size_t *resp_len)
{
	Cinch__V1__SignResponse r = CINCH__V1__SIGN_RESPONSE__INIT;
	Cinch__V1__TrustBundle b = CINCH__V1__TRUST_BUNDLE__INIT;
	size_t n_chain = 1 + ca_chain_len(ca), n_roots = ca_bundle_len(ca);
	ProtobufCBinaryData *chain = calloc(n_chain, sizeof(*chain));
	ProtobufCBinaryData *roots = calloc(n_roots ? n_roots : 1, sizeof(*roots));
	uint8_t *buf = NULL;
	int rc = -ENOMEM;

	if (!chain || !roots)
		goto out;
	chain[0].data = is->der;
	chain[0].len = is->der_len;
	for (size_t i = 1; i < n_chain; i++)
		chain[i].data = (uint8_t *)ca_chain_der(ca, i - 1, &chain[i].len);
	for (size_t i = 0; i < n_roots; i++)
		roots[i].data = (uint8_t *)ca_bundle_der(ca, i, &roots[i].len);
	b.trust_domain = (char *)ca_trust_domain(ca);
	b.sequence = ca_bundle_sequence(ca);
	b.n_x509_authorities = n_roots;
	b.x509_authorities = roots;
	r.n_cert_chain = n_chain;
	r.cert_chain = chain;
	r.bundle = &b;
	r.spiffe_id = (char *)id;
	r.expires_at_unix = is->not_after;
	r.serial_hex = (char *)is->serial_hex;
	size_t len = cinch__v1__sign_response__get_packed_size(&r);
	buf = malloc(len ? len : 1);
	if (!buf)
		goto out;
	cinch__v1__sign_response__pack(&r, buf);
	*resp = buf;
	*resp_len = len;
	rc = 0;
out:
	free(chain);
	free(roots);
	return rc;
}

static const struct authenticator *
sign_pick(struct sign_service *svc, const Cinch__V1__SignRequest *sr, struct auth_request *ar)
{
	const Cinch__V1__Credential *c = sr->credential;
	if (c && c->kind_case == CINCH__V1__CREDENTIAL__KIND_JOIN_TOKEN) {
		ar->join_token = c->join_token;
		return &svc->join;
	}
	if (c && c->kind_case == CINCH__V1__CREDENTIAL__KIND_KUBERNETES_TOKEN) {
		ar->k8s_token = c->kubernetes_token;
		return &svc->k8s;
	}
	return &svc->renew;
}

/* What a pending call keeps between step 4's start and its answer. */
struct sign_pending {
	struct sign_service *svc;
	const struct authenticator *au;
	struct auth_pending *auth;
	sign_done_cb done;
	void *arg;
	EVP_PKEY *pub;
	long ttl;
	time_t now;
	double t0;
	char want[SPIFFE_ID_MAX + 1]; /* "" when none was asked for */
	char addr[64];
};

/* Step 5, for an authenticated caller: sign, pack, audit, count. */
static int sign_issue(struct sign_service *svc, const struct sign_peer *peer,
		      const struct authenticator *au, const char *want,
		      const struct auth_result *res, EVP_PKEY *pub, long ttl, time_t now, double t0,
		      uint8_t **resp, size_t *resp_len, const char **msg)
{
	struct ca_issued is = {0};
	enum ca_reason cr = CA_ER_NONE;
	int code = GRPC_OK;

	if (ca_sign_pubkey(svc->ca, pub, res->id, ttl, now, &is, &cr) < 0 ||
	    sign_pack(svc->ca, &is, res->id, resp, resp_len) < 0) {
		code = cr == CA_ER_CA_EXPIRED ? GRPC_UNAVAILABLE : GRPC_INTERNAL;
		*msg = "the CA could not sign";
		sign_refused(svc, peer, au->ops->name, want, res->id, code, *msg,
			     ca_reason_name(cr == CA_ER_NONE ? CA_ER_INTERNAL : cr));
		goto release;
	}
	/* Spent only now, and on disk before the certificate goes out. */
	if (au->ops->commit && (code = au->ops->commit(au->impl, res, now)) != GRPC_OK) {
		free(*resp);
		*resp = NULL;
		*resp_len = 0;
		*msg = "the token store cannot be written";
		sign_refused(svc, peer, au->ops->name, want, res->id, code, *msg,
			     "token_store_error");
		goto release;
	}
	*msg = "";
	metrics_issued(svc->metrics, au->ops->name);
	metrics_observe_sign(svc->metrics, sign_now_s() - t0);
	log_event(LOG_LVL_INFO, "svid_issued",
		  log_pack("{s:s, s:s, s:I, s:s, s:s, s:s}", "serial", is.serial_hex, "spiffe_id",
			   res->id, "expires_at_unix", (json_int_t)is.not_after, "auth",
			   au->ops->name, "auth_detail", res->detail, "peer", peer->addr));
	goto out;
release:
	if (au->ops->release)
		au->ops->release(au->impl, res);
out:
	ca_issued_cleanup(&is);
	return code;
}

static void sign_pending_free(struct sign_pending *p)
{
	ca_key_free(p->pub);
	free(p);
}

static void sign_auth_done(void *arg, int code, const struct auth_result *res, const char *msg,
			   const char *reason)
{
	struct sign_pending *p = arg;
	struct sign_peer peer = {.addr = p->addr};
	const char *want = p->want[0] ? p->want : NULL;
	uint8_t *resp = NULL;
	size_t resp_len = 0;

	if (code == GRPC_OK)
		code = sign_issue(p->svc, &peer, p->au, want, res, p->pub, p->ttl, p->now, p->t0,
				  &resp, &resp_len, &msg);
	else
		sign_refused(p->svc, &peer, p->au->ops->name, want, res->id, code, msg, reason);
	p->done(p->arg, code, msg, resp, resp_len);
	sign_pending_free(p);
}

void sign_cancel(struct sign_pending *p)
{
	if (!p)
		return;
	p->au->ops->cancel(p->auth);
	sign_pending_free(p);
}

int sign_start(struct sign_service *svc, const struct sign_peer *peer, const uint8_t *req,
	       size_t len, uint8_t **resp, size_t *resp_len, const char **msg, sign_done_cb done,
	       void *arg, struct sign_pending **pending)
{
	double t0 = sign_now_s();
	Cinch__V1__SignRequest *sr = cinch__v1__sign_request__unpack(NULL, len, req);
	struct auth_request ar = {.peer = peer->cert,
				  .peer_chain = peer->chain,
				  .peer_cache = peer->cache,
				  .now = time(NULL)};
	struct auth_result res = {0};
	struct sign_pending *p = NULL;
	const struct authenticator *au = NULL;
	const char *reason = NULL, *why = NULL;
	enum ca_reason cr;
	EVP_PKEY *pub = NULL;
	int code;

	if (!sr) {
		*msg = "request is not a valid cinch.v1.SignRequest";
		sign_refuse_early(svc, peer, GRPC_INVALID_ARGUMENT, *msg, "request_malformed");
		return GRPC_INVALID_ARGUMENT;
	}
	au = sign_pick(svc, sr, &ar);
	if (sr->requested_spiffe_id && *sr->requested_spiffe_id) {
		struct spiffe_workload w;
		ar.want = sr->requested_spiffe_id;
		if (spiffe_id_parse_workload(ar.want, strlen(ar.want), &w, &why) < 0) {
			code = GRPC_INVALID_ARGUMENT;
			*msg = "requested_spiffe_id is not spiffe://<td>/ns/<ns>/sa/<sa>";
			reason = "requested_id_invalid";
			goto refused;
		}
	}
	if (ca_csr_check(sr->csr.data, sr->csr.len, &pub, &cr) < 0) {
		code = GRPC_INVALID_ARGUMENT;
		*msg = cr == CA_ER_CSR_SIGNATURE ? "CSR signature does not verify"
		       : cr == CA_ER_KEY_WEAK	 ? "CSR key too weak (RSA needs >= 2048 bits)"
		       : cr == CA_ER_KEY_TYPE	 ? "CSR key type unsupported (EC P-256/P-384, RSA)"
						 : "CSR is not a DER PKCS#10 request";
		reason = ca_reason_name(cr);
		goto refused;
	}
	if ((int64_t)ar.now + 60 >= ca_not_after(svc->ca)) {
		code = GRPC_UNAVAILABLE;
		*msg = "the CA has expired";
		reason = ca_reason_name(CA_ER_CA_EXPIRED);
		goto refused;
	}
	if (done && au->ops->start) {
		if (!(p = calloc(1, sizeof(*p)))) {
			code = GRPC_INTERNAL;
			*msg = "out of memory";
			reason = "internal";
			goto refused;
		}
		*p = (struct sign_pending){.svc = svc,
					   .au = au,
					   .done = done,
					   .arg = arg,
					   .pub = pub,
					   .ttl = (long)sr->requested_ttl_seconds,
					   .now = ar.now,
					   .t0 = t0};
		if (ar.want)
			snprintf(p->want, sizeof(p->want), "%s", ar.want);
		snprintf(p->addr, sizeof(p->addr), "%s", peer->addr);
		code = au->ops->start(au->impl, &ar, &res, msg, &reason, sign_auth_done, p,
				      &p->auth);
		if (code == AUTH_PENDING) {
			pub = NULL; /* the pending call's now */
			*pending = p;
			code = SIGN_PENDING;
			goto out;
		}
		free(p);
	} else {
		code = au->ops->authenticate(au->impl, &ar, &res, msg, &reason);
	}
	if (code != GRPC_OK)
		goto refused;
	code = sign_issue(svc, peer, au, ar.want, &res, pub, (long)sr->requested_ttl_seconds,
			  ar.now, t0, resp, resp_len, msg);
	goto out;
refused:
	sign_refused(svc, peer, au ? au->ops->name : "none", ar.want, res.id, code, *msg, reason);
out:
	ca_key_free(pub);
	cinch__v1__sign_request__free_unpacked(sr, NULL);
	return code;
}

int sign_call(struct sign_service *svc, const struct sign_peer *peer, const uint8_t *req,
	      size_t len, uint8_t **resp, size_t *resp_len, const char **msg)
{
	return sign_start(svc, peer, req, len, resp, resp_len, msg, NULL, NULL, NULL);
}
