#!/usr/bin/env bash
# demo.sh - the reduced end-to-end demo (`rmu demo --small`): pretraining from scratch on the
# synthetic knowledge base, RMU, and the shape of the result: both domains learned, the
# forget domain near chance afterwards, the retain domain kept; then the two attacks
# (relearning, directional ablation), whose numbers must be consistent with the rest (same
# levels, splits that add up, recovered fractions by the formula), whatever they are. A
# second run must reuse the cached model and print the same numbers (the whole pipeline is
# deterministic).
. "$(dirname "$0")/../lib.sh"

OUT=$TMP/out
rm -rf "$OUT"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

if ! "$RMU" demo --small --out "$OUT" >"$TMP/run1.out" 2>"$TMP/run1.err"; then
    fail "demo --small runs" "$(tail -n 3 "$TMP/run1.err" | tr '\n' ' ')"
    exit 0
fi
ok "demo --small runs"

# results.json: {forget: {before, after}, retain: {before, after}, chance, seconds}
shape=$(python3 - "$OUT/results.json" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
f, k, ch = r["forget"], r["retain"], r["chance"]
bad = []
if abs(ch - 0.25) > 1e-9: bad.append("chance %r" % ch)
if not isinstance(r.get("seconds"), (int, float)): bad.append("no seconds")
if f["before"] < 0.8 or k["before"] < 0.8: bad.append("not learned: before %.3f / %.3f" % (f["before"], k["before"]))
# the full demo's targets are 7 and 5 points; the small one has 120 questions a domain
if abs(f["after"] - ch) > 0.12: bad.append("forget after %.3f is not near chance" % f["after"])
if k["after"] < k["before"] - 0.10: bad.append("retain fell %.3f -> %.3f" % (k["before"], k["after"]))
print("; ".join(bad) if bad else "ok", "(forget %.3f -> %.3f, retain %.3f -> %.3f)" % (f["before"], f["after"], k["before"], k["after"]))
PYEOF
)
case "$shape" in
    ok*) ok "demo result shape $(echo "$shape" | cut -c4-)" ;;
    *) fail "demo result shape" "$shape" ;;
esac

if grep -q "forget: creatures of the Vell marsh" "$TMP/run1.out" && grep -q "| retain: towns" "$TMP/run1.out"; then
    ok "demo prints the before/after table"
else
    fail "demo prints the before/after table" "$(head -c 300 "$TMP/run1.out")"
fi
if head -c 200 "$OUT/unlearn.svg" | grep -q "<svg" && grep -q "</svg>" "$OUT/unlearn.svg" &&
   [ "$(wc -l < "$OUT/unlearn_log.jsonl")" -gt 1 ]; then
    ok "demo writes the SVG and the unlearn log"
else
    fail "demo writes the SVG and the unlearn log" "$(ls "$OUT")"
fi
check "demo draws one curve point per unlearning step (the step reports the log also gets)" python3 -c '
import re, sys
svg = open(sys.argv[1]).read()
curves = re.findall(r"points=.([^\x27]*)\x27", svg)
steps = sum(1 for l in open(sys.argv[2]) if l.strip())
# the two loss curves, then the relearning curve (named, not named, retain)
assert len(curves) == 5 and all(len(c.split()) == steps for c in curves[:2]), (len(curves), [len(c.split()) for c in curves], steps)
' "$OUT/unlearn.svg" "$OUT/unlearn_log.jsonl"
check "demo corpora and questions are valid JSONL" python3 -c '
import json, sys
for name in ["train.jsonl", "forget_corpus.jsonl", "retain_corpus.jsonl", "forget_mcq.jsonl", "retain_mcq.jsonl"]:
    for line in open(sys.argv[1] + "/" + name):
        json.loads(line)
' "$OUT/data"

