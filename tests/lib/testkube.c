/* testkube: see testkube.h. */
#include "testkube.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "testpki.h"

int testkube_start(struct testkube *tk, const char *script)
{
	static const char *const sans[] = { "IP:127.0.0.1" };
	EVP_PKEY *ca_key = testpki_key(), *key = testpki_key();
	X509 *ca = testpki_root(ca_key, "kube test root", 1);
	X509 *cert = ca ? testpki_leaf(ca, ca_key, key, sans, 1, -60, 3600) : NULL;
	char *ca_pem = ca ? testpki_cert_pem(ca) : NULL;
	char *cert_pem = cert ? testpki_cert_pem(cert) : NULL;
	char *key_pem = key ? testpki_key_pem(key) : NULL;
	char cert_path[128], key_path[128];
	int rc = -1;

	memset(tk, 0, sizeof(*tk));
	snprintf(tk->dir, sizeof(tk->dir), "/tmp/testkube.XXXXXX");
	if (!ca_pem || !cert_pem || !key_pem || !mkdtemp(tk->dir) ||
	    testpki_write(tk->dir, "ca.pem", ca_pem) || testpki_write(tk->dir, "api.pem", cert_pem) ||
	    testpki_write(tk->dir, "api-key.pem", key_pem) ||
	    testpki_write(tk->dir, "token", "control-token\n") ||
	    testpki_write(tk->dir, "bad-token", "someone-else\n"))
		goto out;
	snprintf(tk->ca, sizeof(tk->ca), "%s/ca.pem", tk->dir);
	snprintf(tk->token, sizeof(tk->token), "%s/token", tk->dir);
	snprintf(tk->bad_token, sizeof(tk->bad_token), "%s/bad-token", tk->dir);
	snprintf(cert_path, sizeof(cert_path), "%s/api.pem", tk->dir);
	snprintf(key_path, sizeof(key_path), "%s/api-key.pem", tk->dir);
	char *argv[] = { "/usr/bin/python3", (char *)script, "--cert", cert_path, "--key",
			 key_path, "--lifetime", "120", NULL };
	if (testproc_start(&tk->proc, argv) == 0) {
		snprintf(tk->server, sizeof(tk->server), "https://127.0.0.1:%d", tk->proc.port);
		rc = 0;
	}
out:
	free(ca_pem);
	free(cert_pem);
	free(key_pem);
	X509_free(ca);
	X509_free(cert);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(key);
	return rc;
}

void testkube_stop(struct testkube *tk)
{
	char cmd[128];
	testproc_stop(&tk->proc);
	if (tk->dir[0] && strncmp(tk->dir, "/tmp/testkube.", 14) == 0) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tk->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "testkube: could not remove %s\n", tk->dir);
	}
}
