#!/usr/bin/env bash
# Fault suite, with the real opencode: the model endpoint fails under it. The offline model
# answers HTTP 500 ([[fail500]]: opencode retries without end) or stalls mid-stream ([[stall]]:
# one chunk, then only keep-alive comments). Per message and in server mode, each case checks
# what the client saw, the stored row, that nothing is left running, and the next message.
. "$(dirname "$0")/../integration/lib.sh"
t_real_opencode
export OCPM_RUN_TIMEOUT=10s OCPM_KILL_GRACE=2s OCPM_SERVER_START_TIMEOUT=120s OCPM_HEARTBEAT_INTERVAL=2s
t_start

# model_fault MODE KNOB: a message whose model call fails by KNOB ends as a timeout, cleanly.
model_fault() {
    local mode=$1 knob=$2 id
    req POST "/api/sessions/$mode-$knob/messages" "{\"text\":\"[[$knob]] model fault\"}"
    is "$STATUS/$(j .error.code)" "502/run_timeout" "$mode, model $knob: the client gets 502 run_timeout"
    id=$(j .execution.id)
    is "$(sql "select status from executions where id=$id")" timeout "$mode, model $knob: the row says timeout"
    like "$(sql "select error from executions where id=$id")" 'run_timeout|timed out' "$mode, model $knob: with why"
    req GET /api/opencode/status
    is "$(j .runningProcesses)" 0 "$mode, model $knob: nothing is left running"
}

for k in fail500 stall; do req POST /api/sessions "{\"id\":\"per-session-$k\"}"; done
model_fault per-session fail500
model_fault per-session stall
check "per-session: no opencode run is left" wait_until 20 sh -c "[ -z \"\$(python3 $SRC/tests/integration/pids.py $TDIR runs)\" ]"
req POST /api/sessions/per-session-stall/messages '{"text":"after the faults"}'
is "$STATUS/$(j .execution.status)" 200/succeeded "per-session: the next message succeeds"

# The same manager state, now in server mode.
kill -TERM "$STACK_OCPMD_PID"
wait "$STACK_OCPMD_PID" 2>/dev/null
export OCPM_MODE=server
stack_start_ocpmd || { echo "Bail out! ocpmd did not restart in server mode"; exit 1; }
req GET /api/opencode/status
is "$(j .processManager.mode)" server "restarted in server mode"
SPID=$(j .server.pid)
for k in fail500 stall; do req POST /api/sessions "{\"id\":\"server-$k\"}"; done
model_fault server fail500
model_fault server stall
req GET /api/opencode/status
is "$(j .server.pid)/$(j .server.healthy)" "$SPID/true" "server: the same server stays healthy through both"
req POST /api/sessions/server-stall/messages '{"text":"after the faults"}'
is "$STATUS/$(j .execution.status)/$(j .execution.mode)" 200/succeeded/server "server: the next message succeeds"
is "$(sql "select count(*) from executions where status in ('queued','running')")" 0 "no row is left unfinished"
t_done
