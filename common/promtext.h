/* promtext: pieces of the Prometheus text exposition format (0.0.4) that
 * every Cinch binary's /metrics shares:
 *   <prefix>_build_info{version,boringssl,libuv,nghttp2}  gauge, always 1
 *   process_cpu_seconds_total, process_open_fds, process_max_fds,
 *   process_virtual_memory_bytes, process_resident_memory_bytes,
 *   process_start_time_seconds  the standard client-library names, read
 *                               from /proc/self at each scrape
 * and fixed-bucket histograms (cumulative _bucket{le} including +Inf,
 * _sum, _count). Buckets are fixed tables of the caller: no allocation,
 * bounded cardinality. Loop thread only. */
#ifndef CINCH_PROMTEXT_H
#define CINCH_PROMTEXT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PROMTEXT_MAX_BUCKETS 16

/* A family's buckets: ascending upper bounds (static), n <=
 * PROMTEXT_MAX_BUCKETS. */
struct promtext_buckets {
	const double *bounds;
	size_t n;
};

/* One series' counts (all zero: empty). */
struct promtext_hist {
	uint64_t buckets[PROMTEXT_MAX_BUCKETS]; /* cumulative */
	uint64_t count;
	double sum;
};

void promtext_hist_observe(struct promtext_hist *h, const struct promtext_buckets *b, double v);
/* The HELP and TYPE lines of a family (any type). */
void promtext_family(FILE *f, const char *name, const char *type, const char *help);
/* One histogram series of family `name`; labels: 'k="v"' pairs joined by
 * commas, or NULL. */
void promtext_hist_write(FILE *f, const char *name, const char *labels,
			 const struct promtext_buckets *b, const struct promtext_hist *h);
/* <prefix>_build_info; prefix e.g. "cinch_agent". */
void promtext_build_info(FILE *f, const char *prefix);
/* The process_* families of this process (those /proc cannot give are left
 * out). */
void promtext_process(FILE *f);

#endif
