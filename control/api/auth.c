/* auth: the three authenticators of auth.h. Each one only decides who the
 * caller is; signing and auditing stay in sign.c. */
#include "api/auth.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "grpcc.h"
#include "ca/ca.h"
#include "svid.h"
#include "token/token.h"

static int auth_join_authenticate(void *impl, const struct auth_request *req,
				  struct auth_result *out, const char **msg, const char **reason)
{
	struct token_store *ts = impl;
	enum token_reason why;
	char h[65];
	size_t len = strlen(req->join_token);

	token_hash_hex(req->join_token, len, h);
	snprintf(out->detail, sizeof(out->detail), "token_sha256=%.16s", h);
	int rc = token_redeem(ts, req->join_token, len, req->want, req->now, out->id, &why);
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

const struct auth_ops auth_join_ops = {
	.name = "join_token",
	.authenticate = auth_join_authenticate,
};

/* Renewal: the same identity as the caller's current, valid SVID. The TLS
 * layer already verified the chain; verifying again here adds the SVID
 * rules (CA:FALSE, one SPIFFE URI of our trust domain) and keeps renewal
 * correct even if the TLS settings change. */
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
	if (pc && pc->id[0] && req->now < pc->not_after) {
		memcpy(out->id, pc->id, sizeof(out->id));
	} else if (ca_verify_svid(ca, req->peer, req->peer_chain, req->now, out->id,
				  sizeof(out->id), &why) < 0) {
		*msg = "client certificate is not a valid SVID of this trust domain";
		*reason = "renewal_cert_invalid";
		return GRPC_UNAUTHENTICATED;
	} else if (pc) {
		memcpy(pc->id, out->id, sizeof(pc->id));
		if (svid_time_unix(X509_get0_notAfter(req->peer), &pc->not_after) < 0)
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

static int auth_k8s_authenticate(void *impl, const struct auth_request *req,
				 struct auth_result *out, const char **msg, const char **reason)
{
	*msg = "kubernetes token authentication is not configured";
	*reason = "kubernetes_not_configured";
	return GRPC_UNAUTHENTICATED;
}

const struct auth_ops auth_k8s_ops = {
	.name = "kubernetes",
	.authenticate = auth_k8s_authenticate,
};
