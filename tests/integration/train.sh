#!/usr/bin/env bash
# tests/integration/train.sh - `rmu train`: gradients and AdamW steps against PyTorch
# (tests/oracle/torch_ref.py) on tiny random Mistrals (GQA, sliding window shorter than the
# rows, left padding, tied and untied heads, a pad_token_id), fine-tuning stories260K, the
# output folder (written whole: OUT.rmu-work renamed into place; provenance of an unlearned
# input dropped), SIGKILL + --resume ending bit-identical, SIGKILL during the final write
# and a full disk leaving no OUT, and bad input.
source "$(dirname "$0")/../lib.sh"
# Shared 2-core machines: spinning OpenMP waits collapse under oversubscription.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
ORACLE="$ROOT/tests/oracle/torch_ref.py"
T=$TMP
rm -rf "$T" && mkdir -p "$T"

if [ ! -x "$RMU" ]; then
    fail "train: build" "$RMU is missing (run make)"
    exit 0
fi

# ---- inputs: tiny models and fixed padded batches (row lengths differ: left padding)
$RMU init -o "$T/tiny" --shape tiny --dtype f32 --seed 1 --sliding-window 8 >/dev/null 2>&1 &&
    $RMU init -o "$T/tied" --shape tiny --dtype f32 --seed 2 --sliding-window 8 --tie >/dev/null 2>&1 &&
    $RMU init -o "$T/shard" --shape tiny --dtype bf16 --seed 3 --shards 2 >/dev/null 2>&1
if [ $? -ne 0 ]; then
    fail "train: rmu init" "cannot create the tiny models"
    exit 0
