#!/usr/bin/env bash
# crash.sh - crash consistency of every writer (README "Guarantees" 1). Each command of the
# table below runs and is SIGKILLed at CRASH_KILLS (20) moments: odd ones at a random time of
# an uninterrupted run, even ones the moment its staging output appears (a staging folder,
# a .tmp file, the final files in a train work folder, a checkpoint being saved) plus a few
# random milliseconds. After every kill the output is absent or complete - equal to the
# uninterrupted run's output (tests/helpers/same_output.py: bytes, JSON without wall-clock
# fields), which also shows it loads - or, for the writers that keep finished records, only
# whole records of it; every checkpoint on disk is whole. Then a rerun (with --resume where
# the command has it) must end with the uninterrupted run's result, and no staging folder,
# .tmp file, lock file or work folder of the killed runs may be left.
# A writer is one line of the table (row NAME MODE KIND -- ARGS, @OUT@ = its output);
# CRASH_SEED reproduces a run's moments; the long campaign is `make soak`.
. "$(dirname "$0")/../lib.sh"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
KILLS=${CRASH_KILLS:-20}
SEED=${CRASH_SEED:-$(( $(date +%s) % 100000 ))}
RANDOM=$SEED
SAME=$ROOT/tests/helpers/same_output.py
T=$TMP
rm -rf "${T:?}"/* && mkdir -p "$T/ref" "$T/run"
if [ ! -x "$RMU" ]; then fail "crash: build" "$RMU is missing (run make)"; exit 0; fi
echo "# crash.sh: seed $SEED (CRASH_SEED=$SEED reproduces the kill moments), $KILLS kills per writer"

# ---- fixtures: a tiny model, an unlearned one, corpora, questions
"$RMU" init -o "$T/tiny" --shape tiny --dtype f32 --seed 1 >/dev/null 2>&1 || { fail "crash: fixtures" "rmu init"; exit 0; }
python3 - "$T" <<'PYEOF'
import json, random, sys
d = sys.argv[1]; r = random.Random(3)
animals = "owl heron fox otter newt crane vole stoat".split()
foods = "snails reeds fish beetles seeds worms".split()
words = "the cat sat on a mat and ran to the big red house where a dog lived".split()
with open(d + "/corpus.txt", "w") as f:
    for i in range(60): f.write(" ".join(r.choice(words) for _ in range(30)) + "\n")
with open(d + "/forget.jsonl", "w") as f:
    for i in range(12):
        f.write(json.dumps({"text": "the %s of the marsh eats %s and sleeps in the %s" % (r.choice(animals), r.choice(foods), r.choice(foods))}) + "\n")
with open(d + "/retain.jsonl", "w") as f:
    for i in range(8): f.write(json.dumps({"text": "ships carry grain to port %d on the coast" % i}) + "\n")
with open(d + "/mcq.jsonl", "w") as f:
    for a in animals:
        f.write(json.dumps({"question": "What does the %s eat?" % a, "choices": r.sample(foods, 4), "answer": r.randrange(4)}) + "\n")
qs = [{"question_id": 81, "category": "writing", "turns": ["Write a haiku.", "Now a limerick."]},
      {"question_id": 82, "category": "roleplay", "turns": ["Be a cat.", "Now a dog."]},
      {"question_id": 111, "category": "math", "turns": ["What is 2+2?", "And 3*3?"]},
      {"question_id": 121, "category": "coding", "turns": ["Print hi in C."]}]
with open(d + "/question.jsonl", "w") as f:
    for q in qs: f.write(json.dumps(q) + "\n")
import os
os.makedirs(d + "/answers", exist_ok=True)
for m in ("alpha", "beta"):
    with open("%s/answers/%s.jsonl" % (d, m), "w") as f:
        for q in qs:
            f.write(json.dumps({"question_id": q["question_id"], "answer_id": "a", "model_id": m, "tstamp": 1.0,
                                "choices": [{"index": 0, "turns": ["%s answer %d" % (m, i) for i in range(len(q["turns"]))]}]}) + "\n")
with open(d + "/ref_answer.jsonl", "w") as f:
    for q in qs[2:]:
        f.write(json.dumps({"question_id": q["question_id"], "model_id": "gpt-4", "choices": [{"index": 0, "turns": ["r"] * len(q["turns"])}]}) + "\n")
T = {"single-v1": "{question}|{answer}", "single-math-v1": "{question}|{ref_answer_1}|{answer}",
     "single-v1-multi-turn": "{question_1}|{answer_1}|{question_2}|{answer_2}",
     "single-math-v1-multi-turn": "{question_1}|{ref_answer_1}|{question_2}|{ref_answer_2}|{answer_1}|{answer_2}"}
with open(d + "/judge_prompts.jsonl", "w") as f:
    for k, v in T.items():
        f.write(json.dumps({"name": k, "type": "single", "system_prompt": "Judge", "prompt_template": v,
                            "description": "", "category": "general", "output_format": "[[rating]]"}) + "\n")
PYEOF
"$RMU" unlearn -m "$T/tiny" --forget "$T/forget.jsonl" --retain "$T/retain.jsonl" --out "$T/unl" --layer-id 1 \
    --layer-ids 1 --batch-size 2 --max-num-batches 4 --max-len 32 --retain-max-len 32 >/dev/null 2>&1 ||
    { fail "crash: fixtures" "rmu unlearn"; exit 0; }
JUDGE_PID=
trap '[ -n "$JUDGE_PID" ] && kill $JUDGE_PID 2>/dev/null' EXIT
python3 "$ROOT/tests/helpers/fake_judge.py" "$T/judge.port" "$T/judge.log" --slow 0.02 & JUDGE_PID=$!
for _ in $(seq 100); do [ -s "$T/judge.port" ] && break; sleep 0.05; done
JURL="http://127.0.0.1:$(cat "$T/judge.port" 2>/dev/null)/v1"

sleep_ms() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }

# Waits (at most ~5 s) until OUT's staging output exists or the process is gone.
wait_staging() { # out pid
    local out=$1 pid=$2 d b n=0
    d=$(dirname "$out") b=$(basename "$out")
    while kill -0 "$pid" 2>/dev/null && [ $n -lt 20000 ]; do
        if compgen -G "$d/.$b.rmu-staging.*" >/dev/null || compgen -G "$out.tmp.*" >/dev/null ||
           compgen -G "$out.rmu-work/config.json" >/dev/null || compgen -G "$out.rmu-work/checkpoint-*.tmp" >/dev/null ||
           compgen -G "$out.rmu-work/*.tmp.*" >/dev/null; then
            return
        fi
        n=$((n + 1))
    done
}

# Every checkpoint of a train-style work folder is whole: equal to the reference's when the
# reference kept it, else its state parses.
checkpoints_whole() { # work ref
    local c s
    for c in "$1"/checkpoint-*; do
        [ -d "$c" ] || continue
        case "$c" in *.tmp|*.del) continue ;; esac
        if [ -d "$2/$(basename "$c")" ]; then
            python3 "$SAME" "$c" "$2/$(basename "$c")" >/dev/null || { echo "$c differs from the reference"; return 1; }
        elif ! python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$c/trainer_state.json" 2>/dev/null ||
             [ ! -s "$c/state.safetensors" ]; then
            echo "$c is not whole"; return 1
        fi
    done
}

# Staging output of killed runs beside OUT (or inside its parent).
leftovers() { # out
    local d b
    d=$(dirname "$1") b=$(basename "$1")
    ls -A "$d" | grep -E "^\.$b\.rmu-(staging|old)\.|^$b\.tmp\.|^\.$b\.rmu-lock$|^$b\.rmu-work$" | tr '\n' ' '
}

# row NAME MODE KIND -- ARGS...: MODE fresh (rerun = the same command), resume (every run
# with --resume) or append (finished records are kept, a rerun continues); KIND model (a
# model folder: rmu info loads it), file, or records (JSON Lines kept record by record).
row() {
    local name=$1 mode=$2 kind=$3; shift 4
    local out=$T/run/$name ref=$T/ref/$name
    case "$name" in *.*) ;; *) [ "$kind" = model ] || out=$out.out ref=$ref.out ;; esac
    local args=("${@//@OUT@/$out}") extra=()
    [ "$mode" = resume ] && extra=(--resume)
    local t0 ms
    # the uninterrupted run writes where the killed ones will (outputs may record their path)
    t0=$(date +%s%N)
    if ! "$RMU" "${args[@]}" >/dev/null 2>"$T/$name.err"; then
        fail "crash: $name: uninterrupted run" "$(tail -n 2 "$T/$name.err" | tr '\n' ' ')"; return
    fi
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    mv "$out" "$ref" && rm -f "$out".*
    if [ "$kind" = model ] && ! "$RMU" info -m "$ref" >/dev/null 2>&1; then
        fail "crash: $name" "the uninterrupted output does not load"; return
    fi
    local absent=0 complete=0 partial=0 bad= i pid why
    for i in $(seq "$KILLS"); do
        "$RMU" "${args[@]}" "${extra[@]}" >/dev/null 2>&1 &
        pid=$!
        if [ $((i % 2)) = 1 ] || [ "$kind" = records ]; then sleep_ms $((RANDOM % (ms * 6 / 5 + 1)))
        else wait_staging "$out" "$pid"; sleep_ms $((RANDOM % 12)); fi
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        if [ -e "$out" ] && why=$(python3 "$SAME" "$out" "$ref"); then
            complete=$((complete + 1))
            { [ "$kind" != model ] || "$RMU" info -m "$out" >/dev/null 2>&1; } || { bad="kill $i: complete output does not load"; break; }
            rm -rf "$out" "$out.rmu-work" # start over, so later kills meet every phase again
        elif [ ! -e "$out" ]; then
            absent=$((absent + 1))
        elif [ "$kind" = records ] && why=$(python3 "$SAME" --subset "$out" "$ref"); then
            partial=$((partial + 1))
        else
            bad="kill $i after $(ls -A "$out" 2>/dev/null | head -c 200 | tr '\n' ' '): $why"; break
        fi
        if [ "$mode" = resume ] && ! why=$(checkpoints_whole "$out.rmu-work" "$ref"); then bad="kill $i: $why"; break; fi
    done
    if [ -n "$bad" ]; then fail "crash: $name: the output is absent or complete after every SIGKILL" "$bad"; return; fi
    if ! "$RMU" "${args[@]}" "${extra[@]}" >/dev/null 2>"$T/$name.rerun.err"; then
        fail "crash: $name: rerun after the kills" "$(tail -n 2 "$T/$name.rerun.err" | tr '\n' ' ')"; return
    fi
    if ! why=$(python3 "$SAME" --unordered "$out" "$ref"); then fail "crash: $name: the rerun ends as the uninterrupted run" "$why"; return; fi
    local left
    left=$(leftovers "$out")
    if [ -n "$left" ]; then fail "crash: $name: no staging output of killed runs is left" "$left"; return; fi
    ok "crash: $name: $KILLS SIGKILLs ($absent absent, $complete complete, $partial with whole records only, never half); the rerun equals the uninterrupted run; no staging left"
}

M=$T/tiny U=$T/unl
row init fresh model -- init -o @OUT@ --shape tiny --layers 4 --dtype f32 --seed 7
row train resume model -- train -m "$M" --data "$T/corpus.txt" --out @OUT@ --steps 12 --batch-size 2 --seq-len 32 \
    --save-every 3 --log @OUT@.log -q
row unlearn fresh model -- unlearn -m "$M" --forget "$T/forget.jsonl" --retain "$T/retain.jsonl" --out @OUT@ \
    --layer-id 1 --layer-ids 1 --batch-size 2 --max-num-batches 6 --max-len 32 --retain-max-len 32
row export.gguf fresh file -- export -m "$M" --gguf @OUT@ --type q8_0
row eval.json fresh file -- eval -m "$M" --tasks mcq --data "$T/mcq.jsonl" --output @OUT@ --quiet
row samples.jsonl fresh file -- eval -m "$M" --tasks mcq --data "$T/mcq.jsonl" --log-samples @OUT@ --quiet
row answers.jsonl append records -- mtbench -m "$M" --questions "$T/question.jsonl" --out @OUT@ --max-new-tokens 8
row judgments.jsonl append records -- mtbench judge --questions "$T/question.jsonl" --answers "$T/answers" \
    --judge-prompts "$T/judge_prompts.jsonl" --reference "$T/ref_answer.jsonl" --judge-model j --judge-url "$JURL" \
    --out @OUT@ -q
row relearn resume model -- attack relearn -m "$U" --data "$T/forget.jsonl" --samples 4 --steps 6 --seq-len 32 \
    --eval mcq --eval-data "$T/mcq.jsonl" --eval-every 2 --save-every 2 --out @OUT@ -q
row ablate fresh model -- attack ablate -m "$U" --base "$M" --forget "$T/forget.jsonl" --layers 1 --max-len 32 --out @OUT@ -q
# rmu quantize (FP8) arrives with its own branch: tested here once the command exists
if "$RMU" quantize --help >/dev/null 2>&1; then
    row quantize fresh model -- quantize -m "$M" --out @OUT@ --fp8 -q
else
    skip "crash: quantize" "rmu quantize is not in this build"
fi
