#!/usr/bin/env bash
# The slow log (slowlog_timeout), server mode, through real nginx with the fake `opencode serve`: a
# turn held inside a tool call is logged once, with its tool, the tool's input and the time since
# its last event, and gets one row of slow_turns that outlives the turn and leaves its record as it
# was; a turn held by a pending permission names the prompt; a fast turn gets nothing; the
# operator reads the rows through /api/admin/slowlog and `ocpmctl slowlog`; store_prompts = no
# keeps only the input's size and digest; per-session mode says the model has the turn; and
# slowlog_timeout = 0 logs nothing.
. "$(dirname "$0")/lib.sh"
export OCPM_MODE=server OCPM_HEARTBEAT_INTERVAL=300ms OCPM_SERVER_START_TIMEOUT=8s OCPM_FALLBACK=no
export OCPM_FALLBACK_WAIT=20s OCPM_SLOWLOG_TIMEOUT=300ms
t_start
OCPMCTL=${OCPMCTL:-$SRC/ocpmctl}

finished() { req GET "/api/executions/$1"; [ "$(j .status)" != queued ] && [ "$(j .status)" != running ]; }
pending() { req GET "/api/sessions/$1/$2?status=pending"; [ "$(j ".$2 | length")" = 1 ]; }
async() {
    req POST "/api/sessions/$1/messages" "{\"text\":\"$2\"}" -H 'Prefer: respond-async'
    ID=$(j .execution_id)
}
slow_lines() { grep -c "msg=\"slow turn\" executionId=$1 " "$LOG"; }
row() { sql "select $2 from slow_turns where execution_id=$1"; }
ready() { wait_until 20 sh -c "[ \"\$(curl -s '$BASE/api/opencode/status' | jq -r .server.state)\" = ready ]"; }

# --- a turn held inside a tool call ----------------------------------------------------------------
req POST /api/sessions '{"id":"s"}'
async s "build it [[slowtool=2500]]"
T_EX=$ID
check "the turn held in its tool is logged" wait_until 10 grep -q "msg=\"slow turn\" executionId=$T_EX " "$LOG"
LINE=$(grep "msg=\"slow turn\" executionId=$T_EX " "$LOG")
like "$LINE" 'level=warn' "at WARN"
like "$LINE" "sessionId=s pool=\"default\" owner=\"\" elapsedMs=[0-9]+ step=\"tool\" tool=bash callId=\"c5\"" \
    "with its session, pool, owner, elapsed time, step and tool"
like "$LINE" 'input="\{\\"command\\":\\"sleep 60 && make\\",\\"description\\":\\"a slow build\\"\}"' \
    "and the tool's input, quoted"
like "$LINE" 'sinceLastEventMs=[0-9]+ pendingPrompts=0' "the time since the last event, no prompt pending"
check "the turn still ends on its own" wait_until 20 finished "$T_EX"
is "$(j .status):$(j .error)" "succeeded:null" "its record is as it would be without the slow log"
is "$(slow_lines "$T_EX")" 1 "logged once, however long it ran past the threshold"
is "$(sql "select count(*) from slow_turns where execution_id=$T_EX")" 1 "one row, after the turn's end too"
is "$(row "$T_EX" "session_id || ' ' || owner || ' ' || pool || ' ' || step || ' ' || tool || ' ' || call_id")" \
    "s  default tool bash c5" "the row: session, owner, pool, step, tool, call"
is "$(row "$T_EX" tool_input_summary | jq -r .command)" "sleep 60 && make" "the tool's input summary"
like "$(row "$T_EX" "tool_input_bytes || ' ' || tool_input_sha256")" '^[0-9]+ [0-9a-f]{64}$' "its size and digest"
like "$(row "$T_EX" "elapsed_ms >= 300 and elapsed_ms < 5000")" '^1$' "elapsed past the threshold"
like "$(row "$T_EX" "since_last_event_ms >= 0 and since_last_event_ms <= elapsed_ms")" '^1$' \
    "since the last event: no more than the whole turn"
is "$(row "$T_EX" pending_prompts)" "[]" "no prompt pending"
is "$(sql "select count(*) from slow_turns s join executions e on e.id = s.execution_id where e.id=$T_EX and s.at < e.finished_at and s.at > e.started_at")" \
    1 "written while it ran"

# --- a fast turn -----------------------------------------------------------------------------------
req POST /api/sessions/s/messages '{"text":"quick"}'
F_EX=$(j .execution.id)
is "$STATUS:$(j .execution.status)" "200:succeeded" "a fast turn"
is "$(sql "select count(*) from slow_turns where execution_id=$F_EX"):$(slow_lines "$F_EX")" "0:0" \
    "no row, no line for it"

