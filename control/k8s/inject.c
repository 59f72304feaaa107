/* inject: see inject.h.
 *
 * inject_review() parses and checks the envelope, inject_decide() says
 * whether and how this pod is injected (filling a JSON Patch), and
 * inject_respond() wraps the outcome into the AdmissionReview answer. The
 * patch is built only from what the request holds and the config: paths
 * that may be absent (annotations, initContainers, volumes) are created
 * whole rather than appended to, and map keys are escaped per RFC 6901
 * ('~' -> "~0", '/' -> "~1"). */
#include "inject.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/base64.h>

#include "cinch_config.h"

#define INJECT_ADMIN_PORT 15000
#define INJECT_ADMIN_PORT_S "15000" /* the same, for annotations */
#define INJECT_TOKEN_DIR "/var/run/secrets/cinch"
#define INJECT_BUNDLE_DIR "/var/run/cinch/bundle"
#define INJECT_ANN_PREFIX "cinch.dev/"

enum inject_outcome {
	INJECT_PATCHED = 0,
	INJECT_SKIPPED, /* allowed unchanged; reason in auditAnnotations */
	INJECT_REFUSED, /* allowed: false; reason in status.message */
};

/* What inject_decide() found; `reason` is static or points into `msg`. */
struct inject_result {
	enum inject_outcome outcome;
	const char *reason;
	char msg[256];
	json_t *patch;    /* array of operations (PATCHED only) */
	json_t *warnings; /* array of strings shown to the user by kubectl */
};

void inject_config_defaults(struct inject_config *cfg)
{
	*cfg = (struct inject_config){
		.agent_image = "ghcr.io/cinch-mesh/cinch-agent:" CINCH_VERSION,
		.control_namespace = "cinch-system",
		.control_address = "cinch-control.cinch-system.svc:15012",
		.trust_domain = "cluster.local",
		.bundle_configmap = "cinch-trust-bundle",
		.agent_uid = 1337,
		.token_ttl_seconds = 3600,
		.native_sidecar = 1,
		/* From docs/benchmarks.md: the agent idles near 4 MiB and keeps
		 * under 40 KiB per open connection; 64 MiB is ~1,500 busy ones. */
		.cpu_request = "10m",
		.memory_request = "16Mi",
		.memory_limit = "64Mi",
	};
}

/* --- small helpers -------------------------------------------------- */

static const char *inject_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

/* A JSON Pointer token for `key` (RFC 6901, section 3), into buf. */
static const char *inject_ptr_escape(const char *key, char *buf, size_t len)
{
	size_t o = 0;

	for (const char *p = key; *p && o + 3 < len; p++) {
		if (*p == '~' || *p == '/') {
			buf[o++] = '~';
			buf[o++] = *p == '~' ? '0' : '1';
		} else {
			buf[o++] = *p;
		}
	}
	buf[o] = '\0';
	return buf;
}

static int inject_op(json_t *patch, const char *op, const char *path, json_t *value)
{
	json_t *o = json_pack("{s:s, s:s, s:o}", "op", op, "path", path, "value", value);
	return o ? json_array_append_new(patch, o) : -1;
}

/* Opt-out values of cinch.dev/inject on a pod's label or annotation. */
static int inject_opted_out(const char *v)
{
	return v && (strcmp(v, "false") == 0 || strcmp(v, "disabled") == 0);
}

/* "8080, 9090" -> 0 when every item is a port 1..65535, else -EINVAL. */
static int inject_check_ports(const char *list)
{
	const char *p = list;

	while (*p) {
		char *end;
		while (*p == ' ')
			p++;
		errno = 0;
		unsigned long v = strtoul(p, &end, 10);
		if (end == p || errno || v < 1 || v > 65535)
			return -EINVAL;
		p = end;
		while (*p == ' ')
			p++;
		if (*p == ',')
			p++;
		else if (*p)
			return -EINVAL;
	}
	return 0;
}

