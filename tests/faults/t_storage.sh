#!/usr/bin/env bash
# Fault suite: the database's bad days. An operator's long read and write transactions, the
# disk full under the database (RLIMIT_FSIZE on the running manager), the file removed while
# open, a read-only file at start-up. Each case checks what the client saw, what SQLite holds
# afterwards, and that the manager still serves the next request.
. "$(dirname "$0")/../integration/lib.sh"
HOLD="$SRC/tests/faults/hold_db.py"

export OCPM_RESPONDERS=2 OCPM_RESPONDER_THREADS=8
t_start
MPID=$STACK_OCPMD_PID

# row_status ID: the stored status of an execution.
row_status() { sql "select status from executions where id=$1"; }
# hold MODE: an operator's transaction on the database until release is called.
hold() {
    rm -f "$TDIR/held" "$TDIR/release"
    python3 "$HOLD" "$DB" "$1" "$TDIR/held" "$TDIR/release" &
    HOLDER=$!
    wait_until 10 test -f "$TDIR/held"
}
release() { touch "$TDIR/release"; wait "$HOLDER"; }
status_db() { curl -s "$BASE/api/opencode/status" | jq -r ".ocpm.database.$1"; }

for s in s1 s2 s3; do req POST /api/sessions "{\"id\":\"$s\"}"; done
req POST /api/sessions/s1/messages '{"text":"before any fault"}'
is "$STATUS" 200 "a message before any fault succeeds"

# --- an operator's long read transaction ----------------------------------------------------
hold read
req POST /api/sessions/s2/messages '{"text":"while an operator reads"}'
is "$STATUS" 200 "a message succeeds while an operator holds a read transaction (WAL)"
is "$(row_status "$(j .execution.id)")" succeeded "and its row is stored at once"
release

# --- an operator's long write transaction -----------------------------------------------------
BEFORE=$(sql "select count(*) from executions")
bg_message s1 "[[delay=1500]] finishes while the database is locked"
RID=$(running_id s1)
like "$RID" '^[0-9]+$' "a run is in flight when the operator takes the write lock"
hold write
req GET /api/health
is "$STATUS" 200 "the manager answers health checks while the database is locked"
req POST /api/sessions '{"id":"busy1"}'
is "$STATUS" 503 "a new session is refused while the database is locked"
is "$(j .error.code)/$(j .error.reason)" "storage_unavailable/busy" "with storage_unavailable, reason busy"
like "$HEADERS" 'Retry-After: [0-9]+' "and a Retry-After header"
req POST /api/sessions/s2/messages '{"text":"refused while locked"}'
is "$STATUS" 503 "a message is refused while the database is locked (it could not be recorded)"
like "$(j .error.message)" "nothing was run" "and the client is told nothing ran"
check "and opencode was not started for it" sh -c "! grep -q 'refused while locked' '$TDIR/fake.jsonl'"
bg_wait
is "$(j .execution.status)/$(j .execution.stored)" "succeeded/false" \
    "the in-flight run still answers its client, marked not yet stored"
like "$(j .text)" "finishes while the database is locked" "with its answer"
is "$(status_db pendingWrites)" 1 "status shows one record waiting for the database"
is "$(status_db ok)" false "and database.ok false"
req GET /api/ready
is "$STATUS:$(j '.reasons[0]' | cut -d: -f1)" "503:database_unavailable" "/api/ready is 503: database_unavailable"
like "$(curl -s "$BASE/metrics")" 'ocpm_db_pending_writes 1' "metrics show it too"
is "$(row_status "$RID")" running "the row still says running while the lock is held"
release
check "once the lock is released the record is written" wait_until 10 sql_is "select status from executions where id=$RID" succeeded
check "the retry is logged" grep -q "execution record stored after retry.*executionId=$RID" "$LOG"
is "$(status_db pendingWrites)" 0 "nothing is pending afterwards"
is "$(sql "select count(*) from executions")" "$((BEFORE + 1))" "exactly the in-flight execution was added"
is "$(sql "select message_count from sessions where id='s1'")" 2 "the session's message count includes it"
req POST /api/sessions '{"id":"busy1"}'
is "$STATUS" 201 "the refused session can be created afterwards"
req POST /api/sessions/s2/messages '{"text":"after the lock"}'
is "$STATUS" 200 "and messages succeed again"

