#!/usr/bin/env bash
# The kernel's own bonding selftests in the guest, for `cargo xtask selftests` (xtask/src/selftests/):
#
#   bash selftests-guest.sh baseline|agent TEST...
#
# Run from the staged folder (the host's, mounted at the same path), which holds `src/tools/testing/selftests`
# (the test kernel's own sources, unchanged) and, for `agent`, the `exabond` binary. Each TEST (an entry of
# TEST_PROGS in drivers/net/bonding/Makefile) runs as the kselftest runner runs it: `./TEST` from its own
# folder (a copy on the guest's tmpfs: tests write files beside themselves), under the time limit of the
# folder's `settings` file (scaled by the host: $SELFTEST_LIMIT).
#
# `agent`: before the tests, a bond of the agent's own in the host namespace (exabondst0: active-backup,
# miimon 10, two veth members, up) and `exabond agent` managing it (--member-driver veth); the tests start
# only once `exabond status` says it manages the bond with the BPF LSM vetoes on and a dummy device has been
# refused as a member. After each test and at the end: the agent alive, the bond managed, the vetoes in force.
#
# Both modes load the same modules first, bonding with max_bonds=0, and load bonding again the same way
# between tests when a test unloaded it (6.1's bond-break-lacpdu-tx.sh does `modprobe -r bonding`).
#
# Results in ./out: <test>.log (its output), <test>.rc ("<exit code> <seconds>"), dmesg.txt, and for `agent`
# agent.log (the agent's own log), agent-notes.txt (what the checks between tests saw) and agent-final.txt
# ("ok" once every agent check held); error.txt when the harness itself failed. Console lines for the host
# start with "SELFTEST ". Exit code: 0 when every test ran (whatever its verdict) and, for `agent`, every
# agent check held; 3 when the harness or an agent check failed.
set -u

MODE=${1:?usage: selftests-guest.sh baseline|agent TEST...}
shift
HERE=$(pwd)
OUT=$HERE/out
BOND=exabondst0
PAGES=/run/exabond-selftests
AGENT_PID=

say() { echo "SELFTEST $*"; }
fail() {
    say "ERROR $*"
    echo "$*" >>"$OUT/error.txt"
    exit 3
}

case "$MODE" in baseline | agent) ;; *) fail "unknown mode '$MODE' (baseline or agent)" ;; esac
rm -rf "$OUT"
mkdir -p "$OUT"

# /bin/sh must be bash: 6.12's bond-break-lacpdu-tx.sh is #!/bin/sh but uses `source` and `&>`, and under
# dash prints PASS having tested nothing. The root fs is a snapshot thrown away at power-off.
ln -sf bash /bin/sh
[ "$(readlink -f /bin/sh)" = "$(readlink -f "$(command -v bash)")" ] || fail "/bin/sh is not bash"
for c in ip ethtool ping jq tcpdump killall timeout; do
    command -v "$c" >/dev/null || fail "$c is missing from the guest's root fs: run 'cargo xtask setup' (xtask/vm/testbed.sh, ROOTFS_PKGS)"
done
load_bonding() { [ -d /sys/module/bonding ] || modprobe bonding max_bonds=0; }
for m in veth dummy bridge macvlan ipvlan nlmon sch_ingress cls_flower act_gact; do
    modprobe "$m" || fail "modprobe $m"
done
load_bonding || fail "modprobe bonding max_bonds=0"

rm -rf /tmp/kselftest
cp -a "$HERE/src" /tmp/kselftest || fail "cannot copy the selftests to /tmp"
DIR=/tmp/kselftest/tools/testing/selftests/drivers/net/bonding
# The host passes the limit (the folder's kselftest `settings`, scaled for emulation); else the settings'.
LIMIT=${SELFTEST_LIMIT:-$(sed -n 's/^timeout=//p' "$DIR/settings" 2>/dev/null)}
LIMIT=${LIMIT:-45} # kselftest's default

# Bounded: a control socket that accepts and never answers must not hang the harness.
status_json() { timeout 20 ./exabond status --json 2>/dev/null; }

