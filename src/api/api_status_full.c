/* `/api/opencode/status?full` (PHP-FPM's `?full`): the sessions with their state, the busiest first.
 *
 * Bounded: at most `limit` sessions (default API_STATUS_SESSIONS_DEFAULT, at most 1000: the
 * route's LIMIT field), with the total and whether the list was cut, so 100,000 sessions answer in
 * a few hundred KiB. The first `limit` are kept in a heap as the sessions are walked: O(n log
 * limit) in the loop and `limit` pointers, whatever n (the plain status never pays even that: it
 * is the published snapshot). */
#define _GNU_SOURCE
#include "api_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct api_full {
    const char *user; /* NULL: everyone's */
    session_t **heap; /* the best `cap` so far, the worst of them at the root */
    size_t n, cap, total;
} api_full_t;

static int api_full_cmp(const void *a, const void *b);

/* Sift the root of f's heap down (a max-heap by api_full_cmp: the root sorts last). */
static void api_full_down(api_full_t *f, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < f->n && api_full_cmp(&f->heap[l], &f->heap[w]) > 0)
            w = l;
        if (r < f->n && api_full_cmp(&f->heap[r], &f->heap[w]) > 0)
            w = r;
        if (w == i)
            return;
        session_t *t = f->heap[i];
        f->heap[i] = f->heap[w];
        f->heap[w] = t;
        i = w;
    }
}

static void api_full_collect(void *ctx, session_t *s)
{
    api_full_t *f = ctx;
    if (f->user && strcmp(session_owner(s), f->user) != 0)
        return;
    f->total++;
    if (f->n < f->cap) { /* sift up */
        size_t i = f->n++;
        f->heap[i] = s;
        while (i > 0 && api_full_cmp(&f->heap[i], &f->heap[(i - 1) / 2]) > 0) {
            session_t *t = f->heap[i];
            f->heap[i] = f->heap[(i - 1) / 2];
            f->heap[(i - 1) / 2] = t;
            i = (i - 1) / 2;
        }
    } else if (f->cap > 0 && api_full_cmp(&s, &f->heap[0]) < 0) {
        f->heap[0] = s;
        api_full_down(f, 0);
    }
}

/* 0 running, 1 queued (waiting for a slot or its server), 2 idle. */
static int api_full_rank(const session_t *s)
{
    return session_running(s) ? 0 : session_waiting(s) > 0 ? 1 : 2;
}

/* Running, then queued, then idle; within each the most recently active first, then by owner and id. */
static int api_full_cmp(const void *a, const void *b)
{
    const session_t *x = *(session_t *const *)a, *y = *(session_t *const *)b;
    int rx = api_full_rank(x), ry = api_full_rank(y);
    if (rx != ry)
        return rx - ry;
    double lx = session_last_activity(x), ly = session_last_activity(y);
    if (lx != ly)
        return lx < ly ? 1 : -1;
    int c = strcmp(session_owner(x), session_owner(y));
    return c ? c : strcmp(session_id(x), session_id(y));
}

static json_object *api_full_session(const manager_t *m, const session_t *s)
{
    static const char *const states[] = {"running", "queued", "idle"};
    json_object *o = json_object_new_object();
    int pool = session_pool(s);
    int64_t running = scheduler_running_id(s);
    json_object_object_add(o, "id", json_object_new_string(session_id(s)));
    json_object_object_add(o, "owner", *session_owner(s) ? json_object_new_string(session_owner(s)) : NULL);
    json_object_object_add(o, "pool", pool >= 0 && pool < m->ntenants
                                          ? json_object_new_string(m->tenants[pool].conf->pool_name) : NULL);
    json_object_object_add(o, "server", session_server(s) >= 0 ? json_object_new_int(session_server(s)) : NULL);
    json_object_object_add(o, "state", json_object_new_string(states[api_full_rank(s)]));
    json_object_object_add(o, "execution", running ? json_object_new_int64(running) : NULL);
    json_object_object_add(o, "queued", json_object_new_int64((int64_t)session_waiting(s)));
    json_object_object_add(o, "messages", json_object_new_int64(session_message_count(s)));
    json_object_object_add(o, "createdAt", json_object_new_int64((int64_t)(session_created_at(s) * 1000.0)));
    json_object_object_add(o, "lastActivity", json_object_new_int64((int64_t)(session_last_activity(s) * 1000.0)));
    return o;
}

void api_status_sessions(manager_t *m, json_object *o, const char *user, long limit)
{
    api_full_t f = {.user = user && *user ? user : NULL, .cap = limit > 0 ? (size_t)limit : 0};
    int oom = f.cap > 0 && !(f.heap = malloc(f.cap * sizeof *f.heap));
    if (oom)
        f.cap = 0;
    session_each(m->sessions, api_full_collect, &f);
    if (f.n > 1)
        qsort(f.heap, f.n, sizeof *f.heap, api_full_cmp);
    json_object *list = json_object_new_array();
    for (size_t i = 0; i < f.n; i++)
        json_object_array_add(list, api_full_session(m, f.heap[i]));
    json_object_object_add(o, "sessions", list);
    json_object_object_add(o, "sessionsScope", json_object_new_string(f.user ? "user" : "all"));
    json_object_object_add(o, "sessionsTotal", json_object_new_int64((int64_t)f.total));
    json_object_object_add(o, "sessionsLimit", json_object_new_int64(limit));
    json_object_object_add(o, "sessionsTruncated", json_object_new_boolean(f.total > f.n || oom));
    free(f.heap);
}
