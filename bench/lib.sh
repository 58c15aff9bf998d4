# Shared start of every bench script: SRC, OCPMD, the stack functions (scripts/stack), and a private
# state directory DIR with the stack initialised in DIR/state. Each script sets its own trap.
SRC=$(cd "$(dirname "$0")/.." && pwd)
export OCPMD=${OCPMD:-$SRC/ocpmd}
OCPM_STACK_LIB=1 . "$SRC/scripts/stack"
DIR=$(mktemp -d /tmp/ocpm-bench-XXXXXX)
chmod 0755 "$DIR"
stack_init "$DIR/state"
