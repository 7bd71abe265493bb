#!/usr/bin/env bash
# setup-bond.sh: create an active-backup bond on a real host and put it under exabond's management.
#
#   sudo examples/setup-bond.sh -b bond0 -m eth2 -m eth3 -p eth2 -a 192.0.2.10/24
#   examples/setup-bond.sh -n -b bond0 -m eth2 -m eth3      # dry run: print the commands, change nothing
#
# The sequence (each step is a plain sysfs write or ip(8) command, printed as such by -n):
#   1. modprobe bonding max_bonds=0     (max_bonds=0: loading the module creates no stray "bond0")
#   2. echo +BOND > /sys/class/net/bonding_masters
#   3. echo active-backup > .../bonding/mode    (only while the bond is down and has no members)
#   4. echo MIIMON > .../bonding/miimon         (link monitoring; 0 would leave failovers to ARP monitoring)
#   5. exabond manage BOND               (asks the running agent over its root-only control socket). It comes
#      before the members so that every member that joins is checked by the agent's policy in the kernel
#      (SmartNIC ports, or the drivers of the agent's member_drivers / --member-driver).
#   6. each member: ip link set dev M down; echo +M > .../bonding/slaves   (the bonding driver wants members
#      down; it brings them up itself)
#   7. echo PRIMARY > .../bonding/primary       (after the members: the name then names an actual member)
#   8. ip addr add ADDR dev BOND                 (optional)
#   9. ip link set dev BOND up
#
# Environment: EXABOND=/path/to/exabond (default: exabond on PATH), SYSFS_NET=/sys/class/net (for tests).
set -euo pipefail

PROG=${0##*/}
EXABOND=${EXABOND:-exabond}
SYSFS_NET=${SYSFS_NET:-/sys/class/net}

BOND=""
MEMBERS=()
ADDR=""
MIIMON=100
PRIMARY=""
DRY=0
# Set once the bond exists, so a later failure can say how to undo.
CREATED=0

usage() {
    cat <<EOF
Usage: $PROG -b BOND [-m MEMBER]... [-a ADDR/PREFIX] [-i MIIMON] [-p PRIMARY] [-n]

Create an active-backup bond, put it under exabond's management, add its members, bring it up.

  -b BOND     name of the bond to create (1-15 characters, e.g. bond0); it must not exist yet
  -m MEMBER   a member interface (repeatable; order = order of enslavement); it must exist, not be in
              another bond, and (under exabond) be a SmartNIC port or use an allowed --member-driver
  -a ADDR     IPv4 address with prefix length for the bond, e.g. 192.0.2.10/24 (optional)
  -i MIIMON   MII link monitoring interval in ms (default 100; 0 disables it, not recommended)
  -p PRIMARY  preferred active member (must be one of the -m members; optional)
  -n          dry run: check what can be checked and print the commands instead of running them
  -h          this help

Environment: EXABOND (path of the exabond binary, default: exabond on PATH).
EOF
}

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    if ((CREATED)); then
        printf '%s: the bond %s was left half-configured; to remove it:\n    ip link set dev %s down; echo -%s > %s/bonding_masters\n' \
            "$PROG" "$BOND" "$BOND" "$BOND" "$SYSFS_NET" >&2
    fi
    exit 1
}
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
info() { printf '%s: %s\n' "$PROG" "$*" >&2; }

# A check that fails: fatal for real, a warning in a dry run (the dry run still prints the whole sequence).
problem() {
    if ((DRY)); then
        warn "(dry run) would fail: $*"
    else
        die "$*"
    fi
}

# Print a command the way a user would type it.
show() {
    local out="" w
    for w in "$@"; do
        out+="${out:+ }$(printf '%q' "$w")"
    done
    printf '%s\n' "$out"
}

# run HINT CMD...: run CMD (or print it in a dry run); on failure, die naming the command and the fix.
run() {
    local hint=$1
    shift
    if ((DRY)); then
        show "$@"
        return 0
    fi
    local err
    if ! err=$("$@" 2>&1); then
        die "\`$(show "$@")\` failed: ${err:-no message}${hint:+ -- $hint}"
    fi
}

# sysfs_write VALUE PATH HINT: echo VALUE > PATH (or print it in a dry run); the kernel's refusal is an errno
# (details in dmesg), so the error names the file, the value and what usually causes it.
sysfs_write() {
    local value=$1 path=$2 hint=$3
    if ((DRY)); then
        printf 'echo %s > %s\n' "$(printf '%q' "$value")" "$(printf '%q' "$path")"
        return 0
    fi
    local err
    if ! err=$( { printf '%s\n' "$value" >"$path"; } 2>&1); then
        die "cannot write '$value' to $path: ${err##*: }${hint:+ -- $hint} (see: dmesg | tail)"
    fi
}

