#!/usr/bin/env bash
# Benchmark the stack's own overhead per message (see bench/overhead.py). Prints; asserts nothing.
#   BENCH_MESSAGES=200 bench/overhead.sh    (100 by default, 30 with BENCH_QUICK=1)
set -eu
. "$(dirname "$0")/lib.sh"
# Per message, like the baseline (the fake also has a server mode, which auto would pick).
export OCPM_OPENCODE_BIN=${BENCH_OPENCODE:-$SRC/tests/fakes/fake_opencode.py} OCPM_LOG_LEVEL=warn
export OCPM_MODE=${OCPM_MODE:-per-session}
# 1,000 sessions of one user are measured at the end: lift the per-user bound on sessions.
export OCPM_USER_MAX_SESSIONS=100000 OCPM_USER_MAX_WORKSPACES=100000
trap 'stack_stop || :; rm -rf "$DIR"' EXIT
stack_start_ocpmd
PORT=$(free_port)
stack_start_nginx "$PORT"
mkdir -p "$DIR/ws"
python3 "$SRC/bench/overhead.py" "$PORT" "$OCPM_OPENCODE_BIN" "$DIR/ws" "${BENCH_MESSAGES:-$(quick 100 30)}" "$STACK_OCPMD_PID"
