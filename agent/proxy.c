/* proxy: see proxy.h. The listeners, accept, the checks every connection
 * passes before anything else, the budgets and the policy re-check; each
 * connection is a session (session.h) from accept to close, driven by
 * inbound.c or outbound.c, then pump.c.
 *
 * Budgets. Anyone on the pod network can open TCP connections to the pod
 * (they are redirected to the inbound port) and send nothing; those must
 * not take the places of the app's outbound calls nor of real callers:
 *   - max_conns bounds every open connection, and inbound ones may take
 *     only max_conns - outbound_reserve of them: the rest is the app's;
 *   - an inbound connection is "unfinished" from accept until its
 *     handshake is done (or its plaintext decided): at most
 *     max_handshakes of them read and handshake at once, and at most
 *     half of those places (SESSION_HS_SHARE) go to one source address;
 *     the others WAIT, accepted but unread (no TLS state, about a
 *     kilobyte each), and take a place in arrival order when one frees,
 *     skipping sources at their share. So a burst from one caller is
 *     delayed, not refused, and a source that holds its places with
 *     silent connections delays only itself;
 *   - at most max_pending_per_source unfinished connections (waiting or
 *     handshaking) per source address: beyond, refused at once;
 *   - handshake_ms runs from accept, waiting included: every unfinished
 *     connection is gone after it.
 * The sources with unfinished connections are kept in a small hash table
 * (struct session_src), an entry freed with its last unfinished
 * connection.
 *
 * The budgets are the agent's, whatever its number of workers (one proxy
 * per loop, workers.h): the proxies share one struct proxy_budget. The
 * open and inbound counts are atomic, added to at accept and checked
 * against what the add returned (so of two accepts at the limit on two
 * loops, the later one is refused); the handshake places and the source
 * table are behind the budget's lock. Waiting sessions stay on their own
 * proxy's list (in arrival order there); a place freed on one proxy
 * wakes (uv_async) the others that have waiting sessions.
 *
 * Accept always accepts (conn_accept): a session that cannot be
 * allocated is accepted into a spare handle and reset at once, so libuv
 * keeps polling the listener. proxy_adopt (a connection a test accepted)
 * goes the same way, proxy_accept, with conn_adopt as its accept helper. */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "origdst.h"
#include "session.h"

/* The reasons the agent refuses with whatever the policy says (log lines
 * and the cinch_agent_denials_total label). */
#define PROXY_ER_NOT_REDIRECTED	 "not redirected: a direct connection to the agent's port"
#define PROXY_ER_SELF_LOOP	 "self-loop: the destination is one of the agent's own ports"
#define PROXY_ER_NOT_LOCAL_SRC	 "outbound connection from outside the pod"
#define PROXY_ER_NOT_OWN_DST	 "original destination is not this pod's address"
#define PROXY_ER_INBOUND_LIMIT	 "inbound connection limit reached (the rest is kept for outbound)"
#define PROXY_ER_SOURCE_PENDING	 "too many unfinished handshakes from this address"
#define PROXY_ER_LIMIT		 "connection limit reached"
#define PROXY_ER_NO_MATERIAL	 "no valid certificate or policy: failing closed"
#define PROXY_ER_NO_ORIGINAL_DST "no original destination: not a redirected connection"

void proxy_addr_str(const struct sockaddr_storage *a, char *out, size_t len)
{
	char ip[64] = "?";

	if (a->ss_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)a)->sin_addr, ip, sizeof(ip));
		snprintf(out, len, "%s:%u", ip, ntohs(((const struct sockaddr_in *)a)->sin_port));
	} else {
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)a)->sin6_addr, ip, sizeof(ip));
		snprintf(out, len, "[%s]:%u", ip,
			 ntohs(((const struct sockaddr_in6 *)a)->sin6_port));
	}
}

static uint16_t addr_port(const struct sockaddr_storage *a)
{
	return ntohs(a->ss_family == AF_INET ? ((const struct sockaddr_in *)a)->sin_port
					     : ((const struct sockaddr_in6 *)a)->sin6_port);
}

/* ---- the handshake budget (see the top of the file) */

