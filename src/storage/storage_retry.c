#define _GNU_SOURCE
#include "storage_retry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "clock.h"
#include "exec_status.h"

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

struct storage_retry {
    storage_retry_config_t cfg;
    uv_timer_t tick;
    int closed;
    storage_retry_item_t *head, *tail;
    size_t npending;
    unsigned long long nfailures;
    char last_error[300];
    double last_error_at, last_logged;
    double recovered_at; /* the last restore, or the last pending write stored */
    int file_in_place;   /* as the last tick saw it: status must not stat the file per request */
};

/* The string fields of db_exec_t, for copying and freeing them together. */
#define STORAGE_RETRY_STRS(r) {&(r)->session_id, &(r)->owner, &(r)->mode, &(r)->argv_json, &(r)->model, \
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
              (long long)r->id, r->session_id, log_q(r->owner), r->mode, exec_status_name(r->status), r->queued_at,
              r->started_at,
              r->finished_at, r->exit_code, r->signal, r->tokens_in, r->tokens_out, log_q(r->error ? r->error : ""), log_q(why));
}

static void storage_retry_push(storage_retry_t *q, storage_retry_item_t *it)
{
    if (q->npending >= STORAGE_RETRY_MAX) {
        storage_retry_log_lost(it, "too many records waiting for the database");
        storage_retry_item_free(it);
        return;
    }
    if (q->tail)
        q->tail->next = it;
    else
        q->head = it;
    q->tail = it;
    q->npending++;
}

void storage_retry_note_failure(storage_retry_t *q, const char *what)
{
    q->nfailures++;
    q->last_error_at = clock_now();
    snprintf(q->last_error, sizeof q->last_error, "%s: %s", what, db_errmsg(q->cfg.db));
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

const char *storage_retry_explain(storage_retry_t *q, const char *what, char *msg, size_t msglen, int *retry)
{
    storage_retry_note_failure(q, what);
    db_fault_t f = db_fault(q->cfg.db);
    const char *reason = "error", *cause = "database error";
    *retry = 0;
    for (size_t i = 0; i < sizeof storage_retry_causes / sizeof storage_retry_causes[0]; i++)
        if (storage_retry_causes[i].fault == f) {
            reason = storage_retry_causes[i].reason;
            cause = storage_retry_causes[i].cause;
            *retry = storage_retry_causes[i].retry;
        }
    snprintf(msg, msglen, "%s: %s", what, cause);
    return reason;
}

void storage_retry_exec_final(storage_retry_t *q, const db_exec_t *rec)
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
             (long long)rec->id, exec_status_name(rec->status), q->npending + 1);
    storage_retry_push(q, it);
}

void storage_retry_session_oc(storage_retry_t *q, const char *owner, const char *session_id,
                              const char *oc_session_id)
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
    storage_retry_push(q, it);
}

static int storage_retry_write(storage_retry_t *q, const storage_retry_item_t *it)
{
    if (it->kind == STORAGE_RETRY_SESS_OC)
        return db_session_set_oc(q->cfg.db, it->owner, it->sid, it->oc);
    return db_exec_update(q->cfg.db, &it->rec, 1);
}

/* A removed database file is copied back from the open connection; a replaced one is left to
 * the operator (ocpmd goes on writing to the file it has open and says so). */
static void storage_retry_watch(storage_retry_t *q)
{
    double now = clock_now();
    db_moved_t where = db_moved(q->cfg.db);
    q->file_in_place = where == DB_IN_PLACE;
    switch (where) {
    case DB_IN_PLACE:
        return;
    case DB_REPLACED:
        if (now - q->last_logged >= STORAGE_RETRY_LOG_EVERY_S) {
            q->last_logged = now;
            log_error("database file replaced while open; writes go to the open file until ocpmd restarts",
                      "db_path=%s", log_q(q->cfg.db_path));
        }
        return;
    case DB_GONE:
        break;
    }
    char err[512];
    if (db_restore(q->cfg.db, err, sizeof err) == 0) {
        log_warn("database file was removed while open; restored from the open connection",
                 "db_path=%s", log_q(q->cfg.db_path));
        db_set_busy_timeout(q->cfg.db, q->cfg.busy_timeout_ms);
        if (q->cfg.event)
            q->cfg.event(q->cfg.ctx, "database_restored", q->cfg.db_path);
        q->last_logged = 0;
        q->recovered_at = now;
        q->file_in_place = 1;
        return;
    }
    q->nfailures++;
    q->last_error_at = now;
    snprintf(q->last_error, sizeof q->last_error, "database file removed; cannot restore it: %s", err);
    if (now - q->last_logged >= STORAGE_RETRY_LOG_EVERY_S) {
        q->last_logged = now;
        log_error("database file removed; cannot restore it yet", "db_path=%s error=%s", log_q(q->cfg.db_path),
                  log_q(err));
    }
}