# The kernel's dev_valid_name(): 1-15 bytes, not . or .., no '/', ':' or white space.
valid_ifname() {
    local n=$1
    [[ -n $n && ${#n} -le 15 && $n != . && $n != .. && $n != */* && $n != *:* && $n != *[[:space:]]* ]]
}

# Driver of an interface as `ethtool -i` reports it (what exabond's member policy looks at), else the sysfs
# device driver, else "unknown".
driver_of() {
    local m=$1 d=""
    if command -v ethtool >/dev/null 2>&1; then
        d=$(ethtool -i "$m" 2>/dev/null | sed -n 's/^driver: //p') || true
    fi
    if [[ -z $d && -e $SYSFS_NET/$m/device/driver ]]; then
        d=$(basename "$(readlink -f "$SYSFS_NET/$m/device/driver")")
    fi
    printf '%s\n' "${d:-unknown}"
}

# --- arguments ----------------------------------------------------------------------------------------------
while getopts ':b:m:a:i:p:nh' opt; do
    case $opt in
        b) BOND=$OPTARG ;;
        m) MEMBERS+=("$OPTARG") ;;
        a) ADDR=$OPTARG ;;
        i) MIIMON=$OPTARG ;;
        p) PRIMARY=$OPTARG ;;
        n) DRY=1 ;;
        h) usage; exit 0 ;;
        :) die "option -$OPTARG needs a value (see -h)" ;;
        *) die "unknown option -$OPTARG (see -h)" ;;
    esac
