#!/usr/bin/env bash
# mpi.sh - data parallelism over MPI ranks (make MPI=1, built here into build-mpi): 2 ranks x
# 1 thread against one process of the default build. eval: results.json (but its timing
# fields) and --log-samples byte-identical; unlearn and train: losses and every tensor within
# 1e-6 relative after 6 steps, rank 0 alone writing; mtbench: one answer file, the same
# answers; a rank that hits a bad input (MPMD: only rank 1 gets it) or a write that fails on
# rank 0 mid-run stops every rank with one message. Skipped where Open MPI is missing.
. "$(dirname "$0")/../lib.sh"
export OMP_NUM_THREADS=1
rm -rf "${TMP:?}"/*

if ! command -v mpirun >/dev/null || ! command -v mpicc >/dev/null; then
    skip "mpi: everything" "mpirun/mpicc not found (Debian: openmpi-bin libopenmpi-dev; scripts/install-deps installs them)"
    exit 0
fi
if ! make -C "$ROOT" --no-print-directory -j2 MPI=1 BUILD=build-mpi all >"$TMP/build.log" 2>&1; then
    fail "mpi: make MPI=1 BUILD=build-mpi" "$(grep -m3 -E 'error|Error' "$TMP/build.log" | tr '\n' ' ')"
    exit 0
fi
ok "mpi: make MPI=1 BUILD=build-mpi builds with mpicc"
RMUP=$ROOT/build-mpi/rmu
MPIRUN=(timeout 300 mpirun --oversubscribe)
[ "$(id -u)" -eq 0 ] && MPIRUN+=(--allow-run-as-root)
# Open MPI's shared-memory transport warns in some containers about ptrace-based copies.
export OMPI_MCA_btl_vader_single_copy_mechanism=none
np2() { "${MPIRUN[@]}" -n 2 "$RMUP" "$@"; }
# mpmd2 'ARGS0' 'ARGS1': rank 0 and rank 1 run rmu with different arguments (word-split).
mpmd2() { "${MPIRUN[@]}" -n 1 "$RMUP" $1 : -n 1 "$RMUP" $2; }
CMP=$ROOT/tests/helpers/compare_runs.py

if "${MPIRUN[@]}" -n 2 "$RMU" eval -m "$TMP/none" --tasks mcq --data x 2>"$TMP/nompi.err"; then
    fail "mpi: the default build refuses to run as 2 ranks" "exit 0"
elif grep -q "built without MPI" "$TMP/nompi.err"; then
    ok "mpi: the default build refuses to run as 2 ranks (each would run the whole job)"
else
    fail "mpi: the default build refuses to run as 2 ranks" "$(head -c 300 "$TMP/nompi.err")"
fi

# ---- fixtures: tiny models and generated corpora (the project's own, as eval.sh / unlearn.sh)
"$RMU" init -o "$TMP/tiny" --shape tiny --dtype f32 --seed 21 --sliding-window none >/dev/null 2>&1 &&
    "$RMU" init -o "$TMP/tiny8" --shape tiny --layers 8 --dtype f32 --seed 21 --sliding-window 6 --jitter-norms >/dev/null 2>&1 &&
    "$RMU" init -o "$TMP/tinyt" --shape tiny --dtype f32 --seed 1 --sliding-window 8 >/dev/null 2>&1 ||
    { fail "mpi: rmu init tiny models" "init failed"; exit 0; }
python3 - "$TMP" <<'PYEOF'
import json, random, sys
d = sys.argv[1]; r = random.Random(5)
words = "alpha beta gamma delta omega sigma kappa zeta theta lambda the cat dog sun moon red blue".split()
def text(n): return " ".join(r.choice(words) for _ in range(n))
for name in ("fa", "fb"):
    with open(f"{d}/{name}.jsonl", "w") as f:
        for i in range(40): f.write(json.dumps({"text": name + " " + text(r.randint(2, 14))}) + "\n")
with open(f"{d}/retain.txt", "w") as f:
    for i in range(40): f.write(text(r.randint(1, 12)) + "\n")
with open(f"{d}/corpus.jsonl", "w") as f:
    for i in range(60): f.write(json.dumps({"text": text(r.randint(3, 30))}) + "\n")
with open(f"{d}/corpus2.jsonl", "w") as f:  # same size, other text: "different data on one rank"
    for i in range(60): f.write(json.dumps({"text": text(r.randint(3, 30))}) + "\n")
# multiple choice: 2 to 5 choices; every question opens alike, so each row reuses the KV cache
# of the one before (across the ranks' boundary too)
with open(f"{d}/mcq.jsonl", "w") as f:
    for i in range(31):
        q = "the cat sat on the mat and " + ("the dog " if i % 3 == 0 else "") + text(r.randint(3, 18))
        k = r.choice([2, 3, 4, 5])
        ch = [text(r.randint(1, 4)) for _ in range(k)]
        f.write(json.dumps({"question": q.capitalize() + "?", "choices": ch, "answer": r.randrange(k)}) + "\n")
with open(f"{d}/mcq_long.jsonl", "w") as f:  # its last row cannot be scored with --max-length 40
    for i in range(12):
        ch = [text(2), text(2), text(60 if i == 11 else 2)]
        f.write(json.dumps({"question": text(5) + "?", "choices": ch, "answer": 0}) + "\n")
with open(f"{d}/mcq_bad.jsonl", "w") as f:
    f.write(json.dumps({"question": "q", "choices": ["a", "b"], "answer": 0}) + "\n{broken\n")
with open(f"{d}/questions.jsonl", "w") as f:
    for i, cat in enumerate(["writing", "math", "stem", "coding", "roleplay"]):
        f.write(json.dumps({"question_id": 81 + i, "category": cat, "turns": [text(6), text(4)]}) + "\n")
PYEOF

# ---- eval: byte-identical results.json (timing fields aside) and samples
# same_files A B: byte equality except the lines of results.json's timing fields.
same_files() {
    diff <(grep -Ev '"(date|seconds|questions_per_second)":' "$1") <(grep -Ev '"(date|seconds|questions_per_second)":' "$2") >/dev/null
}
eval_pair() { # NAME MODEL ARGS...: one process (default build) and 2 ranks, compared
    local name=$1 m=$2; shift 2
    if ! "$RMU" eval -m "$m" --quiet --output "$TMP/r1_$name.json" --log-samples "$TMP/s1_$name.jsonl" "$@" \
            >"$TMP/t1_$name.txt" 2>"$TMP/e1_$name.txt"; then
        fail "mpi eval $name: one process" "$(tail -n 2 "$TMP/e1_$name.txt")"; return
    fi
    if ! np2 eval -m "$m" --quiet --output "$TMP/r2_$name.json" --log-samples "$TMP/s2_$name.jsonl" "$@" \
            >"$TMP/t2_$name.txt" 2>"$TMP/e2_$name.txt"; then
        fail "mpi eval $name: 2 ranks" "$(tail -n 2 "$TMP/e2_$name.txt")"; return
    fi
    if same_files "$TMP/r1_$name.json" "$TMP/r2_$name.json" && cmp -s "$TMP/s1_$name.jsonl" "$TMP/s2_$name.jsonl" &&
       cmp -s "$TMP/t1_$name.txt" "$TMP/t2_$name.txt" && grep -qx "rmu eval: 2 ranks x 1 thread" "$TMP/e2_$name.txt"; then
        ok "mpi eval $name: 2 ranks x 1 thread == one process (results.json but timing, samples, table)"
    else
        fail "mpi eval $name: 2 ranks == one process" "$(diff "$TMP/r1_$name.json" "$TMP/r2_$name.json" | head -n 6 | tr '\n' ' ')"
    fi
}
eval_pair onepass "$TMP/tiny" --tasks mcq --data "$TMP/mcq.jsonl"
eval_pair batch-cloze "$TMP/tiny" --tasks mcq --data "$TMP/mcq.jsonl" --batch-size 5 --format cloze
eval_pair perchoice "$TMP/tiny" --tasks mcq --data "$TMP/mcq.jsonl" --no-onepass --bos
eval_pair nocache "$TMP/tiny" --tasks mcq --data "$TMP/mcq.jsonl" --no-prefix-cache --batch-size 4
if have_shared; then
    eval_pair mmlu-stories "$SHARED/models/stories260K" --tasks mmlu_anatomy,mmlu_astronomy,mmlu_virology \
        --data "$SHARED/data/mmlu" --limit 12 --num-fewshot 2 --batch-size 3
else
    skip "mpi eval mmlu-stories" "../shared/models/stories260K is absent"
fi

# ---- unlearn: data parallel RMU within 1e-6 of one process after 6 steps
uargs=(-m "$TMP/tiny8" --forget "$TMP/fa.jsonl,$TMP/fb.jsonl" --retain "$TMP/retain.txt,$TMP/retain.txt"
       --layer-id 3 --layer-ids 1,2,3 --alpha 10,5 --lr 1e-3 --batch-size 3 --max-num-batches 6
       --max-len 12,10 --retain-max-len 9 --seed 7)
unlearn_pair() { # NAME ARGS...
    local name=$1; shift
    if "$RMU" unlearn "${uargs[@]}" "$@" --out "$TMP/u1_$name" --log "$TMP/ul1_$name.jsonl" 2>"$TMP/ue1_$name.txt" &&
       np2 unlearn "${uargs[@]}" "$@" --out "$TMP/u2_$name" --log "$TMP/ul2_$name.jsonl" 2>"$TMP/ue2_$name.txt"; then
        check "mpi unlearn $name: 2 ranks == one process (losses and tensors within 1e-6 after 6 steps)" \
            "$PY" "$CMP" --tol 1e-6 --models "$TMP/u1_$name" "$TMP/u2_$name" \
            --logs "$TMP/ul1_$name.jsonl" "$TMP/ul2_$name.jsonl" --keys unlearn_loss,retain_loss
    else
        fail "mpi unlearn $name: runs" "$(tail -n 2 "$TMP/ue1_$name.txt" "$TMP/ue2_$name.txt" | tr '\n' ' ')"
    fi
}
unlearn_pair fixed --steering-coeffs 8,4
unlearn_pair adaptive --adaptive 5
grep -c '"step"' "$TMP/ul2_fixed.jsonl" 2>/dev/null | grep -qx 6 && [ "$(grep -c 'rmu unlearn: 6 steps' "$TMP/ue2_fixed.txt")" = 1 ] &&
    ok "mpi unlearn: one log of 6 steps and one summary line (rank 0 alone)" ||
    fail "mpi unlearn: rank 0 alone writes" "$(tail -n 3 "$TMP/ue2_fixed.txt" | tr '\n' ' ')"
# the MPI build on one process (mpirun -n 1) is the default build, bit for bit
if "${MPIRUN[@]}" -n 1 "$RMUP" unlearn "${uargs[@]}" --steering-coeffs 8,4 --out "$TMP/u3" 2>/dev/null &&
   cmp -s "$TMP/u1_fixed/model.safetensors" "$TMP/u3/model.safetensors"; then
    ok "mpi unlearn: mpirun -n 1 of the MPI build gives the default build's tensors bit for bit"
else
    fail "mpi unlearn: mpirun -n 1 == default build" "tensors differ or the run failed"
fi

# ---- train: data parallel fine-tuning, checkpoints and resume on rank 0
targs=(-m "$TMP/tinyt" --data "$TMP/corpus.jsonl" --trainable 'model.layers.{0..1}.mlp.*,model.norm.weight,lm_head.weight'
       --steps 6 --batch-size 5 --seq-len 24 --seed 3 --quiet --save-every 3)
if "$RMU" train "${targs[@]}" --out "$TMP/p1" --log "$TMP/tl1.jsonl" 2>"$TMP/te1.txt" &&
   np2 train "${targs[@]}" --out "$TMP/p2" --log "$TMP/tl2.jsonl" 2>"$TMP/te2.txt"; then
    check "mpi train: 2 ranks == one process (loss, grad norm, tensors within 1e-6 after 6 steps)" \
        "$PY" "$CMP" --tol 1e-6 --models "$TMP/p1" "$TMP/p2" --logs "$TMP/tl1.jsonl" "$TMP/tl2.jsonl" --keys loss,grad_norm
    [ -d "$TMP/p2/checkpoint-6" ] && [ -d "$TMP/p2/checkpoint-3" ] && [ ! -e "$TMP/p2.rmu-work" ] &&
        ok "mpi train: checkpoints 3 and 6 in OUT, work folder renamed (rank 0)" ||
        fail "mpi train: checkpoints" "$(ls "$TMP/p2" | tr '\n' ' ')"
else
    fail "mpi train: runs" "$(tail -n 2 "$TMP/te1.txt" "$TMP/te2.txt" | tr '\n' ' ')"
fi
# a NaN at step 5 stops both ranks with one message; resuming on 2 ranks from checkpoint-3
# (sent from rank 0) ends where the uninterrupted run ended
np2 train "${targs[@]}" --out "$TMP/p3" --log "$TMP/tl3.jsonl" --debug-nan-step 5 2>"$TMP/te3.txt"
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ "$(grep -c 'rmu train: step 5: loss is NaN' "$TMP/te3.txt")" = 1 ] &&
   np2 train "${targs[@]}" --out "$TMP/p3" --log "$TMP/tl3.jsonl" --resume 2>"$TMP/te4.txt"; then
    check "mpi train: stopped at a NaN (one message), resumed on 2 ranks == one uninterrupted process" \
        "$PY" "$CMP" --tol 1e-6 --models "$TMP/p1" "$TMP/p3" --logs "$TMP/tl1.jsonl" "$TMP/tl3.jsonl" --keys loss
else
    fail "mpi train: NaN stop and resume" "rc $rc: $(tail -n 2 "$TMP/te3.txt" "$TMP/te4.txt" 2>/dev/null | tr '\n' ' ')"
fi

# ---- mtbench: questions split over ranks, one answer file
mtb=(-m "$TMP/tiny" --questions "$TMP/questions.jsonl" --max-new-tokens 6 --template plain --model-id tiny)
if "$RMU" mtbench "${mtb[@]}" --out "$TMP/a1.jsonl" 2>"$TMP/me1.txt" && np2 mtbench "${mtb[@]}" --out "$TMP/a2.jsonl" 2>"$TMP/me2.txt"; then
    if diff <(sed 's/"tstamp": [0-9.e+]*//' "$TMP/a1.jsonl") <(sed 's/"tstamp": [0-9.e+]*//' "$TMP/a2.jsonl") >/dev/null &&
       [ "$(wc -l < "$TMP/a2.jsonl")" = 5 ] && grep -q "5 answered, 0 already in" "$TMP/me2.txt"; then
        ok "mpi mtbench: 2 ranks write one answer file equal to one process's (tstamp aside)"
    else
        fail "mpi mtbench: 2 ranks == one process" "$(diff "$TMP/a1.jsonl" "$TMP/a2.jsonl" | head -n 4 | tr '\n' ' ')"
    fi
    head -n 2 "$TMP/a1.jsonl" > "$TMP/a3.jsonl"
    np2 mtbench "${mtb[@]}" --out "$TMP/a3.jsonl" 2>"$TMP/me3.txt" && grep -q "3 answered, 2 already in" "$TMP/me3.txt" &&
        diff <(sed 's/"tstamp": [0-9.e+]*//' "$TMP/a1.jsonl") <(sed 's/"tstamp": [0-9.e+]*//' "$TMP/a3.jsonl") >/dev/null &&
        ok "mpi mtbench: 2 ranks resume a partial file" || fail "mpi mtbench: resume" "$(tail -n 1 "$TMP/me3.txt")"
