#!/usr/bin/env bash
# systemd's Type=notify from ocpmd, heard by a datagram socket this test owns (notify_listener.py), with
# the fake opencode serve behind real nginx: READY first and once the API answers, STATUS lines that
# follow sessions and messages at most once a second, RELOADING (with MONOTONIC_USEC) then READY at
# SIGHUP, WATCHDOG pings at about half of WATCHDOG_USEC and none while the process is stopped,
# STOPPING at SIGTERM, an abstract '@' socket, and no child that inherits NOTIFY_SOCKET.
. "$(dirname "$0")/lib.sh"
export OCPM_MODE=auto OCPM_SERVER_START_TIMEOUT=8s
WD_USEC=400000
WD=0.4 # the same, in seconds
NDIR=$(mktemp -d /tmp/ocpm-notify-XXXXXX)
export OCPM_CONTROL_SOCKET="$NDIR/ctl.sock" # known before t_start: the prober below watches it
LISTENERS=()

# listen SOCKET OUT: the listener in the background, bound before this returns.
listen() {
    rm -f "$2"
    python3 "$SRC/tests/integration/notify_listener.py" "$1" "$2" &
    LISTENERS+=($!)
    wait_until 10 test -f "$2" || { echo "Bail out! the notify listener did not start"; exit 1; }
}
# fields OUT: what was heard, one field a line, in order.
fields() { cut -d' ' -f4- "$1"; }
# heard OUT FIELD: how many datagrams carried FIELD (an exact field, e.g. READY=1).
heard() { awk -v f="$2" '$4 == f { n++ } END { print n + 0 }' "$1"; }
# kernel_times OUT FIELD: when each datagram carrying FIELD was sent (unix seconds).
kernel_times() { awk -v f="$2" '$4 == f { print $2 }' "$1"; }
now() { date +%s.%N; }
# later_than OUT FIELD T: how many FIELD datagrams were sent after unix time T.
later_than() { kernel_times "$1" "$2" | awk -v t="$3" '$1 > t { n++ } END { print n + 0 }'; }
# at_least OUT FIELD N [T]: were N or more FIELD datagrams heard (sent after unix time T)? (for wait_until)
at_least() { [ "$(later_than "$1" "$2" "${4:-0}")" -ge "$3" ]; }
past() { awk -v d="$1" -v n="$(now)" 'BEGIN { exit !(n > d) }'; }
# gaps: the intervals between the times on stdin, one line; in_band GAPS LOW HIGH: each within.
gaps() { awk 'NR > 1 { printf "%.3f ", $1 - prev } { prev = $1 }'; }
in_band() { awk -v lo="$2" -v hi="$3" '{ for (i = 1; i <= NF; i++) if ($i < lo || $i > hi) exit 1 }' <<<"$1"; }
no_notify_env() { ! tr '\0' '\n' <"/proc/$1/environ" | grep -Eq '^(NOTIFY_SOCKET|WATCHDOG_USEC|WATCHDOG_PID)='; }

# The API, probed on the control socket from before ocpmd starts: each attempt's start and end
# (monotonic) and whether it was answered, until ten were.
probe() {
    python3 - "$OCPM_CONTROL_SOCKET" "$1" <<'PY' &
import json, socket, struct, sys, time
path, out = sys.argv[1], sys.argv[2]
answered, deadline = 0, time.monotonic() + 60
with open(out, "w", buffering=1) as f:
    while answered < 10 and time.monotonic() < deadline:
        start, ok = time.monotonic(), False
        try:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(5)
            s.connect(path)
            req = json.dumps({"op": "status", "user": "probe", "args": {}}).encode()
            s.sendall(struct.pack(">I", len(req)) + req)
            buf = b""
            while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            ok = len(buf) >= 4 and json.loads(buf[4:])["status"] == 200
        except (OSError, ValueError):
            pass
        f.write("%.6f %.6f %s\n" % (start, time.monotonic(), "ok" if ok else "fail"))
        answered += ok
        time.sleep(0.02)
PY
    PROBE=$!
}

