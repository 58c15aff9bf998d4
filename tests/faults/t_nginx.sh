#!/usr/bin/env bash
# Fault suite: nginx in front. 500 clients opening streams at once (the pool's limit answers the
# excess 503 at once, as JSON, while the admitted streams and the reserve keep working); nginx
# reloaded while streams are open (they finish; new requests go to the new workers); the manager
# down behind nginx (JSON 502), then back; the drop-in ocpm.conf checked and serving.
. "$(dirname "$0")/../integration/lib.sh"
export OCPM_RESPONDERS=2 OCPM_RESPONDER_THREADS=16 OCPM_MAX_CONCURRENT_RUNS=4 OCPM_SSE_HEARTBEAT=500ms
# The pool's own limit is what this test floods: one user (anonymous) sends everything, so the
# per-user share of it (tests/integration/t_trust.sh) is lifted.
export OCPM_USER_MAX_SHARE=100%
t_start
LONG=24 # messages at once: 2 x 16 threads, less a reserve of 8

# --- 500 clients open streams at once (the responders' own limit) ----------------------------------
out=$(python3 "$SRC/tests/faults/flood.py" "$STACK_PORT" 500 "[[hang]] flood")
echo "# $out"
J() { printf '%s' "$out" | jq -r "$1"; }
is "$(J '.status["200"] + .status["503"]')" 500 "every one of 500 clients got 200 or 503 (none hung, none failed)"
like "$(J '.status["200"]')" '^[0-9]+$' "some streams were admitted"
check "no more streams than the limit for messages ($LONG)" test "$(J '.status["200"]')" -le "$LONG"
is "$(J .refusals_json_busy)" true "every refusal is ocpm's JSON server_busy error with Retry-After"
echo "# refusals answered in $(J .fastest_refusal_s)..$(J .slowest_refusal_s) s"
is "$(J .health_while_held)" 200 "the reserve still serves /api/health while the streams are held"
is "$(J .active_streams_while_held)" "$(J '.status["200"]')" "and the status endpoint counts the held streams"
is "$(J .held_ended_with_done)" "$(J .held)" "every held stream ended with done once its session was deleted"
check "activeStreams returns to 0" wait_until 20 sh -c "curl -s $BASE/api/opencode/status | jq -e '.activeStreams == 0'"
req GET /api/opencode/status
is "$(j .ocpm.responders.refused)" "$(J '.status["503"]')" "the status endpoint counts every refusal"
is "$(j .ocpm.responders.inFlight)/$(j .ocpm.responders.messagesInFlight)" 1/0 "and nothing left in flight but itself"
req POST /api/sessions '{"id":"after-flood"}'
req POST /api/sessions/after-flood/messages '{"text":"after the flood"}'
is "$STATUS/$(j .execution.status)" 200/succeeded "a message after the flood succeeds"
is "$(t_leftovers | xargs -r ps -o args= -p 2>/dev/null | grep -c '[f]ake_opencode')" 0 "no opencode run is left from the flood"

# --- nginx reloaded while streams are open -------------------------------------------------------
workers() { pgrep -P "$STACK_NGINX_PID" | sort | tr '\n' ' '; }
OLD=$(workers)
for i in 1 2 3; do
    req POST /api/sessions "{\"id\":\"rl$i\"}"
    curl -sN --max-time 60 -H 'Accept: text/event-stream' -H 'Content-Type: application/json' -X POST \
        --data-binary "{\"text\":\"[[delay=3000]] across a reload $i\"}" "$BASE/api/sessions/rl$i/messages" \
        >"$TDIR/rl$i.sse" &
    eval "RL$i=\$!"
done
check "three streams are open" wait_until 10 sh -c "curl -s $BASE/api/opencode/status | jq -e '.activeStreams == 3'"
kill -HUP "$STACK_NGINX_PID"
new_workers() { [ -n "$(comm -13 <(echo "$OLD" | tr ' ' '\n' | sort) <(workers | tr ' ' '\n' | sort) | grep .)" ]; }
check "nginx starts new workers on reload" wait_until 10 new_workers
req GET /api/health
is "$STATUS" 200 "new requests are served during the reload"
wait "$RL1" "$RL2" "$RL3"
for i in 1 2 3; do
    like "$(grep -A1 '^event: done' "$TDIR/rl$i.sse" | tail -1)" '"status": ?"succeeded"' "stream $i open across the reload ends with done, succeeded"
