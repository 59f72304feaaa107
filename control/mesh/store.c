/* store: see store.h.
 *
 * A generation's strings and snapshots live in one block per workload
 * (struct store_item), so freeing a generation is a walk over its items.
 * The store keeps its feeds' documents (copies), the API documents of the
 * generation in force (`accepted`, for the quarantine) and that generation
 * itself (the hub holds its own copy of the slices), so a new trust bundle
 * can be packed into every slice without building again. */
#include "store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "cinch/v1/config.pb-c.h"
#include "compile.h"
#include "log.h"
#include "model.h"
#include "pdoc.h"
#include "spiffe.h"

struct store_item {
	char key[512];
	char spiffe_id[SPIFFE_ID_MAX + 1];
	char base[64];	  /* the compiler's version */
	char version[96]; /* base, plus "-b<sequence>" with a bundle */
	char (*addr_text)[INET6_ADDRSTRLEN];
	const char **addrs;
	uint8_t *snap;
};

struct store {
	char *trust_domain;
	struct hub *hub;
	const char *registry, *policy;
	json_t *docs[STORE_NFEEDS]; /* arrays; NULL: the feed is off */
	json_t *accepted;	    /* key -> API document in force */
	json_t *rejected;	    /* key -> message, as last told (logged once) */
	store_verdict_cb cb;
	void *arg;
	unsigned expect;		      /* 1 << feed: publish only once these delivered */
	struct store_bundle bundle, *bundlep; /* bundlep: &bundle or NULL */
	void *bundle_mem;		      /* what bundle points into */
	struct store_gen *cur;		      /* in force; NULL before one */
	char version[STORE_VERSION_LEN + 1];
	uint64_t n_published, n_rejected; /* for the metrics */
};

void store_gen_free(struct store_gen *g)
{
	if (!g)
		return;
	struct store_item *items = g->mem;
	for (size_t i = 0; i < g->n; i++) {
		free(items[i].addr_text);
		free(items[i].addrs);
		free(items[i].snap);
	}
	free(items);
	free(g->slices);
	json_decref(g->pod_exclusions);
	free(g);
}

/* `snap` packed again (new *out, free()) with the bundle b (NULL: none)
 * and the version it->base with b's sequence, into `version` (as large as
 * it->version). it->base is taken from the snapshot when still empty. */
