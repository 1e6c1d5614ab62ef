#!/usr/bin/env bash
# io.sh - `rmu init` checkpoints read back by an independent reader (plain Python struct +
# json, no safetensors package): tensor names, shapes, dtypes, offsets tiling the data,
# 8-byte padded headers, index.json, value statistics; determinism; overrides; the
# tokenizer copy; the folder written whole (replacing only a model folder; SIGKILL or a full
# disk leave none); and the usage errors of `rmu init`.
. "$(dirname "$0")/../lib.sh"

PYBIN=$PY
[ -x "$PYBIN" ] || PYBIN=python3

# check_ckpt DIR [SHARDS] [JITTER]: validates DIR against its own config.json.
check_ckpt() {
    "$PYBIN" - "$@" <<'PYEOF'
import json, math, os, struct, sys
d = sys.argv[1]
want_shards = int(sys.argv[2]) if len(sys.argv) > 2 else 1
jitter = len(sys.argv) > 3 and sys.argv[3] == "jitter"
cfg = json.load(open(os.path.join(d, "config.json")))
C, F, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
H, KV, V = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["vocab_size"]
hd = cfg.get("head_dim") or C // H
dt = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}[cfg["torch_dtype"]]
arch = {"mistral": "MistralForCausalLM", "llama": "LlamaForCausalLM"}[cfg["model_type"]]
assert cfg["architectures"] == [arch], cfg["architectures"]
assert cfg["hidden_act"] == "silu"
if cfg["model_type"] == "mistral":
    assert "sliding_window" in cfg and (cfg["sliding_window"] is None or cfg["sliding_window"] > 0)
exp = {"model.embed_tokens.weight": [V, C], "model.norm.weight": [C]}
if not cfg["tie_word_embeddings"]:
    exp["lm_head.weight"] = [V, C]
for l in range(L):
    p = "model.layers.%d." % l
    exp.update({p + "input_layernorm.weight": [C], p + "post_attention_layernorm.weight": [C],
                p + "self_attn.q_proj.weight": [H * hd, C], p + "self_attn.k_proj.weight": [KV * hd, C],
                p + "self_attn.v_proj.weight": [KV * hd, C], p + "self_attn.o_proj.weight": [C, H * hd],
                p + "mlp.gate_proj.weight": [F, C], p + "mlp.up_proj.weight": [F, C],
                p + "mlp.down_proj.weight": [C, F]})
esize = {"F32": 4, "F16": 2, "BF16": 2}[dt]

def read(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    assert (8 + n) % 8 == 0, "%s: header not padded to 8 bytes" % path
    hdr = json.loads(raw[8:8 + n])
    assert hdr.pop("__metadata__") == {"format": "pt"}
    data = raw[8 + n:]
    spans = sorted((v["data_offsets"][0], v["data_offsets"][1], k) for k, v in hdr.items())
    pos = 0
    for b, e, k in spans:
        assert b == pos, "%s: %s starts at %d, expected %d" % (path, k, b, pos)
        pos = e
    assert pos == len(data), "%s: data section %d bytes, tensors cover %d" % (path, len(data), pos)
    return hdr, data

idx = os.path.join(d, "model.safetensors.index.json")
files = {}
if want_shards > 1:
    index = json.load(open(idx))
    names = ["model-%05d-of-%05d.safetensors" % (i + 1, want_shards) for i in range(want_shards)]
    assert sorted(set(index["weight_map"].values())) == names, sorted(set(index["weight_map"].values()))
    for nm in names:
        files[nm] = read(os.path.join(d, nm))
    total = sum(len(f[1]) for f in files.values())
    assert index["metadata"]["total_size"] == total, (index["metadata"]["total_size"], total)
    for nm, (hdr, _) in files.items():
        for k in hdr:
            assert index["weight_map"][k] == nm, "%s in %s but weight_map says %s" % (k, nm, index["weight_map"][k])
    # shards are consecutive runs of the HF order: embeddings, layers, norm, head
    order = ["model.embed_tokens.weight"] + ["model.layers.%d.%s" % (l, s) for l in range(L) for s in (
        "input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
        "self_attn.o_proj.weight", "post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
        "mlp.down_proj.weight")] + ["model.norm.weight"] + (["lm_head.weight"] if not cfg["tie_word_embeddings"] else [])
    seq = [names.index(index["weight_map"][k]) for k in order]
    assert seq == sorted(seq), "shards not in layer order"
else:
    assert not os.path.exists(idx), "unexpected index.json"
    files["model.safetensors"] = read(os.path.join(d, "model.safetensors"))
got = {}
for nm, (hdr, data) in files.items():
    for k, v in hdr.items():
        assert k not in got, "%s twice" % k
        got[k] = (v, data)
assert set(got) == set(exp), "names differ: missing %s extra %s" % (sorted(set(exp) - set(got))[:3], sorted(set(got) - set(exp))[:3])
for k, shape in exp.items():
    v, data = got[k]
    assert v["dtype"] == dt, "%s: dtype %s, config says %s" % (k, v["dtype"], dt)
    assert v["shape"] == shape, "%s: shape %s, expected %s" % (k, v["shape"], shape)
    assert v["data_offsets"][1] - v["data_offsets"][0] == math.prod(shape) * esize

def values(k, n):
    v, data = got[k]
    b = data[v["data_offsets"][0]:v["data_offsets"][0] + n * esize]
    if dt == "F32":
        return struct.unpack("<%df" % n, b)
    if dt == "F16":
        return struct.unpack("<%de" % n, b)
    return [struct.unpack("<f", struct.pack("<I", x << 16))[0] for x in struct.unpack("<%dH" % n, b)]

n = min(8192, V * C)
e = values("model.embed_tokens.weight", n)
mean = sum(e) / n
sd = math.sqrt(sum((x - mean) ** 2 for x in e) / n)
assert abs(mean) < 0.002 and abs(sd - 0.02) < 0.001, "embeddings mean %g sd %g, want N(0, 0.02)" % (mean, sd)
nw = values("model.layers.0.input_layernorm.weight", C)
if jitter:
    assert sum(1 for x in nw if x != 1.0) > C // 2, "norms not jittered"
else:
    assert all(x == 1.0 for x in nw), "norms are not 1"
print("ok", len(got), "tensors")
PYEOF
}

