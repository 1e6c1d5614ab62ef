#include "train/trainer.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/attention.h"
#include "model/layers.h"
#include "train/glob.h"

#define LM_CHUNK_FLOATS (16u << 20) /* logits rows per lm_head chunk: 64 MiB of fp32 */

static int n_layers(const rmu_tr *tr) { return tr->m->cfg.n_layers; }

static int last_layer(const rmu_tr *tr) {
    return tr->opts.last_layer < 0 ? n_layers(tr) - 1 : tr->opts.last_layer;
}

/* Layer index of an HF name: -1 embedding, n_layers for final norm / lm_head. */
static int name_layer(const char *name, int nl) {
    int l;
    if (sscanf(name, "model.layers.%d.", &l) == 1) return l;
    if (!strcmp(name, "model.embed_tokens.weight")) return -1;
    return nl;
}

/* Tensors of the checkpoint that are model parameters (as HF's state dict sees them; FP8
 * scales are quantization metadata, not parameters). */
static int eligible(const rmu_model *m, const char *name) {
    if (strstr(name, "rotary_emb.inv_freq")) return 0;
    size_t n = strlen(name);
    if ((n > 12 && !strcmp(name + n - 12, "weight_scale")) || (n > 11 && !strcmp(name + n - 11, "input_scale")))
        return 0;
    if (m->cfg.tie_word_embeddings && !strcmp(name, "lm_head.weight")) return 0;
    return 1;
}

static const char *sel_field(const rmu_tr *tr) { return tr->opts.field ? tr->opts.field : "trainable"; }

/* Picks the trainable names (patterns and explicit names); fills tr->params (names, sizes,
 * slots) and counts. */
static int select_params(rmu_tr *tr, rmu_err *e) {
    rmu_model *m = tr->m;
    const char *spec = tr->opts.trainable, *field = sel_field(tr);
    int nn = tr->opts.n_names > 0 ? tr->opts.n_names : 0;
    rmu_glob g = {0};
    int have_pats = spec && *spec, all = !have_pats && nn == 0;
    if (have_pats && rmu_glob_compile(&g, spec, e)) return rmu_err_prefix(e, "%s", field);
    for (int k = 0; k < nn; k++) { /* each name must be a parameter of this checkpoint */
        const char *name = tr->opts.names[k];
        if (!name || !rmu_st_get(&m->st, name) || !eligible(m, name)) {
            rmu_glob_free(&g);
            return rmu_errf(e, "%s: %s is not a trainable tensor of %s", field, name ? name : "(null)", m->dir);
        }
    }
    int *hits = g.n ? calloc(g.n, sizeof *hits) : NULL;
    tr->params = calloc(m->st.ntensors ? m->st.ntensors : 1, sizeof *tr->params);
    if ((g.n && !hits) || !tr->params) {
        free(hits);
        rmu_glob_free(&g);
        return rmu_errf(e, "out of memory selecting trainable tensors");
    }
    int np = 0;
    for (int i = 0; i < m->st.ntensors; i++) {
        const char *name = m->st.tensors[i].name;
        if (!eligible(m, name)) continue;
        int take = all;
        for (int k = 0; k < g.n; k++)
            if (rmu_glob_match_one(g.pats[k], name)) hits[k]++, take = 1;
        for (int k = 0; k < nn && !take; k++) take = !strcmp(tr->opts.names[k], name);
        if (!take) continue;
        rmu_tr_param *p = &tr->params[np];
        snprintf(p->name, sizeof p->name, "%s", name);
        p->w = rmu_model_weight(m, name);
        if (!p->w) {
            free(hits);
            rmu_glob_free(&g);
            return rmu_errf(e, "%s: tensor %s is not a weight of the model", m->dir, name);
        }
        if (p->w->dtype == RMU_DT_F8_E4M3) { /* frozen FP8 weights are fine (forward, dX); trainable ones not */
            free(hits);
            rmu_glob_free(&g);
            return rmu_errf(e, "%s: %s is FP8 (F8_E4M3); training FP8 weights is not supported (frozen ones are: "
                            "leave it out, or train a BF16/F32 copy and quantize the result)", field, name);
        }
        p->orig = p->w->data;
        p->orig_dtype = p->w->dtype;
        p->rows = p->w->rows;
        p->cols = p->w->cols;
        p->numel = (size_t)p->rows * p->cols;
        p->layer = name_layer(name, m->cfg.n_layers);
        tr->n_trainable += p->numel;
        np++;
    }
    tr->nparams = np;
    int rc = 0;
    for (int k = 0; k < g.n && !rc; k++) {
        if (hits[k]) continue;
        if (m->cfg.tie_word_embeddings && rmu_glob_match_one(g.pats[k], "lm_head.weight"))
            rc = rmu_errf(e, "%s: pattern '%s' matches only lm_head.weight, which this model ties to "
                             "model.embed_tokens.weight (train that instead)", field, g.pats[k]);
        else
            rc = rmu_errf(e, "%s: pattern '%s' matches no tensor of %s (names look like "
                             "model.layers.0.mlp.down_proj.weight)", field, g.pats[k], m->dir);
    }
    free(hits);
    rmu_glob_free(&g);
    if (!rc && np == 0) rc = rmu_errf(e, "%s: no tensor selected", field);
    return rc;
}

