/* hs_bench: the machine's limit for full TLS handshakes, for
 * bench/proxies.sh. Both ends of a mutual TLS 1.3 handshake run in this
 * one thread over memory BIOs, as the agent pair does them (ECDSA P-256
 * certificates, X25519, chain verification on both sides, no session
 * resumption), back to back for SECONDS: one core's worth of full
 * connections, client and server work together. Prints "handshakes/s".
 *
 *   hs_bench CA CERT KEY SECONDS   (CERT's chain serves both ends)
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

static SSL_CTX *hs_ctx(const char *ca, const char *cert, const char *key, int server)
{
	SSL_CTX *c = SSL_CTX_new(TLS_method());
	if (!c || !SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) ||
	    !SSL_CTX_use_certificate_chain_file(c, cert) ||
	    !SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) ||
	    !SSL_CTX_load_verify_locations(c, ca, NULL) ||
	    !SSL_CTX_set1_curves_list(c, "X25519:P-256")) {
		SSL_CTX_free(c);
		return NULL;
	}
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
			   NULL);
	SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
	return c;
}

/* One full handshake: 0, or -1. */
static int hs_once(SSL_CTX *sc, SSL_CTX *cc)
{
	SSL *s = SSL_new(sc), *c = SSL_new(cc);
	BIO *a = NULL, *b = NULL;
	int rc = -1;

	if (!s || !c || !BIO_new_bio_pair(&a, 0, &b, 0))
		goto out;
	SSL_set_bio(c, a, a);
	SSL_set_bio(s, b, b);
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	for (int i = 0; i < 16; i++) {
		int rc_c = SSL_do_handshake(c), rc_s = SSL_do_handshake(s);
		if (rc_c == 1 && rc_s == 1) {
			rc = 0;
			break;
		}
		if ((rc_c != 1 && SSL_get_error(c, rc_c) != SSL_ERROR_WANT_READ) ||
		    (rc_s != 1 && SSL_get_error(s, rc_s) != SSL_ERROR_WANT_READ))
			break;
	}
out:
	SSL_free(s);
	SSL_free(c);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: hs_bench CA CERT KEY SECONDS\n");
		return 2;
	}
	SSL_CTX *sc = hs_ctx(argv[1], argv[2], argv[3], 1),
		*cc = hs_ctx(argv[1], argv[2], argv[3], 0);
	double secs = atof(argv[4]);
	struct timespec t0, t;
	long n = 0;

	if (!sc || !cc || secs <= 0) {
		ERR_print_errors_fp(stderr);
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		for (int i = 0; i < 20; i++, n++)
			if (hs_once(sc, cc) < 0) {
				fprintf(stderr, "hs_bench: handshake failed\n");
				ERR_print_errors_fp(stderr);
				return 1;
			}
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((double)(t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 < secs);
	printf("%.0f\n", n / ((double)(t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9));
	SSL_CTX_free(sc);
	SSL_CTX_free(cc);
	return 0;
}
