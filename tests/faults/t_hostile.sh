#!/usr/bin/env bash
# Hostile input: the corpus in tests/hostile/corpus.txt replayed through nginx (raw sockets), each
# case with its documented status and JSON error; then the database compared with what only the
# valid cases could add; then fifty slowloris clients against a pool of eight threads.
. "$(dirname "$0")/../integration/lib.sh"
export STACK_CLIENT_MAX_BODY=2m STACK_HEADER_TIMEOUT=2s STACK_BODY_TIMEOUT=2s
export OCPM_RESPONDERS=2 OCPM_RESPONDER_THREADS=4
# One user (the unauthenticated one) sends everything here: the per-user share is lifted.
export OCPM_USER_MAX_SHARE=100%
t_start

req POST /api/sessions '{"id":"target"}'
is "$STATUS" 201 "the target session exists"
ln -s /tmp "$STACK_DIR/workspaces/@anonymous/link-out"
sessions() { sql "select id || ' ' || owner || ' ' || workspace || ' ' || message_count from sessions order by id"; }
BEFORE_SESSIONS=$(sessions)
BEFORE_EXECS=$(sql "select count(*) from executions")

# --- the corpus -------------------------------------------------------------------------------------
python3 "$SRC/tests/hostile/replay.py" "$STACK_PORT" "$SRC/tests/hostile/corpus.txt" >"$TDIR/replay.out" 2>&1
CREATES=()
while IFS= read -r line; do
    case "$line" in
    "ok - "*) ok "${line#ok - }" ;;
    "not ok - "*) rest=${line#not ok - }; not_ok "${rest%%: *}" "${rest#*: }" ;;
    "creates: session "*) CREATES+=("${line#creates: session }") ;;
    *) not_ok "replay.py printed something unexpected" "$line" ;;
    esac
done <"$TDIR/replay.out"
check "the corpus has at least 60 cases" test "$(grep -c '^=== ' "$SRC/tests/hostile/corpus.txt")" -ge 60

# --- the database holds only what the valid cases made -------------------------------------------------
expected=$( (printf '%s\n' "$BEFORE_SESSIONS" | grep -v '^target '; for id in "${CREATES[@]}"; do echo "$id"; done) |
    sed 's/ .*//' | sort)
got=$(sql "select id from sessions where id != 'target' order by id" | sort)
is "$got" "$expected" "sessions: exactly the ones before and the valid cases' new ones"
is "$(sql "select count(*) from sessions where owner != ''")" 0 "no session got an owner from a header"
is "$(sql "select count(*) from executions")" "$((BEFORE_EXECS + 2))" "executions: only the two valid messages"
is "$(sql "select group_concat(prompt, '|') from (select prompt from executions order by id)")" '--version|-m x/y' \
    "which were the option-like texts, stored as text"
is "$(jq -c 'select(.argv[0]? == "run") | .message' "$TDIR/fake.jsonl" | tr '\n' ' ')" '"--version" "-m x/y" ' \
    "and reached opencode as its message (stdin), exactly"
is "$(jq -c 'select(.argv[0]? == "run") | .argv | map(select(. == "--version" or . == "-m x/y")) | length' \
    "$TDIR/fake.jsonl" | sort -u)" 0 "never as an argument"
check "nothing was created through the symlink" test ! -e /tmp/ocpm-never
is "$(sql 'pragma integrity_check')" ok "the database passes integrity_check"

# --- fifty slowloris clients against eight responder threads -------------------------------------------
python3 - "$STACK_PORT" >"$TDIR/slow.out" <<'PY' &
import socket, sys, time
port = int(sys.argv[1])
socks = []
for i in range(50):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /api/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 1000\r\n\r\n{\"id\":")
    socks.append(s)
print("open", flush=True)
closed = 0
deadline = time.monotonic() + 30
for s in socks:
    s.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        while s.recv(4096):
            pass
        closed += 1
    except OSError:
        pass
print("closed %d" % closed, flush=True)
PY
SLOW=$!
check "fifty slow bodies are being sent" wait_until 10 grep -q open "$TDIR/slow.out"
req GET /api/health
is "$STATUS" 200 "the manager answers while fifty slow bodies hold nginx (eight threads, none taken)"
req POST /api/sessions/target/messages '{"text":"while slow clients wait"}'
is "$STATUS" 200 "and runs messages"
wait "$SLOW"
is "$(tail -1 "$TDIR/slow.out")" "closed 50" "nginx closes every slow client at client_body_timeout"
is "$(sql "select count(*) from sessions")" "$(($(printf '%s\n' "$BEFORE_SESSIONS" | wc -l) + ${#CREATES[@]}))" \
    "and none of them stored anything"
t_done