# ---- every small preset in every dtype, one file and three shards
for shape in tiny small stories260k; do
    for dt in bf16 f16 f32; do
        d=$TMP/$shape-$dt
        rm -rf "$d"
        if "$RMU" init -o "$d" --shape $shape --dtype $dt --seed 3 2>"$TMP/init.err"; then
            check "init $shape $dt: names, shapes, dtypes, offsets, values" check_ckpt "$d"
        else
            fail "init $shape $dt" "$(cat "$TMP/init.err")"
        fi
    done
    d=$TMP/$shape-sharded
    rm -rf "$d"
    if "$RMU" init -o "$d" --shape $shape --dtype bf16 --seed 3 --shards 3 --jitter-norms 2>"$TMP/init.err"; then
        check "init $shape --shards 3: index.json, shard names, layer order" check_ckpt "$d" 3 jitter
    else
        fail "init $shape --shards 3" "$(cat "$TMP/init.err")"
    fi
done

# ---- the summary line, loadability and tokenizer
d=$TMP/tiny-bf16
if [ -f "$d/model.safetensors" ]; then
    "$RMU" init -o "$TMP/summary" --shape tiny 2>"$TMP/summary.err" >"$TMP/summary.out"
    if [ "$(wc -l <"$TMP/summary.err")" -eq 1 ] && grep -q '^rmu init: wrote .*tiny' "$TMP/summary.err" && [ ! -s "$TMP/summary.out" ]; then
        ok "init prints one summary line on stderr, nothing on stdout"
    else
        fail "init prints one summary line on stderr, nothing on stdout" "$(head -c 300 "$TMP/summary.err")"
    fi
    check "init writes generation_config.json with bos/eos" "$PYBIN" -c '
import json, sys
g = json.load(open(sys.argv[1] + "/generation_config.json"))
assert g["bos_token_id"] == 1 and g["eos_token_id"] == 2, g' "$d"
    check "init writes a tokenizer (tokenizer.json + tokenizer_config.json)" test -s "$d/tokenizer.json" -a -s "$d/tokenizer_config.json"
    check "rmu info loads a sharded init" "$RMU" info -m "$TMP/tiny-sharded"
fi

