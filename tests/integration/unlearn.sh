#!/usr/bin/env bash
# unlearn.sh - `rmu unlearn` against a PyTorch reference of the same loop (same control
# vectors, same padded batches), on stories260K, its output folder (written whole: an
# existing one needs --overwrite; SIGKILL during the write or a full disk leaves none), and
# its bad-input messages.
. "$(dirname "$0")/../lib.sh"

M=$TMP/tiny8
rm -rf "$M" "$TMP"/out*
if ! "$RMU" init -o "$M" --shape tiny --layers 8 --dtype f32 --seed 21 --sliding-window 6 --jitter-norms 2>"$TMP/init.err"; then
    fail "init tiny 8-layer model" "$(cat "$TMP/init.err")"; exit 0
fi
# two forget topics (JSONL) and a retain corpus (plain lines) of uneven lengths -> padding
python3 - "$TMP" <<'PYEOF'
import json, random, sys
d = sys.argv[1]; r = random.Random(5)
words = "alpha beta gamma delta omega sigma kappa zeta theta lambda".split()
def text(n): return " ".join(r.choice(words) for _ in range(n))
for name in ("fa", "fb"):
    with open(f"{d}/{name}.jsonl", "w") as f:
        for i in range(40): f.write(json.dumps({"text": name + " " + text(r.randint(2, 14))}) + "\n")
with open(f"{d}/retain.txt", "w") as f:
    for i in range(40): f.write(text(r.randint(1, 12)) + "\n")
with open(f"{d}/short.jsonl", "w") as f:
    f.write(json.dumps({"text": "one"}) + "\n")
with open(f"{d}/bad.jsonl", "w") as f:
    f.write(json.dumps({"text": "ok"}) + "\n{not json\n")
PYEOF
args=(-m "$M" --forget "$TMP/fa.jsonl,$TMP/fb.jsonl" --retain "$TMP/retain.txt,$TMP/retain.txt"
      --layer-id 3 --layer-ids 1,2,3 --alpha 10,5 --lr 1e-3 --batch-size 3
      --max-num-batches 10 --max-len 12,10 --retain-max-len 9 --seed 7)
if "$RMU" unlearn "${args[@]}" --steering-coeffs 8,4 --out "$TMP/out" --log "$TMP/log.jsonl" --save-control-vectors "$TMP/cv.safetensors" \
        --dump-batches "$TMP/batches" 2>"$TMP/unl.err"; then
    ok "unlearn runs on a tiny 8-layer Mistral (2 topics, padded batches)"
else
    fail "unlearn runs on a tiny 8-layer Mistral (2 topics, padded batches)" "$(tail -2 "$TMP/unl.err")"; exit 0
fi
check "output folder has every input file and rmu_unlearn.json" bash -c "
    for f in \$(ls '$M'); do [ -f '$TMP/out/'\$f ] || { echo missing \$f; exit 1; }; done
    [ -f '$TMP/out/rmu_unlearn.json' ]"
check "log has 10 steps with losses, norms and cosines" python3 - "$TMP/log.jsonl" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 10, len(rows)
for k in ("step", "topic", "unlearn_loss", "retain_loss", "updated_forget_norm", "frozen_forget_norm",
          "updated_retain_norm", "forget_cosine", "retain_cosine"):
    assert all(k in r for r in rows), k
assert [r["topic"] for r in rows] == [0, 1] * 5
PYEOF
check "output loads and generates" "$RMU" generate -m "$TMP/out" -p "alpha beta" -n 4 --temp 0
if have_torch && [ -f "$ROOT/tests/oracle/torch_ref.py" ]; then
    if "$PY" "$ROOT/tests/oracle/torch_ref.py" rmu --model "$M" --forget-batches "$TMP/batches.forget.json" \
            --retain-batches "$TMP/batches.retain.json" --control-vectors "$TMP/cv.safetensors" --layer-id 3 \
            --layer-ids 1,2,3 --alpha 10,5 --lr 1e-3 --steps 10 --optimizer hf --out "$TMP/torch.safetensors" --log "$TMP/torch.json" \
            2>"$TMP/torch.err"; then
        check "per-step losses match PyTorch within 1e-4 relative" python3 - "$TMP/log.jsonl" "$TMP/torch.json" <<'PYEOF'
