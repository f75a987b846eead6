#!/bin/sh
# gen.sh rebuilds the golden vectors in ../golden from ggml's reference code.
# Usage: gen.sh [DIR_OF_libggml-base.so]
# The .bin files are committed; CI never runs this.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
lib=${1:-${GGML_LIB_DIR:-/root/.cache/oracle/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64}}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# -ffp-contract=off: gen.c's own float code (Q8_1 dequantization) must not fuse.
gcc -std=c11 -D_DEFAULT_SOURCE -O2 -ffp-contract=off -Wall -Wextra -o "$tmp/gen" "$here/gen.c" \
    -L"$lib" -lggml-base -Wl,-rpath,"$lib" -lm
mkdir -p "$here/../golden"
"$tmp/gen" "$here/../golden"
