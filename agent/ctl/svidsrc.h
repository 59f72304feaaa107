/* svidsrc: the agent's workload identity, obtained from cinch-control and
 * kept fresh (the identity lifecycle of issue #6).
 *
 * The agent generates an ECDSA P-256 key in its own memory for every
 * certificate it asks for; only a PKCS#10 CSR leaves the process. The first
 * certificate is bought with the bootstrap credential (a join token, or a
 * projected Kubernetes service-account token, read from a file at each
 * attempt so a rotated file is picked up). Every later one is a renewal
 * authenticated by the current certificate over mutual TLS, at half the
 * remaining lifetime minus up to a tenth of it (jitter, so a fleet started
 * together does not renew together).
 *
 * A failed call backs off exponentially with full jitter (1 s doubling up
 * to 30 s). The current certificate stays in use while it is valid; when it
 * expires with no successor the source reports that (on_svid with NULL) so
 * the agent fails closed, and keeps trying: a renewal can no longer work
 * then, so it falls back to the bootstrap credential (a join token works
 * once: the log says a new one is needed).
 *
 * Every certificate is checked before it is handed on: the chain verifies
 * against the bundle that came with it, the leaf holds our public key and
 * the SPIFFE ID the control plane says it issued (and the one we asked
 * for, when we asked). The control plane itself is verified against the
 * bundle given at bootstrap, plus every bundle received since. */
#ifndef CINCH_AGENT_SVIDSRC_H
#define CINCH_AGENT_SVIDSRC_H

#include <stdint.h>
#include <time.h>
#include <uv.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <protobuf-c/protobuf-c.h>

#include "h2c.h"

enum svidsrc_cred {
	SVIDSRC_JOIN_TOKEN = 0,
	SVIDSRC_K8S_TOKEN,
};

/* One certificate and what goes with it; borrowed by on_svid for the call.
 * Up-reference what you keep (EVP_PKEY_up_ref, X509_up_ref). */
struct svidsrc_svid {
	EVP_PKEY *key;		/* private key: never leaves the process */
	STACK_OF(X509) * chain; /* leaf first, then intermediates */
	STACK_OF(X509) * roots; /* the trust bundle of the mesh */
	uint64_t bundle_sequence;
	const char *spiffe_id;
	const char *serial_hex;
	time_t not_before, not_after;
};

/* NULL: the last certificate expired with no successor (fail closed). */
typedef void (*svidsrc_cb)(void *arg, const struct svidsrc_svid *svid);

struct svidsrc_opts {
	const char *control_url;    /* "https://host:15012" */
	const char *control_ca_pem; /* bootstrap bundle, PEM, copied */
	enum svidsrc_cred cred;
	const char *cred_path; /* file holding the token, copied */
	const char *spiffe_id; /* expected identity, or NULL: take what is granted */
	int64_t ttl_seconds;   /* asked for; 0: the control's default */
	svidsrc_cb on_svid;
	void *arg;
};

/* What the agent shows in /metrics and /config. */
struct svidsrc_status {
	time_t not_after;     /* 0 before the first certificate */
	time_t next_attempt;  /* when the next Sign call starts */
	unsigned failures;    /* consecutive failed calls */
	uint64_t issued;      /* certificates received */
	char last_error[160]; /* "" when the last call worked */
};

struct svidsrc;

/* Starts at once (the first call is issued from the loop). Borrows `h`
 * (it must outlive the source). 0 and *out, or -EINVAL / -ENOMEM. */
int svidsrc_start(uv_loop_t *loop, struct h2c *h, const struct svidsrc_opts *o,
		  struct svidsrc **out) __attribute__((warn_unused_result));
/* Cancels what is in flight and frees the source once the loop has closed
 * its timers (run the loop afterwards). No callback runs after this. */
void svidsrc_stop(struct svidsrc *s);
void svidsrc_status(const struct svidsrc *s, struct svidsrc_status *out);
/* Certificates from DER (a SignResponse's chain, a TrustBundle's roots):
 * all of them or NULL when one is malformed. Free with
 * sk_X509_pop_free(sk, X509_free). */
STACK_OF(X509) * svidsrc_der_certs(const ProtobufCBinaryData *ders, size_t n);
/* Credentials for other calls to the control plane (the configuration
 * stream): the current certificate and key for mutual TLS, trusting the
 * bootstrap bundle and the last bundle received. -ENOENT while there is no
 * valid certificate; else as h2c_tls_new. */
int svidsrc_mtls_creds(struct svidsrc *s, struct mtls_ctx **out)
	__attribute__((warn_unused_result));

#endif
