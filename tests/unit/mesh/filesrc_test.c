/* filesrc (and the store it feeds) tests on real temporary files: a registry and a policy
 * directory compile into one slice per workload with stable versions; a
 * change touches only the versions of the slices it changes; an invalid
 * file is refused whole with its place; and live, through the hub: an edit
 * reaches an open watch within a second, an invalid edit reaches nobody
 * and keeps the version, a later valid edit (or filesrc_reload) works.
 * The trust bundle: every slice carries it, its sequence is part of the
 * slice's version, and a new one reaches every watch, even while the files
 * hold an invalid edit. The "roots" are opaque bytes here: the store does
 * not parse them. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cinch/v1/config.pb-c.h"
#include "filesrc.h"
#include "grpcc.h"

#define WEB_ID "spiffe://cluster.local/ns/shop/sa/web"

static char dir[64], reg[96], pol[96];

static const char *const registry_yaml =
	"apiVersion: cinch.dev/v1alpha1\n"
	"kind: Workload\n"
	"metadata: {name: web, namespace: shop, labels: {app: web}}\n"
	"spec: {serviceAccount: web, addresses: [\"10.1.0.1\"]}\n"
	"---\n"
	"apiVersion: cinch.dev/v1alpha1\n"
	"kind: Workload\n"
	"metadata: {name: api, namespace: shop, labels: {app: api}}\n"
	"spec: {serviceAccount: api, addresses: [\"10.1.0.2\"]}\n";

static const char *const batch_yaml = "apiVersion: cinch.dev/v1alpha1\n"
				      "kind: Workload\n"
				      "metadata: {name: batch, namespace: jobs}\n"
				      "spec: {serviceAccount: batch, addresses: [\"fd00:0::7\"]}\n";

/* The allow policy protecting api from web, on `port`. */
static void write_policy(int port)
{
	char text[512];
	snprintf(text, sizeof(text),
		 "apiVersion: cinch.dev/v1alpha1\n"
		 "kind: AllowPolicy\n"
		 "metadata: {name: api-from-web, namespace: shop}\n"
		 "spec:\n"
		 "  selector: {matchLabels: {app: api}}\n"
		 "  ports: [%d]\n"
		 "  from:\n"
		 "    - identities: [\"" WEB_ID "\"]\n",
		 port);
	char path[160];
	snprintf(path, sizeof(path), "%s/allow.yaml", pol);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/filesrc_test.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(reg, sizeof(reg), "%s/registry", dir);
	snprintf(pol, sizeof(pol), "%s/policy", dir);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "mkdir %s %s", reg, pol);
	return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static const struct store_inputs cfg = {"cluster.local", reg, pol, {NULL}, NULL, NULL};
static const struct filesrc_config fcfg = {reg, pol};

static const struct hub_slice *find(const struct store_gen *g, const char *key)
{
	for (size_t i = 0; i < g->n; i++)
		if (!strcmp(g->slices[i].workload, key))
			return &g->slices[i];
	return NULL;
}

