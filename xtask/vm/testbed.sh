#!/usr/bin/env bash
# The exabond real-kernel test bed: stock Debian kernels (with the bonding driver) booted under qemu.
# Driven by `cargo xtask` (setup / vm / test / demo); runnable by hand for debugging:
#
#   testbed.sh setup <kernel>...         host packages, kernel, root fs, image, initramfs (idempotent)
#   testbed.sh run <kernel> <dir> <cmd>  boot, run `/bin/sh <dir>/<cmd>` in the guest (dir is mounted at
#                                        the same path), power off; exit code = the script's, 255 = VM failure
#   testbed.sh shell <kernel> [<dir>]    interactive shell on the serial console ("exit" powers off)
#   testbed.sh kver <kernel>             print the kernel release of a prepared kernel
#   testbed.sh standin <kernel>          print the path of the stand-in ExaNIC module built for it
#   testbed.sh selftests <kernel>        print the path of the kernel's own bonding selftests (tools/testing/
#                                        selftests/{drivers/net/bonding,net/forwarding/lib.sh,net/lib.sh})
#
# <kernel> is `bpo` (Debian bookworm-backports, 6.12.x) or `stable` (Debian bookworm, 6.1.x).
# setup also builds xtask/vm/standin-exanic (exanic_standin.ko, a test fixture imitating ExaNIC ports; see
# its header) against that kernel's Debian headers, into $C/standin-<kernel>/, and extracts the kernel's own
# bonding selftests from Debian's linux-source-<x.y> of the same version into $C/selftests-<kernel>/.
# Knobs: EXABOND_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/exabond), TB_ACCEL auto|kvm|tcg,
# TB_MEM (MiB, 2048), TB_SMP (vCPUs, default nproc capped at 4), TB_TIMEOUT (s, 3000),
# TB_APPEND (extra kernel command line, e.g. "lsm=lockdown,capability,yama"), TB_MIRROR (Debian mirror),
# TB_TCG_THREAD single|multi (default single). Under multi-threaded TCG a vCPU can execute a stale int3
# while another vCPU live-patches kernel text (text_poke_bp, as every BPF trampoline attach/detach does):
# seen once as "Oops: int3" in bpf_lsm_file_permission, a guest kernel panic. Single-threaded TCG runs the
# vCPUs in turn on one host thread, which keeps code patching coherent; the benchmarks, which need vCPUs
# that really run in parallel, ask for multi.
set -euo pipefail

# Bump when the recipe changes so cached images are rebuilt.
RECIPE=3
C=${EXABOND_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/exabond}/testbed
# jq, tcpdump, psmisc: the kernel's bonding selftests (`cargo xtask selftests`) need them.
ROOTFS_PKGS="iproute2,kmod,procps,ethtool,iputils-ping,jq,tcpdump,psmisc"
STANDIN_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/standin-exanic

log() { echo "[testbed] $*" >&2; }
die() { echo "[testbed] error: $*" >&2; exit 1; }

mirror() {
    if [ -n "${TB_MIRROR:-}" ]; then echo "${TB_MIRROR%/}"; return; fi
    local m
    m=$(grep -rhoE '(https?://[^ ]+/debian)/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
        | grep -v security | head -1 | tr -d ' ' || true)
    [ -n "$m" ] || m=$(grep -rhE '^URIs:.*/debian/?$' /etc/apt/sources.list.d/ 2>/dev/null | head -1 | awk '{print $2}' || true)
    [ -n "$m" ] || die "no Debian mirror found in the host's apt sources; set TB_MIRROR"
    echo "${m%/}"
}

