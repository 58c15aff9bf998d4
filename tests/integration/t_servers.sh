#!/usr/bin/env bash
# Several opencode servers (servers = 2) through real nginx with the fake `opencode serve`: each
# its own process, home and opencode data; sessions placed on the least loaded and kept there
# (stored, across a restart of ocpm and of the server); one server killed, held by a hung health
# check or recycling while the other serves its sessions without a failed message; fallback runs
# in the owning server's data; status, metrics and ocpmctl show every server.
. "$(dirname "$0")/lib.sh"
export OCPM_MODE=server OCPM_SERVERS=2 OCPM_HEARTBEAT_INTERVAL=300ms OCPM_HEALTH_TIMEOUT=300ms
export OCPM_HEALTH_FAILURES=2 OCPM_RESTART_BACKOFF_MAX=2s OCPM_SERVER_START_TIMEOUT=8s OCPM_MAX_CONCURRENT_RUNS=8
CTL=$(mktemp -d /tmp/ocpm-ctl-XXXXXX)
chmod 0755 "$CTL" # the fake server runs as the agent: it must read its switches there
export OPENCODE_FAKE_CONTROL_DIR=$CTL OCPM_AGENT_READ_PATHS=$CTL
t_start

mk() { req POST /api/sessions "{\"id\":\"$1\"}"; }
status() { curl -s "$BASE/api/opencode/status"; }
srv() { status | jq -r ".servers[$1].$2"; }
placed() { sql "select server from sessions where id='$1'"; }
say() { req POST "/api/sessions/$1/messages" "{\"text\":\"$2\"}"; }

# --- two servers, each its own --------------------------------------------------------------------
req GET /api/opencode/status
is "$(j '.servers | length')" 2 "status lists both servers"
is "$(j '[.servers[].state] | join(",")')" ready,ready "both are ready"
is "$(j '[.servers[].index] | join(",")')" 0,1 "numbered 0 and 1"
is "$(j .server.pid)" "$(j '.servers[0].pid')" "server keeps the first one (the original single server's place)"
is "$(j .processManager.isRunning)" true "isRunning"
P0=$(j '.servers[0].pid')
P1=$(j '.servers[1].pid')
check "two processes" test "$P0" != "$P1"
envof() { tr '\0' '\n' </proc/"$1"/environ | sed -n "s/^$2=//p"; }
H0=$(envof "$P0" HOME)
H1=$(envof "$P1" HOME)
like "$H0" '/agent/server$' "the first server's home is where the single server's was"
like "$H1" '/agent/server-1$' "the second has its own home"
check "and its own opencode data directory" test "$(envof "$P0" XDG_DATA_HOME)" != "$(envof "$P1" XDG_DATA_HOME)"
check "and its own password" test "$(envof "$P0" OPENCODE_SERVER_PASSWORD)" != "$(envof "$P1" OPENCODE_SERVER_PASSWORD)"
M=$(curl -s "$BASE/metrics")
like "$M" 'ocpm_server_up\{pool="default",server="0"\} 1' "metrics: server 0 up"
like "$M" 'ocpm_server_up\{pool="default",server="1"\} 1' "metrics: server 1 up"
like "$M" 'ocpm_server_healthy\{pool="default",server="1"\} 1' "metrics: healthy by server"
like "$("$SRC/ocpmctl" status 2>&1)" 'servers\[1\]\.state +ready' "ocpmctl status shows every server"

# --- placement: least loaded, then kept ----------------------------------------------------------
mk s1
is "$(j .server)" null "a new session is not placed before it needs a server"
say s1 one
is "$STATUS/$(j .execution.mode)" 200/server "s1's first message runs on a server"
is "$(placed s1)" 0 "both idle and empty: the first"
mk s2
say s2 one
is "$(placed s2)" 1 "both idle, the first has a session: the second"
# In flight before sessions: s1 hangs on server 0; s3 goes to server 1 though it holds more sessions.
req POST /api/sessions/s1/messages '{"text":"[[hang]]"}' -H 'Prefer: respond-async'
HANG=$(j .execution_id)
check "s1's hang runs" wait_until 5 sql_is "select status from executions where id=$HANG" running
mk s3
say s3 one
is "$(placed s3)" 1 "the server with nothing in flight wins"
req GET /api/sessions/s3
is "$(j .server)" 1 "the session shows its server"
req POST /api/sessions/s1/abort ''
check "the hang ends" wait_until 5 sh -c "[ \"\$(sqlite3 -readonly '$DB' \"select status from executions where id=$HANG\")\" = aborted ]"
mk s4
say s4 one
is "$(placed s4)" 0 "idle again: the one with fewer sessions"
say s2 two
is "$(j .text)" "fake server answer to: two (turn 2, earlier: one)" "s2's conversation continues on its server"
is "$(placed s2)" 1 "and it stays there"
is "$(sql "select count(distinct pid) from executions where session_id='s2' and status='succeeded'")" 1 \
    "every message of s2 went to one process"

# --- a shared workspace: its first messages at once make it a repository once ---------------------------
ids=()
for i in 1 2 3 4 5 6; do
    req POST /api/sessions "{\"id\":\"sh$i\",\"workspace\":\"team\"}"
    req POST "/api/sessions/sh$i/messages" '{"text":"together"}' -H 'Prefer: respond-async'
    ids+=("$(j .execution_id)")
done
list=$(IFS=,; echo "${ids[*]}")
sh_done() { sql_is "select count(*) from executions where id in ($list) and status not in ('queued','running')" 6; }
check "six first messages in one new workspace finish" wait_until 20 sh_done
is "$(sql "select group_concat(distinct status) from executions where id in ($list)")" succeeded \
    "all succeed (one prepares the workspace, the rest wait: test_scheduler races them for certain)"

