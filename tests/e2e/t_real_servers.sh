#!/usr/bin/env bash
# End to end with two real `opencode serve` processes (servers = 2) and the offline model: each
# with its own opencode data, sessions spread over both, every conversation continuing; one server
# killed: the other's sessions go on untouched, the killed one's fall back in its data, then
# return to it when it is back, still the same conversations.
. "$(dirname "$0")/../integration/lib.sh"
t_real_opencode
export OCPM_MODE=server OCPM_SERVERS=2 OCPM_RUN_TIMEOUT=180s OCPM_MAX_CONCURRENT_RUNS=8
export OCPM_SERVER_START_TIMEOUT=120s OCPM_HEARTBEAT_INTERVAL=2s
t_start

status() { curl -s "$BASE/api/opencode/status"; }
req GET /api/opencode/status
is "$(j '[.servers[] | .healthy] | join(",")')" true,true "two real servers, both healthy"
P0=$(j '.servers[0].pid')
P1=$(j '.servers[1].pid')
envof() { tr '\0' '\n' </proc/"$1"/environ | sed -n "s/^$2=//p"; }
check "each has its own opencode data" test "$(envof "$P0" XDG_DATA_HOME)" != "$(envof "$P1" XDG_DATA_HOME)"

for i in 1 2 3 4; do
    req POST /api/sessions "{\"id\":\"m$i\"}"
    req POST "/api/sessions/m$i/messages" "{\"text\":\"hello $i\"}"
    is "$STATUS/$(j .execution.mode)" 200/server "m$i's first message through a server"
done
is "$(sql "select group_concat(server, '') from (select server from sessions where id like 'm%' order by id)")" 0101 \
    "the sessions are spread over both servers"
is "$(sql "select count(distinct pid) from executions where session_id like 'm%'")" 2 "two processes served them"
for i in 1 2 3 4; do
    req POST "/api/sessions/m$i/messages" "{\"text\":\"again $i\"}"
    like "$(j .text)" "user turns: 2, earlier: .*hello $i" "m$i continues on its server"
done

kill -9 "$P1"
req POST /api/sessions/m1/messages '{"text":"while one is down"}'
is "$(j .execution.mode)/$(sql "select pid from executions where id=$(j .execution.id)")" "server/$P0" \
    "server 0's session is served by server 0 meanwhile"
like "$(j .text)" 'user turns: 3' "and goes on"
req POST /api/sessions/m2/messages '{"text":"during the outage"}'
is "$STATUS" 200 "server 1's session answers while its server is down"
like "$(j .text)" 'user turns: 3, earlier: .*again 2' "its conversation continues (a fallback run in server 1's data, or server 1 back)"
back() { [ "$(status | jq -r '.servers[1].healthy and .servers[1].restarts == 1')" = true ]; }
check "server 1 is restarted" wait_until 120 back
req POST /api/sessions/m4/messages '{"text":"after the restart"}'
is "$(j .execution.mode)" server "m4 is served by a server again"
like "$(j .text)" 'user turns: 3, earlier: .*again 4' "its conversation continues across the kill"
req POST /api/sessions/m2/messages '{"text":"back home"}'
like "$(j .text)" 'user turns: 4, earlier: .*during the outage' "m2 too, with the turn it had meanwhile"
is "$(status | jq -r '.servers[0].restarts')" 0 "server 0 was never restarted"
t_done
