/* backoff: exponential backoff with full jitter, for every retry loop of
 * the agent's control-plane client (AWS architecture blog, "Exponential
 * Backoff And Jitter": spreading retries keeps a fleet from reconnecting
 * in lockstep after a control-plane restart). */
#ifndef CINCH_AGENT_BACKOFF_H
#define CINCH_AGENT_BACKOFF_H

#define BACKOFF_MIN_MS 1000u
#define BACKOFF_MAX_MS 30000u

struct backoff {
	unsigned cur_ms; /* the ceiling of the next delay */
};

void backoff_reset(struct backoff *b);
/* The next delay: uniform in [cur/2, cur]; then cur doubles up to the cap. */
unsigned backoff_next(struct backoff *b);

#endif
