/* control.sign_k8s: Sign with a Kubernetes service-account token, through
 * sign_start (the asynchronous Sign path) and the kubernetes authenticator
 * of api/auth.c, against tests/lib/kube_api.py (a real HTTPS server that
 * answers TokenReview and pod reads in the API's own formats; no cluster
 * runs here). The CA is a fresh one in a temporary state directory; CSRs
 * are made with tests/lib/testpki.
 *
 * Checked: a pod-bound token for audience "cinch" gets an SVID for
 * spiffe://cluster.local/ns/<ns>/sa/<sa> taken from the review (in the
 * response and in the certificate's URI SAN); asking for another identity
 * is PERMISSION_DENIED; an unknown token, a token for another audience and
 * one whose pod has finished are UNAUTHENTICATED with the reason; an API
 * server that cannot be reached or refuses the control's own credentials
 * is UNAVAILABLE; nothing is signed on any refusal (metrics and response);
 * a cancelled call never calls back; the synchronous sign_call refuses
 * Kubernetes tokens, and without --kube-api they are "not configured".
 * A flood of Sign calls with Kubernetes tokens (issue #12: each one made
 * the control ask the API server, without bound) starts no more reviews
 * than the limit lets through, counted at the API server itself
 * (/debug/requests): the rest are UNAVAILABLE at once with the reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/mem.h>
#include <openssl/x509v3.h>

#include "api/sign.h"
#include "ca/ca.h"
#include "cinch/v1/identity.pb-c.h"
#include "grpcc.h"
#include "kapi.h"
#include "testkube.h"
#include "tokenreview.h"
#include "testloop.h"
#include "testpki.h"

#define WEB_ID "spiffe://cluster.local/ns/shop/sa/web"

static struct testkube fx;
static char state_dir[64];

static int setup(void **state)
{
	snprintf(state_dir, sizeof(state_dir), "/tmp/sign_k8s.XXXXXX");
	if (!mkdtemp(state_dir))
		return -1;
	return testkube_start(&fx, KUBE_API);
}

static int teardown(void **state)
{
	char cmd[128];
	testkube_stop(&fx);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", state_dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* One Sign service on its own loop and API client. */
struct rig {
	uv_loop_t loop;
	struct ca *ca;
	struct kapi *kapi;
	struct auth_k8s_config kc;
	struct metrics metrics;
	struct sign_service svc;
};

static void rig_open(struct rig *r, const char *server, const char *token_file)
{
	struct ca_config cc = {.trust_domain = "cluster.local",
			       .state_dir = state_dir,
			       .ttl_default_s = CA_TTL_DEFAULT_S,
			       .ttl_min_s = CA_TTL_MIN_S,
			       .ttl_max_s = CA_TTL_MAX_S};
	struct kapi_config kcfg;
	const char *why = NULL;

	memset(r, 0, sizeof(*r));
	assert_int_equal(uv_loop_init(&r->loop), 0);
	if (ca_open(&cc, &r->ca, &why) != 0)
		fail_msg("ca_open: %s", why);
	if (kapi_config_explicit(&kcfg, server, fx.ca, token_file, &why) != 0)
		fail_msg("kapi config: %s", why);
	assert_int_equal(kapi_new(&r->loop, &kcfg, &r->kapi), 0);
	kapi_config_cleanup(&kcfg);
	r->kc = (struct auth_k8s_config){
		.kapi = r->kapi, .trust_domain = "cluster.local", .metrics = &r->metrics};
	r->svc = (struct sign_service){
		.ca = r->ca, .k8s = {&auth_k8s_ops, &r->kc}, .metrics = &r->metrics};
}

static void rig_close(struct rig *r)
{
	kapi_close(r->kapi, NULL, NULL);
	if (testloop_run(&r->loop, 20) < 0)
		fail_msg("the loop did not end after kapi_close");
	assert_int_equal(uv_loop_close(&r->loop), 0);
	ca_free(r->ca);
}

static uint64_t count(const struct metrics_counter *t, const char *label)
{
	for (size_t i = 0; i < METRICS_MAX_LABELS && t[i].label; i++)
		if (!strcmp(t[i].label, label))
			return t[i].n;
	return 0;
}

