#define _GNU_SOURCE
#include "snapshot.h"

#include "inflight.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* Room for each document: the status of 16 servers in several pools, metrics of as many. */
static const size_t snapshot_room[SNAPSHOT_DOCS] = {
    [SNAPSHOT_STATUS] = 192 * 1024,
    [SNAPSHOT_HEALTH] = 4 * 1024,
    [SNAPSHOT_METRICS] = 384 * 1024,
    [SNAPSHOT_METRICS_OM] = 384 * 1024,
    [SNAPSHOT_READY] = 4 * 1024,
};

typedef struct snapshot_doc {
    atomic_int stale;  /* set by every answer of the manager's, cleared when this one is put again */
    atomic_ullong seq; /* odd while the manager writes; 0: never published */
    atomic_int status;
    atomic_uint len; /* beyond the room: not published */
    atomic_llong published_ms; /* CLOCK_MONOTONIC, the same clock in every process */
    char content_type[64];
    int nlive;
    snapshot_live_t live[SNAPSHOT_LIVE_MAX];
} snapshot_doc_t;

typedef struct snapshot_head {
    snapshot_doc_t doc[SNAPSHOT_DOCS];
} snapshot_head_t;

static snapshot_head_t *head;

static long long snapshot_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
static char *bodies[SNAPSHOT_DOCS];
static size_t map_len;

static size_t snapshot_size(void)
{
    size_t n = (sizeof(snapshot_head_t) + 63) & ~(size_t)63;
    for (int i = 0; i < SNAPSHOT_DOCS; i++)
        n += snapshot_room[i];
    return n;
}

