/* probe: see probe.h.
 *
 * States of the probe: WAIT (the timer counts down to the next round),
 * RUN (the targets' connects are out, the timer is the round's deadline).
 * A target is one probe connection: CONNECTING, then SEEN when the proxy
 * claimed it (the connect callback may come before or after that), or a
 * failure that ends the round. At the end of a round every target socket
 * is closed; the next round starts only after they are, so a socket never
 * belongs to two rounds. */
#include "probe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "intercept.h"

#define PROBE_MAX_TARGETS 4

enum probe_state {
	PROBE_ST_WAIT = 0,
	PROBE_ST_RUN,
	PROBE_ST_STOPPED,
};

struct probe_target {
	struct probe *pr;
	uv_tcp_t tcp;
	uv_connect_t creq;
	int family, inbound, open, seen;
	uint16_t src_port; /* the socket's own port, known before connect */
};

struct probe {
	uv_loop_t *loop;
	struct probe_config cfg;
	probe_result_cb cb;
	void *arg;
	enum probe_state state;
	uv_timer_t timer;
	struct probe_target t[PROBE_MAX_TARGETS];
	int n_targets;
	int open_handles; /* target sockets and the timer, for probe_stop */
	char why[256];
};

static void probe_round(uv_timer_t *timer);

static const char *probe_where(const struct probe_target *t, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s%s:%u (%s)", t->family == AF_INET6 ? "[" : "",
		 t->family == AF_INET ? INTERCEPT_PROBE_ADDR4 : INTERCEPT_PROBE_ADDR6,
		 t->family == AF_INET6 ? "]" : "",
		 t->inbound ? INTERCEPT_PROBE_PORT_IN : INTERCEPT_PROBE_PORT_OUT,
		 t->inbound ? "the inbound redirect" : "the outbound redirect");
	return buf;
}

static void probe_free_if_done(struct probe *pr)
{
	if (pr->state == PROBE_ST_STOPPED && pr->open_handles == 0)
		free(pr);
}

static void probe_target_closed(uv_handle_t *h)
{
	struct probe_target *t = h->data;
	struct probe *pr = t->pr;

	t->open = 0;
	pr->open_handles--;
	probe_free_if_done(pr);
}

static void probe_timer_closed(uv_handle_t *h)
{
	struct probe *pr = h->data;
	pr->open_handles--;
	probe_free_if_done(pr);
}

static void probe_close_targets(struct probe *pr)
{
	for (int i = 0; i < pr->n_targets; i++)
		if (pr->t[i].open && !uv_is_closing((uv_handle_t *)&pr->t[i].tcp))
			uv_close((uv_handle_t *)&pr->t[i].tcp, probe_target_closed);
}

/* Ends the running round: why NULL when it passed. */
static void probe_end(struct probe *pr, const char *why)
{
	if (pr->state != PROBE_ST_RUN)
		return;
	pr->state = PROBE_ST_WAIT;
	probe_close_targets(pr);
	uv_timer_start(&pr->timer, probe_round, pr->cfg.interval_ms, 0);
	pr->cb(pr->arg, why == NULL, why);
}

static void probe_check_done(struct probe *pr)
{
	for (int i = 0; i < pr->n_targets; i++)
		if (!pr->t[i].seen)
			return;
	probe_end(pr, NULL);
}

static void probe_connected(uv_connect_t *req, int status)
{
	struct probe_target *t = req->data;
	struct probe *pr = t->pr;
	char where[96];

	if (pr->state != PROBE_ST_RUN || status == UV_ECANCELED)
		return;
	if (status < 0) {
		snprintf(pr->why, sizeof(pr->why),
			 "probe to %s: %s: not redirected (no rules from `cinch-agent init`, "
			 "or the agent does not run as the UID they name)",
			 probe_where(t, where, sizeof(where)), uv_strerror(status));
		probe_end(pr, pr->why);
	}
	/* Connected: the proxy's claim marks it seen (before or after this). */
}

static void probe_timeout(uv_timer_t *timer)
{
	struct probe *pr = timer->data;
	char where[96];

	for (int i = 0; i < pr->n_targets; i++) {
		if (pr->t[i].seen)
			continue;
		snprintf(pr->why, sizeof(pr->why), "probe to %s did not reach the agent in %u ms",
			 probe_where(&pr->t[i], where, sizeof(where)), pr->cfg.timeout_ms);
		break;
	}
	probe_end(pr, pr->why);
}

