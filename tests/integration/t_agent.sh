#!/usr/bin/env bash
# The agent's side of a turn, server mode, through real nginx with the fake `opencode serve`:
# permission and question prompts relayed, answered and refused (404/409/400, another user's);
# every tool call audited with the files changed; events with ids, replayed and followed after a
# reconnect; the session's diff; prompts lost when the server dies; webhooks signed and retried
# against a receiver that fails twice.
. "$(dirname "$0")/lib.sh"
export OCPM_MODE=server OCPM_HEARTBEAT_INTERVAL=300ms OCPM_HEALTH_TIMEOUT=300ms OCPM_HEALTH_FAILURES=2
export OCPM_RESTART_BACKOFF_MAX=2s OCPM_SERVER_START_TIMEOUT=8s OCPM_FALLBACK=no OCPM_FALLBACK_WAIT=20s
export STACK_HTPASSWD_USERS="alice:apw bob:bpw"
REQ_AUTH="-u alice:apw"
HOOKS=$(mktemp /tmp/ocpm-hooks-XXXXXX)
python3 "$SRC/tests/fakes/webhook_receiver.py" --log "$HOOKS" --fail-first 2 >"$HOOKS.out" 2>&1 &
HOOK_PID=$!
wait_until 10 grep -q listening "$HOOKS.out" || { echo "Bail out! the webhook receiver did not start"; exit 1; }
export OCPM_WEBHOOK_URL="http://127.0.0.1:$(sed -n 's|.*127.0.0.1:\([0-9]*\).*|\1|p' "$HOOKS.out")/hook"
export OCPM_WEBHOOK_SECRET="s3cret" OCPM_WEBHOOK_ATTEMPTS=3
t_start
# The receiver goes with the test however it ends (t_done clears the EXIT trap: hook_stop first).
hook_stop() { kill "$HOOK_PID" 2>/dev/null; wait "$HOOK_PID" 2>/dev/null; rm -f "$HOOKS" "$HOOKS.out"; }
trap 'hook_stop; t_cleanup' EXIT

finished() { req GET "/api/executions/$1"; [ "$(j .status)" != queued ] && [ "$(j .status)" != running ]; }
pending() { req GET "/api/sessions/$1/$2?status=pending"; [ "$(j ".$2 | length")" = 1 ]; }
# async SESSION TEXT: queue a message without waiting; ID is its execution.
async() {
    req POST "/api/sessions/$1/messages" "{\"text\":\"$2\"}" -H 'Prefer: respond-async'
    ID=$(j .execution_id)
}

# --- a permission, answered once, as the client sees it ------------------------------------------
req POST /api/sessions '{"id":"w"}'
curl -sN --max-time 60 -u alice:apw -H 'Accept: text/event-stream' -H 'Content-Type: application/json' \
    -X POST --data-binary '{"text":"read it [[permission]] [[tools]]"}' "$BASE/api/sessions/w/messages" >"$TDIR/turn.sse" &
SSE=$!
check "the permission is pending" wait_until 20 pending w permissions
P=$(j '.permissions[0].id')
like "$P" '^per_[0-9]+_[0-9]+$' "its id is ocpm's own, not the agent's"
is "$(j '.permissions[0] | [.permission, (.patterns|join(",")), .tool.name, .status] | join(" ")')" \
    "external_directory /etc/* read pending" "a record: what, which patterns, which tool call, pending"
