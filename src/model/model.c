#include "model.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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

/* Whether slot s gets panels: a matrix read by the forward products (not the embedding, not
 * a tied lm_head), F8 or BF16, whose panels the kernels read. */
static int wants_panels(const rmu_model *m, const slot *s) {
    const rmu_weight *w = s->w;
    if (!s->rows || w == &m->embed || (w == &m->lm_head && m->cfg.tie_word_embeddings)) return 0;
    return (w->dtype == RMU_DT_F8_E4M3 || w->dtype == RMU_DT_BF16) && rmu_gemm_panels_used(w->dtype);
}

/* FP8 and BF16 matrices -> panels (one allocation), then their mapped pages released: the
 * kernels read only the panels from now on (other readers fault the pages in again). */
static int make_panels(rmu_model *m, rmu_err *e) {
    int ns = n_slots(&m->cfg), rc = -1;
    slot *s = calloc(ns, sizeof *s);
    if (!s) return rmu_errf(e, "%s: out of memory", m->dir);
    fill_slots(m, s);
    size_t total = 0;
    for (int i = 0; i < ns; i++)
        if (wants_panels(m, &s[i])) total += rmu_gemm_panels_bytes(s[i].w->dtype, (long)s[i].rows, (long)s[i].cols);
    /* 2 MiB aligned and, where the kernel gives them on request (THP "madvise"), in huge
     * pages: decode streams the panels, and with 4 KiB pages every page is a TLB miss and a
     * stop for the hardware prefetcher (not fatal when refused: 4 KiB pages then) */
    const size_t huge = (size_t)2 << 20;
    if (total && !(m->panels = aligned_alloc(huge, (total + huge - 1) & ~(huge - 1)))) {
        rmu_errf(e, "%s: out of memory (%zu bytes for the weight panels)", m->dir, total);
        goto out;
    }
#ifdef MADV_HUGEPAGE
    if (total) madvise(m->panels, (total + huge - 1) & ~(huge - 1), MADV_HUGEPAGE);
#endif
    unsigned char *p = m->panels;
    for (int i = 0; i < ns; i++) {
        rmu_weight *w = s[i].w;
        if (!wants_panels(m, &s[i])) continue;
        /* an FP8 weight with NaN codes (corrupt) has no panel form: it is read as stored, and
         * its outputs come out NaN as on every path */
        if (rmu_gemm_panels(w->dtype, w->data, (long)w->rows, (long)w->cols, (long)w->cols, p)) continue;
        rmu_st_release(w->data, (size_t)w->rows * (size_t)w->cols * rmu_dtype_size(w->dtype));
        w->panels = p;
        w->panels_of = w->data;
        p += rmu_gemm_panels_bytes(w->dtype, (long)w->rows, (long)w->cols);
    }
    rc = 0;
out:
    free(s);
    return rc;
}

int rmu_model_load(rmu_model *m, const char *dir, rmu_err *e) {
    if (rmu_model_open(m, dir, e)) return -1;
    if (make_panels(m, e)) {
        rmu_model_free(m);
        return -1;
    }
    return 0;
}

