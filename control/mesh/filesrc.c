/* filesrc: see filesrc.h.
 *
 * A generation's strings and snapshots live in one block per workload
 * (struct filesrc_item), so freeing a generation is a walk over its items.
 * The source keeps the generation in force (the hub holds its own copy of
 * the slices), so a new trust bundle can be packed into every slice without
 * reading the files again. */
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
	char base[64];	  /* the compiler's version */
	char version[96]; /* base, plus "-b<sequence>" with a bundle */
	char (*addr_text)[INET6_ADDRSTRLEN];
	const char **addrs;
	uint8_t *snap;
};

struct filesrc {
	struct filesrc_config cfg; /* cfg.bundle is &bundle or NULL */
	struct filesrc_bundle bundle;
	void *bundle_mem; /* what bundle points into */
	struct hub *hub;
	struct fswatch *watch;
	struct filesrc_gen *cur; /* the generation in force, NULL before one */
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

/* `snap` packed again (new *out, free()) with the bundle b (NULL: none)
 * and the version it->base with b's sequence, into `version` (as large as
 * it->version).
 * it->base is taken from the snapshot when still empty. */
static int filesrc_pack(struct filesrc_item *it, const uint8_t *snap, size_t len,
			const struct filesrc_bundle *b, uint8_t **out, size_t *out_len,
			char *version)
{
	Cinch__V1__Snapshot *s = cinch__v1__snapshot__unpack(NULL, len, snap);
	Cinch__V1__TrustBundle tb = CINCH__V1__TRUST_BUNDLE__INIT, *was_bundle;
	ProtobufCBinaryData *roots = NULL;
	uint8_t *buf = NULL;
	char *was_version;
	size_t n;
	int rc = -ENOMEM;

	if (!s)
		return -ENOMEM;
	if (!it->base[0] && s->version[0] && strlen(s->version) < sizeof(it->base))
		snprintf(it->base, sizeof(it->base), "%s", s->version);
	if (!it->base[0])
		goto out;
	snprintf(version, sizeof(it->version), "%s", it->base);
	if (b) {
		snprintf(version, sizeof(it->version), "%s-b%llu", it->base,
			 (unsigned long long)b->sequence);
		if (!(roots = calloc(b->n_roots ? b->n_roots : 1, sizeof(*roots))))
			goto out;
		for (size_t i = 0; i < b->n_roots; i++)
			roots[i] = (ProtobufCBinaryData){b->root_lens[i], (uint8_t *)b->roots[i]};
		tb.trust_domain = (char *)b->trust_domain;
		tb.sequence = b->sequence;
		tb.n_x509_authorities = b->n_roots;
		tb.x509_authorities = roots;
	}
	/* borrowed into the unpacked message for packing, then put back so
	 * free_unpacked frees only what it allocated */
	was_bundle = s->bundle;
	was_version = s->version;
	s->bundle = b ? &tb : NULL;
	s->version = version;
	n = cinch__v1__snapshot__get_packed_size(s);
	if ((buf = malloc(n ? n : 1))) {
		cinch__v1__snapshot__pack(s, buf);
		*out = buf;
		*out_len = n;
		rc = 0;
	}
	s->bundle = was_bundle;
	s->version = was_version;
out:
	cinch__v1__snapshot__free_unpacked(s, NULL);
	free(roots);
	return rc;
}

/* One workload's slice into item/slice. */
static int filesrc_item_fill(const struct pset *s, const struct pcompiled *pc, size_t w,
			     const struct filesrc_bundle *b, struct filesrc_item *it,
			     struct hub_slice *sl)
{
	const struct pworkload *wl = &s->workloads[w];
	uint8_t *raw = NULL;
	size_t len, raw_len;
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
	if ((rc = pcompile_snapshot(pc, pcompile_index_of(pc, wl), &raw, &raw_len)) < 0)
		return rc;
	rc = filesrc_pack(it, raw, raw_len, b, &it->snap, &len, it->version);
	free(raw);
	if (rc < 0)
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

static int filesrc_compile(const struct pset *s, const struct filesrc_bundle *b,
			   struct filesrc_gen *g)
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
		rc = filesrc_item_fill(s, pc, i, b, &items[i], &g->slices[i]);
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
	if (rc == 0 && (rc = filesrc_compile(s, cfg->bundle, g)) == -EINVAL)
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
		filesrc_gen_free(fs->cur);
		fs->cur = g;
		return 0;
	}
	memset(err, 0, sizeof(*err));
	snprintf(err->msg, sizeof(err->msg), "the hub refused the generation: %s", strerror(-rc));
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

/* A copy of `in` in one block (*mem, free()) that *out points into. */
static int filesrc_bundle_copy(const struct filesrc_bundle *in, struct filesrc_bundle *out,
			       void **mem)
{
	size_t td = strlen(in->trust_domain) + 1, total = td;
	uint8_t **roots;
	size_t *lens;
	uint8_t *p;

	for (size_t i = 0; i < in->n_roots; i++)
		total += in->root_lens[i];
	total += in->n_roots * (sizeof(*roots) + sizeof(*lens));
	if (!(*mem = malloc(total)))
		return -ENOMEM;
	roots = *mem;
	lens = (size_t *)(roots + in->n_roots);
	p = (uint8_t *)(lens + in->n_roots);
	memcpy(p, in->trust_domain, td);
	*out = (struct filesrc_bundle){(const char *)p, in->sequence, (const uint8_t *const *)roots,
				       lens, in->n_roots};
	p += td;
	for (size_t i = 0; i < in->n_roots; i++) {
		memcpy(p, in->roots[i], in->root_lens[i]);
		roots[i] = p;
		lens[i] = in->root_lens[i];
		p += in->root_lens[i];
	}
	return 0;
}

/* The generation in force packed again with bundle b and published. Every
 * new snapshot is made before any is replaced, so a failure leaves g as it
 * was. */
static int filesrc_rebundle(struct filesrc *fs, struct filesrc_gen *g,
			    const struct filesrc_bundle *b)
{
	struct filesrc_item *items = g->mem;
	uint8_t **snaps = calloc(g->n ? g->n : 1, sizeof(*snaps));
	size_t *lens = calloc(g->n ? g->n : 1, sizeof(*lens));
	char(*versions)[sizeof(items->version)] = calloc(g->n ? g->n : 1, sizeof(*versions));
	int rc = snaps && lens && versions ? 0 : -ENOMEM;

	for (size_t i = 0; rc == 0 && i < g->n; i++)
		rc = filesrc_pack(&items[i], items[i].snap, g->slices[i].snapshot_len, b, &snaps[i],
				  &lens[i], versions[i]);
	if (rc < 0) {
		for (size_t i = 0; snaps && i < g->n; i++)
			free(snaps[i]);
		goto out;
	}
	for (size_t i = 0; i < g->n; i++) {
		free(items[i].snap);
		items[i].snap = snaps[i];
		memcpy(items[i].version, versions[i], sizeof(items[i].version));
		g->slices[i].snapshot = snaps[i];
		g->slices[i].snapshot_len = lens[i];
	}
	filesrc_gen_version(g);
	if (!strcmp(g->version, fs->version))
		goto out; /* the same bundle: nothing to tell anyone */
	if ((rc = hub_publish(fs->hub, g->slices, g->n)) < 0) {
		log_event(LOG_LVL_ERROR, "config_bundle_failed",
			  json_pack("{s:s, s:I}", "error", strerror(-rc), "bundle_sequence",
				    (json_int_t)b->sequence));
		goto out;
	}
	log_event(LOG_LVL_INFO, "config_published",
		  json_pack("{s:s, s:s, s:I, s:I}", "version", g->version, "previous", fs->version,
			    "workloads", (json_int_t)g->n, "bundle_sequence",
			    (json_int_t)b->sequence));
	memcpy(fs->version, g->version, sizeof(fs->version));
out:
	free(snaps);
	free(lens);
	free(versions);
	return rc;
}

int filesrc_set_bundle(struct filesrc *fs, const struct filesrc_bundle *b)
{
	struct filesrc_bundle nb;
	void *mem;
	int rc = filesrc_bundle_copy(b, &nb, &mem);

	if (rc < 0)
		return rc;
	/* kept even when publishing fails: later loads carry it, and calling
	 * again with it retries */
	if (fs->cur)
		rc = filesrc_rebundle(fs, fs->cur, &nb);
	free(fs->bundle_mem);
	fs->bundle = nb;
	fs->bundle_mem = mem;
	fs->cfg.bundle = &fs->bundle;
	return rc;
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
	if (cfg->bundle) {
		if ((rc = filesrc_bundle_copy(cfg->bundle, &fs->bundle, &fs->bundle_mem)) < 0)
			goto fail;
		fs->cfg.bundle = &fs->bundle;
	}
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
	filesrc_gen_free(fs->cur);
	free(fs->bundle_mem);
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
	filesrc_gen_free(fs->cur);
	free(fs->bundle_mem);
	free(fs);
}
