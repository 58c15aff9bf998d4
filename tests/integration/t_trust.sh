#!/usr/bin/env bash
# The trust boundaries, each finding of the security review tried again through the real path:
# two users through nginx with auth_basic, a raw FastCGI client on the socket, and the fake opencode
# running as the agent (its own user when the tests run as root, in its Landlock sandbox), asked
# what it can reach.
. "$(dirname "$0")/lib.sh"
export STACK_HTPASSWD_USERS="alice:apw bob:bpw anonymous:npw"
export OCPM_MAX_CONCURRENT_RUNS=4 OCPM_RESPONDERS=1 OCPM_RESPONDER_THREADS=4 OCPM_RUN_TIMEOUT=30s
export OCPM_SESSION_QUEUE_LIMIT=16
ROOT=0
[ "$(id -u)" = 0 ] && ROOT=1
t_start
A=(-u alice:apw)
B=(-u bob:bpw)
WS="$STACK_DIR/workspaces"
FCGI_CLIENT="$SRC/tests/trust/fcgi_client.py"
mk() { req POST /api/sessions "{\"id\":\"$1\"}" "${@:2}"; }
exec_done() { sql_is "select count(*) from executions where id=$1 and status not in ('queued','running')" 1; }

# --- the agent is someone else, and reaches nothing of ocpm's nor of another user's -----------------
mk a1 "${A[@]}"
mk b1 "${B[@]}"
req POST /api/sessions/b1/messages '{"text":"bob was here"}' "${B[@]}"
is "$STATUS" 200 "bob's first message runs"
if [ "$ROOT" = 1 ]; then
    install -o ocpm-agent -g ocpm-agent -m 0600 /dev/null "$WS/bob/b1/secret"
else
    : >"$WS/bob/b1/secret"
fi
PROBE="fds:all read:$DB read:$DB-wal read:$STACK_DIR/ocpmd.lock read:$LOG connect:$STACK_DIR/fcgi.sock"
PROBE="$PROBE connect:$STACK_DIR/ocpmd.sock list:$WS/bob read:$WS/bob/b1/secret write:$WS/bob/b1/planted"
PROBE="$PROBE list:$STACK_DIR/agent/users/bob signal:$STACK_OCPMD_PID write:$WS/alice/a1/mine read:/etc/hostname"
req POST /api/sessions/a1/messages "{\"text\":\"[[probe]] $PROBE\"}" "${A[@]}"
is "$STATUS" 200 "alice's agent answers the probe"
P=$(j .text)
pc() { printf '%s' "$P" | jq -r --arg k "$1" '.checks[$k]'; }
for item in "read:$DB" "read:$DB-wal" "read:$STACK_DIR/ocpmd.lock" "read:$LOG" "list:$WS/bob" \
    "read:$WS/bob/b1/secret" "write:$WS/bob/b1/planted" "list:$STACK_DIR/agent/users/bob"; do
    isnt_ok=$(pc "$item")
    if [ "$isnt_ok" != ok ] && [ "$isnt_ok" != null ]; then ok "the agent cannot ${item%%:*} ${item#*:} ($isnt_ok)"; else
        not_ok "the agent cannot ${item%%:*} ${item#*:}" "got: $isnt_ok"; fi
done
is "$(pc "write:$WS/alice/a1/mine")" ok "the agent writes its own workspace"
is "$(printf '%s' "$P" | jq -r '[.fds[] | select(test("^(socket|pipe|anon_inode):"))] | length')" 0 \
    "it holds no socket, pipe or event descriptor of the manager's (only stdio: $(printf '%s' "$P" | jq -c .fds))"
