/* filesrc (and the store it feeds) tests on real temporary files: a registry and a policy
 * directory compile into one slice per workload with stable versions; a
 * change touches only the versions of the slices it changes; an invalid
 * file is refused whole with its place; and live, through the hub: an edit
 * reaches an open watch within a second, an invalid edit reaches nobody
 * and keeps the version, a later valid edit (or filesrc_reload) works. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

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
	strcpy(dir, "/tmp/filesrc_test.XXXXXX");
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

static const struct store_inputs cfg = {"cluster.local", reg, pol, {NULL}, NULL};
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

	/* An unrelated workload: a new generation, web and api unchanged;
	 * its IPv6 address in canonical form (what the transport prints). */
	snprintf(reg_file, sizeof(reg_file), "%s/batch.yaml", reg);
	write_file(reg_file, batch_yaml);
	assert_int_equal(store_load(&cfg, &g3, &err), 0);
	assert_int_equal(g3->n, 3);
	assert_string_not_equal(g3->version, g1->version);
	assert_string_equal(find(g3, "shop/web")->version, web->version);
	assert_string_equal(find(g3, "shop/api")->version, api->version);
	assert_string_equal(find(g3, "jobs/batch")->addresses[0], "fd00::7");

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
		"cluster.local", "/nonexistent/registry", NULL, {NULL}, NULL};
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

static void test_live(void **state)
{
	uv_loop_t loop;
	struct hub *hub;
	struct store *st;
	struct filesrc *fs;
	struct hub_watch *w;
	struct policy_error err;
	struct sink sink = {0};
	const char *why = NULL;
	char reg_file[160], v1[STORE_VERSION_LEN + 1], bad[160];

	snprintf(reg_file, sizeof(reg_file), "%s/workloads.yaml", reg);
	write_file(reg_file, registry_yaml);
	write_policy(8080);
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(hub_new(&hub), 0);
	assert_int_equal(store_new("cluster.local", hub, &st), 0);
	assert_int_equal(filesrc_start(&loop, &fcfg, st, &fs, &err), 0);
	snprintf(v1, sizeof(v1), "%s", store_version(st));
	assert_int_equal(strlen(v1), STORE_VERSION_LEN);
	assert_int_equal(hub_watch_open(hub, WEB_ID, "10.1.0.1", NULL, "", on_send, on_gone, &sink,
					&w, &why),
			 GRPC_OK);
	assert_int_equal(sink.sends, 1);

	/* A valid edit reaches the watch within a second. */
	write_policy(9090);
	run_for(&loop, 1000);
	assert_int_equal(sink.sends, 2);
	assert_string_not_equal(store_version(st), v1);
	snprintf(v1, sizeof(v1), "%s", store_version(st));

	/* An invalid edit: nothing sent, the version stays. */
	snprintf(bad, sizeof(bad), "%s/bad.yaml", pol);
	write_file(bad, "kind: AllowPolicy\n");
	run_for(&loop, 600);
	assert_int_equal(sink.sends, 2);
	assert_string_equal(store_version(st), v1);
	assert_int_equal(filesrc_reload(fs), -EINVAL);

	/* Fixed: the next valid state goes out; a reload of unchanged files
	 * sends nothing. */
	assert_int_equal(remove(bad), 0);
	write_policy(7070);
	run_for(&loop, 1000);
	assert_int_equal(sink.sends, 3);
	assert_int_equal(filesrc_reload(fs), 0);
	assert_int_equal(sink.sends, 3);

	/* web leaves the registry: its watch ends. */
	write_file(reg_file, batch_yaml);
	assert_int_equal(filesrc_reload(fs), 0);
	assert_int_equal(sink.gone, 1);

	filesrc_stop(fs);
	run_for(&loop, 10);
	store_free(st);
	hub_free(hub);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_load_and_versions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_rejected_whole, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
