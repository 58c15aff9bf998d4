#!/usr/bin/env bash
# ocpmctl --cluster FILE: two live nodes (each its own nginx + ocpmd + SQLite), a URL nothing
# listens on, and hostile nodes (a tiny HTTP server answering garbage, an endless body, another
# node's name). The merged views must equal what each node's own ocpmctl says, put together; a node
# that does not answer is marked and the exit status says so. Also GET /api/admin/sessions itself.
. "$(dirname "$0")/lib.sh"
OCPMCTL=${OCPMCTL:-$SRC/ocpmctl}
export OCPM_NODE_NAME=n1 # each node's status names it (ocpm.node); ocpmctl checks it against the file
t_start
DB1=$DB
BASE1=$BASE

# Node n2: a second stack in the background, in a process group of its own, stopped by the trap.
P2=$(free_port)
N2_GROUP=$(python3 -c '
import subprocess, sys
p = subprocess.Popen(["bash", "-c", sys.argv[1]], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(p.pid)' "OCPM_STATE_DIR='$TDIR/n2' OCPM_NODE_NAME=n2 OCPM_HTTP_PORT=$P2 OPENCODE_CONFIG_CONTENT='{}' exec '$SRC/scripts/stack' run")
BASE2="http://127.0.0.1:$P2"
DB2="$TDIR/n2/ocpm.db"
# The hostile nodes: one small HTTP server, each node a path prefix of it.
PH=$(free_port)
cat >"$TDIR/hostile.py" <<'PY'
import http.server, json, sys, time, urllib.parse
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        q = urllib.parse.urlparse(self.path)
        after = urllib.parse.parse_qs(q.query).get("after", ["/s0"])[0]
        if q.path.endswith("/api/opencode/status") and not self.path.startswith(("/other/", "/garbage/", "/endless/", "/escape/", "/big/")):
            body = json.dumps({"ocpm": {"node": "\x1b]0;owned\x07\x1b[2Jevil"}} if self.path.startswith("/evilname/") else {}).encode()
        elif self.path.startswith("/escape/"):
            body = json.dumps({"error": {"code": "x", "message": "\x1b[31mred\x1b]0;title\x07\u009b2J"}}).encode()
            self.send_response(500); self.send_header("Content-Length", str(len(body))); self.end_headers()
            self.wfile.write(body); return
        elif self.path.startswith("/emptycursor/"):  # an empty page that says more follow
            key = "sessions" if "sessions" in q.path else "executions"
            body = json.dumps({key: [], "next_cursor": "/x" if key == "sessions" else 5}).encode()
        elif self.path.startswith("/samecursor/"):  # a page that never advances
            body = json.dumps({"sessions": [{"id": "s"}], "next_cursor": "/s"}).encode()
        elif self.path.startswith("/forever/"):  # always one more page, always advancing
            n = int(after.rsplit("/s", 1)[1]) + 1
            body = json.dumps({"sessions": [{"id": "s%d" % n}], "next_cursor": "/s%09d" % n}).encode()
        elif self.path.startswith("/big/"):  # a whole, valid status document of 5 MB
            body = json.dumps({"ocpm": {"node": "big"}, "pad": "x" * (5 << 20)}).encode()
        elif self.path.startswith("/other/"):
            body = json.dumps({"ocpm": {"node": "someone-else"}}).encode()
        elif self.path.startswith("/endless/"):
            self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers()
            try:
                self.wfile.write(b'{"a":"')
                while True:
                    self.wfile.write(b"x" * 65536)
            except Exception:
                return
        else:
            body = b"<html>not json</html>"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$TDIR/hostile.py" "$PH" &
HOSTILE=$!
stop_others() {
    kill -TERM -- -"$N2_GROUP" 2>/dev/null
    kill "$HOSTILE" 2>/dev/null
    wait_until 40 sh -c "! kill -0 $N2_GROUP 2>/dev/null"
    wait "$HOSTILE" 2>/dev/null
}
trap 'stop_others; t_cleanup' EXIT
up() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$1/api/ready")" = 200 ]; }
check "node n2 is up" wait_until 60 up "$BASE2"
check "the hostile server is up" wait_until 10 curl -s -o /dev/null "http://127.0.0.1:$PH/x"
DEAD=$(free_port)

# Sessions and messages on each node.
msg() { curl -s -o /dev/null -w '%{http_code}' -X POST "$1/api/sessions/$2/messages" -d '{"text":"hi"}'; }
for s in a b c; do curl -s -o /dev/null -X POST "$BASE1/api/sessions" -d "{\"id\":\"$s\"}"; done
for s in a d; do curl -s -o /dev/null -X POST "$BASE2/api/sessions" -d "{\"id\":\"$s\"}"; done
codes=""
for s in a a b a c; do codes+=$(msg "$BASE1" "$s"); done
for s in a d d; do codes+=$(msg "$BASE2" "$s"); done
is "$codes" "$(printf '200%.0s' 1 2 3 4 5 6 7 8)" "five messages on n1, three on n2"