is "$(pc "read:/etc/hostname")" ok "and reads the system"
check "nothing was planted in bob's workspace" test ! -e "$WS/bob/b1/planted"
if [ "$ROOT" = 1 ]; then
    AUID=$(id -u ocpm-agent)
    is "$(printf '%s' "$P" | jq -r .uid)" "$AUID" "the agent runs as ocpm-agent (uid $AUID), not as root"
    is "$(printf '%s' "$P" | jq -r '"\(.gid) \(.groups | length)"')" "$(id -g ocpm-agent) 0" \
        "with its own group only, no supplementary one (not the FastCGI socket's)"
    for item in "connect:$STACK_DIR/fcgi.sock" "connect:$STACK_DIR/ocpmd.sock" "signal:$STACK_OCPMD_PID"; do
        r=$(pc "$item")
        if [ "$r" != ok ]; then ok "the agent cannot ${item%%:*} ${item#*:} ($r)"; else not_ok "the agent cannot ${item%%:*} ${item#*:}"; fi
    done
    is "$(stat -c %U "$WS/alice/a1")" ocpm-agent "the workspace is the agent's"
    is "$(stat -c %U:%a "$WS/alice")" root:711 "the owner's directory above it is ocpmd's (the agent cannot swap its workspace)"
else
    echo "# not root: the agent runs as ocpmd's own user (agentIsolation says so); uid checks skipped"
fi
req GET /api/opencode/status
is "$(j '.ocpm.agentIsolation | [has("user","separateUser","sandbox","limits")] | all')" true "status reports agentIsolation"
is "$(j .ocpm.agentIsolation.separateUser)" "$([ "$ROOT" = 1 ] && echo true || echo false)" "and whether the agent has a user of its own"

# --- the FastCGI socket is not for anyone who can reach it -------------------------------------------
is "$(stat -c %a "$STACK_DIR/fcgi.sock")" 660 "the FastCGI socket is 0660, never 0666"
is "$(stat -c %a "$STACK_DIR/ocpmd.sock")" 600 "the control socket is 0600"
if [ "$ROOT" = 1 ]; then
    out=$(python3 "$FCGI_CLIENT" "$STACK_DIR/fcgi.sock" GET /api/sessions alice)
    like "$out" '"id":"a1"' "the raw FastCGI client works (as root, the socket's owner)"
    out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups python3 "$FCGI_CLIENT" "$STACK_DIR/fcgi.sock" \
        GET /api/sessions alice)
    is "$?/$out" "2/cannot connect: PermissionError" "as nobody it cannot connect, so it cannot claim to be alice"
fi

# --- no probing, no takeover of another user's workspace -------------------------------------------
req GET /api/sessions/a1 '' "${B[@]}"
S1="$STATUS $BODY"
req GET /api/sessions/zz-free '' "${B[@]}"
is "$S1" "$STATUS $BODY" "alice's session id answers bob exactly as a free one does"
req POST /api/sessions '{"id":"b2","workspace":"a1"}' "${B[@]}"
is "$STATUS/$(j .workspace)" 201/a1 "bob names alice's workspace: he gets a workspace a1 of his own"
req POST /api/sessions/b2/messages '{"text":"where am I"}' "${B[@]}"
is "$(tail -n 1 "$TDIR/fake.jsonl" | jq -r .cwd)" "$WS/bob/a1" "and his message runs there, not in alice's"
check "alice's workspace is untouched" test ! -e "$WS/alice/a1/.probe" -a -d "$WS/alice/a1"

# --- the workspace is checked again before every run -------------------------------------------------
mk sw "${A[@]}"
req POST /api/sessions/sw/messages '{"text":"first"}' "${A[@]}"
is "$STATUS" 200 "a message in a fresh workspace"
check "which is its own git repository" test -d "$WS/alice/sw/.git"
runs=$(grep -c '"argv"' "$TDIR/fake.jsonl")
mv "$WS/alice/sw" "$WS/alice/sw.moved"
ln -s /etc "$WS/alice/sw"
req POST /api/sessions/sw/messages '{"text":"in /etc?"}' "${A[@]}"
is "$STATUS/$(j .execution.status)" 502/failed "swapped for a symlink to /etc: the message fails"
like "$(j .execution.error)" 'workspace check failed.*symlink.*nothing was run' "saying why"
is "$(grep -c '"argv"' "$TDIR/fake.jsonl")" "$runs" "and nothing ran"
if printf '%s' "$BODY" | grep -q "$STACK_DIR"; then not_ok "the error names no server path"; else ok "the error names no server path"; fi
rm "$WS/alice/sw"
mv "$WS/alice/sw.moved" "$WS/alice/sw"
rm -rf "$WS/alice/sw/.git"
req POST /api/sessions/sw/messages '{"text":"again"}' "${A[@]}"
is "$STATUS" 200 "put back (its .git removed meanwhile): the message runs"
check "and the workspace is its own repository again" test -f "$WS/alice/sw/.git/HEAD"