static unsigned proxy_src_hash(const struct sockaddr_storage *a)
{
	const uint8_t *b = a->ss_family == AF_INET
				   ? (const uint8_t *)&((const struct sockaddr_in *)a)->sin_addr
				   : ((const struct sockaddr_in6 *)a)->sin6_addr.s6_addr;
	size_t n = a->ss_family == AF_INET ? 4 : 16;
	uint32_t h = 2166136261u; /* FNV-1a */

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 16777619u;
	return h % SESSION_SRC_BUCKETS;
}

struct proxy_budget *proxy_budget_new(void)
{
	struct proxy_budget *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	atomic_init(&b->refs, 1);
	atomic_init(&b->n_conns, 0);
	atomic_init(&b->n_in, 0);
	pthread_mutex_init(&b->lock, NULL);
	for (int i = 0; i < SESSION_SRC_BUCKETS; i++)
		list_init(&b->srcs[i]);
	list_init(&b->proxies);
	return b;
}

void proxy_budget_free(struct proxy_budget *b)
{
	if (!b || atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) > 1)
		return;
	pthread_mutex_destroy(&b->lock); /* srcs: empty with the last session */
	free(b);
}

/* The entry of `addr`, made if needed (budget locked). NULL on ENOMEM. */
static struct session_src *proxy_src_get(struct proxy_budget *bu,
					 const struct sockaddr_storage *addr)
{
	struct list_node *b = &bu->srcs[proxy_src_hash(addr)], *n, *next;
	struct session_src *e;

	list_for_each_safe(n, next, b)
	{
		e = list_entry(n, struct session_src, link);
		if (localaddr_same((const struct sockaddr *)&e->addr, (const struct sockaddr *)addr,
				   0))
			return e;
	}
	if (!(e = calloc(1, sizeof(*e))))
		return NULL;
	e->addr = *addr;
	list_add_head(b, &e->link);
	return e;
}

/* A waiting (or new) inbound session takes a handshake place (budget
 * locked; inbound_begin once unlocked). */
static void proxy_take_place(struct session *s)
{
	s->hs_place = 1;
	s->srcent->active++;
	s->p->budget->n_hs++;
}

/* Places freed: the waiting sessions take them in arrival order,
 * skipping those whose source holds its share. The places are the
 * agent's: with `wake`, the other proxies of the budget that have waiting
 * sessions are woken to try too (each on its own loop: proxy_wake). Only
 * a freed place wakes them, never a wake-up itself, so two proxies whose
 * waiting sessions are all at their source's share do not wake each other
 * in turn. */
static void proxy_promote(struct proxy *p, int wake)
{
	struct proxy_budget *b = p->budget;
	unsigned share = SESSION_HS_SHARE(p->cfg.max_handshakes);
	struct list_node go, *n, *next;

	list_init(&go);
	pthread_mutex_lock(&b->lock);
	list_for_each_safe(n, next, &p->waiting)
	{
		struct session *w = list_entry(n, struct session, wait);
		if (b->n_hs >= p->cfg.max_handshakes)
			break;
		if (w->srcent->active < share) {
			proxy_take_place(w);
			list_del(&w->wait);
			p->n_waiting--;
			list_add_tail(&go, &w->wait);
		}
	}
	list_for_each_safe(n, next, &b->proxies)
	{
		struct proxy *q = list_entry(n, struct proxy, budget_link);
		if (wake && q != p && q->n_waiting && b->n_hs < p->cfg.max_handshakes)
			uv_async_send(&q->wake);
	}
	pthread_mutex_unlock(&b->lock);
	list_for_each_safe(n, next, &go)
	{
		struct session *w = list_entry(n, struct session, wait);
		list_del(&w->wait);
		inbound_begin(w);
	}
}

static void proxy_wake(uv_async_t *h)
{
	struct proxy *p = h->data;

	if (!p->stopping)
		proxy_promote(p, 0);
}

/* An inbound session is finished (decided) or closing: it gives back
 * its place in the budget. Only a freed handshake place lets a waiting
 * session in (a refused or timed-out one that had none does not: so a
 * flood of refusals costs no walk of the wait list). */
