#!/usr/bin/env bash
# determinism.sh - README "Guarantees" 7: the same command with the same seed writes the same
# bytes, run after run and with 1 or 2 threads (OMP_NUM_THREADS). Every writer runs three
# times in the same place (1 thread, 2 threads, 2 threads again); all its outputs must be
# equal byte for byte, except in JSON files the wall-clock fields README lists
# (tests/helpers/same_output.py: seconds, date, tstamp, questions_per_second, step_s,
# tokens_per_s), which are also checked to be the only differences.
. "$(dirname "$0")/../lib.sh"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
SAME=$ROOT/tests/helpers/same_output.py
T=$TMP
rm -rf "${T:?}"/* 2>/dev/null
mkdir -p "$T"
if [ ! -x "$RMU" ]; then fail "determinism: build" "$RMU is missing (run make)"; exit 0; fi
"$RMU" init -o "$T/m" --shape tiny --dtype bf16 --seed 3 --layers 3 >/dev/null 2>&1 || { fail "determinism: fixtures" "init"; exit 0; }
python3 - "$T" <<'PYEOF'
import json, random, sys
d = sys.argv[1]; r = random.Random(7)
words = "the owl fox marsh eats reeds fish sleeps in a nest by water and sings at night".split()
with open(d + "/corpus.jsonl", "w") as f:
    for i in range(48): f.write(json.dumps({"text": " ".join(r.choice(words) for _ in range(r.randrange(8, 40)))}) + "\n")
with open(d + "/retain.txt", "w") as f:
    for i in range(48): f.write(" ".join(r.choice(words) for _ in range(r.randrange(8, 40))) + "\n")
foods = "snails reeds fish beetles seeds worms".split()
with open(d + "/mcq.jsonl", "w") as f:
    for i in range(24): f.write(json.dumps({"question": "What does animal %d eat?" % i, "choices": r.sample(foods, 4), "answer": i % 4}) + "\n")
with open(d + "/question.jsonl", "w") as f:  # writing: sampled at temperature 0.7; math: greedy
    for i, c in enumerate(["writing", "math", "roleplay"]):
        f.write(json.dumps({"question_id": 1 + i, "category": c, "turns": ["Tell me about %s." % c, "More."]}) + "\n")
PYEOF
M=$T/m

# det NAME OUTPUT... -- ARGS: ARGS run three times with @D@ = $T/run (moved aside after each run).
det() {
    local name=$1 outs=() ; shift
    while [ "$1" != -- ]; do outs+=("$1"); shift; done
    shift
    local args=("${@//@D@/$T/run}") k threads why
    for k in 1 2 3; do
        threads=$([ $k = 1 ] && echo 1 || echo 2)
        rm -rf "$T/run" && mkdir -p "$T/run"
        if ! OMP_NUM_THREADS=$threads "$RMU" "${args[@]}" >"$T/run/stdout" 2>"$T/$name.err"; then
            fail "determinism: $name" "run $k failed: $(tail -n 2 "$T/$name.err" | tr '\n' ' ')"; return
        fi
        rm -rf "$T/r$k" && mv "$T/run" "$T/r$k"
    done
    for o in "${outs[@]}"; do
        for k in 2 3; do
            if ! why=$(python3 "$SAME" "$T/r$k/$o" "$T/r1/$o"); then
                fail "determinism: $name: $o" "run $k ($([ $k = 2 ] && echo "2 threads" || echo "again")): $why"; return
            fi
        done
    done
    ok "determinism: $name: ${outs[*]} identical over 3 runs, 1 and 2 threads"
}

det init out -- init -o @D@/out --shape tiny --layers 2 --dtype bf16 --seed 9
det train out train.jsonl -- train -m "$M" --data "$T/corpus.jsonl" --out @D@/out --steps 8 --batch-size 4 --seq-len 48 \
    --save-every 4 --lr 1e-3 --warmup 2 --schedule cosine --weight-decay 0.01 --log @D@/train.jsonl -q
det unlearn out unlearn.jsonl -- unlearn -m "$M" --forget "$T/corpus.jsonl,$T/corpus.jsonl" --retain "$T/retain.txt,$T/retain.txt" \
    --layer-id 2 --layer-ids 1,2 --batch-size 3 --max-num-batches 4 --max-len 40,48 --retain-max-len 40 \
    --steering-coeffs 6.5,3 --alpha 10,20 --lr 1e-3 --seed 5 --log @D@/unlearn.jsonl --out @D@/out
det "unlearn --adaptive" out -- unlearn -m "$M" --forget "$T/corpus.jsonl" --retain "$T/retain.txt" --layer-id 2 \
    --layer-ids 2 --batch-size 2 --max-num-batches 3 --max-len 40 --retain-max-len 40 --adaptive 2 --out @D@/out
det eval results.json samples.jsonl stdout -- eval -m "$M" --tasks mcq --data "$T/mcq.jsonl,mcq_dev=$T/mcq.jsonl" --num-fewshot 2 \
    --output @D@/results.json --log-samples @D@/samples.jsonl
det "eval cloze" results.json -- eval -m "$M" --tasks mcq --data "$T/mcq.jsonl" --format cloze --batch-size 4 \
    --output @D@/results.json --quiet
det generate stdout -- generate -m "$M" -p "the owl" -n 24 --temp 0.8 --top-p 0.9 --seed 11
det mtbench answers.jsonl -- mtbench -m "$M" --questions "$T/question.jsonl" --out @D@/answers.jsonl --max-new-tokens 12 --seed 4
det "attack relearn" out -- attack relearn -m "$M" --data "$T/corpus.jsonl" --samples 6 --steps 4 --seq-len 48 \
    --eval mcq --eval-data "$T/mcq.jsonl" --eval-every 2 --save-every 2 --out @D@/out -q
"$RMU" unlearn -m "$M" --forget "$T/corpus.jsonl" --retain "$T/retain.txt" --layer-id 2 --layer-ids 2 --batch-size 2 \
    --max-num-batches 3 --max-len 40 --retain-max-len 40 --out "$T/unl" >/dev/null 2>&1
det "attack ablate" out -- attack ablate -m "$T/unl" --base "$M" --forget "$T/corpus.jsonl" --retain "$T/retain.txt" \
    --layers 1,2 --directions 2 --max-len 40 --out @D@/out -q
det export out.gguf -- export -m "$M" --gguf @D@/out.gguf --type q8_0