static float **grad_slot(rmu_tr *tr, const rmu_weight *w) {
    rmu_model *m = tr->m;
    if (w == &m->embed) return &tr->g_embed;
    if (w == &m->final_norm) return &tr->g_final_norm;
    if (w == &m->lm_head) return &tr->g_lm_head;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        rmu_layer *L = &m->layers[l];
        rmu_tr_lgrads *g = &tr->lg[l];
        if (w == &L->attn_norm) return &g->attn_norm;
        if (w == &L->wq) return &g->wq;
        if (w == &L->wk) return &g->wk;
        if (w == &L->wv) return &g->wv;
        if (w == &L->wo) return &g->wo;
        if (w == &L->mlp_norm) return &g->mlp_norm;
        if (w == &L->w_gate) return &g->w_gate;
        if (w == &L->w_up) return &g->w_up;
        if (w == &L->w_down) return &g->w_down;
    }
    return NULL;
}

static size_t act_floats_per_layer(const rmu_config *c, size_t N) {
    size_t C = c->hidden_size, F = c->intermediate_size, qd = (size_t)c->n_heads * c->head_dim,
           kvd = (size_t)c->n_kv_heads * c->head_dim;
    return N * (2 * C + 2 + 2 * qd + 2 * kvd + c->n_heads + 2 * F);
}

