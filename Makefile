# rmu - GNU make build. `make` builds build/rmu and build/librmu.a; `make test` installs
# what is missing, builds, and runs every test; `make demo` runs the embedded demo.
CC      ?= gcc
PREFIX  ?= /usr/local
BUILD   ?= build
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
WARN     = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-format-truncation
# -ffp-contract=off keeps the portable path bit-stable across compilers; SIMD paths use
# explicit FMA intrinsics where they want it.
BASEFLAGS = -std=c11 -D_GNU_SOURCE -fopenmp -ffp-contract=off $(WARN) -Isrc -Iinclude -I$(BUILD)/gen -MMD -MP
LDLIBS   = -ljansson -lmicrohttpd -lm -fopenmp -lpthread
SIMD_AVX512 = -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mavx512vnni -mfma -mf16c -mavx2
SIMD_AVX2   = -mavx2 -mfma -mf16c

LIB_SRC  = $(sort $(wildcard src/core/*.c src/io/*.c src/tokenizer/*.c src/kernels/*.c \
                           src/model/*.c src/train/*.c src/eval/*.c src/demo/*.c src/serve/*.c))
CLI_SRC  = $(sort $(wildcard src/cli/*.c))
TEST_SRC = $(sort $(wildcard tests/unit/test_*.c))

LIB_OBJ  = $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  = $(CLI_SRC:%.c=$(BUILD)/%.o)
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

$(BUILD)/rmu: $(CLI_OBJ) $(BUILD)/librmu.a
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/librmu.a $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/librmu.a
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) -Itests/unit -o $@ $< $(BUILD)/librmu.a $(LDLIBS) -lcmocka

unit: $(TEST_BIN)

# Sanitizer build of the library and unit tests in its own folder.
asan:
	$(MAKE) BUILD=build-asan OPT=-O1 CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	        LDLIBS="$(LDLIBS) -fsanitize=address,undefined" build-asan/rmu unit BUILD=build-asan

# libFuzzer targets: each links only the parser it exercises (clang, ASan + UBSan).
FUZZ_CORE = $(wildcard src/core/*.c)
FUZZ_FLAGS = -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -Iinclude
fuzz: build-fuzz/fuzz_safetensors build-fuzz/fuzz_tokenizer build-fuzz/fuzz_request
build-fuzz/fuzz_safetensors: tests/fuzz/fuzz_safetensors.c src/io/safetensors.c $(FUZZ_CORE)
	@mkdir -p build-fuzz
	clang $(FUZZ_FLAGS) -o $@ $^ -ljansson -lm
build-fuzz/fuzz_tokenizer: tests/fuzz/fuzz_tokenizer.c src/tokenizer/tokenizer.c $(FUZZ_CORE)
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
	@tests/run.sh

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
	cd src && for h in $$(find . -name '*.h' ! -name '*_impl.h'); do \
	    install -D -m 644 $$h $(DESTDIR)$(PREFIX)/include/rmu/$$h; done
	sed -e 's|@PREFIX@|$(PREFIX)|' -e "s|@VERSION@|$$(sed -n 's/.*RMU_VERSION \"\(.*\)\"/\1/p' src/core/version.h)|" rmu.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/rmu.pc

clean:
	rm -rf build build-asan build-fuzz

.PHONY: all unit asan fuzz deps test demo install clean
-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
