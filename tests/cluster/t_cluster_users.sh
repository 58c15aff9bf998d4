#!/usr/bin/env bash
# A cluster whose nodes require logins (each node's nginx: auth_basic, REMOTE_USER to ocpmd): the front
# passes the client's Authorization on, places sessions without one of its own, and one user never
# reaches another's session through it. The nodes' operator paths want the operators' login, which
# no user's login is.
. "$(dirname "$0")/../integration/lib.sh"
export OCPM_LOG_LEVEL=info STACK_HTPASSWD_USERS="alice:apw bob:bpw"
t_prepare
t_cluster n1 n2

check "each node is ready without a login (the front's probe needs none)" cluster_node_ready n1
req POST /api/sessions
is "$STATUS/$(j .error.code)" 401/unauthorized "a creation without a login: 401 from the node, through the front"
is "$(ndb n1 "select count(*) from sessions") $(ndb n2 "select count(*) from sessions")" "0 0" "and nothing was made"
req POST /api/sessions "" -u alice:apw
A=$(j .id)
like "$STATUS $A" '^201 s_n[12]_' "alice's session, placed through the front"
is "$(j .owner)" alice "owned by alice"
req POST "/api/sessions/$A/messages" '{"text":"mine"}' -u alice:apw
is "$STATUS/$(j .execution.status)" 200/succeeded "alice's message answers"
for p in "/api/sessions/$A" "/api/sessions/$A/permissions"; do
    req GET "$p" "" -u bob:bpw
    is "$STATUS/$(j .error.code)" 404/session_not_found "bob asks $p: 404, as for a session that does not exist"
done
req POST "/api/sessions/$A/messages" '{"text":"not yours"}' -u bob:bpw
is "$STATUS/$(j .error.code)" 404/session_not_found "bob's message to alice's session: 404"
req GET "/api/sessions/$A" "" -u bob:wrong
is "$STATUS" 401 "a wrong password: 401"
node=${A#s_}
node=${node%%_*}
req GET "/api/executions?session=$A" "" -u bob:bpw
is "$STATUS/$(j '.executions | length')" 200/0 "bob's history of alice's session: empty"
req GET "/nodes/$node/api/admin/sessions" "" -u alice:apw
is "$STATUS/$(j .error.code)" 401/unauthorized "a user's login is not the operators': 401 on a node's operator path"
OP="operator:$(cat "$CLUSTER_DIR/front/operator.password")"
req GET "/nodes/$node/api/admin/sessions" "" -u "$OP"
is "$STATUS/$(j '.sessions[0].owner')" 200/alice "the operators' login reads it"
is "$(ndb "$node" "select count(*) from executions where owner = 'alice'")" 1 "alice's one execution, on her session's node"

cluster_stop
check "nothing left running" wait_until 20 test -z "$(t_leftovers)"
t_done