/* "10.0.0.0/8,fd00::/8" -> 0 when every item is a CIDR, else -EINVAL. */
static int inject_check_cidrs(const char *list)
{
	char item[64];
	const char *p = list;

	while (*p) {
		while (*p == ' ')
			p++;
		size_t n = strcspn(p, ",");
		if (n == 0 || n >= sizeof(item))
			return -EINVAL;
		memcpy(item, p, n);
		item[n] = '\0';
		while (n && item[n - 1] == ' ')
			item[--n] = '\0';
		char *slash = strchr(item, '/');
		if (!slash)
			return -EINVAL;
		*slash = '\0';
		unsigned char addr[16];
		int v6 = inet_pton(AF_INET6, item, addr) == 1;
		if (!v6 && inet_pton(AF_INET, item, addr) != 1)
			return -EINVAL;
		char *end;
		errno = 0;
		unsigned long bits = strtoul(slash + 1, &end, 10);
		if (end == slash + 1 || *end || errno || bits > (v6 ? 128u : 32u))
			return -EINVAL;
		p += strcspn(p, ",");
		if (*p == ',')
			p++;
	}
	return 0;
}

/* --- what gets added ------------------------------------------------ */

/* NET_ADMIN only: the agent image's iptables is the nf_tables backend,
 * which programs the pod's rules over netlink (the legacy backend would
 * also need NET_RAW). Both containers run under the runtime's default
 * seccomp profile. */
static json_t *inject_security_init(void)
{
	return json_pack("{s:i, s:b, s:b, s:b, s:{s:[s], s:[s]}, s:{s:s}}", "runAsUser", 0,
			 "runAsNonRoot", 0, "allowPrivilegeEscalation", 0,
			 "readOnlyRootFilesystem", 1, "capabilities", "add", "NET_ADMIN", "drop",
			 "ALL", "seccompProfile", "type", "RuntimeDefault");
}

/* The init container: installs the iptables rules, then exits. */
static json_t *inject_init_container(const struct inject_config *cfg, const json_t *ann)
{
	char uid[16];
	snprintf(uid, sizeof(uid), "%u", cfg->agent_uid);
	json_t *args = json_pack("[s, s, s]", "init", "--uid", uid);
	static const char *const passed[][2] = {
		{ INJECT_ANN_PREFIX "exclude-inbound-ports", "--exclude-inbound-ports" },
		{ INJECT_ANN_PREFIX "exclude-outbound-ports", "--exclude-outbound-ports" },
		{ INJECT_ANN_PREFIX "exclude-outbound-cidrs", "--exclude-cidrs" },
	};
	for (size_t i = 0; args && i < sizeof(passed) / sizeof(passed[0]); i++) {
		const char *v = inject_str(ann, passed[i][0]);
		if (v) {
			json_array_append_new(args, json_string(passed[i][1]));
			json_array_append_new(args, json_string(v));
		}
	}
	return json_pack("{s:s, s:s, s:o, s:o, s:{s:{s:s, s:s}, s:{s:s}}}", "name", "cinch-init",
			 "image", cfg->agent_image, "args", args, "securityContext",
			 inject_security_init(), "resources", "requests", "cpu", cfg->cpu_request,
			 "memory", "8Mi", "limits", "memory", "32Mi");
}

static json_t *inject_env_field(const char *name, const char *field)
{
	return json_pack("{s:s, s:{s:{s:s}}}", "name", name, "valueFrom", "fieldRef", "fieldPath",
			 field);
}

