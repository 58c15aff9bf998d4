#!/usr/bin/env bash
# /api/opencode/status?full through real nginx (PHP-FPM's ?full): the sessions with their state
# (idle, running with its execution, queued), pool and server, bounded by limit with the total and
# a truncated flag; the plain status unchanged (and still the published snapshot); bad parameters
# refused; and who sees whose sessions (the operator route: everyone's; a named user: their own).
. "$(dirname "$0")/lib.sh"
export STACK_HTPASSWD_USERS="alice:apw bob:bpw"
export OCPM_MODE=auto OCPM_MAX_CONCURRENT_RUNS=1 OCPM_RUN_TIMEOUT=60s OCPM_KILL_GRACE=500ms
t_start
A=(-u alice:apw)
B=(-u bob:bpw)
full() { curl -s "$BASE/api/opencode/status?full${1:-}"; }
frame() { python3 "$SRC/tests/integration/frame.py" "$STACK_DIR/ocpmd.sock" "$1"; }

req POST /api/sessions '{"id":"idle1"}' "${A[@]}"
req POST /api/sessions/idle1/messages '{"text":"hello"}' "${A[@]}"
is "$STATUS" 200 "alice's first session had a message"
req POST /api/sessions '{"id":"busy"}' "${B[@]}"
req POST /api/sessions '{"id":"waits"}' "${B[@]}"
req POST /api/sessions/busy/messages '{"text":"[[hang]]"}' "${B[@]}" -H 'Prefer: respond-async'
RUN=$(j .execution_id)
req POST /api/sessions/busy/messages '{"text":"next"}' "${B[@]}" -H 'Prefer: respond-async'
check "bob's hanging message runs" wait_until 10 sql_is "select status from executions where id=$RUN" running
# max_concurrent_runs = 1: bob's other session waits for the slot.
req POST /api/sessions/waits/messages '{"text":"later"}' "${B[@]}" -H 'Prefer: respond-async'

# --- the plain status: unchanged --------------------------------------------------------------------
req GET /api/opencode/status
is "$STATUS" 200 "the plain status answers"
is "$(j '[has("available","version","runningProcesses","activeStreams","processManager","server","servers","ocpm")] | all')" true \
    "with every field it had"
is "$(j '.processManager | [has("isRunning","isReady","pendingRequests","activeSessions","lastActivity","idleTime","mode","description")] | all')" \
    true "and the original processManager fields"
is "$(j 'has("sessions")')" false "and no session list"

# --- ?full -----------------------------------------------------------------------------------------
BODY=$(full)
is "$(j .sessionsScope)/$(j .sessionsTotal)/$(j .sessionsTruncated)/$(j .sessionsLimit)" all/3/false/100 \
    "?full lists every session (the operator route), bounded by the default limit"
is "$(j '.processManager.mode')" server "beside the whole status document"
is "$(j '[.sessions[] | [has("id","owner","pool","server","state","execution","queued","messages","createdAt","lastActivity")] | all] | all')" \
    true "each session has id, owner, pool, server, state, execution, queued, messages, times"
is "$(j '[.sessions[].state] | join(",")')" running,queued,idle "running first, then queued, then idle"
is "$(j '.sessions[0] | "\(.id) \(.owner) \(.execution) \(.queued) \(.pool) \(.server)"')" "busy bob $RUN 1 default 0" \
    "the running session: its execution, one more waiting, its pool and server"
is "$(j '.sessions[1] | "\(.id) \(.state) \(.execution) \(.queued) \(.server)"')" "waits queued null 1 null" \
    "the queued session: no execution yet, not placed yet"
is "$(j '.sessions[2] | "\(.id) \(.owner) \(.state) \(.messages) \(.execution)"')" "idle1 alice idle 1 null" \
    "the idle session, with its message count"
like "$(j '.sessions[2].createdAt')" '^[0-9]{13}$' "times in milliseconds, as the rest of the status"
BODY=$(full '&limit=2')
is "$(j '.sessions | length')/$(j .sessionsTotal)/$(j .sessionsTruncated)" 2/3/true "limit bounds the list and says it was cut"
BODY=$(full '=1&limit=1000')
is "$(j '.sessions | length')/$(j .sessionsTruncated)" 3/false "?full=1 works too, and limit up to 1000"

# --- bad parameters ----------------------------------------------------------------------------------
req GET '/api/opencode/status?full=maybe'
is "$STATUS/$(j .error.code)" 400/invalid_parameter "full takes no value but 1 or true"
req GET '/api/opencode/status?full&limit=1001'
is "$STATUS/$(j .error.code)" 400/invalid_field "limit is at most 1000"
req GET '/api/opencode/status?full&limit=0'
is "$STATUS/$(j .error.code)" 400/invalid_field "limit is at least 1"
req GET '/api/opencode/status?fully'
is "$STATUS/$(j .error.code)" 400/invalid_parameter "an unknown bare parameter is refused"
req GET '/api/opencode/status?verbose=1'
is "$STATUS/$(j .error.code)" 400/unknown_field "an unknown parameter is refused"
req GET '/api/opencode/status?limit=5'
is "$STATUS/$(j .error.code)" 400/invalid_parameter "limit without full is refused"
req GET '/api/opencode/status?full&full'
is "$STATUS/$(j .error.code)" 400/invalid_parameter "full given twice is refused"

# --- who sees whose -------------------------------------------------------------------------------------
like "$(curl -s -o /dev/null -w '%{http_code}' "${A[@]}" "$BASE/api/sessions")" 200 "alice is a user of /api/"
out=$(frame '{"op":"status","user":"alice","args":{"full":true}}')
is "$(printf '%s' "$out" | jq -r '.body | "\(.sessionsScope) \(.sessionsTotal) \([.sessions[].owner] | unique | join(","))"')" \
    "user 1 alice" "a request naming a user (REMOTE_USER) lists that user's sessions only"
out=$(frame '{"op":"status","user":"mallory","args":{"full":true}}')
is "$(printf '%s' "$out" | jq -r '.body | "\(.sessionsTotal) \(.sessions | length)"')" "0 0" "a user with none sees none"
out=$(frame '{"op":"status","user":"alice","args":{}}')
is "$(printf '%s' "$out" | jq -r '.body | has("sessions")')" false "the plain status holds no user's data for anyone"


req POST /api/sessions/busy/abort '' "${B[@]}"
t_done