done
only_new() { [ "$(workers | wc -w)" -eq 2 ]; }
check "the old workers exit once their streams are done" wait_until 20 only_new

# --- the manager down behind nginx, then back ------------------------------------------------------
stack_stop_ocpmd
req GET /api/sessions
is "$STATUS/$(j .error.code)" 502/manager_unavailable "with the manager down nginx answers JSON 502"
like "$HEADERS" 'Retry-After: 5' "with Retry-After"
stack_start_ocpmd || { echo "Bail out! ocpmd did not restart"; exit 1; }
req GET /api/sessions/rl1
is "$STATUS/$(j .id)" 200/rl1 "the restarted manager serves the sessions it had"

# --- the drop-in ocpm.conf, as an operator installs it ------------------------------------------------
DROP="$TDIR/dropin"
mkdir -p "$DROP/tmp"
sed -e "s|/usr/local/share/ocpm/nginx|$DROP|g" -e "s|unix:/var/lib/ocpm/fcgi.sock|unix:$STACK_FCGI|g" \
    "$SRC/nginx/ocpm.conf" >"$DROP/ocpm.conf"
cp "$SRC/nginx/ocpm_errors.conf" "$SRC/nginx/fastcgi_ocpm_params" "$DROP/"
cp -r "$SRC/nginx/status" "$SRC/nginx/errors" "$DROP/"
DPORT=$(free_port)
cat >"$DROP/nginx.conf" <<CONF
$([ "$(id -u)" = 0 ] && echo "user root root;")
pid $DROP/nginx.pid;
error_log stderr notice;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $DROP/tmp/body;
    fastcgi_temp_path $DROP/tmp/fastcgi;
    proxy_temp_path $DROP/tmp/proxy;
    uwsgi_temp_path $DROP/tmp/uwsgi;
    scgi_temp_path $DROP/tmp/scgi;
    server {
        listen 127.0.0.1:$DPORT;
        include $DROP/ocpm.conf;
    }
}
CONF
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
out=$("$NGINX" -t -p "$DROP" -c "$DROP/nginx.conf" -e stderr 2>&1)
like "$out" 'test is successful' "nginx -t accepts the drop-in ocpm.conf"
"$NGINX" -p "$DROP" -c "$DROP/nginx.conf" -e stderr -g 'daemon off;' >"$DROP/nginx.log" 2>&1 &
DPID=$!
check "nginx starts with the drop-in" wait_until 10 curl -s -o /dev/null "http://127.0.0.1:$DPORT/api/health"
st=$(curl -s -o "$TDIR/d.json" -w '%{http_code}' -H 'Content-Type: application/json' -X POST \
    --data-binary '{"id":"via-dropin"}' "http://127.0.0.1:$DPORT/api/sessions")
is "$st" 201 "a session is created through the drop-in"
st=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$DPORT/status/")
is "$st" 200 "the status page is served by the drop-in"
# From an address that is not local (127.0.0.2: loopback, but not 127.0.0.1), every spelling of an
# operator route is refused by nginx, as ocpm's JSON; from the local address only the exact one runs.
for p in /api/opencode/status /api/opencode/status/ /api/opencode/./status/ /api/opencode/status%2F \
    /api/opencode//status /api/admin/executions /api/stats/ /metrics /api/health; do
    st=$(curl -s --interface 127.0.0.2 -o "$TDIR/d.json" -w '%{http_code}' "http://127.0.0.1:$DPORT$p")
    is "$st/$(jq -r .error.code "$TDIR/d.json")" 403/forbidden "drop-in: $p from a remote address is refused"
done
st=$(curl -s -o "$TDIR/d.json" -w '%{http_code}' "http://127.0.0.1:$DPORT/api/opencode/status/")
is "$st/$(jq -r .error.code "$TDIR/d.json")" 404/not_found "drop-in: locally, a second spelling of a route is 404"
st=$(curl -s -o "$TDIR/d.json" -w '%{http_code}' "http://127.0.0.1:$DPORT/api/opencode/status")
is "$st/$(jq -r .available "$TDIR/d.json")" 200/true "and the exact one answers"
kill -QUIT "$DPID"
wait "$DPID" 2>/dev/null
t_done
