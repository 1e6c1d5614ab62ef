/* fuzz_config.c - libFuzzer entry: rmu_cfg_parse on arbitrary config.json text must either
 * fail with a message or give a config that passes rmu_cfg_validate (what every loader
 * relies on: positive sizes, heads divisible by kv heads, ids inside the vocab) and whose
 * parameter count is computable (UBSan catches an overflow). `make fuzz`, then
 * build-fuzz/fuzz_config [corpus dir]. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    rmu_config c;
    rmu_err e;
    e.msg[0] = 0;
    if (rmu_cfg_parse(&c, text, "config.json", &e) == 0) {
        if (rmu_cfg_validate(&c, "config.json", &e) != 0) abort();
        if (c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads || c.head_dim <= 0 || c.vocab_size <= 0) abort();
        if (c.bos_id >= c.vocab_size || c.eos_id >= c.vocab_size || c.pad_id >= c.vocab_size) abort();
        if (rmu_cfg_n_params(&c) <= 0) abort();
    } else if (!e.msg[0] || !memchr(e.msg, 0, sizeof e.msg)) {
        abort(); /* every failure explains itself */
    }
    free(text);
    return 0;
}
