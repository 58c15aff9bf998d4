#!/usr/bin/env bash
# Pools through real nginx with the fake opencode: two pools ([alpha], [beta]) in the file, users
# mapped by REMOTE_USER (auth_basic) and a default pool; each pool its own workspace tree, agent
# home, environment (env_file: its own provider key) and max_concurrent_runs; usage per pool in
# /api/stats and /metrics; a session stays in its pool (409 when its user is moved); users no pool
# takes are refused; bad pool files refused by `ocpmd -t`. As root, each pool runs as a system user
# of its own (ocpm-pool-a, ocpm-pool-b), and neither pool's agent can read the other's workspace.
. "$(dirname "$0")/lib.sh"
export STACK_HTPASSWD_USERS="alice:apw bob:bpw carol:cpw"
export OCPM_MODE=per-session OCPM_RUN_TIMEOUT=30s
ROOT=0
[ "$(id -u)" = 0 ] && ROOT=1
if [ "$ROOT" = 1 ]; then
    for u in ocpm-pool-a ocpm-pool-b; do
        id "$u" >/dev/null 2>&1 ||
            useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$u"
    done
fi
CONFD=$(mktemp -d /tmp/ocpm-pools-XXXXXX)
printf '# alpha'"'"'s provider key\nPROVIDER_KEY=alpha-key\n' >"$CONFD/alpha.env"
printf 'PROVIDER_KEY=beta-key\nPOOL_ONLY=beta\nOPENCODE_FAKE_MODELS=fake/default beta/only\n' >"$CONFD/beta.env"
chmod 0600 "$CONFD"/*.env
# pools FILE [ALPHA_USERS] [BETA_USERS] [DEFAULT]: write a two-pool file.
pools() {
    {
        [ -n "${4-beta}" ] && echo "default_pool = ${4-beta}"
        echo "[alpha]"
        echo "users = ${2-alice}"
        echo "max_concurrent_runs = 1"
        echo "permission_policy = allow"
        echo "run_rlimit_nofile = 321"
        echo "env_file = $CONFD/alpha.env"
        [ "$ROOT" = 1 ] && echo "user = ocpm-pool-a"
        echo "[beta]"
        echo "users = ${3-bob}"
        echo "env_file = $CONFD/beta.env"
        [ "$ROOT" = 1 ] && echo "user = ocpm-pool-b"
    } >"$1"
}
pools "$CONFD/ocpmd.conf"
t_start -c "$CONFD/ocpmd.conf"
A=(-u alice:apw)
B=(-u bob:bpw)
C=(-u carol:cpw)
mk() { req POST /api/sessions "{\"id\":\"$1\"}" "${@:2}"; }
# probe SESSION LOGIN ACTION...: the fake agent's probe, as LOGIN.
probe() { req POST "/api/sessions/$1/messages" "{\"text\":\"[[probe]] ${*:3}\"}" -u "$2"; }

# --- the pools as configured ---------------------------------------------------------------------------
req GET /api/opencode/status
is "$(j '[.ocpm.pools[].name] | join(",")')" alpha,beta "status lists both pools"
is "$(j '[.ocpm.pools[] | select(.default) | .name] | join(",")')" beta "beta is the default"
is "$(j '.ocpm.pools[0].maxConcurrentRuns')" 1 "alpha's own max_concurrent_runs"
if [ "$ROOT" = 1 ]; then
    is "$(j '[.ocpm.pools[].agentIsolation.user] | join(",")')" ocpm-pool-a,ocpm-pool-b "each pool has its own agent user"
fi

# --- users map to pools -------------------------------------------------------------------------------
mk a1 "${A[@]}"
is "$STATUS" 201 "alice creates a session"
mk b1 "${B[@]}"
mk c1 "${C[@]}"
is "$(sql "select group_concat(owner || '=' || pool, ' ') from (select owner, pool from sessions order by owner)")" \
    "alice=alpha bob=beta carol=beta" "alice's session is in alpha, bob's in beta, carol (unlisted) in the default"
like "$(sql "select workspace from sessions where id='a1'")" '/pools/alpha/workspaces/alice/a1$' "alpha's own workspace tree"
like "$(sql "select workspace from sessions where id='b1'")" '/pools/beta/workspaces/bob/b1$' "beta's own"

# --- each pool's agent: its user, its environment, nothing of the other pool's --------------------------
BWS="$STACK_DIR/pools/beta/workspaces/bob/b1"
req POST /api/sessions/b1/messages '{"text":"bob was here"}' "${B[@]}"
is "$STATUS" 200 "bob's message runs in beta"
if [ "$ROOT" = 1 ]; then
    install -o ocpm-pool-b -g ocpm-pool-b -m 0600 /dev/null "$BWS/secret"
else
    : >"$BWS/secret"
fi
probe a1 alice:apw env:PROVIDER_KEY env:POOL_ONLY env:OPENCODE_PERMISSION rlimit:NOFILE "read:$BWS/secret" "list:$BWS" "list:$STACK_DIR/pools/beta/agent/users"
is "$STATUS" 200 "alice's agent answers the probe"
P=$(j .text)
is "$(printf '%s' "$P" | jq -r .env.PROVIDER_KEY)" alpha-key "alpha's agent has alpha's provider key (env_file)"
is "$(printf '%s' "$P" | jq -r .env.POOL_ONLY)" null "and nothing of beta's environment"
is "$(printf '%s' "$P" | jq -r .env.OPENCODE_PERMISSION)" '{"*":"allow"}' "alpha's permission_policy (allow)"
is "$(printf '%s' "$P" | jq -r .rlimit.NOFILE)" 321 "alpha's run_rlimit_nofile"
probe b1 bob:bpw env:PROVIDER_KEY env:OPENCODE_PERMISSION rlimit:NOFILE
is "$(j .text | jq -r .env.PROVIDER_KEY)" beta-key "beta's agent has beta's key"
is "$(j .text | jq -r '.env.OPENCODE_PERMISSION')" null "beta keeps the global permission_policy (ask)"
isnt_321() { [ "$(j .text | jq -r .rlimit.NOFILE)" != 321 ]; }
check "and the global limits" isnt_321
if [ "$ROOT" = 1 ]; then
    is "$(printf '%s' "$P" | jq -r .uid)" "$(id -u ocpm-pool-a)" "alpha's opencode runs as ocpm-pool-a"
    is "$(j .text | jq -r .uid)" "$(id -u ocpm-pool-b)" "beta's as ocpm-pool-b"
    for item in "read:$BWS/secret" "list:$BWS" "list:$STACK_DIR/pools/beta/agent/users"; do
        r=$(printf '%s' "$P" | jq -r --arg k "$item" '.checks[$k]')
        if [ "$r" != ok ] && [ "$r" != null ]; then ok "alpha's agent cannot ${item%%:*} ${item#*:} ($r)"; else
            not_ok "alpha's agent cannot ${item%%:*} ${item#*:}" "got: $r"; fi
    done
    check "as ocpm-pool-a, beta's workspace is closed" sh -c "! runuser -u ocpm-pool-a -- cat '$BWS/secret' 2>/dev/null"
    check "as ocpm-pool-b, alpha's is" sh -c "! runuser -u ocpm-pool-b -- ls '$STACK_DIR/pools/alpha/workspaces/alice/a1' 2>/dev/null"
else
    skip "pools under two system users" "not root: every pool's agent is ocpmd's own user"
fi

# --- each pool's own models (its keys, its providers) ------------------------------------------------------
req POST /api/sessions/b1/messages '{"text":"hi","model":"beta/only"}' "${B[@]}"
is "$STATUS" 200 "beta's provider offers beta/only to beta"
req POST /api/sessions/a1/messages '{"text":"hi","model":"beta/only"}' "${A[@]}"
is "$STATUS/$(j .error.code)" 400/unknown_model "not to alpha"
req POST /api/sessions/a1/messages '{"text":"hi","model":"prov/model-1"}' "${A[@]}"
is "$STATUS" 200 "alpha has its own list"
req GET /api/opencode/status
is "$(j '[.ocpm.pools[].modelsKnown] | join(",")')" 3,2 "each pool's count in the status"

# --- each pool's own bounds ---------------------------------------------------------------------------
mk a2 "${A[@]}"
req POST /api/sessions/a1/messages '{"text":"[[delay=1500]] one"}' "${A[@]}" -H 'Prefer: respond-async'
X1=$(j .execution_id)
req POST /api/sessions/a2/messages '{"text":"two"}' "${A[@]}" -H 'Prefer: respond-async'
X2=$(j .execution_id)
check "alpha runs one at a time" wait_until 5 sql_is "select status from executions where id=$X1" running
req POST /api/sessions/b1/messages '{"text":"beta is not held by alpha"}' "${B[@]}"
is "$STATUS/$(sql "select status from executions where id=$X2")" 200/queued "beta answers while alpha's second waits"
check "alpha's second runs after its first" wait_until 15 sql_is "select status from executions where id=$X2" succeeded

# --- usage per pool --------------------------------------------------------------------------------------
req GET /api/stats
is "$(j '.by_pool.alpha.executions')" "$(sql "select count(*) from executions where pool='alpha'")" \
    "/api/stats counts alpha's executions"
is "$(j '.by_pool.beta.executions')" "$(sql "select count(*) from executions where pool='beta'")" "and beta's"
is "$(j '.by_pool.beta.tokens.in > 0')" true "with their tokens"
M=$(curl -s "$BASE/metrics")
like "$M" "ocpm_pool_executions_total\{pool=\"alpha\"\} $(sql "select count(*) from executions where pool='alpha' and status not in ('queued','running')")" \
    "/metrics counts executions per pool"
like "$M" 'ocpm_pool_running_processes\{pool="beta"\} 0' "and what runs per pool"

# --- a session stays in its pool --------------------------------------------------------------------------
stack_stop_ocpmd
pools "$CONFD/moved.conf" "" "bob alice"
stack_start_ocpmd -c "$CONFD/moved.conf"
req POST /api/sessions/a1/messages '{"text":"after the move"}' "${A[@]}"
is "$STATUS/$(j .error.code)" 409/pool_changed "alice moved to beta: her alpha session is not touched"
mk a3 "${A[@]}"
is "$(sql "select pool from sessions where id='a3'")" beta "her new sessions are beta's"
req GET /api/sessions/a2 "" "${A[@]}"
is "$STATUS" 200 "she can still read her alpha sessions"
req DELETE /api/sessions/a2 "" "${A[@]}"
is "$STATUS/$(j .deleted)" 200/true "and delete them"
stack_stop_ocpmd
pools "$CONFD/nodefault.conf" alice bob ""
stack_start_ocpmd -c "$CONFD/nodefault.conf"
mk c2 "${C[@]}"
is "$STATUS/$(j .error.code)" 403/no_pool "without default_pool, a user no pool names is refused"
req POST /api/sessions/c1/messages '{"text":"hi"}' "${C[@]}"
is "$STATUS" 409 "and her sessions are not touched"
req POST /api/sessions/a1/messages '{"text":"back in alpha"}' "${A[@]}"
is "$STATUS" 200 "alice back in alpha: her session works again"

# --- server mode: each pool's servers, as its user, with its environment ----------------------------------
stack_stop_ocpmd
OCPM_MODE=server OCPM_SERVERS=1 stack_start_ocpmd -c "$CONFD/nodefault.conf"
req GET /api/opencode/status
is "$(j '[.servers[].pool] | join(",")')" alpha,beta "each pool has its own server"
PA=$(j '.servers[0].pid')
PB=$(j '.servers[1].pid')
uid_of() { awk '/^Uid:/ {print $2}' /proc/"$1"/status; }
envof() { tr '\0' '\n' </proc/"$1"/environ | sed -n "s/^$2=//p"; }
if [ "$ROOT" = 1 ]; then
    is "$(uid_of "$PA")/$(uid_of "$PB")" "$(id -u ocpm-pool-a)/$(id -u ocpm-pool-b)" "each pool's server runs as its user"
fi
is "$(envof "$PA" PROVIDER_KEY)/$(envof "$PB" PROVIDER_KEY)" alpha-key/beta-key "with its pool's provider key"
like "$(envof "$PA" HOME)" '/pools/alpha/agent/server$' "and its pool's home"
# A new session: a1's conversation is in alice's per-message home, which no server reads.
mk a5 "${A[@]}"
req POST /api/sessions/a5/messages '{"text":"through alpha'"'"'s server"}' "${A[@]}"
is "$STATUS/$(j .execution.mode)" 200/server "alice's session runs on alpha's server"
is "$(sql "select pid from executions where id=$(j .execution.id)")" "$PA" "not beta's"
like "$(curl -s "$BASE/metrics")" 'ocpm_server_up\{pool="beta",server="0"\} 1' "metrics label servers by pool"
# Each pool's permission_policy in server mode too: alpha allows, beta (the global ask) asks.
req POST /api/sessions/a5/messages '{"text":"[[permission]]"}' "${A[@]}"
is "$STATUS" 200 "alpha's prompt is answered by its policy"
req GET /api/sessions/a5/permissions "" "${A[@]}"
is "$(j '.permissions[0] | .status + " " + .repliedBy')" "allowed policy" "recorded as allowed by policy"
mk b5 "${B[@]}"
req POST /api/sessions/b5/messages '{"text":"[[permission]]"}' "${B[@]}" -H 'Prefer: respond-async'
pending_b5() { req GET '/api/sessions/b5/permissions?status=pending' "" "${B[@]}"; [ "$(j '.permissions | length')" = 1 ]; }
check "beta's prompt waits for its owner (ask)" wait_until 10 pending_b5
req POST /api/sessions/b5/abort '' "${B[@]}"

# --- bad pool files ---------------------------------------------------------------------------------------
bad() { printf "$1" >"$CONFD/bad.conf"; OCPM_STATE_DIR="$TDIR/badstate" "$SRC/ocpmd" -t -c "$CONFD/bad.conf" 2>&1; }
like "$(bad '[a]\nusers = x\n[b]\nusers = y x\n')" 'user x is in pools a and b' "a user in two pools is refused"
printf 'K=v\n' >"$CONFD/open.env"
chmod 0644 "$CONFD/open.env"
like "$(bad "[a]\nenv_file = $CONFD/open.env\n")" 'readable by others' "an env_file others can read is refused"
like "$(bad '[a]\ndb_path = /tmp/x\n')" 'db_path cannot be set per pool' "a manager's setting in a pool is refused"
like "$(bad 'default_pool = c\n[a]\n')" 'default_pool c is not one of' "a default_pool that is no pool is refused"
like "$(bad '[a]\n[a]\n')" 'pool a is defined twice' "a pool defined twice is refused"
like "$(bad 'users = x\n')" 'users belongs in a pool section' "users outside a pool is refused"
like "$(bad 'workspace_root = /srv/ws\n[a]\n')" 'pool a: set workspaces in its section|pool a: set workspace' \
    "pools never share an explicit workspace_root"
if [ "$ROOT" = 1 ]; then
    like "$(bad '[a]\nuser = ocpm-pool-a\n[b]\nuser = ocpm-pool-a\n')" 'same agent user' "two pools never share a user"
    like "$(bad '[a]\nuser = self\n[b]\nuser = ocpm-pool-b\n')" "pool a: its agent would run as ocpmd's own user" \
        "a pool's agent is never ocpmd's own user"
    like "$(bad '[a]\nuser = ocpm-pool-a\nworkspace_root = /srv/w\nagent_home = /srv/a1\n[b]\nuser = ocpm-pool-b\nworkspace_root = /srv/w/b\nagent_home = /srv/a2\n')" \
        'share their workspace_root' "pools never nest their workspace trees"
    printf '[a]\nuser = ocpm-pool-a\n' >"$CONFD/user.conf"
    chmod 0755 "$CONFD"
    chmod 0644 "$CONFD/user.conf"
    if runuser -u nobody -- test -x "$SRC/ocpmd"; then
        out=$(cd / && OCPM_STATE_DIR=/tmp/ocpm-nobody-state runuser -u nobody -- "$SRC/ocpmd" -t -c "$CONFD/user.conf" 2>&1)
        like "$out" 'pool a: agent_user ocpm-pool-a: ocpmd cannot switch users' "a pool's user without root is refused clearly"
    else
        skip "a pool's user without root is refused" "nobody cannot run $SRC/ocpmd"
    fi
else
    like "$(bad '[a]\nuser = nobody\n')" 'cannot switch users' "user without root is refused clearly"
fi

stack_stop
check "no process is left" wait_until 10 test -z "$(t_leftovers)"
rm -rf "$CONFD"
t_done
