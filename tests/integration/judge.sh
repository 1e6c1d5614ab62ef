#!/usr/bin/env bash
# judge.sh - `rmu mtbench judge` and `rmu mtbench show`: FastChat's single-answer grading.
# Python (FastChat's own str.format of the prompt templates) is the oracle for every user
# prompt; a stand-in judge (tests/helpers/fake_judge.py) drives retries, authentication and
# resume-after-kill; the shared MT-Bench files are checked byte for byte when present.
. "$(dirname "$0")/../lib.sh"
rm -rf "${TMP:?}"/*
FAKE=$ROOT/tests/helpers/fake_judge.py
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT

# start_judge NAME [options]: starts a fake judge, sets $URL
start_judge() {
    local name=$1; shift
    rm -f "$TMP/$name.port"
    python3 "$FAKE" "$TMP/$name.port" "$TMP/$name.log" "$@" & PIDS+=($!)
    for _ in $(seq 100); do [ -s "$TMP/$name.port" ] && break; sleep 0.05; done
    URL="http://127.0.0.1:$(cat "$TMP/$name.port")/v1"
}

# ---- fixtures: questions (2 writing, 1 math, 1 coding with one turn), prompts, answers
if have_shared; then
    PROMPTS=$SHARED/data/mt_bench/judge_prompts.jsonl
else
    python3 - "$TMP/judge_prompts.jsonl" <<'PYEOF'
import json, sys
T = {"single-v1": "[Q]\n{question}\n[A]\n{answer}",
     "single-math-v1": "[Q]\n{question}\n[R]\n{ref_answer_1}\n[A]\n{answer}",
     "single-v1-multi-turn": "{question_1}|{answer_1}|{question_2}|{answer_2} {{braces}}",
     "single-math-v1-multi-turn": "{question_1}|{ref_answer_1}|{question_2}|{ref_answer_2}|{answer_1}|{answer_2}"}
with open(sys.argv[1], "w") as f:
    for k, v in T.items():
        f.write(json.dumps({"name": k, "type": "single", "system_prompt": "Judge " + k, "prompt_template": v,
                            "description": "", "category": "general", "output_format": "[[rating]]"}) + "\n")
PYEOF
    PROMPTS=$TMP/judge_prompts.jsonl
fi
python3 - "$TMP" <<'PYEOF'
import json, os, sys
d = sys.argv[1]
qs = [{"question_id": 81, "category": "writing", "turns": ["Write a haiku about \u00e9t\u00e9.", "Now a limerick."]},
      {"question_id": 82, "category": "roleplay", "turns": ["Pretend to be a cat.", "Now a \"dog\"."]},
      {"question_id": 111, "category": "math", "turns": ["What is 2+2?", "And 3*3?"]},
      {"question_id": 121, "category": "coding", "turns": ["Print hi in C."]}]
with open(f"{d}/question.jsonl", "w") as f:
    for q in qs: f.write(json.dumps(q) + "\n")
os.makedirs(f"{d}/model_answer", exist_ok=True)
for m in ("alpha", "beta"):
    with open(f"{d}/model_answer/{m}.jsonl", "w") as f:
        for q in qs:
            turns = [f"{m} answer {i} to {q['question_id']} {{x}}" for i in range(len(q["turns"]))]
            f.write(json.dumps({"question_id": q["question_id"], "answer_id": "a", "model_id": m,
                                "choices": [{"index": 0, "turns": turns}], "tstamp": 1.0}) + "\n")
with open(f"{d}/ref.jsonl", "w") as f:
    for q in qs[2:]:
        f.write(json.dumps({"question_id": q["question_id"], "model_id": "gpt-4",
                            "choices": [{"index": 0, "turns": [f"ref {i}" for i in range(len(q["turns"]))]}]}) + "\n")
PYEOF
J=(mtbench judge --questions "$TMP/question.jsonl" --answers "$TMP/model_answer" --judge-prompts "$PROMPTS"
   --reference "$TMP/ref.jsonl" --judge-model judge-x -q)

# ---- the oracle: FastChat's run_judge_single formatting, applied to our output
cat > "$TMP/oracle.py" <<'PYEOF'
import json, sys
qf, pf, ad, rf, out, log, judge = sys.argv[1:8]
qs = {q["question_id"]: q for q in map(json.loads, open(qf))}
prompts = {p["name"]: p for p in map(json.loads, open(pf))}
ans = {m: {a["question_id"]: a for a in map(json.loads, open(f"{ad}/{m}.jsonl"))} for m in ("alpha", "beta")}
ref = {a["question_id"]: a for a in map(json.loads, open(rf))}
NEED_REF = ["math", "reasoning", "coding", "arena-hard-200"]
want = set()
for q in qs.values():
    for turn in (1, 2):
        if turn == 2 and len(q["turns"]) != 2: continue
        for m in ("alpha", "beta"): want.add((q["question_id"], m, turn))
lines = [json.loads(l) for l in open(out)]
got = {(l["question_id"], l["model"], l["turn"]) for l in lines}
assert got == want and len(lines) == len(want), (sorted(got ^ want), len(lines), len(want))
sent = {}
for r in map(json.loads, open(log)):
    assert r["temperature"] == 0 and r["max_tokens"] == 2048 and r["n"] == 1 and r["model"] == judge, r
    sent[r["messages"][-1]["content"]] = r["messages"]
for l in lines:
    q, a = qs[l["question_id"]], ans[l["model"]][l["question_id"]]
    mt = l["turn"] == 2
    name = ("single-math-v1" if q["category"] in NEED_REF else "single-v1") + ("-multi-turn" if mt else "")
    assert l["judge"] == [judge, name], l["judge"]
    kw = {}
    if q["category"] in NEED_REF:
        kw["ref_answer_1"] = ref[q["question_id"]]["choices"][0]["turns"][0]
        if mt: kw["ref_answer_2"] = ref[q["question_id"]]["choices"][0]["turns"][1]
    t = prompts[name]["prompt_template"]
    if mt:
        up = t.format(question_1=q["turns"][0], question_2=q["turns"][1], answer_1=a["choices"][0]["turns"][0],
                      answer_2=a["choices"][0]["turns"][1], **kw)
    else:
        up = t.format(question=q["turns"][0], answer=a["choices"][0]["turns"][0], **kw)
    assert l["user_prompt"] == up, (l["user_prompt"], up)
    msgs = sent[up]
    assert msgs[0] == {"role": "system", "content": prompts[name]["system_prompt"]} and msgs[1]["role"] == "user"
    assert l["judgment"].startswith("Fine work. Rating: [[") and l["score"] == int(l["judgment"][21:-2])
print("ok")
PYEOF
oracle() { python3 "$TMP/oracle.py" "$TMP/question.jsonl" "$PROMPTS" "$TMP/model_answer" "$TMP/ref.jsonl" "$1" "$2" judge-x; }

start_judge main
MAIN_URL=$URL
if out=$("$RMU" "${J[@]}" --out "$TMP/judgment/judge-x_single.jsonl" --judge-url "$URL" --parallel 2 2>&1) &&
   res=$(oracle "$TMP/judgment/judge-x_single.jsonl" "$TMP/main.log" 2>&1) && [ "$res" = ok ]; then
    ok "judge: 14 judgments, user prompts equal FastChat's str.format, system prompt, temperature 0, max_tokens 2048"
else
    fail "judge: user prompts equal FastChat's" "$out $res"
fi
# each line is what Python's json.dumps writes for the same record
if python3 - "$TMP/judgment/judge-x_single.jsonl" <<'PYEOF'
import json, sys
for line in open(sys.argv[1]):
    assert json.dumps(json.loads(line)) + "\n" == line, line
PYEOF
then ok "judge: lines are byte for byte Python json.dumps"; else fail "judge: json.dumps bytes" "differs"; fi
n0=$(wc -l < "$TMP/main.log")
out=$("$RMU" "${J[@]}" --out "$TMP/judgment/judge-x_single.jsonl" --judge-url "$URL" 2>&1)
if [ $? -eq 0 ] && [ "$(wc -l < "$TMP/main.log")" = "$n0" ]; then ok "judge: rerun skips what is judged"
else fail "judge: rerun skips what is judged" "$out"; fi

# ---- show: averages as show_result.py (scores of -1 dropped)
cp "$TMP/judgment/judge-x_single.jsonl" "$TMP/show.jsonl"
printf '{"question_id": 82, "model": "alpha", "judge": ["j", "single-v1"], "user_prompt": "", "judgment": "", "score": -1, "turn": 1, "tstamp": 1.0}\n' >> "$TMP/show.jsonl"
if "$RMU" mtbench show --judgments "$TMP/show.jsonl" --questions "$TMP/question.jsonl" --output "$TMP/show.json" > "$TMP/show.txt" &&
   python3 - "$TMP/show.jsonl" "$TMP/show.json" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rows = [r for r in rows if r["score"] != -1]
got = json.load(open(sys.argv[2]))
assert got["dropped"] == 1
for m in ("alpha", "beta"):
    s = [r["score"] for r in rows if r["model"] == m]
    t1 = [r["score"] for r in rows if r["model"] == m and r["turn"] == 1]
    t2 = [r["score"] for r in rows if r["model"] == m and r["turn"] == 2]
    g = got["models"][m]
    assert abs(g["average"] - sum(s) / len(s)) < 1e-12 and abs(g["turn1"] - sum(t1) / len(t1)) < 1e-12
    assert abs(g["turn2"] - sum(t2) / len(t2)) < 1e-12 and g["n"] == len(s)
    cat = {81: "writing", 82: "roleplay", 111: "math", 121: "coding"}
    for c in set(cat.values()):
        w = [r["score"] for r in rows if r["model"] == m and cat[r["question_id"]] == c]
        assert abs(g["categories"][c] - sum(w) / len(w)) < 1e-12, (m, c)
PYEOF
then ok "show: per-turn, overall and per-category means; -1 dropped"; else fail "show: means" "$(cat "$TMP/show.txt")"; fi

# ---- retries: 429 with Retry-After, then success
start_judge flaky --flaky
if out=$("$RMU" "${J[@]}" --out "$TMP/flaky.jsonl" --judge-url "$URL" --parallel 3 2>&1) &&
   [ "$(wc -l < "$TMP/flaky.jsonl")" = 14 ]; then ok "judge: 429 answers are retried"
else fail "judge: 429 retried" "$out"; fi

# ---- a 503 that never ends: gives up, writes nothing half, says to rerun
start_judge down --fail-status 503
expect_error "judge: persistent 503 gives up after retries" "HTTP 503: forced failure \(giving up after retries\)" \
    "$RMU" "${J[@]}" --out "$TMP/down.jsonl" --judge-url "$URL" --max-retries 1
[ ! -s "$TMP/down.jsonl" ] && ok "judge: nothing written when every call fails" || fail "judge: nothing written" "$(head -c 200 "$TMP/down.jsonl")"

# ---- authentication and addresses: permanent errors stop the run at once
start_judge auth --key sekrit
expect_error "judge: missing key is a clear 401" "HTTP 401: Incorrect API key provided \(check the API key\)" \
    env -u OPENAI_API_KEY "$RMU" "${J[@]}" --out "$TMP/auth.jsonl" --judge-url "$URL"
if RMU_TEST_KEY=sekrit "$RMU" "${J[@]}" --out "$TMP/auth.jsonl" --judge-url "$URL" --api-key-env RMU_TEST_KEY 2>/dev/null &&
   [ "$(wc -l < "$TMP/auth.jsonl")" = 14 ]; then ok "judge: --api-key-env sends the key"
else fail "judge: --api-key-env" "exit or count"; fi
expect_error "judge: wrong URL is a clear 404" "HTTP 404: no route /nope/chat/completions \(check the judge URL" \
    "$RMU" "${J[@]}" --out "$TMP/404.jsonl" --judge-url "${MAIN_URL%/v1}/nope"
expect_error "judge: refused connection gives up" "Couldn't connect|Could not connect|connect" \
    "$RMU" "${J[@]}" --out "$TMP/refused.jsonl" --judge-url "http://127.0.0.1:9/v1" --max-retries 0
expect_error "judge: math needs a reference" "question 111 \(math\) needs a reference answer: give --reference" \
    "$RMU" mtbench judge --questions "$TMP/question.jsonl" --answers "$TMP/model_answer" --judge-prompts "$PROMPTS" \
    --judge-model j --judge-url "$URL" --out "$TMP/noref.jsonl"
head -n 2 "$TMP/model_answer/beta.jsonl" > "$TMP/short.jsonl"
expect_error "judge: a missing answer is named" "model short has no answer to question 111" \
    "$RMU" "${J[@]}" --answers "$TMP/short.jsonl" --out "$TMP/short_out.jsonl" --judge-url "$URL"
expect_error "judge: bad URL" "judge_url: expected an http" "$RMU" "${J[@]}" --out "$TMP/x.jsonl" --judge-url "ftp://x"

# ---- SIGKILL in the middle, then resume: every match exactly once, no half line
start_judge slow --slow 0.25
"$RMU" "${J[@]}" --out "$TMP/killed.jsonl" --judge-url "$URL" & kp=$!
sleep 1.2; kill -9 $kp 2>/dev/null; wait $kp 2>/dev/null
n1=$(wc -l < "$TMP/killed.jsonl" 2>/dev/null || echo 0)
"$RMU" "${J[@]}" --out "$TMP/killed.jsonl" --judge-url "$URL" 2>/dev/null
if [ "$n1" -gt 0 ] && [ "$n1" -lt 14 ] && res=$(oracle "$TMP/killed.jsonl" "$TMP/slow.log" 2>&1) && [ "$res" = ok ]; then
    ok "judge: killed after $n1 of 14, the rerun completes each match once"
else
    fail "judge: resume after kill" "n1=$n1 $res"
fi

# ---- the shared MT-Bench files: all 80 questions' turn-1/turn-2 prompts for two models
if have_shared; then
    M=$SHARED/data/mt_bench
    python3 - "$M/question.jsonl" "$TMP/mt_answers" <<'PYEOF'
import json, os, sys
os.makedirs(sys.argv[2], exist_ok=True)
with open(f"{sys.argv[2]}/m.jsonl", "w") as f:
    for q in map(json.loads, open(sys.argv[1])):
        f.write(json.dumps({"question_id": q["question_id"], "model_id": "m",
                            "choices": [{"index": 0, "turns": ["Answer: " + t[:40] for t in q["turns"]]}]}) + "\n")
PYEOF
    start_judge mt
    if "$RMU" mtbench judge --questions "$M/question.jsonl" --answers "$TMP/mt_answers" --judge-prompts "$M/judge_prompts.jsonl" \
           --reference "$M/reference_answer/gpt-4.jsonl" --judge-model gpt-4 --judge-url "$URL" --out "$TMP/mt.jsonl" -q --parallel 4 &&
       python3 - "$M" "$TMP/mt_answers/m.jsonl" "$TMP/mt.jsonl" <<'PYEOF'
import json, sys
M, af, out = sys.argv[1:]
qs = {q["question_id"]: q for q in map(json.loads, open(f"{M}/question.jsonl"))}
P = {p["name"]: p for p in map(json.loads, open(f"{M}/judge_prompts.jsonl"))}
ref = {r["question_id"]: r for r in map(json.loads, open(f"{M}/reference_answer/gpt-4.jsonl"))}
ans = {a["question_id"]: a for a in map(json.loads, open(af))}
lines = [json.loads(l) for l in open(out)]
assert len(lines) == 160, len(lines)
for l in lines:
    q, a = qs[l["question_id"]], ans[l["question_id"]]["choices"][0]["turns"]
    math = q["category"] in ["math", "reasoning", "coding", "arena-hard-200"]
    name = ("single-math-v1" if math else "single-v1") + ("-multi-turn" if l["turn"] == 2 else "")
    kw = {}
    if math:
        kw["ref_answer_1"] = ref[q["question_id"]]["choices"][0]["turns"][0]
        if l["turn"] == 2: kw["ref_answer_2"] = ref[q["question_id"]]["choices"][0]["turns"][1]
    t = P[name]["prompt_template"]
    up = t.format(question=q["turns"][0], answer=a[0], **kw) if l["turn"] == 1 else \
         t.format(question_1=q["turns"][0], question_2=q["turns"][1], answer_1=a[0], answer_2=a[1], **kw)
    assert l["user_prompt"] == up, l["question_id"]
PYEOF
    then ok "judge: all 160 MT-Bench prompts (shared files) equal FastChat's, math with references"
    else fail "judge: shared MT-Bench prompts" "mismatch"; fi
else
    skip "judge: shared MT-Bench prompts" "../shared is absent"
fi

# ---- end to end: a real `rmu serve` on stories260K as the judge (loopback, no stand-in) on
# two MT-Bench questions (writing; math with its reference), both turns. The tiny model
# writes stories, not ratings, so a score is whatever it happens to print ([[n]]) or -1.
if have_shared && command -v curl >/dev/null; then
    M=$SHARED/data/mt_bench
    python3 - "$M/question.jsonl" "$TMP/e2e" <<'PYEOF'
import json, os, sys
qs = [json.loads(l) for l in open(sys.argv[1])]
pick = [next(q for q in qs if q["category"] == c) for c in ("writing", "math")]
os.makedirs(f"{sys.argv[2]}/answers", exist_ok=True)
with open(f"{sys.argv[2]}/question.jsonl", "w") as f:
    for q in pick: f.write(json.dumps(q) + "\n")
with open(f"{sys.argv[2]}/answers/story.jsonl", "w") as f:
    for q in pick:
        f.write(json.dumps({"question_id": q["question_id"], "model_id": "story",
                            "choices": [{"index": 0, "turns": ["Once upon a time there was a cat."] * 2}]}) + "\n")
PYEOF
    "$RMU" serve -m "$SHARED/models/stories260K" --port 0 --parallel 2 2>"$TMP/e2e/serve.log" & spid=$!
    PIDS+=($spid)
    port=""
    for _ in $(seq 200); do
        port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$TMP/e2e/serve.log" | grep -o '[0-9]*$')
        [ -n "$port" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" = 200 ] && break
        sleep 0.05
    done
    if [ -z "$port" ]; then
        fail "judge: rmu serve as the judge" "the server did not come up: $(tail -n 3 "$TMP/e2e/serve.log" | tr '\n' ' ')"
    else
        ok "judge: rmu serve on stories260K is up (/health 200 on port $port)"
        out=$("$RMU" mtbench judge --questions "$TMP/e2e/question.jsonl" --answers "$TMP/e2e/answers" \
                  --judge-prompts "$M/judge_prompts.jsonl" --reference "$M/reference_answer/gpt-4.jsonl" \
                  --judge-model stories260K --judge-url "http://127.0.0.1:$port/v1" --out "$TMP/e2e/judgment.jsonl" \
                  --parallel 2 -q 2>&1)
        rc=$?
        if [ $rc -eq 0 ] && res=$(python3 - "$TMP/e2e/question.jsonl" "$TMP/e2e/judgment.jsonl" <<'PYEOF' 2>&1
import json, sys
qs = {q["question_id"]: q for q in map(json.loads, open(sys.argv[1]))}
lines = [json.loads(l) for l in open(sys.argv[2])]
keys = ["question_id", "model", "judge", "user_prompt", "judgment", "score", "turn", "tstamp"]
seen = set()
for l in lines:
    assert list(l) == keys, list(l)
    q = qs[l["question_id"]]
    name = ("single-math-v1" if q["category"] == "math" else "single-v1") + ("-multi-turn" if l["turn"] == 2 else "")
    assert l["model"] == "story" and l["judge"] == ["stories260K", name], l
    assert isinstance(l["judgment"], str) and l["judgment"].strip(), "empty judgment"
    assert l["score"] == -1 or (isinstance(l["score"], (int, float)) and l["score"] >= 0), l["score"]
    assert q["turns"][l["turn"] - 1] in l["user_prompt"], "question missing from the prompt"
    assert isinstance(l["tstamp"], float)
    seen.add((l["question_id"], l["turn"]))
assert len(lines) == 4 and seen == {(q, t) for q in qs for t in (1, 2)}, (len(lines), sorted(seen))
print("ok", sum(l["score"] != -1 for l in lines))
PYEOF
); then
            ok "judge: against rmu serve: one well-formed line per question and turn ($(echo "$res" | cut -d' ' -f2) of 4 rated, the rest -1)"
        else
            fail "judge: against rmu serve" "exit $rc: $(echo "$out" | tail -n 3 | tr '\n' ' ') ${res:-}"
        fi
        # show: a table when something was rated; otherwise its clear "nothing scored" error
        sout=$("$RMU" mtbench show --judgments "$TMP/e2e/judgment.jsonl" 2>&1); src=$?
        rated=$(echo "${res:-}" | awk '$1 == "ok" {print $2}'); rated=${rated:-0}
        if { [ "$rated" -gt 0 ] && [ $src -eq 0 ] && echo "$sout" | grep -q story; } ||
           { [ "$rated" -eq 0 ] && [ $src -eq 1 ] && echo "$sout" | grep -q "no scored judgments"; }; then
            ok "judge: mtbench show on the served judge's judgments ($rated rated)"
        else
            fail "judge: mtbench show on the served judge's judgments" "exit $src: $sout"
        fi
    fi
    kill -TERM $spid 2>/dev/null
    wait $spid; src=$?
    if [ $src -eq 0 ] && grep -q "shutting down" "$TMP/e2e/serve.log"; then ok "judge: rmu serve exits 0 on SIGTERM after judging"
    else fail "judge: rmu serve exits 0 on SIGTERM" "exit $src: $(tail -n 3 "$TMP/e2e/serve.log" | tr '\n' ' ')"; fi
else
    skip "judge: end to end against rmu serve on stories260K" "../shared is absent (or no curl)"
fi
