#!/usr/bin/env bash
# faults.sh - README "Guarantees" 2-5 through the CLI:
#  2. full disk: every writer pointed at a 1 MiB tmpfs filled to 0, 64 KiB and 512 KiB of free
#     space fails with one line naming its output and "No space left on device", exit 1, and
#     leaves nothing on the disk (skipped, with a note, where tmpfs cannot be mounted);
#  3. two runs, one output: a second train/unlearn on an OUT that a running one writes is
#     refused at its start naming the first's pid; the first is unaffected; a killed holder
#     does not block the next run;
#  4. Ctrl-C: SIGINT/SIGTERM stop train, unlearn, eval, mtbench and init within a second (or
#     the step in progress), leave no staging output or lock, say how to resume (train:
#     from its newest checkpoint, which --resume continues bit-identically), exit 130/143;
#  5. memory and input limits: the memory estimate against MemAvailable (a warning, or an
#     error with --strict-memory); a 1 GB JSON line, a 1 GB text line, a 10 MB chat turn, a
#     tokenizer.json over the size limit refused quickly with one clear line; a tokenizer.json
#     with a million merges loads and encodes in bounded time.
# FAULT_ROUNDS (1) repeats the signal loops (`make soak` runs more).
. "$(dirname "$0")/../lib.sh"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
ROUNDS=${FAULT_ROUNDS:-1}
SAME=$ROOT/tests/helpers/same_output.py
T=$TMP
rm -rf "${T:?}"/* 2>/dev/null
mkdir -p "$T"
if [ ! -x "$RMU" ]; then fail "faults: build" "$RMU is missing (run make)"; exit 0; fi

"$RMU" init -o "$T/tiny" --shape tiny --dtype f32 --seed 1 >/dev/null 2>&1 || { fail "faults: fixtures" "rmu init"; exit 0; }
python3 - "$T" <<'PYEOF'
import json, random, sys
d = sys.argv[1]; r = random.Random(5)
words = "the cat sat on a mat and ran to the big red house where a dog lived".split()
with open(d + "/corpus.txt", "w") as f:
    for i in range(200): f.write(" ".join(r.choice(words) for _ in range(30)) + "\n")
with open(d + "/forget.jsonl", "w") as f:
    for i in range(40): f.write(json.dumps({"text": "the owl of the marsh eats %s" % r.choice(words)}) + "\n")
with open(d + "/retain.jsonl", "w") as f:
    for i in range(40): f.write(json.dumps({"text": "ships carry grain to port %d" % i}) + "\n")
with open(d + "/forget-long.jsonl", "w") as f:  # enough batches for a run that lasts
    for i in range(4000): f.write(json.dumps({"text": "the owl of the marsh eats %s and %s" % (r.choice(words), r.choice(words))}) + "\n")
foods = "snails reeds fish beetles seeds worms".split()
with open(d + "/mcq.jsonl", "w") as f:
    for i in range(8): f.write(json.dumps({"question": "What does animal %d eat?" % i, "choices": r.sample(foods, 4), "answer": i % 4}) + "\n")
with open(d + "/mcq-long.jsonl", "w") as f:
    for i in range(3000): f.write(json.dumps({"question": "What does animal %d eat? %s" % (i, " ".join(r.choice(words) for _ in range(40))), "choices": r.sample(foods, 4), "answer": i % 4}) + "\n")
qs = [{"question_id": 81 + i, "category": "writing", "turns": ["Write a story number %d." % i, "Again."]} for i in range(40)]
with open(d + "/question.jsonl", "w") as f:
    for q in qs: f.write(json.dumps(q) + "\n")
import os
os.makedirs(d + "/answers", exist_ok=True)
with open(d + "/q4.jsonl", "w") as f:
    for q in qs[:4]: f.write(json.dumps(q) + "\n")
with open(d + "/answers/m.jsonl", "w") as f:
    for q in qs[:4]:
        f.write(json.dumps({"question_id": q["question_id"], "answer_id": "a", "model_id": "m", "tstamp": 1.0,
                            "choices": [{"index": 0, "turns": ["answer one", "answer two"]}]}) + "\n")
with open(d + "/judge_prompts.jsonl", "w") as f:
    for k, v in {"single-v1": "{question}|{answer}", "single-v1-multi-turn": "{question_1}|{answer_1}|{question_2}|{answer_2}",
                 "single-math-v1": "{question}|{ref_answer_1}|{answer}",
                 "single-math-v1-multi-turn": "{question_1}|{ref_answer_1}|{question_2}|{ref_answer_2}|{answer_1}|{answer_2}"}.items():
        f.write(json.dumps({"name": k, "type": "single", "system_prompt": "J", "prompt_template": v, "description": "",
                            "category": "general", "output_format": "[[rating]]"}) + "\n")
open(d + "/ref.jsonl", "w").close()
PYEOF
JUDGE_PID=
trap '[ -n "$JUDGE_PID" ] && kill $JUDGE_PID 2>/dev/null' EXIT
python3 "$ROOT/tests/helpers/fake_judge.py" "$T/judge.port" "$T/judge.log" & JUDGE_PID=$!
for _ in $(seq 100); do [ -s "$T/judge.port" ] && break; sleep 0.05; done
JURL="http://127.0.0.1:$(cat "$T/judge.port" 2>/dev/null)/v1"
M=$T/tiny U=$T/unl
"$RMU" unlearn -m "$M" --forget "$T/forget.jsonl" --retain "$T/retain.jsonl" --out "$U" --layer-id 1 --layer-ids 1 \
    --batch-size 2 --max-num-batches 4 --max-len 32 --retain-max-len 32 >/dev/null 2>&1 || { fail "faults: fixtures" "rmu unlearn"; exit 0; }

# ---------------------------------------------------------------- 2. full disk
MNT=$T/disk
mkdir -p "$MNT"
if mount -t tmpfs -o size=1m tmpfs "$MNT" 2>/dev/null; then
    umount "$MNT"
    # full NAME OUT FREE -- ARGS (@OUT@ = OUT on the small disk)
    full() {
        local name=$1 out=$MNT/$2 free=$3; shift 4
        local args=("${@//@OUT@/$out}") err rc left
        mount -t tmpfs -o size=1m tmpfs "$MNT" || { fail "full disk: $name" "mount failed"; return; }
        head -c $((1048576 - free)) /dev/zero > "$MNT/filler" 2>/dev/null
        err=$("$RMU" "${args[@]}" 2>&1 >/dev/null); rc=$?
        left=$(ls -A "$MNT" | grep -v '^filler$' | tr '\n' ' ')
        umount "$MNT"
        local lines
        lines=$(echo "$err" | grep -c '^rmu ')
        if [ $rc -eq 1 ] && [ "$lines" -eq 1 ] && echo "$err" | tail -n 1 | grep -q "No space left on device" &&
           echo "$err" | tail -n 1 | grep -qF "$(basename "$out")" && [ -z "$left" ]; then
            ok "full disk: $name with $((free / 1024)) KiB free fails with one line naming $(basename "$out") and ENOSPC, exit 1, nothing left"
        else
            fail "full disk: $name with $((free / 1024)) KiB free" "rc $rc, left [$left]: $(echo "$err" | tail -n 3 | tr '\n' ' ')"
        fi
    }
    for free in 0 65536 524288; do
        full init out $free -- init -o @OUT@ --shape tiny --layers 4 --dtype f32
        full train out $free -- train -m "$M" --data "$T/corpus.txt" --out @OUT@ --steps 2 --batch-size 2 --seq-len 32 -q
        full unlearn out $free -- unlearn -m "$M" --forget "$T/forget.jsonl" --retain "$T/retain.jsonl" --out @OUT@ \
            --layer-id 1 --layer-ids 1 --batch-size 2 --max-num-batches 2 --max-len 32 --retain-max-len 32
        full "attack relearn" out $free -- attack relearn -m "$M" --data "$T/forget.jsonl" --samples 2 --steps 2 \
            --seq-len 32 --eval mcq --eval-data "$T/mcq.jsonl" --out @OUT@ -q
        full "attack ablate" out $free -- attack ablate -m "$U" --base "$M" --forget "$T/forget.jsonl" --layers 1 \
            --max-len 32 --out @OUT@ -q
    done
    for free in 0 65536; do
        full export out.gguf $free -- export -m "$M" --gguf @OUT@ --type f32
    done
    full "eval --output" results.json 0 -- eval -m "$M" --tasks mcq --data "$T/mcq.jsonl" --output @OUT@ --quiet
    full "eval --log-samples" samples.jsonl 0 -- eval -m "$M" --tasks mcq --data "$T/mcq.jsonl" --log-samples @OUT@ --quiet
    full "mtbench answers" answers.jsonl 0 -- mtbench -m "$M" --questions "$T/question.jsonl" --out @OUT@ --max-new-tokens 2
    full "mtbench judge" judgments.jsonl 0 -- mtbench judge --questions "$T/q4.jsonl" --answers "$T/answers" \
        --judge-prompts "$T/judge_prompts.jsonl" --reference "$T/ref.jsonl" --judge-model j --judge-url "$JURL" --out @OUT@ -q
    if "$RMU" quantize --help >/dev/null 2>&1; then
        full quantize out 65536 -- quantize -m "$M" --out @OUT@ --fp8 -q
    else
        skip "full disk: quantize" "rmu quantize is not in this build"
    fi
    # a checkpoint that does not fit: the error names it; the checkpoints before it stay whole
    mount -t tmpfs -o size=8m tmpfs "$MNT"
    err=$("$RMU" train -m "$M" --data "$T/corpus.txt" --out "$MNT/ck" --steps 40 --batch-size 2 --seq-len 32 \
          --save-every 1 --keep-checkpoints 100 -q 2>&1); rc=$?
    ck=$(ls "$MNT/ck.rmu-work" 2>/dev/null | grep -c '^checkpoint-[0-9]*$')
    left=$({ ls -A "$MNT"; ls -A "$MNT/ck.rmu-work"; } 2>/dev/null | grep -E 'tmp|staging|lock|\.del' | tr '\n' ' ')
    if [ $rc -eq 1 ] && echo "$err" | grep -q "checkpoint-.*No space left on device" && [ "$ck" -ge 1 ] && [ -z "$left" ] &&
       "$RMU" train -m "$M" --data "$T/corpus.txt" --out "$MNT/ck" --steps 40 --batch-size 2 --seq-len 32 --save-every 1 \
           --keep-checkpoints 100 -q --resume 2>&1 | grep -q "No space left"; then
        ok "full disk: a checkpoint that does not fit fails naming it; $ck whole checkpoints stay for --resume, no partial one"
    else
        fail "full disk: checkpoint" "rc $rc, $ck checkpoints, left [$left]: $err"
    fi
    umount "$MNT"
else
    skip "full disk" "cannot mount a tmpfs here (needs root: mount -t tmpfs); run make test as root to check it"
fi

# ---------------------------------------------------------------- 3. two runs, one output
LONG=(-m "$M" --data "$T/corpus.txt" --steps 400 --batch-size 2 --seq-len 32 --save-every 50 -q)
"$RMU" train "${LONG[@]}" --out "$T/shared" >/dev/null 2>"$T/first.err" &
first=$!
for _ in $(seq 500); do [ -e "$T/.shared.rmu-lock" ] && break; sleep 0.01; done
t0=$(date +%s%N)
err2=$("$RMU" train "${LONG[@]}" --out "$T/shared" 2>&1); rc2=$?
err3=$("$RMU" unlearn -m "$M" --forget "$T/forget.jsonl" --retain "$T/retain.jsonl" --out "$T/shared" --layer-id 1 \
       --layer-ids 1 2>&1); rc3=$?
err4=$("$RMU" train "${LONG[@]}" --out "$T/shared/" --resume 2>&1); rc4=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
if [ $rc2 -eq 1 ] && [ $rc3 -eq 1 ] && [ $rc4 -eq 1 ] && echo "$err2" | grep -q "another rmu process (pid $first) is writing this folder" &&
   echo "$err3" | grep -q "another rmu process (pid $first)" && echo "$err4" | grep -q "another rmu process (pid $first)" &&
   kill -0 $first 2>/dev/null; then
    ok "lock: a second train, unlearn or --resume on a running run's OUT is refused at its start ($ms ms for three), naming pid $first"
else
    fail "lock: second run refused" "rc $rc2/$rc3/$rc4: $err2 | $err3 | $err4"
fi
kill -9 $first 2>/dev/null; wait $first 2>/dev/null
# the killed holder's lock file is left; it blocks nobody
if "$RMU" train "${LONG[@]/400/4}" --out "$T/shared" --resume >/dev/null 2>&1 && [ -f "$T/shared/model.safetensors" ] &&
   [ ! -e "$T/.shared.rmu-lock" ]; then
    ok "lock: a SIGKILLed holder does not block the next run (its lock file is reused and removed)"
else
    fail "lock: stale lock" "$(ls -a "$T" | tr '\n' ' ')"
fi
# two unlearn runs at once on one OUT: one wins whole, the other is refused (never interleaved)
UN=(-m "$M" --forget "$T/forget.jsonl" --retain "$T/retain.jsonl" --out "$T/both" --layer-id 1 --layer-ids 1
    --batch-size 2 --max-num-batches 20 --max-len 32 --retain-max-len 32)
"$RMU" unlearn "${UN[@]}" >/dev/null 2>"$T/u1.err" & u1=$!
"$RMU" unlearn "${UN[@]}" >/dev/null 2>"$T/u2.err" & u2=$!
wait $u1; r1=$?; wait $u2; r2=$?
if [ $((r1 + r2)) -eq 1 ] && cat "$T/u1.err" "$T/u2.err" | grep -qE "another rmu process|already exists" &&
   "$RMU" info -m "$T/both" >/dev/null 2>&1; then
    ok "lock: two unlearn runs started together on one OUT: one writes it whole, the other is refused"
else
    fail "lock: concurrent unlearn" "rc $r1/$r2: $(cat "$T/u1.err" "$T/u2.err" | grep rmu | tr '\n' ' ')"
fi

# ---------------------------------------------------------------- 4. Ctrl-C
# stop SIG NAME WAITFOR -- ARGS: starts the command, waits until WAITFOR exists (a glob), sends
# SIG and measures until it exits; sets rc, ms, err.
stop() {
    local sig=$1 name=$2 waitfor=$3; shift 4
    "$RMU" "$@" >/dev/null 2>"$T/$name.err" &
    local pid=$! n=0
    while ! compgen -G "$waitfor" >/dev/null && kill -0 $pid 2>/dev/null && [ $n -lt 3000 ]; do sleep 0.01; n=$((n + 1)); done
    sleep "${STOP_AFTER:-0.2}" # past the start (the handlers are installed first thing)
    local t0
    t0=$(date +%s%N)
    kill -"$sig" $pid 2>/dev/null
    wait $pid; rc=$?
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    err=$(grep '^rmu ' "$T/$name.err" | tail -n 1)
}
# no staging output of this run beside OUT: staging folders, .tmp files, locks, loose work files
clean_beside() { # out
    local d b
    d=$(dirname "$1") b=$(basename "$1")
    ls -A "$d" | grep -E "^\.$b\.rmu-(staging|lock)|^$b\.tmp\." | tr '\n' ' '
    [ -d "$1.rmu-work" ] && ls -A "$1.rmu-work" | grep -v '^checkpoint-[0-9]*$' | tr '\n' ' '
}
TR=(-m "$M" --data "$T/corpus.txt" --steps 60 --batch-size 4 --seq-len 64 --save-every 5 -q)
"$RMU" train "${TR[@]}" --out "$T/ref" >/dev/null 2>&1 || fail "ctrl-c: reference train" "failed"
for round in $(seq "$ROUNDS"); do
    rm -rf "$T/int" "$T/int.rmu-work"
    stop INT train "$T/int.rmu-work/checkpoint-10" -- train "${TR[@]}" --out "$T/int"
    left=$(clean_beside "$T/int")
    if [ $rc -eq 130 ] && [ $ms -lt 1500 ] && echo "$err" | grep -qE "interrupted by SIGINT; run the same command with --resume to continue from .*int\.rmu-work/checkpoint-[0-9]+$" &&
       [ -z "$left" ] && [ ! -e "$T/int" ]; then
        stop TERM train2 "$T/int.rmu-work/checkpoint-30" -- train "${TR[@]}" --out "$T/int" --resume
        rc1=$rc
        if [ $rc1 -eq 143 ] && "$RMU" train "${TR[@]}" --out "$T/int" --resume >/dev/null 2>&1 &&
           cmp -s "$T/int/model.safetensors" "$T/ref/model.safetensors"; then
            ok "ctrl-c: train stops on SIGINT in $ms ms (exit 130), says where to resume; SIGTERM exits 143; --resume ends bit-identical"
        else
            fail "ctrl-c: train resume after SIGTERM" "rc $rc1: $err"
        fi
    else
        fail "ctrl-c: train on SIGINT" "rc $rc in $ms ms, left [$left]: $err"
    fi
    UNL=(-m "$M" --forget "$T/forget-long.jsonl" --retain "$T/forget-long.jsonl" --out "$T/uint" --layer-id 1 --layer-ids 1
         --batch-size 4 --max-num-batches 400 --max-len 64 --retain-max-len 64 --log "$T/uint.log")
    stop TERM unlearn "$T/uint.log" -- unlearn "${UNL[@]}"
    left=$(clean_beside "$T/uint")
    if [ $rc -eq 143 ] && [ $ms -lt 1500 ] && echo "$err" | grep -q "interrupted by SIGTERM; .*uint was not written" &&
       [ -z "$left" ] && [ ! -e "$T/uint" ]; then
        ok "ctrl-c: unlearn stops on SIGTERM in $ms ms (exit 143), writes nothing, leaves no staging or lock"
    else
        fail "ctrl-c: unlearn on SIGTERM" "rc $rc in $ms ms, left [$left]: $err"
    fi
    # commands without a step loop: the watchdog stops them within the second
    stop INT eval "$T/tiny/config.json" -- eval -m "$M" --tasks mcq --data "$T/mcq-long.jsonl" --output "$T/res.json" --quiet
    left=$(clean_beside "$T/res.json")
    if [ $rc -eq 130 ] && [ $ms -lt 1500 ] && echo "$err" | grep -q "interrupted by SIGINT; .*res.json was not written" &&
       [ -z "$left" ] && [ ! -e "$T/res.json" ]; then
        ok "ctrl-c: eval stops on SIGINT in $ms ms (exit 130), no results file or temporary left"
    else
        fail "ctrl-c: eval on SIGINT" "rc $rc in $ms ms, left [$left]: $err"
    fi
    rm -f "$T/ans.jsonl"
    stop INT mtbench "$T/ans.jsonl" -- mtbench -m "$M" --questions "$T/question.jsonl" --out "$T/ans.jsonl" --max-new-tokens 64
    left=$(clean_beside "$T/ans.jsonl")
    if [ $rc -eq 130 ] && [ $ms -lt 1500 ] && echo "$err" | grep -q "what was finished is kept in .*ans.jsonl: run the same command again" &&
       [ -z "$left" ] && python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$T/ans.jsonl"; then
        ok "ctrl-c: mtbench stops on SIGINT in $ms ms (exit 130), finished answers kept whole for the rerun"
    else
        fail "ctrl-c: mtbench on SIGINT" "rc $rc in $ms ms, left [$left]: $err"
    fi
    STOP_AFTER=0.05 stop INT init "$T/.big.rmu-staging.*/model.safetensors*" -- init -o "$T/big" --shape small \
        --hidden 512 --intermediate 1536 --layers 16 --vocab 4096 --dtype f32
    left=$(clean_beside "$T/big")
    if [ $rc -eq 130 ] && [ $ms -lt 1500 ] && [ -z "$left" ] && [ ! -e "$T/big" ]; then
        ok "ctrl-c: init stops on SIGINT while writing in $ms ms (exit 130), its staging folder removed"
    elif [ $rc -eq 130 ] && [ -z "$left" ] && "$RMU" info -m "$T/big" >/dev/null 2>&1; then
        ok "ctrl-c: init got SIGINT as it finished: the folder is whole, nothing else left"
    else
        fail "ctrl-c: init on SIGINT" "rc $rc in $ms ms, left [$left]: $err"
    fi
    rm -rf "$T/big"
    # a second signal does not wait for the half second
    "$RMU" eval -m "$M" --tasks mcq --data "$T/mcq-long.jsonl" --output "$T/res2.json" --quiet >/dev/null 2>"$T/twice.err" &
    pid=$!
    sleep 0.3
    t0=$(date +%s%N)
    kill -INT $pid; sleep 0.05; kill -INT $pid
    wait $pid; rc=$?
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    if [ $rc -eq 130 ] && [ $ms -lt 400 ] && [ -z "$(clean_beside "$T/res2.json")" ] && [ ! -e "$T/res2.json" ]; then
        ok "ctrl-c: a second SIGINT stops at once ($ms ms after the first), nothing left"
    else
        fail "ctrl-c: second SIGINT" "rc $rc in $ms ms: $(cat "$T/twice.err")"
    fi