else
    fail "mpi mtbench: runs" "$(tail -n 2 "$TMP/me1.txt" "$TMP/me2.txt" | tr '\n' ' ')"
fi

# ---- one rank fails: every rank stops (no hang: timeout 300 s), one message naming the rank
# one_error NAME PATTERN CMD...: exits non-zero (not the timeout), exactly one "rmu " line on
# stderr besides the layout, matching PATTERN.
one_error() {
    local name=$1 pat=$2; shift 2
    "$@" >/dev/null 2>"$TMP/err.txt"
    local rc=$?
    local lines
    lines=$(grep -E '^rmu [a-z]+: ' "$TMP/err.txt" | grep -v ' ranks x ')
    if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then
        fail "$name" "exit $rc (0: no error; 124: hung)"
    elif [ "$(printf '%s\n' "$lines" | grep -c .)" != 1 ] || ! printf '%s\n' "$lines" | grep -Eq -- "$pat"; then
        fail "$name" "stderr: $(head -c 400 "$TMP/err.txt" | tr '\n' ' ')"
    else
        ok "$name"
    fi
}
U="unlearn -m $TMP/tiny8 --layer-id 3 --layer-ids 1,2,3 --batch-size 3 --max-num-batches 4 --max-len 12,10 --retain-max-len 9"
one_error "mpi unlearn: a missing corpus on rank 1 only stops both ranks" "retain: .*missing.txt.* \(rank 1\)$" \
    mpmd2 "$U --forget $TMP/fa.jsonl,$TMP/fb.jsonl --retain $TMP/retain.txt,$TMP/retain.txt --out $TMP/ub1" \
          "$U --forget $TMP/fa.jsonl,$TMP/fb.jsonl --retain $TMP/retain.txt,$TMP/missing.txt --out $TMP/ub1"
