/* init.c - random-weight checkpoints for tests, benchmarks and the demo. */
#include "model/init.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/json.h"
#include "core/rng.h"
#include "io/hfdir.h"
#include "tokenizer/bpe_train.h"
#include "io/safetensors.h"
#include "tokenizer/tokenizer.h"

/* Values are generated in fixed blocks of the tensor's element index space; each block
 * has its own counter-based stream, which is what makes the output independent of
 * threads and of how the writer chunks a tensor. */
#define BLOCK 1024


uint64_t rmu_init_tensor_seed(uint64_t seed, const char *name) {
    uint64_t h = rmu_fnv1a(RMU_FNV_INIT, name, strlen(name));
    return rmu_mix64(rmu_mix64(seed) ^ h);
}

/* BLOCK standard normals of block b by Box-Muller on 24-bit uniforms (float precision is
 * all the output dtypes keep; the tails reach about 5.9 sigma). log and sincos are short
 * polynomials and sqrt is Newton's method, instead of libm calls (sqrtf too: its errno
 * branch blocks vectorization), so the loop vectorizes; with only + - * / (no FMA
 * contraction in this build) the values are the same on every path. */
static void normal_block(float *z, uint64_t tseed, uint64_t b) {
    uint32_t k1[BLOCK / 2], k2[BLOCK / 2];
    uint64_t s = rmu_mix64(tseed ^ rmu_mix64(b + 1));
    for (int p = 0; p < BLOCK / 2; p++) {
        uint64_t r = rmu_mix64(s + (uint64_t)(p + 1) * 0x9e3779b97f4a7c15ull);
        k1[p] = (uint32_t)(r >> 40) + 1; /* [1, 2^24]: u1 in (0, 1], log finite */
        k2[p] = (uint32_t)r & 0xffffff;
    }
    const float inv24 = 1.0f / 16777216.0f, ln2 = 0.693147180559945f, two_pi = 6.28318530717958648f;
#pragma omp simd
    for (int p = 0; p < BLOCK / 2; p++) {
        /* ln(u1) = e ln2 + ln(m), m in [sqrt(1/2), sqrt(2)), ln(m) = 2 atanh((m-1)/(m+1)) */
        float u1 = (float)k1[p] * inv24, m;
        uint32_t bits;
        memcpy(&bits, &u1, 4);
        int ex = (int)(bits >> 23) - 127;
        bits = (bits & 0x7fffffu) | 0x3f800000u;
        memcpy(&m, &bits, 4);
        int big = m > 1.41421356f;
        m *= 1.0f - 0.5f * (float)big; /* exact: halves or keeps m (no branch) */
        ex += big;
        float t = (m - 1.0f) / (m + 1.0f), t2 = t * t;
        float lnm = 2.0f * t * (1.0f + t2 * (1.0f / 3 + t2 * (1.0f / 5 + t2 * (1.0f / 7 + t2 * (1.0f / 9)))));
        float y = -2.0f * ((float)ex * ln2 + lnm), r; /* y in [0, 33.3] */
        memcpy(&bits, &y, 4);
        bits = 0x5f3759dfu - (bits >> 1); /* 1/sqrt(y) to ~3%, then 3 Newton steps */
        memcpy(&r, &bits, 4);
        r = r * (1.5f - 0.5f * y * r * r);
        r = r * (1.5f - 0.5f * y * r * r);
        r = r * (1.5f - 0.5f * y * r * r);
        float rad = y * r; /* y = 0 gives 0: r stays finite */
        /* angle 2 pi u2 = quarter turns q plus th in [-pi/4, pi/4] */
        float u4 = (float)k2[p] * (4.0f * inv24);
        int q = (int)(u4 + 0.5f);
        float th = (u4 - (float)q) * (two_pi / 4), h2 = th * th;
        float sn = th * (1.0f - h2 / 6 * (1.0f - h2 / 20 * (1.0f - h2 / 42 * (1.0f - h2 / 72))));
        float cs = 1.0f - h2 / 2 * (1.0f - h2 / 12 * (1.0f - h2 / 30 * (1.0f - h2 / 56)));
        /* rotate by q quarter turns with bit selects (if-conversion of float selects
         * fails here, and arithmetic blends would round) */
        uint32_t sb, cb, odd = 0u - (uint32_t)(q & 1);
        memcpy(&sb, &sn, 4);
        memcpy(&cb, &cs, 4);
        uint32_t sq = (cb & odd) | (sb & ~odd), cq = (sb & odd) | (cb & ~odd);
        sq ^= (uint32_t)(q & 2) << 30;
        cq ^= (uint32_t)((q + 1) & 2) << 30;
        float fs, fc;
        memcpy(&fs, &sq, 4);
        memcpy(&fc, &cq, 4);
        z[2 * p] = rad * fc;
        z[2 * p + 1] = rad * fs;
    }
}

