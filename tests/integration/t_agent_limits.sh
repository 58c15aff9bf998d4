#!/usr/bin/env bash
# The agent's prompts at their limits, server mode, through real nginx with the fake `opencode
# serve`: nobody answers (permission_timeout, question_timeout: rejected, the turn goes on); a
# recycle due while a permission is pending waits for it; permission_policy allow and reject
# answer at once; events past events_max are sent but not kept; store_prompts = no keeps a tool
# call's input as its size and digest only.
. "$(dirname "$0")/lib.sh"
export OCPM_MODE=server OCPM_HEARTBEAT_INTERVAL=300ms OCPM_HEALTH_TIMEOUT=1s OCPM_HEALTH_FAILURES=3
export OCPM_SERVER_START_TIMEOUT=8s OCPM_FALLBACK=no OCPM_FALLBACK_WAIT=20s
export OCPM_PERMISSION_TIMEOUT=1s OCPM_QUESTION_TIMEOUT=1s OCPM_SERVER_MAX_MESSAGES=2
t_start

finished() { req GET "/api/executions/$1"; [ "$(j .status)" != queued ] && [ "$(j .status)" != running ]; }
pending() { req GET "/api/sessions/$1/$2?status=pending"; [ "$(j ".$2 | length")" = 1 ]; }
async() {
    req POST "/api/sessions/$1/messages" "{\"text\":\"$2\"}" -H 'Prefer: respond-async'
    ID=$(j .execution_id)
}
server_pid() { curl -s "$BASE/api/opencode/status" | jq -r .server.pid; }
server_state() { curl -s "$BASE/api/opencode/status" | jq -r .server.state; }

# --- nobody answers ------------------------------------------------------------------------------
SPID0=$(server_pid)
req POST /api/sessions '{"id":"t"}'
async t "wait [[permission]]"
check "an unanswered permission ends the turn's wait" wait_until 20 finished "$ID"
is "$(j .status)" succeeded "the turn goes on and completes"
like "$(j .answer)" 'permission: reject' "the agent was told no"
is "$(j '.permissions[0] | .status + " " + .repliedBy + " " + .reply')" "timeout timeout reject" \
    "recorded as timed out, rejected by ocpm"
req GET "/api/sessions/t/permissions?status=timeout"
is "$(j '.permissions | length')" 1 "listed by status"
req GET "/api/sessions/t/permissions?status=maybe"
is "$STATUS" 400 "an unknown status filter: 400"
async t "ask [[question]]"
check "an unanswered question ends the same way" wait_until 20 finished "$ID"
like "$(j .answer)" 'question rejected' "the agent's question was rejected"
is "$(j '.questions[0].status')" timeout "recorded as timed out"
# The next message on the server reaches server_max_messages: the server recycles, with nobody waiting.
check "the server recycles after server_max_messages" wait_until 30 sh -c "[ \"\$(curl -s '$BASE/api/opencode/status' | jq -r .server.pid)\" != $SPID0 ] && [ \"\$(curl -s '$BASE/api/opencode/status' | jq -r .server.state)\" = ready ]"

