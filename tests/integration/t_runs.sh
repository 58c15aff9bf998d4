#!/usr/bin/env bash
# Runs through real nginx + ocpmd with the fake opencode's fault knobs: answers, continuation,
# streaming, async, queueing, limits, timeout, abort, failures, environment scrubbing (huge output: tests/faults/t_process.sh).
. "$(dirname "$0")/lib.sh"
export OCPM_MAX_CONCURRENT_RUNS=2 OCPM_SESSION_QUEUE_LIMIT=2 OCPM_RUN_TIMEOUT=3s OCPM_KILL_GRACE=500ms
# One user here: the per-user share of the run slots is lifted so the global bound shows (the share
# has its own test in tests/integration/t_trust.sh).
export OCPM_USER_MAX_SHARE=100%
export OCPM_SSE_HEARTBEAT=500ms
export SECRET_TOKEN=must-not-leak MY_API_KEY=passes-through
t_start

mk() { req POST /api/sessions "{\"id\":\"$1\"}"; }
exec_status() { req GET "/api/executions/$1"; j .status; }
finished() { local s; s=$(exec_status "$1"); [ "$s" != queued ] && [ "$s" != running ]; }

# --- a message and its record -----------------------------------------------
mk s1
req POST /api/sessions/s1/messages '{"text":"hello world"}'
is "$STATUS" 200 "a message waits and answers 200"
is "$(j .text)" "fake answer to: hello world" "the answer text is returned"
is "$(j .execution.status)" succeeded "the execution succeeded"
is "$(j .execution.mode)" per-session "mode recorded"
is "$(j .execution.exit_code)" 0 "exit code recorded"
EID1=$(j .execution.id)
is "$(j '.execution | has("pid") or has("argv") or has("stderr_tail")')" false "the user's record shows no pid, argv or stderr"
like "$(sql "select pid from executions where id=$EID1")" '^[0-9]+$' "pid recorded (for operators)"
like "$(j .execution.peak_rss_kb)" '^[1-9][0-9]*$' "peak RSS recorded (wait4 rusage)"
like "$(j .execution.cpu_user_ms)" '^[0-9.]+$' "user CPU recorded"
like "$(j .execution.duration_ms)" '^[0-9.]+$' "duration recorded"
is "$(j '.execution.tokens_in > 0 and .execution.tokens_out > 0')" true "tokens recorded from step_finish"
is "$(j .execution.cost)" 0.001 "cost recorded"
is "$(sql "select argv from executions where id=$EID1")" "[\"$OCPM_OPENCODE_BIN\",\"run\",\"--format\",\"json\"]" \
    "argv recorded without a shell, without the message or any path (the workspace is its working directory)"
is "$(tail -n 1 "$TDIR/fake.jsonl" | jq -r .cwd)" "$STACK_DIR/workspaces/@anonymous/s1" "which is the session's workspace"
is "$(tail -n 1 "$TDIR/fake.jsonl" | jq -r .message)" "hello world" "the message reached opencode on its stdin"
SID=$(j .execution.opencode_session_id)
like "$SID" '^ses_fake' "the first sessionID is kept"
is "$(sql "select opencode_session_id from sessions where id='s1'")" "$SID" "the session maps to the opencode session"
is "$(sql "select message_count from sessions where id='s1'")" 1 "message_count counts"

req POST /api/sessions/s1/messages '{"text":"second"}'
like "$(j .text)" "continued $SID" "the second message continues the same opencode session"
is "$(tail -n 1 "$TDIR/fake.jsonl" | jq -r '.argv | index("--session") as $i | .[$i+1]')" "$SID" \
    "--session was passed to opencode"

req POST /api/sessions/s1/messages '{"text":"--version"}'
like "$(j .text)" "^fake answer to: --version( |$)" "a message that looks like an option reaches the model as text"
req POST /api/sessions/s1/messages '{"text":"-m x/y"}'
like "$(j .text)" "^fake answer to: -m x/y( |$)" "-m x/y is text too"
is "$(tail -n 1 "$TDIR/fake.jsonl" | jq -r '.argv | map(select(. == "-m x/y")) | length')" 0 "the message is never in argv"
ENV=$(tail -n 1 "$TDIR/fake.jsonl" | jq -r '.env | join(" ")')
like " $ENV " " MY_API_KEY " "allowlisted *_API_KEY passes to opencode"
leaks=$( (cat "$LOG"; cat "$DB" "$DB-wal" 2>/dev/null; curl -s "$BASE/api/opencode/status"; curl -s "$BASE/metrics") |
    grep -ac 'passes-through')
