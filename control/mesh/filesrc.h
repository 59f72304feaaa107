/* filesrc: the control plane's embedded configuration source: a workload
 * registry (Workload documents, docs/policy.md) and a policy set
 * (AllowPolicy, MeshPolicy, EgressPolicy documents), each a file or a
 * directory, read as one policy set, compiled into one slice per workload
 * and published to the hub as a whole generation.
 *
 * A generation is built completely before anything is published: parse
 * every file (pset_add_path), check the set (pset_finish), compile
 * (pcompile_new), then one Snapshot per workload (pcompile_snapshot). Any
 * error rejects the whole change: it is logged as one JSON line
 * (`config_rejected`, with file, line, column, field path and the library's
 * message) and the generation in force stays.
 *
 * Versions: each workload's slice carries the compiler's version (a digest
 * of its snapshot's contents), so an agent whose slice did not change
 * hears nothing. The generation's version is a digest of every workload's
 * key and version: equal inputs give equal versions, across restarts too.
 *
 * The trust bundle: every slice carries the mesh's bundle (the roots an
 * agent trusts its peers with, cinch.v1.TrustBundle) and its version gets
 * "-b<sequence>" appended, so a new bundle (filesrc_set_bundle) changes
 * every slice and reaches every agent, even while the files are invalid:
 * the source keeps the generation in force and re-packs it.
 *
 * Live: the paths are watched (common/fswatch, FILESRC_SETTLE_MS of
 * quiet) and filesrc_reload() does the same on demand (SIGHUP). */
#ifndef CINCH_CONTROL_FILESRC_H
#define CINCH_CONTROL_FILESRC_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "hub.h"
#include "policy.h"

#define FILESRC_SETTLE_MS   100
#define FILESRC_VERSION_LEN 16

/* The mesh's trust bundle as slices carry it. Borrowed by filesrc_load;
 * filesrc_start and filesrc_set_bundle copy it. */
struct filesrc_bundle {
	const char *trust_domain;
	uint64_t sequence;
	const uint8_t *const *roots; /* DER certificates */
	const size_t *root_lens;
	size_t n_roots;
};

struct filesrc_config {
	const char *trust_domain;
	const char *registry;		     /* file or directory; NULL: none */
	const char *policy;		     /* file or directory; NULL: none */
	const struct filesrc_bundle *bundle; /* NULL: slices carry none */
};

/* One compiled generation: the slices as hub_publish wants them. */
struct filesrc_gen {
	struct hub_slice *slices;
	size_t n;
	char version[FILESRC_VERSION_LEN + 1];
	void *mem; /* what the slices point into */
};

/* Reads and compiles everything `cfg` names. 0 and *out (filesrc_gen_free),
 * -EINVAL with *err filled (nothing returned), -ENOMEM. */
int filesrc_load(const struct filesrc_config *cfg, struct filesrc_gen **out,
		 struct policy_error *err) __attribute__((warn_unused_result));
void filesrc_gen_free(struct filesrc_gen *g);
/* "file:line:column" of an error ("file" when the line is unknown). */
void filesrc_where(const struct policy_error *err, char *buf, size_t len);

struct filesrc;

/* Loads the first generation and publishes it to `hub` (borrowed; it must
 * outlive the source), then watches the paths. Borrows cfg's strings.
 * -EINVAL with *err when the first load fails (nothing is started). */
int filesrc_start(uv_loop_t *loop, const struct filesrc_config *cfg, struct hub *hub,
		  struct filesrc **out, struct policy_error *err)
	__attribute__((warn_unused_result));
/* Re-reads now: 0 (published, or nothing changed), -EINVAL (rejected and
 * logged; the old generation stays), -ENOMEM. */
int filesrc_reload(struct filesrc *fs);
/* Replaces the bundle every slice carries (copied) and publishes the
 * generation in force again with it. 0, or -ENOMEM / the hub's refusal:
 * the agents did not get it then, but the bundle is kept for the next
 * load, and calling again retries. */
int filesrc_set_bundle(struct filesrc *fs, const struct filesrc_bundle *b)
	__attribute__((warn_unused_result));
/* The version in force. */
const char *filesrc_version(const struct filesrc *fs);
/* Stops watching; memory goes once the loop has run. NULL is a no-op. */
void filesrc_stop(struct filesrc *fs);

#endif
