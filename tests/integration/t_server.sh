#!/usr/bin/env bash
# Server mode through real nginx with the fake `opencode serve` (tests/fakes/fake_serve.py):
# mode choice, auth, session mapping, queueing, abort, timeout, every fault recovered, fallback
# on and off, idle disposal, recycling without a failed message, streaming, shutdown.
. "$(dirname "$0")/lib.sh"
export OCPM_MODE=auto OCPM_HEARTBEAT_INTERVAL=300ms OCPM_HEALTH_TIMEOUT=300ms OCPM_HEALTH_FAILURES=2
export OCPM_RUN_TIMEOUT=3s OCPM_KILL_GRACE=500ms OCPM_INSTANCE_IDLE_TIMEOUT=1s OCPM_RESTART_BACKOFF_MAX=2s
export OCPM_SERVER_START_TIMEOUT=8s OCPM_FALLBACK_MAX_RUNS=1
CTL=$(mktemp -d /tmp/ocpm-ctl-XXXXXX)
chmod 0755 "$CTL" # the fake server runs as the agent: it must read its switches there
export OPENCODE_FAKE_CONTROL_DIR=$CTL OCPM_AGENT_READ_PATHS=$CTL
t_start

mk() { req POST /api/sessions "{\"id\":\"$1\"}"; }
exec_status() { req GET "/api/executions/$1"; j .status; }
finished() { local s; s=$(exec_status "$1"); [ "$s" != queued ] && [ "$s" != running ]; }
server_state() { curl -s "$BASE/api/opencode/status" | jq -r '.server.state'; }
server_pid() { curl -s "$BASE/api/opencode/status" | jq -r '.server.pid'; }
state_is() { [ "$(server_state)" = "$1" ]; }

# --- mode -----------------------------------------------------------------------
req GET /api/opencode/status
is "$(j .processManager.mode)" server "auto mode chose the server"
is "$(j .processManager.isRunning)" true "isRunning is true"
is "$(j .processManager.description)" "All sessions share one persistent OpenCode server" "server description"
is "$(j '.server | [has("pid","startedAt","restarts","healthy","lastHealthCheck","lastHealthLatencyMs","rssBytes","messagesServed","directoriesLoaded")] | all')" \
    true "status has the server object"
is "$(j .server.healthy)" true "the server is healthy"
SPID=$(j .server.pid)
check "the server leads its own process group" sh -c "[ \"\$(ps -o pgid= -p $SPID | tr -d ' ')\" = $SPID ]"
PW=$(tr '\0' '\n' </proc/"$SPID"/environ | sed -n 's/^OPENCODE_SERVER_PASSWORD=//p')
like "$PW" '^[0-9a-f]{32}$' "the server got a random password"

# --- messages, mapping, auth ------------------------------------------------------
mk a
req POST /api/sessions/a/messages '{"text":"hello"}'
is "$STATUS" 200 "a message through the server answers 200"
is "$(j .text)" "fake server answer to: hello (turn 1)" "with the server's answer"
is "$(j .execution.mode)" server "recorded with mode server"
is "$(sql "select pid from executions where id=$(j .execution.id)")" "$SPID" "and the server's pid (for operators)"
is "$(j '.execution.tokens_in > 0 and .execution.cost > 0')" true "tokens and cost recorded"
OCS=$(j .execution.opencode_session_id)
like "$OCS" '^ses_' "the opencode session id is recorded"
is "$(sql "select opencode_session_id from sessions where id='a'")" "$OCS" "and mapped to the session"
req POST /api/sessions/a/messages '{"text":"again","model":"prov/model-1"}'
is "$(j .text)" "fake server answer to: again (turn 2, earlier: hello) (model prov/model-1)" \
    "the second message continues the same opencode session, with the model"
