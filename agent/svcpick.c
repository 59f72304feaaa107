/* svcpick: see svcpick.h.
 *
 * The states are in a chained hash table keyed by "<ns>/<name>|<address>"
 * (the Service key and the endpoint's first address), grown when it holds
 * twice as many states as buckets. A choice looks up each candidate once:
 * O(endpoints of the Service) per call, no allocation except for a state
 * seen for the first time. */
#include "svcpick.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct svcpick_ep {
	struct svcpick_ep *next; /* in its bucket */
	uint64_t hash;
	unsigned refs;	    /* connections holding it */
	unsigned in_flight; /* of those, attempts not failed */
	unsigned fails;	    /* consecutive */
	uint64_t retry_at;  /* ms: backing off until then */
	double ewma_us;	    /* connect + handshake latency */
	uint64_t ewma_at;   /* ms: when last measured */
	uint64_t mark;	    /* svcpick_sweep: the slice still has it */
	char key[];
};

struct svcpick {
	struct svcpick_ep **b;
	size_t n_b, n;
	uint64_t rng;
	uint64_t gen; /* of the last sweep */
};

struct svcpick *svcpick_new(uint64_t seed)
{
	struct svcpick *p = calloc(1, sizeof(*p));

	if (!p || !(p->b = calloc(64, sizeof(*p->b)))) {
		free(p);
		return NULL;
	}
	p->n_b = 64;
	p->rng = seed ? seed : 0x9e3779b97f4a7c15ULL;
	return p;
}

void svcpick_free(struct svcpick *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_b; i++)
		while (p->b[i]) {
			struct svcpick_ep *n = p->b[i]->next;
			free(p->b[i]);
			p->b[i] = n;
		}
	free(p->b);
	free(p);
}

const char *svcpick_why_text(enum svcpick_why w)
{
	switch (w) {
	case SVCPICK_OK:
		return "ok";
	case SVCPICK_NO_PORT:
		return "the Service has no such port";
	case SVCPICK_NO_ENDPOINT:
		return "no endpoint of the Service this workload may call on this port";
	case SVCPICK_NO_READY:
		return "the Service has no ready endpoint";
	case SVCPICK_ALL_TRIED:
		return "every endpoint of the Service tried failed to connect or handshake";
	case SVCPICK_NOMEM:
		return "out of memory";
	}
	return "?";
}

/* xorshift64*: enough for spreading load, and reproducible in tests. */
static uint64_t svcpick_rand(struct svcpick *p)
{
	p->rng ^= p->rng >> 12;
	p->rng ^= p->rng << 25;
	p->rng ^= p->rng >> 27;
	return p->rng * 2685821657736338717ULL;
}

static uint64_t svcpick_hash2(const char *a, const char *b)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *a; a++)
		h = (h ^ (uint8_t)*a) * 1099511628211ULL;
	h = (h ^ '|') * 1099511628211ULL;
	for (; *b; b++)
		h = (h ^ (uint8_t)*b) * 1099511628211ULL;
	return h;
}

static int svcpick_key_is(const struct svcpick_ep *e, const char *svc, const char *addr)
{
	size_t n = strlen(svc);
	return !strncmp(e->key, svc, n) && e->key[n] == '|' && !strcmp(e->key + n + 1, addr);
}

static void svcpick_grow(struct svcpick *p)
{
	size_t n_b = 2 * p->n_b;
	struct svcpick_ep **b = calloc(n_b, sizeof(*b));

	if (!b)
		return; /* longer chains, still correct */
	for (size_t i = 0; i < p->n_b; i++)
		while (p->b[i]) {
			struct svcpick_ep *e = p->b[i];
			p->b[i] = e->next;
			e->next = b[e->hash & (n_b - 1)];
			b[e->hash & (n_b - 1)] = e;
		}
	free(p->b);
	p->b = b;
	p->n_b = n_b;
}

/* The state of endpoint addr of Service svc, created when create is set. */
static struct svcpick_ep *svcpick_get(struct svcpick *p, const char *svc, const char *addr,
				      int create)
{
	uint64_t h = svcpick_hash2(svc, addr);
	struct svcpick_ep *e;

	for (e = p->b[h & (p->n_b - 1)]; e; e = e->next)
		if (e->hash == h && svcpick_key_is(e, svc, addr))
			return e;
	if (!create)
		return NULL;
	size_t ls = strlen(svc), la = strlen(addr);
	if (!(e = calloc(1, sizeof(*e) + ls + la + 2)))
		return NULL;
	memcpy(e->key, svc, ls);
	e->key[ls] = '|';
	memcpy(e->key + ls + 1, addr, la + 1);
	e->hash = h;
	e->next = p->b[h & (p->n_b - 1)];
	p->b[h & (p->n_b - 1)] = e;
	if (++p->n > 2 * p->n_b)
		svcpick_grow(p);
	return e;
}

/* The cost P2C compares (svcpick.h). */
static double svcpick_cost(const struct svcpick_ep *e, uint64_t now_ms)
{
	double ewma = e->ewma_us;
	if (now_ms > e->ewma_at)
		ewma *= exp(-(double)(now_ms - e->ewma_at) / SVCPICK_EWMA_TAU_MS);
	return (e->in_flight + 1) * (ewma + 1.0);
}