int rmu_tr_init(rmu_tr *tr, rmu_model *m, const rmu_tr_opts *o, rmu_err *e) {
    memset(tr, 0, sizeof *tr);
    tr->m = m;
    tr->opts = *o;
    const rmu_config *c = &m->cfg;
    if (o->max_batch < 1) return rmu_errf(e, "batch size must be positive, got %d", o->max_batch);
    if (o->max_seq < 2) return rmu_errf(e, "sequence length must be at least 2, got %d", o->max_seq);
    if (c->max_position_embeddings > 0 && o->max_seq > c->max_position_embeddings)
        return rmu_errf(e, "sequence length %d exceeds the model's max_position_embeddings %d", o->max_seq,
                        c->max_position_embeddings);
    if (o->last_layer >= c->n_layers)
        return rmu_errf(e, "loss layer %d out of range [0, %d)", o->last_layer, c->n_layers);
    if (select_params(tr, e)) goto fail;
    int L = last_layer(tr);
    tr->lowest_trainable = c->n_layers;
    for (int i = 0; i < tr->nparams; i++) {
        rmu_tr_param *p = &tr->params[i];
        if (o->last_layer >= 0 && p->layer > L) {
            rmu_errf(e, "%s: %s lies above the loss (layer %d) and would get no gradient", sel_field(tr), p->name, L);
            goto fail;
        }
        if (p->layer < tr->lowest_trainable) tr->lowest_trainable = p->layer;
    }
    tr->save_lo = tr->lowest_trainable < 0 ? 0 : tr->lowest_trainable;
    tr->save_hi = L;

    size_t nt = tr->n_trainable;
    tr->master_mem = malloc(sizeof(float) * nt);
    tr->grad_mem = calloc(nt, sizeof(float));
    tr->m_mem = calloc(nt, sizeof(float));
    tr->v_mem = calloc(nt, sizeof(float));
    tr->lg = calloc(c->n_layers, sizeof *tr->lg);
    if (!tr->master_mem || !tr->grad_mem || !tr->m_mem || !tr->v_mem || !tr->lg) {
        rmu_errf(e, "out of memory for %zu trainable parameters (%.1f GiB of fp32 masters, grads and AdamW state)",
                 nt, 16.0 * nt / (1u << 30));
        goto fail;
    }
    size_t off = 0;
    for (int i = 0; i < tr->nparams; i++) {
        rmu_tr_param *p = &tr->params[i];
        p->master = tr->master_mem + off;
        p->grad = tr->grad_mem + off;
        p->m = tr->m_mem + off;
        p->v = tr->v_mem + off;
        off += p->numel;
        rmu_to_f32(p->master, p->orig, p->orig_dtype, p->numel);
        float **slot = grad_slot(tr, p->w);
        if (!slot) {
            rmu_errf(e, "%s: internal: no gradient slot for %s", m->dir, p->name);
            goto fail;
        }
        *slot = p->grad;
    }
    if (c->tie_word_embeddings) tr->g_lm_head = tr->g_embed;

    /* activations of the saved layers, then scratch */
    size_t B = o->max_batch, T = o->max_seq, N = B * T;
    size_t C = c->hidden_size, F = c->intermediate_size, H = c->n_heads, hd = c->head_dim;
    size_t qd = H * hd, kvd = (size_t)c->n_kv_heads * hd, V = c->vocab_size;
    int nsave = tr->save_hi >= tr->save_lo ? tr->save_hi - tr->save_lo + 1 : 0;
    tr->nthreads = omp_get_max_threads();
    /* the LM head's logits are made in row chunks; a loss inside the stack needs none */
    tr->lm_chunk = (int)(LM_CHUNK_FLOATS / V > N ? N : LM_CHUNK_FLOATS / V);
    if (tr->lm_chunk < 1) tr->lm_chunk = 1;
    if (o->last_layer >= 0) tr->lm_chunk = 0;
    size_t per = act_floats_per_layer(c, N);
    size_t att_scr = rmu_attention_scratch_floats(c->n_heads, c->n_kv_heads, c->head_dim, tr->nthreads);
    size_t scr = N * (5 * C + 2 * qd + 2 * kvd + H + 3 * F + 3) + att_scr + (size_t)tr->lm_chunk * V;
    tr->acts = calloc(c->n_layers, sizeof *tr->acts);
    tr->act_mem = nsave ? malloc(sizeof(float) * per * nsave) : NULL;
    tr->scr_mem = malloc(sizeof(float) * scr);
    tr->tokens = malloc(sizeof(int) * 5 * N);
    if (!tr->acts || (nsave && !tr->act_mem) || !tr->scr_mem || !tr->tokens) {
        rmu_errf(e, "out of memory for training activations (%.1f GiB for %d layers of %zu x %zu tokens)",
                 4.0 * (per * nsave + scr) / (1u << 30), nsave, B, T);
        goto fail;
    }
    tr->mask = tr->tokens + N;
    tr->pos = tr->mask + N;
    tr->targets = tr->pos + N;
    tr->emb_ids = tr->targets + N;
    float *a = tr->act_mem;
    for (int l = tr->save_lo; l <= tr->save_hi && nsave; l++) {
        rmu_tr_acts *s = &tr->acts[l];
        s->x_in = a, a += N * C;
        s->rstd1 = a, a += N;
        s->q = a, a += N * qd;
        s->k = a, a += N * kvd;
        s->v = a, a += N * kvd;
        s->lse = a, a += N * H;
        s->att = a, a += N * qd;
        s->x_mid = a, a += N * C;
        s->rstd2 = a, a += N;
        s->gate = a, a += N * F;
        s->up = a, a += N * F;
    }
    float *s = tr->scr_mem;
    tr->s_x = s, s += N * C;
    tr->s_xb = s, s += N * C;
    tr->s_dres = s, s += N * C;
    tr->s_dxb = s, s += N * C;
    tr->s_xf = s, s += N * C;
    tr->s_q = s, s += N * qd;
    tr->s_att = s, s += N * qd;
    tr->s_k = s, s += N * kvd;
    tr->s_v = s, s += N * kvd;
    tr->s_lse = s, s += N * H;
    tr->s_gate = s, s += N * F;
    tr->s_up = s, s += N * F;
    tr->s_h = s, s += N * F;
    tr->s_rstd = s, s += N;
    tr->s_losses = s, s += N;
    tr->s_rstdf = s, s += N;
    tr->s_attn = s, s += att_scr;
    tr->s_logits = s, s += (size_t)tr->lm_chunk * V;
    /* backward reuses the no-save forward scratch: it reads only saved activations */
    tr->s_dq = tr->s_q;
    tr->s_datt = tr->s_att;
    tr->s_dk = tr->s_k;
    tr->s_dv = tr->s_v;
    tr->s_dh = tr->s_gate;
    tr->s_dup = tr->s_up;
    tr->rope_cos = malloc(sizeof(float) * T * (hd / 2) * 2);
    if (!tr->rope_cos) {
        rmu_errf(e, "out of memory for RoPE tables");
        goto fail;
    }
    tr->rope_sin = tr->rope_cos + T * (hd / 2);
    rmu_rope_table(tr->rope_cos, tr->rope_sin, (int)T, (int)hd, c->rope_theta);

    /* all allocations done: take a copy of the original weights, then repoint */
    tr->frozen = *m;
    tr->frozen.layers = malloc(sizeof(rmu_layer) * c->n_layers);
    if (!tr->frozen.layers) {
        rmu_errf(e, "out of memory");
        goto fail;
    }
    memcpy(tr->frozen.layers, m->layers, sizeof(rmu_layer) * c->n_layers);
    for (int i = 0; i < tr->nparams; i++) {
        tr->params[i].w->data = tr->params[i].master;
        tr->params[i].w->dtype = RMU_DT_F32;
    }
    if (c->tie_word_embeddings) m->lm_head = m->embed;
    return 0;
fail:
    tr->nparams = 0; /* nothing was repointed */
    rmu_tr_free(tr);
    return -1;
}

