#!/usr/bin/env bash
# export.sh - `rmu export --gguf` with llama.cpp itself as the oracle (npm node-llama-cpp
# 3.21.1, its prebuilt CPU library, offline; tests/oracle/llama). Without node: every --type
# writes a file, the output is the same for any thread count, and bad input (missing folder,
# output in a missing folder, unsupported tensor dtype, a value f16 cannot hold, a tokenizer
# form GGUF cannot express) is one clear line with nothing left behind. With node:
# llama.cpp's own GGUF parser reads the metadata and tensor table; llama.cpp tokenizes a set
# of strings (plus wikitext-2 and MT-Bench with ../shared) as rmu does; its greedy decoding
# of stories260K and of a random GQA Mistral matches rmu's; and the reduced demo's models,
# scored through llama.cpp, keep their forget/retain accuracy.
. "$(dirname "$0")/../lib.sh"

if [ ! -x "$RMU" ]; then
    fail "rmu export" "$RMU is not built"
    exit 0
fi
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
rm -rf "$TMP"/*

# ---- the models: a random small Mistral (GQA, untied, sliding window larger than anything
# scored here, jittered norms so they matter), with a real tokenizer when ../shared has it
M=$TMP/mistral
MT=$SHARED/data/mistral-7b-v0.1
if [ -f "$MT/tokenizer.json" ]; then
    tokargs=(--tokenizer "$MT" --vocab 32000)
    tokname="Mistral-7B-v0.1 tokenizer"
else
    tokargs=()
    tokname="synthetic tokenizer"
fi
if ! "$RMU" init -o "$M" --shape tiny --sliding-window 128 --seed 7 --jitter-norms "${tokargs[@]}" \
    > "$TMP/init.log" 2>&1; then
    fail "rmu init of the test model" "$(tail -n 2 "$TMP/init.log")"
    exit 0
fi
# the chat template travels into the GGUF: give the model Zephyr's when ../shared has it
ZT=$SHARED/data/zephyr-7b-beta/chat_template.jinja
if [ -f "$ZT" ]; then
    "$PY" - "$M/tokenizer_config.json" "$ZT" <<'PYEOF'
import json, sys
p = sys.argv[1]
try: c = json.load(open(p))
except FileNotFoundError: c = {}
c["chat_template"] = open(sys.argv[2]).read()
json.dump(c, open(p, "w"), indent=2)
PYEOF
fi
S=$SHARED/models/stories260K

# ---- 1. every --type, determinism, sizes
sizes=""
okall=1
for t in f32 f16 bf16 q8_0; do
    if ! "$RMU" export -m "$M" --gguf "$TMP/m-$t.gguf" --type $t > "$TMP/exp-$t.out" 2> "$TMP/exp-$t.err"; then
        fail "export --type $t" "$(tail -n 2 "$TMP/exp-$t.err")"
        okall=0
        continue
    fi
    sizes="$sizes $t $(stat -c %s "$TMP/m-$t.gguf")"
done
if [ $okall = 1 ]; then
    read -r _ f32 _ f16 _ bf16 _ q8 <<< "$sizes"
    # matrices: 4 / 2 / 2 / 34/32 bytes per weight (ffn_down stays f16 in q8_0: rows of 176)
    if [ "$f16" = "$bf16" ] && [ "$f32" -gt $((f16 * 19 / 10)) ] && [ "$q8" -lt "$f16" ] && [ "$q8" -gt $((f16 / 2)) ]; then
        ok "export writes f32, f16, bf16 and q8_0 (bytes:$sizes)"
    else
        fail "export file sizes" "$sizes"
    fi
    if grep -q "rows not a multiple of 32" "$TMP/exp-q8_0.err" && grep -q "sliding_window 128 is not kept" "$TMP/exp-f32.err"; then
        ok "export notes the q8_0 fallback to f16 and the dropped sliding window"
    else
        fail "export notes" "$(cat "$TMP/exp-q8_0.err" "$TMP/exp-f32.err" | tr '\n' ' ')"
    fi
fi
if OMP_NUM_THREADS=1 "$RMU" export -m "$M" --gguf "$TMP/m1.gguf" --type q8_0 --quiet 2> "$TMP/t1.err" &&
   cmp -s "$TMP/m1.gguf" "$TMP/m-q8_0.gguf"; then
    ok "export is byte-identical with 1 and 2 threads"
else
    fail "export is byte-identical with 1 and 2 threads" "$(cat "$TMP/t1.err")"
fi
rm -f "$TMP/m1.gguf"

# ---- 2. bad input: one clear line, non-zero exit, nothing left behind
E=$TMP/errout
mkdir -p "$E"
empty_dir() { [ -z "$(ls -A "$1")" ]; }
expect_error "error: missing model folder" "nope.*config.json" "$RMU" export -m "$TMP/nope" --gguf "$E/x.gguf"
expect_error "error: output in a missing folder" "--gguf .*/no/such/x.gguf: folder .*/no/such does not exist" \
    "$RMU" export -m "$M" --gguf "$E/no/such/x.gguf"