# The agent (AGENT_PID) manages $BOND with the BPF LSM vetoes on, and the bond's page is fresh and its own.
# (jq 1.6's -e exits 0 on empty input: the answer is compared instead.)
managed() {
    [ "$(status_json | jq --argjson pid "$AGENT_PID" --arg b "$BOND" \
        '.agent_pid == $pid and .enforcement == "lsm-veto"
         and any(.bonds[]; .bond == $b and .page.stale == false and .page.agent_pid == $pid)')" = true ]
}

wait_managed() {
    local i
    for i in $(seq 1 240); do
        managed && return 0
        kill -0 "$AGENT_PID" 2>/dev/null || return 1
        sleep 0.5
    done
    return 1
}

# The vetoes are in force: a dummy device (not a --member-driver) must not join the managed bond. Without
# them the bonding driver takes it. What went wrong goes to stdout.
vetoes_hold() {
    local held=0 err
    ip link del exst0x 2>/dev/null
    err=$(ip link add exst0x type dummy 2>&1) || {
        echo "cannot create the dummy exst0x: $err"
        return 1
    }
    if err=$(ip link set exst0x master "$BOND" 2>&1); then
        echo "a dummy device joined $BOND under the agent: its vetoes are not in force"
        held=1
    elif [[ $err != *"No such device"* ]]; then
        echo "the dummy exst0x was refused by something else than the agent's veto (ENODEV expected): $err"
        held=1
    fi
    ip link del exst0x
    return "$held"
}

make_bond() {
    load_bonding || return 1
    ip link del exst0a 2>/dev/null
    ip link del exst0b 2>/dev/null
    ip link add "$BOND" type bond mode active-backup miimon 10 || return 1
    local m
    for m in exst0a exst0b; do
        ip link add "$m" type veth peer name "${m}p" && ip link set "${m}p" up \
            && ip link set "$m" master "$BOND" || return 1
    done
    ip link set "$BOND" up
}

start_agent() {
    make_bond || fail "cannot create the agent's bond $BOND"
    mkdir -p "$PAGES"
    RUST_LOG=info ./exabond agent --bond "$BOND" --member-driver veth --page-dir "$PAGES" >"$OUT/agent.log" 2>&1 &
    AGENT_PID=$!
    wait_managed || {
        tail -40 "$OUT/agent.log"
        fail "the agent (pid $AGENT_PID) does not manage $BOND with the BPF LSM vetoes on: exabond status --json says $(status_json)"
    }
    local why
    why=$(vetoes_hold) || fail "$why"
    say "AGENT pid $AGENT_PID manages $BOND (lsm-veto; a dummy member refused)"
}

# A failover on the agent's bond (a write to active_slave), and which source put it on the page: after
# bonding was reloaded, whether the agent's kprobe on the new module still fires (information, not a check).
failover_probe() {
    local to i page
    to=exst0b
    [ "$(cat "/sys/class/net/$BOND/bonding/active_slave")" = exst0b ] && to=exst0a
    echo "$to" >"/sys/class/net/$BOND/bonding/active_slave"
    for i in $(seq 1 20); do
        page=$(status_json | jq -c --arg b "$BOND" '.bonds[] | select(.bond == $b) | .page | {active_slave, last_change_source, kernel_event_ns}')
        [[ $page == *"\"$to\""* ]] && break
        sleep 0.25
    done
    note "a failover to $to on the new $BOND reached the page: $page (kernel_event_ns 0 or source other than ebpf: the kprobe did not fire)"
}

note() {
    say "AGENT-NOTE $*"
    echo "$*" >>"$OUT/agent-notes.txt"
}

# After a test: the agent alive and managing its bond. A bond removed by the test (bonding unloaded) is
# created again and managed again through the control socket; anything else is a failure, noted.
check_agent() { # <test> <yes|no: bonding was unloaded by it>
    if ! kill -0 "$AGENT_PID" 2>/dev/null; then
        note "FAIL: the agent died during $1"
        return 1
    fi
    managed && return 0
    if [ -d "/sys/class/net/$BOND" ]; then
        note "FAIL: after $1 the agent no longer manages $BOND: $(status_json)"
        return 1
    fi
    note "$BOND was removed during $1 (bonding unloaded by it: $2); created and managed again"
    if make_bond && ./exabond manage "$BOND" >>"$OUT/agent-notes.txt" 2>&1 && wait_managed \
        && vetoes_hold >>"$OUT/agent-notes.txt"; then
        failover_probe
        return 0
    fi
    note "FAIL: after $1 the agent could not manage a new $BOND: $(status_json)"
    return 1
}

[ "$MODE" = agent ] && start_agent
AGENT_OK=1
for t in "$@"; do
    [ -x "$DIR/$t" ] || fail "no test program $t in drivers/net/bonding"
    say "BEGIN $t (limit ${LIMIT}s)"
    start=$(date +%s)
    (cd "$DIR" && exec timeout -k 10 "$LIMIT" "./$t") >"$OUT/$t.log" 2>&1 </dev/null
    rc=$?
    secs=$(($(date +%s) - start))
    echo "$rc $secs" >"$OUT/$t.rc"
    grep -E '^(TEST: |PASS|FAIL)' "$OUT/$t.log" | sed "s/^/SELFTEST   $t: /"
    say "END $t exit $rc in ${secs}s"
    unloaded=no
    [ -d /sys/module/bonding ] || unloaded=yes
    load_bonding || fail "modprobe bonding max_bonds=0 after $t"
    if [ "$MODE" = agent ]; then check_agent "$t" "$unloaded" || AGENT_OK=0; fi
done

dmesg >"$OUT/dmesg.txt"
if [ "$MODE" = agent ]; then
    if [ "$AGENT_OK" = 1 ] && kill -0 "$AGENT_PID" 2>/dev/null && managed && vetoes_hold >>"$OUT/agent-notes.txt"; then
        echo ok >"$OUT/agent-final.txt"
        say "AGENT-FINAL ok: pid $AGENT_PID alive, $BOND managed, vetoes in force"
    else
        fail "AGENT-FINAL: the agent's checks failed (alive: $(kill -0 "$AGENT_PID" 2>/dev/null && echo yes || echo no)): $(cat "$OUT/agent-notes.txt" 2>/dev/null) status: $(status_json)"
    fi
fi
say "DONE"
