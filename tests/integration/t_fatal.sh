#!/usr/bin/env bash
# FATAL (supervisord's model) through real nginx with the fake `opencode serve`: a server that
# fails to start server_restart_limit times within server_restart_window is, at the next failure,
# declared FATAL: one error line, a server_fatal event, the status JSON and /metrics say so, messages
# fall back (fallback on) or are refused at once with 503 server_fatal (fallback off, /api/ready
# 503 naming it), and `ocpmctl server restart` clears it. Only failed starts count: a ready server
# the agent kills in a message, again and again, is never FATAL (tests/unit/test_restart_limit.c
# counts the window with the clock injected).
. "$(dirname "$0")/lib.sh"
OCPMCTL=${OCPMCTL:-$SRC/ocpmctl}
export OCPM_MODE=auto OCPM_HEARTBEAT_INTERVAL=300ms OCPM_HEALTH_TIMEOUT=300ms OCPM_HEALTH_FAILURES=2
export OCPM_RESTART_BACKOFF_MAX=1s OCPM_SERVER_START_TIMEOUT=8s
export OCPM_SERVER_RESTART_LIMIT=2 OCPM_SERVER_RESTART_WINDOW=30s
CTL=$(mktemp -d /tmp/ocpm-ctl-XXXXXX)
chmod 0755 "$CTL" # the fake server runs as the agent: it must read its switches there
export OPENCODE_FAKE_CONTROL_DIR=$CTL OCPM_AGENT_READ_PATHS=$CTL
t_start

status_of() { curl -s "$BASE/api/opencode/status" | jq -r ".servers[0].$1"; }
state_is() { [ "$(status_of state)" = "$1" ]; }
# crash_loop: every start of the server now exits at once; kill the running one to begin the loop.
crash_loop() {
    touch "$CTL/crash_start"
    kill -9 "$(status_of pid)"
}

check "the server is ready at first" wait_until 20 state_is ready
req POST /api/sessions '{"id":"a"}'
req POST /api/sessions/a/messages '{"text":"before"}'
is "$STATUS/$(j .execution.mode)" 200/server "a message is served by the server"

# --- FATAL after the limit, fallback on ------------------------------------------------------------
crash_loop
check "two failed starts within the window, the third makes it FATAL" wait_until 20 state_is fatal
req GET /api/opencode/status
is "$(j '.servers[0].restarts')" 3 "after the kill's restart and exactly server_restart_limit failed starts"
is "$(j '.servers[0].pid')" null "no process runs"
like "$(j '.servers[0].fatalSince')" '^[0-9]{13}$' "the status says since when"
is "$(j '.server.state')" fatal "the first server's place says fatal too"
STARTS=$(grep -c 'opencode server starting' "$LOG")
line=$(grep 'opencode server FATAL' "$LOG")
is "$(printf '%s\n' "$line" | wc -l)" 1 "one log line says FATAL"
like "$line" 'level=error.*pool=default server=0 restarts=2 window=30s' "at error level, with pool, server, restarts, window"
like "$(sql "select detail from manager_events where kind='server_fatal'")" '^pool=default server=0 restarts=2 window=30s' \
    "a server_fatal manager event"
curl -s "$BASE/metrics" >"$TDIR/metrics"
check "metrics: ocpm_server_fatal is 1" grep -qx 'ocpm_server_fatal{pool="default",server="0"} 1' "$TDIR/metrics"
check "metrics: the state gauge says fatal" grep -qx 'ocpm_server_state{pool="default",server="0",state="fatal"} 1' "$TDIR/metrics"
check "metrics: and not ready" grep -qx 'ocpm_server_state{pool="default",server="0",state="ready"} 0' "$TDIR/metrics"
req POST /api/sessions/a/messages '{"text":"while fatal"}'
is "$STATUS/$(j .execution.mode)/$(j .execution.status)" 200/per-session/succeeded "fallback on: the message falls back"
req GET /api/ready
is "$STATUS" 200 "fallback on: ready (new work is served, by the fallback)"
is "$(grep -c 'opencode server died; restarting' "$LOG")" 3 "the log shows the three restarts before FATAL (one after the kill)"
is "$(grep -c 'opencode server starting' "$LOG")/$(status_of state)" "$STARTS/fatal" "and none since: it stays FATAL"