static void test_load_and_versions(void **state)
{
	struct store_gen *g1, *g2, *g3, *g4;
	struct policy_error err;
	char reg_file[160];

	snprintf(reg_file, sizeof(reg_file), "%s/workloads.yaml", reg);
	write_file(reg_file, registry_yaml);
	write_policy(8080);
	assert_int_equal(store_load(&cfg, &g1, &err), 0);
	assert_int_equal(g1->n, 2);
	const struct hub_slice *web = find(g1, "shop/web"), *api = find(g1, "shop/api");
	assert_non_null(web);
	assert_non_null(api);
	assert_string_equal(web->spiffe_id, WEB_ID);
	assert_int_equal(api->n_addresses, 1);
	assert_string_equal(api->addresses[0], "10.1.0.2");
	assert_true(strlen(web->version) > 0 && strcmp(web->version, api->version) != 0);
	assert_int_equal(strlen(g1->version), STORE_VERSION_LEN);

	/* The same files again: the same versions. */
	assert_int_equal(store_load(&cfg, &g2, &err), 0);
	assert_string_equal(g2->version, g1->version);
	assert_string_equal(find(g2, "shop/web")->version, web->version);

	/* A workload neither calls: a new generation, and web's and api's
	 * slices change too (its address joins every slice's meshed set, so no
	 * agent sends it plaintext); its IPv6 address in canonical form (what
	 * the transport prints). */
	snprintf(reg_file, sizeof(reg_file), "%s/batch.yaml", reg);
	write_file(reg_file, batch_yaml);
	assert_int_equal(store_load(&cfg, &g3, &err), 0);
	assert_int_equal(g3->n, 3);
	assert_string_not_equal(g3->version, g1->version);
	assert_string_not_equal(find(g3, "shop/web")->version, web->version);
	assert_string_not_equal(find(g3, "shop/api")->version, api->version);
	assert_string_equal(find(g3, "jobs/batch")->addresses[0], "fd00::7");
	/* what web's agent gets: api (admits it) as a peer, and every meshed
	 * address, batch's included, so it never sends batch plaintext */
	const struct hub_slice *w3 = find(g3, "shop/web");
	Cinch__V1__Snapshot *sn = cinch__v1__snapshot__unpack(NULL, w3->snapshot_len, w3->snapshot);
	assert_non_null(sn);
	assert_int_equal(sn->n_peers, 1);
	assert_string_equal(sn->peers[0]->name, "api");
	assert_int_equal(sn->n_meshed_cidrs, 3);
	assert_string_equal(sn->meshed_cidrs[0], "10.1.0.1/32");
	assert_string_equal(sn->meshed_cidrs[1], "10.1.0.2/32");
	assert_string_equal(sn->meshed_cidrs[2], "fd00::7/128");
	cinch__v1__snapshot__free_unpacked(sn, NULL);

	/* Another port: api's slice changes (and web's, which calls it). */
	write_policy(9090);
	assert_int_equal(store_load(&cfg, &g4, &err), 0);
	assert_string_not_equal(find(g4, "shop/api")->version, api->version);
	assert_string_not_equal(g4->version, g3->version);

	store_gen_free(g1);
	store_gen_free(g2);
	store_gen_free(g3);
	store_gen_free(g4);
	store_gen_free(NULL);
}

static void test_invalid_rejected_whole(void **state)
{
	struct store_gen *g = NULL;
	struct policy_error err;
	char reg_file[160], bad[160];

	snprintf(reg_file, sizeof(reg_file), "%s/workloads.yaml", reg);
	write_file(reg_file, registry_yaml);
	write_policy(8080);
	snprintf(bad, sizeof(bad), "%s/bad.yaml", pol);
	write_file(bad, "apiVersion: cinch.dev/v1alpha1\n"
			"kind: AllowPolicy\n"
			"metadata: {name: x, namespace: shop}\n"
			"spec:\n"
			"  selector: {workloads: [api]}\n"
			"  portz: [1]\n");
	assert_int_equal(store_load(&cfg, &g, &err), -EINVAL);
	assert_null(g);
	assert_string_equal(err.file, bad);
	assert_int_equal(err.line, 6);
	assert_true(err.column > 0);
	assert_true(err.msg[0] != '\0');

	/* A path that does not exist. */
	struct store_inputs missing = {
		"cluster.local", "/nonexistent/registry", NULL, {NULL}, NULL, NULL};
	assert_int_equal(store_load(&missing, &g, &err), -EINVAL);
	assert_string_equal(err.file, "/nonexistent/registry");
}

/* ---- live, through a hub watch */

struct sink {
	int sends, gone;
	char last[4096];
	size_t last_len;
};

static int on_send(void *arg, const uint8_t *snap, size_t len)
{
	struct sink *s = arg;
	s->sends++;
	s->last_len = len < sizeof(s->last) ? len : sizeof(s->last);
	memcpy(s->last, snap, s->last_len);
	return 0;
}

static void on_gone(void *arg)
{
	((struct sink *)arg)->gone++;
}

static void stop_cb(uv_timer_t *t)
{
	uv_stop(t->loop);
}

