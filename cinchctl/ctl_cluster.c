/* ctl_cluster: what cinchctl reads from a cluster through its API server
 * (ctl_kube): `cinchctl check`, the agents of the mesh for `cinchctl
 * status --cluster`, and the policy and workloads for `cinchctl policy
 * ... --from-cluster`.
 *
 * Policies are the AllowPolicy, MeshPolicy and EgressPolicy objects of
 * every namespace, turned into documents as cinch-control's CRD source
 * does (crdsource_document); workloads are the injected pods, turned into
 * Workloads as its pod source does (podsource_workload). Both go to the
 * policy library as a v1 List in an anonymous memory file, so they are
 * read and validated exactly like files.
 *
 * An agent is asked through the API server's pod proxy
 * (/api/v1/namespaces/NS/pods/POD:15000/proxy/metrics): cinch_agent_ready
 * and cinch_agent_policy_info{version} say whether it is ready and which
 * configuration it enforces. A control replica through the same proxy on
 * its admin port (15014/ready). No port of the cluster is reached
 * directly, so this works from wherever kubectl works. */
#include "ctl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <openssl/base64.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "crdsource.h"
#include "podsource.h"
#include "policy.h"
#include "svid.h"

#define CTL_NS		     "cinch-system"
#define CTL_CONTROL	     "cinch-control"
#define CTL_WEBHOOK	     "cinch-injector"
#define CTL_BUNDLE_CM	     "cinch-trust-bundle"
#define CTL_AGENT_ADMIN_PORT 15000
#define CTL_CONTROL_ADMIN    15014
/* The control renews its webhook certificate at half of its life (a day
 * by default): an hour left means renewals are failing. */
#define CTL_WEBHOOK_CERT_WARN_S 3600
#define CTL_CERT_WARN_S		(7 * 86400)
/* Certificates live for hours and are checked to the second: a few
 * seconds of skew are noise, a minute makes fresh certificates "not yet
 * valid" on one side. */
#define CTL_SKEW_WARN_S 5
#define CTL_SKEW_FAIL_S 60

static const char *const ctl_crd_plurals[] = {"allowpolicies", "meshpolicies", "egresspolicies",
					       "guardrailpolicies"};

/* What the policy set is read from: the policy CRDs, and the Namespaces
 * for their labels (namespaceSelector). */
static const char *const ctl_policy_lists[] = {
	"/apis/cinch.dev/v1alpha1/allowpolicies",     "/apis/cinch.dev/v1alpha1/meshpolicies",
	"/apis/cinch.dev/v1alpha1/egresspolicies",    "/apis/cinch.dev/v1alpha1/guardrailpolicies",
	"/api/v1/namespaces",
};

/* `v` as a v1 List in a new memory file; its path in `path`. */
static int ctl_cluster_memfile(json_t *items, char *path, size_t len)
{
	json_t *list =
		json_pack("{s:s, s:s, s:O}", "apiVersion", "v1", "kind", "List", "items", items);
	char *text = list ? json_dumps(list, JSON_INDENT(1)) : NULL;
	int fd = text ? memfd_create("cinchctl-cluster", 0) : -1;
	int rc = -1;

	if (fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text)) {
		snprintf(path, len, "/proc/self/fd/%d", fd); /* open until exit */
		rc = 0;
	} else if (fd >= 0) {
		close(fd);
	}
	free(text);
	json_decref(list);
	return rc;
}

