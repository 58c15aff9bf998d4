#!/usr/bin/env bash
# A cluster on loopback (scripts/cluster): three nodes, each its own nginx + ocpmd + SQLite, behind
# the front nginx (nginx/ocpm-cluster.conf.in), with the fake opencode. Sessions are placed on the
# nodes and never move: their messages land in their node's database, a killed node's sessions
# answer node_unavailable at once while the others go on, its sessions continue when it is back,
# and a fourth node moves nothing. Draining a node stops placements there.
. "$(dirname "$0")/../integration/lib.sh"
export OCPMCTL=${OCPMCTL:-$SRC/ocpmctl}
export OCPM_LOG_LEVEL=info
t_prepare
t_cluster n1 n2 n3
node_of() { local r=${1#s_}; echo "${r%%_*}"; }
# bg_batch CMD...: run each line of stdin as "CMD line" in the background, 8 at a time, waiting for
# exactly those (the nodes and the front are this shell's children too).
bg_batch() {
    local pids=() line
    while read -r line; do
        "$@" "$line" &
        pids+=("$!")
        if [ ${#pids[@]} -ge 8 ]; then wait "${pids[@]}"; pids=(); fi
    done
    [ ${#pids[@]} -eq 0 ] || wait "${pids[@]}"
}
create_one() { curl -s --max-time 30 -X POST -o "$TDIR/made/$1.json" -w '%{http_code}' "$BASE/api/sessions" >"$TDIR/made/$1.code"; }
# codes DIR: the status codes of a batch, counted: "201x120".
codes() { for f in "$TDIR/$1"/*.code; do cat "$f"; echo; done | sort | uniq -c | awk '{ printf "%s%sx%s", n++ ? " " : "", $2, $1 }'; }
made_ids() { cat "$TDIR"/made/*.json | jq -r .id; }
message_one() {
    curl -s --max-time 60 -X POST -H 'Content-Type: application/json' --data-binary "{\"text\":\"hello $1\"}" \
        -o "$TDIR/said/$1.json" -w '%{http_code}' "$BASE/api/sessions/$1/messages" >"$TDIR/said/$1.code"
}
mkdir -p "$TDIR/made" "$TDIR/said"

# --- 120 sessions created without an id: spread over every node ----------------------------------
seq 1 120 | bg_batch create_one
is "$(codes made)" "201x120" "120 creations through the front: each 201"
made_ids >"$TDIR/ids"
is "$(sort -u "$TDIR/ids" | grep -cE '^s_n[123]_[0-9a-f]{24}$')" 120 "120 distinct ids, each in its node's form s_<node>_<24 hex>"
for n in n1 n2 n3; do
    c=$(grep -c "^s_${n}_" "$TDIR/ids")
    check "node $n got $c of the 120 (at least 20%)" test "$c" -ge 24
    is "$(ndb "$n" "select count(*) from sessions")" "$c" "node $n's database holds exactly its $c sessions"
    is "$(ndb "$n" "select count(*) from sessions where id not like 's\\_${n}\\_%' escape '\\'")" 0 \
        "node $n's database holds no other node's session"
done

# --- every message of a session lands on its node --------------------------------------------------
bg_batch message_one <"$TDIR/ids"
is "$(codes said)" "200x120" "a message to each of the 120 sessions: each 200"
for n in n1 n2 n3; do
    is "$(ndb "$n" "select group_concat(session_id, ' ') from (select session_id from executions order by session_id)")" \
        "$(grep "^s_${n}_" "$TDIR/ids" | sort | tr '\n' ' ' | sed 's/ $//')" \
        "node $n recorded one execution for each of its sessions, and none of another node's"
    is "$(ndb "$n" "select count(*) from executions where status = 'succeeded'")" "$(grep -c "^s_${n}_" "$TDIR/ids")" \
        "node $n: every one succeeded"
done
S1=$(grep -m1 '^s_n1_' "$TDIR/ids") S2=$(grep -m1 '^s_n2_' "$TDIR/ids") S3=$(grep -m1 '^s_n3_' "$TDIR/ids")
OC2=$(ndb n2 "select opencode_session_id from sessions where id = '$S2'")
like "$OC2" '^ses_' "the session on n2 has its opencode conversation ($OC2)"

# --- a node killed: its sessions answer node_unavailable at once, the rest go on -------------------
cluster_kill_node n2
check "n2's port refuses connections" sh -c "! curl -s -o /dev/null --max-time 2 http://127.0.0.1:${CLUSTER_PORT[n2]}/"
fast=0 right=0
for s in $(grep '^s_n2_' "$TDIR/ids" | head -10); do
    # --max-time 2: a client that waits longer fails the case (the answer is due at once).
    req POST "/api/sessions/$s/messages" '{"text":"are you there"}' --max-time 2
    [ "$STATUS" != 000 ] && fast=$((fast + 1))
    [ "$STATUS/$(j .error.code)/$(j .error.node)" = 503/node_unavailable/n2 ] && right=$((right + 1))
done
is "$fast" 10 "10 messages to n2's sessions: each answered within 2 s"
is "$right" 10 "each: 503 node_unavailable naming n2"
check "with Retry-After" grep -qi '^Retry-After: 5' "$TDIR/headers"
req GET "/api/sessions/$S2" "" --max-time 2
is "$STATUS/$(j .error.code)" 503/node_unavailable "reading an n2 session: 503 node_unavailable too"
others=0 okc=0
for s in $(grep -v '^s_n2_' "$TDIR/ids" | head -20); do
    req POST "/api/sessions/$s/messages" '{"text":"still here"}'
    others=$((others + 1))
    [ "$STATUS/$(j .execution.status)" = 200/succeeded ] && okc=$((okc + 1))
done
is "$okc/$others" "20/20" "20 messages to n1's and n3's sessions meanwhile: each 200 succeeded"
rm -f "$TDIR"/made/*
seq 1 30 | bg_batch create_one
is "$(codes made)" "201x30" "30 creations while n2 is down: each 201"
is "$(made_ids | grep -c '^s_n2_')" 0 "none of them on n2"
made_ids >>"$TDIR/ids"

# --- n2 back: its sessions continue their conversations --------------------------------------------
cluster_start_node n2 || { echo "Bail out! n2 did not start again"; exit 1; }
req POST "/api/sessions/$S2/messages" '{"text":"after the restart"}'
is "$STATUS/$(j .execution.status)" 200/succeeded "n2 back: its session answers again"
like "$(j .text)" "continued $OC2" "and continues its opencode conversation"
is "$(ndb n2 "select count(*) from executions where session_id = '$S2'")" 2 "both its messages are in n2's database"
back=0
for s in $(grep '^s_n2_' "$TDIR/ids" | sed -n '2,10p'); do
    req POST "/api/sessions/$s/messages" '{"text":"back"}'
    [ "$STATUS/$(j .execution.status)" = 200/succeeded ] && back=$((back + 1))
done
is "$back" 9 "9 more of n2's sessions answer after the restart"

# --- a fourth node: no existing session moves -------------------------------------------------------
cluster_start_node n4 || { echo "Bail out! n4 did not start"; exit 1; }
check "the front reloaded with n4" cluster_reload_front
is "$(ndb n4 "select count(*) from sessions")" 0 "n4 starts empty"
moved=0 total=0
while read -r s; do
    total=$((total + 1))
    st=$(curl -s -o "$TDIR/got" -w '%{http_code}' --max-time 10 "$BASE/api/sessions/$s")
    [ "$st/$(jq -r .id "$TDIR/got")" = "200/$s" ] || moved=$((moved + 1))
done <"$TDIR/ids"
is "$moved/$total" "0/150" "after n4 joined, each of the 150 sessions is still found through the front (on its own node)"
rm -f "$TDIR"/made/*
seq 1 40 | bg_batch create_one
is "$(codes made)" "201x40" "40 more creations: each 201"
check "some of them on n4 (it takes new sessions)" test "$(made_ids | grep -c '^s_n4_')" -ge 4

# A client's own Ocpm-Node does not steer placement (the probe passes none of the client's headers).
steered=0
for i in 1 2 3 4 5 6 7 8; do
    req POST /api/sessions "" -H 'Ocpm-Node: n2'
    [ "$STATUS" = 201 ] && steered=$((steered + 1))
done
is "$steered" 8 "8 creations with a client's Ocpm-Node: n2: each 201, wherever it was placed"

# --- draining a node: the front places elsewhere, its running turn finishes ----------------------------
mkdir -p "$TDIR/gates"
chmod 0755 "$TDIR/gates" # the fake runs as the agent's user
n3_running() { [ "$(ndb n3 "select count(*) from executions where status = 'running'")" = 1 ]; }
creates() { [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$BASE/api/sessions")" = 201 ]; }
curl -s --max-time 60 -X POST -H 'Content-Type: application/json' --data-binary '{"text":"[[gate=d3]] slow"}' \
    -o "$TDIR/gated" -w '%{http_code}' "$BASE/api/sessions/$S3/messages" >"$TDIR/gated.code" &
GATED=$!
check "n3's turn runs" wait_until 10 n3_running
check "ocpmctl drain on n3" env OCPM_STATE_DIR="$CLUSTER_DIR/n3" "$OCPMCTL" drain
req GET /api/ready "" --max-time 5
is "$STATUS" 200 "the front is ready while any node is"
check "n3's /api/ready says draining" sh -c "curl -s http://127.0.0.1:${CLUSTER_PORT[n3]}/api/ready | grep -q draining"
rm -f "$TDIR"/made/*
seq 1 24 | bg_batch create_one
is "$(codes made)" "201x24" "24 creations while n3 drains: each 201"
is "$(made_ids | grep -c '^s_n3_')" 0 "none on n3"
touch "$TDIR/gates/d3"
wait "$GATED"
is "$(cat "$TDIR/gated.code")/$(jq -r .execution.status "$TDIR/gated")" 200/succeeded "the turn n3 had taken finished during the drain"
req POST "/api/sessions/$S3/messages" '{"text":"new"}'
is "$STATUS/$(j .error.code)" 503/draining "a new message to an n3 session: 503 draining (from the node)"
for n in n1 n2 n4; do env OCPM_STATE_DIR="$CLUSTER_DIR/$n" "$OCPMCTL" drain >/dev/null; done
req POST /api/sessions
is "$STATUS/$(j .error.code)" 503/no_node_ready "every node draining: a creation answers 503 no_node_ready"
is "$(echo "$BODY" | jq -c .error.nodes)" '["n1","n2","n3","n4"]' "naming the nodes"
req GET /api/ready
is "$STATUS" 503 "and the front's /api/ready says 503"
for n in n1 n2 n3 n4; do env OCPM_STATE_DIR="$CLUSTER_DIR/$n" "$OCPMCTL" undrain >/dev/null; done
# The front marked each node failed when it said 503 (max_fails=1): it asks again after fail_timeout (2s).
check "undrained: creations work again (once the front asks the nodes again)" wait_until 10 creates

# --- ids the client chooses: in the node form, by PUT -----------------------------------------------
req PUT /api/sessions/s_n3_mine '{"workspace":"w"}'
is "$STATUS/$(j .id)" 201/s_n3_mine "PUT /api/sessions/s_n3_mine: created on n3"
is "$(ndb n3 "select workspace like '%/w' from sessions where id = 's_n3_mine'")" 1 "in n3's database, with its workspace"
req PUT /api/sessions/s_n3_mine '{"workspace":"w"}'
is "$STATUS" 200 "the same PUT again: 200 (idempotent)"
req PUT /api/sessions/plain '{}'
is "$STATUS/$(j .error.code)" 404/session_not_found "an id that names no node cannot be routed: 404"
req PUT /api/sessions/s_n9_x '{}'
is "$STATUS/$(j .error.code)" 404/session_not_found "an id naming a node the cluster has not: 404"
mis=0
for i in 1 2 3 4 5 6 7 8; do
    req POST /api/sessions "{\"id\":\"s_n1_body$i\"}"
    case "$STATUS/$(j .error.code)" in 201/null) ;; 421/misdirected_session) mis=$((mis + 1)) ;; *) mis=100 ;; esac
done
check "an id in the body is placed like any creation: where it names another node, 421 misdirected_session ($mis of 8)" \
    test "$mis" -ge 1 -a "$mis" -le 8
is "$(for n in n2 n3 n4; do ndb "$n" "select count(*) from sessions where id like 's\\_n1\\_body%' escape '\\'"; done | awk '{ t += $1 } END { print t }')" 0 \
    "no node made a session whose id names n1"
req POST /api/sessions '{"id":"plain"}'
is "$STATUS/$(j .error.code)" 400/invalid_session_id "a body id with no node: 400 invalid_session_id (require_node_ids)"

# --- what the front answers itself ------------------------------------------------------------------
req GET /api/sessions
is "$STATUS/$(j .error.code)" 400/node_required "listing sessions at the front: 400 node_required"
req GET "/api/executions?session=$S1"
is "$STATUS/$(j '.executions[0].session_id')" "200/$S1" "history by session: from its node"
req GET /api/executions
is "$STATUS/$(j .error.code)" 400/node_required "history without a session: 400 node_required"
req GET "/nodes/n1/api/executions?session=$S1"
is "$STATUS/$(j '.executions | length')" "200/$(ndb n1 "select count(*) from executions where session_id = '$S1'")" \
    "a node's own routes under /nodes/n1/"
req POST "/api/sessions/$S1/messages" '{"text":"later"}' -H 'Prefer: respond-async'
LOC=$(printf '%s' "$HEADERS" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
is "$STATUS $LOC" "202 $BASE/nodes/n1/api/executions/$(j .execution_id)" \
    "an async message's Location, through the front: the front's, under its node's path"
got_done() { [ "$(curl -s "$LOC" | jq -r .status)" = succeeded ]; }
check "and that Location answers the execution through the front" wait_until 20 got_done
# A node's operator paths through the front: an operator's address and login, both.
OP="operator:$(cat "$CLUSTER_DIR/front/operator.password")"
for p in /nodes/n1/metrics /nodes/n2/status/ /nodes/n1/api/admin/sessions /nodes/n3/api/opencode/status \
    /nodes/n1/api/stats /nodes/n1/api/health; do
    req GET "$p"
    is "$STATUS/$(j .error.code)" 401/unauthorized "$p through the front without the operator's login: 401 JSON"
done
check "with WWW-Authenticate" grep -qi '^WWW-Authenticate: Basic' "$TDIR/headers"
req GET /nodes/n1/api/admin/sessions "" -u operator:wrong
is "$STATUS" 401 "a wrong password: 401"
req GET /nodes/n1/metrics "" -u "$OP"
like "$STATUS $BODY" '^200 .*ocpm_executions_total' "n1's metrics through the front, as the operator"
req GET /nodes/n3/api/opencode/status "" -u "$OP"
is "$STATUS/$(j .ocpm.node)" 200/n3 "n3's status document through the front names n3"
req GET /nodes/n2/status/ "" -u "$OP"
like "$STATUS $BODY" '^200 .*<html' "n2's status page through the front"
req GET /nodes/n9/metrics "" -u "$OP"
is "$STATUS/$(j .error.code)" 404/node_not_found "a node the cluster has not: 404 node_not_found"
req GET /metrics
is "$STATUS/$(j .error.code)" 400/node_required "/metrics at the front: 400 node_required"
for p in "/api/sessions/$S1/..%2f..%2fadmin/executions" "/nodes/n1/api/sessions/../admin/executions" \
    "/nodes/n1/api//admin/executions" "/api/sessions/%73_n1_x"; do
    req GET "$p" "" --path-as-is
    is "$STATUS/$(j .error.code)" 400/invalid_path "refused: $p"
done
req DELETE /api/sessions
is "$STATUS/$(j .error.code)" 405/method_not_allowed "DELETE /api/sessions: 405 JSON"
# Ocpm-Node names the node a request is for: the front sets it, a node of another name refuses.
st=$(curl -s -o "$TDIR/direct" -w '%{http_code}' -H 'Ocpm-Node: n2' "http://127.0.0.1:${CLUSTER_PORT[n1]}/api/sessions/$S1")
is "$st/$(jq -r .error.code "$TDIR/direct")" 421/misdirected_request "a request for n2 sent to n1 itself: 421 misdirected_request"
req GET "/api/sessions/$S1" "" -H 'Ocpm-Node: n2'
is "$STATUS/$(j .id)" "200/$S1" "a client's own Ocpm-Node at the front is replaced by the front's"
req GET /api/health
is "$STATUS/$(j .front)" 200/true "the front's own health"

# --- a node under the wrong name, and a node that drops a creation ------------------------------------
# n5 is listed as n5 but runs as n3 (two hosts deriving one name): every placement on it is refused by
# the node (421), and it makes no session.
CLUSTER_NODE_AS=n3 cluster_start_node n5 || { echo "Bail out! n5 did not start"; exit 1; }
# Fake nodes, ready for placements: "drop" reads a creation and closes the connection without an
# answer; "make" (on IPv6 loopback, where there is one) answers 201 with an id of its own node only
# when the front's Ocpm-Node names it, 421 otherwise.
cat >"$TDIR/fake_node.py" <<'PY'
import http.server, json, os, socket, sys
mode, host, port, name = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def reply(self, status, obj):
        body = (json.dumps(obj) + "\n").encode()
        self.send_response(status); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_GET(self):  # says what it was sent: the front must pass it no login of anyone's
        self.reply(200, {"ready": True, "authorization": self.headers.get("Authorization"),
                         "ocpm_node": self.headers.get("Ocpm-Node")})
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if mode == "drop":
            self.close_connection = True
        elif self.headers.get("Ocpm-Node") != name:
            self.reply(421, {"error": {"code": "misdirected_request", "message": "fake"}})
        else:
            self.reply(201, {"id": "s_%s_%s" % (name, os.urandom(12).hex())})
class S(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
S((host, port), H).serve_forever()
PY
DROP=$(free_port)
python3 "$TDIR/fake_node.py" drop 127.0.0.1 "$DROP" n6 >"$TDIR/drop.out" 2>&1 &
DROPPID=$!
check "the dropping node listens" wait_until 10 curl -s -o /dev/null "http://127.0.0.1:$DROP/api/ready"
echo "n6 http://127.0.0.1:$DROP" >>"$CLUSTER_FILE"
V6PID=
if python3 -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2>/dev/null; then
    V6=$(python3 -c 'import socket; s = socket.socket(socket.AF_INET6); s.bind(("::1", 0)); print(s.getsockname()[1])')
    python3 "$TDIR/fake_node.py" make ::1 "$V6" n7 >"$TDIR/v6.out" 2>&1 &
    V6PID=$!
    check "the IPv6 node listens" wait_until 10 curl -s -o /dev/null "http://[::1]:$V6/api/ready"
    echo "n7 http://[::1]:$V6" >>"$CLUSTER_FILE"
fi
check "the front reloaded with n5, n6 (and n7)" cluster_reload_front
rm -f "$TDIR"/made/*
seq 1 48 | bg_batch create_one
for f in "$TDIR"/made/*.code; do
    printf '%s/%s\n' "$(cat "$f")" "$(jq -r '.error.code // "made"' "${f%.code}.json")"
done | sort | uniq -c >"$TDIR/outcomes"
check "48 creations: some refused by the misnamed n5 (421 misdirected_request) $(tr -s ' \n' ' ' <"$TDIR/outcomes")" \
    grep -q ' 421/misdirected_request$' "$TDIR/outcomes"
check "some dropped by n6: 502 creation_unknown (the front cannot know, and does not send it twice)" \
    grep -q ' 502/creation_unknown$' "$TDIR/outcomes"
is "$(grep -v -e ' 201/made$' -e ' 421/misdirected_request$' -e ' 502/creation_unknown$' "$TDIR/outcomes")" "" "no other outcome"
if [ -n "$V6PID" ]; then
    check "some placed on the IPv6 node n7, with Ocpm-Node naming it" sh -c "cat '$TDIR'/made/*.json | grep -q '\"s_n7_'"
    kill "$V6PID"
    wait "$V6PID" 2>/dev/null
else
    skip "some placed on the IPv6 node n7" "no IPv6 loopback here"
fi
is "$(ndb n5 "select count(*) from sessions")" 0 "the misnamed node made no session"
msg=$(jq -r 'select(.error.code == "creation_unknown") | .error.message' "$TDIR"/made/*.json | head -1)
like "$msg" 'PUT /api/sessions' "the unknown outcome says how to retry safely (PUT by id)"
unknown_once() { req POST /api/sessions && [ "$(j .error.code)" = creation_unknown ]; }
check "a creation_unknown, one at a time" wait_until 30 unknown_once
check "carries no Retry-After (a client honouring it would resend what may exist)" sh -c "! grep -qi '^Retry-After' '$TDIR/headers'"
req GET /nodes/n6/metrics "" -u "$OP"
is "$STATUS/$(j .authorization)/$(j .ocpm_node)" 200/null/n6 \
    "an operator path through the front: the node gets Ocpm-Node, never the operators' login"
kill "$DROPPID"
wait "$DROPPID" 2>/dev/null
cluster_stop_node n5
sed -i '/^n[567] /d' "$CLUSTER_FILE"
check "the front reloaded without them" cluster_reload_front

# --- the Prometheus scrape configuration for the nodes: each target answers through the front --------
"$OCPMCTL" --cluster "$CLUSTER_FILE" prometheus-conf "127.0.0.1:$CLUSTER_FRONT_PORT" "$CLUSTER_DIR/front/operator.password" \
    >"$TDIR/prom.yml"
pwfile=$(sed -n 's/.*password_file: "\(.*\)"}$/\1/p' "$TDIR/prom.yml")
path=$(sed -n 's/^ *replacement: //p' "$TDIR/prom.yml")
scraped=""
for n in $(sed -n 's/^ *labels: {node: \([a-z0-9-]*\)}$/\1/p' "$TDIR/prom.yml"); do
    target=$(grep -B1 "labels: {node: $n}" "$TDIR/prom.yml" | sed -n 's/.*targets: \["\(.*\)"\]/\1/p')
    st=$(curl -s -u "operator:$(cat "$pwfile")" -o "$TDIR/scrape" -w '%{http_code}' "http://$target${path//\$\{1\}/$n}")
    [ "$st" = 200 ] && grep -q '^ocpm_executions_total' "$TDIR/scrape" && scraped="$scraped $n"
done
is "$scraped" " n1 n2 n3 n4" "the scrape configuration's four targets each answer metrics through the front"

# --- ocpmctl --cluster: the union of the nodes' own answers -------------------------------------------
if "$OCPMCTL" --help 2>&1 | grep -q -- --cluster; then
    "$OCPMCTL" --cluster "$CLUSTER_FILE" --json sessions >"$TDIR/cl.json"
    is "$?" 0 "ocpmctl --cluster sessions: every node answered"
    for n in n1 n2 n3 n4; do
        env OCPM_STATE_DIR="$CLUSTER_DIR/$n" "$OCPMCTL" --json sessions | jq -c --arg n "$n" '.[] | {node: $n, id}'
    done | sort >"$TDIR/own"
    jq -c '(.sessions // .)[] | {node, id}' "$TDIR/cl.json" | sort >"$TDIR/merged"
    check "its sessions are the union of each node's own ocpmctl sessions ($(wc -l <"$TDIR/own") rows)" cmp "$TDIR/own" "$TDIR/merged"
    "$OCPMCTL" --cluster "$CLUSTER_FILE" --json stats >"$TDIR/st.json"
    want=0
    for n in n1 n2 n3 n4; do
        want=$((want + $(ndb "$n" "select count(*) from executions")))
    done
    is "$(jq -r .stats.total "$TDIR/st.json")" "$want" "ocpmctl --cluster stats: the executions of all four nodes ($want)"
    # history, a page of 37 at a time with the cursor: every execution of every node once, newest first.
    cursor="" pages=0
    : >"$TDIR/hist"
    while [ "$pages" -lt 20 ]; do
        "$OCPMCTL" --cluster "$CLUSTER_FILE" --json --limit 37 ${cursor:+--cursor "$cursor"} history >"$TDIR/page.json" || break
        jq -c '.executions[] | [.queued_at, .node, .id]' "$TDIR/page.json" >>"$TDIR/hist"
        pages=$((pages + 1))
        cursor=$(jq -r '.next_cursor // empty' "$TDIR/page.json")
        [ -n "$cursor" ] || break
    done
    is "$(wc -l <"$TDIR/hist")/$(sort -u "$TDIR/hist" | wc -l)" "$want/$want" \
        "ocpmctl --cluster history, paged by its cursor: each of the $want executions once ($pages pages)"
    check "newest first across the nodes" sh -c "jq -r '.[0]' '$TDIR/hist' | sort -rn -c"
else
    skip "ocpmctl --cluster sessions" "this ocpmctl has no --cluster"
    skip "ocpmctl --cluster union" "this ocpmctl has no --cluster"
    skip "ocpmctl --cluster stats" "this ocpmctl has no --cluster"
    skip "ocpmctl --cluster history" "this ocpmctl has no --cluster"
    skip "ocpmctl --cluster history order" "this ocpmctl has no --cluster"
fi

cluster_stop
check "nothing left running" wait_until 20 test -z "$(t_leftovers)"
t_done