/* Elements [off, off + n) as mean + std * z, converted to dt, into dst. */
static void gen_range(void *dst, rmu_dtype dt, size_t off, size_t n, uint64_t tseed, float mean, float std) {
    if (!n) return;
    size_t es = rmu_dtype_size(dt);
    long long b0 = (long long)(off / BLOCK), b1 = (long long)((off + n - 1) / BLOCK);
#pragma omp parallel for schedule(static)
    for (long long b = b0; b <= b1; b++) {
        float z[BLOCK];
        normal_block(z, tseed, (uint64_t)b);
        size_t lo = (size_t)b * BLOCK, hi = lo + BLOCK;
        if (lo < off) lo = off;
        if (hi > off + n) hi = off + n;
        float *v = z + (lo - (size_t)b * BLOCK);
        for (size_t i = 0; i < hi - lo; i++) v[i] = mean + std * v[i];
        rmu_from_f32((char *)dst + (lo - off) * es, v, dt, hi - lo);
    }
}

void rmu_init_normal(float *dst, size_t off, size_t n, uint64_t tseed, float mean, float std) {
    gen_range(dst, RMU_DT_F32, off, n, tseed, mean, std);
}

/* ---- the tensor list and the writer's fill callback */

enum { KIND_LINEAR, KIND_NORM };

typedef struct {
    rmu_hf_new *out;
    int *kind;
    uint64_t *seed;
    float std, norm_std;
    rmu_dtype dt;
} init_ctx;

/* Per-tensor context of the writer's fill callback. */
typedef struct {
    const init_ctx *c;
    int i;
} tensor_ctx;

static int fill(void *vctx, const char *name, size_t off, size_t count, void *buf, rmu_err *e) {
    const tensor_ctx *t = vctx;
    const init_ctx *c = t->c;
    int i = t->i;
    if (c->kind[i] == KIND_NORM && c->norm_std == 0) {
        float one = 1.0f;
        uint8_t pat[4];
        size_t es = rmu_dtype_size(c->dt);
        rmu_from_f32(pat, &one, c->dt, 1);
        for (size_t k = 0; k < count; k++) memcpy((char *)buf + k * es, pat, es);
        return 0;
    }
    if (c->kind[i] == KIND_NORM) gen_range(buf, c->dt, off, count, c->seed[i], 1.0f, c->norm_std);
    else gen_range(buf, c->dt, off, count, c->seed[i], 0.0f, c->std);
    return 0;
}

/* Copies the tokenizer files of src into dir: tokenizer.json is required. */
static int copy_tokenizer(const char *src, const char *dir, rmu_err *e) {
    static const char *const files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"};
    for (int i = 0; i < 3; i++) {
        char from[4096], to[8192];
        if (rmu_path_join(from, sizeof from, src, files[i], e) || rmu_path_join(to, sizeof to, dir, files[i], e))
            return -1;
        if (!rmu_file_exists(from)) {
            if (i == 0) return rmu_errf(e, "%s: no tokenizer.json there", src);
            continue;
        }
        if (rmu_file_copy(from, to, e)) return -1;
    }
    return 0;
}

