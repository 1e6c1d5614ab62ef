/* memest.h - how much memory a run on a model folder needs, from its config.json and
 * safetensors headers, and how much this machine has available. Prefix rmu_mem_.
 *
 * The estimate is what rmu allocates or touches, by part:
 *   weights  the safetensors files' bytes (mmapped: every page is read by a forward pass);
 *   kv       the fp32 KV cache of ctx positions (2 x layers x ctx x kv_heads x head_dim x 4);
 *   scratch  one forward chunk of batch rows (activations, logits, RoPE tables);
 *   train    per trainable parameter an fp32 master, gradient and two AdamW moments (16 B),
 *            plus the saved activations of seq x batch tokens for every layer.
 * It is an estimate (small buffers, the tokenizer and per-thread scratch are left out) meant
 * to catch a run that cannot fit before it drives the machine into swap. The headers are
 * read through rmu_st_open_dir: only their pages are touched, no tensor data. */
#ifndef RMU_MEMEST_H
#define RMU_MEMEST_H

#include <stdint.h>

#include "core/err.h"

typedef struct rmu_mem_opts {
    int ctx;   /* KV cache positions; 0 = no KV cache (training) */
    int batch; /* rows of one forward chunk (inference) or sequences per batch (training); 0 = 1 */
    int seq;   /* training sequence length; 0 = not a training run */
    /* trainable tensors: match(ud, name) != 0; NULL = none (inference) */
    int (*match)(void *ud, const char *name);
    void *ud;
} rmu_mem_opts;

typedef struct rmu_mem_need {
    uint64_t weights, kv, scratch, train, total; /* bytes */
    long long trainable;                         /* parameters matched */
} rmu_mem_need;

/* The estimate for a run on model folder dir. Errors name the file (config.json, a header). */
int rmu_mem_estimate(const char *dir, const rmu_mem_opts *o, rmu_mem_need *n, rmu_err *e);

/* MemAvailable of /proc/meminfo in bytes (what can be allocated without swapping); 0 when
 * unknown. The environment variable RMU_MEM_AVAILABLE (bytes) overrides it (tests). */
uint64_t rmu_mem_available(void);
/* MemAvailable from the text of a /proc/meminfo ("MemAvailable:  123 kB"); 0 when absent. */
uint64_t rmu_mem_parse_meminfo(const char *text);

#endif
