#!/bin/sh
# Build every libFuzzer harness (clang with libFuzzer, ASan and UBSan).
# Debian: apt-get install clang libclang-rt-14-dev. See build_gguf.sh and
# build_tokenizer.sh for each one alone.
set -e
cd "$(dirname "$0")"
./build_tokenizer.sh
./build_gguf.sh