enum svcpick_why svcpick_choose(struct svcpick *p, const struct policy_service *v,
				size_t port_index, uint64_t now_ms, struct svcpick_ep *const *tried,
				size_t n_tried, size_t *ep, struct svcpick_ep **st)
{
	size_t n_cand = 0, n_ready = 0, n_serving = 0, n_fresh = 0, soonest = SIZE_MAX;
	size_t *cand = NULL;
	struct svcpick_ep **states = NULL;
	enum svcpick_why why = SVCPICK_NOMEM;

	if (port_index >= v->n_ports)
		return SVCPICK_NO_PORT;
	cand = calloc(v->n_eps + 1, sizeof(*cand));
	states = calloc(v->n_eps + 1, sizeof(*states));
	if (!cand || !states)
		goto out;
	/* The tier: ready endpoints, else serving ones (svcpick.h). */
	for (size_t i = 0; i < v->n_eps; i++) {
		if (!v->eps[i].target_ports[port_index])
			continue;
		n_ready += v->eps[i].ready != 0;
		n_serving += v->eps[i].serving != 0;
	}
	why = SVCPICK_NO_ENDPOINT;
	for (size_t i = 0; i < v->n_eps; i++)
		if (v->eps[i].target_ports[port_index])
			why = SVCPICK_NO_READY;
	if (!n_ready && !n_serving)
		goto out;
	for (size_t i = 0; i < v->n_eps; i++) {
		const struct policy_endpoint *e = &v->eps[i];
		if (!e->target_ports[port_index] || !(n_ready ? e->ready : e->serving))
			continue;
		struct svcpick_ep *s = svcpick_get(p, v->key, e->addr_text, 1);
		int again = 0;
		if (!s) {
			why = SVCPICK_NOMEM;
			goto out;
		}
		for (size_t k = 0; k < n_tried && !again; k++)
			again = tried[k] == s;
		if (again)
			continue;
		/* not backing off first, then by when the backoff ends */
		if (s->retry_at <= now_ms) {
			cand[n_cand] = cand[n_fresh];
			states[n_cand] = states[n_fresh];
			cand[n_fresh] = i;
			states[n_fresh++] = s;
		} else {
			cand[n_cand] = i;
			states[n_cand] = s;
		}
		n_cand++;
	}
	for (size_t k = n_fresh; k < n_cand; k++)
		if (soonest == SIZE_MAX || states[k]->retry_at < states[soonest]->retry_at)
			soonest = k;
	why = SVCPICK_ALL_TRIED;
	if (!n_cand)
		goto out;
	size_t pick;
	if (!n_fresh) {
		pick = soonest;
	} else if (n_fresh == 1) {
		pick = 0;
	} else {
		size_t a = svcpick_rand(p) % n_fresh, b = svcpick_rand(p) % (n_fresh - 1);
		b += b >= a;
		double ca = svcpick_cost(states[a], now_ms), cb = svcpick_cost(states[b], now_ms);
		pick = cb * SVCPICK_EQUAL < ca ? b : a;
	}
	*ep = cand[pick];
	*st = states[pick];
	(*st)->refs++;
	(*st)->in_flight++;
	why = SVCPICK_OK;
out:
	free(cand);
	free(states);
	return why;
}

void svcpick_done(struct svcpick_ep *st, int ok, uint64_t latency_us, uint64_t now_ms)
{
	if (ok) {
		st->fails = 0;
		st->retry_at = 0;
		/* EWMA with weight 0.3 for the new sample; the first one sets it */
		st->ewma_us = st->ewma_at ? 0.7 * st->ewma_us + 0.3 * (double)latency_us
					  : (double)latency_us;
		st->ewma_at = now_ms ? now_ms : 1;
		return;
	}
	if (st->in_flight)
		st->in_flight--;
	unsigned shift = st->fails < 5 ? st->fails : 5;
	uint64_t backoff = (uint64_t)SVCPICK_BACKOFF_MS << shift;
	st->fails++;
	st->retry_at =
		now_ms + (backoff < SVCPICK_BACKOFF_MAX_MS ? backoff : SVCPICK_BACKOFF_MAX_MS);
}

void svcpick_put(struct svcpick_ep *st, int in_flight)
{
	if (in_flight && st->in_flight)
		st->in_flight--;
	if (st->refs)
		st->refs--;
}

void svcpick_sweep(struct svcpick *p, const struct policy_slice *slice)
{
	size_t n = slice ? policy_slice_n_services(slice) : 0;

	/* mark what the slice has, then drop what is neither marked nor held */
	p->gen++;
	for (size_t s = 0; s < n; s++) {
		const struct policy_service *v = policy_slice_service_at(slice, s);
		for (size_t k = 0; k < v->n_eps; k++) {
			struct svcpick_ep *e = svcpick_get(p, v->key, v->eps[k].addr_text, 0);
			if (e)
				e->mark = p->gen;
		}
	}
	for (size_t i = 0; i < p->n_b; i++)
		for (struct svcpick_ep **pe = &p->b[i]; *pe;) {
			struct svcpick_ep *e = *pe;
			if (e->refs > 0 || e->mark == p->gen) {
				pe = &e->next;
				continue;
			}
			*pe = e->next;
			free(e);
			p->n--;
		}
}

unsigned svcpick_in_flight(const struct svcpick_ep *st)
{
	return st->in_flight;
}

int svcpick_backing_off(const struct svcpick_ep *st, uint64_t now_ms)
{
	return st->retry_at > now_ms;
}

size_t svcpick_states(const struct svcpick *p)
{
	return p->n;
}
