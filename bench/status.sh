#!/usr/bin/env bash
# /api/opencode/status under wrk, through nginx, against two anchors in the same run and the same nginx:
# a static file of the same size, and PHP-FPM's own status page (pm.status_path). Prints; asserts nothing.
#   BENCH_WRK_SECONDS=10 bench/status.sh    (3 with BENCH_QUICK=1)
# PHP-FPM is Debian's php-fpm, installed here when missing (as root, or with sudo; BENCH_NO_INSTALL=1
# installs nothing and leaves its rows "not run"). It runs in the foreground as an unprivileged user,
# with a configuration of its own in the bench's directory: one pool, pm = static, as many workers
# as ocpm has responders, listening on a unix socket.
set -eu
. "$(dirname "$0")/lib.sh"
SECS=${BENCH_WRK_SECONDS:-$(quick 10 3)}
export OCPM_OPENCODE_BIN="$SRC/tests/fakes/fake_opencode.py" OCPM_LOG_LEVEL=warn OCPM_MODE=per-session
export OCPM_RESPONDERS=${OCPM_RESPONDERS:-4}
FPM_DIR="$DIR/fpm" FPM_PID="" FPM_WHY=""
STATIC="$DIR/state/nginx/static-probe.json"
stop_fpm() {
    if [ -n "$FPM_PID" ]; then kill -QUIT "$FPM_PID" 2>/dev/null || :; wait "$FPM_PID" 2>/dev/null || :; FPM_PID=""; fi
}
trap 'stop_fpm || :; stack_stop || :; rm -rf "$DIR"' EXIT

fpm_bin() {
    local b
    for b in $(command -v php-fpm) /usr/sbin/php-fpm[0-9]*; do [ -x "$b" ] && { echo "$b"; return 0; }; done
    return 1
}

# install_fpm: Debian's php-fpm with apt-get (the lists refreshed only when the first try fails).
install_fpm() {
    local sudo=""
    [ -z "${BENCH_NO_INSTALL:-}" ] || return 1
    command -v apt-get >/dev/null || return 1
    # -n: a sudo that would ask for a password fails here instead of waiting for one.
    [ "$(id -u)" = 0 ] || { command -v sudo >/dev/null || return 1; sudo="sudo -n"; }
    echo "bench: installing Debian's php-fpm (the anchor of the status figure)" >&2
    local get="$sudo env DEBIAN_FRONTEND=noninteractive apt-get"
    $get install -y -q --no-install-recommends php-fpm >"$DIR/apt.log" 2>&1 ||
        { $get update -q >>"$DIR/apt.log" 2>&1 && $get install -y -q --no-install-recommends php-fpm >>"$DIR/apt.log" 2>&1; }
}

start_fpm() {
    local bin=$1 as=()
    mkdir -p "$FPM_DIR"
    cat >"$FPM_DIR/php-fpm.conf" <<EOF
[global]
pid = $FPM_DIR/php-fpm.pid
error_log = $FPM_DIR/error.log
daemonize = no
[bench]
listen = $FPM_DIR/fpm.sock
pm = static
pm.max_children = $OCPM_RESPONDERS
pm.status_path = /fpm-status
EOF
    # php-fpm refuses to run as root unless told to, and needs nothing of root here: as root, nobody.
    if [ "$(id -u)" = 0 ]; then
        chown -R nobody "$FPM_DIR"
        as=(setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups)
    fi
    "${as[@]}" "$bin" --nodaemonize --fpm-config "$FPM_DIR/php-fpm.conf" --prefix "$FPM_DIR" >"$FPM_DIR/out.log" 2>&1 &
    FPM_PID=$!
    wait_until 20 test -S "$FPM_DIR/fpm.sock" || { cat "$FPM_DIR/out.log" "$FPM_DIR/error.log" >&2; return 1; }
}

if ! command -v wrk >/dev/null; then
    echo "bench: wrk not installed (scripts/setup installs it): status not measured"
    figure status.static "/api/opencode/status vs static (not run: no wrk)" "not run" - "" -
    exit 0
fi
FPM=$(fpm_bin || { install_fpm && fpm_bin; } || :)
if [ -z "$FPM" ]; then
    FPM_WHY="php-fpm missing and not installed${BENCH_NO_INSTALL:+ (BENCH_NO_INSTALL)}"
    [ ! -s "$DIR/apt.log" ] || tail -5 "$DIR/apt.log"
else
    start_fpm "$FPM"
fi

# The anchors share ocpm's nginx: the static file, and PHP-FPM's status page behind the same
# localhost-only rule as ocpm's operator routes.
export STACK_NGINX_EXTRA="location = /static-probe.json { alias $STATIC; default_type application/json; }
location = /fpm-status { allow 127.0.0.1; deny all; fastcgi_param SCRIPT_NAME /fpm-status;
    fastcgi_param SCRIPT_FILENAME /fpm-status; fastcgi_param REQUEST_METHOD \$request_method;
    fastcgi_param QUERY_STRING \$query_string; fastcgi_pass unix:$FPM_DIR/fpm.sock; }"
stack_start_ocpmd
PORT=$(free_port)
stack_start_nginx "$PORT"
B="http://127.0.0.1:$PORT"
curl -sf "$B/api/opencode/status" >"$STATIC"
if [ -n "$FPM" ] && ! curl -sf -o /dev/null "$B/fpm-status"; then
    FPM_WHY="its status page did not answer through nginx"
    echo "bench: PHP-FPM's $FPM_WHY:"; curl -s "$B/fpm-status" | head -5; cat "$FPM_DIR/error.log"
fi

# measure PATH: requests per second under wrk; NON2XX set to the answers that were not a success.
measure() {
    wrk -t2 -c32 -d"${SECS}s" "$B$1" >"$DIR/wrk.out" 2>&1
    RATE=$(awk '/Requests\/sec/ {print $2}' "$DIR/wrk.out")
    NON2XX=$(awk '/Non-2xx/ {n = $NF} /Socket errors/ {sub(/^ *Socket errors: */, ""); s = ", socket " $0}
        END {print (n ? n : 0) s}' "$DIR/wrk.out")
    printf '    %-26s %10s req/s   %6s bytes   errors: %s\n' "$1" "$RATE" "$(curl -s "$B$1" | wc -c)" "$NON2XX"
}
echo "ocpm benchmark, status: wrk ${SECS} s, 2 threads, 32 connections, $(nproc) cores," \
    "$OCPM_RESPONDERS responders${FPM:+ and as many PHP-FPM workers ($("$FPM" -v | head -1 | cut -d' ' -f1-2))}"
measure /static-probe.json
static=$RATE
measure /api/opencode/status
status=$RATE status_err=$NON2XX
# A figure made of error answers would look fast: say so in its label.
note() { [ "$1" = 0 ] || echo " [errors: $1]"; }
figure status.static "/api/opencode/status vs static file (wrk)$(note "$status_err")" "$status" "$static" req/s \
    "ratio >= 0.5"
if [ -z "$FPM_WHY" ]; then
    measure /fpm-status
    figure status.fpm "anchor: PHP-FPM status page vs static file$(note "$NON2XX")" "$RATE" "$static" req/s -
    figure status.vs_fpm "/api/opencode/status vs PHP-FPM status page" "$status" "$RATE" req/s -
else
    figure status.fpm "anchor: PHP-FPM status page (not run: $FPM_WHY)" "not run" - "" -
fi
