/* db_internal: what the files of the storage module share (db.c: the connection and its faults;
 * db_schema.c: migrations and statements; db_sessions.c, db_executions.c, db_stats.c, db_turns.c,
 * db_slow.c: the queries).
 * Not for other modules: they use db.h. */
#ifndef OCPM_DB_INTERNAL_H
#define OCPM_DB_INTERNAL_H

#include <limits.h>

#include <sqlite3.h>

#include "db.h"

/* Schema migrations, applied in order; user_version = number applied. Never edit a shipped step:
 * add a new one. */
extern const char *const db_migrations[];
extern const int db_nmigrations;

/* db_tally.c: sums executions for /api/stats, from rows or from rollups. */
typedef struct db_tally db_tally_t;
/* One pool, mode and status's sums (one row: n = 1). max_r: -1 when none. */
typedef struct db_tally_group {
    long long n, nd, nw, nr, max_r, tokens_in, tokens_out;
    double sum_d, sum_w, sum_r, cost;
} db_tally_group_t;
enum { DB_TALLY_DURATION, DB_TALLY_WAIT, DB_TALLY_METRICS };
#define DB_TALLY_BUSIEST 5
#define DB_TALLY_TOOLS 100
#define DB_TALLY_ERROR 0.0247 /* sqrt(DB_HIST_RATIO) - 1, rounded up */
/* exact: keep every value (percentiles by sorting); else only the histograms. */
db_tally_t *db_tally_new(int exact);
void db_tally_free(db_tally_t *t);
int db_tally_group(db_tally_t *t, const char *pool, const char *mode, const char *status, const db_tally_group_t *g);
int db_tally_session(db_tally_t *t, const char *owner, const char *session, long long n, long long failed,
                     long long nd, double sum_d);
int db_tally_tool(db_tally_t *t, const char *tool, const char *status, long long calls);
int db_tally_value(db_tally_t *t, int metric, double v);
void db_tally_bucket(db_tally_t *t, int metric, int bucket, long long n);
/* The answer; histograms: with the "histograms" object (db_stats_opt). */
json_object *db_tally_json(db_tally_t *t, double since, double until, int histograms);

/* The prepared statements, by purpose. */
enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_INTERRUPT,
    ST_EVENT,
    ST_SESS_INSERT,
    ST_SESS_SET_OC,
    ST_SESS_SET_SERVER,
    ST_SESS_DELETE,
    ST_SESS_EACH,
    ST_SESS_EXISTS,
    ST_SESS_BUMP,
    ST_SESS_WORKSPACES,
    ST_EXEC_INSERT,
    ST_EXEC_UPDATE,
    ST_EXEC_GET,
    ST_STATS_ROWS,
    ST_STATS_LIVE,
    ST_STATS_TOOL_ROWS,
    ST_STATS_TOOL_LIVE,
    ST_STATS_ROLLUP,
    ST_STATS_HIST,
    ST_STATS_SESSIONS,
    ST_STATS_TOOLS,
    ST_PRUNE_EXECS,
    ST_PRUNE_EVENTS,
    ST_TOOL_INSERT,
    ST_TOOL_LIST,
    ST_EVENT_INSERT,
    ST_EVENT_LIST,
    ST_PROMPT_PUT,
    ST_PROMPT_LIST,
    ST_PROMPT_STATUS,
    ST_PROMPT_LOSE,
    ST_WEBHOOK_INSERT,
    ST_USAGE_SINCE,
    ST_PRUNE_HOOKS,
    ST_SLOW_INSERT,
    ST_SLOW_LIST,
    ST_COUNT
};

extern const char *const db_sql[ST_COUNT];

/* Whether a transaction is open (db_tx_begin): writes inside it leave BEGIN and COMMIT to it. */
int db_in_tx(const db_t *db);

/* History filters; each combination gets its own statement (prepared on first use), so
 * SQLite picks the index that fits it. */
enum { LF_OWNER = 1, LF_SESSION = 2, LF_STATUS = 4, LF_MODE = 8, LF_SINCE = 16, LF_UNTIL = 32, LF_BEFORE = 64, LF_ALL = 128 };

struct db {
    sqlite3 *h; /* NULL only between a failed reopen (db_restore) and the next good one */
    sqlite3_stmt *st[ST_COUNT];
    sqlite3_stmt *list_st[LF_ALL];
    int store_prompts;
    long text_limit;
    long busy_ms;
    char path[PATH_MAX];
    /* The last failure, kept because a later ROLLBACK would overwrite SQLite's own. */
    int err_code, err_errno;
    char err_msg[256];
};

/* Remember why the last call failed (SQLite's code and message). */
void db_failed(db_t *db);
/* The end of a read of rows into a: the statement reset and unbound; a when the last step was
 * SQLITE_DONE, else NULL (a released, db_failed noted why). */
json_object *db_rows_done(db_t *db, sqlite3_stmt *s, int rc, json_object *a);
/* Bind helpers: NULL or 0 meaning "no value" become SQL NULL. */
void db_bind_text(sqlite3_stmt *s, int i, const char *v);
void db_bind_time(sqlite3_stmt *s, int i, double t);
/* Step a write statement to completion and reset it. Returns 0 or -1 (db_failed noted why). */
int db_run(db_t *db, int st);
/* The current row of s as a JSON object keyed by column name. */
json_object *db_row_json(sqlite3_stmt *s);
/* An upper bound of the current row's size as db_row_json writes it: every byte of text at most 6
 * (\u00XX), the rest a fixed allowance per column (pages cut by bytes). */
size_t db_row_json_bound(sqlite3_stmt *s);

#endif
