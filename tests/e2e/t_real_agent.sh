#!/usr/bin/env bash
# The agent's side of a turn end to end: the real opencode and the offline model, which calls a tool
# when the message carries [[tool:NAME {json}]]. Server mode: a permission answered once (the tool
# runs and its result reaches the model), one rejected, one that times out; a question answered; a
# bash call audited with its command and the file it made counted in the changes and the diff.
# Per-message mode: opencode run's own rejection recorded.
. "$(dirname "$0")/../integration/lib.sh"
t_real_opencode
export OCPM_MODE=server OCPM_RUN_TIMEOUT=180s OCPM_SERVER_START_TIMEOUT=120s OCPM_HEARTBEAT_INTERVAL=2s
t_start

finished() { req GET "/api/executions/$1"; [ "$(j .status)" != queued ] && [ "$(j .status)" != running ]; }
pending() { req GET "/api/sessions/$1/$2?status=pending"; [ "$(j ".$2 | length")" = 1 ]; }
# send SESSION TEXT: queue a message without waiting; ID is its execution.
send() {
    req POST "/api/sessions/$1/messages" "$(jq -cn --arg t "$2" '{text: $t}')" -H 'Prefer: respond-async'
    ID=$(j .execution_id)
}
READ='please [[tool:read {"filePath":"/etc/hostname"}]]'
server_ready() { [ "$(curl -s "$BASE/api/opencode/status" | jq -r .server.state)" = ready ]; }

req POST /api/sessions '{"id":"a"}'
curl -sN --max-time 200 -H 'Accept: text/event-stream' -H 'Content-Type: application/json' -X POST \
    --data-binary "$(jq -cn --arg t "$READ" '{text: $t}')" "$BASE/api/sessions/a/messages" >"$TDIR/turn.sse" &
SSE=$!
check "opencode asks for external_directory: the permission is pending" wait_until 120 pending a permissions
is "$(j '.permissions[0] | .permission + " " + (.patterns | join(",")) + " " + .tool.name')" \
    "external_directory /etc/* read" "opencode's request, with the tool call it is about"
P=$(j '.permissions[0].id')
req POST "/api/sessions/a/permissions/$P" '{"reply":"once"}'
is "$STATUS:$(j .status)" "200:allowed" "answered once"
wait "$SSE"
check "the stream carried permission.asked" grep -q '^event: permission.asked' "$TDIR/turn.sse"
if grep -q "$TDIR" "$TDIR/turn.sse"; then not_ok "opencode's events reach the client without server paths" "$(grep -o ".\{40\}$TDIR.\{20\}" "$TDIR/turn.sse" | head -2)"
else ok "opencode's events reach the client without server paths"; fi
EX=$(grep -A1 '^event: done' "$TDIR/turn.sse" | sed -n 's/^data: //p' | jq -r .execution.id)
req GET "/api/executions/$EX"
is "$(j .status)" succeeded "the turn completes"
like "$(j .answer)" 'tool read answered .*/etc/hostname' "the tool ran and its result reached the model"
is "$(j '.tools[0] | .tool + " " + .status + " " + .input.filePath')" "read completed /etc/hostname" "the read is audited"
cp "$TDIR/turn.sse" "$TDIR/transcript.sse"

send a "$READ"
check "a second permission is pending" wait_until 120 pending a permissions
req POST "/api/sessions/a/permissions/$(j '.permissions[0].id')" '{"reply":"reject","message":"not /etc"}'
is "$STATUS:$(j .status)" "200:rejected" "rejected"
check "the turn ends" wait_until 120 finished "$ID"
is "$(j '.tools[0] | .tool + " " + .status')" "read error" "the read did not run"
like "$(j '.tools[0].error')" 'rejected|not /etc' "opencode says why"

Q='ask [[tool:question {"questions":[{"question":"Which color?","header":"Color","options":[{"label":"red","description":"warm"},{"label":"blue","description":"cold"}]}]}]]'
send a "$Q"
check "opencode asks a question" wait_until 120 pending a questions
is "$(j '.questions[0].questions[0].question')" "Which color?" "the question, as the agent asked it"
req POST "/api/sessions/a/questions/$(j '.questions[0].id')" '{"answers":[["blue"]]}'
is "$STATUS:$(j .status)" "200:answered" "answered"
check "the turn completes" wait_until 120 finished "$ID"
like "$(j .answer)" 'Which color\?.*=.*blue' "the answer reached the model"

req POST /api/sessions '{"id":"b"}'
req POST /api/sessions/b/messages "$(jq -cn '{text: "make [[tool:bash {\"command\":\"printf \\\"a\\\\nb\\\\n\\\" > made.txt\",\"description\":\"make a file\"}]]"}')"
is "$STATUS" 200 "a bash call"
req GET "/api/executions/$(j .execution.id)"
is "$(j '.tools[0] | .tool + " " + .status')" "bash completed" "is audited"
like "$(j '.tools[0].input.command')" 'made.txt' "with its command"
is "$(j '.changes | [.files, .additions, .deletions] | join(" ")')" "1 2 0" "the file it made is counted in the changes"
req GET /api/sessions/b/diff
is "$STATUS:$(j '.files[0].file'):$(j .additions)" "200:made.txt:2" "and in the session's diff"

stack_stop_ocpmd
export OCPM_PERMISSION_TIMEOUT=1s
stack_start_ocpmd
check "the manager is back with permission_timeout = 1s" wait_until 120 server_ready
send a "$READ"
check "nobody answers: the turn ends anyway" wait_until 120 finished "$ID"
is "$(j '.permissions[0] | .status + " " + .repliedBy')" "timeout timeout" "the permission timed out, rejected by ocpm"

stack_stop_ocpmd
export OCPM_MODE=per-session
stack_start_ocpmd
# A new session: per message, opencode keeps its conversations in each user's agent home, not in
# the server's, so the server's conversations do not continue here (docs/api.md).
req POST /api/sessions '{"id":"p"}'
req POST /api/sessions/p/messages "$(jq -cn --arg t "$READ" '{text: $t}')"
is "$STATUS" 200 "per-message mode: opencode run decides alone"
req GET "/api/executions/$(j .execution.id)"
is "$(j '.permissions[0] | .permission + " " + .status + " " + .repliedBy')" "external_directory rejected opencode" \
    "its auto-rejection is recorded"
is "$(j '.tools[0] | .tool + " " + .status')" "read error" "and the read it refused"

# The closing note shows this transcript of one turn with a permission prompt.
if [ -n "${OCPM_TRANSCRIPT:-}" ]; then cp "$TDIR/transcript.sse" "$OCPM_TRANSCRIPT"; fi
t_done
