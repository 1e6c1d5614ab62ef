#include "model.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util.h"
#include "model/attention.h"
#include "model/layers.h"

/* ---- loading: map HF tensor names onto the weight structs and check every shape. */

typedef struct {
    char name[128];
    rmu_weight *w;
    int64_t rows, cols; /* expected; rows = 0 for 1-D */
} slot;

static int n_slots(const rmu_config *c) { return 3 + 9 * c->n_layers; }

/* Fills the table of expected tensors. lm_head is listed even when tied (then optional). */
static void fill_slots(rmu_model *m, slot *s) {
    const rmu_config *c = &m->cfg;
    int64_t C = c->hidden_size, F = c->intermediate_size, hd = c->head_dim;
    int64_t qd = (int64_t)c->n_heads * hd, kvd = (int64_t)c->n_kv_heads * hd;
    int k = 0;
#define SLOT(W, R, CC, ...)                                        \
    do {                                                           \
        snprintf(s[k].name, sizeof s[k].name, __VA_ARGS__);        \
        s[k].w = (W);                                              \
        s[k].rows = (R);                                           \
        s[k].cols = (CC);                                          \
        k++;                                                       \
    } while (0)
    SLOT(&m->embed, c->vocab_size, C, "model.embed_tokens.weight");
    SLOT(&m->final_norm, 0, C, "model.norm.weight");
    SLOT(&m->lm_head, c->vocab_size, C, "lm_head.weight");
    for (int l = 0; l < c->n_layers; l++) {
        rmu_layer *L = &m->layers[l];
        SLOT(&L->attn_norm, 0, C, "model.layers.%d.input_layernorm.weight", l);
        SLOT(&L->wq, qd, C, "model.layers.%d.self_attn.q_proj.weight", l);
        SLOT(&L->wk, kvd, C, "model.layers.%d.self_attn.k_proj.weight", l);
        SLOT(&L->wv, kvd, C, "model.layers.%d.self_attn.v_proj.weight", l);
        SLOT(&L->wo, C, qd, "model.layers.%d.self_attn.o_proj.weight", l);
        SLOT(&L->mlp_norm, 0, C, "model.layers.%d.post_attention_layernorm.weight", l);
        SLOT(&L->w_gate, F, C, "model.layers.%d.mlp.gate_proj.weight", l);
        SLOT(&L->w_up, F, C, "model.layers.%d.mlp.up_proj.weight", l);
        SLOT(&L->w_down, C, F, "model.layers.%d.mlp.down_proj.weight", l);
    }
#undef SLOT
}

/* "[a, b]" of a tensor's shape into buf. */
static const char *shape_str(const rmu_st_tensor *t, char *buf, size_t cap) {
    size_t l = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->ndim && l < cap; d++)
        l += (size_t)snprintf(buf + l, cap - l, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (l < cap) snprintf(buf + l, cap - l, "]");
    return buf;
}

/* The scales of FP8 weight slot s (tensor NAME.weight -> NAME.weight_scale) into
 * m->scales + *off as fp32, checked against the configured strategy; NAME.input_scale, if
 * any, is marked used (ignored: weight-only). */
