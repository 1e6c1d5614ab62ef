#!/usr/bin/env bash
# quantize.sh - `rmu quantize --fp8` and FP8 folders everywhere a model is loaded, against
# independent references: the numpy oracle tests/oracle/fp8_ref.py (codes, scales and the
# config vLLM reads; dequantization into an F32 folder), the PyTorch oracle on that F32
# folder (float64 forward), rmu's own fp32 path on it; the older quant_method "fp8" layout;
# generate, bench, eval, export and training on FP8 weights (frozen); the error messages; and
# the reduced demo's models quantized (accuracies within 1 point of the unquantized ones).
. "$(dirname "$0")/../lib.sh"

ORACLE=$ROOT/tests/oracle/fp8_ref.py
TORCH=$ROOT/tests/oracle/torch_ref.py
CMP=$ROOT/tests/compare_f32.py
have_numpy() { "$PY" -c 'import numpy' >/dev/null 2>&1; }
ids="1 17 200 3 99 45 45 511 8 302 77 150 9 260 33 401 12 5 88 190 250 6 7 100 480 2 64 128 300 11"

M=$TMP/base
rm -rf "$TMP"/*
if ! "$RMU" init -o "$M" --shape tiny --dtype bf16 --seed 21 --sliding-window 8 --jitter-norms 2>"$TMP/init.err"; then
    fail "rmu init" "$(cat "$TMP/init.err")"
    exit 0
fi

for scheme in channel tensor; do
    Q=$TMP/fp8-$scheme
    if ! "$RMU" quantize -m "$M" --out "$Q" --fp8 --scheme "$scheme" 2>"$TMP/q.err"; then
        fail "quantize --scheme $scheme" "$(cat "$TMP/q.err")"; continue
    fi
    if grep -q "28 weights .* to FP8 E4M3 with per-$scheme scales" "$TMP/q.err"; then ok "quantize --scheme $scheme reports what it did"
    else fail "quantize --scheme $scheme reports what it did" "$(cat "$TMP/q.err")"; fi
    check "info shows the FP8 format ($scheme)" bash -c "'$RMU' info -m '$Q' | grep -qx 'weights      FP8 E4M3, $scheme scales (compressed-tensors), lm_head/embeddings BF16'"
    if ! have_numpy; then skip "numpy oracle ($scheme)" "python3 with numpy is missing"; continue; fi
    check "codes, F32 scales and quantization_config as the numpy oracle ($scheme)" "$PY" "$ORACLE" check-quant "$M" "$Q"
    "$PY" "$ORACLE" dequantize "$Q" "$TMP/deq-$scheme" >/dev/null 2>"$TMP/d.err" || { fail "dequantize $scheme" "$(cat "$TMP/d.err")"; continue; }
    D=$TMP/deq-$scheme
    # fp32 arithmetic throughout (the BF16 lm_head would default to bf16 arithmetic)
    "$RMU" logits -m "$Q" --ids "$ids" --out "$Q/prefill.f32" --precision fp32 2>"$TMP/l.err" &&
    "$RMU" logits -m "$Q" --ids "$ids" --out "$Q/decode.f32" --precision fp32 --mode decode 2>>"$TMP/l.err" &&
    "$RMU" logits -m "$Q" --ids "$ids" --out "$Q/auto_prefill.f32" 2>>"$TMP/l.err" &&
    "$RMU" logits -m "$Q" --ids "$ids" --out "$Q/auto_decode.f32" --mode decode 2>>"$TMP/l.err" &&
    "$RMU" logits -m "$D" --ids "$ids" --out "$D/prefill.f32" --precision fp32 2>>"$TMP/l.err" &&
    "$RMU" logits -m "$M" --ids "$ids" --out "$TMP/orig.f32" --precision fp32 2>>"$TMP/l.err" ||
        { fail "rmu logits ($scheme)" "$(tail -1 "$TMP/l.err")"; continue; }
    check "FP8 prefill logits = rmu on the dequantized F32 folder (1e-4, $scheme)" python3 "$CMP" "$Q/prefill.f32" "$D/prefill.f32" 1e-4
    check "FP8 decode (GEMV) logits = rmu on the dequantized F32 folder (1e-4, $scheme)" python3 "$CMP" "$Q/decode.f32" "$D/prefill.f32" 1e-4
    check "FP8 default precision: decode = prefill (1e-4, $scheme)" python3 "$CMP" "$Q/auto_prefill.f32" "$Q/auto_decode.f32" 1e-4
    # the oracle comparisons mean something only if quantizing changed the logits
    if python3 "$CMP" "$Q/prefill.f32" "$TMP/orig.f32" 1e-3 >/dev/null; then
        fail "quantizing changed the logits ($scheme)" "FP8 logits within 1e-3 of the unquantized model's"
    else ok "quantizing changed the logits ($scheme)"; fi
    if ! have_torch; then skip "PyTorch oracle ($scheme)" "Debian python3-torch is missing"; continue; fi
    if "$PY" "$TORCH" forward --model "$D" --ids "$ids" --out "$D/torch.f32" 2>"$TMP/t.err"; then
        check "FP8 prefill logits vs PyTorch float64 on the dequantized weights (1e-4, $scheme)" python3 "$CMP" "$Q/prefill.f32" "$D/torch.f32" 1e-4
        check "FP8 decode logits vs PyTorch float64 on the dequantized weights (1e-4, $scheme)" python3 "$CMP" "$Q/decode.f32" "$D/torch.f32" 1e-4
    else
        fail "PyTorch oracle ran ($scheme)" "$(tail -2 "$TMP/t.err")"
    fi
done

Q=$TMP/fp8-channel
T=$TMP/fp8-tensor

# ---- the older quant_method "fp8" layout (AutoFP8 / vLLM): scalar weight_scale, static input_scale
if have_numpy && [ -d "$T" ]; then
    L=$TMP/legacy
    "$PY" "$ORACLE" legacy "$T" "$L" >/dev/null 2>"$TMP/leg.err" || fail "legacy layout written" "$(cat "$TMP/leg.err")"
    if "$RMU" logits -m "$L" --ids "$ids" --out "$L/prefill.f32" --precision fp32 2>"$TMP/leg.err"; then
        check "quant_method fp8 (scalar scales): logits = the per-tensor compressed-tensors folder's" python3 "$CMP" "$L/prefill.f32" "$T/prefill.f32" 0
        n=$(grep -c "note: input_scale tensors are ignored" "$TMP/leg.err")
        if [ "$n" = 1 ]; then ok "quant_method fp8: the ignored input scales are noted once"
        else fail "quant_method fp8: the ignored input scales are noted once" "$n notes: $(cat "$TMP/leg.err")"; fi
    else
        fail "quant_method fp8 folder loads" "$(cat "$TMP/leg.err")"
    fi
    check "info shows the fp8 layout" bash -c "'$RMU' info -m '$L' | grep -q 'weights      FP8 E4M3, tensor scales (fp8)'"
else
    skip "quant_method fp8 layout" "numpy missing or no per-tensor folder"
fi

# ---- the other commands on FP8 weights
if "$RMU" generate -m "$Q" -p "hello world" -n 8 --temp 0 >"$TMP/gen.out" 2>"$TMP/gen.err" && [ -s "$TMP/gen.out" ]; then
    ok "generate runs on FP8 weights"
else
    fail "generate runs on FP8 weights" "$(tail -2 "$TMP/gen.err")"
fi
if "$RMU" bench -m "$Q" --prompt-len 8 --gen-len 4 >"$TMP/bench.out" 2>&1 && grep -q "^decode " "$TMP/bench.out"; then
    ok "bench runs on FP8 weights"
else
    fail "bench runs on FP8 weights" "$(tail -2 "$TMP/bench.out")"
fi
if [ -d "$TMP/deq-channel" ]; then
    "$RMU" export -m "$Q" --gguf "$TMP/fp8.gguf" --type f32 --name x 2>"$TMP/x.err" &&
    "$RMU" export -m "$TMP/deq-channel" --gguf "$TMP/deq.gguf" --type f32 --name x 2>>"$TMP/x.err" ||
        fail "export FP8 and dequantized folders" "$(tail -1 "$TMP/x.err")"
    check "export --gguf of FP8 weights dequantizes: byte-identical to the dequantized folder's" cmp "$TMP/fp8.gguf" "$TMP/deq.gguf"
    check "export q8_0 from FP8 weights" "$RMU" export -m "$Q" --gguf "$TMP/fp8q.gguf" --type q8_0
fi

# ---- training with frozen FP8 weights: the backward runs through them (dX products)
for i in $(seq 1 40); do echo "the marsh heron $i nests by the reeds, the coast town $((i * 3)) trades salt"; done >"$TMP/corpus.txt"
if [ -d "$TMP/deq-channel" ]; then
    tr_args=(--data "$TMP/corpus.txt" --trainable 'model.embed_tokens.weight,model.layers.0.input_layernorm.weight'
             --steps 3 --batch-size 2 --seq-len 16 --precision fp32 --quiet)
    if "$RMU" train -m "$Q" --out "$TMP/tr-fp8" --log "$TMP/tr-fp8.jsonl" "${tr_args[@]}" 2>"$TMP/tr.err" &&
       "$RMU" train -m "$TMP/deq-channel" --out "$TMP/tr-deq" --log "$TMP/tr-deq.jsonl" "${tr_args[@]}" 2>>"$TMP/tr.err"; then
        check "training through frozen FP8 weights = through their dequantized F32 copy (loss, grad norm)" python3 - "$TMP/tr-fp8.jsonl" "$TMP/tr-deq.jsonl" <<'PYEOF'
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
assert len(a) == len(b) == 3, (len(a), len(b))
for x, y in zip(a, b):
    for k in ("loss", "grad_norm"):
        assert abs(x[k] - y[k]) <= 1e-5 * abs(y[k]), (k, x[k], y[k])
print("ok", [(x["loss"], x["grad_norm"]) for x in a])
PYEOF
        check "a trained FP8 model keeps its FP8 weights and config" bash -c "'$RMU' info -m '$TMP/tr-fp8' | grep -q 'weights      FP8 E4M3, channel scales'"
    else
        fail "train with frozen FP8 weights" "$(tail -2 "$TMP/tr.err")"
    fi
fi
expect_error "train: a trainable FP8 tensor is refused" \
    "^rmu train: --trainable: model.layers.1.self_attn.q_proj.weight is FP8 \(F8_E4M3\); training FP8 weights is not supported" \
    "$RMU" train -m "$Q" --data "$TMP/corpus.txt" --out "$TMP/tr-bad" --trainable 'model.layers.1.self_attn.q_proj.weight' --steps 1
expect_error "train: --dtype on an FP8 model is refused" "^rmu train: --dtype: .* is an FP8 model" \
    "$RMU" train -m "$Q" --data "$TMP/corpus.txt" --out "$TMP/tr-bad" --trainable 'model.norm.weight' --steps 1 --dtype bf16
expect_error "unlearn: FP8 down_proj weights are refused" \
    "^rmu unlearn: --layer-ids: model.layers.[0-9].mlp.down_proj.weight is FP8 \(F8_E4M3\)" \
    "$RMU" unlearn -m "$Q" --forget "$TMP/corpus.txt" --retain "$TMP/corpus.txt" --out "$TMP/unl-bad" \
    --layer-id 2 --layer-ids 1,2 --max-num-batches 1 --batch-size 1
if [ ! -e "$TMP/tr-bad" ] && [ ! -e "$TMP/unl-bad" ]; then ok "nothing written for refused training runs"
else fail "nothing written for refused training runs" "$(ls -d "$TMP"/tr-bad "$TMP"/unl-bad 2>&1)"; fi

# ---- errors: one line, nothing written
E=$TMP/err-out
expect_error "quantize: --fp8 is required" "^rmu quantize: --fp8 is required" "$RMU" quantize -m "$M" --out "$E"
expect_error "quantize: bad --scheme" "^rmu quantize: --scheme: expected channel or tensor, got 'block'" \
    "$RMU" quantize -m "$M" --out "$E" --fp8 --scheme block
expect_error "quantize: an FP8 folder is not quantized again" "^rmu quantize: -m: .*fp8-channel is already quantized" \
    "$RMU" quantize -m "$Q" --out "$E" --fp8
expect_error "quantize: an existing output needs --overwrite" "^rmu quantize: --out: .* already exists; pass --overwrite" \
    "$RMU" quantize -m "$M" --out "$T" --fp8
expect_error "quantize: missing model folder" "^rmu quantize: -m: " "$RMU" quantize -m "$TMP/nope" --out "$E" --fp8
if [ ! -e "$E" ]; then ok "nothing written for quantize errors"; else fail "nothing written for quantize errors" "$(ls -A "$E")"; fi
check "quantize --overwrite replaces a model folder" "$RMU" quantize -m "$M" --out "$T" --fp8 --scheme tensor --overwrite --quiet
B=$TMP/noconfig
rm -rf "$B" && cp -r "$Q" "$B" && cp "$M/config.json" "$B/config.json"
expect_error "load: FP8 tensors without a quantization_config" \
    "noconfig: tensor model.layers.0.self_attn.q_proj.weight is FP8 \(F8_E4M3\) but config.json has no FP8 quantization_config" \
    "$RMU" generate -m "$B" -p hi -n 1
if have_numpy; then
    B=$TMP/badscale
    rm -rf "$B" && cp -r "$Q" "$B"
    "$PY" - "$B/model.safetensors" <<'PYEOF'
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
t = h["model.layers.1.mlp.down_proj.weight_scale"]; assert t["shape"][1] == 1
t["shape"] = [1, t["shape"][0]]  # same bytes, transposed shape
s = json.dumps(h, separators=(",", ":")).encode(); assert len(s) <= n
b[8:8 + n] = s + b" " * (n - len(s)); open(p, "wb").write(b)
PYEOF
    expect_error "load: a mis-shaped weight_scale" \
        "down_proj.weight_scale has shape \[1, 64\]; quantization_config \(per-channel scales\) implies \[64, 1\]" \
        "$RMU" logits -m "$B" --ids "1 2" --out "$TMP/x.f32"
fi

# ---- the reduced demo's models (tests/integration/demo.sh makes them): FP8 keeps the accuracies
DEMO=$ROOT/tests/tmp/demo/out
if [ -f "$DEMO/results.json" ] && [ -d "$DEMO/base" ] && [ -d "$DEMO/unlearned" ]; then
    accs=""
    for m in base unlearned; do
        "$RMU" quantize -m "$DEMO/$m" --out "$TMP/demo-$m-fp8" --fp8 --quiet 2>"$TMP/dq.err" || { fail "quantize demo $m" "$(cat "$TMP/dq.err")"; continue; }
        for d in forget retain; do
            "$RMU" eval -m "$TMP/demo-$m-fp8" --tasks mcq --data "$DEMO/data/${d}_mcq.jsonl" --format cloze \
                --output "$TMP/ev-$m-$d.json" >/dev/null 2>"$TMP/ev.err" || fail "eval FP8 demo $m $d" "$(tail -1 "$TMP/ev.err")"
        done
    done
    check "demo models as FP8: forget/retain accuracies before and after RMU within 1 point of results.json" python3 - "$DEMO/results.json" "$TMP" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
out = []
for m, when in (("base", "before"), ("unlearned", "after")):
    for d in ("forget", "retain"):
        acc = json.load(open("%s/ev-%s-%s.json" % (sys.argv[2], m, d)))["results"]["mcq"]["acc,none"]
        out.append("%s %s %.3f (fp32 %.3f)" % (d, when, acc, r[d][when]))
        assert abs(acc - r[d][when]) <= 0.01 + 1e-9, out[-1]
print("; ".join(out))
PYEOF
else
    skip "demo models as FP8" "$DEMO has no demo run (tests/integration/demo.sh makes it)"
fi
