/* The settings table (conf_keys.c) and its types (conf_types.c), shared by the parser (conf.c)
 * and the documentation it generates (conf_doc.c). */
#ifndef OCPM_CONF_INTERNAL_H
#define OCPM_CONF_INTERNAL_H

#include <stddef.h>

#include "conf.h"

typedef enum {
    CT_PATH, CT_STRING, CT_INT, CT_DURATION, CT_SIZE, CT_BOOL, CT_MODE, CT_OCTAL, CT_LEVEL, CT_NAME, CT_PERCENT,
    CT_POLICY, CT_URL, CT_SECRET, CT_MONEY, CT_COUNT, CT_NODE, CT_NTYPES
} conf_type_t;

typedef struct conf_key {
    const char *name;
    conf_type_t type;
    size_t offset;
    size_t size;      /* strings: their capacity */
    const char *def;  /* the default, as it would be written in the file ("": derived or none) */
    long min, max;    /* numbers: their bounds */
    const char *section; /* set on the first key of a section of the docs: its heading */
    const char *shown;   /* the default as the docs show it, when def alone does not say it */
    const char *help;    /* what it does (docs, man page, example file); `x` marks a name */
} conf_key_t;

extern const conf_key_t conf_keys[];
extern const size_t conf_nkeys;
extern const char *const conf_pool_keys[];
extern const size_t conf_npool_keys;
extern const char *const conf_pool_aliases[2][2];
extern const char *const conf_live_keys[];
extern const size_t conf_nlive_keys;

/* One type: how a value is read into the field, how the field is written back. */
typedef struct conf_type_ops {
    const char *doc; /* what a value looks like, for the docs */
    int (*parse)(const conf_key_t *k, void *field, const char *v, const char **why);
    int (*format)(const conf_key_t *k, const void *field, char *out, size_t outlen);
} conf_type_ops_t;

extern const conf_type_ops_t conf_types[CT_NTYPES];

#endif