static int bind_fp8(rmu_model *m, const slot *s, char *used, size_t *off, rmu_err *e) {
    const rmu_config *c = &m->cfg;
    if (c->quant == RMU_QUANT_NONE)
        return rmu_errf(e, "%s: tensor %s is FP8 (F8_E4M3) but config.json has no FP8 quantization_config", m->dir,
                        s->name);
    if (!s->rows || s->w == &m->embed)
        return rmu_errf(e, "%s: tensor %s is FP8 (F8_E4M3); only the decoder layers' linear weights and lm_head may "
                        "be", m->dir, s->name);
    char sname[160], iname[160], shp[128];
    size_t stem = strlen(s->name) - strlen("weight"); /* every slot name ends in "weight" */
    snprintf(sname, sizeof sname, "%s_scale", s->name);
    snprintf(iname, sizeof iname, "%.*sinput_scale", (int)stem, s->name);
    const rmu_st_tensor *t = rmu_st_get(&m->st, sname), *in = rmu_st_get(&m->st, iname);
    if (in) used[in - m->st.tensors] = 1;
    if (!t) return rmu_errf(e, "%s: missing tensor %s (the scales of FP8 weight %s)", m->dir, sname, s->name);
    used[t - m->st.tensors] = 1;
    if (t->dtype != RMU_DT_F32 && t->dtype != RMU_DT_F16 && t->dtype != RMU_DT_BF16)
        return rmu_errf(e, "%s: tensor %s has dtype %s; FP8 scales must be F32, F16 or BF16", m->dir, sname,
                        rmu_dtype_name(t->dtype));
    int chan = c->quant == RMU_QUANT_FP8_CHANNEL;
    int ok = chan ? ((t->ndim == 2 && t->shape[0] == s->rows && t->shape[1] == 1) ||
                     (t->ndim == 1 && t->shape[0] == s->rows))
                  : (t->ndim == 0 || (t->ndim == 1 && t->shape[0] == 1));
    if (!ok)
        return rmu_errf(e, "%s: tensor %s has shape %s; quantization_config (%s scales) implies [%lld, 1]%s", m->dir,
                        sname, shape_str(t, shp, sizeof shp), chan ? "per-channel" : "per-tensor",
                        chan ? (long long)s->rows : 1LL, chan ? "" : " or []");
    int64_t n = chan ? s->rows : 1;
    float *dst = m->scales + *off;
    rmu_to_f32(dst, t->data, t->dtype, (size_t)n);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(dst[i]))
            return rmu_errf(e, "%s: %s[%lld] is %g; FP8 scales must be finite", m->dir, sname, (long long)i, dst[i]);
    s->w->scale = dst;
    s->w->nscale = n;
    *off += (size_t)n;
    return 0;
}

/* Why tensor t is not part of the model, for the error message. */
static void unexpected(const rmu_model *m, const rmu_st_tensor *t, rmu_err *e) {
    const char *sfx[2] = {"weight_scale", "input_scale"};
    for (int k = 0; k < 2; k++) {
        size_t n = strlen(t->name), ls = strlen(sfx[k]);
        if (n <= ls || strcmp(t->name + n - ls, sfx[k])) continue;
        char wname[160];
        snprintf(wname, sizeof wname, "%.*sweight", (int)(n - ls), t->name);
        const rmu_st_tensor *w = rmu_st_get(&m->st, wname);
        if (w && w->dtype != RMU_DT_F8_E4M3) {
            rmu_errf(e, "%s: unexpected tensor %s: %s is %s, not FP8 (F8_E4M3)", m->dir, t->name, wname,
                     rmu_dtype_name(w->dtype));
            return;
        }
    }
    rmu_errf(e, "%s: unexpected tensor %s (not part of a %s model with %d layers)", m->dir, t->name,
             m->cfg.model_type, m->cfg.n_layers);
}