static int write_generation_config(const char *dir, const rmu_config *c, rmu_err *e) {
    char path[4096];
    if (rmu_path_join(path, sizeof path, dir, "generation_config.json", e)) return -1;
    json_t *r = json_object();
    if (!r) return rmu_errf(e, "%s: out of memory", path);
    json_object_set_new(r, "_from_model_config", json_true());
    if (c->bos_id >= 0) json_object_set_new(r, "bos_token_id", json_integer(c->bos_id));
    if (c->eos_id >= 0) json_object_set_new(r, "eos_token_id", json_integer(c->eos_id));
    if (c->pad_id >= 0) json_object_set_new(r, "pad_token_id", json_integer(c->pad_id));
    int rc = rmu_json_write_file(path, r, JSON_INDENT(2) | JSON_SORT_KEYS, e);
    json_decref(r);
    return rc;
}

int rmu_init_n_tensors(const rmu_config *c) { return 2 + 9 * c->n_layers + (c->tie_word_embeddings ? 0 : 1); }

int rmu_init_model_opts(const char *dir, const rmu_config *cfg, const rmu_init_opts *o, rmu_err *e) {
    if (rmu_cfg_validate(cfg, dir, e)) return -1;
    if (!rmu_dtype_size(o->dtype)) return rmu_errf(e, "%s: invalid dtype", dir);
    const int L = cfg->n_layers, n = rmu_init_n_tensors(cfg);
    if (o->shards < 1 || o->shards > 99999 || o->shards > n)
        return rmu_errf(e, "%s: %d shards requested; must be in [1, %d] (the number of tensors)", dir, o->shards, n);
    const int64_t C = cfg->hidden_size, F = cfg->intermediate_size, V = cfg->vocab_size;
    const int64_t qd = (int64_t)cfg->n_heads * cfg->head_dim, kvd = (int64_t)cfg->n_kv_heads * cfg->head_dim;
    int rc = -1;
    init_ctx c = {0};
    c.std = o->std > 0 ? o->std : 0.02f;
    c.norm_std = o->jitter_norms ? 0.1f : 0.0f;
    c.dt = o->dtype;
    c.out = calloc(n, sizeof *c.out);
    c.kind = calloc(n, sizeof *c.kind);
    c.seed = calloc(n, sizeof *c.seed);
    char(*names)[96] = calloc(n, sizeof *names);
    char(*shards)[48] = calloc(o->shards, sizeof *shards);
    tensor_ctx *tctx = calloc(n, sizeof *tctx);
    rmu_hf *w = NULL;
    if (!c.out || !c.kind || !c.seed || !names || !shards || !tctx) {
        rmu_errf(e, "%s: out of memory", dir);
        goto out;
    }
    /* HF order: embeddings, then layer by layer, then the final norm and the head;
     * shards are consecutive runs of this list */
    int k = 0;
#define T(KIND, R, CC, ...)                                         \
    do {                                                            \
        snprintf(names[k], sizeof names[k], __VA_ARGS__);           \
        c.out[k].name = names[k];                                   \
        c.out[k].dtype = o->dtype;                                  \
        c.out[k].ndim = (R) ? 2 : 1;                                \
        c.out[k].shape[0] = (R) ? (R) : (CC);                       \
        c.out[k].shape[1] = (CC);                                   \
        c.kind[k] = (KIND);                                         \
        c.seed[k] = rmu_init_tensor_seed(o->seed, names[k]);        \
        k++;                                                        \
    } while (0)
    T(KIND_LINEAR, V, C, "model.embed_tokens.weight");
    for (int l = 0; l < L; l++) {
        T(KIND_NORM, 0, C, "model.layers.%d.input_layernorm.weight", l);
        T(KIND_LINEAR, qd, C, "model.layers.%d.self_attn.q_proj.weight", l);
        T(KIND_LINEAR, kvd, C, "model.layers.%d.self_attn.k_proj.weight", l);
        T(KIND_LINEAR, kvd, C, "model.layers.%d.self_attn.v_proj.weight", l);
        T(KIND_LINEAR, C, qd, "model.layers.%d.self_attn.o_proj.weight", l);
        T(KIND_NORM, 0, C, "model.layers.%d.post_attention_layernorm.weight", l);
        T(KIND_LINEAR, F, C, "model.layers.%d.mlp.gate_proj.weight", l);
        T(KIND_LINEAR, F, C, "model.layers.%d.mlp.up_proj.weight", l);
        T(KIND_LINEAR, C, F, "model.layers.%d.mlp.down_proj.weight", l);
    }
    T(KIND_NORM, 0, C, "model.norm.weight");
    if (!cfg->tie_word_embeddings) T(KIND_LINEAR, V, C, "lm_head.weight");
#undef T
    if (o->shards > 1) {
        /* balance bytes: a tensor goes to the shard holding its midpoint, but every
         * shard gets at least one tensor and none is skipped */
        double total = 0, cum = 0;
        size_t es = rmu_dtype_size(o->dtype);
        for (int i = 0; i < n; i++) total += (double)(c.out[i].ndim == 2 ? c.out[i].shape[0] * c.out[i].shape[1] : c.out[i].shape[0]) * es;
        for (int s = 0; s < o->shards; s++)
            snprintf(shards[s], sizeof shards[s], "model-%05d-of-%05d.safetensors", s + 1, o->shards);
        int prev = -1;
        for (int i = 0; i < n; i++) {
            double nb = (double)(c.out[i].ndim == 2 ? c.out[i].shape[0] * c.out[i].shape[1] : c.out[i].shape[0]) * es;
            int s = (int)((cum + nb / 2) * o->shards / total);
            cum += nb;
            if (s >= o->shards) s = o->shards - 1;
            if (s < prev) s = prev;
            if (s > prev + 1) s = prev + 1;
            if (s < o->shards - (n - i)) s = o->shards - (n - i);
            c.out[i].shard = shards[s];
            prev = s;
        }
    }
    /* the whole folder under a staging name, renamed into place at the end */
    rmu_hf_opts ho = {.flags = RMU_HF_REPLACE};
    if (!(w = rmu_hf_open(dir, &ho, e))) goto out;
    const char *sd = rmu_hf_dir(w);
    if (o->tokenizer_dir ? copy_tokenizer(o->tokenizer_dir, sd, e)
        : o->synthetic_tokenizer ? rmu_bpe_write_synthetic(sd, cfg->vocab_size, o->corpus, o->corpus_len, e) : 0)
        goto out;
    for (int i = 0; i < n; i++) {
        tctx[i] = (tensor_ctx){&c, i};
        c.out[i].fill = fill;
        c.out[i].ctx = &tctx[i];
        if (rmu_hf_add(w, &c.out[i], e)) goto out;
    }
    rmu_config saved = *cfg;
    saved.torch_dtype = o->dtype;
    if (rmu_cfg_save(&saved, sd, e) || write_generation_config(sd, cfg, e)) goto out;
    rc = rmu_hf_commit(w, e);
    w = NULL;
out:
    rmu_hf_abort(w);
    free(tctx);
    free(shards);
    free(names);
    free(c.seed);
    free(c.kind);
    free(c.out);
    return rc;
}

int rmu_init_model(const char *dir, const rmu_config *cfg, rmu_dtype dtype, uint64_t seed, int shards, rmu_err *e) {
    rmu_init_opts o = {.dtype = dtype, .seed = seed, .shards = shards};
    return rmu_init_model_opts(dir, cfg, &o, e);
}
