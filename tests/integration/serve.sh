#!/usr/bin/env bash
# serve.sh - `rmu serve`: the OpenAI-compatible API through the official `openai` npm client
# (tests/serve/api.mjs), load and abuse (tests/serve/load.mjs), the chat page in headless
# Chromium (tests/serve/page.mjs), and the CLI's own errors. Loopback only, free ports (the
# server picks one and prints it). The project's tiny generated model covers every feature;
# stories260K from ../shared adds checks against its real text when present.
. "$(dirname "$0")/../lib.sh"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
rm -rf "${TMP:?}"/*
SERVE=$ROOT/tests/serve

# ---- CLI errors (the sanitizer build)
expect_error "serve: -m required" "-m DIR is required" "$RMU" serve
expect_error "serve: bad --port" "--port: expected an integer in \[0, 65535\]" "$RMU" serve -m x --port 70000
expect_error "serve: bad --template" "--template: expected auto, zephyr or plain" "$RMU" serve -m x --template jinja
expect_error "serve: unknown option" "unknown option '--bogus'" "$RMU" serve -m x --bogus
expect_error "serve: missing model folder (after the listener started)" "none/config.json: cannot open" \
    "$RMU" serve -m "$TMP/none" --port 0
out=$("$RMU" serve -m "$TMP/none" --host 0.0.0.0 --port 0 2>&1 >/dev/null)
if echo "$out" | grep -q "warning: listening on 0.0.0.0 without an API key"; then ok "serve: binding beyond loopback without a key warns"
else fail "serve: binding beyond loopback without a key warns" "$out"; fi
out=$(RMU_API_KEY=k "$RMU" serve -m "$TMP/none" --host 0.0.0.0 --port 0 2>&1 >/dev/null)
if echo "$out" | grep -q "warning"; then fail "serve: no warning with a key" "$out"; else ok "serve: no warning with a key"; fi

# ---- models: the tiny one gets a chat template (Jinja), so chat goes through rmu_chat_*
tiny=$TMP/tiny
if "$RMU" init -o "$tiny" --shape tiny --seed 3 >"$TMP/init.log" 2>&1 && python3 - "$tiny/tokenizer_config.json" <<'PYEOF'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["chat_template"] = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
                      "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
json.dump(c, open(p, "w"), indent=2)
PYEOF
then ok "rmu init tiny model with a chat template"
else fail "rmu init tiny model" "$(tail -3 "$TMP/init.log")"; exit 0; fi
stories=""
have_shared && stories=$SHARED/models/stories260K

# ---- the npm packages (pinned in tests/serve/package.json), installed when missing
if [ ! -f "$SERVE/node_modules/openai/package.json" ] || [ ! -f "$SERVE/node_modules/playwright-core/package.json" ]; then
    if ! (cd "$SERVE" && timeout 300 npm ci --no-audit --no-fund) >"$TMP/npm.log" 2>&1; then
        skip "serve API, load and page tests" "npm install failed: $(tail -n 2 "$TMP/npm.log" | tr '\n' ' ')"
        exit 0
    fi
fi

# node SCRIPT NAME ENV...: the script prints its own ok/not ok lines; a crash is a failure.
run_node() {
    local script=$1 name=$2; shift 2
    local log=$TMP/$name.log
    (cd "$SERVE" && env TMP_DIR="$TMP" "$@" timeout 600 node "$script") >"$log" 2>&1
    local rc=$?
    grep -E '^(ok|not ok|skip) ' "$log"
    if [ $rc -ne 0 ] && ! grep -q '^not ok' "$log"; then
        fail "$name" "exited with status $rc: $(grep -v -E '^(ok|skip) ' "$log" | tail -n 5 | tr '\n' ' ')"
    fi
}

# API on the tiny model with the sanitizer build: memory errors and leaks (at the SIGTERM
# exit) fail it; then on stories260K with the normal build.
run_node api.mjs api-tiny RMU="$RMU_SAN" MODELS="$tiny" ASAN_OPTIONS=detect_leaks=1
if [ -n "$stories" ]; then run_node api.mjs api-stories RMU="$RMU" MODELS="$tiny:$stories" SKIP_FIRST=1
else skip "serve API on stories260K" "../shared/models/stories260K is absent"; fi
run_node load.mjs load RMU="$RMU" MODEL="${stories:-$tiny}"

CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
if [ -z "$CHROMIUM" ]; then skip "chat page in headless Chromium" "chromium is not installed (scripts/install-deps installs it)"
else
    # the page test stops a long reply mid-stream: a model slow enough (a few ms a token) that
    # the reply cannot finish before Stop reaches the server, on any machine
    page_model=$TMP/page
    if "$RMU" init -o "$page_model" --shape tiny --seed 3 --layers 8 --hidden 256 --intermediate 768 \
           --tokenizer "$tiny" >"$TMP/init-page.log" 2>&1; then
        run_node page.mjs page RMU="$RMU" MODEL="$page_model" CHROMIUM="$CHROMIUM"
    else fail "rmu init page model" "$(tail -3 "$TMP/init-page.log")"; fi
fi
