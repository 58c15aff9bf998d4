#!/usr/bin/env bash
# Reload (SIGHUP, ocpmctl reload) through nginx: a stream running during the reload completes, the
# new limit applies to the next message, a key that needs a restart is named, the responders are
# replaced (the old ones finish and leave) without a failed request, an invalid file changes
# nothing and says why, SIGUSR1 reopens the log, and ocpmd -t checks a file without touching the
# running manager.
. "$(dirname "$0")/lib.sh"
OCPMCTL=${OCPMCTL:-$SRC/ocpmctl}
CONF=$(mktemp /tmp/ocpm-reload-XXXXXX.conf)
OWNLOG=$(mktemp -d /tmp/ocpm-reload-log-XXXXXX)/ocpmd.log
# conf LINES: the settings file, always with the manager's own log file (SIGUSR1 reopens it).
conf() { printf '%blog_file = %s\n' "$1" "$OWNLOG" >"$CONF"; }
conf 'max_message_bytes = 64k\nresponders = 2\n'
t_start -c "$CONF"
trap 'rm -rf "$CONF" "$(dirname "$OWNLOG")"; t_cleanup' EXIT
MPID=$STACK_OCPMD_PID
LOG=$OWNLOG
reloads_at_least() { [ "$(grep -c 'msg="configuration reloaded"' "$LOG")" -ge "$1" ]; }

# The manager's responders (its children running --responder), as sorted pids.
responders() { pgrep -P "$MPID" -f -- '--responder' | sort -n | tr '\n' ' '; }
count_responders() { [ "$(responders | wc -w)" = "$1" ]; }
wait_until 10 count_responders 2
BEFORE=$(responders)

req POST /api/sessions '{"id":"rl"}'
is "$STATUS" 201 "session created"
LONG=$(head -c 300 /dev/zero | tr '\0' 'x')
req POST /api/sessions/rl/messages "{\"text\":\"$LONG\"}"
is "$STATUS" 200 "a 300-byte message is within max_message_bytes = 64k"

# --- a reload during a stream --------------------------------------------------------
curl -sN --max-time 60 -H 'Accept: text/event-stream' -H 'Content-Type: application/json' -X POST \
    --data-binary '{"text":"slow [[delay=1500]]"}' "$BASE/api/sessions/rl/messages" >"$TDIR/sse" &
CURL=$!
wait_until 10 grep -q '^event: step_start' "$TDIR/sse"
conf 'max_message_bytes = 200\nresponders = 3\n'
OUT=$("$OCPMCTL" reload 2>&1)
RC=$?
is "$RC" 0 "ocpmctl reload succeeds"
like "$OUT" 'changed: max_message_bytes' "it names the setting that changed"
like "$OUT" 'needs a restart: responders' "and the one that needs a restart"
like "$(cat "$LOG")" 'level=info .*msg="setting changed" key=max_message_bytes pool=- was="65536" now="200"' \
    "the log says what changed"
like "$(cat "$LOG")" 'level=warn .*msg="setting needs a restart to change" key=responders pool=- running="2" file="3"' \
    "the log names the key that needs a restart"
like "$(cat "$LOG")" 'msg="configuration reloaded" changed=1 restartNeeded=1' "the log says the reload is done"
if grep -q '^event: done' "$TDIR/sse"; then
    not_ok "the stream was still running at the reload"
else
    ok "the stream was still running at the reload"
fi
wait "$CURL"
like "$(cat "$TDIR/sse")" 'event: done' "the stream that ran during the reload completes"
like "$(grep -A1 '^event: done' "$TDIR/sse")" '"status":"succeeded"' "its execution succeeded"
req POST /api/sessions/rl/messages "{\"text\":\"$LONG\"}"
is "$STATUS" 400 "the new limit applies to the next message"
req POST /api/sessions/rl/messages '{"text":"short"}'
is "$STATUS" 200 "a message within the new limit is answered"
is "$(sql "select count(*) from manager_events where kind='reload'")" 1 "the reload is a manager event"