host_packages() {
    local need=()
    command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
    { [ -x /bin/busybox ] && /bin/busybox --list | grep -qx modprobe; } || need+=(busybox-static)
    command -v cpio >/dev/null || need+=(cpio)
    command -v debootstrap >/dev/null || need+=(debootstrap)
    command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
    command -v depmod >/dev/null || need+=(kmod)
    command -v zstd >/dev/null || need+=(zstd)
    command -v xz >/dev/null || need+=(xz-utils)
    # The stand-in module's build: Debian's headers compile with x86_64-linux-gnu-gcc-12; 6.12 adds module
    # BTF with pahole.
    command -v x86_64-linux-gnu-gcc-12 >/dev/null || need+=(gcc-12)
    command -v make >/dev/null || need+=(make)
    command -v pahole >/dev/null || need+=(dwarves)
    # objdump: the reader library's hot-path test inspects its machine code.
    command -v objdump >/dev/null || need+=(binutils)
    if [ ${#need[@]} -gt 0 ]; then
        log "installing host packages: ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
}

# A private apt configuration (bookworm + backports + security) so the host's apt setup is untouched.
private_apt() {
    [ -f "$C/apt/.updated" ] && return
    mkdir -p "$C/apt/lists/partial" "$C/apt/cache/archives/partial"
    local M; M=$(mirror)
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-backports main\ndeb %s-security bookworm-security main\n' \
        "$M" "$M" "$M" "$M" > "$C/apt/sources.list"
    cat > "$C/apt/apt.conf" <<EOC
Dir::Etc::SourceList "$C/apt/sources.list";
Dir::Etc::SourceParts "/nonexistent";
Dir::State::Lists "$C/apt/lists";
Dir::Cache "$C/apt/cache";
APT::Sandbox::User "root";
EOC
    log "apt update (private lists)"
    APT_CONFIG="$C/apt/apt.conf" apt-get update -qq
    touch "$C/apt/.updated"
}
papt() { APT_CONFIG="$C/apt/apt.conf" "$@"; }

kdir() { echo "$C/kernel-$1"; }
kver() { cat "$(kdir "$1")/.done"; }

get_kernel() { # <flavour>
    local K; K=$(kdir "$1")
    [ -f "$K/.done" ] && return
    private_apt
    local opt=() pkg
    [ "$1" = bpo ] && opt=(-o APT::Default-Release=bookworm-backports)
    pkg=$(papt apt-cache depends "${opt[@]}" linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
    [ -n "$pkg" ] || die "cannot resolve the Debian kernel package for '$1'"
    log "kernel $1: downloading $pkg"
    rm -rf "$K"; mkdir -p "$K" "$C/debs"
    (cd "$C/debs" && papt apt-get download -qq "$pkg")
    dpkg-deb -x "$C"/debs/"${pkg}"_*.deb "$K"
    local v; v=$(ls "$K/lib/modules")
    depmod -b "$K" "$v"
    echo "$v" > "$K/.done"
}

# The Debian package version of the cached kernel (e.g. 6.12.95-1~bpo12+1), from the .deb it was extracted from.
kpkgver() { # <flavour>
    local V deb="" f
    V=$(kver "$1")
    for f in "$C"/debs/linux-image-"$V"_*.deb; do
        [ -f "$f" ] && { [ -z "$deb" ] || [ "$f" -nt "$deb" ]; } && deb=$f
    done
    [ -n "$deb" ] || die "kernel $1: the package of $V is gone from $C/debs; remove $(kdir "$1") and run setup"
    dpkg-deb -f "$deb" Version
}

# linux-headers-<V> (the -amd64 tree), its -common tree and linux-kbuild (scripts/, tools/) of the cached
# kernel's version, extracted under $C/headers-<flavour>; the -amd64 Makefile includes the -common one by its
# /usr/src path: point it at the extracted copy (the scripts/tools symlinks are relative and stay inside).
hdrdir() { echo "$C/headers-$1/usr/src/linux-headers-$(kver "$1")"; }
get_headers() { # <flavour>
    local F=$1 V ver H hdr common kbuild kbver deps
    V=$(kver "$F"); ver=$(kpkgver "$F"); H="$C/headers-$F"; hdr="linux-headers-$V"
    [ "$(cat "$H/.done" 2>/dev/null)" = "$V $ver" ] && return
    private_apt
    deps=$(papt apt-cache depends "$hdr=$ver" 2>/dev/null | awk '$1=="Depends:"{print $2}') \
        || die "kernel $F: $hdr=$ver is not in the archive"
    common=$(echo "$deps" | grep -E '^linux-headers-.*-common$' | head -1)
    kbuild=$(echo "$deps" | grep -E '^linux-kbuild-' | head -1)
    [ -n "$common" ] && [ -n "$kbuild" ] || die "kernel $F: cannot resolve the -common/kbuild packages of $hdr=$ver"
    # linux-kbuild-x.y is shared by every ABI of a series, so the archive may hold only a newer Debian
    # revision of it than the kernel's (bookworm-security did: image 6.1.192-2, kbuild 6.1.192-3). It only
    # brings the build tools (modpost, fixdep, objtool...); take the same upstream version if the exact
    # one is gone.
    local avail; avail=$(papt apt-cache madison "$kbuild" | awk '{print $3}')
    kbver=$ver
    if ! echo "$avail" | grep -qxF "$ver"; then
        kbver=$(echo "$avail" | awk -v up="${ver%-*}" '{v=$1; sub(/-[^-]*$/,"",v)} v==up{print $1; exit}')
        [ -n "$kbver" ] || die "kernel $F: no $kbuild of upstream version ${ver%-*} in the archive"
        log "kernel $F: $kbuild=$ver is gone from the archive; using $kbver (same upstream version)"
    fi
    log "kernel $F: downloading $hdr, $common ($ver) and $kbuild ($kbver)"
    mkdir -p "$C/debs"
    (cd "$C/debs" && papt apt-get download -qq "$hdr=$ver" "$common=$ver" "$kbuild=$kbver")
    rm -rf "$H"; mkdir -p "$H"
    local p v
    for p in "$hdr:$ver" "$common:$ver" "$kbuild:$kbver"; do
        v=${p#*:}; dpkg-deb -x "$C/debs/${p%%:*}_${v//:/%3a}_"*.deb "$H"
    done
    sed -i "s#^include /usr/src/#include $H/usr/src/#" "$H/usr/src/$hdr/Makefile"
    grep -q "^include $H/usr/src/$common/Makefile\$" "$H/usr/src/$hdr/Makefile" \
        || die "kernel $F: unexpected $hdr/Makefile: $(head -3 "$H/usr/src/$hdr/Makefile")"
    [ -x "$H/usr/src/$hdr/scripts/mod/modpost" ] || die "kernel $F: the kbuild tools are missing from $H"
    echo "$V $ver" > "$H/.done"
}

standin_hash() { cat "$STANDIN_SRC/exanic_standin.c" "$STANDIN_SRC/Kbuild" | sha256sum | cut -c1-16; }

# The stand-in ExaNIC module for a kernel: $C/standin-<flavour>/exanic_standin.ko, rebuilt when the recipe,
# the kernel or the module source changes.
build_standin() { # <flavour>
    local F=$1 V S hdrs stamp
    V=$(kver "$F"); S="$C/standin-$F"
    stamp="$RECIPE $V $(kpkgver "$F") $(standin_hash)"
    if [ -f "$S/exanic_standin.ko" ] && [ "$(cat "$S/.stamp" 2>/dev/null)" = "$stamp" ]; then return; fi
    get_headers "$F"; hdrs=$(hdrdir "$F")
    log "kernel $F: building the stand-in ExaNIC module (exanic_standin.ko)"
    rm -rf "$S"; mkdir -p "$S/build"
    cp "$STANDIN_SRC/exanic_standin.c" "$STANDIN_SRC/Kbuild" "$S/build/"
    make -C "$hdrs" M="$S/build" modules >"$S/build.log" 2>&1 \
        || { tail -30 "$S/build.log" >&2; die "kernel $F: the stand-in module did not build (log above, $S/build.log)"; }
    ! grep -E 'warning:|WARNING:' "$S/build.log" >&2 || die "kernel $F: the stand-in module built with warnings"
    [ "$(modinfo -F vermagic "$S/build/exanic_standin.ko" | awk '{print $1}')" = "$V" ] \
        || die "kernel $F: the stand-in module's vermagic is not $V"
    cp "$S/build/exanic_standin.ko" "$S/exanic_standin.ko"
    echo "$stamp" > "$S/.stamp"
}

standin_path() { # <flavour>
    local S="$C/standin-$1"
    [ -f "$S/exanic_standin.ko" ] && [ -f "$(kdir "$1")/.done" ] \
        && [ "$(cat "$S/.stamp" 2>/dev/null)" = "$RECIPE $(kver "$1") $(kpkgver "$1") $(standin_hash)" ] \
        || die "the stand-in module for $1 is missing or stale: run 'cargo xtask setup'"
    echo "$S/exanic_standin.ko"
}

# The kernel's own bonding selftests, from Debian's linux-source-<x.y> at exactly the cached kernel's package
# version (6.12.95-1~bpo12+1, 6.1.192-2 today): tools/testing/selftests/drivers/net/bonding, net/forwarding/lib.sh
# and (6.12) net/lib.sh, under $C/selftests-<flavour>/tools/testing/selftests. Stamped with the recipe and the
# kernel; the 140-150 MB source package is deleted once extracted.
SELFTEST_PATHS="tools/testing/selftests/drivers/net/bonding tools/testing/selftests/net/forwarding/lib.sh tools/testing/selftests/net/lib.sh"
get_selftests() { # <flavour>
    local F=$1 V ver series pkg S stamp deb tarball p
    V=$(kver "$F"); ver=$(kpkgver "$F"); S="$C/selftests-$F"
    series=$(echo "${ver%%-*}" | cut -d. -f1,2)
    pkg="linux-source-$series"; stamp="$RECIPE $V $pkg=$ver"
    [ "$(cat "$S/.stamp" 2>/dev/null)" = "$stamp" ] && return
    private_apt
    log "kernel $F: downloading $pkg=$ver (the kernel's own bonding selftests)"
    mkdir -p "$C/debs"
    (cd "$C/debs" && papt apt-get download -qq "$pkg=$ver") \
        || die "kernel $F: $pkg=$ver (the sources of the test kernel) is not in the archive"
    deb=$(ls "$C/debs/${pkg}_${ver//:/%3a}_"*.deb)
    tarball="./usr/src/$pkg.tar.xz"
    rm -rf "$S"; mkdir -p "$S"
    # Members missing from a series (6.1 has no net/lib.sh) are not an error; the bonding folder is checked below.
    local members=()
    for p in $SELFTEST_PATHS; do members+=("$pkg/$p"); done
    dpkg-deb --fsys-tarfile "$deb" | tar -xO "$tarball" | xz -dc -T0 \
        | tar -x -C "$S" --strip-components=1 "${members[@]}" 2>/dev/null || true
    [ -f "$S/tools/testing/selftests/drivers/net/bonding/Makefile" ] \
        && [ -f "$S/tools/testing/selftests/net/forwarding/lib.sh" ] \
        || die "kernel $F: $pkg=$ver has no bonding selftests at tools/testing/selftests/drivers/net/bonding"
    rm -f "$deb"
    echo "$stamp" > "$S/.stamp"
}

selftests_path() { # <flavour>
    local S="$C/selftests-$1" ver
    [ -f "$(kdir "$1")/.done" ] && ver=$(kpkgver "$1") \
        && [ "$(cat "$S/.stamp" 2>/dev/null)" = "$RECIPE $(kver "$1") linux-source-$(echo "${ver%%-*}" | cut -d. -f1,2)=$ver" ] \
        || die "the bonding selftests for $1 are missing or stale: run 'cargo xtask setup'"
    echo "$S"
}

build_rootfs() {
    # .done holds the package list it was built with: a changed list rebuilds it (and so the images).
    [ "$(cat "$C/rootfs/.done" 2>/dev/null)" = "$ROOTFS_PKGS" ] && return
    private_apt
    log "debootstrap bookworm minbase + $ROOTFS_PKGS (about a minute)"
    rm -rf "$C/rootfs"
    debootstrap --variant=minbase --include="$ROOTFS_PKGS" bookworm "$C/rootfs" "$(mirror)" >"$C/debootstrap.log" 2>&1 \
        || { tail -20 "$C/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
    chroot "$C/rootfs" apt-get clean
    : > "$C/rootfs/etc/apt/sources.list"
    echo testbed > "$C/rootfs/etc/hostname"
    echo "$ROOTFS_PKGS" > "$C/rootfs/.done"
}

# init run by switch_root: makes the Debian root fs the real root (module auto-loading works), mounts the
# pseudo file systems and the host folder, runs the command and powers off.
write_tbinit() {
    cat > "$1" <<'EOI'
#!/bin/sh
export HOME=/root TERM=${TERM:-linux} PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc; mount -t sysfs sys /sys
mkdir -p /dev/pts /dev/shm; mount -t devpts devpts /dev/pts; mount -t tmpfs shm /dev/shm
mount -t tmpfs tmp /tmp; mount -t tmpfs run /run
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p" | tail -1; }
HOSTDIR=$(arg tbdir); CMD=$(arg tbcmd); MODE=$(arg tbmode)
mkdir -p "$HOSTDIR"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=none host "$HOSTDIR"
ip link set lo up; hostname testbed
if [ "$MODE" = shell ]; then
  cd "$HOSTDIR"; busybox setsid busybox cttyhack /bin/bash -l
else
  echo "TESTBED-START $(uname -r)"
  (cd "$HOSTDIR" && exec /bin/sh "$HOSTDIR/$CMD") </dev/null
  echo "TESTBED-EXIT-CODE: $?"
fi
sync; busybox poweroff -f
EOI
    chmod +x "$1"
}

build_image() { # <flavour>
    local F=$1 V img stamp
    V=$(kver "$F"); img="$C/rootfs-$F.img"; stamp="$C/rootfs-$F.stamp"
    if [ -f "$img" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$RECIPE $V" ] && [ "$img" -nt "$C/rootfs/.done" ]; then return; fi
    log "kernel $F: building the ext4 root image with modules of $V"
    rm -rf "$C/rootfs/lib/modules" "$C/rootfs/boot"
    mkdir -p "$C/rootfs/lib/modules" "$C/rootfs/boot" "$C/rootfs/usr/local/sbin"
    cp -a "$(kdir "$F")/lib/modules/$V" "$C/rootfs/lib/modules/"
    cp -a "$(kdir "$F")/boot/config-$V" "$(kdir "$F")/boot/System.map-$V" "$C/rootfs/boot/"
    cp /bin/busybox "$C/rootfs/usr/local/sbin/busybox"
    write_tbinit "$C/rootfs/usr/local/sbin/tbinit"
    rm -f "$img"
    mkfs.ext4 -q -F -L tbroot -d "$C/rootfs" "$img" 2G
    rm -rf "$C/rootfs/lib/modules/$V"
    echo "$RECIPE $V" > "$stamp"
}

build_initramfs() { # <flavour>
    local F=$1 V KROOT OUT stamp T
    V=$(kver "$F"); KROOT=$(kdir "$F"); OUT="$C/initrd-$F.gz"; stamp="$C/initrd-$F.stamp"
    if [ -f "$OUT" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$RECIPE $V" ]; then return; fi
    log "kernel $F: building the initramfs"
    T=$(mktemp -d)
    mkdir -p "$T"/{bin,proc,sys,dev,tmp,run,root,lib/modules/"$V"}
    cp /bin/busybox "$T/bin/busybox"
    for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$T/bin/$a"; done
    for m in virtio_pci virtio_blk crc32c_generic crc32c-intel ext4 9pnet_virtio 9p; do
        modprobe -d "$KROOT" -S "$V" --show-depends "$m" 2>/dev/null | awk '$1=="insmod"{print $2}'
    done | sort -u | while read -r f; do
        rel=${f#"$KROOT/lib/modules/$V/"}
        mkdir -p "$T/lib/modules/$V/$(dirname "$rel")"
        case "$f" in
            *.xz)  xz -dc "$f"   > "$T/lib/modules/$V/${rel%.xz}";;
            *.zst) zstd -qdc "$f" > "$T/lib/modules/$V/${rel%.zst}";;
            *)     cp "$f" "$T/lib/modules/$V/$rel";;
        esac
    done
    cp "$KROOT/lib/modules/$V"/modules.{builtin,builtin.modinfo,order} "$T/lib/modules/$V/" 2>/dev/null || true
    depmod -b "$T" "$V"
    cat > "$T/init" <<'EOI'
#!/bin/sh
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in virtio_pci virtio_blk crc32c_generic crc32c_intel ext4 9pnet_virtio 9p; do modprobe -q $m; done
i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
mount -t ext4 /dev/vda /root || { echo "TESTBED: cannot mount the root fs"; poweroff -f; }
mount --move /dev /root/dev; umount /sys /proc
exec switch_root /root /usr/local/sbin/tbinit
EOI
    chmod +x "$T/init"
    (cd "$T" && find . | cpio -o -H newc --quiet | gzip -1) > "$OUT"
    rm -rf "$T"
    echo "$RECIPE $V" > "$stamp"
}

check_flavour() { case "$1" in bpo|stable) ;; *) die "unknown kernel '$1': use bpo (6.12) or stable (6.1)";; esac; }

setup() {
    [ "$(id -u)" = 0 ] || die "setup needs root (apt, debootstrap, chroot)"
    [ $# -gt 0 ] || set -- bpo stable
    mkdir -p "$C/debs"
    host_packages
    for F in "$@"; do check_flavour "$F"; get_kernel "$F"; done
    build_rootfs
    for F in "$@"; do build_image "$F"; build_initramfs "$F"; build_standin "$F"; get_selftests "$F"; log "kernel $F ready: $(kver "$F")"; done
}

accel_args() {
    local a=${TB_ACCEL:-auto}
    if [ "$a" = auto ]; then
        if [ -w /dev/kvm ] && grep -qE '\b(vmx|svm)\b' /proc/cpuinfo; then a=kvm; else a=tcg; fi
    fi
    if [ "$a" = kvm ]; then echo "-accel kvm -cpu host"; else echo "-accel tcg,thread=${TB_TCG_THREAD:-single} -cpu max"; fi
}

boot() { # <flavour> <hostdir> <append>
    local F=$1 V smp
    V=$(kver "$F")
    smp=${TB_SMP:-$(nproc)}; [ "$smp" -gt 4 ] && smp=4
    # shellcheck disable=SC2046
    timeout --foreground -k 5 "${TB_TIMEOUT:-3000}" qemu-system-x86_64 \
        -nodefaults -no-user-config -no-reboot -display none -serial stdio -monitor none \
        $(accel_args) -m "${TB_MEM:-2048}" -smp "$smp" \
        -kernel "$(kdir "$F")/boot/vmlinuz-$V" -initrd "$C/initrd-$F.gz" \
        -append "console=ttyS0 quiet loglevel=3 panic=-1 ${TB_APPEND:-} tbdir=$2 $3" \
        -drive "file=$C/rootfs-$F.img,if=virtio,format=raw,snapshot=on" \
        -virtfs "local,path=$2,mount_tag=host,security_model=none,id=host"
}

ready() { [ -f "$C/rootfs-$1.img" ] && [ -f "$C/initrd-$1.gz" ] || die "kernel $1 is not set up: run 'cargo xtask setup'"; }

run() { # <flavour> <hostdir> <script>
    local F=$1 dir script out rc
    check_flavour "$F"; ready "$F"
    dir=$(realpath "$2"); script=$3
    [ -f "$dir/$script" ] || die "no such script: $dir/$script"
    out=$(mktemp)
    boot "$F" "$dir" "tbcmd=$script" </dev/null 2>&1 | tee "$out"
    rc=$(sed -n 's/^TESTBED-EXIT-CODE: \([0-9]*\).*/\1/p' "$out" | tail -1)
    rm -f "$out"
    [ -n "$rc" ] || { echo "[testbed] error: the VM ($F) did not report an exit code (boot failure or timeout)" >&2; rc=255; }
    return "$rc"
}

case "${1:-}" in
    setup) shift; setup "$@" ;;
    run)   shift; [ $# -eq 3 ] || die "usage: $0 run <kernel> <hostdir> <script>"; run "$@" ;;
    shell) shift; check_flavour "${1:-}"; ready "$1"; boot "$1" "$(realpath "${2:-.}")" "tbmode=shell" ;;
    kver)  shift; check_flavour "${1:-}"; kver "$1" ;;
    standin) shift; check_flavour "${1:-}"; standin_path "$1" ;;
    selftests) shift; check_flavour "${1:-}"; selftests_path "$1" ;;
    *) sed -n '2,21p' "$0"; exit 2 ;;
esac
