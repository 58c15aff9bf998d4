#!/usr/bin/env bash
# The manager as a process: configuration checks, the singleton lock, socket modes, malformed
# frames, responder respawn, client disconnects, SIGHUP, graceful and forced shutdown, SIGKILL
# recovery (interrupted rows, no orphans, mappings kept), a run flooding stdout, prompt hashing, a
# missing opencode. Part of the fault suite (make faults).
. "$(dirname "$0")/../integration/lib.sh"

# --- ocpmd -t -------------------------------------------------------------------
CONF=$(mktemp /tmp/ocpm-conf-XXXXXX)
printf 'responders = 2\nrun_timeout = soon\n' >"$CONF"
out=$("$OCPMD" -t -c "$CONF" 2>&1)
is "$?" 1 "ocpmd -t fails on an invalid value"
like "$out" '"soon" for run_timeout' "and names the key and the value"
like "$out" "$CONF:2" "and the file and line"
printf 'responders = 2\nrun_timeout = 90s\n' >"$CONF"
out=$("$OCPMD" -t -c "$CONF" 2>&1)
is "$?" 0 "ocpmd -t accepts a valid file"
like "$out" "test is successful" "and says so like nginx -t"
out=$(OCPM_MODE=sideways "$OCPMD" -t 2>&1)
like "$out" 'OCPM_MODE.*sideways' "environment values are checked too"
rm -f "$CONF"

export OCPM_SHUTDOWN_TIMEOUT=1s OCPM_KILL_GRACE=300ms OCPM_RESPONDERS=2 OCPM_RESPONDER_THREADS=4
t_start

# --- singleton, modes -------------------------------------------------------------
out=$("$OCPMD" 2>&1)
rc=$?
is "$rc" 1 "a second ocpmd on the same state_dir refuses to start"
like "$out" "already running" "with a clear message"
is "$(stat -c %a "$STACK_DIR/ocpmd.sock")" 600 "control socket is mode 0600"
is "$(stat -c %a "$DB")" 600 "database is mode 0600"
req GET /api/health
is "$STATUS" 200 "the first manager still serves"

# --- malformed frames close only that connection -----------------------------------
python3 - "$STACK_DIR/ocpmd.sock" <<'PY'
import socket, sys
for junk in (b"\x00\x00\x00\x05[1,2]", b"\xff\xff\xff\xffxx", b"\x00\x00\x00\x03{x}"):
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(junk)
    s.settimeout(5)
    assert s.recv(10) == b"", "connection should be closed"
    s.close()
PY
is "$?" 0 "malformed frames close their connection"
check "and are logged" grep -q 'malformed frame' "$LOG"
req GET /api/opencode/status
is "$STATUS" 200 "the manager carries on"

# --- responder respawn ----------------------------------------------------------------
RPID=$(pgrep -P "$STACK_OCPMD_PID" -f -- '--responder 0$' | head -1)
kill -9 "$RPID"
check "a killed responder is respawned" wait_until 10 sh -c "pgrep -P $STACK_OCPMD_PID -f -- '--responder 0\$' | grep -vx $RPID"
check "the respawn is logged" grep -q 'responder died; respawning' "$LOG"
is "$(sql "select count(*) from manager_events where kind='responder_respawn'")" 1 "and recorded in manager_events"
req GET /api/opencode/status
is "$(j .ocpm.responders.restarts)" 1 "status counts responder restarts"
ok_all=1
for _ in 1 2 3 4 5 6 7 8; do req GET /api/health; [ "$STATUS" = 200 ] || ok_all=0; done
is "$ok_all" 1 "requests keep succeeding after the respawn"

# --- a client that disconnects mid-stream ------------------------------------------------
req POST /api/sessions '{"id":"d"}'
curl -sN --max-time 1 -H 'Accept: text/event-stream' -X POST --data-binary '{"text":"[[delay=1500]]"}' \
    "$BASE/api/sessions/d/messages" >/dev/null 2>&1
req GET '/api/executions?session=d'
DID=$(j '.executions[0].id')
check "the run goes on without its client" wait_until 10 sql_is "select status from executions where id=$DID" succeeded
check "activeStreams returns to 0" wait_until 10 sh -c "curl -s $BASE/api/opencode/status | jq -e '.activeStreams == 0'"

