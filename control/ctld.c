/* ctld: see ctld.h.
 *
 * Start-up order: with --kube-api the API client (with --ca-secret the CA
 * comes from the API server: casecret.h, a bounded synchronous wait), CA
 * (creates or loads the root, refuses a broken state directory), token
 * store, server certificate for the control's own
 * SPIFFE ID, then the listeners. Any failure before the loop runs is
 * logged with its reason and exits 1 with nothing half-started. The
 * server certificate is re-issued at half its lifetime; connections keep
 * the context they started with.
 *
 * Root rotation (`cinchctl ca rotate`, ctlsock ops ca_rotate, ca_status):
 * each step is persisted by ca_rotate(), then the CA is opened again and
 * swapped in: the Sign service, both renewal authenticators (Sign's and
 * Config's; every call and every open Watch is authenticated again against
 * the new bundle), a new gRPC server certificate (new connections), the bundle
 * every slice carries (the store, so agents learn it) and the metrics. A
 * replaced struct ca is kept until the daemon exits, as anything that
 * borrowed it (a call in progress) may still read it; rotations are rare.
 * Retiring the old root is refused until no certificate it signed can
 * still be valid: activated_at + the longest lifetime (--svid-ttl-max).
 * With --ca-secret a step is also written to the Secret before it is
 * answered (failure: undone, the Secret's state adopted), and a change
 * another replica wrote there is swapped in the same way. */
#include "ctld.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <uv.h>

#include "adminhttp.h"
#include "admin/ctlsock.h"
#include "admin/metrics.h"
#include "api/config_svc.h"
#include "api/grpc.h"
#include "api/sign.h"
#include "mtls.h"
#include "bundlecm.h"
#include "casecret.h"
#include "ca/ca.h"
#include "duration.h"
#include "filesrc.h"
#include "fsutil.h"
#include "httpc.h"
#include "inject.h"
#include "kapi.h"
#include "tokenreview.h"
#include "kfeed.h"
#include "kwatch.h"
#include "hub.h"
#include "log.h"
#include "numarg.h"
#include "spiffe.h"
#include "store.h"
#include "token/token.h"
#include "version.h"
#include "webhook.h"
#include "webhookcert.h"

#define CTLD_SERVER_CERT_S (24 * 3600)
/* After a start, agents reconnect within their backoff (30 s at most):
 * until then "every connected agent" is not yet every agent. */
#define CTLD_AGENT_SETTLE_S 45

/* ---- configuration */

enum {
	OPT_CONFIG = 256,
	OPT_TD,
	OPT_STATE,
	OPT_LISTEN,
	OPT_ADMIN,
	OPT_CA_CERT,
	OPT_CA_KEY,
	OPT_SPIFFE_ID,
	OPT_DNS,
	OPT_IP,
	OPT_TTL,
	OPT_TTL_MAX,
	OPT_TEST_SHORT_TTL,
	OPT_MAX_MSG,
	OPT_MAX_STREAMS,
	OPT_MAX_CONNS,
	OPT_HS_TIMEOUT,
	OPT_IDLE_TIMEOUT,
	OPT_LOG_LEVEL,
	OPT_CHECK_CONFIG,
	OPT_WEBHOOK_PORT,
	OPT_WEBHOOK_CERT,
	OPT_WEBHOOK_KEY,
	OPT_WEBHOOK_MAX_CONNS,
	OPT_INJECT_IMAGE,
	OPT_INJECT_CLASSIC,
	OPT_KUBE_API,
	OPT_KUBE_CA,
	OPT_KUBE_TOKEN,
	OPT_KUBE_SOURCES,
	OPT_REGISTRY,
	OPT_POLICY,
	OPT_MAX_QUEUE,
	OPT_MAX_PER_SOURCE,
	OPT_MAX_BUFFERED,
	OPT_WEBHOOK_MAX_PER_SOURCE,
	OPT_REVIEW_MAX_INFLIGHT,
	OPT_REVIEW_RATE,
	OPT_WEBHOOK_ISSUE,
	OPT_WEBHOOK_SERVICE,
	OPT_WEBHOOK_NAMESPACE,
	OPT_WEBHOOK_CONFIGURATION,
	OPT_WEBHOOK_CERT_TTL,
	OPT_TRUST_BUNDLE_CMS,
	OPT_CA_SECRET,
};

