#define _GNU_SOURCE
#include "storage_retry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "clock.h"

#define STORAGE_RETRY_TICK_MS 1000
/* Repeat the same complaint at most this often. */
#define STORAGE_RETRY_LOG_EVERY_S 30.0

typedef enum { STORAGE_RETRY_EXEC, STORAGE_RETRY_SESS_OC } storage_retry_kind_t;

typedef struct storage_retry_item {
    storage_retry_kind_t kind;
    db_exec_t rec;    /* STORAGE_RETRY_EXEC: its strings are owned here */
    char *owner, *sid, *oc; /* STORAGE_RETRY_SESS_OC */
    struct storage_retry_item *next;
} storage_retry_item_t;

static manager_t *qm;
static uv_timer_t tick;
static int inited;
static storage_retry_item_t *head, *tail;
static size_t npending;
static unsigned long long nfailures;
static char last_error[300];
static double last_error_at, last_logged;
static double recovered_at; /* the last restore, or the last pending write stored */
static int file_in_place = 1; /* as the last tick saw it: status must not stat the file per request */

/* The string fields of db_exec_t, for copying and freeing them together. */
#define STORAGE_RETRY_STRS(r) {&(r)->session_id, &(r)->owner, &(r)->mode, &(r)->status, &(r)->argv_json, &(r)->model, \
                     &(r)->agent, &(r)->prompt, &(r)->answer, &(r)->oc_session_id, &(r)->stderr_tail, &(r)->error}

static void storage_retry_item_free(storage_retry_item_t *it)
{
    const char **strs[] = STORAGE_RETRY_STRS(&it->rec);
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        free((char *)*strs[i]);
    free(it->owner);
    free(it->sid);
    free(it->oc);
    free(it);
}

/* A record that cannot be kept any longer, logged with everything needed to re-enter it. */
static void storage_retry_log_lost(const storage_retry_item_t *it, const char *why)
{
    if (it->kind == STORAGE_RETRY_SESS_OC) {
        log_error("session mapping lost", "sessionId=%s opencodeSessionId=%s reason=%s", it->sid, it->oc, log_q(why));
        return;
    }
    const db_exec_t *r = &it->rec;
    log_error("execution record lost",
              "executionId=%lld sessionId=%s owner=%s mode=%s status=%s queuedAt=%.3f startedAt=%.3f "
              "finishedAt=%.3f exitCode=%d signal=%d tokensIn=%lld tokensOut=%lld error=%s reason=%s",
              (long long)r->id, r->session_id, r->owner, r->mode, r->status, r->queued_at, r->started_at,
              r->finished_at, r->exit_code, r->signal, r->tokens_in, r->tokens_out, log_q(r->error ? r->error : ""), log_q(why));
}

static void storage_retry_push(storage_retry_item_t *it)
{
    if (npending >= STORAGE_RETRY_MAX) {
        storage_retry_log_lost(it, "too many records waiting for the database");
        storage_retry_item_free(it);
        return;
    }
    if (tail)
        tail->next = it;
    else
        head = it;
    tail = it;
    npending++;
}

void storage_retry_note_failure(const char *what)
{
    nfailures++;
    last_error_at = clock_now();
    snprintf(last_error, sizeof last_error, "%s: %s", what, qm ? db_errmsg(qm->db) : "?");
}

/* What each class of failure tells the client. */
static const struct {
    db_fault_t fault;
    const char *reason, *cause;
    int retry;
} storage_retry_causes[] = {
    {DB_FAULT_BUSY, "busy", "the database is locked by another connection; retry shortly", 1},
    {DB_FAULT_FULL, "full", "the database cannot grow (disk full or file size limit)", 0},
    {DB_FAULT_READONLY, "read-only", "the database is read-only", 0},
    {DB_FAULT_IO, "io", "the database cannot be written (I/O error)", 0},
};

int storage_retry_reply_error(control_conn_t *c, const char *what)
{
    storage_retry_note_failure(what);
    db_fault_t f = db_fault(qm->db);
    const char *reason = "error", *cause = "database error";
    int retry = 0;
    for (size_t i = 0; i < sizeof storage_retry_causes / sizeof storage_retry_causes[0]; i++)
        if (storage_retry_causes[i].fault == f) {
            reason = storage_retry_causes[i].reason;
            cause = storage_retry_causes[i].cause;
            retry = storage_retry_causes[i].retry;
        }
    char msg[400];
    snprintf(msg, sizeof msg, "%s: %s", what, cause);
    return control_error_retry(c, 503, "storage_unavailable", msg, reason, retry ? qm->conf->retry_after_s : 0);
}

void storage_retry_exec_final(const db_exec_t *rec)
{
    storage_retry_item_t *it = calloc(1, sizeof *it);
    if (!it) {
        storage_retry_item_t tmp = {.kind = STORAGE_RETRY_EXEC, .rec = *rec};
        storage_retry_log_lost(&tmp, "out of memory");
        return;
    }
    it->kind = STORAGE_RETRY_EXEC;
    it->rec = *rec;
    it->rec.answer = NULL; /* copied by length below: it may hold NULs */
    const char **strs[] = STORAGE_RETRY_STRS(&it->rec);
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (*strs[i])
            *strs[i] = strdup(*strs[i]);
    if (rec->answer) {
        char *a = malloc(rec->answer_len + 1);
        if (a) {
            memcpy(a, rec->answer, rec->answer_len);
            a[rec->answer_len] = '\0';
        }
        it->rec.answer = a;
    }
    log_warn("execution record kept for a later write", "executionId=%lld status=%s pending=%zu",
             (long long)rec->id, rec->status, npending + 1);
    storage_retry_push(it);
}