# --- SIGHUP reopens the log file ---------------------------------------------------------
stack_stop_ocpmd
export OCPM_LOG_FILE="$STACK_DIR/logs/ocpmd-file.log"
stack_start_ocpmd_file() { # the log now goes to OCPM_LOG_FILE: wait on that file
    "$OCPMD" >>"$STACK_DIR/logs/ocpmd.log" 2>&1 &
    STACK_OCPMD_PID=$!
    wait_until 30 grep -q 'initialized' "$OCPM_LOG_FILE"
}
check "ocpmd starts with log_file" stack_start_ocpmd_file
mv "$OCPM_LOG_FILE" "$OCPM_LOG_FILE.1"
kill -HUP "$STACK_OCPMD_PID"
check "SIGHUP reopens log_file" wait_until 10 grep -q 'log file reopened' "$OCPM_LOG_FILE"
req POST /api/sessions '{"id":"h"}'
check "new lines go to the new file" wait_until 10 grep -q 'sessionId=h' "$OCPM_LOG_FILE"
stack_stop_ocpmd
unset OCPM_LOG_FILE
cat "$STACK_DIR/logs/ocpmd-file.log.1" "$STACK_DIR/logs/ocpmd-file.log" >>"$LOG"

# --- graceful shutdown: in-flight runs finish, queued ones are cancelled --------------------
export OCPM_SHUTDOWN_TIMEOUT=10s
stack_start_ocpmd
req POST /api/sessions '{"id":"g"}'
curl -s -X POST --data-binary '{"text":"finish me [[delay=1200]]"}' "$BASE/api/sessions/g/messages" >"$TDIR/g1" &
C1=$!
check "the run starts" wait_until 10 sql_is "select count(*) from executions where session_id='g' and status='running'" 1
req POST /api/sessions/g/messages '{"text":"never started"}' -H 'Prefer: respond-async'
kill -TERM "$STACK_OCPMD_PID"
wait "$STACK_OCPMD_PID"
is "$?" 0 "SIGTERM: ocpmd exits 0"
STACK_OCPMD_PID=
wait "$C1"
is "$(jq -r .execution.status "$TDIR/g1")" succeeded "the in-flight client got its answer"
is "$(sql "select group_concat(status, ',') from (select status from executions where session_id='g' order by id)")" \
    "succeeded,aborted" "in-flight run recorded as succeeded, queued one as aborted"
is "$(sql "select kind from manager_events order by id desc limit 1")" manager_stop "manager_stop recorded"
check "no responder is left" wait_until 10 sh -c "[ -z \"\$(python3 $SRC/tests/integration/pids.py $TDIR responders)\" ]"

# --- shutdown_timeout kills what still runs ---------------------------------------------------
export OCPM_SHUTDOWN_TIMEOUT=500ms
stack_start_ocpmd
req POST /api/sessions/g/messages '{"text":"[[hang]]"}' -H 'Prefer: respond-async'
HID=$(j .execution_id)
check "the hanging run starts" wait_until 10 sql_is "select status from executions where id=$HID" running
HPID=$(sql "select pid from executions where id=$HID")
kill -TERM "$STACK_OCPMD_PID"
wait "$STACK_OCPMD_PID"
is "$?" 0 "SIGTERM with a hanging run: still exits 0"
STACK_OCPMD_PID=
is "$(sql "select status from executions where id=$HID")" interrupted "the killed run is recorded as interrupted"
check "its process group is gone" sh -c "! kill -0 $HPID 2>/dev/null"

# --- SIGKILL to the manager mid-run, then a restart --------------------------------------------
stack_start_ocpmd
req POST /api/sessions '{"id":"k"}'
req POST /api/sessions/k/messages '{"text":"first"}'
KSID=$(j .execution.opencode_session_id)
req POST /api/sessions/k/messages '{"text":"[[hang]]"}' -H 'Prefer: respond-async'
KID=$(j .execution_id)
check "the run starts" wait_until 10 sql_is "select status from executions where id=$KID" running
KPID=$(sql "select pid from executions where id=$KID")
kill -9 "$STACK_OCPMD_PID"
wait "$STACK_OCPMD_PID" 2>/dev/null
STACK_OCPMD_PID=
check "the orphaned opencode dies with the manager (PDEATHSIG)" wait_until 10 sh -c "! kill -0 $KPID 2>/dev/null"
check "the responders die with the manager" wait_until 10 sh -c "[ -z \"\$(python3 $SRC/tests/integration/pids.py $TDIR responders)\" ]"
stack_start_ocpmd
is "$(sql "select status from executions where id=$KID")" interrupted "the row left running becomes interrupted"
check "the recovery is logged" grep -q 'marked interrupted' "$LOG"
req POST /api/sessions/k/messages '{"text":"after restart"}'
like "$(j .text)" "continued $KSID" "the session keeps its opencode mapping across the restart"

