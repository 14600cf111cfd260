#!/bin/sh
# Build and run the bert trainer's sanitizer smoke test (fuzz/san_train_bert.c)
# twice: gcc with OpenMP + ASan + UBSan (threaded and AVX2 paths), and clang +
# ASan + UBSan without OpenMP (clang 14 here has no libomp) with the CPU
# feature probes stubbed out as in build_gguf.sh (scalar kernels). In build/.
set -e
cd "$(dirname "$0")/.."
mkdir -p build
SRC="fuzz/san_train_bert.c csrc/train.c csrc/train_bert.c csrc/attention_backward.c csrc/ops_backward.c \
     csrc/optim.c csrc/lora.c csrc/matmul.c csrc/ops.c csrc/attention.c csrc/common.c csrc/quants.c csrc/quants_tiled.c"
FLAGS="-g -O1 -std=gnu11 -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -Icsrc"
${CC:-gcc} $FLAGS -fopenmp $SRC -lm -o build/san_train_bert_gcc
${CLANG:-clang} $FLAGS -Wno-unknown-pragmas "-D__builtin_cpu_supports(f)=0" $SRC -lm -o build/san_train_bert_clang
ASAN_OPTIONS=detect_leaks=1 ./build/san_train_bert_gcc
ASAN_OPTIONS=detect_leaks=1 ./build/san_train_bert_clang
