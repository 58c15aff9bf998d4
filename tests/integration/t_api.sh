#!/usr/bin/env bash
# The HTTP API through real nginx and FastCGI: status shape, sessions, every bad input, ownership.
. "$(dirname "$0")/lib.sh"
export STACK_HTPASSWD_USERS="alice:apw bob:bpw carol:cpw"
REQ_AUTH="-u carol:cpw"
t_start

# --- status and health -------------------------------------------------------
req GET /api/opencode/status
is "$STATUS" 200 "status answers 200"
is "$(j '[has("available","version","runningProcesses","activeStreams","processManager")] | all')" true \
    "status has the original top-level fields"
is "$(j '.processManager | [has("isRunning","isReady","pendingRequests","activeSessions","lastActivity","idleTime","mode","description")] | all')" \
    true "status has the original processManager fields"
is "$(j .processManager.mode)" per-session "mode is per-session"
is "$(j .processManager.description)" "Each message spawns separate OpenCode process" "original description"
is "$(j .available)" true "opencode is available"
is "$(j .version)" "0.0.0-fake" "version comes from opencode --version"
is "$(j .processManager.isRunning)" false "no persistent process in per-session mode"
is "$(j '.runningProcesses|type')" number "runningProcesses is a number"
is "$(j '(.ocpm.heapInUseBytes == null or .ocpm.heapInUseBytes > 0) and .ocpm.database.sqliteMemoryBytes > 0 and .ocpm.database.ok')" \
    true "status reports the heap (null under another allocator), SQLite's memory and a healthy database"
is "$(j '.ocpm.responders | "\(.capacity)/\(.messageCapacity)/\(.refused)"')" 64/56/0 \
    "and the pool's capacity (4 x 16), its limit for messages and no refusal"
req GET /api/health
is "$STATUS" 200 "health is 200 while the manager answers"
req GET /api/ready
is "$STATUS:$(j .ready):$(j '.reasons | length')" "200:true:0" "ready is 200 with no reason while new work would be served"

# --- sessions ----------------------------------------------------------------
req POST /api/sessions '{"id":"s1"}'
is "$STATUS" 201 "create session: 201"
is "$(j .id)" s1 "created session has the id"
is "$(j .workspace)" s1 "workspace defaults to the session id, shown by its name (no server path)"
check "workspace directory was created in the owner's tree" test -d "$STACK_DIR/workspaces/carol/s1"
req POST /api/sessions '{"id":"s1"}'
is "$STATUS" 200 "repeating the same create is idempotent (200)"
req POST /api/sessions '{"id":"s1","workspace":"other"}'
is "$STATUS" 409 "same id with another workspace: 409"
is "$(j .error.code)" session_conflict "conflict has a clear code"
req POST /api/sessions '{}'
is "$STATUS" 201 "create without id generates one"
like "$(j .id)" '^[A-Za-z0-9_-]{1,64}$' "generated id is a valid id"
GEN=$(j .id)
req POST /api/sessions '{"id":"s2","workspace":"team/proj"}'
is "$STATUS" 201 "nested workspace name accepted"
req POST /api/sessions "{\"id\":\"s3\",\"workspace\":\"$STACK_DIR/workspaces/carol/abs\"}"
is "$STATUS/$(j .error.code)" 400/invalid_field "a server path is not a workspace name, even inside the root"
req GET /api/sessions
is "$(j '.sessions | map(.id) | sort | join(",")')" "$(printf '%s\n' s1 s2 "$GEN" | sort | paste -sd,)" \
    "list shows every session"
req GET /api/sessions/s1
is "$STATUS" 200 "get one session"
req GET /api/sessions/missing
is "$STATUS" 404 "unknown session: 404"
is "$(j .error.code)" session_not_found "404 has a JSON error"

