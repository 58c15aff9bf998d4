#!/usr/bin/env bash
# Budgets per user, through real nginx with the fake opencode: a user past user_daily_tokens or
# user_daily_cost is refused (429 budget_exceeded, with when it resets) while others are not, and
# stays refused across a restart of the manager; a turn that passes user_turn_cost_max is stopped
# and recorded budget_exceeded, in both modes; GET /api/usage says where a user stands.
. "$(dirname "$0")/lib.sh"
export OCPM_USER_DAILY_TOKENS=40 OCPM_USER_TURN_COST_MAX=0.01 OCPM_RUN_TIMEOUT=60s
export STACK_HTPASSWD_USERS="alice:apw bob:bpw carol:cpw dave:dpw"
t_start
as() { REQ_AUTH="-u $1:${1:0:1}pw"; }
for u in alice bob carol; do
    as "$u"
    req POST /api/sessions '{"id":"s"}' >/dev/null
done

# --- tokens per day --------------------------------------------------------------------------------
as alice
n=0
for i in 1 2 3 4 5 6; do
    req POST /api/sessions/s/messages '{"text":"hello there"}'
    [ "$STATUS" = 200 ] && n=$((n + 1))
    [ "$STATUS" = 429 ] && break
done
TOTAL=$(sql "select sum(tokens_in + tokens_out) from executions where owner='alice'")
LAST=$(sql "select tokens_in + tokens_out from executions where owner='alice' order by id desc limit 1")
check "alice's messages ran until her tokens reached user_daily_tokens ($TOTAL >= 40), not one more" \
    test "$n" -ge 2 -a "$TOTAL" -ge 40 -a "$((TOTAL - LAST))" -lt 40
is "$STATUS:$(j .error.code):$(j .error.reason)" "429:budget_exceeded:budget" "the next one: 429 budget_exceeded"
like "$(j .error.message)" 'resets at [0-9-]+T00:00:00Z' "saying when it resets"
RA=$(printf '%s' "$HEADERS" | sed -n 's/^Retry-After: *\([0-9]*\).*/\1/p')
check "Retry-After is the wait until midnight UTC" test "$RA" -ge 1 -a "$RA" -le 86400
is "$(sql "select count(*) from executions where owner='alice'")" "$n" "the refused message is not stored"
req GET /api/usage
is "$(j '[.user, (.tokens|tostring), (.limits.dailyTokens|tostring), (.withinBudget|tostring)] | join(" ")')" \
    "alice $TOTAL 40 false" "GET /api/usage: her tokens today, the bound, and that she is past it"
as bob
req POST /api/sessions/s/messages '{"text":"hello there"}'
is "$STATUS" 200 "bob is not held back by alice's budget"
stack_stop_ocpmd
stack_start_ocpmd
as alice
req POST /api/sessions/s/messages '{"text":"after a restart"}'
is "$STATUS:$(j .error.code)" "429:budget_exceeded" "a restart of the manager forgets nothing of today's usage"

# --- cost per turn ---------------------------------------------------------------------------------
as bob
req POST /api/sessions/s/messages '{"text":"expensive [[spend=0.5]]"}'
is "$STATUS:$(j .error.code)" "502:budget_exceeded" "a turn past user_turn_cost_max is stopped"
is "$(j .execution.status)" budget_exceeded "and recorded budget_exceeded"
like "$(j .error.message)" 'user_turn_cost_max' "saying why"
like "$(curl -s "$BASE/metrics" -u bob:bpw)" 'ocpm_executions_total\{mode="per-session",status="budget_exceeded"\} 1' \
    "/metrics counts it"
like "$(curl -s "$BASE/metrics" -u bob:bpw)" 'ocpm_tokens_total [1-9]' "and the tokens executions reported"

# --- cost per day, and the cap in server mode ---------------------------------------------------------
stack_stop_ocpmd
export OCPM_USER_DAILY_TOKENS=0 OCPM_USER_DAILY_COST=0.003 OCPM_MODE=server OCPM_SERVER_START_TIMEOUT=8s
stack_start_ocpmd
check "server mode" wait_until 20 sh -c "[ \"\$(curl -s -u carol:cpw '$BASE/api/opencode/status' | jq -r .server.state)\" = ready ]"
as carol
for i in 1 2; do req POST /api/sessions/s/messages '{"text":"costs 0.002"}'; done
is "$STATUS" 200 "carol's first two messages run (the fake server's turns cost 0.002 each)"
req POST /api/sessions/s/messages '{"text":"third"}'
is "$STATUS:$(j .error.code)" "429:budget_exceeded" "past user_daily_cost the next is refused"
req GET /api/usage
like "$(j .cost)" '^0\.004' "GET /api/usage shows her cost today"
as bob
req POST /api/sessions/s/messages '{"text":"over"}'
is "$STATUS:$(j .error.code)" "429:budget_exceeded" "bob's stopped turn counts: its 0.5 put him past user_daily_cost"
as dave
req POST /api/sessions '{"id":"t"}'
req POST /api/sessions/t/messages '{"text":"server [[spend=0.5]]"}'
is "$(j .execution.status)" budget_exceeded "server mode: a turn past user_turn_cost_max is stopped too"
t_done