void rmu_tr_free(rmu_tr *tr) {
    if (!tr->m) return;
    for (int i = 0; i < tr->nparams; i++) {
        tr->params[i].w->data = tr->params[i].orig;
        tr->params[i].w->dtype = tr->params[i].orig_dtype;
    }
    if (tr->nparams && tr->m->cfg.tie_word_embeddings) tr->m->lm_head = tr->m->embed;
    free(tr->params);
    free(tr->master_mem);
    free(tr->grad_mem);
    free(tr->m_mem);
    free(tr->v_mem);
    free(tr->lg);
    free(tr->acts);
    free(tr->act_mem);
    free(tr->scr_mem);
    free(tr->tokens);
    free(tr->rope_cos);
    free(tr->frozen.layers);
    memset(tr, 0, sizeof *tr);
}

rmu_tr_param *rmu_tr_find(rmu_tr *tr, const char *name) {
    for (int i = 0; i < tr->nparams; i++)
        if (!strcmp(tr->params[i].name, name)) return &tr->params[i];
    return NULL;
}

size_t rmu_tr_bytes(const rmu_tr *tr) {
    const rmu_config *c = &tr->m->cfg;
    size_t N = (size_t)tr->opts.max_batch * tr->opts.max_seq;
    int nsave = tr->save_hi >= tr->save_lo ? tr->save_hi - tr->save_lo + 1 : 0;
    size_t C = c->hidden_size, F = c->intermediate_size, H = c->n_heads, hd = c->head_dim;
    size_t qd = H * hd, kvd = (size_t)c->n_kv_heads * hd, T = tr->opts.max_seq;
    size_t scr = N * (5 * C + 2 * qd + 2 * kvd + H + 3 * F + 3) + (size_t)tr->nthreads * 2 * T +
                 (size_t)tr->lm_chunk * c->vocab_size;
    return 4 * (4 * tr->n_trainable + act_floats_per_layer(c, N) * nsave + scr + 5 * N);
}

int rmu_tr_set_batch(rmu_tr *tr, const int *tokens, const int *mask, int B, int T, rmu_err *e) {
    const rmu_config *c = &tr->m->cfg;
    if (B < 1 || B > tr->opts.max_batch)
        return rmu_errf(e, "batch of %d rows does not fit the trainer's %d", B, tr->opts.max_batch);
    if (T < 1 || T > tr->opts.max_seq)
        return rmu_errf(e, "batch of %d tokens per row exceeds the sequence length %d", T, tr->opts.max_seq);
    for (int b = 0; b < B; b++) {
        int seen_real = 0;
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            int id = tokens[i], mk = mask ? mask[i] : 1;
            if (id < 0 || id >= c->vocab_size)
                return rmu_errf(e, "batch row %d position %d: token id %d out of range [0, %d)", b, t, id,
                                c->vocab_size);
            if (mk != 0 && mk != 1) return rmu_errf(e, "batch row %d position %d: mask value %d is not 0 or 1", b, t, mk);
            if (mk) seen_real = 1;
            else if (seen_real)
                return rmu_errf(e, "batch row %d: padding after a real token at position %d (pad on the left)", b, t);
        }
    }
    tr->B = B;
    tr->T = T;
    tr->N = B * T;
    tr->n_targets = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            tr->tokens[i] = tokens[i];
            tr->mask[i] = mask ? mask[i] : 1;
            tr->pos[i] = t;
        }
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            int ok = t + 1 < T && tr->mask[i] && tr->mask[i + 1];
            tr->targets[i] = ok ? tr->tokens[i + 1] : -1;
            tr->n_targets += ok;
        }
    return 0;
}