# --- a turn held by a pending permission ---------------------------------------------------------
async s "read it [[permission]]"
P_EX=$ID
check "the permission is pending" wait_until 20 pending s permissions
P=$(j '.permissions[0].id')
check "the turn waiting for it is logged" wait_until 10 sql_is "select count(*) from slow_turns where execution_id=$P_EX" 1
is "$(row "$P_EX" pending_prompts | jq -c .)" \
    "[{\"kind\":\"permission\",\"id\":\"$P\",\"status\":\"pending\",\"title\":\"external_directory /etc/*\"}]" \
    "the row names the pending permission"
is "$(row "$P_EX" "tool || ' ' || json_extract(tool_input_summary, '\$.filePath')")" "read /etc/hostname" \
    "and the tool call that waits for it"
like "$(grep "msg=\"slow turn\" executionId=$P_EX " "$LOG")" \
    "pendingPrompts=1 prompt=\"permission $P: external_directory /etc/\\*\"" "the log line names it too"
req POST "/api/sessions/s/permissions/$P" '{"reply":"once"}'
check "answered, the turn ends" wait_until 20 finished "$P_EX"
is "$(j .status):$(j '.permissions[0].status')" "succeeded:allowed" "as it would have"
is "$(sql "select count(*) from slow_turns where execution_id=$P_EX"):$(slow_lines "$P_EX")" "1:1" "still one row, one line"

# --- the operator's view ---------------------------------------------------------------------------
req GET /api/admin/slowlog
is "$STATUS:$(j '[.slow_turns[].execution_id] | join(" ")')" "200:$P_EX $T_EX" "GET /api/admin/slowlog: newest first"
is "$(j '.slow_turns[0].pending_prompts[0].id')" "$P" "its prompts as JSON"
req GET "/api/admin/slowlog?limit=1"
is "$(j '.slow_turns | length'):$(j .next_cursor)" "1:$(sql "select id from slow_turns where execution_id=$P_EX")" \
    "a page at a time, with a cursor"
req GET "/api/admin/slowlog?before=$(j .next_cursor)"
is "$(j '[.slow_turns[].execution_id] | join(" ")')" "$T_EX" "the next page"
req GET "/api/admin/slowlog?since=$(($(date +%s) + 3600))"
is "$(j '.slow_turns | length')" 0 "since: nothing newer than the future"
req GET "/api/admin/slowlog?limit=0"
is "$STATUS" 400 "a bad limit: 400"
OUT=$("$OCPMCTL" --db "$DB" --json slowlog 2>&1)
is "$(printf '%s' "$OUT" | jq -r '[.[].execution_id] | join(" ")')" "$P_EX $T_EX" "ocpmctl slowlog lists them"
like "$("$OCPMCTL" --db "$DB" slowlog --since 1h 2>&1)" "bash" "as a table too"

# --- store_prompts = no --------------------------------------------------------------------------
stack_stop_ocpmd
export OCPM_STORE_PROMPTS=no
stack_start_ocpmd
check "the manager is back with store_prompts = no" ready
async s "build it [[slowtool=1500]]"
N_EX=$ID
check "the slow turn is logged" wait_until 10 sql_is "select count(*) from slow_turns where execution_id=$N_EX" 1
is "$(row "$N_EX" "tool || ' ' || coalesce(tool_input_summary, 'NULL')")" "bash NULL" "the tool, not its input"
like "$(row "$N_EX" "tool_input_bytes || ' ' || tool_input_sha256")" '^[0-9]+ [0-9a-f]{64}$' "only its size and digest"
if grep "msg=\"slow turn\" executionId=$N_EX " "$LOG" | grep -q 'sleep 60'; then
    not_ok "nor in the log line"
else ok "nor in the log line"; fi
check "the turn ends" wait_until 20 finished "$N_EX"

# --- per-session mode: opencode run reports a tool once it has ended ------------------------------
stack_stop_ocpmd
export OCPM_MODE=per-session OCPM_STORE_PROMPTS=yes
stack_start_ocpmd
async s "build it [[slowtool=1500]]"
R_EX=$ID
check "a slow run is logged" wait_until 10 sql_is "select count(*) from slow_turns where execution_id=$R_EX" 1
is "$(row "$R_EX" "step || ' ' || coalesce(tool, 'NULL')")" "waiting for model NULL" \
    "its tool has ended: the model has the turn"
check "the run ends" wait_until 20 finished "$R_EX"

# --- slowlog_timeout = 0 ---------------------------------------------------------------------------
stack_stop_ocpmd
export OCPM_SLOWLOG_TIMEOUT=0
stack_start_ocpmd
async s "build it [[slowtool=1000]]"
Z_EX=$ID
check "with slowlog_timeout = 0 the slow turn ends" wait_until 20 finished "$Z_EX"
is "$(sql "select count(*) from slow_turns where execution_id=$Z_EX"):$(slow_lines "$Z_EX")" "0:0" "and nothing is logged"

t_done
