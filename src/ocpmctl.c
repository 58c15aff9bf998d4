/* ocpmctl: the operator's command line for ocpm.
 *
 *   ocpmctl [-c FILE] [--db PATH] [--socket PATH] [--json] COMMAND [options]
 *     status                      the manager's status (control socket)
 *     sessions                    sessions with their counts (database)
 *     history [--session ID] [--status S] [--mode M] [--since T] [--limit N]
 *     show EXECUTION              one execution, every field
 *     stats [--since T]           counts, percentiles, RSS, tokens, busiest sessions
 *     prune --older-than AGE      delete finished history older than AGE (asks the manager)
 *
 * T is unix seconds or an age such as 90m, 24h or 7d. Reads open the database read-only, which
 * is safe while ocpmd runs; the one write (prune) goes through the manager, its only writer.
 * Exit status: 0 done, 1 failed, 2 usage. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "db.h"
#include "frame.h"

typedef struct control_opts {
    conf_t conf;
    int json;
    const char *session, *status, *mode, *since, *older_than;
    long limit;
} control_opts_t;

typedef int (*cmd_fn)(control_opts_t *o, int argc, char **argv);

static double now_s(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec + tv.tv_usec / 1e6;
}

static int fail(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "ocpmctl: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return 1;
}

/* "1795520000" (unix seconds) or an age ("24h") before now. */
static int parse_time(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!errno && end != s && !*end && v >= 0) {
        *out = v;
        return 0;
    }
    long ms;
    if (conf_parse_duration_ms(s, &ms) != 0)
        return -1;
    *out = now_s() - ms / 1000.0;
    return 0;
}

static db_t *open_db(control_opts_t *o)
{
    char err[1200];
    if (access(o->conf.db_path, F_OK) != 0) {
        fail("no database at %s%s (is state_dir or --db right?)", o->conf.db_path, "");
        return NULL;
    }
    db_t *db = db_open_readonly(o->conf.db_path, err, sizeof err);
    if (!db)
        fail("%s%s", err, "");
    return db;
}

/* One request frame to the manager's control socket and its reply frame. */
static json_object *ask_manager(control_opts_t *o, json_object *req)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", o->conf.control_socket);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        fail("cannot reach ocpmd at %s: %s", o->conf.control_socket, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    frame_decoder_t *d = frame_decoder_new(FRAME_MAX);
    json_object *reply = NULL;
    if (frame_write_fd(fd, req) != 0 || frame_read_fd(fd, d, &reply, 600000) != FRAME_OK)
        fail("ocpmd did not answer on %s%s", o->conf.control_socket, "");
    frame_decoder_free(d);
    close(fd);
    return reply;
}

