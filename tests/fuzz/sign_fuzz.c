/* sign_fuzz: any bytes as the message of a cinch.v1.Identity/Sign call, the
 * one request cinch-control takes before it knows who is asking (port
 * 15012, anyone on the pod network). Each input goes through sign_call, the
 * whole synchronous Sign path (protobuf decoding, requested_spiffe_id
 * syntax, the CSR check of ca/ca.c, the join-token store, renewal, signing,
 * packing, audit lines), twice: once as a caller with no client
 * certificate, once over a connection presenting a valid SVID of the CA
 * for PEER_ID.
 *
 * What must hold, besides no crash, leak or read past the input: an answer
 * is a known gRPC status with a message; without a certificate nothing is
 * ever signed (the token store is empty and Kubernetes tokens need the
 * asynchronous path); with one, a certificate is issued only for PEER_ID,
 * whatever the request asks for, and it chains to the CA, names PEER_ID as
 * its only URI SAN and expires within the CA's lifetime bounds.
 *
 * The CA and the token store live in a temporary state directory made at
 * the first input and removed at exit. Seeds (corpus/sign/) come from
 * tests/fuzz/mkseeds.py. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/mem.h>
#include <openssl/x509v3.h>

#include "api/sign.h"
#include "ca/ca.h"
#include "cinch/v1/identity.pb-c.h"
#include "grpcc.h"
#include "log.h"
#include "testpki.h"
#include "token/token.h"

#define PEER_ID "spiffe://cluster.local/ns/shop/sa/web"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct {
	char dir[64];
	struct ca *ca;
	struct token_store *tokens;
	struct metrics metrics;
	struct sign_service svc;
	X509 *peer; /* an SVID for PEER_ID */
} fz;

static void fz_cleanup(void)
{
	char cmd[96];

	X509_free(fz.peer);
	token_store_free(fz.tokens);
	ca_free(fz.ca);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fz.dir);
	if (system(cmd) != 0)
		fprintf(stderr, "sign_fuzz: could not remove %s\n", fz.dir);
}

static void fz_setup(void)
{
	struct ca_config cc = {.trust_domain = "cluster.local",
			       .state_dir = fz.dir,
			       .ttl_default_s = CA_TTL_DEFAULT_S,
			       .ttl_min_s = CA_TTL_MIN_S,
			       .ttl_max_s = CA_TTL_MAX_S};
	struct ca_issued is = {0};
	enum ca_reason cr;
	const char *why = NULL;
	EVP_PKEY *key = testpki_key();

	/* Every audit line is built and written, where nobody reads it. */
	log_init("sign_fuzz", fopen("/dev/null", "w"), LOG_LVL_DEBUG);
	snprintf(fz.dir, sizeof(fz.dir), "/tmp/sign_fuzz.XXXXXX");
	if (!key || !mkdtemp(fz.dir) || ca_open(&cc, &fz.ca, &why) < 0 ||
	    token_store_open(fz.dir, "cluster.local", &fz.tokens) < 0 ||
	    ca_sign_pubkey(fz.ca, key, PEER_ID, 0, time(NULL), &is, &cr) < 0) {
		fprintf(stderr, "sign_fuzz: set-up failed: %s\n", why ? why : "");
		abort();
	}
	const uint8_t *p = is.der;
	fz.peer = d2i_X509(NULL, &p, (long)is.der_len);
	ca_issued_cleanup(&is);
	EVP_PKEY_free(key);
	if (!fz.peer)
		abort();
	fz.svc = (struct sign_service){
		.ca = fz.ca,
		.join = {&auth_join_ops, fz.tokens},
		.renew = {&auth_renew_ops, fz.ca},
		.k8s = {&auth_k8s_ops, NULL},
		.metrics = &fz.metrics,
	};
	atexit(fz_cleanup);
}

/* The certificate of an answer: chains to the CA, one URI SAN, PEER_ID. */
static void fz_check_issued(const uint8_t *resp, size_t len, time_t t0)
{
	Cinch__V1__SignResponse *r = cinch__v1__sign_response__unpack(NULL, len, resp);
	char id[SPIFFE_ID_MAX + 1];
	const char *why = NULL;

	if (!r || strcmp(r->spiffe_id, PEER_ID) || r->n_cert_chain < 1 ||
	    r->expires_at_unix <= (int64_t)t0 ||
	    r->expires_at_unix > (int64_t)time(NULL) + CA_TTL_MAX_S + 1)
		abort();
	const uint8_t *p = r->cert_chain[0].data;
	X509 *leaf = d2i_X509(NULL, &p, (long)r->cert_chain[0].len);
	GENERAL_NAMES *san = leaf ? X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL) : NULL;
	if (!san || sk_GENERAL_NAME_num(san) != 1 ||
	    ca_verify_svid(fz.ca, leaf, NULL, time(NULL), id, sizeof(id), &why) < 0 ||
	    strcmp(id, PEER_ID))
		abort();
	GENERAL_NAMES_free(san);
	X509_free(leaf);
	cinch__v1__sign_response__free_unpacked(r, NULL);
}

static void fz_call(const uint8_t *data, size_t size, X509 *peer)
{
	struct sign_peer sp = {.cert = peer, .addr = "10.1.0.2:40000"};
	uint8_t *resp = NULL;
	size_t resp_len = 0;
	const char *msg = NULL;
	time_t t0 = time(NULL);
	int code = sign_call(&fz.svc, &sp, data, size, &resp, &resp_len, &msg);

	if (code < GRPC_OK || code > GRPC_UNAUTHENTICATED || !msg)
		abort();
	if (code != GRPC_OK) {
		if (!*msg || resp)
			abort();
		return;
	}
	if (!peer)
		abort(); /* signed for a caller that proved nothing */
	fz_check_issued(resp, resp_len, t0);
	free(resp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!fz.ca)
		fz_setup();
	fz_call(data, size, NULL);
	fz_call(data, size, fz.peer);
	return 0;
}
