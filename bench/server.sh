#!/usr/bin/env bash
# Server mode against per-session mode with the real opencode and the offline model, through nginx,
# in one run (see bench/server.py). Prints; asserts nothing. Takes a few minutes.
#   BENCH_SERVER_RUNS=5 BENCH_SEQ_SERVER=40 bench/server.sh  (runs of the ratio to opencode serve direct,
#   messages each way per run: 10 with BENCH_QUICK=1); BENCH_ONLY_SEQ=1: only those runs.
set -eu
REAL=$("$(dirname "$0")/../scripts/opencode-bin") || { echo "bench: no opencode (run scripts/setup)" >&2; exit 1; }
. "$(dirname "$0")/lib.sh"
# No recycling by RSS here: the direct comparison must talk to the same server throughout.
# One client plays every user here: the per-user bounds would measure fairness, not the stack.
export OCPM_USER_MAX_SHARE=100% OCPM_USER_MAX_SESSIONS=100000 OCPM_USER_MAX_WORKSPACES=100000 OCPM_USER_QUEUE_MAX_BYTES=1g OCPM_QUEUE_MAX_BYTES=1g
export OCPM_OPENCODE_BIN="$REAL" OCPM_LOG_LEVEL=warn OCPM_MAX_CONCURRENT_RUNS=64 OCPM_RUN_TIMEOUT=600s
export OCPM_SERVER_MAX_RSS=${OCPM_SERVER_MAX_RSS:-0}
export OCPM_SERVER_START_TIMEOUT=120s BENCH_OUT="$DIR/server.json" BENCH_WS="$DIR/state/workspaces/direct"
export BENCH_SEQ_SERVER=${BENCH_SEQ_SERVER:-$(quick 40 10)}
# The logs outlive the run (what the server did under load is the interesting part).
KEEP=${BENCH_LOG_DIR:-/tmp}/ocpm-bench-server-logs.$$
trap 'mkdir -p "$KEEP"; cp -r "$DIR/state/logs/." "$KEEP/" 2>/dev/null || :; echo "logs kept in $KEEP"; stack_stop || :; rm -rf "$DIR"' EXIT
unset OPENCODE_CONFIG OPENCODE_CONFIG_CONTENT
stack_start_model
PORT=$(free_port)
echo "ocpm benchmark: $(nproc) cores, opencode $("$REAL" --version), offline model"
OCPM_MODE=server stack_start_ocpmd
stack_start_nginx "$PORT"
# One warm-up message (the first start of a config directory installs opencode's plugin).
curl -s -X POST "http://127.0.0.1:$PORT/api/sessions" -d '{"id":"warm"}' >/dev/null
curl -s -X POST "http://127.0.0.1:$PORT/api/sessions/warm/messages" -d '{"text":"warm up"}' >/dev/null
python3 "$SRC/bench/server.py" server "$PORT" "$REAL"
[ -z "${BENCH_ONLY_SEQ:-}" ] || exit 0
stack_stop_ocpmd
OCPM_MODE=per-session stack_start_ocpmd
python3 "$SRC/bench/server.py" per-session "$PORT" "$REAL"
