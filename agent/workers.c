/* workers: see workers.h. */
#include "workers.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

/* Self-probes posted to worker 0 and not yet claimed: a round makes at
 * most four (two ports, two families); more are dropped (the round then
 * fails on its deadline and the next one probes again). */
#define WORKERS_PROBE_QUEUE 16

struct workers_probe {
	int outbound;
	struct sockaddr_storage src, dst;
};

struct worker {
	struct workers *ws;
	unsigned id;
	uv_loop_t *loop; /* the caller's for worker 0, else own_loop */
	uv_loop_t own_loop;
	uv_thread_t thread;
	int running; /* the thread runs own_loop */
	struct proxy *proxy;
	uv_async_t mail;
	/* the mailbox, under lock */
	pthread_mutex_t lock;
	int stop, has_material;
	struct mtls_ctx *tls;
	struct policy_slice *slice;
	struct workers_probe probes[WORKERS_PROBE_QUEUE]; /* worker 0's */
	unsigned n_probes;
};

struct workers {
	unsigned n;
	struct probe *probe; /* worker 0's; NULL: none */
	workers_log_cb log;
	void *arg;
	struct worker w[];
};

unsigned workers_default(void)
{
	cpu_set_t set;
	int n;

	if (sched_getaffinity(0, sizeof(set), &set) < 0 || (n = CPU_COUNT(&set)) < 1)
		return 1;
	return n > WORKERS_MAX ? WORKERS_MAX : (unsigned)n;
}

static void workers_log(void *arg, const struct proxy_record *r)
{
	struct worker *w = arg;
	w->ws->log(w->ws->arg, w->id, r);
}

/* proxy_probe_cb: worker 0 asks the probe; the others claim what goes to
 * a probe address and post it to worker 0. */
static int workers_is_probe(void *arg, int outbound, const struct sockaddr_storage *src,
			    const struct sockaddr_storage *dst)
{
	struct worker *w = arg, *w0 = &w->ws->w[0];

	if (w->id == 0)
		return probe_claim(w->ws->probe, outbound, src, dst);
	if (!probe_is_dst(dst))
		return 0;
	pthread_mutex_lock(&w0->lock);
	if (!w0->stop && w0->n_probes < WORKERS_PROBE_QUEUE) {
		w0->probes[w0->n_probes++] = (struct workers_probe){outbound, *src, *dst};
		uv_async_send(&w0->mail);
	}
	pthread_mutex_unlock(&w0->lock);
	return 1;
}

/* A worker's mailbox, on its loop. */
static void workers_mail(uv_async_t *h)
{
	struct worker *w = h->data;
	struct workers_probe probes[WORKERS_PROBE_QUEUE];
	unsigned n_probes;

	pthread_mutex_lock(&w->lock);
	struct mtls_ctx *tls = w->tls;
	struct policy_slice *slice = w->slice;
	int has = w->has_material, stop = w->stop;
	w->tls = NULL;
	w->slice = NULL;
	w->has_material = 0;
	n_probes = w->n_probes;
	memcpy(probes, w->probes, n_probes * sizeof(probes[0]));
	w->n_probes = 0;
	pthread_mutex_unlock(&w->lock);
	for (unsigned i = 0; i < n_probes && !stop; i++)
		probe_claim(w->ws->probe, probes[i].outbound, &probes[i].src, &probes[i].dst);
	if (has && !stop)
		proxy_set_material(w->proxy, tls, slice);
	mtls_ctx_unref(tls);
	policy_slice_unref(slice);
	if (stop && w->id) {
		proxy_stop(w->proxy);
		uv_close((uv_handle_t *)h, NULL); /* the loop runs out: the thread ends */
	}
}

static void workers_run(void *arg)
{
	struct worker *w = arg;
	uv_run(w->loop, UV_RUN_DEFAULT);
}

static void workers_free(struct workers *ws)
{
	for (unsigned i = 0; i < ws->n; i++) {
		struct worker *w = &ws->w[i];
		if (w->running)
			uv_thread_join(&w->thread);
		if (w->loop == &w->own_loop)
			uv_loop_close(&w->own_loop);
		mtls_ctx_unref(w->tls);
		policy_slice_unref(w->slice);
		pthread_mutex_destroy(&w->lock);
	}
	free(ws);
}

/* Worker 0's mailbox closed (workers_stop): the threads end on their own
 * once their proxies have closed every connection; then the rest goes. */
