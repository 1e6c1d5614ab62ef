#!/usr/bin/env bash
# tests/run.sh - runs every test and ends with "N passed, N failed, N skipped".
# Unit tests (cmocka, TAP output) run twice: the normal build and the ASan+UBSan build; the
# GEMM test runs a third time with the AVX-512 kernels emulated through SIMDe.
# Integration tests are tests/integration/*.sh, each printing ok / not ok / skip lines.
set -u
cd "$(dirname "$0")/.."
export CMOCKA_MESSAGE_OUTPUT=TAP
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# Passive waiting: a spinning OpenMP thread starves the other one when the machine is shared.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
passed=0 failed=0 skipped=0
log=tests/tmp/run.log
mkdir -p tests/tmp
: > "$log"

count() { # reads ok/not ok/skip lines from stdin, echoes them, updates counters
    local line
    while IFS= read -r line; do
        echo "$line" >> "$log"
        case "$line" in
            "not ok # SKIP"*|"not ok - # SKIP"*|"ok # SKIP"*) skipped=$((skipped + 1)); echo "$PREFIX$line" ;;
            "not ok"*) failed=$((failed + 1)); echo "$PREFIX$line" ;;
            "ok "*)    passed=$((passed + 1)); echo "$PREFIX$line" ;;
            "skip "*)  skipped=$((skipped + 1)); echo "$PREFIX$line" ;;
            "# "*|"#	"*) [ -n "${VERBOSE:-}" ] && echo "$PREFIX$line" ;;
        esac
    done
}

run_unit() { # dir label
    local t
    for t in "$1"/tests/test_*; do
        [ -x "$t" ] || continue
        PREFIX="[$2 $(basename "$t")] "
        # cmocka TAP: "ok N - name" / "not ok N - name"; a crash loses the plan, so add a failure.
        local out rc
        out=$("$t" 2>&1); rc=$?
        count < <(echo "$out" | sed -E 's/^(not ok|ok) [0-9]+ /\1 /')
        if [ $rc -ne 0 ] && ! echo "$out" | grep -v 'SKIP' | grep -q '^not ok'; then
            failed=$((failed + 1)); echo "${PREFIX}not ok - exited with status $rc"
            echo "$out" | tail -n 20
        elif [ $rc -ne 0 ]; then
            echo "$out" | grep -v '^ok' | tail -n 20
        fi
    done
}

run_unit build unit
run_unit build-asan asan
run_unit build-simde simde # the GEMM test with the AVX-512 kernels emulated (make simde)
for s in tests/integration/*.sh; do
    [ -f "$s" ] || continue
    PREFIX="[$(basename "$s" .sh)] "
    count < <(bash "$s" 2>&1)
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
