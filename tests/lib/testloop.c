/* testloop: see testloop.h. The guard timer is unreferenced, so it does
 * not keep the loop alive by itself. */
#include "testloop.h"

#include <errno.h>

static void testloop_guard_cb(uv_timer_t *t)
{
	*(int *)t->data = 1;
	uv_stop(t->loop);
}

int testloop_run(uv_loop_t *loop, unsigned seconds)
{
	uv_timer_t guard;
	int fired = 0;

	uv_timer_init(loop, &guard);
	guard.data = &fired;
	uv_timer_start(&guard, testloop_guard_cb, (uint64_t)seconds * 1000, 0);
	uv_unref((uv_handle_t *)&guard);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&guard, NULL);
	uv_run(loop, fired ? UV_RUN_NOWAIT : UV_RUN_DEFAULT);
	return fired ? -ETIMEDOUT : 0;
}
