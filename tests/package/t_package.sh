#!/usr/bin/env bash
# tests/package/t_package.sh: the Debian package, as an operator gets it. Builds ocpm_*.deb with
# dpkg-buildpackage from a copy of the tree (or takes OCPM_DEB), runs lintian on it, installs it with
# apt-get, then runs the INSTALLED ocpmd (the command line of the installed ocpmd.service) with the
# INSTALLED /etc/ocpm/ocpmd.conf, behind Debian's nginx serving the INSTALLED example site and
# snippet, and gets an answer to a message through nginx. Only opencode_bin is overridden
# (OCPM_OPENCODE_BIN: the repository's fake opencode). Prints TAP.
#
# Needs root and Debian (it installs packages); no systemd needed (CI runs in a container).
# Everything it starts it stops. The package is purged at the end when it was not installed before
# (and /var/lib/ocpm did not exist), unless OCPM_PACKAGE_KEEP=1.
#   OCPM_DEB=FILE   test this .deb instead of building one
set -u
SRC=$(cd "$(dirname "$0")/../.." && pwd)
# ok, not_ok, is, like, check, skip, wait_until, free_port: the integration tests' helpers.
. "$SRC/tests/integration/lib.sh"
# The installed configuration decides; no OCPM_* of the caller's (lib.sh sets OCPM_MODE) reaches ocpmd.
for v in $(env | sed -n 's/^\(OCPM_[A-Z0-9_]*\)=.*/\1/p'); do
    case $v in OCPM_DEB | OCPM_PACKAGE_KEEP) ;; *) unset "$v" ;; esac
done

if [ "$(id -u)" != 0 ] || ! command -v dpkg >/dev/null || ! command -v apt-get >/dev/null; then
    echo "1..0 # SKIP needs root on Debian (it installs the package)"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# One run at a time: it owns /var/lib/ocpm and the package.
exec 8>/tmp/ocpm-package-test.lock
flock 8

TDIR=$(mktemp -d /tmp/ocpm-pkg-XXXXXX)
chmod 0755 "$TDIR"
OCPMD_PID="" NGINX_PID=""
WAS_INSTALLED=no
dpkg-query -W -f='${Status}' ocpm 2>/dev/null | grep -q "install ok installed" && WAS_INSTALLED=yes
HAD_STATE=no
[ -e /var/lib/ocpm ] && HAD_STATE=yes

cleanup() {
    trap - EXIT
    if [ -n "$OCPMD_PID" ] && kill -0 "$OCPMD_PID" 2>/dev/null; then
        kill -TERM "$OCPMD_PID"
        wait_until 60 sh -c "! kill -0 $OCPMD_PID" || kill -KILL "$OCPMD_PID"
        wait "$OCPMD_PID" 2>/dev/null
    fi
    if [ -n "$NGINX_PID" ] && kill -0 "$NGINX_PID" 2>/dev/null; then
        kill -QUIT "$NGINX_PID"
        wait "$NGINX_PID" 2>/dev/null
    fi
    if [ "$T_FAIL" -gt 0 ]; then
        echo "# kept $TDIR for inspection"
        [ -f /var/log/ocpm/ocpmd.log ] && tail -n 30 /var/log/ocpm/ocpmd.log | sed 's/^/#   ocpmd.log: /'
        [ -f "$TDIR/nginx.err" ] && tail -n 10 "$TDIR/nginx.err" | sed 's/^/#   nginx: /'
    else
        rm -rf "$TDIR"
    fi
}
trap cleanup EXIT
bail() {
    echo "Bail out! $*"
    exit 1
}

# --- build ------------------------------------------------------------------------------------------
# What debian/control asks for and the machine lacks (dpkg-checkbuilddeps names it), and the tools.
need=""
for p in dpkg-dev debhelper lintian fakeroot; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
    echo "# installing$need"
    apt-get install -y -q --no-install-recommends $need >"$TDIR/apt.log" 2>&1 || bail "cannot install$need"
fi
unmet=$(cd "$SRC" && dpkg-checkbuilddeps 2>&1 | sed -n 's/.*Unmet build dependencies: //p' |
    sed 's/([^)]*)//g; s/<[^>]*>//g; s/|[^ ]*//g')
