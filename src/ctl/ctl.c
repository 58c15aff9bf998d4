#define _GNU_SOURCE
#include "ctl.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "roff.h"

/* Where a command reads (the one write, prune, is the manager's: it is the database's only writer). */
#define CTL_DATABASE "reads the database, read-only"
#define CTL_MANAGER "asks the manager over its control socket"
#define CTL_FILE "reads the cluster file only (--cluster FILE)"

/* The commands. */
static const struct {
    const char *name;
    const char *args;    /* what follows the name, for the usage */
    const char *summary; /* one line */
    const char *source;  /* CTL_DATABASE or CTL_MANAGER */
    int (*fn)(ctl_opts_t *o, int argc, char **argv);
    const char *merges; /* with --cluster: what is merged (NULL: not a cluster command) */
    int (*cluster)(ctl_opts_t *o, int argc, char **argv);
} ctl_commands[] = {
    {"status", "", "the manager's status document", CTL_MANAGER, ctl_status,
     "one line per node and totals over the nodes that answered", ctl_cluster_status},
    {"sessions", "", "sessions with their counts", CTL_DATABASE, ctl_sessions,
     "every node's (GET /api/admin/sessions, paged through), with a node column", ctl_cluster_sessions},
    {"history", "[--session ID] [--status S] [--mode M] [--since T] [--limit N] [--cursor C]",
     "executions, newest first", CTL_DATABASE, ctl_history,
     "every node's, merged newest first; next_cursor continues on every node", ctl_cluster_history},
    {"show", "EXECUTION", "one execution, every field", CTL_DATABASE, ctl_show, NULL, NULL},
    {"slowlog", "[--since T] [--limit N]", "turns that passed slowlog_timeout, newest first", CTL_DATABASE,
     ctl_slowlog, NULL, NULL},
    {"stats", "[--since T]", "counts, percentiles, memory, tokens, the busiest sessions", CTL_DATABASE, ctl_stats,
     "every node's added up; percentiles from the summed histograms", ctl_cluster_stats},
    {"prune", "--older-than AGE", "delete finished history older than AGE", CTL_MANAGER, ctl_prune, NULL, NULL},
    {"reload", "", "read the settings again, as SIGHUP does; says what changed and what needs a restart",
     CTL_MANAGER, ctl_reload, NULL, NULL},
    {"drain", "", "refuse new sessions and messages (503 draining); running and queued ones finish", CTL_MANAGER,
     ctl_drain, NULL, NULL},
    {"undrain", "", "take new sessions and messages again", CTL_MANAGER, ctl_undrain, NULL, NULL},
    {"front-conf", "", "the nodes' part of the cluster front's nginx configuration", CTL_FILE, ctl_needs_cluster,
     "written from FILE alone (upstreams and maps; the nodes are not asked)", ctl_cluster_front},
    {"prometheus-conf", "FRONT_HOST:PORT [PASSWORD_FILE]",
     "a Prometheus scrape configuration for the nodes, through the front", CTL_FILE, ctl_needs_cluster,
     "written from FILE alone (each node at /nodes/NAME/metrics, as the front's operator)", ctl_cluster_prometheus},
    {"server", "restart [--pool NAME] [N]",
     "restart opencode servers: every FATAL one (clearing FATAL), or server N whatever its state (a ready one "
     "is replaced gracefully, as a recycle)",
     CTL_MANAGER, ctl_server, NULL, NULL},
};
#define CTL_NCOMMANDS (sizeof ctl_commands / sizeof ctl_commands[0])

/* The options: a flag (arg NULL) sets an int, any other stores its argument. */
#define CTL_AT(f) offsetof(ctl_opts_t, f)
static const struct {
    const char *flag;
    const char *arg;
    size_t at;
    const char *help;
} ctl_options[] = {
    {"-c", "FILE", CTL_AT(file), "read settings from FILE (default $OCPM_CONFIG), as ocpmd does"},
    {"--db", "PATH", CTL_AT(db), "the database (default: db_path from the settings)"},
    {"--socket", "PATH", CTL_AT(socket), "the manager's control socket (default: control_socket)"},
    {"--json", NULL, CTL_AT(json), "print JSON instead of a table"},
    {"--session", "ID", CTL_AT(session), "history: one session's"},
    {"--status", "S", CTL_AT(status), "history: one status (queued, running, succeeded, failed, timeout, ...)"},
    {"--mode", "M", CTL_AT(mode), "history: server or per-session"},
    {"--since", "T", CTL_AT(since), "history, slowlog, stats: since T, unix seconds or an age such as 90m, 24h, 7d"},
    {"--limit", "N", CTL_AT(limit), "history, slowlog: at most N rows (default 20)"},
    {"--older-than", "AGE", CTL_AT(older_than), "prune: what is older than AGE, such as 30d"},
    {"--pool", "NAME", CTL_AT(pool), "server restart: that pool's servers (default: every pool's)"},
    {"--cluster", "FILE", CTL_AT(cluster),
     "status, sessions, history, stats: of every node in FILE (lines `NAME URL`), over HTTP, merged; exit 1 when a "
     "node did not answer"},
    {"--cursor", "C", CTL_AT(cursor), "history --cluster: the next page after C (the next_cursor printed)"},
    {"--timeout", "S", CTL_AT(timeout), "--cluster: seconds each node has to answer (default 10)"},
    {"-h", NULL, CTL_AT(help), "this text"},
};
#define CTL_NOPTIONS (sizeof ctl_options / sizeof ctl_options[0])