# --- prompts are never in argv --------------------------------------------------------------------
CANARY="canary-$$-$RANDOM"
req POST /api/sessions/a1/messages "{\"text\":\"$CANARY [[delay=1500]]\"}" -H 'Prefer: respond-async' "${A[@]}"
CID=$(j .execution_id)
check "the canary message reached opencode" wait_until 10 grep -q "\"message\": \"$CANARY" "$TDIR/fake.jsonl"
seen=0
for f in /proc/[0-9]*/cmdline; do # read by the shell itself: no scanning process holds the canary
    { c=$(tr '\0' ' ' <"$f"); } 2>/dev/null # a process may end meanwhile
    [[ "$c" == *"$CANARY"* ]] && seen=$((seen + 1))
done
is "$seen" 0 "no process's command line holds the prompt (ps shows nothing)"
check "the canary run finishes" wait_until 10 exec_done "$CID"

# --- nothing the agent starts outlives its run ---------------------------------------------------------
req POST /api/sessions/a1/messages '{"text":"[[escape]] and leave something behind"}' "${A[@]}"
is "$STATUS" 200 "a run that leaves a process behind (a double fork and setsid) ends normally"
ESC=$(jq -r 'select(.escaped) | .escaped' "$TDIR/fake.jsonl" | tail -n 1)
like "$ESC" '^[0-9]+$' "the escaped process's pid is known"
check "ocpmd adopts it and kills it (nothing outlives its run)" wait_until 10 sh -c "! kill -0 $ESC 2>/dev/null"
check "and says so in its log" grep -q 'killed processes the agent left behind' "$LOG"

# --- nothing with a prompt in it is readable by others ------------------------------------------------
for f in "$DB" "$DB-wal" "$DB-shm"; do
    is "$(stat -c %a "$f" 2>/dev/null)" 600 "$(basename "$f") is 0600"
done
is "$(stat -c %a "$STACK_DIR/agent/users/alice")" 700 "alice's agent home (opencode's data) is 0700"
is "$(stat -c %a "$STACK_DIR/agent/users/alice/data")" 700 "and so is its data directory"
if [ "$ROOT" = 1 ]; then
    is "$(stat -c %U "$STACK_DIR/agent/users/alice/data")" ocpm-agent "owned by the agent's user"
    bad=$(find "$STACK_DIR/agent/users" -newer "$DB" -type f -perm /077 | head -3)
    is "$bad" "" "files the agent made are private to it (umask 077)"
fi

# --- no user takes more than their share ---------------------------------------------------------------
# Run slots: 4, so one user runs at most 2 at once; bob's message is not held behind alice's.
ids=()
for s in r1 r2 r3; do
    mk "$s" "${A[@]}"
    req POST "/api/sessions/$s/messages" '{"text":"share [[delay=2000]]"}' -H 'Prefer: respond-async' "${A[@]}"
    ids+=("$(j .execution_id)")
