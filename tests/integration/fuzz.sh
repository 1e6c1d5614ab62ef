#!/usr/bin/env bash
# fuzz.sh - bounded libFuzzer runs (ASan + UBSan) of every parser that reads untrusted
# input (each build-fuzz/fuzz_* target of `make fuzz`): the safetensors header,
# tokenizer.json, chat templates (the Jinja engine, which must also never hang), GGUF files,
# config.json, JSON rows (corpora, MCQ rows, JSON Lines), MMLU CSV and, with rmu serve, HTTP
# request bodies. The run fails on any crash, leak, timeout or sanitizer report. The long
# campaign (10 million executions per target) is `make soak` (tests/soak.sh).
. "$(dirname "$0")/../lib.sh"
SECS=${FUZZ_SECONDS:-20}
if ! command -v clang >/dev/null; then skip "fuzzing" "clang is not installed"; exit 0; fi
if ! make -s -C "$ROOT" fuzz >"$TMP/build.log" 2>&1; then
    if grep -q "fuzzer" "$TMP/build.log"; then skip "fuzzing" "clang cannot link -fsanitize=fuzzer (libclang-rt-14-dev?)"
    else fail "fuzz targets build" "$(tail -3 "$TMP/build.log")"; fi
    exit 0
fi
# Seeds for every target (hand-made, plus pieces of the real files in ../shared when it is
# there): tests/fuzz/seeds.sh. Inputs that once crashed a target stay as regression tests in
# tests/fuzz/regress/TARGET/ and run first.
bash "$ROOT/tests/fuzz/seeds.sh" "$TMP/seeds" "$SHARED" || { fail "fuzz seeds" "tests/fuzz/seeds.sh failed"; exit 0; }
rm -rf "$TMP/corpus"
JSECS=${FUZZ_SECONDS:-15}
SSECS=${FUZZ_SECONDS:-10}
for bin in "$ROOT"/build-fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    t=${bin##*/fuzz_} secs=$SECS extra=
    case $t in
        gguf|request) secs=$JSECS ;;
        jinja) secs=$JSECS extra=-dict=$ROOT/tests/fuzz/jinja.dict ;;
        config|jsonl|csv) secs=$SSECS ;;
    esac
    reg=$ROOT/tests/fuzz/regress/$t
    if [ -d "$reg" ] && [ -n "$(ls -A "$reg")" ]; then
        if "$bin" -rss_limit_mb=2048 -timeout=10 "$reg"/* >"$TMP/$t.regress.log" 2>&1; then
            ok "fuzz_$t: $(ls "$reg" | wc -l) regression inputs (crashes found earlier) pass"
        else
            fail "fuzz_$t: regression inputs" "$(grep -m1 -E 'ERROR|SUMMARY|runtime error' "$TMP/$t.regress.log")"
        fi
    fi
    mkdir -p "$TMP/corpus/$t" "$TMP/seeds/$t"
    if "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 $extra "$TMP/corpus/$t" "$TMP/seeds/$t" >"$TMP/$t.log" 2>&1; then
        ok "fuzz_$t: ${secs}s, $(grep -o 'Done [0-9]* runs' "$TMP/$t.log" | head -1), no crash"
    else
        fail "fuzz_$t" "$(grep -m1 -E 'ERROR|SUMMARY|runtime error' "$TMP/$t.log")"
    fi
done