static void ctl_usage(FILE *f)
{
    fputs("usage: ocpmctl [options] COMMAND [ARGS]\ncommands:\n", f);
    for (size_t i = 0; i < CTL_NCOMMANDS; i++) {
        char head[96];
        snprintf(head, sizeof head, "%s %s", ctl_commands[i].name, ctl_commands[i].args);
        if (strlen(head) > 24) /* its summary on a line of its own */
            fprintf(f, "  %s\n  %-24s %s\n", head, "", ctl_commands[i].summary);
        else
            fprintf(f, "  %-24s %s\n", head, ctl_commands[i].summary);
    }
    fputs("options:\n", f);
    for (size_t i = 0; i < CTL_NOPTIONS; i++) {
        char head[64];
        snprintf(head, sizeof head, "%s%s%s", ctl_options[i].flag, ctl_options[i].arg ? " " : "",
                 ctl_options[i].arg ? ctl_options[i].arg : "");
        fprintf(f, "  %-24s %s\n", head, ctl_options[i].help);
    }
    fputs("Settings come from -c FILE, $OCPM_CONFIG and OCPM_<KEY>, as for ocpmd.\n", f);
}

/* roff, for the COMMANDS and OPTIONS of ocpmctl(8). */
static void ctl_man(FILE *f)
{
    fputs(".SH COMMANDS\n", f);
    for (size_t i = 0; i < CTL_NCOMMANDS; i++) {
        fprintf(f, ".TP\n\\fB%s\\fR", ctl_commands[i].name);
        if (*ctl_commands[i].args)
            fputc(' ', f), roff_text(f, ctl_commands[i].args);
        fprintf(f, "\n%s; %s.\n", ctl_commands[i].summary, ctl_commands[i].source);
        if (ctl_commands[i].merges)
            fprintf(f, "With \\fB\\-\\-cluster\\fR: %s.\n", ctl_commands[i].merges);
    }
    fputs(".SH OPTIONS\n", f);
    for (size_t i = 0; i < CTL_NOPTIONS; i++) {
        fputs(".TP\n\\fB", f);
        roff_text(f, ctl_options[i].flag);
        fputs("\\fR", f);
        if (ctl_options[i].arg)
            fprintf(f, " \\fI%s\\fR", ctl_options[i].arg);
        fputc('\n', f);
        roff_text(f, ctl_options[i].help);
        fputc('\n', f);
    }
}

int ctl_doc_write(FILE *f, const char *format)
{
    if (strcmp(format, "usage") == 0)
        return ctl_usage(f), 0;
    if (strcmp(format, "man") == 0)
        return ctl_man(f), 0;
    return -1;
}

/* Options anywhere on the line; the rest are the command and its arguments. 0, or 2 (usage). */
static int ctl_parse(ctl_opts_t *o, int argc, char **argv, char **rest, int *nrest)
{
    for (int i = 1; i < argc; i++) {
        size_t k = 0;
        while (k < CTL_NOPTIONS && strcmp(argv[i], ctl_options[k].flag) != 0 &&
               !(strcmp(argv[i], "--help") == 0 && strcmp(ctl_options[k].flag, "-h") == 0))
            k++;
        if (k == CTL_NOPTIONS && argv[i][0] == '-')
            return ctl_fail("unknown option %s", argv[i]), 2;
        if (k == CTL_NOPTIONS) {
            if (*nrest >= 64)
                return ctl_fail("too many arguments"), 2;
            rest[(*nrest)++] = argv[i];
        } else if (!ctl_options[k].arg) {
            *(int *)((char *)o + ctl_options[k].at) = 1;
        } else if (++i < argc) {
            *(const char **)((char *)o + ctl_options[k].at) = argv[i];
        } else {
            return ctl_fail("%s needs %s", ctl_options[k].flag, ctl_options[k].arg), 2;
        }
    }
    return 0;
}

int ctl_main(int argc, char **argv)
{
    ctl_opts_t o = {.file = getenv("OCPM_CONFIG")};
    char *rest[64];
    int nrest = 0;
    if (ctl_parse(&o, argc, argv, rest, &nrest) != 0)
        return ctl_usage(stderr), 2;
    if (o.help)
        return ctl_usage(stdout), 0;
    if (nrest < 1)
        return ctl_usage(stderr), 2;
    if (o.cursor && !o.cluster)
        return ctl_fail("--cursor goes with --cluster (history --cluster)"), 2;
    for (size_t i = 0; o.cluster && i < CTL_NCOMMANDS; i++)
        if (strcmp(ctl_commands[i].name, rest[0]) == 0 && !ctl_commands[i].cluster)
            return ctl_fail("%s does not take --cluster", rest[0]), 2;
        else if (strcmp(ctl_commands[i].name, rest[0]) == 0) /* the nodes' settings are theirs, not read here */
            return ctl_commands[i].cluster(&o, nrest - 1, rest + 1);
    char err[1024];
    conf_defaults(&o.conf);
    if ((o.file && *o.file && conf_load_file(&o.conf, o.file, err, sizeof err) != 0) ||
        conf_load_env(&o.conf, err, sizeof err) != 0 ||
        (o.db && conf_set(&o.conf, "db_path", o.db, err, sizeof err) != 0) ||
        (o.socket && conf_set(&o.conf, "control_socket", o.socket, err, sizeof err) != 0) ||
        conf_finish(&o.conf, err, sizeof err) != 0)
        return ctl_fail("configuration error: %s", err);
    for (size_t i = 0; i < CTL_NCOMMANDS; i++)
        if (strcmp(ctl_commands[i].name, rest[0]) == 0)
            return ctl_commands[i].fn(&o, nrest - 1, rest + 1);
    ctl_fail("unknown command %s", rest[0]);
    return ctl_usage(stderr), 2;
}
