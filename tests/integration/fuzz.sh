#!/usr/bin/env bash
# fuzz.sh - bounded libFuzzer runs (ASan + UBSan) of the parsers that read untrusted
# input: the safetensors header, tokenizer.json, chat templates (the Jinja engine, which
# must also never hang), GGUF files and `rmu serve`'s request bodies (JSON -> a generation
# request). Seeds are made here; the run fails on any crash, leak, timeout or sanitizer
# report.
. "$(dirname "$0")/../lib.sh"
SECS=${FUZZ_SECONDS:-20}
if ! command -v clang >/dev/null; then skip "fuzzing" "clang is not installed"; exit 0; fi
if ! make -s -C "$ROOT" fuzz >"$TMP/build.log" 2>&1; then
    if grep -q "fuzzer" "$TMP/build.log"; then skip "fuzzing" "clang cannot link -fsanitize=fuzzer (libclang-rt-14-dev?)"
    else fail "fuzz targets build" "$(tail -3 "$TMP/build.log")"; fi
    exit 0
fi
rm -rf "$TMP/st" "$TMP/tok" "$TMP/req"; mkdir -p "$TMP/st" "$TMP/tok" "$TMP/req"
# request seeds: first byte = endpoint (0 chat, 1 completions, 2 tokenize, 3 detokenize) and template
printf '\000{"messages":[{"role":"system","content":"S"},{"role":"user","content":"hi ab"}],"max_tokens":5,"n":2,"stop":["a"],"logprobs":true,"top_logprobs":2,"stream":true,"stream_options":{"include_usage":true}}' > "$TMP/req/chat"
printf '\005{"messages":[{"role":"user","content":[{"type":"text","text":"ab"}]},{"role":"assistant","content":null}],"temperature":0,"presence_penalty":1}' > "$TMP/req/chat2"
printf '\001{"prompt":[[1,5,6],[300,301]],"echo":true,"logprobs":2,"max_tokens":0,"seed":-5,"temperature":0.5,"top_p":0.9,"top_k":3}' > "$TMP/req/comp"
printf '\001{"prompt":"a b ab","max_tokens":3,"n":3,"stop":"b"}' > "$TMP/req/comp2"
printf '\002{"messages":[{"role":"user","content":"ab"}],"add_generation_prompt":false}' > "$TMP/req/tok"
printf '\003{"tokens":[1,2,300,400]}' > "$TMP/req/detok"
python3 - "$TMP/st/seed.safetensors" <<'PYEOF'
import json, struct, sys
hdr = {"__metadata__": {"format": "pt"},
       "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
       "b": {"dtype": "BF16", "shape": [3], "data_offsets": [16, 22]}}
h = json.dumps(hdr).encode(); h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + bytes(22))
PYEOF
python3 - "$TMP/tok/seed.json" <<'PYEOF'
import json, sys
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
json.dump(tok, open(sys.argv[1], "w"))
PYEOF
# Jinja seeds: real chat-template shapes (the first byte picks trim_blocks/lstrip_blocks);
# the Zephyr template from ../shared when it is there.
rm -rf "$TMP/jinja"; mkdir -p "$TMP/jinja"
printf '\003%s' "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}" > "$TMP/jinja/chatml"
printf '\003%s' "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}{% endif %}{% endfor %}" > "$TMP/jinja/mistral"
printf '\000%s' "{%- set n = messages | length -%}
{%- for m in messages if m.role != 'system' -%}
  [{{ loop.index }}/{{ loop.length }}{{ '*' if loop.first }}] {{ m.content[:3] | trim }}{{ m.get('x', 'd') | upper }}
  {%- if m.content is string and 'x' not in m.content %}{% continue %}{% endif %}
{% else %}none{% endfor %}{# c #}{% for i in range(3) %}{{ i ~ ',' }}{% if i > 1 %}{% break %}{% endif %}{% endfor %}" > "$TMP/jinja/expr"
[ -f "$SHARED/data/zephyr-7b-beta/chat_template.jinja" ] &&
    { printf '\003'; cat "$SHARED/data/zephyr-7b-beta/chat_template.jinja"; } > "$TMP/jinja/zephyr"
# GGUF seed: a small valid file (string, array and numeric metadata, an aligned tensor table)
rm -rf "$TMP/gguf"; mkdir -p "$TMP/gguf"
python3 - "$TMP/gguf/seed.gguf" <<'PYEOF'
import struct, sys
def s(x): b = x.encode(); return struct.pack("<Q", len(b)) + b
kv = s("general.architecture") + struct.pack("<I", 8) + s("llama")
kv += s("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3) + s("<unk>") + s("<s>") + s("a")
kv += s("tokenizer.ggml.scores") + struct.pack("<IIQ", 9, 6, 3) + struct.pack("<3f", 0, 0, -1)
kv += s("general.alignment") + struct.pack("<II", 4, 32)
ti = s("w") + struct.pack("<IQQIQ", 2, 32, 2, 8, 0) + s("n") + struct.pack("<IQIQ", 1, 3, 0, 96)
h = b"GGUF" + struct.pack("<IQQ", 3, 2, 4) + kv + ti
h += bytes(-len(h) % 32)
open(sys.argv[1], "wb").write(h + bytes(68) + bytes(28) + bytes(12) + bytes(20))
PYEOF
JSECS=${FUZZ_SECONDS:-15}
for t in safetensors tokenizer jinja gguf request; do
    d=$TMP/st secs=$SECS extra=
    [ $t = tokenizer ] && d=$TMP/tok
    [ $t = request ] && d=$TMP/req
    [ $t = gguf ] && d=$TMP/gguf secs=$JSECS
    [ $t = jinja ] && d=$TMP/jinja secs=$JSECS extra=-dict=$ROOT/tests/fuzz/jinja.dict
    if "$ROOT/build-fuzz/fuzz_$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 $extra "$d" >"$TMP/$t.log" 2>&1; then
        ok "fuzz_$t: ${secs}s, $(grep -o 'Done [0-9]* runs' "$TMP/$t.log" | head -1), no crash"
    else
        fail "fuzz_$t" "$(grep -m1 -E 'ERROR|SUMMARY|runtime error' "$TMP/$t.log")"
    fi
done
