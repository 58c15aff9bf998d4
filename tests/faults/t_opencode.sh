#!/usr/bin/env bash
# Fault suite: `opencode serve` failing under a message (the fake server, real signals).
# SIGKILL mid-message; SIGSTOP mid-message (a hang only the health check can see); SIGKILL to the
# responders while one streams; a server that floods its stdout. Each case checks what the client saw, the stored row, that no process is
# left behind, and that the next message is served.
. "$(dirname "$0")/../integration/lib.sh"
export OCPM_MODE=server OCPM_HEARTBEAT_INTERVAL=300ms OCPM_HEALTH_TIMEOUT=300ms OCPM_HEALTH_FAILURES=2
export OCPM_RUN_TIMEOUT=30s OCPM_RESTART_BACKOFF_MAX=1s OCPM_FALLBACK=off OCPM_FALLBACK_WAIT=20s
t_start

server() { curl -s "$BASE/api/opencode/status" | jq -r ".server.$1"; }
state_is() { [ "$(server state)" = "$1" ]; }
# Processes of this test stopped (state T) or left as zombies.
stopped_or_zombie() { for p in $(t_leftovers); do ps -o stat= -p "$p"; done | grep -c '^[TZ]'; }

req POST /api/sessions '{"id":"k"}'
req POST /api/sessions/k/messages '{"text":"first"}'
is "$STATUS/$(j .execution.mode)" 200/server "a message goes to the server"

# --- SIGKILL to opencode serve mid-message ----------------------------------------------------
P1=$(server pid)
bg_message k "[[hang]] killed under me"
KID=$(running_id k)
like "$KID" '^[0-9]+$' "the message is in flight"
kill -9 "$P1"
bg_wait
is "$STATUS" 502 "the client of the killed server gets 502"
echo "# answered ${SECS}s after the request (the kill came once it was running)"
like "$(j .execution.error)" 'server (exited|request failed)' "with a clear error"
is "$(sql "select status from executions where id=$KID")" failed "the row says failed"
like "$(sql "select error from executions where id=$KID")" 'server' "with the error stored"
check "the killed server is gone" sh -c "! kill -0 $P1 2>/dev/null"
check "a new server comes up" wait_until 15 state_is ready
isnt() { [ "$(server pid)" != "$P1" ]; }
check "with a new pid" isnt
req POST /api/sessions/k/messages '{"text":"after the kill"}'
is "$STATUS/$(j .execution.status)/$(j .execution.mode)" 200/succeeded/server "the next message is served"

# --- SIGSTOP to opencode serve mid-message (a hang) --------------------------------------------
P2=$(server pid)
bg_message k "[[hang]] stopped under me"
SID=$(running_id k)
kill -STOP "$P2"
bg_wait
is "$STATUS" 502 "the client of the stopped server gets 502"
echo "# answered ${SECS}s after the request"
like "$(j .execution.error)" 'health|server' "with a clear error"
is "$(sql "select status from executions where id=$SID")" failed "the row says failed"
check "the health check noticed" grep -q 'health check failed' "$LOG"
check "the stopped server was killed and reaped" wait_until 10 sh -c "! kill -0 $P2 2>/dev/null"
check "a new server comes up" wait_until 15 state_is ready
is "$(stopped_or_zombie)" 0 "no stopped or zombie process is left"
is "$(sql "select count(*) from manager_events where kind='server_restart'")" 2 "both restarts are recorded"
req POST /api/sessions/k/messages '{"text":"after the stop"}'
is "$STATUS/$(j .execution.status)" 200/succeeded "the next message is served"

# --- a message waiting behind one that dies with the server --------------------------------------
# It was never sent to the dead server: it waits for the new one (fallback is off here) and runs.
P3=$(server pid)
bg_message k "[[hang]] dies with the server"
RID=$(running_id k)
req POST /api/sessions/k/messages '{"text":"waits behind it"}' -H 'Prefer: respond-async'
WID=$(j .execution_id)
is "$STATUS/$(sql "select status from executions where id=$WID")" 202/queued "a second message waits in the session's queue"
kill -9 "$P3"
bg_wait
is "$STATUS/$(sql "select status from executions where id=$RID")" 502/failed "the one in flight fails with the server"
check "the waiting one runs on the new server" wait_until 20 sql_is "select status||'/'||mode from executions where id=$WID" succeeded/server
like "$(sql "select error from executions where id=$WID")" '^$' "and carries no error"

# --- SIGKILL to the responders while one streams --------------------------------------------------
curl -sN --max-time 30 -H 'Accept: text/event-stream' -H 'Content-Type: application/json' -X POST \
    --data-binary '{"text":"[[slow=200]] streamed while its responder dies"}' "$BASE/api/sessions/k/messages" \
    >"$TDIR/killed.sse" &
CURL=$!
RKID=$(running_id k)
check "the stream is open" wait_until 10 grep -q 'message.part.delta' "$TDIR/killed.sse"
OLDR=$(t_pids responders | sort | tr '\n' ' ')
t_pids responders | xargs -r kill -9
wait "$CURL"
check "the client's stream is cut, without done" sh -c "! grep -q '^event: done' '$TDIR/killed.sse'"
check "the run goes on and is recorded" wait_until 20 sql_is "select status from executions where id=$RKID" succeeded
respawned() { [ "$(t_pids responders | wc -l)" -ge 4 ] && [ "$(t_pids responders | sort | tr '\n' ' ')" != "$OLDR" ]; }
check "every responder is respawned" wait_until 15 respawned
check "activeStreams returns to 0" wait_until 10 sh -c "curl -s $BASE/api/opencode/status | jq -e '.activeStreams == 0'"
req POST /api/sessions/k/messages '{"text":"after the responders died"}'
is "$STATUS/$(j .execution.status)" 200/succeeded "the next message is served"

# --- a server that floods its stdout -----------------------------------------------------------
SIZE0=$(stat -c %s "$LOG")
req POST /api/sessions/k/messages '{"text":"[[flood=20000000]] noisy"}'
is "$STATUS/$(j .execution.status)" 200/succeeded "a message survives 20 MB of server output"
check "the excess is dropped, and said so" wait_until 10 grep -q 'opencode serve output dropped' "$LOG"
GROWN=$(($(stat -c %s "$LOG") - SIZE0))
echo "# the log grew by $GROWN bytes for 20 MB of server output"
check "the log grew by less than 1 MB" test "$GROWN" -lt 1000000
req GET /api/health
is "$STATUS" 200 "the manager keeps answering"

req GET /api/opencode/status
is "$(j .runningProcesses)/$(j .processManager.pendingRequests)" 0/0 "nothing is left running or queued"
is "$(sql "select count(*) from executions where status in ('queued','running')")" 0 "no row is left unfinished"
t_done
