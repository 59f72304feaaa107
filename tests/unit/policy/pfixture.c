/* pfixture: see pfixture.h. */
#include "pfixture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static char dir[64];

const char *pfixture_dir(void)
{
	return dir;
}

void pfixture_path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

void pfixture_write(const char *name, const char *text)
{
	char path[256];
	pfixture_path(path, sizeof(path), name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

int pfixture_setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/%.40s.XXXXXX", program_invocation_short_name);
	return mkdtemp(dir) ? 0 : -1;
}

int pfixture_teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

struct policy_slice *pfixture_load(const char *policy, const char *world, const char *self,
				   struct policy_error *err)
{
	char p[128], w[128];
	struct policy_slice *s = NULL;

	pfixture_write("policy.yaml", policy);
	pfixture_write("world.yaml", world);
	pfixture_path(p, sizeof(p), "policy.yaml");
	pfixture_path(w, sizeof(w), "world.yaml");
	if (policy_slice_load(&s, "cluster.local", p, w, self, NULL, 0, err) < 0)
		return NULL;
	return s;
}

struct policy_slice *pfixture_must_load(const char *policy, const char *world, const char *self)
{
	struct policy_error err;
	struct policy_slice *s = pfixture_load(policy, world, self, &err);
	if (!s)
		fail_msg("load %s: %s:%d:%d: %s: %s", self, err.file, err.line, err.column,
			 err.path, err.msg);
	return s;
}

struct sockaddr_storage pfixture_addr(const char *ip)
{
	struct sockaddr_storage ss = {0};
	if (strchr(ip, ':')) {
		ss.ss_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)&ss)->sin6_addr),
				 1);
	} else {
		ss.ss_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr), 1);
	}
	return ss;
}
