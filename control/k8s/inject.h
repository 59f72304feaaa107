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
 * injected pods are left alone.
 *
 * Two kinds of pod are refused, because the mesh could not hold its
 * promise for them (issue #12):
 *   - a container (app or init) that runs as the agent's UID (runAsUser in
 *     its own or the pod's securityContext): the interception rules exempt
 *     that UID, so its traffic would bypass the agent entirely;
 *   - cinch.dev/exclude-inbound-ports, exclude-outbound-ports or
 *     exclude-outbound-cidrs, unless the MeshPolicy in force lets the
 *     pod's namespace loosen interception (spec.allowPodExclusions, default
 *     false): a pod owner must not open a STRICT mesh by annotation. Refused
 *     rather than ignored: a pod that silently runs without the exclusion
 *     its owner asked for breaks in ways found late (a scrape, a health
 *     check), while a refusal says why at `kubectl apply`. A UID set only
 *     by the image's USER is not visible here (docs/kubernetes.md). */
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
	/* Whether pods of namespace `ns` may carry cinch.dev/exclude-*
	 * annotations (the MeshPolicy's spec.allowPodExclusions). NULL: never. */
	int (*pod_exclusions)(void *arg, const char *ns);
	void *pod_exclusions_arg;
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