done

# ---------------------------------------------------------------- 5. memory and input limits
if out=$(RMU_MEM_AVAILABLE=1000000 "$RMU" generate -m "$M" -p "hi" -n 2 2>&1) &&
   echo "$out" | grep -q "^rmu generate: warning: this run needs about .* is available (MemAvailable); it may swap"; then
    ok "memory: a run over MemAvailable warns before mapping the model and goes on"
else
    fail "memory: warning" "$out"
fi
expect_error "memory: --strict-memory makes it an error" "refusing under --strict-memory" \
    env RMU_MEM_AVAILABLE=1000000 "$RMU_SAN" train -m "$M" --data "$T/corpus.txt" --out "$T/strict" --steps 1 --strict-memory
if [ ! -e "$T/strict" ] && out=$("$RMU" generate -m "$M" -p "hi" -n 2 --strict-memory 2>&1) && ! echo "$out" | grep -q warning; then
    ok "memory: within MemAvailable no warning, --strict-memory passes; a refused run wrote nothing"
else
    fail "memory: strict within limits" "$out"
fi
# training needs its state on top: a budget between inference and training trips only train
need() { # the estimate in MiB
    RMU_MEM_AVAILABLE=1 "$RMU" "$@" --strict-memory 2>&1 | grep -oE 'needs about [0-9.]+ [MG]iB' |
        awk '{print $4 == "GiB" ? $3 * 1024 : $3}'
}
gen=$(need generate -m "$M" -p hi --ctx 64) trn=$(need train -m "$M" --data "$T/corpus.txt" --out "$T/x" --seq-len 64)
if python3 -c "import sys; a, b = map(float, sys.argv[1:]); sys.exit(0 if b > a > 0 else 1)" "$gen" "$trn"; then
    ok "memory: the estimate counts training state ($trn MiB for train vs $gen MiB for generate)"
