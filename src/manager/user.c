#define _GNU_SOURCE
#include "user.h"

#include <stdlib.h>
#include <string.h>

#define USER_BUCKETS 1024

typedef struct user {
    char *owner;
    long n[USER_NCOUNTERS];
    struct user *next;
} user_t;

static user_t *buckets[USER_BUCKETS];
static long totals[USER_NCOUNTERS];

static size_t user_hash(const char *s)
{
    size_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h % USER_BUCKETS;
}

static user_t **user_slot(const char *owner)
{
    user_t **pp = &buckets[user_hash(owner)];
    while (*pp && strcmp((*pp)->owner, owner) != 0)
        pp = &(*pp)->next;
    return pp;
}

long user_count(const char *owner, user_counter_t k)
{
    user_t *u = *user_slot(owner);
    return u ? u->n[k] : 0;
}

int user_add(const char *owner, user_counter_t k, long delta)
{
    user_t **pp = user_slot(owner), *u = *pp;
    if (!u) {
        if (delta <= 0)
            return 0;
        u = calloc(1, sizeof *u);
        if (!u || !(u->owner = strdup(owner))) {
            free(u);
            return -1;
        }
        *pp = u;
    }
    u->n[k] += delta;
    totals[k] += delta;
    for (int i = 0; i < USER_NCOUNTERS; i++)
        if (u->n[i] > 0)
            return 0;
    *pp = u->next;
    free(u->owner);
    free(u);
    return 0;
}

long user_total(user_counter_t k) { return totals[k]; }

long user_share_of(long capacity, long share_percent)
{
    long n = capacity * share_percent / 100;
    return n < 1 ? 1 : n;
}

void user_table_free(void)
{
    for (size_t i = 0; i < USER_BUCKETS; i++)
        while (buckets[i]) {
            user_t *u = buckets[i];
            buckets[i] = u->next;
            free(u->owner);
            free(u);
        }
    memset(totals, 0, sizeof totals);
}
