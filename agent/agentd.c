/* agentd: `cinch-agent run`: the proxy on 15001/15006, the admin port and
 * one JSON access-log line per connection, with its material (certificate,
 * key, trust bundle, policy slice) from one of two sources:
 *   static  files: --cert --key --bundle --workloads --policy;
 *   live    cinch-control (--control, live.c): a key made here, the
 *           certificate signed and renewed by the control plane, the
 *           slice streamed by it. Nothing to configure in the pod but a
 *           bootstrap token and the control plane's bundle.
 *
 * Workers (--workers N, workers.h): N event loops carry the connections;
 * everything here (signals, the admin port, the probe, reloads, live) is
 * worker 0's, the caller's loop, and new material goes to every worker.
 *
 * Reload: on SIGHUP and when the content of one of the files changes
 * (common/fswatch: not for a touch or for other files beside them),
 * everything is read and checked again; only a complete, valid set
 * replaces the material new connections use (live connections keep
 * theirs); anything invalid is logged with its reason and the last good
 * material stays. */
#include "agentd.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <uv.h>

#include "admin.h"
#include "duration.h"
#include "adminhttp.h"
#include "duration.h"
#include "fswatch.h"
#include "live.h"
#include "localaddr.h"
#include "log.h"
#include "mtls.h"
#include "numarg.h"
#include "pemfile.h"
#include "policy.h"
#include "probe.h"
#include "proxy.h"
#include "spiffe.h"
#include "svid.h"
#include "workers.h"

struct agentd {
	uv_loop_t *loop;
	const char *cert, *key, *bundle, *workloads, *policy, *workload;
	const char *trust_domain;   /* static mode: of the workloads' identities */
	int no_resumption;          /* --no-resumption: every handshake a full one */
	struct live_opts live_opts; /* live mode when control_url is set */
	struct live *live;
	struct workers *workers;
	unsigned n_workers;
	struct probe *probe; /* NULL with --no-probe */
	struct adminhttp *admin;
	struct admin_state st;
	struct fswatch *watch;
	uv_signal_t sighup, sigterm, sigint;
};

/* What /config and /metrics say of the material in use. */
static void agentd_describe(struct agentd *a, X509 *leaf, const struct policy_slice *slice)
{
	int64_t na = 0;

	svid_serial_hex(leaf, a->st.serial, sizeof(a->st.serial));
	svid_time_unix(X509_get0_notAfter(leaf), &na);
	a->st.cert_not_after = na;
	snprintf(a->st.spiffe_id, sizeof(a->st.spiffe_id), "%s", policy_slice_spiffe_id(slice));
	snprintf(a->st.workload, sizeof(a->st.workload), "%s", policy_slice_workload(slice));
	snprintf(a->st.policy_version, sizeof(a->st.policy_version), "%s",
		 policy_slice_version(slice));
	a->st.ready = 1;
}

