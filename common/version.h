/* version: what `--version` prints for every Cinch binary. The library
 * versions are asked of the libraries at run time (what is actually linked),
 * with the compile-time BoringSSL API version beside them, since BoringSSL
 * has no release numbers. */
#ifndef CINCH_VERSION_H
#define CINCH_VERSION_H

#include <stdio.h>

/* Prints "<prog> <version>" then one line per library every Cinch binary
 * links (programs that also link libcurl add httpc_version_print's line). */
void version_print(FILE *out, const char *prog);

#endif