done
list=$(IFS=,; echo "${ids[*]}")
check "two of alice's three run" wait_until 10 sql_is "select count(*) from executions where id in ($list) and status='running'" 2
is "$(sql "select status from executions where id=${ids[2]}")" queued "her third waits (user_max_share of the run slots)"
req POST /api/sessions/b1/messages '{"text":"bob is not starved"}' "${B[@]}"
is "$STATUS" 200 "bob's message runs meanwhile"
is "$(sql "select status from executions where id=${ids[2]}")" queued "while alice's third still waits"
check "alice's three finish" wait_until 20 exec_done "${ids[2]}"
# The pool's message capacity: 1 x 4 threads less a reserve of 1 is 3, one user holds at most 1.
mk hold "${A[@]}"
bg_message_as() { # USERPW SESSION TEXT
    curl -s --max-time 60 -u "$1" -H 'Content-Type: application/json' -X POST --data-binary "{\"text\":\"$3\"}" \
        -o "$TDIR/bg.body" -w '%{http_code} %{time_total}' "$BASE/api/sessions/$2/messages" >"$TDIR/bg.status" &
    BG=$!
}
bg_message_as alice:apw hold "held [[delay=2500]]"
check "alice's synchronous message runs" wait_until 10 grep -q '"message": "held' "$TDIR/fake.jsonl"
req POST /api/sessions/a1/messages '{"text":"a second one"}' "${A[@]}"
is "$STATUS/$(j .error.code)" 429/user_busy "a second synchronous message of hers is refused (user_max_share of the pool)"
like "$HEADERS" 'Retry-After: [0-9]+' "with Retry-After"
req POST /api/sessions/a1/messages '{"text":"async is fine"}' -H 'Prefer: respond-async' "${A[@]}"
is "$STATUS" 202 "an asynchronous one holds no thread and is taken"
req POST /api/sessions/b1/messages '{"text":"bob still gets in"}' "${B[@]}"
is "$STATUS" 200 "bob's synchronous message is served"
bg_wait
is "$STATUS" 200 "alice's held message ends normally"

# --- a user makes a bounded number of workspaces (a deleted session's stays on disk) ---------------------
stack_stop_ocpmd
OCPM_USER_MAX_WORKSPACES=3 stack_start_ocpmd || { echo "Bail out! ocpmd did not restart"; exit 1; }
# bob has two workspaces (b1, and his a1); a third is allowed, then no more, deleted sessions or not.
mk ch1 "${B[@]}"
is "$STATUS" 201 "bob's third workspace"
req DELETE /api/sessions/ch1 '' "${B[@]}"
req POST /api/sessions '{"id":"ch2"}' "${B[@]}"
is "$STATUS/$(j .error.code)" 429/too_many_workspaces "creating and deleting sessions cannot fill the disk with workspaces"
req POST /api/sessions '{"id":"ch5","workspace":"ch1"}' "${B[@]}"
is "$STATUS" 201 "an existing workspace is reused by name"

# --- queued messages are bounded in memory, per user and overall ---------------------------------------
stack_stop_ocpmd
export OCPM_MAX_CONCURRENT_RUNS=2 OCPM_USER_QUEUE_MAX_BYTES=4m OCPM_QUEUE_MAX_BYTES=6m OCPM_SESSION_QUEUE_LIMIT=16
stack_start_ocpmd || { echo "Bail out! ocpmd did not restart"; exit 1; }
rss() { awk '/^VmRSS/ {print $2}' "/proc/$STACK_OCPMD_PID/status"; }
RSS0=$(rss)
BIG="$TDIR/big.json"
python3 -c 'import json; print(json.dumps({"text": "q" * (256 * 1024 - 16)}))' >"$BIG"
flood() { # USERPW PREFIX: 12 sessions, a hanging message each, then 16 of 256 KiB each
    local s i c
    for s in $(seq 1 12); do
        curl -s -o /dev/null -u "$1" -H 'Content-Type: application/json' -X POST -d "{\"id\":\"$2$s\"}" "$BASE/api/sessions"
        curl -s -o /dev/null -u "$1" -H 'Content-Type: application/json' -H 'Prefer: respond-async' -X POST \
            -d '{"text":"[[hang]]"}' "$BASE/api/sessions/$2$s/messages"
        for i in $(seq 1 16); do
            c=$(curl -s -o /dev/null -w '%{http_code}' -u "$1" -H 'Content-Type: application/json' \
                -H 'Prefer: respond-async' -X POST --data-binary "@$BIG" "$BASE/api/sessions/$2$s/messages")
            echo "$c"
        done
    done
}
flood alice:apw f >"$TDIR/flood-alice"
flood bob:bpw g >"$TDIR/flood-bob"
like "$(grep -c 202 "$TDIR/flood-alice")" '^1[0-6]$' "alice's queue takes about 4 MiB of messages (user_queue_max_bytes)"
like "$(grep -c 429 "$TDIR/flood-alice")" '^1[0-9][0-9]$' "and refuses the rest with 429"
big_post() { # USERPW SESSION: one more 256 KiB message; sets STATUS and BODY
    STATUS=$(curl -s -o "$TDIR/body" -w '%{http_code}' -u "$1" -H 'Content-Type: application/json' \
        -H 'Prefer: respond-async' -X POST --data-binary "@$BIG" "$BASE/api/sessions/$2/messages")
    BODY=$(cat "$TDIR/body")
}
big_post alice:apw f1
is "$STATUS/$(j .error.code)/$(j .error.reason)" 429/queue_full/user "the refusal says queue_full, for this user"
like "$(grep -c 202 "$TDIR/flood-bob")" '^[4-9]$' "bob gets what is left of queue_max_bytes (6 MiB)"
big_post bob:bpw g1
is "$STATUS/$(j .error.reason)" 429/manager "then the manager's bound refuses him too"
RSS1=$(rss)
echo "# manager RSS: ${RSS0} kB at start, ${RSS1} kB with the flood queued"
req GET /api/opencode/status
if [ "$(j .ocpm.heapInUseBytes)" = null ]; then # another allocator than glibc's: AddressSanitizer
    skip "the manager stays under 48 MB with the flood queued" "AddressSanitizer's allocator keeps freed memory"
