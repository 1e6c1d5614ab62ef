#!/usr/bin/env bash
# eval.sh - `rmu eval` (lm-eval v0.4.2 multiple-choice scoring) and `rmu mtbench` (FastChat
# answers): the scoring paths agree with each other, logliks match the PyTorch oracle on tiny
# random models, MMLU on stories260K writes lm-eval-shaped results with every group, MT-Bench
# answers all questions in FastChat's format and resumes. Bad input fails with clear messages.
. "$(dirname "$0")/../lib.sh"
# Tiny models: OpenMP start-up per forward costs more than the work (and the box is shared).
export OMP_NUM_THREADS=1
ORACLE=$ROOT/tests/oracle/torch_ref.py
rm -rf "${TMP:?}"/*

# ---- a generated multiple-choice file (2 to 5 choices, padded questions, a letter answer)
python3 - "$TMP/mcq.jsonl" <<'PYEOF'
import json, random, sys
random.seed(3)
words = "the cat dog sun moon red blue tree river stone bird fish light dark cold warm".split()
with open(sys.argv[1], "w") as f:
    for i in range(24):
        q = " ".join(random.choice(words) for _ in range(random.randint(4, 20)))
        if i % 5 == 0:
            q = "  " + q + " \n"
        k = random.choice([2, 3, 4, 5])
        ch = [" ".join(random.choice(words) for _ in range(random.randint(1, 4))) for _ in range(k)]
        ans = random.randrange(k)
        f.write(json.dumps({"question": q.capitalize() + "?", "choices": ch,
                            "answer": "ABCDE"[ans] if i % 7 == 0 else ans}) + "\n")
PYEOF

# ---- usage and data errors (no model needed: data is checked first)
expect_error "eval: unknown task" "unknown task 'hellaswag'" "$RMU" eval -m "$TMP/none" --tasks wmdp,hellaswag --data "$TMP/mcq.jsonl"
expect_error "eval: unknown MMLU subject" "unknown MMLU subject 'astrology'" "$RMU" eval -m "$TMP/none" --tasks mmlu_astrology --data "$TMP"
mkdir -p "$TMP/badmmlu/test"
printf '"two\nlines",a,b,c,d,A\nq,a,b,c,D\n' > "$TMP/badmmlu/test/anatomy_test.csv"
expect_error "eval: CSV row with 5 fields names file:line" "anatomy_test.csv:3: expected 6 fields \(question,A,B,C,D,answer\), got 5" \
    "$RMU" eval -m "$TMP/none" --tasks mmlu_anatomy --data "$TMP/badmmlu"
expect_error "eval: missing subject file" "mmlu_virology: no test data for subject 'virology'" \
    "$RMU" eval -m "$TMP/none" --tasks mmlu_virology --data "$TMP/badmmlu"
printf '{"question": "q", "choices": ["a", "b", "c", "d"], "answer": 7}\n' > "$TMP/wmdp-bio.jsonl"
expect_error "eval: answer out of range" "wmdp-bio.jsonl:1: answer 7 is out of range for 4 choices" \
    "$RMU" eval -m "$TMP/none" --tasks wmdp_bio --data "$TMP/wmdp-bio.jsonl"
mkdir -p "$TMP/wmdp"
printf '{"question": "q", "choices": ["a", "b", "c", "d"], "answer": 1}\n' > "$TMP/wmdp/bio.jsonl"
expect_error "eval: wmdp has no few-shot split" "WMDP has no dev split" \
    "$RMU" eval -m "$TMP/none" --tasks wmdp_bio --data "$TMP/wmdp" --num-fewshot 5
expect_error "eval: cloze only for mcq" "--format: cloze is only for the mcq task" \
    "$RMU" eval -m "$TMP/none" --tasks mmlu --data "$TMP" --format cloze
expect_error "eval: missing model" "none/config.json: cannot open" "$RMU" eval -m "$TMP/none" --tasks mcq --data "$TMP/mcq.jsonl"
expect_error "mtbench: --out required" "--out FILE is required" "$RMU" mtbench -m "$TMP/none" --questions "$TMP/mcq.jsonl"

# ---- tiny random model whose tokenizer has "▁A".."▁E": letter continuations are one token
m=$TMP/tiny
if "$RMU" init -o "$m" --shape tiny --dtype f32 --seed 21 >"$TMP/init.log" 2>&1 &&
   python3 - "$m/tokenizer.json" <<'PYEOF'
import json, sys
p = sys.argv[1]; t = json.load(open(p)); v = t["model"]["vocab"]
inv = {i: s for s, i in v.items()}
for k, ch in enumerate("ABCDE"):          # repurpose filler pieces: "A".."E" and "▁A".."▁E"
    del v[inv[260 + k]]; v[ch] = 260 + k
    del v[inv[270 + k]]; v["\u2581" + ch] = 270 + k
t["model"]["merges"] = ["\u2581 " + ch for ch in "ABCDE"]
json.dump(t, open(p, "w"), ensure_ascii=False)
PYEOF
then
    ok "rmu init tiny model (letters one token each)"
    run_variant() { # NAME ARGS...: mcq eval with --log-samples and --dump-requests
        local name=$1; shift
        "$RMU" eval -m "$m" --tasks mcq --data "$TMP/mcq.jsonl" --quiet --log-samples "$TMP/ls_$name.jsonl" \
            --dump-requests "$TMP/dr_$name.json" --output "$TMP/res_$name.json" "$@" >"$TMP/out_$name.txt" 2>"$TMP/err_$name.txt"
    }
    if run_variant onepass && run_variant perchoice --no-onepass && run_variant nocache --no-onepass --no-prefix-cache &&
       run_variant batch --batch-size 5 && run_variant cloze --format cloze; then
        ok "eval mcq: one-pass, per-choice, no prefix cache, batch 5, cloze all run"
        check "one-pass == per-choice == no prefix cache == batch 5 (acc equal, logliks within 1e-5)" python3 - "$TMP" <<'PYEOF'
import json, sys
d = sys.argv[1]
load = lambda n: {(r["task"], r["doc_id"]): r for r in map(json.loads, open(f"{d}/ls_{n}.jsonl"))}
base = load("onepass")
assert len(base) == 24 and all(r["onepass"] for r in base.values()), "letters should be one-pass"
for n in ["perchoice", "nocache", "batch"]:
    o = load(n)
    assert o.keys() == base.keys(), n
    diff = max(abs(a - b) for k in base for a, b in zip(base[k]["loglik"], o[k]["loglik"]))
    assert diff < 1e-5, f"{n}: loglik differs by {diff}"
    assert all(base[k]["pred"] == o[k]["pred"] for k in base), n
    ra = json.load(open(f"{d}/res_{n}.json"))["results"]["mcq"]["acc,none"]
    rb = json.load(open(f"{d}/res_onepass.json"))["results"]["mcq"]["acc,none"]
    assert ra == rb, (n, ra, rb)
    print(n, "max |dloglik|", diff)
assert not any(r["onepass"] for r in load("perchoice").values())
PYEOF
        check "cloze: acc and acc_norm (loglik / choice length in characters) from the logged logliks" python3 - "$TMP" <<'PYEOF'
import json, sys, math
d = sys.argv[1]
rows = [json.loads(l) for l in open(f"{d}/ls_cloze.jsonl")]
acc = norm = 0
for r in rows:
    assert r["context"].startswith("Question: ") and r["context"].endswith("\nAnswer:"), r["context"]
    assert all(c == " " + t for c, t in zip(r["continuations"], r["doc"]["choices"]))
    ll = r["loglik"]
    p = max(range(len(ll)), key=lambda i: (ll[i], -i))
    n = [l / len(t) for l, t in zip(ll, r["doc"]["choices"])]
    pn = max(range(len(n)), key=lambda i: (n[i], -i))
    assert p == r["pred"] and pn == r["pred_norm"], r["doc_id"]
    acc += p == r["gold"]; norm += pn == r["gold"]
res = json.load(open(f"{d}/res_cloze.json"))["results"]["mcq"]
assert abs(res["acc,none"] - acc / len(rows)) < 1e-12 and abs(res["acc_norm,none"] - norm / len(rows)) < 1e-12
mu = acc / len(rows); se = math.sqrt(sum(((r["pred"] == r["gold"]) - mu) ** 2 for r in rows) / (len(rows) - 1)) / math.sqrt(len(rows))
assert abs(res["acc_stderr,none"] - se) < 1e-12, (res, se)
PYEOF
        if have_torch && [ -f "$ORACLE" ]; then
            for v in onepass cloze; do
                python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); json.dump([{"context_ids":r["context_ids"],"continuation_ids":r["continuation_ids"]} for r in d], open(sys.argv[2],"w"))' \
                    "$TMP/dr_$v.json" "$TMP/req_$v.json"
                if "$PY" "$ORACLE" loglik --model "$m" --requests "$TMP/req_$v.json" --out "$TMP/oracle_$v.json" 2>"$TMP/oracle.err"; then
                    check "logliks match the PyTorch oracle within 1e-4 ($v)" python3 - "$TMP/dr_$v.json" "$TMP/oracle_$v.json" <<'PYEOF'
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert len(a) == len(b) and len(a) > 0
d = max(abs(x["loglik"] - y["loglik"]) for x, y in zip(a, b))
g = sum(x["greedy"] != y["greedy"] for x, y in zip(a, b))
print(len(a), "requests, max |dloglik|", d, "greedy mismatches", g)
assert d < 1e-4 and g == 0
PYEOF
                else
                    fail "logliks match the PyTorch oracle within 1e-4 ($v)" "$(tail -n 2 "$TMP/oracle.err")"
                fi
            done
        else
            skip "logliks match the PyTorch oracle" "torch (Debian python3-torch) or tests/oracle/torch_ref.py is absent"
        fi
    else
        fail "eval mcq: one-pass, per-choice, no prefix cache, batch 5, cloze all run" "$(cat "$TMP"/err_*.txt | tail -n 3)"
    fi
else
    fail "rmu init tiny model (letters one token each)" "$(tail -n 3 "$TMP/init.log")"
fi

# ---- MMLU few-shot with left truncation against the oracle (sliding window 16 < context)
if have_shared && have_torch && [ -f "$ORACLE" ] && [ -d "$m" ]; then
    if "$RMU" eval -m "$m" --tasks mmlu_anatomy,mmlu_virology --data "$SHARED/data/mmlu" --limit 3 --num-fewshot 5 \
        --max-length 96 --bos --quiet --dump-requests "$TMP/dr_mmlu.json" >/dev/null 2>"$TMP/err_mmlu.txt"; then
        python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); json.dump([{"context_ids":r["context_ids"],"continuation_ids":r["continuation_ids"]} for r in d], open(sys.argv[2],"w"))' \
            "$TMP/dr_mmlu.json" "$TMP/req_mmlu.json"
        if "$PY" "$ORACLE" loglik --model "$m" --requests "$TMP/req_mmlu.json" --out "$TMP/oracle_mmlu.json" --max-length 96 2>"$TMP/oracle.err"; then
            check "MMLU 5-shot, BOS, truncated to max_length 96: logliks match the oracle within 1e-4" python3 - "$TMP/dr_mmlu.json" "$TMP/oracle_mmlu.json" <<'PYEOF'
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert len(a) == 24 and all(len(x["context_ids"]) + len(x["continuation_ids"]) == 97 for x in a), "expected truncation"
d = max(abs(x["loglik"] - y["loglik"]) for x, y in zip(a, b))
print("max |dloglik|", d)
assert d < 1e-4
PYEOF
        else
            fail "MMLU 5-shot, BOS, truncated to max_length 96: logliks match the oracle within 1e-4" "$(tail -n 2 "$TMP/oracle.err")"
        fi
    else
        fail "MMLU 5-shot eval on the tiny model" "$(tail -n 3 "$TMP/err_mmlu.txt")"
    fi
else
    skip "MMLU 5-shot truncated logliks vs the oracle" "needs ../shared, torch and the tiny model"
fi

# ---- stories260K on the real MMLU CSV folder
if have_shared; then
    S=$SHARED/models/stories260K
    if "$RMU" eval -m "$S" --tasks mmlu --data "$SHARED/data/mmlu" --limit 2 --output "$TMP/mmlu.json" \
        --log-samples "$TMP/mmlu_samples.jsonl" >"$TMP/mmlu_table.txt" 2>"$TMP/mmlu_err.txt"; then
        ok "stories260K: rmu eval --tasks mmlu --limit 2"
        check "results.json: 57 subjects, all groups, lm-eval v0.4.2 pooled group stderr, table on stdout" python3 - "$TMP" <<'PYEOF'
import json, math, sys
d = sys.argv[1]
r = json.load(open(f"{d}/mmlu.json"))
res, sub, ns = r["results"], r["group_subtasks"], r["n-samples"]
groups = ["mmlu", "mmlu_stem", "mmlu_other", "mmlu_social_sciences", "mmlu_humanities"]
assert set(r["groups"]) == set(groups), r["groups"].keys()
assert len(res) == 62 and len(ns) == 57 and all(v["effective"] == 2 for v in ns.values())
assert sub["mmlu"] == sorted(groups[1:]) and len(sub["mmlu_stem"]) == 19 and len(sub["mmlu_other"]) == 13
assert res["mmlu_stem"]["alias"] == " - stem" and res["mmlu_anatomy"]["alias"] == "  - anatomy"
size = lambda t: ns[t]["effective"] if t in ns else sum(size(c) for c in sub[t])
for g in groups:  # size-weighted mean and pooled stderr over the direct children
    ch = sub[g]; n = [size(c) for c in ch]
    m = sum(res[c]["acc,none"] * k for c, k in zip(ch, n)) / sum(n)
    se = math.sqrt(sum((k - 1) * res[c]["acc_stderr,none"] ** 2 * k for c, k in zip(ch, n)) / (sum(n) - len(n)) / sum(n))
    assert abs(m - res[g]["acc,none"]) < 1e-12 and abs(se - res[g]["acc_stderr,none"]) < 1e-12, g
rows = [json.loads(l) for l in open(f"{d}/mmlu_samples.jsonl")]
assert len(rows) == 114
x = rows[0]
assert x["context"].startswith("The following are multiple choice questions (with answers) about abstract algebra.\nFind the degree")
assert x["context"].endswith("\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:") and x["continuations"] == [" A", " B", " C", " D"]
acc = sum(r["pred"] == r["gold"] for r in rows) / len(rows)
assert abs(acc - res["mmlu"]["acc,none"]) < 1e-12
table = open(f"{d}/mmlu_table.txt").read()
assert "|mmlu " in table and " - humanities" in table and "  - world_religions" in table
PYEOF
    else
        fail "stories260K: rmu eval --tasks mmlu --limit 2" "$(tail -n 3 "$TMP/mmlu_err.txt")"
    fi
    # The whole of MMLU (14,079 rows) takes ~13 min on stories260K on a loaded 2-core box.
    if [ -n "${RMU_EVAL_FULL:-}" ]; then
        start=$(date +%s)
        if "$RMU" eval -m "$S" --tasks mmlu --data "$SHARED/data/mmlu" --output "$TMP/mmlu_full.json" >/dev/null 2>"$TMP/full.err"; then
            ok "stories260K: full MMLU (14,079 questions) in $(( $(date +%s) - start )) s"
        else
            fail "stories260K: full MMLU" "$(tail -n 2 "$TMP/full.err")"
        fi
    else
        skip "stories260K: full MMLU without --limit" "takes ~13 min here; set RMU_EVAL_FULL=1 to run it"
    fi

    # ---- MT-Bench answers, FastChat format, resumable
    Q=$SHARED/data/mt_bench/question.jsonl
    A=$TMP/answers.jsonl
    if "$RMU" mtbench -m "$S" --questions "$Q" --out "$A" --max-new-tokens 32 2>"$TMP/mtb.err"; then
        ok "mtbench: stories260K answers MT-Bench"
        check "mtbench: 80 lines, sorted, FastChat fields, 2 turns each" python3 - "$A" "$Q" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
qs = [json.loads(l) for l in open(sys.argv[2])]
assert len(rows) == 80 == len(qs)
ids = [r["question_id"] for r in rows]
assert ids == sorted(ids) == sorted(q["question_id"] for q in qs)
for r in rows:
    assert set(r) == {"question_id", "answer_id", "model_id", "choices", "tstamp"}, r.keys()
    assert r["model_id"] == "stories260K" and len(r["answer_id"]) == 22 and isinstance(r["tstamp"], float)
    assert len(r["choices"]) == 1 and r["choices"][0]["index"] == 0
    t = r["choices"][0]["turns"]
    assert len(t) == 2 and all(isinstance(x, str) and x == x.strip() for x in t)
PYEOF
        cp "$A" "$TMP/full_answers.jsonl"
        if "$RMU" mtbench -m "$S" --questions "$Q" --out "$A" --max-new-tokens 32 2>"$TMP/mtb2.err" &&
           grep -q "0 answered, 80 already in" "$TMP/mtb2.err" && cmp -s "$A" "$TMP/full_answers.jsonl"; then
            ok "mtbench: a second run skips all 80 and leaves the file as it was"
        else
            fail "mtbench: a second run skips all 80 and leaves the file as it was" "$(tail -n 1 "$TMP/mtb2.err")"
        fi
        head -n 30 "$TMP/full_answers.jsonl" > "$TMP/part.jsonl"
        if "$RMU" mtbench -m "$S" --questions "$Q" --out "$TMP/part.jsonl" --max-new-tokens 32 2>"$TMP/mtb3.err" &&
           grep -q "50 answered, 30 already in" "$TMP/mtb3.err"; then
            check "mtbench: resuming a partial file gives the same answers as one run" python3 - "$TMP/part.jsonl" "$TMP/full_answers.jsonl" <<'PYEOF'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b) == 80
for x, y in zip(a, b):
    assert x["question_id"] == y["question_id"] and x["choices"] == y["choices"] and x["answer_id"] == y["answer_id"]
PYEOF
        else
            fail "mtbench: resuming a partial file" "$(tail -n 1 "$TMP/mtb3.err")"
        fi
        echo "not an answer file" > "$TMP/notes.txt"
        expect_error "mtbench: refuses to overwrite a file that is not an answer file" "notes.txt:1: invalid JSON" \
            "$RMU" mtbench -m "$S" --questions "$Q" --out "$TMP/notes.txt" --max-new-tokens 4
    else
        fail "mtbench: stories260K answers MT-Bench" "$(tail -n 3 "$TMP/mtb.err")"
    fi
else
    skip "stories260K MMLU and MT-Bench" "../shared/models/stories260K is absent"
fi

# ---- outputs are written atomically: no temporary files left behind
if ls "$TMP"/*.tmp.* >/dev/null 2>&1; then fail "no temporary files left" "$(ls "$TMP"/*.tmp.*)"; else ok "no temporary files left"; fi
