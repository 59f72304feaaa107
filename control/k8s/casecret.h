/* casecret: the CA's state kept in a Kubernetes Secret that the control
 * manages (--ca-secret NAMESPACE/NAME), the way istiod keeps
 * istio-ca-secret, so that every replica signs with one CA and root
 * rotation reaches all of them.
 *
 * The Secret mirrors <state>/ca/ (ca.h): one data key per file (ca.key
 * ca.crt next.key next.crt activated_at bundle.pem bundle.seq), type
 * Opaque, labelled app.kubernetes.io/managed-by=cinch-control. The Secret
 * is the truth; the files are the copy ca_open() reads.
 *
 *   start     casecret_pull: GET; 200 -> the files are replaced by the
 *             Secret's (0600, crash-safe; files it lacks are removed);
 *             404 -> the caller lets ca_open() make a root and pushes it
 *             (POST); 409 on that POST (another replica won) -> pull again.
 *   rotation  after a step on disk, casecret_push: PUT with the
 *             resourceVersion last seen, so a concurrent change is a 409
 *             and never a lost update; the caller then pulls the winner.
 *   others    casecret_watch: a watch of that one Secret (fieldSelector,
 *             RBAC-limited by resourceNames); a change pulls it (a fresh
 *             GET: a watch event may be older than what was pulled since)
 *             and calls `changed` when the content moved.
 *
 * A Secret without our label, of another type, with a key outside the
 * list, a value that is not base64 or over CASECRET_MAX_VALUE, or lacking
 * ca.key/ca.crt/bundle.pem/bundle.seq (or one of next.key/next.crt) is
 * refused (-EPERM foreign, -EBADMSG malformed), never written and never
 * adopted; so is one whose files do not open as a CA (`accept`): the
 * files are put back as they were. The key material is never logged.
 *
 * pull and push are synchronous: they run their own private loop and
 * client (so they may be called from a callback of the main loop), with a
 * deadline; transport errors and 5xx answers are retried each second until
 * it. RBAC: secrets create; get/list/watch/update limited to the name. */
#ifndef CINCH_CASECRET_H
#define CINCH_CASECRET_H

#include <uv.h>

#include "kapi.h"

#define CASECRET_OWNER_KEY "app.kubernetes.io/managed-by"
#define CASECRET_OWNER	   "cinch-control"
#define CASECRET_MAX_VALUE (64u << 10)
#define CASECRET_WAIT_MS   30000 /* start-up: how long the API server may take */
#define CASECRET_CALL_MS   10000 /* a rotation step's write (an admin waits) */
/* The GET after a watch event: the main loop waits for it, so it is short;
 * when the API server does not answer it is tried again after RETRY. */
#define CASECRET_EVENT_MS	3000
#define CASECRET_EVENT_RETRY_MS 5000

struct casecret;

struct casecret_config {
	const char *namespace, *name; /* validated DNS labels */
	const char *state_dir;	      /* the files are in <state_dir>/ca */
	const struct kapi_config *kc; /* copied: for the private clients */
	/* Whether the files just written from the Secret make a CA (the
	 * caller opens them); <0 and *why: the files go back to what they
	 * were and the Secret is refused (-EBADMSG). */
	int (*accept)(void *arg, const char **why);
	void *accept_arg;
};

int casecret_new(uv_loop_t *loop, struct kapi *k, const struct casecret_config *cfg,
		 struct casecret **out) __attribute__((warn_unused_result));

/* GET the Secret within `wait_ms`; 0: its content is now in <state>/ca
 * (and *changed is 1 when it differs from what was pulled or pushed last),
 * -ENOENT: there is none (files untouched), -EPERM/-EBADMSG: refused,
 * -ETIMEDOUT/-EIO/-ENOMEM. *why is static text. */
int casecret_pull(struct casecret *cs, long wait_ms, int *changed, const char **why)
	__attribute__((warn_unused_result));
/* Writes <state>/ca to the Secret: POST when none was seen, PUT with the
 * resourceVersion seen otherwise. -EEXIST on 409 (created or changed
 * meanwhile: pull), other -errno with *why. */
int casecret_push(struct casecret *cs, long wait_ms, const char **why)
	__attribute__((warn_unused_result));
/* Watches the Secret; `changed` runs (on the main loop) after a change
 * made elsewhere was pulled into the files. */
int casecret_watch(struct casecret *cs, void (*changed)(void *arg), void *arg)
	__attribute__((warn_unused_result));
/* No callback after this; NULL: no-op. */
void casecret_stop(struct casecret *cs);

#endif
