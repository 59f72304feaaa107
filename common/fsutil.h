/* fsutil: crash-safe files for state directories.
 *
 * fsutil_write_atomic() writes a temporary file beside the target, fsyncs it,
 * renames it over the target and fsyncs the directory, so after a crash the
 * target holds either the old or the new content, never a mix (POSIX
 * rename(2) is atomic within a file system). The control plane's keys,
 * certificates and token store all go through it. */
#ifndef CINCH_FSUTIL_H
#define CINCH_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* Creates `path` (one level) with `mode` if missing, then chmods it to
 * `mode` so an existing directory gets tightened too. 0 or -errno. */
int fsutil_mkdir(const char *path, mode_t mode) __attribute__((warn_unused_result));

/* Replaces `path` with `len` bytes of `data`, created with `mode`.
 * 0 or -errno; on failure the old file is untouched and no temp is left. */
int fsutil_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
	__attribute__((warn_unused_result));

/* Reads a whole regular file of at most `max` bytes into a new buffer
 * (NUL-terminated, *len excludes the NUL; caller frees). -ENOENT, -EFBIG,
 * or another -errno. */
int fsutil_read_all(const char *path, size_t max, char **out, size_t *len)
	__attribute__((warn_unused_result));

#endif