if empty_dir "$E"; then ok "a missing output folder is not created"; else fail "a missing output folder is not created" "$(ls -A "$E")"; fi
expect_error "error: output path is a folder" "--gguf .*errout: is a folder" "$RMU" export -m "$M" --gguf "$E"
expect_error "error: unknown --type" "--type: expected f32, f16, bf16 or q8_0, got 'q4_0'" \
    "$RMU" export -m "$M" --gguf "$E/x.gguf" --type q4_0
expect_error "error: --gguf missing" "-m DIR and --gguf OUT.gguf are required" "$RMU" export -m "$M"
expect_error "error: unknown option" "unknown option '--bogus'" "$RMU" export -m "$M" --gguf "$E/x.gguf" --bogus

# a tensor of an unsupported dtype (F64; FP8 folders export: tests/integration/quantize.sh)
B=$TMP/badtype
rm -rf "$B" && cp -r "$M" "$B"
"$PY" - "$B/model.safetensors" <<'PYEOF'
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
h["model.layers.1.mlp.up_proj.weight"]["dtype"] = "F64"
s = json.dumps(h, separators=(",", ":")).encode(); assert len(s) <= n
b[8:8 + n] = s + b" " * (n - len(s))
open(p, "wb").write(b)
PYEOF
expect_error "error: unsupported tensor dtype names the file and tensor" \
    "badtype/model.safetensors: tensor 'model.layers.1.mlp.up_proj.weight' has dtype F64" \
    "$RMU" export -m "$B" --gguf "$E/x.gguf"
if empty_dir "$E"; then ok "nothing written for an unsupported dtype"; else fail "nothing written for an unsupported dtype" "$(ls -A "$E")"; fi

# a value float16 cannot hold, in a late tensor: the error comes mid-stream
B=$TMP/big
rm -rf "$B" && cp -r "$M" "$B"
"$PY" - "$B/model.safetensors" 1e6 <<'PYEOF'
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
t = h["model.layers.3.mlp.down_proj.weight"]; assert t["dtype"] == "F32"
o = 8 + n + t["data_offsets"][0] + 4 * (2 * t["shape"][1] + 5)  # element [2, 5]
b[o:o + 4] = struct.pack("<f", float(sys.argv[2]))
open(p, "wb").write(b)
PYEOF
expect_error "error: a value f16 cannot hold, found mid-stream" \
    "model.layers.3.mlp.down_proj.weight\[2, 5\] = 1e\+06 does not fit in F16; use --type bf16 or f32" \
    "$RMU" export -m "$B" --gguf "$E/big.gguf" --type f16
if empty_dir "$E"; then ok "nothing left behind after a mid-stream error (no file, no temporary)"
else fail "nothing left behind after a mid-stream error" "$(ls -A "$E")"; fi
check "the same model exports as bf16" "$RMU" export -m "$B" --gguf "$E/big.gguf" --type bf16 --quiet
rm -f "$E/big.gguf"
"$PY" - "$B/model.safetensors" nan <<'PYEOF'
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
t = h["model.layers.3.mlp.down_proj.weight"]
o = 8 + n + t["data_offsets"][0] + 4 * (2 * t["shape"][1] + 5)
b[o:o + 4] = struct.pack("<f", float(sys.argv[2]))
open(p, "wb").write(b)
PYEOF
expect_error "error: a NaN weight" "model.layers.3.mlp.down_proj.weight\[2, 5\] is nan: not exportable" \
    "$RMU" export -m "$B" --gguf "$E/nan.gguf" --type f32