fi
# 3 rows of 20 tokens with 0, 5 and 13 pads (window 8 < 20), then 2 rows of 12
cat > "$T/batch.json" <<'EOF'
{"input_ids": [[1, 402, 66, 301, 9, 250, 77, 412, 130, 5, 88, 499, 23, 310, 61, 205, 17, 444, 96, 7],
               [2, 2, 2, 2, 2, 1, 55, 160, 32, 480, 11, 290, 73, 402, 19, 8, 341, 226, 99, 150],
               [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 70, 318, 44, 9, 201, 500]],
 "attention_mask": [[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
                    [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
                    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]]}
EOF
cat > "$T/batches.json" <<'EOF'
[{"input_ids": [[1, 402, 66, 301, 9, 250, 77, 412, 130, 5, 88, 499, 23, 310, 61, 205, 17, 444, 96, 7],
                [2, 2, 2, 2, 2, 1, 55, 160, 32, 480, 11, 290, 73, 402, 19, 8, 341, 226, 99, 150],
                [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 70, 318, 44, 9, 201, 500]],
  "attention_mask": [[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
                     [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
                     [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]]},
 {"input_ids": [[2, 2, 2, 1, 301, 302, 303, 90, 91, 92, 400, 3],
                [1, 17, 18, 19, 20, 21, 250, 251, 252, 6, 6, 6]],
  "attention_mask": [[0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1],
                     [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]]}]
EOF

# st_cmp A B TOL: every tensor of B (reference) present in A with max|A-B| <= TOL * max|B|
st_cmp() {
    "$PY" - "$@" <<'EOF'
import json, struct, sys
import numpy as np
def rd(p):
    d = open(p, "rb").read(); n = struct.unpack("<Q", d[:8])[0]; h = json.loads(d[8:8 + n]); out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        a, b = v["data_offsets"]; raw = d[8 + n + a:8 + n + b]
        if v["dtype"] == "F32": x = np.frombuffer(raw, "<f4")
        elif v["dtype"] == "BF16": x = (np.frombuffer(raw, "<u2").astype("<u4") << 16).view("<f4")
        else: x = np.frombuffer(raw, "<f2").astype("<f4")
        out[k] = x.reshape(v["shape"]).astype(np.float64)
    return out
a, b, tol = rd(sys.argv[1]), rd(sys.argv[2]), float(sys.argv[3])
worst, bad = 0.0, []
for k in sorted(b):
    if k not in a or a[k].shape != b[k].shape: bad.append("%s missing/shape" % k); continue
    r = np.abs(a[k] - b[k]).max() / max(np.abs(b[k]).max(), 1e-30)
    worst = max(worst, r)
    if not r <= tol: bad.append("%s rel %.3g" % (k, r))
print("%d tensors, worst rel %.3g%s" % (len(b), worst, ("; " + ", ".join(bad[:4])) if bad else ""))
sys.exit(1 if bad else 0)
EOF
}

# ---- 1. gradients vs PyTorch autograd (float64 reference), 1e-4 relative per tensor
if have_torch; then
    grad_case() { # name model patterns
        local name=$1 model=$2 pat=$3 out msg
        if ! out=$($RMU train -m "$model" --batch-json "$T/batch.json" --trainable "$pat" \
                   --dump-grads "$T/$name.rmu.safetensors" 2>&1); then
            fail "train: grads $name" "rmu: $out"; return
        fi
        if ! msg=$("$PY" "$ORACLE" grad --model "$model" --batch "$T/batch.json" --trainable "$pat" \
                    --out "$T/$name.ref.safetensors" 2>&1); then
            fail "train: grads $name" "oracle: $msg"; return
        fi
        if msg=$(st_cmp "$T/$name.rmu.safetensors" "$T/$name.ref.safetensors" 1e-4 2>&1); then
            ok "train: grads $name match torch autograd ($msg)"
        else
            fail "train: grads $name" "$msg"
        fi
    }
    grad_case untied "$T/tiny" '*'
    grad_case tied "$T/tied" '*'
    "$PY" "$ORACLE" make-model --out "$T/padid" --hidden 32 --intermediate 48 --layers 3 --heads 4 --kv-heads 2 \
        --vocab 512 --sliding-window 6 --tie --pad-token-id 2 --seed 4 >/dev/null 2>&1
    grad_case selective_padid "$T/padid" 'model.embed_tokens.weight,model.layers.{0,2}.self_attn.*,model.norm.weight'

    # ---- 2. five AdamW steps (weight decay, clipping, cosine warmup, two batches cycled)
    P='model.layers.{1,2,3}.mlp.*,model.layers.2.self_attn.{q,k}_proj.weight,model.norm.weight,lm_head.weight,model.embed_tokens.weight'
    if out=$($RMU train -q -m "$T/tiny" --batch-json "$T/batches.json" --trainable "$P" --steps 5 --lr 3e-3 \
               --weight-decay 0.1 --clip 0.5 --schedule cosine --warmup 2 --out "$T/adamw" 2>&1) &&
       msg=$("$PY" "$ORACLE" adamw --model "$T/tiny" --batches "$T/batches.json" --trainable "$P" --steps 5 \
               --total 5 --lr 3e-3 --weight-decay 0.1 --clip 0.5 --schedule cosine --warmup 2 \
               --out "$T/adamw.ref.safetensors" --losses "$T/adamw.ref.json" 2>&1); then
        if msg=$(st_cmp "$T/adamw/model.safetensors" "$T/adamw.ref.safetensors" 1e-5 2>&1); then
            ok "train: 5 AdamW steps match torch.optim.AdamW + LambdaLR + clip_grad_norm_ ($msg)"
        else
            fail "train: 5 AdamW steps" "$msg"
        fi
    else
        fail "train: 5 AdamW steps" "$out $msg"
    fi
else
    skip "train: grads and AdamW vs PyTorch" "$PY has no torch"
fi

# ---- corpora
stories() { # N lines of TinyStories-like text
    local names=(Lily Tom Sue Ben Mia Max Anna Sam) things=("red ball" "big box" "little dog" "blue car" "soft bear" "green kite")
    local places=(park garden house forest beach) feels=(happy sad excited tired) i=0
    while [ $i -lt "$1" ]; do
        local n=${names[$((i % 8))]}
        echo "Once upon a time, there was a kid named $n. $n had a ${things[$((i / 8 % 6))]}. One day, $n went to the ${places[$((i / 48 % 5))]} with the ${things[$((i / 8 % 6))]}. $n was very ${feels[$((i % 4))]}."
        i=$((i + 1))
    done
}
stories 300 > "$T/stories.txt"

# ---- 3. fine-tune stories260K: the loss falls clearly; the output loads and generates
if have_shared; then
    S="$SHARED/models/stories260K"
    if out=$($RMU train -q -m "$S" --data "$T/stories.txt" --out "$T/sft" --steps 40 --batch-size 8 --seq-len 64 \
               --lr 2e-3 --warmup 4 --log "$T/sft.jsonl" 2>&1); then
        first=$(head -n 3 "$T/sft.jsonl" | sed 's/.*"loss": \([^,]*\),.*/\1/' | awk '{s+=$1} END {print s/NR}')
        last=$(tail -n 5 "$T/sft.jsonl" | sed 's/.*"loss": \([^,]*\),.*/\1/' | awk '{s+=$1} END {print s/NR}')
        if awk -v a="$first" -v b="$last" 'BEGIN {exit !(b < 0.5 * a)}'; then
            ok "train: stories260K fine-tune lowers the loss ($first -> $last)"
        else
            fail "train: stories260K fine-tune" "loss $first -> $last"
        fi
        gen=$($RMU generate -m "$T/sft" -p "Once upon a time" -n 20 --temp 0 2>"$T/gen.err")
        if [ $? -eq 0 ] && echo "$gen" | grep -q "^Once upon a time"; then
            ok "train: fine-tuned folder generates ($(echo "$gen" | head -n 1 | cut -c1-60)...)"
        else
            fail "train: fine-tuned folder generates" "$gen"
        fi
        missing=""
        for f in "$S"/*; do [ -e "$T/sft/$(basename "$f")" ] || missing="$missing $(basename "$f")"; done
        if [ -z "$missing" ] && cmp -s "$S/config.json" "$T/sft/config.json" &&
           [ "$(wc -l < "$T/sft.jsonl")" -eq 40 ] && grep -q '"grad_norm"' "$T/sft.jsonl" &&
           grep -q '"tokens_per_s"' "$T/sft.jsonl"; then
            ok "train: output folder has every input file; log has one object per step"
        else
            fail "train: output folder / log" "missing:$missing"
        fi
    else
        fail "train: stories260K fine-tune" "$out"
    fi
else
    skip "train: stories260K fine-tune" "$SHARED/models/stories260K absent"
fi

# ---- 4. output format: shards and weight map kept; --dtype; lr 0 leaves weights unchanged
if out=$($RMU train -q -m "$T/shard" --data "$T/stories.txt" --out "$T/shard.out" --steps 2 --batch-size 2 \
           --seq-len 16 --trainable 'model.layers.1.mlp.*' 2>&1); then
    a=$(ls "$T/shard" | grep safetensors | tr '\n' ' ')
    b=$(ls "$T/shard.out" | grep safetensors | tr '\n' ' ')
    wm() { tr -d ' \n' < "$1" | sed 's/.*"weight_map"://'; }
    if [ "$a" = "$b" ] && [ "$(wm "$T/shard/model.safetensors.index.json")" = "$(wm "$T/shard.out/model.safetensors.index.json")" ] &&
       head -c 4096 "$T/shard.out/model-00001-of-00002.safetensors" | grep -q BF16; then
        ok "train: sharded bf16 input gives the same shard files and weight_map, bf16"
    else
        fail "train: sharded output" "input [$a] output [$b]"
    fi
else
    fail "train: sharded output" "$out"
fi
if out=$($RMU train -q -m "$T/tiny" --data "$T/stories.txt" --out "$T/lr0" --steps 2 --batch-size 2 --seq-len 16 \
           --lr 0 2>&1) && cmp -s "$T/tiny/model.safetensors" "$T/lr0/model.safetensors"; then
    ok "train: lr 0 writes the input weights back bit for bit"
else
    fail "train: lr 0 round trip" "$out"
fi
if out=$($RMU train -q -m "$T/tiny" --data "$T/stories.txt" --out "$T/tobf16" --steps 1 --batch-size 2 \
           --seq-len 16 --dtype bf16 2>&1) && grep -q '"torch_dtype": "bfloat16"' "$T/tobf16/config.json" &&
   ! head -c 4096 "$T/tobf16/model.safetensors" | grep -q F32; then
    ok "train: --dtype bf16 converts every tensor and config.json"
else
    fail "train: --dtype bf16" "$out"
fi

# ---- 5. SIGKILL mid-run + --resume ends bit-identical to an uninterrupted run
RUN=(-m "$T/tiny" --data "$T/stories.txt" --steps 60 --batch-size 8 --seq-len 64 --lr 1e-3 --warmup 5
     --schedule cosine --weight-decay 0.01 --save-every 4 -q)
if $RMU train "${RUN[@]}" --out "$T/full" --log "$T/full.jsonl" >/dev/null 2>&1; then
    kills=0
    for delay in 0.3 0.5 0.2; do
        OMP_NUM_THREADS=1 $RMU train "${RUN[@]}" --out "$T/killed" --log "$T/killed.jsonl" --resume >/dev/null 2>&1 &
        pid=$!
        sleep "$delay"
        if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
        wait "$pid" 2>/dev/null
        # every checkpoint folder on disk is whole: its state parses and has every tensor
        for c in "$T"/killed.rmu-work/checkpoint-* "$T"/killed/checkpoint-*; do
            case "$c" in *.tmp|*.del) continue ;; esac # a cut-off save or removal: the lister drops it
            [ -d "$c" ] || continue
            if ! grep -q '"step"' "$c/trainer_state.json" 2>/dev/null || [ ! -s "$c/state.safetensors" ]; then
                fail "train: checkpoints are never half-written" "$c incomplete"
            fi
        done
        # OUT is absent or whole, never half-written
        if [ -e "$T/killed" ] && ! $RMU info -m "$T/killed" >/dev/null 2>&1; then
            fail "train: a killed run leaves no half OUT" "$(ls "$T/killed" | tr '\n' ' ')"
        fi
    done
    if $RMU train "${RUN[@]}" --out "$T/killed" --log "$T/killed.jsonl" --resume >/dev/null 2>"$T/resume.err" &&
       cmp -s "$T/full/model.safetensors" "$T/killed/model.safetensors"; then
        steps=$(sed 's/.*"step": \([0-9]*\),.*/\1/' "$T/killed.jsonl" | sort -n | uniq | wc -l)
        nl=$(wc -l < "$T/killed.jsonl")
        if [ "$steps" -eq 60 ] && [ "$nl" -eq 60 ] && cmp -s <(cut -d, -f1-4 "$T/full.jsonl") <(cut -d, -f1-4 "$T/killed.jsonl") &&
           [ ! -e "$T/killed.rmu-work" ] && [ -d "$T/killed/checkpoint-60" ]; then
            ok "train: $kills SIGKILLs + --resume (1 thread vs 2) end bit-identical; log has each step once, same losses"
        else
            fail "train: resumed log" "$nl lines, $steps distinct steps"
        fi
    else
        fail "train: SIGKILL + --resume bit-identical" "$(cat "$T/resume.err") (weights differ or resume failed)"
    fi
    # resuming with different settings is refused
    expect_error "train: --resume with another --lr is refused" "was made with lr" \
        $RMU train "${RUN[@]/1e-3/2e-3}" --out "$T/killed" --resume
    expect_error "train: a folder with checkpoints needs --resume" "already holds checkpoint-60.*--resume" \
        $RMU train "${RUN[@]}" --out "$T/killed"
    if out=$($RMU train "${RUN[@]}" --out "$T/killed" --resume 2>&1) && echo "$out" | grep -q "already complete" &&
       cmp -s "$T/full/model.safetensors" "$T/killed/model.safetensors"; then
        ok "train: --resume on a finished OUT with the same settings does nothing"
    else
        fail "train: --resume on a finished OUT" "$out"
    fi
else
    fail "train: uninterrupted run" "rmu train failed"
fi

# ---- 6. bad input: one clear line, non-zero exit
printf '\n\n' > "$T/empty.txt"
printf '{"text": "fine"}\n{"text": "cut\n' > "$T/bad.jsonl"
printf '{"text": "fine"}\n\n{"body": "x"}\n' > "$T/nofield.jsonl"
B=(-m "$T/tiny" --out "$T/bad.out" --steps 2 --batch-size 2 --seq-len 16 -q)
expect_error "train: empty corpus" "empty.txt: no training text" $RMU train "${B[@]}" --data "$T/empty.txt"
expect_error "train: malformed JSONL names file and line" "bad.jsonl:2: invalid JSON" \
    $RMU train "${B[@]}" --data "$T/bad.jsonl"
expect_error "train: missing text field names file and line" 'nofield.jsonl:3: expected a JSON object with a string field "text"' \
    $RMU train "${B[@]}" --data "$T/nofield.jsonl"
expect_error "train: missing corpus file" "nope.txt: cannot open" $RMU train "${B[@]}" --data "$T/nope.txt"
expect_error "train: pattern matching no tensor" "pattern 'model.layers.9.mlp.\*' matches no tensor" \
    $RMU train "${B[@]}" --data "$T/stories.txt" --trainable 'model.layers.9.mlp.*'
expect_error "train: unbalanced braces" "unbalanced" \
    $RMU train "${B[@]}" --data "$T/stories.txt" --trainable 'model.layers.{1,2.mlp.*'
expect_error "train: seq-len over max_position_embeddings" "seq-len: 600 exceeds max_position_embeddings 512" \
    $RMU train -m "$T/tiny" --out "$T/bad.out" --data "$T/stories.txt" --seq-len 600
expect_error "train: --out is the model folder" "is the input model folder" \
    $RMU train -m "$T/tiny" --out "$T/tiny" --data "$T/stories.txt"
expect_error "train: --steps with --epochs" "exclude each other" \
    $RMU train "${B[@]}" --data "$T/stories.txt" --epochs 2
expect_error "train: --data required" "--data FILE is required" $RMU train -m "$T/tiny" --out "$T/bad.out"
expect_error "train: bad --schedule" "expected constant, linear or cosine" \
    $RMU train "${B[@]}" --data "$T/stories.txt" --schedule step
# NaN loss: stop, name the step, keep the last good checkpoint (which then resumes)
rm -rf "$T/nan"
expect_error "train: NaN loss stops at its step and names the last good checkpoint" \
    "step 5: loss is NaN; training stopped \(the last good checkpoint is .*nan.rmu-work/checkpoint-4\)" \
    $RMU train -m "$T/tiny" --data "$T/stories.txt" --out "$T/nan" --steps 8 --batch-size 2 --seq-len 16 \
    --save-every 2 -q --debug-nan-step 5
if [ -f "$T/nan.rmu-work/checkpoint-4/state.safetensors" ] && [ ! -e "$T/nan" ] &&
   $RMU train -m "$T/tiny" --data "$T/stories.txt" --out "$T/nan" --steps 8 --batch-size 2 --seq-len 16 \
       --save-every 2 -q --resume 2>/dev/null && [ -f "$T/nan/model.safetensors" ]; then
    ok "train: after a NaN stop the last good checkpoint resumes to the end (no OUT until then)"
else
    fail "train: NaN stop keeps the last good checkpoint" "checkpoint-4 missing or resume failed"
fi
# killed between a checkpoint save and its pruning, at the last step: the resumed run prunes
# before it writes OUT, so OUT keeps only the newest --keep-checkpoints
rm -rf "$T/prune" "$T/prune.rmu-work"
PR=(-m "$T/tiny" --data "$T/stories.txt" --out "$T/prune" --steps 6 --batch-size 2 --seq-len 16 --save-every 2 -q)
if $RMU train "${PR[@]}" --keep-checkpoints 3 2>/dev/null && mkdir "$T/prune.rmu-work" &&
   mv "$T/prune"/checkpoint-* "$T/prune.rmu-work/" && rm -rf "$T/prune" &&
   $RMU train "${PR[@]}" --keep-checkpoints 2 --resume 2>/dev/null &&
   [ "$(cd "$T/prune" && ls -d checkpoint-* | tr '\n' ' ')" = "checkpoint-4 checkpoint-6 " ]; then
    ok "train: a resumed run drops checkpoints beyond --keep-checkpoints before it writes OUT"
else
    fail "train: resume prunes checkpoints" "OUT holds: $(ls "$T/prune" 2>&1 | tr '\n' ' ')"
fi
# a NaN in the weights themselves
if [ -x "$PY" ] || command -v "$PY" >/dev/null 2>&1; then
    cp -r "$T/tiny" "$T/nanw"
    "$PY" - "$T/nanw/model.safetensors" <<'EOF'
import json, struct, sys
p = sys.argv[1]; d = bytearray(open(p, "rb").read()); n = struct.unpack("<Q", d[:8])[0]
h = json.loads(d[8:8 + n]); a, _ = h["model.norm.weight"]["data_offsets"]
d[8 + n + a:8 + n + a + 4] = struct.pack("<f", float("nan")); open(p, "wb").write(d)
EOF
    expect_error "train: NaN weights stop at step 1" "step 1: loss is NaN; training stopped \(no checkpoint was written\)" \
        $RMU train -m "$T/nanw" --data "$T/stories.txt" --out "$T/nanw.out" --steps 3 --batch-size 2 --seq-len 16 -q
fi

# ---- 7. OUT is written whole, from an input's files minus provenance of earlier runs
if $RMU unlearn -m "$T/tiny" --forget "$T/stories.txt" --retain "$T/stories.txt" --layer-id 1 --layer-ids 1 \
       --batch-size 2 --max-num-batches 2 --max-len 16 --retain-max-len 16 --out "$T/unl" >/dev/null 2>&1 &&
   [ -f "$T/unl/rmu_unlearn.json" ]; then
    if $RMU train -q -m "$T/unl" --data "$T/stories.txt" --out "$T/unl-sft" --steps 1 --batch-size 2 --seq-len 16 2>/dev/null &&
       [ ! -e "$T/unl-sft/rmu_unlearn.json" ] && [ -f "$T/unl-sft/tokenizer.json" ]; then
        ok "train: on an unlearned folder writes no rmu_unlearn.json (it describes the input, not this output)"
    else
        fail "train: provenance of the input dropped" "$(ls "$T/unl-sft" 2>&1 | tr '\n' ' ')"
    fi
else
    fail "train: provenance of the input dropped" "rmu unlearn on the tiny model failed"
fi
B1=(-m "$T/tiny" --data "$T/stories.txt" --steps 1 --batch-size 2 --seq-len 16 -q)
mkdir -p "$T/mine" && echo keep > "$T/mine/notes.txt"
expect_error "train: an existing OUT is refused" "mine already exists; pass --overwrite" $RMU train "${B1[@]}" --out "$T/mine"
expect_error "train: --overwrite replaces only a model folder" "not a model folder" \
    $RMU train "${B1[@]}" --out "$T/mine" --overwrite
if [ -f "$T/mine/notes.txt" ] && $RMU train "${B1[@]}" --out "$T/lr0" --overwrite 2>/dev/null &&
   ! cmp -s "$T/tiny/model.safetensors" "$T/lr0/model.safetensors" && [ -z "$(ls -a "$T" | grep rmu-staging)" ]; then
    ok "train: --overwrite replaces a model folder as a whole; other folders are left alone"
else
    fail "train: --overwrite" "$(ls -a "$T" | tr '\n' ' ')"
fi
mkdir -p "$T/stale.rmu-work" && echo x > "$T/stale.rmu-work/model.safetensors.tmp.1"
if $RMU train "${B1[@]}" --out "$T/stale" 2>/dev/null && [ -f "$T/stale/config.json" ] && [ ! -e "$T/stale.rmu-work" ] &&
   [ ! -e "$T/stale/model.safetensors.tmp.1" ]; then
    ok "train: a stale work folder without checkpoints is cleared, never reused"
else
    fail "train: stale work folder" "$(ls "$T/stale" "$T/stale.rmu-work" 2>&1 | tr '\n' ' ')"
fi

# ---- 8. SIGKILL while OUT is being written: no OUT; --resume then finishes it bit-identically
$RMU init -o "$T/mid" --shape small --hidden 512 --intermediate 1536 --layers 8 --vocab 4096 --dtype bf16 --seed 5 >/dev/null 2>&1
K0=(-m "$T/mid" --data "$T/stories.txt" --steps 2 --batch-size 1 --seq-len 8 --trainable model.norm.weight -q)
K=("${K0[@]}" --save-every 2)
if $RMU train "${K[@]}" --out "$T/mid-ref" 2>/dev/null; then
    killed=0
    for try in 1 2 3; do
        rm -rf "$T/mid-out" "$T/mid-out.rmu-work"
        $RMU train "${K[@]}" --out "$T/mid-out" >/dev/null 2>&1 &
        pid=$!
        # the output files appear in the work folder only after the last step: kill then
        for _ in $(seq 1 3000); do
            ls "$T/mid-out.rmu-work" 2>/dev/null | grep -q -e config.json -e '\.tmp\.' && break
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.002
        done
        kill -9 "$pid" 2>/dev/null && killed=$((killed + 1))
        wait "$pid" 2>/dev/null
        [ -e "$T/mid-out" ] || break
    done
    if [ "$killed" -gt 0 ] && [ ! -e "$T/mid-out" ] && [ -d "$T/mid-out.rmu-work/checkpoint-2" ] &&
       $RMU train "${K[@]}" --out "$T/mid-out" --resume 2>/dev/null &&
       cmp -s "$T/mid-ref/model.safetensors" "$T/mid-out/model.safetensors"; then
        ok "train: SIGKILL during the final write leaves no OUT; --resume writes it, bit-identical"
    else
        fail "train: SIGKILL during the final write" "killed $killed; $(ls "$T/mid-out" "$T/mid-out.rmu-work" 2>&1 | tr '\n' ' ')"
    fi
else
    fail "train: SIGKILL during the final write" "reference run failed"
fi

# ---- 9. a full disk (a 1 MiB tmpfs): one clear error, nothing left behind
MNT=$T/full-disk
mkdir -p "$MNT"
if mount -t tmpfs -o size=1m tmpfs "$MNT" 2>/dev/null; then
    # no --save-every: a work folder with checkpoints would rightly stay, to be resumed
    err=$($RMU train "${K0[@]}" --out "$MNT/out" 2>&1 >/dev/null); rc=$?
    left=$(ls -A "$MNT")
    umount "$MNT"
    if [ $rc -eq 1 ] && [ "$(echo "$err" | wc -l)" -eq 1 ] && echo "$err" | grep -q "No space left on device" &&
       [ -z "$left" ]; then
        ok "train: a full disk fails with one line and leaves neither OUT nor a work folder"
    else
        fail "train: full disk" "rc $rc, left [$left]: $err"
    fi
else
    skip "train: full disk" "cannot mount a tmpfs here (needs root)"
fi
rmdir "$MNT" 2>/dev/null