/* One pass: restore a removed file, then write what is pending. Returns how many remain. */
static size_t storage_retry_flush(storage_retry_t *q)
{
    storage_retry_watch(q);
    size_t written = 0;
    while (q->head) {
        if (storage_retry_write(q, q->head) != 0) {
            storage_retry_note_failure(q, "pending write");
            double now = clock_now();
            if (now - q->last_logged >= STORAGE_RETRY_LOG_EVERY_S) {
                q->last_logged = now;
                log_error("database still refuses writes", "pending=%zu error=%s", q->npending,
                          log_q(db_errmsg(q->cfg.db)));
            }
            break;
        }
        storage_retry_item_t *it = q->head;
        q->head = it->next;
        if (!q->head)
            q->tail = NULL;
        q->npending--;
        written++;
        if (it->kind == STORAGE_RETRY_EXEC)
            log_info("execution record stored after retry", "executionId=%lld status=%s", (long long)it->rec.id,
                     exec_status_name(it->rec.status));
        storage_retry_item_free(it);
    }
    if (written && !q->head) {
        q->last_logged = 0;
        q->recovered_at = clock_now();
    }
    return q->npending;
}

static void storage_retry_tick(uv_timer_t *t) { storage_retry_flush(t->data); }

storage_retry_t *storage_retry_new(const storage_retry_config_t *cfg)
{
    storage_retry_t *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->cfg = *cfg;
    q->file_in_place = 1;
    uv_timer_init(cfg->loop, &q->tick);
    q->tick.data = q;
    uv_timer_start(&q->tick, storage_retry_tick, STORAGE_RETRY_TICK_MS, STORAGE_RETRY_TICK_MS);
    return q;
}

int storage_retry_ok(const storage_retry_t *q)
{
    /* Not ok while records wait, the file is not in place, or a write failed in the last two
     * seconds and nothing has recovered since. */
    return q->npending == 0 && q->file_in_place &&
           (q->last_error_at <= q->recovered_at || clock_now() - q->last_error_at > STORAGE_RETRY_TICK_MS * 2 / 1000.0);
}

json_object *storage_retry_status_json(const storage_retry_t *q)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "ok", json_object_new_boolean(storage_retry_ok(q)));
    json_object_object_add(o, "pendingWrites", json_object_new_int64((int64_t)q->npending));
    json_object_object_add(o, "writeFailures", json_object_new_int64((int64_t)q->nfailures));
    json_object_object_add(o, "sqliteMemoryBytes", json_object_new_int64(db_memory_used()));
    json_object_object_add(o, "lastError", q->last_error[0] ? json_object_new_string(q->last_error) : NULL);
    json_object_object_add(o, "lastErrorAt",
                           q->last_error_at > 0 ? json_object_new_int64((int64_t)(q->last_error_at * 1000.0)) : NULL);
    return o;
}

size_t storage_retry_pending(const storage_retry_t *q) { return q->npending; }
unsigned long long storage_retry_failures(const storage_retry_t *q) { return q->nfailures; }

static void storage_retry_closed(uv_handle_t *h) { free(h->data); }

void storage_retry_free(storage_retry_t *q)
{
    if (!q)
        return;
    if (q->head) {
        /* The last chance: a longer wait for a lock costs nobody anything now. */
        db_set_busy_timeout(q->cfg.db, 5000);
        q->last_logged = 0;
        storage_retry_flush(q);
    }
    while (q->head) {
        storage_retry_item_t *it = q->head;
        q->head = it->next;
        storage_retry_log_lost(it, db_errmsg(q->cfg.db));
        storage_retry_item_free(it);
    }
    uv_close((uv_handle_t *)&q->tick, storage_retry_closed);
}