import json, sys
ours = [json.loads(l) for l in open(sys.argv[1])]
ref = json.load(open(sys.argv[2]))
ref = ref["steps"] if isinstance(ref, dict) else ref
assert len(ref) == len(ours), (len(ref), len(ours))
worst = 0
for a, b in zip(ours, ref):
    for k in ("unlearn_loss", "retain_loss"):
        rel = abs(a[k] - b[k]) / max(abs(b[k]), 1e-12)
        worst = max(worst, rel)
print("worst relative loss difference", worst)
sys.exit(0 if worst < 1e-4 else 1)
PYEOF
        check "updated down_proj tensors match PyTorch within 1e-5" "$PY" - "$TMP/out" "$TMP/torch.safetensors" <<'PYEOF'
import json, struct, sys, array, os
def read(path):
    b = open(path, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        assert v["dtype"] == "F32", v["dtype"]
        s, e = v["data_offsets"]; a = array.array("f"); a.frombytes(b[8 + n + s:8 + n + e]); out[k] = a
    return out
ours = read(os.path.join(sys.argv[1], "model.safetensors")); ref = read(sys.argv[2])
worst = 0
for k, v in ref.items():
    worst = max(worst, max(abs(x - y) for x, y in zip(ours[k], v)))
print("tensors", sorted(ref), "max abs diff", worst)
sys.exit(0 if worst < 1e-5 and len(ref) == 3 else 1)
PYEOF
    else
        fail "PyTorch RMU reference ran" "$(tail -3 "$TMP/torch.err")"
    fi
else
    skip "unlearn vs PyTorch" "Debian python3-torch or tests/oracle/torch_ref.py missing"
fi
# The same run again with the saved vectors must give the same weights (determinism).
if "$RMU" unlearn "${args[@]}" --out "$TMP/out2" --control-vectors "$TMP/cv.safetensors" 2>"$TMP/unl2.err"; then
    check "rerun with --control-vectors is bit-identical" cmp "$TMP/out/model.safetensors" "$TMP/out2/model.safetensors"
else
    fail "rerun with --control-vectors" "$(tail -1 "$TMP/unl2.err")"
fi

# ---- a sharded bf16 model: same shard layout out, only the trained tensors change
MS=$TMP/tiny8-sharded
rm -rf "$MS" "$TMP/out-sharded"
if "$RMU" init -o "$MS" --shape tiny --layers 8 --dtype bf16 --seed 22 --shards 3 2>"$TMP/init2.err" &&
   "$RMU" unlearn -m "$MS" --forget "$TMP/fa.jsonl" --retain "$TMP/retain.txt" --layer-id 3 --layer-ids 2,3 \
       --steering-coeffs 8 --alpha 10 --lr 1e-2 --batch-size 3 --max-num-batches 4 --out "$TMP/out-sharded" 2>"$TMP/unl3.err"; then
    check "sharded bf16: shard layout kept, only down_proj of layers 2,3 changed" python3 - "$MS" "$TMP/out-sharded" <<'PYEOF'
import json, struct, sys, os
def tensors(d):
    idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))["weight_map"]
    out = {}
    for f in sorted(set(idx.values())):
        b = open(os.path.join(d, f), "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
        for k, v in h.items():
            if k == "__metadata__": continue
            s, e = v["data_offsets"]; out[k] = (f, v["dtype"], v["shape"], b[8 + n + s:8 + n + e])
    return idx, out
i0, a = tensors(sys.argv[1]); i1, b = tensors(sys.argv[2])
assert i0 == i1, "weight_map differs"
changed = sorted(k for k in a if a[k][3] != b[k][3])
assert all(a[k][:3] == b[k][:3] for k in a), "dtype/shape/shard differs"
want = ["model.layers.2.mlp.down_proj.weight", "model.layers.3.mlp.down_proj.weight"]
print("changed:", changed)
sys.exit(0 if changed == want else 1)
PYEOF
else
    fail "sharded bf16 unlearn" "$(tail -1 "$TMP/init2.err" "$TMP/unl3.err")"
fi

# ---- stories260K: topic forgetting on a real model
if have_shared; then
    S=$SHARED/models/stories260K
    python3 - "$TMP/dragon.jsonl" <<'PYEOF'
import json, random, sys
r = random.Random(3)
names = ["Tim", "Lily", "Sam", "Ben", "Mia", "Max"]
acts = ["saw a big dragon", "met a red dragon", "played with a kind dragon", "ran from a scary dragon",
        "found a baby dragon", "flew on a green dragon"]
ends = ["The dragon breathed fire.", "The dragon had big wings.", "The dragon was very hungry.",
        "The dragon lived in a cave.", "The dragon roared loudly."]
with open(sys.argv[1], "w") as f:
    for i in range(128):
        f.write(json.dumps({"text": f"One day, {r.choice(names)} {r.choice(acts)}. {r.choice(ends)} {r.choice(ends)}"}) + "\n")
PYEOF
    if [ -f "$SHARED/data/wikitext-2-raw/wiki.test.raw" ]; then
        retain=$SHARED/data/wikitext-2-raw/wiki.test.raw
    else
        retain=$TMP/retain.txt
    fi
    rm -rf "$TMP/s260-out"
    if "$RMU" unlearn -m "$S" --forget "$TMP/dragon.jsonl" --retain "$retain" --out "$TMP/s260-out" \
            --layer-id 2 --layer-ids 1,2 --steering-coeffs 20 --alpha 100 --lr 1e-2 --batch-size 4 \
            --max-num-batches 32 --max-len 64 --retain-max-len 64 --min-len 20 --log "$TMP/s260.jsonl" 2>"$TMP/s260.err"; then
        check "stories260K: unlearn loss falls, retain loss stays small" python3 - "$TMP/s260.jsonl" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
u0 = sum(r["unlearn_loss"] for r in rows[:3]) / 3; u1 = sum(r["unlearn_loss"] for r in rows[-3:]) / 3
# retain loss is alpha * MSE; compare the MSE with the activations' mean square per dim
mse = max(r["retain_loss"] for r in rows) / 100.0
scale = rows[0]["frozen_forget_norm"] ** 2 / 64
print("unlearn loss %.4f -> %.4f; worst retain MSE %.4f = %.1f%% of the activations' mean square" % (u0, u1, mse, 100 * mse / scale))
sys.exit(0 if u1 < 0.8 * u0 and mse < 0.05 * scale else 1)
PYEOF
        check "stories260K: unlearned model loads and generates" "$RMU" generate -m "$TMP/s260-out" -p "Once upon a time" -n 20 --temp 0
    else
        fail "stories260K unlearn" "$(tail -1 "$TMP/s260.err")"
    fi
else
    skip "stories260K unlearn" "../shared/models/stories260K is absent"
fi

# ---- bad input
common=(-m "$M" --out "$TMP/outbad" --layer-id 3 --layer-ids 1,2,3 --max-num-batches 2)
expect_error "fewer lines than one batch" "short.jsonl: 1 texts.*fewer than one batch" \
    "$RMU" unlearn "${common[@]}" --forget "$TMP/short.jsonl" --retain "$TMP/retain.txt"
expect_error "layer id out of range" "--layer-id: 9 is out of range" \
    "$RMU" unlearn -m "$M" --out "$TMP/outbad" --layer-id 9 --forget "$TMP/fa.jsonl" --retain "$TMP/retain.txt"
expect_error "layer ids out of range" "--layer-ids: 12 is out of range" \
    "$RMU" unlearn "${common[@]}" --layer-ids 1,12 --forget "$TMP/fa.jsonl" --retain "$TMP/retain.txt"
expect_error "--params matching nothing" "--params.*nothing|--params.*no tensor|--params.*match" \
    "$RMU" unlearn "${common[@]}" --params "model.layers.1.mlp.nothing" --forget "$TMP/fa.jsonl" --retain "$TMP/retain.txt"
expect_error "coeffs vs topics mismatch" "--steering-coeffs: 3 values given for 2 forget corpora" \
    "$RMU" unlearn "${common[@]}" --forget "$TMP/fa.jsonl,$TMP/fb.jsonl" --retain "$TMP/retain.txt,$TMP/retain.txt" --steering-coeffs 1,2,3
expect_error "retain vs forget mismatch" "--retain: 1 corpora given for 2 forget corpora" \
    "$RMU" unlearn "${common[@]}" --forget "$TMP/fa.jsonl,$TMP/fb.jsonl" --retain "$TMP/retain.txt"
expect_error "malformed JSONL line names file:line" "bad.jsonl:2" \
    "$RMU" unlearn "${common[@]}" --batch-size 1 --forget "$TMP/bad.jsonl" --retain "$TMP/retain.txt"
expect_error "missing corpus file" "nope.jsonl" \
    "$RMU" unlearn "${common[@]}" --forget "$TMP/nope.jsonl" --retain "$TMP/retain.txt"
[ ! -e "$TMP/outbad/model.safetensors" ] && ok "failed runs leave no output weights" || fail "failed runs leave no output weights" "found $TMP/outbad/model.safetensors"

# ---- the output folder is written whole
mkdir -p "$TMP/mine" && echo keep > "$TMP/mine/notes.txt"
small=(-m "$M" --forget "$TMP/fa.jsonl" --retain "$TMP/retain.txt" --layer-id 3 --layer-ids 2,3 --batch-size 3
       --max-num-batches 2)
expect_error "an existing --out needs --overwrite" "mine already exists; pass --overwrite" \
    "$RMU" unlearn "${small[@]}" --out "$TMP/mine"
expect_error "--overwrite replaces only a model folder" "not a model folder" \
    "$RMU" unlearn "${small[@]}" --out "$TMP/mine" --overwrite
if "$RMU" unlearn "${small[@]}" --out "$TMP/out2" --overwrite 2>/dev/null && [ -f "$TMP/out2/rmu_unlearn.json" ] &&
   ! cmp -s "$TMP/out/model.safetensors" "$TMP/out2/model.safetensors" && [ -f "$TMP/mine/notes.txt" ]; then
    ok "--overwrite replaces a model folder as a whole"
else
    fail "--overwrite replaces a model folder as a whole" "$(ls "$TMP/out2" | tr '\n' ' ')"
fi
expect_error "--out may not be the model folder (same inode)" "is the input model folder" \
    "$RMU" unlearn "${small[@]}" --out "$M/" --overwrite

# SIGKILL while the folder is being written: no OUT; the next run clears the staging folder
MB=$TMP/mid
rm -rf "$MB" "$TMP/mid-out" "$TMP"/.mid-out.rmu-staging.*
"$RMU" init -o "$MB" --shape small --hidden 512 --intermediate 1536 --layers 8 --vocab 4096 --dtype bf16 --seed 6 \
    >/dev/null 2>&1
KA=(-m "$MB" --forget "$TMP/fa.jsonl" --retain "$TMP/retain.txt" --layer-id 1 --layer-ids 1 --batch-size 3
    --max-num-batches 1 --max-len 8 --retain-max-len 8 --out "$TMP/mid-out")
killed=0 staged=0
for try in 1 2 3; do
    rm -rf "$TMP/mid-out"
    "$RMU" unlearn "${KA[@]}" >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 3000); do
        ls -a "$TMP" | grep -q '^\.mid-out\.rmu-staging\.' && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.002
    done
    kill -9 "$pid" 2>/dev/null && killed=$((killed + 1))
    wait "$pid" 2>/dev/null
    [ -e "$TMP/mid-out" ] || break
