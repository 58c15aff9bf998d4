/* What a reload changes: the keys whose values differ between the running settings and the file
 * read again, which of them can change while ocpmd runs (conf_live_keys, conf_keys.c), and the
 * copy of those into the running settings. */
#define _GNU_SOURCE
#include "conf_internal.h"

#include <string.h>

int conf_key_live(const char *key)
{
    for (size_t i = 0; i < conf_nlive_keys; i++)
        if (strcmp(conf_live_keys[i], key) == 0)
            return 1;
    return 0;
}

/* The bytes of a key's field: strings hold their capacity, yes/no and the mode an int, the rest
 * a long. */
static size_t conf_key_bytes(const conf_key_t *k)
{
    if (k->size)
        return k->size;
    return k->type == CT_BOOL || k->type == CT_MODE ? sizeof(int) : sizeof(long);
}

static int conf_key_differs(const conf_key_t *k, const conf_t *a, const conf_t *b)
{
    const char *fa = (const char *)a + k->offset, *fb = (const char *)b + k->offset;
    if (k->size) /* a string: what follows its end is not its value */
        return strncmp(fa, fb, k->size) != 0;
    return memcmp(fa, fb, conf_key_bytes(k)) != 0;
}

int conf_diff(const conf_t *was, const conf_t *now, int pool_keys_only, conf_diff_fn fn, void *ctx)
{
    int n = 0;
    for (size_t i = 0; i < conf_nkeys; i++) {
        const conf_key_t *k = &conf_keys[i];
        if ((pool_keys_only && !conf_is_pool_key(k->name)) || !conf_key_differs(k, was, now))
            continue;
        n++;
        if (!fn)
            continue;
        char a[PATH_MAX + 64], b[PATH_MAX + 64];
        conf_types[k->type].format(k, (const char *)was + k->offset, a, sizeof a);
        conf_types[k->type].format(k, (const char *)now + k->offset, b, sizeof b);
        fn(ctx, k->name, a, b, conf_key_live(k->name));
    }
    return n;
}

void conf_apply_live(conf_t *dst, const conf_t *src)
{
    for (size_t i = 0; i < conf_nkeys; i++) {
        const conf_key_t *k = &conf_keys[i];
        if (conf_key_live(k->name))
            memcpy((char *)dst + k->offset, (const char *)src + k->offset, conf_key_bytes(k));
    }
}