static json_t *inject_agent_container(const struct inject_config *cfg, const json_t *ann,
				      const json_t *probes)
{
	/* The projected token is a Kubernetes credential (TokenReview), not a
	 * join token: --token-kind says so to the agent. */
	json_t *args = json_pack("[s, s, s, s, s, s, s, s, s, s, s]", "run", "--control",
				 cfg->control_address, "--trust-domain", cfg->trust_domain,
				 "--token-file", INJECT_TOKEN_DIR "/token", "--token-kind",
				 "kubernetes", "--control-bundle", INJECT_BUNDLE_DIR "/bundle.pem");
	const char *mode = inject_str(ann, INJECT_ANN_PREFIX "mtls-mode");
	if (args && mode) {
		json_array_append_new(args, json_string("--mtls-mode"));
		json_array_append_new(args, json_string(mode));
	}
	json_t *env = json_pack("[o, o, o, o]",
				inject_env_field("CINCH_POD_NAME", "metadata.name"),
				inject_env_field("CINCH_POD_NAMESPACE", "metadata.namespace"),
				inject_env_field("CINCH_SERVICE_ACCOUNT", "spec.serviceAccountName"),
				inject_env_field("CINCH_POD_IP", "status.podIP"));
	if (env && json_object_size(probes)) {
		char *s = json_dumps(probes, JSON_COMPACT | JSON_SORT_KEYS);
		json_array_append_new(env, json_pack("{s:s, s:s}", "name", "CINCH_APP_PROBES",
						     "value", s ? s : "{}"));
		free(s);
	}
	json_t *c = json_pack(
		"{s:s, s:s, s:o, s:o, s:[{s:s, s:i, s:s}],"
		" s:{s:{s:s, s:i}, s:i, s:i},"
		" s:{s:{s:s, s:i}, s:i},"
		" s:{s:{s:s, s:i}, s:i},"
		" s:{s:{s:s, s:s}, s:{s:s}},"
		" s:{s:i, s:i, s:b, s:b, s:b, s:{s:[s]}, s:{s:s}},"
		" s:[{s:s, s:s, s:b}, {s:s, s:s, s:b}]}",
		"name", "cinch-agent", "image", cfg->agent_image, "args", args, "env", env,
		"ports", "name", "cinch-admin", "containerPort", INJECT_ADMIN_PORT, "protocol", "TCP",
		"startupProbe", "httpGet", "path", "/ready", "port", INJECT_ADMIN_PORT,
		"periodSeconds", 1, "failureThreshold", 120,
		"readinessProbe", "httpGet", "path", "/ready", "port", INJECT_ADMIN_PORT,
		"periodSeconds", 5,
		"livenessProbe", "httpGet", "path", "/live", "port", INJECT_ADMIN_PORT,
		"periodSeconds", 10,
		"resources", "requests", "cpu", cfg->cpu_request, "memory", cfg->memory_request,
		"limits", "memory", cfg->memory_limit,
		"securityContext", "runAsUser", (int)cfg->agent_uid, "runAsGroup",
		(int)cfg->agent_uid, "runAsNonRoot", 1, "allowPrivilegeEscalation", 0,
		"readOnlyRootFilesystem", 1, "capabilities", "drop", "ALL", "seccompProfile", "type",
		"RuntimeDefault", "volumeMounts", "name", "cinch-token", "mountPath", INJECT_TOKEN_DIR, "readOnly", 1,
		"name", "cinch-bundle", "mountPath", INJECT_BUNDLE_DIR, "readOnly", 1);
	if (c && cfg->native_sidecar)
		json_object_set_new(c, "restartPolicy", json_string("Always"));
	return c;
}

static json_t *inject_volumes(const struct inject_config *cfg)
{
	return json_pack("[{s:s, s:{s:[{s:{s:s, s:i, s:s}}]}}, {s:s, s:{s:s}}]", "name",
			 "cinch-token", "projected", "sources", "serviceAccountToken", "audience",
			 "cinch", "expirationSeconds", (int)cfg->token_ttl_seconds, "path", "token",
			 "name", "cinch-bundle", "configMap", "name", cfg->bundle_configmap);
}

/* --- probes --------------------------------------------------------- */

/* The number behind a probe's port (an int, or a named container port). */
static int inject_probe_port(const json_t *container, const json_t *port)
{
	if (json_is_integer(port)) {
		json_int_t v = json_integer_value(port);
		return v >= 1 && v <= 65535 ? (int)v : -1;
	}
	const char *name = json_string_value(port);
	size_t i;
	json_t *p;

	if (!name)
		return -1;
	json_array_foreach(json_object_get(container, "ports"), i, p) {
		const char *pn = inject_str(p, "name");
		json_int_t v = json_integer_value(json_object_get(p, "containerPort"));
		if (pn && strcmp(pn, name) == 0 && v >= 1 && v <= 65535)
			return (int)v;
	}
	return -1;
}

/* Rewrites the HTTP and TCP probes of app container `idx` to the agent's
 * /app-health/<container>/<kind> and records the originals (with ports
 * resolved) in `probes`. Adds warnings for probes it cannot carry. */
