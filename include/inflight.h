/* inflight: requests in flight across the responder pool, counted in one shared page.
 *
 * nginx cannot tell how many requests the pool is really serving (a connection still sending its
 * body is not yet ours), so the pool counts for itself. The manager creates the page (a memfd)
 * before it starts responders; each responder maps it (fd 3) and counts its own requests in its
 * own slot, so a responder that dies takes nothing with it: the manager clears the slot before
 * the respawn. Every responder runs one thread more than its share of the capacity, so when the
 * pool is full a free thread is still there to answer 503 at once instead of leaving the client
 * in the socket's backlog.
 *
 * Admission is conservative under races (two threads that both push the sum over the limit both
 * refuse), never generous: the sum never exceeds the capacity. */
#ifndef OCPM_INFLIGHT_H
#define OCPM_INFLIGHT_H

/* Manager: create and map the page for nslots responders. Returns the fd (close-on-exec) or -1. */
int inflight_create(int nslots);
/* Responder: map the page passed as fd. Returns 0 or -1. */
int inflight_attach(int fd, int nslots);
void inflight_detach(void);

/* Count a request in slot. Admitted (0) while the pool's total stays within cap_all; otherwise
 * nothing is counted but the refusal, and -1 is returned. */
int inflight_enter(int slot, long cap_all);
/* The admitted request is a message (it holds a thread for a whole run): admitted (0) while the
 * pool's messages stay within cap_msg, else -1 (the caller still leaves with message = 0). */
int inflight_promote(int slot, long cap_msg);
void inflight_leave(int slot, int message);

/* Manager: totals over every slot, and refusals since start (kept across slot resets). */
long inflight_total(void);
long inflight_messages(void);
long long inflight_refused(void);
/* Manager: the refusals of slots reset since start (inflight_refused counts them too; a responder's
 * inflight_refused counts only the slots'). */
long long inflight_refused_before(void);
/* Manager: a responder died; forget what its slot counted. */
void inflight_reset(int slot);

#endif