void proxy_unfinished_end(struct session *s)
{
	struct proxy *p = s->p;
	struct proxy_budget *b = p->budget;
	struct session_src *e = s->srcent;
	int freed = s->hs_place;

	if (!e)
		return;
	pthread_mutex_lock(&b->lock);
	if (list_linked(&s->wait)) {
		list_del(&s->wait);
		p->n_waiting--;
	}
	if (freed) {
		s->hs_place = 0;
		e->active--;
		b->n_hs--;
	}
	s->srcent = NULL;
	if (--e->pending == 0) {
		list_del(&e->link);
		free(e);
	}
	pthread_mutex_unlock(&b->lock);
	if (freed && !p->stopping)
		proxy_promote(p, 1);
}

void proxy_uncount(struct session *s)
{
	if (s->counted)
		atomic_fetch_sub_explicit(&s->p->budget->n_conns, 1, memory_order_relaxed);
	if (s->inbound_counted)
		atomic_fetch_sub_explicit(&s->p->budget->n_in, 1, memory_order_relaxed);
}

/* An inbound session after the checks of accept (n_in: the inbound
 * sessions counted, this one included): into the budget. */
static void proxy_accept_inbound(struct session *s, unsigned n_in)
{
	struct proxy *p = s->p;
	struct proxy_budget *b = p->budget;
	struct session_src *e;
	int go = 0;

	if (n_in > p->cfg.max_conns - p->cfg.outbound_reserve) {
		session_finalize(s, CONN_ER_DENIED, "refused", PROXY_ER_INBOUND_LIMIT);
		return;
	}
	pthread_mutex_lock(&b->lock);
	if (!(e = proxy_src_get(b, &s->src))) {
		pthread_mutex_unlock(&b->lock);
		session_finalize(s, CONN_ER_NO_MEMORY, NULL, "out of memory");
		return;
	}
	e->pending++;
	s->srcent = e;
	if (e->pending > p->cfg.max_pending_per_source) {
		pthread_mutex_unlock(&b->lock);
		session_finalize(s, CONN_ER_DENIED, "refused", PROXY_ER_SOURCE_PENDING);
		return;
	}
	if (b->n_hs < p->cfg.max_handshakes &&
	    e->active < SESSION_HS_SHARE(p->cfg.max_handshakes)) {
		proxy_take_place(s);
		go = 1;
	} else {
		s->state = SESSION_ST_WAIT;
		list_add_tail(&p->waiting, &s->wait);
		p->n_waiting++;
	}
	pthread_mutex_unlock(&b->lock);
	session_timer(s, p->cfg.handshake_ms, 0);
	if (go)
		inbound_begin(s);
}

/* ---- accept */

/* Why the agent must not carry an accepted connection whatever the policy
 * says (proxy.h), or NULL. */
static const char *proxy_misdirected(struct session *s)
{
	struct proxy *p = s->p;
	const struct sockaddr *dst = (const struct sockaddr *)&s->dst;
	uint64_t now = uv_now(p->loop);

	/* REDIRECT rewrites the destination, so conntrack's original one
	 * differs from the socket's; without NAT they are the same. */
	if (localaddr_same((const struct sockaddr *)&s->local, dst, 1))
		return PROXY_ER_NOT_REDIRECTED;
	if ((s->port == p->out_port || s->port == p->in_port ||
	     (p->cfg.admin_port && s->port == p->cfg.admin_port)) &&
	    localaddr_match(&p->own, now, dst, 1))
		return PROXY_ER_SELF_LOOP;
	if (s->outbound && !localaddr_match(&p->own, now, (const struct sockaddr *)&s->src, 1))
		return PROXY_ER_NOT_LOCAL_SRC;
	if (!s->outbound && !localaddr_match(&p->own, now, dst, 0))
		return PROXY_ER_NOT_OWN_DST;
	return NULL;
}

/* Where a new connection comes from: a listener's pending one, or a
 * socket accepted elsewhere, with its addresses (proxy_adopt). */
struct proxy_incoming {
	uv_stream_t *listener; /* NULL: fd */
	uv_os_sock_t fd;
	const struct sockaddr_storage *src, *local, *dst;
};

/* The accept helper (conn.h) on the new connection: into c, or, c NULL,
 * closed at once. */
static int proxy_take(struct proxy *p, const struct proxy_incoming *in, struct conn *c)
{
	return in->listener ? conn_accept(&p->cl, in->listener, c, !c)
			    : conn_adopt(&p->cl, in->fd, c, !c);
}

