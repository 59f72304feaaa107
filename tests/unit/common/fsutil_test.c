/* common.fsutil: crash-safe writes in a temp directory: content and mode of
 * the result, replacement of an existing file, no temp file left behind on
 * success or failure, directory modes tightened, read limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	assert_non_null(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static void test_write_read(void **state)
{
	char dir[] = "/tmp/cinch-fsutil.XXXXXX", sub[64], path[80];
	struct stat st;
	char *buf;
	size_t len;

	assert_non_null(mkdtemp(dir));
	snprintf(sub, sizeof(sub), "%s/d", dir);
	assert_int_equal(fsutil_mkdir(sub, 0700), 0);
	assert_int_equal(chmod(sub, 0755), 0);
	assert_int_equal(fsutil_mkdir(sub, 0700), 0); /* tightens an existing one */
	assert_int_equal(stat(sub, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);

	snprintf(path, sizeof(path), "%s/key", sub);
	assert_int_equal(fsutil_write_atomic(path, "one", 3, 0600), 0);
	assert_int_equal(fsutil_write_atomic(path, "second", 6, 0600), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(fsutil_read_all(path, 100, &buf, &len), 0);
	assert_int_equal(len, 6);
	assert_string_equal(buf, "second");
	free(buf);
	assert_int_equal(fsutil_read_all(path, 5, &buf, &len), -EFBIG);
	assert_int_equal(fsutil_read_all(sub, 5, &buf, &len), -EINVAL);
	assert_int_equal(count_entries(sub), 1);

	/* A write into a missing directory fails and leaves nothing. */
	snprintf(path, sizeof(path), "%s/nope/key", sub);
	assert_int_equal(fsutil_write_atomic(path, "x", 1, 0600), -ENOENT);
	assert_int_equal(fsutil_read_all(path, 5, &buf, &len), -ENOENT);
	/* Renaming over a directory fails; the temp file is removed. */
	snprintf(path, sizeof(path), "%s/dirtarget", sub);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_true(fsutil_write_atomic(path, "x", 1, 0600) < 0);
	assert_int_equal(count_entries(sub), 2);

	char cmd[96];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_read),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
