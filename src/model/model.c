#include "model.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static int bind_slots(rmu_model *m, rmu_err *e) {
    int ns = n_slots(&m->cfg);
    slot *s = calloc(ns, sizeof *s);
    char *used = calloc(m->st.ntensors ? m->st.ntensors : 1, 1);
    int rc = -1;
    if (!s || !used) { rmu_errf(e, "%s: out of memory", m->dir); goto out; }
    fill_slots(m, s);
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
            char got[128] = "", exp[64];
            for (int d = 0; d < t->ndim; d++) {
                size_t l = strlen(got);
                snprintf(got + l, sizeof got - l, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
            }
            if (s[i].rows) snprintf(exp, sizeof exp, "[%lld, %lld]", (long long)s[i].rows, (long long)s[i].cols);
            else snprintf(exp, sizeof exp, "[%lld]", (long long)s[i].cols);
            rmu_errf(e, "%s: tensor %s has shape [%s], config.json implies %s", m->dir, s[i].name, got, exp);
            goto out;
        }
        s[i].w->data = t->data;
        s[i].w->dtype = t->dtype;
        s[i].w->rows = s[i].rows ? s[i].rows : 1;
        s[i].w->cols = s[i].cols;
    }
    for (int i = 0; i < m->st.ntensors; i++) {
        /* rotary inv_freq buffers appear in some older checkpoints: harmless */
        if (!used[i] && !strstr(m->st.tensors[i].name, "rotary_emb.inv_freq")) {
            rmu_errf(e, "%s: unexpected tensor %s (not part of a %s model with %d layers)", m->dir,
                     m->st.tensors[i].name, m->cfg.model_type, m->cfg.n_layers);
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
    m->layers = NULL;
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

static size_t wbytes(const rmu_weight *w) { return (size_t)w->rows * w->cols * rmu_dtype_size(w->dtype); }

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
    s->att = malloc((size_t)s->nthreads * ctx * sizeof(float));
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

/* One chunk of n <= max_batch tokens through layers 0..last_layer; leaves the residual
 * stream in s->x. */
static int forward_chunk(const rmu_model *m, rmu_state *s, const int *tokens, int n, int last_layer, rmu_err *e) {
    const rmu_config *c = &m->cfg;
    rmu_prec pr = m->precision;
    int C = c->hidden_size, F = c->intermediate_size, hd = c->head_dim;
    int H = c->n_heads, KV = c->n_kv_heads, kvd = KV * hd;
    int pos0 = s->pos;
    for (int i = 0; i < n; i++) s->pos_ids[i] = pos0 + i;
    rmu_embedding_forward(s->x, tokens, n, &m->embed);
    for (int l = 0; l <= last_layer; l++) {
        const rmu_layer *L = &m->layers[l];
        float *kc = s->kcache + (size_t)l * s->ctx * kvd, *vc = s->vcache + (size_t)l * s->ctx * kvd;
        /* attention block: the new keys/values go straight into the cache */
        rmu_rmsnorm_forward(s->xb, NULL, s->x, &L->attn_norm, n, C, c->rms_norm_eps);
        if (rmu_linear_forward(s->q, s->xb, &L->wq, n, 0, pr, e)) return -1;
        if (rmu_linear_forward(kc + (size_t)pos0 * kvd, s->xb, &L->wk, n, 0, pr, e)) return -1;
        if (rmu_linear_forward(vc + (size_t)pos0 * kvd, s->xb, &L->wv, n, 0, pr, e)) return -1;
        rmu_rope_forward(s->q, s->pos_ids, n, H, hd, s->rope_cos, s->rope_sin);
        rmu_rope_forward(kc + (size_t)pos0 * kvd, s->pos_ids, n, KV, hd, s->rope_cos, s->rope_sin);
        rmu_attention_cached_forward(s->att_out, s->q, kc, vc, n, pos0, H, KV, hd, c->sliding_window, s->att,
                                     s->nthreads);
        if (rmu_linear_forward(s->x, s->att_out, &L->wo, n, 1, pr, e)) return -1; /* x += attn(x) Wo^T */
        /* MLP block */
        rmu_rmsnorm_forward(s->xb, NULL, s->x, &L->mlp_norm, n, C, c->rms_norm_eps);
        if (rmu_linear_forward(s->hb, s->xb, &L->w_gate, n, 0, pr, e)) return -1;
        if (rmu_linear_forward(s->hb2, s->xb, &L->w_up, n, 0, pr, e)) return -1;
        rmu_swiglu_forward(s->hb, s->hb, s->hb2, (size_t)n * F);
        if (rmu_linear_forward(s->x, s->hb, &L->w_down, n, 1, pr, e)) return -1; /* x += mlp(x) */
    }
    s->pos += n;
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
        if (all) {
            rmu_rmsnorm_forward(s->xb, NULL, s->x, &m->final_norm, nb, C, c->rms_norm_eps);
            if (rmu_linear_forward(logits + (size_t)i0 * V, s->xb, &m->lm_head, nb, 0, m->precision, e)) return -1;
        } else if (i0 + nb == n) {
            rmu_rmsnorm_forward(s->xb, NULL, s->x + (size_t)(nb - 1) * C, &m->final_norm, 1, C, c->rms_norm_eps);
            if (rmu_linear_forward(logits, s->xb, &m->lm_head, 1, 0, m->precision, e)) return -1;
        }
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