int ctl_cluster_policy(struct ctl_kube *k, char *policy, char *workloads, size_t len)
{
	json_t *docs = json_array(), *ws = json_array(), *l, *o;
	char path[128], why[300];
	size_t i;
	int rc = -1;

	for (size_t p = 0; p < sizeof(ctl_policy_lists) / sizeof(ctl_policy_lists[0]); p++) {
		snprintf(path, sizeof(path), "%s", ctl_policy_lists[p]);
		if (!(l = ctl_kube_get(k, path, why, sizeof(why)))) {
			fprintf(stderr, "cinchctl: GET %s: %s\n", path, why);
			goto out;
		}
		/* "NamespaceList" lists Namespaces */
		const char *lkind = json_string_value(json_object_get(l, "kind"));
		size_t n = lkind ? strlen(lkind) : 0;
		char kind[64] = "";
		if (n > 4 && n - 4 < sizeof(kind) && !strcmp(lkind + n - 4, "List"))
			memcpy(kind, lkind, n - 4);
		json_array_foreach(json_object_get(l, "items"), i, o)
		{
			json_t *d = crdsource_list_document(
				o, kind[0] ? kind : NULL,
				json_string_value(json_object_get(l, "apiVersion")));
			if (d)
				json_array_append_new(docs, d);
		}
		json_decref(l);
	}
	if (!(l = ctl_kube_get(k, "/api/v1/pods", why, sizeof(why)))) {
		fprintf(stderr, "cinchctl: GET /api/v1/pods: %s\n", why);
		goto out;
	}
	json_array_foreach(json_object_get(l, "items"), i, o)
	{
		json_t *w = podsource_workload(o);
		if (w)
			json_array_append_new(ws, w);
	}
	json_decref(l);
	if (ctl_cluster_memfile(docs, policy, len) < 0 ||
	    ctl_cluster_memfile(ws, workloads, len) < 0) {
		fprintf(stderr, "cinchctl: cannot hold what the cluster sent\n");
		goto out;
	}
	rc = 0;
out:
	json_decref(docs);
	json_decref(ws);
	return rc;
}

/* The value of the sample `name` (no labels), or of label `label` of it,
 * in Prometheus text `t`; NULL when absent. Copied into buf. */
static const char *ctl_metric(const char *t, const char *name, const char *label, char *buf,
			      size_t len)
{
	size_t nl = strlen(name);

	for (const char *line = t; line && *line;
	     line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		if (strncmp(line, name, nl) || (line[nl] != ' ' && line[nl] != '{'))
			continue;
		const char *v;
		if (label) {
			char key[64];
			snprintf(key, sizeof(key), "%s=\"", label);
			if (!(v = strstr(line, key)) || v > strchr(line, '\n'))
				continue;
			v += strlen(key);
			snprintf(buf, len, "%.*s", (int)strcspn(v, "\"\n"), v);
		} else {
			v = line + nl + 1;
			snprintf(buf, len, "%.*s", (int)strcspn(v, "\n"), v);
		}
		return buf;
	}
	return NULL;
}

/* What a pod or its agent says is shown on a terminal: every byte that
 * is not printable ASCII becomes '?', so no escape sequence or newline
 * from an agent's metrics (or a name) reaches the operator's screen. */
static json_t *ctl_cluster_text(const char *s)
{
	char buf[256];
	size_t i;

	for (i = 0; s[i] && i + 1 < sizeof(buf); i++)
		buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	buf[i] = '\0';
	return json_string(buf);
}

json_t *ctl_cluster_agents(struct ctl_kube *k)
{
	char why[300], path[700], buf[256];
	json_t *pods = ctl_kube_get(k, "/api/v1/pods", why, sizeof(why)), *out, *p;
	size_t i;

	if (!pods) {
		fprintf(stderr, "cinchctl: GET /api/v1/pods: %s\n", why);
		return NULL;
	}
	out = json_array();
	json_array_foreach(json_object_get(pods, "items"), i, p)
	{
		json_t *w = podsource_workload(p);
		if (!w)
			continue;
		const json_t *m = json_object_get(w, "metadata");
		const char *ns = json_string_value(json_object_get(m, "namespace"));
		const char *name = json_string_value(json_object_get(m, "name"));
		char id[600];
		long code = 0;
		snprintf(id, sizeof(id), "spiffe://" POLICY_TRUST_DOMAIN_DEFAULT "/ns/%s/sa/%s", ns,
			 json_string_value(
				 json_object_get(json_object_get(w, "spec"), "serviceAccount")));
		snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s:%d/proxy/metrics", ns,
			 name, CTL_AGENT_ADMIN_PORT);
		why[0] = '\0';
		char *t = ctl_kube_text(k, path, &code, why, sizeof(why));
		const char *ready = t && code == 200 ? ctl_metric(t, "cinch_agent_ready", NULL, buf,
								  sizeof(buf))
						     : NULL;
		int is_ready = ready && !strcmp(ready, "1");
		json_t *a = json_pack("{s:o, s:o, s:o, s:b}", "namespace", ctl_cluster_text(ns),
				      "pod", ctl_cluster_text(name), "spiffe_id",
				      ctl_cluster_text(id), "ready", is_ready);
		if (t && code == 200 &&
		    ctl_metric(t, "cinch_agent_policy_info", "version", buf, sizeof(buf)))
			json_object_set_new(a, "version", ctl_cluster_text(buf));
		if (code != 200 || !ready)
			json_object_set_new(
				a, "error",
				ctl_cluster_text(why[0] ? why
							: "no cinch_agent_ready in its metrics"));
		json_array_append_new(out, a);
		free(t);
		json_decref(w);
	}
	json_decref(pods);
	return out;
}