static int inject_probes(struct inject_result *r, const json_t *container, size_t idx,
			 json_t *probes)
{
	static const char *const kinds[] = { "livenessProbe", "readinessProbe", "startupProbe" };
	const char *cname = inject_str(container, "name");
	char path[512], url[300];

	if (!cname)
		cname = "";
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		const json_t *probe = json_object_get(container, kinds[k]);
		const char *handler = json_object_get(probe, "httpGet") ? "httpGet"
				      : json_object_get(probe, "tcpSocket") ? "tcpSocket"
									   : NULL;
		if (!probe)
			continue;
		if (json_object_get(probe, "grpc")) {
			snprintf(r->msg, sizeof(r->msg),
				 "container %s: gRPC %s is not rewritten; exclude its port with "
				 INJECT_ANN_PREFIX "exclude-inbound-ports (where the MeshPolicy "
				 "allows pod exclusions)", cname, kinds[k]);
			json_array_append_new(r->warnings, json_string(r->msg));
			continue;
		}
		if (!handler)
			continue; /* exec probes run inside the container */
		json_t *h = json_object_get(probe, handler);
		if (json_object_get(h, "host"))
			continue; /* probing another host: not through our inbound path */
		int port = inject_probe_port(container, json_object_get(h, "port"));
		if (port < 0) {
			snprintf(r->msg, sizeof(r->msg),
				 "container %s: %s port cannot be resolved; left unchanged", cname,
				 kinds[k]);
			json_array_append_new(r->warnings, json_string(r->msg));
			continue;
		}
		snprintf(url, sizeof(url), "/app-health/%s/%.*s", cname,
			 (int)(strlen(kinds[k]) - strlen("Probe")), kinds[k]);

		json_t *orig = json_deep_copy(h);
		json_t *repl = json_deep_copy(probe);
		if (!orig || !repl) {
			json_decref(orig);
			json_decref(repl);
			return -ENOMEM;
		}
		json_object_set_new(orig, "port", json_integer(port));
		json_object_set_new(probes, url, json_pack("{s:o}", handler, orig));
		json_object_del(repl, handler);
		json_object_set_new(repl, "httpGet",
				    json_pack("{s:s, s:i}", "path", url, "port", INJECT_ADMIN_PORT));
		snprintf(path, sizeof(path), "/spec/containers/%zu/%s", idx, kinds[k]);
		if (inject_op(r->patch, "replace", path, repl) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* --- the decision --------------------------------------------------- */

static int inject_skip(struct inject_result *r, enum inject_outcome o, const char *reason)
{
	r->outcome = o;
	r->reason = reason;
	return 0;
}

/* Adds `items` (taken) to the array at `path` of `parent`: created whole
 * when absent, else inserted at `at` (-1: appended). */
static int inject_add_items(json_t *patch, const json_t *parent, const char *key, json_t *items,
			    long at)
{
	char path[128];
	size_t i;
	json_t *it;
	int rc = 0;

	if (!json_is_array(json_object_get(parent, key))) {
		snprintf(path, sizeof(path), "/spec/%s", key);
		return inject_op(patch, "add", path, items) < 0 ? -ENOMEM : 0;
	}
	json_array_foreach(items, i, it) {
		if (at < 0)
			snprintf(path, sizeof(path), "/spec/%s/-", key);
		else
			snprintf(path, sizeof(path), "/spec/%s/%ld", key, at + (long)i);
		if (inject_op(patch, "add", path, json_incref(it)) < 0)
			rc = -ENOMEM;
	}
	json_decref(items);
	return rc;
}

/* Refuses the pod when one of its containers would run as the agent's
 * UID: iptables lets that UID's traffic through unredirected. -EPERM with
 * r filled, or 0. */
static int inject_check_uids(const struct inject_config *cfg, const json_t *spec,
			     struct inject_result *r)
{
	static const char *const lists[] = {"initContainers", "containers"};
	const json_t *pod_uid = json_object_get(json_object_get(spec, "securityContext"), "runAsUser");
	size_t i;
	json_t *c;

	for (size_t l = 0; l < sizeof(lists) / sizeof(lists[0]); l++)
		json_array_foreach(json_object_get(spec, lists[l]), i, c) {
			const json_t *uid =
				json_object_get(json_object_get(c, "securityContext"), "runAsUser");
			if (!json_is_integer(uid))
				uid = pod_uid;
			if (!json_is_integer(uid) || json_integer_value(uid) != (json_int_t)cfg->agent_uid)
				continue;
			snprintf(r->msg, sizeof(r->msg),
				 "container %.63s runs as UID %u, the mesh agent's: its traffic would "
				 "bypass interception; run it as another user (securityContext.runAsUser)",
				 inject_str(c, "name") ? inject_str(c, "name") : "(unnamed)",
				 cfg->agent_uid);
			inject_skip(r, INJECT_REFUSED, r->msg);
			return -EPERM;
		}
	return 0;
}

/* Refuses cinch.dev/exclude-* annotations the MeshPolicy does not allow.
 * -EPERM with r filled, or 0. */
static int inject_check_exclusions(const struct inject_config *cfg, const char *ns,
				   const json_t *ann, struct inject_result *r)
{
	static const char *const excl[] = {
		INJECT_ANN_PREFIX "exclude-inbound-ports",
		INJECT_ANN_PREFIX "exclude-outbound-ports",
		INJECT_ANN_PREFIX "exclude-outbound-cidrs",
	};

	for (size_t i = 0; i < sizeof(excl) / sizeof(excl[0]); i++) {
		if (!json_object_get(ann, excl[i]) ||
		    (cfg->pod_exclusions && cfg->pod_exclusions(cfg->pod_exclusions_arg, ns)))
			continue;
		snprintf(r->msg, sizeof(r->msg),
			 "annotation %s: this mesh does not let pods of namespace %.63s exclude "
			 "traffic from interception (MeshPolicy spec.allowPodExclusions)",
			 excl[i], ns ? ns : "");
		inject_skip(r, INJECT_REFUSED, r->msg);
		return -EPERM;
	}
	return 0;
}

static int inject_decide(const struct inject_config *cfg, const json_t *req,
			 struct inject_result *r)
{
	const json_t *kind = json_object_get(req, "kind");
	const char *op = inject_str(req, "operation");
	const json_t *pod = json_object_get(req, "object");
	const char *ns = inject_str(req, "namespace");
	char path[256];

	if (!json_is_object(kind) || !inject_str(kind, "kind") ||
	    strcmp(inject_str(kind, "kind"), "Pod") != 0 || !inject_str(kind, "group") ||
	    strcmp(inject_str(kind, "group"), "") != 0 || !inject_str(kind, "version") ||
	    strcmp(inject_str(kind, "version"), "v1") != 0)
		return inject_skip(r, INJECT_SKIPPED, "not a v1 Pod");
	if (!op || strcmp(op, "CREATE") != 0)
		return inject_skip(r, INJECT_SKIPPED, "not a CREATE");
	if (!json_is_object(pod) || !json_is_object(json_object_get(pod, "spec")) ||
	    !json_is_object(json_object_get(pod, "metadata")))
		return inject_skip(r, INJECT_REFUSED, "the review holds no Pod object with metadata and spec");
	const json_t *meta = json_object_get(pod, "metadata");
	const json_t *spec = json_object_get(pod, "spec");
	const json_t *ann = json_object_get(meta, "annotations");
	const json_t *labels = json_object_get(meta, "labels");
	if (!json_is_array(json_object_get(spec, "containers")))
		return inject_skip(r, INJECT_REFUSED, "the Pod has no containers");
	if (!ns)
		ns = inject_str(meta, "namespace");
	if (ns && strcmp(ns, cfg->control_namespace) == 0)
		return inject_skip(r, INJECT_SKIPPED, "the control plane's namespace is never injected");
	if (json_is_true(json_object_get(spec, "hostNetwork")))
		return inject_skip(r, INJECT_SKIPPED, "hostNetwork pods share the node's network");
	if (inject_opted_out(inject_str(labels, INJECT_ANN_PREFIX "inject")) ||
	    inject_opted_out(inject_str(ann, INJECT_ANN_PREFIX "inject")))
		return inject_skip(r, INJECT_SKIPPED, "opted out with cinch.dev/inject");
	if (inject_str(ann, INJECT_ANN_PREFIX "injected"))
		return inject_skip(r, INJECT_SKIPPED, "already injected");

	/* Every cinch.dev/ annotation must be one we know, with a valid value:
	 * a typo must not silently leave a port open or closed. */
	const char *key;
	json_t *val;
	json_object_foreach((json_t *)ann, key, val) {
		const char *v = json_string_value(val);
		int bad = 0;
		if (strncmp(key, INJECT_ANN_PREFIX, strlen(INJECT_ANN_PREFIX)) != 0)
			continue;
		const char *name = key + strlen(INJECT_ANN_PREFIX);
		if (!v)
			bad = 1;
		else if (strcmp(name, "exclude-inbound-ports") == 0 ||
			 strcmp(name, "exclude-outbound-ports") == 0)
			bad = inject_check_ports(v) < 0;
		else if (strcmp(name, "exclude-outbound-cidrs") == 0)
			bad = inject_check_cidrs(v) < 0;
		else if (strcmp(name, "mtls-mode") == 0)
			bad = strcmp(v, "STRICT") != 0 && strcmp(v, "PERMISSIVE") != 0;
		else if (strcmp(name, "inject") != 0) {
			snprintf(r->msg, sizeof(r->msg), "unknown annotation %s", key);
			return inject_skip(r, INJECT_REFUSED, r->msg);
		}
		if (bad) {
			snprintf(r->msg, sizeof(r->msg), "annotation %s: invalid value \"%.100s\"", key,
				 v ? v : "(not a string)");
			return inject_skip(r, INJECT_REFUSED, r->msg);
		}
	}

	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(spec, "containers"), i, c) {
		const char *cn = inject_str(c, "name");
		if (cn && strncmp(cn, "cinch-", 6) == 0)
			return inject_skip(r, INJECT_SKIPPED, "already has a cinch- container");
	}
	if (inject_check_uids(cfg, spec, r) < 0 || inject_check_exclusions(cfg, ns, ann, r) < 0)
		return 0;

	/* Probe rewrites first: they address containers by their original
	 * index, which a classic-sidecar insertion would shift. */
	json_t *probes = json_object();
	int rc = probes ? 0 : -ENOMEM;
	json_array_foreach(json_object_get(spec, "containers"), i, c) {
		if (rc == 0)
			rc = inject_probes(r, c, i, probes);
	}

	/* What was injected, recorded on the pod. */
	char record[160];
	snprintf(record, sizeof(record),
		 "{\"version\":\"%s\",\"mode\":\"%s\",\"containers\":[\"cinch-init\",\"cinch-agent\"]}",
		 CINCH_VERSION, cfg->native_sidecar ? "native-sidecar" : "sidecar");
	/* With the record, the usual scrape annotations for the agent's
	 * /metrics, unless the pod already says how it is scraped. */
	json_t *adds = inject_str(ann, "prometheus.io/scrape")
			       ? json_pack("{s:s}", INJECT_ANN_PREFIX "injected", record)
			       : json_pack("{s:s, s:s, s:s, s:s}", INJECT_ANN_PREFIX "injected", record,
					   "prometheus.io/scrape", "true", "prometheus.io/port",
					   INJECT_ADMIN_PORT_S, "prometheus.io/path", "/metrics");
	if (!adds)
		rc = -ENOMEM;
	if (rc == 0 && !json_is_object(ann)) {
		rc = inject_op(r->patch, "add", "/metadata/annotations", json_incref(adds));
	} else if (rc == 0) {
		const char *k;
		json_t *v;
		char esc[128];
		json_object_foreach(adds, k, v) {
			snprintf(path, sizeof(path), "/metadata/annotations/%s",
				 inject_ptr_escape(k, esc, sizeof(esc)));
			if (rc == 0)
				rc = inject_op(r->patch, "add", path, json_incref(v));
		}
	}
	json_decref(adds);

	json_t *init = inject_init_container(cfg, ann);
	json_t *agent = inject_agent_container(cfg, ann, probes);
	json_decref(probes);
	if (rc == 0 && (!init || !agent))
		rc = -ENOMEM;
	if (rc == 0 && cfg->native_sidecar) {
		/* init, then the agent as a native sidecar, then the app's own
		 * init containers: those run with the mesh already up. */
		rc = inject_add_items(r->patch, spec, "initContainers",
				      json_pack("[O, O]", init, agent), 0);
	} else if (rc == 0) {
		/* Classic: the rules go in after the app's init containers (which
		 * then run outside the mesh), the agent first among containers. */
		rc = inject_add_items(r->patch, spec, "initContainers", json_pack("[O]", init), -1);
		if (rc == 0)
			rc = inject_add_items(r->patch, spec, "containers", json_pack("[O]", agent), 0);
	}
	json_decref(init);
	json_decref(agent);
	if (rc == 0)
		rc = inject_add_items(r->patch, spec, "volumes", inject_volumes(cfg), -1);
	if (rc < 0)
		return rc;
	r->outcome = INJECT_PATCHED;
	r->reason = "injected";
	return 0;
}

/* --- the envelope --------------------------------------------------- */

static json_t *inject_respond(const char *uid, const struct inject_result *r)
{
	json_t *resp = json_pack("{s:s, s:b}", "uid", uid, "allowed", r->outcome != INJECT_REFUSED);
	if (!resp)
		return NULL;
	if (json_array_size(r->warnings))
		json_object_set(resp, "warnings", r->warnings);
	if (r->outcome == INJECT_REFUSED) {
		char msg[300];
		snprintf(msg, sizeof(msg), "cinch: %s", r->reason);
		json_object_set_new(resp, "status", json_pack("{s:i, s:s, s:s}", "code", 400,
							      "reason", "BadRequest", "message", msg));
	} else {
		json_object_set_new(resp, "auditAnnotations",
				    json_pack("{s:s}", "injection", r->reason));
	}
	if (r->outcome == INJECT_PATCHED) {
		char *p = json_dumps(r->patch, JSON_COMPACT);
		size_t b64_len;
		uint8_t *b64 = NULL;
		if (p && EVP_EncodedLength(&b64_len, strlen(p)))
			b64 = malloc(b64_len);
		if (!b64) {
			free(p);
			json_decref(resp);
			return NULL;
		}
		EVP_EncodeBlock(b64, (const uint8_t *)p, strlen(p));
		json_object_set_new(resp, "patchType", json_string("JSONPatch"));
		json_object_set_new(resp, "patch", json_string((const char *)b64));
		free(b64);
		free(p);
	}
	return json_pack("{s:s, s:s, s:o}", "apiVersion", "admission.k8s.io/v1", "kind",
			 "AdmissionReview", "response", resp);
}

int inject_review(const struct inject_config *cfg, const char *body, size_t len, char **out,
		  const char **why)
{
	struct inject_result r = { 0 };
	json_error_t jerr;
	json_t *review = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	json_t *answer = NULL;
	int rc = -EINVAL;

	if (!review) {
		*why = "body is not a JSON document";
		goto out;
	}
	const char *api = inject_str(review, "apiVersion");
	const char *kind = inject_str(review, "kind");
	const json_t *req = json_object_get(review, "request");
	const char *uid = inject_str(req, "uid");
	if (!api || strcmp(api, "admission.k8s.io/v1") != 0 || !kind ||
	    strcmp(kind, "AdmissionReview") != 0) {
		*why = "not an admission.k8s.io/v1 AdmissionReview";
		goto out;
	}
	if (!json_is_object(req) || !uid || !*uid) {
		*why = "AdmissionReview has no request with a uid";
		goto out;
	}
	r.patch = json_array();
	r.warnings = json_array();
	rc = r.patch && r.warnings ? inject_decide(cfg, req, &r) : -ENOMEM;
	if (rc < 0) {
		*why = "out of memory";
		goto out;
	}
	answer = inject_respond(uid, &r);
	char *s = answer ? json_dumps(answer, JSON_COMPACT) : NULL;
	if (!s) {
		*why = "out of memory";
		rc = -ENOMEM;
		goto out;
	}
	*out = s;
	rc = 0;
out:
	json_decref(answer);
	json_decref(r.patch);
	json_decref(r.warnings);
	json_decref(review);
	return rc;
}
