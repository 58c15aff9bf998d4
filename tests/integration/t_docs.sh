#!/usr/bin/env bash
# The documents and what they describe: the generated parts of the committed documents match
# their tables (settings, routes, ocpmctl), the man pages render, `ocpmd -T` prints every setting,
# ocpmctl's usage is its table, and `make install` puts everything where an operator looks.
. "$(dirname "$0")/lib.sh"
ART=${OCPM_ARTIFACTS:-$SRC}
DOC="$ART/ocpm-doc"
TDIR=$(mktemp -d /tmp/ocpm-test-XXXXXX)

out=$("$SRC/scripts/gen-docs" "$DOC" check "$SRC" 2>&1)
is "$?" 0 "every generated part of docs/*.md and ocpmd.conf.example matches its table${out:+: $out}"

# A document that lags its table is caught: change a copy, check the copy.
mkdir -p "$TDIR/src/docs"
for d in docs/configuration.md docs/api.md docs/operations.md ocpmd.conf.example; do cp "$SRC/$d" "$TDIR/src/$d"; done
sed -i 's/^| `run_timeout` .*/| `run_timeout` | duration | `1m` | something else |/' "$TDIR/src/docs/configuration.md"
check "a changed settings table in the docs is found" sh -c "! '$SRC/scripts/gen-docs' '$DOC' check '$TDIR/src' 2>/dev/null"

for bad in "" "settings" "settings pdf" "nothing md"; do
    "$DOC" $bad >/dev/null 2>&1
    is "$?" 2 "ocpm-doc $bad: usage, exit 2"
done

keys=$("$DOC" settings example | grep -c '^#[a-z_]* =')
dumped=$(OCPM_STATE_DIR="$TDIR/state" OCPM_AGENT_USER=self "$ART/ocpmd" -T 2>/dev/null | grep -c '^[a-z_]* = ')
is "$dumped" "$keys" "ocpmd -T prints every one of the $keys settings"
like "$("$ART/ocpmd" -h)" '-T +check, then print every setting' "ocpmd -h names -T"
is "$("$ART/ocpmctl" -h)" "$("$DOC" ctl usage)" "ocpmctl -h is its table of commands and options"
for c in status sessions history show stats prune; do
    like "$("$ART/ocpmctl" -h)" "(^|
)  $c" "ocpmctl's usage lists $c"
done

for m in ocpmd.8 ocpmd.conf.5 ocpmctl.8; do
    if [ ! -f "$ART/man/$m" ]; then not_ok "man/$m is built"; continue; fi
    warn=$(MANWIDTH=100 man --warnings -E UTF-8 -l "$ART/man/$m" 2>&1 >/dev/null)
    is "$warn" "" "man -l renders $m without a warning"
    check "$m is not empty" sh -c "MANWIDTH=100 man -l '$ART/man/$m' 2>/dev/null | grep -q '[A-Za-z]'"
done
like "$(MANWIDTH=200 man -l "$ART/man/ocpmd.conf.5" 2>/dev/null)" 'user_max_share' "ocpmd.conf(5) documents every setting (user_max_share)"
like "$(MANWIDTH=200 man -l "$ART/man/ocpmctl.8" 2>/dev/null)" 'older-than' "ocpmctl(8) documents its options"

# make install into a staging directory: both programs, three man pages, the nginx files, the example.
if make -C "$ART" install DESTDIR="$TDIR/root" >"$TDIR/install.log" 2>&1; then
    ok "make install DESTDIR=... succeeds"
    for f in sbin/ocpmd sbin/ocpmctl share/man/man8/ocpmd.8 share/man/man5/ocpmd.conf.5 share/man/man8/ocpmctl.8 \
        share/ocpm/ocpmd.conf.example share/ocpm/nginx/ocpm.conf share/ocpm/nginx/fastcgi_ocpm_params \
        share/ocpm/nginx/status/index.html; do
        check "installs $f" sh -c "find '$TDIR/root' -path '*/$f' | grep -q ."
    done
    check "the installed example is the committed one" sh -c "cmp -s \"\$(find '$TDIR/root' -path '*/share/ocpm/ocpmd.conf.example')\" '$SRC/ocpmd.conf.example'"
else
    not_ok "make install DESTDIR=... succeeds" "$(tail -5 "$TDIR/install.log")"
fi

echo "1..$T_N"
[ "$T_FAIL" -gt 0 ] && echo "# kept $TDIR" || rm -rf "$TDIR"
exit 0
