#!/usr/bin/env bash
# Every figure of issue 13 in one run: the parts below run one after another, each as it runs alone
# (bench/PART.sh), their output is shown as it comes, and the FIGURE lines they print (format:
# bench/benchlib.py) end up in one table: figure, ocpm, baseline, ratio, goal, met. Every ratio is
# to a baseline measured in the same run. A measurement, not a test: it exits 0 whether the goals
# are met or not, nonzero only when a part failed to run. Kept out of CI (minutes long, and noisy).
#   bench/all.sh                          every part, full sizes
#   BENCH_QUICK=1 bench/all.sh            smaller sizes (each part's BENCH_QUICK defaults)
#   BENCH_SKIP="server history" ...       leave parts out (their rows say "not run")
# The parts' own settings pass through (BENCH_ROWS, BENCH_SERVER_RUNS, BENCH_WRK_SECONDS, ...).
# server needs the real opencode (scripts/setup installs it); without one its row says so.
set -eu
BENCH_LIB_ONLY=1 # lib.sh: only its functions, no stack of its own
. "$(dirname "$0")/lib.sh"
unset BENCH_LIB_ONLY
PARTS="overhead load status history cluster server"
# server.sh's per-session and concurrency figures are not in the table: only its ratio runs.
export BENCH_ONLY_SEQ=${BENCH_ONLY_SEQ:-1}
OUT=$(mktemp -d /tmp/ocpm-bench-all-XXXXXX)
trap 'rm -rf "$OUT"' EXIT
: >"$OUT/figures"

# what PART: the figures a part gives, for its row when it does not run.
what() {
    case $1 in
    overhead) echo "own overhead per message (fake opencode)" ;;
    load) echo "through the stack vs direct (fake server), and memory" ;;
    status) echo "/api/opencode/status vs static file and PHP-FPM (wrk)" ;;
    history) echo "GET /api/stats over many executions" ;;
    cluster) echo "the cluster's front vs straight to the node (fake opencode)" ;;
    server) echo "server mode vs the same opencode serve (real opencode)" ;;
    esac
}

# why_not PART: why the part is left out, or nothing when it runs.
why_not() {
    case " ${BENCH_SKIP:-} " in *" $1 "*)
        echo "BENCH_SKIP"
        return
        ;;
    esac
    local bin
    if [ "$1" = server ] && ! { bin=$("$SRC/scripts/opencode-bin") && [ -x "$bin" ]; }; then
        echo "no real opencode, run scripts/setup"
    fi
}

failed=""
for p in $PARTS; do
    why=$(why_not "$p")
    if [ -n "$why" ]; then
        echo "=== bench/$p.sh: not run ($why)"
        figure "$p.not_run" "$(what "$p") (not run: $why)" "not run" - "" - >>"$OUT/figures"
        continue
    fi
    echo "=== bench/$p.sh"
    t0=$(date +%s)
    # The part's own output as it comes; its FIGURE lines only in the table below.
    set +e
    "$SRC/bench/$p.sh" 2>&1 | tee "$OUT/$p.log" | grep --line-buffered -v $'^FIGURE\t'
    rc=${PIPESTATUS[0]}
    set -e
    grep $'^FIGURE\t' "$OUT/$p.log" >>"$OUT/figures" || :
    echo "=== bench/$p.sh: exit $rc after $(($(date +%s) - t0)) s"
    if [ "$rc" != 0 ]; then
        failed="$failed $p"
        figure "$p.failed" "$(what "$p") (failed: exit $rc, see above)" "failed" - "" - >>"$OUT/figures"
    fi
done

echo
echo "ocpm $(git -C "$SRC" describe --always --dirty 2>/dev/null || echo "(no git)"), $(nproc) cores," \
    "$(date -u +%Y-%m-%dT%H:%MZ)$(case "${BENCH_QUICK:-0}" in "" | 0) ;; *) echo ", BENCH_QUICK" ;; esac)"
python3 "$SRC/bench/benchlib.py" table <"$OUT/figures"
if [ -n "$failed" ]; then
    echo "bench: failed to run:$failed" >&2
    exit 1
fi
