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

# --- requests during reloads, in bursts: none fails -------------------------------------
# A loop of requests until told to stop; meanwhile reloads three at a time (a reload's SIGQUIT
# may reach responders still starting) and five ocpmctl reloads at once (more generations than
# the in-flight page has bands: the running responders stay, and nginx still reaches them).
: >"$TDIR/codes"
(while [ ! -e "$TDIR/stop-load" ]; do
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 20 "$BASE/api/sessions/rl" >>"$TDIR/codes"
done) &
LOAD=$!
for round in 1 2 3 4 5 6; do
    n=$(grep -c 'msg="configuration reloaded"' "$LOG")
    kill -HUP "$MPID"; kill -HUP "$MPID"; kill -HUP "$MPID"
    wait_until 10 reloads_at_least $((n + 1))
done
BURST=()
for i in 1 2 3 4 5; do
    "$OCPMCTL" reload >"$TDIR/burst$i" 2>&1 &
    BURST+=("$!")
done
wait "${BURST[@]}"
is "$(cat "$TDIR"/burst* | grep -c '^reloaded')" 5 "five ocpmctl reload at once all reload"
touch "$TDIR/stop-load"
wait "$LOAD"
like "$(sort "$TDIR/codes" | uniq -c | awk '{print $2":"$1}' | tr '\n' ' ')" '^200:[0-9]+ $' \
    "$(wc -l <"$TDIR/codes") requests during bursts of reloads all answered 200"
req GET /api/sessions/rl
is "$STATUS" 200 "after five reloads at once, requests are answered"
if grep -q 'older generation died' "$LOG"; then
    not_ok "no responder died of a reload's signal" "$(grep 'older generation died' "$LOG" | head -3)"
else
    ok "no responder died of a reload's signal"
fi
settled_pool() { req GET /api/opencode/status; [ "$(j .ocpm.responders.retiring)" = 0 ]; }
check "every older generation finishes and leaves" wait_until 20 settled_pool
check "as many responders as configured serve" wait_until 10 count_responders 2

# --- more generations than bands: the running responders stay ------------------------------
# A stream held in each of three generations keeps them all retiring; the fourth reload applies
# its settings but keeps the responders, says so, and nginx still reaches them.
mkdir -p "$TDIR/gates"
chmod 0755 "$TDIR/gates"
HELD=()
hold() {
    curl -sN --max-time 60 -H 'Accept: text/event-stream' -H 'Content-Type: application/json' -X POST \
        --data-binary "{\"text\":\"held [[gate=$1]]\"}" "$BASE/api/sessions/$1/messages" >"$TDIR/held-$1" &
    HELD+=("$!")
}
for g in g1 g2 g3; do
    req POST /api/sessions "{\"id\":\"$g\"}"
    hold "$g"
    wait_until 10 grep -q '^event: step_start' "$TDIR/held-$g"
    "$OCPMCTL" reload >/dev/null 2>&1
done
OUT=$("$OCPMCTL" reload 2>&1)
like "$OUT" 'responders were not replaced' "a fourth generation waiting: ocpmctl says the responders stay"
like "$(cat "$LOG")" 'level=warn .*msg="responders not replaced at the reload; the running ones stay"' "and the log"
req GET /api/sessions/rl
is "$STATUS" 200 "nginx still reaches the running responders"
for g in g1 g2 g3; do touch "$TDIR/gates/$g"; chmod 0644 "$TDIR/gates/$g"; done
wait "${HELD[@]}"
for g in g1 g2 g3; do
    like "$(cat "$TDIR/held-$g")" 'event: done' "the stream held in generation $g completes"
done
check "the held generations leave once their streams are done" wait_until 20 settled_pool
OUT=$("$OCPMCTL" reload 2>&1)
is "$(printf '%s' "$OUT" | head -1)" reloaded "then a reload replaces the responders again"
wait_until 20 settled_pool
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

# --- permission_policy changes for the next run (per-message mode passes it at spawn) ---------
probe_permission() {
    req POST /api/sessions/rl/messages '{"text":"[[probe]] env:OPENCODE_PERMISSION"}'
    j .text | jq -r '.env.OPENCODE_PERMISSION'
}
conf 'max_message_bytes = 200\nresponders = 3\npermission_policy = allow\n'
"$OCPMCTL" reload >/dev/null 2>&1
is "$(probe_permission)" '{"*":"allow"}' "permission_policy = allow reaches the next run"
conf 'max_message_bytes = 200\nresponders = 3\npermission_policy = reject\n'
"$OCPMCTL" reload >/dev/null 2>&1
is "$(probe_permission)" null "a reload to reject takes it away from the next run"

# --- fcgi_socket_group may not become the running agent's group ------------------------------
if [ "$(id -u)" = 0 ] && id ocpm-agent >/dev/null 2>&1; then
    conf "max_message_bytes = 200\nresponders = 3\nagent_user = nobody\nfcgi_socket_group = $(id -gn ocpm-agent)\n"
    OUT=$("$OCPMCTL" reload 2>&1)
    RC=$?
    is "$RC" 1 "a reload giving the FastCGI socket the running agent's group fails"
    like "$OUT" 'nothing changed: agent user ocpm-agent is in the FastCGI socket.s group' \
        "naming the agent that runs, not the one the file names (agent_user needs a restart)"
    is "$(stat -c %G "$STACK_DIR/fcgi.sock")" "$(id -gn)" "the socket keeps its group"
else
    skip "a reload giving the FastCGI socket the running agent's group fails" "needs root and ocpm-agent"
    skip "naming the agent that runs" "needs root and ocpm-agent"
    skip "the socket keeps its group" "needs root and ocpm-agent"
fi

# --- ocpmd -t: a file checked, the running manager untouched --------------------------------
N_RELOADS=$(grep -c 'msg="reloading configuration"' "$LOG")
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
is "$(grep -c 'msg="reloading configuration"' "$LOG")" "$N_RELOADS" "ocpmd -t did not make it reload"

# --- SIGUSR1 reopens the log ---------------------------------------------------------
mv "$LOG" "$LOG.1"
kill -USR1 "$MPID"
check "SIGUSR1 reopens the log file" wait_until 10 grep -q 'msg="log file reopened"' "$LOG"
check "without reloading" test "$(grep -c 'msg="reloading configuration"' "$LOG")" = 0
t_done
