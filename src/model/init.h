/* init.h - random-weight checkpoints of a given shape (`rmu init`), in the Hugging Face
 * layout: config.json, generation_config.json, safetensors (sharded on request) and a
 * tokenizer.
 * Weights are a pure function of (seed, tensor name, element index): the same for any
 * thread count, shard split or chunking. Prefix rmu_init_. */
#ifndef RMU_INIT_H
#define RMU_INIT_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "model/config.h"

typedef struct rmu_init_opts {
    rmu_dtype dtype;  /* of every tensor */
    uint64_t seed;
    int shards;       /* 1: model.safetensors; N > 1: model-0000i-of-0000N.safetensors + index */
    int jitter_norms; /* RMSNorm weights 1 + N(0, 0.1) instead of exactly 1, so tests see them */
    float std;        /* of linear and embedding weights; 0 means 0.02 (HF initializer_range) */
    /* The tokenizer written into the folder (written first: its checks fail in milliseconds,
     * the weights can take minutes). Neither: no tokenizer files. */
    const char *tokenizer_dir;   /* copy tokenizer.json (required), tokenizer_config.json and
                                  * special_tokens_map.json from this folder */
    int synthetic_tokenizer;     /* else 1: rmu_bpe_write_synthetic with the config's vocab_size,
                                  * BPE merges learned on corpus[corpus_len] when given */
    const char *corpus;
    size_t corpus_len;
} rmu_init_opts;

/* Writes the folder DIR with random weights: linear and embedding ~ N(0, 0.02), norms 1,
 * config.json (torch_dtype = dtype), generation_config.json and the tokenizer of the opts.
 * Tensors are generated and streamed one chunk at a time, so a 7B model never sits in
 * memory. The folder is built under a staging name and renamed into place
 * (src/io/hfdir.h): DIR may be absent, an empty folder or a model folder (one with
 * config.json), which is replaced as a whole; anything else is refused. */
int rmu_init_model(const char *dir, const rmu_config *cfg, rmu_dtype dtype, uint64_t seed, int shards, rmu_err *e);
int rmu_init_model_opts(const char *dir, const rmu_config *cfg, const rmu_init_opts *o, rmu_err *e);

/* Number of tensors the checkpoint of c has (the upper bound for shards). */
int rmu_init_n_tensors(const rmu_config *c);

/* Seed of one tensor: mixes the model seed with the tensor's name. */
uint64_t rmu_init_tensor_seed(uint64_t seed, const char *name);
/* Elements [off, off + n) of the tensor with seed tseed: mean + std * N(0, 1), float32.
 * Any split of a tensor into ranges yields the same values. Uses OpenMP. */
void rmu_init_normal(float *dst, size_t off, size_t n, uint64_t tseed, float mean, float std);

#endif