/* Runs the loop for `ms` (the watches keep it alive). */
static void run_for(uv_loop_t *loop, unsigned ms)
{
	uv_timer_t t;
	uv_timer_init(loop, &t);
	uv_timer_start(&t, stop_cb, ms, 0);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

/* A running source: its loop, hub, and web's watch (w, NULL once gone). */
struct live {
	uv_loop_t loop;
	struct hub *hub;
	struct store *st;
	struct filesrc *fs;
	struct hub_watch *w;
	struct sink sink;
	char reg_file[160], v1[STORE_VERSION_LEN + 1];
};

/* Writes the registry and the policy on port 8080, starts a store with
 * bundle `b` (NULL: none) fed by a file source and opens web's watch,
 * which gets its first snapshot. */
static void live_start(struct live *lv, const struct store_bundle *b)
{
	struct policy_error err;
	const char *why = NULL;

	memset(lv, 0, sizeof(*lv));
	snprintf(lv->reg_file, sizeof(lv->reg_file), "%s/workloads.yaml", reg);
	write_file(lv->reg_file, registry_yaml);
	write_policy(8080);
	assert_int_equal(uv_loop_init(&lv->loop), 0);
	assert_int_equal(hub_new(&lv->hub), 0);
	assert_int_equal(store_new("cluster.local", lv->hub, &lv->st), 0);
	if (b)
		assert_int_equal(store_set_bundle(lv->st, b), 0);
	assert_int_equal(filesrc_start(&lv->loop, &fcfg, lv->st, &lv->fs, &err), 0);
	snprintf(lv->v1, sizeof(lv->v1), "%s", store_version(lv->st));
	assert_int_equal(strlen(lv->v1), STORE_VERSION_LEN);
	assert_int_equal(hub_watch_open(lv->hub, WEB_ID, "10.1.0.1", NULL, "", on_send, on_gone,
					&lv->sink, &lv->w, &why),
			 GRPC_OK);
	assert_int_equal(lv->sink.sends, 1);
}

static void live_stop(struct live *lv)
{
	if (!lv->sink.gone)
		hub_watch_close(lv->w);
	filesrc_stop(lv->fs);
	run_for(&lv->loop, 10);
	store_free(lv->st);
	hub_free(lv->hub);
	assert_int_equal(uv_loop_close(&lv->loop), 0);
}

static void test_live(void **state)
{
	struct live lv;
	char bad[160];

	live_start(&lv, NULL);
	struct store *st = lv.st;
	struct filesrc *fs = lv.fs;
	struct sink *sink = &lv.sink;
	char *v1 = lv.v1;

	/* A valid edit reaches the watch within a second. */
	write_policy(9090);
	run_for(&lv.loop, 1000);
	assert_int_equal(sink->sends, 2);
	assert_string_not_equal(store_version(st), v1);
	snprintf(v1, sizeof(lv.v1), "%s", store_version(st));

	/* An invalid edit: nothing sent, the version stays. */
	snprintf(bad, sizeof(bad), "%s/bad.yaml", pol);
	write_file(bad, "kind: AllowPolicy\n");
	run_for(&lv.loop, 600);
	assert_int_equal(sink->sends, 2);
	assert_string_equal(store_version(st), v1);
	assert_int_equal(filesrc_reload(fs), -EINVAL);

	/* Fixed: the next valid state goes out; a reload of unchanged files
	 * sends nothing. */
	assert_int_equal(remove(bad), 0);
	write_policy(7070);
	run_for(&lv.loop, 1000);
	assert_int_equal(sink->sends, 3);
	assert_int_equal(filesrc_reload(fs), 0);
	assert_int_equal(sink->sends, 3);

	/* web leaves the registry: its watch ends. */
	write_file(lv.reg_file, batch_yaml);
	assert_int_equal(filesrc_reload(fs), 0);
	assert_int_equal(sink->gone, 1);

	live_stop(&lv);
}

/* ---- the trust bundle */

static const uint8_t root_a[] = {0x30, 0x03, 0x02, 0x01, 0x0a};
static const uint8_t root_b[] = {0x30, 0x03, 0x02, 0x01, 0x0b, 0x00};
static const uint8_t *const roots_ab[] = {root_a, root_b};
static const size_t lens_ab[] = {sizeof(root_a), sizeof(root_b)};

/* Checks that a packed snapshot carries a bundle of `n` roots from roots_ab
 * with `seq`, and that its version ends in "-b<seq>". */
static void assert_bundle(const uint8_t *snap, size_t len, uint64_t seq, size_t n)
{
	Cinch__V1__Snapshot *s = cinch__v1__snapshot__unpack(NULL, len, snap);
	char suffix[32];

	assert_non_null(s);
	assert_non_null(s->bundle);
	assert_string_equal(s->bundle->trust_domain, "cluster.local");
	assert_int_equal(s->bundle->sequence, seq);
	assert_int_equal(s->bundle->n_x509_authorities, n);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(s->bundle->x509_authorities[i].len, lens_ab[i]);
		assert_memory_equal(s->bundle->x509_authorities[i].data, roots_ab[i], lens_ab[i]);
	}
	snprintf(suffix, sizeof(suffix), "-b%llu", (unsigned long long)seq);
	assert_true(strlen(s->version) > strlen(suffix));
	assert_string_equal(s->version + strlen(s->version) - strlen(suffix), suffix);
	cinch__v1__snapshot__free_unpacked(s, NULL);
}

