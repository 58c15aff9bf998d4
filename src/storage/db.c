#define _GNU_SOURCE
#include "db.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>
#include <unistd.h>

#include "sha256.h"

/* Schema migrations, applied in order; user_version = number applied. Never
 * edit a shipped step: add a new one. */
static const char *const db_migrations[] = {
    /* 1: sessions, executions, manager events. Times are unix seconds (REAL). */
    "CREATE TABLE sessions ("
    "  id TEXT PRIMARY KEY,"
    "  owner TEXT NOT NULL,"
    "  workspace TEXT NOT NULL,"
    "  opencode_session_id TEXT,"
    "  created_at REAL NOT NULL,"
    "  last_activity REAL NOT NULL,"
    "  message_count INTEGER NOT NULL DEFAULT 0,"
    "  deleted_at REAL"
    ");"
    "CREATE TABLE executions ("
    "  id INTEGER PRIMARY KEY,"
    "  session_id TEXT NOT NULL REFERENCES sessions(id),"
    "  owner TEXT NOT NULL,"
    "  mode TEXT NOT NULL,"
    "  status TEXT NOT NULL CHECK (status IN ('queued','running','succeeded','failed',"
    "                                        'timeout','aborted','interrupted')),"
    "  argv TEXT,"
    "  pid INTEGER,"
    "  model TEXT,"
    "  agent TEXT,"
    "  queued_at REAL NOT NULL,"
    "  started_at REAL,"
    "  finished_at REAL,"
    "  duration_ms REAL,"
    "  queue_wait_ms REAL,"
    "  exit_code INTEGER,"
    "  signal INTEGER,"
    "  peak_rss_kb INTEGER,"
    "  cpu_user_ms REAL,"
    "  cpu_sys_ms REAL,"
    "  tokens_in INTEGER,"
    "  tokens_out INTEGER,"
    "  cost REAL,"
    "  prompt TEXT,"
    "  prompt_bytes INTEGER,"
    "  prompt_sha256 TEXT,"
    "  answer TEXT,"
    "  answer_bytes INTEGER,"
    "  answer_sha256 TEXT,"
    "  opencode_session_id TEXT,"
    "  stderr_tail TEXT,"
    "  error TEXT"
    ");"
    "CREATE INDEX executions_session ON executions(session_id, id);"
    "CREATE INDEX executions_status ON executions(status, id);"
    "CREATE INDEX executions_queued ON executions(queued_at);"
    "CREATE TABLE manager_events ("
    "  id INTEGER PRIMARY KEY,"
    "  at REAL NOT NULL,"
    "  pid INTEGER NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  detail TEXT"
    ");",
    /* 2: indexes and views for operators' questions. */
    "CREATE INDEX executions_owner ON executions(owner, id);"
    "CREATE INDEX executions_mode ON executions(mode, id);"
    /* Covering (value, time) indexes: a percentile over a long range walks one of them. */
    "CREATE INDEX executions_duration ON executions(duration_ms, queued_at);"
    "CREATE INDEX executions_wait ON executions(queue_wait_ms, queued_at);"
    "CREATE INDEX manager_events_at ON manager_events(at);"
    "CREATE VIEW executions_by_hour AS"
    "  SELECT strftime('%Y-%m-%d %H:00', queued_at, 'unixepoch') AS hour, count(*) AS runs,"
    "         sum(status = 'succeeded') AS succeeded,"
    "         sum(status IN ('failed', 'timeout', 'interrupted')) AS failed,"
    "         sum(status = 'aborted') AS aborted,"
    "         round(avg(duration_ms), 1) AS mean_ms, round(max(duration_ms), 1) AS max_ms,"
    "         sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out"
    "  FROM executions GROUP BY hour;"
    "CREATE VIEW session_summary AS"
    "  SELECT s.id, s.owner, s.workspace, s.opencode_session_id, s.message_count,"
    "         datetime(s.created_at, 'unixepoch') AS created, datetime(s.last_activity, 'unixepoch') AS last_activity,"
    "         s.deleted_at IS NOT NULL AS deleted, count(e.id) AS executions,"
    "         coalesce(sum(e.status = 'succeeded'), 0) AS succeeded,"
    "         coalesce(sum(e.status IN ('failed', 'timeout', 'interrupted')), 0) AS failed,"
    "         round(avg(e.duration_ms), 1) AS mean_ms, sum(e.tokens_in) AS tokens_in,"
    "         sum(e.tokens_out) AS tokens_out, sum(e.cost) AS cost"
    "  FROM sessions s LEFT JOIN executions e ON e.session_id = s.id GROUP BY s.id;"
    "CREATE VIEW failures AS"
    "  SELECT id, session_id, owner, mode, status, datetime(finished_at, 'unixepoch') AS finished, exit_code,"
    "         signal, error FROM executions WHERE status IN ('failed', 'timeout', 'interrupted');",
    /* 3: sessions belong to their owner: ids are chosen per owner (one user's ids tell nothing
     * about another's), so the key is (owner, id) and executions refer to both. The
     * unauthenticated owner becomes '' (it was 'anonymous', a name a real user could have). */
    "CREATE TABLE sessions_v3 ("
    "  id TEXT NOT NULL,"
    "  owner TEXT NOT NULL,"
    "  workspace TEXT NOT NULL,"
    "  opencode_session_id TEXT,"
    "  created_at REAL NOT NULL,"
    "  last_activity REAL NOT NULL,"
    "  message_count INTEGER NOT NULL DEFAULT 0,"
    "  deleted_at REAL,"
    "  PRIMARY KEY (owner, id)"
    ");"
    "INSERT INTO sessions_v3 SELECT id, CASE owner WHEN 'anonymous' THEN '' ELSE owner END, workspace,"
    "  opencode_session_id, created_at, last_activity, message_count, deleted_at FROM sessions;"
    "CREATE TABLE executions_v3 ("
    "  id INTEGER PRIMARY KEY,"
    "  session_id TEXT NOT NULL,"
    "  owner TEXT NOT NULL,"
    "  mode TEXT NOT NULL,"
    "  status TEXT NOT NULL CHECK (status IN ('queued','running','succeeded','failed',"
    "                                        'timeout','aborted','interrupted')),"
    "  argv TEXT, pid INTEGER, model TEXT, agent TEXT,"
    "  queued_at REAL NOT NULL, started_at REAL, finished_at REAL, duration_ms REAL, queue_wait_ms REAL,"
    "  exit_code INTEGER, signal INTEGER, peak_rss_kb INTEGER, cpu_user_ms REAL, cpu_sys_ms REAL,"
    "  tokens_in INTEGER, tokens_out INTEGER, cost REAL,"
    "  prompt TEXT, prompt_bytes INTEGER, prompt_sha256 TEXT,"
    "  answer TEXT, answer_bytes INTEGER, answer_sha256 TEXT,"
    "  opencode_session_id TEXT, stderr_tail TEXT, error TEXT,"
    "  FOREIGN KEY (owner, session_id) REFERENCES sessions_v3(owner, id)"
    ");"
    "INSERT INTO executions_v3 SELECT id, session_id, CASE owner WHEN 'anonymous' THEN '' ELSE owner END, mode,"
    "  status, argv, pid, model, agent, queued_at, started_at, finished_at, duration_ms, queue_wait_ms, exit_code,"
    "  signal, peak_rss_kb, cpu_user_ms, cpu_sys_ms, tokens_in, tokens_out, cost, prompt, prompt_bytes,"
    "  prompt_sha256, answer, answer_bytes, answer_sha256, opencode_session_id, stderr_tail, error FROM executions;"
    "DROP VIEW executions_by_hour;"
    "DROP VIEW session_summary;"
    "DROP VIEW failures;"
    "DROP TABLE executions;"
    "DROP TABLE sessions;"
    "ALTER TABLE sessions_v3 RENAME TO sessions;"
    "ALTER TABLE executions_v3 RENAME TO executions;"
    "CREATE INDEX executions_session ON executions(owner, session_id, id);"
    "CREATE INDEX executions_status ON executions(status, id);"
    "CREATE INDEX executions_queued ON executions(queued_at);"
    "CREATE INDEX executions_owner ON executions(owner, id);"
    "CREATE INDEX executions_mode ON executions(mode, id);"
    "CREATE INDEX executions_duration ON executions(duration_ms, queued_at);"
    "CREATE INDEX executions_wait ON executions(queue_wait_ms, queued_at);"
    "CREATE VIEW executions_by_hour AS"
    "  SELECT strftime('%Y-%m-%d %H:00', queued_at, 'unixepoch') AS hour, count(*) AS runs,"
    "         sum(status = 'succeeded') AS succeeded,"
    "         sum(status IN ('failed', 'timeout', 'interrupted')) AS failed,"
    "         sum(status = 'aborted') AS aborted,"
    "         round(avg(duration_ms), 1) AS mean_ms, round(max(duration_ms), 1) AS max_ms,"
    "         sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out"
    "  FROM executions GROUP BY hour;"
    "CREATE VIEW session_summary AS"
    "  SELECT s.id, s.owner, s.workspace, s.opencode_session_id, s.message_count,"
    "         datetime(s.created_at, 'unixepoch') AS created, datetime(s.last_activity, 'unixepoch') AS last_activity,"
    "         s.deleted_at IS NOT NULL AS deleted, count(e.id) AS executions,"
    "         coalesce(sum(e.status = 'succeeded'), 0) AS succeeded,"
    "         coalesce(sum(e.status IN ('failed', 'timeout', 'interrupted')), 0) AS failed,"
    "         round(avg(e.duration_ms), 1) AS mean_ms, sum(e.tokens_in) AS tokens_in,"
    "         sum(e.tokens_out) AS tokens_out, sum(e.cost) AS cost"
    "  FROM sessions s LEFT JOIN executions e ON e.owner = s.owner AND e.session_id = s.id GROUP BY s.owner, s.id;"
    "CREATE VIEW failures AS"
    "  SELECT id, session_id, owner, mode, status, datetime(finished_at, 'unixepoch') AS finished, exit_code,"
    "         signal, error FROM executions WHERE status IN ('failed', 'timeout', 'interrupted');",
};

