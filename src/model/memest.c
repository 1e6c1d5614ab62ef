/* memest.c - memory a run needs vs memory available (see memest.h). */
#include "model/memest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "model/config.h"

int rmu_mem_estimate(const char *dir, const rmu_mem_opts *o, rmu_mem_need *n, rmu_err *e) {
    memset(n, 0, sizeof *n);
    rmu_config c;
    if (rmu_cfg_load(&c, dir, e)) return -1;
    rmu_st_set st;
    if (rmu_st_open_dir(&st, dir, e)) return -1;
    for (int i = 0; i < st.nfiles; i++) n->weights += st.files[i].size;
    for (int i = 0; o->match && i < st.ntensors; i++) {
        const rmu_st_tensor *t = &st.tensors[i];
        if (!o->match(o->ud, t->name)) continue;
        long long k = 1;
        for (int d = 0; d < t->ndim; d++) k *= t->shape[d];
        n->trainable += k;
    }
    rmu_st_close(&st);
    uint64_t C = c.hidden_size, F = c.intermediate_size, hd = c.head_dim, V = c.vocab_size;
    uint64_t qd = (uint64_t)c.n_heads * hd, kvd = (uint64_t)c.n_kv_heads * hd, L = c.n_layers;
    uint64_t B = o->batch > 0 ? (uint64_t)o->batch : 1, ctx = o->ctx > 0 ? (uint64_t)o->ctx : 0;
    n->kv = 2 * L * ctx * kvd * 4;
    if (o->seq > 0) {
        /* the trainer (src/train/trainer.c): saved activations per layer, one layer's scratch,
         * the LM head in chunks of at most 2^24 floats */
        uint64_t N = B * (uint64_t)o->seq;
        uint64_t act = N * (2 * C + 2 + 2 * qd + 2 * kvd + c.n_heads + 2 * F);
        uint64_t scr = N * (5 * C + 2 * qd + 2 * kvd + c.n_heads + 3 * F + 3) + (N * V < (1u << 24) ? N * V : 1u << 24);
        n->scratch = 4 * scr + 4 * (uint64_t)o->seq * hd;
        n->train = 16 * (uint64_t)n->trainable + 4 * act * L;
    } else {
        /* rmu_state_init (src/model/model.c): chunk activations, logits of the chunk, RoPE */
        n->scratch = 4 * (B * (3 * C + 2 * qd + 2 * kvd + 2 * F + V) + ctx * hd);
    }
    n->total = n->weights + n->kv + n->scratch + n->train;
    return 0;
}

uint64_t rmu_mem_parse_meminfo(const char *text) {
    const char *p = text ? strstr(text, "MemAvailable:") : NULL;
    if (!p) return 0;
    unsigned long long kb;
    return sscanf(p + 13, "%llu", &kb) == 1 ? (uint64_t)kb * 1024 : 0;
}

uint64_t rmu_mem_available(void) {
    const char *env = getenv("RMU_MEM_AVAILABLE");
    if (env && *env) return strtoull(env, NULL, 10);
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char buf[8192];
    size_t k = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[k] = 0;
    return rmu_mem_parse_meminfo(buf);
}