static void test_bundle_in_slices(void **state)
{
	struct store_bundle b1 = {"cluster.local", 7, roots_ab, lens_ab, 1};
	struct store_inputs with = cfg;
	struct store_gen *g0, *g1, *g2;
	struct policy_error err;
	char reg_file[160];

	snprintf(reg_file, sizeof(reg_file), "%s/workloads.yaml", reg);
	write_file(reg_file, registry_yaml);
	write_policy(8080);
	assert_int_equal(store_load(&cfg, &g0, &err), 0);
	with.bundle = &b1;
	assert_int_equal(store_load(&with, &g1, &err), 0);
	b1.sequence = 8;
	b1.n_roots = 2;
	assert_int_equal(store_load(&with, &g2, &err), 0);
	assert_int_equal(g1->n, 2);
	for (size_t i = 0; i < g1->n; i++) {
		const struct hub_slice *s0 = find(g0, g1->slices[i].workload);
		const struct hub_slice *s2 = find(g2, g1->slices[i].workload);
		assert_bundle(g1->slices[i].snapshot, g1->slices[i].snapshot_len, 7, 1);
		assert_bundle(s2->snapshot, s2->snapshot_len, 8, 2);
		/* the bundle changes the slice's version, which is the
		 * snapshot's own */
		assert_string_not_equal(s0->version, g1->slices[i].version);
		assert_string_not_equal(g1->slices[i].version, s2->version);
		assert_int_equal(strncmp(s0->version, s2->version, strlen(s0->version)), 0);
	}
	assert_string_not_equal(g0->version, g1->version);
	assert_string_not_equal(g1->version, g2->version);
	store_gen_free(g0);
	store_gen_free(g1);
	store_gen_free(g2);
}

static void test_bundle_live(void **state)
{
	struct store_bundle b = {"cluster.local", 1, roots_ab, lens_ab, 1};
	struct live lv;
	char bad[160];

	live_start(&lv, &b);
	b.sequence = 99; /* store_set_bundle copied the bundle */
	struct store *st = lv.st;
	struct filesrc *fs = lv.fs;
	struct sink *sink = &lv.sink;
	const char *v1 = lv.v1;
	assert_bundle((uint8_t *)sink->last, sink->last_len, 1, 1);

	/* A new bundle reaches the watch at once, with a new version. */
	b.sequence = 2;
	b.n_roots = 2;
	assert_int_equal(store_set_bundle(st, &b), 0);
	assert_int_equal(sink->sends, 2);
	assert_bundle((uint8_t *)sink->last, sink->last_len, 2, 2);
	assert_string_not_equal(store_version(st), v1);
	/* the same bundle again: nothing to send */
	assert_int_equal(store_set_bundle(st, &b), 0);
	assert_int_equal(sink->sends, 2);

	/* While an invalid edit is in place, a bundle still goes out. */
	snprintf(bad, sizeof(bad), "%s/bad.yaml", pol);
	write_file(bad, "kind: AllowPolicy\n");
	assert_int_equal(filesrc_reload(fs), -EINVAL);
	b.sequence = 3;
	b.n_roots = 1;
	assert_int_equal(store_set_bundle(st, &b), 0);
	assert_int_equal(sink->sends, 3);
	assert_bundle((uint8_t *)sink->last, sink->last_len, 3, 1);

	/* A later policy edit keeps the bundle in force. */
	assert_int_equal(remove(bad), 0);
	write_policy(9090);
	assert_int_equal(filesrc_reload(fs), 0);
	assert_int_equal(sink->sends, 4);
	assert_bundle((uint8_t *)sink->last, sink->last_len, 3, 1);

	live_stop(&lv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_load_and_versions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_rejected_whole, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bundle_in_slices, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bundle_live, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
