#!/usr/bin/env bash
# End to end with the real opencode binary (npm opencode-ai, pinned) and the bundled offline model:
# nginx -> responder -> ocpmd -> `opencode run` -> offline model, and the history it leaves.
. "$(dirname "$0")/../integration/lib.sh"
t_real_opencode
export OCPM_RUN_TIMEOUT=180s OCPM_MAX_CONCURRENT_RUNS=8
t_start

req GET /api/opencode/status
is "$(j .available)" true "the real opencode is available"
like "$(j .version)" '^[0-9]+\.[0-9]+\.[0-9]+' "its version is reported"

req POST /api/sessions '{"id":"e1"}'
req POST /api/sessions/e1/messages '{"text":"hello from the e2e test"}'
is "$STATUS" 200 "a message through the real opencode answers 200"
like "$(j .text)" 'offline-model: you said .*hello from the e2e test.*user turns: 1' "the answer is the model's"
is "$(j .execution.status)" succeeded "recorded as succeeded"
OCS=$(j .execution.opencode_session_id)
like "$OCS" '^ses_' "the opencode session id is kept"
is "$(j '.execution.peak_rss_kb > 50000')" true "peak RSS of a real opencode run is recorded"
is "$(j '.execution.tokens_in > 0 and .execution.tokens_out > 0')" true "tokens come from step_finish"

req POST /api/sessions/e1/messages '{"text":"and a second message"}'
is "$STATUS" 200 "the second message answers"
like "$(j .text)" 'user turns: 2, earlier: .*hello from the e2e test' "the model received the earlier turn"
is "$(j .execution.opencode_session_id)" "$OCS" "the same opencode session continued"
like "$(sql "select argv from executions where id=$(j .execution.id)")" "\"--session\",\"$OCS\"" "with --session"

req POST /api/sessions/e1/messages '{"text":"--version"}'
like "$(j .text)" 'you said .*--version' "a message that looks like an option reaches the model"

ids=()
for i in 1 2 3 4 5 6 7 8; do
    req POST /api/sessions "{\"id\":\"p$i\"}"
    req POST "/api/sessions/p$i/messages" "{\"text\":\"parallel $i\"}" -H 'Prefer: respond-async'
    ids+=("$(j .execution_id)")
done
list=$(IFS=,; echo "${ids[*]}")
all_done() { [ "$(sql "select count(*) from executions where id in ($list) and status not in ('queued','running')")" = 8 ]; }
check "8 sessions at once all finish" wait_until 240 all_done
is "$(sql "select count(*) from executions where id in ($list) and status='succeeded'")" 8 "all 8 succeeded"
is "$(sql "select count(*) from executions where id in ($list) and answer like '%parallel%' and duration_ms > 0
    and peak_rss_kb > 0 and cpu_user_ms > 0 and tokens_out > 0 and pid > 0 and exit_code = 0")" 8 \
    "their history rows hold answers, durations, RSS, CPU, tokens and pids"
is "$(sql "select count(distinct opencode_session_id) from executions where id in ($list)")" 8 \
    "each session got its own opencode session"
is "$(sql "select max(n) > 1 from (select (select count(*) from executions b where b.id in ($list)
    and b.started_at <= a.started_at and b.finished_at > a.started_at) as n from executions a where a.id in ($list))")" \
    1 "they ran concurrently"
t_done
