/* ctl_cert: `cinchctl cert inspect FILE [--bundle FILE]`: what an SVID says
 * (its SPIFFE ID read exactly as the agent and the CA read it, serial,
 * validity, the chain in the file) and whether it verifies against a
 * bundle. Exit 0 when it verifies (or no bundle was given), 1 when it does
 * not, 2 when the file is not a certificate. */
#include "ctl.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "certverify.h"
#include "pemfile.h"
#include "spiffe.h"
#include "svid.h"

static const char *ctl_cert_usage =
	"usage: cinchctl cert inspect FILE [--bundle FILE]\n"
	"\n"
	"FILE holds the certificate (PEM), optionally followed by its chain.\n"
	"--bundle: the trust bundle (PEM roots, e.g. `cinchctl bundle show --pem`).\n";

static void ctl_cert_time(const char *label, const ASN1_TIME *t)
{
	int64_t u;
	char buf[32] = "?";

	if (svid_time_unix(t, &u) == 0) {
		time_t tt = (time_t)u;
		strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", gmtime(&tt));
	}
	printf("%-12s %s\n", label, buf);
}

static void ctl_cert_name(const char *label, const X509_NAME *n)
{
	char buf[256];

	X509_NAME_oneline(n, buf, sizeof(buf));
	printf("%-12s %s\n", label, buf[0] ? buf : "(empty)");
}

int ctl_cert(int argc, char **argv)
{
	static const struct option opts[] = {
		{"bundle", required_argument, NULL, 'b'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *bundle_path = NULL, *why = NULL;
	STACK_OF(X509) *certs = NULL, *roots = NULL;
	char id[SPIFFE_ID_MAX + 1];
	int c, rc = 2;

	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		fputs(ctl_cert_usage, stdout);
		return 0;
	}
	if (argc < 2 || strcmp(argv[1], "inspect") != 0)
		return argc < 2 ? ctl_usage_error("cert", "missing a verb (inspect)")
				: ctl_usage_error("cert", "unknown verb \"%s\"", argv[1]);
	optind = 2;
	while ((c = ctl_getopt("cert inspect", argc, argv, opts)) != -1) {
		switch (c) {
		case 'b':
			bundle_path = optarg;
			break;
		case 'h':
			fputs(ctl_cert_usage, stdout);
			return 0;
		default:
			return 2;
		}
	}
	if (optind != argc - 1)
		return ctl_usage_error("cert inspect", optind == argc ? "missing the FILE"
								      : "one FILE, not several");
	certs = pemfile_certs(argv[optind]);
	if (!certs) {
		fprintf(stderr, "cinchctl: %s: no PEM certificate in it\n", argv[optind]);
		goto out;
	}
	X509 *leaf = sk_X509_value(certs, 0);
	char serial[64];
	int have_serial = svid_serial_hex(leaf, serial, sizeof(serial)) == 0;
	if (svid_spiffe_id(leaf, id, sizeof(id), &why) == 0)
		printf("%-12s %s\n", "spiffe_id", id);
	else
		printf("%-12s none: %s\n", "spiffe_id", why);
	printf("%-12s %s\n", "serial", have_serial ? serial : "?");
	ctl_cert_name("subject", X509_get_subject_name(leaf));
	ctl_cert_name("issuer", X509_get_issuer_name(leaf));
	ctl_cert_time("not_before", X509_get0_notBefore(leaf));
	ctl_cert_time("not_after", X509_get0_notAfter(leaf));
	for (size_t i = 1; i < sk_X509_num(certs); i++) {
		char label[32];
		snprintf(label, sizeof(label), "chain[%zu]", i);
		ctl_cert_name(label, X509_get_subject_name(sk_X509_value(certs, i)));
	}
	rc = 0;
	if (!bundle_path)
		goto out;
	roots = pemfile_certs(bundle_path);
	if (!roots) {
		fprintf(stderr, "cinchctl: %s: no PEM certificate in it\n", bundle_path);
		rc = 2;
		goto out;
	}
	int err;
	switch (certverify_roots(roots, leaf, certs, NULL, &err)) {
	case 0:
		printf("%-12s ok (%s)\n", "verifies", bundle_path);
		break;
	case -ENOMEM:
		fprintf(stderr, "cinchctl: out of memory\n");
		rc = 2;
		break;
	default:
		printf("%-12s NO: %s\n", "verifies", certverify_error_string(err));
		rc = 1;
	}
out:
	sk_X509_pop_free(certs, X509_free);
	sk_X509_pop_free(roots, X509_free);
	return rc;
}
