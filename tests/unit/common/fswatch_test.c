/* fswatch tests on a real temporary directory: writes, a burst of writes,
 * a file replaced by rename (what editors and ConfigMap updates do), a
 * missing path, and silence after stop. And what must not reload (issue
 * #12, reload storms): a log file written beside a watched file, a dotfile
 * in a watched directory, a touch, the same bytes written again or renamed
 * over, a ConfigMap "..data" swap to the same content; each followed by a
 * real change, which must reload exactly once. */
#include <sys/stat.h>
#include <sys/time.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fswatch.h"
#include "testloop.h"

#define SETTLE_MS 50

static char dir[64];

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/fswatch_test.XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *name, const char *text)
{
	char path[256];
	int n = snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_true(n > 0 && (size_t)n < sizeof(path));
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/* A scripted run: `step` runs at 0, 200, 400 ... ms until it returns 0,
 * then the watch is stopped 300 ms later and the loop drains. */
struct run {
	uv_loop_t loop;
	uv_timer_t tick;
	struct fswatch *w;
	int fired, step_no, stop_at_step;
	int (*step)(struct run *r);
};

static void on_change(void *arg)
{
	((struct run *)arg)->fired++;
}

static void tick(uv_timer_t *t)
{
	struct run *r = t->data;

	if (r->stop_at_step && r->step_no == r->stop_at_step) {
		fswatch_stop(r->w);
		r->w = NULL;
	}
	if (r->step(r) == 0 || r->step_no > 20) {
		uv_close((uv_handle_t *)t, NULL);
		if (r->w)
			fswatch_stop(r->w);
		return;
	}
	r->step_no++;
	uv_timer_start(t, tick, 200, 0);
}

static void run(struct run *r, const char *const *paths, size_t n)
{
	assert_int_equal(uv_loop_init(&r->loop), 0);
	assert_int_equal(fswatch_start(&r->loop, paths, n, SETTLE_MS, on_change, r, &r->w), 0);
	uv_timer_init(&r->loop, &r->tick);
	r->tick.data = r;
	uv_timer_start(&r->tick, tick, 100, 0);
	assert_int_equal(testloop_run(&r->loop, 10), 0);
	assert_int_equal(uv_loop_close(&r->loop), 0);
}

static int step_write_once(struct run *r)
{
	if (r->step_no == 0)
		write_file("a.yaml", "one");
	return r->step_no < 2;
}

static void test_dir_write(void **state)
{
	struct run r = {.step = step_write_once};
	const char *paths[] = {dir};
	run(&r, paths, 1);
	assert_int_equal(r.fired, 1);
}

static int step_burst(struct run *r)
{
	char name[32];
	if (r->step_no == 0)
		for (int i = 0; i < 30; i++) {
			snprintf(name, sizeof(name), "burst-%d.yaml", i);
			write_file(name, "x");
		}
	return r->step_no < 2;
}

static void test_burst_is_one_reload(void **state)
{
	struct run r = {.step = step_burst};
	const char *paths[] = {dir};
	run(&r, paths, 1);
	assert_int_equal(r.fired, 1);
}

static int step_rename_over(struct run *r)
{
	char from[128], to[128];
	if (r->step_no == 0) {
		write_file("workloads.yaml.tmp", "two");
		snprintf(from, sizeof(from), "%s/workloads.yaml.tmp", dir);
		snprintf(to, sizeof(to), "%s/workloads.yaml", dir);
		assert_int_equal(rename(from, to), 0);
	}
	if (r->step_no == 2)
		write_file("workloads.yaml", "three"); /* still watched after the rename */
	return r->step_no < 4;
}

static void test_file_replaced_by_rename(void **state)
{
	char file[128];
	snprintf(file, sizeof(file), "%s/workloads.yaml", dir);
	write_file("workloads.yaml", "one");
	struct run r = {.step = step_rename_over};
	const char *paths[] = {file};
	run(&r, paths, 1);
	assert_int_equal(r.fired, 2);
}

static int step_write_after_stop(struct run *r)
{
	if (r->step_no == 1)
		write_file("late.yaml", "late");
	return r->step_no < 3;
}

static void path_of(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", dir, name);
}

/* A process logging beside the policy file, a line every 20 ms for 2 s. */
static int step_neighbour_log(struct run *r)
{
	char path[128];
	if (r->step_no < 10) {
		path_of(path, sizeof(path), "agent.log");
		for (int i = 0; i < 10; i++) {
			FILE *f = fopen(path, "a");
			assert_non_null(f);
			fprintf(f, "{\"event\":\"tick\",\"n\":%d}\n", i);
			assert_int_equal(fclose(f), 0);
			usleep(20000);
		}
	}
	if (r->step_no == 10)
		assert_int_equal(r->fired, 0);
	if (r->step_no == 11)
		write_file("policy.yaml", "changed");
	return r->step_no < 13;
}

static void test_neighbour_log_ignored(void **state)
{
	char file[128];
	path_of(file, sizeof(file), "policy.yaml");
	write_file("policy.yaml", "one");
	struct run r = {.step = step_neighbour_log};
	const char *paths[] = {file};
	run(&r, paths, 1);
	assert_int_equal(r.fired, 1);
}

/* Touch, the same bytes rewritten, the same bytes renamed over: nothing;
 * then a change, then back to the first bytes: two reloads. */
static int step_same_content(struct run *r)
{
	char path[128], tmp[128];
	path_of(path, sizeof(path), "policy.yaml");
	path_of(tmp, sizeof(tmp), ".policy.yaml.swp");
	switch (r->step_no) {
	case 0:
		assert_int_equal(utimes(path, NULL), 0);
		assert_int_equal(chmod(path, 0640), 0);
		break;
	case 1:
		write_file("policy.yaml", "one");
		break;
	case 2:
		write_file(".policy.yaml.swp", "one");
		assert_int_equal(rename(tmp, path), 0);
		break;
	case 4:
		assert_int_equal(r->fired, 0);
		write_file("policy.yaml", "two");
		break;
	case 6:
		assert_int_equal(r->fired, 1);
		write_file("policy.yaml", "one");
		break;
	}
	return r->step_no < 8;
}

static void test_same_content_no_reload(void **state)
{
	char file[128];
	path_of(file, sizeof(file), "policy.yaml");
	write_file("policy.yaml", "one");
	struct run r = {.step = step_same_content};
	const char *paths[] = {file};
	run(&r, paths, 1);
	assert_int_equal(r.fired, 2);
}

/* An editor's dotfiles in a watched directory are not read by anyone. */
static int step_dotfile(struct run *r)
{
	if (r->step_no == 0)
		write_file(".a.yaml.swp", "scratch");
	if (r->step_no == 2) {
		assert_int_equal(r->fired, 0);
		write_file("b.yaml", "b");
	}
	return r->step_no < 4;
}

static void test_dotfile_in_dir_ignored(void **state)
{
	struct run r = {.step = step_dotfile};
	const char *paths[] = {dir};
	write_file("a.yaml", "a");
	run(&r, paths, 1);
	assert_int_equal(r.fired, 1);
}

/* A ConfigMap volume: policy.yaml -> ..data/policy.yaml, ..data -> a
 * timestamped directory; an update swaps ..data by rename. */
static void cm_version(const char *version, const char *text)
{
	char d[128], f[128], tmp[128], data[128];
	snprintf(d, sizeof(d), "%s/..%s", dir, version);
	assert_int_equal(mkdir(d, 0755), 0);
	snprintf(f, sizeof(f), "..%s/policy.yaml", version);
	write_file(f, text);
	path_of(tmp, sizeof(tmp), "..data_tmp");
	path_of(data, sizeof(data), "..data");
	assert_int_equal(symlink(d + strlen(dir) + 1, tmp), 0);
	assert_int_equal(rename(tmp, data), 0);
}

static int step_configmap(struct run *r)
{
	if (r->step_no == 0)
		cm_version("v2", "one"); /* a resync: same content */
	if (r->step_no == 2) {
		assert_int_equal(r->fired, 0);
		cm_version("v3", "two");
	}
	return r->step_no < 4;
}

static void test_configmap_swap(void **state)
{
	char file[128];
	path_of(file, sizeof(file), "policy.yaml");
	cm_version("v1", "one");
	assert_int_equal(symlink("..data/policy.yaml", file), 0);
	struct run r = {.step = step_configmap};
	const char *paths[] = {file};
	run(&r, paths, 1);
	assert_int_equal(r.fired, 1);
}

static void test_silent_after_stop(void **state)
{
	struct run r = {.step = step_write_after_stop, .stop_at_step = 1};
	const char *paths[] = {dir};
	run(&r, paths, 1);
	assert_int_equal(r.fired, 0);
}

static void test_missing_path(void **state)
{
	uv_loop_t loop;
	struct fswatch *w = NULL;
	char missing[128];
	snprintf(missing, sizeof(missing), "%s/nope/policy", dir);
	const char *paths[] = {dir, missing};

	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(fswatch_start(&loop, paths, 2, SETTLE_MS, on_change, NULL, &w), -ENOENT);
	assert_null(w);
	assert_int_equal(fswatch_start(&loop, paths, 0, SETTLE_MS, on_change, NULL, &w), -EINVAL);
	assert_int_equal(testloop_run(&loop, 5), 0); /* the failed start's handles close */
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_dir_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_burst_is_one_reload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_replaced_by_rename, setup, teardown),
		cmocka_unit_test_setup_teardown(test_neighbour_log_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_same_content_no_reload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dotfile_in_dir_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_configmap_swap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_silent_after_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_path, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
