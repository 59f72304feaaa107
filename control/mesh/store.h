/* store: the control plane's one configuration store. Every feeder's
 * documents (the registry and policy files of filesrc, the Workloads of
 * the Kubernetes pod source, the policy objects of the CRD source) are read
 * as ONE policy set, compiled into one slice per workload and published to
 * the hub as a whole generation.
 *
 * A generation is built completely before anything is published: parse
 * every file (pset_add_path), add every API document (pset_add_doc, named
 * by its key "<Kind>/<ns>/<name>" in errors, since it has no file, line or
 * column), check the set (pset_finish), compile (pcompile_new), then one
 * Snapshot per workload (pcompile_snapshot). Any error rejects the build:
 * it is logged as one JSON line (`config_rejected`, with where, field path
 * and the library's message) and the generation in force stays.
 *
 * API documents have one refinement, because one tenant's bad object must
 * not freeze everybody's pods: when the error names an API document, the
 * build is retried with that document's last accepted version (or without
 * it, if it never was accepted), up to STORE_MAX_QUARANTINE documents. The
 * verdict callback then gets the rejected keys with their messages, so the
 * objects can say why (crdsource_report). Files keep the strict rule: an
 * invalid file rejects the whole change.
 *
 * Versions: each workload's slice carries the compiler's version (a digest
 * of its snapshot's contents), so an agent whose slice did not change
 * hears nothing. The generation's version is a digest of every workload's
 * key and version: equal inputs give equal versions, across restarts and
 * across replicas fed by the same API server.
 *
 * The trust bundle: every slice, whatever fed it, carries the mesh's
 * bundle (the roots an agent trusts its peers with, cinch.v1.TrustBundle)
 * and its version gets "-b<sequence>" appended, so a new bundle
 * (store_set_bundle, the CA's rotation) changes every slice and reaches
 * every agent, even while a feeder holds an invalid edit: the store keeps
 * the generation in force and re-packs it. */
#ifndef CINCH_CONTROL_STORE_H
#define CINCH_CONTROL_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "hub.h"
#include "policy.h"

#define STORE_VERSION_LEN    16
#define STORE_MAX_QUARANTINE 16

/* The API feeders; files are set apart (store_set_files). */
enum store_feed {
	STORE_FEED_PODS = 0,
	STORE_FEED_POLICIES,
	STORE_FEED_SERVICES, /* v1 Services and discovery.k8s.io/v1 EndpointSlices */
	STORE_NFEEDS,
};

/* The mesh's trust bundle as slices carry it. Borrowed by store_load;
 * store_set_bundle copies it. */
struct store_bundle {
	const char *trust_domain;
	uint64_t sequence;
	const uint8_t *const *roots; /* DER certificates */
	const size_t *root_lens;
	size_t n_roots;
};

/* What one generation is built from; everything borrowed. */
struct store_inputs {
	const char *trust_domain;
	const char *registry; /* file or directory; NULL: none */
	const char *policy;   /* file or directory; NULL: none */
	/* JSON arrays of documents per feed (NULL: none). */
	const json_t *docs[STORE_NFEEDS];
	/* Optional: key -> document used instead of the feed's (JSON null:
	 * left out). The quarantine of rejected API documents. */
	const json_t *instead;
	const struct store_bundle *bundle; /* NULL: slices carry none */
};

/* One compiled generation: the slices as hub_publish wants them. */
struct store_gen {
	struct hub_slice *slices;
	size_t n;
	char version[STORE_VERSION_LEN + 1];
	void *mem; /* what the slices point into */
	/* MeshPolicy spec.allowPodExclusions where set: namespace -> bool,
	 * "" for the mesh-wide MeshPolicy (store_pod_exclusions). */
	json_t *pod_exclusions;
};

/* Reads and compiles everything `in` names. 0 and *out (store_gen_free),
 * -EINVAL with *err filled (nothing returned), -ENOMEM. */
int store_load(const struct store_inputs *in, struct store_gen **out, struct policy_error *err)
	__attribute__((warn_unused_result));
void store_gen_free(struct store_gen *g);
/* "file:line:column" of an error ("file", or the document's key, when the
 * line is unknown; "(set)" when nothing is named). */
void store_where(const struct policy_error *err, char *buf, size_t len);
/* "<Kind>/<ns>/<name>" of an API document into buf; -EINVAL when it has
 * no kind or name ("" namespace when it has none). */
int store_doc_key(const json_t *doc, char *buf, size_t len) __attribute__((warn_unused_result));

struct store;

/* After every build that is in force (published or unchanged):
 * `rejected` maps the key of each API document left out or kept at its
 * last accepted version to "<field path>: <message>" (empty: all good).
 * Borrowed for the call. */
typedef void (*store_verdict_cb)(void *arg, const json_t *rejected);

/* A store publishing to `hub` (borrowed; it must outlive the store).
 * Copies trust_domain. */
int store_new(const char *trust_domain, struct hub *hub, struct store **out)
	__attribute__((warn_unused_result));
void store_free(struct store *st); /* NULL is a no-op */
/* Borrowed until store_free (they come from the command line). */
void store_set_files(struct store *st, const char *registry, const char *policy);
/* Replaces a feed's documents (a JSON array, a reference is taken). Does
 * not build: call store_apply. */
void store_set_docs(struct store *st, enum store_feed feed, json_t *docs);
void store_set_verdict_cb(struct store *st, store_verdict_cb cb, void *arg);
/* Nothing is published until `feed` has delivered its first documents
 * (store_set_docs): a generation built before the policy objects are
 * listed would deny what they allow. Builds still validate meanwhile. */
void store_expect(struct store *st, enum store_feed feed);
/* Builds and publishes now: 0 (published, or nothing changed), -EINVAL
 * (rejected and logged, *err says why; the old generation stays), -ENOMEM.
 * `err` may be NULL. */
int store_apply(struct store *st, struct policy_error *err);
/* Replaces the bundle every slice carries (copied) and publishes the
 * generation in force again with it (none yet: later builds carry it).
 * 0, or -ENOMEM / the hub's refusal: the agents did not get it then, but
 * the bundle is kept for the next build, and calling again retries. */
int store_set_bundle(struct store *st, const struct store_bundle *b)
	__attribute__((warn_unused_result));
/* Whether pods of namespace `ns` may loosen interception with the
 * cinch.dev/exclude-* annotations, as the generation in force says: the
 * namespace's MeshPolicy if it sets spec.allowPodExclusions, else the
 * mesh-wide one's, else no (also before the first generation). */
int store_pod_exclusions(const struct store *st, const char *ns);
/* The version in force ("" before the first publish). */
const char *store_version(const struct store *st);
/* Since the start: generations published, and changes rejected (each one
 * logged as config_rejected). st may be NULL: none. */
void store_counts(const struct store *st, uint64_t *published, uint64_t *rejected);

#endif