else
    check "the manager stays under 48 MB with 2 x 12 sessions x 16 x 256 KiB thrown at it" test "$RSS1" -lt 49152
fi
for s in $(seq 1 12); do
    req DELETE "/api/sessions/f$s" '' "${A[@]}"
    req DELETE "/api/sessions/g$s" '' "${B[@]}"
done
req GET /api/opencode/status
is "$(j .processManager.pendingRequests)" 0 "deleting the sessions releases the queue"

# --- one user's history cannot break the history view ---------------------------------------------
mk hist "${A[@]}"
python3 -c 'import json; print(json.dumps({"text": "\u0001" * 65536}))' >"$TDIR/ctl.json"
for i in $(seq 1 46); do
    curl -s -o /dev/null -u alice:apw -H 'Content-Type: application/json' -X POST --data-binary "@$TDIR/ctl.json" \
        "$BASE/api/sessions/hist/messages"
done
is "$(sql "select count(*) from executions where session_id='hist' and owner='alice' and status='succeeded'")" 46 \
    "46 messages of 64 KiB of \\u0001 ran"
req GET '/api/executions?session=hist&limit=1000' "" "${A[@]}"
is "$STATUS" 200 "their history page answers 200"
n=$(j '.executions | length')
cursor=$(j '.next_cursor // empty')
is "$([ "$n" -lt 46 ] && [ -n "$cursor" ] && echo short)" short "the page ends early by bytes ($n rows) and its cursor continues"
seen=$n
while [ -n "$cursor" ]; do
    req GET "/api/executions?session=hist&limit=1000&before=$cursor" "" "${A[@]}"
    [ "$STATUS" = 200 ] || break
    seen=$((seen + $(j '.executions | length')))
    cursor=$(j '.next_cursor // empty')
done
is "$seen" 46 "following the cursor reaches every row"
req GET '/api/admin/executions?limit=1000'
is "$STATUS" 200 "the operators' history answers 200 too"

# --- bad models, strict numbers, paging, the unauthenticated owner, nginx's own errors ---------------
req POST /api/sessions/a1/messages '{"text":"x","model":"../../etc"}' "${A[@]}"
is "$STATUS/$(j .error.code)" 400/unknown_model "a model opencode does not offer is refused before anything runs"
req POST /api/sessions/a1/messages '{"text":"plain"}' "${A[@]}"
is "$STATUS" 200 "and the next message is fine"
for q in 'since=0x10' 'since=inf' 'until=1e9' 'limit=+5'; do
    req GET "/api/executions?$q" '' "${A[@]}"
    is "$STATUS/$(j .error.code)" 400/invalid_parameter "$q is refused (decimal numbers only)"