listen "$NDIR/notify.sock" "$NDIR/heard"
probe "$NDIR/probe"
NOTIFY_SOCKET="$NDIR/notify.sock" WATCHDOG_USEC=$WD_USEC t_start
wait "$PROBE"
MPID=$STACK_OCPMD_PID
H="$NDIR/heard"

# --- READY -------------------------------------------------------------------------
wait_until 10 at_least "$H" READY=1 1
is "$(fields "$H" | head -1)" READY=1 "READY=1 is the first thing systemd hears"
is "$(heard "$H" READY=1)" 1 "and it is heard once"
READY_MONO=$(awk '$4 == "READY=1" { print $3; exit }' "$H")
first_after=$(awk -v r="$READY_MONO" '$1 > r { print $3; exit }' "$NDIR/probe")
first_ok=$(awk '$3 == "ok" { print $2; exit }' "$NDIR/probe")
is "$first_after" ok "the first call of the API made after READY is answered (READY is not early)"
check "READY was sent by the time the API first answered (READY is not late; 0.5 s for the listener to read)" \
    awk -v r="$READY_MONO" -v o="$first_ok" 'BEGIN { exit !(o != "" && r <= o + 0.5) }'
req GET /api/ready
is "$STATUS:$(j .ready)" 200:true "/api/ready through nginx agrees: ready"

# --- STATUS ------------------------------------------------------------------------
wait_until 10 grep -q 'STATUS=' "$H"
is "$(grep -m1 -o 'STATUS=.*' "$H")" "STATUS=server mode, 0 sessions, 0 running, 0 queued" \
    "a STATUS line follows READY: the mode, sessions, running, queued"
req POST /api/sessions '{"id":"n1"}'
check "a new session is in the next STATUS line" \
    wait_until 10 grep -q 'STATUS=server mode, 1 session, 0 running, 0 queued' "$H"
req POST /api/sessions/n1/messages '{"text":"wait [[hang]]"}' -H 'Prefer: respond-async'
check "a running message is counted" wait_until 10 grep -q 'STATUS=server mode, 1 session, 1 running, 0 queued' "$H"
req POST /api/sessions/n1/messages '{"text":"after"}' -H 'Prefer: respond-async'
check "a queued one too" wait_until 10 grep -q 'STATUS=server mode, 1 session, 1 running, 1 queued' "$H"
for i in 2 3 4 5 6; do req POST /api/sessions "{\"id\":\"n$i\"}"; done
req POST /api/sessions/n1/abort
check "the line comes back to idle" wait_until 10 grep -q 'STATUS=server mode, 6 sessions, 0 running, 0 queued' "$H"
st=$(awk '$4 ~ /^STATUS=/ { print $2 }' "$H" | gaps)
check "STATUS lines are at most one a second, however many changes (gaps: $st)" in_band "$st" 0.9 100000
is "$(grep -o 'STATUS=.*' "$H" | uniq -d)" "" "and each says something new (only sent when it changes)"

# --- WATCHDOG ----------------------------------------------------------------------
t0=$(now)
check "WATCHDOG=1 pings arrive" wait_until 10 at_least "$H" WATCHDOG=1 6 "$t0"
w=$(kernel_times "$H" WATCHDOG=1 | awk -v t="$t0" '$1 > t' | gaps)
check "at about half of WATCHDOG_USEC: every interval within 0.3x and 1x of $WD s ($w)" \
    in_band "$w" "$(awk -v d=$WD 'BEGIN { print 0.3 * d }')" "$WD"
w_first=$(awk '$4 == "WATCHDOG=1" { print $3; exit }' "$H")
check "no ping before READY (systemd watches from READY on)" \
    awk -v r="$READY_MONO" -v w="$w_first" 'BEGIN { exit !(w >= r) }'

# Stopped (as a stuck loop would be): no ping; continued: they resume.
kill -STOP "$MPID"
wait_until 5 grep -q '^[^ ]* ([^)]*) T' "/proc/$MPID/stat"
stopped_at=$(now)
deadline=$(awk -v n="$stopped_at" -v d=$WD 'BEGIN { printf "%.6f", n + 3 * d }')
wait_until 10 past "$deadline"
is "$(later_than "$H" WATCHDOG=1 "$stopped_at")" 0 "no ping while the process is stopped (3 intervals)"
cont_at=$(now)
kill -CONT "$MPID"
check "pings resume once it continues" wait_until 10 at_least "$H" WATCHDOG=1 2 "$cont_at"