static const struct option ctld_opts[] = {
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{"config", required_argument, NULL, OPT_CONFIG},
	{"trust-domain", required_argument, NULL, OPT_TD},
	{"state-dir", required_argument, NULL, OPT_STATE},
	{"listen", required_argument, NULL, OPT_LISTEN},
	{"admin-listen", required_argument, NULL, OPT_ADMIN},
	{"ca-cert", required_argument, NULL, OPT_CA_CERT},
	{"ca-key", required_argument, NULL, OPT_CA_KEY},
	{"ca-secret", required_argument, NULL, OPT_CA_SECRET},
	{"spiffe-id", required_argument, NULL, OPT_SPIFFE_ID},
	{"server-dns", required_argument, NULL, OPT_DNS},
	{"server-ip", required_argument, NULL, OPT_IP},
	{"svid-ttl", required_argument, NULL, OPT_TTL},
	{"svid-ttl-max", required_argument, NULL, OPT_TTL_MAX},
	{"test-short-ttl", no_argument, NULL, OPT_TEST_SHORT_TTL},
	{"max-message", required_argument, NULL, OPT_MAX_MSG},
	{"max-streams", required_argument, NULL, OPT_MAX_STREAMS},
	{"max-connections", required_argument, NULL, OPT_MAX_CONNS},
	{"handshake-timeout", required_argument, NULL, OPT_HS_TIMEOUT},
	{"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
	{"log-level", required_argument, NULL, OPT_LOG_LEVEL},
	{"check-config", no_argument, NULL, OPT_CHECK_CONFIG},
	{"webhook-port", required_argument, NULL, OPT_WEBHOOK_PORT},
	{"webhook-cert", required_argument, NULL, OPT_WEBHOOK_CERT},
	{"webhook-key", required_argument, NULL, OPT_WEBHOOK_KEY},
	{"webhook-max-connections", required_argument, NULL, OPT_WEBHOOK_MAX_CONNS},
	{"webhook-issue-cert", no_argument, NULL, OPT_WEBHOOK_ISSUE},
	{"webhook-service", required_argument, NULL, OPT_WEBHOOK_SERVICE},
	{"webhook-namespace", required_argument, NULL, OPT_WEBHOOK_NAMESPACE},
	{"webhook-configuration", required_argument, NULL, OPT_WEBHOOK_CONFIGURATION},
	{"webhook-cert-ttl", required_argument, NULL, OPT_WEBHOOK_CERT_TTL},
	{"trust-bundle-configmaps", required_argument, NULL, OPT_TRUST_BUNDLE_CMS},
	{"inject-agent-image", required_argument, NULL, OPT_INJECT_IMAGE},
	{"inject-classic-sidecar", no_argument, NULL, OPT_INJECT_CLASSIC},
	{"kube-api", required_argument, NULL, OPT_KUBE_API},
	{"kube-ca", required_argument, NULL, OPT_KUBE_CA},
	{"kube-token", required_argument, NULL, OPT_KUBE_TOKEN},
	{"kube-sources", required_argument, NULL, OPT_KUBE_SOURCES},
	{"registry", required_argument, NULL, OPT_REGISTRY},
	{"policy", required_argument, NULL, OPT_POLICY},
	{"max-stream-queue", required_argument, NULL, OPT_MAX_QUEUE},
	{"max-connections-per-source", required_argument, NULL, OPT_MAX_PER_SOURCE},
	{"max-buffered", required_argument, NULL, OPT_MAX_BUFFERED},
	{"webhook-max-connections-per-source", required_argument, NULL, OPT_WEBHOOK_MAX_PER_SOURCE},
	{"token-review-concurrency", required_argument, NULL, OPT_REVIEW_MAX_INFLIGHT},
	{"token-review-rate", required_argument, NULL, OPT_REVIEW_RATE},
	{0},
};

static void ctld_usage(FILE *out)
{
	fprintf(out,
		"usage: cinch-control [options]\n"
		"\n"
		"The Cinch control plane: the mesh CA. It authenticates agents (single-use\n"
		"join tokens, or their current certificate over mutual TLS) and signs their\n"
		"CSRs into short-lived X.509-SVIDs over gRPC (cinch.v1.Identity/Sign).\n"
		"\n"
		"  --config FILE            JSON object whose keys are these long options\n"
		"                           (flags given on the command line win)\n"
		"  --trust-domain TD        SPIFFE trust domain (cluster.local)\n"
		"  --state-dir DIR          CA key, bundle, tokens, admin socket\n"
		"                           (/var/lib/cinch-control; created 0700)\n"
		"  --listen HOST:PORT       gRPC over HTTP/2 + TLS 1.3 (0.0.0.0:15012)\n"
		"  --admin-listen HOST:PORT /ready /live /metrics /bundle (127.0.0.1:15014)\n"
		"  --ca-cert FILE --ca-key FILE\n"
		"                           sign with this root or intermediate (chain up\n"
		"                           to the root in FILE); default: a root of our own\n"
		"                           in the state directory, made on first start\n"
		"                           (root rotation is refused with --ca-cert)\n"
		"  --ca-secret NS/NAME      with --kube-api, keep the CA's state (key\n"
		"                           included) in this Secret, made and managed by\n"
		"                           the control: replicas share one CA and root\n"
		"                           rotation reaches all of them\n"
		"  --spiffe-id ID           the control's own identity\n"
		"                           (spiffe://TD/ns/cinch-system/sa/cinch-control)\n"
		"  --server-dns NAME        a DNS name of the gRPC certificate (repeatable;\n"
		"                           localhost is always there)\n"
		"  --server-ip ADDR         an address of it (repeatable; 127.0.0.1, ::1 always)\n"
		"  --svid-ttl DURATION      default certificate lifetime, 5m..24h (1h)\n"
		"  --svid-ttl-max DURATION  the longest lifetime granted, 5m..24h (24h);\n"
		"                           retiring an old root waits this long after\n"
		"                           the new one signs\n"
		"  --registry PATH          Workload documents (file or directory), watched\n"
		"  --policy PATH            policy documents (file or directory), watched;\n"
		"                           both streamed to agents by cinch.v1.Config/Watch,\n"
		"                           re-read on change and on SIGHUP\n"
		"  --max-message BYTES      largest request message (65536)\n"
		"  --max-streams N          concurrent streams per connection (64)\n"
		"  --max-stream-queue BYTES unsent bytes per Watch before it ends with\n"
		"                           RESOURCE_EXHAUSTED (1048576)\n"
		"  --max-connections N      open connections (4096)\n"
		"  --max-connections-per-source N  from one address (64; 0: no cap)\n"
		"  --max-buffered BYTES     request bytes held by all connections (32 MiB)\n"
		"  --handshake-timeout DUR  (10s)   --idle-timeout DUR (120s)\n"
		"  --webhook-port PORT      Kubernetes injection webhook, HTTPS on the\n"
		"                           --listen host (15017; 0: off); runs with\n"
		"  --webhook-issue-cert     a certificate our CA issues, in memory only,\n"
		"                           for <service>.<namespace>.svc; with\n"
		"                           --kube-api the caBundle of the webhook's\n"
		"                           MutatingWebhookConfiguration is kept current\n"
		"  --webhook-cert FILE --webhook-key FILE\n"
		"                           or the operator's: PEM, valid for\n"
		"                           <service>.<ns>.svc, reloaded when the files\n"
		"                           change (nothing is patched then)\n"
		"  --webhook-service NAME --webhook-namespace NS\n"
		"                           the Service the API server calls\n"
		"                           (cinch-control, cinch-system)\n"
		"  --webhook-configuration NAME\n"
		"                           the MutatingWebhookConfiguration (cinch-injector)\n"
		"  --webhook-cert-ttl DUR   issued certificate lifetime, 5m..7d (24h),\n"
		"                           renewed at half of it\n"
		"  --webhook-max-connections N  open webhook connections (256)\n"
		"  --webhook-max-connections-per-source N  (8; 0: no cap)\n"
		"  --inject-agent-image IMG the agent image the webhook injects\n"
		"  --inject-classic-sidecar inject a classic sidecar (clusters < 1.29)\n"
		"  --kube-api URL|in-cluster\n"
		"                           authenticate agents by their projected\n"
		"                           service-account token (TokenReview, audience\n"
		"                           cinch) on this API server; in-cluster: from\n"
		"                           KUBERNETES_SERVICE_HOST/PORT and the pod's\n"
		"                           service-account files\n"
		"  --kube-ca FILE --kube-token FILE\n"
		"                           the API server's CA and our bearer token file\n"
		"                           (with a URL)\n"
		"  --token-review-concurrency N  TokenReviews in flight at once (32)\n"
		"  --token-review-rate N    new TokenReviews per second (20, burst 2N);\n"
		"                           a Sign over either: UNAVAILABLE, retry later\n"
		"  --trust-bundle-configmaps on|off\n"
		"                           with --kube-api, keep the ConfigMap\n"
		"                           cinch-trust-bundle (bundle.pem) current in\n"
		"                           every namespace labelled cinch.dev/inject=\n"
		"                           enabled (on)\n"
		"  --kube-sources on|off    with --kube-api, also watch the meshed pods\n"
		"                           (the workload registry), the AllowPolicy,\n"
		"                           MeshPolicy, EgressPolicy objects, and the\n"
		"                           Services and EndpointSlices, joined with the\n"
		"                           files in one set (on)\n"
		"  --log-level LEVEL        debug, info, warn, error (info)\n"
		"  --test-short-ttl         allow lifetimes down to 2m (rotation tests)\n"
		"  --check-config           validate the flags, --config file, registry and\n"
		"                           policy, then exit\n"
		"  -h, --help               this help\n"
		"  -V, --version            the version and the linked library versions\n"
		"\n"
		"Create join tokens with `cinchctl token create --identity NS/SA`.\n");
}

static long long ctld_number(const char *s, long long min, long long max)
{
	long long v;

	return numarg_parse(s, min, max, &v) < 0 ? -1 : v;
}

/* A DNS label (RFC 1123), as Service and namespace names are: the webhook
 * certificate's names are built from them. */
static int ctld_dns_label(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
		return 0;
	return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

/* The config file as "--key=value" arguments, kept for the process (cfg
 * points into them). Arrays give one argument per element. */
static int ctld_config_args(const char *path, char ***out, int *n_out)
{
	json_error_t err;
	json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &err), *v;
	const char *key;
	char **args = NULL;
	int n = 0;

	if (!json_is_object(doc)) {
		fprintf(stderr, "cinch-control: %s:%d:%d: %s\n", path, err.line, err.column,
			doc ? "not a JSON object" : err.text);
		json_decref(doc);
		return -EINVAL;
	}
	json_object_foreach(doc, key, v)
	{
		size_t count = json_is_array(v) ? json_array_size(v) : 1;
		for (size_t i = 0; i < count; i++) {
			json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
			char val[1024];
			if (json_is_string(e))
				snprintf(val, sizeof(val), "%s", json_string_value(e));
			else if (json_is_integer(e))
				snprintf(val, sizeof(val), "%lld",
					 (long long)json_integer_value(e));
			else if (json_is_true(e))
				val[0] = '\0';
			else {
				fprintf(stderr,
					"cinch-control: %s: %s: not a string, number or true\n",
					path, key);
				goto fail;
			}
			char **na = realloc(args, sizeof(char *) * (size_t)(n + 2));
			if (!na)
				goto fail;
			args = na;
			size_t len = strlen(key) + strlen(val) + 4;
			if (!(args[n] = malloc(len)))
				goto fail;
			snprintf(args[n], len, json_is_true(e) ? "--%s" : "--%s=%s", key, val);
			n++;
		}
	}
	json_decref(doc);
	*out = args;
	*n_out = n;
	return 0;
fail:
	for (int i = 0; i < n; i++)
		free(args[i]);
	free(args);
	json_decref(doc);
	return -EINVAL;
}

/* Applies one option; -EINVAL after printing why. */
static int ctld_apply(struct ctld_config *cfg, int opt, const char *arg)
{
	long long v;
	enum log_level lvl;

	switch (opt) {
	case OPT_TD:
		cfg->trust_domain = arg;
		return 0;
	case OPT_STATE:
		cfg->state_dir = arg;
		return 0;
	case OPT_LISTEN:
		cfg->listen = arg;
		return 0;
	case OPT_ADMIN:
		cfg->admin_listen = arg;
		return 0;
	case OPT_CA_CERT:
		cfg->ca_cert = arg;
		return 0;
	case OPT_CA_KEY:
		cfg->ca_key = arg;
		return 0;
	case OPT_CA_SECRET: {
		/* NAMESPACE/NAME, both DNS labels (a path segment each) */
		const char *slash = strchr(arg, '/');
		char ns[64];
		if (!slash || (size_t)(slash - arg) >= sizeof(ns))
			break;
		memcpy(ns, arg, (size_t)(slash - arg));
		ns[slash - arg] = '\0';
		if (!ctld_dns_label(ns) || !ctld_dns_label(slash + 1))
			break;
		cfg->ca_secret = arg;
		return 0;
	}
	case OPT_REGISTRY:
		cfg->registry = arg;
		return 0;
	case OPT_POLICY:
		cfg->policy = arg;
		return 0;
	case OPT_SPIFFE_ID:
		cfg->spiffe_id = arg;
		return 0;
	case OPT_DNS:
		if (cfg->n_dns == CTLD_MAX_NAMES)
			break;
		cfg->server_dns[cfg->n_dns++] = arg;
		return 0;
	case OPT_IP:
		if (cfg->n_ips == CTLD_MAX_NAMES)
			break;
		cfg->server_ips[cfg->n_ips++] = arg;
		return 0;
	case OPT_TTL:
	case OPT_TTL_MAX:
		v = duration_ms(arg);
		if (v < 0 || v % 1000)
			break;
		*(opt == OPT_TTL ? &cfg->svid_ttl_s : &cfg->ttl_max_s) = (long)(v / 1000);
		return 0;
	case OPT_TEST_SHORT_TTL:
		cfg->ttl_min_s = CA_TTL_MIN_TEST_S;
		return 0;
	case OPT_CHECK_CONFIG:
		cfg->check_only = 1;
		return 0;
	case OPT_MAX_MSG:
		if ((v = ctld_number(arg, 1024, 16 << 20)) < 0)
			break;
		cfg->max_msg = (size_t)v;
		return 0;
	case OPT_MAX_QUEUE:
		if ((v = ctld_number(arg, 256, 64 << 20)) < 0)
			break;
		cfg->max_queue = (size_t)v;
		return 0;
	case OPT_MAX_STREAMS:
		if ((v = ctld_number(arg, 1, 1000)) < 0)
			break;
		cfg->max_streams = (unsigned)v;
		return 0;
	case OPT_MAX_CONNS:
		if ((v = ctld_number(arg, 1, 1000000)) < 0)
			break;
		cfg->max_conns = (unsigned)v;
		return 0;
	case OPT_MAX_PER_SOURCE:
	case OPT_WEBHOOK_MAX_PER_SOURCE:
		if ((v = ctld_number(arg, 0, 1000000)) < 0)
			break;
		*(opt == OPT_MAX_PER_SOURCE ? &cfg->max_per_source : &cfg->webhook_max_per_source) =
			(unsigned)v;
		return 0;
	case OPT_REVIEW_MAX_INFLIGHT:
	case OPT_REVIEW_RATE:
		if ((v = ctld_number(arg, 1, 100000)) < 0)
			break;
		*(opt == OPT_REVIEW_RATE ? &cfg->review_rate : &cfg->review_max_inflight) =
			(unsigned)v;
		return 0;
	case OPT_MAX_BUFFERED:
		if ((v = ctld_number(arg, 64 << 10, 1ll << 32)) < 0)
			break;
		cfg->max_buffered = (size_t)v;
		return 0;
	case OPT_HS_TIMEOUT:
	case OPT_IDLE_TIMEOUT:
		if ((v = duration_ms(arg)) <= 0 || v > 86400000)
			break;
		*(opt == OPT_HS_TIMEOUT ? &cfg->handshake_ms : &cfg->idle_ms) = (unsigned)v;
		return 0;
	case OPT_WEBHOOK_PORT:
		if ((v = ctld_number(arg, 0, 65535)) < 0)
			break;
		cfg->webhook_port = (int)v;
		return 0;
	case OPT_WEBHOOK_MAX_CONNS:
		if ((v = ctld_number(arg, 1, 100000)) < 0)
			break;
		cfg->webhook_max_conns = (unsigned)v;
		return 0;
	case OPT_WEBHOOK_CERT:
		cfg->webhook_cert = arg;
		return 0;
	case OPT_WEBHOOK_ISSUE:
		cfg->webhook_issue = 1;
		return 0;
	case OPT_WEBHOOK_SERVICE:
	case OPT_WEBHOOK_NAMESPACE:
		if (!ctld_dns_label(arg))
			break;
		*(opt == OPT_WEBHOOK_SERVICE ? &cfg->webhook_service : &cfg->webhook_namespace) =
			arg;
		return 0;
	case OPT_WEBHOOK_CONFIGURATION:
		cfg->webhook_configuration = arg;
		return 0;
	case OPT_WEBHOOK_CERT_TTL:
		v = duration_ms(arg);
		if (v < 1000 || v % 1000)
			break;
		cfg->webhook_cert_ttl_s = (long)(v / 1000); /* bounds: ctld_parse */
		return 0;
	case OPT_TRUST_BUNDLE_CMS:
		if (strcmp(arg, "on") != 0 && strcmp(arg, "off") != 0)
			break;
		cfg->trust_bundle_cms = strcmp(arg, "on") == 0;
		return 0;
	case OPT_WEBHOOK_KEY:
		cfg->webhook_key = arg;
		return 0;
	case OPT_INJECT_IMAGE:
		cfg->inject_image = arg;
		return 0;
	case OPT_INJECT_CLASSIC:
		cfg->inject_classic = 1;
		return 0;
	case OPT_KUBE_API:
		cfg->kube_api = arg;
		return 0;
	case OPT_KUBE_CA:
		cfg->kube_ca = arg;
		return 0;
	case OPT_KUBE_TOKEN:
		cfg->kube_token = arg;
		return 0;
	case OPT_KUBE_SOURCES:
		if (strcmp(arg, "on") != 0 && strcmp(arg, "off") != 0)
			break;
		cfg->kube_sources_off = strcmp(arg, "off") == 0;
		return 0;
	case OPT_LOG_LEVEL:
		if (log_level_parse(arg, &lvl) < 0)
			break;
		cfg->log_level = (int)lvl;
		return 0;
	}
	return -EINVAL;
}

static const char *ctld_opt_name(int opt)
{
	for (const struct option *o = ctld_opts; o->name; o++)
		if (o->val == opt)
			return o->name;
	return "?";
}

/* One getopt pass over argv (argv[0] is skipped by getopt). */
static int ctld_getopt(int argc, char **argv, struct ctld_config *cfg, const char **config_path)
{
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "hV", ctld_opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			ctld_usage(stdout);
			return 1;
		case 'V':
			version_print(stdout, "cinch-control");
			httpc_version_print(stdout);
			return 1;
		case OPT_CONFIG:
			if (config_path)
				*config_path = optarg;
			break;
		case '?': /* getopt named the flag */
			fputs("Run 'cinch-control --help' for usage.\n", stderr);
			return -EINVAL;
		default:
			if (ctld_apply(cfg, c, optarg) < 0) {
				fprintf(stderr,
					"cinch-control: --%s: invalid value \"%s\"\n"
					"Run 'cinch-control --help' for usage.\n",
					ctld_opt_name(c), optarg ? optarg : "");
				return -EINVAL;
			}
		}
	}
	if (optind < argc) {
		fprintf(stderr, "cinch-control: unexpected argument \"%s\"\n", argv[optind]);
		return -EINVAL;
	}
	return 0;
}

