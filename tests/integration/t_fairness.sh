#!/usr/bin/env bash
# Fair shares between users, through real nginx with the fake opencode: the next message to start
# is chosen round robin over the users who have one, so one user's long queue does not hold back
# another's message; user_queue_limit refuses a user's next waiting message (429 user_limit);
# user_max_running keeps a user's messages from running side by side while others' may.
. "$(dirname "$0")/lib.sh"
export OCPM_MAX_CONCURRENT_RUNS=1 OCPM_USER_MAX_SHARE=100% OCPM_USER_QUEUE_LIMIT=4
export STACK_HTPASSWD_USERS="alice:apw bob:bpw carol:cpw"
t_start

as() { REQ_AUTH="-u $1:${1:0:1}pw"; }
queue() { req POST "/api/sessions/$1/messages" "{\"text\":\"$2\"}" -H 'Prefer: respond-async'; }
idle() { [ "$(sql "select count(*) from executions where status in ('queued','running')")" = 0 ]; }

for u in alice bob carol; do
    as "$u"
    for s in 0 1 2 3 4; do req POST /api/sessions "{\"id\":\"${u:0:1}$s\"}" >/dev/null; done
done

# --- round robin ------------------------------------------------------------------------------------
as alice
queue a0 "hold [[delay=1500]]"
check "alice's first message runs" wait_until 10 sql_is "select status from executions where session_id='a0'" running
for s in 1 2 3 4; do queue "a$s" "a$s [[delay=100]]"; done
is "$STATUS" 202 "alice queues four more"
queue a0 "one too many"
is "$STATUS:$(j .error.code):$(j .error.reason)" "429:user_limit:user" "a fifth waiting message of hers: 429 user_limit"
like "$HEADERS" 'Retry-After: [0-9]+' "with Retry-After"
as bob
queue b1 "b1 [[delay=100]]"
as carol
queue c1 "c1 [[delay=100]]"
is "$STATUS" 202 "bob and carol queue one each, after her"
check "everything runs" wait_until 60 idle
is "$(sql "select session_id from executions order by started_at" | tr '\n' ' ')" "a0 b1 c1 a1 a2 a3 a4 " \
    "they start round robin by user: bob's and carol's do not wait for alice's queue"
is "$(sql "select count(*) from executions where status='succeeded'")" 7 "and all succeed"

# --- user_max_running --------------------------------------------------------------------------------
stack_stop_ocpmd
export OCPM_MAX_CONCURRENT_RUNS=4 OCPM_USER_MAX_RUNNING=1
stack_start_ocpmd
as alice
for s in 1 2 3; do queue "a$s" "parallel? [[delay=400]]"; done
as bob
queue b1 "beside her [[delay=400]]"
check "everything runs" wait_until 60 idle
OVERLAP=$(sql "select count(*) from executions x join executions y on x.id < y.id and x.owner = y.owner
               where x.owner = 'alice' and x.started_at > $(date +%s) - 60 and y.started_at < x.finished_at
               and x.started_at < y.finished_at")
is "$OVERLAP" 0 "user_max_running = 1: none of alice's messages ran beside another of hers"
BESIDE=$(sql "select count(*) from executions b join executions a on a.owner = 'alice' and b.owner = 'bob'
              where b.started_at > $(date +%s) - 60 and a.started_at > $(date +%s) - 60
              and b.started_at < a.finished_at and a.started_at < b.finished_at")
like "$BESIDE" '^[1-9]' "while bob's ran beside one of hers"
t_done