#define DB_NMIGRATIONS ((int)(sizeof db_migrations / sizeof db_migrations[0]))
/* Above this many rows in a stats range, percentiles walk the covering index. */
#define DB_STATS_WALK 50000

/* The prepared statements, by purpose. */
enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_INTERRUPT,
    ST_EVENT,
    ST_SESS_INSERT,
    ST_SESS_SET_OC,
    ST_SESS_DELETE,
    ST_SESS_EACH,
    ST_SESS_EXISTS,
    ST_SESS_BUMP,
    ST_EXEC_INSERT,
    ST_EXEC_UPDATE,
    ST_EXEC_GET,
    ST_STATS_COUNTS,
    ST_STATS_TOTALS,
    ST_STATS_DURATION_AT,
    ST_STATS_WAIT_AT,
    ST_STATS_DURATION_AT_WALK,
    ST_STATS_WAIT_AT_WALK,
    ST_STATS_BUSIEST,
    ST_PRUNE_EXECS,
    ST_PRUNE_EVENTS,
    ST_COUNT
};

static const char *const db_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_INTERRUPT] = "UPDATE executions SET status = 'interrupted', finished_at = ?1,"
                     " error = coalesce(error, 'manager stopped before the run ended')"
                     " WHERE status IN ('queued', 'running')",
    [ST_EVENT] = "INSERT INTO manager_events (at, pid, kind, detail) VALUES (?1, ?2, ?3, ?4)",
    [ST_SESS_INSERT] = "INSERT INTO sessions (id, owner, workspace, opencode_session_id, created_at,"
                       " last_activity, message_count) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)",
    [ST_SESS_SET_OC] = "UPDATE sessions SET opencode_session_id = ?3 WHERE owner = ?1 AND id = ?2",
    [ST_SESS_DELETE] = "UPDATE sessions SET deleted_at = ?3 WHERE owner = ?1 AND id = ?2",
    [ST_SESS_EACH] = "SELECT id, owner, workspace, opencode_session_id, created_at, last_activity,"
                     " message_count FROM sessions WHERE deleted_at IS NULL",
    [ST_SESS_EXISTS] = "SELECT 1 FROM sessions WHERE owner = ?1 AND id = ?2",
    [ST_SESS_BUMP] = "UPDATE sessions SET last_activity = ?3, message_count = message_count + 1"
                     " WHERE owner = ?1 AND id = ?2",
    [ST_EXEC_INSERT] = "INSERT INTO executions (session_id, owner, mode, status, model, agent, queued_at,"
                       " prompt, prompt_bytes, prompt_sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [ST_EXEC_UPDATE] =
        "UPDATE executions SET mode = ?2, status = ?3, argv = ?4, pid = ?5, started_at = ?6,"
        " finished_at = ?7, duration_ms = ?8, queue_wait_ms = ?9, exit_code = ?10, signal = ?11,"
        " peak_rss_kb = ?12, cpu_user_ms = ?13, cpu_sys_ms = ?14, tokens_in = ?15, tokens_out = ?16,"
        " cost = ?17, answer = ?18, answer_bytes = ?19, answer_sha256 = ?20, opencode_session_id = ?21,"
        " stderr_tail = ?22, error = ?23 WHERE id = ?1",
    [ST_EXEC_GET] = "SELECT * FROM executions WHERE id = ?1 AND (?2 IS NULL OR owner = ?2)",
    [ST_STATS_COUNTS] = "SELECT mode, status, count(*) FROM executions WHERE queued_at >= ?1 AND queued_at < ?2"
                        " GROUP BY mode, status",
    [ST_STATS_TOTALS] = "SELECT count(*), count(duration_ms), avg(duration_ms), count(queue_wait_ms),"
                        " avg(queue_wait_ms), max(peak_rss_kb), avg(peak_rss_kb), sum(tokens_in), sum(tokens_out),"
                        " sum(cost) FROM executions WHERE queued_at >= ?1 AND queued_at < ?2",
    /* The k-th smallest (0-based ?3): exact percentiles by offset. */
    [ST_STATS_DURATION_AT] = "SELECT duration_ms FROM executions WHERE queued_at >= ?1 AND queued_at < ?2"
                             " AND duration_ms IS NOT NULL ORDER BY duration_ms LIMIT 1 OFFSET ?3",
    [ST_STATS_WAIT_AT] = "SELECT queue_wait_ms FROM executions WHERE queued_at >= ?1 AND queued_at < ?2"
                         " AND queue_wait_ms IS NOT NULL ORDER BY queue_wait_ms LIMIT 1 OFFSET ?3",
    /* The same over a long range: walk the covering index instead of sorting the range. */
    [ST_STATS_DURATION_AT_WALK] = "SELECT duration_ms FROM executions INDEXED BY executions_duration"
                                  " WHERE duration_ms IS NOT NULL AND queued_at >= ?1 AND queued_at < ?2"
                                  " ORDER BY duration_ms LIMIT 1 OFFSET ?3",
    [ST_STATS_WAIT_AT_WALK] = "SELECT queue_wait_ms FROM executions INDEXED BY executions_wait"
                              " WHERE queue_wait_ms IS NOT NULL AND queued_at >= ?1 AND queued_at < ?2"
                              " ORDER BY queue_wait_ms LIMIT 1 OFFSET ?3",
    [ST_STATS_BUSIEST] = "SELECT session_id, count(*) AS n, sum(status IN ('failed','timeout','interrupted')),"
                         " round(avg(duration_ms), 1), owner FROM executions WHERE queued_at >= ?1 AND queued_at < ?2"
                         " GROUP BY owner, session_id ORDER BY n DESC, session_id LIMIT 5",
    /* Retention, in small batches so the loop never stalls. */
    [ST_PRUNE_EXECS] = "DELETE FROM executions WHERE id IN (SELECT id FROM executions WHERE finished_at < ?1"
                       " AND status NOT IN ('queued', 'running') ORDER BY id LIMIT ?2)",
    [ST_PRUNE_EVENTS] = "DELETE FROM manager_events WHERE id IN (SELECT id FROM manager_events WHERE at < ?1"
                        " ORDER BY id LIMIT ?2)",
};

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