/* A packed SignRequest with a kubernetes_token credential. */
static uint8_t *request(const char *token, const char *want, size_t *len)
{
	EVP_PKEY *key = testpki_key();
	Cinch__V1__SignRequest sr = CINCH__V1__SIGN_REQUEST__INIT;
	Cinch__V1__Credential cred = CINCH__V1__CREDENTIAL__INIT;
	size_t csr_len = 0;
	uint8_t *csr = testpki_csr(key, &csr_len);

	assert_non_null(csr);
	cred.kind_case = CINCH__V1__CREDENTIAL__KIND_KUBERNETES_TOKEN;
	cred.kubernetes_token = (char *)token;
	sr.credential = &cred;
	sr.csr.data = csr;
	sr.csr.len = csr_len;
	sr.requested_spiffe_id = (char *)(want ? want : "");
	*len = cinch__v1__sign_request__get_packed_size(&sr);
	uint8_t *buf = malloc(*len);
	assert_non_null(buf);
	cinch__v1__sign_request__pack(&sr, buf);
	OPENSSL_free(csr);
	EVP_PKEY_free(key);
	return buf;
}

struct answer {
	int calls, code;
	char msg[400];
	uint8_t *resp;
	size_t resp_len;
};

static void done_cb(void *arg, int code, const char *msg, uint8_t *resp, size_t resp_len)
{
	struct answer *a = arg;
	a->calls++;
	a->code = code;
	snprintf(a->msg, sizeof(a->msg), "%s", msg);
	a->resp = resp;
	a->resp_len = resp_len;
}

/* Runs one Sign call through the asynchronous path to its answer. */
static void sign_k8s(struct rig *r, const char *token, const char *want, struct answer *a)
{
	struct sign_peer peer = {.addr = "127.0.0.1:5555"};
	struct sign_pending *p = NULL;
	uint8_t *resp = NULL;
	size_t len, resp_len = 0;
	const char *msg = NULL;
	uint8_t *req = request(token, want, &len);

	memset(a, 0, sizeof(*a));
	int rc = sign_start(&r->svc, &peer, req, len, &resp, &resp_len, &msg, done_cb, a, &p);
	free(req);
	assert_int_equal(rc, SIGN_PENDING);
	assert_non_null(p);
	assert_null(resp);
	if (testloop_run(&r->loop, 20) < 0)
		fail_msg("no answer within 20 s");
	assert_int_equal(a->calls, 1);
}

/* The SVID's URI SAN, checked against the response's spiffe_id. */
static void assert_svid(const struct answer *a, const char *id)
{
	Cinch__V1__SignResponse *sr = cinch__v1__sign_response__unpack(NULL, a->resp_len, a->resp);
	assert_non_null(sr);
	assert_string_equal(sr->spiffe_id, id);
	assert_true(sr->n_cert_chain >= 1);
	const uint8_t *p = sr->cert_chain[0].data;
	X509 *x = d2i_X509(NULL, &p, (long)sr->cert_chain[0].len);
	assert_non_null(x);
	GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	assert_non_null(names);
	assert_int_equal(sk_GENERAL_NAME_num(names), 1);
	const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, 0);
	assert_int_equal(gn->type, GEN_URI);
	const ASN1_IA5STRING *uri = gn->d.uniformResourceIdentifier;
	assert_int_equal(ASN1_STRING_length(uri), strlen(id));
	assert_memory_equal(ASN1_STRING_get0_data(uri), id, strlen(id));
	GENERAL_NAMES_free(names);
	X509_free(x);
	cinch__v1__sign_response__free_unpacked(sr, NULL);
}

static void test_bound_token_gets_its_service_account_identity(void **state)
{
	struct rig r;
	struct answer a;

	rig_open(&r, fx.server, fx.token);
	sign_k8s(&r, "tok-web", NULL, &a);
	assert_int_equal(a.code, GRPC_OK);
	assert_non_null(a.resp);
	assert_svid(&a, WEB_ID);
	free(a.resp);
	/* Asking for its own identity is fine too. */
	sign_k8s(&r, "tok-web", WEB_ID, &a);
	assert_int_equal(a.code, GRPC_OK);
	free(a.resp);
	assert_int_equal(count(r.metrics.issued, "kubernetes"), 2);
	/* Both reviews timed, neither a failure. */
	assert_int_equal(r.metrics.tokenreview.count, 2);
	assert_int_equal(r.metrics.tokenreview_failures[0] + r.metrics.tokenreview_failures[1], 0);
	rig_close(&r);
}

