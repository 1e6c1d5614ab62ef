#!/usr/bin/env bash
# bench/bench_7b.sh [DIR] - the closing-note figures on a random-weight model of the real
# Mistral-7B shape (bf16, 14.5 GB; made by `rmu init` when DIR does not exist):
#   1. memory read bandwidth (the decode limit) and the GEMM path,
#   2. `rmu bench`: prefill tok/s (512-token prompt), decode tok/s (128 tokens), effective GB/s,
#   3. `rmu unlearn` with the Zephyr defaults for a few steps: s/step, peak RSS, projected
#      150-step wall time (RMU_PRECISION=fp32, then bf16 - the default for BF16 weights),
#   4. `rmu eval` questions/second on a few MMLU questions.
# Needs ~15 GB of disk and ~16 GB of free memory. Not a test: run it by hand.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RMU=$ROOT/build/rmu
DIR=${1:-/tmp/rmu-mistral-7b-bf16}
STEPS=${STEPS:-3}
SHARED=$ROOT/../shared
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
tokargs=()
[ -f "$SHARED/data/mistral-7b-v0.1/tokenizer.json" ] && tokargs=(--tokenizer "$SHARED/data/mistral-7b-v0.1")
if [ ! -f "$DIR/config.json" ]; then
    echo "== rmu init --shape mistral-7b --dtype bf16 (once)"
    /usr/bin/time -f "init: %e s, peak RSS %M KB" "$RMU" init -o "$DIR" --shape mistral-7b --dtype bf16 --shards 2 --seed 1 "${tokargs[@]}"
fi
"$RMU" info -m "$DIR"
echo "== rmu bench"
"$RMU" bench -m "$DIR"

echo "== rmu unlearn, Zephyr defaults, $STEPS steps"
# long texts so that truncation at 512 (topic 0, retain) and 768 (topic 1) applies as with the real corpora
python3 - "$W" <<'PYEOF'
import json, random, sys
r = random.Random(0)
words = ("protein cell virus gene sequence enzyme host pathogen replication assay network exploit "
         "kernel buffer packet protocol memory address payload the of and to in a is that for").split()
def text(): return " ".join(r.choice(words) for _ in range(900))
for name in ("bio", "cyber"):
    with open(f"{sys.argv[1]}/{name}.jsonl", "w") as f:
        for _ in range(16): f.write(json.dumps({"text": text()}) + "\n")
with open(f"{sys.argv[1]}/wiki.txt", "w") as f:
    for _ in range(16): f.write(text() + "\n")
PYEOF
for mode in fp32 bf16; do
    env=(RMU_PRECISION=$mode)
    env "${env[@]}" /usr/bin/time -f "peak RSS %M KB, wall %e s" "$RMU" unlearn -m "$DIR" \
        --forget "$W/bio.jsonl,$W/cyber.jsonl" --retain "$W/wiki.txt,$W/wiki.txt" --out "$W/out-$mode" \
        --max-num-batches "$STEPS" --log "$W/log-$mode.jsonl" 2>&1 | tail -2
    python3 - "$W/log-$mode.jsonl" "$mode" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
t = rows[-1]["seconds"]; n = len(rows)
# step 1 includes no warm-up beyond the mmap: report the mean and the projection
print("%s: %d steps, %.1f s/step (mean), projected 150 steps: %.2f h" % (sys.argv[2], n, t / n, t / n * 150 / 3600))
PYEOF
done
rm -rf "$W"/out-*

echo "== rmu eval (MMLU, a few questions)"
if [ -d "$SHARED/data/mmlu" ]; then
    for mode in fp32 bf16; do
        env=(RMU_PRECISION=$mode)
        env "${env[@]}" "$RMU" eval -m "$DIR" --tasks mmlu_anatomy --data "$SHARED/data/mmlu" --limit 8 --output "$W/r.json" 2>&1 | tail -3
    done
fi
