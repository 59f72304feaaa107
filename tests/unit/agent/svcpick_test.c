/* svcpick_test: the endpoint choice of svcpick.h with a hand-made Service
 * and a clock the test drives: P2C spreads calls and follows in-flight
 * load and latency; a failed endpoint is skipped for its backoff, retried
 * after it, cleared by a success; the tiers (ready, else serving); the
 * refusals (no such port, nothing serving, nothing ready, all tried); the
 * sweep of states the slice no longer has. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "svcpick.h"

#define N_EPS 3

static uint32_t targets[N_EPS][2];
static struct policy_endpoint eps[N_EPS];
static const struct policy_service_port ports[2] = {{"http", 80}, {"admin", 9000}};
static struct policy_service svc = {"shop/api", ports, 2, eps, 2};
static const char *const addrs[N_EPS] = {"10.1.0.2", "10.1.0.3", "10.1.0.4"};

static int reset(void **state)
{
	(void)state;
	for (int i = 0; i < N_EPS; i++) {
		targets[i][0] = 8080;
		targets[i][1] = 0;
		eps[i] = (struct policy_endpoint){.addr_text = addrs[i],
						  .ready = 1,
						  .serving = 1,
						  .spiffe_id =
							  "spiffe://cluster.local/ns/shop/sa/api",
						  .target_ports = targets[i]};
	}
	svc.n_eps = 2;
	return 0;
}

/* One short call: chosen, connected in latency_us, closed. */
static size_t call(struct svcpick *p, uint64_t now, uint64_t latency_us)
{
	struct svcpick_ep *st;
	size_t ep;
	assert_int_equal(svcpick_choose(p, &svc, 0, now, NULL, 0, &ep, &st), SVCPICK_OK);
	svcpick_done(st, 1, latency_us, now);
	svcpick_put(st, 1);
	return ep;
}

static void test_p2c_spread(void **state)
{
	(void)state;
	struct svcpick *p = svcpick_new(42);
	size_t n[2] = {0};

	/* equal latency: both serve about half */
	for (int i = 0; i < 1000; i++)
		n[call(p, 1000 + (uint64_t)i, 200)]++;
	if (n[0] < 300 || n[1] < 300)
		fail_msg("equal endpoints, skewed: %zu / %zu", n[0], n[1]);

	/* ten long connections held on endpoint 0: new ones go to endpoint 1
	 * until their in-flight counts are comparable */
	struct svcpick_ep *held[30];
	size_t ep, on1 = 0;
	svc.n_eps = 1;
	for (int i = 0; i < 10; i++) {
		assert_int_equal(svcpick_choose(p, &svc, 0, 3000, NULL, 0, &ep, &held[i]),
				 SVCPICK_OK);
		svcpick_done(held[i], 1, 200, 3000);
	}
	svc.n_eps = 2;
	for (int i = 10; i < 20; i++) {
		assert_int_equal(svcpick_choose(p, &svc, 0, 3000, NULL, 0, &ep, &held[i]),
				 SVCPICK_OK);
		svcpick_done(held[i], 1, 200, 3000);
		on1 += ep == 1;
	}
	if (on1 < 8)
		fail_msg("10 held on endpoint 0, yet %zu of 10 new ones went to it", 10 - on1);
	for (int i = 0; i < 20; i++)
		svcpick_put(held[i], 1);

	/* a slow endpoint (10x) gets few calls */
	n[0] = n[1] = 0;
	for (int i = 0; i < 400; i++) {
		struct svcpick_ep *st;
		assert_int_equal(svcpick_choose(p, &svc, 0, 5000 + (uint64_t)i, NULL, 0, &ep, &st),
				 SVCPICK_OK);
		svcpick_done(st, 1, ep == 1 ? 5000 : 500, 5000 + (uint64_t)i);
		svcpick_put(st, 1);
		n[ep]++;
	}
	if (n[1] * 5 > n[0])
		fail_msg("the slow endpoint still got %zu of 400 calls", n[1]);
	svcpick_free(p);
}