check "the stream announced it with the same record" grep -q "\"id\":\"$P\".*\"status\":\"pending\"" "$TDIR/turn.sse"
req POST "/api/sessions/w/permissions/$P" '{"reply":"once"}' -u bob:bpw
is "$STATUS" 404 "another user cannot answer it (404)"
req POST "/api/sessions/w/permissions/$P" '{"reply":"sometimes"}'
is "$STATUS:$(j .error.code)" "400:invalid_field" "a reply that is not once/always/reject: 400"
req POST "/api/sessions/w/permissions/$P" '{"message":"x"}'
is "$STATUS:$(j .error.code)" "400:missing_field" "no reply: 400"
req POST "/api/sessions/w/permissions/$P" '{"reply":"once","extra":1}'
is "$STATUS:$(j .error.code)" "400:unknown_field" "an unknown field: 400"
req POST "/api/sessions/w/permissions/$P" "{\"reply\":\"once\",\"message\":\"$(head -c 5000 /dev/zero | tr '\0' m)\"}"
is "$STATUS" 400 "a message over 4096 bytes: 400"
req POST "/api/sessions/w/permissions/per_unknown" '{"reply":"once"}'
is "$STATUS:$(j .error.code)" "404:prompt_not_found" "an unknown request: 404"
req POST "/api/sessions/w/permissions/bad.id" '{"reply":"once"}'
is "$STATUS:$(j .error.code)" "400:invalid_id" "a malformed request id: 400"
req POST "/api/sessions/w/permissions/$P" '{"reply":"once","message":"go ahead"}'
is "$STATUS" 200 "the owner answers once: 200"
is "$(j '[.status, .reply, .message, .repliedBy] | join(" ")')" "allowed once go ahead alice" "the record says who allowed it"
req POST "/api/sessions/w/permissions/$P" '{"reply":"reject"}'
is "$STATUS:$(j .error.code)" "409:not_pending" "answered twice: 409"
wait "$SSE"
check "the turn went on: the tool ran and the answer says so" grep -q 'permission: once, go ahead' "$TDIR/turn.sse"
check "the stream carried permission.replied" grep -q '^event: permission.replied' "$TDIR/turn.sse"
is "$(grep -c '^id: ' "$TDIR/turn.sse")" "$(grep -c '^data: ' "$TDIR/turn.sse")" "every event carries an id"
is "$(grep '^id: ' "$TDIR/turn.sse" | awk '{print $2}' | tr '\n' ' ')" "$(seq 1 "$(grep -c '^id: ' "$TDIR/turn.sse")" | tr '\n' ' ')" \
    "ids increase by one from 1"
check "and it ends with done" sh -c "grep '^event: ' '$TDIR/turn.sse' | tail -1 | grep -q 'event: done'"
# The assistant message names its directory (path.cwd, as opencode's does): every turn has one.
check "opencode's events name the workspace as /workspace" grep -q '"cwd":"/workspace"' "$TDIR/turn.sse"
if grep -q -e "$STACK_DIR" -e "$TDIR" "$TDIR/turn.sse"; then not_ok "and no server path reaches the client"
else ok "and no server path reaches the client"; fi
EX=$(grep -A1 '^event: done' "$TDIR/turn.sse" | sed -n 's/^data: //p' | jq -r .execution.id)

# --- the audit ---------------------------------------------------------------------------------
req GET "/api/executions/$EX"
is "$(j '[.tools[] | .tool + ":" + .status] | join(" ")')" "bash:completed grep:error read:completed" \
    "every tool call is recorded, in order, with its status"
is "$(j '.tools[0].input.command')" "echo hi > made.txt" "with its input"
is "$(j '.tools[1].error')" "no pattern" "and its error"
like "$(j '.tools[0].durationMs')" '^[0-9.]+$' "and its duration"
is "$(j '.changes | [.files, .additions, .deletions] | join(" ")')" "1 1 0" "the files it changed (opencode's summary)"
is "$(j '.permissions | length'):$(j '.permissions[0].status')" "1:allowed" "and its permission record"
is "$(sql "select count(*) from tool_calls where execution_id=$EX")" 3 "tool calls are rows of tool_calls"
is "$(sql "select calls from tool_usage where tool='bash' and status='completed'")" 1 "the tool_usage view counts them"
like "$(curl -s -u alice:apw "$BASE/metrics")" 'ocpm_tool_calls_total\{tool="grep",status="error"\} 1' "/metrics counts tool calls by tool and status"
req GET /api/stats
like "$(j '[.tool_calls[] | .tool + ":" + .status + "=" + (.calls|tostring)] | sort | join(" ")')" \
    'bash:completed=1 grep:error=1 read:completed=1' "/api/stats counts them too"
like "$("${OCPMCTL:-$SRC/ocpmctl}" --db "$DB" show "$EX" 2>&1)" 'tools\[0\]\.tool +bash' \
    "ocpmctl show lists them"
req GET /api/sessions/w/diff
is "$STATUS:$(j '.files[0].file'):$(j .additions)" "200:made.txt:1" "the session's diff comes from the server"
req GET /api/sessions/w/diff "" -u bob:bpw
is "$STATUS" 404 "not for another user"

