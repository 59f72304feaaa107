/* kapi: a minimal Kubernetes API client for cinch-control, on httpc.
 *
 * Where the API server is and how to trust and authenticate to it come
 * either from inside a pod (KUBERNETES_SERVICE_HOST/PORT and the
 * service-account files, as client-go's in-cluster config does) or from
 * explicit paths (tests, out-of-cluster runs). The bearer token file is
 * read again for every request, because the kubelet rotates projected
 * tokens in place.
 *
 * Requests send and receive JSON (jansson). A response body is held in
 * memory up to KAPI_MAX_BODY; a larger one fails the request with -E2BIG
 * rather than growing without bound. Streams (watches) use
 * kapi_stream(), which hands over whole lines as they arrive. */
#ifndef CINCH_KAPI_H
#define CINCH_KAPI_H

#include <jansson.h>
#include <uv.h>

#define KAPI_MAX_BODY (32u << 20)
#define KAPI_MAX_LINE (8u << 20)

struct kapi;
struct kapi_req;

struct kapi_config {
	char *server;     /* "https://10.96.0.1:443" */
	char *ca_pem;     /* the API server's CA bundle */
	char *token_path; /* bearer token file */
};

/* In a pod: from the environment and /var/run/secrets/kubernetes.io/
 * serviceaccount. -ENOENT (and *why) when not in a cluster. */
int kapi_config_in_cluster(struct kapi_config *out, const char **why)
	__attribute__((warn_unused_result));
/* Explicit: copies the arguments and reads ca_file. */
int kapi_config_explicit(struct kapi_config *out, const char *server, const char *ca_file,
			 const char *token_file, const char **why) __attribute__((warn_unused_result));
void kapi_config_cleanup(struct kapi_config *c);

/* A client on `loop`; borrows nothing from `cfg` after returning. */
int kapi_new(uv_loop_t *loop, const struct kapi_config *cfg, struct kapi **out)
	__attribute__((warn_unused_result));
/* Cancels what is in flight (callbacks get -ECANCELED), then frees. */
void kapi_close(struct kapi *k, void (*cb)(void *arg), void *arg);

/* status 0: a response arrived (http_code, and body if it was JSON, both
 * borrowed for the call); <0: transport error (see httpc.h) or -E2BIG. */
typedef void (*kapi_json_cb)(void *arg, int status, long http_code, json_t *body,
			     const char *err);
/* One line of a stream (a watch event), NUL-terminated, borrowed. Return
 * 0, or a negative errno to stop the stream. */
typedef int (*kapi_line_cb)(void *arg, const char *line, size_t len);

/* `path` starts with '/', e.g. "/api/v1/pods?limit=500". `body` is
 * borrowed (NULL: none); with method "PATCH" it is sent as a JSON merge
 * patch. *out (optional) lets the caller cancel. The
 * callback runs exactly once when this returns 0, never otherwise. */
int kapi_json(struct kapi *k, const char *method, const char *path, const json_t *body,
	      long timeout_ms, kapi_json_cb cb, void *arg, struct kapi_req **out)
	__attribute__((warn_unused_result));
/* The PATCH types the API server takes (Content-Type): a JSON merge patch
 * (RFC 7386, lists replaced whole), a strategic merge patch (built-in
 * types only; lists with a merge key, e.g. a MutatingWebhookConfiguration's
 * webhooks by name, are merged element by element), a JSON Patch (RFC
 * 6902). A metadata.resourceVersion in a merge patch is a precondition:
 * 409 Conflict when the object has moved on. */
#define KAPI_PATCH_MERGE     "application/merge-patch+json"
#define KAPI_PATCH_STRATEGIC "application/strategic-merge-patch+json"
#define KAPI_PATCH_JSON	     "application/json-patch+json"
/* kapi_json's PATCH with the given type (one of the above). */
int kapi_patch(struct kapi *k, const char *path, const char *type, const json_t *body,
	       long timeout_ms, kapi_json_cb cb, void *arg, struct kapi_req **out)
	__attribute__((warn_unused_result));
/* A GET whose body is a stream of lines; `done` runs once at the end with
 * a NULL body. */
int kapi_stream(struct kapi *k, const char *path, kapi_line_cb on_line, kapi_json_cb done,
		void *arg, struct kapi_req **out) __attribute__((warn_unused_result));
/* Stops a request; its callback runs with -ECANCELED before this returns. */
void kapi_cancel(struct kapi_req *r);

#endif
