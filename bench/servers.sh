#!/usr/bin/env bash
# One opencode server against two (and more: BENCH_SERVERS="1 2 4") with the real opencode and the
# offline model, through nginx, in one run (bench/servers.py): 32 and 64 new sessions at once
# (BENCH_SESSIONS), each in its own workspace, then all in a shared one. Prints the figures and the
# ratios to one server; asserts nothing. Takes about ten minutes.
set -eu
REAL=$("$(dirname "$0")/../scripts/opencode-bin") || { echo "bench: no opencode (run scripts/setup)" >&2; exit 1; }
. "$(dirname "$0")/lib.sh"
export OCPM_USER_MAX_SHARE=100% OCPM_USER_MAX_SESSIONS=100000 OCPM_USER_MAX_WORKSPACES=100000 OCPM_USER_QUEUE_MAX_BYTES=1g OCPM_QUEUE_MAX_BYTES=1g
export OCPM_OPENCODE_BIN="$REAL" OCPM_LOG_LEVEL=warn OCPM_MAX_CONCURRENT_RUNS=128 OCPM_RUN_TIMEOUT=600s
# server_max_inflight stays at its default (8 per server) unless given: what an operator runs.
export OCPM_SERVER_MAX_RSS=0 OCPM_SERVER_START_TIMEOUT=120s OCPM_MODE=server
# Room in the responder pool for every client at once (4 x 32 threads): the figure is opencode's.
export OCPM_RESPONDERS=4 OCPM_RESPONDER_THREADS=32
OUT="$DIR/servers.json"
# The logs outlive the run (why a server failed under load is the interesting part).
KEEP=${BENCH_LOG_DIR:-/tmp}/ocpm-bench-servers-logs.$$
trap 'mkdir -p "$KEEP"; cp -r "$DIR/state/logs/." "$KEEP/" 2>/dev/null; echo "logs kept in $KEEP"; stack_stop || :; rm -rf "$DIR"' EXIT
unset OPENCODE_CONFIG OPENCODE_CONFIG_CONTENT
stack_start_model
PORT=$(free_port)
echo "ocpm benchmark, servers: $(nproc) cores, opencode $("$REAL" --version), offline model"
first=1
for n in ${BENCH_SERVERS:-1 2}; do
    # A fresh state each time: no server inherits another run's sessions or instances.
    [ "$first" = 1 ] || { stack_stop_ocpmd; rm -rf "$DIR/state/workspaces" "$DIR/state/agent" "$DIR/state/ocpm.db"*;
        mv "$DIR/state/logs/ocpmd.log" "$DIR/state/logs/ocpmd.servers-$prev.log"; }
    prev=$n
    OCPM_SERVERS=$n stack_start_ocpmd
    [ "$first" = 1 ] && stack_start_nginx "$PORT"
    first=0
    python3 "$SRC/bench/servers.py" "$n" "$PORT" "$REAL" "$OUT"
done
