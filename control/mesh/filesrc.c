/* filesrc: see filesrc.h.
 *
 * A generation's strings and snapshots live in one block per workload
 * (struct filesrc_item), so freeing a generation is a walk over its items.
 * The source keeps only the version in force: the hub holds the slices. */
#include "filesrc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "cinch/v1/config.pb-c.h"
#include "compile.h"
#include "fswatch.h"
#include "log.h"
#include "model.h"
#include "spiffe.h"

struct filesrc_item {
	char key[512];
	char spiffe_id[SPIFFE_ID_MAX + 1];
	char version[128];
	char (*addr_text)[INET6_ADDRSTRLEN];
	const char **addrs;
	uint8_t *snap;
};

struct filesrc {
	struct filesrc_config cfg;
	struct hub *hub;
	struct fswatch *watch;
	char version[FILESRC_VERSION_LEN + 1];
};

void filesrc_gen_free(struct filesrc_gen *g)
{
	if (!g)
		return;
	struct filesrc_item *items = g->mem;
	for (size_t i = 0; i < g->n; i++) {
		free(items[i].addr_text);
		free(items[i].addrs);
		free(items[i].snap);
	}
	free(items);
	free(g->slices);
	free(g);
}

/* The snapshot's own version (the compiler's digest of its contents). */
static int filesrc_snap_version(const uint8_t *snap, size_t len, char *out, size_t outlen)
{
	Cinch__V1__Snapshot *s = cinch__v1__snapshot__unpack(NULL, len, snap);
	int rc = s && s->version[0] && strlen(s->version) < outlen ? 0 : -ENOMEM;

	if (rc == 0)
		snprintf(out, outlen, "%s", s->version);
	cinch__v1__snapshot__free_unpacked(s, NULL);
	return rc;
}

/* One workload's slice into item/slice. */
static int filesrc_item_fill(const struct pset *s, const struct pcompiled *pc, size_t w,
			     struct filesrc_item *it, struct hub_slice *sl)
{
	const struct pworkload *wl = &s->workloads[w];
	size_t len;
	int rc;

	snprintf(it->key, sizeof(it->key), "%s/%s", wl->ns, wl->name);
	if ((rc = pcompile_spiffe_id(s, wl, it->spiffe_id, sizeof(it->spiffe_id))) < 0)
		return rc;
	it->addr_text = calloc(wl->n_addrs ? wl->n_addrs : 1, sizeof(*it->addr_text));
	it->addrs = calloc(wl->n_addrs ? wl->n_addrs : 1, sizeof(*it->addrs));
	if (!it->addr_text || !it->addrs)
		return -ENOMEM;
	/* The canonical text, as the transport prints a peer's address. */
	for (size_t j = 0; j < wl->n_addrs; j++) {
		if (!inet_ntop(wl->addrs[j].family, wl->addrs[j].addr, it->addr_text[j],
			       sizeof(it->addr_text[j])))
			return -EINVAL;
		it->addrs[j] = it->addr_text[j];
	}
	if ((rc = pcompile_snapshot(pc, pcompile_index_of(pc, wl), &it->snap, &len)) < 0)
		return rc;
	if ((rc = filesrc_snap_version(it->snap, len, it->version, sizeof(it->version))) < 0)
		return rc;
	*sl = (struct hub_slice){
		.workload = it->key,
		.spiffe_id = it->spiffe_id,
		.addresses = it->addrs,
		.n_addresses = wl->n_addrs,
		.snapshot = it->snap,
		.snapshot_len = len,
		.version = it->version,
	};
	return 0;
}

/* The generation's version: a digest of every workload's key and version. */
static void filesrc_gen_version(struct filesrc_gen *g)
{
	uint8_t d[SHA256_DIGEST_LENGTH];
	SHA256_CTX ctx;

	SHA256_Init(&ctx);
	for (size_t i = 0; i < g->n; i++) {
		SHA256_Update(&ctx, g->slices[i].workload, strlen(g->slices[i].workload) + 1);
		SHA256_Update(&ctx, g->slices[i].version, strlen(g->slices[i].version) + 1);
	}
	SHA256_Final(d, &ctx);
	for (int i = 0; i < FILESRC_VERSION_LEN / 2; i++)
		snprintf(g->version + 2 * i, 3, "%02x", d[i]);
}

static int filesrc_compile(const struct pset *s, struct filesrc_gen *g)
{
	struct pcompiled *pc = NULL;
	struct filesrc_item *items;
	int rc = pcompile_new(s, &pc);

	if (rc < 0)
		return rc;
	g->mem = items = calloc(s->n_workloads ? s->n_workloads : 1, sizeof(*items));
	g->slices = calloc(s->n_workloads ? s->n_workloads : 1, sizeof(*g->slices));
	rc = items && g->slices ? 0 : -ENOMEM;
	for (size_t i = 0; rc == 0 && i < s->n_workloads; i++) {
		g->n = i + 1;
		rc = filesrc_item_fill(s, pc, i, &items[i], &g->slices[i]);
	}
	pcompile_free(pc);
	if (rc == 0)
		filesrc_gen_version(g);
	return rc;
}

