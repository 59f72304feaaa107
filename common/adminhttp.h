/* adminhttp: the plain HTTP/1.1 admin port of a Cinch daemon (/ready,
 * /live, /metrics, /bundle, ...): GET and HEAD only, one request per
 * connection, answered from the owner's callback, then closed.
 *
 * Kept deliberately minimal, because this port is reached by probes and
 * scrapers only: the request head is at most ADMINHTTP_MAX_HEAD bytes, a
 * request line and headers ending in an empty line; headers are not
 * interpreted; a request body is not read. A connection has
 * ADMINHTTP_TIMEOUT_MS to send its head; at most ADMINHTTP_MAX_CONNS are
 * open at once (more are closed on accept). The parser is a pure function
 * (adminhttp_parse) so it is fuzzed on its own (tests/fuzz). */
#ifndef CINCH_ADMINHTTP_H
#define CINCH_ADMINHTTP_H

#include <stddef.h>
#include <uv.h>

#define ADMINHTTP_MAX_HEAD   8192
#define ADMINHTTP_TIMEOUT_MS 5000
#define ADMINHTTP_MAX_CONNS  64

/* What the owner answers. `body` is taken (free()d by adminhttp). */
struct adminhttp_response {
	int status;		  /* 200, 404, 503, ... */
	const char *content_type; /* static */
	char *body;
	size_t len;
};

/* `method` is "GET" or "HEAD"; `path` has no query string (it is cut). */
typedef void (*adminhttp_cb)(void *arg, const char *method, const char *path,
			     struct adminhttp_response *out);

struct adminhttp;

/* Listens on host:port (port 0: any; *bound_port says which). 0 and *out,
 * or a libuv error. */
int adminhttp_start(uv_loop_t *loop, const char *host, int port, adminhttp_cb cb, void *arg,
		    struct adminhttp **out, int *bound_port) __attribute__((warn_unused_result));
/* The paths served to connections that do not come over loopback (a
 * NULL-terminated list, borrowed: static), e.g. what Prometheus and the
 * kubelet's probes need; every other path answers such a connection 403,
 * without calling the owner. Loopback: both ends of the connection in
 * 127.0.0.0/8 or ::1 (IPv4-mapped included). Without a list (the
 * default), every path is served to every connection. */
void adminhttp_set_network_paths(struct adminhttp *s, const char *const *paths);
/* Closes the listener and every connection; memory goes in close
 * callbacks (run the loop afterwards). NULL is a no-op. */
void adminhttp_stop(struct adminhttp *s);

/* The reason phrase of an HTTP status (RFC 9110 section 15), static;
 * "Error" for a status this code does not send. */
const char *adminhttp_reason(int status);

/* Parses a request head in buf[0..len). 0 when complete (method and path
 * copied, NUL-terminated), -EAGAIN when more bytes are needed, -EBADMSG
 * when malformed (answer 400), -E2BIG when the head exceeds the limit
 * (431), -ENOSYS for a method other than GET/HEAD (405). */
int adminhttp_parse(const char *buf, size_t len, char *method, size_t method_len, char *path,
		    size_t path_len);

#endif
