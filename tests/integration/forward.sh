#!/usr/bin/env bash
# forward.sh - the inference forward pass against independent references:
# stories260K's recorded greedy text and logits (llama2.c/HF), and the PyTorch oracle on
# tiny random models (GQA, sliding window shorter than the sequence, tied/untied, bf16/f32/f16,
# sharded). Decode with the KV cache must equal prefill.
. "$(dirname "$0")/../lib.sh"

# ---- stories260K: exact greedy text and first-position logits
if have_shared; then
    S=$SHARED/models/stories260K
    want=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["greedy_text"])' "$S/reference.json" 2>/dev/null ||
           python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["greedy_text"])' "$S/reference.json")
    got=$("$RMU" generate -m "$S" -p "Once upon a time" -n 120 --temp 0 2>"$TMP/gen.err")
    if [ "$got" = "$want" ]; then ok "stories260K greedy text equals reference.json"
    else fail "stories260K greedy text equals reference.json" "got: $(echo "$got" | head -c 200)"; fi
    ids=$(python3 -c 'import json,sys; print(" ".join(map(str,json.load(open(sys.argv[1]))["prompt_ids"])))' "$S/reference.json")
    if "$RMU" logits -m "$S" --ids "$ids" --out "$TMP/s260.f32" --precision fp32 2>"$TMP/logits.err"; then
        check "stories260K logits_first_positions within 1e-4" python3 - "$S/reference.json" "$TMP/s260.f32" <<'PYEOF'
import json, struct, sys
ref = json.load(open(sys.argv[1]))["logits_first_positions"]
raw = open(sys.argv[2], "rb").read()
V = len(ref[0])
got = struct.unpack("<%df" % (len(raw) // 4), raw)
worst = max(abs(got[p * V + i] - ref[p][i]) for p in range(len(ref)) for i in range(V))
print("max abs diff", worst)
sys.exit(0 if worst < 1e-4 else 1)
PYEOF
    else
        fail "stories260K logits_first_positions within 1e-4" "$(cat "$TMP/logits.err")"
    fi
else
    skip "stories260K reference" "../shared/models/stories260K is absent"
fi

# ---- tiny random models against the PyTorch oracle
ORACLE=$ROOT/tests/oracle/torch_ref.py
ids="1 17 200 3 99 45 45 511 8 302 77 150 9 260 33 401 12 5 88 190 250 6 7 100 480 2 64 128 300 11"
models=(
    "gqa-window8-untied-f32|--shape tiny --dtype f32 --seed 11 --sliding-window 8 --jitter-norms"
    "gqa-tied-bf16|--shape tiny --dtype bf16 --seed 12 --tie --sliding-window none --jitter-norms"
    "sharded3-f16-window5|--shape tiny --dtype f16 --seed 13 --shards 3 --sliding-window 5 --jitter-norms"
    "llama-mha-f32|--shape stories260k --dtype f32 --seed 14 --jitter-norms"
)
for spec in "${models[@]}"; do
    name=${spec%%|*}; args=${spec#*|}
    d=$TMP/$name
    rm -rf "$d"
    if ! "$RMU" init -o "$d" $args 2>"$TMP/init.err"; then
        fail "rmu init $name" "$(cat "$TMP/init.err")"; continue
    fi
    # exact fp32 arithmetic for the tight comparisons (BF16 weights default to bf16 arithmetic)
    "$RMU" logits -m "$d" --ids "$ids" --out "$d/prefill.f32" --hidden-layer 1 --hidden-out "$d/hidden.f32" \
        --precision fp32 2>"$TMP/l.err" &&
    "$RMU" logits -m "$d" --ids "$ids" --out "$d/prefill7.f32" --batch 7 --precision fp32 2>>"$TMP/l.err" &&
    "$RMU" logits -m "$d" --ids "$ids" --out "$d/decode.f32" --mode decode --precision fp32 2>>"$TMP/l.err" ||
        { fail "rmu logits $name" "$(tail -1 "$TMP/l.err")"; continue; }
    # the default precision: bf16 arithmetic for BF16 weights, the same numbers in prefill
    # and decode up to fp32 summation order, and near the exact product
    if [[ $name == *bf16* ]]; then
        if "$RMU" logits -m "$d" --ids "$ids" --out "$d/prefill_bf16.f32" 2>"$TMP/l.err" &&
           "$RMU" logits -m "$d" --ids "$ids" --out "$d/decode_bf16.f32" --mode decode 2>>"$TMP/l.err"; then
            check "$name: bf16 precision, decode equals prefill (1e-4)" python3 "$ROOT/tests/compare_f32.py" "$d/prefill_bf16.f32" "$d/decode_bf16.f32" 1e-4
            check "$name: bf16 precision near fp32 (1e-2)" python3 "$ROOT/tests/compare_f32.py" "$d/prefill_bf16.f32" "$d/prefill.f32" 1e-2
        else
            fail "rmu logits $name (bf16 precision)" "$(tail -1 "$TMP/l.err")"
        fi
    fi
    check "$name: decode with KV cache equals prefill (1e-4)" python3 "$ROOT/tests/compare_f32.py" "$d/prefill.f32" "$d/decode.f32" 1e-4
    check "$name: chunked prefill equals one-shot prefill (1e-4)" python3 "$ROOT/tests/compare_f32.py" "$d/prefill.f32" "$d/prefill7.f32" 1e-4
    if ! have_torch || [ ! -f "$ORACLE" ]; then
        skip "$name: PyTorch oracle" "Debian python3-torch or tests/oracle/torch_ref.py missing"; continue
    fi
    if "$PY" "$ORACLE" forward --model "$d" --ids "$ids" --out "$d/torch.f32" --hidden-layer 1 --hidden-out "$d/torch_hidden.f32" 2>"$TMP/t.err"; then
        check "$name: prefill logits vs PyTorch (1e-3)" python3 "$ROOT/tests/compare_f32.py" "$d/prefill.f32" "$d/torch.f32" 1e-3
        check "$name: decode logits vs PyTorch (1e-3)" python3 "$ROOT/tests/compare_f32.py" "$d/decode.f32" "$d/torch.f32" 1e-3
        check "$name: layer-1 hidden states vs PyTorch (1e-3)" python3 "$ROOT/tests/compare_f32.py" "$d/hidden.f32" "$d/torch_hidden.f32" 1e-3
    else
        fail "$name: PyTorch oracle ran" "$(tail -3 "$TMP/t.err")"
    fi
done

# ---- malformed input: clear one-line errors, no crash
d=$TMP/gqa-window8-untied-f32
if [ -d "$d" ]; then
    b=$TMP/broken; rm -rf "$b"; mkdir -p "$b"
    cp "$d"/*.json "$b"/ 2>/dev/null
    expect_error "missing weights file is named" "model.safetensors" "$RMU" generate -m "$b" -p hi -n 1
    head -c 1000 "$d/model.safetensors" > "$b/model.safetensors"
    expect_error "truncated safetensors is reported" "model.safetensors" "$RMU" generate -m "$b" -p hi -n 1
    expect_error "prompt longer than the context" "context" "$RMU" generate -m "$d" -p "$(printf 'word %.0s' $(seq 1 200))" --ctx 64 -n 1
    expect_error "missing model folder" "config.json" "$RMU" info -m "$TMP/does-not-exist"
    expect_error "bad --temp value" "--temp" "$RMU" generate -m "$d" -p hi --temp abc
fi
