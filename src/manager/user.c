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

struct user_table {
    user_t *buckets[USER_BUCKETS];
    long totals[USER_NCOUNTERS];
};

user_table_t *user_table_new(void) { return calloc(1, sizeof(user_table_t)); }

static size_t user_hash(const char *s)
{
    size_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h % USER_BUCKETS;
}

static user_t **user_slot(user_table_t *t, const char *owner)
{
    user_t **pp = &t->buckets[user_hash(owner)];
    while (*pp && strcmp((*pp)->owner, owner) != 0)
        pp = &(*pp)->next;
    return pp;
}

long user_count(user_table_t *t, const char *owner, user_counter_t k)
{
    user_t *u = *user_slot(t, owner);
    return u ? u->n[k] : 0;
}

int user_add(user_table_t *t, const char *owner, user_counter_t k, long delta)
{
    user_t **pp = user_slot(t, owner), *u = *pp;
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
    t->totals[k] += delta;
    for (int i = 0; i < USER_NCOUNTERS; i++)
        if (u->n[i] > 0)
            return 0;
    *pp = u->next;
    free(u->owner);
    free(u);
    return 0;
}

long user_total(const user_table_t *t, user_counter_t k) { return t->totals[k]; }

void user_reset(user_table_t *t, user_counter_t k)
{
    for (size_t i = 0; i < USER_BUCKETS; i++) {
        user_t *u = t->buckets[i], *next;
        for (; u; u = next) {
            next = u->next; /* user_add may free u */
            if (u->n[k])
                user_add(t, u->owner, k, -u->n[k]);
        }
    }
}

long user_share_of(long capacity, long share_percent)
{
    long n = capacity * share_percent / 100;
    return n < 1 ? 1 : n;
}

void user_table_free(user_table_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < USER_BUCKETS; i++)
        while (t->buckets[i]) {
            user_t *u = t->buckets[i];
            t->buckets[i] = u->next;
            free(u->owner);
            free(u);
        }
    free(t);
}
