#define _GNU_SOURCE
#include "ctl.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "db.h"
#include "frame.h"

int ctl_parse_time(const char *s, double *out)
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
    *out = clock_now() - ms / 1000.0;
    return 0;
}

static db_t *ctl_open_db(ctl_opts_t *o)
{
    char err[1200];
    if (access(o->conf.db_path, F_OK) != 0) {
        ctl_fail("no database at %s (is state_dir or --db right?)", o->conf.db_path);
        return NULL;
    }
    db_t *db = db_open_readonly(o->conf.db_path, err, sizeof err);
    if (!db)
        ctl_fail("%s", err);
    return db;
}

/* One request frame to the manager's control socket, as the operator, and its reply frame. */
static json_object *ctl_ask(ctl_opts_t *o, const char *op, json_object *args)
{
    json_object *req = json_object_new_object();
    json_object_object_add(req, "op", json_object_new_string(op));
    json_object_object_add(req, "user", json_object_new_string("ocpmctl"));
    json_object_object_add(req, "args", args);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", o->conf.control_socket);
    json_object *reply = NULL;
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        ctl_fail("cannot reach ocpmd at %s: %s", o->conf.control_socket, strerror(errno));
    } else {
        frame_decoder_t *d = frame_decoder_new(FRAME_MAX);
        if (frame_write_fd(fd, req) != 0 || frame_read_fd(fd, d, &reply, 600000) != FRAME_OK)
            ctl_fail("ocpmd did not answer on %s", o->conf.control_socket);
        frame_decoder_free(d);
    }
    if (fd >= 0)
        close(fd);
    json_object_put(req);
    return reply;
}

/* What a command read: JSON with --json, else a table of cols (rows) or key-value pairs (cols NULL). */
static void ctl_output(const ctl_opts_t *o, json_object *v, const char *const *cols)
{
    if (o->json)
        ctl_print_json(v);
    else if (cols)
        ctl_print_table(v, cols);
    else
        ctl_print_pairs(v, "");
}

int ctl_status(ctl_opts_t *o, int argc, char **argv)
{
    (void)argc, (void)argv;
    json_object *r = ctl_ask(o, "status", json_object_new_object()), *body;
    int ok = r && json_object_object_get_ex(r, "body", &body);
    if (ok)
        ctl_output(o, body, NULL);
    json_object_put(r);
    return ok ? 0 : 1;
}

int ctl_sessions(ctl_opts_t *o, int argc, char **argv)
{
    (void)argc, (void)argv;
    db_t *db = ctl_open_db(o);
    if (!db)
        return 1;
    json_object *rows = db_query_json(db, "SELECT id, iif(owner = '', '(anonymous)', owner) AS owner, workspace, "
                                          "opencode_session_id, message_count, created, last_activity, deleted, "
                                          "executions, succeeded, failed, mean_ms, tokens_in, tokens_out, cost"
                                          " FROM session_summary ORDER BY last_activity DESC");
    int rc = rows ? 0 : ctl_fail("cannot read sessions: %s", db_errmsg(db));
    static const char *const cols[] = {"id", "owner", "executions", "succeeded", "failed", "mean_ms",
                                       "last_activity", "deleted", "workspace", NULL};
    if (rows)
        ctl_output(o, rows, cols);
    json_object_put(rows);
    db_close(db);
    return rc;
}

void ctl_add_when(json_object *rows, const char *from, const char *to)
{
    for (size_t i = 0; i < json_object_array_length(rows); i++) {
        json_object *row = json_object_array_get_idx(rows, i), *q;
        if (!json_object_object_get_ex(row, from, &q))
            continue;
        time_t t = (time_t)json_object_get_double(q);
        char when[32];
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", gmtime(&t));
        json_object_object_add(row, to, json_object_new_string(when));
    }
}

/* --limit, or def: 0, or -1 after saying why. */
static int ctl_limit(const ctl_opts_t *o, long def, long *limit)
{
    char *end = NULL;
    *limit = o->limit ? strtol(o->limit, &end, 10) : def;
    if (*limit <= 0 || (end && (*end || !isdigit((unsigned char)*o->limit))))
        return ctl_fail("--limit %s: expected a positive number", o->limit), -1;
    return 0;
}

/* Rows read from db (NULL: the read failed, named by what) printed with a readable time column
 * (as from the unix seconds in at) and cols; db is closed. Returns 0 or 1. */
