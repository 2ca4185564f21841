#!/usr/bin/env bash
# Installs what the tests need, then runs every check and test. CI runs this (.ci/run), and it
# is the test command in the README.
set -euo pipefail
cd "$(dirname "$0")/.."

# The embedded guest links with the system C toolchain (cc, ld); QEMU is the peer that
# `janus bench` (and its test) compares against.
missing=()
command -v cc >/dev/null || missing+=(gcc)
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
# SeaBIOS, which `--firmware seabios` boots (QEMU depends on it too).
[ -e /usr/share/seabios/bios-256k.bin ] || missing+=(seabios)
# GRUB and the tools grub-mkrescue uses, for the test that boots Linux from a disk image.
[ -d /usr/lib/grub/i386-pc ] || missing+=(grub-pc-bin)
command -v grub-mkrescue >/dev/null || missing+=(grub-common)
command -v xorriso >/dev/null || missing+=(xorriso)
command -v mformat >/dev/null || missing+=(mtools)
if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        echo "scripts/test.sh: please install: ${missing[*]}" >&2
        exit 1
    fi
fi

if [ ! -e /dev/kvm ]; then
    echo "scripts/test.sh: /dev/kvm is absent: the tests that run guests on the kvm engine will skip" >&2
fi

step() { echo "==> $*"; "$@"; }

# The Linux guest (Debian's kernel and a busybox initramfs), built from Debian packages and
# cached. Where apt is missing the Linux tests skip and say so; elsewhere they must run.
if command -v apt-get >/dev/null; then
    step scripts/guest-assets.sh
    export JANUS_REQUIRE_GUEST=1
else
    echo "scripts/test.sh: apt-get is absent: the tests that boot the Linux guest will skip" >&2
fi
step cargo fmt --all -- --check
(cd guests/demo && step cargo fmt -- --check)
step cargo clippy --workspace --all-targets --release -- -D warnings
step cargo test --workspace --release
