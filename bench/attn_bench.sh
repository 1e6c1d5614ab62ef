#!/usr/bin/env bash
# bench/attn_bench.sh [--new-only] - speed of the fused attention kernels at the Mistral-7B
# head shape (decode and prefill against the KV cache, training forward and backward), next
# to the row-at-a-time kernels they replaced. Single-thread CPU time is the figure to tune
# against on a shared machine; 2-thread wall time is indicative. MIN_S=seconds per case.
# Not a test: run it by hand.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
make -s -j2 build/librmu.a
mkdir -p build/bench
cc -std=c11 -D_GNU_SOURCE -O2 -g -fopenmp -ffp-contract=off -Wall -Wextra -Werror -Isrc \
   -o build/bench/attn_bench bench/attn_bench.c build/librmu.a -ljansson -lm -fopenmp
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} build/bench/attn_bench "$@"