void rmu_tr_zero_grad(rmu_tr *tr) { memset(tr->grad_mem, 0, sizeof(float) * tr->n_trainable); }

void rmu_tr_embed(rmu_tr *tr, int frozen, float *x_out) {
    rmu_embedding_forward(x_out, tr->tokens, tr->N, frozen ? &tr->frozen.embed : &tr->m->embed);
}

void rmu_tr_embed_backward(rmu_tr *tr, const float *dx) {
    if (!tr->g_embed) return;
    /* pad positions carry no loss: leave their rows out. As HF's nn.Embedding(padding_idx =
     * pad_token_id), the lookup sends no gradient to the pad token's row at all. */
    int pad = tr->m->cfg.pad_id;
    for (int i = 0; i < tr->N; i++) tr->emb_ids[i] = tr->mask[i] && tr->tokens[i] != pad ? tr->tokens[i] : -1;
    rmu_embedding_backward(tr->g_embed, dx, tr->emb_ids, tr->N, tr->m->cfg.hidden_size);
}

/* Precision of the products with weight w (live or frozen): the live model's setting, where
 * AUTO follows the checkpoint's dtype - a trainable BF16 tensor computes in bf16 from its
 * fp32 master (rounded while packing), so live == frozen while they hold the same values. */
static rmu_prec wprec(const rmu_tr *tr, const rmu_weight *w) {
    rmu_prec p = tr->m->precision;
    if (p != RMU_PREC_AUTO) return p;
    rmu_dtype dt = w->dtype;
    for (int i = 0; i < tr->nparams; i++)
        if (w->data == tr->params[i].master) dt = tr->params[i].orig_dtype;
    return dt == RMU_DT_BF16 ? RMU_PREC_BF16 : RMU_PREC_FP32;
}

/* One decoder layer in place on x[N, C]; a != NULL saves the activations there. */
static int layer_fwd(rmu_tr *tr, const rmu_layer *L, float *x, rmu_tr_acts *a, rmu_err *e) {
    const rmu_config *c = &tr->m->cfg;
    int N = tr->N, C = c->hidden_size, F = c->intermediate_size, H = c->n_heads, KV = c->n_kv_heads,
        hd = c->head_dim;
    float *rstd1 = a ? a->rstd1 : tr->s_rstd, *rstd2 = a ? a->rstd2 : tr->s_rstd;
    float *q = a ? a->q : tr->s_q, *k = a ? a->k : tr->s_k, *v = a ? a->v : tr->s_v;
    float *lse = a ? a->lse : tr->s_lse, *att = a ? a->att : tr->s_att;
    float *gate = a ? a->gate : tr->s_gate, *up = a ? a->up : tr->s_up;
    if (a) memcpy(a->x_in, x, sizeof(float) * N * C);
    rmu_rmsnorm_forward(tr->s_xb, rstd1, x, &L->attn_norm, N, C, c->rms_norm_eps);
    if (rmu_linear_forward(q, tr->s_xb, &L->wq, N, 0, wprec(tr, &L->wq), e)) return -1;
    if (rmu_linear_forward(k, tr->s_xb, &L->wk, N, 0, wprec(tr, &L->wk), e)) return -1;
    if (rmu_linear_forward(v, tr->s_xb, &L->wv, N, 0, wprec(tr, &L->wv), e)) return -1;
    rmu_rope_forward(q, tr->pos, N, H, hd, tr->rope_cos, tr->rope_sin);
    rmu_rope_forward(k, tr->pos, N, KV, hd, tr->rope_cos, tr->rope_sin);
    rmu_attention_forward(att, lse, q, k, v, tr->mask, tr->B, tr->T, H, KV, hd, c->sliding_window, tr->s_attn,
                          tr->nthreads);
    if (rmu_linear_forward(x, att, &L->wo, N, 1, wprec(tr, &L->wo), e)) return -1;
    if (a) memcpy(a->x_mid, x, sizeof(float) * N * C);
    rmu_rmsnorm_forward(tr->s_xb, rstd2, x, &L->mlp_norm, N, C, c->rms_norm_eps);
    if (rmu_linear_forward(gate, tr->s_xb, &L->w_gate, N, 0, wprec(tr, &L->w_gate), e)) return -1;
    if (rmu_linear_forward(up, tr->s_xb, &L->w_up, N, 0, wprec(tr, &L->w_up), e)) return -1;
    rmu_swiglu_forward(tr->s_h, gate, up, (size_t)N * F);
    if (rmu_linear_forward(x, tr->s_h, &L->w_down, N, 1, wprec(tr, &L->w_down), e)) return -1;
    return 0;
}

