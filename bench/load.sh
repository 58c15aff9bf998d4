#!/usr/bin/env bash
# Load: BENCH_SESSIONS (200) sessions at once x BENCH_MESSAGES (5) messages through nginx and ocpmd in
# server mode with the fast fake `opencode serve`, against the same load sent straight to a second
# fake server in the same run (bench/load.py), then the memory of the manager and the responders
# (idle, after the load, after as many messages again, with 1,000 sessions). Prints; asserts nothing.
# BENCH_QUICK=1: 50 sessions x 4 messages.
# The pool is sized for the clients (4 responders x 64 threads: 248 messages at once) and the
# server takes server_max_inflight (8) prompts at a time, as in production.
set -eu
. "$(dirname "$0")/lib.sh"
FAKE="$SRC/tests/fakes/fake_opencode.py"
# One client plays every user here: the per-user bounds would measure fairness, not the stack.
export OCPM_USER_MAX_SHARE=100% OCPM_USER_MAX_SESSIONS=100000 OCPM_USER_MAX_WORKSPACES=100000 OCPM_USER_QUEUE_MAX_BYTES=1g OCPM_QUEUE_MAX_BYTES=1g
export OCPM_OPENCODE_BIN=$FAKE OCPM_LOG_LEVEL=warn OCPM_MODE=server OCPM_RESPONDERS=4 OCPM_RESPONDER_THREADS=64
# The direct run sends its 200 sessions at once with no bound: the server's own bound on messages
# at once (server_max_inflight, 8 by default, protecting a real opencode) is lifted to match, so the
# figure is the stack's cost, not a limit the direct run does not have.
export OCPM_MAX_CONCURRENT_RUNS=256 OCPM_SERVER_MAX_INFLIGHT=256 OCPM_RUN_TIMEOUT=10m
DPW=bench-$RANDOM$RANDOM
DPORT=$(free_port)
(cd "$DIR" && OPENCODE_SERVER_PASSWORD=$DPW XDG_DATA_HOME="$DIR/direct-data" \
    exec python3 "$FAKE" serve --hostname 127.0.0.1 --port "$DPORT" >"$DIR/direct.log" 2>&1) &
DIRECT=$!
trap 'kill $DIRECT 2>/dev/null || :; stack_stop || :; rm -rf "$DIR"' EXIT
stack_start_ocpmd
PORT=$(free_port)
stack_start_nginx "$PORT"
wait_until 10 curl -s -o /dev/null -u "opencode:$DPW" "http://127.0.0.1:$DPORT/global/health"
python3 "$SRC/bench/load.py" "$PORT" "$DPORT" "$DPW" "$STACK_OCPMD_PID" "${BENCH_SESSIONS:-$(quick 200 50)}" \
    "${BENCH_MESSAGES:-$(quick 5 4)}" "$DIR/ws"