static int bind_slots(rmu_model *m, rmu_err *e) {
    int ns = n_slots(&m->cfg);
    slot *s = calloc(ns, sizeof *s);
    char *used = calloc(m->st.ntensors ? m->st.ntensors : 1, 1);
    int rc = -1;
    size_t soff = 0;
    if (!s || !used) { rmu_errf(e, "%s: out of memory", m->dir); goto out; }
    fill_slots(m, s);
    for (int i = 0; i < m->st.ntensors && !m->scales; i++) {
        if (m->st.tensors[i].dtype != RMU_DT_F8_E4M3) continue;
        size_t n = 0; /* room for a scale per row of every matrix */
        for (int k = 0; k < ns; k++) n += (size_t)s[k].rows;
        if (!(m->scales = malloc(sizeof(float) * (n ? n : 1)))) { rmu_errf(e, "%s: out of memory", m->dir); goto out; }
    }
    for (int i = 0; i < ns; i++) {
        const rmu_st_tensor *t = rmu_st_get(&m->st, s[i].name);
        int is_head = s[i].w == &m->lm_head;
        if (!t) {
            if (is_head && m->cfg.tie_word_embeddings) continue;
            rmu_errf(e, "%s: missing tensor %s%s", m->dir, s[i].name,
                     is_head ? " (config.json has tie_word_embeddings false)" : "");
            goto out;
        }
        used[t - m->st.tensors] = 1;
        if (is_head && m->cfg.tie_word_embeddings) continue; /* HF ignores it when tied */
        int ok = s[i].rows ? (t->ndim == 2 && t->shape[0] == s[i].rows && t->shape[1] == s[i].cols)
                           : (t->ndim == 1 && t->shape[0] == s[i].cols);
        if (!ok) {
            char got[128], exp[64];
            if (s[i].rows) snprintf(exp, sizeof exp, "[%lld, %lld]", (long long)s[i].rows, (long long)s[i].cols);
            else snprintf(exp, sizeof exp, "[%lld]", (long long)s[i].cols);
            rmu_errf(e, "%s: tensor %s has shape %s, config.json implies %s", m->dir, s[i].name,
                     shape_str(t, got, sizeof got), exp);
            goto out;
        }
        if (t->dtype == RMU_DT_F8_E4M3 && bind_fp8(m, &s[i], used, &soff, e)) goto out;
        s[i].w->data = t->data;
        s[i].w->dtype = t->dtype;
        s[i].w->rows = s[i].rows ? s[i].rows : 1;
        s[i].w->cols = s[i].cols;
    }
    for (int i = 0; i < m->st.ntensors; i++) {
        /* rotary inv_freq buffers appear in some older checkpoints: harmless */
        if (!used[i] && !strstr(m->st.tensors[i].name, "rotary_emb.inv_freq")) {
            unexpected(m, &m->st.tensors[i], e);
            goto out;
        }
    }
    if (m->cfg.tie_word_embeddings) m->lm_head = m->embed;
    rc = 0;
out:
    free(s);
    free(used);
    return rc;
}

int rmu_model_load(rmu_model *m, const char *dir, rmu_err *e) {
    memset(m, 0, sizeof *m);
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    if (rmu_cfg_load(&m->cfg, dir, e)) return -1;
    m->layers = calloc(m->cfg.n_layers, sizeof *m->layers);
    if (!m->layers) return rmu_errf(e, "%s: out of memory", dir);
    if (rmu_st_open_dir(&m->st, dir, e) || bind_slots(m, e)) {
        rmu_model_free(m);
        return -1;
    }
    return 0;
}

void rmu_model_free(rmu_model *m) {
    if (!m) return;
    rmu_st_close(&m->st);
    free(m->layers);
    free(m->scales);
    m->layers = NULL;
    m->scales = NULL;
}

void rmu_model_set_precision(rmu_model *m, rmu_prec p) { m->precision = p; }

rmu_weight *rmu_model_weight(rmu_model *m, const char *hf_name) {
    int ns = n_slots(&m->cfg);
    slot *s = calloc(ns, sizeof *s);
    rmu_weight *w = NULL;
    if (!s) return NULL;
    fill_slots(m, s);
    for (int i = 0; i < ns && !w; i++)
        if (!strcmp(s[i].name, hf_name)) w = s[i].w;
    free(s);
    if (w == &m->lm_head && m->cfg.tie_word_embeddings) w = &m->embed;
    return w;
}

static size_t wbytes(const rmu_weight *w) {
    return (size_t)w->rows * w->cols * rmu_dtype_size(w->dtype) + (size_t)w->nscale * sizeof(float);
}

void rmu_weight_row_f32(const rmu_weight *w, int64_t row, float *dst) {
    size_t es = rmu_dtype_size(w->dtype);
    rmu_to_f32(dst, (const char *)w->data + (size_t)row * (size_t)w->cols * es, w->dtype, (size_t)w->cols);
    if (w->dtype != RMU_DT_F8_E4M3) return;
    float sc = w->scale[w->nscale == 1 ? 0 : row];
    for (int64_t i = 0; i < w->cols; i++) dst[i] *= sc;
}

