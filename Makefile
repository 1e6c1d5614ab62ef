# rmu - GNU make build. `make` builds build/rmu and build/librmu.a; `make test` installs
# what is missing, builds, and runs every test; `make demo` runs the embedded demo.
# `make MPI=1` builds build-mpi/rmu with Open MPI (mpicc, -DRMU_MPI) for `mpirun -n N rmu ...`,
# in its own folder so objects with and without MPI never mix; the default build has no MPI.
CC      ?= gcc
ifeq ($(MPI),1)
CC      := mpicc
MPIFLAGS = -DRMU_MPI
BUILD   ?= build-mpi
endif
PREFIX  ?= /usr/local
BUILD   ?= build
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
WARN     = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-format-truncation
# -ffp-contract=off keeps the portable path bit-stable across compilers; SIMD paths use
# explicit FMA intrinsics where they want it.
BASEFLAGS = -std=c11 -D_GNU_SOURCE $(MPIFLAGS) -fopenmp -ffp-contract=off $(WARN) -Isrc -Iinclude -I$(BUILD)/gen -MMD -MP
LDLIBS   = -ljansson -lcurl -lmicrohttpd -lm -fopenmp -lpthread
SIMD_AVX512 = -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mavx512vnni -mfma -mf16c -mavx2
SIMD_AVX2   = -mavx2 -mfma -mf16c

