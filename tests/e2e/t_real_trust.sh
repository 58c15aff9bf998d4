#!/usr/bin/env bash
# End to end with the real opencode and the offline model: the trust boundaries as opencode itself
# sees them. An opencode.json planted above the workspaces (whose command would run, as a direct
# run of opencode shows) never runs through ocpm; each workspace is its own opencode project; the
# model receives exactly the client's text in both modes; a bad model leaves the session usable; the
# operator's OPENCODE_CONFIG (in a directory only root may enter) still reaches the agent; every
# opencode process runs as the agent's user.
. "$(dirname "$0")/../integration/lib.sh"
t_real_opencode
export OCPM_MODE=per-session OCPM_RUN_TIMEOUT=180s OCPM_SERVER_START_TIMEOUT=120s OCPM_HEARTBEAT_INTERVAL=2s
t_start
MODEL_LOG="$STACK_DIR/logs/model-requests.jsonl"
WS="$STACK_DIR/workspaces"
# What the model last received as the user's turn, exactly.
last_user_turn() { tail -n 1 "$MODEL_LOG" | jq -r '.raw[-1]'; }

# --- the planted configuration: proof that it works when nothing stops it ----------------------------
# An MCP server is a command opencode runs at start-up; this one leaves a mark where it runs.
plant() { # DIR MARK: an opencode.json in DIR whose command writes MARK
    printf '{"mcp":{"planted":{"type":"local","command":["/bin/sh","-c","echo planted > %s"],"enabled":true}}}\n' \
        "$2" >"$1/opencode.json"
    chmod 0644 "$1/opencode.json"
}
CONTROL="$TDIR/control"
mkdir -p "$CONTROL/above/ws" "$CONTROL/xdg"
plant "$CONTROL/above" "$CONTROL/above/ws/MARK"
(cd "$CONTROL/above/ws" && XDG_DATA_HOME="$CONTROL/xdg" XDG_CONFIG_HOME="$CONTROL/xdg" XDG_CACHE_HOME="$CONTROL/xdg" \
    XDG_STATE_HOME="$CONTROL/xdg" timeout 120 "$REAL" run --format json --dir "$CONTROL/above/ws" </dev/null \
    "control run" >/dev/null 2>&1)
check "control: opencode run in a plain directory runs the command planted above it" test -f "$CONTROL/above/ws/MARK"

# --- per message: planted above every workspace, it never runs ----------------------------------------
req POST /api/sessions '{"id":"w1"}'
plant "$WS" "$WS/@anonymous/w1/MARK-root"
plant "$WS/@anonymous" "$WS/@anonymous/w1/MARK-owner"
plant "$STACK_DIR" "$WS/@anonymous/w1/MARK-state"
req POST /api/sessions/w1/messages '{"text":"first message"}'
is "$STATUS" 200 "a message runs below the planted configurations"
like "$(j .text)" 'offline-model: you said' "answered by the model"
if ls "$WS/@anonymous/w1"/MARK-* >/dev/null 2>&1; then not_ok "no planted command ran" "$(ls "$WS/@anonymous/w1")"; else
    ok "no planted command ran"; fi
is "$(last_user_turn)" "first message" "per message, the model receives the text exactly (no quotes added)"
TEXT='  two "quoted" words, a \\ and ü€😀
and a second line  '
body=$(jq -cn --arg t "$TEXT" '{text: $t}')
req POST /api/sessions/w1/messages "$body"
is "$(last_user_turn)" "$TEXT" "byte for byte, spaces, quotes, backslash, UTF-8 and newlines included"
req POST /api/sessions '{"id":"w2"}'
req POST /api/sessions/w2/messages '{"text":"another project"}'
OCDB="$STACK_DIR/agent/users/@anonymous/data/opencode/opencode.db"
projects=$(sqlite3 -readonly "$OCDB" "select id || ' ' || worktree from project where worktree like '$WS/%' order by worktree")
is "$(printf '%s\n' "$projects" | awk '{print $2}' | tr '\n' ' ')" "$WS/@anonymous/w1 $WS/@anonymous/w2 " \
    "opencode sees each workspace as its project root"
is "$(printf '%s\n' "$projects" | awk '{print $1}' | sort -u | grep -vc '^global$')" 2 \
    "as two different projects (neither the shared global one)"

# --- a bad model, then a good message ---------------------------------------------------------------
req POST /api/sessions/w1/messages '{"text":"x","model":"../../etc"}'
is "$STATUS/$(j .error.code)" 400/unknown_model "a model opencode does not offer is refused before anything runs"
req POST /api/sessions/w1/messages '{"text":"after the bad model"}'
is "$STATUS" 200 "the next message works"

if [ "$(id -u)" = 0 ]; then
    req POST /api/sessions/w1/messages '{"text":"who runs me [[slow=300]]"}' -H 'Prefer: respond-async'
    RID=$(j .execution_id)
    check "the run starts" wait_until 30 sql_is "select status from executions where id=$RID" running
    pid=$(sql "select pid from executions where id=$RID")
    user=$(ps -o user= -p "$pid" 2>/dev/null | tr -d ' ')
    is "${user:-gone}" ocpm-agent "opencode runs as the agent's user"
    check "the run finishes" wait_until 60 sql_is "select count(*) from executions where id=$RID and status='succeeded'" 1
fi

# --- server mode, with the operator's configuration in a file only root may read ---------------------
stack_stop_ocpmd
PRIV="$TDIR/private"
mkdir -p "$PRIV"
chmod 0700 "$PRIV"
printf '%s\n' "$OPENCODE_CONFIG_CONTENT" >"$PRIV/opencode.json"
chmod 0600 "$PRIV/opencode.json"
SAVED=$OPENCODE_CONFIG_CONTENT
unset OPENCODE_CONFIG_CONTENT
export OPENCODE_CONFIG="$PRIV/opencode.json" OCPM_MODE=server
stack_start_ocpmd || { echo "Bail out! ocpmd did not start in server mode"; exit 1; }
req GET /api/opencode/status
is "$(j .processManager.mode)" server "server mode with the operator's OPENCODE_CONFIG"
SPID=$(j .server.pid)
if [ "$(id -u)" = 0 ]; then
    is "$(ps -o user= -p "$SPID" | tr -d ' ')" ocpm-agent "the opencode server runs as the agent's user"
fi
req POST /api/sessions '{"id":"s1"}'
plant "$WS/@anonymous" "$WS/@anonymous/s1/MARK-owner"
req POST /api/sessions/s1/messages '{"text":"first message"}'
is "$STATUS" 200 "the server answers through the operator's configuration"
is "$(last_user_turn)" "first message" "in server mode the model receives the text exactly too"
if ls "$WS/@anonymous/s1"/MARK-* "$WS/@anonymous/w1"/MARK-* >/dev/null 2>&1; then
    not_ok "no planted command ran in server mode" "$(ls "$WS/@anonymous/s1")"
else ok "no planted command ran in server mode"; fi
req POST /api/sessions/s1/messages '{"text":"x","model":"../../etc"}'
is "$STATUS/$(j .error.code)" 400/unknown_model "server mode: the bad model is refused"
req POST /api/sessions/s1/messages '{"text":"and then a plain one"}'
is "$STATUS" 200 "and the session stays usable"
export OPENCODE_CONFIG_CONTENT=$SAVED
unset OPENCODE_CONFIG
t_done