if [ -n "$unmet" ]; then
    echo "# installing the build dependencies:$unmet"
    # shellcheck disable=SC2086 # a list of names
    apt-get install -y -q --no-install-recommends $unmet >>"$TDIR/apt.log" 2>&1 || bail "cannot install$unmet"
fi

if [ -n "${OCPM_DEB:-}" ]; then
    DEB=$OCPM_DEB
    skip "dpkg-buildpackage builds the package" "OCPM_DEB=$OCPM_DEB"
else
    # A copy of the tree (tracked and new files, no build products), built where its parent
    # directory can take dpkg-buildpackage's outputs.
    mkdir -p "$TDIR/build/ocpm"
    if git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
        (cd "$SRC" && git ls-files -z -c -o --exclude-standard | xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
            tar --null -T - -cf - | tar -xf - -C "$TDIR/build/ocpm")
    else
        cp -a "$SRC/." "$TDIR/build/ocpm/"
        (cd "$TDIR/build/ocpm" && { [ ! -f Makefile ] || make -s distclean >/dev/null 2>&1; })
    fi
    start=$(date +%s)
    if (cd "$TDIR/build/ocpm" && dpkg-buildpackage -us -uc -b -j2) >"$TDIR/build.log" 2>&1; then
        ok "dpkg-buildpackage -us -uc -b builds the package ($(($(date +%s) - start)) s)"
    else
        not_ok "dpkg-buildpackage -us -uc -b builds the package" "$(tail -n 30 "$TDIR/build.log" | tr '\n' '|')"
    fi
    DEB=$(ls "$TDIR"/build/ocpm_*.deb 2>/dev/null | head -1)
fi
[ -n "$DEB" ] && [ -f "$DEB" ] || bail "no ocpm_*.deb"
DEB=$(cd "$(dirname "$DEB")" && pwd)/$(basename "$DEB")
echo "# package: $DEB"

# --- lintian ----------------------------------------------------------------------------------------
lintian --fail-on error -I --show-overrides "$DEB" >"$TDIR/lintian.out" 2>&1
lrc=$?
grep -v '^running with root' "$TDIR/lintian.out" | sed 's/^/# lintian: /'
is "$lrc/$(grep -c '^E: ' "$TDIR/lintian.out")" "0/0" "lintian reports no error"

# --- install ----------------------------------------------------------------------------------------
if apt-get install -y -q "$DEB" >"$TDIR/install.log" 2>&1; then
    ok "apt-get install ./ocpm_*.deb installs it with its dependencies"
else
    not_ok "apt-get install ./ocpm_*.deb installs it with its dependencies" "$(tail -n 20 "$TDIR/install.log" | tr '\n' '|')"
fi
is "$(dpkg-query -W -f='${Status}' ocpm 2>/dev/null)" "install ok installed" "dpkg lists ocpm as installed"
check "dpkg -i again (postinst run a second time) succeeds" dpkg -i "$DEB"
for f in /usr/sbin/ocpmd /usr/sbin/ocpmctl; do check "$f is installed and runs" "$f" -h; done
for f in /usr/share/man/man8/ocpmd.8.gz /usr/share/man/man8/ocpmctl.8.gz /usr/share/man/man5/ocpmd.conf.5.gz \
    /lib/systemd/system/ocpmd.service /etc/logrotate.d/ocpm /etc/default/ocpm /etc/nginx/sites-available/ocpm \
    /usr/share/ocpm/nginx/status/index.html /usr/share/ocpm/nginx/fastcgi_ocpm_params; do
    check "$f is installed" test -s "$f"
done
conffiles=$(dpkg-query -W -f='${Conffiles}' ocpm)
like "$conffiles" "/etc/ocpm/ocpmd.conf " "/etc/ocpm/ocpmd.conf is a conffile"
like "$conffiles" "/etc/nginx/snippets/ocpm.conf " "/etc/nginx/snippets/ocpm.conf is a conffile"
check "the example site is not enabled" test ! -e /etc/nginx/sites-enabled/ocpm
is "$(stat -c '%U:%G %a' /etc/ocpm/ocpmd.conf)" "root:root 640" "ocpmd.conf is root's alone (it may hold webhook_secret)"
is "$(stat -c '%U:%G %a' /etc/default/ocpm)" "root:root 600" "/etc/default/ocpm is root's alone (provider keys, OCPM_WEBHOOK_SECRET)"
for u in ocpm ocpm-agent; do
    is "$(getent passwd "$u" | cut -d: -f6,7)" "/nonexistent:/usr/sbin/nologin" "system user $u exists, no home, no shell"
