#define _GNU_SOURCE
#include "ctl.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int ctl_fail(const char *fmt, ...)
{
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = vasprintf(&msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "ocpmctl: %s\n", len >= 0 && msg ? ctl_text_clean(msg) : fmt);
    free(msg);
    return 1;
}

void ctl_print_json(json_object *v)
{
    puts(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
}

char *ctl_text_clean(char *s)
{
    for (unsigned char *p = (unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            *p = *p == '\n' || *p == '\t' ? ' ' : '?';
        else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) /* U+0080..U+009F, C1 controls (CSI) */
            p[0] = p[1] = '?', p++;
    return s;
}

static const char *ctl_cell(json_object *row, const char *key, char *buf, size_t n)
{
    json_object *v;
    if (!json_object_object_get_ex(row, key, &v) || !v)
        return "-";
    if (json_object_is_type(v, json_type_double)) {
        snprintf(buf, n, "%.1f", json_object_get_double(v));
        return buf;
    }
    snprintf(buf, n, "%s", json_object_get_string(v));
    return ctl_text_clean(buf);
}

void ctl_print_table(json_object *rows, const char *const *cols)
{
    size_t nc = 0, n = json_object_array_length(rows);
    while (cols[nc] && nc < 32)
        nc++;
    size_t w[32] = {0};
    char buf[64];
    for (size_t c = 0; c < nc; c++) {
        w[c] = strlen(cols[c]);
        for (size_t r = 0; r < n; r++) {
            size_t l = strlen(ctl_cell(json_object_array_get_idx(rows, r), cols[c], buf, 49));
            if (l > w[c])
                w[c] = l;
        }
    }
    for (size_t c = 0; c < nc; c++)
        printf("%-*s%s", (int)w[c], cols[c], c + 1 < nc ? "  " : "\n");
    for (size_t r = 0; r < n; r++)
        for (size_t c = 0; c < nc; c++)
            printf("%-*s%s", (int)w[c], ctl_cell(json_object_array_get_idx(rows, r), cols[c], buf, 49),
                   c + 1 < nc ? "  " : "\n");
    if (!n)
        puts("(none)");
}

void ctl_print_pairs(json_object *obj, const char *prefix)
{
    json_object_object_foreach(obj, k, v)
    {
        char key[96];
        snprintf(key, sizeof key, "%s", k);
        ctl_text_clean(key); /* keys of the agent's own objects (metadata) too */
        if (v && json_object_is_type(v, json_type_object)) {
            char p[128];
            snprintf(p, sizeof p, "%s%s.", prefix, key);
            ctl_print_pairs(v, p);
        } else if (v && json_object_is_type(v, json_type_array) && json_object_array_length(v) > 0 &&
                   json_object_is_type(json_object_array_get_idx(v, 0), json_type_object)) {
            /* A list of records (tool calls, prompts): one block each, numbered. */
            for (size_t i = 0; i < json_object_array_length(v); i++) {
                char p[128];
                snprintf(p, sizeof p, "%s%s[%zu].", prefix, key, i);
                ctl_print_pairs(json_object_array_get_idx(v, i), p);
            }
        } else if (v && json_object_is_type(v, json_type_array)) {
            /* JSON escapes control characters itself. */
            printf("%s%s: %s\n", prefix, key, json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
        } else {
            char *val = strdup(v ? json_object_get_string(v) : "-");
            printf("%s%-*s %s\n", prefix, (int)(28 - strlen(prefix)), key, val ? ctl_text_clean(val) : "?");
            free(val);
        }
    }
}