/* Opens one target's socket on a loopback port of its own and connects. */
static int probe_target_start(struct probe *pr, struct probe_target *t)
{
	struct sockaddr_storage local = {0}, dst = {0};
	int len = sizeof(local), rc;
	uint16_t port = t->inbound ? INTERCEPT_PROBE_PORT_IN : INTERCEPT_PROBE_PORT_OUT;

	if (t->family == AF_INET) {
		uv_ip4_addr("127.0.0.1", 0, (struct sockaddr_in *)&local);
		uv_ip4_addr(INTERCEPT_PROBE_ADDR4, port, (struct sockaddr_in *)&dst);
	} else {
		uv_ip6_addr("::1", 0, (struct sockaddr_in6 *)&local);
		uv_ip6_addr(INTERCEPT_PROBE_ADDR6, port, (struct sockaddr_in6 *)&dst);
	}
	t->seen = 0;
	if ((rc = uv_tcp_init(pr->loop, &t->tcp)) < 0)
		return rc;
	t->open = 1;
	pr->open_handles++;
	t->tcp.data = t;
	t->creq.data = t;
	if ((rc = uv_tcp_bind(&t->tcp, (struct sockaddr *)&local, 0)) < 0 ||
	    (rc = uv_tcp_getsockname(&t->tcp, (struct sockaddr *)&local, &len)) < 0)
		return rc;
	t->src_port = ntohs(t->family == AF_INET ? ((struct sockaddr_in *)&local)->sin_port
						 : ((struct sockaddr_in6 *)&local)->sin6_port);
	return uv_tcp_connect(&t->creq, &t->tcp, (struct sockaddr *)&dst, probe_connected);
}

static void probe_round(uv_timer_t *timer)
{
	struct probe *pr = timer->data;
	char where[96];

	for (int i = 0; i < pr->n_targets; i++)
		if (pr->t[i].open) { /* last round's sockets still closing */
			uv_timer_start(&pr->timer, probe_round, 10, 0);
			return;
		}
	pr->state = PROBE_ST_RUN;
	uv_timer_start(&pr->timer, probe_timeout, pr->cfg.timeout_ms, 0);
	for (int i = 0; i < pr->n_targets; i++) {
		int rc = probe_target_start(pr, &pr->t[i]);
		if (rc < 0) {
			snprintf(pr->why, sizeof(pr->why), "probe to %s: cannot connect: %s",
				 probe_where(&pr->t[i], where, sizeof(where)), uv_strerror(rc));
			probe_end(pr, pr->why);
			return;
		}
	}
}

int probe_start(uv_loop_t *loop, const struct probe_config *cfg, probe_result_cb cb, void *arg,
		struct probe **out)
{
	struct probe *pr = calloc(1, sizeof(*pr));

	if (!pr)
		return -ENOMEM;
	pr->loop = loop;
	pr->cfg = *cfg;
	pr->cb = cb;
	pr->arg = arg;
	for (int fam = 0; fam < (cfg->ipv6 ? 2 : 1); fam++)
		for (int in = 0; in < 2; in++)
			pr->t[pr->n_targets++] = (struct probe_target){
				.pr = pr, .family = fam ? AF_INET6 : AF_INET, .inbound = in};
	uv_timer_init(loop, &pr->timer);
	pr->timer.data = pr;
	pr->open_handles = 1;
	uv_timer_start(&pr->timer, probe_round, 0, 0);
	*out = pr;
	return 0;
}

int probe_is_dst(const struct sockaddr_storage *a)
{
	uint8_t want[16];
	uint16_t port;

	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)a;
		inet_pton(AF_INET, INTERCEPT_PROBE_ADDR4, want);
		if (memcmp(&s->sin_addr, want, 4) != 0)
			return 0;
		port = ntohs(s->sin_port);
	} else if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)a;
		inet_pton(AF_INET6, INTERCEPT_PROBE_ADDR6, want);
		if (memcmp(&s->sin6_addr, want, 16) != 0)
			return 0;
		port = ntohs(s->sin6_port);
	} else {
		return 0;
	}
	return port == INTERCEPT_PROBE_PORT_OUT || port == INTERCEPT_PROBE_PORT_IN;
}

int probe_claim(struct probe *pr, int outbound, const struct sockaddr_storage *src,
		const struct sockaddr_storage *dst)
{
	char where[96];

	if (!pr || !probe_is_dst(dst))
		return 0;
	if (pr->state != PROBE_ST_RUN)
		return 1; /* a late probe of an ended round */
	uint16_t sport =
		ntohs(src->ss_family == AF_INET ? ((const struct sockaddr_in *)src)->sin_port
						: ((const struct sockaddr_in6 *)src)->sin6_port);
	int fam = dst->ss_family;
	uint16_t dport = ntohs(fam == AF_INET ? ((const struct sockaddr_in *)dst)->sin_port
					      : ((const struct sockaddr_in6 *)dst)->sin6_port);
	for (int i = 0; i < pr->n_targets; i++) {
		struct probe_target *t = &pr->t[i];
		if (t->family != fam || t->src_port != sport || t->seen ||
		    dport != (t->inbound ? INTERCEPT_PROBE_PORT_IN : INTERCEPT_PROBE_PORT_OUT))
			continue;
		if (t->inbound == outbound) {
			snprintf(pr->why, sizeof(pr->why),
				 "probe to %s arrived on the %s listener: the redirect ports do "
				 "not match the agent's",
				 probe_where(t, where, sizeof(where)),
				 outbound ? "outbound" : "inbound");
			probe_end(pr, pr->why);
			return 1;
		}
		t->seen = 1;
		probe_check_done(pr);
		return 1;
	}
	return 1;
}

void probe_stop(struct probe *pr)
{
	if (!pr || pr->state == PROBE_ST_STOPPED)
		return;
	pr->state = PROBE_ST_STOPPED;
	uv_timer_stop(&pr->timer);
	uv_close((uv_handle_t *)&pr->timer, probe_timer_closed);
	probe_close_targets(pr);
}
