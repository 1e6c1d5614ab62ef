#!/usr/bin/env bash
# soak.sh - the long reliability campaign, `make soak` (not part of `make test`: hours).
#  1. fuzzing: every libFuzzer target of `make fuzz` (build-fuzz/fuzz_*, ASan + UBSan) runs
#     SOAK_RUNS (10 million) executions, seeded by tests/fuzz/seeds.sh (pieces of the real
#     files in ../shared), one target at a time under nice -n 19. A crash does not end the
#     target's run: the input is kept as SOAK_DIR/crashes/TARGET-*, and the run goes on
#     until the executions are done (copy each crash into tests/fuzz/regress/TARGET/, fix it;
#     tests/integration/fuzz.sh then runs it in every `make test`).
#  2. crashes: tests/integration/crash.sh with SOAK_KILLS (200) SIGKILLs per writer.
#  3. faults: tests/integration/faults.sh with SOAK_FAULT_ROUNDS (20) rounds of its loops.
# SOAK_PARTS (default "fuzz crash faults") picks parts, SOAK_TARGETS (default: all) the fuzz
# targets; SOAK_SECONDS > 0 caps each fuzz target's time. The corpus in SOAK_DIR is kept, so a
# campaign split over several runs goes on from where the last one stopped. Prints one line per target - executions, seconds, findings - and writes
# them to SOAK_DIR/summary.txt.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${SOAK_DIR:-$ROOT/tests/tmp/soak}
RUNS=${SOAK_RUNS:-10000000}
SECS=${SOAK_SECONDS:-0}
PARTS=${SOAK_PARTS:-fuzz crash faults}
TARGETS=${SOAK_TARGETS:-}
mkdir -p "$OUT/crashes" "$OUT/corpus"
SUM=$OUT/summary.txt
: > "$SUM"
say() { echo "$*" | tee -a "$SUM"; }

if [[ " $PARTS " == *" fuzz "* ]]; then
    make -s fuzz >"$OUT/build.log" 2>&1 || { say "fuzz: build failed: $(tail -3 "$OUT/build.log")"; exit 1; }
    bash tests/fuzz/seeds.sh "$OUT/seeds" || exit 1
    # own copies: a rebuild (make test) while this runs must not replace a running binary
    rm -rf "$OUT/bin" && mkdir -p "$OUT/bin" && cp build-fuzz/fuzz_* "$OUT/bin/"
    say "fuzz: $RUNS executions per target, ASan + UBSan, nice -n 19, one target at a time"
    for bin in "$OUT"/bin/fuzz_*; do
        [ -x "$bin" ] || continue
        t=${bin##*/fuzz_}
        [ -n "$TARGETS" ] && [[ " $TARGETS " != *" $t "* ]] && continue
        extra=()
        [ "$t" = jinja ] && extra=(-dict=tests/fuzz/jinja.dict)
        [ "$SECS" -gt 0 ] && extra+=(-max_total_time="$SECS")
        mkdir -p "$OUT/corpus/$t" "$OUT/seeds/$t"
        done_runs=0 restarts=0 t0=$(date +%s)
        # a crash stops libFuzzer: record it and go on from the corpus until the runs are done
        while [ "$done_runs" -lt "$RUNS" ] && [ $restarts -lt 50 ]; do
            left=$((RUNS - done_runs))
            nice -n 19 "$bin" -runs="$left" -rss_limit_mb=2048 -timeout=30 -print_final_stats=1 \
                -artifact_prefix="$OUT/crashes/$t-" "${extra[@]}" "$OUT/corpus/$t" "$OUT/seeds/$t" \
                >"$OUT/$t.$restarts.log" 2>&1
            rc=$?
            n=$(grep -o 'number_of_executed_units: [0-9]*' "$OUT/$t.$restarts.log" | tail -1 | grep -o '[0-9]*$')
            [ -z "$n" ] && n=$(grep -oE '^#[0-9]+' "$OUT/$t.$restarts.log" | tail -1 | tr -d '#')
            done_runs=$((done_runs + ${n:-0}))
            [ $rc -eq 0 ] && break
            restarts=$((restarts + 1))
            [ "$SECS" -gt 0 ] && [ $(( $(date +%s) - t0 )) -ge "$SECS" ] && break
        done
        found=$(ls "$OUT/crashes" | grep -c "^$t-")
        say "fuzz_$t: $done_runs executions in $(( $(date +%s) - t0 )) s, $found findings$( [ "$found" -gt 0 ] && echo " ($OUT/crashes/$t-*)")"
    done
fi
if [[ " $PARTS " == *" crash "* ]]; then
    CRASH_KILLS=${SOAK_KILLS:-200} bash tests/integration/crash.sh >"$OUT/crash.log" 2>&1
    say "crash: ${SOAK_KILLS:-200} SIGKILLs per writer: $(grep -c '^ok' "$OUT/crash.log") writers ok, $(grep -c '^not ok' "$OUT/crash.log") failed"
    grep -E '^not ok' "$OUT/crash.log" | tee -a "$SUM"
fi
if [[ " $PARTS " == *" faults "* ]]; then
    FAULT_ROUNDS=${SOAK_FAULT_ROUNDS:-20} bash tests/integration/faults.sh >"$OUT/faults.log" 2>&1
    say "faults: $(grep -c '^ok' "$OUT/faults.log") ok, $(grep -c '^not ok' "$OUT/faults.log") failed"
    grep -E '^not ok' "$OUT/faults.log" | tee -a "$SUM"
fi