is "$leaks" 0 "the API key's value is in no log, database, status or metrics"
like " $ENV " " PATH " "PATH passes"
if [[ " $ENV " == *" SECRET_TOKEN "* ]]; then not_ok "other variables are scrubbed"; else ok "other variables are scrubbed"; fi
req POST /api/sessions/s1/messages '{"text":"m","model":"prov/model-1"}'
like "$(j .text)" "model prov/model-1" "model is passed with --model"

# --- streaming ----------------------------------------------------------------
mk st
curl -sN -H 'Accept: text/event-stream' -H 'Content-Type: application/json' -X POST \
    --data-binary '{"text":"slow [[delay=1500]]"}' "$BASE/api/sessions/st/messages" >"$TDIR/sse" &
CURL=$!
if wait_until 10 grep -q '^event: step_start' "$TDIR/sse"; then
    if grep -q '^event: done' "$TDIR/sse"; then not_ok "events arrive before the run ends"; else ok "events arrive before the run ends"; fi
else
    not_ok "events arrive before the run ends" "no step_start: $(cat "$TDIR/sse")"
fi
check "queued came first" grep -q '^event: queued' "$TDIR/sse"
check "started came" grep -q '^event: started' "$TDIR/sse"
check "heartbeat comments while quiet" wait_until 5 grep -q '^: heartbeat' "$TDIR/sse"
wait "$CURL"
check "done ends the stream" grep -q '^event: done' "$TDIR/sse"
is "$(sed -n 's/^data: //p' "$TDIR/sse" | tail -n 1 | jq -r .execution.status)" succeeded "done carries the record"

# --- async --------------------------------------------------------------------
mk as
req POST /api/sessions/as/messages '{"text":"later [[delay=300]]"}' -H 'Prefer: respond-async'
is "$STATUS" 202 "Prefer: respond-async answers 202"
AID=$(j .execution_id)
like "$HEADERS" "Location: /api/executions/$AID" "202 says where the execution is"
check "the async execution finishes" wait_until 10 finished "$AID"
is "$(exec_status "$AID")" succeeded "async execution succeeded"

# --- queueing per session, and max_concurrent_runs ----------------------------
mk q
req POST /api/sessions/q/messages '{"text":"one [[delay=600]]"}' -H 'Prefer: respond-async'
Q1=$(j .execution_id)
req POST /api/sessions/q/messages '{"text":"two"}' -H 'Prefer: respond-async'
Q2=$(j .execution_id)
req POST /api/sessions/q/messages '{"text":"three"}' -H 'Prefer: respond-async'
Q3=$(j .execution_id)
req POST /api/sessions/q/messages '{"text":"four"}'
is "$STATUS" 429 "a full session queue answers 429"
is "$(j .error.code)" queue_full "429 has a JSON error"
like "$HEADERS" 'Retry-After: [0-9]+' "429 carries Retry-After"
check "queued messages finish" wait_until 15 finished "$Q3"
is "$(sql "select group_concat(status) from executions where id in ($Q1,$Q2,$Q3)")" "succeeded,succeeded,succeeded" \
    "all queued messages ran"
is "$(sql "select (select started_at from executions where id=$Q2) >= (select finished_at from executions where id=$Q1)")" 1 \
    "a session runs one message at a time (FIFO)"
is "$(sql "select queue_wait_ms > 300 from executions where id=$Q2")" 1 "queue wait is recorded"

ids=()
for s in c1 c2 c3 c4; do
    mk "$s"
    req POST "/api/sessions/$s/messages" '{"text":"par [[delay=700]]"}' -H 'Prefer: respond-async'
    ids+=("$(j .execution_id)")
done
check "parallel messages finish" wait_until 20 finished "${ids[3]}"
check "all four finished" wait_until 20 finished "${ids[2]}"
list=$(IFS=,; echo "${ids[*]}")
overlap=$(sql "select max(n) from (select (select count(*) from executions b where b.id in ($list)
    and b.started_at <= a.started_at and b.finished_at > a.started_at) as n from executions a where a.id in ($list))")
is "$overlap" 2 "max_concurrent_runs bounds processes across sessions (2 at once, never more)"

