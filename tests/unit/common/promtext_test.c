/* promtext_test: histograms are what the text format requires (cumulative
 * buckets, +Inf equal to _count, _sum), labelled or not; build_info names
 * the version; the process_* families read /proc with sane values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "cinch_config.h"
#include "promtext.h"

static char *render(void (*fn)(FILE *f, void *arg), void *arg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	fn(f, arg);
	assert_int_equal(fclose(f), 0);
	/* a copy: gcc's -Wdangling-pointer takes the stream's buffer for
	 * this frame's `buf` */
	char *out = strdup(buf);
	free(buf);
	assert_non_null(out);
	return out;
}

static const double bounds[] = {0.1, 1, 10};
static const struct promtext_buckets buckets = {bounds, 3};

struct series {
	const char *labels;
	const struct promtext_hist *h;
};

static void write_hist(FILE *f, void *arg)
{
	const struct series *s = arg;

	promtext_family(f, "t_seconds", "histogram", "A test.");
	promtext_hist_write(f, "t_seconds", s->labels, &buckets, s->h);
}

static void test_histogram(void **state)
{
	struct promtext_hist h = {0};
	struct series s = {"direction=\"inbound\"", &h};
	char *out;

	promtext_hist_observe(&h, &buckets, 0.05);
	promtext_hist_observe(&h, &buckets, 0.1); /* le is inclusive */
	promtext_hist_observe(&h, &buckets, 5);
	promtext_hist_observe(&h, &buckets, 100); /* only +Inf */
	out = render(write_hist, &s);
	assert_non_null(strstr(out, "# TYPE t_seconds histogram\n"));
	assert_non_null(strstr(out, "t_seconds_bucket{direction=\"inbound\",le=\"0.1\"} 2\n"));
	assert_non_null(strstr(out, "t_seconds_bucket{direction=\"inbound\",le=\"1\"} 2\n"));
	assert_non_null(strstr(out, "t_seconds_bucket{direction=\"inbound\",le=\"10\"} 3\n"));
	assert_non_null(strstr(out, "t_seconds_bucket{direction=\"inbound\",le=\"+Inf\"} 4\n"));
	assert_non_null(strstr(out, "t_seconds_sum{direction=\"inbound\"} 105.150000\n"));
	assert_non_null(strstr(out, "t_seconds_count{direction=\"inbound\"} 4\n"));
	free(out);
}

static void write_plain(FILE *f, void *arg)
{
	promtext_hist_write(f, "t_seconds", NULL, &buckets, arg);
}

static void test_histogram_unlabelled_empty(void **state)
{
	struct promtext_hist h = {0};
	char *out = render(write_plain, &h);

	assert_string_equal(out, "t_seconds_bucket{le=\"0.1\"} 0\n"
				 "t_seconds_bucket{le=\"1\"} 0\n"
				 "t_seconds_bucket{le=\"10\"} 0\n"
				 "t_seconds_bucket{le=\"+Inf\"} 0\n"
				 "t_seconds_sum 0.000000\n"
				 "t_seconds_count 0\n");
	free(out);
}

static void write_info(FILE *f, void *arg)
{
	promtext_build_info(f, arg);
	promtext_process(f);
}

/* The value of an unlabelled sample. */
static double sample(const char *text, const char *name)
{
	char key[128];
	const char *p;

	snprintf(key, sizeof(key), "\n%s ", name);
	p = strstr(text, key);
	assert_non_null(p);
	return strtod(p + strlen(key), NULL);
}

static void test_build_info_and_process(void **state)
{
	char *out = render(write_info, (void *)"cinch_test");
	char want[128];

	snprintf(want, sizeof(want), "cinch_test_build_info{version=\"%s\",boringssl=\"",
		 CINCH_VERSION);
	assert_non_null(strstr(out, want));
	assert_non_null(strstr(out, "# TYPE cinch_test_build_info gauge\n"));
	assert_true(sample(out, "process_resident_memory_bytes") > 1e5);
	assert_true(sample(out, "process_virtual_memory_bytes") >=
		    sample(out, "process_resident_memory_bytes"));
	assert_true(sample(out, "process_open_fds") >= 3); /* stdio at least */
	assert_true(sample(out, "process_max_fds") >= sample(out, "process_open_fds"));
	assert_true(sample(out, "process_cpu_seconds_total") >= 0);
	/* Started in the last hour, not in the future. */
	double start = sample(out, "process_start_time_seconds");
	assert_true(start <= (double)time(NULL) + 2 && start > (double)time(NULL) - 3600);
	assert_non_null(strstr(out, "# TYPE process_cpu_seconds_total counter\n"));
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_histogram_unlabelled_empty),
		cmocka_unit_test(test_build_info_and_process),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
