#!/usr/bin/env bash
# Status, health and metrics answered by the responders from the manager's published snapshot
# (snapshot.h): without a round trip (they answer while the manager is stopped), yet never from
# before what a client was told (a session created shows at once), the responders' own counts live,
# and nothing from a manager that is gone.
. "$(dirname "$0")/lib.sh"
t_start
MPID=$STACK_OCPMD_PID

req GET /api/opencode/status
is "$STATUS" 200 "status answers"
check "once the manager is idle, the snapshot is current" wait_until 10 settled
req GET /api/opencode/status
before=$(j .ocpm.requests)
for i in 1 2 3 4 5 6 7 8 9 10; do curl -s -o /dev/null "$BASE/api/opencode/status"; done
req GET /api/opencode/status
is "$(j .ocpm.requests)" "$before" "ten status reads later the manager has served no request: the responders answered them"
is "$(j .ocpm.responders.inFlight)/$(j .ocpm.responders.messagesInFlight)" 1/0 \
    "the responders' own counts are live (this request is in flight)"
like "$(printf '%s' "$BODY" | head -c 100000)" '"inFlight": +1,' "written over its published field, still JSON"

# Never older than what a client was told.
for i in 1 2 3 4 5; do
    req POST /api/sessions "{\"id\":\"s$i\"}"
    is "$STATUS" 201 "session s$i created"
    req GET /api/opencode/status
    is "$(j .processManager.activeSessions)" "$i" "the status read right after shows $i sessions"
done
req DELETE /api/sessions/s5
req GET /api/opencode/status
is "$(j .processManager.activeSessions)" 4 "and right after a delete, 4"

# Without the manager: a stopped one still has its status answered, a message cannot be.
check "the snapshot is current again" wait_until 10 settled
kill -STOP "$MPID"
req GET /api/opencode/status "" --max-time 5
is "$STATUS" 200 "with the manager stopped (SIGSTOP) the status still answers"
is "$(j .processManager.activeSessions)" 4 "with what it last published"
req GET /api/health "" --max-time 5
is "$STATUS" 200 "health too"
req GET /metrics "" --max-time 5
is "$STATUS:$(printf '%s' "$BODY" | grep -c '^ocpm_build_info')" 200:1 "and the metrics"
req GET /api/sessions/s1 "" --max-time 2
is "$STATUS" 000 "while a request that needs the manager waits for it"
# A manager stopped longer than the snapshot may be old (3 s) is not called healthy for it.
check "once the snapshot is older than 3 s, health waits for the manager instead" wait_until 10 sh -c \
    "[ \"\$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 '$BASE/api/health')\" = 000 ]"
kill -CONT "$MPID"
check "the manager answers again after SIGCONT" wait_until 10 sh -c "curl -s -o /dev/null -w '%{http_code}' '$BASE/api/sessions/s1' | grep -q 200"

# An unknown query parameter is still refused (the same validation; status takes full and limit
# now, so it is an unknown field of the route, as on every route with a query), in the manager's shape.
req GET '/api/opencode/status?x=1'
is "$STATUS:$(j .error.code)" "400:unknown_field" "an unknown parameter on status is refused"
req GET /api/health
is "$(printf '%s' "$HEADERS" | grep -i '^content-type' | tr -d '\r')" "Content-Type: application/json" "health is JSON"
is "$(printf '%s' "$HEADERS" | grep -i '^cache-control' | tr -d '\r')" "Cache-Control: no-store" "and not cached"

# Stopping: health turns 503 with nothing asked of the manager.
kill -TERM "$MPID"
check "health says 503 once the manager is stopping, or nothing answers once it is gone" wait_until 10 sh -c \
    "code=\$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 '$BASE/api/health'); [ \"\$code\" = 503 ] || [ \"\$code\" = 502 ]"
check "no responder outlives the manager" wait_until 20 sh -c "! kill -0 $MPID 2>/dev/null && [ -z \"\$(python3 '$SRC/tests/integration/pids.py' '$TDIR' responders)\" ]"
t_done