static void print_json(json_object *v)
{
    puts(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
}

static const char *cell(json_object *row, const char *key, char *buf, size_t n)
{
    json_object *v;
    if (!json_object_object_get_ex(row, key, &v) || !v)
        return "-";
    if (json_object_is_type(v, json_type_double)) {
        snprintf(buf, n, "%.1f", json_object_get_double(v));
        return buf;
    }
    snprintf(buf, n, "%s", json_object_get_string(v));
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\t')
            *p = ' ';
    return buf;
}

/* A table of the given columns; cells are cut at 48 characters. */
static void print_table(json_object *rows, const char *const *cols)
{
    size_t nc = 0, n = json_object_array_length(rows);
    while (cols[nc])
        nc++;
    size_t w[32] = {0};
    char buf[64];
    for (size_t c = 0; c < nc && c < 32; c++) {
        w[c] = strlen(cols[c]);
        for (size_t r = 0; r < n; r++) {
            size_t l = strlen(cell(json_object_array_get_idx(rows, r), cols[c], buf, 49));
            if (l > w[c])
                w[c] = l;
        }
    }
    for (size_t c = 0; c < nc; c++)
        printf("%-*s%s", (int)w[c], cols[c], c + 1 < nc ? "  " : "\n");
    for (size_t r = 0; r < n; r++)
        for (size_t c = 0; c < nc; c++)
            printf("%-*s%s", (int)w[c], cell(json_object_array_get_idx(rows, r), cols[c], buf, 49),
                   c + 1 < nc ? "  " : "\n");
    if (!n)
        puts("(none)");
}

static void print_pairs(json_object *obj, const char *prefix)
{
    json_object_object_foreach(obj, k, v)
    {
        if (v && json_object_is_type(v, json_type_object)) {
            char p[128];
            snprintf(p, sizeof p, "%s%s.", prefix, k);
            print_pairs(v, p);
        } else if (v && json_object_is_type(v, json_type_array)) {
            printf("%s%s: %s\n", prefix, k, json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
        } else {
            printf("%s%-*s %s\n", prefix, (int)(28 - strlen(prefix)), k, v ? json_object_get_string(v) : "-");
        }
    }
}

static int cmd_status(control_opts_t *o, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    json_object *req = json_object_new_object();
    json_object_object_add(req, "op", json_object_new_string("status"));
    json_object_object_add(req, "user", json_object_new_string("ocpmctl"));
    json_object_object_add(req, "args", json_object_new_object());
    json_object *r = ask_manager(o, req), *body;
    json_object_put(req);
    if (!r)
        return 1;
    int ok = json_object_object_get_ex(r, "body", &body);
    if (ok && o->json)
        print_json(body);
    else if (ok)
        print_pairs(body, "");
    json_object_put(r);
    return ok ? 0 : 1;
}

static int cmd_sessions(control_opts_t *o, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    db_t *db = open_db(o);
    if (!db)
        return 1;
    json_object *rows = db_query_json(db, "SELECT id, iif(owner = '', '(anonymous)', owner) AS owner, workspace, opencode_session_id,"
                                         " message_count, created, last_activity, deleted, executions, succeeded,"
                                         " failed, mean_ms, tokens_in, tokens_out, cost"
                                         " FROM session_summary ORDER BY last_activity DESC");
    int rc = rows ? 0 : fail("cannot read sessions: %s%s", db_errmsg(db), "");
    if (rows && o->json)
        print_json(rows);
    else if (rows) {
        static const char *const cols[] = {"id", "owner", "executions", "succeeded", "failed", "mean_ms",
                                           "last_activity", "deleted", "workspace", NULL};
        print_table(rows, cols);
    }
    json_object_put(rows);
    db_close(db);
    return rc;
}

static int cmd_history(control_opts_t *o, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    db_exec_filter_t f = {.session_id = o->session, .status = o->status, .mode = o->mode,
                          .limit = o->limit > 0 ? o->limit : 20};
    if (o->since && parse_time(o->since, &f.since) != 0)
        return fail("--since %s: expected unix seconds or an age such as 24h%s", o->since, "");
    db_t *db = open_db(o);
    if (!db)
        return 1;
    json_object *rows = db_exec_list(db, &f, NULL);
    int rc = rows ? 0 : fail("cannot read history: %s%s", db_errmsg(db), "");
    if (rows) {
        /* Readable times. */
        for (size_t i = 0; i < json_object_array_length(rows); i++) {
            json_object *row = json_object_array_get_idx(rows, i), *q;
            if (json_object_object_get_ex(row, "queued_at", &q)) {
                time_t t = (time_t)json_object_get_double(q);
                char when[32];
                strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", gmtime(&t));
                json_object_object_add(row, "queued", json_object_new_string(when));
            }
        }
        if (o->json)
            print_json(rows);
        else {
            static const char *const cols[] = {"id", "queued", "session_id", "mode", "status", "duration_ms",
                                               "peak_rss_kb", "tokens_out", "error", NULL};
            print_table(rows, cols);
        }
    }
    json_object_put(rows);
    db_close(db);
    return rc;
}

static int cmd_show(control_opts_t *o, int argc, char **argv)
{
    if (argc < 1)
        return fail("show needs an execution id%s%s", "", ""), 2;
    char *end;
    long long id = strtoll(argv[0], &end, 10);
    if (*end || id <= 0)
        return fail("show: \"%s\" is not an execution id%s", argv[0], ""), 2;
    db_t *db = open_db(o);
    if (!db)
        return 1;
    json_object *row = db_exec_get(db, id, NULL);
    int rc = row ? 0 : fail("no execution %s%s", argv[0], "");
    if (row && o->json)
        print_json(row);
    else if (row)
        print_pairs(row, "");
    json_object_put(row);
    db_close(db);
    return rc;
}

static int cmd_stats(control_opts_t *o, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    double since = 0;
    if (o->since && parse_time(o->since, &since) != 0)
        return fail("--since %s: expected unix seconds or an age such as 24h%s", o->since, "");
    db_t *db = open_db(o);
    if (!db)
        return 1;
    json_object *st = db_stats(db, since, now_s() + 1);
    int rc = st ? 0 : fail("cannot compute statistics: %s%s", db_errmsg(db), "");
    if (st && o->json)
        print_json(st);
    else if (st)
        print_pairs(st, "");
    json_object_put(st);
    db_close(db);
    return rc;
}

static int cmd_prune(control_opts_t *o, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    long ms;
    if (!o->older_than || conf_parse_duration_ms(o->older_than, &ms) != 0)
        return fail("prune needs --older-than AGE (such as 30d)%s%s", "", ""), 2;
    json_object *req = json_object_new_object(), *args = json_object_new_object();
    json_object_object_add(args, "before", json_object_new_double(now_s() - ms / 1000.0));
    json_object_object_add(req, "op", json_object_new_string("prune"));
    json_object_object_add(req, "user", json_object_new_string("ocpmctl"));
    json_object_object_add(req, "args", args);
    json_object *r = ask_manager(o, req), *status, *body;
    json_object_put(req);
    if (!r)
        return 1;
    int ok = json_object_object_get_ex(r, "status", &status) && json_object_get_int(status) == 200 &&
             json_object_object_get_ex(r, "body", &body);
    if (ok && o->json)
        print_json(body);
    else if (ok)
        printf("deleted %s rows older than %s\n", json_object_get_string(json_object_object_get(body, "deleted")),
               o->older_than);
    else
        fail("prune failed: %s%s", json_object_to_json_string(r), "");
    json_object_put(r);
    return ok ? 0 : 1;
}

static const struct {
    const char *name;
    cmd_fn fn;
} commands[] = {
    {"status", cmd_status}, {"sessions", cmd_sessions}, {"history", cmd_history},
    {"show", cmd_show},     {"stats", cmd_stats},       {"prune", cmd_prune},
};

static int usage(FILE *f)
{
    fputs("usage: ocpmctl [-c FILE] [--db PATH] [--socket PATH] [--json] COMMAND\n"
          "  status | sessions | history [--session ID] [--status S] [--mode M] [--since T] [--limit N]\n"
          "  show EXECUTION | stats [--since T] | prune --older-than AGE\n"
          "T is unix seconds or an age (90m, 24h, 7d). Settings come from -c FILE, $OCPM_CONFIG and OCPM_<KEY>.\n",
          f);
    return 2;
}

int main(int argc, char **argv)
{
    control_opts_t o = {0};
    const char *file = getenv("OCPM_CONFIG"), *db = NULL, *sock = NULL;
    char *rest[64];
    int nrest = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (!strcmp(a, "-c"))
            slot = &file;
        else if (!strcmp(a, "--db"))
            slot = &db;
        else if (!strcmp(a, "--socket"))
            slot = &sock;
        else if (!strcmp(a, "--session"))
            slot = &o.session;
        else if (!strcmp(a, "--status"))
            slot = &o.status;
        else if (!strcmp(a, "--mode"))
            slot = &o.mode;
        else if (!strcmp(a, "--since"))
            slot = &o.since;
        else if (!strcmp(a, "--older-than"))
            slot = &o.older_than;
        else if (!strcmp(a, "--json")) {
            o.json = 1;
            continue;
        } else if (!strcmp(a, "--limit")) {
            if (++i >= argc || (o.limit = atol(argv[i])) <= 0)
                return usage(stderr);
            continue;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (a[0] == '-') {
            fprintf(stderr, "ocpmctl: unknown option %s\n", a);
            return usage(stderr);
        } else if (nrest < 64) {
            rest[nrest++] = argv[i];
            continue;
        }
        if (++i >= argc)
            return usage(stderr);
        *slot = argv[i];
    }
    if (nrest < 1)
        return usage(stderr);
    char err[1024];
    conf_defaults(&o.conf);
    if ((file && *file && conf_load_file(&o.conf, file, err, sizeof err) != 0) ||
        conf_load_env(&o.conf, err, sizeof err) != 0 ||
        (db && conf_set(&o.conf, "db_path", db, err, sizeof err) != 0) ||
        (sock && conf_set(&o.conf, "control_socket", sock, err, sizeof err) != 0) ||
        conf_finish(&o.conf, err, sizeof err) != 0) {
        fprintf(stderr, "ocpmctl: configuration error: %s\n", err);
        return 1;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(commands[i].name, rest[0]))
            return commands[i].fn(&o, nrest - 1, rest + 1);
    fprintf(stderr, "ocpmctl: unknown command %s\n", rest[0]);
    return usage(stderr);
}