# GET /api/admin/sessions: paging, bad input, localhost only.
req GET '/api/admin/sessions?limit=2'
is "$STATUS $(j '[.sessions[].id] | join(",")') $(j .next_cursor)" "200 a,b /b" "admin sessions: first page and its cursor"
is "$(j '.sessions[0] | [.owner, .executions, .succeeded] | join(" ")')" "(anonymous) 3 3" "admin sessions: a row as ocpmctl sessions has it"
req GET '/api/admin/sessions?limit=2&after=/b'
is "$STATUS $(j '[.sessions[].id] | join(",")') $(j .next_cursor)" "200 c null" "admin sessions: the last page"
for bad in 'after=b' 'after=x%2F' 'after=/' 'limit=0' 'limit=1001' 'limit=x' 'after=%01x/b'; do
    req GET "/api/admin/sessions?$bad"
    is "$STATUS $(j .error.code | grep -c .)" "400 1" "admin sessions: $bad is refused with a JSON error"
done
like "$(sed -n '/location ^~ \/api\/admin\//,/}/p' "$SRC/nginx/ocpm.conf" | tr '\n' ' ')" 'allow 127\.0\.0\.1;.*deny all;' \
    "admin sessions: the nginx drop-in keeps /api/admin/ to localhost"

printf '# the cluster\nn1 %s/\n\nn2 %s\n' "$BASE1" "$BASE2" >"$TDIR/two"
cp "$TDIR/two" "$TDIR/three"
echo "n3 http://127.0.0.1:$DEAD" >>"$TDIR/three"
local_sessions() { "$OCPMCTL" --db "$1" sessions --json | jq -c --arg n "$2" 'map(. + {node: $n})'; }

# sessions: the union of each node's own, with node; the dead node marked, exit 1.
out=$("$OCPMCTL" --cluster "$TDIR/three" sessions --json 2>"$TDIR/err"); rc=$?
is "$rc" 1 "sessions with a dead node: exit 1"
want=$( (local_sessions "$DB1" n1; local_sessions "$DB2" n2) | jq -s -c -S 'add | sort_by(.node, .id)')
is "$(printf '%s' "$out" | jq -c -S '.sessions | sort_by(.node, .id)')" "$want" "sessions --json equals the union of each node's ocpmctl sessions"
is "$(printf '%s' "$out" | jq -r '.nodes | map("\(.name)=\(.ok)") | join(" ")')" "n1=true n2=true n3=false" "the dead node is marked"
like "$(printf '%s' "$out" | jq -r '.nodes[2].error')" 'onnect' "with why"
"$OCPMCTL" --cluster "$TDIR/two" sessions >"$TDIR/out" 2>&1
is "$?:$(grep -c '^n[12] ' "$TDIR/out")" "0:5" "sessions as a table: five rows, each with its node; exit 0"

# history: paged at --limit 3 with the cursor: every execution of every node exactly once, newest first.
cursor=() pages=0
: >"$TDIR/rows"
while [ "$pages" -lt 10 ]; do
    out=$("$OCPMCTL" --cluster "$TDIR/two" history --limit 3 --json "${cursor[@]}") || break
    printf '%s' "$out" | jq -c '.executions[] | [.node, .id, .queued_at]' >>"$TDIR/rows"
    pages=$((pages + 1))
    next=$(printf '%s' "$out" | jq -r '.next_cursor // empty')
    [ -n "$next" ] || break
    cursor=(--cursor "$next")
done
is "$pages" 3 "history: 8 executions in pages of 3"
want=$( ("$OCPMCTL" --db "$DB1" history --limit 100 --json | jq -c '.[] | ["n1", .id]'
         "$OCPMCTL" --db "$DB2" history --limit 100 --json | jq -c '.[] | ["n2", .id]') | sort)
is "$(jq -c '.[0:2]' "$TDIR/rows" | sort)" "$want" "history: every execution of every node, exactly once"
is "$(jq -s -c 'map(.[2]) == (map(.[2]) | sort | reverse)' "$TDIR/rows")" true "history: newest first across pages"
"$OCPMCTL" --cluster "$TDIR/three" history --limit 3 >"$TDIR/out" 2>"$TDIR/err"
is "$?" 1 "history with a dead node: exit 1"
like "$(grep -c -e '^ocpmctl: node n3 ' -e '^next_cursor: n' "$TDIR/err")" '^2$' "table mode: the dead node and next_cursor on stderr"
out=$("$OCPMCTL" --cluster "$TDIR/three" history --limit 100 --json)
is "$(printf '%s' "$out" | jq -r '[(.executions | length), (.next_cursor | test("^n1:[0-9]+,n2:[0-9]+,n3:0$"))] | join(" ")')" "8 true" \
    "with a node down the cursor keeps going (its rows are still to come)"