static void test_refusals_sign_nothing(void **state)
{
	static const struct {
		const char *token, *want;
		int code;
		const char *msg, *reason;
	} cases[] = {
		{"tok-web", "spiffe://cluster.local/ns/shop/sa/db", GRPC_PERMISSION_DENIED,
		 "the service-account token grants " WEB_ID " only", "identity_not_granted"},
		{"tok-unknown", NULL, GRPC_UNAUTHENTICATED,
		 "kubernetes token refused: the API server did not authenticate the token: "
		 "[invalid bearer token]",
		 "k8s_token_refused"},
		{"tok-api-audience", NULL, GRPC_UNAUTHENTICATED,
		 "kubernetes token refused: the API server did not authenticate the token: "
		 "[invalid bearer token, token audiences [\"https://kubernetes.default.svc\"] is "
		 "invalid for the target audiences [\"cinch\"]]",
		 "k8s_token_refused"},
		{"tok-done", NULL, GRPC_UNAUTHENTICATED,
		 "kubernetes token refused: pod web-done has finished", "k8s_token_refused"},
		{"tok-legacy", NULL, GRPC_UNAUTHENTICATED,
		 "kubernetes token refused: not a pod-bound (projected) service-account token",
		 "k8s_token_refused"},
	};
	struct rig r;
	struct answer a;

	rig_open(&r, fx.server, fx.token);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		print_message("%s\n", cases[i].token);
		uint64_t before = count(r.metrics.refused, cases[i].reason);
		sign_k8s(&r, cases[i].token, cases[i].want, &a);
		assert_int_equal(a.code, cases[i].code);
		assert_string_equal(a.msg, cases[i].msg);
		assert_null(a.resp);
		assert_int_equal(count(r.metrics.refused, cases[i].reason), before + 1);
	}
	assert_int_equal(count(r.metrics.issued, "kubernetes"), 0);
	/* Five reviews; the API server refused the four tokens it did not
	 * validate (the first one is valid, for another identity). */
	assert_int_equal(r.metrics.tokenreview.count, 5);
	assert_int_equal(r.metrics.tokenreview_failures[0], 4);
	assert_int_equal(r.metrics.tokenreview_failures[1], 0);
	rig_close(&r);
}

static void test_api_server_trouble_is_unavailable(void **state)
{
	struct rig r;
	struct answer a;

	/* Nothing listens on port 1. */
	rig_open(&r, "https://127.0.0.1:1", fx.token);
	sign_k8s(&r, "tok-web", NULL, &a);
	assert_int_equal(a.code, GRPC_UNAVAILABLE);
	assert_non_null(strstr(a.msg, "cannot validate the kubernetes token now: the API server "
				      "could not be reached"));
	assert_null(a.resp);
	assert_int_equal(count(r.metrics.refused, "k8s_api_unavailable"), 1);
	assert_int_equal(r.metrics.tokenreview_failures[1], 1);
	assert_int_equal(r.metrics.tokenreview_failures[0], 0);
	rig_close(&r);

	/* The API server refuses the control's own credentials (HTTP 401). */
	rig_open(&r, fx.server, fx.bad_token);
	sign_k8s(&r, "tok-web", NULL, &a);
	assert_int_equal(a.code, GRPC_UNAVAILABLE);
	assert_string_equal(a.msg, "cannot validate the kubernetes token now: TokenReview "
				   "answered HTTP 401");
	assert_null(a.resp);
	assert_int_equal(count(r.metrics.issued, "kubernetes"), 0);
	rig_close(&r);
}

static void test_cancelled_call_never_answers(void **state)
{
	struct rig r;
	struct sign_peer peer = {.addr = "127.0.0.1:5555"};
	struct sign_pending *p = NULL;
	struct answer a = {0};
	uint8_t *resp = NULL;
	size_t len, resp_len = 0;
	const char *msg = NULL;

	rig_open(&r, fx.server, fx.token);
	uint8_t *req = request("tok-web", NULL, &len);
	assert_int_equal(
		sign_start(&r.svc, &peer, req, len, &resp, &resp_len, &msg, done_cb, &a, &p),
		SIGN_PENDING);
	free(req);
	sign_cancel(p);
	if (testloop_run(&r.loop, 20) < 0)
		fail_msg("the review did not end");
	assert_int_equal(a.calls, 0);
	assert_int_equal(count(r.metrics.issued, "kubernetes"), 0);
	rig_close(&r);
}