# --- across a restart of ocpm ---------------------------------------------------------------------
stack_stop_ocpmd
stack_start_ocpmd
say s2 three
is "$(j .text)" "fake server answer to: three (turn 3, earlier: two)" "after a restart of ocpm s2 continues"
is "$(placed s2)" 1 "on the same server"
say s4 two
is "$(j .text)" "fake server answer to: two (turn 2, earlier: one)" "and s4 on its own"

# --- one server killed: its sessions fall back in its data, the other's never notice -----------------
P1=$(srv 1 pid)
touch "$CTL/slow_start@server-1"
ids=()
for i in 1 2 3 4 5 6; do
    req POST /api/sessions/s4/messages "{\"text\":\"during $i [[slow=40]]\"}" -H 'Prefer: respond-async'
    ids+=("$(j .execution_id)")
    [ "$i" = 2 ] && kill -9 "$P1"
done
list=$(IFS=,; echo "${ids[*]}")
all_done() { sql_is "select count(*) from executions where id in ($list) and status not in ('queued','running')" 6; }
check "server 0's messages finish while server 1 is down" wait_until 20 all_done
is "$(sql "select group_concat(distinct status) || '/' || group_concat(distinct mode) from executions where id in ($list)")" \
    succeeded/server "none failed, all on server 0"
check "server 1 is restarting" wait_until 5 sh -c "[ \"\$(curl -s $BASE/api/opencode/status | jq -r '.servers[1].restarts')\" = 1 ]"
is "$(srv 0 restarts)" 0 "server 0 never restarted"
say s2 four
is "$(j .execution.mode)" per-session "s2's message falls back while its server is down"
like "$(j .text)" '^fake answer to: four \(continued ses_[^)]*\) \(earlier: three\)$' "in its server's opencode data: the conversation goes on"
rm -f "$CTL/slow_start@server-1"
check "server 1 comes back" wait_until 15 sh -c "[ \"\$(curl -s $BASE/api/opencode/status | jq -r '.servers[1].state')\" = ready ]"
say s2 five
is "$(j .execution.mode)" server "s2 is served by its server again"
like "$(j .text)" 'turn 5, earlier: four' "with the turn the fallback ran"
is "$(placed s2)" 1 "still placed on server 1"

# --- a hung server: the other keeps answering ----------------------------------------------------------
P0=$(srv 0 pid)
touch "$CTL/hang_health@server"
check "server 0's hung health check is caught" wait_until 10 sh -c "! kill -0 $P0 2>/dev/null"
say s3 two
is "$STATUS/$(j .execution.mode)" 200/server "server 1's sessions are served meanwhile"
rm -f "$CTL/hang_health@server"
check "server 0 is replaced" wait_until 15 sh -c "[ \"\$(curl -s $BASE/api/opencode/status | jq -r '.servers[0].state')\" = ready ]"
say s1 two
like "$(j .text)" 'turn 3, earlier: \[\[hang\]\]' "s1 continues on the new server 0 (its opencode data kept)"

# --- recycling one server while the other serves ------------------------------------------------------
# Answers are counted as they come: s1's answer is server 0's second while s4 hangs there, so
# server 0 drains until s4's turn ends.
stack_stop_ocpmd
OCPM_SERVER_MAX_MESSAGES=2 stack_start_ocpmd
P0=$(srv 0 pid)
say s1 three
req POST /api/sessions/s4/messages '{"text":"[[hang]]"}' -H 'Prefer: respond-async'
HANG=$(j .execution_id)
check "s4's hang runs" wait_until 5 sql_is "select status from executions where id=$HANG" running
say s1 four
is "$(j .execution.status)" succeeded "server 0's second answer"
check "server 0 drains" wait_until 5 sh -c "[ \"\$(curl -s $BASE/api/opencode/status | jq -r '.servers[0].state')\" = draining ]"
req POST /api/sessions/s1/messages '{"text":"waits for the new server"}' -H 'Prefer: respond-async'
WAITING=$(j .execution_id)
say s3 three
is "$STATUS/$(j .execution.mode)" 200/server "server 1 answers while server 0 drains"
is "$(srv 0 state)" draining "server 0 still drains (a message in flight)"
is "$(sql "select status from executions where id=$WAITING")" queued "s1's next message waits for its own server"
req POST /api/sessions/s4/abort ''
check "s1's waiting message runs on the replacement" wait_until 15 sql_is "select status from executions where id=$WAITING" succeeded
is "$(sql "select mode from executions where id=$WAITING")" server "on the new server, not a fallback process"
check "server 0 was replaced" test "$(srv 0 pid)" != "$P0"
is "$(sql "select count(*) from manager_events where kind='server_recycle'")" 1 "one recycle recorded"
like "$(sql "select answer from executions where id=$WAITING")" 'turn 6, earlier: four' "s1's conversation went on across the recycle"

# --- servers lowered: sessions of the missing server are placed again --------------------------------
stack_stop_ocpmd
OCPM_SERVERS=1 stack_start_ocpmd
is "$(status | jq -r '.servers | length')" 1 "one server now"
say s2 six
is "$STATUS/$(j .execution.status)" 200/succeeded "a session of the removed server still works"
is "$(placed s2)" 0 "placed on a server that exists"
like "$(j .text)" '\(turn 1\)' "its conversation started anew (it lives in the removed server's data)"
grep -q 'msg="session placed on a server that no longer exists' "$LOG"
is "$?" 0 "the log says so"

stack_stop
check "no process is left" wait_until 10 test -z "$(t_leftovers)"
rm -rf "$CTL"
t_done