out=$("$OCPMCTL" --cluster "$TDIR/three" history --session nosuch --json)
is "$(printf '%s' "$out" | jq -r '[(.executions | length), .next_cursor] | join(" ")')" "0 n1:0,n2:0,n3:0" \
    "nothing taken from anyone and a node down: the cursor still names it (n3:0), never null"
out=$("$OCPMCTL" --cluster "$TDIR/three" history --json --cursor "$(printf '%s' "$out" | jq -r .next_cursor)")
is "$(printf '%s' "$out" | jq -r '[(.executions | length), .next_cursor] | join(" ")')" "8 n1:1,n2:1,n3:0" \
    "that cursor (n1:0: from the newest) gives every row of the nodes up"

# stats: the sums of each node's ocpmctl stats.
s1=$("$OCPMCTL" --db "$DB1" stats --json) s2=$("$OCPMCTL" --db "$DB2" stats --json)
out=$("$OCPMCTL" --cluster "$TDIR/two" stats --json)
for k in total tokens.in tokens.out duration_ms.count queue_wait_ms.count by_status.succeeded; do
    a=$(printf '%s' "$s1" | jq ".$k") b=$(printf '%s' "$s2" | jq ".$k")
    is "$(printf '%s' "$out" | jq ".stats.$k")" "$((a + b))" "stats: $k is the sum of the nodes'"
done
is "$(printf '%s' "$out" | jq -r '.stats.duration_ms | [.exact, .max_relative_error, (.p50 > 0)] | join(" ")')" "false 0.0247 true" \
    "stats: percentiles from the merged histograms, with their error"
is "$(printf '%s' "$out" | jq -r '.stats.busiest_sessions[0] | "\(.node) \(.session_id) \(.executions)"')" "n1 a 3" "stats: the busiest session, with its node"

# status: one line per node, totals over those that answered.
out=$("$OCPMCTL" --cluster "$TDIR/three" status --json); rc=$?
is "$rc $(printf '%s' "$out" | jq -r '[.totals.answered, .totals.nodes, .totals.finished, (.status | keys | join(","))] | join(" ")')" \
    "1 2 3 8 n1,n2" "status: totals over the two that answered; exit 1"
"$OCPMCTL" --cluster "$TDIR/three" status >"$TDIR/out" 2>"$TDIR/err"
like "$(grep '^n3 ' "$TDIR/out")" 'false' "status as a table: the dead node's line"

# Bad input: clear errors, exit 2, no crash.
printf 'n1 %s\nN2 http://x\n' "$BASE1" >"$TDIR/bad"
"$OCPMCTL" --cluster "$TDIR/bad" status >/dev/null 2>"$TDIR/err"
is "$? $(cat "$TDIR/err")" "2 ocpmctl: $TDIR/bad:2: the name must match [a-z0-9-]{1,32}, no '-' first or last" "a bad cluster file: file:line"
"$OCPMCTL" --cluster "$TDIR/nonexistent" status >/dev/null 2>"$TDIR/err"
is "$?" 2 "a missing cluster file: exit 2"
for c in 'n1:-1' 'n1:0,n1:0' 'n9:3' 'n1:1,n1:2' 'garbage' "n1:$(printf '9%.0s' {1..30})"; do
    "$OCPMCTL" --cluster "$TDIR/two" history --cursor "$c" >/dev/null 2>"$TDIR/err"
    is "$? $(grep -c '^ocpmctl: --cursor: ' "$TDIR/err")" "2 1" "a bad cursor ($c): exit 2 with why"
done
"$OCPMCTL" --cursor n1:1 history >/dev/null 2>&1
is "$?" 2 "--cursor without --cluster: exit 2"
"$OCPMCTL" --cluster "$TDIR/two" show 1 >/dev/null 2>&1
is "$?" 2 "a command that does not take --cluster: exit 2"
printf 'n1 %s\ngarbage http://127.0.0.1:%s/garbage\nendless http://127.0.0.1:%s/endless\nn4 http://127.0.0.1:%s/other\n' \
    "$BASE1" "$PH" "$PH" "$PH" >"$TDIR/hostile"
