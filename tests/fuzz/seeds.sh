#!/usr/bin/env bash
# seeds.sh OUT [SHARED] - seed corpora for every libFuzzer target, one folder per target
# (OUT/safetensors, OUT/tokenizer, ...): small hand-made files that reach every branch of
# the format, plus - when ../shared is there - pieces of the real files (a real safetensors
# header, stories260K's tokenizer.json and config.json, Mistral-7B's config.json, the Zephyr
# chat template, MT-Bench questions / judge prompts / reference answers as JSON rows and as
# request bodies, wikitext lines, MMLU CSV files and their rows as JSON). Used by
# tests/integration/fuzz.sh (bounded runs in `make test`) and tests/soak.sh (`make soak`).
set -eu
OUT=$1
SHARED=${2:-$(cd "$(dirname "$0")/../.." && pwd)/../shared}
rm -rf "$OUT"
mkdir -p "$OUT"/{safetensors,tokenizer,jinja,gguf,config,jsonl,csv,request}
[ -d "$SHARED/models/stories260K" ] || SHARED=

python3 - "$OUT" "$SHARED" <<'PYEOF'
import glob, json, os, struct, sys
out, shared = sys.argv[1], sys.argv[2]
def put(target, name, data):
    with open(os.path.join(out, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

# ---- safetensors: a hand-made header; the real stories260K header with 3 of its tensors
def st(hdr, data):
    h = json.dumps(hdr).encode(); h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data
put("safetensors", "seed.safetensors", st({"__metadata__": {"format": "pt"},
    "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
    "b": {"dtype": "BF16", "shape": [3], "data_offsets": [16, 22]}}, bytes(22)))
if shared:
    raw = open(shared + "/models/stories260K/model.safetensors", "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]; hdr = json.loads(raw[8:8 + n])
    keep, off, data = {"__metadata__": hdr.get("__metadata__", {})}, 0, b""
    for k in sorted(k for k in hdr if k != "__metadata__" and "norm" in k)[:3]:
        a, b = hdr[k]["data_offsets"]
        keep[k] = dict(hdr[k], data_offsets=[off, off + b - a]); data += raw[8 + n + a:8 + n + b]; off += b - a
    put("safetensors", "stories260K-norms.safetensors", st(keep, data))

# ---- tokenizer: even first byte = tokenizer.json text, odd = text to encode
vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
for i in range(256): vocab["<0x%02X>" % i] = 3 + i
for p in ["\u2581", "a", "b", "\u2581a", "ab", "\u2581ab"]: vocab[p] = len(vocab)
tok = {"version": "1.0", "added_tokens": [{"id": i, "content": c, "special": True, "single_word": False,
       "lstrip": False, "rstrip": False, "normalized": False} for c, i in [("<unk>", 0), ("<s>", 1), ("</s>", 2)]],
       "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                      {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
       "pre_tokenizer": None,
       "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True, "vocab": vocab,
                 "merges": ["\u2581 a", "a b", "\u2581a b"]}}
put("tokenizer", "seed.json", json.dumps(tok))
if shared:
    put("tokenizer", "stories260K.json", b"\x00" + open(shared + "/models/stories260K/tokenizer.json", "rb").read())
    lines = [l for l in open(shared + "/data/wikitext-2-raw/wiki.test.raw", encoding="utf-8") if l.strip()][:40:4]
    for i, l in enumerate(lines): put("tokenizer", "text%d" % i, b"\x01" + l.encode())

# ---- jinja: the first byte picks trim_blocks / lstrip_blocks
put("jinja", "chatml", b"\x03" + b"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
put("jinja", "mistral", b"\x03" + b"{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}{% endif %}{% endfor %}")
put("jinja", "expr", b"\x00" + b"{%- set n = messages | length -%}\n{%- for m in messages if m.role != 'system' -%}\n  [{{ loop.index }}/{{ loop.length }}{{ '*' if loop.first }}] {{ m.content[:3] | trim }}{{ m.get('x', 'd') | upper }}\n  {%- if m.content is string and 'x' not in m.content %}{% continue %}{% endif %}\n{% else %}none{% endfor %}{# c #}{% for i in range(3) %}{{ i ~ ',' }}{% if i > 1 %}{% break %}{% endif %}{% endfor %}")
if shared:
    put("jinja", "zephyr", b"\x03" + open(shared + "/data/zephyr-7b-beta/chat_template.jinja", "rb").read())

# ---- gguf: a small valid file (string, array and numeric metadata, an aligned tensor table)
def s(x): b = x.encode(); return struct.pack("<Q", len(b)) + b
kv = s("general.architecture") + struct.pack("<I", 8) + s("llama")
kv += s("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3) + s("<unk>") + s("<s>") + s("a")
kv += s("tokenizer.ggml.scores") + struct.pack("<IIQ", 9, 6, 3) + struct.pack("<3f", 0, 0, -1)
kv += s("general.alignment") + struct.pack("<II", 4, 32)
ti = s("w") + struct.pack("<IQQIQ", 2, 32, 2, 8, 0) + s("n") + struct.pack("<IQIQ", 1, 3, 0, 96)
h = b"GGUF" + struct.pack("<IQQ", 3, 2, 4) + kv + ti
h += bytes(-len(h) % 32)
put("gguf", "seed.gguf", h + bytes(68) + bytes(28) + bytes(12) + bytes(20))

# ---- config.json: hand-made edge cases; the real Mistral-7B and stories260K configs
put("config", "tiny.json", json.dumps({"model_type": "llama", "hidden_size": 64, "intermediate_size": 176,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512,
    "max_position_embeddings": 512, "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
    "bos_token_id": 1, "eos_token_id": [2, 3], "pad_token_id": None, "sliding_window": None, "hidden_act": "silu",
    "torch_dtype": "bfloat16"}))
put("config", "fp8.json", json.dumps({"model_type": "mistral", "hidden_size": 64, "intermediate_size": 176,
    "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 512, "sliding_window": 16, "hidden_act": "silu",
    "quantization_config": {"quant_method": "compressed-tensors", "format": "float-quantized",
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "float",
        "strategy": "channel", "dynamic": False, "symmetric": True}}}, "ignore": ["lm_head"]}}))
if shared:
    put("config", "mistral-7b.json", open(shared + "/data/mistral-7b-v0.1/config.json", "rb").read())
    put("config", "stories260K.json", open(shared + "/models/stories260K/config.json", "rb").read())

# ---- JSON rows: first byte 0 corpus .jsonl, 1 corpus .json, 2 corpus text, 3 MCQ rows, 4 JSON Lines
put("jsonl", "corpus.jsonl", b"\x00" + b'{"text": "one"}\n\n{"text": "two\\n", "x": 1}\r\n{"text": ""}\n')
put("jsonl", "corpus.json", b"\x01" + b'\xef\xbb\xbf ["a", {"text": "b"}]')
put("jsonl", "corpus.txt", b"\x02" + b"first line\r\n  \nsecond\tline\nlast")
put("jsonl", "mcq.jsonl", b"\x03" + b'{"question": "Q?", "choices": ["a", "b", "c", "d"], "answer": 2, "subject": "x"}\n'
    b'{"question": "R?", "choices": ["a", "b"], "answer": "B"}\n')
put("jsonl", "mcq.json", b"\x03" + b'[{"question": "Q?", "choices": ["a", "b", "c"], "answer": 0}]')
put("jsonl", "torn.jsonl", b"\x04" + b'{"a": 1}\n[2, 3]\n"s"\n{"cut')
if shared:
    mt = shared + "/data/mt_bench/"
    for i, f in enumerate(["question.jsonl", "judge_prompts.jsonl", "reference_answer/gpt-4.jsonl"]):
        lines = open(mt + f, "rb").read().split(b"\n")[:6]
        put("jsonl", "mtbench%d" % i, bytes([4]) + b"\n".join(lines))
        put("jsonl", "mtbench%d.corpus" % i, bytes([0]) + b"\n".join(json.dumps({"text": json.loads(l)["turns"][0] if "turns" in json.loads(l) else l.decode()}).encode() for l in lines if l.strip()))
    wl = open(shared + "/data/wikitext-2-raw/wiki.test.raw", "rb").read()[:4000]
    put("jsonl", "wikitext.txt", b"\x02" + wl)
    import csv
    rows = list(csv.reader(open(shared + "/data/mmlu/dev/anatomy_dev.csv", encoding="utf-8")))
    put("jsonl", "mmlu-rows.jsonl", b"\x03" + "\n".join(json.dumps({"question": r[0], "choices": r[1:5], "answer": r[5], "subject": "anatomy"}) for r in rows).encode())
    put("jsonl", "mmlu-rows.json", b"\x03" + json.dumps([{"question": r[0], "choices": r[1:5], "answer": "ABCD".index(r[5])} for r in rows]).encode())

# ---- MMLU CSV: quoting, "" escapes, embedded newlines, CRLF; the real dev files
put("csv", "seed.csv", b'What is 1+1?,1,2,3,4,B\r\n"A ""quoted"", multi\nline question",x,y,z,w,D\n')
if shared:
    for p in sorted(glob.glob(shared + "/data/mmlu/dev/*.csv"))[:12]:
        put("csv", os.path.basename(p), open(p, "rb").read())

# ---- OpenAI request bodies (rmu serve; the first byte picks the endpoint and template)
put("request", "chat", b"\x00" + json.dumps({"model": "m", "messages": [{"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"}], "max_tokens": 8, "temperature": 0, "stream": False}).encode())
put("request", "completion", b"\x01" + json.dumps({"model": "m", "prompt": "Once upon", "max_tokens": 4, "stop": ["\n"]}).encode())
if shared:
    for i, l in enumerate(open(shared + "/data/mt_bench/question.jsonl", encoding="utf-8").readlines()[:8]):
        q = json.loads(l)
        msgs = [{"role": "user", "content": q["turns"][0]}]
        put("request", "mtbench%d" % i, bytes([i % 3]) + json.dumps({"model": "m", "messages": msgs, "max_tokens": 16,
            "temperature": 0.7, "top_p": 0.9, "seed": i}).encode())
PYEOF
