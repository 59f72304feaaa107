/* probe: the agent's self-check that interception really works. Traffic
 * that silently bypasses the mesh is a security failure, so the agent is
 * ready only after its own connections have gone through the rules of
 * `cinch-agent init` and arrived where they should.
 *
 * A round connects, from the agent's UID, to the probe address on the two
 * probe ports (intercept.h: 127.0.0.7:15011 and :15016, and the same ports
 * on ::1 when IPv6 is probed). The rules send them through the outbound
 * and the inbound redirect chains to the agent's own listeners; the proxy
 * hands every accepted connection whose original destination is a probe
 * address to probe_claim(), which matches it to the round's socket by
 * source port and checks it came in on the right listener. The round
 * passes when every probe has arrived, and fails at the first refused
 * connect, a probe on the wrong listener, or the timeout. Rounds repeat
 * every interval, so rules flushed later turn the agent not-ready.
 *
 * Each round's result goes to the owner's callback (agentd: /ready, the
 * log, the metrics). The probe owns its handles; probe_stop() closes them
 * and frees it once they are closed. */
#ifndef CINCH_AGENT_PROBE_H
#define CINCH_AGENT_PROBE_H

#include <sys/socket.h>
#include <uv.h>

struct probe_config {
	unsigned interval_ms; /* between the end of a round and the next */
	unsigned timeout_ms;  /* a round's deadline */
	int ipv6;	      /* probe the IPv6 rules too */
};

/* A round's outcome: ok, or why it failed (a static or probe-owned
 * string, valid for the call). */
typedef void (*probe_result_cb)(void *arg, int ok, const char *why);

struct probe;

/* Starts the first round at the loop's next iteration. 0 and *out, or
 * -ENOMEM. */
int probe_start(uv_loop_t *loop, const struct probe_config *cfg, probe_result_cb cb, void *arg,
		struct probe **out) __attribute__((warn_unused_result));

/* For the proxy: is the accepted connection from src to (original) dst a
 * probe? 1: it is (the proxy closes it without logging it as a
 * connection), and it counts for the current round if it is one of its
 * probes; 0: an ordinary connection. `outbound`: which listener took it.
 * `pr` may be NULL (no probing: 0). */
int probe_claim(struct probe *pr, int outbound, const struct sockaddr_storage *src,
		const struct sockaddr_storage *dst);

/* Is `a` a probe destination: the probe address on a probe port? (No
 * state: for the workers that hand their probes to the probe's loop.) */
int probe_is_dst(const struct sockaddr_storage *a);

/* Stops probing; frees the probe once its handles are closed (run the
 * loop). NULL is a no-op. */
void probe_stop(struct probe *pr);

#endif
