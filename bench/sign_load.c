/* sign_load: the load generator of bench/sign.sh. Keeps N Sign calls in
 * flight against cinch-control for S seconds and prints what it saw:
 *   "<signed/s> <p50 ms> <p99 ms> <ok> <failed>"
 * Every call is a renewal authenticated by CERT/KEY over mutual TLS, with
 * the same CSR (the control verifies its signature every time all the
 * same). `enroll` buys that first certificate with a join token.
 *
 *   sign_load enroll URL CA TOKEN OUT_CERT OUT_KEY
 *   sign_load run URL CA CERT KEY CONCURRENCY SECONDS
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cinch/v1/identity.pb-c.h"
#include "fsutil.h"
#include "grpcc.h"
#include "numarg.h"

struct load {
	uv_loop_t *loop;
	struct h2c *h;
	struct mtls_ctx *creds;
	const char *url;
	uint8_t *req;
	size_t req_len;
	double deadline;
	double *lat;
	size_t n_lat, cap_lat;
	unsigned ok, failed, inflight;
	uint8_t *resp; /* enroll: the answer */
	size_t resp_len;
};

struct call {
	struct load *l;
	double t0;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void start_call(struct load *l);

static int on_msg(void *arg, const uint8_t *msg, size_t len)
{
	struct call *c = arg;
	if (!c->l->resp && (c->l->resp = malloc(len ? len : 1))) {
		memcpy(c->l->resp, msg, len);
		c->l->resp_len = len;
	}
	return 0;
}

static void on_done(void *arg, int code, const char *message)
{
	struct call *c = arg;
	struct load *l = c->l;
	double t = now_s();

	l->inflight--;
	if (code == GRPC_OK) {
		l->ok++;
		if (l->n_lat == l->cap_lat) {
			l->cap_lat = l->cap_lat ? l->cap_lat * 2 : 4096;
			l->lat = realloc(l->lat, l->cap_lat * sizeof(double));
		}
		if (l->lat)
			l->lat[l->n_lat++] = t - c->t0;
	} else {
		if (l->failed++ < 5)
			fprintf(stderr, "sign_load: %s: %s\n", grpc_code_name(code), message);
	}
	free(c);
	if (t < l->deadline)
		start_call(l);
	else if (l->inflight == 0)
		h2c_close(l->h, NULL, NULL);
}

static void start_call(struct load *l)
{
	struct call *c = malloc(sizeof(*c));
	if (!c)
		return;
	c->l = l;
	c->t0 = now_s();
	struct grpcc_opts o = {
		.base_url = l->url,
		.method = "/cinch.v1.Identity/Sign",
		.request = l->req,
		.request_len = l->req_len,
		.timeout_ms = 30000,
		.max_message = 1 << 20,
		.on_message = on_msg,
		.on_done = on_done,
		.arg = c,
	};
	if (grpcc_call(l->h, l->creds, &o, NULL) == 0)
		l->inflight++;
	else
		free(c);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static char *read_text(const char *path)
{
	char *s = NULL;
	size_t len;
	return fsutil_read_all(path, 1 << 20, &s, &len) == 0 ? s : NULL;
}

/* A P-256 key and a CSR for it; the key as PEM into *key_pem. */
static int make_csr(uint8_t **der, size_t *len, char **key_pem)
{
	EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
	EVP_PKEY *k = EVP_PKEY_new();
	X509_REQ *r = X509_REQ_new();
	BIO *b = BIO_new(BIO_s_mem());
	const uint8_t *p;
	size_t n;
	int out_len;

	if (!ec || !k || !r || !b || !EC_KEY_generate_key(ec) || !EVP_PKEY_assign_EC_KEY(k, ec) ||
	    !X509_REQ_set_pubkey(r, k) || !X509_REQ_sign(r, k, EVP_sha256()) ||
	    (out_len = i2d_X509_REQ(r, der)) <= 0 ||
	    !PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) ||
	    !BIO_mem_contents(b, &p, &n))
		return -1;
	*len = (size_t)out_len;
	*key_pem = strndup((const char *)p, n);
	EVP_PKEY_free(k);
	X509_REQ_free(r);
	BIO_free(b);
	return 0;
}

static int pack_request(struct load *l, uint8_t *csr, size_t csr_len, char *token)
{
	Cinch__V1__SignRequest req = CINCH__V1__SIGN_REQUEST__INIT;
	Cinch__V1__Credential cred = CINCH__V1__CREDENTIAL__INIT;

	req.csr.data = csr;
	req.csr.len = csr_len;
	if (token) {
		cred.kind_case = CINCH__V1__CREDENTIAL__KIND_JOIN_TOKEN;
		cred.join_token = token;
		req.credential = &cred;
	}
	l->req_len = cinch__v1__sign_request__get_packed_size(&req);
	l->req = malloc(l->req_len);
	if (!l->req)
		return -1;
	cinch__v1__sign_request__pack(&req, l->req);
	return 0;
}

static int enroll(struct load *l, char *token, const char *out_cert, const char *out_key)
{
	uint8_t *csr = NULL;
	size_t csr_len;
	char *key_pem = NULL;
	Cinch__V1__SignResponse *r = NULL;

	int rc = 1;

	if (make_csr(&csr, &csr_len, &key_pem) < 0 || pack_request(l, csr, csr_len, token) < 0)
		goto out;
	l->deadline = 0; /* one call */
	start_call(l);
	uv_run(l->loop, UV_RUN_DEFAULT);
	r = l->resp ? cinch__v1__sign_response__unpack(NULL, l->resp_len, l->resp) : NULL;
	if (!r || r->n_cert_chain == 0) {
		fprintf(stderr, "sign_load: enroll failed\n");
		goto out;
	}
	const uint8_t *p = r->cert_chain[0].data;
	X509 *x = d2i_X509(NULL, &p, (long)r->cert_chain[0].len);
	FILE *f = fopen(out_cert, "w");
	if (x && f && PEM_write_X509(f, x) &&
	    fsutil_write_atomic(out_key, key_pem, strlen(key_pem), 0600) == 0)
		rc = 0;
	if (f && fclose(f) != 0)
		rc = 1;
	X509_free(x);
out:
	if (r)
		cinch__v1__sign_response__free_unpacked(r, NULL);
	OPENSSL_free(csr);
	free(key_pem);
	return rc;
}

int main(int argc, char **argv)
{
	struct load l = {.loop = uv_default_loop()};
	char *ca;
	int rc;

	if (argc == 7 && !strcmp(argv[1], "enroll")) {
		l.url = argv[2];
		ca = read_text(argv[3]);
		if (!ca || h2c_new(l.loop, &l.h) < 0 ||
		    h2c_tls_new(ca, NULL, NULL, &l.creds) < 0)
			return 1;
		rc = enroll(&l, argv[4], argv[5], argv[6]);
		goto out;
	}
	if (argc != 8 || strcmp(argv[1], "run") != 0) {
		fprintf(stderr, "usage: sign_load enroll URL CA TOKEN OUT_CERT OUT_KEY\n"
				"       sign_load run URL CA CERT KEY CONCURRENCY SECONDS\n");
		return 2;
	}
	l.url = argv[2];
	char *cert = read_text(argv[4]), *key = read_text(argv[5]);
	long long n_ll;
	if (numarg_parse(argv[6], 1, 100000, &n_ll) < 0) {
		fprintf(stderr, "sign_load: CONCURRENCY \"%s\": expected 1 to 100000\n", argv[6]);
		return 2;
	}
	unsigned n = (unsigned)n_ll;
	double secs = atof(argv[7]);
	uint8_t *csr;
	size_t csr_len;
	char *csr_key;
	ca = read_text(argv[3]);
	if (!ca || !cert || !key || !n || secs <= 0 || h2c_new(l.loop, &l.h) < 0 ||
	    h2c_tls_new(ca, cert, key, &l.creds) < 0 ||
	    make_csr(&csr, &csr_len, &csr_key) < 0 || pack_request(&l, csr, csr_len, NULL) < 0)
		return 1;
	double t0 = now_s();
	l.deadline = t0 + secs;
	for (unsigned i = 0; i < n; i++)
		start_call(&l);
	rc = uv_run(l.loop, UV_RUN_DEFAULT);
	double elapsed = now_s() - t0;
	qsort(l.lat, l.n_lat, sizeof(double), cmp_double);
	printf("%.0f %.2f %.2f %u %u\n", l.ok / elapsed, l.n_lat ? l.lat[l.n_lat / 2] * 1000 : 0.0,
	       l.n_lat ? l.lat[(size_t)(l.n_lat * 0.99)] * 1000 : 0.0, l.ok, l.failed);
	rc = rc == 0 && l.failed == 0 ? 0 : 1;
	free(cert);
	free(key);
	free(csr_key);
	OPENSSL_free(csr);
out:
	free(ca);
	free(l.req);
	free(l.lat);
	free(l.resp);
	mtls_ctx_unref(l.creds);
	uv_loop_close(l.loop);
	return rc;
}
