/* restart_limit: supervisord's FATAL rule as a counter: at most `limit` restarts within a sliding
 * window of `window_ms`; the one past that is refused, and whoever supervises the child declares
 * it FATAL (no more restarts until an operator asks).
 *
 * The clock is the caller's (`now`, in seconds, any monotonic-enough origin): the owner passes
 * clock_now(), the unit test passes the times it wants. O(limit) per call; limit is bounded by
 * the setting (at most RESTART_LIMIT_MAX). */
#ifndef OCPM_RESTART_LIMIT_H
#define OCPM_RESTART_LIMIT_H

#define RESTART_LIMIT_MAX 1000

typedef struct restart_limit restart_limit_t;

/* limit 0: no limit (every restart is allowed). NULL on no memory or a limit past the bound. */
restart_limit_t *restart_limit_new(long limit, long window_ms);
void restart_limit_free(restart_limit_t *r);
/* A restart is about to happen at now. Returns 0 and counts it when it is within the limit, or 1
 * (not counted) when `limit` restarts already happened within the window before now. */
int restart_limit_note(restart_limit_t *r, double now);
/* Restarts counted within the window ending at now. */
long restart_limit_count(const restart_limit_t *r, double now);
/* Forget every restart (an operator cleared FATAL: the child gets the whole limit again). */
void restart_limit_reset(restart_limit_t *r);
long restart_limit_window_ms(const restart_limit_t *r);

#endif
