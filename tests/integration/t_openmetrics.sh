#!/usr/bin/env bash
# /metrics as OpenMetrics 1.0 when the client's Accept prefers it, Prometheus text 0.0.4 otherwise,
# both parsed by prometheus_client's strict parsers (Debian's python3-prometheus-client) and
# compared family by family, sample by sample: on a stack with two pools (names with - and _) and
# traffic (succeeded and failed runs, tool calls), answered by the manager and from the snapshot.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
if ! $PY -c 'import prometheus_client' 2>/dev/null; then
    echo "1..0 # SKIP python3-prometheus-client is not installed (apt-get install python3-prometheus-client)"
    exit 0
fi
CONFD=$(mktemp -d /tmp/ocpm-om-XXXXXX)
printf 'default_pool = b-pool\n[a_pool]\nusers = alice\nmax_concurrent_runs = 1\n[b-pool]\n' >"$CONFD/ocpmd.conf"
# As root each pool runs as its own agent user (as in t_pools.sh).
if [ "$(id -u)" = 0 ]; then
    for u in ocpm-pool-a ocpm-pool-b; do
        id "$u" >/dev/null 2>&1 ||
            useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$u"
    done
    sed -i -e '/^\[a_pool\]/a user = ocpm-pool-a' -e '/^\[b-pool\]/a user = ocpm-pool-b' "$CONFD/ocpmd.conf"
fi
t_start -c "$CONFD/ocpmd.conf"
rm -rf "$CONFD"
MPID=$STACK_OCPMD_PID
OM='application/openmetrics-text; version=1.0.0; charset=utf-8'
PROM='text/plain; version=0.0.4; charset=utf-8'
# Families whose values move between two scrapes (the scrapes themselves are counted).
VOLATILE="ocpm_requests ocpm_responder_requests_in_flight ocpm_active_streams"
# ctype ACCEPT: the content type /metrics answers with that Accept ("-": none).
ctype() {
    if [ "$1" = - ]; then curl -s -o /dev/null -w '%{content_type}' "$BASE/metrics"
    else curl -s -o /dev/null -w '%{content_type}' -H "Accept: $1" "$BASE/metrics"; fi
}
# scrape: both expositions into $TDIR/om and $TDIR/prom, then the strict comparison.
scrape_alike() {
    curl -s -H 'Accept: application/openmetrics-text' "$BASE/metrics" >"$TDIR/om"
    curl -s "$BASE/metrics" >"$TDIR/prom"
    # shellcheck disable=SC2086
    $PY "$SRC/tests/integration/openmetrics_check.py" "$TDIR/om" "$TDIR/prom" $VOLATILE >"$TDIR/check.out" 2>&1
}

# Traffic in both pools: runs that succeed and fail, tool calls.
req POST /api/sessions '{"id":"m1"}'
req POST /api/sessions/m1/messages '{"text":"hello [[tools]]"}'
is "$STATUS" 200 "a run with tool calls"
req POST /api/sessions/m1/messages '{"text":"[[exit=2]]"}'
req POST /api/sessions '{"id":"m2"}' -H 'X-Unused: 1'
is "$STATUS" 201 "a second session"

# Negotiation.
is "$(ctype -)" "$PROM" "without Accept: Prometheus text 0.0.4"
is "$(ctype 'application/openmetrics-text')" "$OM" "Accept: application/openmetrics-text: OpenMetrics 1.0.0"
is "$(ctype 'application/openmetrics-text; version=1.0.0; charset=utf-8')" "$OM" "with parameters"
is "$(ctype 'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1')" \
    "$OM" "Prometheus' own scrape header"
is "$(ctype 'text/plain;q=0.2, Application/OpenMetrics-Text;q=0.9')" "$OM" "q-values: the preferred one (type names case-insensitive)"
is "$(ctype 'application/openmetrics-text;q=0.3, text/plain')" "$PROM" "q-values: text preferred"
is "$(ctype 'application/openmetrics-text;q=0')" "$PROM" "q=0: not acceptable"
is "$(ctype 'application/openmetrics-text;q=x')" "$PROM" "a malformed q is ignored"
is "$(ctype '*/*')" "$PROM" "*/*: Prometheus text"
is "$(ctype 'application/json')" "$PROM" "an Accept naming neither: Prometheus text, as before"

# The documents, strictly parsed and alike.
if wait_until 15 scrape_alike; then ok "both expositions parse strictly and hold the same samples ($(cat "$TDIR/check.out"))"
else not_ok "both expositions parse strictly and hold the same samples" "$(cat "$TDIR/check.out")"; fi
is "$(tail -c 6 "$TDIR/om")" "# EOF" "OpenMetrics ends in # EOF"
like "$(grep -c '^# TYPE ocpm_executions counter' "$TDIR/om"):$(grep -c '^ocpm_executions_total{' "$TDIR/om")" '^1:[1-9]' \
    "a counter's family has no _total, its samples do"
like "$(grep '^# UNIT' "$TDIR/om" | tr '\n' ' ')" 'ocpm_execution_duration_seconds seconds.*ocpm_server_rss_bytes bytes|ocpm_execution_duration_seconds seconds' \
    "families named for a unit carry # UNIT"
is "$(grep -c '^# TYPE ocpm_executions_total counter' "$TDIR/prom"):$(grep -c '# EOF' "$TDIR/prom")" 1:0 \
    "the Prometheus text is as before (family with _total, no # EOF)"
like "$(grep '^ocpm_pool_executions_total' "$TDIR/om" | tr '\n' ' ')" 'pool="a_pool".*pool="b-pool"' "both pools are labelled"
like "$(grep '^ocpm_tool_calls_total' "$TDIR/om" | tr '\n' ' ')" 'tool="bash",status="completed"} 1' "tool calls are counted"

# From the snapshot alone (the manager stopped): the responders answer both.
check "the snapshot is current" wait_until 10 sh -c "a=\$(curl -s '$BASE/api/opencode/status' | jq .ocpm.requests); curl -s -o /dev/null '$BASE/metrics'; curl -s -o /dev/null -H 'Accept: application/openmetrics-text' '$BASE/metrics'; [ \"\$a\" = \"\$(curl -s '$BASE/api/opencode/status' | jq .ocpm.requests)\" ]"
kill -STOP "$MPID"
curl -s --max-time 5 -D "$TDIR/omh" -H 'Accept: application/openmetrics-text' "$BASE/metrics" >"$TDIR/om"
curl -s --max-time 5 "$BASE/metrics" >"$TDIR/prom"
kill -CONT "$MPID"
like "$(cat "$TDIR/omh")" 'Content-Type: application/openmetrics-text; version=1.0.0' "with the manager stopped, OpenMetrics comes from the snapshot"
# shellcheck disable=SC2086
out=$($PY "$SRC/tests/integration/openmetrics_check.py" "$TDIR/om" "$TDIR/prom" $VOLATILE 2>&1)
like "$out" '^[0-9]+ families' "the snapshot's two documents parse strictly and agree: $out"
t_done
