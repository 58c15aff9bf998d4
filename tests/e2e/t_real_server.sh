#!/usr/bin/env bash
# End to end in server mode with the real opencode (`opencode serve`) and the offline model:
# answers, continuity across messages and across a restart of the server, SSE deltas before done,
# 16 sessions at once all succeeding while exactly one opencode process serves them.
. "$(dirname "$0")/../integration/lib.sh"
t_real_opencode
export OCPM_MODE=server OCPM_RUN_TIMEOUT=180s OCPM_MAX_CONCURRENT_RUNS=32
export OCPM_SERVER_START_TIMEOUT=120s OCPM_HEARTBEAT_INTERVAL=2s
t_start

req GET /api/opencode/status
is "$(j .processManager.mode)" server "server mode with the real opencode"
is "$(j .server.healthy)" true "the server is healthy"
SPID=$(j .server.pid)

req POST /api/sessions '{"id":"r1"}'
req POST /api/sessions/r1/messages '{"text":"hello server"}'
is "$STATUS" 200 "a message through opencode serve answers 200"
like "$(j .text)" 'offline-model: you said .*hello server.*user turns: 1' "with the model's answer"
is "$(j .execution.mode)" server "recorded as server mode"
OCS=$(j .execution.opencode_session_id)
req POST /api/sessions/r1/messages '{"text":"second turn"}'
like "$(j .text)" 'user turns: 2, earlier: .*hello server' "the model received the earlier turn"
is "$(j .execution.opencode_session_id)" "$OCS" "in the same opencode session"

curl -sN -H 'Accept: text/event-stream' -H 'Content-Type: application/json' -X POST \
    --data-binary '{"text":"stream please"}' "$BASE/api/sessions/r1/messages" >"$TDIR/sse"
first_delta=$(grep -n '^event: message.part.delta' "$TDIR/sse" | head -1 | cut -d: -f1)
done_line=$(grep -n '^event: done' "$TDIR/sse" | head -1 | cut -d: -f1)
if [ -n "$first_delta" ] && [ -n "$done_line" ] && [ "$first_delta" -lt "$done_line" ]; then
    ok "SSE deltas arrive before done"
else
    not_ok "SSE deltas arrive before done" "$(grep '^event:' "$TDIR/sse" | sort | uniq -c | tr '\n' ' ')"
fi

kill -9 "$SPID"
server_back() { [ "$(curl -s "$BASE/api/opencode/status" | jq -r '.server.healthy and .server.restarts == 1')" = true ]; }
check "a killed server is restarted" wait_until 120 server_back
req POST /api/sessions/r1/messages '{"text":"after the restart"}'
is "$(j .execution.mode)" server "the next message goes to the new server"
like "$(j .text)" 'user turns: 4, earlier: .*stream please' "the conversation continues across the restart"

ids=()
for i in $(seq 1 16); do
    req POST /api/sessions "{\"id\":\"c$i\"}"
    req POST "/api/sessions/c$i/messages" "{\"text\":\"concurrent $i\"}" -H 'Prefer: respond-async'
    ids+=("$(j .execution_id)")
done
list=$(IFS=,; echo "${ids[*]}")
SPID=$(curl -s "$BASE/api/opencode/status" | jq -r .server.pid)
# opencode processes meanwhile: those named opencode in the server's process group, plus any
# `opencode run` of this test's workspaces. A pid of the group counts when two samples saw it: the
# server forks helpers (git, for its snapshots in each workspace's own repository), and a child
# between fork and exec is a copy of the server, with its name and its command line, for a moment
# (measured: a second "opencode serve --port P" pid, gone before the next sample).
grouped=""
maxruns=0
sample() {
    local r
    grouped+=" $(pgrep -x opencode -g "$SPID" | tr '\n' ' ')"
    r=$(t_pids runs | wc -l)
    [ "$r" -gt "$maxruns" ] && maxruns=$r
    [ "$(sql "select count(*) from executions where id in ($list) and status not in ('queued','running')")" = 16 ]
}
check "16 sessions at once all finish" wait_until 180 sample
is "$(sql "select count(*) from executions where id in ($list) and status='succeeded' and mode='server'")" 16 \
    "all 16 succeeded through the server"
lasting=$(printf '%s\n' $grouped | sort | uniq -c | awk '$1 >= 2' | wc -l)
is "$((lasting + maxruns))" 1 "exactly one opencode process existed meanwhile"
echo "# pids named opencode in the server's group: $(printf '%s\n' $grouped | sort -u | wc -l) seen, $lasting in two samples or more"
t_done
