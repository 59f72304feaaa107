/* promtext: see promtext.h. */
#include "promtext.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>
#include <uv.h>

#include "cinch_config.h"

void promtext_hist_observe(struct promtext_hist *h, const struct promtext_buckets *b, double v)
{
	for (size_t i = 0; i < b->n && i < PROMTEXT_MAX_BUCKETS; i++)
		if (v <= b->bounds[i])
			h->buckets[i]++;
	h->count++;
	h->sum += v;
}

void promtext_family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void promtext_hist_write(FILE *f, const char *name, const char *labels,
			 const struct promtext_buckets *b, const struct promtext_hist *h)
{
	const char *sep = labels ? "," : "";
	const char *l = labels ? labels : "";

	for (size_t i = 0; i < b->n && i < PROMTEXT_MAX_BUCKETS; i++)
		fprintf(f, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, l, sep, b->bounds[i],
			(unsigned long long)h->buckets[i]);
	fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, l, sep, (unsigned long long)h->count);
	if (labels) {
		fprintf(f, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, l, h->sum, name, l,
			(unsigned long long)h->count);
	} else {
		fprintf(f, "%s_sum %.6f\n%s_count %llu\n", name, h->sum, name,
			(unsigned long long)h->count);
	}
}

void promtext_build_info(FILE *f, const char *prefix)
{
	fprintf(f,
		"# HELP %s_build_info The build: Cinch version and the linked libraries' "
		"versions; always 1.\n# TYPE %s_build_info gauge\n"
		"%s_build_info{version=\"%s\",boringssl=\"%d\",libuv=\"%s\",nghttp2=\"%s\"} 1\n",
		prefix, prefix, prefix, CINCH_VERSION, BORINGSSL_API_VERSION, uv_version_string(),
		nghttp2_version(0)->version_str);
}

/* Open descriptors: the entries of /proc/self/fd, less the one that
 * reads it. -1 when it cannot be read. */
static long promtext_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	long n = -1; /* the directory's own descriptor */
	struct dirent *e;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* The boot time, seconds since the epoch (/proc/stat btime), or 0. */
static long long promtext_btime(void)
{
	FILE *f = fopen("/proc/stat", "re");
	char line[256];
	long long bt = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "btime %lld", &bt) == 1)
			break;
	fclose(f);
	return bt;
}

void promtext_process(FILE *f)
{
	unsigned long long utime, stime, start, vsize;
	long long rss;
	long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	char buf[1024], *p;
	struct rlimit rl;
	FILE *st = fopen("/proc/self/stat", "re");
	size_t n = st ? fread(buf, 1, sizeof(buf) - 1, st) : 0;
	long fds = promtext_open_fds();

	if (st)
		fclose(st);
	buf[n] = '\0';
	/* Fields after the command name (which may hold anything up to its
	 * last ')'): 3 state ... 14 utime 15 stime ... 22 starttime 23 vsize
	 * 24 rss. */
	p = strrchr(buf, ')');
	if (p && tck > 0 &&
	    sscanf(p + 1,
		   " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d "
		   "%*d %llu %llu %lld",
		   &utime, &stime, &start, &vsize, &rss) == 5) {
		promtext_family(f, "process_cpu_seconds_total", "counter",
				"Total user and system CPU time spent in seconds.");
		fprintf(f, "process_cpu_seconds_total %.2f\n", (double)(utime + stime) / tck);
		promtext_family(f, "process_virtual_memory_bytes", "gauge",
				"Virtual memory size in bytes.");
		fprintf(f, "process_virtual_memory_bytes %llu\n", vsize);
		promtext_family(f, "process_resident_memory_bytes", "gauge",
				"Resident memory size in bytes.");
		fprintf(f, "process_resident_memory_bytes %lld\n", rss * page);
		promtext_family(f, "process_start_time_seconds", "gauge",
				"Start time of the process since unix epoch in seconds.");
		fprintf(f, "process_start_time_seconds %.2f\n",
			(double)promtext_btime() + (double)start / tck);
	}
	if (fds >= 0) {
		promtext_family(f, "process_open_fds", "gauge", "Number of open file descriptors.");
		fprintf(f, "process_open_fds %ld\n", fds);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		promtext_family(f, "process_max_fds", "gauge",
				"Maximum number of open file descriptors.");
		fprintf(f, "process_max_fds %lld\n",
			rl.rlim_cur == RLIM_INFINITY ? -1LL : (long long)rl.rlim_cur);
	}
}