/* Reads everything; on success, new connections use it. */
static int agentd_load(struct agentd *a, const char *event)
{
	STACK_OF(X509) *chain = pemfile_certs(a->cert), *roots = pemfile_certs(a->bundle);
	BIO *kb = BIO_new_file(a->key, "r");
	EVP_PKEY *key = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
	struct mtls_ctx *tls = NULL;
	struct policy_slice *slice = NULL;
	struct policy_error perr;
	struct sockaddr_storage addrs[64];
	size_t n_addrs = a->workload ? 0 : localaddr_list(addrs, 64);
	const char *why = NULL;
	int rc = -EINVAL;

	BIO_free(kb);
	ERR_clear_error();
	if (!chain || !roots || !key) {
		why = !chain   ? "cannot read a certificate from --cert"
		      : !roots ? "cannot read a certificate from --bundle"
			       : "cannot read a private key from --key";
		goto out;
	}
	if (mtls_ctx_new_mesh(chain, key, roots, !a->no_resumption, &tls, &why) < 0)
		goto out;
	if (policy_slice_load(&slice, a->trust_domain, a->policy, a->workloads, a->workload, addrs,
			      n_addrs, &perr) < 0) {
		log_event(LOG_LVL_ERROR, "config_rejected",
			  log_pack("{s:s, s:s, s:i, s:i, s:s, s:s}", "trigger", event, "file",
				   perr.file, "line", perr.line, "column", perr.column, "path",
				   perr.path, "error", perr.msg));
		why = NULL;
		goto out;
	}
	if (strcmp(policy_slice_spiffe_id(slice), mtls_ctx_spiffe_id(tls)) != 0) {
		why = "the certificate is not this workload's identity";
		goto out;
	}
	workers_set_material(a->workers, tls, slice);
	agentd_describe(a, sk_X509_value(chain, 0), slice);
	log_event(
		LOG_LVL_INFO, event,
		log_pack("{s:s, s:s, s:s, s:s}", "workload", policy_slice_workload(slice),
			 "spiffe_id", mtls_ctx_spiffe_id(tls), "policy_version",
			 policy_slice_version(slice), "mtls",
			 policy_slice_mtls(slice) == POLICY_MTLS_STRICT ? "STRICT" : "PERMISSIVE"));
	rc = 0;
out:
	if (rc < 0 && why)
		log_event(LOG_LVL_ERROR, "config_rejected",
			  log_pack("{s:s, s:s}", "trigger", event, "error", why));
	sk_X509_pop_free(chain, X509_free);
	sk_X509_pop_free(roots, X509_free);
	EVP_PKEY_free(key);
	mtls_ctx_unref(tls);
	policy_slice_unref(slice);
	return rc;
}

/* One connection ended, on `worker`'s loop (its thread). */
static void agentd_access(void *arg, unsigned worker, const struct proxy_record *r)
{
	struct agentd *a = arg;

	const struct verdict_refusal *pr = r->peer_refusal;
	json_t *line;

	admin_count(&a->st, worker, r);
	line = log_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:f, s:s}",
			"direction", r->direction, "src", r->src, "dst", r->dst, "local_id",
			r->local_id, "peer_id", r->peer_id, "verdict", r->verdict, "rule", r->rule,
			"reason", r->reason, "tls_version", r->tls_version, "cipher", r->cipher,
			"bytes_out", (json_int_t)r->bytes_out, "bytes_in", (json_int_t)r->bytes_in,
			"duration_s", r->duration_s, "end", r->end);
	if (a->n_workers > 1 && line)
		json_object_set_new(line, "worker", json_integer(worker));
	/* A connection error, by its name (the verdict stays the policy's). */
	if (r->error != CONN_ER_NONE && line) {
		json_object_set_new(line, "error", json_string(conn_reason_name(r->error)));
		json_object_set_new(line, "state", json_string(r->state));
	}
	/* A Service call: which Service, and the endpoint chosen. */
	if (r->service && r->service[0] && line) {
		json_object_set_new(line, "service", json_string(r->service));
		json_object_set_new(line, "endpoint", json_string(r->endpoint));
	}
	/* The destination's reason, as its agent told us (docs/agent.md). */
	if (pr && line)
		json_object_set_new(line, "peer_refusal",
				    log_pack("{s:s, s:i, s:s, s:s}", "by", r->peer_id, "port",
					     (int)pr->port, "code", verdict_code_name(pr->code),
					     "reason", pr->reason));
	log_event(LOG_LVL_INFO, "connection", line);
}

/* Live mode: the material changed (NULL: the certificate expired). */
static void agentd_material(void *arg, const struct live_material *m)
{
	struct agentd *a = arg;

	if (!m) {
		workers_set_material(a->workers, NULL, NULL);
		a->st.ready = 0;
		return; /* svidsrc logged why */
	}
	workers_set_material(a->workers, m->tls, m->slice);
	agentd_describe(a, m->leaf, m->slice);
	log_event(LOG_LVL_INFO, "material_applied",
		  log_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "workload",
			   policy_slice_workload(m->slice), "spiffe_id", a->st.spiffe_id,
			   "policy_version", a->st.policy_version, "serial", a->st.serial,
			   "cert_not_after", (json_int_t)a->st.cert_not_after, "bundle_sequence",
			   (json_int_t)m->bundle_sequence));
}

