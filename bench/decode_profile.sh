#!/usr/bin/env bash
# bench/decode_profile.sh [DIR] [decode_profile options] - where the time of a token goes
# (prefill and decode, matmul phases vs everything else) on a 4-layer Mistral-7B-shaped
# bf16 model (made by `rmu init` when DIR does not exist; 2.3 GB). Options:
# --prompt-len N (512), --gen-len N (32), --fake-prefill (decode at a long context without
# running the prompt). Tune with OMP_NUM_THREADS=1 (CPU time per phase); 2 threads give the
# indicative wall-clock figures. Not a test: run it by hand.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DIR=${1:-/tmp/rmu-mistral-7b-4l-bf16}
[ $# -gt 0 ] && shift
make -s -j2 build/rmu build/librmu.a
mkdir -p build/bench
cc -std=c11 -D_GNU_SOURCE -O2 -g -fopenmp -ffp-contract=off -Wall -Wextra -Werror -Isrc \
   -o build/bench/decode_profile bench/decode_profile.c build/librmu.a -ljansson -lm -fopenmp
[ -f "$DIR/config.json" ] || build/rmu init -o "$DIR" --shape mistral-7b --layers 4 --dtype bf16 --seed 1
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} build/bench/decode_profile -m "$DIR" "$@"
