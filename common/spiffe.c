/* spiffe: see spiffe.h. Every check cites the SPIFFE-ID standard, 2.1
 * (trust domain) and 2.2 (path); errors are static strings so callers can
 * put them in a policy error or an audit line without owning memory. */
#include "spiffe.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define SPIFFE_SCHEME "spiffe://"
#define SPIFFE_SCHEME_LEN (sizeof(SPIFFE_SCHEME) - 1)

static int spiffe_td_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

static int spiffe_path_char(char c)
{
	return spiffe_td_char(c) || (c >= 'A' && c <= 'Z');
}

int spiffe_td_validate(const char *td, size_t len, const char **why)
{
	const char *err = NULL;

	if (len == 0)
		err = "trust domain is empty";
	else if (len > SPIFFE_TD_MAX)
		err = "trust domain is longer than 255 bytes";
	for (size_t i = 0; !err && i < len; i++) {
		if (td[i] >= 'A' && td[i] <= 'Z')
			err = "trust domain must be lowercase";
		else if (!spiffe_td_char(td[i]))
			err = "trust domain may only hold a-z, 0-9, '.', '-' and '_'";
	}
	if (err) {
		if (why)
			*why = err;
		return -EINVAL;
	}
	return 0;
}

/* Validates "/seg/seg..." (len may be 0: an ID with no path). */
static int spiffe_path_validate(const char *p, size_t len, const char **why)
{
	size_t i = 0;

	while (i < len) {
		/* p[i] is '/' here: the caller checked the first, the loop the rest. */
		size_t start = ++i;
		while (i < len && p[i] != '/') {
			if (!spiffe_path_char(p[i])) {
				*why = "path may only hold A-Z, a-z, 0-9, '.', '-', '_' and '/'";
				return -EINVAL;
			}
			i++;
		}
		size_t seg = i - start;
		if (seg == 0) {
			*why = i == len ? "path has a trailing '/'" : "path has an empty segment";
			return -EINVAL;
		}
		if ((seg == 1 && p[start] == '.') || (seg == 2 && p[start] == '.' && p[start + 1] == '.')) {
			*why = "path has a '.' or '..' segment";
			return -EINVAL;
		}
	}
	return 0;
}

int spiffe_id_validate(const char *s, size_t len, const char **why)
{
	const char *err = NULL;
	int rc;

	if (!why)
		why = &err;
	if (len > SPIFFE_ID_MAX) {
		*why = "longer than 2048 bytes";
		return -EINVAL;
	}
	if (len < SPIFFE_SCHEME_LEN || memcmp(s, SPIFFE_SCHEME, SPIFFE_SCHEME_LEN) != 0) {
		*why = "does not start with spiffe://";
		return -EINVAL;
	}
	const char *td = s + SPIFFE_SCHEME_LEN;
	const char *end = s + len;
	const char *slash = memchr(td, '/', (size_t)(end - td));
	size_t td_len = (size_t)((slash ? slash : end) - td);

	rc = spiffe_td_validate(td, td_len, why);
	if (rc < 0)
		return rc;
	if (!slash)
		return 0;
	return spiffe_path_validate(slash, (size_t)(end - slash), why);
}

int spiffe_id_parse_workload(const char *s, size_t len, struct spiffe_workload *out,
			     const char **why)
{
	const char *err = NULL;
	int rc;

	if (!why)
		why = &err;
	rc = spiffe_id_validate(s, len, why);
	if (rc < 0)
		return rc;

	/* Valid, so: scheme, td, then segments separated by single '/'. */
	const char *end = s + len;
	const char *td = s + SPIFFE_SCHEME_LEN;
	const char *p = memchr(td, '/', (size_t)(end - td));
	const char *seg[4];
	size_t seg_len[4];
	int n = 0;

	while (p && p < end) {
		const char *start = p + 1;
		const char *next = memchr(start, '/', (size_t)(end - start));
		if (n == 4) {
			n++;
			break;
		}
		seg[n] = start;
		seg_len[n] = (size_t)((next ? next : end) - start);
		n++;
		p = next;
	}
	if (n != 4 || seg_len[0] != 2 || memcmp(seg[0], "ns", 2) != 0 || seg_len[2] != 2 ||
	    memcmp(seg[2], "sa", 2) != 0) {
		*why = "not of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>";
		return -EINVAL;
	}
	out->td = td;
	out->td_len = (size_t)(seg[0] - 1 - td);
	out->ns = seg[1];
	out->ns_len = seg_len[1];
	out->sa = seg[3];
	out->sa_len = seg_len[3];
	return 0;
}

int spiffe_id_format(char *out, size_t outlen, const char *td, const char *ns, const char *sa)
{
	int n = snprintf(out, outlen, SPIFFE_SCHEME "%s/ns/%s/sa/%s", td, ns, sa);

	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= outlen)
		return -ENOSPC;
	struct spiffe_workload w;
	return spiffe_id_parse_workload(out, (size_t)n, &w, NULL);
}
