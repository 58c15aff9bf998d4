#!/usr/bin/env bash
# End to end, a cluster with the real opencode: two nodes on loopback (each nginx + ocpmd + `opencode
# serve` + the offline model, in its own state) behind the front nginx. A conversation on each node
# continues through the front, each node's opencode kept its own, and a session placed without an id
# lands on one of them and answers.
. "$(dirname "$0")/../integration/lib.sh"
t_real_opencode
export OCPM_MODE=server OCPM_RUN_TIMEOUT=180s OCPM_SERVER_START_TIMEOUT=120s OCPM_LOG_LEVEL=info
t_prepare
t_cluster n1 n2

for n in n1 n2; do
    req PUT "/api/sessions/s_${n}_talk" '{}'
    is "$STATUS" 201 "a session on $n through the front (PUT, the id in $n's form)"
    req POST "/api/sessions/s_${n}_talk/messages" "{\"text\":\"hello $n\"}"
    is "$STATUS/$(j .execution.mode)" 200/server "$n: the first message answered by its opencode serve"
    like "$(j .text)" "offline-model: you said .*hello $n.*user turns: 1" "$n: with the model's answer"
    eval "OCS_$n=\$(j .execution.opencode_session_id)"
done
for n in n1 n2; do
    req POST "/api/sessions/s_${n}_talk/messages" "{\"text\":\"again $n\"}"
    like "$(j .text)" "user turns: 2, earlier: .*hello $n" "$n: the second message continues the conversation"
    want=OCS_$n
    is "$(j .execution.opencode_session_id)" "${!want}" "$n: in the same opencode session"
    is "$(ndb "$n" "select count(*) from executions where session_id = 's_${n}_talk' and status = 'succeeded'")" 2 \
        "$n: both turns recorded in $n's own database"
done
other=$(ndb n1 "select count(*) from executions where session_id = 's_n2_talk'")
is "$other" 0 "n1 never saw n2's conversation"
check "each node's opencode serve kept its own session (n1's unknown to n2's database)" \
    test "$(ndb n2 "select count(*) from sessions where opencode_session_id = '$OCS_n1'")" = 0

req POST /api/sessions
PLACED=$(j .id)
like "$STATUS $PLACED" '^201 s_n[12]_[0-9a-f]{24}$' "a session placed without an id: on one of the nodes ($PLACED)"
req POST "/api/sessions/$PLACED/messages" '{"text":"placed"}'
like "$STATUS $(j .text)" '^200 offline-model: you said .*placed' "and it answers through the front"

cluster_stop
check "nothing left running" wait_until 30 test -z "$(t_leftovers)"
t_done
