#!/usr/bin/env bash
# The status page served by real nginx, in Debian's headless Chromium (playwright-core).
# Skipped when chromium or node/playwright-core are not installed (scripts/setup installs them).
. "$(dirname "$0")/../integration/lib.sh"
BROWSER_DIR="$SRC/tests/browser"
if [ ! -x /usr/bin/chromium ] || ! command -v node >/dev/null || [ ! -d "$BROWSER_DIR/node_modules/playwright-core" ]; then
    echo "1..0 # SKIP chromium, node or playwright-core missing (scripts/setup installs them)"
    exit 0
fi
export OCPM_MODE=per-session
export OCPM_NODE_NAME=pagenode
t_start
SHOT="${OCPM_ARTIFACTS:-$PWD}/status-page.png"
node "$BROWSER_DIR/status_page.mjs" "$BASE" "$SHOT" "$STACK_OCPMD_PID" "${OCPMCTL:-$SRC/ocpmctl}" | tee "$TDIR/tap" | grep -v '^1\.\.'
T_N=$(grep -c '^\(not \)\?ok ' "$TDIR/tap")
T_FAIL=$(grep -c '^not ok ' "$TDIR/tap")
[ -s "$SHOT" ] && { T_N=$((T_N + 1)); echo "ok $T_N - a screenshot was saved ($SHOT)"; } ||
    { T_N=$((T_N + 1)); T_FAIL=$((T_FAIL + 1)); echo "not ok $T_N - a screenshot was saved"; }
wait "$STACK_OCPMD_PID" 2>/dev/null
STACK_OCPMD_PID=
t_done
