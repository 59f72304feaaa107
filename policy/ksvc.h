/* ksvc: Kubernetes Services and EndpointSlices, in the API's own format
 * (apiVersion v1 kind Service; apiVersion discovery.k8s.io/v1 kind
 * EndpointSlice), read into the registry model. One parser for every
 * source: registry files (pdoc trees with positions, through
 * pset_add_doc), and documents from the Kubernetes API (jansson objects,
 * ksvc_check_json / pset_add_doc after pdoc_from_json).
 *
 * What a real API server sends is accepted as it is: every field we do
 * not use is ignored (status, metadata.managedFields, spec.sessionAffinity,
 * endpoints[].targetRef, hints...). The fields we use are validated, an
 * error names the field path ("spec.ports[1].targetPort") and the whole
 * document is refused. Semantics (k8s.io/api core/v1 and discovery/v1):
 *   - spec.clusterIP / spec.clusterIPs: the virtual IPs, at most one per
 *     family; "None" is a headless Service (no virtual IP: callers resolve
 *     pod addresses, which are peers); "" or absent: none allocated; a
 *     Service of type ExternalName has none either. When both are given,
 *     clusterIPs[0] is clusterIP; spec.ipFamilies, when given, names each
 *     clusterIPs entry's family in order.
 *   - spec.ports[]: port (1-65535), protocol (TCP, UDP, SCTP; default
 *     TCP), name (required and unique when there are several ports), and
 *     targetPort, an IntOrString: a number, or the name of a container port
 *     (IANA_SVC_NAME), absent: the same number as port.
 *   - EndpointSlice: the label kubernetes.io/service-name names its
 *     Service; addressType IPv4, IPv6 or FQDN (FQDN slices are kept but
 *     carry nothing a proxy can dial); endpoints[].addresses (1 to 100, of
 *     the addressType); endpoints[].conditions: ready (nil: true), serving
 *     (nil: as ready), terminating (nil: false); ports[]: name ("" or
 *     absent: the unnamed port), port (nil: unrestricted), protocol.
 *   - A Service port reaches an endpoint on the port of its EndpointSlice's
 *     entry with the same name and protocol (what the EndpointSlice
 *     controller writes there, targetPort resolved per pod, named ports
 *     included): ksvc_target_port.
 *
 * A parsed document is owned by the set (pset_free frees it). */
#ifndef CINCH_POLICY_KSVC_H
#define CINCH_POLICY_KSVC_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "model.h"
#include "pdoc.h"

#define KSVC_SERVICE_NAME_LABEL "kubernetes.io/service-name"
#define KSVC_MAX_PORTS		1024 /* per Service or EndpointSlice */
#define KSVC_MAX_ENDPOINTS	1000 /* per EndpointSlice (the API's own bound) */
#define KSVC_MAX_ADDRESSES	100  /* per endpoint (the API's own bound) */

enum ksvc_kind {
	KSVC_NONE = 0, /* neither kind: a document of the policy model */
	KSVC_SERVICE,
	KSVC_SLICE,
};

struct ksvc_port {
	char *name;	/* "" when unnamed */
	char *protocol; /* "TCP", "UDP" or "SCTP" */
	uint16_t port;
	uint16_t target;   /* targetPort as a number; 0 when named */
	char *target_name; /* targetPort as a name; NULL when a number */
};

struct ksvc {
	char *ns, *name;
	int headless; /* clusterIP "None" */
	struct pcidr *vips;
	size_t n_vips;
	struct ksvc_port *ports;
	size_t n_ports;
	struct pwhere where;
};

struct kslice_port {
	char *name; /* "" when unnamed */
	char *protocol;
	uint16_t port; /* 0: unrestricted (nil) */
};

struct kslice_ep {
	struct pcidr *addrs; /* none for an FQDN slice */
	size_t n_addrs;
	int ready, serving, terminating;
};

struct kslice {
	char *ns, *name;
	char *service; /* its kubernetes.io/service-name label; NULL: none */
	int fqdn;      /* addressType FQDN */
	struct kslice_ep *eps;
	size_t n_eps;
	struct kslice_port *ports;
	size_t n_ports;
	struct pwhere where;
};

/* Which of the two kinds `doc` says it is (by apiVersion and kind only). */
enum ksvc_kind ksvc_kind_of(const struct pdoc *doc);

/* Validates a Service or EndpointSlice (ksvc_kind_of(doc) != KSVC_NONE)
 * and appends it to the set; `file` names it in errors. 0, -EINVAL with
 * *err (the set unchanged), -ENOMEM. pset_add_doc calls it. */
int ksvc_add_doc(struct pset *s, const char *file, const struct pdoc *doc, struct policy_error *err)
	__attribute__((warn_unused_result));

/* The checks of the set as a whole (pset_finish calls it): two Services
 * or two EndpointSlices with one name, a virtual IP of two Services or of
 * a workload. 0 or -EINVAL with *err (whole_set). */
int ksvc_finish(const struct pset *s, struct policy_error *err) __attribute__((warn_unused_result));

/* Validates one API object (borrowed) alone, as the set would: 0, or
 * -EINVAL with *err (the field path and what is wrong), -ENOMEM. For the
 * Kubernetes sources, to refuse a bad object with its reason. */
int ksvc_check_json(const json_t *doc, struct policy_error *err)
	__attribute__((warn_unused_result));

/* The port endpoint slice `sl` serves Service port `sp` on: the slice's
 * port with sp's name and protocol (its number; a nil port: sp's numeric
 * targetPort), or 0 when the slice has none (the endpoint does not serve
 * it). */
uint16_t ksvc_target_port(const struct ksvc_port *sp, const struct kslice *sl);

/* The Service named ns/name in the set, or NULL. */
const struct ksvc *ksvc_find(const struct pset *s, const char *ns, const char *name);

void ksvc_clear(struct ksvc *v);
void kslice_clear(struct kslice *v);

#endif
