#!/usr/bin/env bash
# Drain (ocpmctl drain / undrain) through nginx with the fake opencode: a message running when the
# drain begins (held by a gate, then released) finishes, and so does one already queued; new
# sessions and messages get 503 draining with Retry-After; reads, aborts and prompt replies go on;
# /api/ready says draining (codes for anyone, details on /api/admin/ready); status and metrics show
# it, from the manager and from the snapshot; it survives responder restarts; undrain puts all back.
# Then readiness while the manager shuts down slowly (a run still going): 503 shutting_down.
. "$(dirname "$0")/lib.sh"
OCPMCTL=${OCPMCTL:-$SRC/ocpmctl}
t_start
MPID=$STACK_OCPMD_PID
mkdir -p "$TDIR/gates"
chmod 0755 "$TDIR/gates"
release() { touch "$TDIR/gates/$1"; chmod 0644 "$TDIR/gates/$1"; }
header() { printf '%s' "$HEADERS" | grep -i "^$1:" | head -1 | cut -d' ' -f2- | tr -d '\r'; }
metric() { curl -s "$BASE/metrics" | awk -v n="$1" '$1 == n { print $2 }'; }

req POST /api/sessions '{"id":"d1"}'
req POST /api/sessions '{"id":"d2"}'
is "$STATUS" 201 "sessions before the drain"
req GET /api/ready
is "$STATUS:$(j .ready):$(j '.reasons | length')" "200:true:0" "ready before the drain"
req GET /api/opencode/status
is "$(j .ocpm.draining):$(j .ocpm.drainingSince)" "false:null" "status: not draining"
is "$(metric ocpm_draining)" 0 "ocpm_draining 0"

# One running (held at its gate), one queued behind it in the same session.
bg_message d1 "held [[gate=one]]"
RUN=$(running_id d1)
req POST /api/sessions/d1/messages '{"text":"queued before the drain"}' -H 'Prefer: respond-async'
is "$STATUS" 202 "a second message is queued behind the running one"
QUEUED=$(j .execution_id)

out=$("$OCPMCTL" drain)
is "$?" 0 "ocpmctl drain exits 0"
like "$out" '^draining: .*1 running and 1 queued will finish' "ocpmctl drain says what will finish"
req GET /api/opencode/status
is "$(j .ocpm.draining)" true "status shows draining right after the command (the snapshot was marked stale)"
like "$(j .ocpm.drainingSince)" '^[0-9]{13}$' "with when it began (ms)"
is "$(j .ocpm.shuttingDown):$(j .processManager.isReady)" "false:true" "the other fields are unchanged"
check "the snapshot becomes current again" wait_until 10 settled
req GET /api/opencode/status
is "$(j .ocpm.draining)" true "status read from the snapshot shows draining too"
is "$(metric ocpm_draining)" 1 "and /metrics says ocpm_draining 1"
like "$("$OCPMCTL" drain)" '^already draining' "a second drain changes nothing, and says so"
like "$(grep 'Draining: new sessions and messages are refused' "$LOG" | head -1)" 'by="?ocpmctl"? uid=[0-9]+ pid=[0-9]+ running=1 queued=1' \
    "the drain is logged with who asked"
is "$(sql "select count(*) from manager_events where kind='drain'")" 1 "and recorded once as a manager event"

# New work is refused.
req POST /api/sessions/d2/messages '{"text":"new"}'
is "$STATUS:$(j .error.code)" "503:draining" "a new message gets 503 draining"
is "$(header Retry-After)" 2 "with Retry-After"
req POST /api/sessions/d1/messages '{"text":"new"}' -H 'Accept: text/event-stream'
is "$STATUS:$(j .error.code)" "503:draining" "a new streamed message too"
req POST /api/sessions '{"id":"d3"}'
is "$STATUS:$(j .error.code):$(header Retry-After)" "503:draining:2" "a new session gets 503 draining"
req POST /api/sessions '{"id":"d2"}'
is "$STATUS" 200 "creating an existing session again is a read and still answers 200"
is "$(sql "select count(*) from executions where session_id in ('d2','d3')")" 0 "nothing refused was recorded"