size_t rmu_model_weight_bytes(const rmu_model *m) {
    size_t b = wbytes(&m->embed) + wbytes(&m->final_norm);
    if (!m->cfg.tie_word_embeddings) b += wbytes(&m->lm_head);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const rmu_layer *L = &m->layers[l];
        b += wbytes(&L->attn_norm) + wbytes(&L->wq) + wbytes(&L->wk) + wbytes(&L->wv) + wbytes(&L->wo) +
             wbytes(&L->mlp_norm) + wbytes(&L->w_gate) + wbytes(&L->w_up) + wbytes(&L->w_down);
    }
    return b;
}

/* ---- run state */

int rmu_state_init(rmu_state *s, const rmu_model *m, int ctx, int max_batch, rmu_err *e) {
    memset(s, 0, sizeof *s);
    const rmu_config *c = &m->cfg;
    if (ctx <= 0) return rmu_errf(e, "context length must be positive, got %d", ctx);
    if (max_batch <= 0) max_batch = 1;
    if (max_batch > ctx) max_batch = ctx;
    s->ctx = ctx;
    s->max_batch = max_batch;
    s->nthreads = omp_get_max_threads();
    size_t B = max_batch, C = c->hidden_size, F = c->intermediate_size, hd = c->head_dim;
    size_t qd = (size_t)c->n_heads * hd, kvd = (size_t)c->n_kv_heads * hd;
    size_t kv = (size_t)c->n_layers * ctx * kvd;
    s->kcache = malloc(kv * sizeof(float));
    s->vcache = malloc(kv * sizeof(float));
    s->x = malloc(B * C * sizeof(float));
    s->xb = malloc(B * C * sizeof(float));
    s->q = malloc(B * qd * sizeof(float));
    s->k = malloc(B * kvd * sizeof(float));
    s->v = malloc(B * kvd * sizeof(float));
    s->att_out = malloc(B * qd * sizeof(float));
    s->hb = malloc(B * F * sizeof(float));
    s->hb2 = malloc(B * F * sizeof(float));
    s->att = malloc(rmu_attention_scratch_floats(c->n_heads, c->n_kv_heads, (int)hd, s->nthreads) * sizeof(float));
    s->rope_cos = malloc((size_t)ctx * (hd / 2) * sizeof(float));
    s->rope_sin = malloc((size_t)ctx * (hd / 2) * sizeof(float));
    s->pos_ids = malloc(B * sizeof(int));
    if (!s->kcache || !s->vcache || !s->x || !s->xb || !s->q || !s->k || !s->v || !s->att_out || !s->hb || !s->hb2 ||
        !s->att || !s->rope_cos || !s->rope_sin || !s->pos_ids) {
        rmu_state_free(s);
        return rmu_errf(e, "out of memory for a %d-token context (KV cache %.1f MiB)", ctx,
                        2.0 * kv * sizeof(float) / (1 << 20));
    }
    rmu_rope_table(s->rope_cos, s->rope_sin, ctx, (int)hd, c->rope_theta);
    return 0;
}

void rmu_state_free(rmu_state *s) {
    free(s->kcache); free(s->vcache); free(s->x); free(s->xb); free(s->q); free(s->k); free(s->v);
    free(s->att_out); free(s->hb); free(s->hb2); free(s->att); free(s->rope_cos); free(s->rope_sin);
    free(s->pos_ids);
    memset(s, 0, sizeof *s);
}

void rmu_state_reset(rmu_state *s) { s->pos = 0; }

/* ---- inference forward */

const char *rmu_phase_name(rmu_phase p) {
    static const char *const names[RMU_PH_COUNT] = {"embedding", "rmsnorm",    "q/k/v proj", "rope+cache",
                                                    "attention", "o proj",     "gate/up proj", "swiglu",
                                                    "down proj", "lm head"};
    return p < RMU_PH_COUNT ? names[p] : "?";
}

int rmu_phase_is_matmul(rmu_phase p) {
    return p == RMU_PH_QKV || p == RMU_PH_WO || p == RMU_PH_GATE_UP || p == RMU_PH_DOWN || p == RMU_PH_LOGITS;
}

/* Phase timing, only when s->prof is set (a branch per phase otherwise). */
typedef struct {
    double wall, cpu;
} ph_mark;

