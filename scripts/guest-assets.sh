#!/usr/bin/env bash
# Builds the test guest from Debian packages and caches it:
#   $JANUS_GUEST_DIR (default .cache/guest)/vmlinuz           Debian's stock kernel (bzImage)
#   $JANUS_GUEST_DIR/initramfs.cpio.gz                        busybox, /init, modules, /bench
#   $JANUS_GUEST_DIR/bench/{jb,jb32,busybox}                  the same bench programs, for the host
# The kernel comes from linux-image-amd64, busybox from busybox-static; both with apt. The bench
# workloads (guests/bench, `janus bench --suite`) are built here with gcc as static x86-64 (jb)
# and i386 (jb32) binaries; gcc and gcc-multilib are installed with apt when missing.
#
# /init mounts proc, sys and dev, prints "janus-init: started", loads the modules named by
# janus.modules=a,b,c on the kernel command line, then runs the shell command given base64-
# encoded as janus.cmd=... between "janus-cmd: begin" and "janus-cmd: end status=N" lines and
# powers off. Without janus.cmd it starts an interactive shell on the console.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${JANUS_GUEST_DIR:-$repo/.cache/guest}
# Modules the tests and benches load (their dependencies are added); virtio_pci is for QEMU,
# the para-virtualized peer in `janus bench --io`.
modules="ata_piix sd_mod sr_mod isofs e1000 virtio_mmio virtio_pci virtio_blk virtio_net virtio_console virtio-rng pvpanic-mmio"
recipe_version=5
# The cache key: the recipe and the bench workloads' sources, so editing a workload rebuilds.
recipe="$recipe_version $(cat "$repo"/guests/bench/* | sha256sum | cut -c1-16)"

mkdir -p "$out"
if [ -f "$out/vmlinuz" ] && [ -f "$out/initramfs.cpio.gz" ] && [ -x "$out/bench/jb" ] && [ "$(cat "$out/recipe" 2>/dev/null)" = "$recipe" ]; then
    echo "guest-assets: cached in $out ($(cat "$out/kernel-version"))"
    exit 0
fi
command -v apt-get >/dev/null || { echo "guest-assets: apt-get is needed" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
download() {
    apt-get download "$@" >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get download "$@" >/dev/null 2>&1; }
}
download linux-image-amd64 busybox-static
# The bench workloads: static glibc binaries, 64- and 32-bit.
need=()
for p in gcc libc6-dev gcc-multilib; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
    [ "$(id -u)" = 0 ] || { echo "guest-assets: please install: ${need[*]}" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || {
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    }
fi
"$repo/guests/bench/build.sh" "$work/bench"
meta=$(ls linux-image-amd64_*.deb)
kpkg=$(dpkg-deb -f "$meta" Depends | tr ',' '\n' | sed -n 's/^ *\(linux-image-[0-9][^ ]*\).*/\1/p' | head -n 1)
[ -n "$kpkg" ] || { echo "guest-assets: cannot find the kernel package behind $meta" >&2; exit 1; }
download "$kpkg"
dpkg-deb -x "$(ls "$kpkg"_*.deb)" kernel
dpkg-deb -x "$(ls busybox-static_*.deb)" busybox
kver=$(ls kernel/lib/modules)
bb=$work/busybox/bin/busybox

root=$work/root
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,etc,lib/modules/"$kver"}
cp "$bb" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
mkdir -p "$root/bench"
cp "$work/bench/jb" "$work/bench/jb32" "$root/bench/"

# The modules and their dependencies, from the full tree's modules.dep.
"$bb" depmod -b "$work/kernel" "$kver"
dep="$work/kernel/lib/modules/$kver/modules.dep"
want=""
for m in $modules; do
    line=$(grep -E "/$m\.ko(\.[a-z]+)?:" "$dep" | head -n 1) || { echo "guest-assets: no module $m" >&2; exit 1; }
    want="$want ${line%%:*} ${line#*:}"
done
for f in $(echo "$want" | tr ' ' '\n' | sort -u); do
    mkdir -p "$root/lib/modules/$kver/$(dirname "$f")"
    cp "$work/kernel/lib/modules/$kver/$f" "$root/lib/modules/$kver/$f"
done
"$bb" depmod -b "$root" "$kver"

cat > "$root/init" <<'INIT'
#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "janus-init: started"
arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p" | tail -n 1; }
for m in $(arg janus.modules | tr ',' ' '); do
    modprobe "$m" || echo "janus-init: modprobe $m failed"
done
cmd=$(arg janus.cmd)
if [ -n "$cmd" ]; then
    echo "janus-cmd: begin"
    echo "$cmd" | base64 -d > /tmp/cmd.sh
    sh /tmp/cmd.sh
    echo "janus-cmd: end status=$?"
else
    setsid cttyhack sh
fi
sync
poweroff -f
INIT
chmod +x "$root/init"

(cd "$root" && find . | "$bb" cpio -o -H newc 2>/dev/null) | gzip -9 > "$out/initramfs.cpio.gz.new"
cp "$(ls kernel/boot/vmlinuz-*)" "$out/vmlinuz.new"
# The host runs the very binaries the guest runs (the same busybox too).
rm -rf "$out/bench.new" && mkdir "$out/bench.new"
cp "$work/bench/jb" "$work/bench/jb32" "$bb" "$out/bench.new/"
mv "$out/vmlinuz.new" "$out/vmlinuz"
mv "$out/initramfs.cpio.gz.new" "$out/initramfs.cpio.gz"
rm -rf "$out/bench" && mv "$out/bench.new" "$out/bench"
echo "$kver" > "$out/kernel-version"
echo "$recipe" > "$out/recipe"
echo "guest-assets: built $out (kernel $kver, $(du -h "$out/initramfs.cpio.gz" | cut -f1) initramfs)"