const char *db_errmsg(db_t *db)
{
    if (!db)
        return "no database";
    if (db->err_code)
        return db->err_msg;
    return db->h ? sqlite3_errmsg(db->h) : "database is not open";
}

/* Remember why the last call failed (SQLite's code and message). */
static void db_failed(db_t *db)
{
    if (!db->h) {
        db->err_code = SQLITE_CANTOPEN;
        snprintf(db->err_msg, sizeof db->err_msg, "database is not open");
        return;
    }
    db->err_code = sqlite3_extended_errcode(db->h);
    db->err_errno = sqlite3_system_errno(db->h);
    if (db->err_code == SQLITE_OK)
        db->err_code = SQLITE_ERROR;
    int primary = db->err_code & 0xff;
    /* For I/O failures the system's reason (ENOSPC, EFBIG, EACCES...) is what an operator needs. */
    if (db->err_errno && (primary == SQLITE_IOERR || primary == SQLITE_FULL || primary == SQLITE_CANTOPEN))
        snprintf(db->err_msg, sizeof db->err_msg, "%s (%s)", sqlite3_errmsg(db->h), strerror(db->err_errno));
    else
        snprintf(db->err_msg, sizeof db->err_msg, "%s", sqlite3_errmsg(db->h));
}

/* The classes of failure callers answer differently (busy: retry soon; full/read-only: the
 * operator must act), from SQLite's primary result code. */