static void test_synchronous_path_and_not_configured(void **state)
{
	struct rig r;
	struct sign_peer peer = {.addr = "127.0.0.1:5555"};
	uint8_t *resp = NULL;
	size_t len, resp_len = 0;
	const char *msg = NULL;

	rig_open(&r, fx.server, fx.token);
	uint8_t *req = request("tok-web", NULL, &len);
	assert_int_equal(sign_call(&r.svc, &peer, req, len, &resp, &resp_len, &msg),
			 GRPC_UNAUTHENTICATED);
	assert_string_equal(msg, "kubernetes token authentication needs the asynchronous Sign "
				 "path");
	assert_null(resp);
	r.svc.k8s.impl = NULL;
	struct answer a = {0};
	struct sign_pending *p = NULL;
	assert_int_equal(
		sign_start(&r.svc, &peer, req, len, &resp, &resp_len, &msg, done_cb, &a, &p),
		GRPC_UNAUTHENTICATED);
	assert_string_equal(msg, "kubernetes token authentication is not configured (--kube-api)");
	assert_null(p);
	assert_int_equal(a.calls, 0);
	free(req);
	rig_close(&r);
}

static void requests_cb(void *arg, int status, long code, json_t *body, const char *err)
{
	json_t **out = arg;
	assert_int_equal(status, 0);
	*out = json_incref(body);
}

/* TokenReviews the API server has received so far. */
static size_t reviews_seen(struct rig *r)
{
	json_t *seen = NULL, *v;
	size_t i, n = 0;

	assert_int_equal(
		kapi_json(r->kapi, "GET", "/debug/requests", NULL, 5000, requests_cb, &seen, NULL),
		0);
	if (testloop_run(&r->loop, 20) < 0)
		fail_msg("no answer from /debug/requests");
	json_array_foreach(seen, i, v)
	{
		n += !strcmp(json_string_value(v),
			     "POST /apis/authentication.k8s.io/v1/tokenreviews");
	}
	json_decref(seen);
	return n;
}

#define FLOOD 100

/* One wave of FLOOD Sign calls at once; every other one started is
 * cancelled at once (its client hung up: the review runs on and still
 * counts). Returns how many started a review; the others must be refused
 * with `want_msg` (or, for the rate, also the in-progress message). */
static unsigned flood_wave(struct rig *r, const char *want_msg)
{
	static struct answer a[FLOOD];
	struct sign_peer peer = {.addr = "127.0.0.1:5555"};
	unsigned started = 0;
	size_t len;
	uint8_t *req = request("tok-web", NULL, &len);

	for (int i = 0; i < FLOOD; i++) {
		struct sign_pending *p = NULL;
		uint8_t *resp = NULL;
		size_t resp_len = 0;
		const char *msg = NULL;
		memset(&a[i], 0, sizeof(a[i]));
		int rc = sign_start(&r->svc, &peer, req, len, &resp, &resp_len, &msg, done_cb,
				    &a[i], &p);
		if (rc == SIGN_PENDING) {
			if (started++ % 2)
				sign_cancel(p);
			continue;
		}
		assert_int_equal(rc, GRPC_UNAVAILABLE);
		if (strcmp(msg, want_msg) != 0)
			assert_string_equal(msg, "too many kubernetes token reviews in progress, "
						 "retry later");
		assert_null(resp);
	}
	free(req);
	if (testloop_run(&r->loop, 30) < 0)
		fail_msg("the reviews did not end");
	for (int i = 0; i < FLOOD; i++)
		free(a[i].resp);
	return started;
}

static void test_token_review_flood_is_bounded(void **state)
{
	struct rig r;
	struct tokenreview_limit lim;

	rig_open(&r, fx.server, fx.token);
	tokenreview_limit_init(&lim, 4, 1, 4); /* 4 at once, 1/s, a burst of 4 */
	r.kc.limit = &lim;
	size_t before = reviews_seen(&r);

	/* At once: the concurrency cap. */
	unsigned first = flood_wave(&r, "too many kubernetes token reviews in progress, retry "
					"later");
	assert_int_equal(first, 4);
	assert_int_equal(lim.inflight, 0);
	/* Right after: the bucket is (nearly) empty, the rate refuses. */
	unsigned second = flood_wave(&r, "kubernetes token reviews are over their rate limit, "
					 "retry later");
	assert_true(second <= 2);
	assert_int_equal(count(r.metrics.refused, "k8s_review_limited"),
			 2 * FLOOD - first - second);
	assert_int_equal(reviews_seen(&r) - before, first + second);
	rig_close(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bound_token_gets_its_service_account_identity),
		cmocka_unit_test(test_refusals_sign_nothing),
		cmocka_unit_test(test_api_server_trouble_is_unavailable),
		cmocka_unit_test(test_cancelled_call_never_answers),
		cmocka_unit_test(test_synchronous_path_and_not_configured),
		cmocka_unit_test(test_token_review_flood_is_bounded),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
