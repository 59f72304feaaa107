/* pwalk: where a validator is in one document, its one error, and the
 * name rules of the Kubernetes API both validators apply.
 *
 * The registry's validators (model.c for Cinch's kinds, ksvc.c for the
 * Kubernetes Service kinds) walk a struct pdoc tree keeping the field path
 * they are at ("spec.ports[1].targetPort"): pwalk_push appends a key or an
 * index and returns the length to pwalk_pop back to. The first error wins
 * (pwalk_fail fills *err with the file, the node's line and column, the
 * path and the message; later calls only return -EINVAL), so a document is
 * refused with the first thing wrong in it. A struct pwalk lives on the
 * validator's stack for one document; err and file are the caller's. */
#ifndef CINCH_POLICY_PWALK_H
#define CINCH_POLICY_PWALK_H

#include <stddef.h>

#include "pdoc.h"

struct pwalk {
	const char *file;	   /* for the error; borrowed */
	struct policy_error *err;  /* where the first error goes */
	char path[128];		   /* the field path so far */
	const struct pdoc *parent; /* the mapping a missing field belongs to (may be NULL) */
	int failed;		   /* an error was reported */
	int nomem;		   /* and it was an allocation failure */
};

/* Reports an error at node `at` (NULL: at w->parent, the mapping a
 * missing field was asked of); the first one only. Returns -EINVAL. */
int pwalk_fail(struct pwalk *w, const struct pdoc *at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Appends ".key" (key non-NULL) or "[index]" to the path; returns the
 * length to give pwalk_pop. */
size_t pwalk_push(struct pwalk *w, const char *key, long index);
void pwalk_pop(struct pwalk *w, size_t old);

/* The name rules both validators apply, as the API server does. 1: s is
 * an RFC 1123 label (63 of [a-z0-9-], alphanumeric at both ends), or with
 * `subdomain` a DNS subdomain (253, dots allowed). */
int pwalk_dns_ok(const char *s, int subdomain);
/* 1: s is an IANA_SVC_NAME, a port's name: 1-15 of [a-z0-9-], at least
 * one letter, no '-' first, last or twice in a row. */
int pwalk_port_name_ok(const char *s);

#endif