# --- the disk full under the database (RLIMIT_FSIZE on the running manager) ---------------
BEFORE=$(sql "select count(*) from executions")
bg_message s3 "[[delay=1500]] finishes on a full disk"
FID=$(running_id s3)
like "$FID" '^[0-9]+$' "a run is in flight when the disk fills"
# The run's first event maps the session to its opencode session (one more write): let it land
# before the disk fills, or that write would be a second pending record (the race this test had).
check "the session's opencode mapping is stored first" \
    wait_until 10 sql_is "select opencode_session_id is not null from sessions where id='s3'" 1
prlimit --pid "$MPID" --fsize=1:
req POST /api/sessions '{"id":"full1"}'
is "$STATUS/$(j .error.reason)" "503/full" "a new session on a full disk: 503, reason full"
req POST /api/sessions/s2/messages '{"text":"refused on a full disk"}'
is "$STATUS/$(j .error.code)" "503/storage_unavailable" "a message on a full disk is refused"
bg_wait
is "$(j .execution.status)/$(j .execution.stored)" "succeeded/false" "the in-flight run answers its client"
req GET /api/opencode/status
is "$STATUS" 200 "the manager keeps answering on a full disk"
is "$(j .ocpm.database.pendingWrites)" 1 "and keeps the unwritten record"
check "the manager survived (no SIGXFSZ death)" kill -0 "$MPID"
prlimit --pid "$MPID" --fsize=unlimited:
check "with space back the record is written" wait_until 10 sql_is "select status from executions where id=$FID" succeeded
is "$(sql "select count(*) from executions")" "$((BEFORE + 1))" "no committed row was lost"
is "$(sql 'pragma integrity_check')" ok "the database passes integrity_check"
req POST /api/sessions/s2/messages '{"text":"after the disk filled"}'
is "$STATUS" 200 "messages succeed again"

# --- the database file removed while open ----------------------------------------------------
BEFORE=$(sql "select count(*) from executions")
SESSIONS=$(sql "select group_concat(id || '=' || coalesce(opencode_session_id, ''), ',') from sessions order by id")
rm -f "$DB"
check "a removed database file is restored" wait_until 10 test -f "$DB"
check "the restore is logged" wait_until 10 grep -q 'restored from the open connection' "$LOG"
is "$(sql "select count(*) from executions")" "$BEFORE" "every execution is in the restored file"
is "$(sql "select group_concat(id || '=' || coalesce(opencode_session_id, ''), ',') from sessions order by id")" \
    "$SESSIONS" "every session and its mapping is in it"
is "$(sql 'pragma integrity_check')" ok "it passes integrity_check"
req POST /api/sessions/s2/messages '{"text":"after the file was removed"}'
is "$STATUS" 200 "a message after the restore succeeds"
is "$(row_status "$(j .execution.id)")" succeeded "and lands in the file at the path"
BEFORE=$((BEFORE + 1))
rm -f "$DB" "$DB-wal" "$DB-shm"
check "removed with its -wal and -shm, it is restored too" wait_until 10 sql_is "select count(*) from executions" $BEFORE
# The event is written once the restored file is in place, so it may trail the rows seen above.
check "both restores are in manager_events" wait_until 10 sql_is "select count(*) from manager_events where kind='database_restored'" 2
req POST /api/sessions/s2/messages '{"text":"after the second removal"}'
is "$STATUS" 200 "and the manager goes on"
is "$(sql "select count(*) from executions")" "$((BEFORE + 1))" "writing to the restored file"