int rmu_model_open(rmu_model *m, const char *dir, rmu_err *e) {
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
    free(m->panels);
    m->layers = NULL;
    m->scales = NULL;
    m->panels = NULL;
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

size_t rmu_model_decode_bytes(const rmu_model *m) {
    size_t all = rmu_model_weight_bytes(m), emb = wbytes(&m->embed);
    return m->cfg.tie_word_embeddings || m->embed.rows < 1 ? all : all - emb + emb / (size_t)m->embed.rows;
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

/* The per-row activation buffers of a forward over B rows, which rmu_state and rmu_batch_ws
 * both hold under the same names: x, xb [B, C]; q, att_out [B, qd]; k, v [B, kvd]; hb, hb2
 * [B, F]; the attention scratch; pos_ids [B]. ROW_BUFS(p) lists them for either struct. */
#define ROW_BUFS(p) {&(p)->x, &(p)->xb, &(p)->q, &(p)->k, &(p)->v, &(p)->att_out, &(p)->hb, &(p)->hb2, &(p)->att}

/* Allocates them; -1 when one allocation failed (the caller frees what was allocated). */
static int row_bufs_alloc(const rmu_config *c, size_t B, int nthreads, float **const f[9], int **pos_ids) {
    size_t C = c->hidden_size, F = c->intermediate_size, hd = c->head_dim;
    size_t qd = (size_t)c->n_heads * hd, kvd = (size_t)c->n_kv_heads * hd;
    const size_t w[8] = {C, C, qd, kvd, kvd, qd, F, F};
    int ok = 1;
    for (int i = 0; i < 8; i++) ok &= (*f[i] = malloc(B * w[i] * sizeof(float))) != NULL;
    ok &= (*f[8] = malloc(rmu_attention_scratch_floats(c->n_heads, c->n_kv_heads, (int)hd, nthreads) *
                          sizeof(float))) != NULL;
    ok &= (*pos_ids = malloc(B * sizeof(int))) != NULL;
    return ok ? 0 : -1;
}

static void row_bufs_free(float **const f[9], int **pos_ids) {
    for (int i = 0; i < 9; i++) free(*f[i]);
    free(*pos_ids);
}

int rmu_state_init(rmu_state *s, const rmu_model *m, int ctx, int max_batch, rmu_err *e) {
    memset(s, 0, sizeof *s);
    const rmu_config *c = &m->cfg;
    if (ctx <= 0) return rmu_errf(e, "context length must be positive, got %d", ctx);
    if (max_batch <= 0) max_batch = 1;
    if (max_batch > ctx) max_batch = ctx;
    s->ctx = ctx;
    s->max_batch = max_batch;
    s->nthreads = omp_get_max_threads();
    size_t hd = c->head_dim, kv = (size_t)c->n_layers * ctx * c->n_kv_heads * hd;
    s->kcache = malloc(kv * sizeof(float));
    s->vcache = malloc(kv * sizeof(float));
    s->rope_cos = malloc((size_t)ctx * (hd / 2) * sizeof(float));
    s->rope_sin = malloc((size_t)ctx * (hd / 2) * sizeof(float));
    float **const f[9] = ROW_BUFS(s);
    if (row_bufs_alloc(c, (size_t)max_batch, s->nthreads, f, &s->pos_ids) || !s->kcache || !s->vcache ||
        !s->rope_cos || !s->rope_sin) {
        rmu_state_free(s);
        return rmu_errf(e, "out of memory for a %d-token context (KV cache %.1f MiB)", ctx,
                        2.0 * kv * sizeof(float) / (1 << 20));
    }
    rmu_rope_table(s->rope_cos, s->rope_sin, ctx, (int)hd, c->rope_theta);
    return 0;
}

void rmu_state_free(rmu_state *s) {
    float **const f[9] = ROW_BUFS(s);
    row_bufs_free(f, &s->pos_ids);
    free(s->kcache), free(s->vcache), free(s->rope_cos), free(s->rope_sin);
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

/* Phase timing, only when a profile is attached (a branch per phase otherwise). */
typedef struct {
    double wall, cpu;
} ph_mark;

static ph_mark ph_start(const rmu_prof *prof) {
    ph_mark t = {0, 0};
    if (prof) t = (ph_mark){rmu_now_s(), rmu_thread_cpu_s()};
    return t;
}

static void ph_end(rmu_prof *prof, rmu_phase p, ph_mark t) {
    if (!prof) return;
    prof->wall[p] += rmu_now_s() - t.wall;
    prof->cpu[p] += rmu_thread_cpu_s() - t.cpu;
}

/* Runs the statement(s) as profile phase p (rmu_prof *prof in scope, may be NULL). */
#define PHASE(p, ...)                    \
    do {                                 \
        ph_mark t_ = ph_start(prof);     \
        __VA_ARGS__;                     \
        ph_end(prof, p, t_);             \
    } while (0)

/* Runs call (0, or -1 with e filled) as profile phase p; an error returns -1 at once. */
#define PHASE_CALL(p, call)              \
    do {                                 \
        ph_mark t_ = ph_start(prof);     \
        int rc_ = (call);                \
        ph_end(prof, p, t_);             \
        if (rc_) return -1;              \
    } while (0)

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

/* ---- the forward pass: rows of one or several sequences (slots) at once. Every product
 * runs over all rows together (one read of each weight per step, however many sequences
 * run); RoPE, the K/V cache and attention are each slot's own. No row's numbers depend on the
 * others or on how a sequence was split into calls: rmu_gemm's forward rows are
 * M-invariant, attention rows are block-invariant, the rest is row by row. The
 * single-sequence forward is the one-slot case. */

/* The rows of slots[0..nslots) (n[i] tokens each, slot after slot; ws->r0 = each slot's first
 * row) through layers 0..last_layer; leaves the residual stream in ws->x and advances each
 * pos. */
static int forward_rows(const rmu_model *m, rmu_state *const *slots, const int *tokens, const int *n, int nslots,
                        rmu_batch_ws *ws, int last_layer, rmu_err *e) {
    const rmu_config *c = &m->cfg;
    rmu_prec pr = m->precision;
    rmu_prof *prof = ws->prof;
    int C = c->hidden_size, F = c->intermediate_size, hd = c->head_dim;
    int H = c->n_heads, KV = c->n_kv_heads, R = 0;
    size_t kvd = (size_t)KV * hd, qd = (size_t)H * hd;
    for (int i = 0; i < nslots; i++) {
        ws->r0[i] = R;
        for (int j = 0; j < n[i]; j++) ws->pos_ids[R + j] = slots[i]->pos + j;
        R += n[i];
    }
    PHASE(RMU_PH_EMBED, rmu_embedding_forward(ws->x, tokens, R, &m->embed));
    for (int l = 0; l <= last_layer; l++) {
        const rmu_layer *L = &m->layers[l];
        /* attention block */
        PHASE(RMU_PH_NORM, rmu_rmsnorm_forward(ws->xb, NULL, ws->x, &L->attn_norm, R, C, c->rms_norm_eps));
        float *qkv[3] = {ws->q, ws->k, ws->v};
        const rmu_weight *wqkv[3] = {&L->wq, &L->wk, &L->wv};
        PHASE_CALL(RMU_PH_QKV, rmu_linear_forward_multi(qkv, wqkv, 3, ws->xb, R, pr, e));
        for (int i = 0; i < nslots; i++) {
            rmu_state *s = slots[i];
            size_t r0 = ws->r0[i];
            float *kc = s->kcache + (size_t)l * s->ctx * kvd, *vc = s->vcache + (size_t)l * s->ctx * kvd;
            PHASE(RMU_PH_ROPE, rmu_rope_forward(ws->q + r0 * qd, ws->pos_ids + r0, n[i], H, hd, s->rope_cos, s->rope_sin);
                  rmu_rope_forward(ws->k + r0 * kvd, ws->pos_ids + r0, n[i], KV, hd, s->rope_cos, s->rope_sin);
                  cache_store(kc, vc, ws->k + r0 * kvd, ws->v + r0 * kvd, n[i], s->pos, KV, hd, s->ctx));
            PHASE(RMU_PH_ATTN, rmu_attention_cached_forward(ws->att_out + r0 * qd, ws->q + r0 * qd, kc, vc, s->ctx,
                                                            n[i], s->pos, H, KV, hd, c->sliding_window, ws->att,
                                                            ws->nthreads));
        }
        PHASE_CALL(RMU_PH_WO, rmu_linear_forward(ws->x, ws->att_out, &L->wo, R, 1, pr, e)); /* x += attn(x) Wo^T */
        /* MLP block */
        PHASE(RMU_PH_NORM, rmu_rmsnorm_forward(ws->xb, NULL, ws->x, &L->mlp_norm, R, C, c->rms_norm_eps));
        float *gu[2] = {ws->hb, ws->hb2};
        const rmu_weight *wgu[2] = {&L->w_gate, &L->w_up};
        PHASE_CALL(RMU_PH_GATE_UP, rmu_linear_forward_multi(gu, wgu, 2, ws->xb, R, pr, e));
        PHASE(RMU_PH_SWIGLU, rmu_swiglu_forward(ws->hb, ws->hb, ws->hb2, (size_t)R * F));
        PHASE_CALL(RMU_PH_DOWN, rmu_linear_forward(ws->x, ws->hb, &L->w_down, R, 1, pr, e)); /* x += mlp(x) */
    }
    for (int i = 0; i < nslots; i++) slots[i]->pos += n[i];
    return 0;
}

/* Final norm and LM head of the wanted rows (want[i]: 0 none, 1 slot i's last row, 2 all its
 * rows; want NULL: every slot's last row) as one product: logits [rows, V] in slot order. */
static int rows_logits(const rmu_model *m, const int *n, const int *want, int nslots, rmu_batch_ws *ws,
                       float *logits, rmu_err *e) {
    const rmu_config *c = &m->cfg;
    rmu_prof *prof = ws->prof;
    int C = c->hidden_size, rows = 0;
    for (int i = 0; i < nslots; i++) {
        int w = want ? want[i] : 1;
        if (w == 0) continue;
        int first = w == 2 ? 0 : n[i] - 1, cnt = n[i] - first;
        PHASE(RMU_PH_NORM, rmu_rmsnorm_forward(ws->xb + (size_t)rows * C, NULL, ws->x + ((size_t)ws->r0[i] + first) * C,
                                               &m->final_norm, cnt, C, c->rms_norm_eps));
        rows += cnt;
    }
    if (rows) PHASE_CALL(RMU_PH_LOGITS, rmu_linear_forward(logits, ws->xb, &m->lm_head, rows, 0, m->precision, e));
    return 0;
}

static int check_tokens(const rmu_config *c, const int *tokens, int n, const char *what, rmu_err *e) {
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return rmu_errf(e, "%s: token id %d out of range [0, %d)", what, tokens[i], c->vocab_size);
    return 0;
}

/* The state's own scratch as a one-slot workspace (r0: room for the one slot's first row). */
static rmu_batch_ws state_ws(rmu_state *s, int *r0) {
    return (rmu_batch_ws){.max_rows = s->max_batch, .max_slots = 1, .nthreads = s->nthreads, .x = s->x, .xb = s->xb,
                          .q = s->q, .k = s->k, .v = s->v, .att_out = s->att_out, .hb = s->hb, .hb2 = s->hb2,
                          .att = s->att, .pos_ids = s->pos_ids, .r0 = r0, .prof = s->prof};
}

int rmu_model_forward(const rmu_model *m, rmu_state *s, const int *tokens, int n, float *logits, int all,
                      rmu_err *e) {
    const rmu_config *c = &m->cfg;
    if (n <= 0) return rmu_errf(e, "forward: no tokens");
    if (s->pos + n > s->ctx)
        return rmu_errf(e, "forward: %d tokens do not fit the context (%d cached, context %d)", n, s->pos, s->ctx);
    if (check_tokens(c, tokens, n, "forward", e)) return -1;
    int V = c->vocab_size, r0;
    rmu_batch_ws ws = state_ws(s, &r0);
    for (int i0 = 0, nb; i0 < n; i0 += nb) {
        nb = n - i0 < s->max_batch ? n - i0 : s->max_batch;
        int want = !logits ? 0 : all ? 2 : i0 + nb == n;
        if (forward_rows(m, &s, tokens + i0, &nb, 1, &ws, c->n_layers - 1, e)) return -1;
        if (want && rows_logits(m, &nb, &want, 1, &ws, all ? logits + (size_t)i0 * V : logits, e)) return -1;
    }
    return 0;
}

int rmu_model_forward_rows(const rmu_model *m, rmu_state *const *slots, const int *tokens, const int *nrows,
                           int nslots, float *logits, const int *want, rmu_batch_ws *ws, rmu_err *e) {
    const rmu_config *c = &m->cfg;
    if (nslots <= 0 || nslots > ws->max_slots)
        return rmu_errf(e, "forward_rows: %d slots (workspace for 1..%d)", nslots, ws->max_slots);
    int R = 0;
    for (int i = 0; i < nslots; i++) {
        rmu_state *s = slots[i];
        if (nrows[i] <= 0) return rmu_errf(e, "forward_rows: slot %d feeds no tokens", i);
        if (s->pos + nrows[i] > s->ctx)
            return rmu_errf(e, "forward_rows: slot %d: %d tokens do not fit the context (%d cached, context %d)", i,
                            nrows[i], s->pos, s->ctx);
        for (int j = 0; j < i; j++)
            if (slots[j] == s) return rmu_errf(e, "forward_rows: slot %d appears twice", i);
        R += nrows[i];
    }
    if (R > ws->max_rows) return rmu_errf(e, "forward_rows: %d rows (workspace for %d)", R, ws->max_rows);
    if (check_tokens(c, tokens, R, "forward_rows", e)) return -1;
    if (forward_rows(m, slots, tokens, nrows, nslots, ws, c->n_layers - 1, e)) return -1;
    return logits ? rows_logits(m, nrows, want, nslots, ws, logits, e) : 0;
}

int rmu_batch_ws_init(rmu_batch_ws *ws, const rmu_model *m, int max_rows, int max_slots, rmu_err *e) {
    memset(ws, 0, sizeof *ws);
    const rmu_config *c = &m->cfg;
    if (max_rows <= 0 || max_slots <= 0)
        return rmu_errf(e, "batch workspace: rows %d and slots %d must be positive", max_rows, max_slots);
    ws->max_rows = max_rows;
    ws->max_slots = max_slots;
    ws->nthreads = omp_get_max_threads();
    float **const f[9] = ROW_BUFS(ws);
    ws->r0 = malloc((size_t)max_slots * sizeof(int));
    if (row_bufs_alloc(c, (size_t)max_rows, ws->nthreads, f, &ws->pos_ids) || !ws->r0) {
        rmu_batch_ws_free(ws);
        return rmu_errf(e, "batch workspace: out of memory for %d rows", max_rows);
    }
    return 0;
}

void rmu_batch_ws_free(rmu_batch_ws *ws) {
    float **const f[9] = ROW_BUFS(ws);
    row_bufs_free(f, &ws->pos_ids);
    free(ws->r0);
    memset(ws, 0, sizeof *ws);
}

int rmu_model_hidden(const rmu_model *m, rmu_state *s, const int *tokens, int n, int layer, float *out, rmu_err *e) {
    const rmu_config *c = &m->cfg;
    if (layer < 0 || layer >= c->n_layers) return rmu_errf(e, "hidden: layer %d out of range [0, %d)", layer, c->n_layers);
    if (n <= 0 || n > s->ctx) return rmu_errf(e, "hidden: %d tokens do not fit the context %d", n, s->ctx);
    if (check_tokens(c, tokens, n, "hidden", e)) return -1;
    rmu_state_reset(s);
    int C = c->hidden_size, r0;
    rmu_batch_ws ws = state_ws(s, &r0);
    for (int i0 = 0, nb; i0 < n; i0 += nb) {
        nb = n - i0 < s->max_batch ? n - i0 : s->max_batch;
        if (forward_rows(m, &s, tokens + i0, &nb, 1, &ws, layer, e)) return -1;
        memcpy(out + (size_t)i0 * C, s->x, sizeof(float) * nb * C);
    }
    return 0;
}
