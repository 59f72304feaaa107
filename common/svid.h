/* svid: the identity in an X.509-SVID (SPIFFE X.509-SVID standard, 4).
 *
 * An SVID carries exactly one URI SAN, and that URI is a SPIFFE ID. This is
 * the one place Cinch reads an identity out of a certificate: the agent's
 * verify callback, the CA's renewal path and `cinchctl cert inspect` all
 * call it, so they can never disagree on what a certificate says. */
#ifndef CINCH_SVID_H
#define CINCH_SVID_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/base.h>

/* Copies the certificate's SPIFFE ID, NUL-terminated, into out (outlen
 * bytes; SPIFFE_ID_MAX + 1 always fits). Borrows `cert`.
 * Returns 0, or -EBADMSG (no URI SAN, several URI SANs, a URI that is not
 * a valid SPIFFE ID; *why says which), or -ENOSPC. */
int svid_spiffe_id(const X509 *cert, char *out, size_t outlen, const char **why);

/* A certificate time (notBefore, notAfter) as Unix seconds: 0 and *out,
 * or -EINVAL when `t` is not a valid time. */
int svid_time_unix(const ASN1_TIME *t, int64_t *out);

/* The certificate's serial number in upper-case hex, NUL-terminated, into
 * out (outlen bytes; 41 fits any RFC 5280 serial). 0, -EINVAL, -ENOMEM or
 * -ENOSPC; out is "" on failure. */
int svid_serial_hex(const X509 *cert, char *out, size_t outlen);

#endif