done
for s in p1 p2 p3 p4 p5; do mk "$s" "${B[@]}"; done
all="" cursor="" pages=0
while :; do
    req GET "/api/sessions?limit=2${cursor:+&after=$cursor}" '' "${B[@]}"
    all="$all $(j '[.sessions[].id] | join(" ")')"
    pages=$((pages + 1))
    cursor=$(j '.next_cursor // empty')
    [ -z "$cursor" ] || [ "$pages" -gt 10 ] && break
done
is "$(echo $all)" "b1 b2 ch5 p1 p2 p3 p4 p5" "sessions come a page at a time, in id order, with a cursor"
if [ "$ROOT" = 1 ]; then
    python3 "$FCGI_CLIENT" "$STACK_DIR/fcgi.sock" POST /api/sessions "" '{"id":"nobodys"}' >/dev/null
    out=$(python3 "$FCGI_CLIENT" "$STACK_DIR/fcgi.sock" GET /api/sessions anonymous)
    if [[ "$out" == *nobodys* ]]; then not_ok "a user named anonymous does not see the unauthenticated sessions"; else
        ok "a user named anonymous does not see the unauthenticated sessions"; fi
fi
req GET /api/sessions/a1 ''
is "$STATUS/$(j .error.code)" 401/unauthorized "nginx's own 401 is ocpm's JSON"
like "$HEADERS" 'WWW-Authenticate: Basic' "and still asks for a login"

# --- a state directory the agent cannot reach (a clone under /root): ocpm puts the agent's files elsewhere
if [ "$ROOT" = 1 ]; then
    PRIV=$(mktemp -d /tmp/ocpm-private-XXXXXX) # 0700: only root may enter, like /root
    (
        unset OCPM_FCGI_SOCKET OCPM_CONTROL_SOCKET
        export OCPM_STATE_DIR="$PRIV/state" OCPM_LOG_LEVEL=info
        exec "$OCPMD" >"$PRIV/ocpmd.log" 2>&1
    ) &
    PPID_OCPMD=$!
    ready() { [ -S "$PRIV/state/fcgi.sock" ] && grep -q 'OpenCode process manager initialized' "$PRIV/ocpmd.log"; }
    check "ocpmd starts with its state under a directory only root may enter" wait_until 30 ready
    moved=$(sed -n 's/.*agent files moved.* workspace_root="\([^"]*\)".*/\1/p' "$PRIV/ocpmd.log")
    like "$moved" '/lib/ocpm-agent/[0-9a-f]{16}/workspaces$' "and puts the agent's workspaces where the agent may reach them"
    python3 "$FCGI_CLIENT" "$PRIV/state/fcgi.sock" POST /api/sessions "" '{"id":"q"}' >/dev/null
    out=$(python3 "$FCGI_CLIENT" "$PRIV/state/fcgi.sock" POST /api/sessions/q/messages "" '{"text":"from a private clone"}')
    like "$out" '"status":"succeeded"' "a message runs there, as the agent"
    kill -TERM "$PPID_OCPMD"
    wait "$PPID_OCPMD"
    rm -rf "$PRIV" "$(dirname "$moved")"
fi

# --- no server paths, pids or argv in what users see ----------------------------------------------
for path in /api/sessions /api/sessions/a1 '/api/executions?limit=100'; do
    req GET "$path" '' "${A[@]}"
    if printf '%s' "$BODY" | grep -q -e "$STACK_DIR" -e '"pid"' -e '"argv"'; then
        not_ok "$path shows no server path, pid or argv" "${BODY:0:300}"
    else ok "$path shows no server path, pid or argv"; fi
done
curl -sN -u alice:apw -H 'Accept: text/event-stream' -H 'Content-Type: application/json' -X POST \
    --data-binary '{"text":"stream"}' "$BASE/api/sessions/a1/messages" >"$TDIR/sse"
like "$(grep -A1 '^event: started' "$TDIR/sse" | tail -1)" '"mode"' "the started event says how it runs"
if grep -q -e '"pid"' -e "$STACK_DIR" "$TDIR/sse"; then not_ok "the stream shows no pid or path"; else ok "the stream shows no pid or path"; fi
t_done