/* --check-config: the registry and policy must load as they would at start. */
static int ctld_check_sources(const struct ctld_config *cfg)
{
	struct store_inputs in = {.trust_domain = cfg->trust_domain,
				  .registry = cfg->registry,
				  .policy = cfg->policy};
	struct store_gen *g;
	struct policy_error err;
	char where[300];

	if (!cfg->registry && !cfg->policy)
		return 0;
	if (store_load(&in, &g, &err) < 0) {
		store_where(&err, where, sizeof(where));
		fprintf(stderr, "cinch-control: %s: %s%s%s\n", where, err.path,
			err.path[0] ? ": " : "", err.msg);
		return -EINVAL;
	}
	store_gen_free(g);
	return 0;
}

int ctld_parse(int argc, char **argv, struct ctld_config *cfg)
{
	const char *config_path = NULL;
	struct ctld_config scratch;
	int rc;

	*cfg = (struct ctld_config){
		.trust_domain = "cluster.local",
		.state_dir = "/var/lib/cinch-control",
		.listen = "0.0.0.0:15012",
		.admin_listen = "127.0.0.1:15014",
		.spiffe_id = "",
		.svid_ttl_s = CA_TTL_DEFAULT_S,
		.ttl_min_s = CA_TTL_MIN_S,
		.ttl_max_s = CA_TTL_MAX_S,
		.max_msg = GRPC_MAX_MSG_DEFAULT,
		.max_queue = GRPC_MAX_QUEUE_DEFAULT,
		.max_streams = GRPC_MAX_STREAMS_DEFAULT,
		.max_conns = GRPC_MAX_CONNS_DEFAULT,
		.max_per_source = GRPC_MAX_PER_SOURCE_DEFAULT,
		.max_buffered = GRPC_MAX_BUFFERED_DEFAULT,
		.handshake_ms = GRPC_HANDSHAKE_MS_DEFAULT,
		.idle_ms = GRPC_IDLE_MS_DEFAULT,
		.log_level = LOG_LVL_INFO,
		.webhook_port = WEBHOOK_DEFAULT_PORT,
		.webhook_max_conns = WEBHOOK_MAX_CONNS_DEFAULT,
		.webhook_max_per_source = WEBHOOK_MAX_PER_SOURCE_DEFAULT,
		.review_max_inflight = TOKENREVIEW_MAX_INFLIGHT_DEFAULT,
		.review_rate = TOKENREVIEW_RATE_DEFAULT,
		.webhook_service = WEBHOOKCERT_SERVICE,
		.webhook_namespace = WEBHOOKCERT_NAMESPACE,
		.webhook_configuration = WEBHOOKCERT_CONFIGURATION,
		.webhook_cert_ttl_s = WEBHOOKCERT_LIFETIME_S,
		.trust_bundle_cms = 1,
	};
	/* First pass: --help, --version and where the config file is. */
	scratch = *cfg;
	rc = ctld_getopt(argc, argv, &scratch, &config_path);
	if (rc != 0)
		return rc;
	if (config_path) {
		char **args;
		int n;
		if (ctld_config_args(config_path, &args, &n) < 0)
			return -EINVAL;
		/* The file's strings live as long as the process (cfg points
		 * into them): kept reachable here. */
		static char **fargv;
		fargv = calloc((size_t)n + 2, sizeof(char *));
		if (!fargv)
			return -ENOMEM;
		fargv[0] = argv[0];
		memcpy(fargv + 1, args, sizeof(char *) * (size_t)n);
		free(args);
		rc = ctld_getopt(n + 1, fargv, cfg, NULL);
		if (rc != 0)
			return rc < 0 ? rc : -EINVAL;
	}
	rc = ctld_getopt(argc, argv, cfg, NULL);
	if (rc == 0 && !cfg->webhook_cert != !cfg->webhook_key) {
		fprintf(stderr, "cinch-control: --webhook-cert and --webhook-key go together\n");
		return -EINVAL;
	}
	if (rc == 0 && cfg->webhook_cert && cfg->webhook_issue) {
		fprintf(stderr, "cinch-control: --webhook-issue-cert or --webhook-cert/--webhook-key, "
				"not both\n");
		return -EINVAL;
	}
	/* --test-short-ttl: seconds, so a test sees renewals */
	if (rc == 0 && (cfg->webhook_cert_ttl_s > WEBHOOKCERT_LIFETIME_MAX_S ||
			(cfg->webhook_cert_ttl_s < WEBHOOKCERT_LIFETIME_MIN_S &&
			 cfg->ttl_min_s != CA_TTL_MIN_TEST_S))) {
		fprintf(stderr, "cinch-control: --webhook-cert-ttl: 5m..7d\n");
		return -EINVAL;
	}
	if (rc == 0 && cfg->kube_api && strcmp(cfg->kube_api, "in-cluster") != 0 &&
	    (!cfg->kube_ca || !cfg->kube_token)) {
		fprintf(stderr, "cinch-control: --kube-api URL needs --kube-ca and --kube-token\n");
		return -EINVAL;
	}
	if (rc == 0 && cfg->ca_secret && (cfg->ca_cert || !cfg->kube_api)) {
		fprintf(stderr, "cinch-control: --ca-secret needs --kube-api and excludes "
				"--ca-cert/--ca-key\n");
		return -EINVAL;
	}
	if (rc == 0 && cfg->check_only)
		rc = ctld_check_sources(cfg);
	return rc;
}

