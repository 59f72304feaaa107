/* testloop: run a libuv loop in a test, bounded in time. */
#ifndef CINCH_TESTLOOP_H
#define CINCH_TESTLOOP_H

#include <uv.h>

/* Runs `loop` until nothing is left to do, for at most `seconds`.
 * 0, or -ETIMEDOUT when time ran out (the loop is stopped, the test's
 * handles are left as they are). */
int testloop_run(uv_loop_t *loop, unsigned seconds);

#endif