static const struct {
    int code;
    db_fault_t fault;
} db_faults[] = {
    {SQLITE_BUSY, DB_FAULT_BUSY},         {SQLITE_LOCKED, DB_FAULT_BUSY}, {SQLITE_FULL, DB_FAULT_FULL},
    {SQLITE_READONLY, DB_FAULT_READONLY}, {SQLITE_IOERR, DB_FAULT_IO},    {SQLITE_CANTOPEN, DB_FAULT_IO},
    {SQLITE_CORRUPT, DB_FAULT_IO},        {SQLITE_NOTADB, DB_FAULT_IO},
};

db_fault_t db_fault(db_t *db)
{
    if (!db || !db->err_code)
        return DB_FAULT_NONE;
    /* SQLite reports ENOSPC as SQLITE_FULL but a write past RLIMIT_FSIZE (EFBIG) as a failed
     * write, and does not keep the errno reliably: a failed write counts as no room. */
    if (db->err_code == SQLITE_IOERR_WRITE || db->err_errno == ENOSPC || db->err_errno == EFBIG)
        return DB_FAULT_FULL;
    for (size_t i = 0; i < sizeof db_faults / sizeof db_faults[0]; i++)
        if ((db->err_code & 0xff) == db_faults[i].code)
            return db_faults[i].fault;
    return DB_FAULT_OTHER;
}

long long db_memory_used(void) { return (long long)sqlite3_memory_used(); }

void db_set_busy_timeout(db_t *db, long ms)
{
    db->busy_ms = ms;
    if (db->h)
        sqlite3_busy_timeout(db->h, (int)ms);
}

static int db_migrate(db_t *db, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int version = 0;
    if (sqlite3_prepare_v2(db->h, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
        goto fail;
    if (sqlite3_step(s) == SQLITE_ROW)
        version = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    if (version > DB_NMIGRATIONS) {
        snprintf(err, errlen, "database schema version %d is newer than this ocpmd (%d)", version,
                 DB_NMIGRATIONS);
        return -1;
    }
    if (version == DB_NMIGRATIONS)
        return 0;
    if (sqlite3_exec(db->h, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    for (int i = version; i < DB_NMIGRATIONS; i++) {
        if (sqlite3_exec(db->h, db_migrations[i], NULL, NULL, NULL) != SQLITE_OK) {
            snprintf(err, errlen, "migration %d failed: %s", i + 1, sqlite3_errmsg(db->h));
            sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
    }
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", DB_NMIGRATIONS);
    if (sqlite3_exec(db->h, sql, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db->h, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
        goto fail;
    }
    return 0;
fail:
    snprintf(err, errlen, "%s", sqlite3_errmsg(db->h));
    return -1;
}

/* Close the connection and its statements; the db_t stays usable for a reconnect. */
static void db_disconnect(db_t *db)
{
    for (int i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(db->st[i]);
        db->st[i] = NULL;
    }
    for (int i = 0; i < LF_ALL; i++) {
        sqlite3_finalize(db->list_st[i]);
        db->list_st[i] = NULL;
    }
    if (db->h)
        sqlite3_close(db->h);
    db->h = NULL;
}

/* Open db->path read-write, set it up, migrate it and prepare every statement. */
static int db_connect(db_t *db, char *err, size_t errlen)
{
    const char *path = db->path;
    if (sqlite3_open_v2(path, &db->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, db->h ? sqlite3_errmsg(db->h) : "cannot open");
        db_disconnect(db);
        return -1;
    }
    /* SQLite falls back to read-only when the file is not writable: say so now, not at the first
     * write. It opens the file lazily, so read the schema first. */
    sqlite3_busy_timeout(db->h, 5000);
    int rc = sqlite3_exec(db->h, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
    if (sqlite3_db_readonly(db->h, "main") == 1) {
        snprintf(err, errlen, "%s: the database is read-only (check the permissions of the file and its directory)",
                 path);
        db_disconnect(db);
        return -1;
    }
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db->h));
        db_disconnect(db);
        return -1;
    }
    sqlite3_busy_timeout(db->h, 5000); /* start-up and migrations may wait longer than requests */
    sqlite3_extended_result_codes(db->h, 1);
    /* foreign_keys comes on after the migrations: a migration that rebuilds a table drops the old
     * one, which enforcement would refuse while rows refer to it. */
    static const char *const pragmas[] = {"PRAGMA journal_mode = WAL", "PRAGMA synchronous = NORMAL"};
    for (size_t i = 0; i < sizeof pragmas / sizeof pragmas[0]; i++) {
        if (sqlite3_exec(db->h, pragmas[i], NULL, NULL, NULL) != SQLITE_OK) {
            snprintf(err, errlen, "%s: %s: %s", path, pragmas[i], sqlite3_errmsg(db->h));
            db_disconnect(db);
            return -1;
        }
    }
    if (db_migrate(db, err, errlen) != 0) {
        db_disconnect(db);
        return -1;
    }
    if (sqlite3_exec(db->h, "PRAGMA foreign_keys = ON", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: PRAGMA foreign_keys: %s", path, sqlite3_errmsg(db->h));
        db_disconnect(db);
        return -1;
    }
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(db->h, db_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &db->st[i], NULL) != SQLITE_OK) {
            snprintf(err, errlen, "prepare %d: %s", i, sqlite3_errmsg(db->h));
            db_disconnect(db);
            return -1;
        }
    }
    if (db->busy_ms > 0)
        sqlite3_busy_timeout(db->h, (int)db->busy_ms);
    return 0;
}

db_t *db_open(const char *path, int store_prompts, long text_limit, char *err, size_t errlen)
{
    db_t *db = calloc(1, sizeof *db);
    if (!db) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    db->store_prompts = store_prompts;
    db->text_limit = text_limit;
    if (snprintf(db->path, sizeof db->path, "%s", path) >= (int)sizeof db->path) {
        snprintf(err, errlen, "database path too long");
        free(db);
        return NULL;
    }
    if (db_connect(db, err, errlen) != 0) {
        free(db);
        return NULL;
    }
    return db;
}

void db_close(db_t *db)
{
    if (!db)
        return;
    db_disconnect(db);
    free(db);
}

db_moved_t db_moved(db_t *db)
{
    if (!db->h)
        return DB_GONE;
    int moved = 0;
    if (sqlite3_file_control(db->h, "main", SQLITE_FCNTL_HAS_MOVED, &moved) != SQLITE_OK || !moved)
        return DB_IN_PLACE;
    struct stat st;
    return stat(db->path, &st) == 0 ? DB_REPLACED : DB_GONE;
}

/* Copy every committed page of the open database into a new file. */
static int db_backup_to(db_t *db, const char *to, char *err, size_t errlen)
{
    sqlite3 *dst = NULL;
    int rc = sqlite3_open_v2(to, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_backup *b = sqlite3_backup_init(dst, "main", db->h, "main");
        if (!b) {
            rc = sqlite3_errcode(dst);
        } else {
            rc = sqlite3_backup_step(b, -1);
            sqlite3_backup_finish(b);
            rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
        }
    }
    if (rc != SQLITE_OK)
        snprintf(err, errlen, "cannot write %s: %s", to, dst ? sqlite3_errmsg(dst) : sqlite3_errstr(rc));
    if (dst && sqlite3_close(dst) != SQLITE_OK && rc == SQLITE_OK) {
        snprintf(err, errlen, "cannot close %s", to);
        rc = SQLITE_ERROR;
    }
    return rc == SQLITE_OK ? 0 : -1;
}

int db_restore(db_t *db, char *err, size_t errlen)
{
    char tmp[PATH_MAX + 32], side[PATH_MAX + 8];
    if (db->h) {
        /* The file is gone from its directory but still open here: copy it back beside the
         * path, so that nothing committed is lost, then swap it in. Until the rename the old
         * connection stays as it was, so a failure changes nothing. */
        snprintf(tmp, sizeof tmp, "%s.restore-%ld", db->path, (long)getpid());
        unlink(tmp);
        if (db_backup_to(db, tmp, err, errlen) != 0) {
            unlink(tmp);
            return -1;
        }
        chmod(tmp, 0600);
        /* Closing checkpoints into the unlinked file; its -wal and -shm (still under the old
         * name) must not be taken for the new file's. */
        db_disconnect(db);
        static const char *const sides[] = {"-wal", "-shm", "-journal"};
        for (size_t i = 0; i < sizeof sides / sizeof sides[0]; i++) {
            snprintf(side, sizeof side, "%s%s", db->path, sides[i]);
            unlink(side);
        }
        if (rename(tmp, db->path) != 0) {
            snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, db->path, strerror(errno));
            /* Carry on from the copy where it is: it holds everything. */
            snprintf(db->path, sizeof db->path, "%s", tmp);
        }
    }
    db->err_code = 0;
    if (db_connect(db, err, errlen) != 0) {
        db_failed(db);
        return -1;
    }
    return 0;
}
/* Bind helpers: NULL or 0 meaning "no value" become SQL NULL. */
static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
}

static void bind_time(sqlite3_stmt *s, int i, double t)
{
    if (t > 0)
        sqlite3_bind_double(s, i, t);
    else
        sqlite3_bind_null(s, i);
}

/* Step a write statement to completion and reset it. */
static int db_run(db_t *db, int st)
{
    if (!db->h) {
        db_failed(db);
        return -1;
    }
    sqlite3_stmt *s = db->st[st];
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE)
        db_failed(db);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc == SQLITE_DONE && st != ST_ROLLBACK)
        db->err_code = 0;
    return rc == SQLITE_DONE ? 0 : -1;
}