# --- bad input: each gets its status and a JSON error, nothing is stored -------
before=$(sql "select count(*) from sessions")
bad() { # bad DESC STATUS CODE METHOD PATH BODY [curl args]
    local d=$1 st=$2 code=$3 m=$4 p=$5 b=$6
    shift 6
    req "$m" "$p" "$b" "$@"
    if [ "$STATUS" = "$st" ] && [ "$(j .error.code)" = "$code" ] && [ -n "$(j .error.message)" ]; then
        ok "$d -> $st $code"
    else
        not_ok "$d -> $st $code" "got $STATUS $BODY"
    fi
}
bad "malformed JSON" 400 invalid_json POST /api/sessions '{"id":'
bad "non-object JSON" 400 invalid_json POST /api/sessions '["s9"]'
bad "wrong type" 400 invalid_field POST /api/sessions '{"id":5}'
bad "unknown field" 400 unknown_field POST /api/sessions '{"id":"s9","admin":true}'
bad "id with a space" 400 invalid_field POST /api/sessions '{"id":"a b"}'
bad "id over 64 chars" 400 invalid_field POST /api/sessions "{\"id\":\"$(printf 'x%.0s' {1..65})\"}"
bad "workspace with .." 400 invalid_field POST /api/sessions '{"id":"s9","workspace":"../escape"}'
bad "absolute workspace outside the root" 400 invalid_field POST /api/sessions '{"id":"s9","workspace":"/etc"}'
ln -s /tmp "$STACK_DIR/workspaces/carol/link-out"
bad "workspace escaping through a symlink" 400 invalid_workspace POST /api/sessions \
    '{"id":"s9","workspace":"link-out/x"}'
check "nothing was created through the symlink" test ! -e /tmp/x-ocpm-never
bad "deeply nested JSON" 400 invalid_json POST /api/sessions "{\"id\":$(printf '[%.0s' {1..50})1$(printf ']%.0s' {1..50})}"
bad "invalid UTF-8" 400 invalid_utf8 POST /api/sessions/s1/messages $'{"text":"\xff\xfe"}'
bad "escaped NUL in text" 400 invalid_field POST /api/sessions/s1/messages '{"text":"a\u0000b"}'
bad "empty text" 400 invalid_field POST /api/sessions/s1/messages '{"text":""}'
bad "missing text" 400 missing_field POST /api/sessions/s1/messages '{"model":"a/b"}'
bad "text of the wrong type" 400 invalid_field POST /api/sessions/s1/messages '{"text":["hi"]}'
bad "bad model" 400 invalid_field POST /api/sessions/s1/messages '{"text":"hi","model":"-m x"}'
big=$(head -c 300000 /dev/zero | tr '\0' a)
bad "message over max_message_bytes" 400 invalid_field POST /api/sessions/s1/messages "{\"text\":\"$big\"}"
huge=$(head -c 1100000 /dev/zero | tr '\0' a)
bad "body over max_body_bytes" 413 body_too_large POST /api/sessions/s1/messages "{\"text\":\"$huge\"}"
bad "bad id in the path" 400 invalid_id GET '/api/sessions/a.b' ''
bad "unknown route" 404 not_found GET /api/nothing ''
bad "unknown method" 405 method_not_allowed PUT /api/sessions ''
like "$HEADERS" 'Allow: (GET, POST|POST, GET)' "405 names the allowed methods"
bad "unknown query parameter" 400 unknown_field GET '/api/executions?foo=1' ''
bad "bad status filter" 400 invalid_field GET '/api/executions?status=done' ''
bad "multipart body" 415 unsupported_media_type POST /api/sessions '' -H 'Content-Type: multipart/form-data' --data-binary '{"id":"s9"}'
is "$(sql "select count(*) from sessions")" "$before" "no bad request stored anything"
is "$(sql "select count(*) from executions")" 0 "no bad message became an execution"

