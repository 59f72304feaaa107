/* pfixture: the shared set-up of the policy tests that ask one workload's
 * slice, and of those that load documents from files: a temporary
 * directory for the group (cmocka's group setup and teardown), a policy text and a world
 * (Workloads) text written there as policy.yaml and world.yaml, and the slice of one workload
 * loaded from them through the library as the agent uses it. One fixture a test executable (the
 * directory is process state). */
#ifndef CINCH_PFIXTURE_H
#define CINCH_PFIXTURE_H

#include <stddef.h>
#include <sys/socket.h>

#include "policy.h"

/* Group setup/teardown: the directory /tmp/<program>.XXXXXX, made and
 * removed with what the tests wrote in it. */
int pfixture_setup(void **state);
int pfixture_teardown(void **state);

/* The directory, a file in it, and `text` written to that file (the test
 * fails if it cannot be). */
const char *pfixture_dir(void);
void pfixture_path(char *buf, size_t len, const char *name);
void pfixture_write(const char *name, const char *text);

/* The slice of `self` (ns/name) under `world` + `policy`; NULL with *err
 * on an error. */
struct policy_slice *pfixture_load(const char *policy, const char *world, const char *self,
				   struct policy_error *err);
/* The same; the test fails with the error's place if it does not load. */
struct policy_slice *pfixture_must_load(const char *policy, const char *world, const char *self);

/* An address, IPv4 or IPv6 by its text (port 0). */
struct sockaddr_storage pfixture_addr(const char *ip);

#endif