start=$(date +%s)
out=$("$OCPMCTL" --cluster "$TDIR/hostile" --timeout 3 stats --json); rc=$?
is "$rc $(printf '%s' "$out" | jq -r '.stats.total')" "1 5" "hostile nodes: exit 1, the good node's figures"
is "$(printf '%s' "$out" | jq -r '.nodes | map(.ok) | join(" ")')" "true false false false" "hostile nodes: each marked"
like "$(printf '%s' "$out" | jq -r '.nodes[1].error')" 'not a JSON object' "garbage: not JSON"
like "$(printf '%s' "$out" | jq -r '.nodes[2].error')" 'imeout|larger than' "an endless body: cut off"
like "$(printf '%s' "$out" | jq -r '.nodes[3].error')" 'says it is node "someone-else"' "another node's name: marked"
like "$(( $(date +%s) - start ))" '^[0-9]$' "within the timeout"

# A status document of 5 MB: past what a status may weigh (4 MB), however well formed.
printf 'n1 %s\nbig http://127.0.0.1:%s/big\n' "$BASE1" "$PH" >"$TDIR/big"
out=$("$OCPMCTL" --cluster "$TDIR/big" --json status); rc=$?
is "$rc $(printf '%s' "$out" | jq -r '.nodes | map(.ok) | join(" ")')" "1 true false" "a 5 MB status document: its node marked, exit 1"
like "$(printf '%s' "$out" | jq -r '.nodes[1].error')" 'larger than 4 MB' "saying it is too large"

# Hostile paging and hostile text.
printf 'n1 %s\nempty http://127.0.0.1:%s/emptycursor\nsame http://127.0.0.1:%s/samecursor\n' "$BASE1" "$PH" "$PH" >"$TDIR/paging"
out=$(timeout 20 "$OCPMCTL" --cluster "$TDIR/paging" sessions --json); rc=$?
is "$rc $(printf '%s' "$out" | jq -r '[(.sessions | map(.node) | unique | join(",")), (.nodes | map(.ok) | join(","))] | join(" ")')" \
    "1 n1 true,false,false" "sessions: an empty page with a cursor, a cursor that stays: each node marked, no endless loop"
like "$(printf '%s' "$out" | jq -r '.nodes[1].error, .nodes[2].error' | tr '\n' '|')" 'empty page with a next_cursor\|.*does not advance' "with why"
printf 'forever http://127.0.0.1:%s/forever\n' "$PH" >"$TDIR/forever"
start=$(date +%s)
out=$(timeout 30 "$OCPMCTL" --cluster "$TDIR/forever" --timeout 0.5 sessions --json); rc=$?
is "$rc $(printf '%s' "$out" | jq -r '.nodes[0].error')" "1 the command's deadline (6 x --timeout) passed before it was done" \
    "sessions: a node paging without end is stopped by the deadline (6 x --timeout)"
like "$(( $(date +%s) - start ))" '^[3-5]$' "within 6 x 0.5 s"
printf 'n1 %s\nempty http://127.0.0.1:%s/emptycursor\n' "$BASE1" "$PH" >"$TDIR/emptyh"
out=$("$OCPMCTL" --cluster "$TDIR/emptyh" history --session nosuch --json)
is "$(printf '%s' "$out" | jq -r '[.next_cursor, .nodes[1].error] | join(" ")')" "n1:0,empty:0 an empty page with a next_cursor" \
    "history: a hostile empty page with a cursor marks its node, and next_cursor still names it"
printf 'n1 %s\nescape http://127.0.0.1:%s/evilname\nn2 http://127.0.0.1:%s/garbage\n' "$BASE1" "$PH" "$PH" >"$TDIR/escape"
"$OCPMCTL" --cluster "$TDIR/escape" history >"$TDIR/out" 2>"$TDIR/err"
is "$(cat "$TDIR/out" "$TDIR/err" | LC_ALL=C grep -c -P '[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]')" 0 "no control character reaches the terminal"
like "$(cat "$TDIR/err")" 'node escape \(http://127.0.0.1:[0-9]+/evilname\): it says it is node "\?\]0;owned\?\?\[2Jevil"' "a node's name: shown cleaned"
printf 'escape http://127.0.0.1:%s/escape\n' "$PH" >"$TDIR/escape1"
"$OCPMCTL" --cluster "$TDIR/escape1" status >"$TDIR/out" 2>"$TDIR/err"
like "$(cat "$TDIR/err")" 'HTTP 500: \?\[31mred\?\]0;title\?\?\?2J' "a node's error.message: shown cleaned"
is "$(cat "$TDIR/out" "$TDIR/err" | LC_ALL=C grep -c -P '[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]')" 0 "no control character in the status table either"
is "$("$OCPMCTL" --cluster "$TDIR/escape1" status --json | jq -r '.nodes[0].error')" "HTTP 500: $(printf '\033[31mred\033]0;title\007\302\2332J')" \
    "--json keeps the text, escaped as JSON"

stop_others
trap - EXIT
t_done