# --- ownership (nginx auth_basic passes REMOTE_USER) --------------------------
A=(-u alice:apw)
B=(-u bob:bpw)
req POST /api/sessions '{"id":"alices"}' "${A[@]}"
is "$STATUS" 201 "alice creates a session"
is "$(j .owner)" alice "the session belongs to alice"
req GET /api/sessions/alices "" "${B[@]}"
is "$STATUS" 404 "bob cannot read alice's session"
req POST /api/sessions/alices/messages '{"text":"hi"}' "${B[@]}"
is "$STATUS" 404 "bob cannot message alice's session"
req POST /api/sessions/alices/abort '' "${B[@]}"
is "$STATUS" 404 "bob cannot abort alice's session"
req DELETE /api/sessions/alices '' "${B[@]}"
is "$STATUS" 404 "bob cannot delete alice's session"
req POST /api/sessions '{"id":"alices"}' "${B[@]}"
is "$STATUS/$(j .workspace)" 201/alices "ids are per user: bob's alices is a session of his own (alice's tells him nothing)"
check "in a workspace of his own" test -d "$STACK_DIR/workspaces/bob/alices"
req GET /api/sessions "" "${B[@]}"
is "$(j '[.sessions[].owner] | unique | join(",")')" bob "bob lists only his own sessions"
req POST /api/sessions/alices/messages '{"text":"for alice"}' "${A[@]}"
is "$STATUS" 200 "alice messages her session"
EID=$(j .execution.id)
req GET "/api/executions/$EID" "" "${B[@]}"
is "$STATUS" 404 "bob cannot read alice's execution"
req GET "/api/executions?session=alices" "" "${B[@]}"
is "$(j '.executions|length')" 0 "bob's history does not show alice's runs"
req GET "/api/executions/$EID" "" "${A[@]}"
is "$STATUS" 200 "alice reads her execution"
req GET /api/sessions '' -u alice:wrong
is "$STATUS" 401 "a wrong password is refused by nginx"

# --- execution ids are numbers: leading zeros name the same one -------------------
req GET "/api/executions/000$EID" "" "${A[@]}"
is "$STATUS/$(j .id)" "200/$EID" "an execution id with leading zeros is the same execution"

# --- the manager checks every frame against its route's row as well ---------------
# (Its control socket is its own, 0600; the responders checked these already. One definition,
# applied twice: a frame that does not fit its row is refused, and nothing is stored.)
before=$(sql "select count(*) from executions")
frame() { python3 "$SRC/tests/integration/frame.py" "$STACK_DIR/ocpmd.sock" "$1" | jq -r "$2"; }
is "$(frame '{"op":"nope","user":"alice","args":{}}' '.status,.body.error.code' | tr '\n' ' ')" "404 unknown_op " \
    "an unknown op is 404 unknown_op"
is "$(frame '{"op":"session.get","id":"alices","args":{}}' '.status,.body.error.code' | tr '\n' ' ')" \
    "400 bad_frame " "a user's route without a user is 400 bad_frame"
is "$(frame '{"op":"message","user":"alice","id":"alices","args":{"text":""}}' '.status,.body.error.code' | tr '\n' ' ')" \
    "400 invalid_field " "an empty text is refused by the manager too"
is "$(frame '{"op":"message","user":"alice","id":"alices","args":{"text":"x","model":"a/b","run":"y"}}' '.body.error.code')" \
    unknown_field "a field the row does not name is refused"
is "$(frame '{"op":"exec.get","user":"alice","id":"1x","args":{}}' '.status,.body.error.code' | tr '\n' ' ')" \
    "400 invalid_id " "an execution id that is not a number is refused"
is "$(frame '{"op":"prune","user":"ocpmctl","args":{}}' '.status,.body.error.code' | tr '\n' ' ')" \
    "400 missing_field " "prune without its cutoff is refused"
is "$(sql "select count(*) from executions")" "$before" "none of them stored anything"
req GET /api/health
is "$STATUS" 200 "and the manager serves the next request"
req POST /api/prune '{"before":1}'
is "$STATUS/$(j .error.code)" 404/not_found "ocpmctl's prune has no HTTP route"

# --- delete keeps history ------------------------------------------------------
req DELETE /api/sessions/alices '' "${A[@]}"
is "$STATUS" 200 "alice deletes her session"
req GET /api/sessions/alices '' "${A[@]}"
is "$STATUS" 404 "a deleted session is gone from the API"
req GET "/api/executions/$EID" "" "${A[@]}"
is "$STATUS" 200 "its history stays"
is "$(sql "select deleted_at is not null from sessions where id='alices' and owner='alice'")" 1 "the row is marked deleted, not removed"
req POST /api/sessions '{"id":"alices"}' "${A[@]}"
is "$STATUS" 409 "a deleted session's id is not reused"

t_done