static double thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static ph_mark ph_start(const rmu_state *s) {
    ph_mark t = {0, 0};
    if (s->prof) t = (ph_mark){rmu_now_s(), thread_cpu_s()};
    return t;
}

static void ph_end(rmu_state *s, rmu_phase p, ph_mark t) {
    if (!s->prof) return;
    s->prof->wall[p] += rmu_now_s() - t.wall;
    s->prof->cpu[p] += thread_cpu_s() - t.cpu;
}

/* q, k, v projections of n normalised rows: one pass over xb and one parallel region for
 * the three (the fused multi-matrix GEMV when n is small, as in decode). */
static int qkv_project(const rmu_layer *L, const float *xb, int n, float *q, float *k, float *v, rmu_prec pr,
                       rmu_err *e) {
    float *ys[3] = {q, k, v};
    const rmu_weight *ws[3] = {&L->wq, &L->wk, &L->wv};
    return rmu_linear_forward_multi(ys, ws, 3, xb, n, pr, e);
}

/* gate and up projections, fused the same way. */
static int gate_up_project(const rmu_layer *L, const float *xb, int n, float *gate, float *up, rmu_prec pr,
                           rmu_err *e) {
    float *ys[2] = {gate, up};
    const rmu_weight *ws[2] = {&L->w_gate, &L->w_up};
    return rmu_linear_forward_multi(ys, ws, 2, xb, n, pr, e);
}

/* New keys/values k/v[n, KV*hd] (RoPE applied) into the head-major cache at pos0. */
static void cache_store(float *kc, float *vc, const float *k, const float *v, int n, int pos0, int KV, int hd,
                        int cap) {
    for (int i = 0; i < n; i++)
        for (int h = 0; h < KV; h++) {
            size_t to = ((size_t)h * cap + pos0 + i) * hd, from = ((size_t)i * KV + h) * hd;
            memcpy(kc + to, k + from, sizeof(float) * hd);
            memcpy(vc + to, v + from, sizeof(float) * hd);
        }
}

/* Runs the statement(s) as profile phase p (state s in scope). */
#define PHASE(p, ...)                    \
    do {                                 \
        ph_mark t_ = ph_start(s);        \
        __VA_ARGS__;                     \
        ph_end(s, p, t_);                \
    } while (0)

/* Runs call (0, or -1 with e filled) as profile phase p; an error returns -1 at once. */
#define PHASE_CALL(p, call)              \
    do {                                 \
        ph_mark t_ = ph_start(s);        \
        int rc_ = (call);                \
        ph_end(s, p, t_);                \
        if (rc_) return -1;              \
    } while (0)

/* One chunk of n <= max_batch tokens through layers 0..last_layer; leaves the residual
 * stream in s->x. */
static int forward_chunk(const rmu_model *m, rmu_state *s, const int *tokens, int n, int last_layer, rmu_err *e) {
    const rmu_config *c = &m->cfg;
    rmu_prec pr = m->precision;
    int C = c->hidden_size, F = c->intermediate_size, hd = c->head_dim;
    int H = c->n_heads, KV = c->n_kv_heads;
    size_t kvd = (size_t)KV * hd;
    int pos0 = s->pos;
    for (int i = 0; i < n; i++) s->pos_ids[i] = pos0 + i;
    PHASE(RMU_PH_EMBED, rmu_embedding_forward(s->x, tokens, n, &m->embed));
    for (int l = 0; l <= last_layer; l++) {
        const rmu_layer *L = &m->layers[l];
        float *kc = s->kcache + (size_t)l * s->ctx * kvd, *vc = s->vcache + (size_t)l * s->ctx * kvd;
        /* attention block */
        PHASE(RMU_PH_NORM, rmu_rmsnorm_forward(s->xb, NULL, s->x, &L->attn_norm, n, C, c->rms_norm_eps));
        PHASE_CALL(RMU_PH_QKV, qkv_project(L, s->xb, n, s->q, s->k, s->v, pr, e));
        PHASE(RMU_PH_ROPE, rmu_rope_forward(s->q, s->pos_ids, n, H, hd, s->rope_cos, s->rope_sin);
              rmu_rope_forward(s->k, s->pos_ids, n, KV, hd, s->rope_cos, s->rope_sin);
              cache_store(kc, vc, s->k, s->v, n, pos0, KV, hd, s->ctx));
        PHASE(RMU_PH_ATTN, rmu_attention_cached_forward(s->att_out, s->q, kc, vc, s->ctx, n, pos0, H, KV, hd,
                                                        c->sliding_window, s->att, s->nthreads));
        PHASE_CALL(RMU_PH_WO, rmu_linear_forward(s->x, s->att_out, &L->wo, n, 1, pr, e)); /* x += attn(x) Wo^T */
        /* MLP block */
        PHASE(RMU_PH_NORM, rmu_rmsnorm_forward(s->xb, NULL, s->x, &L->mlp_norm, n, C, c->rms_norm_eps));
        PHASE_CALL(RMU_PH_GATE_UP, gate_up_project(L, s->xb, n, s->hb, s->hb2, pr, e));
        PHASE(RMU_PH_SWIGLU, rmu_swiglu_forward(s->hb, s->hb, s->hb2, (size_t)n * F));
        PHASE_CALL(RMU_PH_DOWN, rmu_linear_forward(s->x, s->hb, &L->w_down, n, 1, pr, e)); /* x += mlp(x) */
    }
    s->pos += n;
    return 0;
}

