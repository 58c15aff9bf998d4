#!/usr/bin/env bash
# Benchmark the stack's own overhead and the manager's memory (see bench/overhead.py). Prints; asserts nothing.
#   BENCH_MESSAGES=200 bench/overhead.sh
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
export OCPMD=${OCPMD:-$SRC/ocpmd}
OCPM_STACK_LIB=1 . "$SRC/scripts/stack"
DIR=$(mktemp -d /tmp/ocpm-bench-XXXXXX)
chmod 0755 "$DIR"
stack_init "$DIR/state"
# Per message, like the baseline (the fake also has a server mode, which auto would pick).
export OCPM_OPENCODE_BIN=${BENCH_OPENCODE:-$SRC/tests/fakes/fake_opencode.py} OCPM_LOG_LEVEL=warn
export OCPM_MODE=${OCPM_MODE:-per-session}
trap 'stack_stop; rm -rf "$DIR"' EXIT
stack_start_ocpmd
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
stack_start_nginx "$PORT"
mkdir -p "$DIR/ws"
python3 "$SRC/bench/overhead.py" "$PORT" "$OCPM_OPENCODE_BIN" "$DIR/ws" "$STACK_OCPMD_PID" "${BENCH_MESSAGES:-100}"