# --- timeout, abort, failures ---------------------------------------------------
mk t
start=$(date +%s%N)
req POST /api/sessions/t/messages '{"text":"[[hang]]"}'
is "$STATUS" 502 "a run over run_timeout answers 502"
is "$(j .execution.status)" timeout "and is recorded as timeout"
is "$(j .error.code)" run_timeout "with a clear error code"
TPID=$(sql "select pid from executions where id=$(j .execution.id)")
check "the timed-out process is gone" wait_until 5 sh -c "! kill -0 $TPID 2>/dev/null"
req POST /api/sessions/t/messages '{"text":"[[hang]] [[stubborn]]"}'
is "$(j .execution.status)" timeout "a run that ignores SIGTERM still times out"
is "$(j .execution.signal)" 9 "it was killed with SIGKILL after kill_grace"

mk ab
req POST /api/sessions/ab/messages '{"text":"[[delay=2500]]"}' -H 'Prefer: respond-async'
AB1=$(j .execution_id)
req POST /api/sessions/ab/messages '{"text":"queued behind"}' -H 'Prefer: respond-async'
AB2=$(j .execution_id)
check "the first run starts" wait_until 5 sql_is "select status from executions where id=$AB1" running
req POST /api/sessions/ab/abort ''
is "$STATUS" 200 "abort answers 200"
is "$(j .aborted)" 2 "abort counts the running and the queued message"
check "aborted run ends" wait_until 5 finished "$AB1"
is "$(exec_status "$AB1")" aborted "the running message is aborted"
is "$(exec_status "$AB2")" aborted "the queued message is cancelled as aborted"

mk f
req POST /api/sessions/f/messages '{"text":"[[exit=3]]"}'
is "$STATUS" 502 "a failing opencode answers 502 with the record"
is "$(j .execution.status)/$(j .execution.exit_code)" failed/3 "exit status recorded"
like "$(j .execution.error)" "status 3" "error says why"
req POST /api/sessions/f/messages '{"text":"[[signal=9]]"}'
is "$(j .execution.status)/$(j .execution.signal)" failed/9 "death by signal recorded"
req POST /api/sessions/f/messages '{"text":"[[error]]"}'
is "$(j .execution.status)" failed "an error event fails the execution"
is "$(j .execution.error)" "fake provider failure" "the error event's message is kept"
like "$(sql "select stderr_tail from executions where id=$(j .execution.id)")" "fake provider failure" "stderr tail is kept"
req POST /api/sessions/f/messages '{"text":"[[stderr=100000]]"}'
is "$(sql "select length(stderr_tail) <= 4096 from executions where id=$(j .execution.id)")" 1 "stderr tail is bounded"
req POST /api/sessions/f/messages '{"text":"[[orphan]] left behind"}'
is "$(j .execution.status)" succeeded "a run that leaves a child succeeds"
ORPHAN=$(jq -r 'select(.orphan) | .orphan' "$TDIR/fake.jsonl" | tail -n 1)
like "$ORPHAN" '^[0-9]+$' "the orphan's pid is known"
check "its orphan was killed with the process group" wait_until 5 sh -c "! kill -0 $ORPHAN 2>/dev/null"

mk del
req POST /api/sessions/del/messages '{"text":"[[hang]]"}' -H 'Prefer: respond-async'
DID=$(j .execution_id)
check "the run starts" wait_until 5 sql_is "select status from executions where id=$DID" running
req DELETE /api/sessions/del ''
is "$STATUS" 200 "delete while running"
check "delete aborts its work" wait_until 5 finished "$DID"
is "$(exec_status "$DID")" aborted "the run is recorded as aborted"

# --- history -------------------------------------------------------------------
req GET '/api/executions?session=f&status=failed&limit=2'
is "$(j '.executions | length')" 2 "history filters by session and status, with a limit"
is "$(j '[.executions[].status] | unique | join(",")')" failed "only failed rows"
req GET /api/opencode/status
is "$(j .runningProcesses)" 0 "nothing left running"
is "$(j '.ocpm.processesSpawned > 20')" true "spawned processes are counted"
check "the manager logged the original lines" grep -q 'msg="Executing OpenCode command (standalone)" processId=[0-9]* .*activeProcesses=' "$LOG"
check "completion lines with duration" grep -q 'msg="OpenCode command completed" processId=[0-9]* .*duration=' "$LOG"
t_done