static void workers_closed(uv_handle_t *h)
{
	workers_free(((struct worker *)h->data)->ws);
}

/* Worker i (> 0): its loop, proxy and mailbox made here, then its thread.
 * On an error its loop is run out here. */
static int workers_start_one(struct workers *ws, unsigned i, struct proxy_config *cfg)
{
	struct worker *w = &ws->w[i];
	int rc;

	if ((rc = uv_loop_init(&w->own_loop)) < 0)
		return rc;
	w->loop = &w->own_loop;
	cfg->probe_arg = w;
	if (!(rc = proxy_start(w->loop, cfg, workers_log, w, &w->proxy)) &&
	    !(rc = uv_async_init(w->loop, &w->mail, workers_mail))) {
		w->mail.data = w;
		if (!(rc = uv_thread_create(&w->thread, workers_run, w))) {
			w->running = 1;
			return 0;
		}
		uv_close((uv_handle_t *)&w->mail, NULL);
	}
	if (w->proxy)
		proxy_stop(w->proxy);
	uv_run(w->loop, UV_RUN_DEFAULT);
	return rc;
}

int workers_start(uv_loop_t *loop, unsigned n, const struct proxy_config *cfg,
		  struct probe *probe, workers_log_cb log, void *arg, struct workers **out)
{
	struct proxy_config pc = *cfg;
	struct workers *ws;
	unsigned i;
	int rc;

	if (n < 1 || n > WORKERS_MAX)
		return UV_EINVAL;
	if (!(ws = calloc(1, sizeof(*ws) + n * sizeof(ws->w[0]))))
		return UV_ENOMEM;
	ws->n = n;
	ws->probe = probe;
	ws->log = log;
	ws->arg = arg;
	for (i = 0; i < n; i++) {
		ws->w[i].ws = ws;
		ws->w[i].id = i;
		pthread_mutex_init(&ws->w[i].lock, NULL);
	}
	ws->w[0].loop = loop;
	if ((rc = uv_async_init(loop, &ws->w[0].mail, workers_mail)) < 0) {
		workers_free(ws);
		return rc;
	}
	ws->w[0].mail.data = &ws->w[0];
	if (!(pc.budget = proxy_budget_new())) {
		rc = UV_ENOMEM;
		goto fail;
	}
	pc.group = n > 1;
	pc.probe = probe ? workers_is_probe : NULL;
	pc.probe_arg = &ws->w[0];
	if ((rc = proxy_start(loop, &pc, workers_log, &ws->w[0], &ws->w[0].proxy)) < 0)
		goto fail;
	/* the others join worker 0's group, on its ports (the kernel's for 0) */
	proxy_ports(ws->w[0].proxy, &pc.outbound_port, &pc.inbound_port);
	pc.group = 2;
	for (i = 1; i < n; i++)
		if ((rc = workers_start_one(ws, i, &pc)) < 0)
			goto fail;
	proxy_budget_free(pc.budget); /* the proxies hold it */
	*out = ws;
	return 0;
fail:
	proxy_budget_free(pc.budget);
	workers_stop(ws);
	return rc;
}

struct proxy *workers_proxy0(const struct workers *ws)
{
	return ws->w[0].proxy;
}

void workers_set_material(struct workers *ws, struct mtls_ctx *tls, struct policy_slice *slice)
{
	if (ws->w[0].stop) /* (worker 0's own field: no lock) */
		return;
	proxy_set_material(ws->w[0].proxy, tls, slice);
	for (unsigned i = 1; i < ws->n; i++) {
		struct worker *w = &ws->w[i];
		if (!w->running)
			continue;
		pthread_mutex_lock(&w->lock);
		mtls_ctx_unref(w->tls);
		policy_slice_unref(w->slice);
		w->tls = tls ? mtls_ctx_ref(tls) : NULL;
		w->slice = slice ? policy_slice_ref(slice) : NULL;
		w->has_material = 1;
		uv_async_send(&w->mail);
		pthread_mutex_unlock(&w->lock);
	}
}

void workers_stop(struct workers *ws)
{
	for (unsigned i = 0; i < ws->n; i++) {
		struct worker *w = &ws->w[i];
		pthread_mutex_lock(&w->lock);
		w->stop = 1;
		if (i && w->running)
			uv_async_send(&w->mail);
		pthread_mutex_unlock(&w->lock);
	}
	proxy_stop(ws->w[0].proxy);
	uv_close((uv_handle_t *)&ws->w[0].mail, workers_closed);
}