/* Backward of one layer: tr->s_dres holds dL/d(layer output) and becomes dL/d(layer
 * input) when need_dx; stops as soon as nothing below is needed. */
static int layer_bwd(rmu_tr *tr, int l, int need_dx, rmu_err *e) {
    const rmu_config *c = &tr->m->cfg;
    const rmu_layer *L = &tr->m->layers[l];
    const rmu_tr_lgrads *g = &tr->lg[l];
    const rmu_tr_acts *a = &tr->acts[l];
    int N = tr->N, C = c->hidden_size, F = c->intermediate_size, H = c->n_heads, KV = c->n_kv_heads,
        hd = c->head_dim;
    int need_qkv = need_dx || g->attn_norm || g->wq || g->wk || g->wv; /* grads below o_proj */
    int need_mid = need_qkv || g->wo;                                  /* dres at the block boundary */
    int need_mlp = need_mid || g->mlp_norm || g->w_gate || g->w_up;    /* grads below down_proj */
    float *dres = tr->s_dres;
    /* MLP block: x += down(swiglu(gate(n), up(n))), n = rmsnorm(x_mid) */
    if (g->w_down) rmu_swiglu_forward(tr->s_h, a->gate, a->up, (size_t)N * F);
    if (rmu_linear_backward(need_mlp ? tr->s_dh : NULL, 0, g->w_down, dres, tr->s_h, &L->w_down, N,
                            wprec(tr, &L->w_down), e)) return -1;
    if (!need_mlp) return 0;
    rmu_swiglu_backward(tr->s_dh, tr->s_dup, tr->s_dh, a->gate, a->up, (size_t)N * F);
    if (g->w_gate || g->w_up) rmu_rmsnorm_forward(tr->s_xb, NULL, a->x_mid, &L->mlp_norm, N, C, c->rms_norm_eps);
    int need_dn = need_mid || g->mlp_norm;
    if (rmu_linear_backward(need_dn ? tr->s_dxb : NULL, 0, g->w_gate, tr->s_dh, tr->s_xb, &L->w_gate, N,
                            wprec(tr, &L->w_gate), e)) return -1;
    if (rmu_linear_backward(need_dn ? tr->s_dxb : NULL, 1, g->w_up, tr->s_dup, tr->s_xb, &L->w_up, N,
                            wprec(tr, &L->w_up), e)) return -1;
    if (need_dn)
        rmu_rmsnorm_backward(need_mid ? dres : NULL, g->mlp_norm, tr->s_dxb, a->x_mid, a->rstd2, &L->mlp_norm, N, C);
    if (!need_mid) return 0;
    /* attention block: x += o(attn(rope(q(n)), rope(k(n)), v(n))), n = rmsnorm(x_in) */
    if (rmu_linear_backward(need_qkv ? tr->s_datt : NULL, 0, g->wo, dres, a->att, &L->wo, N,
                            wprec(tr, &L->wo), e)) return -1;
    if (!need_qkv) return 0;
    rmu_attention_backward(tr->s_dq, tr->s_dk, tr->s_dv, tr->s_datt, a->q, a->k, a->v, a->att, a->lse, tr->mask,
                           tr->B, tr->T, H, KV, hd, c->sliding_window, tr->s_attn, tr->nthreads);
    rmu_rope_backward(tr->s_dq, tr->pos, N, H, hd, tr->rope_cos, tr->rope_sin);
    rmu_rope_backward(tr->s_dk, tr->pos, N, KV, hd, tr->rope_cos, tr->rope_sin);
    if (g->wq || g->wk || g->wv) rmu_rmsnorm_forward(tr->s_xb, NULL, a->x_in, &L->attn_norm, N, C, c->rms_norm_eps);
    int need_dn1 = need_dx || g->attn_norm;
    float *dxb = need_dn1 ? tr->s_dxb : NULL;
    if (rmu_linear_backward(dxb, 0, g->wq, tr->s_dq, tr->s_xb, &L->wq, N, wprec(tr, &L->wq), e)) return -1;
    if (rmu_linear_backward(dxb, 1, g->wk, tr->s_dk, tr->s_xb, &L->wk, N, wprec(tr, &L->wk), e)) return -1;
    if (rmu_linear_backward(dxb, 1, g->wv, tr->s_dv, tr->s_xb, &L->wv, N, wprec(tr, &L->wv), e)) return -1;
    if (need_dn1)
        rmu_rmsnorm_backward(need_dx ? dres : NULL, g->attn_norm, tr->s_dxb, a->x_in, a->rstd1, &L->attn_norm, N, C);
    return 0;
}