/* The connection's source (getpeername), the socket's local address and
 * its original destination. 0 or -errno (no original destination). */
static int proxy_addresses(struct session *s, const struct proxy_incoming *in)
{
	int len = sizeof(s->src);
	uv_os_fd_t fd;

	if (!in->listener) {
		s->src = *in->src;
		s->local = *in->local;
		s->dst = *in->dst;
		return 0;
	}
	uv_tcp_getpeername(&s->down.h.tcp, (struct sockaddr *)&s->src, &len);
	len = sizeof(s->local);
	if (uv_tcp_getsockname(&s->down.h.tcp, (struct sockaddr *)&s->local, &len) < 0 ||
	    uv_fileno(&s->down.h.handle, &fd) < 0)
		return -EBADF;
	return origdst_get(fd, &s->dst);
}

/* The one accept path: a new session for a connection on one of p's
 * listeners or handed by proxy_adopt; accepts it (always) and starts it. */
static void proxy_accept(struct proxy *p, const struct proxy_incoming *in, int outbound)
{
	struct session *s = calloc(1, sizeof(*s));
	int is_pipe = !in->listener && uv_guess_handle(in->fd) == UV_NAMED_PIPE;

	if (!s ||
	    (is_pipe ? conn_init_pipe : conn_init)(&s->down, &p->cl, &session_conn_ops, s) < 0) {
		free(s);
		proxy_take(p, in, NULL); /* taken and closed at once (a reset on TCP) */
		return;
	}
	conn_set_eager(&s->down); /* both ends, from the start (pump.c) */
	s->p = p;
	p->refs++;
	s->handles = 2; /* down, timer */
	uv_timer_init(p->loop, &s->timer);
	s->timer.data = &s->down;
	list_init(&s->wait);
	list_add_tail(&p->sessions, &s->link);
	s->outbound = outbound;
	s->t0 = uv_hrtime();
	s->hs_s = -1;
	s->tls = p->tls ? mtls_ctx_ref(p->tls) : NULL;
	s->slice = p->slice ? policy_slice_ref(p->slice) : NULL;
	s->d = (struct policy_decision){POLICY_DENY, NULL, ""};
	s->state = outbound ? SESSION_ST_CONNECT : SESSION_ST_WAIT;
	if (proxy_take(p, in, &s->down) < 0) {
		session_finalize(s, CONN_ER_RESET, NULL, "accept failed");
		return;
	}
	int rc = proxy_addresses(s, in);
	proxy_addr_str(&s->src, s->src_s, sizeof(s->src_s));
	if (rc < 0) {
		session_finalize(s, CONN_ER_DENIED, "refused", PROXY_ER_NO_ORIGINAL_DST);
		return;
	}
	if (p->cfg.probe && p->cfg.probe(p->cfg.probe_arg, outbound, &s->src, &s->dst)) {
		s->probe = 1; /* the agent's own self-probe: not a connection */
		session_finalize(s, CONN_ER_CLOSED, NULL, NULL);
		return;
	}
	/* Counted at once, checked below: of two workers' accepts at the
	 * limit, each sees the other's (proxy_uncount when freed). */
	s->counted = 1;
	unsigned n_conns = atomic_fetch_add_explicit(&p->budget->n_conns, 1, memory_order_relaxed) + 1;
	unsigned n_in = 0;
	s->inbound_counted = !outbound;
	if (!outbound)
		n_in = atomic_fetch_add_explicit(&p->budget->n_in, 1, memory_order_relaxed) + 1;
	proxy_addr_str(&s->dst, s->dst_s, sizeof(s->dst_s));
	s->port = addr_port(&s->dst);
	const char *misdirected = proxy_misdirected(s);
	if (misdirected) {
		session_finalize(s, CONN_ER_DENIED, "refused", misdirected);
		return;
	}
	if (!s->tls || !s->slice) {
		session_finalize(s, CONN_ER_DENIED, "refused", PROXY_ER_NO_MATERIAL);
		return;
	}
	if (n_conns > p->cfg.max_conns) {
		session_finalize(s, CONN_ER_DENIED, "refused", PROXY_ER_LIMIT);
		return;
	}
	conn_start(&s->down); /* plain: OPEN, not read until a module reads it */
	if (outbound)
		outbound_begin(s);
	else
		proxy_accept_inbound(s, n_in);
}

