#!/usr/bin/env bash
# attack.sh - `rmu attack relearn` and `rmu attack ablate` through the CLI, on random tiny
# models: curve points equal `rmu eval` on the models saved at those steps, the data is
# exactly the first N texts (`rmu train` on them gives the same weights), SIGKILL + --resume
# ends identical, the ablated residual stream has no component along the directions at any
# layer (hidden-state dumps of `rmu logits`), a direction nothing writes to changes no logit,
# the PyTorch check of the estimate and the projection, results files as levels, and bad
# input that gets one line and writes nothing.
. "$(dirname "$0")/../lib.sh"

T=$TMP
rm -rf "$T"/*
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
U=$T/unlearned B=$T/base
for m in "$U:1" "$B:2"; do
    if ! "$RMU" init -o "${m%%:*}" --shape tiny --dtype f32 --seed "${m##*:}" --jitter-norms --max-pos 128 \
            2>"$T/init.err"; then
        fail "init tiny models" "$(cat "$T/init.err")"; exit 0
    fi
done
"$RMU" init -o "$T/wide" --shape tiny --hidden 128 --dtype f32 --seed 3 >/dev/null 2>&1
python3 - "$T" <<'PYEOF'
import json, random, sys
d = sys.argv[1]; r = random.Random(3)
animals = "owl heron fox otter newt crane vole stoat".split()
foods = "snails reeds fish beetles seeds worms".split()
with open(d + "/forget.jsonl", "w") as f, open(d + "/forget.txt", "w") as g:
    for i in range(12):
        t = "the %s of the marsh eats %s and sleeps in the %s" % (r.choice(animals), r.choice(foods), r.choice(foods))
        f.write(json.dumps({"text": t}) + "\n"); g.write(t + "\n")
with open(d + "/first4.jsonl", "w") as f:
    for line in open(d + "/forget.jsonl").readlines()[:4]: f.write(line)
with open(d + "/retain.jsonl", "w") as f, open(d + "/retain.txt", "w") as g:
    for i in range(8):
        t = "ships carry grain to port %d on the coast" % i
        f.write(json.dumps({"text": t}) + "\n"); g.write(t + "\n")
with open(d + "/mcq.jsonl", "w") as f:
    for a in animals:
        ch = r.sample(foods, 4)
        f.write(json.dumps({"question": "What does the %s eat?" % a, "choices": ch, "answer": r.randrange(4)}) + "\n")
open(d + "/empty.jsonl", "w").close()
PYEOF
EV=(--eval mcq --eval-data "$T/mcq.jsonl" --eval-format cloze)

# ---- relearn: the curve against `rmu eval` on the saved models
RL=(-m "$U" --data "$T/forget.jsonl" --samples 4 --steps 6 --seq-len 64 --lr 1e-2 --eval-every 2 --seed 5 "${EV[@]}" -q)
if "$RMU" attack relearn "${RL[@]}" --save-models --base "$B" --out "$T/rl" >"$T/rl.out" 2>"$T/rl.err"; then
    ok "relearn runs (6 steps, points every 2, models saved)"
else
    fail "relearn runs" "$(tail -n 3 "$T/rl.err" | tr '\n' ' ')"; exit 0
fi
evals=1
for s in 0 2 4 6; do
    dir=$T/rl/attack/step-$s; [ $s = 0 ] && dir=$U
    "$RMU" eval -m "$dir" --tasks mcq --data "$T/mcq.jsonl" --format cloze --output "$T/ev$s.json" --quiet >/dev/null 2>&1 || evals=0
done
"$RMU" eval -m "$B" --tasks mcq --data "$T/mcq.jsonl" --format cloze --output "$T/base.json" --quiet >/dev/null 2>&1 || evals=0
check "relearn: every curve point equals rmu eval on the model saved at that step; base and recovered as rmu eval gives" \
    python3 - "$T" <<'PYEOF'
import json, sys
d = sys.argv[1]
r = json.load(open(d + "/rl/attack/relearn.json"))
ev = {s: json.load(open("%s/ev%d.json" % (d, s)))["results"]["mcq"]["acc,none"] for s in (0, 2, 4, 6)}
base = json.load(open(d + "/base.json"))["results"]["mcq"]["acc,none"]
pts = {p["step"]: p["acc"]["mcq"] for p in r["curve"]}
assert sorted(pts) == [0, 2, 4, 6], pts
assert all(pts[s] == ev[s] for s in pts), (pts, ev)
a = r["accuracy"]["mcq"]
assert a["base"] == base and a["unlearned"] == ev[0] and a["attacked"] == ev[6], (a, base, ev)
want = None if base == ev[0] else (ev[6] - ev[0]) / (base - ev[0])
assert (a["recovered"] is None and want is None) or abs(a["recovered"] - want) < 1e-12, (a, want)
assert len(open(d + "/rl/attack/curve.jsonl").readlines()) == 1 + 4
PYEOF
[ $evals = 1 ] || fail "relearn: rmu eval of the saved models" "an rmu eval run failed"
if grep -q "| mcq " "$T/rl.out" && grep -q "recovered" "$T/rl.out" && head -c 100 "$T/rl/attack/relearn.svg" | grep -q "<svg"; then
    ok "relearn prints the table with the recovered fraction and writes the SVG"
else
    fail "relearn prints the table" "$(cat "$T/rl.out")"
fi
# exactly the first N texts: their SHA-256s, and `rmu train` on a file of just those
check "relearn: samples are the first 4 texts (SHA-256 of each)" python3 - "$T" <<'PYEOF'
import hashlib, json, sys
d = sys.argv[1]
r = json.load(open(d + "/rl/attack/relearn.json"))
texts = [json.loads(l)["text"] for l in open(d + "/forget.jsonl")][:4]
assert r["settings"]["samples_sha256"] == [hashlib.sha256(t.encode()).hexdigest() for t in texts]
PYEOF
if "$RMU" train -m "$U" --data "$T/first4.jsonl" --out "$T/tr4" --steps 6 --batch-size 1 --no-pack --seq-len 64 \
        --lr 1e-2 --weight-decay 0.01 --seed 5 -q >/dev/null 2>&1 && cmp -s "$T/tr4/model.safetensors" "$T/rl/model.safetensors"; then
    ok "relearn: rmu train on the first 4 texts with the same settings gives identical weights"
else
    fail "relearn: same weights as rmu train on the first 4 texts" "weights differ"
fi
# results files as the base level give the same numbers as the base model
if "$RMU" attack relearn "${RL[@]}" --base "$T/base.json" --out "$T/rl_res" >/dev/null 2>&1 &&
   python3 -c 'import json,sys; a,b=(json.load(open(p))["accuracy"] for p in sys.argv[1:]); assert a==b, (a,b)' \
       "$T/rl/attack/relearn.json" "$T/rl_res/attack/relearn.json"; then
    ok "relearn: --base results.json gives the same levels as --base MODEL"
else
    fail "relearn: --base results.json" "levels differ or run failed"
fi

# ---- relearn: SIGKILL + --resume ends identical (weights and curve)
rr() { # the resumable run's flags, with --eval-every $1
    RR=(-m "$U" --data "$T/forget.jsonl" --samples 8 --steps 40 --seq-len 64 --lr 1e-2 --eval-every "$1" --save-every 2
        "${EV[@]}" -q)
}
rr 3
if "$RMU" attack relearn "${RR[@]}" --out "$T/full" >/dev/null 2>&1; then
    kills=0
    for delay in 0.4 0.7 0.3 0.9; do
        OMP_NUM_THREADS=1 "$RMU" attack relearn "${RR[@]}" --out "$T/killed" --resume >/dev/null 2>&1 &
        pid=$!
        sleep "$delay"
        if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
        wait "$pid" 2>/dev/null
        if [ -e "$T/killed" ] && [ ! -f "$T/killed/attack/relearn.json" ]; then
            fail "relearn: a killed run leaves no half OUT" "$(ls "$T/killed" | tr '\n' ' ')"
        fi
    done
    if "$RMU" attack relearn "${RR[@]}" --out "$T/killed" --resume >/dev/null 2>"$T/resume.err" &&
       cmp -s "$T/full/model.safetensors" "$T/killed/model.safetensors" &&
       python3 -c 'import json,sys; a,b=(json.load(open(p)) for p in sys.argv[1:]); assert a["curve"]==b["curve"] and a["accuracy"]==b["accuracy"], "curves differ"' \
           "$T/full/attack/relearn.json" "$T/killed/attack/relearn.json" &&
       [ "$(wc -l < "$T/killed/attack/curve.jsonl")" -eq "$(wc -l < "$T/full/attack/curve.jsonl")" ]; then
        ok "relearn: $kills SIGKILLs + --resume end with the same weights and the same curve"
    else
        fail "relearn: SIGKILL + --resume" "$(cat "$T/resume.err") (weights or curve differ)"
    fi
    if out=$("$RMU" attack relearn "${RR[@]}" --out "$T/killed" --resume 2>&1) && echo "$out" | grep -q "already complete"; then
        ok "relearn: --resume on a finished OUT reports its result"
    else
        fail "relearn: --resume on a finished OUT" "$out"
    fi
    rr 4
    expect_error "relearn: --resume with other evaluation settings is refused" "^rmu attack relearn: --resume: .*eval_every differs" \
        "$RMU" attack relearn "${RR[@]}" --out "$T/killed" --resume
else
    fail "relearn: uninterrupted run" "failed"
fi

# ---- ablate: no residual component along the directions, at every layer
AB=(-m "$U" --base "$B" --forget "$T/forget.jsonl" --retain "$T/retain.jsonl" --layers 1,3 --directions 2 --max-len 64)
if "$RMU" attack ablate "${AB[@]}" "${EV[@]}" --out "$T/ab" >"$T/ab.out" 2>"$T/ab.err"; then
    ok "ablate runs (2 directions from layers 1 and 3, forget and retain)"
else
    fail "ablate runs" "$(tail -n 3 "$T/ab.err" | tr '\n' ' ')"; exit 0
fi
ids="1 17 250 33 400 7 88 9 120 301 5 6"
dumps=1
for l in 0 1 2 3; do
    "$RMU" logits -m "$T/ab" --ids "$ids" --out "$T/lg.f32" --hidden-layer $l --hidden-out "$T/h$l.f32" >/dev/null 2>&1 || dumps=0
done
[ $dumps = 1 ] || fail "ablate: hidden-state dumps" "rmu logits failed"
check "ablate: the residual stream after every layer has no component along the directions (1e-5)" \
    python3 - "$T" <<'PYEOF'
import array, json, struct, sys
d = sys.argv[1]
raw = open(d + "/ab/attack/directions.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]; h = json.loads(raw[8:8 + n])["directions"]
k, C = h["shape"]
v = array.array("f"); v.frombytes(raw[8 + n + h["data_offsets"][0]: 8 + n + h["data_offsets"][1]])
dirs = [v[i * C:(i + 1) * C] for i in range(k)]
worst = norm = 0
for l in range(4):
    x = array.array("f"); x.frombytes(open("%s/h%d.f32" % (d, l), "rb").read())
    for p in range(len(x) // C):
        row = x[p * C:(p + 1) * C]
        norm = max(norm, sum(a * a for a in row) ** 0.5)
        for dd in dirs:
            worst = max(worst, abs(sum(a * b for a, b in zip(row, dd))))
assert norm > 0.1 and worst < 1e-5, (worst, norm)
PYEOF
"$RMU" eval -m "$T/ab" --tasks mcq --data "$T/mcq.jsonl" --format cloze --output "$T/evab.json" --quiet >/dev/null 2>&1
check "ablate: base / unlearned / ablated accuracies equal rmu eval of the three models" python3 - "$T" <<'PYEOF'
import json, sys
d = sys.argv[1]
a = json.load(open(d + "/ab/attack/ablate.json"))
acc = a["accuracy"]["mcq"]
ev = lambda f: json.load(open(d + "/" + f))["results"]["mcq"]["acc,none"]
assert acc["base"] == ev("base.json") and acc["unlearned"] == ev("ev0.json") and acc["attacked"] == ev("evab.json"), acc
assert a["k"] == 2 and len(a["explained"]) == 2 and len(a["difference_vectors"]) == 4, a
assert a["tensors_rewritten"] == 1 + 2 * 4
PYEOF
# a direction nothing writes to: remove e_5, then remove it again -> every logit identical
python3 - "$T" <<'PYEOF'
import json, struct, sys
d = sys.argv[1]; C = 64
vals = [0.0] * C; vals[5] = 1.0
h = json.dumps({"directions": {"dtype": "F32", "shape": [1, C], "data_offsets": [0, 4 * C]}}).encode()
h += b" " * (-len(h) % 8)
open(d + "/e5.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + struct.pack("<%df" % C, *vals))
PYEOF
if "$RMU" attack ablate -m "$U" --apply "$T/e5.safetensors" --out "$T/o1" -q >/dev/null 2>&1 &&
   "$RMU" attack ablate -m "$T/o1" --apply "$T/e5.safetensors" --out "$T/o2" -q >/dev/null 2>&1 &&
   "$RMU" logits -m "$T/o1" --ids "$ids" --out "$T/l1.f32" && "$RMU" logits -m "$T/o2" --ids "$ids" --out "$T/l2.f32" &&
   "$RMU" logits -m "$U" --ids "$ids" --out "$T/l0.f32" && cmp -s "$T/l1.f32" "$T/l2.f32" && ! cmp -s "$T/l0.f32" "$T/l1.f32"; then
    ok "ablate: removing a direction nothing writes to changes no logit"
else
    fail "ablate: a direction nothing writes to" "logits differ or a run failed"
fi
if have_torch; then
    "$RMU" tokenize -m "$U" < "$T/forget.txt" > "$T/fids.txt" && "$RMU" tokenize -m "$U" < "$T/retain.txt" > "$T/rids.txt"
    if out=$("$PY" "$ROOT/tests/oracle/torch_ablate.py" --unlearned "$U" --base "$B" --out "$T/ab" --forget-ids "$T/fids.txt" \
                --retain-ids "$T/rids.txt" --layers 1,3 --k 2 --max-len 64 --bos-id 1 2>&1); then
        ok "ablate: PyTorch float64 agrees on the directions, explained shares, projected weights, zero component"
    else
        fail "ablate: PyTorch check" "$(echo "$out" | grep -v '^ok' | tr '\n' ' ')"
    fi
else
    skip "ablate: PyTorch check" "$PY has no torch"
fi

# ---- bad input: one line, nothing written
expect_error "ablate: base of another shape" "^rmu attack ablate: --base: .*hidden_size 128.*not the same architecture" \
    "$RMU" attack ablate -m "$U" --base "$T/wide" --forget "$T/forget.jsonl" --layers 1 --out "$T/bad1"
expect_error "ablate: a layer out of range" "^rmu attack ablate: --layers: 9 is out of range \(the model has 4 layers: 0..3\)$" \
    "$RMU" attack ablate -m "$U" --base "$B" --forget "$T/forget.jsonl" --layers 1,9 --out "$T/bad2"
expect_error "ablate: an empty forget file" "^rmu attack ablate: --forget: .*empty.jsonl" \
    "$RMU" attack ablate -m "$U" --base "$B" --forget "$T/empty.jsonl" --layers 1 --out "$T/bad3"
expect_error "ablate: a missing base folder" "^rmu attack ablate: --base: " \
    "$RMU" attack ablate -m "$U" --base "$T/nope" --forget "$T/forget.jsonl" --layers 1 --out "$T/bad4"
expect_error "relearn: an empty data file" "^rmu attack relearn: --data: .*empty.jsonl" \
    "$RMU" attack relearn -m "$U" --data "$T/empty.jsonl" "${EV[@]}" --out "$T/bad5"
expect_error "relearn: more samples than texts" "^rmu attack relearn: --samples: 50 texts requested" \
    "$RMU" attack relearn -m "$U" --data "$T/forget.jsonl" --samples 50 "${EV[@]}" --out "$T/bad6"
expect_error "relearn: a missing base results file" "^rmu attack relearn: --base: .*nope.json" \
    "$RMU" attack relearn -m "$U" --data "$T/forget.jsonl" "${EV[@]}" --base "$T/nope.json" --log "$T/bad9.log" --out "$T/bad9"
expect_error "relearn: --eval without --eval-data" "^rmu attack relearn: --eval and --eval-data come in pairs" \
    "$RMU" attack relearn -m "$U" --data "$T/forget.jsonl" --eval mcq --out "$T/bad7"
expect_error "relearn: a missing eval file" "^rmu attack relearn: --eval: " \
    "$RMU" attack relearn -m "$U" --data "$T/forget.jsonl" --eval mcq --eval-data "$T/nope.jsonl" --out "$T/bad8"
if ls -d "$T"/bad* "$T"/.bad* "$T"/bad*.rmu-work 2>/dev/null | grep -q .; then
    fail "bad input writes nothing" "$(ls -d "$T"/bad* "$T"/.bad* 2>/dev/null | tr '\n' ' ')"
else
    ok "bad input writes nothing"
fi
