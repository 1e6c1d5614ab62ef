/* fuzz_gguf.c - libFuzzer entry: rmu_gguf_parse on arbitrary bytes must either fail with a
 * message or return metadata and tensors that lie inside the input, tensors aligned and in
 * file order. `make fuzz`, then build-fuzz/fuzz_gguf [corpus dir]. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"

static int inside(const uint8_t *p, uint64_t n, const uint8_t *data, size_t size) {
    return p >= data && p <= data + size && n <= (uint64_t)(data + size - p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rmu_gguf_file f;
    rmu_err e;
    e.msg[0] = 0;
    if (rmu_gguf_parse(data, size, "fuzz.gguf", &f, &e) != 0) {
        if (!e.msg[0] || !memchr(e.msg, 0, sizeof e.msg)) abort(); /* every failure explains itself */
        return 0;
    }
    if (f.data_off % f.alignment || f.data_off > size) abort();
    for (int i = 0; i < f.n_kv; i++) {
        const rmu_gguf_kv *kv = &f.kv[i];
        if (rmu_gguf_find(&f, kv->key) != kv) abort(); /* keys are unique */
        if (kv->type == RMU_GGUF_STRING && !inside(kv->data, kv->n, data, size)) abort();
        if (kv->type == RMU_GGUF_ARRAY && kv->arr_type == RMU_GGUF_STRING) {
            for (uint64_t k = 0; k < kv->n; k++)
                if (!inside(kv->str[k], kv->str_len[k], data, size)) abort();
        } else if (kv->type == RMU_GGUF_ARRAY) {
            if (!inside(kv->data, kv->n * rmu_gguf_vtype_size(kv->arr_type), data, size)) abort();
            for (uint64_t k = 0; k < kv->n && k < 64; k++) (void)rmu_gguf_arr_num(kv, k);
        }
    }
    uint64_t expect = 0;
    for (int i = 0; i < f.n_tensors; i++) {
        const rmu_gguf_tensor *t = &f.tensors[i];
        if (t->offset != expect || t->offset % f.alignment) abort();
        if (!inside(t->data, t->nbytes, data, size) || !rmu_ggml_type_name(t->type)) abort();
        if (rmu_gguf_tensor_find(&f, t->name) != t) abort();
        expect = (t->offset + t->nbytes + f.alignment - 1) / f.alignment * f.alignment;
    }
    rmu_gguf_close(&f);
    return 0;
}
