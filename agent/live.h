/* live: the agent's material from cinch-control (`cinch-agent run
 * --control`, issue #6), where static mode reads files.
 *
 * Two sources feed it, both on the agent's one libuv loop through one
 * h2c (nghttp2 + BoringSSL, no libcurl):
 *   svidsrc   the workload certificate: key generated here, CSR signed by
 *             the control plane with the bootstrap token, then renewed
 *             over mutual TLS; NULL when it expired with no successor;
 *   cfgwatch  the configuration stream (Config/Watch), started with the
 *             first certificate and given every renewed one: snapshots of
 *             this workload's policy slice, peers and trust bundle.
 *
 * Whenever either changes and both are present, live builds the material
 * new connections use: a TLS context from the certificate, its key and
 * the snapshot's trust bundle (the bundle that came with the certificate
 * when the snapshot carries none), and the slice; and hands both to
 * on_material. A snapshot is refused (and the previous one stays in
 * force, and the refusal is reported to the control plane) when it does
 * not decode into a valid slice, names another identity than the
 * certificate, or carries a bundle that does not verify our own chain.
 * When the certificate expires, on_material gets NULL: fail closed until
 * a new one arrives.
 *
 * Lifetime: live_start() to live_stop(); the memory goes once the loop has
 * closed the sources' handles (run the loop afterwards). */
#ifndef CINCH_AGENT_LIVE_H
#define CINCH_AGENT_LIVE_H

#include <stdint.h>
#include <uv.h>

#include <openssl/x509.h>

#include "cfgwatch.h"
#include "mtls.h"
#include "policy.h"
#include "svidsrc.h"

/* Borrowed for the call: take references to what you keep. */
struct live_material {
	struct mtls_ctx *tls;
	struct policy_slice *slice;
	X509 *leaf; /* the certificate in use */
	uint64_t bundle_sequence;
};

/* NULL: no valid certificate any more (fail closed). */
typedef void (*live_material_cb)(void *arg, const struct live_material *m);

struct live_opts {
	const char *control_url;	 /* "https://host:port" */
	const char *control_bundle_path; /* PEM roots that verify the control plane */
	const char *token_path;		 /* the bootstrap credential */
	enum svidsrc_cred cred;
	const char *workload;  /* "<ns>/<name>" or NULL: the control plane finds it */
	const char *spiffe_id; /* the identity we must get, or NULL */
	int64_t ttl_seconds;   /* certificate lifetime asked for; 0: default */
	live_material_cb on_material;
	void *arg;
};

struct live;

/* Reads the control bundle and starts asking for a certificate. 0 and
 * *out; -EINVAL with *why (bad options, unreadable bundle), -ENOMEM. */
int live_start(uv_loop_t *loop, const struct live_opts *o, struct live **out, const char **why)
	__attribute__((warn_unused_result));
void live_stop(struct live *l);
void live_status(const struct live *l, struct svidsrc_status *svid, struct cfgwatch_status *cfg);

#endif