# --- SIGKILL right after an answer: the row the client was told of is there ---------------------------
# The answer is sent after the final record's commit (WAL; a process kill loses nothing committed).
lost=0
for i in 1 2 3; do
    req POST /api/sessions/k/messages "{\"text\":\"durable $i\"}"
    DUR=$(j .execution.id)
    kill -9 "$STACK_OCPMD_PID"
    wait "$STACK_OCPMD_PID" 2>/dev/null
    STACK_OCPMD_PID=
    [ "$(sql "select status || ' ' || (answer like '%durable $i%') from executions where id=$DUR")" = "succeeded 1" ] ||
        lost=$((lost + 1))
    stack_start_ocpmd
done
is "$lost" 0 "a kill -9 right after each of 3 answers lost none of their rows"

# --- an opencode run that fills stdout with megabytes ---------------------------------------------
req POST /api/sessions '{"id":"big"}'
req POST /api/sessions/big/messages '{"text":"[[huge=5000000]] flood"}'
is "$STATUS/$(j .execution.status)" 200/succeeded "a run printing 5 MB of events is survived"
BIG=$(j .execution.id)
is "$(sql "select length(answer) <= 65536 and answer_bytes > 1000000 from executions where id=$BIG")" 1 \
    "the stored answer is bounded and the full size is recorded"
req POST /api/sessions/big/messages '{"text":"[[longline=6000000]] after"}'
is "$STATUS/$(j .execution.status)" 200/succeeded "a 6 MB line without an end is dropped, the run goes on"
like "$(j .text)" "after" "and the answer after it arrives"
req GET /api/opencode/status
is "$STATUS/$(j .runningProcesses)" 200/0 "the manager serves the next request, nothing left running"

# --- store_prompts = no -------------------------------------------------------------------------
stack_stop_ocpmd
OCPM_STORE_PROMPTS=no stack_start_ocpmd
req POST /api/sessions/k/messages '{"text":"private words"}'
is "$(sql "select prompt is null and answer is null from executions where id=$(j .execution.id)")" 1 \
    "store_prompts=no keeps no text"
is "$(sql "select prompt_sha256 from executions where id=$(j .execution.id)")" \
    "$(printf 'private words' | sha256sum | cut -d' ' -f1)" "only its size and SHA-256"

# --- resource limits for opencode processes --------------------------------------------------------
stack_stop_ocpmd
OCPM_RUN_RLIMIT_NOFILE=256 OCPM_RUN_RLIMIT_CPU=120s OCPM_RUN_RLIMIT_AS=8g stack_start_ocpmd
req POST /api/sessions/k/messages '{"text":"limited"}'
is "$(tail -n 1 "$TDIR/fake.jsonl" | jq -c '.rlimits')" '{"as":8589934592,"nofile":256,"cpu":120}' \
    "run_rlimit_* settings reach the opencode process"

# --- an opencode that cannot run ------------------------------------------------------------------
stack_stop_ocpmd
OCPM_OPENCODE_BIN=/nonexistent/opencode stack_start_ocpmd
check "a missing opencode is logged as an initialization failure" grep -q 'OpenCode process manager initialization failed' "$LOG"
req GET /api/opencode/status
is "$(j .available)" false "status says opencode is not available"
req POST /api/sessions/k/messages '{"text":"hello"}'
is "$STATUS" 502 "a message fails clearly"
like "$(j .execution.error)" "could not be started; the manager's log says why" "saying so, without server paths"
check "and the log has the reason" grep -q 'could not start a run.*cannot execute /nonexistent/opencode' "$LOG"
req GET /api/ready
is "$STATUS:$(j '.reasons | join(",")')" "503:opencode_unavailable" "/api/ready is 503: opencode_unavailable"
t_done
