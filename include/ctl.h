/* ctl: ocpmctl, the operator's command line, as a table of commands and a table of options.
 *
 * Each command is a row: its name, its arguments, one line of what it does, whether it reads the
 * database or asks the manager, and its function (tmux's cmd_entry is the model). The usage text
 * and the COMMANDS and OPTIONS of ocpmctl(8) are written from the two tables (ctl_doc_write).
 * Reads open the database read-only, which is safe while ocpmd runs; the one write (prune) goes
 * through the manager, the database's only writer. Exit status: 0 done, 1 failed, 2 usage. */
#ifndef OCPM_CTL_H
#define OCPM_CTL_H

#include <stdio.h>

#include <json-c/json.h>

#include "conf.h"

typedef struct ctl_opts {
    conf_t conf;
    int json, help;
    const char *file, *db, *socket; /* where the settings, the database and the manager are */
    const char *session, *status, *mode, *since, *older_than, *limit, *pool;
    const char *cluster, *cursor, *timeout; /* --cluster FILE (ctl_cluster.h) */
} ctl_opts_t;

int ctl_main(int argc, char **argv);
/* "usage" (the text -h prints) or "man" (roff for ocpmctl(8)). Returns 0, or -1 for another. */
int ctl_doc_write(FILE *f, const char *format);

/* ctl_commands.c: the commands (argv holds the arguments after the command's name). */
int ctl_status(ctl_opts_t *o, int argc, char **argv);
int ctl_sessions(ctl_opts_t *o, int argc, char **argv);
int ctl_history(ctl_opts_t *o, int argc, char **argv);
int ctl_show(ctl_opts_t *o, int argc, char **argv);
int ctl_slowlog(ctl_opts_t *o, int argc, char **argv);
int ctl_stats(ctl_opts_t *o, int argc, char **argv);
int ctl_prune(ctl_opts_t *o, int argc, char **argv);
int ctl_reload(ctl_opts_t *o, int argc, char **argv);
int ctl_drain(ctl_opts_t *o, int argc, char **argv);
int ctl_undrain(ctl_opts_t *o, int argc, char **argv);
int ctl_server(ctl_opts_t *o, int argc, char **argv);

/* ctl_cluster.c: the same commands with --cluster FILE, every node's merged (ctl_cluster.h). */
int ctl_cluster_status(ctl_opts_t *o, int argc, char **argv);
int ctl_cluster_sessions(ctl_opts_t *o, int argc, char **argv);
int ctl_cluster_history(ctl_opts_t *o, int argc, char **argv);
int ctl_cluster_stats(ctl_opts_t *o, int argc, char **argv);
/* ctl_cluster_front.c: front-conf and prometheus-conf (the cluster file only); without --cluster,
 * ctl_needs_cluster says so (argv[-1] is the command's name). */
int ctl_cluster_front(ctl_opts_t *o, int argc, char **argv);
int ctl_cluster_prometheus(ctl_opts_t *o, int argc, char **argv);
int ctl_needs_cluster(ctl_opts_t *o, int argc, char **argv);

/* "1795520000" (unix seconds) or an age ("24h") before now: 0, or -1. */
int ctl_parse_time(const char *s, double *out);
/* Readable times (UTC) in column to, beside the unix seconds of column from, in every row. */
void ctl_add_when(json_object *rows, const char *from, const char *to);

/* ctl_print.c: what the commands print. Text is for a terminal: every cell, pair and error line
 * goes through ctl_text_clean, so a value (an agent's output, a node's error message) can neither
 * drive the terminal nor pass for another line; --json output is JSON (json-c escapes controls). */
/* s with control characters replaced, in place: C0 bytes and DEL become '?' (a newline or tab
 * ' '), the two bytes of a UTF-8 C1 control (U+0080..U+009F, CSI among them) "??". Returns s. */
char *ctl_text_clean(char *s);
/* `ocpmctl: MESSAGE` on stderr, the message cleaned (ctl_text_clean). Returns 1. */
int ctl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ctl_print_json(json_object *v);
/* A table of the given columns (NULL-terminated); cells are cut at 48 characters. */
void ctl_print_table(json_object *rows, const char *const *cols);
/* Every member as `key value`, nested objects as dotted keys. */
void ctl_print_pairs(json_object *obj, const char *prefix);

#endif
