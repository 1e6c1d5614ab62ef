/* fuzz_jinja.c - libFuzzer entry for the Jinja-subset engine. The first byte picks the
 * options (bit 0 trim_blocks, bit 1 lstrip_blocks, bit 2 keep_trailing_newline); the rest
 * is the template, parsed and rendered twice with a fixed chat (messages, special tokens,
 * add_generation_prompt). Every failure must explain itself, both renders must give the
 * same bytes, and the small step / memory limits keep every input fast: a template that
 * loops for ever or grows without bound has to stop with an error (far below the engine's
 * defaults; at 200000 steps / 16 MiB a few looping inputs took 1-2 s each under ASan and the
 * campaign ran at 130 executions/s; the code that enforces the limits is the same).
 * `make fuzz`, then build-fuzz/fuzz_jinja [corpus dir]. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja.h"

#define STEPS 20000
#define BYTES ((size_t)1 << 20)

static json_t *chat_vars(void) {
    return json_pack("{s:[{s:s, s:s}, {s:s, s:s}, {s:s, s:s}, {s:s, s:n}], s:b, s:s, s:s, s:s, s:n, s:n}", "messages",
                     "role", "system", "content", " Be brief. ", "role", "user", "content",
                     "Hi! {{ not a tag }} caf\xc3\xa9\n\ttab", "role", "assistant", "content", "Hello</s>", "role",
                     "user", "content", "add_generation_prompt", 1, "bos_token", "<s>", "eos_token", "</s>",
                     "unk_token", "<unk>", "tools", "documents");
}

/* an error message must be present and terminated */
static void check_msg(const rmu_err *e) {
    if (!e->msg[0] || !memchr(e->msg, 0, sizeof e->msg)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    rmu_jinja_opts o = {.name = "fuzz", .trim_blocks = data[0] & 1, .lstrip_blocks = (data[0] >> 1) & 1,
                        .keep_trailing_newline = (data[0] >> 2) & 1, .max_steps = STEPS, .max_bytes = BYTES};
    rmu_err e;
    e.msg[0] = 0;
    rmu_jinja *t = rmu_jinja_parse((const char *)data + 1, size - 1, &o, &e);
    if (!t) {
        check_msg(&e);
        return 0;
    }
    json_t *vars = chat_vars();
    if (!vars) abort();
    size_t n1 = 0, n2 = 0;
    e.msg[0] = 0;
    char *a = rmu_jinja_render(t, vars, &n1, &e);
    if (!a) check_msg(&e);
    char *b = rmu_jinja_render(t, vars, &n2, &e);
    if (!a != !b) abort(); /* the same input fails or succeeds both times */
    if (a && (n1 != n2 || n1 > BYTES || a[n1] || memcmp(a, b, n1))) abort();
    free(a);
    free(b);
    json_decref(vars);
    rmu_jinja_free(t);
    return 0;
}