[ ! -e "$TMP/ub1" ] && ok "mpi unlearn: nothing written after the failure" || fail "mpi unlearn: nothing written" "$TMP/ub1 exists"
T="train -m $TMP/tinyt --steps 4 --batch-size 4 --seq-len 16 --quiet --out $TMP/pb"
one_error "mpi train: different data on rank 1 is refused on every rank" "rank 1: training data or settings differ from rank 0's" \
    mpmd2 "$T --data $TMP/corpus.jsonl" "$T --data $TMP/corpus2.jsonl"
one_error "mpi train: a log write failing on rank 0 mid-run stops both ranks" "--log: /dev/full: write failed" \
    np2 train -m "$TMP/tinyt" --data "$TMP/corpus.jsonl" --steps 4 --batch-size 4 --seq-len 16 --quiet --out "$TMP/pc" --log /dev/full
# SIGTERM to the job (what scancel and mpirun send) while both ranks train: every rank stops
# (the cancel flag is agreed between steps, so none waits alone in an allreduce), no OUT, the
# checkpoints kept for --resume
rm -rf "$TMP/ps" "$TMP/ps.rmu-work"
np2 train -m "$TMP/tinyt" --data "$TMP/corpus.jsonl" --steps 20000 --batch-size 4 --seq-len 16 --save-every 2 \
    --quiet --out "$TMP/ps" 2>"$TMP/sig.txt" &
