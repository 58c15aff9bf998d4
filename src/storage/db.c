#define _GNU_SOURCE
#include "db.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db_internal.h"

const char *db_errmsg(db_t *db)
{
    if (!db)
        return "no database";
    if (db->err_code)
        return db->err_msg;
    return db->h ? sqlite3_errmsg(db->h) : "database is not open";
}

void db_failed(db_t *db)
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

json_object *db_rows_done(db_t *db, sqlite3_stmt *s, int rc, json_object *a)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc == SQLITE_DONE)
        return a;
    db_failed(db);
    json_object_put(a);
    return NULL;
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
    if (version > db_nmigrations) {
        snprintf(err, errlen, "database schema version %d is newer than this ocpmd (%d)", version,
                 db_nmigrations);
        return -1;
    }
    if (version == db_nmigrations)
        return 0;
    if (sqlite3_exec(db->h, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    for (int i = version; i < db_nmigrations; i++) {
        if (sqlite3_exec(db->h, db_migrations[i], NULL, NULL, NULL) != SQLITE_OK) {
            snprintf(err, errlen, "migration %d failed: %s", i + 1, sqlite3_errmsg(db->h));
            sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
    }
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", db_nmigrations);
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
    /* The statistics' triggers bucket durations with ln() (db_schema.c): a libsqlite3 built without
     * its math functions would fail the migration, and later every write of an execution. */
    if (sqlite3_exec(db->h, "SELECT ln(1)", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: this libsqlite3 has no math functions (ln: %s); ocpm needs SQLite 3.35 or later "
                 "built with SQLITE_ENABLE_MATH_FUNCTIONS, as Debian's is", path, sqlite3_errmsg(db->h));
        db_disconnect(db);
        return -1;
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
void db_bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
}

void db_bind_time(sqlite3_stmt *s, int i, double t)
{
    if (t > 0)
        sqlite3_bind_double(s, i, t);
    else
        sqlite3_bind_null(s, i);
}

int db_run(db_t *db, int st)
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

int db_tx_begin(db_t *db) { return db_run(db, ST_BEGIN); }

int db_tx_commit(db_t *db) { return db_run(db, ST_COMMIT); }

void db_tx_rollback(db_t *db)
{
    if (db->h && !sqlite3_get_autocommit(db->h))
        db_run(db, ST_ROLLBACK);
}

int db_in_tx(const db_t *db) { return db->h && !sqlite3_get_autocommit(db->h); }

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
    db_bind_text(s, 3, kind);
    db_bind_text(s, 4, detail);
    return db_run(db, ST_EVENT);
}