done
shift $((OPTIND - 1))
(($# == 0)) || die "unexpected argument '$1': members are given with -m (see -h)"

[[ -n $BOND ]] || die "no bond name: give one with -b, e.g. -b bond0"
valid_ifname "$BOND" || die "invalid bond name '$BOND': 1-15 characters, no '/', ':' or spaces"
[[ $MIIMON =~ ^[0-9]+$ ]] || die "invalid miimon '$MIIMON': a number of milliseconds, e.g. -i 100"
if ((MIIMON == 0)); then
    warn "miimon 0 disables MII link monitoring: without ARP monitoring the bond may not fail over on link loss"
fi
if ((${#MEMBERS[@]} == 0)); then
    warn "no members (-m): the bond is created empty; add members later with: echo +IFACE > $SYSFS_NET/$BOND/bonding/slaves"
fi
declare -A seen=()
for m in "${MEMBERS[@]}"; do
    valid_ifname "$m" || die "invalid member name '$m': 1-15 characters, no '/', ':' or spaces"
    [[ $m != "$BOND" ]] || die "member '$m' is the bond itself: give the bond's physical interfaces with -m"
    [[ -z ${seen[$m]:-} ]] || die "member '$m' is given twice"
    seen[$m]=1
done
if [[ -n $PRIMARY && -z ${seen[$PRIMARY]:-} ]]; then
    die "primary '$PRIMARY' is not one of the members (${MEMBERS[*]:-none}): add -m $PRIMARY or fix -p"
fi
if [[ -n $ADDR ]]; then
    # Octets without leading zeros (some parsers read 010 as octal), prefix 0-32 checked below.
    o='(0|[1-9][0-9]{0,2})'
    re="^$o\\.$o\\.$o\\.$o/(0|[1-9][0-9]?)\$"
    [[ $ADDR =~ $re ]] || die "invalid address '$ADDR': IPv4 with prefix length, no leading zeros, e.g. -a 192.0.2.10/24"
    for i in 1 2 3 4; do
        ((10#${BASH_REMATCH[i]} <= 255)) || die "invalid address '$ADDR': ${BASH_REMATCH[i]} is not an octet (0-255)"
    done
    ((10#${BASH_REMATCH[5]} <= 32)) || die "invalid address '$ADDR': prefix length ${BASH_REMATCH[5]} is over 32"
fi

# --- checks of the host -------------------------------------------------------------------------------------
if ((!DRY)) && ((EUID != 0)); then
    die "must run as root (it writes /sys/class/net and runs ip link): sudo $PROG ... (or -n for a dry run)"
fi
command -v ip >/dev/null 2>&1 || problem "ip(8) not found: install iproute2 (apt-get install iproute2)"
if [[ -e $SYSFS_NET/$BOND ]]; then
    problem "interface $BOND already exists; choose another name, or remove it first: ip link set dev $BOND down; echo -$BOND > $SYSFS_NET/bonding_masters"
fi
declare -A driver=()
for m in "${MEMBERS[@]}"; do
    if [[ ! -e $SYSFS_NET/$m ]]; then
        problem "member $m does not exist: check the name with \`ip -br link\` (kernel interface names, e.g. enp1s0f0)"
        continue
    fi
    if [[ -e $SYSFS_NET/$m/master ]]; then
        master=$(basename "$(readlink -f "$SYSFS_NET/$m/master")")
        problem "member $m is already enslaved to $master: release it first: echo -$m > $SYSFS_NET/$master/bonding/slaves"
    fi
    if [[ -d $SYSFS_NET/$m/bonding ]]; then
        problem "member $m is a bond itself: nested bonds are not supported, give physical interfaces"
    fi
    [[ $m != lo ]] || problem "member lo is the loopback interface: give physical interfaces"
    driver[$m]=$(driver_of "$m")
done

# --- 1-4: the bond ------------------------------------------------------------------------------------------
if [[ -e $SYSFS_NET/bonding_masters ]]; then
    info "bonding module already loaded"
else
    run "is the bonding driver installed for this kernel (linux-modules / linux-image package)?" \
        modprobe bonding max_bonds=0
    if ((!DRY)) && [[ ! -e $SYSFS_NET/bonding_masters ]]; then
        die "the bonding module is loaded but $SYSFS_NET/bonding_masters is missing: is sysfs mounted at /sys?"
    fi
fi
sysfs_write "+$BOND" "$SYSFS_NET/bonding_masters" "is the name free (ip -br link)?"
CREATED=$((!DRY))
sysfs_write active-backup "$SYSFS_NET/$BOND/bonding/mode" "the mode can only change while the bond is down and has no members"
sysfs_write "$MIIMON" "$SYSFS_NET/$BOND/bonding/miimon" "miimon is a number of milliseconds"

# --- 5: management by exabond -------------------------------------------------------------------------------
# The bond is empty and in active-backup mode, so it passes the agent's checks. From here on the agent's BPF
# LSM refuses (ENODEV) members that are not SmartNIC ports, unless their driver is in the agent's
# member_drivers (config file) or --member-driver list (labs: veth, virtio_net...).
for m in "${MEMBERS[@]}"; do
    [[ -n ${driver[$m]:-} ]] || continue # missing member, already reported
    d=${driver[$m]}
    if [[ $d == unknown ]]; then
        warn "cannot tell the driver of member $m (install ethtool): exabond accepts only exanic ports and the drivers of its member_drivers"
    elif [[ $d != exanic ]]; then
        warn "member $m uses driver '$d', not exanic: the agent refuses it unless '$d' is in its member_drivers (/etc/exabond/exabond.toml) or given with --member-driver $d"
    fi
done
if ! command -v "$EXABOND" >/dev/null 2>&1; then
    problem "exabond not found ($EXABOND): install it in /usr/local/bin or set EXABOND=/path/to/exabond"
fi
run "is the agent running (systemctl status exabond; $EXABOND status)? exit code 11 means no agent, 10 not root" \
    "$EXABOND" manage "$BOND"

# --- 6-9: members, primary, address, up ---------------------------------------------------------------------
for m in "${MEMBERS[@]}"; do
    run "" ip link set dev "$m" down
    sysfs_write "+$m" "$SYSFS_NET/$BOND/bonding/slaves" \
        "the kernel refused $m: it must be down and in no other bond; while exabond manages $BOND it must be an exanic port or use one of the agent's --member-driver drivers (${driver[$m]:-unknown})"
done
if [[ -n $PRIMARY ]]; then
    sysfs_write "$PRIMARY" "$SYSFS_NET/$BOND/bonding/primary" "the primary must be a member of $BOND"
fi
if [[ -n $ADDR ]]; then
    run "is the address already used on another interface (ip -br addr)?" ip addr add "$ADDR" dev "$BOND"
fi
run "" ip link set dev "$BOND" up

if ((DRY)); then
    info "dry run: nothing was changed"
else
    info "$BOND is up (active-backup, miimon $MIIMON) and managed by exabond. Check: $EXABOND status; $EXABOND watch; cat /proc/net/bonding/$BOND"
fi