else
    fail "memory: estimate" "generate $gen, train $trn"
fi
if "$RMU" info -m "$M" | grep -qE "^memory .* = [0-9.]+ GiB \(available [0-9.]+ GiB\)"; then
    ok "memory: rmu info prints the library's estimate and MemAvailable"
else
    fail "memory: rmu info" "$("$RMU" info -m "$M" | grep memory)"
fi
# huge inputs: sparse 1 GB files (no disk used); refused fast with one line, memory bounded
printf '{"text": "' > "$T/huge.jsonl" && truncate -s 1G "$T/huge.jsonl"
printf 'a' > "$T/huge.txt" && truncate -s 1G "$T/huge.txt"
limit() { # name pattern -- command: one clear line, exit 1, in < 20 s, at most 400 MB resident
    local name=$1 pat=$2; shift 3
    local t0 err rc kb
    t0=$(date +%s)
    err=$(/usr/bin/env time -f 'RSS %M' "$@" 2>&1 >/dev/null); rc=$?
    kb=$(echo "$err" | grep -o 'RSS [0-9]*' | grep -o '[0-9]*')
    err=$(echo "$err" | grep -v -e '^RSS ' -e '^Command exited with')
    if [ $rc -eq 1 ] && [ "$(echo "$err" | wc -l)" -eq 1 ] && echo "$err" | grep -qE "$pat" &&
       [ $(( $(date +%s) - t0 )) -lt 20 ] && [ "${kb:-0}" -lt 400000 ]; then
        ok "limits: $name: refused in $(( $(date +%s) - t0 )) s with $(( ${kb:-0} / 1024 )) MB resident: $err"
    else
        fail "limits: $name" "rc $rc, ${kb:-?} kB: $err"
    fi
}
if /usr/bin/env time -f '%M' true >/dev/null 2>&1; then
    limit "a 1 GB JSON line in a corpus" "huge.jsonl:1: a line of more than 64 MiB" -- \
        "$RMU" train -m "$M" --data "$T/huge.jsonl" --out "$T/h1" -q
    limit "a 1 GB line of a text corpus" "huge.txt:1: a line of more than 64 MiB" -- \
        "$RMU" unlearn -m "$M" --forget "$T/huge.txt" --retain "$T/retain.jsonl" --out "$T/h2" --layer-id 1 --layer-ids 1
    limit "a 1 GB eval file" "huge.jsonl: 1073741824 bytes, over the limit" -- \
        "$RMU" eval -m "$M" --tasks mcq --data "$T/huge.jsonl" --quiet
    python3 -c "print('word ' * 2200000)" > "$T/turn.txt"
    limit "a 10 MB chat turn" "a turn of 11000000 bytes cannot fit the context of 512 tokens" -- \
        sh -c "'$RMU' chat -m '$M' --ctx 512 < '$T/turn.txt'"
    python3 -c "print('a' * (17 << 20))" > "$T/line.txt"
    limit "a 17 MB line to tokenize" "input line 1: longer than 16 MiB" -- \
        sh -c "'$RMU' tokenize -m '$M' < '$T/line.txt'"
    mkdir -p "$T/bigtok" && cp "$M"/config.json "$T/bigtok/" && cp "$M/model.safetensors" "$T/bigtok/" &&
        printf '{' > "$T/bigtok/tokenizer.json" && truncate -s 200M "$T/bigtok/tokenizer.json"
    limit "a 200 MB tokenizer.json" "tokenizer.json: 209715200 bytes, over the limit of 134217728 bytes" -- \
        "$RMU" tokenize -m "$T/bigtok"
