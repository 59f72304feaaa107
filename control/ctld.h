/* ctld: the cinch-control daemon, put together: configuration (flags and an
 * optional JSON config file whose keys are the long flag names), the CA,
 * the join-token store, the configuration store (registry and policy
 * files, and with --kube-api the cluster's pods and policy objects) feeding
 * the mesh hub, the gRPC server on 15012 (Sign, Config), the admin HTTP
 * port on 15014, the Kubernetes injection webhook on 15017 (with a
 * certificate given, or issued by the control itself), the trust-bundle
 * ConfigMaps of the meshed namespaces and the root-only admin socket, all
 * on one libuv loop.
 *
 * main.c only calls ctld_parse() and ctld_run(); tests run the binary. */
#ifndef CINCH_CONTROL_CTLD_H
#define CINCH_CONTROL_CTLD_H

#include <stddef.h>

#define CTLD_MAX_NAMES 16

struct ctld_config {
	const char *trust_domain;
	const char *state_dir;
	const char *listen;	  /* "host:port" of the gRPC server */
	const char *admin_listen; /* "host:port" of the admin HTTP port */
	const char *ca_cert, *ca_key;
	const char *ca_secret; /* "NS/NAME" (casecret.h) or NULL */
	const char *spiffe_id;	       /* the control's own identity ("" = default) */
	const char *registry, *policy; /* Workload / policy documents, or NULL */
	const char *server_dns[CTLD_MAX_NAMES];
	const char *server_ips[CTLD_MAX_NAMES];
	size_t n_dns, n_ips;
	long svid_ttl_s, ttl_min_s, ttl_max_s;
	size_t max_msg, max_queue, max_buffered;
	unsigned max_streams, max_conns, max_per_source, handshake_ms, idle_ms;
	int log_level;
	int webhook_port; /* 0: off */
	unsigned webhook_max_conns, webhook_max_per_source;
	const char *webhook_cert, *webhook_key;	   /* the operator's, watched, or */
	int webhook_issue;			   /* issued by our CA (webhookcert.h) */
	const char *webhook_service, *webhook_namespace, *webhook_configuration;
	long webhook_cert_ttl_s;
	int trust_bundle_cms;			   /* with kube_api: bundlecm.h (on) */
	const char *inject_image;		   /* NULL: inject.h's default */
	int inject_classic;			   /* classic sidecar, not native */
	const char *kube_api;			   /* URL or "in-cluster"; NULL: off */
	const char *kube_ca, *kube_token;	   /* with a URL */
	int kube_sources_off;			   /* --kube-sources off: TokenReview only */
	unsigned review_max_inflight, review_rate; /* TokenReviews: at once, per second */
	int check_only;				   /* --check-config: validate, print "ok", exit */
};

/* Fills `cfg` from the defaults, then the --config file (if any), then the
 * other flags. Strings point into argv or into memory kept for the
 * process. Returns 0, 1 when --help/--version was answered (exit 0), or
 * -EINVAL after printing what is wrong to stderr (exit 2). */
int ctld_parse(int argc, char **argv, struct ctld_config *cfg);

/* Runs until SIGTERM or SIGINT. 0 on a clean stop, 1 when start-up
 * failed (the log says why). */
int ctld_run(const struct ctld_config *cfg);

#endif