void storage_retry_session_oc(const char *owner, const char *session_id, const char *oc_session_id)
{
    storage_retry_item_t *it = calloc(1, sizeof *it);
    if (it) {
        it->kind = STORAGE_RETRY_SESS_OC;
        it->owner = strdup(owner);
        it->sid = strdup(session_id);
        it->oc = strdup(oc_session_id);
    }
    if (!it || !it->owner || !it->sid || !it->oc) {
        log_error("session mapping lost", "sessionId=%s opencodeSessionId=%s reason=\"out of memory\"", session_id,
                  oc_session_id);
        if (it)
            storage_retry_item_free(it);
        return;
    }
    storage_retry_push(it);
}

static int storage_retry_write(const storage_retry_item_t *it)
{
    if (it->kind == STORAGE_RETRY_SESS_OC)
        return db_session_set_oc(qm->db, it->owner, it->sid, it->oc);
    return db_exec_update(qm->db, &it->rec, 1);
}

/* A removed database file is copied back from the open connection; a replaced one is left to
 * the operator (ocpmd goes on writing to the file it has open and says so). */
static void storage_retry_watch(void)
{
    double now = clock_now();
    db_moved_t where = db_moved(qm->db);
    file_in_place = where == DB_IN_PLACE;
    switch (where) {
    case DB_IN_PLACE:
        return;
    case DB_REPLACED:
        if (now - last_logged >= STORAGE_RETRY_LOG_EVERY_S) {
            last_logged = now;
            log_error("database file replaced while open; writes go to the open file until ocpmd restarts",
                      "db_path=%s", log_q(qm->conf->db_path));
        }
        return;
    case DB_GONE:
        break;
    }
    char err[512];
    if (db_restore(qm->db, err, sizeof err) == 0) {
        log_warn("database file was removed while open; restored from the open connection",
                 "db_path=%s", log_q(qm->conf->db_path));
        db_set_busy_timeout(qm->db, qm->conf->db_busy_timeout_ms);
        manager_event(qm, "database_restored", qm->conf->db_path);
        last_logged = 0;
        recovered_at = now;
        file_in_place = 1;
        return;
    }
    nfailures++;
    last_error_at = now;
    snprintf(last_error, sizeof last_error, "database file removed; cannot restore it: %s", err);
    if (now - last_logged >= STORAGE_RETRY_LOG_EVERY_S) {
        last_logged = now;
        log_error("database file removed; cannot restore it yet", "db_path=%s error=%s", log_q(qm->conf->db_path),
                  log_q(err));
    }
}

/* One pass: restore a removed file, then write what is pending. Returns how many remain. */
static size_t storage_retry_flush(void)
{
    if (!qm)
        return npending;
    storage_retry_watch();
    size_t written = 0;
    while (head) {
        if (storage_retry_write(head) != 0) {
            storage_retry_note_failure("pending write");
            double now = clock_now();
            if (now - last_logged >= STORAGE_RETRY_LOG_EVERY_S) {
                last_logged = now;
                log_error("database still refuses writes", "pending=%zu error=%s", npending,
                          log_q(db_errmsg(qm->db)));
            }
            break;
        }
        storage_retry_item_t *it = head;
        head = it->next;
        if (!head)
            tail = NULL;
        npending--;
        written++;
        if (it->kind == STORAGE_RETRY_EXEC)
            log_info("execution record stored after retry", "executionId=%lld status=%s", (long long)it->rec.id,
                     it->rec.status);
        storage_retry_item_free(it);
    }
    if (written && !head) {
        last_logged = 0;
        recovered_at = clock_now();
    }
    return npending;
}

static void storage_retry_tick(uv_timer_t *t)
{
    (void)t;
    storage_retry_flush();
}

void storage_retry_init(manager_t *m)
{
    qm = m;
    uv_timer_init(m->loop, &tick);
    uv_timer_start(&tick, storage_retry_tick, STORAGE_RETRY_TICK_MS, STORAGE_RETRY_TICK_MS);
    inited = 1;
}

json_object *storage_retry_status_json(void)
{
    json_object *o = json_object_new_object();
    /* Not ok while records wait, the file is not in place, or a write failed in the last two
     * seconds and nothing has recovered since. */
    int ok = npending == 0 && file_in_place &&
             (last_error_at <= recovered_at || clock_now() - last_error_at > STORAGE_RETRY_TICK_MS * 2 / 1000.0);
    json_object_object_add(o, "ok", json_object_new_boolean(ok));
    json_object_object_add(o, "pendingWrites", json_object_new_int64((int64_t)npending));
    json_object_object_add(o, "writeFailures", json_object_new_int64((int64_t)nfailures));
    json_object_object_add(o, "sqliteMemoryBytes", json_object_new_int64(db_memory_used()));
    json_object_object_add(o, "lastError", last_error[0] ? json_object_new_string(last_error) : NULL);
    json_object_object_add(o, "lastErrorAt",
                           last_error_at > 0 ? json_object_new_int64((int64_t)(last_error_at * 1000.0)) : NULL);
    return o;
}

size_t storage_retry_pending(void) { return npending; }
unsigned long long storage_retry_failures(void) { return nfailures; }

void storage_retry_close(void)
{
    if (inited && !uv_is_closing((uv_handle_t *)&tick))
        uv_close((uv_handle_t *)&tick, NULL);
    inited = 0;
}

void storage_retry_final(void)
{
    if (head && qm) {
        /* The loop is done: a longer wait for a lock costs nobody anything now. */
        db_set_busy_timeout(qm->db, 5000);
        last_logged = 0;
        storage_retry_flush();
    }
    while (head) {
        storage_retry_item_t *it = head;
        head = it->next;
        storage_retry_log_lost(it, db_errmsg(qm->db));
        storage_retry_item_free(it);
    }
    tail = NULL;
    npending = 0;
}