/* ---- the running daemon */

struct ctld {
	const struct ctld_config *cfg;
	uv_loop_t *loop;
	struct ca_config cc; /* what ca_open and ca_rotate get */
	struct ca *ca;	     /* the CA in force */
	struct ca **old_cas; /* replaced by rotation, freed at exit */
	size_t n_old_cas;
	struct token_store *tokens;
	struct metrics metrics;
	struct sign_service svc;
	struct mtls_ctx *tls;
	struct grpc_server *grpc;
	struct adminhttp *admin;
	struct ctlsock *ctl;
	struct inject_config inject;
	struct webhook *webhook;
	struct webhookcert *wcert; /* NULL: no certificate of ours (files, or none) */
	struct bundlecm *bundlecm; /* NULL: no trust-bundle ConfigMaps kept */
	struct casecret *casecret; /* NULL: the CA's state is local (no --ca-secret) */
	struct kapi *kapi;
	struct auth_k8s_config k8s_auth;
	struct tokenreview_limit reviews;
	struct hub *hub;     /* the agents' slices, watches, reports */
	struct store *store; /* builds the hub's generations from its feeders: */
	struct filesrc *src; /* NULL without --registry/--policy */
	struct kfeed *kfeed; /* NULL without --kube-api or with --kube-sources off */
	struct config_service config;
	uv_signal_t sigterm, sigint, sighup;
	uv_timer_t cert_timer;
	char spiffe_id[SPIFFE_ID_MAX + 1];
	int ready;
	int64_t started_at; /* Unix seconds */
};

static int ctld_split_hostport(const char *s, char *host, size_t hlen, int *port)
{
	const char *colon = strrchr(s, ':');
	const char *h = s;
	size_t n;

	if (!colon)
		return -EINVAL;
	n = (size_t)(colon - s);
	if (n >= 2 && s[0] == '[' && colon[-1] == ']') {
		h = s + 1;
		n -= 2;
	}
	if (n == 0 || n >= hlen)
		return -EINVAL;
	memcpy(host, h, n);
	host[n] = '\0';
	long long p = ctld_number(colon + 1, 0, 65535);
	if (p < 0)
		return -EINVAL;
	*port = (int)p;
	return 0;
}

/* A server certificate for our SPIFFE ID and names, in a new TLS context. */
static int ctld_new_tls(struct ctld *d, struct mtls_ctx **out)
{
	const char *dns[CTLD_MAX_NAMES + 1] = {"localhost"};
	const char *ips[CTLD_MAX_NAMES + 2] = {"127.0.0.1", "::1"};
	size_t n_dns = 1, n_ips = 2;
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	STACK_OF(X509) *bundle = NULL, *chain = NULL;
	int rc;

	for (size_t i = 0; i < d->cfg->n_dns; i++)
		dns[n_dns++] = d->cfg->server_dns[i];
	for (size_t i = 0; i < d->cfg->n_ips; i++)
		ips[n_ips++] = d->cfg->server_ips[i];
	rc = ca_issue_server(d->ca, d->spiffe_id, dns, n_dns, ips, n_ips, CTLD_SERVER_CERT_S, &cert,
			     &key);
	if (rc < 0)
		return rc;
	bundle = ca_bundle_roots_new(d->ca);
	chain = ca_chain_new(d->ca);
	/* Agents and cinchctl may present a certificate (verified if they do)
	 * or authenticate with a join token in the request; gRPC needs h2. */
	struct mtls_opts o = {
		.roles = MTLS_ROLE_SERVER,
		.cert = cert,
		.key = key,
		.chain = chain,
		.roots = bundle,
		.verify = MTLS_VERIFY_CHAIN,
		.peer_optional = 1,
		.alpn = "\x02h2",
		.alpn_len = 3,
		.alpn_required = 1,
	};
	const char *why;
	rc = bundle && chain ? mtls_ctx_new_opts(&o, out, &why) : -ENOMEM;
	X509_free(cert);
	EVP_PKEY_free(key);
	sk_X509_pop_free(bundle, X509_free);
	sk_X509_pop_free(chain, X509_free);
	return rc;
}

/* A new server certificate from the CA in force for new connections;
 * `why` names the trigger in the log. On failure (logged) the previous
 * one stays. */
static void ctld_server_cert_swap(struct ctld *d, const char *why)
{
	struct mtls_ctx *tls;
	int rc = ctld_new_tls(d, &tls);

	if (rc < 0) {
		log_event(LOG_LVL_ERROR, "server_cert_renewal_failed",
			  log_pack("{s:s, s:s}", "trigger", why, "error", strerror(-rc)));
		return;
	}
	grpc_server_set_tls(d->grpc, tls);
	mtls_ctx_unref(d->tls);
	d->tls = tls;
	log_event(LOG_LVL_INFO, "server_cert_renewed",
		  log_pack("{s:s, s:s}", "spiffe_id", d->spiffe_id, "trigger", why));
}

static void ctld_renew_server_cert(uv_timer_t *t)
{
	ctld_server_cert_swap(t->data, "half_lifetime");
}

/* The CA's bundle into every slice the store publishes (store_set_bundle:
 * the generation in force too). */
static int ctld_bundle_set(struct ctld *d)
{
	size_t n = ca_bundle_len(d->ca);
	const uint8_t **roots = calloc(n ? n : 1, sizeof(*roots));
	size_t *lens = calloc(n ? n : 1, sizeof(*lens));
	int rc = -ENOMEM;

	if (roots && lens) {
		for (size_t i = 0; i < n; i++)
			roots[i] = ca_bundle_der(d->ca, i, &lens[i]);
		struct store_bundle b = {ca_trust_domain(d->ca), ca_bundle_sequence(d->ca), roots,
					 lens, n};
		rc = store_set_bundle(d->store, &b);
	}
	free(roots);
	free(lens);
	return rc;
}

