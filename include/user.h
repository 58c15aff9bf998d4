/* user: what each user holds right now, for the bounds one user may not pass.
 *
 * Counters per owner (the unauthenticated owner "" included): sessions, executions running, messages
 * waiting and their bytes in memory, and messages whose client holds a responder thread while it waits
 * (synchronous and streaming ones). An entry exists while any counter is above zero. O(1) per
 * call; the table grows with the number of users holding something. */
#ifndef OCPM_USER_H
#define OCPM_USER_H

typedef enum {
    USER_SESSIONS,
    USER_RUNNING,
    USER_QUEUED,       /* messages waiting to start */
    USER_QUEUED_BYTES,
    USER_WAITERS,
    USER_DAY_TOKENS,     /* tokens used today (UTC; budget.h resets them) */
    USER_DAY_COST_MICRO, /* cost today, in millionths */
    USER_NCOUNTERS
} user_counter_t;

typedef struct user_table user_table_t;

user_table_t *user_table_new(void);
void user_table_free(user_table_t *t);
long user_count(user_table_t *t, const char *owner, user_counter_t k);
/* Add delta (negative to release). Returns -1 when out of memory (nothing counted). */
int user_add(user_table_t *t, const char *owner, user_counter_t k, long delta);
/* Set counter k of every user to 0. */
void user_reset(user_table_t *t, user_counter_t k);
/* The total over every user. */
long user_total(const user_table_t *t, user_counter_t k);
/* share (percent) of capacity, at least 1: the most one user may hold. */
long user_share_of(long capacity, long share_percent);

#endif