static int ctl_rows(ctl_opts_t *o, db_t *db, json_object *rows, const char *what, const char *at, const char *as,
                    const char *const *cols)
{
    int rc = rows ? 0 : ctl_fail("cannot read %s: %s", what, db_errmsg(db));
    if (rows) {
        ctl_add_when(rows, at, as);
        ctl_output(o, rows, cols);
    }
    json_object_put(rows);
    db_close(db);
    return rc;
}

int ctl_history(ctl_opts_t *o, int argc, char **argv)
{
    (void)argc, (void)argv;
    long limit;
    if (ctl_limit(o, 20, &limit) != 0)
        return 2;
    db_exec_filter_t f = {.session_id = o->session, .status = o->status, .mode = o->mode, .limit = limit};
    if (o->since && ctl_parse_time(o->since, &f.since) != 0)
        return ctl_fail("--since %s: expected unix seconds or an age such as 24h", o->since);
    db_t *db = ctl_open_db(o);
    if (!db)
        return 1;
    static const char *const cols[] = {"id", "queued", "session_id", "mode", "status", "duration_ms",
                                       "peak_rss_kb", "tokens_out", "error", NULL};
    return ctl_rows(o, db, db_exec_list(db, &f, NULL), "history", "queued_at", "queued", cols);
}

int ctl_slowlog(ctl_opts_t *o, int argc, char **argv)
{
    (void)argc, (void)argv;
    long limit;
    double since = 0;
    if (ctl_limit(o, 20, &limit) != 0)
        return 2;
    if (o->since && ctl_parse_time(o->since, &since) != 0)
        return ctl_fail("--since %s: expected unix seconds or an age such as 24h", o->since);
    db_t *db = ctl_open_db(o);
    if (!db)
        return 1;
    int more = 0;
    static const char *const cols[] = {"when", "execution_id", "session_id", "pool", "elapsed_ms", "step", "tool",
                                       "tool_input_summary", "since_last_event_ms", "pending_prompts", NULL};
    return ctl_rows(o, db, db_slow_list(db, since, 0, limit, SIZE_MAX, &more), "the slow log", "at", "when", cols);
}

int ctl_show(ctl_opts_t *o, int argc, char **argv)
{
    if (argc < 1)
        return ctl_fail("show needs an execution id"), 2;
    char *end;
    long long id = strtoll(argv[0], &end, 10);
    if (*end || id <= 0)
        return ctl_fail("show: \"%s\" is not an execution id", argv[0]), 2;
    db_t *db = ctl_open_db(o);
    if (!db)
        return 1;
    json_object *row = db_exec_get(db, id, NULL);
    int rc = row ? 0 : ctl_fail("no execution %s", argv[0]);
    if (row) {
        db_exec_add_turn(db, row, id); /* what its agent did: tool calls, prompts */
        ctl_output(o, row, NULL);
    }
    json_object_put(row);
    db_close(db);
    return rc;
}

int ctl_stats(ctl_opts_t *o, int argc, char **argv)
{
    (void)argc, (void)argv;
    double since = 0;
    if (o->since && ctl_parse_time(o->since, &since) != 0)
        return ctl_fail("--since %s: expected unix seconds or an age such as 24h", o->since);
    db_t *db = ctl_open_db(o);
    if (!db)
        return 1;
    json_object *st = db_stats(db, since, clock_now() + 1);
    int rc = st ? 0 : ctl_fail("cannot compute statistics: %s", db_errmsg(db));
    if (st)
        ctl_output(o, st, NULL);
    json_object_put(st);
    db_close(db);
    return rc;
}

/* One operator op on the manager: its answer's body printed (as JSON with --json, else by print),
 * or the manager's error after failed ("prune failed: ..."). Returns 0, or 1. */
typedef void (*ctl_print_fn)(ctl_opts_t *o, json_object *body);
static int ctl_call(ctl_opts_t *o, const char *op, json_object *args, ctl_print_fn print, const char *failed)
{
    json_object *r = ctl_ask(o, op, args), *status, *body, *e, *msg;
    if (!r)
        return 1;
    int ok = json_object_object_get_ex(r, "status", &status) && json_object_get_int(status) == 200 &&
             json_object_object_get_ex(r, "body", &body);
    if (ok && o->json)
        ctl_print_json(body);
    else if (ok)
        print(o, body);
    else if (json_object_object_get_ex(r, "body", &body) && json_object_object_get_ex(body, "error", &e) &&
             json_object_object_get_ex(e, "message", &msg))
        ctl_fail("%s: %s", failed, json_object_get_string(msg));
    else
        ctl_fail("%s: %s", failed, json_object_to_json_string(r));
    json_object_put(r);
    return ok ? 0 : 1;
}

