#define _GNU_SOURCE
#include "session.h"

#include <stdlib.h>
#include <string.h>

#include "valid.h"

typedef struct qnode {
    struct execution *e;
    struct qnode *next;
} qnode_t;

struct session {
    char id[VALID_ID_MAX + 1];
    char *owner, *workspace, *wsname, *oc_id;
    double created_at, last_activity;
    long message_count;
    int server; /* the opencode server it is placed on, -1: none yet */
    int pool;   /* the pool it lives in (the manager's tenant index), -1: not configured any more */
    struct execution *running;
    qnode_t *head, *tail;
    size_t waiting;
    session_t *next; /* hash chain */
};

struct session_table {
    session_t **buckets;
    size_t nbuckets, nsess;
};

static size_t session_hash(const session_table_t *t, const char *owner, const char *id)
{
    size_t h = 1469598103934665603ULL;
    for (const char *s = owner; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    h = (h ^ 0xffu) * 1099511628211ULL; /* a byte no owner holds: ("ab","c") differs from ("a","bc") */
    for (const char *s = id; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h % t->nbuckets;
}

session_table_t *session_table_new(size_t n)
{
    session_table_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->nbuckets = n ? n : 1024;
    t->buckets = calloc(t->nbuckets, sizeof *t->buckets);
    if (!t->buckets) {
        free(t);
        return NULL;
    }
    return t;
}

static void session_free(session_t *s)
{
    while (s->head) {
        qnode_t *q = s->head;
        s->head = q->next;
        free(q);
    }
    free(s->owner);
    free(s->workspace);
    free(s->wsname);
    free(s->oc_id);
    free(s);
}

void session_table_free(session_table_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nbuckets; i++)
        while (t->buckets[i]) {
            session_t *s = t->buckets[i];
            t->buckets[i] = s->next;
            session_free(s);
        }
    free(t->buckets);
    free(t);
}

session_t *session_add(session_table_t *t, const char *id, const char *owner, const char *workspace, const char *wsname, const char *oc,
                 double created_at, double last_activity, long message_count)
{
    session_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    strncpy(s->id, id, VALID_ID_MAX);
    s->owner = strdup(owner);
    s->workspace = strdup(workspace);
    s->wsname = strdup(wsname);
    s->oc_id = oc ? strdup(oc) : NULL;
    if (!s->owner || !s->workspace || !s->wsname || (oc && !s->oc_id)) {
        session_free(s);
        return NULL;
    }
    s->created_at = created_at;
    s->last_activity = last_activity;
    s->message_count = message_count;
    s->server = -1;
    size_t h = session_hash(t, owner, id);
    s->next = t->buckets[h];
    t->buckets[h] = s;
    t->nsess++;
    return s;
}

session_t *session_find(const session_table_t *t, const char *owner, const char *id)
{
    for (session_t *s = t->buckets[session_hash(t, owner, id)]; s; s = s->next)
        if (strcmp(s->id, id) == 0 && strcmp(s->owner, owner) == 0)
            return s;
    return NULL;
}

void session_remove(session_table_t *t, session_t *s)
{
    session_t **pp = &t->buckets[session_hash(t, s->owner, s->id)];
    while (*pp && *pp != s)
        pp = &(*pp)->next;
    if (*pp) {
        *pp = s->next;
        t->nsess--;
    }
    session_free(s);
}

size_t session_count(const session_table_t *t) { return t->nsess; }

void session_each(session_table_t *t, void (*fn)(void *ctx, session_t *s), void *ctx)
{
    for (size_t i = 0; i < t->nbuckets; i++)
        for (session_t *s = t->buckets[i], *n; s; s = n) {
            n = s->next; /* fn may remove s */
            fn(ctx, s);
        }
}

const char *session_id(const session_t *s) { return s->id; }
double session_created_at(const session_t *s) { return s->created_at; }
double session_last_activity(const session_t *s) { return s->last_activity; }
long session_message_count(const session_t *s) { return s->message_count; }

const char *session_owner(const session_t *s) { return s->owner; }
const char *session_workspace(const session_t *s) { return s->workspace; }
const char *session_workspace_name(const session_t *s) { return s->wsname; }
const char *session_oc_id(const session_t *s) { return s->oc_id; }

int session_server(const session_t *s) { return s->server; }
int session_pool(const session_t *s) { return s->pool; }
void session_set_pool(session_t *s, int pool) { s->pool = pool; }
void session_set_server(session_t *s, int server) { s->server = server; }

int session_set_oc_id(session_t *s, const char *oc)
{
    char *n = oc ? strdup(oc) : NULL;
    if (oc && !n)
        return -1;
    free(s->oc_id);
    s->oc_id = n;
    return 0;
}

void session_note_message(session_t *s, double at)
{
    s->last_activity = at;
    s->message_count++;
}

struct execution *session_running(const session_t *s) { return s->running; }
void session_set_running(session_t *s, struct execution *e) { s->running = e; }
size_t session_waiting(const session_t *s) { return s->waiting; }

int session_enqueue(session_t *s, struct execution *e)
{
    qnode_t *q = calloc(1, sizeof *q);
    if (!q)
        return -1;
    q->e = e;
    if (s->tail)
        s->tail->next = q;
    else
        s->head = q;
    s->tail = q;
    s->waiting++;
    return 0;
}

struct execution *session_peek(const session_t *s) { return s->head ? s->head->e : NULL; }

struct execution *session_dequeue(session_t *s)
{
    qnode_t *q = s->head;
    if (!q)
        return NULL;
    s->head = q->next;
    if (!s->head)
        s->tail = NULL;
    s->waiting--;
    struct execution *e = q->e;
    free(q);
    return e;
}

int session_unqueue(session_t *s, struct execution *e)
{
    qnode_t *prev = NULL;
    for (qnode_t *q = s->head; q; prev = q, q = q->next) {
        if (q->e != e)
            continue;
        if (prev)
            prev->next = q->next;
        else
            s->head = q->next;
        if (s->tail == q)
            s->tail = prev;
        s->waiting--;
        free(q);
        return 1;
    }
    return 0;
}

json_object *session_json(const session_t *s)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(s->id));
    json_object_object_add(o, "owner", s->owner[0] ? json_object_new_string(s->owner) : NULL);
    json_object_object_add(o, "workspace", json_object_new_string(s->wsname));
    json_object_object_add(o, "opencode_session_id", s->oc_id ? json_object_new_string(s->oc_id) : NULL);
    json_object_object_add(o, "created_at", json_object_new_double(s->created_at));
    json_object_object_add(o, "last_activity", json_object_new_double(s->last_activity));
    json_object_object_add(o, "message_count", json_object_new_int64(s->message_count));
    json_object_object_add(o, "busy", json_object_new_boolean(s->running != NULL));
    json_object_object_add(o, "queued", json_object_new_int64((int64_t)s->waiting));
    json_object_object_add(o, "server", s->server >= 0 ? json_object_new_int(s->server) : NULL);
    return o;
}

static int session_cmp_id(const void *a, const void *b)
{
    return strcmp((*(session_t *const *)a)->id, (*(session_t *const *)b)->id);
}

json_object *session_page(const session_table_t *t, const char *owner, const char *after, long limit, int *more)
{
    size_t n = 0, cap = 64;
    session_t **v = malloc(cap * sizeof *v);
    *more = 0;
    if (!v)
        return NULL;
    for (size_t i = 0; i < t->nbuckets; i++)
        for (session_t *s = t->buckets[i]; s; s = s->next) {
            if (strcmp(s->owner, owner) != 0 || strcmp(s->id, after) <= 0)
                continue;
            if (n == cap) {
                session_t **nv = realloc(v, 2 * cap * sizeof *v);
                if (!nv) {
                    free(v);
                    return NULL;
                }
                v = nv;
                cap *= 2;
            }
            v[n++] = s;
        }
    qsort(v, n, sizeof *v, session_cmp_id);
    json_object *a = json_object_new_array();
    for (size_t i = 0; i < n && (long)i < limit; i++)
        json_object_array_add(a, session_json(v[i]));
    *more = (long)n > limit;
    free(v);
    return a;
}