void proxy_adopt(struct proxy *p, int outbound, uv_os_sock_t fd, const struct sockaddr_storage *src,
		 const struct sockaddr_storage *local, const struct sockaddr_storage *dst)
{
	struct proxy_incoming in = {.fd = fd, .src = src, .local = local, .dst = dst};

	proxy_accept(p, &in, outbound);
}

static void proxy_accept_out(uv_stream_t *l, int status)
{
	struct proxy_incoming in = {.listener = l};

	if (status == 0)
		proxy_accept(l->data, &in, 1);
}

static void proxy_accept_in(uv_stream_t *l, int status)
{
	struct proxy_incoming in = {.listener = l};

	if (status == 0)
		proxy_accept(l->data, &in, 0);
}

/* One listener: alone, or in the workers' SO_REUSEPORT group. */
static int proxy_listen(struct proxy *p, uv_tcp_t *l, uint16_t port, uv_connection_cb cb,
			uint16_t *bound)
{
	if (!p->cfg.group)
		return conn_listen(p->loop, l, p->cfg.host, port, cb, p, bound);
	return conn_listen_group(p->loop, l, p->cfg.host, port, p->cfg.group == 1, cb, p, bound);
}

int proxy_start(uv_loop_t *loop, const struct proxy_config *cfg, proxy_log_cb log, void *arg,
		struct proxy **out)
{
	struct proxy *p;
	int rc = 0;

	if (!cfg->max_conns || cfg->outbound_reserve >= cfg->max_conns || !cfg->max_handshakes ||
	    !cfg->max_pending_per_source)
		return UV_EINVAL;
	if (!(p = calloc(1, sizeof(*p))))
		return UV_ENOMEM;
	p->loop = loop;
	conn_loop_init(&p->cl, loop);
	p->cfg = *cfg;
	p->log = log;
	p->arg = arg;
	p->refs = 1;
	p->budget = cfg->budget ? cfg->budget : proxy_budget_new();
	if (p->budget && cfg->budget)
		atomic_fetch_add_explicit(&p->budget->refs, 1, memory_order_relaxed);
	if (!p->budget || !(p->pick = svcpick_new(uv_hrtime()))) {
		proxy_budget_free(p->budget);
		free(p);
		return UV_ENOMEM;
	}
	list_init(&p->sessions);
	list_init(&p->waiting);
	if (cfg->own_addrs)
		localaddr_set(&p->own, cfg->own_addrs, cfg->n_own_addrs);
	p->out_port = cfg->outbound_port; /* no listeners: proxy_adopt's */
	p->in_port = cfg->inbound_port;
	pthread_mutex_lock(&p->budget->lock);
	list_add_tail(&p->budget->proxies, &p->budget_link);
	pthread_mutex_unlock(&p->budget->lock);
	if (!(rc = uv_async_init(loop, &p->wake, proxy_wake)))
		p->wake.data = p;
	if (!rc && cfg->host &&
	    !(rc = proxy_listen(p, &p->out_l, cfg->outbound_port, proxy_accept_out, &p->out_port)))
		rc = proxy_listen(p, &p->in_l, cfg->inbound_port, proxy_accept_in, &p->in_port);
	if (rc < 0) {
		proxy_stop(p);
		return rc;
	}
	*out = p;
	return 0;
}

void proxy_ports(const struct proxy *p, uint16_t *outbound, uint16_t *inbound)
{
	*outbound = p->out_port;
	*inbound = p->in_port;
}

void proxy_unref(struct proxy *p)
{
	if (--p->refs > 0)
		return;
	mtls_ctx_unref(p->tls);
	policy_slice_unref(p->slice);
	svcpick_free(p->pick); /* the sessions that held its states are gone */
	conn_loop_cleanup(&p->cl);
	proxy_budget_free(p->budget);
	free(p);
}

/* ---- policy changes */

/* What `slice` decides for a session that was already decided once: the
 * same question as at accept, with what the session has become (its
 * peer's verified identity, the server identity it expected). */
static void proxy_redecide(const struct session *s, const struct policy_slice *slice,
			   struct policy_decision *d)
{
	const struct sockaddr *dst = (const struct sockaddr *)&s->dst;
	int meshed = s->peer_id != NULL;

