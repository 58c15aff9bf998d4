/* The settings' documents, written from their table (conf_keys.c): one fact, one place. */
#define _GNU_SOURCE
#include "conf_internal.h"

#include <string.h>

#include "roff.h"

/* How a default reads in the docs. */
static const char *conf_doc_default(const conf_key_t *k)
{
    return k->shown ? k->shown : *k->def ? k->def : "(empty)";
}

/* What a reload does with the key (conf_live_keys). */
static const char *conf_doc_reload(const conf_key_t *k)
{
    return conf_key_live(k->name) ? "live" : "restart";
}

/* The keys a pool section may set, as one sentence (md: each in backquotes). */
static void conf_doc_pool_keys(FILE *f, int md)
{
    fputs("A pool section ([NAME]) may set ", f);
    for (size_t i = 0; i < conf_npool_keys; i++)
        fprintf(f, "%s%s%s%s", i ? (i + 1 == conf_npool_keys ? " and " : ", ") : "", md ? "`" : "",
                conf_pool_keys[i], md ? "`" : "");
    fputs(" (user and group are agent_user and agent_group, as PHP-FPM names them); the rest are the "
          "manager's alone.\n", f);
}

static void conf_doc_md(FILE *f)
{
    for (size_t i = 0; i < conf_nkeys; i++) {
        const conf_key_t *k = &conf_keys[i];
        if (k->section)
            fprintf(f, "%s### %s\n\n| key | type | default | at a reload | what it does |\n"
                       "| --- | --- | --- | --- | --- |\n",
                    i ? "\n" : "", k->section);
        fprintf(f, "| `%s` | %s | `%s` | %s | %s |\n", k->name, conf_types[k->type].doc, conf_doc_default(k),
                conf_doc_reload(k), k->help);
    }
    fputs("\n### Per pool\n\n", f);
    conf_doc_pool_keys(f, 1);
}

static void conf_doc_man(FILE *f)
{
    for (size_t i = 0; i < conf_nkeys; i++) {
        const conf_key_t *k = &conf_keys[i];
        if (k->section) {
            fputs(".SS ", f);
            roff_text(f, k->section);
            fputc('\n', f);
        }
        fputs(".TP\n.B ", f);
        roff_text(f, k->name);
        fputs("\n(", f);
        roff_text(f, conf_types[k->type].doc);
        fputs("; default ", f);
        roff_text(f, conf_doc_default(k));
        fputs("; at a reload: ", f);
        roff_text(f, conf_doc_reload(k));
        fputs(")\n.br\n", f);
        roff_text(f, k->help);
        fputc('\n', f);
    }
    fputs(".SS Per pool\n", f);
    char buf[2048];
    FILE *m = fmemopen(buf, sizeof buf, "w");
    if (m) {
        conf_doc_pool_keys(m, 0);
        fclose(m);
        roff_text(f, buf);
        fputc('\n', f);
    }
}

/* A comment of words, wrapped before 100 columns. */
static void conf_doc_comment(FILE *f, const char *text)
{
    const char *p = text;
    while (*p) {
        size_t n = strlen(p);
        if (n > 96) {
            n = 96;
            while (n > 0 && p[n] != ' ')
                n--;
            if (n == 0)
                n = strcspn(p, " ");
        }
        fprintf(f, "# %.*s\n", (int)n, p);
        p += n;
        while (*p == ' ')
            p++;
    }
}

static void conf_doc_example(FILE *f)
{
    fputs("# ocpmd configuration: every key with its default, commented out. All are optional; ocpmd runs\n"
          "# with none. Any key can also be set as OCPM_<KEY> in the environment, which wins over this file.\n"
          "# Check a file with `ocpmd -t -c FILE`; `ocpmd -T` prints the effective values. Durations take\n"
          "# ms, s, m, h, d (a bare number is seconds); sizes take k, m, g (a bare number is bytes).\n"
          "# Generated from the settings table (src/core/conf_keys.c) by `make update-docs`.\n",
          f);
    for (size_t i = 0; i < conf_nkeys; i++) {
        const conf_key_t *k = &conf_keys[i];
        if (k->section)
            fprintf(f, "\n# ---- %s ----\n", k->section);
        fputc('\n', f);
        conf_doc_comment(f, k->help);
        if (k->shown)
            fprintf(f, "# Default: %s.\n", k->shown);
        if (!conf_key_live(k->name))
            fputs("# A reload cannot change it: a restart does.\n", f);
        /* A default shown in words (derived, automatic, or set at build time) is left empty here. */
        const char *v = k->shown ? "" : k->def;
        fprintf(f, "#%s =%s%s\n", k->name, *v ? " " : "", v);
    }
}

int conf_doc_write(FILE *f, const char *format)
{
    static const struct {
        const char *name;
        void (*write)(FILE *f);
    } formats[] = {{"md", conf_doc_md}, {"man", conf_doc_man}, {"example", conf_doc_example}};
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (strcmp(formats[i].name, format) == 0)
            return formats[i].write(f), 0;
    return -1;
}
