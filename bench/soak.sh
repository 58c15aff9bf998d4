#!/usr/bin/env bash
# Soak: BENCH_SOAK_SECONDS (600) of mixed traffic from BENCH_SOAK_CLIENTS (8) clients through nginx
# and ocpmd in server mode with the fake `opencode serve` (bench/soak.py), sampling the manager's
# RSS and open fds every minute. Prints; asserts nothing.
set -eu
. "$(dirname "$0")/lib.sh"
# One client plays every user here: the per-user bounds would measure fairness, not the stack.
export OCPM_USER_MAX_SHARE=100% OCPM_USER_MAX_SESSIONS=100000 OCPM_USER_MAX_WORKSPACES=100000 OCPM_USER_QUEUE_MAX_BYTES=1g OCPM_QUEUE_MAX_BYTES=1g
export OCPM_OPENCODE_BIN=$SRC/tests/fakes/fake_opencode.py OCPM_LOG_LEVEL=warn OCPM_MODE=server
export OCPM_KILL_GRACE=1s OCPM_INSTANCE_IDLE_TIMEOUT=5s
trap 'stack_stop || :; rm -rf "$DIR"' EXIT
stack_start_ocpmd
PORT=$(free_port)
stack_start_nginx "$PORT"
python3 "$SRC/bench/soak.py" "$PORT" "$STACK_OCPMD_PID" "${BENCH_SOAK_SECONDS:-600}" "${BENCH_SOAK_CLIENTS:-8}"
echo "failures by error:"
sqlite3 -readonly "$STACK_DIR/ocpm.db" "select '  ' || count(*) || ' ' || status || ': ' || coalesce(error, '-') from executions
  where status <> 'succeeded' group by status, error order by count(*) desc limit 10"
echo "database: $(sqlite3 -readonly "$STACK_DIR/ocpm.db" "select count(*) || ' executions, ' || sum(status='succeeded') || ' succeeded' from executions")"