/* Live mode: the control plane's address may come without a scheme (the
 * injector passes "host:port"); the identity and workload expected of it
 * come from the pod's downward-API environment when it is there. */
static int agentd_start_live(struct agentd *a, const char *control, const char *token_kind,
			     const char *trust_domain)
{
	static char url[512], want_id[512], workload[512];
	const char *ns = getenv("CINCH_POD_NAMESPACE"), *sa = getenv("CINCH_SERVICE_ACCOUNT"),
		   *pod = getenv("CINCH_POD_NAME"), *why = NULL;
	struct live_opts *o = &a->live_opts;
	int rc;

	if ((size_t)snprintf(url, sizeof(url), "%s%s", strstr(control, "://") ? "" : "https://",
			     control) >= sizeof(url))
		why = "--control is too long";
	else if (!token_kind || strcmp(token_kind, "join") == 0)
		o->cred = SVIDSRC_JOIN_TOKEN;
	else if (strcmp(token_kind, "kubernetes") == 0)
		o->cred = SVIDSRC_K8S_TOKEN;
	else
		why = "--token-kind is join or kubernetes";
	if (why) {
		log_event(LOG_LVL_ERROR, "usage", log_pack("{s:s}", "error", why));
		return -EINVAL;
	}
	o->control_url = url;
	if (trust_domain && ns && sa && *ns && *sa &&
	    (size_t)snprintf(want_id, sizeof(want_id), "spiffe://%s/ns/%s/sa/%s", trust_domain, ns,
			     sa) < sizeof(want_id))
		o->spiffe_id = want_id;
	if (!a->workload && ns && pod && *ns && *pod &&
	    (size_t)snprintf(workload, sizeof(workload), "%s/%s", ns, pod) < sizeof(workload))
		a->workload = workload;
	o->workload = a->workload;
	o->on_material = agentd_material;
	o->arg = a;
	if ((rc = live_start(a->loop, o, &a->live, &why)) < 0) {
		log_event(LOG_LVL_ERROR, "agent_start_failed", log_pack("{s:s}", "error", why));
		return rc;
	}
	a->st.live = a->live;
	log_event(LOG_LVL_INFO, "agent_started",
		  log_pack("{s:s, s:s, s:s, s:s}", "mode", "live", "control", url, "workload",
			   a->workload ? a->workload : "(found by the control plane)", "spiffe_id",
			   o->spiffe_id ? o->spiffe_id : "(granted)"));
	return 0;
}

/* Probe IPv6 interception where the loopback has ::1 (init installs the
 * ip6tables rules wherever IPv6 exists). */
static int agentd_has_ipv6(void)
{
	struct sockaddr_storage addrs[64];
	size_t n = localaddr_list(addrs, 64);
	for (size_t i = 0; i < n; i++)
		if (addrs[i].ss_family == AF_INET6 &&
		    IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&addrs[i])->sin6_addr))
			return 1;
	return 0;
}

static void agentd_reload_files(void *arg)
{
	agentd_load(arg, "config_reloaded");
}

static void agentd_signal(uv_signal_t *s, int signum)
{
	struct agentd *a = s->data;

	if (signum == SIGHUP) {
		if (!a->live)
			agentd_load(a, "config_reloaded");
		return;
	}
	log_event(LOG_LVL_INFO, "agent_stopping", log_pack("{s:i}", "signal", signum));
	probe_stop(a->probe);
	workers_stop(a->workers);
	adminhttp_stop(a->admin);
	if (a->watch)
		fswatch_stop(a->watch);
	a->st.live = NULL;
	if (a->live)
		live_stop(a->live);
	uv_close((uv_handle_t *)&a->sighup, NULL);
	uv_close((uv_handle_t *)&a->sigterm, NULL);
	uv_close((uv_handle_t *)&a->sigint, NULL);
}

