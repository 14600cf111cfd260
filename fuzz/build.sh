#!/bin/sh
# Build the libFuzzer harness with ASan + UBSan (needs clang with libFuzzer).
# Usage: fuzz/build.sh [output path]   (default: fuzz/out/fuzz_tokenizer)
set -e
cd "$(dirname "$0")/.."
CC=${CC:-$(command -v clang || command -v clang-14 || echo clang)}
OUT=${1:-fuzz/out/fuzz_tokenizer}
mkdir -p "$(dirname "$OUT")"
# common.c (errors, allocation) is built uninstrumented with the system C
# compiler: older clangs reject some of its CPU-feature names, and it is not
# the code under test.
${HOSTCC:-cc} -std=gnu11 -O1 -g -Icsrc -c csrc/common.c -o "$OUT.common.o"
$CC -std=gnu11 -g -O1 -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Icsrc fuzz/fuzz_tokenizer.c csrc/tokenizer.c csrc/unicode.c "$OUT.common.o" -lm -o "$OUT"
echo "$OUT"
