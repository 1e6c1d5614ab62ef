#!/usr/bin/env bash
# bench/serve_bench.sh - `rmu serve` under 1, 4 and 16 concurrent greedy streams next to
# llama.cpp's `llama-server -np 16` on the same weights (4-layer Mistral-7B-shaped model: the
# BF16 folder for rmu, its F16 GGUF for llama.cpp), in the same run, through the same client
# (bench/serve_load.mjs). Prints both servers' tables, then aggregate decode tok/s with the
# ratios: C streams vs one stream (goal: 16 streams >= 8x), and rmu vs llama-server. Not a
# test; the machine is shared and noisy, so compare ratios of one run.
# usage: bench/serve_bench.sh
#   env: THREADS (2), TOKENS per stream (32), STREAMS (1,4,16), M4 (/tmp/m4), GGUF ($M4.f16.gguf),
#        PEERS (~/.cache/rmu-peers: llama.cpp built by ../shared/tools/peers.sh), ONLY (rmu|llama)
# Needs node >= 18; builds /tmp/m4 and its GGUF when missing (~5 GB of disk).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RMU=$ROOT/build/rmu
THREADS=${THREADS:-2}
TOKENS=${TOKENS:-32}
STREAMS=${STREAMS:-1,4,16}
M4=${M4:-/tmp/m4}
GGUF=${GGUF:-$M4.f16.gguf}
PEERS=${PEERS:-$HOME/.cache/rmu-peers}
ONLY=${ONLY:-}
NP=$(echo "$STREAMS" | tr ',' '\n' | sort -n | tail -1)
export OMP_NUM_THREADS=$THREADS OMP_WAIT_POLICY=passive
[ -x "$RMU" ] || make -C "$ROOT" -j2 all >/dev/null
[ -f "$M4/config.json" ] || "$RMU" init -o "$M4" --shape mistral-7b --layers 4 --dtype bf16 --seed 1 >&2
WORK=$(mktemp -d)
SPID=
cleanup() { [ -n "$SPID" ] && kill "$SPID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

# wait_up URL LOG PID: until GET URL/health answers 200 (the model is loaded)
wait_up() {
    for _ in $(seq 1200); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1/health")" = 200 ] && return 0
        kill -0 "$3" 2>/dev/null || { echo "serve_bench: server exited: $(tail -n 3 "$2")" >&2; exit 1; }
        sleep 0.1
    done
    echo "serve_bench: $1 did not come up" >&2
    exit 1
}
stop() { kill -TERM "$SPID"; wait "$SPID" 2>/dev/null || true; SPID=; }

if [ "$ONLY" != llama ]; then
    : > "$WORK/rmu.log"
    "$RMU" serve -m "$M4" --port 0 --parallel "$NP" --ctx 512 --model-name m4 2>"$WORK/rmu.log" & SPID=$!
    for _ in $(seq 600); do grep -q 'listening on' "$WORK/rmu.log" && break; sleep 0.05; done
    url=http://$(grep -o 'listening on http://[^/]*' "$WORK/rmu.log" | head -1 | sed 's|listening on http://||')
    wait_up "$url" "$WORK/rmu.log" "$SPID"
    echo "== rmu serve -m $M4 --parallel $NP --ctx 512 (OMP_NUM_THREADS=$THREADS)"
    node "$ROOT/bench/serve_load.mjs" --url "$url" --streams "$STREAMS" --tokens "$TOKENS" | tee "$WORK/rmu.txt"
    stop
fi

if [ "$ONLY" != rmu ]; then
    LS=$PEERS/src/build/bin/llama-server
    [ -x "$LS" ] || { echo "serve_bench: $LS is missing (../shared/tools/peers.sh builds it)" >&2; exit 1; }
    [ -f "$GGUF" ] || /usr/bin/python3 "$ROOT/../shared/tools/hf_to_gguf.py" "$M4" "$GGUF" f16 >&2
    port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    LD_LIBRARY_PATH=$PEERS/src/build/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
        "$LS" -m "$GGUF" -np "$NP" -c $((512 * NP)) -t "$THREADS" --host 127.0.0.1 --port "$port" >"$WORK/llama.log" 2>&1 &
    SPID=$!
    wait_up "http://127.0.0.1:$port" "$WORK/llama.log" "$SPID"
    echo "== llama-server -m $GGUF -np $NP -c $((512 * NP)) -t $THREADS"
    node "$ROOT/bench/serve_load.mjs" --url "http://127.0.0.1:$port" --streams "$STREAMS" --tokens "$TOKENS" |
        tee "$WORK/llama.txt"
    stop
fi

# streams -> decode tok/s, ttft mean (columns 5 and 6 of serve_load.mjs's table)
[ -f "$WORK/rmu.txt" ] && [ -f "$WORK/llama.txt" ] || exit 0
echo
echo "== aggregate decode tok/s ($TOKENS tokens per stream, $THREADS threads); ratios vs one stream and rmu / llama-server"
awk '
    FNR == 1 { f++ }
    /^ *[0-9]+ / { d[f, $1] = $4; t[f, $1] = $5; if (!(($1) in seen)) { seen[$1] = 1; order[++n] = $1 } }
    END {
        printf "%8s  %12s %7s %9s  %12s %7s %9s  %10s\n", "streams", "rmu tok/s", "x vs 1", "ttft s",
               "llama tok/s", "x vs 1", "ttft s", "rmu/llama"
        b = order[1]
        for (i = 1; i <= n; i++) {
            c = order[i]
            printf "%8s  %12.2f %6.2fx %9.3f  %12.2f %6.2fx %9.3f  %9.2fx\n", c, d[1, c], d[1, c] / d[1, b], t[1, c],
                   d[2, c], d[2, c] / d[2, b], t[2, c], d[1, c] / d[2, c]
        }
    }' "$WORK/rmu.txt" "$WORK/llama.txt"