/* ---- check */

static unsigned ctl_check_failed;

static void __attribute__((format(printf, 3, 4)))
ctl_check_line(const char *level, const char *name, const char *fmt, ...)
{
	va_list ap;

	printf("%-4s  %s: ", level, name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	if (!strcmp(level, "FAIL"))
		ctl_check_failed++;
}

static int ctl_condition(const json_t *obj, const char *type)
{
	const json_t *c;
	size_t i;

	json_array_foreach(json_object_get(json_object_get(obj, "status"), "conditions"), i, c)
	{
		if (!strcmp(json_string_value(json_object_get(c, "type")) ?: "", type))
			return !strcmp(json_string_value(json_object_get(c, "status")) ?: "",
				       "True");
	}
	return 0;
}

static void ctl_check_crds(struct ctl_kube *k)
{
	char path[200], why[300], name[64];

	for (size_t i = 0; i < sizeof(ctl_crd_plurals) / sizeof(ctl_crd_plurals[0]); i++) {
		snprintf(name, sizeof(name), "%s.cinch.dev", ctl_crd_plurals[i]);
		snprintf(path, sizeof(path),
			 "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/%s", name);
		json_t *crd = ctl_kube_get(k, path, why, sizeof(why));
		if (!crd)
			ctl_check_line("FAIL", "crd", "%s: %s", name, why);
		else if (!ctl_condition(crd, "Established"))
			ctl_check_line("FAIL", "crd", "%s: not Established", name);
		else
			ctl_check_line("ok", "crd", "%s: Established", name);
		json_decref(crd);
	}
}

static json_int_t ctl_int(const json_t *o, const char *a, const char *b)
{
	return json_integer_value(json_object_get(json_object_get(o, a), b));
}

static void ctl_check_control(struct ctl_kube *k)
{
	char why[300], path[600], sel[400] = "";
	json_t *d = ctl_kube_get(k, "/apis/apps/v1/namespaces/" CTL_NS "/deployments/" CTL_CONTROL,
				 why, sizeof(why));
	const char *key;
	json_t *v;

	if (!d) {
		ctl_check_line("FAIL", "control", "deployment " CTL_NS "/" CTL_CONTROL ": %s", why);
		return;
	}
	json_int_t want = ctl_int(d, "spec", "replicas"),
		   ready = ctl_int(d, "status", "readyReplicas");
	json_int_t updated = ctl_int(d, "status", "updatedReplicas");
	json_int_t gen = ctl_int(d, "metadata", "generation");
	json_int_t seen = ctl_int(d, "status", "observedGeneration");
	if (ready < 1)
		ctl_check_line("FAIL", "control", "no replica ready (%lld wanted)",
			       (long long)want);
	else if (ready < want || updated < want || seen < gen)
		ctl_check_line(
			"warn", "control",
			"%lld of %lld replicas ready, %lld updated, generation %lld observed "
			"%lld (a rollout in progress?)",
			(long long)ready, (long long)want, (long long)updated, (long long)gen,
			(long long)seen);
	else
		ctl_check_line("ok", "control", "%lld of %lld replicas ready and updated",
			       (long long)ready, (long long)want);
	json_object_foreach(json_object_get(json_object_get(json_object_get(d, "spec"), "selector"),
					    "matchLabels"),
			    key, v)
	{
		size_t l = strlen(sel);
		snprintf(sel + l, sizeof(sel) - l, "%s%s%%3D%s", l ? "%2C" : "", key,
			 json_string_value(v) ?: "");
	}
	json_decref(d);
	snprintf(path, sizeof(path), "/api/v1/namespaces/" CTL_NS "/pods?labelSelector=%s", sel);
	json_t *pods = ctl_kube_get(k, path, why, sizeof(why)), *p;
	size_t i;
	if (!pods) {
		ctl_check_line("FAIL", "control replicas", "%s", why);
		return;
	}
	/* In sync: every ready replica enforces the same configuration
	 * version (cinch_control_config_info on its /metrics). */
	char first[128] = "", buf[128];
	int n_versions = 0, differ = 0;
	json_array_foreach(json_object_get(pods, "items"), i, p)
	{
		const char *name =
			json_string_value(json_object_get(json_object_get(p, "metadata"), "name"));
		long code = 0;
		if (!name)
			continue;
		snprintf(path, sizeof(path), "/api/v1/namespaces/" CTL_NS "/pods/%s:%d/proxy/ready",
			 name, CTL_CONTROL_ADMIN);
		why[0] = '\0';
		free(ctl_kube_text(k, path, &code, why, sizeof(why)));
		if (code != 200) {
			ctl_check_line("FAIL", "control replica", "%s: not ready (%s)", name,
				       why[0] ? why : "no answer");
			continue;
		}
		snprintf(path, sizeof(path),
			 "/api/v1/namespaces/" CTL_NS "/pods/%s:%d/proxy/metrics", name,
			 CTL_CONTROL_ADMIN);
		char *t = ctl_kube_text(k, path, &code, why, sizeof(why));
		const char *ver = t && code == 200 ? ctl_metric(t, "cinch_control_config_info",
								"version", buf, sizeof(buf))
						   : NULL;
		/* the webhook's serving certificate as this replica serves it */
		char exp[32];
		const char *na =
			t && code == 200
				? ctl_metric(t,
					     "cinch_control_webhook_cert_expiry_timestamp_seconds",
					     NULL, exp, sizeof(exp))
				: NULL;
		long long left = na ? strtoll(na, NULL, 10) - (long long)time(NULL) : 0;
		if (na && left <= 0)
			ctl_check_line("FAIL", "webhook certificate", "%s: serves an expired one",
				       name);
		else if (na && left < CTL_WEBHOOK_CERT_WARN_S)
			ctl_check_line("warn", "webhook certificate",
				       "%s: serves one that expires in %lld s (renewal failing?)",
				       name, left);
		else if (na)
			ctl_check_line("ok", "webhook certificate", "%s: valid for %lld h more",
				       name, left / 3600);
		free(t);
		ctl_check_line("ok", "control replica", "%s: ready, configuration %s", name,
			       ver ? ver : "(not reported)");
		if (!ver)
			continue;
		if (n_versions++ == 0)
			snprintf(first, sizeof(first), "%s", ver);
		else
			differ |= strcmp(first, ver) != 0;
	}
	json_decref(pods);
	if (differ)
		ctl_check_line("FAIL", "control replicas in sync",
			       "the replicas enforce different configurations (see above)");
	else if (n_versions > 1)
		ctl_check_line("ok", "control replicas in sync", "%d replicas on %s", n_versions,
			       first);
}

static void ctl_check_webhook(struct ctl_kube *k)
{
	char why[300];
	json_t *wc = ctl_kube_get(k,
				  "/apis/admissionregistration.k8s.io/v1/"
				  "mutatingwebhookconfigurations/" CTL_WEBHOOK,
				  why, sizeof(why)),
	       *w;
	size_t i;

	if (!wc) {
		ctl_check_line("FAIL", "webhook", CTL_WEBHOOK ": %s", why);
		return;
	}
	json_array_foreach(json_object_get(wc, "webhooks"), i, w)
	{
		const char *name = json_string_value(json_object_get(w, "name")) ?: "?";
		const char *b64 = json_string_value(
			json_object_get(json_object_get(w, "clientConfig"), "caBundle"));
		size_t max = 0, len = 0;
		uint8_t *pem = NULL;
		if (!b64 || !*b64) {
			ctl_check_line("FAIL", "webhook", "%s: caBundle is empty", name);
			continue;
		}
		if (!EVP_DecodedLength(&max, strlen(b64)) || !(pem = malloc(max + 1)) ||
		    !EVP_DecodeBase64(pem, &len, max, (const uint8_t *)b64, strlen(b64))) {
			ctl_check_line("FAIL", "webhook", "%s: caBundle is not base64", name);
			free(pem);
			continue;
		}
		BIO *bio = BIO_new_mem_buf(pem, (int)len);
		X509 *x;
		int n = 0;
		time_t soonest = 0;
		while (bio && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
			int64_t t;
			if (svid_time_unix(X509_get0_notAfter(x), &t) == 0 &&
			    (!soonest || t < soonest))
				soonest = (time_t)t;
			X509_free(x);
			n++;
		}
		BIO_free(bio);
		free(pem);
		char when[32] = "?";
		struct tm tm;
		if (soonest && gmtime_r(&soonest, &tm))
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		if (!n)
			ctl_check_line("FAIL", "webhook", "%s: caBundle holds no PEM certificate",
				       name);
		else if (soonest <= time(NULL))
			ctl_check_line("FAIL", "webhook", "%s: caBundle expired at %s", name, when);
		else if (soonest - time(NULL) < CTL_CERT_WARN_S)
			ctl_check_line("warn", "webhook",
				       "%s: caBundle expires at %s, within 7 days", name, when);
		else
			ctl_check_line("ok", "webhook",
				       "%s: caBundle of %d certificate%s, valid until %s", name, n,
				       n == 1 ? "" : "s", when);
	}
	if (json_array_size(json_object_get(wc, "webhooks")) == 0)
		ctl_check_line("FAIL", "webhook", CTL_WEBHOOK ": no webhooks in it");
	json_decref(wc);
}

/* The trust bundle ConfigMap of each namespace with injected pods, and the
 * agents of those pods. */
static void ctl_check_mesh(struct ctl_kube *k)
{
	json_t *agents = ctl_cluster_agents(k), *a, *first = NULL, *seen = json_object();
	char why[300], path[400], cur[256] = "";
	size_t i;

	if (!agents) {
		ctl_check_line("FAIL", "agents", "cannot list pods");
		json_decref(seen);
		return;
	}
	/* the version most agents enforce is the current one */
	json_t *votes = json_object();
	json_int_t best = 0;
	json_array_foreach(agents, i, a)
	{
		const char *v = json_string_value(json_object_get(a, "version"));
		if (!v)
			continue;
		json_int_t n = json_integer_value(json_object_get(votes, v)) + 1;
		json_object_set_new(votes, v, json_integer(n));
		if (n > best) {
			best = n;
			snprintf(cur, sizeof(cur), "%s", v);
		}
	}
	json_decref(votes);
	unsigned ok = 0;
	json_array_foreach(agents, i, a)
	{
		const char *ns = json_string_value(json_object_get(a, "namespace"));
		const char *pod = json_string_value(json_object_get(a, "pod"));
		const char *v = json_string_value(json_object_get(a, "version"));
		if (!json_object_get(seen, ns)) {
			snprintf(path, sizeof(path),
				 "/api/v1/namespaces/%s/configmaps/" CTL_BUNDLE_CM, ns);
			json_t *cm = ctl_kube_get(k, path, why, sizeof(why));
			json_t *data = cm ? json_object_get(cm, "data") : NULL;
			if (!cm)
				ctl_check_line("FAIL", "trust bundle", "%s/" CTL_BUNDLE_CM ": %s",
					       ns, why);
			else if (!first)
				first = json_incref(data);
			else if (!json_equal(first, data))
				ctl_check_line("FAIL", "trust bundle",
					       "%s/" CTL_BUNDLE_CM " differs from the other "
					       "namespaces'",
					       ns);
			json_object_set_new(seen, ns, json_true());
			json_decref(cm);
		}
		if (!json_is_true(json_object_get(a, "ready")))
			ctl_check_line("FAIL", "agent", "%s/%s: not ready (%s)", ns, pod,
				       json_string_value(json_object_get(a, "error"))
					       ?: "not ready");
		else if (!v || strcmp(v, cur))
			ctl_check_line("FAIL", "agent", "%s/%s: enforces version \"%.64s\", not %s",
				       ns, pod, v ? v : "", cur);
		else
			ok++;
	}
	if (json_array_size(agents) == 0)
		ctl_check_line("warn", "agents", "no injected pod in the cluster");
	else if (ok == json_array_size(agents))
		ctl_check_line("ok", "agents", "%u ready, all enforcing version %s", ok, cur);
	if (first)
		ctl_check_line("ok", "trust bundle", CTL_BUNDLE_CM " present%s in %zu namespace%s",
			       json_object_size(seen) > 1 ? " and equal" : "",
			       json_object_size(seen), json_object_size(seen) == 1 ? "" : "s");
	json_decref(first);
	json_decref(seen);
	json_decref(agents);
}

static void ctl_check_clock(struct ctl_kube *k)
{
	long long skew = 0;
	char why[300];

	if (ctl_kube_clock(k, &skew, why, sizeof(why)) < 0)
		ctl_check_line("warn", "clock", "not measured: %s", why);
	else if (llabs(skew) >= CTL_SKEW_FAIL_S)
		ctl_check_line("FAIL", "clock",
			       "the API server's clock is %+lld s from this machine's", skew);
	else if (llabs(skew) >= CTL_SKEW_WARN_S)
		ctl_check_line("warn", "clock",
			       "the API server's clock is %+lld s from this machine's", skew);
	else
		ctl_check_line("ok", "clock", "%+lld s between this machine and the API server",
			       skew);
}

static const char *ctl_check_usage =
	"usage: cinchctl check [--kubeconfig FILE]\n"
	"\n"
	"Checks a cluster's Cinch installation through its API server, one line\n"
	"per check (ok|warn|FAIL  NAME: DETAIL): the CRDs Established, the\n"
	"cinch-control Deployment ready and each replica's /ready (through the\n"
	"pod proxy), the webhook's caBundle (PEM, not expiring within 7 days),\n"
	"the trust bundle ConfigMap " CTL_BUNDLE_CM " in each namespace with\n"
	"injected pods and equal in all, each injected pod's agent ready and\n"
	"enforcing the version most agents enforce, and the clock skew between\n"
	"this machine and the API server (its Date header; warn from 5 s, FAIL\n"
	"from 60 s).\n"
	"The cluster: --kubeconfig FILE, else $KUBECONFIG, else ~/.kube/config,\n"
	"else the pod's service account.\n"
	"Exit status: 0 no FAIL, 1 a FAIL, 2 usage error or no cluster.\n";

int ctl_check(int argc, char **argv)
{
	static const struct option opts[] = {
		{"kubeconfig", required_argument, NULL, 'k'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *kubeconfig = NULL;
	int c;

	optind = 1;
	while ((c = ctl_getopt("check", argc, argv, opts)) != -1) {
		if (c == 'k') {
			kubeconfig = optarg;
		} else if (c == 'h') {
			fputs(ctl_check_usage, stdout);
			return 0;
		} else {
			return 2;
		}
	}
	if (optind < argc)
		return ctl_usage_error("check", "unexpected argument %s", argv[optind]);
	struct ctl_kube *k = ctl_kube_open(kubeconfig);
	if (!k)
		return 2;
	ctl_check_failed = 0;
	ctl_check_crds(k);
	ctl_check_control(k);
	ctl_check_webhook(k);
	ctl_check_mesh(k);
	ctl_check_clock(k);
	ctl_kube_close(k);
	return ctl_check_failed ? 1 : 0;
}