/* Final norm and LM head for n rows of x into logits[n, V]. */
static int lm_head(const rmu_model *m, rmu_state *s, const float *x, int n, float *logits, rmu_err *e) {
    const rmu_config *c = &m->cfg;
    PHASE(RMU_PH_NORM, rmu_rmsnorm_forward(s->xb, NULL, x, &m->final_norm, n, c->hidden_size, c->rms_norm_eps));
    PHASE_CALL(RMU_PH_LOGITS, rmu_linear_forward(logits, s->xb, &m->lm_head, n, 0, m->precision, e));
    return 0;
}

int rmu_model_forward(const rmu_model *m, rmu_state *s, const int *tokens, int n, float *logits, int all,
                      rmu_err *e) {
    const rmu_config *c = &m->cfg;
    if (n <= 0) return rmu_errf(e, "forward: no tokens");
    if (s->pos + n > s->ctx)
        return rmu_errf(e, "forward: %d tokens do not fit the context (%d cached, context %d)", n, s->pos, s->ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return rmu_errf(e, "forward: token id %d out of range [0, %d)", tokens[i], c->vocab_size);
    int C = c->hidden_size, V = c->vocab_size;
    for (int i0 = 0; i0 < n; i0 += s->max_batch) {
        int nb = n - i0 < s->max_batch ? n - i0 : s->max_batch;
        if (forward_chunk(m, s, tokens + i0, nb, c->n_layers - 1, e)) return -1;
        if (!logits) continue;
        if (all && lm_head(m, s, s->x, nb, logits + (size_t)i0 * V, e)) return -1;
        if (!all && i0 + nb == n && lm_head(m, s, s->x + (size_t)(nb - 1) * C, 1, logits, e)) return -1;
    }
    return 0;
}

int rmu_model_hidden(const rmu_model *m, rmu_state *s, const int *tokens, int n, int layer, float *out, rmu_err *e) {
    const rmu_config *c = &m->cfg;
    if (layer < 0 || layer >= c->n_layers) return rmu_errf(e, "hidden: layer %d out of range [0, %d)", layer, c->n_layers);
    if (n <= 0 || n > s->ctx) return rmu_errf(e, "hidden: %d tokens do not fit the context %d", n, s->ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return rmu_errf(e, "hidden: token id %d out of range [0, %d)", tokens[i], c->vocab_size);
    rmu_state_reset(s);
    int C = c->hidden_size;
    for (int i0 = 0; i0 < n; i0 += s->max_batch) {
        int nb = n - i0 < s->max_batch ? n - i0 : s->max_batch;
        if (forward_chunk(m, s, tokens + i0, nb, layer, e)) return -1;
        memcpy(out + (size_t)i0 * C, s->x, sizeof(float) * nb * C);
    }
    return 0;
}
