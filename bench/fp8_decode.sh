#!/usr/bin/env bash
# bench/fp8_decode.sh [DIR] - FP8 against bf16 decode on the same random weights of the
# Mistral-7B shape, the issue-12 benchmark: ROUNDS alternating rounds of `rmu bench` on DIR
# (bf16, made by `rmu init` when absent) and DIR-fp8 (`rmu quantize --fp8`, channel scales),
# each round's tok/s, effective GB/s and % of the bandwidth probe, then the medians and the
# FP8 / bf16 ratio per round and of the medians (the machine is noisy: ratios from runs side
# by side, not absolute figures). Not a test: run it by hand.
#   env: ROUNDS (3), LAYERS (32: the 7B model, ~22 GB of disk for both; 4: a quick 1.1B one),
#        PROMPT (16), GEN (32), THREADS (OMP_NUM_THREADS, default all cores), RMU (build/rmu)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RMU=${RMU:-$ROOT/build/rmu}
ROUNDS=${ROUNDS:-3}
LAYERS=${LAYERS:-32}
PROMPT=${PROMPT:-16}
GEN=${GEN:-32}
DIR=${1:-/tmp/rmu-mistral-7b-L$LAYERS-bf16}
[ -n "${THREADS:-}" ] && export OMP_NUM_THREADS=$THREADS
[ -x "$RMU" ] || make -C "$ROOT" -j2 build/rmu >/dev/null
if [ ! -f "$DIR/config.json" ]; then
    echo "== rmu init --shape mistral-7b --layers $LAYERS --dtype bf16 (once)"
    "$RMU" init -o "$DIR" --shape mistral-7b --layers "$LAYERS" --dtype bf16 --seed 1 >/dev/null
fi
if [ ! -f "$DIR-fp8/config.json" ]; then
    echo "== rmu quantize --fp8 (once)"
    "$RMU" quantize -m "$DIR" --out "$DIR-fp8" --fp8 >/dev/null
fi

# one `rmu bench` run: "tok/s GB/s percent"
one() {
    local out
    out=$("$RMU" bench -m "$1" --prompt-len "$PROMPT" --gen-len "$GEN" 2>&1) || { echo "$out" >&2; return 1; }
    echo "$(echo "$out" | awk '/^decode  / {print $2}') $(echo "$out" | awk '/^decode bandwidth/ {print $3, $(NF-4)}' | tr -d '(%')"
}
median() { sort -g | awk '{a[NR] = $1} END {print NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

echo "== $ROUNDS rounds, prompt $PROMPT, $GEN decoded tokens, $(nproc) cores, threads ${OMP_NUM_THREADS:-all}"
printf "%-6s %-22s %-22s %s\n" round "bf16 tok/s (GB/s, %)" "FP8 tok/s (GB/s, %)" "FP8/bf16"
b_all= f_all= r_all=
for r in $(seq "$ROUNDS"); do
    # assignments, so that a failed run stops the script (set -e) instead of reading blanks
    b=$(one "$DIR")
    f=$(one "$DIR-fp8")
    read -r bt bg bp <<<"$b"
    read -r ft fg fp <<<"$f"
    ratio=$(awk -v f="$ft" -v b="$bt" 'BEGIN {printf "%.2f", f / b}')
    printf "%-6s %-22s %-22s %sx\n" "$r" "$bt ($bg, $bp%)" "$ft ($fg, $fp%)" "$ratio"
    b_all="$b_all $bt" f_all="$f_all $ft" r_all="$r_all $ratio"
done
bm=$(echo "$b_all" | tr ' ' '\n' | grep . | median)
fm=$(echo "$f_all" | tr ' ' '\n' | grep . | median)
echo "median: bf16 $bm tok/s, FP8 $fm tok/s, FP8/bf16 of the medians $(awk -v f="$fm" -v b="$bm" 'BEGIN {printf "%.2f", f / b}')x," \
    "median of the rounds' ratios $(echo "$r_all" | tr ' ' '\n' | grep . | median)x"
