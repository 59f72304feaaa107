/* auth: who is asking for a certificate. The seam between the Sign service
 * and the ways a caller proves its identity (issue #3):
 *
 *   join      a single-use bootstrap token (token/token.h)
 *   renewal   the caller's current SVID from this CA, over mutual TLS
 *   k8s       a projected service-account token, validated by the
 *             Kubernetes API server (TokenReview, audience "cinch", then
 *             the bound pod checked alive: k8s/tokenreview.h); the
 *             identity is spiffe://<td>/ns/<ns>/sa/<sa> of the token's
 *             service account. Asynchronous: it answers from the loop.
 *
 * An authenticator is an ops table and its private state. It returns a
 * gRPC status (0 = authenticated, with the identity in out->id) and on a
 * refusal a static message for the caller and a metric/audit reason.
 * `want` (may be NULL) is the identity the caller asked for: a credential
 * that grants another one must be refused as PERMISSION_DENIED without
 * being consumed.
 *
 * A single-use credential is only reserved by a successful authenticate:
 * the Sign service then calls `commit` once a certificate is signed
 * (before giving it out) or `release` when signing failed, so a
 * credential is spent exactly when a certificate was issued.
 *
 * An asynchronous authenticator also has `start`: it answers like
 * `authenticate` when it can decide at once, or returns AUTH_PENDING and
 * calls `done` exactly once later from the loop, unless `cancel` runs
 * first. Its synchronous `authenticate` refuses (the caller's transport
 * cannot wait). */
#ifndef CINCH_CONTROL_AUTH_H
#define CINCH_CONTROL_AUTH_H

#include <errno.h>
#include <stdint.h>
#include <time.h>

#include <openssl/x509.h>

#include "spiffe.h"

struct metrics;

/* What renewal learnt about a connection's client certificate, kept by the
 * connection. The certificate cannot change under a connection, but what
 * makes it valid can: every call checks its validity window, and its chain
 * is verified again whenever the trust bundle is not the one it was
 * verified against (a rotation added or retired a root). So a connection
 * authenticates each call with what is in force then, never only once. */
struct auth_peer_cache {
	char id[SPIFFE_ID_MAX + 1]; /* "" until verified */
	int64_t not_before, not_after;
	uint64_t bundle_sequence; /* of the bundle it was verified against */
};

struct auth_request {
	const char *join_token; /* exactly one of these three is set */
	const char *k8s_token;
	X509 *peer; /* renewal: the verified client certificate (borrowed) */
	STACK_OF(X509) * peer_chain;
	struct auth_peer_cache *peer_cache; /* the connection's, or NULL */
	const char *want;		    /* requested_spiffe_id or NULL */
	time_t now;
};

struct auth_result {
	char id[SPIFFE_ID_MAX + 1];
	char detail[80];   /* for the audit line: token hash prefix, old serial */
	char reserved[65]; /* what commit/release settle: the join token's hash */
};

#define AUTH_PENDING (-EINPROGRESS)

struct auth_pending;

/* The late answer: a gRPC status as `authenticate` returns; `res`, `msg`
 * and `reason` are borrowed for the call (reason: a static string). */
typedef void (*auth_done_cb)(void *arg, int code, const struct auth_result *res, const char *msg,
			     const char *reason);

struct auth_ops {
	const char *name; /* "join_token", "renewal", "kubernetes" */
	int (*authenticate)(void *impl, const struct auth_request *req, struct auth_result *out,
			    const char **msg, const char **reason);
	/* NULL for synchronous authenticators. Borrows req for the call. */
	int (*start)(void *impl, const struct auth_request *req, struct auth_result *out,
		     const char **msg, const char **reason, auth_done_cb done, void *arg,
		     struct auth_pending **pending);
	/* After this, `done` does not run for p. */
	void (*cancel)(struct auth_pending *p);
	/* NULL when nothing is spent. After an OK: commit spends the
	 * credential (0, or a gRPC status: then no certificate may be given
	 * and release follows); release gives it back. */
	int (*commit)(void *impl, const struct auth_result *res, time_t now);
	void (*release)(void *impl, const struct auth_result *res);
};

struct authenticator {
	const struct auth_ops *ops;
	void *impl;
};

extern const struct auth_ops auth_join_ops;  /* impl: struct token_store */
extern const struct auth_ops auth_renew_ops; /* impl: const struct ca */
struct kapi;
struct tokenreview_limit;

/* impl of auth_k8s_ops (NULL: Kubernetes tokens are refused as not
 * configured). Borrowed; kapi must outlive every review started: close it
 * (which ends the reviews in flight) before this goes away. */
struct auth_k8s_config {
	struct kapi *kapi;
	const char *trust_domain;
	struct tokenreview_limit *limit; /* NULL: reviews are not bounded (tests) */
	struct metrics *metrics; /* borrowed; TokenReview timings, or NULL */
};

#define AUTH_K8S_AUDIENCE "cinch"

extern const struct auth_ops auth_k8s_ops; /* impl: struct auth_k8s_config or NULL */

#endif