static int check_range(const rmu_tr *tr, int l0, int l1, rmu_err *e) {
    if (!tr->N) return rmu_errf(e, "trainer: no batch set");
    if (l0 < 0 || l1 >= n_layers(tr))
        return rmu_errf(e, "trainer: layers %d..%d out of range [0, %d)", l0, l1, n_layers(tr));
    return 0;
}

static int forward_range(rmu_tr *tr, const rmu_model *m, const float *x_in, int l0, int l1, float *x_out, int save,
                         rmu_err *e) {
    size_t n = (size_t)tr->N * m->cfg.hidden_size;
    if (l1 < l0) {
        if (x_out != x_in) memmove(x_out, x_in, sizeof(float) * n);
        return 0;
    }
    if (check_range(tr, l0, l1, e)) return -1;
    if (save && (l0 < tr->save_lo || l1 > tr->save_hi))
        return rmu_errf(e, "trainer: activations of layers %d..%d are not kept (only %d..%d)", l0, l1, tr->save_lo,
                        tr->save_hi);
    if (x_out != x_in) memmove(x_out, x_in, sizeof(float) * n);
    for (int l = l0; l <= l1; l++)
        if (layer_fwd(tr, &m->layers[l], x_out, save ? &tr->acts[l] : NULL, e)) return -1;
    return 0;
}

int rmu_tr_forward_range(rmu_tr *tr, const float *x_in, int l0, int l1, float *x_out, int save, rmu_err *e) {
    return forward_range(tr, tr->m, x_in, l0, l1, x_out, save, e);
}

int rmu_tr_forward_range_frozen(rmu_tr *tr, const float *x_in, int l0, int l1, float *x_out, rmu_err *e) {
    return forward_range(tr, &tr->frozen, x_in, l0, l1, x_out, 0, e);
}

int rmu_tr_backward_range(rmu_tr *tr, const float *dx_out, int l1, int l0, float *dx_in, rmu_err *e) {
    if (check_range(tr, l0, l1, e)) return -1;
    if (l0 > l1) return rmu_errf(e, "trainer: backward from layer %d down to %d", l1, l0);
    if (l0 < tr->save_lo || l1 > tr->save_hi)
        return rmu_errf(e, "trainer: backward through layers %d..%d needs saved activations (kept: %d..%d)", l0, l1,
                        tr->save_lo, tr->save_hi);
    size_t n = (size_t)tr->N * tr->m->cfg.hidden_size;
    if (dx_out != tr->s_dres) memmove(tr->s_dres, dx_out, sizeof(float) * n);
    for (int l = l1; l >= l0; l--)
        if (layer_bwd(tr, l, l > l0 || dx_in, e)) return -1;
    if (dx_in && dx_in != tr->s_dres) memmove(dx_in, tr->s_dres, sizeof(float) * n);
    return 0;
}