# --- ocpmctl server restart -------------------------------------------------------------------------
out=$("$OCPMCTL" server restart 2>&1)
like "$out" 'default +0 +fatal +started' "ocpmctl server restart restarts the FATAL server (crash still on)"
check "it crashes again: FATAL again after the limit" wait_until 20 state_is fatal
rm -f "$CTL/crash_start"
out=$("$OCPMCTL" server restart --pool default 0 2>&1)
like "$out" 'default +0 +fatal +started' "with the fault removed, ocpmctl server restart --pool default 0"
check "the server is ready again" wait_until 20 state_is ready
req POST /api/sessions/a/messages '{"text":"after"}'
is "$STATUS/$(j .execution.mode)" 200/server "the next message is served by the server"
like "$(sql "select group_concat(kind) from manager_events where kind like 'server_restart_requested'")" server_restart_requested \
    "the operator's restart is recorded"
out=$("$OCPMCTL" server restart 2>&1)
like "$out" 'no server restarted' "without N, only FATAL servers are restarted: none now"
P1=$(status_of pid)
out=$("$OCPMCTL" --json server restart 0)
is "$(printf '%s' "$out" | jq -r '.restarted[0].action')" replacing "a named ready server is replaced gracefully"
replaced() { [ "$(status_of pid)" != "$P1" ] && state_is ready; }
check "by a fresh process" wait_until 20 replaced
like "$(sql "select detail from manager_events where kind='server_recycle' order by id desc limit 1")" 'reason=operator' \
    "recorded as a recycle the operator asked for"
out=$("$OCPMCTL" server restart 16 2>&1)
is "$?/$(printf '%s' "$out" | grep -c 'not a server')" 2/1 "ocpmctl refuses a server number out of range"
out=$("$OCPMCTL" server restart --pool nope 2>&1)
like "$out" 'no pool of that name' "and a pool that does not exist"
out=$("$OCPMCTL" server restart 3 2>&1)
like "$out" 'the pool has 1 servers' "and a server the pool does not have"
out=$("$OCPMCTL" server stop 2>&1)
is "$?" 2 "server takes only restart"

# --- fallback off: refused at once, /api/ready says why ---------------------------------------------
stack_stop_ocpmd
export OCPM_FALLBACK=off OCPM_FALLBACK_WAIT=10m
stack_start_ocpmd
check "the server is ready" wait_until 20 state_is ready
crash_loop
check "FATAL again" wait_until 20 state_is fatal
req POST /api/sessions/a/messages '{"text":"refused"}'
is "$STATUS/$(j .error.code)" 503/server_fatal "fallback off: 503 server_fatal"
like "$(j .error.message)" 'ocpmctl server restart --pool default 0' "the message names the remedy"
like "$(sql "select count(*) from executions where prompt='refused'")" '^0$' "nothing was queued"
# With fallback_wait at 10 minutes, a message that waited for the server would meet curl's deadline.
req POST /api/sessions/a/messages '{"text":"refused too"}' --max-time 60
is "$STATUS/$(j .error.code)" 503/server_fatal "answered at once, not after fallback_wait"
req GET /api/ready
is "$STATUS:$(j .ready)" "503:false" "/api/ready is 503"
is "$(j '.reasons[0]')" no_server_ready "its reason is no_server_ready"
req GET /api/admin/ready
like "$(j '"\(.details[0].pool) \(.details[0].message)"')" '^default .*FATAL: server 0.*ocpmctl server restart' \
    "the operator's details name the FATAL server"
rm -f "$CTL/crash_start"
"$OCPMCTL" server restart >/dev/null
check "cleared, the server is ready" wait_until 20 state_is ready
check "and /api/ready is 200" wait_until 10 sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' '$BASE/api/ready')\" = 200 ]"
req POST /api/sessions/a/messages '{"text":"served"}'
is "$STATUS/$(j .execution.mode)" 200/server "the next message is served by the server"
unset OCPM_FALLBACK OCPM_FALLBACK_WAIT

# --- a ready server killed by the agent is never FATAL ------------------------------------------------
# Only failed starts count (supervisord's startretries): an agent that kills its pool's server from a
# tool call, again and again, costs a restart each time, never the server for everyone.
stack_stop_ocpmd
OCPM_SERVER_RESTART_LIMIT=1 stack_start_ocpmd
check "the server is ready" wait_until 20 state_is ready
req POST /api/sessions '{"id":"evil"}'
for i in 1 2 3; do
    P=$(status_of pid)
    req POST /api/sessions/evil/messages '{"text":"[[crash]]"}'
    is "$STATUS" 502 "crash $i: the agent's message kills the server"
    fresh() { [ "$(status_of pid)" != "$P" ] && state_is ready; }
    check "crash $i: the server is restarted" wait_until 20 fresh
done
is "$(status_of restarts)/$(status_of state)" 3/ready "three deaths in messages with limit 1: never FATAL"
rm -rf "$CTL"
t_done