/* The bundle into the meshed namespaces' ConfigMaps (when kept). */
static void ctld_bundle_cms_set(struct ctld *d)
{
	char *pem = d->bundlecm ? ca_bundle_pem(d->ca) : NULL;

	if (d->bundlecm && (!pem || bundlecm_set_bundle(d->bundlecm, pem) < 0))
		log_event(LOG_LVL_ERROR, "bundle_publish_failed",
			  log_pack("{s:s, s:s}", "error", "out of memory", "effect",
				    "the trust-bundle ConfigMaps keep the previous bundle"));
	free(pem);
}

/* ca_status: where a rotation stands (cinchctl ca status, and what
 * cinchctl ca rotate waits on). */
static json_t *ctld_ca_status(const struct ctld *d)
{
	const struct ca *ca = d->ca;
	uint64_t seq = ca_bundle_sequence(ca), min = hub_min_bundle_sequence(d->hub);
	int64_t activated = ca_activated_at(ca), now = (int64_t)time(NULL);
	long ttl_max = ca_clamp_ttl(ca, LONG_MAX);
	int64_t safe_at = activated ? activated + ttl_max : 0;
	int64_t settled_at = d->started_at + CTLD_AGENT_SETTLE_S;
	json_t *roots = json_array();
	struct ca_root_info ri;

	for (size_t i = 0; roots && i < ca_bundle_len(ca); i++) {
		if (ca_root_info(ca, i, &ri) < 0 ||
		    json_array_append_new(roots,
					  json_pack("{s:s, s:I, s:I, s:s}", "subject", ri.subject,
						    "not_before", (json_int_t)ri.not_before,
						    "not_after", (json_int_t)ri.not_after, "role",
						    ri.signer ? "signer"
						    : ri.next ? "next"
							      : "old")) < 0) {
			json_decref(roots);
			roots = NULL;
		}
	}
	if (!roots)
		return json_pack("{s:s}", "error", "out of memory");
	/* min is UINT64_MAX with no agent connected: nobody to wait for,
	 * once the agents had the time to reconnect after a start */
	return json_pack("{s:s, s:I, s:o, s:b, s:I, s:I, s:I, s:b, s:o, s:I, s:b}", "trust_domain",
			 ca_trust_domain(ca), "sequence", (json_int_t)seq, "roots", roots,
			 "prepared", ca_rotation_prepared(ca), "activated_at",
			 (json_int_t)activated, "svid_ttl_max", (json_int_t)ttl_max,
			 "retire_safe_at", (json_int_t)safe_at, "retire_safe",
			 activated && now >= safe_at, "agents_min_sequence",
			 min == UINT64_MAX ? json_null() : json_integer((json_int_t)min),
			 "agents_settled_at", (json_int_t)settled_at, "agents_current",
			 min >= seq && now >= settled_at);
}

/* Opens the CA again after a rotation step and swaps it in everywhere. A
 * failure to reopen leaves the old CA in force (the step is on disk: a
 * restart picks it up); later failures are logged and leave that part on
 * the new CA's previous state (old server certificate, old bundle). */
static int ctld_ca_reload(struct ctld *d, const char **why)
{
	struct ca **kept = realloc(d->old_cas, sizeof(*kept) * (d->n_old_cas + 1));
	struct ca *ca;
	int rc;

	if (!kept)
		return -ENOMEM;
	d->old_cas = kept;
	if ((rc = ca_open(&d->cc, &ca, why)) < 0)
		return rc;
	d->old_cas[d->n_old_cas++] = d->ca;
	d->ca = ca;
	d->svc.ca = ca;
	d->svc.renew.impl = ca;
	d->config.peer.impl = ca;
	config_svc_recheck(&d->config); /* open Watch streams: the new bundle decides */
	d->metrics.ca_expiry = ca_not_after(ca);
	d->metrics.bundle_sequence = ca_bundle_sequence(ca);
	d->metrics.ca_rotations++;
	ctld_server_cert_swap(d, "ca_rotation");
	if (d->wcert)
		webhookcert_set_ca(d->wcert, ca);
	ctld_bundle_cms_set(d);
	if ((rc = ctld_bundle_set(d)) < 0)
		log_event(LOG_LVL_ERROR, "bundle_publish_failed",
			  log_pack("{s:s, s:s}", "error", strerror(-rc), "effect",
				   "agents keep the previous bundle until the next change"));
	return 0;
}

/* With --ca-secret, a rotation step done on disk is written to the Secret
 * (PUT with the version last seen). If that fails the step is undone here:
 * the Secret's state is pulled back into the files and opened, which also
 * adopts what another replica wrote meanwhile (409). -errno and msg. */
static int ctld_ca_secret_push(struct ctld *d, const char *step, char *msg, size_t len)
{
	const char *why = NULL, *why2 = NULL;
	int changed, rc = casecret_push(d->casecret, CASECRET_CALL_MS, &why);

	if (rc == 0)
		return 0;
	if (casecret_pull(d->casecret, CASECRET_CALL_MS, &changed, &why2) < 0 ||
	    ctld_ca_reload(d, &why2) < 0) {
		snprintf(msg, len,
			 "%s: done on disk, but the Secret %s cannot be written (%s) nor read "
			 "back (%s): this replica differs from the others until it restarts",
			 step, d->cfg->ca_secret, why, why2 ? why2 : "?");
		return rc;
	}
	snprintf(msg, len,
		 rc == -EEXIST ? "%s: the Secret %s changed meanwhile (another replica rotated?): "
				 "its state is in force now; check `cinchctl ca status` and retry"
			       : "%s: the Secret %s cannot be written (%s): the step is undone",
		 step, d->cfg->ca_secret, why);
	return rc;
}

/* casecret's accept: the files from the Secret open as a CA. */
static int ctld_ca_secret_accept(void *arg, const char **why)
{
	struct ctld *d = arg;
	struct ca *ca = NULL;
	int rc = ca_open(&d->cc, &ca, why);

	ca_free(ca);
	return rc;
}

/* A change of the Secret made by another replica is in the files: open it
 * and hand the new bundle to agents, the webhook and the ConfigMaps. */
static void ctld_ca_secret_changed(void *arg)
{
	struct ctld *d = arg;
	const char *why = NULL;
	int rc = ctld_ca_reload(d, &why);

	log_event(rc < 0 ? LOG_LVL_ERROR : LOG_LVL_INFO,
		  rc < 0 ? "ca_secret_reload_failed" : "ca_secret_adopted",
		  log_pack("{s:s, s:s, s:I, s:I}", "secret", d->cfg->ca_secret, "error",
			   rc < 0 ? (why ? why : strerror(-rc)) : "", "bundle_sequence",
			   (json_int_t)ca_bundle_sequence(d->ca), "roots",
			   (json_int_t)ca_bundle_len(d->ca)));
}

/* ca_rotate: one step ("prepare", "activate", "retire"; "force" lets a
 * retire through before it is safe). Answers with ca_status and "step". */
static json_t *ctld_ca_rotate(struct ctld *d, const json_t *req, unsigned peer_uid)
{
	static const char *const names[] = {
		[CA_ROTATE_PREPARE] = "prepare",
		[CA_ROTATE_ACTIVATE] = "activate",
		[CA_ROTATE_RETIRE] = "retire",
	};
	const char *name = json_string_value(json_object_get(req, "step")), *why = NULL;
	int force = json_is_true(json_object_get(req, "force"));
	time_t now = time(NULL);
	enum ca_rotate_step step;
	char msg[300];
	json_t *r;
	int rc;

	for (step = CA_ROTATE_PREPARE; step <= CA_ROTATE_RETIRE; step++)
		if (name && !strcmp(name, names[step]))
			break;
	if (step > CA_ROTATE_RETIRE)
		return json_pack("{s:s}", "error", "step must be prepare, activate or retire");
	if (step == CA_ROTATE_RETIRE && ca_activated_at(d->ca)) {
		int64_t safe_at = ca_activated_at(d->ca) + ca_clamp_ttl(d->ca, LONG_MAX);
		if ((int64_t)now < safe_at && !force) {
			snprintf(msg, sizeof(msg),
				 "retiring the old root is not safe yet: certificates it signed "
				 "may be valid until %lld (Unix time, %lld s from now: the new "
				 "root signs since %lld, lifetimes are up to %ld s); retry then, "
				 "or force it",
				 (long long)safe_at, (long long)(safe_at - now),
				 (long long)ca_activated_at(d->ca), ca_clamp_ttl(d->ca, LONG_MAX));
			return json_pack("{s:s}", "error", msg);
		}
		if ((int64_t)now < safe_at)
			log_event(LOG_LVL_WARN, "ca_retire_forced",
				  log_pack("{s:I, s:i}", "safe_at", (json_int_t)safe_at,
					   "admin_uid", (int)peer_uid));
	}
	if ((rc = ca_rotate(&d->cc, step, now, &why)) < 0)
		snprintf(msg, sizeof(msg), "%s: %s", names[step], why ? why : strerror(-rc));
	else
		why = NULL; /* ca_rotate may leave text there on success */
	if (rc == 0 && d->casecret &&
	    (rc = ctld_ca_secret_push(d, names[step], msg, sizeof(msg))) < 0)
		goto failed;
	if (rc == 0 && (rc = ctld_ca_reload(d, &why)) < 0) {
		snprintf(msg, sizeof(msg),
			 "%s: done on disk, but the CA cannot be opened again (%s): the "
			 "previous state stays in force until cinch-control restarts",
			 names[step], why ? why : strerror(-rc));
	}
failed:
	if (rc < 0) {
		log_event(LOG_LVL_ERROR, "ca_rotation_failed",
			  log_pack("{s:s, s:s}", "step", names[step], "error", msg));
		return json_pack("{s:s}", "error", msg);
	}
	log_event(LOG_LVL_INFO, "ca_rotated",
		  log_pack("{s:s, s:I, s:I, s:i}", "step", names[step], "bundle_sequence",
			   (json_int_t)ca_bundle_sequence(d->ca), "roots",
			   (json_int_t)ca_bundle_len(d->ca), "admin_uid", (int)peer_uid));
	r = ctld_ca_status(d);
	if (r && json_object_set_new(r, "step", json_string(names[step])) == 0)
		return r;
	json_decref(r);
	return json_pack("{s:s}", "error", "out of memory");
}

