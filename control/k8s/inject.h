/* inject: the decision of the Kubernetes admission webhook.
 *
 * An admission.k8s.io/v1 AdmissionReview comes in; an AdmissionReview goes
 * out with the request's uid and, when the pod is to join the mesh, an
 * RFC 6902 JSON Patch (base64) that adds:
 *   - `cinch-init`: runs `cinch-agent init` (NET_ADMIN only);
 *   - `cinch-agent`: as a native sidecar (an init container with
 *     restartPolicy Always and a startup probe on /ready, Kubernetes 1.29+)
 *     placed before the app's own init containers so those run inside the
 *     mesh, or as a classic sidecar container for older clusters;
 *   - a projected service-account token (audience "cinch"), the trust
 *     bundle ConfigMap, downward-API environment;
 *   - app HTTP/TCP probes rewritten to the agent's admin port, which
 *     performs them against the app on loopback, so the kubelet's probes
 *     keep working under default deny.
 *
 * Pure: JSON in, JSON out, no I/O and no global state, so the HTTPS shell
 * around it stays thin and tests feed it real documents. Nothing depends on
 * the pod's name (pods made by controllers arrive with only generateName).
 * Namespaces are selected by the webhook configuration's namespaceSelector
 * (cinch.dev/inject=enabled); this code adds the per-pod rules: the
 * control plane's namespace, hostNetwork pods, opted-out and already
 * injected pods are left alone. */
#ifndef CINCH_INJECT_H
#define CINCH_INJECT_H

#include <stddef.h>

/* Settings of the injector; strings are borrowed and must outlive calls. */
struct inject_config {
	const char *agent_image;       /* image of cinch-agent (and cinch-init) */
	const char *control_namespace; /* never injected */
	const char *control_address;   /* host:port the agents dial */
	const char *trust_domain;
	const char *bundle_configmap;  /* ConfigMap holding bundle.pem */
	unsigned agent_uid;            /* the UID iptables exempts, 1337 */
	unsigned token_ttl_seconds;    /* projected token expiry, >= 600 */
	int native_sidecar;            /* 0: classic sidecar (clusters < 1.29) */
	const char *cpu_request, *memory_request, *memory_limit;
};

/* Fills `cfg` with the defaults documented in docs/kubernetes.md. */
void inject_config_defaults(struct inject_config *cfg);

/* Answers one AdmissionReview request body (len bytes of JSON).
 * Returns 0 with *out a new NUL-terminated AdmissionReview (free() it) for
 * every well-formed review: patched, left alone (allowed, with the reason
 * in auditAnnotations) or refused (allowed: false, with a status message,
 * e.g. for an invalid cinch.dev/ annotation).
 * Returns -EINVAL with *why (static text) when the body is not an
 * AdmissionReview request at all (the server then answers 400), -ENOMEM
 * when memory runs out. *out is set only on success. */
int inject_review(const struct inject_config *cfg, const char *body, size_t len, char **out,
		  const char **why) __attribute__((warn_unused_result));

#endif