static void agentd_usage(FILE *out)
{
	fprintf(out,
		"usage: cinch-agent run --control HOST:PORT --token-file FILE\n"
		"                       --control-bundle FILE [options]\n"
		"       cinch-agent run --cert FILE --key FILE --bundle FILE\n"
		"                       --workloads PATH --policy PATH [options]\n"
		"\n"
		"Live mode: certificate and policy from cinch-control (the key is made\n"
		"here and never leaves; the certificate is renewed at half its life):\n"
		"  --control ADDR       cinch-control's gRPC address (https://host:port)\n"
		"  --token-file FILE    the bootstrap token (read at every attempt)\n"
		"  --token-kind KIND    join (default) or kubernetes (projected token)\n"
		"  --control-bundle FILE  PEM roots that verify the control plane\n"
		"  --trust-domain TD    with $CINCH_POD_NAMESPACE and $CINCH_SERVICE_ACCOUNT:\n"
		"                       the identity the certificate must carry\n"
		"  --cert-ttl DURATION  certificate lifetime asked for, whole seconds: 3600,\n"
		"                       1h (default: control's)\n"
		"Static mode: from files (reloaded on SIGHUP and when they change; live\n"
		"connections keep what they started with):\n"
		"  --cert FILE          this workload's certificate chain (PEM, leaf first)\n"
		"  --key FILE           its private key\n"
		"  --bundle FILE        the trust bundle (PEM roots)\n"
		"  --workloads PATH     the Workload documents (file or directory)\n"
		"  --policy PATH        the policy documents (file or directory)\n"
		"  --trust-domain TD    of the workloads' identities (cluster.local)\n"
		"Both:\n"
		"  --workload NS/NAME   which workload this is (default: found by address;\n"
		"                       live: $CINCH_POD_NAMESPACE/$CINCH_POD_NAME)\n"
		"  --outbound-port N    (15001)   --inbound-port N (15006)\n"
		"  --admin-port N       /live /ready /metrics; /config on loopback only (0: none)\n"
		"                       (15000; 0: none)\n"
		"  --idle-timeout MS    (300000; or a duration: 5m)  --log-level LEVEL (info)\n"
		"  --mtls-mode MODE     STRICT: plaintext refused even where the policy\n"
		"                       is PERMISSIVE; PERMISSIVE: the policy decides\n"
		"  --max-conns N        open connections at most; more are refused (8192)\n"
		"  --outbound-reserve N of those, places only the app's outbound\n"
		"                       connections may take (a quarter of --max-conns)\n"
		"  --max-handshakes N   inbound connections in their handshake at once, half\n"
		"                       of them from one address at most; others wait (256)\n"
		"  --max-pending-per-source N\n"
		"                       inbound connections from one address not through\n"
		"                       their handshake yet; more are refused (half the\n"
		"                       places inbound may take)\n"
		"  --handshake-timeout DURATION\n"
		"                       from accept to the end of the handshake (10s)\n"
		"  --on-policy-change close|keep\n"
		"                       open connections a new policy denies: closed\n"
		"                       (default) or left to finish\n"
		"  --probe-interval MS  how often the self-probe checks interception (10000;\n"
		"                       or a duration: 10s; at least 100ms)\n"
		"  --peer-metrics N     count connections by peer identity in /metrics\n"
		"                       for the first N identities (at most 64; others:\n"
		"                       peer=\"other\"); 0, the default: off\n"
		"  --no-probe           UNSAFE: ready without checking that the redirect\n"
		"                       rules work (for runs without `cinch-agent init`)\n"
		"  --no-resumption      static mode: no TLS session resumption, every\n"
		"                       handshake a full one (for benchmarks)\n"
		"  --workers N|auto     event loops (threads) carrying connections, the\n"
		"                       kernel spreading them over the listeners (1..64;\n"
		"                       auto: the CPUs the agent may run on) (1)\n");
}

/* A duration flag that does not parse: named in one line, exit 2. */
static int agentd_bad_duration(const char *flag, const char *value)
{
	fprintf(stderr,
		"cinch-agent run: --%s: not a duration (300ms, 5s, 10m, 1h): %s\n"
		"Run 'cinch-agent run --help' for usage.\n",
		flag, value);
	return 2;
}