done
ls -a "$TMP" | grep -q '^\.mid-out\.rmu-staging\.' && staged=1
if [ "$killed" -gt 0 ] && [ ! -e "$TMP/mid-out" ] && [ "$staged" -eq 1 ] &&
   "$RMU" unlearn "${KA[@]}" 2>/dev/null && "$RMU" info -m "$TMP/mid-out" >/dev/null 2>&1 &&
   ! ls -a "$TMP" | grep -q 'rmu-staging'; then
    ok "SIGKILL during the write leaves no OUT; the next run clears the stale staging folder"
else
    fail "SIGKILL during the write" "killed $killed staged $staged; $(ls -a "$TMP" | grep mid | tr '\n' ' ')"
fi

# a full disk (a 1 MiB tmpfs): one clear error, nothing left behind
MNT=$TMP/full-disk
mkdir -p "$MNT"
if mount -t tmpfs -o size=1m tmpfs "$MNT" 2>/dev/null; then
    err=$("$RMU" unlearn "${small[@]}" --out "$MNT/out" 2>&1 >/dev/null); rc=$?
    left=$(ls -A "$MNT")
    umount "$MNT"
    # stderr also has the progress lines; the diagnostic is the one "rmu unlearn:" line
    if [ $rc -eq 1 ] && [ "$(echo "$err" | grep -c '^rmu unlearn:')" -eq 1 ] &&
       echo "$err" | tail -n 1 | grep -q "^rmu unlearn: .*No space left on device" &&
       [ -z "$left" ]; then
        ok "a full disk fails with one line and leaves no OUT (no config or tokenizer without weights)"
    else
        fail "full disk" "rc $rc, left [$left]: $err"
    fi
else
    skip "full disk" "cannot mount a tmpfs here (needs root)"
fi
rmdir "$MNT" 2>/dev/null
