#define _GNU_SOURCE
#include "inflight.h"

#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>

/* One cache line per responder, so their counters do not share one. */
typedef struct inflight_slot {
    atomic_long all, messages, refused;
    char pad[64 - 3 * sizeof(atomic_long)];
} inflight_slot_t;

static inflight_slot_t *page;
static size_t page_len;
static int nslot;
static long long refused_before; /* refusals of slots since reset (manager) */

static int inflight_map(int fd, int nslots)
{
    page_len = (size_t)nslots * sizeof(inflight_slot_t);
    void *p = mmap(NULL, page_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return -1;
    page = p;
    nslot = nslots;
    return 0;
}

int inflight_create(int nslots)
{
    int fd = memfd_create("ocpm-inflight", MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    if (ftruncate(fd, (off_t)((size_t)nslots * sizeof(inflight_slot_t))) != 0 || inflight_map(fd, nslots) != 0) {
        close(fd);
        return -1;
    }
    return fd; /* a new memfd is zero-filled */
}

int inflight_attach(int fd, int nslots) { return inflight_map(fd, nslots); }

void inflight_detach(void)
{
    if (page)
        munmap(page, page_len);
    page = NULL;
    nslot = 0;
}

/* The pool's total of all requests, or of messages only. */
static long inflight_sum(int messages)
{
    long n = 0;
    for (int i = 0; i < nslot; i++)
        n += atomic_load(messages ? &page[i].messages : &page[i].all);
    return n;
}

static int inflight_refuse(inflight_slot_t *s, atomic_long *counter)
{
    atomic_fetch_sub(counter, 1);
    atomic_fetch_add(&s->refused, 1);
    return -1;
}

int inflight_enter(int slot, long cap_all)
{
    if (!page || slot < 0 || slot >= nslot)
        return 0; /* no page: no limit (a responder started by hand) */
    inflight_slot_t *s = &page[slot];
    atomic_fetch_add(&s->all, 1);
    return inflight_sum(0) > cap_all ? inflight_refuse(s, &s->all) : 0;
}

int inflight_promote(int slot, long cap_msg)
{
    if (!page || slot < 0 || slot >= nslot)
        return 0;
    inflight_slot_t *s = &page[slot];
    atomic_fetch_add(&s->messages, 1);
    return inflight_sum(1) > cap_msg ? inflight_refuse(s, &s->messages) : 0;
}

void inflight_leave(int slot, int message)
{
    if (!page || slot < 0 || slot >= nslot)
        return;
    atomic_fetch_sub(&page[slot].all, 1);
    if (message)
        atomic_fetch_sub(&page[slot].messages, 1);
}

long inflight_total(void) { return page ? inflight_sum(0) : 0; }
long inflight_messages(void) { return page ? inflight_sum(1) : 0; }

long long inflight_refused(void)
{
    long long n = refused_before;
    for (int i = 0; page && i < nslot; i++)
        n += atomic_load(&page[i].refused);
    return n;
}

long long inflight_refused_before(void) { return refused_before; }

void inflight_reset(int slot)
{
    if (!page || slot < 0 || slot >= nslot)
        return;
    refused_before += atomic_exchange(&page[slot].refused, 0);
    atomic_store(&page[slot].all, 0);
    atomic_store(&page[slot].messages, 0);
}
