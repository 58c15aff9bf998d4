# Shared helpers for the integration and end-to-end tests: TAP output, a private
# stack (real nginx + ocpmd + the fake or real opencode) per test file, HTTP calls.
# Every wait polls with a deadline (wait_until); nothing sleeps a fixed time to wait.
set -u
SRC=${OCPM_SRCDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export OCPMD=${OCPMD:-$SRC/ocpmd}
# Per-session mode unless a test asks for another (the server tests do).
export OCPM_MODE=${OCPM_MODE:-per-session}
FAKE_OPENCODE="$SRC/tests/fakes/fake_opencode.py"
OCPM_STACK_LIB=1 . "$SRC/scripts/stack"

T_N=0
T_FAIL=0
ok() { T_N=$((T_N + 1)); echo "ok $T_N - $*"; }
not_ok() {
    local d=$1
    shift
    T_N=$((T_N + 1))
    T_FAIL=$((T_FAIL + 1))
    echo "not ok $T_N - $d"
    local l
    for l in "$@"; do printf '#   %s\n' "$l"; done
}
# check DESC COMMAND...: the command must succeed.
check() {
    local d=$1
    shift
    if "$@" >/dev/null 2>&1; then ok "$d"; else not_ok "$d" "failed: $*"; fi
}
# skip DESC WHY: a case that does not apply here (TAP's SKIP directive).
skip() { T_N=$((T_N + 1)); echo "ok $T_N - $1 # SKIP $2"; }
# is GOT WANT DESC
is() { if [ "$1" = "$2" ]; then ok "$3"; else not_ok "$3" "got:  $1" "want: $2"; fi; }
# like GOT REGEX DESC
like() { if [[ "$1" =~ $2 ]]; then ok "$3"; else not_ok "$3" "got:  ${1:0:400}" "want: /$2/"; fi; }

# t_real_opencode: for the end-to-end tests. Sets REAL to the real opencode binary, or skips the
# whole test; points opencode at the offline model; and holds a lock so that only one
# real-opencode test runs at a time (eight `opencode run` processes beside a server on two cores
# starve it, and counts of processes would mix).
t_real_opencode() {
    REAL=${OCPM_OPENCODE_REAL:-$("$SRC/scripts/opencode-bin" 2>/dev/null)}
    if [ -n "${OCPM_SKIP_E2E:-}" ] || [ -z "$REAL" ] || ! "$REAL" --version >/dev/null 2>&1; then
        echo "1..0 # SKIP the real opencode is not installed (scripts/setup installs it) or OCPM_SKIP_E2E is set"
        exit 0
    fi
    export OCPM_OPENCODE_BIN="$REAL"
    unset OPENCODE_CONFIG OPENCODE_CONFIG_CONTENT
    exec 9>"${TMPDIR:-/tmp}/ocpm-e2e.lock"
    flock 9
    T_WITH_MODEL=1
}

# t_start [ocpmd args]: a private stack with the fake opencode (OCPM_* settings from the caller's env).
# The fake runs as the agent (its own user when the tests run as root, inside its sandbox): it is
# copied where that user may read it, and its log is a file the sandbox lets it write.
t_start() {
    t_prepare
    stack_init "$TDIR/state"
    if [ -n "${T_WITH_MODEL:-}" ]; then
        stack_start_model || { echo "Bail out! the offline model did not start"; exit 1; }
    fi
    stack_start_ocpmd "$@" || { echo "Bail out! ocpmd did not start"; exit 1; }
    stack_start_nginx "$(free_port)" || { echo "Bail out! nginx did not start"; exit 1; }
    BASE="http://127.0.0.1:$STACK_PORT"
    DB="$STACK_DIR/ocpm.db"
    LOG="$STACK_DIR/logs/ocpmd.log"
}

# t_prepare: the test's directory (TDIR, removed at the end unless a case failed) with the fake
# opencode where the agent may run it, and the settings every stack of the test inherits.
t_prepare() {
    TDIR=$(mktemp -d /tmp/ocpm-test-XXXXXX)
    chmod 0755 "$TDIR"
    mkdir -p "$TDIR/fakes"
    cp "$SRC"/tests/fakes/*.py "$TDIR/fakes/"
    chmod 0755 "$TDIR/fakes" "$TDIR"/fakes/*.py
    [ "${OCPM_OPENCODE_BIN:-}" = "$FAKE_OPENCODE" ] && OCPM_OPENCODE_BIN="$TDIR/fakes/fake_opencode.py"
    FAKE_OPENCODE="$TDIR/fakes/fake_opencode.py"
    export OCPM_OPENCODE_BIN=${OCPM_OPENCODE_BIN:-$FAKE_OPENCODE}
    export OCPM_LOG_LEVEL=${OCPM_LOG_LEVEL:-debug}
    export OPENCODE_FAKE_LOG="$TDIR/fake.jsonl"
    : >"$OPENCODE_FAKE_LOG"
    chmod 0666 "$OPENCODE_FAKE_LOG"
    export OCPM_AGENT_WRITE_PATHS="$OPENCODE_FAKE_LOG${OCPM_AGENT_WRITE_PATHS:+ $OCPM_AGENT_WRITE_PATHS}"
    trap t_cleanup EXIT
}

# t_cluster NAME...: after t_prepare, a cluster in TDIR (scripts/cluster): those nodes and the front.
# BASE is the front; ndb NODE QUERY reads that node's database (read-only).
t_cluster() {
    OCPM_CLUSTER_LIB=1 . "$SRC/scripts/cluster"
    cluster_init "$TDIR/cluster"
    local n
    for n in "$@"; do
        cluster_start_node "$n" || { echo "Bail out! node $n did not start"; exit 1; }
    done
    cluster_start_front "$(free_port)" || { echo "Bail out! the front did not start"; exit 1; }
    BASE="http://127.0.0.1:$CLUSTER_FRONT_PORT"
}
ndb() { sqlite3 -readonly "$CLUSTER_DIR/$1/ocpm.db" "$2"; }

# Processes of this test's stack (the manager and its responders, every agent process, the fakes,
# nginx): pids.py.
t_pids() { python3 "$SRC/tests/integration/pids.py" "$TDIR" "${1:-all}"; }
t_leftovers() { t_pids all; }

t_cleanup() {
    trap - EXIT
    stack_stop >/dev/null 2>&1
    declare -F cluster_stop >/dev/null && cluster_stop >/dev/null 2>&1
    if [ -n "${TDIR:-}" ] && [ -d "$TDIR" ]; then
        if wait_until 10 test -z "$(t_leftovers)"; then :; else
            echo "# leftover processes: $(t_leftovers | tr '\n' ' ')"
            t_leftovers | xargs -r ps -o pid=,pgid=,stat=,args= -p 2>/dev/null | sed 's/^/#   /'
            t_leftovers | xargs -r kill -9 2>/dev/null
        fi
        if [ "$T_FAIL" -gt 0 ]; then
            echo "# kept $TDIR for inspection"
            local log
            for log in "$TDIR"/state/logs/ocpmd.log "$TDIR"/*/logs/ocpmd.log "$TDIR"/*/*/logs/ocpmd.log; do
                [ -f "$log" ] || continue
                echo "# manager log tail: $log"
                tail -n 30 "$log" | sed 's/^/#   /'
            done
        else
            rm -rf "$TDIR"
        fi
    fi
}

t_done() {
    echo "1..$T_N"
    t_cleanup
    exit 0
}

# req METHOD PATH [BODY] [extra curl args...]: sets STATUS, BODY and HEADERS.
req() {
    local method=$1 path=$2 body=${3-}
    shift 2
    [ $# -gt 0 ] && shift
    local args=(-s -X "$method" -o "$TDIR/body" -D "$TDIR/headers" -w '%{http_code}' --max-time 120)
    if [ -n "$body" ]; then
        printf '%s' "$body" >"$TDIR/req-body" # a file: bodies may be larger than an argument
        args+=(-H 'Content-Type: application/json' --data-binary "@$TDIR/req-body")
    fi
    # REQ_AUTH (e.g. "-u carol:pw") is a default login; a later -u in the arguments wins.
    # shellcheck disable=SC2086
    STATUS=$(curl "${args[@]}" ${REQ_AUTH:-} "$@" "$BASE$path")
    BODY=$(cat "$TDIR/body")
    HEADERS=$(cat "$TDIR/headers")
}
# bg_message SESSION TEXT: a synchronous message in the background (BG is its pid). bg_wait waits
# for it and sets STATUS, SECS (its time) and BODY from its answer.
bg_message() {
    curl -s --max-time 60 -H 'Content-Type: application/json' -X POST --data-binary "{\"text\":\"$2\"}" \
        -o "$TDIR/bg.body" -w '%{http_code} %{time_total}' "$BASE/api/sessions/$1/messages" >"$TDIR/bg.status" &
    BG=$!
}
bg_wait() {
    wait "$BG"
    read -r STATUS SECS <"$TDIR/bg.status"
    BODY=$(cat "$TDIR/bg.body")
}
# running_id SESSION: the id of the session's execution that is running now (waits for it).
running_id() {
    local q="select count(*) from executions where session_id='$1' and status='running'"
    wait_until 10 sql_is "$q" 1 && sql "select id from executions where session_id='$1' and status='running'"
}
# settled: reading status, health and metrics asked nothing of the manager (each was current in
# the snapshot; one is stale for up to its interval after the manager's last answer: snapshot.h).
settled() {
    local a b
    a=$(curl -s "$BASE/api/opencode/status" | jq -r .ocpm.requests)
    curl -s -o /dev/null "$BASE/api/health"
    curl -s -o /dev/null "$BASE/metrics"
    b=$(curl -s "$BASE/api/opencode/status" | jq -r .ocpm.requests)
    [ "$a" = "$b" ]
}
# j FILTER: jq -r on the last BODY.
j() { printf '%s' "$BODY" | jq -r "$1" 2>/dev/null; }
# sql QUERY: read the manager's database (read-only, as an operator would).
sql() { sqlite3 -readonly "$DB" "$1"; }
# sql_is QUERY WANT: does the query answer exactly WANT now? (for wait_until)
sql_is() { [ "$(sql "$1")" = "$2" ]; }