# ---- determinism: same seed, same bytes; shard split and dtype do not change values
"$RMU" init -o "$TMP/det-a" --shape tiny --dtype f32 --seed 9 2>/dev/null
OMP_NUM_THREADS=1 "$RMU" init -o "$TMP/det-b" --shape tiny --dtype f32 --seed 9 2>/dev/null
"$RMU" init -o "$TMP/det-c" --shape tiny --dtype f32 --seed 10 2>/dev/null
"$RMU" init -o "$TMP/det-d" --shape tiny --dtype f32 --seed 9 --shards 2 2>/dev/null
check "same seed gives identical files at any thread count" cmp "$TMP/det-a/model.safetensors" "$TMP/det-b/model.safetensors"
if cmp -s "$TMP/det-a/model.safetensors" "$TMP/det-c/model.safetensors"; then
    fail "another seed gives other weights" "files are identical"
else
    ok "another seed gives other weights"
fi
check "sharding does not change tensor bytes" "$PYBIN" - "$TMP/det-a" "$TMP/det-d" <<'PYEOF'
import json, os, struct, sys
def tensors(d):
    out = {}
    for f in sorted(os.listdir(d)):
        if not f.endswith(".safetensors"):
            continue
        raw = open(os.path.join(d, f), "rb").read()
        n = struct.unpack("<Q", raw[:8])[0]
        h = json.loads(raw[8:8 + n]); h.pop("__metadata__", None)
        for k, v in h.items():
            out[k] = raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]
    return out
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)
PYEOF

# ---- overrides on top of a preset
d=$TMP/override
rm -rf "$d"
if "$RMU" init -o "$d" --shape tiny --layers 2 --hidden 128 --heads 8 --kv-heads 2 --intermediate 96 --vocab 300 \
        --sliding-window none --tie --max-pos 64 --dtype f16 2>"$TMP/init.err"; then
    check "overrides reach config.json" "$PYBIN" -c '
import json, sys
c = json.load(open(sys.argv[1] + "/config.json"))
want = dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=8, num_key_value_heads=2, head_dim=16,
            intermediate_size=96, vocab_size=300, sliding_window=None, tie_word_embeddings=True,
            max_position_embeddings=64, torch_dtype="float16", model_type="mistral")
bad = {k: (c.get(k), v) for k, v in want.items() if c.get(k) != v}
assert not bad, bad' "$d"
    check "overridden shapes match the tensors (tied: no lm_head)" check_ckpt "$d"
else
    fail "init with overrides" "$(cat "$TMP/init.err")"
fi

# ---- --tokenizer copies the files byte for byte
if have_shared; then
    d=$TMP/with-tok
    rm -rf "$d"
    if "$RMU" init -o "$d" --shape stories260k --tokenizer "$SHARED/models/stories260K" 2>"$TMP/init.err"; then
        check "--tokenizer copies tokenizer.json and tokenizer_config.json" sh -c \
            'cmp "$1/tokenizer.json" "$2/tokenizer.json" && cmp "$1/tokenizer_config.json" "$2/tokenizer_config.json"' \
            _ "$SHARED/models/stories260K" "$d"
    else
        fail "init --tokenizer" "$(cat "$TMP/init.err")"
    fi
else
    skip "init --tokenizer" "../shared/models/stories260K is absent"
fi

# ---- usage and validation errors: one line, non-zero exit, nothing written
o=$TMP/err-out
rm -rf "$o"
expect_error "init: unknown shape" "rmu init: --shape: unknown shape 'gpt5'" "$RMU" init -o "$o" --shape gpt5
expect_error "init: bad dtype" "rmu init: --dtype: expected bf16, f16 or f32, got 'int8'" "$RMU" init -o "$o" --shape tiny --dtype int8
expect_error "init: missing -o" "-o DIR and --shape are required" "$RMU" init --shape tiny
expect_error "init: unknown option" "unknown option '--frobnicate'" "$RMU" init -o "$o" --shape tiny --frobnicate
expect_error "init: bad --seed" "--seed: expected an integer" "$RMU" init -o "$o" --shape tiny --seed x
expect_error "init: --shards 0" "--shards: expected an integer in \[1, 99999\]" "$RMU" init -o "$o" --shape tiny --shards 0
expect_error "init: more shards than tensors" "--shards 100: the model has only 39 tensors" "$RMU" init -o "$o" --shape tiny --shards 100
expect_error "init: kv heads do not divide heads" "num_attention_heads.*num_key_value_heads" "$RMU" init -o "$o" --shape tiny --kv-heads 3
expect_error "init: hidden not divisible by heads" "--hidden 65 is not divisible by --heads 4" "$RMU" init -o "$o" --shape tiny --hidden 65
expect_error "init: vocab too small for bos/eos" "eos_token_id.*vocab_size" "$RMU" init -o "$o" --shape tiny --vocab 2
expect_error "init: sliding window on llama" "llama models have no sliding window" "$RMU" init -o "$o" --shape stories260k --sliding-window 8
expect_error "init: --tokenizer without tokenizer.json" "no tokenizer.json" "$RMU" init -o "$o" --shape tiny --tokenizer /nonexistent
expect_error "init: unwritable output" "/proc/rmu-init-test" "$RMU" init -o /proc/rmu-init-test --shape tiny
expect_error "init: vocab too small for the synthetic tokenizer" "synthetic tokenizer.*vocab_size 100" \
    "$RMU" init -o "$TMP/small-vocab" --shape tiny --vocab 100
