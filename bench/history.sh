#!/usr/bin/env bash
# Operators' queries with 1,000,000 executions in the database, through nginx: stats over all time
# and the last 24 h (FIGURE lines: p50 of several calls), history pages, ocpmctl stats. Prints;
# asserts nothing; a query that does not answer 200 fails the run (its time would mean nothing).
# (The status endpoint under wrk is bench/status.sh's.)
#   BENCH_ROWS=1000000 bench/history.sh    (100,000 with BENCH_QUICK=1)
set -eu
. "$(dirname "$0")/lib.sh"
OCPMCTL=${OCPMCTL:-$SRC/ocpmctl}
ROWS=${BENCH_ROWS:-$(quick 1000000 100000)}
# One client plays every user here: the per-user bounds would measure fairness, not the stack.
export OCPM_USER_MAX_SHARE=100% OCPM_USER_MAX_SESSIONS=100000 OCPM_USER_MAX_WORKSPACES=100000 OCPM_USER_QUEUE_MAX_BYTES=1g OCPM_QUEUE_MAX_BYTES=1g
export OCPM_OPENCODE_BIN="$SRC/tests/fakes/fake_opencode.py" OCPM_LOG_LEVEL=warn OCPM_MODE=per-session
trap 'stack_stop || :; rm -rf "$DIR"' EXIT
stack_start_ocpmd
stack_stop_ocpmd
now=$(date +%s)
t0=$(date +%s%N)
sqlite3 "$DIR/state/ocpm.db" <<SQL
PRAGMA journal_mode = WAL;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
INSERT INTO sessions (id, owner, workspace, created_at, last_activity, message_count)
SELECT 's' || i, 'user' || (i % 50), '/w/s' || i, $now - 2592000, $now, 0 FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $ROWS)
INSERT INTO executions (session_id, owner, mode, status, queued_at, started_at, finished_at, duration_ms,
    queue_wait_ms, peak_rss_kb, tokens_in, tokens_out, cost, exit_code)
SELECT 's' || (i % 1000 + 1), 'user' || ((i % 1000 + 1) % 50), CASE WHEN i % 3 THEN 'server' ELSE 'per-session' END,
       CASE WHEN i % 50 = 0 THEN 'failed' WHEN i % 97 = 0 THEN 'timeout' ELSE 'succeeded' END,
       $now - 2592000 + i * (2592000.0 / $ROWS), $now - 2592000 + i * (2592000.0 / $ROWS) + 0.01,
       $now - 2592000 + i * (2592000.0 / $ROWS) + (i % 5000) / 1000.0, (i * 7919) % 60000 / 10.0, (i % 100) / 10.0,
       300000 + i % 400000, 100 + i % 900, 50 + i % 500, 0.001, 0 FROM n;
COMMIT;
SQL
gen=$(( ($(date +%s%N) - t0) / 1000000 ))
stack_start_ocpmd
PORT=$(free_port)
stack_start_nginx "$PORT"
B="http://127.0.0.1:$PORT"
echo "ocpm benchmark: $ROWS executions in 1,000 sessions (generated in ${gen} ms), $(nproc) cores"
# timeit LABEL N URL [KEY GOAL]: p50 and max of curl's total time over N calls; with KEY, the p50
# as a FIGURE line too.
timeit() {
    local label=$1 n=$2 url=$3 code t times="" p50 max
    for _ in $(seq 1 "$n"); do
        read -r code t < <(curl -s -o /dev/null -w '%{http_code} %{time_total}\n' "$url")
        [ "$code" = 200 ] || { echo "bench: $url answered $code" >&2; return 1; }
        times+="$t"$'\n'
    done
    read -r p50 max < <(printf '%s' "$times" | sort -n | awk '{a[NR] = $1 * 1000} END {print a[int((NR + 1) / 2)], a[NR]}')
    printf '  %-52s p50 %8.1f ms   max %8.1f ms\n' "$label" "$p50" "$max"
    [ -z "${4:-}" ] || figure "$4" "GET $label, $ROWS rows: p50 of $n" "$p50" - ms "$5"
}
timeit "/api/stats, all time" "$(quick 7 5)" "$B/api/stats" stats.all "ocpm < 100"
timeit "/api/stats?since=, last 24 h" "$(quick 11 5)" "$B/api/stats?since=$((now - 86400))" stats.day "ocpm < 20"
timeit "history page, 50 newest (admin)" 20 "$B/api/admin/executions?limit=50"
timeit "history page, filtered by status=timeout" 20 "$B/api/admin/executions?status=timeout&limit=50"
timeit "history page, one session, deep cursor" 20 "$B/api/admin/executions?session=s500&before=$((ROWS / 2))&limit=50"
timeit "history page, since/until window" 20 "$B/api/admin/executions?since=$((now - 864000))&until=$((now - 863000))&limit=50"
t0=$(date +%s%N); "$OCPMCTL" --json stats >/dev/null; echo "  ocpmctl stats (read-only, all time)                   $(( ($(date +%s%N) - t0) / 1000000 )) ms"