# a normalizer llama.cpp's llama tokenizer cannot express
B=$TMP/badtok
rm -rf "$B" && mkdir -p "$B" && cp "$M"/*.json "$B"/ && ln -s "$M/model.safetensors" "$B/model.safetensors"
"$PY" - "$B/tokenizer.json" <<'PYEOF'
import json, sys
t = json.load(open(sys.argv[1]))
rep = {"type": "Replace", "pattern": {"String": "a"}, "content": "b"}
t["normalizer"] = rep if t.get("normalizer") is None else {"type": "Sequence", "normalizers": [t["normalizer"], rep]}
json.dump(t, open(sys.argv[1], "w"))
PYEOF
expect_error "error: a tokenizer form GGUF cannot express" "badtok/tokenizer.json: a normalizer step has no GGUF equivalent" \
    "$RMU" export -m "$B" --gguf "$E/tok.gguf"
if empty_dir "$E"; then ok "nothing written for an unexportable tokenizer"; else fail "nothing written for an unexportable tokenizer" "$(ls -A "$E")"; fi

# ---- 3. llama.cpp as the oracle
LL=$ROOT/tests/oracle/llama
ORACLE=$LL/llama_oracle.mjs
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    skip "llama.cpp oracle (node-llama-cpp)" "node/npm are not installed"
    exit 0
fi
if [ ! -f "$LL/node_modules/node-llama-cpp/package.json" ]; then
    # pinned by package-lock.json; .npmrc: no optional (GPU) packages, no install scripts
    if ! NODE_LLAMA_CPP_SKIP_DOWNLOAD=true timeout 300 npm ci --prefix "$LL" --no-audit --no-fund > "$TMP/npm.log" 2>&1; then
        skip "llama.cpp oracle (node-llama-cpp)" "npm ci failed: $(tail -n 2 "$TMP/npm.log" | tr '\n' ' ')"
        exit 0
    fi
fi
if ! node "$ORACLE" meta "$TMP/m-f32.gguf" > "$TMP/meta-f32.json" 2> "$TMP/oracle.err"; then
    skip "llama.cpp oracle (node-llama-cpp)" "it does not run here: $(head -n 2 "$TMP/oracle.err" | tr '\n' ' ')"
    exit 0
fi

# 3a. metadata and tensor table, read by llama.cpp's GGUF parser (node-llama-cpp's own)
node "$ORACLE" meta "$TMP/m-q8_0.gguf" > "$TMP/meta-q8_0.json" 2>> "$TMP/oracle.err"
meta=$("$PY" - "$M" "$TMP/meta-f32.json" "$TMP/meta-q8_0.json" <<'PYEOF'
import json, sys
d = sys.argv[1]; cfg = json.load(open(d + "/config.json"))
tc = {}
try: tc = json.load(open(d + "/tokenizer_config.json"))
except FileNotFoundError: pass
bad = []
def eq(what, got, want):
    if got != want: bad.append("%s: %r != %r" % (what, got, want))
hd = cfg["hidden_size"] // cfg["num_attention_heads"]
L, C, F, V = cfg["num_hidden_layers"], cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
for path, ftype, mtype in ((sys.argv[2], 0, 0), (sys.argv[3], 7, 8)):
    j = json.load(open(path)); m = j["metadata"]; g = m["general"]; l = m["llama"]; t = m["tokenizer"]["ggml"]
    eq("version", j["version"], 3)
    eq("architecture", g["architecture"], "llama"); eq("name", g["name"], "mistral"); eq("file_type", g["file_type"], ftype)
    eq("quantization_version", g.get("quantization_version"), 2 if ftype == 7 else None)
    eq("context_length", l["context_length"], cfg["max_position_embeddings"]); eq("embedding_length", l["embedding_length"], C)
    eq("block_count", l["block_count"], L); eq("feed_forward_length", l["feed_forward_length"], F)
    eq("head_count", l["attention"]["head_count"], cfg["num_attention_heads"])
    eq("head_count_kv", l["attention"]["head_count_kv"], cfg["num_key_value_heads"])
    eq("rms eps", abs(l["attention"]["layer_norm_rms_epsilon"] - cfg["rms_norm_eps"]) < 1e-9, True)
    eq("freq_base", l["rope"]["freq_base"], cfg["rope_theta"]); eq("dimension_count", l["rope"]["dimension_count"], hd)
    eq("vocab_size", l["vocab_size"], V)
    eq("tokenizer model", t["model"], "llama"); eq("tokens", t["tokens"]["length"], V)
    eq("first tokens", t["tokens"]["first"], ["<unk>", "<s>", "</s>"])
    eq("scores", t["scores"]["length"], V); eq("types", t["token_type"]["length"], V)
    h = t["token_type"]["hist"]
    eq("type counts", (h.get("2"), h.get("3"), h.get("6")), (1, 2, 256))
    eq("bos/eos/unk", (t["bos_token_id"], t["eos_token_id"], t["unknown_token_id"]), (1, 2, 0))
    eq("add_bos/eos/space", (t["add_bos_token"], t["add_eos_token"], t["add_space_prefix"]), (True, False, True))
    eq("chat_template", m["tokenizer"].get("chat_template"), tc.get("chat_template"))
    names = ["token_embd.weight"] + ["blk.%d.%s.weight" % (i, n) for i in range(L) for n in
             ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")] + \
            ["output_norm.weight", "output.weight"]
    ts = {x["name"]: x for x in j["tensors"]}
    eq("tensor names", sorted(ts), sorted(names))
    kv = cfg["num_key_value_heads"] * hd
    shapes = {"token_embd": [C, V], "output": [C, V], "attn_q": [C, C], "attn_k": [C, kv], "attn_v": [C, kv],
              "attn_output": [C, C], "ffn_gate": [C, F], "ffn_up": [C, F], "ffn_down": [F, C]}
    for n, x in ts.items():
        k = n.split(".")[-2]
        norm = k.endswith("norm")
        eq(n + " dims", x["dims"], [C] if norm else shapes[k])
        want = 0 if norm else (1 if (mtype == 8 and x["dims"][0] % 32) else mtype)
        eq(n + " type", x["type"], want)
        eq(n + " aligned", x["offset"] % 32, 0)
print("ok" if not bad else "; ".join(bad[:6]))
PYEOF
)
if [ "$meta" = ok ]; then ok "llama.cpp's GGUF parser reads every key and tensor as expected (f32 and q8_0, $tokname)"
else fail "GGUF metadata and tensor table" "$meta"; fi

# 3b. tokenization: the same ids as rmu for a set of strings (and wikitext-2 / MT-Bench).
# Text right after a special token is its own group: HF's Metaspace prepend_scheme "first"
# (Mistral's tokenizer.json) gives it no leading "\u2581", llama.cpp always does (as
# SentencePiece and the legacy form do).
"$PY" - "$TMP/plain.bin" "$TMP/after-special.bin" <<'PYEOF'
import sys
plain = ["Hello world!", "grabbed", " grabbed", "\n", "", "  two leading spaces", "trailing spaces   ",
         "tabs\tand\nnewlines\r\n", "a  b   c    d     e", "na\u00efve caf\u00e9 \u2014 \u201cquotes\u201d \u65e5\u672c\u8a9e \U0001F44B\U0001F3FD",
         "1234567890 3.14159 -42", "\u2581already\u2581escaped", "\u00a0nbsp\u3000ideographic", " ", "  ",
         "Once upon a time, there was a little girl named Lily.", "don't stop\u2014won't stop",
         "\u1e9e \u00df \u01c5 \ufb01 \u03a9mega", "\x7f\x01ctl", "<0x41>", "<s>", "</s>", "<unk>", "x<s>", "[INST] hi [/INST]"]
after = ["<s>y", "a</s>b", "x <s> y", "<s>[INST] hi [/INST]"]
for path, items in ((sys.argv[1], plain), (sys.argv[2], after)):
    open(path, "wb").write(b"".join(s.encode() + b"\0" for s in items))
PYEOF
cat "$TMP/plain.bin" "$TMP/after-special.bin" > "$TMP/strings.bin"
# compare_tok NAME GGUF DIR INPUT: every NUL-separated item must get the same ids
compare_tok() {
    local name=$1 gguf=$2 dir=$3 in=$4 res
    "$RMU" tokenize -m "$dir" -0 < "$in" > "$TMP/tok.rmu" 2>&1
    node "$ORACLE" tokenize "$gguf" "$in" > "$TMP/tok.ll" 2> "$TMP/tok.err"
    res=$(awk 'NR == FNR { a[FNR] = $0; n = FNR; next }
               { m += (a[FNR] != $0); if (a[FNR] != $0 && !first) first = FNR ": rmu " a[FNR] " / llama.cpp " $0; k = FNR }
               END { if (k != n) { print "line counts differ: rmu " n ", llama.cpp " k; exit 1 }
                     if (m) { print m " of " n " items differ, first at " first; exit 1 }
                     print n }' "$TMP/tok.rmu" "$TMP/tok.ll")
    if [ $? -eq 0 ] && [ ! -s "$TMP/tok.err" ]; then ok "$name: $res of $res items identical"
    else fail "$name" "$res $(head -c 200 "$TMP/tok.err")"; fi
}
if [ -f "$MT/tokenizer.json" ]; then
    compare_tok "tokenize: strings, $tokname (Metaspace form; text after a special token left out)" \
        "$TMP/m-f32.gguf" "$M" "$TMP/plain.bin"
else
    compare_tok "tokenize: strings, $tokname" "$TMP/m-f32.gguf" "$M" "$TMP/strings.bin"
fi
if [ -f "$SHARED/data/wikitext-2-raw/wiki.test.raw" ] && [ -f "$MT/tokenizer.json" ]; then
    tr '\n' '\0' < "$SHARED/data/wikitext-2-raw/wiki.test.raw" | tr -d '\r' > "$TMP/wiki.bin"
    "$PY" -c 'import json, sys
out = open(sys.argv[2], "wb")
for l in open(sys.argv[1]):
    for t in json.loads(l)["turns"]: out.write(t.encode() + b"\0")' "$SHARED/data/mt_bench/question.jsonl" "$TMP/mt.bin"
    cat "$TMP/wiki.bin" "$TMP/mt.bin" > "$TMP/corpus.bin"
    compare_tok "tokenize: every wikitext-2 test line and MT-Bench turn, $tokname" "$TMP/m-f32.gguf" "$M" "$TMP/corpus.bin"
else
    skip "tokenize: wikitext-2 and MT-Bench" "../shared (mistral-7b-v0.1, wikitext-2-raw) is absent"
fi

# 3c. greedy decoding: llama.cpp vs rmu
# greedy_check NAME DIR GGUF PROMPT N: llama.cpp's greedy ids, then (teacher-forced) rmu's
# decode-path logits must pick each of them, and `rmu generate --temp 0` prints that text
greedy_check() {
    local name=$1 dir=$2 gguf=$3 prompt=$4 n=$5 ids g res
    ids=$(printf '%s\n' "$prompt" | "$RMU" tokenize -m "$dir")
    g=$(node "$ORACLE" greedy "$gguf" "$n" "$ids" 2> "$TMP/greedy.err")
    if [ -z "$g" ]; then fail "$name" "no tokens from llama.cpp: $(head -c 200 "$TMP/greedy.err")"; return; fi
    "$RMU" logits -m "$dir" --ids "$ids $g" --mode decode --out "$TMP/lg.f32" > /dev/null 2>&1
    res=$("$PY" - "$TMP/lg.f32" "$ids" "$g" <<'PYEOF'
import sys, numpy as np
p, g = sys.argv[2].split(), [int(x) for x in sys.argv[3].split()]
L = np.fromfile(sys.argv[1], dtype=np.float32).reshape(len(p) + len(g), -1)
am = L[len(p) - 1:-1].argmax(1)
print(int((am == np.array(g)).sum()), len(g))
PYEOF
)
    "$RMU" generate -m "$dir" -p "$prompt" -n "$n" --temp 0 > "$TMP/gen.txt" 2> /dev/null
    echo "$ids $g" | "$RMU" tokenize -m "$dir" --decode --skip-special > "$TMP/dec.txt" 2>&1
    read -r agree total <<< "$res"
    if [ "$total" -ge "$n" ] && [ "$agree" = "$total" ] && cmp -s "$TMP/gen.txt" "$TMP/dec.txt"; then
        ok "$name: llama.cpp's $total greedy tokens are rmu's ($agree/$total), same text as rmu generate --temp 0"
    else
        fail "$name" "rmu agrees on $agree of $total (want $n); generate text $(cmp "$TMP/gen.txt" "$TMP/dec.txt" 2>&1 | head -c 120)"
    fi
}
greedy_check "greedy: random GQA Mistral (f32 GGUF, $tokname)" "$M" "$TMP/m-f32.gguf" "The capital of France is" 64

if [ -f "$S/reference.json" ]; then
    "$RMU" export -m "$S" --gguf "$TMP/s-f32.gguf" --type f32 --quiet 2> "$TMP/s.err"
    greedy_check "greedy: stories260K (tied embeddings, f32 GGUF)" "$S" "$TMP/s-f32.gguf" "Once upon a time" 120
    tied=$(node "$ORACLE" meta "$TMP/s-f32.gguf" 2>&1 | "$PY" -c 'import json, sys
j = json.load(sys.stdin); n = [t["name"] for t in j["tensors"]]
print("ok" if "output.weight" not in n and "token_embd.weight" in n and len(n) == 2 + 9 * 5 else n)')
    if [ "$tied" = ok ]; then ok "stories260K (tied): no output tensor, llama.cpp reuses token_embd"
    else fail "stories260K (tied): no output tensor" "$tied"; fi
    ref=$("$PY" -c 'import json, sys; r = json.load(open(sys.argv[1])); print(" ".join(map(str, r["greedy_ids"])))' "$S/reference.json")
    for t in f16 bf16 q8_0; do
        "$RMU" export -m "$S" --gguf "$TMP/s-$t.gguf" --type $t --quiet 2>> "$TMP/s.err"
        g=$(node "$ORACLE" greedy "$TMP/s-$t.gguf" 120 "1 403 407 261 378" 2>> "$TMP/s.err")
        same=$("$PY" -c 'import sys; a, b = sys.argv[1].split(), sys.argv[2].split()
n = 0
while n < min(len(a), len(b)) and a[n] == b[n]: n += 1
print(n)' "$ref" "$g")
        # the reference path's first near-tie (top-2 logits 0.04 apart) is at token 110: f16 and
        # bf16 must get that far; q8_0 (~1% logit error) must keep a long common prefix
        want=110; [ $t = q8_0 ] && want=40
        if [ "$same" -ge $want ]; then ok "greedy: stories260K $t GGUF in llama.cpp keeps $same of the 120 reference tokens (prefix)"
        else fail "greedy: stories260K $t GGUF" "only the first $same of 120 reference tokens (want >= $want): $(head -c 200 "$TMP/s.err")"; fi
    done
    compare_tok "tokenize: strings, stories260K (legacy Prepend/Replace form)" "$TMP/s-f32.gguf" "$S" "$TMP/strings.bin"
else
    skip "stories260K through llama.cpp" "../shared/models/stories260K is absent"
fi

# 3d. the reduced demo (built by tests/integration/demo.sh): base and unlearned models,
# exported, scored through llama.cpp on both domains' questions, as rmu eval scores them
DEMO=${DEMO_OUT:-$ROOT/tests/tmp/demo/out}
if [ ! -f "$DEMO/unlearned/model.safetensors" ] || [ ! -f "$DEMO/base/model.safetensors" ] ||
   [ ! -f "$DEMO/data/forget_mcq.jsonl" ]; then
    skip "demo models through llama.cpp" "$DEMO has no demo run (tests/integration/demo.sh makes it)"
    exit 0
fi
# forget and retain requests in one file per model: [forget..., retain...]
for model in base unlearned; do
    for d in forget retain; do
        "$RMU" eval -m "$DEMO/$model" --tasks mcq --format cloze --data "$DEMO/data/${d}_mcq.jsonl" --quiet \
            --dump-requests "$TMP/req-$model-$d.json" > /dev/null 2> "$TMP/eval.err" ||
            fail "rmu eval of the demo $model model" "$(tail -n 1 "$TMP/eval.err")"
    done
    "$PY" -c 'import json, sys
json.dump(json.load(open(sys.argv[1])) + json.load(open(sys.argv[2])), open(sys.argv[3], "w"))' \
        "$TMP/req-$model-forget.json" "$TMP/req-$model-retain.json" "$TMP/req-$model.json"
done
# the unlearned model in f32 and q8_0, the base model (accuracy before RMU) in f32
for mt in base-f32 unlearned-f32 unlearned-q8_0; do
    model=${mt%-*} t=${mt#*-}
    "$RMU" export -m "$DEMO/$model" --gguf "$TMP/demo-$mt.gguf" --type $t --quiet 2> "$TMP/exp.err" ||
        fail "export of the demo $model model" "$(cat "$TMP/exp.err")"
    node "$ORACLE" loglik "$TMP/demo-$mt.gguf" "$TMP/req-$model.json" "$TMP/ll-$mt.json" 2> "$TMP/ll.err" ||
        fail "llama.cpp scoring of the demo $model model" "$(head -c 200 "$TMP/ll.err")"
done
cat "$TMP/strings.bin" > "$TMP/demo-text.bin"
"$PY" -c 'import json, sys
out = open(sys.argv[2], "ab")
for l in open(sys.argv[1]): out.write(json.loads(l)["text"].encode() + b"\0")' "$DEMO/data/forget_corpus.jsonl" "$TMP/demo-text.bin"
compare_tok "tokenize: strings and the forget corpus, the demo's trained tokenizer (legacy form)" \
    "$TMP/demo-unlearned-f32.gguf" "$DEMO/unlearned" "$TMP/demo-text.bin"
"$PY" - "$TMP" "$DEMO/data" > "$TMP/demo.txt" <<'PYEOF'
import json, sys
tmp, data = sys.argv[1:3]
gold = {d: [json.loads(l)["answer"] for l in open("%s/%s_mcq.jsonl" % (data, d))] for d in ("forget", "retain")}
def acc(reqs, ll, d):
    best = {}
    for r, x in zip(reqs, ll):
        k = r["doc_id"]
        if k not in best or x > best[k][0]: best[k] = (x, r["choice"])
    preds = [best[k][1] for k in sorted(best)]
    return sum(p == g for p, g in zip(preds, gold[d])) / len(gold[d]), preds
for mt in ("base-f32", "unlearned-f32", "unlearned-q8_0"):
    model, t = mt.split("-")
    ll_all = [x["loglik"] for x in json.load(open("%s/ll-%s.json" % (tmp, mt)))]
    k = 0
    for d in ("forget", "retain"):
        reqs = json.load(open("%s/req-%s-%s.json" % (tmp, model, d)))
        ll, k = ll_all[k:k + len(reqs)], k + len(reqs)
        a_rmu, p_rmu = acc(reqs, [r["loglik"] for r in reqs], d)
        a_ll, p_ll = acc(reqs, ll, d)
        diff = max(abs(a - r["loglik"]) for a, r in zip(ll, reqs))
        same = sum(a == b for a, b in zip(p_rmu, p_ll))
        print(model, d, t, len(reqs), "%.4f %.4f %.3g %d %d" % (a_rmu, a_ll, diff, same, len(p_rmu)))
PYEOF
while read -r model d t nreq a_rmu a_ll diff same nq; do
    name="demo $model model, $d questions, $t GGUF: llama.cpp accuracy $a_ll vs rmu $a_rmu"
    if [ "$t" = f32 ]; then
        # the same weights in fp32: per-choice log-likelihoods agree, so every prediction does
        if awk -v d="$diff" 'BEGIN { exit !(d < 1e-3) }' && [ "$same" = "$nq" ]; then
            ok "$name ($same/$nq predictions identical, max |loglik diff| $diff over $nreq choices)"
        else fail "$name" "$same/$nq predictions identical, max |loglik diff| $diff"; fi
    else
        if awk -v a="$a_ll" -v b="$a_rmu" 'BEGIN { d = a - b; exit !(d < 0.05 && d > -0.05) }'; then
            ok "$name (within 5 points; $same/$nq predictions identical)"
        else fail "$name" "more than 5 points apart ($same/$nq predictions identical)"; fi
    fi
done < "$TMP/demo.txt"