int db_mark_interrupted(db_t *db, double now, int *count)
{
    sqlite3_bind_double(db->st[ST_INTERRUPT], 1, now);
    int rc = db_run(db, ST_INTERRUPT);
    *count = rc == 0 ? sqlite3_changes(db->h) : 0;
    return rc;
}

int db_event(db_t *db, double now, const char *kind, const char *detail)
{
    sqlite3_stmt *s = db->st[ST_EVENT];
    sqlite3_bind_double(s, 1, now);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)getpid());
    bind_text(s, 3, kind);
    bind_text(s, 4, detail);
    return db_run(db, ST_EVENT);
}

int db_session_insert(db_t *db, const db_session_t *se)
{
    sqlite3_stmt *s = db->st[ST_SESS_INSERT];
    bind_text(s, 1, se->id);
    bind_text(s, 2, se->owner);
    bind_text(s, 3, se->workspace);
    bind_text(s, 4, se->oc_session_id);
    sqlite3_bind_double(s, 5, se->created_at);
    sqlite3_bind_double(s, 6, se->last_activity);
    return db_run(db, ST_SESS_INSERT);
}

int db_session_set_oc(db_t *db, const char *owner, const char *id, const char *oc)
{
    bind_text(db->st[ST_SESS_SET_OC], 1, owner);
    bind_text(db->st[ST_SESS_SET_OC], 2, id);
    bind_text(db->st[ST_SESS_SET_OC], 3, oc);
    return db_run(db, ST_SESS_SET_OC);
}

int db_session_delete(db_t *db, const char *owner, const char *id, double now)
{
    bind_text(db->st[ST_SESS_DELETE], 1, owner);
    bind_text(db->st[ST_SESS_DELETE], 2, id);
    sqlite3_bind_double(db->st[ST_SESS_DELETE], 3, now);
    return db_run(db, ST_SESS_DELETE);
}

