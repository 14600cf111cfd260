#!/bin/sh
# Build the GGUF fuzzer (clang with libFuzzer, ASan and UBSan) into build/.
# Debian: apt-get install clang libclang-rt-14-dev. CPU feature probes are
# stubbed out (clang 14 lacks some feature names): the fuzzed code is scalar.
set -e
cd "$(dirname "$0")/.."
mkdir -p build
${CLANG:-clang} -g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -fno-omit-frame-pointer "-D__builtin_cpu_supports(f)=0" -Icsrc fuzz/fuzz_gguf.c csrc/gguf.c csrc/quants.c csrc/quants_tiled.c csrc/common.c -lm \
    -o build/fuzz_gguf
echo build/fuzz_gguf