done
is "$(stat -c '%U:%G %a' /var/lib/ocpm)" "root:root 711" "/var/lib/ocpm is root's, 0711"
is "$(stat -c '%U:%G %a' /var/log/ocpm)" "root:adm 2750" "/var/log/ocpm is root:adm 2750"
for kv in "state_dir = /var/lib/ocpm" "fcgi_socket_group = www-data" "agent_user = ocpm-agent" \
    "log_file = /var/log/ocpm/ocpmd.log"; do
    check "ocpmd.conf sets $kv" grep -qx "$kv" /etc/ocpm/ocpmd.conf
done
if command -v systemd-analyze >/dev/null; then
    out=$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify /lib/systemd/system/ocpmd.service 2>&1)
    is "$out" "" "systemd-analyze verify accepts ocpmd.service"
else
    skip "systemd-analyze verify accepts ocpmd.service" "no systemd-analyze"
fi

# --- run it as the unit does ------------------------------------------------------------------------
unit=/lib/systemd/system/ocpmd.service
EXEC_PRE=$(sed -n 's/^ExecStartPre=//p' "$unit")
EXEC=$(sed -n 's/^ExecStart=//p' "$unit")
like "$EXEC" '^/usr/sbin/ocpmd -c /etc/ocpm/ocpmd.conf$' "the unit starts the installed ocpmd with the installed file"
like "$(sed -n 's/^Type=//p' "$unit")/$(sed -n 's/^WatchdogSec=//p' "$unit")" '^notify/30s$' "the unit is Type=notify with WatchdogSec=30s"
# The fake opencode where the agent's user may run it.
mkdir -p "$TDIR/fakes"
cp "$SRC"/tests/fakes/*.py "$TDIR/fakes/"
chmod 0755 "$TDIR/fakes" "$TDIR"/fakes/*.py
# The unit's environment: EnvironmentFile=-/etc/default/ocpm (comments only as shipped), no other.
run_env=(env -i PATH="$PATH" LANG=C.UTF-8 OCPM_OPENCODE_BIN="$TDIR/fakes/fake_opencode.py")
# shellcheck disable=SC2086 # the unit's command line, word-split as systemd does
out=$("${run_env[@]}" $EXEC_PRE 2>&1)
is "$?" 0 "ExecStartPre (ocpmd -t) accepts the installed configuration"
echo "$out" | sed 's/^/# ocpmd -t: /'
if pgrep -f '^/usr/sbin/ocpmd' >/dev/null; then
    bail "an installed ocpmd is already running (stop it first: systemctl stop ocpmd)"
fi
# With a notify socket of the test's own, as systemd gives one (Type=notify).
NOTIFY="$TDIR/notify.sock"
python3 - "$NOTIFY" "$TDIR/notify.log" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(120)
with open(sys.argv[2], "a") as log:
    try:
        while True:
            log.write(s.recv(4096).decode(errors="replace").replace("\n", " ") + "\n")
            log.flush()
    except OSError:
        pass
PY
NOTIFY_PID=$!
wait_until 10 test -S "$NOTIFY" || bail "the notify socket did not appear"
log_from=$(($( (wc -l </var/log/ocpm/ocpmd.log) 2>/dev/null || echo 0) + 1))
# shellcheck disable=SC2086
setsid "${run_env[@]}" NOTIFY_SOCKET="$NOTIFY" $EXEC >"$TDIR/ocpmd.stderr" 2>&1 &
OCPMD_PID=$!
if wait_until 60 /usr/sbin/ocpmctl status; then
    ok "the installed ocpmd starts and the installed ocpmctl reaches it (default paths)"
else
    not_ok "the installed ocpmd starts and the installed ocpmctl reaches it (default paths)" "$(tail -5 "$TDIR/ocpmd.stderr")"
    bail "ocpmd did not start"
fi
check "it logs to /var/log/ocpm/ocpmd.log" wait_until 10 sh -c "tail -n +$log_from /var/log/ocpm/ocpmd.log | grep -q 'OpenCode process manager initialized'"
if grep -aq NOTIFY_SOCKET /usr/sbin/ocpmd; then
    check "ocpmd tells systemd READY=1 (Type=notify)" wait_until 60 grep -q 'READY=1' "$TDIR/notify.log"
else
    skip "ocpmd tells systemd READY=1 (Type=notify)" "this ocpmd has no sd_notify support yet"
fi
is "$(stat -c '%U:%G %a' /var/lib/ocpm/fcgi.sock)" "root:www-data 660" "the FastCGI socket is in www-data's group, 0660"

# --- Debian's nginx with the installed example site and snippet -------------------------------------
PORT=$(free_port)
mkdir -p "$TDIR/nginx/tmp"
# Relative includes resolve against the configuration's directory: give it Debian's snippets.
ln -s /etc/nginx/snippets "$TDIR/nginx/snippets"
sed -e "s|listen 80;|listen 127.0.0.1:$PORT;|" -e '/listen \[::\]:80;/d' -e "s|server_name .*;|server_name localhost;|" \
    /etc/nginx/sites-available/ocpm >"$TDIR/nginx/site.conf"
cat >"$TDIR/nginx/nginx.conf" <<CONF
# As Debian's /etc/nginx/nginx.conf: workers as www-data; one site, the package's example.
user www-data;
worker_processes 1;
pid $TDIR/nginx/nginx.pid;
error_log $TDIR/nginx.err notice;
events { worker_connections 256; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path $TDIR/nginx/tmp/body;
    fastcgi_temp_path $TDIR/nginx/tmp/fastcgi;
    proxy_temp_path $TDIR/nginx/tmp/proxy;
    uwsgi_temp_path $TDIR/nginx/tmp/uwsgi;
    scgi_temp_path $TDIR/nginx/tmp/scgi;
    include $TDIR/nginx/site.conf;
}
CONF
out=$(/usr/sbin/nginx -t -p "$TDIR/nginx" -c "$TDIR/nginx/nginx.conf" 2>&1)
like "$out" 'test is successful' "nginx -t accepts the example site with snippets/ocpm.conf"
/usr/sbin/nginx -p "$TDIR/nginx" -c "$TDIR/nginx/nginx.conf" -g 'daemon off;' >>"$TDIR/nginx.err" 2>&1 &
NGINX_PID=$!
BASE="http://127.0.0.1:$PORT"
check "nginx starts" wait_until 20 curl -s -o /dev/null "$BASE/"
req GET /api/health
is "$STATUS" 200 "GET /api/health through nginx (www-data reaches the socket)"
req POST /api/sessions '{"id":"pkg"}'
is "$STATUS/$(j .id)" 201/pkg "a session is created through nginx"
req POST /api/sessions/pkg/messages '{"text":"hello from the package"}'
is "$STATUS/$(j .execution.status)" 200/succeeded "a message is answered through nginx"
like "$(j .text)" "^fake (server )?answer to: hello from the package" "with the opencode's answer"
mode=$(j .execution.mode)
req GET /api/opencode/status
is "$STATUS/$(j .ocpm.agentIsolation.separateUser)" 200/true "the agent runs as a user of its own"
is "$(j .ocpm.agentIsolation.user)" ocpm-agent "that user is ocpm-agent"
echo "# mode $mode, sandbox $(j .ocpm.agentIsolation.sandbox), landlockAbi $(j .ocpm.agentIsolation.landlockAbi)"
agent_users=$(pgrep -f "$TDIR/fakes/fake_opencode.py" | xargs -r ps -o user= -p | sort -u | tr '\n' ' ')
[ "$mode" = server ] && is "$agent_users" "ocpm-agent " "opencode serve runs as ocpm-agent"
st=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/status/")
is "$st" 200 "the status page is served from /usr/share/ocpm/nginx/status"
st=$(curl -s -o "$TDIR/e.json" -w '%{http_code}' "$BASE/api/nothing-here")
is "$st/$(jq -r .error.code "$TDIR/e.json" 2>/dev/null)" 404/not_found "an unknown route is ocpm's JSON 404"

# --- reload, as systemctl reload does (ExecReload: SIGHUP) ------------------------------------------
reload=$(sed -n 's/^ExecReload=//p' "$unit")
is "$reload" '/bin/kill -HUP $MAINPID' "the unit reloads with SIGHUP"
if grep -q 'READY=1' "$TDIR/notify.log" 2>/dev/null; then
    readies=$(grep -c 'READY=1' "$TDIR/notify.log")
    kill -HUP "$OCPMD_PID"
    check "after SIGHUP ocpmd says RELOADING=1, then READY=1 again" \
        wait_until 30 sh -c "grep -q RELOADING=1 '$TDIR/notify.log' && [ \$(grep -c READY=1 '$TDIR/notify.log') -gt $readies ]"
    req POST /api/sessions/pkg/messages '{"text":"after the reload"}'
    is "$STATUS/$(j .execution.status)" 200/succeeded "a message is answered through nginx after the reload"
    is "$(stat -c '%U:%G %a' /var/lib/ocpm/fcgi.sock)" "root:www-data 660" "the FastCGI socket is still www-data's after the reload"
else
    skip "a reload keeps serving through nginx" "this ocpmd does not notify systemd"
fi

# --- logrotate, as installed ------------------------------------------------------------------------
if grep -aq SIGUSR1 /usr/sbin/ocpmd && command -v logrotate >/dev/null; then
    logrotate -f -s "$TDIR/logrotate.state" /etc/logrotate.d/ocpm >"$TDIR/logrotate.out" 2>&1
    is "$?" 0 "logrotate -f /etc/logrotate.d/ocpm runs its postrotate"
    req GET /api/sessions/pkg
    check "ocpmd reopened its log (SIGUSR1): the new file is written" wait_until 10 grep -q . /var/log/ocpm/ocpmd.log
    check "and ocpmd still runs" kill -0 "$OCPMD_PID"
else
    skip "logrotate reopens the log" "this ocpmd does not handle SIGUSR1 yet (or no logrotate)"
fi

# --- stop, as systemd would (SIGTERM to the main process) -------------------------------------------
kill -TERM "$OCPMD_PID"
if wait_until 60 sh -c "! kill -0 $OCPMD_PID"; then
    wait "$OCPMD_PID"
    is "$?" 0 "ocpmd stops on SIGTERM with status 0"
else
    not_ok "ocpmd stops on SIGTERM with status 0" "still running after 60 s"
fi
OCPMD_PID=""
check "no ocpmd process is left" wait_until 10 sh -c "! pgrep -f '^/usr/sbin/ocpmd'"
# ([f]: the pattern must not match the shell that runs pgrep.)
check "no opencode process is left" wait_until 10 sh -c "! pgrep -f '$TDIR/[f]akes/'"
kill "$NOTIFY_PID" 2>/dev/null
wait "$NOTIFY_PID" 2>/dev/null
kill -QUIT "$NGINX_PID"
wait "$NGINX_PID" 2>/dev/null
NGINX_PID=""

# --- purge ------------------------------------------------------------------------------------------
if [ "$WAS_INSTALLED" = no ] && [ "$HAD_STATE" = no ] && [ -z "${OCPM_PACKAGE_KEEP:-}" ]; then
    apt-get purge -y -q ocpm >"$TDIR/purge.log" 2>&1
    is "$?/$(dpkg-query -W -f='${Status}' ocpm 2>/dev/null)" "0/" "apt-get purge removes the package"
    check "purge removes /etc/ocpm, /var/lib/ocpm and /var/log/ocpm" test ! -e /etc/ocpm -a ! -e /var/lib/ocpm -a ! -e /var/log/ocpm
    check "the system users stay" getent passwd ocpm-agent
else
    echo "# the package stays installed (it was before, /var/lib/ocpm existed, or OCPM_PACKAGE_KEEP is set)"
fi
echo "1..$T_N"
exit 0