int filesrc_load(const struct filesrc_config *cfg, struct filesrc_gen **out,
		 struct policy_error *err)
{
	struct pset *s = pset_new(cfg->trust_domain);
	struct filesrc_gen *g = calloc(1, sizeof(*g));
	int rc = s && g ? 0 : -ENOMEM;

	memset(err, 0, sizeof(*err));
	if (rc == 0 && cfg->registry)
		rc = pset_add_path(s, cfg->registry, err);
	if (rc == 0 && cfg->policy)
		rc = pset_add_path(s, cfg->policy, err);
	if (rc == 0)
		rc = pset_finish(s, err);
	if (rc == 0 && (rc = filesrc_compile(s, g)) == -EINVAL)
		snprintf(err->msg, sizeof(err->msg), "the set does not compile");
	if (rc == -ENOMEM && !err->msg[0])
		snprintf(err->msg, sizeof(err->msg), "out of memory");
	pset_free(s);
	if (rc < 0) {
		filesrc_gen_free(g);
		return rc;
	}
	*out = g;
	return 0;
}

void filesrc_where(const struct policy_error *err, char *buf, size_t len)
{
	if (err->line > 0)
		snprintf(buf, len, "%s:%d:%d", err->file, err->line, err->column);
	else
		snprintf(buf, len, "%s", err->file[0] ? err->file : "(set)");
}

static void filesrc_log_rejected(const struct filesrc *fs, const struct policy_error *err)
{
	char where[300];

	filesrc_where(err, where, sizeof(where));
	log_event(LOG_LVL_ERROR, "config_rejected",
		  json_pack("{s:s, s:s, s:i, s:i, s:s, s:s, s:s}", "where", where, "file",
			    err->file, "line", err->line, "column", err->column, "path", err->path,
			    "error", err->msg, "kept_version", fs->version));
}

/* Loads and publishes; *err filled on -EINVAL. */
static int filesrc_apply(struct filesrc *fs, struct policy_error *err)
{
	struct filesrc_gen *g;
	int rc = filesrc_load(&fs->cfg, &g, err);

	if (rc < 0)
		return rc;
	if (!strcmp(g->version, fs->version)) {
		log_event(LOG_LVL_DEBUG, "config_unchanged",
			  json_pack("{s:s}", "version", fs->version));
		filesrc_gen_free(g);
		return 0;
	}
	rc = hub_publish(fs->hub, g->slices, g->n);
	if (rc == 0) {
		log_event(LOG_LVL_INFO, "config_published",
			  json_pack("{s:s, s:s, s:I}", "version", g->version, "previous",
				    fs->version, "workloads", (json_int_t)g->n));
		memcpy(fs->version, g->version, sizeof(fs->version));
	} else {
		memset(err, 0, sizeof(*err));
		snprintf(err->msg, sizeof(err->msg), "the hub refused the generation: %s",
			 strerror(-rc));
	}
	filesrc_gen_free(g);
	return rc;
}

int filesrc_reload(struct filesrc *fs)
{
	struct policy_error err;
	int rc = filesrc_apply(fs, &err);

	if (rc < 0)
		filesrc_log_rejected(fs, &err);
	return rc;
}

static void filesrc_changed_cb(void *arg)
{
	(void)filesrc_reload(arg);
}

int filesrc_start(uv_loop_t *loop, const struct filesrc_config *cfg, struct hub *hub,
		  struct filesrc **out, struct policy_error *err)
{
	struct filesrc *fs = calloc(1, sizeof(*fs));
	const char *paths[2];
	size_t n = 0;
	int rc;

	memset(err, 0, sizeof(*err));
	if (!fs)
		return -ENOMEM;
	fs->cfg = *cfg;
	fs->hub = hub;
	if ((rc = filesrc_apply(fs, err)) < 0)
		goto fail;
	if (cfg->registry)
		paths[n++] = cfg->registry;
	if (cfg->policy)
		paths[n++] = cfg->policy;
	if (n && (rc = fswatch_start(loop, paths, n, FILESRC_SETTLE_MS, filesrc_changed_cb, fs,
				     &fs->watch)) < 0) {
		snprintf(err->msg, sizeof(err->msg), "cannot watch: %s", strerror(-rc));
		goto fail;
	}
	*out = fs;
	return 0;
fail:
	free(fs);
	return rc;
}

const char *filesrc_version(const struct filesrc *fs)
{
	return fs->version;
}

void filesrc_stop(struct filesrc *fs)
{
	if (!fs)
		return;
	fswatch_stop(fs->watch);
	free(fs);
}