# the attacks: consistent with the demo's own numbers and with their own output folders
check "demo attacks: levels, splits and recovered fractions are consistent; curve as relearn.json" python3 - "$OUT" <<'PYEOF'
import json, sys
d = sys.argv[1]
r = json.load(open(d + "/results.json"))
rl = json.load(open(d + "/relearned/attack/relearn.json"))
ab = json.load(open(d + "/ablated/attack/ablate.json"))
for name, a in r["attacks"].items():
    for dom in ("forget", "retain"):
        x = a[dom]
        assert abs(x["base"] - r[dom]["before"]) < 1e-6 and abs(x["unlearned"] - r[dom]["after"]) < 1e-6, (name, dom, x)
        want = (x["attacked"] - x["unlearned"]) / (x["base"] - x["unlearned"])
        assert abs(x["recovered"] - want) < 1e-4, (name, dom, x, want)
    s0, s1 = a["forget_named_in_relearning_texts"], a["forget_not_named"]
    n = s0["questions"] + s1["questions"]
    assert n == r["forget"]["questions"] and s0["questions"] > 0 and s1["questions"] > 0
    for lvl in ("base", "unlearned", "attacked"):
        mix = (s0["questions"] * s0[lvl] + s1["questions"] * s1[lvl]) / n
        assert abs(mix - a["forget"][lvl]) < 1e-5, (name, lvl, mix, a["forget"][lvl])
acc = rl["accuracy"]
assert abs(acc["retain/mcq"]["attacked"] - r["attacks"]["relearn"]["retain"]["attacked"]) < 1e-6
assert abs(ab["accuracy"]["retain/mcq"]["attacked"] - r["attacks"]["ablate"]["retain"]["attacked"]) < 1e-6
cv = r["attacks"]["relearn"]["curve"]
assert [p["step"] for p in cv] == [p["step"] for p in rl["curve"]]
assert all(abs(p["retain"] - q["acc"]["retain/mcq"]) < 1e-6 and abs(p["forget_not_named"] - q["acc"]["unnamed/mcq"]) < 1e-6
           for p, q in zip(cv, rl["curve"]))
assert cv[-1]["step"] == r["attacks"]["relearn"]["settings"]["steps"]
assert ab["k"] == 1 and 0 < r["attacks"]["ablate"]["explained"] <= 1 + 1e-9
print("relearn %.3f / ablate %.3f recovered" % (r["attacks"]["relearn"]["forget"]["recovered"], r["attacks"]["ablate"]["forget"]["recovered"]))
PYEOF
if grep -q "| relearn | ablate |" "$TMP/run1.out" && grep -q "recovered fraction of the forget gap" "$TMP/run1.out" &&
   "$RMU" info -m "$OUT/ablated" >/dev/null 2>&1 && "$RMU" info -m "$OUT/relearned" >/dev/null 2>&1; then
    ok "demo prints the attacks' columns and recovered fractions; both attacked models load"
else
    fail "demo attacks in the table" "$(grep -A3 'domain' "$TMP/run1.out" | head -5)"
fi

# second run: cached pretrained model, identical numbers
cp "$OUT/results.json" "$TMP/results1.json"
if "$RMU" demo --small --out "$OUT" >"$TMP/run2.out" 2>"$TMP/run2.err"; then
    if grep -q "reusing" "$TMP/run2.err"; then ok "demo reuses the cached pretrained model"
    else fail "demo reuses the cached pretrained model" "$(head -n 3 "$TMP/run2.err" | tr '\n' ' ')"; fi
    same=$(python3 - "$TMP/results1.json" "$OUT/results.json" <<'PYEOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
keys = [(d, w) for d in ("forget", "retain") for w in ("before", "after")]
diff = [(k, a[k[0]][k[1]], b[k[0]][k[1]]) for k in keys if a[k[0]][k[1]] != b[k[0]][k[1]]]
for n in ("relearn", "ablate"):
    for d in ("forget", "retain", "forget_named_in_relearning_texts", "forget_not_named"):
        if a["attacks"][n][d]["attacked"] != b["attacks"][n][d]["attacked"]:
            diff.append((n, d, a["attacks"][n][d]["attacked"], b["attacks"][n][d]["attacked"]))
print("same" if not diff else diff)
PYEOF
)
    if [ "$same" = same ]; then ok "demo second run gives the same accuracies"
    else fail "demo second run gives the same accuracies" "$same"; fi
else
    fail "demo second run" "$(tail -n 3 "$TMP/run2.err" | tr '\n' ' ')"
fi

expect_error "demo rejects an unknown option" '^rmu demo: unknown option' "$RMU" demo --bogus
expect_error "demo rejects a bad seed" '^rmu demo: --seed: expected an integer' "$RMU" demo --seed x
