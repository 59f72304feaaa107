/* bytebudget: a server-wide budget of the bytes held for requests not yet
 * answered (gRPC request bodies in api/grpc.c, AdmissionReview bodies in
 * k8s/webhook.c), and the request buffer that draws on it.
 *
 * Memory is reserved as bytes arrive, never on what a peer declares: a
 * buffer grows (doubling, up to the caller's limit for that request) only
 * after taking the growth from the budget, and gives all of it back when
 * it is freed. A request that would go beyond the budget is refused by the
 * caller with its protocol's "busy" answer, so the server's buffered bytes
 * never exceed `limit` whatever the peers do. It counts, it does not
 * allocate for itself: one loop thread, no locking. */
#ifndef CINCH_CONTROL_BYTEBUDGET_H
#define CINCH_CONTROL_BYTEBUDGET_H

#include <stddef.h>
#include <stdint.h>

struct bytebudget {
	size_t limit;
	size_t used; /* capacity of every live bytebuf drawing on it */
	size_t peak;
	unsigned long refused; /* appends refused for the budget */
};

/* One request's bytes: data[0..len) of cap allocated (all taken from a
 * budget). Zero-initialised it is empty. */
struct bytebuf {
	uint8_t *data;
	size_t len, cap;
};

/* Appends n bytes (borrowed) to buf, growing it to at most max bytes in
 * all. 0; -E2BIG when len + n > max (nothing changes); -ENOBUFS when the
 * budget cannot give the growth (nothing changes, counted in `refused`);
 * -ENOMEM. */
int bytebuf_append(struct bytebuf *buf, struct bytebudget *b, const void *data, size_t n,
		   size_t max) __attribute__((warn_unused_result));
/* Frees the bytes and gives their capacity back; buf is empty again. */
void bytebuf_free(struct bytebuf *buf, struct bytebudget *b);

#endif