static char *ctld_strdup_n(const char *s, size_t *len)
{
	char *r = s ? strdup(s) : NULL;
	*len = r ? strlen(r) : 0;
	return r;
}

static void ctld_admin_cb(void *arg, const char *method, const char *path,
			  struct adminhttp_response *out)
{
	struct ctld *d = arg;
	(void)method;

	if (!strcmp(path, "/live")) {
		out->status = 200;
		out->body = ctld_strdup_n("live\n", &out->len);
	} else if (!strcmp(path, "/ready")) {
		/* With the Kubernetes sources, not before the first generation:
		 * a replica behind the Service takes agents once it has their
		 * slices. */
		int ok = d->ready && time(NULL) + 60 < ca_not_after(d->ca) &&
			 (!d->kfeed || store_version(d->store)[0]);
		out->status = ok ? 200 : 503;
		out->body = ctld_strdup_n(ok ? "ready\n" : "not ready\n", &out->len);
	} else if (!strcmp(path, "/metrics")) {
		d->metrics.webhook_cert_expiry = d->webhook ? webhook_cert_not_after(d->webhook) : 0;
		d->metrics.trust_bundle_on = d->bundlecm != NULL;
		d->metrics.trust_bundle_foreign = d->bundlecm ? bundlecm_foreign(d->bundlecm) : 0;
		out->status = 200;
		out->content_type = "text/plain; version=0.0.4; charset=utf-8";
		kwatch_totals(&d->metrics.kube_watch_errors, &d->metrics.kube_relists);
		store_counts(d->store, &d->metrics.config_generations,
			     &d->metrics.config_rejected);
		d->metrics.config_version = store_version(d->store);
		webhook_counts(d->webhook, &d->metrics.webhook_requests,
			       &d->metrics.webhook_errors);
		out->body = metrics_render(&d->metrics);
		out->len = out->body ? strlen(out->body) : 0;
	} else if (!strcmp(path, "/bundle")) {
		out->status = 200;
		out->content_type = "application/json";
		out->body = ca_bundle_json(d->ca);
		out->len = out->body ? strlen(out->body) : 0;
	} else {
		out->status = 404;
		out->body = ctld_strdup_n("not found\n", &out->len);
	}
}

/* The admin socket: token creation, the bundle, status and root rotation,
 * for cinchctl. */
static json_t *ctld_ctl_cb(void *arg, const json_t *req, unsigned peer_uid)
{
	struct ctld *d = arg;
	const char *op = json_string_value(json_object_get(req, "op"));

	if (op && !strcmp(op, "bundle")) {
		char *pem = ca_bundle_pem(d->ca), *js = ca_bundle_json(d->ca);
		json_t *r = pem && js ? json_pack("{s:s, s:o, s:I, s:s}", "pem", pem, "spiffe",
						  json_loads(js, 0, NULL), "sequence",
						  (json_int_t)ca_bundle_sequence(d->ca),
						  "trust_domain", ca_trust_domain(d->ca))
				      : NULL;
		free(pem);
		free(js);
		return r ? r : json_pack("{s:s}", "error", "out of memory");
	}
	if (op && !strcmp(op, "ca_status"))
		return ctld_ca_status(d);
	if (op && !strcmp(op, "ca_rotate"))
		return ctld_ca_rotate(d, req, peer_uid);
	if (op && !strcmp(op, "status")) {
		json_t *w = hub_status(d->hub);
		return w ? json_pack("{s:s, s:o}", "version", store_version(d->store), "workloads",
				     w)
			 : json_pack("{s:s}", "error", "out of memory");
	}
	if (!op || strcmp(op, "token_create") != 0)
		return json_pack("{s:s}", "error",
				 "unknown op (token_create, bundle, status, ca_status, ca_rotate)");

	const char *ident = json_string_value(json_object_get(req, "identity"));
	json_t *ttl_j = json_object_get(req, "ttl");
	long ttl = ttl_j ? (long)json_integer_value(ttl_j) : TOKEN_TTL_DEFAULT_S;
	char ns[128], tok[TOKEN_STR_LEN + 1], id[SPIFFE_ID_MAX + 1];
	const char *slash = ident ? strchr(ident, '/') : NULL;
	int64_t expires;

	if (!slash || (size_t)(slash - ident) >= sizeof(ns) || (ttl_j && !json_is_integer(ttl_j)))
		return json_pack("{s:s}", "error",
				 "identity must be <namespace>/<service-account>");
	memcpy(ns, ident, (size_t)(slash - ident));
	ns[slash - ident] = '\0';
	int rc = token_create(d->tokens, ns, slash + 1, ttl, time(NULL), tok, id, &expires);
	if (rc < 0)
		return json_pack("{s:s}", "error",
				 rc == -EINVAL ? "invalid identity or ttl (1s..7d)"
					       : "the token store cannot be written");
	char h[65];
	token_hash_hex(tok, strlen(tok), h);
	log_event(LOG_LVL_INFO, "token_created",
		  log_pack("{s:s, s:s, s:I, s:i}", "spiffe_id", id, "token_sha256", h,
			   "expires_at_unix", (json_int_t)expires, "admin_uid", (int)peer_uid));
	return json_pack("{s:s, s:s, s:I}", "token", tok, "identity", id, "expires_at",
			 (json_int_t)expires);
}

static void ctld_stop(struct ctld *d)
{
	d->ready = 0;
	grpc_server_stop(d->grpc);
	adminhttp_stop(d->admin);
	ctlsock_stop(d->ctl);
	webhook_stop(d->webhook);
	d->webhook = NULL;
	webhookcert_stop(d->wcert); /* before kapi_close, as kfeed */
	d->wcert = NULL;
	bundlecm_stop(d->bundlecm);
	d->bundlecm = NULL;
	casecret_stop(d->casecret);
	d->casecret = NULL;
	filesrc_stop(d->src);
	kfeed_stop(d->kfeed); /* before kapi_close: its requests are cancelled */
	d->kfeed = NULL;
	d->grpc = NULL;
	if (d->kapi)
		kapi_close(d->kapi, NULL, NULL); /* ends the token reviews in flight */
	d->kapi = NULL;
	d->admin = NULL;
	d->ctl = NULL;
	d->src = NULL;
	uv_close((uv_handle_t *)&d->sigterm, NULL);
	uv_close((uv_handle_t *)&d->sigint, NULL);
	uv_close((uv_handle_t *)&d->sighup, NULL);
	uv_close((uv_handle_t *)&d->cert_timer, NULL);
}

static void ctld_signal(uv_signal_t *s, int signum)
{
	struct ctld *d = s->data;

	log_event(LOG_LVL_INFO, "control_stopping", log_pack("{s:i}", "signal", signum));
	ctld_stop(d);
}

/* inject_config.pod_exclusions: what the store's generation in force says. */
static int ctld_pod_exclusions(void *arg, const char *ns)
{
	return store_pod_exclusions(arg, ns);
}

/* The injection webhook, on the gRPC listen host, when it has a
 * certificate: the operator's files, or one our CA issues (port 0 or
 * neither: off, *port stays 0). */