pid=$!
# wait for a first checkpoint (older ones are pruned within steps: look for any; a loaded
# machine starts two ranks slowly, so up to 2 minutes)
ckpt() { ls -d "$TMP"/ps.rmu-work/checkpoint-* 2>/dev/null | grep -qE 'checkpoint-[0-9]+$'; }
for _ in $(seq 1200); do ckpt && break; sleep 0.1; done
ckpt || echo "(no checkpoint after 2 minutes)" >>"$TMP/sig.txt"
t0=$(date +%s)
kill -TERM $pid
wait $pid
rc=$?
dt=$(( $(date +%s) - t0 ))
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $dt -lt 30 ] && [ ! -e "$TMP/ps" ] && ckpt; then
    ok "mpi train: SIGTERM to the job stops both ranks in ${dt} s (exit $rc), no OUT, checkpoints kept"
else
    fail "mpi train: SIGTERM to the job" "rc $rc after ${dt} s: $(tail -n 2 "$TMP/sig.txt" | tr '\n' ' ')"
fi
E="eval -m $TMP/tiny --tasks mcq --quiet"
one_error "mpi eval: a malformed data file on rank 1 only stops both ranks" "mcq_bad.jsonl:2: .*\(rank 1\)$" \
    mpmd2 "$E --data $TMP/mcq.jsonl" "$E --data $TMP/mcq_bad.jsonl"
# a row that cannot be scored, late in the file: rank 1 meets it mid-run, while rank 0 scores
# its share; the message is the one a single process gives
"$RMU" eval -m "$TMP/tiny" --tasks mcq --data "$TMP/mcq_long.jsonl" --format cloze --max-length 40 --quiet 2>"$TMP/long1.txt" >/dev/null
msg=$(sed -n 's/^rmu eval: //p' "$TMP/long1.txt" | head -n 1)
if [ -n "$msg" ]; then
    one_error "mpi eval: a row failing on rank 1 mid-run stops both ranks with the one-process message" \
        "^rmu eval: $(printf '%s' "$msg" | sed 's/[][\.*^$(){}+?|]/\\&/g') \(rank 1\)$" \
        np2 eval -m "$TMP/tiny" --tasks mcq --data "$TMP/mcq_long.jsonl" --format cloze --max-length 40 --quiet
else
    fail "mpi eval: a row failing mid-run" "the one-process run did not fail: $(tail -n 1 "$TMP/long1.txt")"
fi