# --- events: replay, reconnect, follow -----------------------------------------------------------
N=$(grep -c '^id: ' "$TDIR/turn.sse")
curl -sN -u alice:apw "$BASE/api/executions/$EX/events" >"$TDIR/replay.sse"
is "$(grep -c '^id: ' "$TDIR/replay.sse")" "$N" "a finished execution's events are replayed, all of them"
is "$(grep -v '^: ' "$TDIR/replay.sse")" "$(grep -v '^: ' "$TDIR/turn.sse")" "exactly as they were sent"
curl -sN -u alice:apw -H "Last-Event-ID: $((N - 2))" "$BASE/api/executions/$EX/events" >"$TDIR/tail.sse"
is "$(grep '^id: ' "$TDIR/tail.sse" | tr '\n' ' ')" "id: $((N - 1)) id: $N " "Last-Event-ID: only what came after it"
curl -sN -u alice:apw "$BASE/api/executions/$EX/events?after=$((N - 1))" >"$TDIR/after.sse"
is "$(grep -c '^id: ' "$TDIR/after.sse"):$(grep '^event: ' "$TDIR/after.sse")" "1:event: done" "?after=N the same"
req GET "/api/executions/$EX/events?after=-1"
is "$STATUS" 400 "a negative after: 400"
req GET "/api/executions/$EX/events" "" -H 'Last-Event-ID: x1'
is "$STATUS:$(j .error.code)" "400:invalid_header" "a Last-Event-ID that is not an id: 400"
req GET "/api/executions/$EX/events" "" -u bob:bpw
is "$STATUS" 404 "another user's execution's events: 404"

# A client that drops off mid-turn and reconnects with its last id gets the rest, each event once.
async w "follow [[question]]"
Q_EX=$ID
curl -sN --max-time 30 -u alice:apw "$BASE/api/executions/$Q_EX/events" >"$TDIR/first.sse" &
FIRST=$!
check "the question is pending" wait_until 20 pending w questions
Q=$(j '.questions[0].id')
check "the follower saw it asked" wait_until 10 grep -q '^event: question.asked' "$TDIR/first.sse"
kill "$FIRST"
wait "$FIRST" 2>/dev/null
LAST=$(grep '^id: ' "$TDIR/first.sse" | tail -1 | awk '{print $2}')
curl -sN --max-time 30 -u alice:apw -H "Last-Event-ID: $LAST" "$BASE/api/executions/$Q_EX/events" >"$TDIR/second.sse" &
SECOND=$!
check "the second connection is following" wait_until 10 grep -q '^: stream open' "$TDIR/second.sse"
req POST "/api/sessions/w/questions/$Q" '{"answers":[["blue"]],"reject":true}'
is "$STATUS" 400 "answers and reject together: 400"
req POST "/api/sessions/w/questions/$Q" '{"answers":[[]],"x":1}'
is "$STATUS" 400 "an unknown field: 400"
req POST "/api/sessions/w/questions/$Q" '{"answers":"blue"}'
is "$STATUS" 400 "answers that are not arrays of labels: 400"
req POST "/api/sessions/w/questions/$Q" '{"answers":[["blue"]]}'
is "$STATUS:$(j .status):$(printf '%s' "$BODY" | jq -c .reply.answers)" '200:answered:[["blue"]]' "the owner answers the question"
wait "$SECOND"
cat "$TDIR/first.sse" "$TDIR/second.sse" | grep '^id: ' | awk '{print $2}' >"$TDIR/ids"
is "$(sort -n "$TDIR/ids" | uniq -d | wc -l)" 0 "across the reconnect no event came twice"
is "$(sort -n "$TDIR/ids" | tr '\n' ' ')" "$(seq 1 "$(wc -l <"$TDIR/ids")" | tr '\n' ' ')" "and none was missed"
check "the second stream ends with done" grep -q '^event: done' "$TDIR/second.sse"
check "the answer reached the agent" grep -q 'answers: \[\[\\"blue\\"\]\]' "$TDIR/second.sse"

async w "again [[question]]"
check "another question is pending" wait_until 20 pending w questions
req POST "/api/sessions/w/questions/$(j '.questions[0].id')" '{"reject":true}'
is "$STATUS:$(j .status)" "200:rejected" "a question can be rejected"
check "the turn goes on" wait_until 20 finished "$ID"
like "$(j .answer)" 'question rejected' "and the agent was told"
req GET /api/sessions/w/questions
is "$(j '[.questions[].status] | join(" ")')" "answered rejected" "the session's questions, oldest first"

