#!/usr/bin/env bash
# Operators: Prometheus metrics (strict exposition check), history filters and cursor pagination,
# stats against known data, SQL views, retention pruning, and ocpmctl against a live manager and
# against a copy of the database.
. "$(dirname "$0")/lib.sh"
OCPMCTL=${OCPMCTL:-$SRC/ocpmctl}
t_start

req POST /api/sessions '{"id":"op"}'
for t in one two three; do req POST /api/sessions/op/messages "{\"text\":\"$t\"}"; done
req POST /api/sessions/op/messages '{"text":"[[exit=2]]"}'

# --- metrics ---------------------------------------------------------------------------
curl -s -D "$TDIR/mh" "$BASE/metrics" >"$TDIR/metrics"
like "$(cat "$TDIR/mh")" 'Content-Type: text/plain; version=0.0.4' "metrics use the Prometheus text content type"
python3 - "$TDIR/metrics" <<'PY'
# A strict check of the text exposition format: HELP and TYPE before samples, valid names and
# labels, counters end in _total, histograms have cumulative buckets ending in +Inf = _count.
import re, sys
name_re = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*$')
sample_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*)\})? (-?[0-9.eE+-]+|\+Inf|NaN)$')
types, helps, seen_samples, buckets = {}, set(), set(), {}
errors = []
for ln, line in enumerate(open(sys.argv[1]).read().split("\n"), 1):
    if not line:
        continue
    if line.startswith("# HELP "):
        n = line.split(" ")[2]
        if n in helps: errors.append("%d: second HELP for %s" % (ln, n))
        helps.add(n)
        continue
    if line.startswith("# TYPE "):
        _, _, n, t = line.split(" ")
        if t not in ("counter", "gauge", "histogram"): errors.append("%d: type %s" % (ln, t))
        if n in types: errors.append("%d: second TYPE for %s" % (ln, n))
        if t == "counter" and not n.endswith("_total"): errors.append("%d: counter %s lacks _total" % (ln, n))
        if not n.startswith("ocpm_"): errors.append("%d: %s lacks the ocpm_ prefix" % (ln, n))
        types[n] = t
        continue
    m = sample_re.match(line)
    if not m:
        errors.append("%d: bad sample line %r" % (ln, line)); continue
    n = m.group(1)
    base = re.sub(r'_(bucket|sum|count)$', '', n) if re.sub(r'_(bucket|sum|count)$', '', n) in types else n
    if base not in types or base not in helps:
        errors.append("%d: %s has no TYPE/HELP before it" % (ln, n))
    keys = re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or "")
    if any(k in ("execution", "execution_id", "session", "session_id", "pid") for k in keys):
        errors.append("%d: per-execution label" % ln)
    if n.endswith("_bucket"):
        labels = m.group(3)
        key = (base, re.sub(r',?le="[^"]*"', '', labels))
        buckets.setdefault(key, []).append((re.search(r'le="([^"]*)"', labels).group(1), float(m.group(4))))
    if n.endswith("_count") and types.get(base) == "histogram":
        key = (base, m.group(3) or "")
        b = buckets.get(key, [])
        if not b or b[-1][0] != "+Inf" or b[-1][1] != float(m.group(4)):
            errors.append("%d: %s +Inf bucket != _count" % (ln, n))
        if any(b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
            errors.append("%d: %s buckets not cumulative" % (ln, n))
need = ["ocpm_executions_total", "ocpm_execution_duration_seconds", "ocpm_queue_wait_seconds",
        "ocpm_running_processes", "ocpm_queued_messages", "ocpm_active_streams", "ocpm_sessions", "ocpm_server_up",
        "ocpm_server_healthy", "ocpm_server_restarts_total", "ocpm_server_rss_bytes", "ocpm_processes_spawned_total",
        "ocpm_responder_restarts_total", "ocpm_build_info"]
errors += ["missing %s" % n for n in need if n not in types]
for e in errors: print("# " + e)
sys.exit(1 if errors else 0)
PY
is "$?" 0 "metrics pass a strict exposition-format check"
like "$(cat "$TDIR/metrics")" 'ocpm_executions_total\{mode="per-session",status="succeeded"\} 3' "executions are counted by mode and status"
like "$(cat "$TDIR/metrics")" 'ocpm_executions_total\{mode="per-session",status="failed"\} 1' "failures too"
like "$(cat "$TDIR/metrics")" 'ocpm_execution_duration_seconds_count\{mode="per-session"\} 4' "the duration histogram counts runs"
like "$(cat "$TDIR/metrics")" 'ocpm_processes_spawned_total 4' "spawned processes are counted"

# --- known data for stats and pagination ------------------------------------------------------
# 100 executions queued in [1000, 1100): durations 10, 20, ... 1000 ms; every 10th failed; two modes.
sqlite3 "$DB" "INSERT INTO sessions (id, owner, workspace, created_at, last_activity) VALUES ('known', '', '/w', 1000, 1000);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)
INSERT INTO executions (session_id, owner, mode, status, queued_at, started_at, finished_at, duration_ms, queue_wait_ms,
    peak_rss_kb, tokens_in, tokens_out, cost)
SELECT 'known', '', CASE WHEN i % 2 THEN 'server' ELSE 'per-session' END,
       CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'succeeded' END, 1000 + i * 0.5, 1000 + i * 0.5, 1000 + i * 0.5 + i / 100.0,
       i * 10.0, i * 1.0, i * 1000, i, 2 * i, 0.01 FROM n;"
req GET '/api/stats?since=1000&until=1100'
is "$(j .total)" 100 "stats count the window"
is "$(j .by_status.succeeded)/$(j .by_status.failed)" 90/10 "by status"
is "$(j '.by_mode.server')/$(j '.by_mode["per-session"]')" 50/50 "by mode"
is "$(j .duration_ms.p50)/$(j .duration_ms.p95)/$(j .duration_ms.p99)" 500/950/990 "exact p50/p95/p99 duration"
is "$(j .queue_wait_ms.p50)/$(j .queue_wait_ms.p95)" 50/95 "queue wait percentiles"
is "$(j .peak_rss_kb.peak)/$(j .peak_rss_kb.mean)" 100000/50500 "peak and mean RSS"
is "$(j .tokens.in)/$(j .tokens.out)" 5050/10100 "tokens"
is "$(j '.busiest_sessions[0].session_id')/$(j '.busiest_sessions[0].executions')" known/100 "busiest sessions"
req GET '/api/stats?since=1000&until=1010'
is "$(j .total)" 19 "a narrower window"
req GET '/api/stats?since=abc'
is "$STATUS" 400 "a bad since is refused"

# Cursor pagination through the 100 known rows, 30 at a time.
seen=0 pages=0 cursor="" ok_order=1 last=999999999
while :; do
    req GET "/api/executions?session=known&limit=30${cursor:+&before=$cursor}"
    n=$(j '.executions | length')
    seen=$((seen + n))
    pages=$((pages + 1))
    first=$(j '.executions[0].id // empty')
    [ -n "$first" ] && [ "$first" -ge "$last" ] && ok_order=0
    [ -n "$first" ] && last=$(j '.executions[-1].id')
    cursor=$(j '.next_cursor // empty')
    [ -z "$cursor" ] && break
    [ "$pages" -gt 10 ] && break
done
is "$seen/$pages" 100/4 "cursor pagination visits every row once (4 pages of 30)"
is "$ok_order" 1 "pages continue in order"
req GET '/api/executions?session=known&status=failed&mode=per-session&since=1000&until=1100'
is "$(j '.executions | length')" 10 "filters combine (session, status, mode, since, until)"
req GET '/api/executions?mode=both'
is "$STATUS" 400 "a bad mode filter is refused"
req GET '/api/admin/executions?limit=5'
is "$(j '.executions | length')" 5 "the operator history sees all"

# --- views ---------------------------------------------------------------------------------------
is "$(sql "select runs from executions_by_hour where hour = '1970-01-01 00:00'")" 100 "executions_by_hour"
is "$(sql "select executions || '/' || failed from session_summary where id = 'known'")" 100/10 "session_summary"
is "$(sql "select count(*) from failures where session_id = 'known'")" 10 "failures"

# --- ocpmctl against the live manager and a copy ----------------------------------------------------
out=$("$OCPMCTL" status)
like "$out" 'processManager.mode +per-session' "ocpmctl status asks the live manager"
is "$("$OCPMCTL" --json status | jq -r .available)" true "ocpmctl status --json"
out=$("$OCPMCTL" history --session op --limit 2)
like "$out" '^id +queued +session_id +mode +status' "ocpmctl history prints a table"
is "$(printf '%s\n' "$out" | wc -l)" 3 "with --limit rows"
is "$("$OCPMCTL" --json history --session known --status failed | jq length)" 10 "ocpmctl history --status --json"
is "$("$OCPMCTL" --json stats --since 999 | jq -r '.total >= 100')" true "ocpmctl stats --since"
EID=$(sql "select max(id) from executions where session_id='op'")
like "$("$OCPMCTL" show "$EID")" 'status +failed' "ocpmctl show prints one execution"
like "$("$OCPMCTL" sessions)" 'known +\(anonymous\) +100' "ocpmctl sessions (the unauthenticated owner shown as such)"
sqlite3 -readonly "$DB" ".backup '$TDIR/copy.db'"
is "$("$OCPMCTL" --db "$TDIR/copy.db" --json stats | jq -r .by_status.succeeded)" \
    "$(sql "select count(*) from executions where status='succeeded'")" "ocpmctl reads a copy of the database"
out=$("$OCPMCTL" --db /etc/hostname stats 2>&1)
is "$?" 1 "a foreign file is refused"
like "$out" 'not a readable SQLite database|not an ocpm database' "with a clear error"
out=$("$OCPMCTL" --db "$TDIR/none.db" stats 2>&1)
like "$out" 'no database at' "a missing database gives a clear error"
sqlite3 "$TDIR/other.db" "create table t(x)"
like "$("$OCPMCTL" --db "$TDIR/other.db" stats 2>&1)" 'not an ocpm database' "another SQLite database is refused"
# Bad command lines: a clear sentence, exit 2 (usage), nothing done.
for bad in "--bogus status" "--limit" "history --limit 0" "history --limit x" "history --limit 5x" "history --limit +5" "nosuch" "show" "show 12x" "prune" "prune --older-than soon"; do
    out=$("$OCPMCTL" $bad 2>&1)
    is "$?" 2 "ocpmctl $bad: exit 2"
    like "$out" '^ocpmctl: ' "ocpmctl $bad: says why"
done
out=$("$OCPMCTL" prune --older-than 1d)
like "$out" 'deleted 1[0-9][0-9] rows' "ocpmctl prune removes old history through the manager"
is "$(sql "select count(*) from executions where session_id='known'")" 0 "the old rows are gone"
is "$(sql "select count(*) from executions where session_id='op'")" 4 "recent ones stay"

# --- retention by the manager's timer ---------------------------------------------------------------
stack_stop_ocpmd
sqlite3 "$DB" "INSERT INTO executions (session_id, owner, mode, status, queued_at, finished_at)
  VALUES ('op', '', 'server', 'succeeded', 10, 11), ('op', '', 'server', 'succeeded', 12, 13);"
OCPM_HISTORY_RETENTION=1d stack_start_ocpmd
gone() { [ "$(sqlite3 -readonly "$DB" "select count(*) from executions where queued_at < 100")" = 0 ]; }
check "history_retention prunes old rows on a timer" wait_until 10 gone
is "$(sql "select count(*) from executions where session_id='op'")" 4 "and keeps the rest"

# --- what the agent reports it spent is bounded --------------------------------------------------------
# A cost of 1e400 is an infinity once parsed: stored as such it made the statistics' sums NaN (NULL in
# SQLite), and every later update or delete of the row (retention) failed on it.
BIG=$(printf '9%.0s' $(seq 1 400))
req POST /api/sessions '{"id":"spender"}'
req POST /api/sessions/spender/messages "{\"text\":\"[[spend=$BIG]]\"}" -H 'Prefer: respond-async'
is "$STATUS" 202 "a turn that reports an infinite cost starts"
sid=$(j .execution_id)
check "its step and cost reach the manager" wait_until 10 sh -c "curl -s --max-time 1 '$BASE/api/executions/$sid/events' | grep -q step_finish"
req POST /api/sessions/spender/abort
check "the turn is stopped" wait_until 10 sql_is "select status from executions where id=$sid" aborted
is "$(sql "select cost from executions where id=$sid")" 1000000000.0 "it is stored at the bound (1e9), not as an infinity"
req GET /api/stats
is "$STATUS:$(printf '%s' "$BODY" | python3 -c 'import json,sys; json.loads(sys.stdin.read(), parse_constant=lambda c: 1/0); print("ok")' 2>&1 | tail -1)" \
    "200:ok" "/api/stats stays strict JSON (no Infinity)"
req GET /api/opencode/status
is "$(printf '%s' "$BODY" | python3 -c 'import json,sys; json.loads(sys.stdin.read(), parse_constant=lambda c: 1/0); print("ok")' 2>&1 | tail -1)" \
    ok "and so does the status"
# An operator's own infinity, written by hand, cannot wedge the row either.
sqlite3 "$DB" "UPDATE executions SET cost = 1e999, tokens_in = 9223372036854775807 WHERE id = $sid"
is "$?" 0 "an operator may write an infinite cost"
out=$("$OCPMCTL" prune --older-than 0s 2>&1)
like "$out" 'deleted [0-9]+ rows' "and retention still deletes every finished row"
is "$(sql "select count(*) from executions where id=$sid")" 0 "that one included"
is "$(sql "select count(*) from stats_rollup where cost is null or n < 0")" 0 "and the rollups stay whole"
t_done