static int store_pack(struct store_item *it, const uint8_t *snap, size_t len,
		      const struct store_bundle *b, uint8_t **out, size_t *out_len, char *version)
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
static int store_item_fill(const struct pset *s, const struct pcompiled *pc, size_t w,
			   const struct store_bundle *b, struct store_item *it,
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
	rc = store_pack(it, raw, raw_len, b, &it->snap, &len, it->version);
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
static void store_gen_version(struct store_gen *g)
{
	uint8_t d[SHA256_DIGEST_LENGTH];
	SHA256_CTX ctx;

	SHA256_Init(&ctx);
	for (size_t i = 0; i < g->n; i++) {
		SHA256_Update(&ctx, g->slices[i].workload, strlen(g->slices[i].workload) + 1);
		SHA256_Update(&ctx, g->slices[i].version, strlen(g->slices[i].version) + 1);
	}
	SHA256_Final(d, &ctx);
	for (int i = 0; i < STORE_VERSION_LEN / 2; i++)
		snprintf(g->version + 2 * i, 3, "%02x", d[i]);
}

static int store_compile(const struct pset *s, const struct store_bundle *b, struct store_gen *g)
{
	struct pcompiled *pc = NULL;
	struct store_item *items;
	int rc = pcompile_new(s, &pc);

	if (rc < 0)
		return rc;
	g->mem = items = calloc(s->n_workloads ? s->n_workloads : 1, sizeof(*items));
	g->slices = calloc(s->n_workloads ? s->n_workloads : 1, sizeof(*g->slices));
	rc = items && g->slices ? 0 : -ENOMEM;
	for (size_t i = 0; rc == 0 && i < s->n_workloads; i++) {
		g->n = i + 1;
		rc = store_item_fill(s, pc, i, b, &items[i], &g->slices[i]);
	}
	pcompile_free(pc);
	if (rc == 0)
		store_gen_version(g);
	return rc;
}

int store_doc_key(const json_t *doc, char *buf, size_t len)
{
	const json_t *meta = json_object_get(doc, "metadata");
	const char *kind = json_string_value(json_object_get(doc, "kind"));
	const char *name = json_string_value(json_object_get(meta, "name"));
	const char *ns = json_string_value(json_object_get(meta, "namespace"));

	if (!kind || !name ||
	    (size_t)snprintf(buf, len, "%s/%s/%s", kind, ns ? ns : "", name) >= len)
		return -EINVAL;
	return 0;
}

/* One feed's documents, each named by its key; `instead` may replace or
 * leave out some (store_inputs). */
static int store_add_docs(struct pset *s, const json_t *docs, const json_t *instead,
			  struct policy_error *err)
{
	char key[sizeof(err->file)];
	const json_t *doc;
	size_t i;

	json_array_foreach(docs, i, doc)
	{
		if (store_doc_key(doc, key, sizeof(key)) < 0) {
			memset(err, 0, sizeof(*err));
			snprintf(err->msg, sizeof(err->msg),
				 "an API document without kind or metadata.name");
			return -EINVAL;
		}
		const json_t *alt = instead ? json_object_get(instead, key) : NULL;
		if (alt && json_is_null(alt))
			continue;
		struct pdoc *pd = pdoc_from_json(alt ? alt : doc);
		if (!pd)
			return -ENOMEM;
		int rc = pset_add_doc(s, key, pd, err);
		pdoc_free(pd);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int store_load(const struct store_inputs *in, struct store_gen **out, struct policy_error *err)
{
	struct pset *s = pset_new(in->trust_domain);
	struct store_gen *g = calloc(1, sizeof(*g));
	int rc = s && g ? 0 : -ENOMEM;

	memset(err, 0, sizeof(*err));
	if (rc == 0 && in->registry)
		rc = pset_add_path(s, in->registry, err);
	if (rc == 0 && in->policy)
		rc = pset_add_path(s, in->policy, err);
	for (int f = 0; rc == 0 && f < STORE_NFEEDS; f++)
		if (in->docs[f])
			rc = store_add_docs(s, in->docs[f], in->instead, err);
	if (rc == 0)
		rc = pset_finish(s, err);
	if (rc == 0 && !(g->pod_exclusions = json_object()))
		rc = -ENOMEM;
	for (size_t i = 0; rc == 0 && i < s->n_mesh; i++)
		if (s->mesh[i].has_pod_exclusions &&
		    json_object_set_new(g->pod_exclusions, s->mesh[i].ns ? s->mesh[i].ns : "",
					json_boolean(s->mesh[i].allow_pod_exclusions)) < 0)
			rc = -ENOMEM;
	if (rc == 0 && (rc = store_compile(s, in->bundle, g)) == -EINVAL)
		snprintf(err->msg, sizeof(err->msg), "the set does not compile");
	if (rc == -ENOMEM && !err->msg[0])
		snprintf(err->msg, sizeof(err->msg), "out of memory");
	pset_free(s);
	if (rc < 0) {
		store_gen_free(g);
		return rc;
	}
	*out = g;
	return 0;
}

void store_where(const struct policy_error *err, char *buf, size_t len)
{
	if (err->line > 0)
		snprintf(buf, len, "%s:%d:%d", err->file, err->line, err->column);
	else
		snprintf(buf, len, "%s", err->file[0] ? err->file : "(set)");
}

int store_new(const char *trust_domain, struct hub *hub, struct store **out)
{
	struct store *st = calloc(1, sizeof(*st));

	if (!st || !(st->trust_domain = strdup(trust_domain)) || !(st->accepted = json_object()) ||
	    !(st->rejected = json_object())) {
		store_free(st);
		return -ENOMEM;
	}
	st->hub = hub;
	*out = st;
	return 0;
}

void store_free(struct store *st)
{
	if (!st)
		return;
	for (int f = 0; f < STORE_NFEEDS; f++)
		json_decref(st->docs[f]);
	json_decref(st->accepted);
	json_decref(st->rejected);
	store_gen_free(st->cur);
	free(st->bundle_mem);
	free(st->trust_domain);
	free(st);
}

void store_set_files(struct store *st, const char *registry, const char *policy)
{
	st->registry = registry;
	st->policy = policy;
}

void store_set_docs(struct store *st, enum store_feed feed, json_t *docs)
{
	json_decref(st->docs[feed]);
	st->docs[feed] = json_incref(docs);
}

void store_set_verdict_cb(struct store *st, store_verdict_cb cb, void *arg)
{
	st->cb = cb;
	st->arg = arg;
}

void store_expect(struct store *st, enum store_feed feed)
{
	st->expect |= 1u << feed;
}

/* A feed we wait for has not delivered yet. */
static int store_waiting(const struct store *st)
{
	for (int f = 0; f < STORE_NFEEDS; f++)
		if ((st->expect & (1u << f)) && !st->docs[f])
			return 1;
	return 0;
}

int store_pod_exclusions(const struct store *st, const char *ns)
{
	const json_t *m = st->cur ? st->cur->pod_exclusions : NULL;
	const json_t *v = ns && *ns ? json_object_get(m, ns) : NULL;

	return json_is_true(v ? v : json_object_get(m, ""));
}

const char *store_version(const struct store *st)
{
	return st->version;
}

static void store_log_rejected(struct store *st, const struct policy_error *err, const char *kept)
{
	char where[300];

	st->n_rejected++;
	store_where(err, where, sizeof(where));
	log_event(LOG_LVL_ERROR, "config_rejected",
		  log_pack("{s:s, s:s, s:i, s:i, s:s, s:s, s:s, s:s}", "where", where, "file",
			   err->file, "line", err->line, "column", err->column, "path", err->path,
			   "error", err->msg, "kept_version", st->version, "kept", kept));
}

/* The API document named `key` in the feeds, or NULL (a file, or none). */
static const json_t *store_find_doc(const struct store *st, const char *key)
{
	char k[sizeof(((struct policy_error *)0)->file)];
	const json_t *doc;
	size_t i;

	for (int f = 0; key[0] && f < STORE_NFEEDS; f++)
		json_array_foreach(st->docs[f], i, doc) if (store_doc_key(doc, k, sizeof(k)) == 0 &&
							    strcmp(k, key) == 0) return doc;
	return NULL;
}

/* The error names an API document: build again with its last accepted
 * version, or without it (then also when that version failed too).
 * 1 when there is something left to try. */
static int store_quarantine(struct store *st, const struct policy_error *err, json_t *instead,
			    json_t *rejected)
{
	const json_t *cur = json_object_get(instead, err->file);
	const json_t *old = json_object_get(st->accepted, err->file);

	if (err->whole_set || !store_find_doc(st, err->file) || (cur && json_is_null(cur)) ||
	    json_object_size(instead) >= STORE_MAX_QUARANTINE)
		return 0;
	json_t *msg = json_sprintf("%s%s%s", err->path, err->path[0] ? ": " : "", err->msg);
	old = cur ? NULL : old;
	/* Logged when first seen, not at every rebuild while it stays bad. */
	if (!msg || !json_equal(json_object_get(st->rejected, err->file), msg))
		store_log_rejected(st, err, old ? "its last accepted version" : "left out");
	if (!cur && msg)
		json_object_set(rejected, err->file, msg);
	json_decref(msg);
	json_object_set_new(instead, err->file, old ? json_deep_copy(old) : json_null());
	return 1;
}

/* The API documents of the generation now in force. */
static int store_remember(struct store *st, const json_t *instead)
{
	json_t *acc = json_object();
	char key[sizeof(((struct policy_error *)0)->file)];
	const json_t *doc;
	size_t i;

	if (!acc)
		return -ENOMEM;
	for (int f = 0; f < STORE_NFEEDS; f++)
		json_array_foreach(st->docs[f], i, doc)
		{
			if (store_doc_key(doc, key, sizeof(key)) < 0)
				continue;
			const json_t *alt = json_object_get(instead, key);
			if (!alt || !json_is_null(alt))
				json_object_set(acc, key, (json_t *)(alt ? alt : doc));
		}
	json_decref(st->accepted);
	st->accepted = acc;
	return 0;
}

static int store_publish(struct store *st, const struct store_gen *g, struct policy_error *err)
{
	int rc;

	if (!strcmp(g->version, st->version)) {
		log_event(LOG_LVL_DEBUG, "config_unchanged",
			  log_pack("{s:s}", "version", st->version));
		return 0;
	}
	if ((rc = hub_publish(st->hub, g->slices, g->n)) < 0) {
		memset(err, 0, sizeof(*err));
		snprintf(err->msg, sizeof(err->msg), "the hub refused the generation: %s",
			 strerror(-rc));
		return rc;
	}
	log_event(LOG_LVL_INFO, "config_published",
		  log_pack("{s:s, s:s, s:I, s:I}", "version", g->version, "previous", st->version,
			   "workloads", (json_int_t)g->n, "bundle_sequence",
			   (json_int_t)(st->bundlep ? st->bundlep->sequence : 0)));
	memcpy(st->version, g->version, sizeof(st->version));
	st->n_published++;
	return 0;
}

void store_counts(const struct store *st, uint64_t *published, uint64_t *rejected)
{
	*published = st ? st->n_published : 0;
	*rejected = st ? st->n_rejected : 0;
}

int store_apply(struct store *st, struct policy_error *errp)
{
	struct policy_error scratch, *err = errp ? errp : &scratch;
	json_t *instead = json_object(), *rejected = json_object();
	struct store_gen *g = NULL;
	int rc;

	memset(err, 0, sizeof(*err));
	if (!instead || !rejected) {
		rc = -ENOMEM;
		goto out;
	}
	do {
		struct store_inputs in = {
			.trust_domain = st->trust_domain,
			.registry = st->registry,
			.policy = st->policy,
			.instead = instead,
			.bundle = st->bundlep,
		};
		for (int f = 0; f < STORE_NFEEDS; f++)
			in.docs[f] = st->docs[f];
		rc = store_load(&in, &g, err);
	} while (rc == -EINVAL && store_quarantine(st, err, instead, rejected));
	if (rc == 0 && store_waiting(st)) {
		log_event(LOG_LVL_INFO, "config_waiting",
			  log_pack("{s:s}", "for", "the first list of the Kubernetes sources"));
		goto out;
	}
	if (rc == 0)
		rc = store_publish(st, g, err);
	if (rc == 0) {
		store_gen_free(st->cur);
		st->cur = g;
		g = NULL;
		rc = store_remember(st, instead);
	}
	if (rc == 0) {
		json_decref(st->rejected);
		st->rejected = json_incref(rejected);
	}
	if (rc == 0 && st->cb)
		st->cb(st->arg, rejected);
out:
	if (rc < 0)
		store_log_rejected(st, err, "the generation in force");
	store_gen_free(g);
	json_decref(instead);
	json_decref(rejected);
	return rc;
}

/* A copy of `in` in one block (*mem, free()) that *out points into. */
static int store_bundle_copy(const struct store_bundle *in, struct store_bundle *out, void **mem)
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
	*out = (struct store_bundle){(const char *)p, in->sequence, (const uint8_t *const *)roots,
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
 * new snapshot is made before any is replaced, so a failure to pack leaves
 * g as it was. */
static int store_rebundle(struct store *st, struct store_gen *g, const struct store_bundle *b,
			  struct policy_error *err)
{
	struct store_item *items = g->mem;
	uint8_t **snaps = calloc(g->n ? g->n : 1, sizeof(*snaps));
	size_t *lens = calloc(g->n ? g->n : 1, sizeof(*lens));
	char(*versions)[sizeof(items->version)] = calloc(g->n ? g->n : 1, sizeof(*versions));
	int rc = snaps && lens && versions ? 0 : -ENOMEM;

	for (size_t i = 0; rc == 0 && i < g->n; i++)
		rc = store_pack(&items[i], items[i].snap, g->slices[i].snapshot_len, b, &snaps[i],
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
	store_gen_version(g);
	rc = store_publish(st, g, err);
out:
	free(snaps);
	free(lens);
	free(versions);
	return rc;
}

int store_set_bundle(struct store *st, const struct store_bundle *b)
{
	struct policy_error err = {0};
	struct store_bundle nb;
	void *mem;
	int rc = store_bundle_copy(b, &nb, &mem);

	if (rc < 0)
		return rc;
	/* kept even when publishing fails: later builds carry it, and calling
	 * again with it retries */
	free(st->bundle_mem);
	st->bundle = nb;
	st->bundle_mem = mem;
	st->bundlep = &st->bundle;
	if (st->cur && (rc = store_rebundle(st, st->cur, st->bundlep, &err)) < 0)
		log_event(LOG_LVL_ERROR, "config_bundle_failed",
			  log_pack("{s:s, s:I}", "error", err.msg[0] ? err.msg : strerror(-rc),
				   "bundle_sequence", (json_int_t)nb.sequence));
	return rc;
}