is "$(grep -c '"serve": "POST", "path": "/session?directory=' "$TDIR/fake.jsonl")" 1 "the opencode session was created once (lazily)"
# opencode's server keeps a session's last model (the fake does too): ocpm names the default itself
# when the client names none, so one message's model never decides the next one's.
req POST /api/sessions/a/messages '{"text":"third"}'
is "$(j .text)" "fake server answer to: third (turn 3, earlier: again)" "a message naming no model is not held to the last one's"
is "$(grep '"message": "third"' "$TDIR/fake.jsonl" | jq -c .model)" '{"providerID":"fake","modelID":"default"}' \
    "the server was sent the default model explicitly"
req POST /api/sessions/a/messages '{"text":"x","model":"../../etc"}'
is "$STATUS/$(j .error.code)" 400/unknown_model "a model the server does not offer is refused before it reaches it"
req POST /api/sessions/a/messages '{"text":"fourth"}'
is "$STATUS" 200 "and the session stays usable"
is "$(grep '"serve"' "$TDIR/fake.jsonl" | grep -c '"auth": false')" 0 "every request to the server carried Basic auth"
req GET /api/opencode/status
check "the password is not in the status" sh -c "! curl -s $BASE/api/opencode/status | grep -q $PW"
check "nor in the log" sh -c "! grep -q $PW '$LOG'"
check "nor in the metrics" sh -c "! curl -s $BASE/metrics | grep -q $PW"
check "nor in the database" sh -c "! grep -aq $PW '$DB' '$DB-wal' 2>/dev/null"

# --- streaming ----------------------------------------------------------------------
mk st
curl -sN -H 'Accept: text/event-stream' -X POST --data-binary '{"text":"stream [[slow=150]]"}' \
    "$BASE/api/sessions/st/messages" >"$TDIR/sse" &
C1=$!
mk other
curl -sN --max-time 1 -H 'Accept: text/event-stream' -X POST --data-binary '{"text":"leaving [[slow=150]]"}' \
    "$BASE/api/sessions/other/messages" >/dev/null 2>&1 &
if wait_until 10 grep -q '^event: message.part.delta' "$TDIR/sse"; then
    if grep -q '^event: done' "$TDIR/sse"; then not_ok "deltas arrive before done"; else ok "deltas arrive before done"; fi
else
    not_ok "deltas arrive before done" "$(head -c 600 "$TDIR/sse")"
fi
wait "$C1"
check "the stream ends with done" grep -q '^event: done' "$TDIR/sse"
is "$(sed -n 's/^data: //p' "$TDIR/sse" | tail -n 1 | jq -r .execution.status)" succeeded "its run succeeded"
req GET '/api/executions?session=other'
OID=$(j '.executions[0].id')
check "a client that left does not disturb its run" wait_until 10 finished "$OID"
is "$(exec_status "$OID")" succeeded "which still succeeds"

# --- queueing, abort, timeout, provider error -----------------------------------------
mk q
req POST /api/sessions/q/messages '{"text":"first [[slow=100]]"}' -H 'Prefer: respond-async'
Q1=$(j .execution_id)
req POST /api/sessions/q/messages '{"text":"second"}' -H 'Prefer: respond-async'
Q2=$(j .execution_id)
check "queued messages finish" wait_until 15 finished "$Q2"
is "$(sql "select (select started_at from executions where id=$Q2) >= (select finished_at from executions where id=$Q1)")" 1 \
    "one prompt at a time per session"