static int snapshot_map(int fd, int prot)
{
    map_len = snapshot_size();
    void *p = mmap(NULL, map_len, prot, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return -1;
    head = p;
    char *at = (char *)p + ((sizeof(snapshot_head_t) + 63) & ~(size_t)63);
    for (int i = 0; i < SNAPSHOT_DOCS; i++) {
        bodies[i] = at;
        at += snapshot_room[i];
    }
    return 0;
}

int snapshot_create(void)
{
    int fd = memfd_create("ocpm-snapshot", MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    if (ftruncate(fd, (off_t)snapshot_size()) != 0 || snapshot_map(fd, PROT_READ | PROT_WRITE) != 0) {
        close(fd);
        return -1;
    }
    for (int i = 0; i < SNAPSHOT_DOCS; i++)
        atomic_store(&head->doc[i].stale, 1); /* nothing published yet */
    return fd;
}

/* Responders map it read-only, from a descriptor opened read-only (pool.c): one that misbehaved
 * could not make its mapping writable and change what the others answer. */
int snapshot_attach(int fd) { return snapshot_map(fd, PROT_READ); }

void snapshot_detach(void)
{
    if (head)
        munmap(head, map_len);
    head = NULL;
}

void snapshot_put(int doc, int status, const char *content_type, const char *body, size_t len,
                  const snapshot_live_t *live, int nlive)
{
    if (!head || doc < 0 || doc >= SNAPSHOT_DOCS)
        return;
    snapshot_doc_t *d = &head->doc[doc];
    unsigned long long seq = atomic_load_explicit(&d->seq, memory_order_relaxed);
    atomic_store_explicit(&d->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    if (nlive > SNAPSHOT_LIVE_MAX)
        len = UINT32_MAX;
    for (int i = 0; i < nlive && len <= snapshot_room[doc]; i++)
        if (live[i].offset + SNAPSHOT_LIVE_WIDTH > len)
            len = UINT32_MAX;
    if (len <= snapshot_room[doc]) {
        d->nlive = nlive;
        if (nlive > 0)
            memcpy(d->live, live, (size_t)nlive * sizeof *live);
        memcpy(bodies[doc], body, len);
        snprintf(d->content_type, sizeof d->content_type, "%s", content_type);
        atomic_store_explicit(&d->status, status, memory_order_relaxed);
        atomic_store_explicit(&d->len, (unsigned)len, memory_order_relaxed);
    } else {
        atomic_store_explicit(&d->len, UINT32_MAX, memory_order_relaxed);
    }
    atomic_store_explicit(&d->published_ms, snapshot_now_ms(), memory_order_relaxed);
    atomic_store_explicit(&d->seq, seq + 2, memory_order_release);
}

void snapshot_stale(void)
{
    for (int i = 0; head && i < SNAPSHOT_DOCS; i++)
        atomic_store_explicit(&head->doc[i].stale, 1, memory_order_seq_cst);
}

void snapshot_fresh(int doc)
{
    if (head && doc >= 0 && doc < SNAPSHOT_DOCS)
        atomic_store_explicit(&head->doc[doc].stale, 0, memory_order_release);
}

int snapshot_is_stale(int doc)
{
    return !head || doc < 0 || doc >= SNAPSHOT_DOCS || atomic_load_explicit(&head->doc[doc].stale, memory_order_acquire);
}

/* The current value of a live field, over its bytes in b (a copy of n bytes). */
static void snapshot_live_write(char *b, size_t n, const snapshot_live_t *l)
{
    if (l->offset + SNAPSHOT_LIVE_WIDTH > n)
        return;
    long long v = l->base + (l->kind == SNAPSHOT_LIVE_INFLIGHT   ? inflight_total()
                             : l->kind == SNAPSHOT_LIVE_MESSAGES ? inflight_messages()
                                                                 : inflight_refused());
    char f[SNAPSHOT_LIVE_WIDTH + 1];
    snprintf(f, sizeof f, "%*lld", SNAPSHOT_LIVE_WIDTH, v);
    memcpy(b + l->offset, f, SNAPSHOT_LIVE_WIDTH);
}

int snapshot_get(int doc, int *status, char *content_type, size_t ctlen, char **body, size_t *len)
{
    if (!head || doc < 0 || doc >= SNAPSHOT_DOCS)
        return -1;
    snapshot_doc_t *d = &head->doc[doc];
    for (int tries = 0; tries < 3; tries++) {
        /* Stale first: a document read after a fresh mark is at least the one put before it. */
        if (atomic_load_explicit(&d->stale, memory_order_acquire))
            return -1;
        unsigned long long s1 = atomic_load_explicit(&d->seq, memory_order_acquire);
        if (s1 == 0)
            return -1;
        if (s1 & 1)
            continue;
        unsigned n = atomic_load_explicit(&d->len, memory_order_relaxed);
        if (n > snapshot_room[doc])
            return -1;
        /* A manager that has not published for this long is stuck or stopped: answering for it would
         * call it healthy; the request goes to it and waits, as it did before the snapshot. */
        if (snapshot_now_ms() - atomic_load_explicit(&d->published_ms, memory_order_relaxed) > SNAPSHOT_MAX_AGE_MS)
            return -1;
        char *b = malloc(n + 1);
        if (!b)
            return -1;
        memcpy(b, bodies[doc], n);
        b[n] = '\0';
        int st = atomic_load_explicit(&d->status, memory_order_relaxed);
        char ct[sizeof d->content_type];
        memcpy(ct, d->content_type, sizeof ct);
        ct[sizeof ct - 1] = '\0';
        int nlive = d->nlive;
        snapshot_live_t live[SNAPSHOT_LIVE_MAX];
        memcpy(live, d->live, sizeof live);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&d->seq, memory_order_relaxed) == s1 && nlive >= 0 && nlive <= SNAPSHOT_LIVE_MAX) {
            for (int i = 0; i < nlive; i++)
                snapshot_live_write(b, n, &live[i]);
            *status = st;
            snprintf(content_type, ctlen, "%s", ct);
            *body = b;
            *len = n;
            return 0;
        }
        free(b);
    }
    return -1;
}