# --- a recycle waits for a pending permission --------------------------------------------------
req POST /api/sessions '{"id":"r1"}'
req POST /api/sessions '{"id":"r2"}'
# Long enough to answer by hand: this stack's timeouts are 1 s, so restart with a longer one.
stack_stop_ocpmd
export OCPM_PERMISSION_TIMEOUT=60s
stack_start_ocpmd
check "the manager is back" wait_until 20 sh -c "[ \"\$(curl -s '$BASE/api/opencode/status' | jq -r .server.state)\" = ready ]"
SPID=$(server_pid)
req POST /api/sessions/r2/messages '{"text":"first"}'
is "$STATUS" 200 "a first message on the new server"
async r1 "hold [[permission]]"
P_EX=$ID
check "a permission is pending" wait_until 20 pending r1 permissions
P=$(j '.permissions[0].id')
req POST /api/sessions/r2/messages '{"text":"plain"}'
is "$STATUS" 200 "another session's message is served meanwhile"
check "that message makes the server due for recycling: it drains" wait_until 10 sh -c "[ \"\$(curl -s '$BASE/api/opencode/status' | jq -r .server.state)\" = draining ]"
is "$(server_pid)" "$SPID" "the server with the pending permission is still the same process"
req POST "/api/sessions/r1/permissions/$P" '{"reply":"always"}'
is "$STATUS:$(j .status)" "200:allowed" "the permission is answered on the draining server"
check "its turn completes" wait_until 20 finished "$P_EX"
is "$(j .status)" succeeded "and succeeds"
like "$(j .answer)" 'permission: always' "with the answer it was given"
check "then the server recycles" wait_until 30 sh -c "[ \"\$(curl -s '$BASE/api/opencode/status' | jq -r .server.pid)\" != $SPID ] && [ \"\$(curl -s '$BASE/api/opencode/status' | jq -r .server.state)\" = ready ]"

# --- policies, bounds, digests -----------------------------------------------------------------
stack_stop_ocpmd
export OCPM_PERMISSION_POLICY=reject OCPM_STORE_PROMPTS=no OCPM_SERVER_MAX_MESSAGES=0
stack_start_ocpmd
check "the manager restarted with permission_policy = reject" wait_until 20 sh -c "[ \"\$(curl -s '$BASE/api/opencode/status' | jq -r .server.state)\" = ready ]"
req POST /api/sessions/t/messages '{"text":"policy [[permission]] [[tools]]"}'
is "$STATUS" 200 "the turn completes without anyone answering"
like "$(j .text)" 'permission: reject' "the policy rejected it at once"
EX=$(j .execution.id)
req GET "/api/executions/$EX"
is "$(j '.permissions[0] | .status + " " + .repliedBy')" "rejected policy" "recorded as decided by the policy"
is "$(j '.tools[0].input'):$(j '.tools[0].inputBytes'):$(j '.tools[0].inputSha256 | length')" "null:32:64" \
    "store_prompts = no: a tool call's input is kept as its size and SHA-256"
curl -sN "$BASE/api/executions/$EX/events" >"$TDIR/private.sse"
is "$(grep -c '^event: ' "$TDIR/private.sse"):$(grep -c 'fake server answer' "$TDIR/private.sse")" "1:0" \
    "store_prompts = no: no event is stored (they hold the answer): a replay is done alone, without text"
is "$(sql "select count(*) from events where execution_id=$EX")" 0 "the events table has none of its events"
stack_stop_ocpmd
export OCPM_PERMISSION_POLICY=allow OCPM_STORE_PROMPTS=yes OCPM_EVENTS_MAX=5
stack_start_ocpmd
check "the manager restarted with permission_policy = allow" wait_until 20 sh -c "[ \"\$(curl -s '$BASE/api/opencode/status' | jq -r .server.state)\" = ready ]"
req POST /api/sessions/t/messages '{"text":"allowed [[permission]]"}'
like "$(j .text)" 'permission: once' "permission_policy = allow answers once"
EX=$(j .execution.id)
req GET "/api/executions/$EX"
is "$(j '.permissions[0] | .status + " " + .repliedBy')" "allowed policy" "recorded as allowed by the policy"
curl -sN "$BASE/api/executions/$EX/events" >"$TDIR/bounded.sse"
is "$(grep -c '^id: ' "$TDIR/bounded.sse")" 6 "events_max = 5: five events kept, and done"
check "the replay says which ids were not kept" grep -q '^event: events.truncated' "$TDIR/bounded.sse"
check "done keeps its own id, after the ones not kept" sh -c "grep -B1 '^event: done' '$TDIR/bounded.sse' | grep -q '^id: \([7-9]\|[1-9][0-9]\+\)\$'"
t_done