int db_session_each(db_t *db, void (*fn)(void *ctx, const db_session_t *s), void *ctx)
{
    if (!db->h)
        return db_failed(db), -1;
    sqlite3_stmt *s = db->st[ST_SESS_EACH];
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        db_session_t se = {
            .id = (const char *)sqlite3_column_text(s, 0),
            .owner = (const char *)sqlite3_column_text(s, 1),
            .workspace = (const char *)sqlite3_column_text(s, 2),
            .oc_session_id = (const char *)sqlite3_column_text(s, 3),
            .created_at = sqlite3_column_double(s, 4),
            .last_activity = sqlite3_column_double(s, 5),
            .message_count = (long)sqlite3_column_int64(s, 6),
        };
        fn(ctx, &se);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

int db_session_exists(db_t *db, const char *owner, const char *id)
{
    if (!db->h)
        return db_failed(db), -1;
    sqlite3_stmt *s = db->st[ST_SESS_EXISTS];
    bind_text(s, 1, owner);
    bind_text(s, 2, id);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Bind a prompt or answer per store_prompts: text (cut at text_limit on a
 * UTF-8 boundary), byte size, and SHA-256 (only when the text is not kept). */
static void db_bind_text_body(db_t *db, sqlite3_stmt *s, int i, const char *text, size_t len)
{
    if (!text) {
        sqlite3_bind_null(s, i);
        sqlite3_bind_null(s, i + 1);
        sqlite3_bind_null(s, i + 2);
        return;
    }
    sqlite3_bind_int64(s, i + 1, (sqlite3_int64)len);
    if (db->store_prompts) {
        size_t keep = len < (size_t)db->text_limit ? len : (size_t)db->text_limit;
        while (keep > 0 && keep < len && ((unsigned char)text[keep] & 0xc0) == 0x80)
            keep--;
        sqlite3_bind_text(s, i, text, (int)keep, SQLITE_TRANSIENT);
        sqlite3_bind_null(s, i + 2);
    } else {
        char hex[65];
        sha256_hex(text, len, hex);
        sqlite3_bind_null(s, i);
        sqlite3_bind_text(s, i + 2, hex, 64, SQLITE_TRANSIENT);
    }
}

int db_exec_insert(db_t *db, db_exec_t *e)
{
    sqlite3_stmt *s = db->st[ST_EXEC_INSERT];
    bind_text(s, 1, e->session_id);
    bind_text(s, 2, e->owner);
    bind_text(s, 3, e->mode);
    bind_text(s, 4, e->status);
    bind_text(s, 5, e->model);
    bind_text(s, 6, e->agent);
    sqlite3_bind_double(s, 7, e->queued_at);
    db_bind_text_body(db, s, 8, e->prompt, e->prompt_len);
    if (db_run(db, ST_EXEC_INSERT) != 0)
        return -1;
    e->id = (int64_t)sqlite3_last_insert_rowid(db->h);
    return 0;
}

int db_exec_update(db_t *db, const db_exec_t *e, int finished)
{
    if (finished && db_run(db, ST_BEGIN) != 0)
        return -1;
    sqlite3_stmt *s = db->st[ST_EXEC_UPDATE];
    sqlite3_bind_int64(s, 1, e->id);
    bind_text(s, 2, e->mode);
    bind_text(s, 3, e->status);
    bind_text(s, 4, e->argv_json);
    if (e->pid > 0)
        sqlite3_bind_int64(s, 5, e->pid);
    bind_time(s, 6, e->started_at);
    bind_time(s, 7, e->finished_at);
    if (e->finished_at > 0)
        sqlite3_bind_double(s, 8, (e->finished_at - (e->started_at > 0 ? e->started_at : e->finished_at)) * 1000.0);
    if (e->started_at > 0)
        sqlite3_bind_double(s, 9, (e->started_at - e->queued_at) * 1000.0);
    else if (e->finished_at > 0)
        sqlite3_bind_double(s, 9, (e->finished_at - e->queued_at) * 1000.0);
    if (e->has_exit)
        sqlite3_bind_int(s, 10, e->exit_code);
    if (e->signal)
        sqlite3_bind_int(s, 11, e->signal);
    if (e->peak_rss_kb > 0)
        sqlite3_bind_int64(s, 12, e->peak_rss_kb);
    if (e->has_exit || e->signal) {
        sqlite3_bind_double(s, 13, e->cpu_user_ms);
        sqlite3_bind_double(s, 14, e->cpu_sys_ms);
    }
    if (e->has_usage) {
        sqlite3_bind_int64(s, 15, e->tokens_in);
        sqlite3_bind_int64(s, 16, e->tokens_out);
        sqlite3_bind_double(s, 17, e->cost);
    }
    db_bind_text_body(db, s, 18, e->answer, e->answer_len);
    bind_text(s, 21, e->oc_session_id);
    bind_text(s, 22, e->stderr_tail);
    bind_text(s, 23, e->error);
    int rc = db_run(db, ST_EXEC_UPDATE);
    if (!finished)
        return rc;
    if (rc == 0) {
        sqlite3_stmt *b = db->st[ST_SESS_BUMP];
        bind_text(b, 1, e->owner);
        bind_text(b, 2, e->session_id);
        sqlite3_bind_double(b, 3, e->finished_at);
        rc = db_run(db, ST_SESS_BUMP);
    }
    if (rc == 0 && db_run(db, ST_COMMIT) == 0)
        return 0;
    db_run(db, ST_ROLLBACK);
    return -1;
}

/* The current row of s as a JSON object keyed by column name. */
static json_object *db_row_json(sqlite3_stmt *s)
{
    json_object *o = json_object_new_object();
    int n = sqlite3_column_count(s);
    for (int i = 0; i < n; i++) {
        json_object *v = NULL;
        switch (sqlite3_column_type(s, i)) {
        case SQLITE_INTEGER:
            v = json_object_new_int64(sqlite3_column_int64(s, i));
            break;
        case SQLITE_FLOAT:
            v = json_object_new_double(sqlite3_column_double(s, i));
            break;
        case SQLITE_TEXT:
            v = json_object_new_string_len((const char *)sqlite3_column_text(s, i), sqlite3_column_bytes(s, i));
            break;
        default:
            v = NULL;
        }
        json_object_object_add(o, sqlite3_column_name(s, i), v);
    }
    return o;
}

json_object *db_exec_get(db_t *db, int64_t id, const char *owner)
{
    if (!db->h)
        return db_failed(db), NULL;
    sqlite3_stmt *s = db->st[ST_EXEC_GET];
    sqlite3_bind_int64(s, 1, id);
    bind_text(s, 2, owner);
    json_object *o = NULL;
    if (sqlite3_step(s) == SQLITE_ROW)
        o = db_row_json(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return o;
}

/* The statement for one combination of history filters, built from fixed fragments only. */
static sqlite3_stmt *db_list_stmt(db_t *db, int mask)
{
    static const struct {
        int bit;
        const char *sql;
    } frags[] = {
        {LF_OWNER, " AND owner = ?1"},       {LF_SESSION, " AND session_id = ?2"}, {LF_STATUS, " AND status = ?3"},
        {LF_MODE, " AND mode = ?4"},         {LF_SINCE, " AND queued_at >= ?5"},  {LF_UNTIL, " AND queued_at < ?6"},
        {LF_BEFORE, " AND id < ?7"},
    };
    if (db->list_st[mask])
        return db->list_st[mask];
    char sql[512] = "SELECT * FROM executions WHERE 1";
    for (size_t i = 0; i < sizeof frags / sizeof frags[0]; i++)
        if (mask & frags[i].bit)
            strcat(sql, frags[i].sql);
    strcat(sql, " ORDER BY id DESC LIMIT ?8");
    if (sqlite3_prepare_v3(db->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &db->list_st[mask], NULL) != SQLITE_OK)
        return NULL;
    return db->list_st[mask];
}

/* An upper bound of the current row's size as JSON: every byte of text at most 6 (\u00XX), the
 * rest a fixed allowance per column. */
static size_t db_row_json_bound(sqlite3_stmt *s)
{
    size_t n = 2;
    int cols = sqlite3_column_count(s);
    for (int i = 0; i < cols; i++) {
        n += strlen(sqlite3_column_name(s, i)) + 32;
        if (sqlite3_column_type(s, i) != SQLITE_TEXT)
            continue;
        const unsigned char *t = sqlite3_column_text(s, i);
        int len = sqlite3_column_bytes(s, i);
        for (int k = 0; k < len; k++)
            n += t[k] < 0x20 ? 6 : (t[k] == '"' || t[k] == '\\' || t[k] == '/') ? 2 : 1;
    }
    return n;
}

json_object *db_exec_list(db_t *db, const db_exec_filter_t *f, int *more)
{
    if (more)
        *more = 0;
    if (!db->h)
        return db_failed(db), NULL;
    int mask = (f->owner ? LF_OWNER : 0) | (f->session_id ? LF_SESSION : 0) | (f->status ? LF_STATUS : 0) |
               (f->mode ? LF_MODE : 0) | (f->since > 0 ? LF_SINCE : 0) | (f->until > 0 ? LF_UNTIL : 0) |
               (f->before > 0 ? LF_BEFORE : 0);
    sqlite3_stmt *s = db_list_stmt(db, mask);
    if (!s)
        return NULL;
    if (f->owner)
        bind_text(s, 1, f->owner);
    if (f->session_id)
        bind_text(s, 2, f->session_id);
    if (f->status)
        bind_text(s, 3, f->status);
    if (f->mode)
        bind_text(s, 4, f->mode);
    if (f->since > 0)
        sqlite3_bind_double(s, 5, f->since);
    if (f->until > 0)
        sqlite3_bind_double(s, 6, f->until);
    if (f->before > 0)
        sqlite3_bind_int64(s, 7, f->before);
    sqlite3_bind_int64(s, 8, f->limit > 0 ? f->limit : 50);
    json_object *a = json_object_new_array();
    int rc;
    long n = 0;
    size_t bytes = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (f->max_bytes) {
            size_t b = db_row_json_bound(s);
            if (n > 0 && bytes + b > f->max_bytes) {
                if (more)
                    *more = 1;
                rc = SQLITE_DONE;
                break;
            }
            bytes += b;
        }
        json_object_array_add(a, db_row_json(s));
        n++;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_DONE) {
        json_object_put(a);
        return NULL;
    }
    if (more && n == (f->limit > 0 ? f->limit : 50))
        *more = 1;
    return a;
}

/* The k-th smallest value (0-based) of statement st over [since, until), or -1. */
static double db_nth(db_t *db, int st, double since, double until, long k)
{
    sqlite3_stmt *s = db->st[st];
    sqlite3_bind_double(s, 1, since);
    sqlite3_bind_double(s, 2, until);
    sqlite3_bind_int64(s, 3, k);
    double v = -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_double(s, 0);
    sqlite3_reset(s);
    return v;
}

/* p50/p95/p99 (nearest rank) and the mean of a column with n values. */
static json_object *db_percentiles(db_t *db, int st, double since, double until, long n, double mean)
{
    static const struct {
        const char *name;
        double p;
    } ps[] = {{"p50", 0.50}, {"p95", 0.95}, {"p99", 0.99}};
    json_object *o = json_object_new_object();
    for (size_t i = 0; i < 3; i++) {
        long rank = (long)(ps[i].p * n + 0.999999); /* ceil, 1-based */
        json_object_object_add(o, ps[i].name, n ? json_object_new_double(db_nth(db, st, since, until, rank - 1)) : NULL);
    }
    json_object_object_add(o, "mean", n ? json_object_new_double(mean) : NULL);
    json_object_object_add(o, "count", json_object_new_int64(n));
    return o;
}

json_object *db_stats(db_t *db, double since, double until)
{
    json_object *o = json_object_new_object(), *by_status = json_object_new_object(),
                *by_mode = json_object_new_object();
    json_object_object_add(o, "since", json_object_new_double(since));
    json_object_object_add(o, "until", json_object_new_double(until));
    sqlite3_stmt *s = db->st[ST_STATS_COUNTS];
    sqlite3_bind_double(s, 1, since);
    sqlite3_bind_double(s, 2, until);
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(s, 0), *st = (const char *)sqlite3_column_text(s, 1);
        int64_t n = sqlite3_column_int64(s, 2);
        json_object *v;
        int64_t cur = json_object_object_get_ex(by_status, st, &v) ? json_object_get_int64(v) : 0;
        json_object_object_add(by_status, st, json_object_new_int64(cur + n));
        cur = json_object_object_get_ex(by_mode, mode, &v) ? json_object_get_int64(v) : 0;
        json_object_object_add(by_mode, mode, json_object_new_int64(cur + n));
    }
    sqlite3_reset(s);
    s = db->st[ST_STATS_TOTALS];
    sqlite3_bind_double(s, 1, since);
    sqlite3_bind_double(s, 2, until);
    if (sqlite3_step(s) != SQLITE_ROW) {
        sqlite3_reset(s);
        json_object_put(by_status);
        json_object_put(by_mode);
        json_object_put(o);
        return NULL;
    }
    long total = (long)sqlite3_column_int64(s, 0), nd = (long)sqlite3_column_int64(s, 1),
         nw = (long)sqlite3_column_int64(s, 3);
    double md = sqlite3_column_double(s, 2), mw = sqlite3_column_double(s, 4);
    json_object *rss = json_object_new_object(), *tok = json_object_new_object();
    json_object_object_add(rss, "peak", sqlite3_column_type(s, 5) == SQLITE_NULL ? NULL
                                            : json_object_new_int64(sqlite3_column_int64(s, 5)));
    json_object_object_add(rss, "mean", sqlite3_column_type(s, 6) == SQLITE_NULL ? NULL
                                            : json_object_new_double(sqlite3_column_double(s, 6)));
    json_object_object_add(tok, "in", json_object_new_int64(sqlite3_column_int64(s, 7)));
    json_object_object_add(tok, "out", json_object_new_int64(sqlite3_column_int64(s, 8)));
    double cost = sqlite3_column_double(s, 9);
    sqlite3_reset(s);
    json_object_object_add(o, "total", json_object_new_int64(total));
    json_object_object_add(o, "by_status", by_status);
    json_object_object_add(o, "by_mode", by_mode);
    /* Sorting a short range is cheapest; past DB_STATS_WALK rows, walking the value index wins. */
    int walk = total > DB_STATS_WALK;
    json_object_object_add(o, "duration_ms", db_percentiles(db, walk ? ST_STATS_DURATION_AT_WALK : ST_STATS_DURATION_AT,
                                                            since, until, nd, md));
    json_object_object_add(o, "queue_wait_ms", db_percentiles(db, walk ? ST_STATS_WAIT_AT_WALK : ST_STATS_WAIT_AT,
                                                              since, until, nw, mw));
    json_object_object_add(o, "peak_rss_kb", rss);
    json_object_object_add(o, "tokens", tok);
    json_object_object_add(o, "cost", json_object_new_double(cost));
    json_object *busy = json_object_new_array();
    s = db->st[ST_STATS_BUSIEST];
    sqlite3_bind_double(s, 1, since);
    sqlite3_bind_double(s, 2, until);
    while (sqlite3_step(s) == SQLITE_ROW) {
        json_object *b = json_object_new_object();
        json_object_object_add(b, "session_id", json_object_new_string((const char *)sqlite3_column_text(s, 0)));
        json_object_object_add(b, "executions", json_object_new_int64(sqlite3_column_int64(s, 1)));
        json_object_object_add(b, "failed", json_object_new_int64(sqlite3_column_int64(s, 2)));
        json_object_object_add(b, "mean_ms", sqlite3_column_type(s, 3) == SQLITE_NULL ? NULL
                                                 : json_object_new_double(sqlite3_column_double(s, 3)));
        const char *owner = (const char *)sqlite3_column_text(s, 4);
        json_object_object_add(b, "owner", owner && *owner ? json_object_new_string(owner) : NULL);
        json_object_array_add(busy, b);
    }
    sqlite3_reset(s);
    json_object_object_add(o, "busiest_sessions", busy);
    return o;
}

int db_prune(db_t *db, double before, long batch, long *deleted)
{
    *deleted = 0;
    static const int sts[] = {ST_PRUNE_EXECS, ST_PRUNE_EVENTS};
    for (size_t i = 0; i < 2; i++) {
        sqlite3_bind_double(db->st[sts[i]], 1, before);
        sqlite3_bind_int64(db->st[sts[i]], 2, batch);
        if (db_run(db, sts[i]) != 0)
            return -1;
        *deleted += sqlite3_changes(db->h);
    }
    return 0;
}

db_t *db_open_readonly(const char *path, char *err, size_t errlen)
{
    db_t *db = calloc(1, sizeof *db);
    if (!db) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (sqlite3_open_v2(path, &db->h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, db->h ? sqlite3_errmsg(db->h) : "cannot open");
        db_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db->h, 5000);
    sqlite3_stmt *s;
    int version = -1;
    if (sqlite3_prepare_v2(db->h, "PRAGMA user_version", -1, &s, NULL) == SQLITE_OK) {
        if (sqlite3_step(s) == SQLITE_ROW)
            version = sqlite3_column_int(s, 0);
        sqlite3_finalize(s);
    }
    if (version < 0) {
        snprintf(err, errlen, "%s: not a readable SQLite database (%s)", path, sqlite3_errmsg(db->h));
        db_close(db);
        return NULL;
    }
    if (version != DB_NMIGRATIONS) {
        snprintf(err, errlen, "%s: not an ocpm database of this version (schema %d, expected %d)", path, version,
                 DB_NMIGRATIONS);
        db_close(db);
        return NULL;
    }
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(db->h, db_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &db->st[i], NULL) != SQLITE_OK) {
            snprintf(err, errlen, "%s: not an ocpm database (%s)", path, sqlite3_errmsg(db->h));
            db_close(db);
            return NULL;
        }
    }
    return db;
}

json_object *db_query_json(db_t *db, const char *sql)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->h, sql, -1, &s, NULL) != SQLITE_OK)
        return NULL;
    json_object *a = json_object_new_array();
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        json_object_array_add(a, db_row_json(s));
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        json_object_put(a);
        return NULL;
    }
    return a;
}