int agentd_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"cert", required_argument, NULL, 'c'},
		{"key", required_argument, NULL, 'k'},
		{"bundle", required_argument, NULL, 'b'},
		{"workloads", required_argument, NULL, 'w'},
		{"policy", required_argument, NULL, 'p'},
		{"workload", required_argument, NULL, 'W'},
		{"outbound-port", required_argument, NULL, 'o'},
		{"inbound-port", required_argument, NULL, 'i'},
		{"idle-timeout", required_argument, NULL, 't'},
		{"admin-port", required_argument, NULL, 'a'},
		{"log-level", required_argument, NULL, 'l'},
		{"mtls-mode", required_argument, NULL, 'M'},
		{"control", required_argument, NULL, 'C'},
		{"token-file", required_argument, NULL, 'T'},
		{"token-kind", required_argument, NULL, 'K'},
		{"control-bundle", required_argument, NULL, 'B'},
		{"trust-domain", required_argument, NULL, 'D'},
		{"cert-ttl", required_argument, NULL, 'L'},
		{"max-conns", required_argument, NULL, 'm'},
		{"outbound-reserve", required_argument, NULL, 'R'},
		{"max-handshakes", required_argument, NULL, 'H'},
		{"max-pending-per-source", required_argument, NULL, 'S'},
		{"handshake-timeout", required_argument, NULL, 'X'},
		{"on-policy-change", required_argument, NULL, 'P'},
		{"probe-interval", required_argument, NULL, 'r'},
		{"no-probe", no_argument, NULL, 'N'},
		{"no-resumption", no_argument, NULL, 'Z'},
		{"peer-metrics", required_argument, NULL, 'E'},
		{"workers", required_argument, NULL, 'n'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct agentd a = {.loop = uv_default_loop()};
	struct proxy_config pc = {.host = "::",
				  .outbound_port = 15001,
				  .inbound_port = 15006,
				  .connect_ms = 10000,
				  .handshake_ms = 10000,
				  .idle_ms = 300000,
				  .max_conns = 8192,
				  .max_handshakes = 256};
	struct probe_config prc = {.interval_ms = 10000, .timeout_ms = 3000};
	int no_probe = 0, reserve_set = 0, per_source_set = 0;
	unsigned reserve = 0;
	long long ms;
	enum log_level lvl = LOG_LVL_INFO;
	uint16_t admin_port = 15000;
	const char *control = NULL, *token_kind = NULL, *trust_domain = NULL;
	int c;

	optind = 1;
	int li = 0;
	while ((c = getopt_long(argc, argv, "h", opts, &li)) != -1) {
		switch (c) {
		case 'c':
			a.cert = optarg;
			break;
		case 'k':
			a.key = optarg;
			break;
		case 'b':
			a.bundle = optarg;
			break;
		case 'w':
			a.workloads = optarg;
			break;
		case 'p':
			a.policy = optarg;
			break;
		case 'W':
			a.workload = optarg;
			break;
		case 'o':
			if (numarg_port("cinch-agent run", "outbound-port", optarg,
					&pc.outbound_port) < 0)
				return 2;
			break;
		case 'i':
			if (numarg_port("cinch-agent run", "inbound-port", optarg,
					&pc.inbound_port) < 0)
				return 2;
			break;
		case 't':
			if ((ms = duration_ms_bare_ms(optarg)) < 1 || ms > UINT_MAX)
				return agentd_bad_duration("idle-timeout", optarg);
			pc.idle_ms = (unsigned)ms;
			break;
		case 'a': { /* 0: no admin port (docs/agent.md) */
			long long port;
			if (numarg_flag("cinch-agent run", "admin-port", optarg, 0, 65535, &port) < 0)
				return 2;
			admin_port = (uint16_t)port;
			break;
		}
		case 'l':
			if (log_level_parse(optarg, &lvl) < 0) {
				agentd_usage(stderr);
				return 2;
			}
			break;
		case 'M':
			/* the pod's cinch.dev/mtls-mode annotation: it may require
			 * STRICT where the mesh is PERMISSIVE, never the reverse
			 * (opening a pod to plaintext is the MeshPolicy's call) */
			if (strcmp(optarg, "STRICT") && strcmp(optarg, "PERMISSIVE")) {
				agentd_usage(stderr);
				return 2;
			}
			pc.force_strict = !strcmp(optarg, "STRICT");
			break;
		case 'C':
			control = optarg;
			break;
		case 'T':
			a.live_opts.token_path = optarg;
			break;
		case 'K':
			token_kind = optarg;
			break;
		case 'B':
			a.live_opts.control_bundle_path = optarg;
			break;
		case 'D':
			trust_domain = optarg;
			break;
		case 'L':
			if ((ms = duration_ms(optarg)) < 1000 || ms % 1000)
				return agentd_bad_duration("cert-ttl", optarg);
			a.live_opts.ttl_seconds = ms / 1000;
			break;
		case 'm':
		case 'R':
		case 'H':
		case 'S': {
			long long v;
			if (numarg_flag("cinch-agent run", opts[li].name, optarg, c != 'R', 1000000,
					&v) < 0)
				return 2;
			reserve_set |= c == 'R';
			per_source_set |= c == 'S';
			*(c == 'm'   ? &pc.max_conns
			  : c == 'R' ? &reserve
			  : c == 'H' ? &pc.max_handshakes
				     : &pc.max_pending_per_source) = (unsigned)v;
			break;
		}
		case 'X':
			if ((ms = duration_ms(optarg)) < 100 || ms > 600000) {
				fprintf(stderr,
					"cinch-agent run: --handshake-timeout \"%s\": expected a "
					"duration from 100ms to 10m (\"500ms\", \"5s\", \"1m\")\n"
					"Run 'cinch-agent run --help' for usage.\n",
					optarg);
				return 2;
			}
			pc.handshake_ms = (unsigned)ms;
			break;
		case 'P':
			if (strcmp(optarg, "close") && strcmp(optarg, "keep")) {
				agentd_usage(stderr);
				return 2;
			}
			pc.keep_on_policy_change = !strcmp(optarg, "keep");
			break;
		case 'r':
			if ((ms = duration_ms_bare_ms(optarg)) < 100 || ms > UINT_MAX)
				return agentd_bad_duration("probe-interval", optarg);
			prc.interval_ms = (unsigned)ms;
			break;
		case 'N':
			no_probe = 1;
			break;
		case 'Z':
			a.no_resumption = 1;
			break;
		case 'E': {
			long long v;
			if (numarg_flag("cinch-agent run", "peer-metrics", optarg, 0,
					ADMIN_MAX_PEERS, &v) < 0)
				return 2;
			a.st.peer_cap = (unsigned)v;
			break;
		}
		case 'n': {
			long long v;
			if (!strcmp(optarg, "auto"))
				v = workers_default();
			else if (numarg_flag("cinch-agent run", "workers", optarg, 1, WORKERS_MAX,
					     &v) < 0)
				return 2;
			a.n_workers = (unsigned)v;
			break;
		}
		case 'h':
			agentd_usage(stdout);
			return 0;
		default: /* getopt named the flag */
			fputs("Run 'cinch-agent run --help' for usage.\n", stderr);
			return 2;
		}
	}
	int is_static = a.cert || a.key || a.bundle || a.workloads || a.policy;
	int is_live = control || a.live_opts.token_path || a.live_opts.control_bundle_path;
	if (is_static == is_live || !pc.outbound_port || !pc.inbound_port || optind < argc ||
	    (is_static && (!a.cert || !a.key || !a.bundle || !a.workloads || !a.policy)) ||
	    (is_live &&
	     (!control || !a.live_opts.token_path || !a.live_opts.control_bundle_path))) {
		agentd_usage(stderr);
		return 2;
	}
	pc.outbound_reserve = reserve_set ? reserve : pc.max_conns / 4;
	if (pc.outbound_reserve >= pc.max_conns) {
		fprintf(stderr, "cinch-agent run: --outbound-reserve must be below --max-conns\n");
		return 2;
	}
	/* Half the inbound places: one address alone never keeps the others
	 * out, and a caller's burst of new connections waits rather than being
	 * refused. */
	if (!per_source_set)
		pc.max_pending_per_source = (pc.max_conns - pc.outbound_reserve + 1) / 2;
	log_init("cinch-agent", stderr, lvl);
	const char *why = NULL;
	if (trust_domain && spiffe_td_validate(trust_domain, strlen(trust_domain), &why) < 0) {
		log_event(LOG_LVL_ERROR, "usage",
			  log_pack("{s:s, s:s, s:s}", "error",
				   "--trust-domain is not a trust domain", "trust_domain",
				   trust_domain, "why", why));
		return 2;
	}
	a.trust_domain = trust_domain ? trust_domain : POLICY_TRUST_DOMAIN_DEFAULT;
	signal(SIGPIPE, SIG_IGN);
	prc.ipv6 = agentd_has_ipv6();
	if (no_probe) {
		a.st.intercept = ADMIN_IC_SKIPPED;
		log_event(LOG_LVL_WARN, "interception_not_probed",
			  log_pack("{s:s}", "effect",
				   "UNSAFE: ready without checking that the pod's traffic goes "
				   "through the agent (--no-probe)"));
	} else if (probe_start(a.loop, &prc, admin_probed, &a.st, &a.probe) < 0) {
		return 1;
	}
	pc.admin_port = admin_port;
	if (!a.n_workers) /* docs/agent.md: why not one per CPU by default yet */
		a.n_workers = 1;
	if (admin_counts_init(&a.st, a.n_workers) < 0) {
		log_event(LOG_LVL_ERROR, "agent_start_failed", log_pack("{s:s}", "error", "out of memory"));
		probe_stop(a.probe);
		uv_run(a.loop, UV_RUN_DEFAULT);
		return 1;
	}
	int rc = workers_start(a.loop, a.n_workers, &pc, a.probe, agentd_access, &a, &a.workers);
	if (rc < 0) {
		log_event(LOG_LVL_ERROR, "listen_failed",
			  log_pack("{s:s, s:i, s:i}", "error", uv_strerror(rc), "outbound_port",
				   pc.outbound_port, "inbound_port", pc.inbound_port));
		probe_stop(a.probe);
		uv_run(a.loop, UV_RUN_DEFAULT);
		admin_counts_free(&a.st);
		return 1;
	}
	a.st.outbound_port = pc.outbound_port;
	a.st.inbound_port = pc.inbound_port;
	a.st.admin_port = admin_port;
	if (admin_port &&
	    (rc = admin_start(a.loop, "::", admin_port, &a.st, workers_proxy0(a.workers),
			      &a.admin)) < 0) {
		log_event(LOG_LVL_ERROR, "listen_failed",
			  log_pack("{s:s, s:i}", "error", uv_strerror(rc), "port", admin_port));
		probe_stop(a.probe);
		workers_stop(a.workers);
		uv_run(a.loop, UV_RUN_DEFAULT);
		admin_counts_free(&a.st);
		return 1;
	}
	/* Watched before the first read: see fswatch.h. */
	const char *paths[] = {a.cert, a.key, a.bundle, a.workloads, a.policy};
	if (is_static &&
	    fswatch_start(a.loop, paths, 5, 200, agentd_reload_files, &a, &a.watch) < 0)
		log_event(LOG_LVL_WARN, "watch_failed",
			  log_pack("{s:s}", "effect", "files are reloaded on SIGHUP only"));
	if (is_live ? agentd_start_live(&a, control, token_kind, trust_domain) < 0
		    : agentd_load(&a, "agent_started") < 0) {
		fswatch_stop(a.watch);
		if (a.admin)
			adminhttp_stop(a.admin);
		probe_stop(a.probe);
		workers_stop(a.workers);
		uv_run(a.loop, UV_RUN_DEFAULT);
		admin_counts_free(&a.st);
		return 1;
	}
	uv_signal_init(a.loop, &a.sighup);
	uv_signal_init(a.loop, &a.sigterm);
	uv_signal_init(a.loop, &a.sigint);
	a.sighup.data = a.sigterm.data = a.sigint.data = &a;
	uv_signal_start(&a.sighup, agentd_signal, SIGHUP);
	uv_signal_start(&a.sigterm, agentd_signal, SIGTERM);
	uv_signal_start(&a.sigint, agentd_signal, SIGINT);
	uv_run(a.loop, UV_RUN_DEFAULT); /* the workers joined as it ran out */
	admin_counts_free(&a.st);
	uv_loop_close(a.loop);
	return 0;
}
