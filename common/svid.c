/* svid: see svid.h. */
#include "svid.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/mem.h>
#include <openssl/x509v3.h>

#include "spiffe.h"

int svid_spiffe_id(const X509 *cert, char *out, size_t outlen, const char **why)
{
	const char *err = NULL;
	const ASN1_IA5STRING *uri = NULL;
	int rc = -EBADMSG;
	int n_uri = 0;

	if (!why)
		why = &err;
	GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	if (!names) {
		*why = "certificate has no subjectAltName";
		goto out;
	}
	for (size_t i = 0; i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
		if (gn->type == GEN_URI) {
			uri = gn->d.uniformResourceIdentifier;
			n_uri++;
		}
	}
	if (n_uri != 1) {
		*why = n_uri ? "certificate has more than one URI SAN"
			     : "certificate has no URI SAN";
		goto out;
	}
	const char *s = (const char *)ASN1_STRING_get0_data(uri);
	size_t len = (size_t)ASN1_STRING_length(uri);
	if (memchr(s, '\0', len)) {
		*why = "URI SAN holds a NUL byte";
		goto out;
	}
	if (spiffe_id_validate(s, len, why) < 0)
		goto out;
	if (len >= outlen) {
		*why = "SPIFFE ID does not fit the buffer";
		rc = -ENOSPC;
		goto out;
	}
	memcpy(out, s, len);
	out[len] = '\0';
	rc = 0;
out:
	GENERAL_NAMES_free(names);
	return rc;
}

int svid_time_unix(const ASN1_TIME *t, int64_t *out)
{
	ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
	int days, secs;
	int ok = epoch && t && ASN1_TIME_diff(&days, &secs, epoch, t);

	ASN1_TIME_free(epoch);
	if (!ok)
		return -EINVAL;
	*out = (int64_t)days * 86400 + secs;
	return 0;
}

int svid_serial_hex(const X509 *cert, char *out, size_t outlen)
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
	char *hex = bn ? BN_bn2hex(bn) : NULL;
	int rc = !bn ? -EINVAL : !hex ? -ENOMEM : 0;

	if (outlen)
		out[0] = '\0';
	if (rc == 0 && (size_t)snprintf(out, outlen, "%s", hex) >= outlen) {
		out[0] = '\0';
		rc = -ENOSPC;
	}
	OPENSSL_free(hex);
	BN_free(bn);
	return rc;
}
