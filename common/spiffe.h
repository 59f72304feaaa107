/* spiffe: SPIFFE ID strings (SPIFFE-ID standard, section 2).
 *
 *   spiffe://<trust-domain>/<segment>/<segment>...
 *
 * trust domain: [a-z0-9._-]+, path segments: [A-Za-z0-9._-]+, no empty,
 * "." or ".." segment, no trailing slash, no query, fragment, port or user
 * info, at most 2048 bytes. Cinch workloads are named
 * spiffe://<td>/ns/<namespace>/sa/<service-account>.
 *
 * Pure string code with no allocation: the policy parser, the CA and the
 * agent's verify callback all call it on untrusted input. */
#ifndef CINCH_SPIFFE_H
#define CINCH_SPIFFE_H

#include <stddef.h>

#define SPIFFE_ID_MAX 2048
#define SPIFFE_TD_MAX 255

/* The parts of a workload ID; pointers into the string given to
 * spiffe_id_parse_workload(), not NUL-terminated (use the lengths). */
struct spiffe_workload {
	const char *td, *ns, *sa;
	size_t td_len, ns_len, sa_len;
};

/* 0 when `s` (len bytes, no NUL needed) is a valid SPIFFE ID; -EINVAL
 * otherwise, with *why (if not NULL) set to a static explanation. */
int spiffe_id_validate(const char *s, size_t len, const char **why);

/* 0 when `td` is a valid trust domain name; -EINVAL and *why otherwise. */
int spiffe_td_validate(const char *td, size_t len, const char **why);

/* Parses a valid ID of the form spiffe://td/ns/NS/sa/SA; -EINVAL (and
 * *why) when it is invalid or not of that form. */
int spiffe_id_parse_workload(const char *s, size_t len, struct spiffe_workload *out,
			     const char **why);

/* Writes spiffe://td/ns/ns/sa/sa into out (outlen bytes with the NUL).
 * -EINVAL when a part is invalid, -ENOSPC when it does not fit. */
int spiffe_id_format(char *out, size_t outlen, const char *td, const char *ns, const char *sa);

#endif
