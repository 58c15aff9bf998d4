#!/usr/bin/env bash
# The status page with two opencode servers (the fake `opencode serve`), in Debian's headless
# Chromium: each server listed, and one killed shown as such. Skipped like t_status_page.sh.
. "$(dirname "$0")/../integration/lib.sh"
BROWSER_DIR="$SRC/tests/browser"
if [ ! -x /usr/bin/chromium ] || ! command -v node >/dev/null || [ ! -d "$BROWSER_DIR/node_modules/playwright-core" ]; then
    echo "1..0 # SKIP chromium, node or playwright-core missing (scripts/setup installs them)"
    exit 0
fi
export OCPM_MODE=server OCPM_SERVERS=2 OCPM_HEARTBEAT_INTERVAL=300ms OCPM_RESTART_BACKOFF_MAX=2s
CTL=$(mktemp -d /tmp/ocpm-ctl-XXXXXX)
chmod 0755 "$CTL" # the fake server runs as the agent: it must read its switches there
export OPENCODE_FAKE_CONTROL_DIR=$CTL OCPM_AGENT_READ_PATHS=$CTL
t_start
# Server 1's restart takes seconds (longer than the page's poll), so the page must show it down.
touch "$CTL/slow_start@server-1"
P1=$(curl -s "$BASE/api/opencode/status" | jq -r '.servers[1].pid')
node "$BROWSER_DIR/status_servers.mjs" "$BASE" "$P1" | tee "$TDIR/tap" | grep -v '^1\.\.'
T_N=$(grep -c '^\(not \)\?ok ' "$TDIR/tap")
T_FAIL=$(grep -c '^not ok ' "$TDIR/tap")
rm -rf "$CTL"
t_done
