#!/usr/bin/env bash
# An unprivileged manager with capabilities (docs/security.md: ocpmd as its own user, given
# CAP_SETUID and CAP_SETGID and the few it needs to hand directories over, as ambient capabilities,
# as systemd's AmbientCapabilities= does) hands none of them on: not to the agent, whatever user it
# becomes, not to the responders (which run as responder_user, ocpm, also under a root manager). Ambient capabilities survive exec, and inheritable ones come
# back with a program that has file capabilities, so both are cleared in every child.
. "$(dirname "$0")/lib.sh"
if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null; then
    echo "1..0 # SKIP needs root (to give a user capabilities) and setpriv"
    exit 0
fi
CAPS=+setuid,+setgid,+chown,+fowner,+dac_override,+kill
REAL_OCPMD=$OCPMD
AS_USER=$(mktemp /tmp/ocpm-caps-XXXXXX)
chmod 0755 "$AS_USER"
# The manager as nobody with CAPS inheritable and ambient; its state handed to nobody first.
printf '#!/bin/sh\nchown -R nobody:nogroup "$STACK_DIR"\nexec setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps %s --ambient-caps %s %s "$@"\n' \
    "$CAPS" "$CAPS" "$OCPMD" >"$AS_USER"
export STACK_DIR
OCPMD=$AS_USER t_start
trap 'rm -f "$AS_USER"; t_cleanup' EXIT

# cap FILE SET: one capability set of a process, from its status file.
cap() { sed -n "s/^Cap$2:[[:space:]]*//p" "$1"; }
ZERO=0000000000000000
is "$(stat -c %U /proc/"$STACK_OCPMD_PID")" nobody "the manager runs as nobody"
like "$(cap /proc/"$STACK_OCPMD_PID"/status Amb)" '^0*[1-9a-f]' "with ambient capabilities"

req POST /api/sessions '{"id":"caps"}'
req POST /api/sessions/caps/messages '{"text":"[[probe]] caps:all"}'
is "$STATUS/$(j .execution.status)" 200/succeeded "the agent runs"
P=$(j .text)
is "$(printf '%s' "$P" | jq -r .uid)" "$(id -u ocpm-agent)" "as the agent user (the manager switched it)"
for set in Amb Prm Eff Inh; do
    is "$(printf '%s' "$P" | jq -r ".caps.$set")" "$ZERO" "the agent has no $set capability"
done
R=$(pgrep -P "$STACK_OCPMD_PID" -f -- '--responder' | head -1)
is "$(stat -c %U /proc/"$R")" nobody "a responder runs as the manager's own user (not root: none to leave)"
for set in Amb Prm Eff Inh; do
    is "$(cap /proc/"$R"/status $set)" "$ZERO" "a responder has no $set capability"
done

# --- a manager started as root: the responders are not root --------------------------------
stack_stop_ocpmd
chown -R root:root "$STACK_DIR" # ocpmd's again (it hands the agent's directories back itself)
OCPMD=$REAL_OCPMD stack_start_ocpmd || { echo "Bail out! ocpmd did not start as root"; exit 1; }
req GET /api/opencode/status
is "$STATUS/$(j .ocpm.responders.user)" 200/ocpm "as root, the responders run as ocpm (responder_user)"
R=$(pgrep -P "$STACK_OCPMD_PID" -f -- '--responder' | head -1)
is "$(stat -c %U /proc/"$R")" ocpm "a responder's process is ocpm's"
for set in Prm Eff; do
    is "$(cap /proc/"$R"/status $set)" "$ZERO" "a responder of a root manager has no $set capability"
done
is "$(stat -c %U "$STACK_DIR/ocpmd.sock")" ocpm "the control socket is the responders'"
req POST /api/sessions '{"id":"caps2"}'
req POST /api/sessions/caps2/messages '{"text":"[[probe]] caps:all"}'
is "$STATUS/$(j .execution.status)" 200/succeeded "messages are served"
t_done