static int ctld_start_webhook(struct ctld *d, int *port)
{
	const struct ctld_config *cfg = d->cfg;
	char host[128];
	const char *why = NULL;
	int grpc_port, rc;

	if (cfg->webhook_port == 0 || (!cfg->webhook_cert && !cfg->webhook_issue))
		return 0;
	inject_config_defaults(&d->inject);
	d->inject.trust_domain = ca_trust_domain(d->ca);
	if (cfg->inject_image)
		d->inject.agent_image = cfg->inject_image;
	d->inject.native_sidecar = !cfg->inject_classic;
	d->inject.pod_exclusions = ctld_pod_exclusions;
	d->inject.pod_exclusions_arg = d->store;
	if (ctld_split_hostport(cfg->listen, host, sizeof(host), &grpc_port) < 0)
		return -EINVAL; /* checked before the gRPC server started */
	if (cfg->webhook_issue) {
		struct webhookcert_config wcc = {
			.service = cfg->webhook_service,
			.namespace = cfg->webhook_namespace,
			.lifetime_s = cfg->webhook_cert_ttl_s,
			.configuration = cfg->webhook_configuration,
			.kapi = d->kapi,
		};
		if ((rc = webhookcert_start(d->loop, &wcc, d->ca, &d->wcert, &why)) < 0) {
			log_event(LOG_LVL_ERROR, "webhook_failed",
				  log_pack("{s:i, s:s}", "port", cfg->webhook_port, "error", why));
			return rc;
		}
	}
	struct webhook_config wc = {
		.host = host,
		.port = cfg->webhook_port,
		.cert_path = cfg->webhook_cert,
		.key_path = cfg->webhook_key,
		.tls = d->wcert ? webhookcert_get0_tls(d->wcert) : NULL,
		.max_body = WEBHOOK_MAX_BODY_DEFAULT,
		.max_conns = cfg->webhook_max_conns,
		.max_per_source = cfg->webhook_max_per_source,
		.max_streams = WEBHOOK_MAX_STREAMS_DEFAULT,
		.request_ms = WEBHOOK_REQUEST_MS_DEFAULT,
		.idle_ms = WEBHOOK_IDLE_MS_DEFAULT,
		.inject = &d->inject,
	};
	if ((rc = webhook_start(d->loop, &wc, &d->webhook, port, &why)) < 0)
		log_event(LOG_LVL_ERROR, "webhook_failed",
			  log_pack("{s:i, s:s, s:s, s:s}", "port", cfg->webhook_port, "cert",
				   cfg->webhook_cert, "key", cfg->webhook_key, "error", why));
	else if (d->wcert)
		webhookcert_attach(d->wcert, d->webhook);
	return rc;
}

/* The trust-bundle ConfigMaps of the meshed namespaces (bundlecm.h). */
static int ctld_start_bundle_cms(struct ctld *d)
{
	char *pem;
	int rc;

	if (!d->cfg->trust_bundle_cms)
		return 0;
	if (!(pem = ca_bundle_pem(d->ca)))
		return -ENOMEM;
	if ((rc = bundlecm_start(d->loop, d->kapi, pem, &d->bundlecm)) < 0)
		log_event(LOG_LVL_ERROR, "trust_bundle_configmaps_failed",
			  log_pack("{s:s}", "error", strerror(-rc)));
	free(pem);
	return rc;
}

/* The Kubernetes API client (--kube-api), made before the CA is opened:
 * with --ca-secret the CA comes from the API server. */
static int ctld_start_kube_client(struct ctld *d, struct kapi_config *kc)
{
	const struct ctld_config *cfg = d->cfg;
	const char *why = NULL;
	int rc;

	rc = strcmp(cfg->kube_api, "in-cluster") == 0
		     ? kapi_config_in_cluster(kc, &why)
		     : kapi_config_explicit(kc, cfg->kube_api, cfg->kube_ca, cfg->kube_token, &why);
	if (rc == 0 && (rc = kapi_new(d->loop, kc, &d->kapi)) < 0) {
		why = "cannot create the API client";
		kapi_config_cleanup(kc);
	}
	if (rc < 0)
		log_event(LOG_LVL_ERROR, "kube_api_failed",
			  log_pack("{s:s, s:s}", "kube_api", cfg->kube_api, "error", why));
	return rc;
}

/* The CA: from the flags or the state directory (ca.h), or with
 * --ca-secret from the Secret, which the first replica creates from the
 * root ca_open() makes here and the others adopt (casecret.h). Start-up
 * waits for the API server up to CASECRET_WAIT_MS (not ready meanwhile). */
static int ctld_open_ca(struct ctld *d, const struct kapi_config *kc)
{
	const struct ctld_config *cfg = d->cfg;
	const char *why = NULL, *slash;
	char ns[64];
	int changed, rc;

	if (!cfg->ca_secret) {
		if ((rc = ca_open(&d->cc, &d->ca, &why)) < 0)
			goto ca_failed;
		return 0;
	}
	slash = strchr(cfg->ca_secret, '/'); /* checked by ctld_apply */
	snprintf(ns, sizeof(ns), "%.*s", (int)(slash - cfg->ca_secret), cfg->ca_secret);
	struct casecret_config csc = {
		.namespace = ns,
		.name = slash + 1,
		.state_dir = cfg->state_dir,
		.kc = kc,
		.accept = ctld_ca_secret_accept,
		.accept_arg = d,
	};
	if ((rc = fsutil_mkdir(cfg->state_dir, 0700)) < 0 ||
	    (rc = casecret_new(d->loop, d->kapi, &csc, &d->casecret)) < 0) {
		why = "cannot prepare the state directory";
		goto ca_failed;
	}
	rc = casecret_pull(d->casecret, CASECRET_WAIT_MS, &changed, &why);
	if (rc == -ENOENT) {
		/* none yet: a root of our own, then offered to the others */
		if ((rc = ca_open(&d->cc, &d->ca, &why)) < 0)
			goto ca_failed;
		rc = casecret_push(d->casecret, CASECRET_WAIT_MS, &why);
		if (rc == -EEXIST) { /* another replica was first: theirs */
			ca_free(d->ca);
			d->ca = NULL;
			rc = casecret_pull(d->casecret, CASECRET_WAIT_MS, &changed, &why);
		} else if (rc == 0) {
			log_event(LOG_LVL_INFO, "ca_secret_created",
				  log_pack("{s:s}", "secret", cfg->ca_secret));
		}
	}
	if (rc < 0) {
		log_event(LOG_LVL_ERROR, "ca_secret_refused",
			  log_pack("{s:s, s:s, s:s}", "secret", cfg->ca_secret, "error", why,
				   "effect", "not started; the Secret is left as it is"));
		return rc;
	}
	if (!d->ca) {
		if ((rc = ca_open(&d->cc, &d->ca, &why)) < 0)
			goto ca_failed;
		log_event(LOG_LVL_INFO, "ca_secret_adopted",
			  log_pack("{s:s, s:s, s:I, s:I}", "secret", cfg->ca_secret, "error", "",
				   "bundle_sequence", (json_int_t)ca_bundle_sequence(d->ca),
				   "roots", (json_int_t)ca_bundle_len(d->ca)));
	}
	return casecret_watch(d->casecret, ctld_ca_secret_changed, d);
ca_failed:
	log_event(LOG_LVL_ERROR, "ca_failed",
		  log_pack("{s:s, s:s}", "error", why ? why : strerror(-rc), "state_dir",
			   cfg->state_dir));
	return rc;
}

/* Service-account token authentication and the trust-bundle ConfigMaps
 * (--kube-api; none: Kubernetes tokens are refused as not configured). */
static int ctld_start_kube(struct ctld *d)
{
	const struct ctld_config *cfg = d->cfg;

	if (!cfg->kube_api)
		return 0;
	tokenreview_limit_init(&d->reviews, cfg->review_max_inflight, cfg->review_rate,
			       2 * cfg->review_rate);
	d->k8s_auth = (struct auth_k8s_config){
		.kapi = d->kapi, .trust_domain = ca_trust_domain(d->ca), .limit = &d->reviews,
		.metrics = &d->metrics};
	d->svc.k8s.impl = &d->k8s_auth;
	return ctld_start_bundle_cms(d);
}

static void ctld_sighup(uv_signal_t *s, int signum)
{
	struct ctld *d = s->data;

	log_event(LOG_LVL_INFO, "config_reload", log_pack("{s:s}", "trigger", "SIGHUP"));
	if (d->src)
		(void)filesrc_reload(d->src);
}

/* The hub, the store building its generations, and the feeders: the
 * registry and policy files, the Kubernetes pods and policy objects. */
