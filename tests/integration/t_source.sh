#!/usr/bin/env bash
# The source tree's limits (scripts/check-source): no file in src/ over 600 lines, no function
# over 80, no include circle among the modules. TAP from the script itself.
SRC=${OCPM_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
python3 "$SRC/scripts/check-source" "$SRC"
exit 0
