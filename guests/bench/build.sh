#!/bin/sh
# Builds the janus-bench workloads as two static binaries: OUT/jb (x86-64) and OUT/jb32 (i386).
# fp-packed is compiled with -O3 so gcc vectorizes its loops into packed SSE2; the rest -O2.
# Usage: guests/bench/build.sh OUT   (needs gcc and, for jb32, gcc-multilib)
set -eu
src=$(cd "$(dirname "$0")" && pwd)
out=$1
mkdir -p "$out"
flags="-std=gnu11 -Wall -Wextra -Werror -fno-math-errno"
for arch in 64 32; do
    obj=$(mktemp -d)
    for f in "$src"/*.c; do
        opt=-O2
        [ "$(basename "$f")" = fp_packed.c ] && opt=-O3
        gcc -m$arch $opt $flags -c "$f" -o "$obj/$(basename "$f" .c).o"
    done
    name=jb
    [ $arch = 32 ] && name=jb32
    gcc -m$arch -static -o "$out/$name" "$obj"/*.o -lm
    rm -rf "$obj"
done