static int ctld_start_mesh(struct ctld *d)
{
	const struct ctld_config *cfg = d->cfg;
	struct filesrc_config fc = {cfg->registry, cfg->policy};
	struct policy_error err;
	char where[300];
	int rc;

	if ((rc = hub_new(&d->hub)) < 0 ||
	    (rc = store_new(ca_trust_domain(d->ca), d->hub, &d->store)) < 0)
		return rc;
	/* before any feeder: every generation carries the bundle */
	if ((rc = ctld_bundle_set(d)) < 0)
		return rc;
	d->config = (struct config_service){
		.loop = d->loop, .hub = d->hub, .peer = {&auth_renew_ops, d->ca},
		.metrics = &d->metrics};
	list_init(&d->config.watches);
	if (d->kapi && !cfg->kube_sources_off &&
	    (rc = kfeed_start(d->loop, d->kapi, d->store, &d->kfeed)) < 0) {
		log_event(LOG_LVL_ERROR, "kube_sources_failed",
			  log_pack("{s:s}", "error", strerror(-rc)));
		return rc;
	}
	if (!cfg->registry && !cfg->policy)
		return 0;
	if ((rc = filesrc_start(d->loop, &fc, d->store, &d->src, &err)) < 0) {
		store_where(&err, where, sizeof(where));
		log_event(LOG_LVL_ERROR, "config_invalid",
			  log_pack("{s:s, s:s, s:s}", "where", where, "path", err.path, "error",
				   err.msg));
	}
	return rc;
}

static int ctld_start(struct ctld *d)
{
	const struct ctld_config *cfg = d->cfg;
	char host[128], sock[PATH_MAX];
	int port, grpc_port, admin_port, webhook_port = 0, rc;
	const char *why = NULL;

	d->cc = (struct ca_config){
		.trust_domain = cfg->trust_domain,
		.state_dir = cfg->state_dir,
		.cert_path = cfg->ca_cert,
		.key_path = cfg->ca_key,
		.ttl_default_s = cfg->svid_ttl_s,
		.ttl_min_s = cfg->ttl_min_s,
		.ttl_max_s = cfg->ttl_max_s,
	};
	if (cfg->kube_api) {
		struct kapi_config kc;
		if ((rc = ctld_start_kube_client(d, &kc)) < 0)
			return rc;
		rc = ctld_open_ca(d, &kc);
		kapi_config_cleanup(&kc);
	} else {
		rc = ctld_open_ca(d, NULL);
	}
	if (rc < 0)
		return rc;
	if ((rc = token_store_open(cfg->state_dir, ca_trust_domain(d->ca), &d->tokens)) < 0) {
		log_event(LOG_LVL_ERROR, "token_store_failed",
			  log_pack("{s:s}", "error",
				   rc == -EBADMSG ? "tokens.json is corrupt" : strerror(-rc)));
		return rc;
	}
	if (cfg->spiffe_id[0])
		snprintf(d->spiffe_id, sizeof(d->spiffe_id), "%s", cfg->spiffe_id);
	else if (spiffe_id_format(d->spiffe_id, sizeof(d->spiffe_id), ca_trust_domain(d->ca),
				  "cinch-system", "cinch-control") < 0)
		return -EINVAL;
	if (spiffe_id_validate(d->spiffe_id, strlen(d->spiffe_id), &why) < 0) {
		log_event(LOG_LVL_ERROR, "config_invalid",
			  log_pack("{s:s, s:s}", "option", "spiffe-id", "error", why));
		return -EINVAL;
	}
	if ((rc = ctld_new_tls(d, &d->tls)) < 0) {
		log_event(LOG_LVL_ERROR, "server_cert_failed",
			  log_pack("{s:s}", "error",
				   "cannot issue the server certificate (check "
				   "--server-dns and --server-ip)"));
		return rc;
	}
	d->metrics.ca_expiry = ca_not_after(d->ca);
	d->metrics.bundle_sequence = ca_bundle_sequence(d->ca);
	d->svc = (struct sign_service){
		.ca = d->ca,
		.join = {&auth_join_ops, d->tokens},
		.renew = {&auth_renew_ops, d->ca},
		.k8s = {&auth_k8s_ops, NULL},
		.metrics = &d->metrics,
	};
	if ((rc = ctld_start_kube(d)) < 0)
		return rc;

	if ((rc = ctld_start_mesh(d)) < 0)
		return rc;

	if (ctld_split_hostport(cfg->listen, host, sizeof(host), &port) < 0) {
		log_event(LOG_LVL_ERROR, "config_invalid",
			  log_pack("{s:s, s:s}", "option", "listen", "value", cfg->listen));
		return -EINVAL;
	}
	struct grpc_config gc = {
		.host = host,
		.port = port,
		.max_msg = cfg->max_msg,
		.max_queue = cfg->max_queue,
		.max_streams = cfg->max_streams,
		.max_conns = cfg->max_conns,
		.max_per_source = cfg->max_per_source,
		.max_buffered = cfg->max_buffered,
		.handshake_ms = cfg->handshake_ms,
		.idle_ms = cfg->idle_ms,
		.config = &d->config,
	};
	if ((rc = grpc_server_start(d->loop, &gc, d->tls, &d->svc, &d->grpc, &grpc_port)) < 0) {
		log_event(LOG_LVL_ERROR, "listen_failed",
			  log_pack("{s:s, s:s}", "listen", cfg->listen, "error", uv_strerror(rc)));
		return rc;
	}
	if (ctld_split_hostport(cfg->admin_listen, host, sizeof(host), &port) < 0) {
		log_event(LOG_LVL_ERROR, "config_invalid",
			  log_pack("{s:s, s:s}", "option", "admin-listen", "value",
				   cfg->admin_listen));
		return -EINVAL;
	}
	if ((rc = adminhttp_start(d->loop, host, port, ctld_admin_cb, d, &d->admin, &admin_port)) <
	    0) {
		log_event(LOG_LVL_ERROR, "listen_failed",
			  log_pack("{s:s, s:s}", "listen", cfg->admin_listen, "error",
				   uv_strerror(rc)));
		return rc;
	}
	if ((rc = ctld_start_webhook(d, &webhook_port)) < 0)
		return rc;
	snprintf(sock, sizeof(sock), "%s/admin.sock", cfg->state_dir);
	if ((rc = ctlsock_start(d->loop, sock, ctld_ctl_cb, d, &d->ctl)) < 0) {
		log_event(LOG_LVL_ERROR, "admin_socket_failed",
			  log_pack("{s:s, s:s}", "path", sock, "error", strerror(-rc)));
		return rc;
	}
	uv_timer_init(d->loop, &d->cert_timer);
	d->cert_timer.data = d;
	uv_timer_start(&d->cert_timer, ctld_renew_server_cert, CTLD_SERVER_CERT_S * 500ULL,
		       CTLD_SERVER_CERT_S * 500ULL);
	uv_signal_init(d->loop, &d->sigterm);
	uv_signal_init(d->loop, &d->sigint);
	uv_signal_init(d->loop, &d->sighup);
	d->sigterm.data = d->sigint.data = d->sighup.data = d;
	uv_signal_start(&d->sigterm, ctld_signal, SIGTERM);
	uv_signal_start(&d->sigint, ctld_signal, SIGINT);
	uv_signal_start(&d->sighup, ctld_sighup, SIGHUP);
	d->ready = 1;
	d->started_at = (int64_t)time(NULL);
	log_event(LOG_LVL_INFO, "control_started",
		  log_pack("{s:s, s:s, s:i, s:i, s:i, s:s, s:s, s:I, s:I, s:s}", "trust_domain",
			   ca_trust_domain(d->ca), "spiffe_id", d->spiffe_id, "grpc_port",
			   grpc_port, "admin_port", admin_port, "webhook_port", webhook_port,
			   "admin_socket", sock, "state_dir", cfg->state_dir, "bundle_sequence",
			   (json_int_t)ca_bundle_sequence(d->ca), "ca_not_after",
			   (json_int_t)ca_not_after(d->ca), "config_version",
			   store_version(d->store)));
	return 0;
}

int ctld_run(const struct ctld_config *cfg)
{
	struct ctld d = {.cfg = cfg, .loop = uv_default_loop()};
	int rc;

	log_init("cinch-control", stderr, (enum log_level)cfg->log_level);
	signal(SIGPIPE, SIG_IGN);
	rc = ctld_start(&d);
	if (rc < 0) {
		grpc_server_stop(d.grpc);
		adminhttp_stop(d.admin);
		ctlsock_stop(d.ctl);
		webhook_stop(d.webhook);
		webhookcert_stop(d.wcert);
		bundlecm_stop(d.bundlecm);
		casecret_stop(d.casecret);
		kfeed_stop(d.kfeed);
		if (d.kapi)
			kapi_close(d.kapi, NULL, NULL);
		filesrc_stop(d.src);
	}
	uv_run(d.loop, UV_RUN_DEFAULT);
	store_free(d.store);
	hub_free(d.hub); /* every watch went with its connection */
	mtls_ctx_unref(d.tls);
	token_store_free(d.tokens);
	ca_free(d.ca);
	for (size_t i = 0; i < d.n_old_cas; i++)
		ca_free(d.old_cas[i]);
	free(d.old_cas);
	uv_loop_close(d.loop);
	return rc < 0 ? 1 : 0;
}