else
    skip "limits" "/usr/bin/time is not installed (resident memory is measured with it)"
fi
rm -f "$T/huge.jsonl" "$T/huge.txt"
# a tokenizer with a million merges: within the limits, so it must load and encode in bounded time
python3 - "$T/mtok" <<'PYEOF'
import json, os, sys
d = sys.argv[1]; os.makedirs(d, exist_ok=True)
vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
for i in range(256): vocab["<0x%02X>" % i] = len(vocab)
alpha = [chr(0x4e00 + i) for i in range(1000)]  # 1000 single characters, then 1000 x 1000 pairs
for a in alpha: vocab[a] = len(vocab)
merges = []
for a in alpha:
    for b in alpha:
        vocab[a + b] = len(vocab); merges.append(a + " " + b)
tok = {"version": "1.0", "added_tokens": [{"id": i, "content": c, "special": True, "single_word": False, "lstrip": False,
       "rstrip": False, "normalized": False} for c, i in [("<unk>", 0), ("<s>", 1), ("</s>", 2)]],
       "normalizer": None, "pre_tokenizer": None, "decoder": None,
       "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True, "vocab": vocab, "merges": merges}}
json.dump(tok, open(d + "/tokenizer.json", "w"), ensure_ascii=False)
open(d + "/tokenizer_config.json", "w").write('{"add_bos_token": true}')
PYEOF
t0=$(date +%s)
if out=$(echo "一丁七万丈三上下" | timeout 120 "$RMU" tokenize --tokenizer "$T/mtok/tokenizer.json" 2>&1); then
    ok "limits: a tokenizer.json with a million merges loads and encodes in $(( $(date +%s) - t0 )) s: $out"
else
    fail "limits: a million merges" "$(echo "$out" | tail -n 2)"
fi