# --- a read-only database at start-up ---------------------------------------------------------
RO=$(mktemp -d /tmp/ocpm-ro-XXXXXX)
sqlite3 "$DB" ".backup '$RO/ocpm.db'"
chmod 0444 "$RO/ocpm.db"
RUNAS=()
if [ "$(id -u)" = 0 ]; then # root writes read-only files anyway: start it as nobody
    chown -R nobody "$RO"
    RUNAS=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
fi
SUM=$(sha256sum <"$RO/ocpm.db")
out=$(env OCPM_STATE_DIR="$RO" OCPM_DB_PATH="$RO/ocpm.db" OCPM_FCGI_SOCKET="$RO/f.sock" \
    OCPM_CONTROL_SOCKET="$RO/c.sock" OCPM_WORKSPACE_ROOT="$RO/ws" OCPM_LOG_FILE= "${RUNAS[@]}" "$OCPMD" 2>&1)
is "$?" 1 "ocpmd refuses to start on a read-only database"
like "$out" 'initialization failed.*read-only' "saying the database is read-only"
is "$(sha256sum <"$RO/ocpm.db")" "$SUM" "and leaves the file as it was"
rm -rf "$RO"

# --- the file removed while its directory is read-only (the manager runs unprivileged here) -------
stack_stop_ocpmd
if [ "$(id -u)" = 0 ]; then # root ignores directory modes: run the manager as nobody
    chown -R nobody "$STACK_DIR"
    printf '#!/bin/sh\nexec setpriv --reuid=nobody --regid=nogroup --clear-groups %s "$@"\n' "$OCPMD" >"$TDIR/as-nobody"
    chmod 0755 "$TDIR/as-nobody"
    MANAGER="$TDIR/as-nobody"
else
    MANAGER=$OCPMD
fi
# The fake runs as the agent (ocpmd's own user here, in its sandbox): its log must be one it may write.
export OPENCODE_FAKE_LOG="$STACK_DIR/fake-unprivileged.jsonl"
: >"$OPENCODE_FAKE_LOG"
chmod 0666 "$OPENCODE_FAKE_LOG"
export OCPM_AGENT_WRITE_PATHS="$OPENCODE_FAKE_LOG"
OCPMD=$MANAGER stack_start_ocpmd || { echo "Bail out! the unprivileged ocpmd did not start"; exit 1; }
req POST /api/sessions/s2/messages '{"text":"unprivileged"}'
is "$STATUS/$(j .execution.status)" 200/succeeded "an unprivileged manager serves messages"
BEFORE=$(sql "select count(*) from executions")
# The manager paused meanwhile, so that it cannot restore the file between the two steps.
kill -STOP "$STACK_OCPMD_PID"
rm -f "$DB"
chmod 0555 "$STACK_DIR"
kill -CONT "$STACK_OCPMD_PID"
check "it cannot restore the file in a read-only directory, and says so" wait_until 10 grep -q 'cannot restore it yet' "$LOG"
req POST /api/sessions/s2/messages '{"text":"while the directory is read-only"}'
is "$STATUS/$(j .execution.status)" 200/succeeded "it keeps answering (the open file takes the writes)"
req GET /api/opencode/status
is "$(j .ocpm.database.ok)" false "status says the database is not ok"
like "$(j .ocpm.database.lastError)" 'cannot restore' "with why"
chmod 0755 "$STACK_DIR"
check "once the directory is writable the file is restored" wait_until 10 test -f "$DB"
is "$(sql "select count(*) from executions")" "$((BEFORE + 1))" "with every row, the one written meanwhile included"
is "$(sql 'pragma integrity_check')" ok "and it passes integrity_check"

req GET /api/opencode/status
is "$(j .ocpm.database.ok)/$(j .ocpm.database.pendingWrites)" "true/0" "at the end the database is healthy"
is "$(sql "select count(*) from executions where status in ('queued','running')")" 0 "and no row is left unfinished"
t_done
