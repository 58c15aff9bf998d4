# Shared start of every bench script: SRC, OCPMD, the stack functions (scripts/stack), and a private
# state directory DIR with the stack initialised in DIR/state. Each script sets its own trap.
# With BENCH_LIB_ONLY=1 (bench/all.sh) it defines the functions below and starts nothing.
SRC=$(cd "$(dirname "$0")/.." && pwd)

# figure KEY LABEL OCPM BASELINE UNIT GOAL: one result line for bench/all.sh's table. The format and
# the ratio and met columns are worked out in one place, bench/benchlib.py (GOAL: "ocpm < 1",
# "ratio >= 0.5", or - for none; OCPM or BASELINE may be text, such as "not run", or -).
figure() { python3 "$SRC/bench/benchlib.py" figure "$@"; }

# quick FULL SMALL: the size to use, SMALL when BENCH_QUICK is set (to anything but 0).
quick() { case "${BENCH_QUICK:-0}" in "" | 0) echo "$1" ;; *) echo "$2" ;; esac; }

if [ -n "${BENCH_LIB_ONLY:-}" ]; then return 0; fi
export OCPMD=${OCPMD:-$SRC/ocpmd}
OCPM_STACK_LIB=1 . "$SRC/scripts/stack"
DIR=$(mktemp -d /tmp/ocpm-bench-XXXXXX)
chmod 0755 "$DIR"
stack_init "$DIR/state"