# --- what the agent's server says cannot pick records or fake answers ---------------------------------
req POST /api/sessions '{"id":"g"}'
async g "ghost [[ghost]]"
G_EX=$ID
check "a request opencode does not know is pending" wait_until 20 pending g permissions
G=$(j '.permissions[0].id')
req POST "/api/sessions/g/permissions/$G" '{"reply":"once"}'
is "$STATUS:$(j .error.code)" "502:opencode_unavailable" "an answer opencode refuses is not recorded as given"
req GET /api/sessions/g/permissions
is "$(j '.permissions[0].status')" pending "the request stays pending"
req POST /api/sessions/g/abort
check "its turn ends" wait_until 20 finished "$G_EX"
req GET /api/sessions/g/permissions
is "$(j '.permissions[0].status')" lost "and the request is lost with it"
async g "twins [[twins]]"
T_EX=$ID
check "two requests with one opencode id are two records" wait_until 20 sh -c "curl -s -u alice:apw '$BASE/api/sessions/g/permissions?status=pending' | jq -e '.permissions | length == 2'"
req POST /api/sessions/g/abort
check "that turn ends too" wait_until 20 finished "$T_EX"
req GET /api/sessions/g/permissions
is "$(j '[.permissions[].id] | unique | length'):$(j '.permissions | length')" "3:3" "no record was replaced"

# --- an answer opencode took stays taken, though the server dies before answering ocpm's request -------
req POST /api/sessions '{"id":"k"}'
async k "taken [[permission]] [[slowreply]]"
K_EX=$ID
check "a permission is pending" wait_until 20 pending k permissions
req POST "/api/sessions/k/permissions/$(j '.permissions[0].id')" '{"reply":"always"}'
is "$STATUS:$(j .status)" "200:allowed" "opencode's own event confirms the answer (its HTTP answer is 30 s late)"
kill -9 "$(curl -s -u alice:apw "$BASE/api/opencode/status" | jq -r .server.pid)"
check "the server dies; the turn ends" wait_until 20 finished "$K_EX"
req GET /api/sessions/k/permissions
is "$(j '.permissions[0] | .status + " " + .reply')" "allowed always" "the record stays as opencode took it, not lost"
check "the server comes back" wait_until 30 sh -c "[ \"\$(curl -s -u alice:apw '$BASE/api/opencode/status' | jq -r .server.state)\" = ready ]"

# --- a prompt outlives no server ----------------------------------------------------------------
req POST /api/sessions '{"id":"l"}'
async l "lost [[permission]]"
check "a permission is pending" wait_until 20 pending l permissions
SPID=$(curl -s -u alice:apw "$BASE/api/opencode/status" | jq -r .server.pid)
kill -9 "$SPID"
check "the message fails when the server dies" wait_until 20 finished "$ID"
req GET /api/sessions/l/permissions
is "$(j '.permissions[0] | .status + " " + .repliedBy')" "lost ocpm" "its permission is lost"
req POST "/api/sessions/l/permissions/$(j '.permissions[0].id')" '{"reply":"once"}'
is "$STATUS" 409 "and cannot be answered any more"

# --- webhooks ----------------------------------------------------------------------------------
hook_events() { jq -r 'select(.answered == 204) | .headers["X-Ocpm-Event"]' "$HOOKS" | sort | tr '\n' ' '; }
check "every finished execution and every prompt is delivered" \
    wait_until 30 sh -c "[ \$(jq -r 'select(.answered == 204)' '$HOOKS' | jq -s length) -ge 15 ]"
like "$(hook_events)" 'execution.finished.*permission.asked.*question.asked' "execution.finished, permission.asked, question.asked"
D=$(jq -r 'select(.headers["X-Ocpm-Event"] == "permission.asked") | .headers["X-Ocpm-Delivery"]' "$HOOKS" | head -1)
is "$(jq -r "select(.headers[\"X-Ocpm-Delivery\"] == \"$D\") | .answered" "$HOOKS" | tr '\n' ' ')" "500 500 204 " \
    "a delivery the receiver refused twice was tried a third time"
is "$(sql "select status || ' ' || attempts || ' ' || http_status from webhook_deliveries where delivery='$D'")" \
    "delivered 3 204" "and recorded with its attempts"
VALID=$(python3 - "$HOOKS" <<'PY'
import hashlib, hmac, json, sys
bad = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    want = "sha256=" + hmac.new(b"s3cret", r["body"].encode(), hashlib.sha256).hexdigest()
    bad += r["headers"].get("X-Ocpm-Signature") != want
print("bad=%d" % bad)
PY
)
is "$VALID" "bad=0" "every delivery is signed: HMAC-SHA256 of its body with webhook_secret"
is "$(jq -r "select(.headers[\"X-Ocpm-Delivery\"] == \"$D\") | .body" "$HOOKS" | head -1 | jq -r '.data.permission + " " + .data.status')" \
    "external_directory pending" "the body carries the prompt's record"

hook_stop
t_done