# Reads and the rest go on.
req GET /api/sessions/d1
is "$STATUS" 200 "a session reads"
req GET '/api/executions?session=d1'
is "$STATUS:$(j '.executions | length')" "200:2" "history reads"
req GET "/api/executions/$RUN"
is "$STATUS:$(j .status)" "200:running" "the running execution reads"
req GET /api/sessions/d1/permissions
is "$STATUS" 200 "prompts list"
req POST /api/sessions/d1/permissions/nope '{"reply":"once"}'
is "$STATUS" 404 "a prompt reply is served (404: no such prompt), not refused"
req POST /api/sessions/d2/abort
is "$STATUS:$(j .aborted)" "200:0" "an abort is served"
req GET /api/health
is "$STATUS" 200 "health (liveness) stays 200"
req GET /api/ready
is "$STATUS:$(j .ready):$(j '.reasons | join(",")')" "503:false:draining" "ready is 503 with the reason draining"
is "$(j .details)" null "without details for users"
req GET /api/admin/ready
is "$STATUS:$(j '.details[0].code')" "503:draining" "operators read the details"
like "$(j '.details[0].message')" 'ocpmctl drain' "with the reason in a sentence"

# What was taken finishes.
release one
bg_wait
is "$STATUS:$(j .execution.status)" "200:succeeded" "the message running at the drain completes"
check "the message queued before the drain runs and completes" wait_until 20 sql_is \
    "select status from executions where id=$QUEUED" succeeded

# Responders restarted (none holds a message now): the drain is the manager's.
OLD=$(t_pids responders | sort | tr '\n' ' ')
t_pids responders | xargs -r kill -9
check "the responders are respawned" wait_until 20 sh -c "[ -n \"\$(python3 '$SRC/tests/integration/pids.py' '$TDIR' responders)\" ] && [ \"\$(python3 '$SRC/tests/integration/pids.py' '$TDIR' responders | sort | tr '\n' ' ')\" != '$OLD' ] && curl -sf -o /dev/null '$BASE/api/health'"
req POST /api/sessions/d2/messages '{"text":"new"}'
is "$STATUS:$(j .error.code)" "503:draining" "after the responders' restart, still draining"

# Undrain: back to normal.
out=$("$OCPMCTL" undrain)
like "$out" '^drain ended' "ocpmctl undrain"
like "$("$OCPMCTL" undrain)" '^not draining' "a second undrain changes nothing"
is "$(sql "select count(*) from manager_events where kind='undrain'")" 1 "undrain is recorded"
like "$(grep 'Drain ended' "$LOG" | head -1)" 'by=' "and logged with who"
req GET /api/ready
is "$STATUS:$(j .ready)" "200:true" "ready is 200 again"
req GET /api/opencode/status
is "$(j .ocpm.draining):$(j .ocpm.drainingSince)" "false:null" "status: not draining"
check "the snapshot becomes current again" wait_until 10 settled
is "$(curl -s "$BASE/api/opencode/status" | jq -r .ocpm.draining):$(metric ocpm_draining)" "false:0" \
    "from the snapshot too, and ocpm_draining 0"
req POST /api/sessions '{"id":"d3"}'
is "$STATUS" 201 "a new session is created"
req POST /api/sessions/d3/messages '{"text":"after"}'
is "$STATUS:$(j .execution.status)" "200:succeeded" "a new message is served"
is "$("$OCPMCTL" --json drain | jq -r '.draining,.changed' | tr '\n' ,)" "true,true," "ocpmctl --json drain"
"$OCPMCTL" undrain >/dev/null

# The operator's ops have no HTTP route: a client (or the agent, from localhost) cannot drain, reload
# or restart servers through nginx, whatever the method or path it tries.
for try in "POST /api/drain" "POST /api/undrain" "POST /api/reload" "POST /api/server.restart" \
    "POST /api/servers/0/restart" "GET /api/drain"; do
    req ${try% *} "${try#* }" '{}'
    is "$STATUS:$(j .error.code)" "404:not_found" "$try: 404 JSON, nothing done"
done
req GET /api/opencode/status
is "$(j .ocpm.draining)" false "still not draining"

# Readiness while the manager shuts down with a run still going (shutdown_timeout lets it finish).
bg_message d3 "slow [[gate=two]]"
running_id d3 >/dev/null
kill -TERM "$MPID"
ready_reason() { [ "$(curl -s --max-time 2 "$BASE/api/ready" | jq -r '.reasons | join(",")')" = "$1" ]; }
check "while it stops, /api/ready is 503 shutting_down" wait_until 10 ready_reason shutting_down
req GET /api/ready
is "$STATUS" 503 "(503)"
release two
bg_wait
is "$STATUS:$(j .execution.status)" "200:succeeded" "the run going at the stop finishes"
check "the manager exits" wait_until 20 sh -c "! kill -0 $MPID 2>/dev/null"
t_done