if [ -e "$TMP/small-vocab/model.safetensors" ]; then
    fail "a tokenizer error stops before the weights" "model.safetensors written"
else
    ok "a tokenizer error stops before the weights"
fi
if [ -e "$o" ]; then fail "failed inits write nothing" "$o exists"; else ok "failed inits write nothing"; fi

# ---- the folder is written whole under a staging name
d=$TMP/whole
rm -rf "$d" "$TMP"/.whole.rmu-staging.*
mkdir -p "$d" && echo keep > "$d/notes.txt"
expect_error "init: refuses to replace a folder that is not a model" "whole exists and is not a model folder" \
    "$RMU" init -o "$d" --shape tiny
rm "$d/notes.txt"
if "$RMU" init -o "$d" --shape tiny --seed 1 2>/dev/null && cp "$d/model.safetensors" "$TMP/whole-1.st" &&
   echo extra > "$d/extra.txt" && "$RMU" init -o "$d" --shape tiny --seed 2 2>/dev/null &&
   [ ! -e "$d/extra.txt" ] && ! cmp -s "$d/model.safetensors" "$TMP/whole-1.st" && ! ls -a "$TMP" | grep -q rmu-; then
    ok "init: an empty folder is filled, a model folder replaced as a whole"
else
    fail "init: replace a model folder" "$(ls -a "$d" "$TMP" | tr '\n' ' ')"
fi
rm -f "$TMP/whole-1.st"
# SIGKILL while writing: the old folder stays, whole; no staging folder survives the next run
caught=0
for try in 1 2 3; do
    "$RMU" init -o "$d" --shape tiny --seed 3 >/dev/null 2>&1
    "$RMU" init -o "$d" --shape small --hidden 512 --intermediate 1536 --layers 8 --vocab 4096 --dtype f32 >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 3000); do
        ls -a "$TMP" | grep -q '^\.whole\.rmu-staging\.' && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.002
    done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    if ls -a "$TMP" | grep -q '^\.whole\.rmu-staging\.'; then caught=1; break; fi
done
if [ "$caught" -eq 1 ] && grep -q '"hidden_size": 64' "$d/config.json" && "$RMU" info -m "$d" >/dev/null 2>&1 &&
   "$RMU" init -o "$d" --shape tiny --seed 4 2>/dev/null && ! ls -a "$TMP" | grep -q rmu-staging; then
    ok "init: SIGKILL while writing leaves the old folder whole; the next run clears the staging folder"
else
    fail "init: SIGKILL while writing" "caught $caught; $(ls -a "$d" "$TMP" | tr '\n' ' ')"
fi
# a full disk (a 1 MiB tmpfs): one clear error, nothing left behind
MNT=$TMP/full-disk
mkdir -p "$MNT"
if mount -t tmpfs -o size=1m tmpfs "$MNT" 2>/dev/null; then
    err=$("$RMU" init -o "$MNT/out" --shape tiny --layers 8 2>&1 >/dev/null); rc=$?
    left=$(ls -A "$MNT")
    umount "$MNT"
    if [ $rc -eq 1 ] && [ "$(echo "$err" | wc -l)" -eq 1 ] && echo "$err" | grep -q "No space left on device" &&
       [ -z "$left" ]; then
        ok "init: a full disk fails with one line and leaves nothing"
    else
        fail "init: full disk" "rc $rc, left [$left]: $err"
    fi
else
    skip "init: full disk" "cannot mount a tmpfs here (needs root)"
fi
rmdir "$MNT" 2>/dev/null
rm -rf "$d"

rm -rf "$TMP"/*-bf16 "$TMP"/*-f16 "$TMP"/*-f32 "$TMP"/*-sharded "$TMP"/det-? "$TMP/override" "$TMP/with-tok" "$TMP/summary" "$TMP/small-vocab"