int rmu_tr_lm_loss(rmu_tr *tr, const float *x, float *dx, double *loss, rmu_err *e) {
    if (!tr->N) return rmu_errf(e, "trainer: no batch set");
    if (!tr->lm_chunk) return rmu_errf(e, "trainer: made for a loss at layer %d, not the LM head", tr->opts.last_layer);
    const rmu_config *c = &tr->m->cfg;
    const rmu_model *m = tr->m;
    int N = tr->N, C = c->hidden_size, V = c->vocab_size;
    int nv = tr->n_targets;
    rmu_rmsnorm_forward(tr->s_xf, tr->s_rstdf, x, &m->final_norm, N, C, c->rms_norm_eps);
    float scale = nv ? 1.0f / nv : 0.0f;
    for (int r0 = 0; r0 < N; r0 += tr->lm_chunk) {
        int rows = N - r0 < tr->lm_chunk ? N - r0 : tr->lm_chunk, any = 0;
        for (int i = r0; i < r0 + rows; i++) any |= tr->targets[i] >= 0;
        if (!any) { /* all pad / last positions: no loss, no grad */
            memset(tr->s_losses + r0, 0, sizeof(float) * rows);
            if (dx) memset(tr->s_dxb + (size_t)r0 * C, 0, sizeof(float) * rows * C);
            continue;
        }
        const float *xf = tr->s_xf + (size_t)r0 * C;
        if (rmu_linear_forward(tr->s_logits, xf, &m->lm_head, rows, 0, wprec(tr, &m->lm_head), e)) return -1;
        rmu_crossentropy_forward(tr->s_losses + r0, tr->s_logits, tr->targets + r0, rows, V);
        if (!dx) continue;
        rmu_crossentropy_backward(tr->s_logits, tr->s_logits, tr->targets + r0, rows, V, scale);
        if (rmu_linear_backward(tr->s_dxb + (size_t)r0 * C, 0, tr->g_lm_head, tr->s_logits, xf, &m->lm_head, rows,
                                wprec(tr, &m->lm_head), e)) return -1;
    }
    double sum = 0;
    for (int i = 0; i < N; i++) sum += tr->s_losses[i];
    *loss = nv ? sum / nv : NAN;
    if (dx) {
        memset(dx, 0, sizeof(float) * N * C);
        rmu_rmsnorm_backward(dx, tr->g_final_norm, tr->s_dxb, x, tr->s_rstdf, &m->final_norm, N, C);
    }
    return 0;
}

/* mean(h^2) over the real tokens' channels, and its gradient. */
static double mse_loss(rmu_tr *tr, const float *h, float *dh) {
    int C = tr->m->cfg.hidden_size, nreal = 0;
    for (int i = 0; i < tr->N; i++) nreal += tr->mask[i];
    double denom = (double)nreal * C, sum = 0;
    for (int i = 0; i < tr->N; i++) {
        const float *r = h + (size_t)i * C;
        float *d = dh ? dh + (size_t)i * C : NULL;
        double s = 0;
        for (int j = 0; j < C; j++) s += (double)r[j] * r[j];
        if (tr->mask[i]) sum += s;
        if (d)
            for (int j = 0; j < C; j++) d[j] = tr->mask[i] ? (float)(2.0 * r[j] / denom) : 0.0f;
    }
    return nreal ? sum / denom : NAN;
}

static int run_loss(rmu_tr *tr, double *loss, int grads, rmu_err *e) {
    if (!tr->N) return rmu_errf(e, "trainer: no batch set");
    int L = last_layer(tr), lm = tr->opts.last_layer < 0;
    int save = grads && tr->save_lo <= tr->save_hi;
    int lo = save ? tr->save_lo : L + 1;
    rmu_tr_embed(tr, 0, tr->s_x);
    if (forward_range(tr, tr->m, tr->s_x, 0, lo - 1, tr->s_x, 0, e)) return -1;
    if (save && forward_range(tr, tr->m, tr->s_x, lo, L, tr->s_x, 1, e)) return -1;
    float *dx = grads ? tr->s_dres : NULL;
    if (lm) {
        if (rmu_tr_lm_loss(tr, tr->s_x, dx, loss, e)) return -1;
    } else {
        *loss = mse_loss(tr, tr->s_x, dx);
    }
    if (!save) return 0;
    int embed = tr->g_embed != NULL;
    if (rmu_tr_backward_range(tr, tr->s_dres, L, lo, embed ? tr->s_dres : NULL, e)) return -1;
    if (embed) rmu_tr_embed_backward(tr, tr->s_dres);
    return 0;
}

int rmu_tr_loss_and_grad(rmu_tr *tr, double *loss, rmu_err *e) { return run_loss(tr, loss, 1, e); }

int rmu_tr_loss(rmu_tr *tr, double *loss, rmu_err *e) { return run_loss(tr, loss, 0, e); }