static void ctl_print_prune(ctl_opts_t *o, json_object *body)
{
    printf("deleted %s rows older than %s\n", json_object_get_string(json_object_object_get(body, "deleted")),
           o->older_than);
}

int ctl_prune(ctl_opts_t *o, int argc, char **argv)
{
    (void)argc, (void)argv;
    long ms;
    if (!o->older_than || conf_parse_duration_ms(o->older_than, &ms) != 0)
        return ctl_fail("prune needs --older-than AGE (such as 30d)"), 2;
    json_object *args = json_object_new_object();
    json_object_object_add(args, "before", json_object_new_double(clock_now() - ms / 1000.0));
    return ctl_call(o, "prune", args, ctl_print_prune, "prune failed");
}

/* Print a list of names from the reload's answer, one line. */
static void ctl_print_names(const char *label, json_object *body, const char *key)
{
    json_object *a = json_object_object_get(body, key);
    size_t n = a ? json_object_array_length(a) : 0;
    printf("%s:", label);
    for (size_t i = 0; i < n; i++)
        printf(" %s", json_object_get_string(json_object_array_get_idx(a, i)));
    printf("%s\n", n ? "" : " none");
}

static void ctl_print_reload(ctl_opts_t *o, json_object *body)
{
    (void)o;
    printf("reloaded%s\n", json_object_get_boolean(json_object_object_get(body, "respondersReplaced"))
                               ? ""
                               : "; the responders were not replaced (the log says why)");
    ctl_print_names("changed", body, "changed");
    ctl_print_names("needs a restart", body, "restartNeeded");
}

int ctl_reload(ctl_opts_t *o, int argc, char **argv)
{
    (void)argc, (void)argv;
    return ctl_call(o, "reload", json_object_new_object(), ctl_print_reload, "reload failed, nothing changed");
}

/* drain and undrain: the manager's state after the call, and what is still to finish. */
static void ctl_print_drain(ctl_opts_t *o, json_object *body)
{
    (void)o;
    int on = json_object_get_boolean(json_object_object_get(body, "draining"));
    int changed = json_object_get_boolean(json_object_object_get(body, "changed"));
    if (on)
        printf("%s: new sessions and messages get 503 draining; %s running and %s queued will finish\n",
               changed ? "draining" : "already draining",
               json_object_get_string(json_object_object_get(body, "running")),
               json_object_get_string(json_object_object_get(body, "queued")));
    else
        printf("%s: new sessions and messages are taken\n", changed ? "drain ended" : "not draining");
}

int ctl_drain(ctl_opts_t *o, int argc, char **argv)
{
    (void)argc, (void)argv;
    return ctl_call(o, "drain", json_object_new_object(), ctl_print_drain, "drain failed");
}

int ctl_undrain(ctl_opts_t *o, int argc, char **argv)
{
    (void)argc, (void)argv;
    return ctl_call(o, "undrain", json_object_new_object(), ctl_print_drain, "undrain failed");
}

static void ctl_print_restarted(ctl_opts_t *o, json_object *body)
{
    (void)o;
    static const char *const done_cols[] = {"pool", "server", "was", "action", NULL};
    static const char *const skip_cols[] = {"pool", "server", "was", "why", NULL};
    json_object *done = json_object_object_get(body, "restarted"), *skipped = json_object_object_get(body, "skipped");
    if (json_object_array_length(done) == 0)
        printf("no server restarted\n");
    else
        ctl_print_table(done, done_cols);
    if (json_object_array_length(skipped) > 0)
        printf("skipped:\n"), ctl_print_table(skipped, skip_cols);
}

/* server restart [--pool NAME] [N]: the manager restarts them (api_servers.c says which). */
int ctl_server(ctl_opts_t *o, int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "restart") != 0 || argc > 2)
        return ctl_fail("usage: ocpmctl server restart [--pool NAME] [N]"), 2;
    json_object *args = json_object_new_object();
    if (argc == 2) {
        char *end;
        long n = strtol(argv[1], &end, 10);
        if (*end || end == argv[1] || n < 0 || n >= CONF_SERVERS_MAX) {
            json_object_put(args);
            return ctl_fail("server restart: \"%s\" is not a server's number (0 to %d)", argv[1], CONF_SERVERS_MAX - 1), 2;
        }
        json_object_object_add(args, "server", json_object_new_int((int)n));
    }
    if (o->pool)
        json_object_object_add(args, "pool", json_object_new_string(o->pool));
    return ctl_call(o, "server.restart", args, ctl_print_restarted, "server restart");
}
