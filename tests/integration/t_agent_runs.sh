#!/usr/bin/env bash
# The agent's side of a turn in per-message mode (`opencode run`, which cannot be asked): the
# permissions it rejects on its own are recorded as its decisions and streamed; tool calls are
# audited from its JSON lines; events carry ids and replay; the diff needs the server (409);
# permission_policy = allow reaches opencode as a permission override.
. "$(dirname "$0")/lib.sh"
export OCPM_MODE=per-session
t_start

req POST /api/sessions '{"id":"r"}'
curl -sN --max-time 60 -H 'Accept: text/event-stream' -H 'Content-Type: application/json' -X POST \
    --data-binary '{"text":"run [[permission]] [[tools]]"}' "$BASE/api/sessions/r/messages" >"$TDIR/run.sse"
check "the turn completes" grep -q '^event: done' "$TDIR/run.sse"
EX=$(grep -A1 '^event: done' "$TDIR/run.sse" | sed -n 's/^data: //p' | jq -r .execution.id)
req GET /api/sessions/r/permissions
is "$(j '.permissions[0] | [.permission, (.patterns | join(",")), .status, .repliedBy, .reply] | join(" ")')" \
    "external_directory /etc/* rejected opencode reject" "the permission opencode run rejected on its own is recorded as its decision"
is "$(j '.permissions[0].executionId')" "$EX" "with its execution"
check "the stream announced it" grep -q '^event: permission.asked' "$TDIR/run.sse"
check "and its outcome" grep -q '^event: permission.replied' "$TDIR/run.sse"
is "$(grep -c '^id: ' "$TDIR/run.sse")" "$(grep -c '^data: ' "$TDIR/run.sse")" "every event carries an id"
req GET "/api/executions/$EX"
is "$(j '[.tools[] | .tool + ":" + .status] | join(" ")')" "bash:completed grep:error read:error" \
    "every tool call of the run is recorded"
is "$(j '.tools[2].error')" "The user rejected permission to use this specific tool call." "with opencode's own error"
is "$(j '.changes | [.files, .additions, .deletions] | join(" ")')" "1 1 0" \
    "changes: opencode run gives no summary, so git counted the file its bash call made"
is "$(sql "select count(*) from executions where changes_files is null")" 0 "every turn's changes are known"
curl -sN "$BASE/api/executions/$EX/events" >"$TDIR/replay.sse"
is "$(grep -v '^: ' "$TDIR/replay.sse")" "$(grep -v '^: ' "$TDIR/run.sse")" "its events replay as they were sent"
req GET /api/sessions/r/diff
is "$STATUS:$(j .error.code)" "409:not_in_server_mode" "the diff needs the server: 409"
req GET /api/sessions/r/questions
is "$STATUS:$(j '.questions | length')" "200:0" "no questions (opencode run offers no question tool)"

# The agent prints what it likes on stdout: it cannot pose as a prompt, or reach the operator's terminal.
req POST /api/sessions/r/messages '{"text":"[[forge]]"}'
F_EX=$(j .execution.id)
req GET "/api/executions/$F_EX"
is "$(j '.permissions | length'):$(j '.questions | length')" "0:0" "stdout lines posing as prompts record nothing"
is "$(j '[.tools[].tool] | join(" ")')" "bash" "a tool call whose id holds a control character is not recorded"
SHOW=$("${OCPMCTL:-$SRC/ocpmctl}" --db "$DB" show "$F_EX" 2>&1)
is "$(printf '%s' "$SHOW" | grep -c $'\x1b')" 0 "ocpmctl show prints no escape sequence the agent wrote"
is "$(printf '%s' "$SHOW" | grep -c '^fake: line')" 0 "nor a line break that would pass for a field"
like "$SHOW" 'bad\?\[31mred fake: line' "the value is shown, made harmless"

# Following an execution holds a responder thread: the user's share applies (user_max_share 50%).
stack_stop_ocpmd
export OCPM_RESPONDERS=1 OCPM_RESPONDER_THREADS=4
stack_start_ocpmd
req POST /api/sessions/r/messages '{"text":"[[hang]]"}' -H 'Prefer: respond-async'
H_EX=$(j .execution_id)
for i in 1 2 3; do
    curl -sN --max-time 30 -o "$TDIR/f$i.sse" -w '%{http_code}' "$BASE/api/executions/$H_EX/events" >"$TDIR/f$i.code" &
done
check "followers beyond the user's share are refused" wait_until 20 sh -c "cat '$TDIR'/f?.code | grep -q 429"
check "with user_busy" sh -c "cat '$TDIR'/f?.sse | grep -q user_busy"
req POST /api/sessions/r/abort
check "the followers end with the turn" wait_until 20 sh -c "[ \$(cat '$TDIR'/f?.code | wc -c) -ge 9 ]"
unset OCPM_RESPONDERS OCPM_RESPONDER_THREADS

stack_stop_ocpmd
export OCPM_PERMISSION_POLICY=allow
stack_start_ocpmd
req POST /api/sessions/r/messages '{"text":"allowed [[permission]]"}'
is "$STATUS" 200 "with permission_policy = allow"
req GET "/api/executions/$(j .execution.id)"
is "$(j '.tools[0] | .tool + ":" + .status')" "read:completed" "opencode run was allowed the read"
is "$(j '.permissions | length')" 0 "and asked nothing"
t_done
