/* A ring of the times of the last `limit` restarts: the oldest one tells whether the window
 * already holds `limit` of them. */
#include "restart_limit.h"

#include <stdlib.h>

struct restart_limit {
    long limit, window_ms;
    long head, n; /* the oldest time's slot, and how many times are kept */
    double at[];  /* limit slots */
};

restart_limit_t *restart_limit_new(long limit, long window_ms)
{
    if (limit < 0 || limit > RESTART_LIMIT_MAX || window_ms < 0)
        return NULL;
    restart_limit_t *r = calloc(1, sizeof *r + (size_t)limit * sizeof r->at[0]);
    if (!r)
        return NULL;
    r->limit = limit;
    r->window_ms = window_ms;
    return r;
}

void restart_limit_free(restart_limit_t *r) { free(r); }

/* Drop the times that fell out of the window ending at now. */
static void restart_limit_expire(restart_limit_t *r, double now)
{
    while (r->n > 0 && (now - r->at[r->head]) * 1000.0 >= (double)r->window_ms) {
        r->head = (r->head + 1) % r->limit;
        r->n--;
    }
}

int restart_limit_note(restart_limit_t *r, double now)
{
    if (r->limit == 0)
        return 0;
    restart_limit_expire(r, now);
    if (r->n >= r->limit)
        return 1;
    r->at[(r->head + r->n) % r->limit] = now;
    r->n++;
    return 0;
}

long restart_limit_count(const restart_limit_t *r, double now)
{
    long n = 0;
    for (long i = 0; i < r->n; i++)
        n += (now - r->at[(r->head + i) % r->limit]) * 1000.0 < (double)r->window_ms;
    return n;
}

void restart_limit_reset(restart_limit_t *r) { r->head = r->n = 0; }
long restart_limit_window_ms(const restart_limit_t *r) { return r->window_ms; }