	if (!s->outbound) {
		policy_slice_decide_inbound(slice, meshed ? s->peer_id : NULL,
					    (const struct sockaddr *)&s->src, s->port, d);
		return;
	}
	const char *peer = policy_slice_peer(slice, dst, s->port, d);
	if (meshed && peer && !strcmp(peer, s->peer_id))
		return;
	if (!meshed && !peer) {
		policy_slice_decide_egress(slice, dst, s->port, d);
		return;
	}
	/* The destination changed kind or identity: this connection was made
	 * for what it was, not for what it is now. */
	*d = (struct policy_decision){
		.verdict = POLICY_DENY,
		.reason = !meshed ? "the destination is now a meshed workload: plaintext to it "
				    "is no longer allowed"
			  : peer  ? "the identity expected at the destination changed"
			  : policy_slice_meshed(slice, dst)
				  ? "the destination no longer admits this workload"
				  : "the destination is no longer a meshed workload",
	};
}

/* Applies the proxy's new slice to one open session (proxy.h). */
static void proxy_policy_changed(struct session *s)
{
	struct policy_slice *slice = s->p->slice;
	struct policy_decision d;

	switch (s->state) {
	case SESSION_ST_WAIT:
	case SESSION_ST_PEEK:
	case SESSION_ST_HANDSHAKE: /* not decided yet: the new policy will */
		policy_slice_unref(s->slice);
		s->slice = policy_slice_ref(slice);
		return;
	case SESSION_ST_CONNECT:
	case SESSION_ST_UP_HANDSHAKE:
	case SESSION_ST_RELAY:
		break;
	case SESSION_ST_CLOSING:
	case SESSION_ST__COUNT:
		return;
	}
	proxy_redecide(s, slice, &d);
	/* d borrows from the new slice: hold it before letting the old go. */
	policy_slice_ref(slice);
	policy_slice_unref(s->slice);
	s->slice = slice;
	s->d = d;
	if (d.verdict == POLICY_DENY)
		session_finalize(s, CONN_ER_DENIED, "policy_change", NULL);
}

void proxy_set_material(struct proxy *p, struct mtls_ctx *tls, struct policy_slice *slice)
{
	struct mtls_ctx *old_tls = p->tls;
	struct policy_slice *old_slice = p->slice;
	struct list_node *n, *next;

	p->tls = tls ? mtls_ctx_ref(tls) : NULL;
	p->slice = slice ? policy_slice_ref(slice) : NULL;
	mtls_ctx_unref(old_tls);
	policy_slice_unref(old_slice);
	if (p->slice != old_slice)
		svcpick_sweep(p->pick, p->slice);
	if (!p->slice || p->slice == old_slice || p->cfg.keep_on_policy_change)
		return;
	/* finalizing never frees at once: next stays valid */
	list_for_each_safe(n, next, &p->sessions)
		proxy_policy_changed(list_entry(n, struct session, link));
}

unsigned proxy_conns(const struct proxy *p)
{
	return atomic_load_explicit(&p->budget->n_conns, memory_order_relaxed);
}

static void proxy_listener_closed(uv_handle_t *h)
{
	proxy_unref(h->data);
}

void proxy_stop(struct proxy *p)
{
	struct list_node *n, *next;

	if (!p || p->stopping)
		return;
	p->stopping = 1;
	pthread_mutex_lock(&p->budget->lock);
	list_del(&p->budget_link); /* woken no more */
	pthread_mutex_unlock(&p->budget->lock);
	if (p->wake.loop) {
		p->refs++;
		uv_close((uv_handle_t *)&p->wake, proxy_listener_closed);
	}
	list_for_each_safe(n, next, &p->sessions) session_finalize(
		list_entry(n, struct session, link), CONN_ER_STOPPED, NULL, "agent stopping");
	if (p->out_l.loop) { /* initialised */
		p->refs++;
		uv_close((uv_handle_t *)&p->out_l, proxy_listener_closed);
	}
	if (p->in_l.loop) {
		p->refs++;
		uv_close((uv_handle_t *)&p->in_l, proxy_listener_closed);
	}
	proxy_unref(p);
}