static void test_failure_backoff(void **state)
{
	(void)state;
	struct svcpick *p = svcpick_new(7);
	struct svcpick_ep *st, *tried[2];
	size_t ep;

	/* the first call lands on endpoint 0 or 1; make endpoint 1 fail */
	do {
		assert_int_equal(svcpick_choose(p, &svc, 0, 10000, NULL, 0, &ep, &st), SVCPICK_OK);
		if (ep == 1)
			break;
		svcpick_done(st, 1, 100, 10000);
		svcpick_put(st, 1);
	} while (1);
	svcpick_done(st, 0, 0, 10000);
	assert_int_equal(svcpick_in_flight(st), 0);
	assert_true(svcpick_backing_off(st, 10000));
	/* the same call retries elsewhere: the failed one is excluded */
	tried[0] = st;
	struct svcpick_ep *st2;
	assert_int_equal(svcpick_choose(p, &svc, 0, 10000, tried, 1, &ep, &st2), SVCPICK_OK);
	assert_int_equal(ep, 0);
	svcpick_done(st2, 1, 100, 10000);
	svcpick_put(st2, 1);
	svcpick_put(st, 0);
	/* during its backoff every new call goes to the other one */
	for (int i = 0; i < 200; i++)
		assert_int_equal(call(p, 10000 + (uint64_t)i * 4, 100), 0);
	/* after it (1 s), it is tried again; its success clears it */
	size_t back = 0;
	for (int i = 0; i < 100 && !back; i++)
		back += call(p, 11001 + (uint64_t)i, 100) == 1;
	assert_true(back);
	/* two failures in a row: 1 s, then 2 s */
	struct svcpick *q = svcpick_new(3);
	svc.n_eps = 1;
	assert_int_equal(svcpick_choose(q, &svc, 0, 20000, NULL, 0, &ep, &st), SVCPICK_OK);
	svcpick_done(st, 0, 0, 20000);
	svcpick_put(st, 0);
	assert_true(svcpick_backing_off(st, 20999));
	assert_false(svcpick_backing_off(st, 21000));
	assert_int_equal(svcpick_choose(q, &svc, 0, 21001, NULL, 0, &ep, &st), SVCPICK_OK);
	svcpick_done(st, 0, 0, 21001);
	svcpick_put(st, 0);
	assert_true(svcpick_backing_off(st, 23000));
	assert_false(svcpick_backing_off(st, 23001));
	/* endpoint 1 fails once at 21001 (until 22001): with both backing
	 * off, the one whose backoff ends first is tried rather than none */
	svc.n_eps = 2;
	struct svcpick_ep *o;
	eps[0].ready = 0; /* steer the choice to endpoint 1 */
	assert_int_equal(svcpick_choose(q, &svc, 0, 21001, NULL, 0, &ep, &o), SVCPICK_OK);
	assert_int_equal(ep, 1);
	svcpick_done(o, 0, 0, 21001);
	svcpick_put(o, 0);
	eps[0].ready = 1;
	assert_int_equal(svcpick_choose(q, &svc, 0, 21500, NULL, 0, &ep, &o), SVCPICK_OK);
	assert_int_equal(ep, 1);
	svcpick_put(o, 1);
	svcpick_free(q);
	svcpick_free(p);
}

static void test_tiers_and_refusals(void **state)
{
	(void)state;
	struct svcpick *p = svcpick_new(1);
	struct svcpick_ep *st, *tried[2];
	size_t ep;

	/* endpoint 1 terminating but serving: only used when none is ready */
	eps[1].ready = 0;
	eps[1].terminating = 1;
	for (int i = 0; i < 50; i++)
		assert_int_equal(call(p, 100, 100), 0);
	eps[0].ready = 0;
	eps[0].serving = 0;
	assert_int_equal(call(p, 100, 100), 1);
	/* nothing ready nor serving: refused at once */
	eps[1].serving = 0;
	assert_int_equal(svcpick_choose(p, &svc, 0, 100, NULL, 0, &ep, &st), SVCPICK_NO_READY);
	/* port 9000 is served by nobody (target 0): not "not ready" */
	assert_int_equal(svcpick_choose(p, &svc, 1, 100, NULL, 0, &ep, &st), SVCPICK_NO_ENDPOINT);
	assert_int_equal(svcpick_choose(p, &svc, SIZE_MAX, 100, NULL, 0, &ep, &st),
			 SVCPICK_NO_PORT);
	svc.n_eps = 0;
	assert_int_equal(svcpick_choose(p, &svc, 0, 100, NULL, 0, &ep, &st), SVCPICK_NO_ENDPOINT);
	/* a call that tried every endpoint stops */
	reset(NULL);
	assert_int_equal(svcpick_choose(p, &svc, 0, 100, NULL, 0, &ep, &tried[0]), SVCPICK_OK);
	svcpick_done(tried[0], 0, 0, 100);
	assert_int_equal(svcpick_choose(p, &svc, 0, 100, tried, 1, &ep, &tried[1]), SVCPICK_OK);
	svcpick_done(tried[1], 0, 0, 100);
	assert_int_equal(svcpick_choose(p, &svc, 0, 100, tried, 2, &ep, &st), SVCPICK_ALL_TRIED);
	assert_string_equal(svcpick_why_text(SVCPICK_NO_READY),
			    "the Service has no ready endpoint");
	svcpick_put(tried[0], 0);
	svcpick_put(tried[1], 0);
	/* the sweep drops the states nobody holds that no slice has */
	assert_int_equal(svcpick_states(p), 2);
	svcpick_sweep(p, NULL);
	assert_int_equal(svcpick_states(p), 0);
	svcpick_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_p2c_spread, reset),
		cmocka_unit_test_setup(test_failure_backoff, reset),
		cmocka_unit_test_setup(test_tiers_and_refusals, reset),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