# --- RELOADING / READY at SIGHUP ---------------------------------------------------------
before=$(python3 -c 'import time; print(time.monotonic())')
kill -HUP "$MPID"
check "SIGHUP: READY=1 again after the reload" wait_until 10 at_least "$H" READY=1 2
is "$(fields "$H" | grep -E '^(READY|RELOADING)=' | tr '\n' ' ')" "READY=1 RELOADING=1 READY=1 " \
    "RELOADING=1 came between the two READY=1"
seq_r=$(awk '$4 == "RELOADING=1" { print $1 }' "$H")
mono=$(awk -v s="$seq_r" '$1 == s && $4 ~ /^MONOTONIC_USEC=/ { sub("MONOTONIC_USEC=", "", $4); print $4 }' "$H")
like "$mono" '^[0-9]+$' "RELOADING=1 carries MONOTONIC_USEC in the same datagram"
check "MONOTONIC_USEC is CLOCK_MONOTONIC at the reload" \
    awk -v m="$mono" -v b="$before" 'BEGIN { exit !(m / 1e6 >= b - 0.01 && m / 1e6 <= b + 10) }'
req GET /api/ready
is "$STATUS" 200 "and it still serves"

# --- no child hears NOTIFY_SOCKET ----------------------------------------------------------
resp=$(t_pids responders | sed -n 1p)
req GET /api/opencode/status
spid=$(j .server.pid)
check "a responder ($resp) has no NOTIFY_SOCKET or WATCHDOG_* in its environment" no_notify_env "$resp"
check "nor the opencode server ($spid)" no_notify_env "$spid"
check "while the manager itself was given them" sh -c "tr '\\0' '\\n' </proc/$MPID/environ | grep -q '^NOTIFY_SOCKET='"

# --- STOPPING at SIGTERM -------------------------------------------------------------------
stack_stop_ocpmd
is "$(fields "$H" | grep -E '^(READY|RELOADING|STOPPING)=' | tr '\n' ' ')" "READY=1 RELOADING=1 READY=1 STOPPING=1 " \
    "SIGTERM: STOPPING=1, last"
like "$(grep -o 'STATUS=.*' "$H" | tail -1)" '^STATUS=stopping, ' "and the last STATUS says so"
check "the manager logged where it notified" grep -q 'msg="notifying systemd".*watchdogUsec=400000' "$LOG"

# --- an abstract socket; a watchdog meant for another process ------------------------------
ABS="@ocpm-notify-test-$$"
listen "$ABS" "$NDIR/heard-abstract"
NOTIFY_SOCKET=$ABS WATCHDOG_USEC=$WD_USEC WATCHDOG_PID=1 stack_start_ocpmd
A="$NDIR/heard-abstract"
check "an abstract socket ('@') hears READY=1" wait_until 10 at_least "$A" READY=1 1
check "and a STATUS line" wait_until 10 grep -q 'STATUS=server mode, 6 sessions' "$A"
deadline=$(awk -v n="$(now)" -v d=$WD 'BEGIN { printf "%.6f", n + 3 * d }')
wait_until 10 past "$deadline"
is "$(heard "$A" WATCHDOG=1)" 0 "WATCHDOG_PID naming another process: no pings"
stack_stop_ocpmd
check "STOPPING=1 on the abstract socket too" wait_until 10 at_least "$A" STOPPING=1 1

# --- an unusable NOTIFY_SOCKET is logged, not fatal ----------------------------------------
NOTIFY_SOCKET="$NDIR/nobody-listens" stack_start_ocpmd
req GET /api/ready
is "$STATUS" 200 "nobody listening on NOTIFY_SOCKET: ocpmd serves anyway"
is "$(grep -c 'msg="cannot notify systemd; later failures are logged at debug"' "$LOG")" 1 \
    "the failure to notify is logged once at warn"

for p in "${LISTENERS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
[ "$T_FAIL" -eq 0 ] && rm -rf "$NDIR" || echo "# kept $NDIR"
t_done
