#!/usr/bin/env bash
# bench/peers.sh - rmu next to its peers, in the same run, on the same weights, and the ratios
# (the machine is shared and noisy: compare ratios, not absolute figures). Not a test.
#   1. prefill (pp512) and decode (tg32): llama.cpp's llama-bench on an F16 GGUF of a 4-layer
#      Mistral-7B-shaped model vs `rmu bench` on the same weights (BF16 folder); ROUNDS
#      alternating rounds, best of each;
#   2. one RMU step at the 7B shape truncated after layer 7 (layers 5-7 trainable, B=4,
#      T=512): ../shared/tools/torch_rmu_step.py (PyTorch bf16) vs `rmu unlearn` on an
#      8-layer Mistral-7B-shaped BF16 model (same shape, random weights).
# usage: bench/peers.sh [--skip-rmu-step]       env: ROUNDS (2), THREADS (2), WORK (/tmp/rmu-peers-bench)
# Needs: ../shared/tools (peers.sh builds llama.cpp once, ~8 min), Debian python3-numpy and
# python3-torch, ~7 GB of disk in WORK.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RMU=$ROOT/build/rmu
TOOLS=$ROOT/../shared/tools
ROUNDS=${ROUNDS:-2}
THREADS=${THREADS:-2}
WORK=${WORK:-/tmp/rmu-peers-bench}
PY=/usr/bin/python3
mkdir -p "$WORK"
[ -x "$RMU" ] || make -C "$ROOT" -j2 all >/dev/null
[ -d "$TOOLS" ] || { echo "peers.sh: $TOOLS is absent (../shared/tools)" >&2; exit 1; }
P=$("$TOOLS/peers.sh" | tail -1)
export LD_LIBRARY_PATH=$P/src/build/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export OMP_NUM_THREADS=$THREADS OMP_WAIT_POLICY=passive

M4=$WORK/m4
if [ ! -f "$M4/config.json" ]; then
    "$RMU" init -o "$M4" --shape mistral-7b --layers 4 --dtype bf16 --seed 1 >&2
fi
[ -f "$M4.f16.gguf" ] || "$PY" "$TOOLS/hf_to_gguf.py" "$M4" "$M4.f16.gguf" f16 >&2

best() { sort -g | tail -1; }
lp= lt= rp= rd=
for r in $(seq "$ROUNDS"); do
    out=$("$P/bin/llama-bench" -m "$M4.f16.gguf" -t "$THREADS" -p 512 -n 32 -r 1 -o csv 2>/dev/null)
    lp="$lp $(echo "$out" | awk -F, 'NR>1 && $0 ~ /"512","0"/ {gsub(/"/,"",$0); print $(NF-1)}' | head -1)"
    lt="$lt $(echo "$out" | awk -F, 'NR>1 && $0 ~ /"0","32"/ {gsub(/"/,"",$0); print $(NF-1)}' | head -1)"
    out=$("$RMU" bench -m "$M4" --prompt-len 512 --gen-len 32 2>&1)
    rp="$rp $(echo "$out" | awk '/^prefill/ {print $2}')"
    rd="$rd $(echo "$out" | awk '/^decode / {print $2}')"
done
LP=$(echo $lp | tr ' ' '\n' | best) LT=$(echo $lt | tr ' ' '\n' | best)
RP=$(echo $rp | tr ' ' '\n' | best) RD=$(echo $rd | tr ' ' '\n' | best)
echo "== 4-layer Mistral-7B shape, $THREADS threads, best of $ROUNDS alternating rounds"
printf '%-34s %10s %10s\n' "" "pp512 t/s" "tg32 t/s"
printf '%-34s %10s %10s\n' "llama.cpp llama-bench (F16 GGUF)" "$LP" "$LT"
printf '%-34s %10s %10s\n' "rmu bench (BF16 folder)" "$RP" "$RD"
awk -v a="$RP" -v b="$LP" -v c="$RD" -v d="$LT" \
    'BEGIN {printf "%-34s %9.2fx %9.2fx   (goal: >= 1.5x, >= 1.1x)\n", "rmu / llama.cpp", a / b, c / d}'

[ "${1:-}" = "--skip-rmu-step" ] && exit 0
M8=$WORK/m8
if [ ! -f "$M8/config.json" ]; then
    "$RMU" init -o "$M8" --shape mistral-7b --layers 8 --dtype bf16 --seed 1 >&2
fi
"$PY" - "$WORK" <<'PYEOF'
import json, random, sys
r = random.Random(0)
words = ("protein cell virus gene sequence enzyme host pathogen replication assay network exploit "
         "kernel buffer packet protocol memory address payload the of and to in a is that for").split()
for name in ("forget.jsonl", "retain.jsonl"):
    with open(f"{sys.argv[1]}/{name}", "w") as f:
        for _ in range(16): f.write(json.dumps({"text": " ".join(r.choice(words) for _ in range(900))}) + "\n")
PYEOF
echo "== one RMU step, 7B shape truncated after layer 7, B=4, T=512, layers 5-7, $THREADS threads"
tout=$("$PY" "$TOOLS/torch_rmu_step.py" --layers 8 --batch 4 --seq 512 --steps 1 --threads "$THREADS" 2>&1 | tail -1)
echo "torch: $tout"
rm -rf "$WORK/out"
/usr/bin/time -f "%M" -o "$WORK/rss" "$RMU" unlearn -m "$M8" --forget "$WORK/forget.jsonl" --retain "$WORK/retain.jsonl" \
    --out "$WORK/out" --layer-id 7 --layer-ids 5,6,7 --max-len 512 --retain-max-len 512 --batch-size 4 \
    --steering-coeffs 6.5 --alpha 1200 --max-num-batches 3 --log "$WORK/log.jsonl" >/dev/null 2>&1
rm -rf "$WORK/out"
rs=$("$PY" -c "
import json,sys
r=[json.loads(l) for l in open('$WORK/log.jsonl')]
t=[b['seconds']-a['seconds'] for a,b in zip(r,r[1:])]   # steps after the first (page-in of the weights)
print('%.1f' % (sum(t)/len(t)))")
echo "rmu:   $rs s/step (mean of steps 2-3), peak RSS $(awk '{printf "%.1f", $1/1048576}' "$WORK/rss") GiB"
ts=$(echo "$tout" | sed -n 's/.*: \([0-9.]*\) s\/step.*/\1/p')
awk -v t="$ts" -v r="$rs" 'BEGIN {printf "torch / rmu step time: %.2fx   (goal: >= 1.5x)\n", t / r}'