mk ab
req POST /api/sessions/ab/messages '{"text":"[[hang]]"}' -H 'Prefer: respond-async'
AB1=$(j .execution_id)
req POST /api/sessions/ab/messages '{"text":"behind"}' -H 'Prefer: respond-async'
AB2=$(j .execution_id)
# Running, and its prompt in the server (before that there is nothing to ask the server to abort).
check "the hanging prompt runs" wait_until 5 sql_is "select status from executions where id=$AB1" running
check "the server has the hanging prompt" wait_until 5 grep -q '"message": "\[\[hang\]\]"' "$TDIR/fake.jsonl"
req POST /api/sessions/ab/abort ''
is "$(j .aborted)" 2 "abort counts both"
check "abort ends the prompt" wait_until 5 finished "$AB1"
is "$(exec_status "$AB1")/$(exec_status "$AB2")" aborted/aborted "running and queued are aborted"
check "the server was asked to abort" grep -q '"path": "/session/[^"]*/abort' "$TDIR/fake.jsonl"
req POST /api/sessions/ab/messages '{"text":"[[hang]]"}'
is "$(j .execution.status)" timeout "run_timeout aborts and records timeout"
req POST /api/sessions/ab/messages '{"text":"[[provider_error]]"}'
is "$STATUS" 502 "a provider error inside a 200 answers 502"
is "$(j .execution.status)" failed "and is recorded as failed"
like "$(j .execution.error)" 'APIError: fake provider failure' "with the provider's message"

# --- idle disposal ------------------------------------------------------------------------
check "an idle workspace is disposed in the server" wait_until 10 grep -q "\"disposed\": \"$STACK_DIR/workspaces/@anonymous/a\"" "$TDIR/fake.jsonl"

# --- crash mid-message, restart, fallback on ---------------------------------------------------
mk cr
touch "$CTL/slow_start"
req POST /api/sessions/cr/messages '{"text":"[[crash]]"}'
is "$STATUS" 502 "a server crash mid-message fails the message at once"
like "$(j .execution.error)" 'server (exited|request failed)' "with a clear error"
check "the server is restarting" wait_until 5 sh -c "[ \"\$(curl -s $BASE/api/opencode/status | jq -r .server.restarts)\" = 1 ]"
req POST /api/sessions/cr/messages '{"text":"during the outage"}'
is "$(j .execution.status)/$(j .execution.mode)" succeeded/per-session "fallback = on: the outage is served per message"
mk cr2
mk cr3
req POST /api/sessions/cr2/messages '{"text":"[[delay=600]] outage one"}' -H 'Prefer: respond-async'
F1=$(j .execution_id)
req POST /api/sessions/cr3/messages '{"text":"[[delay=600]] outage two"}' -H 'Prefer: respond-async'
F2=$(j .execution_id)
check "both outage messages finish" wait_until 15 sql_is "select count(*) from executions where id in ($F1,$F2) and status='succeeded'" 2
is "$(sql "select group_concat(mode) from executions where id in ($F1,$F2)")" "per-session,per-session" "both ran per message"
is "$(sql "select (select started_at from executions where id=$F2) >= (select finished_at from executions where id=$F1)")" 1 \
    "one after the other (fallback_max_runs = 1)"
rm -f "$CTL/slow_start"
check "the server comes back" wait_until 15 state_is ready
is "$(sql "select count(*) from manager_events where kind='server_restart'")" 1 "the restart is recorded"
req POST /api/sessions/cr/messages '{"text":"after"}'
is "$(j .execution.mode)" server "messages go to the server again"
like "$(j .text)" 'earlier: during the outage' "the conversation went on across both modes"

# --- a hung health check ---------------------------------------------------------------------
P1=$(server_pid)
touch "$CTL/hang_health"
check "a hung server is detected and killed" wait_until 10 sh -c "! kill -0 $P1 2>/dev/null"
rm -f "$CTL/hang_health"
check "and replaced" wait_until 15 state_is ready
isnt_pid() { [ "$(server_pid)" != "$P1" ]; }
check "by a new process" isnt_pid

# --- recycling -----------------------------------------------------------------------------------
stack_stop_ocpmd
export OCPM_SERVER_MAX_MESSAGES=3
stack_start_ocpmd
P2=$(server_pid)
ids=()
for s in r1 r2 r3 r4; do
    mk "$s"
    req POST "/api/sessions/$s/messages" '{"text":"recycle me [[slow=60]]"}' -H 'Prefer: respond-async'
    ids+=("$(j .execution_id)")
    req POST "/api/sessions/$s/messages" '{"text":"and me"}' -H 'Prefer: respond-async'
    ids+=("$(j .execution_id)")
