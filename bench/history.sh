#!/usr/bin/env bash
# Operators' queries with 1,000,000 executions in the database, and the status endpoint under wrk
# against nginx serving a static file of the same size, in one run. Prints; asserts nothing.
#   BENCH_ROWS=1000000 BENCH_WRK_SECONDS=10 bench/history.sh
set -eu
. "$(dirname "$0")/lib.sh"
OCPMCTL=${OCPMCTL:-$SRC/ocpmctl}
ROWS=${BENCH_ROWS:-1000000}
SECS=${BENCH_WRK_SECONDS:-10}
# One client plays every user here: the per-user bounds would measure fairness, not the stack.
export OCPM_USER_MAX_SHARE=100% OCPM_USER_MAX_SESSIONS=100000 OCPM_USER_MAX_WORKSPACES=100000 OCPM_USER_QUEUE_MAX_BYTES=1g OCPM_QUEUE_MAX_BYTES=1g
export OCPM_OPENCODE_BIN="$SRC/tests/fakes/fake_opencode.py" OCPM_LOG_LEVEL=warn OCPM_MODE=per-session
trap 'stack_stop; rm -rf "$DIR"' EXIT
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
STATIC_SIZE_FILE="$DIR/state/nginx/static-probe.json"
export STACK_NGINX_EXTRA="location = /static-probe.json { alias $STATIC_SIZE_FILE; default_type application/json; }"
stack_start_ocpmd
PORT=$(free_port)
stack_start_nginx "$PORT"
B="http://127.0.0.1:$PORT"
echo "ocpm benchmark: $ROWS executions in 1,000 sessions (generated in ${gen} ms), $(nproc) cores"
timeit() { # timeit LABEL N URL: p50 and max of curl's total time
    local label=$1 n=$2 url=$3 i
    for i in $(seq 1 "$n"); do curl -s -o /dev/null -w '%{time_total}\n' "$url"; done | sort -n |
        awk -v l="$label" '{a[NR]=$1} END {printf "  %-52s p50 %8.1f ms   max %8.1f ms\n", l, a[int((NR+1)/2)]*1000, a[NR]*1000}'
}
timeit "stats, all time (GET /api/stats)" 5 "$B/api/stats"
timeit "stats, last 24 h" 10 "$B/api/stats?since=$((now - 86400))"
timeit "history page, 50 newest (admin)" 20 "$B/api/admin/executions?limit=50"
timeit "history page, filtered by status=timeout" 20 "$B/api/admin/executions?status=timeout&limit=50"
timeit "history page, one session, deep cursor" 20 "$B/api/admin/executions?session=s500&before=500000&limit=50"
timeit "history page, since/until window" 20 "$B/api/admin/executions?since=$((now - 864000))&until=$((now - 863000))&limit=50"
t0=$(date +%s%N); "$OCPMCTL" --json stats >/dev/null; echo "  ocpmctl stats (read-only, all time)                   $(( ($(date +%s%N) - t0) / 1000000 )) ms"
if command -v wrk >/dev/null; then
    curl -s "$B/api/opencode/status" >"$STATIC_SIZE_FILE"
    echo "  wrk, ${SECS} s, 2 threads, 32 connections (status is $(stat -c %s "$STATIC_SIZE_FILE") bytes):"
    for u in /api/opencode/status /static-probe.json; do
        wrk -t2 -c32 -d"${SECS}s" "$B$u" >"$DIR/wrk.out" 2>&1
        rps=$(awk '/Requests\/sec/ {print $2}' "$DIR/wrk.out")
        errs=$(awk '/Non-2xx/ {print $NF} /Socket errors/ {s=$0} END {if (s) print s}' "$DIR/wrk.out")
        printf '    %-26s %10s req/s   errors: %s\n' "$u" "$rps" "${errs:-0}"
        eval "rps_${u//[^a-z]/_}=$rps"
    done
    python3 -c "print('    %-26s %10.2f   (goal >= 0.5)' % ('ratio status / static', $rps__api_opencode_status / $rps__static_probe_json))"
else
    echo "  wrk not installed: skipped the status load test"
fi
