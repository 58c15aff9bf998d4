#define _GNU_SOURCE
#include "oc_models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "valid.h"

struct oc_models {
    char **names; /* sorted */
    size_t count;
    int loaded;
    char *def;
};

oc_models_t *oc_models_new(void) { return calloc(1, sizeof(oc_models_t)); }

static int oc_models_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Build a new list; take it over only when it is whole. */
typedef struct oc_models_build {
    char **v;
    size_t n, cap;
    int oom;
} oc_models_build_t;

static void oc_models_push(oc_models_build_t *b, const char *name, size_t len)
{
    if (b->oom || len == 0 || len > 256)
        return;
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 32;
        char **nv = realloc(b->v, cap * sizeof *nv);
        if (!nv) {
            b->oom = 1;
            return;
        }
        b->v = nv;
        b->cap = cap;
    }
    char *s = strndup(name, len);
    if (!s || !valid_model(s)) {
        b->oom |= !s;
        free(s);
        return;
    }
    b->v[b->n++] = s;
}

static void oc_models_clear(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int oc_models_take(oc_models_t *m, oc_models_build_t *b, const char *default_model)
{
    if (b->oom) {
        oc_models_clear(b->v, b->n);
        return -1;
    }
    char *nd = default_model && valid_model(default_model) ? strdup(default_model) : NULL;
    qsort(b->v, b->n, sizeof *b->v, oc_models_cmp);
    oc_models_clear(m->names, m->count);
    m->names = b->v;
    m->count = b->n;
    m->loaded = 1;
    free(m->def);
    m->def = nd;
    return (int)m->count;
}

int oc_models_set_lines(oc_models_t *m, const char *text)
{
    oc_models_build_t b = {0};
    for (const char *p = text; *p;) {
        size_t n = strcspn(p, "\r\n");
        /* Only lines that are a model name; opencode may print other things. */
        if (n && memchr(p, '/', n) && !memchr(p, ' ', n))
            oc_models_push(&b, p, n);
        p += n;
        p += strspn(p, "\r\n");
    }
    return oc_models_take(m, &b, m->def);
}

int oc_models_set_providers(oc_models_t *m, json_object *providers, json_object *config)
{
    oc_models_build_t b = {0};
    json_object *list, *id, *ms, *dm;
    if (!json_object_object_get_ex(providers, "providers", &list) || !json_object_is_type(list, json_type_array))
        return -1;
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *p = json_object_array_get_idx(list, i);
        if (!json_object_object_get_ex(p, "id", &id) || !json_object_is_type(id, json_type_string) ||
            !json_object_object_get_ex(p, "models", &ms) || !json_object_is_type(ms, json_type_object))
            continue;
        json_object_object_foreach(ms, key, val)
        {
            (void)val;
            char name[300];
            int n = snprintf(name, sizeof name, "%s/%s", json_object_get_string(id), key);
            if (n > 0 && (size_t)n < sizeof name)
                oc_models_push(&b, name, (size_t)n);
        }
    }
    const char *d = config && json_object_object_get_ex(config, "model", &dm) && json_object_is_type(dm, json_type_string)
                        ? json_object_get_string(dm)
                        : NULL;
    return oc_models_take(m, &b, d);
}

int oc_models_known(const oc_models_t *m, const char *model)
{
    if (!m->loaded)
        return -1;
    return bsearch(&model, m->names, m->count, sizeof *m->names, oc_models_cmp) != NULL;
}

const char *oc_models_default(const oc_models_t *m) { return m->def; }
long oc_models_count(const oc_models_t *m) { return m->loaded ? (long)m->count : -1; }

void oc_models_free(oc_models_t *m)
{
    if (!m)
        return;
    oc_models_clear(m->names, m->count);
    free(m->def);
    free(m);
}