done
list=$(IFS=,; echo "${ids[*]}")
all_done() { [ "$(sql "select count(*) from executions where id in ($list) and status not in ('queued','running')")" = 8 ]; }
check "8 messages across a recycle finish" wait_until 30 all_done
is "$(sql "select group_concat(distinct status) from executions where id in ($list)")" succeeded "none failed"
is "$(sql "select count(distinct pid) > 1 from executions where id in ($list)")" 1 "more than one server served them"
check "the recycle is recorded" sh -c "[ \"\$(sqlite3 -readonly '$DB' \"select count(*) from manager_events where kind='server_recycle'\")\" -ge 1 ]"
unset OCPM_SERVER_MAX_MESSAGES

# Recycling on memory: a server that grows past server_max_rss is replaced, the message succeeds.
stack_stop_ocpmd
OCPM_SERVER_MAX_RSS=120m OCPM_HEALTH_TIMEOUT=5s OCPM_HEALTH_FAILURES=3 stack_start_ocpmd
P3=$(server_pid)
mk grow
req POST /api/sessions/grow/messages '{"text":"[[grow=160]] eat memory"}'
is "$(j .execution.status)" succeeded "a message that makes the server grow succeeds"
replaced() { [ "$(server_pid)" != "$P3" ] && state_is ready; }
check "a server past server_max_rss is recycled" wait_until 15 replaced
like "$(sql "select detail from manager_events where kind='server_recycle' order by id desc limit 1")" 'server_max_rss' \
    "the recycle says why"

# --- fallback off ---------------------------------------------------------------------------------
stack_stop_ocpmd
check "shutdown stops the server" wait_until 10 sh -c "! kill -0 $P2 2>/dev/null"
export OCPM_FALLBACK=off OCPM_FALLBACK_WAIT=1s
stack_start_ocpmd
touch "$CTL/slow_start"
mk fo
req POST /api/sessions/fo/messages '{"text":"[[crash]]"}'
req POST /api/sessions/fo/messages '{"text":"waits"}'
is "$STATUS/$(j .execution.status)" 502/failed "fallback = off: a message fails clearly after fallback_wait"
like "$(j .execution.error)" 'fallback is off' "and says why"
req GET /api/ready
is "$STATUS:$(j .ready)" "503:false" "meanwhile /api/ready says new work would not be served"
is "$(j '.reasons | join(",")'):$(j .details)" "no_server_ready:null" "because no server takes messages and fallback is off (the code only)"
req GET /api/admin/ready
is "$STATUS:$(j '.details[0].code'):$(j '.details[0].pool')" "503:no_server_ready:default" "operators read which pool"
req GET /api/health
is "$STATUS" 200 "while /api/health (liveness) stays 200: the manager answers"
rm -f "$CTL/slow_start"
check "once the server is back, /api/ready is 200" wait_until 20 sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' '$BASE/api/ready')\" = 200 ]"
unset OCPM_FALLBACK OCPM_FALLBACK_WAIT

# --- start-up: never healthy ---------------------------------------------------------------------
stack_stop_ocpmd
export OPENCODE_FAKE_SERVE_NEVER_HEALTHY=1 OCPM_SERVER_START_TIMEOUT=1s
stack_start_ocpmd
req GET /api/opencode/status
is "$(j .processManager.mode)" per-session "auto mode falls back when the server never gets healthy"
check "with the original line" grep -q 'OpenCode does not support server mode, will use per-session approach' "$LOG"
stack_stop_ocpmd
out=$(OCPM_MODE=server timeout 30 "$OCPMD" 2>&1)
is "$?" 1 "mode = server fails start-up when the server cannot start"
like "$out" 'mode = server, but' "with a clear message"
unset OPENCODE_FAKE_SERVE_NEVER_HEALTHY
rm -rf "$CTL"
t_done