LIB_SRC  = $(sort $(wildcard src/core/*.c src/io/*.c src/tokenizer/*.c src/kernels/*.c \
                           src/model/*.c src/train/*.c src/eval/*.c src/attack/*.c src/serve/*.c))
CLI_SRC  = $(sort $(wildcard src/cli/*.c))
# Applications on top of the library: linked into the rmu binary only, never into librmu.a.
APP_SRC  = $(sort $(wildcard src/app/demo/*.c))
TEST_SRC = $(sort $(wildcard tests/unit/test_*.c))

LIB_OBJ  = $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  = $(CLI_SRC:%.c=$(BUILD)/%.o)
APP_OBJ  = $(APP_SRC:%.c=$(BUILD)/%.o)
TEST_BIN = $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)

all: $(BUILD)/rmu $(BUILD)/librmu.a

$(BUILD)/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) $(SIMD_AVX512) -c $< -o $@

$(BUILD)/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) $(SIMD_AVX2) -c $< -o $@

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) -c $< -o $@

# The chat page of `rmu serve` is compiled in: src/serve/page.html as a C byte array.
$(BUILD)/gen/serve/page_html.h: src/serve/page.html
	@mkdir -p $(dir $@)
	@{ echo '/* generated from src/serve/page.html by the Makefile */'; \
	   echo 'static const unsigned char rmu_page_html[] = {'; \
	   od -An -v -tx1 $< | sed 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	   echo '};'; echo 'static const unsigned int rmu_page_html_len = sizeof rmu_page_html;'; } > $@.tmp && mv $@.tmp $@
$(BUILD)/src/serve/http.o: $(BUILD)/gen/serve/page_html.h

$(BUILD)/librmu.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/rmu: $(CLI_OBJ) $(APP_OBJ) $(BUILD)/librmu.a
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(APP_OBJ) $(BUILD)/librmu.a $(LDLIBS)

# A unit test links librmu.a plus, for the demo's own tests, the demo objects;
# test_gemm_oom makes the library's aligned_alloc fail on demand (link-time wrap, no hook).
TEST_APP_test_demo_kb = $(APP_OBJ)
WRAP_test_gemm_oom = -Wl,--wrap=aligned_alloc
$(BUILD)/tests/test_demo_kb: $(APP_OBJ)
$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/librmu.a
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) -Itests/unit -o $@ $< $(TEST_APP_$*) $(BUILD)/librmu.a $(LDLIBS) -lcmocka $(WRAP_$*)

unit: $(TEST_BIN)

# Benchmark programs (bench/README.md): not part of `make test`. bench-dnnl needs Debian's
# libdnnl-dev (oneDNN, for side-by-side figures only; rmu never links it).
BENCH_BIN = $(patsubst bench/%.c,$(BUILD)/bench/%,$(filter-out bench/dnnl_bench.c,$(wildcard bench/*.c)))
bench: $(BENCH_BIN)
bench-dnnl: $(BUILD)/bench/dnnl_bench
$(BUILD)/bench/dnnl_bench: bench/dnnl_bench.c $(BUILD)/librmu.a
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ $< $(BUILD)/librmu.a $(LDLIBS) -ldnnl
$(BUILD)/bench/%: bench/%.c $(BUILD)/librmu.a
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ $< $(BUILD)/librmu.a $(LDLIBS)

# Sanitizer build of the library and unit tests in its own folder.
asan:
	$(MAKE) BUILD=build-asan OPT=-O1 CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	        LDLIBS="$(LDLIBS) -fsanitize=address,undefined" build-asan/rmu unit BUILD=build-asan

# The AVX-512 kernels emulated with SIMDe (Debian libsimde-dev) on top of AVX2: the GEMM unit
# tests (test_gemm, test_fp8_gemm) built against them run every AVX-512 path on CPUs without
# AVX-512 (tests/run.sh).
SIMDE_DIR = build-simde
SIMDE_OBJ = $(patsubst %.c,$(SIMDE_DIR)/%.o,$(wildcard src/kernels/*.c) src/core/dtype.c src/core/err.c)
simde: $(SIMDE_DIR)/tests/test_gemm $(SIMDE_DIR)/tests/test_fp8_gemm
$(SIMDE_DIR)/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) $(SIMD_AVX2) -DRMU_GEMM_EMULATED -DRMU_GEMM_SIMDE -c $< -o $@
$(SIMDE_DIR)/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) $(SIMD_AVX2) -DRMU_GEMM_EMULATED -c $< -o $@
$(SIMDE_DIR)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) -DRMU_GEMM_EMULATED -c $< -o $@
$(SIMDE_DIR)/tests/test_%: tests/unit/test_%.c $(SIMDE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) -Itests/unit -o $@ $^ -lm -fopenmp -lpthread -lcmocka

# libFuzzer targets: each links only the parser it exercises (clang, ASan + UBSan).
FUZZ_CORE = $(wildcard src/core/*.c)
FUZZ_FLAGS = -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -Iinclude
fuzz: build-fuzz/fuzz_safetensors build-fuzz/fuzz_tokenizer build-fuzz/fuzz_jinja build-fuzz/fuzz_gguf \
      build-fuzz/fuzz_config build-fuzz/fuzz_jsonl build-fuzz/fuzz_csv build-fuzz/fuzz_request
build-fuzz/fuzz_safetensors: tests/fuzz/fuzz_safetensors.c src/io/safetensors.c $(FUZZ_CORE)
	@mkdir -p build-fuzz
	clang $(FUZZ_FLAGS) -o $@ $^ -ljansson -lm
build-fuzz/fuzz_gguf: tests/fuzz/fuzz_gguf.c src/io/gguf.c src/io/gguf.h $(FUZZ_CORE)
	@mkdir -p build-fuzz
	clang $(FUZZ_FLAGS) -o $@ $(filter %.c,$^) -ljansson -lm
build-fuzz/fuzz_tokenizer: tests/fuzz/fuzz_tokenizer.c src/tokenizer/tokenizer.c src/tokenizer/tokenizer_load.c \
                           src/tokenizer/tokenizer_impl.h $(FUZZ_CORE)
	@mkdir -p build-fuzz
	clang $(FUZZ_FLAGS) -o $@ $(filter %.c,$^) -ljansson -lm
build-fuzz/fuzz_jinja: tests/fuzz/fuzz_jinja.c src/tokenizer/jinja.c src/tokenizer/jinja_parse.c \
                       src/tokenizer/jinja_impl.h src/tokenizer/jinja.h $(FUZZ_CORE)
	@mkdir -p build-fuzz
	clang $(FUZZ_FLAGS) -o $@ $(filter %.c,$^) -ljansson -lm

build-fuzz/fuzz_config: tests/fuzz/fuzz_config.c src/model/config.c $(FUZZ_CORE)
	@mkdir -p build-fuzz
	clang $(FUZZ_FLAGS) -o $@ $^ -ljansson -lm
# JSON rows: the corpus reader (data.c, with the tokenizer it links), MCQ rows, JSON Lines
build-fuzz/fuzz_jsonl: tests/fuzz/fuzz_jsonl.c src/train/data.c src/eval/mcq.c src/tokenizer/tokenizer.c \
                       src/tokenizer/tokenizer_load.c $(FUZZ_CORE)
	@mkdir -p build-fuzz
	clang $(FUZZ_FLAGS) -o $@ $^ -ljansson -lm
build-fuzz/fuzz_csv: tests/fuzz/fuzz_csv.c src/eval/mcq.c $(FUZZ_CORE)
	@mkdir -p build-fuzz
	clang $(FUZZ_FLAGS) -o $@ $^ -ljansson -lm
# OpenAI request bodies -> validated requests -> token ids (api.c with the tokenizer and
# chat templates it renders).
build-fuzz/fuzz_request: tests/fuzz/fuzz_request.c src/serve/api.c $(wildcard src/tokenizer/*.c) $(FUZZ_CORE)
	@mkdir -p build-fuzz
	clang $(FUZZ_FLAGS) -o $@ $^ -ljansson -lm

deps:
	@scripts/install-deps

# Dependencies are installed before anything compiles (also under make -j).
test:
	@scripts/install-deps
	@$(MAKE) --no-print-directory all unit
	@$(MAKE) --no-print-directory asan
	@$(MAKE) --no-print-directory simde
	@tests/run.sh

# The long reliability campaign (hours): 10 million fuzz executions per target, SIGKILL and
# fault loops many times over (tests/soak.sh; SOAK_RUNS, SOAK_SECONDS, SOAK_PARTS).
soak:
	@$(MAKE) --no-print-directory all
	@tests/soak.sh

# The demo needs only the build dependencies (no PyTorch, no npm oracles).
demo:
	@scripts/install-deps --build
	@$(MAKE) --no-print-directory all
	@OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-passive} $(BUILD)/rmu demo

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(BUILD)/rmu $(DESTDIR)$(PREFIX)/bin/rmu
	install -m 644 $(BUILD)/librmu.a $(DESTDIR)$(PREFIX)/lib/librmu.a
	install -m 644 include/rmu.h $(DESTDIR)$(PREFIX)/include/rmu.h
	cd src && for h in $$(find . -name '*.h' ! -name '*_impl.h' ! -path './app/*'); do \
	    install -D -m 644 $$h $(DESTDIR)$(PREFIX)/include/rmu/$$h; done
	sed -e 's|@PREFIX@|$(PREFIX)|' -e "s|@VERSION@|$$(sed -n 's/.*RMU_VERSION \"\(.*\)\"/\1/p' src/core/version.h)|" rmu.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/rmu.pc

clean:
	rm -rf build build-asan build-fuzz build-simde build-mpi

.PHONY: all unit bench bench-dnnl asan simde fuzz deps test soak demo install clean
-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(APP_OBJ:.o=.d) $(SIMDE_OBJ:.o=.d)
