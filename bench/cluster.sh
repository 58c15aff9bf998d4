#!/usr/bin/env bash
# The front's cost (bench/cluster.py): two nodes and the front on loopback (scripts/cluster), the fake
# opencode. Requests naming a session and new sessions, through the front against the same request
# straight to the node, in the same run. Prints; asserts nothing.
#   BENCH_REQUESTS=2000 bench/cluster.sh    (1000 by default, 200 with BENCH_QUICK=1)
set -eu
. "$(dirname "$0")/lib.sh"
OCPM_CLUSTER_LIB=1 . "$SRC/scripts/cluster"
export OCPM_OPENCODE_BIN="$SRC/tests/fakes/fake_opencode.py" OCPM_LOG_LEVEL=warn OCPM_MODE=per-session
export OCPM_USER_MAX_SESSIONS=100000 OCPM_USER_MAX_WORKSPACES=100000
trap 'cluster_stop || :; rm -rf "$DIR"' EXIT
cluster_init "$DIR/cluster"
cluster_start_node n1
cluster_start_node n2
cluster_start_front "$(free_port)"
python3 "$SRC/bench/cluster.py" "$CLUSTER_FRONT_PORT" "${CLUSTER_PORT[n1]}" "${BENCH_REQUESTS:-$(quick 1000 200)}"
