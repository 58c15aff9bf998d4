#!/usr/bin/env bash
# scripts/stack run (what scripts/quickstart ends in), stopped the ways a terminal stops it: one
# Ctrl-C (SIGINT to the foreground process group), also when its output goes through a pipe whose
# reader the same Ctrl-C kills (`scripts/quickstart | tee log`), and a closed terminal (SIGHUP to the
# group). Each time the whole stack stops cleanly: the manager logs a clean stop, and no process of
# it is left.
. "$(dirname "$0")/lib.sh"
TDIR=$(mktemp -d /tmp/ocpm-test-XXXXXX)
chmod 0755 "$TDIR"
mkdir -p "$TDIR/fakes"
cp "$SRC"/tests/fakes/*.py "$TDIR/fakes/"
chmod 0755 "$TDIR/fakes" "$TDIR"/fakes/*.py
trap 't_cleanup' EXIT
cat >"$TDIR/reader.py" <<'PY'
import os, sys, time
with open(sys.argv[1], "wb") as out:
    for line in sys.stdin.buffer:
        out.write(line)
        if b"Press Ctrl-C" in line:
            break
os.close(0)
time.sleep(3600)  # until the signal the group gets
PY

# run NAME: the stack in a session of its own, as a terminal starts it (SIGINT and SIGHUP at their
# defaults, not ignored as they are for a background job of a script). Its output goes through a
# pipe to a reader that reads the banner and then closes its end while it lives on, as a `tee`
# killed by the same Ctrl-C has: whatever the stack writes while it stops meets a pipe with no
# reader. Sets GROUP (its process group), PORT and BASE.
run() {
    PORT=$(free_port)
    BASE="http://127.0.0.1:$PORT"
    GROUP=$(OCPM_STATE_DIR="$TDIR/$1" OCPM_HTTP_PORT=$PORT OCPM_MODE=per-session \
        OCPM_OPENCODE_BIN="$TDIR/fakes/fake_opencode.py" python3 -c '
import subprocess, sys
p = subprocess.Popen(["bash", "-c", sys.argv[1]], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(p.pid)' "'$SRC/scripts/stack' run 2>&1 | python3 '$TDIR/reader.py' '$TDIR/$1.out'")
}
up() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/api/health")" = 200 ]; }
manager_of() { cat "$TDIR/$1/ocpmd.lock" 2>/dev/null; }
# stopped_cleanly NAME: the manager logged a clean stop after one signal, and nginx answers no more.
stopped_cleanly() {
    check "the manager stopped cleanly" grep -q 'msg="OpenCode process manager stopped"' "$TDIR/$1/logs/ocpmd.log"
    is "$(grep -c 'second stop signal\|respawning' "$TDIR/$1/logs/ocpmd.log")" 0 "one signal, one quiet stop"
    check "nginx is gone" sh -c "! curl -s -o /dev/null --max-time 2 http://127.0.0.1:$PORT/api/health"
}
gone() { ! kill -0 "$1" 2>/dev/null && [ -z "$(python3 "$SRC/tests/integration/pids.py" "$TDIR/$2" all)" ]; }

for how in INT HUP; do
    name=stack-$how
    run "$name"
    check "the stack answers ($how case)" wait_until 60 up
    M=$(manager_of "$name")
    like "$M" '^[0-9]+$' "its manager holds the lock"
    req POST /api/sessions '{"id":"s"}' >/dev/null
    kill -"$how" -- -"$GROUP"
    check "SIG$how to its process group stops the manager and every process of the stack" wait_until 40 gone "$M" "$name"
    stopped_cleanly "$name"
done

# A terminal closed while the stack still starts: the script is polling (a sleep, a curl) and the
# reader of its output is gone with the same HUP. Bash reports the child the HUP killed on that
# dead pipe, which used to kill the script before its trap stopped what it had started.
name=stack-HUP-starting
run "$name"
check "the manager of a starting stack is up" wait_until 60 grep -q 'process manager initialized' "$TDIR/$name/logs/ocpmd.log"
M=$(manager_of "$name")
kill -HUP -- -"$GROUP"
check "SIGHUP while the stack starts stops the manager and every process of the stack" wait_until 40 gone "$M" "$name"
stopped_cleanly "$name"
t_done