# The old responders finish and leave; as many new ones as before (responders needs a restart).
gone() { for p in $BEFORE; do kill -0 "$p" 2>/dev/null && return 1; done; return 0; }
check "the previous responders leave once they are done" wait_until 20 gone
check "as many responders as before serve" wait_until 10 count_responders 2
AFTER=$(responders)
req GET /api/opencode/status
is "$(j .ocpm.responders.retiring)" 0 "the status counts no responder still retiring"

# --- requests during reloads: none fails ---------------------------------------------------
: >"$TDIR/codes"
(for i in $(seq 1 150); do
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 20 "$BASE/api/sessions/rl" >>"$TDIR/codes"
done) &
LOAD=$!
for i in 1 2 3; do
    kill -HUP "$MPID"
    wait_until 10 reloads_at_least $((i + 1))
done
wait "$LOAD"
is "$(sort "$TDIR/codes" | uniq -c | awk '{print $2":"$1}' | tr '\n' ' ')" "200:150 " \
    "150 requests during three reloads (SIGHUP) all answered 200"
is "$(grep -c 'msg="configuration reloaded"' "$LOG")" 4 "each SIGHUP reloaded"
AFTER=$(responders)

# --- an invalid file changes nothing -------------------------------------------------
conf 'max_message_bytes = banana\nresponders = 3\n'
OUT=$("$OCPMCTL" reload 2>&1)
RC=$?
is "$RC" 1 "ocpmctl reload fails on an invalid file"
like "$OUT" 'nothing changed: .*max_message_bytes' "and says why"
like "$(cat "$LOG")" 'level=error .*msg="configuration reload failed; nothing changed" reason=".*max_message_bytes' \
    "the log says why"
is "$(responders)" "$AFTER" "the responders are not replaced"
req POST /api/sessions/rl/messages "{\"text\":\"$LONG\"}"
is "$STATUS" 400 "the running limit stays"
is "$(sql "select count(*) from manager_events where kind='reload_failed'")" 1 "the failure is a manager event"

# --- the slow log switched on by a reload --------------------------------------------
conf 'max_message_bytes = 200\nresponders = 3\nslowlog_timeout = 300ms\n'
"$OCPMCTL" reload >/dev/null 2>&1
like "$(cat "$LOG")" 'msg="setting changed" key=slowlog_timeout pool=- was="300000ms" now="300ms"' \
    "a reload turns the slow log on"
req POST /api/sessions/rl/messages '{"text":"slow [[delay=1200]]"}'
is "$STATUS" 200 "a slow message after it is answered"
check "and logged as a slow turn" grep -q 'msg="slow turn"' "$LOG"

# --- ocpmd -t: a file checked, the running manager untouched --------------------------------
conf 'max_message_bytes = banana\n'
OUT=$("$OCPMD" -t -c "$CONF" 2>&1)
RC=$?
is "$RC" 1 "ocpmd -t rejects the invalid file"
like "$OUT" 'configuration .* test failed' "and says so"
conf 'max_message_bytes = 1m\n'
OUT=$("$OCPMD" -t -c "$CONF" 2>&1)
is "$?" 0 "ocpmd -t accepts a valid file"
like "$OUT" 'test is successful' "and says so"
req POST /api/sessions/rl/messages "{\"text\":\"$LONG\"}"
is "$STATUS" 400 "ocpmd -t changed nothing in the running manager"
is "$(grep -c 'msg="reloading configuration"' "$LOG")" 6 "ocpmd -t did not make it reload"

# --- SIGUSR1 reopens the log ---------------------------------------------------------
mv "$LOG" "$LOG.1"
kill -USR1 "$MPID"
check "SIGUSR1 reopens the log file" wait_until 10 grep -q 'msg="log file reopened"' "$LOG"
check "without reloading" test "$(grep -c 'msg="reloading configuration"' "$LOG")" = 0
t_done
