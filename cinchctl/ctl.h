/* ctl: what the cinchctl command families share: each family is a file
 * (ctl_<area>.c) exporting one entry point, and the local admin socket of
 * cinch-control that some of them talk to.
 *
 * Exit statuses of every command: 0 success, 1 the answer is "no" (a
 * certificate that does not verify, ...), 2 usage or operational error. */
#ifndef CINCH_CTL_H
#define CINCH_CTL_H

#include <getopt.h>
#include <jansson.h>

#define CTL_DEFAULT_STATE_DIR "/var/lib/cinch-control"
#define CTL_ADMIN_MAX_REPLY   (64 << 20)

/* Sends `req` (borrowed) to <state_dir>/admin.sock and returns the reply
 * (new reference), or NULL after printing why to stderr. A reply with an
 * "error" member is printed and NULL is returned too. */
json_t *ctl_admin_call(const char *state_dir, const json_t *req);

/* "cinchctl CMD: MSG" and a hint to --help on stderr; returns 2. */
int ctl_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* getopt_long(argc, argv, "h", opts) that names an unknown flag or a flag
 * without its value in one line (ctl_usage_error) and then returns '?'. */
int ctl_getopt(const char *cmd, int argc, char **argv, const struct option *opts);
/* `arg`, or for "-" a path holding what stdin held (read once; NULL when
 * it could not be read); ctl_display_path() turns that path back to "-". */
const char *ctl_path(const char *arg);
const char *ctl_display_path(const char *path);
/* From now on, errors in `path` name it `name` (static). */
void ctl_name_path(const char *path, const char *name);

/* A cluster's API server (ctl_kube.c): kubeconfig (the file given, else
 * $KUBECONFIG, else ~/.kube/config) or the pod's service account. NULL
 * after printing why. Calls block until answered (10 s at most). */
struct ctl_kube;
struct ctl_kube *ctl_kube_open(const char *kubeconfig);
void ctl_kube_close(struct ctl_kube *k);
/* A JSON GET answered 2xx: the body (new reference); else NULL and why. */
json_t *ctl_kube_get(struct ctl_kube *k, const char *path, char *why, size_t whylen);
/* A text GET: the body (free it) and *code (0: no answer, with why). */
char *ctl_kube_text(struct ctl_kube *k, const char *path, long *code, char *why, size_t whylen);
/* The API server's clock (its Date header) minus ours, in seconds; 0, or
 * -1 with why. */
int ctl_kube_clock(struct ctl_kube *k, long long *skew_s, char *why, size_t whylen);

/* ctl_cluster.c: the cluster's policies and injected pods as two files
 * for the policy library (paths into policy/workloads, len bytes each);
 * 0, or -1 after printing why. */
int ctl_cluster_policy(struct ctl_kube *k, char *policy, char *workloads, size_t len);
/* [{namespace, pod, spiffe_id, ready, version?, error?}] of every injected
 * pod's agent, asked through the pod proxy; NULL after printing why. */
json_t *ctl_cluster_agents(struct ctl_kube *k);

/* ctl_policy.c, for ctl_whatif.c: a policy error as "file:line:col: path:
 * message" on stderr, leaving out what is unknown; the cluster's policies
 * and workloads as two paths (p, w: 32 bytes each), 0 or 2 after printing
 * why. */
struct policy_error;
void ctl_policy_err(const struct policy_error *e);
int ctl_from_cluster(const char *kubeconfig, char *p, char *w);
/* cinchctl policy whatif (ctl_whatif.c) */
int ctl_policy_whatif(int argc, char **argv);

int ctl_check(int argc, char **argv);  /* cinchctl check (ctl_cluster.c) */
int ctl_token(int argc, char **argv);  /* cinchctl token ... (ctl_ca.c) */
int ctl_bundle(int argc, char **argv); /* cinchctl bundle ... (ctl_ca.c) */
int ctl_cert(int argc, char **argv);   /* cinchctl cert ... (ctl_cert.c) */
int ctl_policy(int argc, char **argv); /* cinchctl policy ... (ctl_policy.c) */
int ctl_status(int argc, char **argv); /* cinchctl status (ctl_status.c) */
int ctl_ca(int argc, char **argv);     /* cinchctl ca ... (ctl_rotate.c) */

#endif
