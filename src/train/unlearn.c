/* unlearn.c - RMU as the WMDP reference's rmu/unlearn.py, on the training engine (see
 * unlearn.h): options, corpora, batches, control vectors, the open / step / finish run. */
#include "train/unlearn.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/json.h"
#include "core/rng.h"
#include "core/util.h"
#include "core/version.h"
#include "io/hfdir.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/adamw.h"
#include "model/check.h"
#include "train/data.h"
#include "train/trainer.h"

void rmu_unl_defaults(rmu_unl_opts *o) {
    memset(o, 0, sizeof *o);
    o->layer_id = 7;
    o->layer_ids[0] = 5, o->layer_ids[1] = 6, o->layer_ids[2] = 7;
    o->n_layer_ids = 3;
    o->lr = 5e-5f;
    o->batch_size = 4;
    o->max_num_batches = 150;
    o->retain_max_len = 512;
    o->min_len = 0;
    o->seed = 42;
}

/* ---- corpora: the one reader (src/train/data.h) plus the reference's min_len filter */

typedef struct {
    rmu_data_docs d;
    char sha[65];
} corpus;

/* Characters as Python's len counts them: code points, not bytes. */
static size_t utf8_chars(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xc0) != 0x80;
    return k;
}

int rmu_unl_read_corpus(rmu_data_docs *d, const char *path, int min_len, char *sha_hex, rmu_err *e) {
    memset(d, 0, sizeof *d);
    if (rmu_data_read_file(d, path, "text", sha_hex, e)) {
        rmu_data_docs_free(d);
        return -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < d->n; i++) {
        if ((long)utf8_chars(d->text[i], d->len[i]) > min_len) {
            d->text[k] = d->text[i];
            d->len[k++] = d->len[i];
        } else {
            free(d->text[i]);
        }
    }
    d->n = k;
    return 0;
}

/* ---- one tokenised batch: texts [b*bs, b*bs+bs) of a corpus, BOS per tokenizer_config,
 * truncated on the right at max_len, LEFT padded with pad (HF tokenizer call with
 * padding=True, truncation=True, padding_side="left", pad_token = eos). */
typedef struct {
    int *tokens, *mask;
    int B, T, n_real;
} batch;

static int make_batch(batch *bt, const rmu_tokenizer *tok, const corpus *c, int b, int bs, int max_len, int pad,
                      rmu_err *e) {
    int n = (int)c->d.n, first = b * bs, B = n - first < bs ? n - first : bs;
    int *ids[RMU_UNL_MAX_TOPICS * 64], lens[RMU_UNL_MAX_TOPICS * 64];
    int T = 0;
    if (B > (int)(sizeof lens / sizeof lens[0])) return rmu_errf(e, "batch_size: %d is too large", bs);
    for (int i = 0; i < B; i++) {
        if (rmu_tok_encode(tok, c->d.text[first + i], c->d.len[first + i], rmu_tok_add_bos(tok), &ids[i], &lens[i], e)) {
            for (int j = 0; j < i; j++) free(ids[j]);
            return -1;
        }
        if (lens[i] > max_len) lens[i] = max_len;
        if (lens[i] > T) T = lens[i];
    }
    if (T == 0) T = 1;
    bt->B = B, bt->T = T, bt->n_real = 0;
    bt->tokens = malloc(sizeof(int) * B * T);
    bt->mask = malloc(sizeof(int) * B * T);
    if (!bt->tokens || !bt->mask) {
        for (int i = 0; i < B; i++) free(ids[i]);
        free(bt->tokens), free(bt->mask);
        return rmu_errf(e, "out of memory");
    }
    for (int i = 0; i < B; i++) {
        int p = T - lens[i];
        for (int t = 0; t < T; t++) {
            int real = t >= p;
            bt->tokens[i * T + t] = real ? ids[i][t - p] : pad;
            bt->mask[i * T + t] = real;
            bt->n_real += real;
        }
        free(ids[i]);
    }
    if (bt->n_real == 0) {
        free(bt->tokens), free(bt->mask);
        return rmu_errf(e, "batch %d encodes to no tokens", b);
    }
    return 0;
}

static void batch_free(batch *b) {
    free(b->tokens);
    free(b->mask);
    memset(b, 0, sizeof *b);
}

/* ---- activation statistics over real tokens */

/* mean over real tokens and dims of (h - ref)^2, ref either a [C] vector (stride 0) or
 * [N, C]; also fills dh = d(mean)/dh * scale (0 at pads). */
static double mse_and_grad(const float *h, const float *ref, int ref_is_vec, const int *mask, int N, int C,
                           int n_real, double scale, float *dh) {
    double tot = 0, inv = 1.0 / ((double)n_real * C);
    for (int n = 0; n < N; n++) {
        const float *hn = h + (size_t)n * C, *rn = ref_is_vec ? ref : ref + (size_t)n * C;
        float *dn = dh + (size_t)n * C;
        if (!mask[n]) {
            memset(dn, 0, sizeof(float) * C);
            continue;
        }
        double rowsum = 0;
        for (int i = 0; i < C; i++) {
            double d = (double)hn[i] - rn[i];
            rowsum += d * d;
            dn[i] = (float)(2.0 * d * inv * scale);
        }
        tot += rowsum;
    }
    return tot * inv;
}

/* Sums over real tokens of the per-token L2 norm (norm_sum) and of the cosine of a vs b
 * (cos_sum); *k gets the count. Sums, so ranks' shares add up; mean = sum / k. */
static double norm_sum(const float *h, const int *mask, int N, int C, int *k) {
    double s = 0;
    *k = 0;
    for (int n = 0; n < N; n++) {
        if (!mask[n]) continue;
        double q = 0;
        for (int i = 0; i < C; i++) q += (double)h[(size_t)n * C + i] * h[(size_t)n * C + i];
        s += sqrt(q);
        (*k)++;
    }
    return s;
}

static double mean_norm(const float *h, const int *mask, int N, int C) {
    int k;
    double s = norm_sum(h, mask, N, C, &k);
    return k ? s / k : 0;
}

static double cos_sum(const float *a, const float *b, const int *mask, int N, int C, int *k) {
    double s = 0;
    *k = 0;
    for (int n = 0; n < N; n++) {
        if (!mask[n]) continue;
        double ab = 0, aa = 0, bb = 0;
        for (int i = 0; i < C; i++) {
            double x = a[(size_t)n * C + i], y = b[(size_t)n * C + i];
            ab += x * y, aa += x * x, bb += y * y;
        }
        s += ab / fmax(sqrt(aa) * sqrt(bb), 1e-8); /* torch cosine_similarity's eps */
        (*k)++;
    }
    return s;
}

/* ---- control vectors */

/* u_t: entries uniform in [0,1), normalised to unit length (reference: torch.rand then
 * divide by the norm); scaled by the coefficient later. */
static void random_unit(float *u, int C, uint64_t seed, int topic) {
    uint64_t s = seed * 1000003ull + (uint64_t)topic * 7919ull + 1;
    double q = 0;
    for (int i = 0; i < C; i++) {
        u[i] = (float)((rmu_rng_next(&s) >> 40) * (1.0 / 16777216.0));
        q += (double)u[i] * u[i];
    }
    float inv = (float)(1.0 / sqrt(q));
    for (int i = 0; i < C; i++) u[i] *= inv;
}

static int split_path(const char *path, char *dir, size_t dcap, const char **base) {
    const char *sl = strrchr(path, '/');
    if (!sl) {
        snprintf(dir, dcap, ".");
        *base = path;
    } else {
        snprintf(dir, dcap, "%.*s", (int)(sl - path), path);
        if (!*dir) snprintf(dir, dcap, "/");
        *base = sl + 1;
    }
    return 0;
}

static int save_cvs(const char *path, const float *cv, int T, int C, rmu_err *e) {
    char dir[4096];
    const char *base;
    split_path(path, dir, sizeof dir, &base);
    rmu_st_out t = {.name = "control_vectors", .dtype = RMU_DT_F32, .ndim = 2, .shape = {T, C}, .data = cv, .shard = base};
    if (rmu_st_write_dir(dir, &t, 1, e)) return rmu_err_prefix(e, "save_cv_path");
    return 0;
}

static int load_cvs(const char *path, float *cv, int T, int C, rmu_err *e) {
    rmu_st_set s;
    if (rmu_st_open_file(&s, path, e)) return rmu_err_prefix(e, "load_cv_path");
    const rmu_st_tensor *t = rmu_st_get(&s, "control_vectors");
    int rc = 0;
    if (!t) rc = rmu_errf(e, "load_cv_path: %s: no tensor named control_vectors", path);
    else if (t->ndim != 2 || t->shape[0] != T || t->shape[1] != C)
        rc = rmu_errf(e, "load_cv_path: %s: control_vectors must be [%d, %d] (topics, hidden)", path, T, C);
    else rmu_to_f32(cv, t->data, t->dtype, (size_t)T * C);
    rmu_st_close(&s);
    return rc;
}

static json_t *batch_json(const batch *b) {
    json_t *ids = json_array(), *mask = json_array();
    for (int i = 0; i < b->B; i++) {
        json_t *ri = json_array(), *rm = json_array();
        for (int t = 0; t < b->T; t++) {
            json_array_append_new(ri, json_integer(b->tokens[i * b->T + t]));
            json_array_append_new(rm, json_integer(b->mask[i * b->T + t]));
        }
        json_array_append_new(ids, ri);
        json_array_append_new(mask, rm);
    }
    return json_pack("{s:o,s:o}", "input_ids", ids, "attention_mask", mask);
}

/* The batches each topic uses, in step order, for the PyTorch reference. */
static int dump_batches(const char *prefix, const rmu_tokenizer *tok, const corpus *fc, const corpus *rcp, int T,
                        int nsteps, int bs, const int *max_len, int rml, int pad, rmu_err *e) {
    for (int which = 0; which < 2; which++) {
        json_t *topics = json_array();
        for (int t = 0; t < T; t++) {
            json_t *list = json_array();
            for (int b = 0; b * T + t < nsteps; b++) {
                batch bt;
                if (make_batch(&bt, tok, which ? &rcp[t] : &fc[t], b, bs, which ? rml : max_len[t], pad, e)) {
                    json_decref(topics);
                    json_decref(list);
                    return -1;
                }
                json_array_append_new(list, batch_json(&bt));
                batch_free(&bt);
            }
            json_array_append_new(topics, list);
        }
        json_t *root = json_pack("{s:o}", "topics", topics);
        char path[4096];
        snprintf(path, sizeof path, "%s.%s.json", prefix, which ? "retain" : "forget");
        int rc = rmu_json_write_file(path, root, JSON_COMPACT, e);
        json_decref(root);
        if (rc) return -1;
    }
    return 0;
}

/* Which retain batch the cache holds: consecutive topics that share a retain corpus file
 * and length limit reuse its lower-layer activations and frozen activations. */
typedef struct {
    const char *path;
    int b, max_len, valid;
} rkey;

struct rmu_unl {
    rmu_unl_opts o;
    rmu_model m;
    int have_m, have_tr;
    rmu_tokenizer *tok;
    rmu_tr tr;
    corpus fc[RMU_UNL_MAX_TOPICS], rcp[RMU_UNL_MAX_TOPICS];
    float *cv, *x, *h, *hf, *dh, *xr, *hr;
    batch fb, rb;
    rkey key;
    FILE *logf;
    rmu_hf_lock *lock; /* on out_dir, from open to close */
    int T, L, l0, pad, nsteps, avail, rml, idx;
    float coeffs[RMU_UNL_MAX_TOPICS], alpha[RMU_UNL_MAX_TOPICS];
    int max_len[RMU_UNL_MAX_TOPICS];
    char params[4096];                             /* what was trained, for rmu_unlearn.json */
    char names[RMU_UNL_MAX_LAYERS][96];            /* down_proj of layer_ids */
    const char *name_ptr[RMU_UNL_MAX_LAYERS];
    double t0;
    rmu_unl_result r;
};

static int write_report(const rmu_unl *h, const char *dir, rmu_err *e) {
    const rmu_unl_opts *o = &h->o;
    const corpus *fc = h->fc, *rc_ = h->rcp;
    const float *coeffs = h->coeffs, *alpha = h->alpha;
    const int *max_len = h->max_len;
    int T = h->T;
    json_t *j = json_object(), *fa = json_array(), *ra = json_array(), *ca = json_array(), *aa = json_array(),
           *la = json_array(), *ml = json_array();
    for (int t = 0; t < T; t++) {
        json_array_append_new(fa, json_pack("{s:s,s:s,s:i}", "path", o->forget[t], "sha256", fc[t].sha, "texts", (int)fc[t].d.n));
        json_array_append_new(ra, json_pack("{s:s,s:s,s:i}", "path", o->retain[t], "sha256", rc_[t].sha, "texts", (int)rc_[t].d.n));
        json_array_append_new(ca, json_real(coeffs[t]));
        json_array_append_new(aa, json_real(alpha[t]));
        json_array_append_new(ml, json_integer(max_len[t]));
    }
    for (int i = 0; i < o->n_layer_ids; i++) json_array_append_new(la, json_integer(o->layer_ids[i]));
    json_object_set_new(j, "method", json_string("RMU (Li et al. 2024, WMDP); rmu " RMU_VERSION));
    json_object_set_new(j, "model", json_string(o->model_dir));
    json_object_set_new(j, "forget_corpora", fa);
    json_object_set_new(j, "retain_corpora", ra);
    json_object_set_new(j, "layer_id", json_integer(o->layer_id));
    json_object_set_new(j, "layer_ids", la);
    json_object_set_new(j, "params", json_string(h->params));
    json_object_set_new(j, "steering_coeffs", ca);
    json_object_set_new(j, "adaptive_beta", o->adaptive_beta > 0 ? json_real(o->adaptive_beta) : json_null());
    json_object_set_new(j, "control_vectors", o->load_cv_path ? json_string(o->load_cv_path) : json_string("random (seeded)"));
    json_object_set_new(j, "alpha", aa);
    json_object_set_new(j, "lr", json_real(o->lr));
    json_object_set_new(j, "adamw", json_pack("{s:s,s:[f,f],s:f,s:f}", "variant",
                                              o->torch_adamw ? "torch.optim.AdamW" : "transformers.AdamW", "betas", 0.9,
                                              0.999, "eps", 1e-6, "weight_decay", 0.0));
    json_object_set_new(j, "batch_size", json_integer(o->batch_size));
    json_object_set_new(j, "max_num_batches", json_integer(o->max_num_batches));
    json_object_set_new(j, "batches_available", json_integer(h->avail));
    json_object_set_new(j, "max_len", ml);
    json_object_set_new(j, "retain_max_len", json_integer(o->retain_max_len));
    json_object_set_new(j, "min_len", json_integer(o->min_len));
    json_object_set_new(j, "seed", json_integer((json_int_t)o->seed));
    json_object_set_new(j, "padding", json_string("left, with eos; padded positions excluded from both losses "
                                                  "(the reference averages over them)"));
    json_object_set_new(j, "steps", json_integer(h->r.steps));
    json_object_set_new(j, "final_unlearn_loss", json_real(h->r.final_unlearn_loss));
    json_object_set_new(j, "final_retain_loss", json_real(h->r.final_retain_loss));
    json_object_set_new(j, "seconds", json_real(h->r.seconds));
    char path[8192];
    int rc = rmu_path_join(path, sizeof path, dir, "rmu_unlearn.json", e);
    if (!rc) rc = rmu_json_write_file(path, j, JSON_INDENT(2) | JSON_PRESERVE_ORDER, e);
    json_decref(j);
    return rc;
}

/* ---- the run */

/* The options that need no model. */
static int check_opts(rmu_unl *h, rmu_err *e) {
    const rmu_unl_opts *o = &h->o;
    int T = o->n_forget;
    if (!o->model_dir) return rmu_errf(e, "model_dir: required");
    if (T < 1) return rmu_errf(e, "forget: at least one forget corpus is needed");
    if (T > RMU_UNL_MAX_TOPICS) return rmu_errf(e, "forget: at most %d corpora", RMU_UNL_MAX_TOPICS);
    if (o->n_retain != T)
        return rmu_errf(e, "retain: %d corpora given for %d forget corpora (one retain corpus per topic)", o->n_retain, T);
    if (o->n_steer && o->n_steer != T) return rmu_errf(e, "steer: %d values given for %d forget corpora", o->n_steer, T);
    if (o->n_alpha && o->n_alpha != T) return rmu_errf(e, "alpha: %d values given for %d forget corpora", o->n_alpha, T);
    if (o->n_max_len && o->n_max_len != T)
        return rmu_errf(e, "max_len: %d values given for %d forget corpora", o->n_max_len, T);
    if (o->batch_size < 1) return rmu_errf(e, "batch_size: must be >= 1");
    if (o->max_num_batches < 1) return rmu_errf(e, "max_num_batches: must be >= 1");
    if (!(o->lr > 0)) return rmu_errf(e, "lr: must be > 0");
    if (o->retain_max_len < 1) return rmu_errf(e, "retain_max_len: must be >= 1");
    if (!o->params && (o->n_layer_ids < 1 || o->n_layer_ids > RMU_UNL_MAX_LAYERS))
        return rmu_errf(e, "layer_ids: 1..%d layers needed", RMU_UNL_MAX_LAYERS);
    /* fail now rather than after the run: out_dir must be writable as a whole, and ours (rank 0
     * alone writes it, so it alone locks it) */
    if (o->out_dir && rmu_dist_root(o->dist) && !(h->lock = rmu_hf_lock_take(o->out_dir, e)))
        return rmu_err_prefix(e, "out_dir");
    if (o->out_dir && rmu_dist_root(o->dist) &&
        rmu_hf_check_out(o->out_dir, o->model_dir, o->overwrite ? RMU_HF_REPLACE : 0, e)) {
        if (strstr(e->msg, "already exists and is not empty"))
            rmu_errf(e, "%s already exists; pass option overwrite to replace it or choose another folder", o->out_dir);
        return rmu_err_prefix(e, "out_dir");
    }
    h->T = T;
    for (int t = 0; t < T; t++) {
        h->coeffs[t] = o->n_steer ? o->steer[t] : 6.5f;
        h->alpha[t] = o->n_alpha ? o->alpha[t] : 1200.0f;
        h->max_len[t] = o->n_max_len ? o->max_len[t] : (t == 0 ? 512 : 768);
        if (h->max_len[t] < 1) return rmu_errf(e, "max_len: must be >= 1");
    }
    return 0;
}

/* Trainable tensors: down_proj of layer_ids (bounds checked here, once), or the patterns. */
static int select_trainable(rmu_unl *h, rmu_tr_opts *to, rmu_err *e) {
    const rmu_unl_opts *o = &h->o;
    int nl = h->m.cfg.n_layers;
    if (o->params) {
        snprintf(h->params, sizeof h->params, "%s", o->params);
        to->trainable = o->params;
        to->field = "params";
        return 0;
    }
    size_t k = 0;
    for (int i = 0; i < o->n_layer_ids; i++) {
        int l = o->layer_ids[i];
        if (l < 0 || l >= nl)
            return rmu_errf(e, "layer_ids: %d is out of range for a model with %d layers (0..%d)", l, nl, nl - 1);
        if (l > h->L)
            return rmu_errf(e, "layer_ids: layer %d is above layer_id %d, so no gradient reaches it", l, h->L);
        snprintf(h->names[i], sizeof h->names[i], "model.layers.%d.mlp.down_proj.weight", l);
        h->name_ptr[i] = h->names[i];
        k += (size_t)snprintf(h->params + k, sizeof h->params - k, "%s%s", i ? "," : "", h->names[i]);
        if (k >= sizeof h->params) k = sizeof h->params - 1;
    }
    to->names = h->name_ptr;
    to->n_names = o->n_layer_ids;
    to->field = "layer_ids";
    return 0;
}

/* Corpora and the number of steps, as the reference: the fewest batches over all corpora. */
static int load_corpora(rmu_unl *h, rmu_err *e) {
    const rmu_unl_opts *o = &h->o;
    int nb = o->max_num_batches;
    for (int t = 0; t < h->T; t++) {
        if (rmu_unl_read_corpus(&h->fc[t].d, o->forget[t], o->min_len, h->fc[t].sha, e))
            return rmu_err_prefix(e, "forget");
        if (rmu_unl_read_corpus(&h->rcp[t].d, o->retain[t], o->min_len, h->rcp[t].sha, e))
            return rmu_err_prefix(e, "retain");
        const corpus *cs[2] = {&h->fc[t], &h->rcp[t]};
        const char *ps[2] = {o->forget[t], o->retain[t]};
        for (int k = 0; k < 2; k++) {
            int n = (int)cs[k]->d.n;
            if (n < o->batch_size)
                return rmu_errf(e, "%s: %d texts (after dropping those of <= %d characters), fewer than one batch of %d",
                                ps[k], n, o->min_len, o->batch_size);
            int nbk = (n + o->batch_size - 1) / o->batch_size;
            if (nbk < nb) nb = nbk;
        }
    }
    h->avail = nb;
    h->nsteps = nb < o->max_num_batches ? nb : o->max_num_batches;
    return 0;
}

/* c_t u_t per topic: loaded, or random unit vectors times fixed or adaptive coefficients. */
static int make_control_vectors(rmu_unl *h, rmu_err *e) {
    const rmu_unl_opts *o = &h->o;
    int T = h->T, C = h->m.cfg.hidden_size, L = h->L;
    float *cv = h->cv;
    if (o->load_cv_path) {
        if (load_cvs(o->load_cv_path, cv, T, C, e)) return -1;
        for (int t = 0; t < T; t++) {
            double q = 0;
            for (int i = 0; i < C; i++) q += (double)cv[t * C + i] * cv[t * C + i];
            h->coeffs[t] = (float)sqrt(q);
        }
        return 0;
    }
    if (o->adaptive_beta > 0) {
        /* Adaptive RMU: beta x mean per-token norm of the frozen layer_id activations over
         * the forget batches this run will use (each rank its rows; the sums added up) */
        double sk[2 * RMU_UNL_MAX_TOPICS] = {0};
        int rc = 0;
        for (int t = 0; t < T && !rc; t++) {
            for (int b = 0; b * T + t < h->nsteps && !rc; b++) {
                batch fb;
                if ((rc = make_batch(&fb, h->tok, &h->fc[t], b, o->batch_size, h->max_len[t], h->pad, e))) break;
                long lo, hi;
                rmu_dist_split(fb.B, o->dist, &lo, &hi);
                const int *mk = fb.mask + lo * fb.T;
                int N = (int)(hi - lo) * fb.T, nr = 0;
                for (int i = 0; i < N; i++) nr += mk[i];
                if (hi > lo) rc = rmu_tr_set_batch(&h->tr, fb.tokens + lo * fb.T, mk, (int)(hi - lo), fb.T, e);
                if (!rc && hi > lo) {
                    rmu_tr_embed(&h->tr, 1, h->x);
                    rc = rmu_tr_forward_range_frozen(&h->tr, h->x, 0, L, h->hf, e);
                }
                if (!rc && hi > lo) {
                    sk[2 * t] += mean_norm(h->hf, mk, N, C) * nr;
                    sk[2 * t + 1] += nr;
                }
                batch_free(&fb);
            }
        }
        if (rmu_dist_agree(o->dist, rc, e) || rmu_dist_sum_f64(o->dist, sk, 2 * (size_t)T, e)) return -1;
        for (int t = 0; t < T; t++) h->coeffs[t] = (float)(o->adaptive_beta * (sk[2 * t + 1] ? sk[2 * t] / sk[2 * t + 1] : 0));
    }
    for (int t = 0; t < T; t++) {
        random_unit(cv + (size_t)t * C, C, o->seed, t);
        for (int i = 0; i < C; i++) cv[(size_t)t * C + i] *= h->coeffs[t];
    }
    return 0;
}

/* What every rank does alone: options, model, tokenizer, corpora, trainer, buffers. */
static int open_local(rmu_unl *h, rmu_err *e) {
    const rmu_unl_opts *o = &h->o;
    if (check_opts(h, e) || rmu_model_open(&h->m, o->model_dir, e)) return -1;
    rmu_model_set_precision(&h->m, o->precision);
    h->have_m = 1;
    int nl = h->m.cfg.n_layers, C = h->m.cfg.hidden_size;
    if (h->L < 0 || h->L >= nl)
        return rmu_errf(e, "layer_id: %d is out of range for a model with %d layers (0..%d)", h->L, nl, nl - 1);
    rmu_tr_opts to = {.max_batch = o->batch_size, .last_layer = h->L};
    if (select_trainable(h, &to, e)) return -1;
    if (!(h->tok = rmu_tok_load(o->model_dir, e)) || rmu_check_tokenizer(&h->m, h->tok, e)) return -1;
    h->pad = rmu_tok_eos_id(h->tok) >= 0 ? rmu_tok_eos_id(h->tok) : h->m.cfg.eos_id;
    if (h->pad < 0) return rmu_errf(e, "%s: no eos token to pad with", o->model_dir);
    if (load_corpora(h, e)) return -1;
    int Tmax = o->retain_max_len;
    for (int t = 0; t < h->T; t++)
        if (h->max_len[t] > Tmax) Tmax = h->max_len[t];
    if (Tmax > h->m.cfg.max_position_embeddings) Tmax = h->m.cfg.max_position_embeddings;
    to.max_seq = Tmax;
    if (rmu_tr_init(&h->tr, &h->m, &to, e)) return -1;
    h->have_tr = 1;
    for (int i = 0; i < h->tr.nparams; i++)
        if (h->tr.params[i].layer > h->L || h->tr.params[i].layer < 0)
            return rmu_errf(e, "params: %s is not inside layers 0..%d, so the RMU loss gives it no gradient",
                            h->tr.params[i].name, h->L);
    h->l0 = h->tr.lowest_trainable;
    size_t NC = (size_t)o->batch_size * Tmax * C;
    h->cv = malloc(sizeof(float) * h->T * C);
    h->x = malloc(sizeof(float) * NC), h->h = malloc(sizeof(float) * NC), h->hf = malloc(sizeof(float) * NC);
    h->dh = malloc(sizeof(float) * NC), h->xr = malloc(sizeof(float) * NC), h->hr = malloc(sizeof(float) * NC);
    if (!h->cv || !h->x || !h->h || !h->hf || !h->dh || !h->xr || !h->hr) return rmu_errf(e, "out of memory");
    for (int t = 0; t < h->T; t++) /* clamp lengths to the model's positions */
        if (h->max_len[t] > Tmax) h->max_len[t] = Tmax;
    h->rml = o->retain_max_len < Tmax ? o->retain_max_len : Tmax;
    return 0;
}

/* Several ranks must have read the same corpora and settled on the same run. */
static int same_inputs(const rmu_unl *h, rmu_err *e) {
    uint64_t x = RMU_FNV_INIT;
    for (int t = 0; t < h->T; t++) {
        x = rmu_fnv1a(x, h->fc[t].sha, sizeof h->fc[t].sha);
        x = rmu_fnv1a(x, h->rcp[t].sha, sizeof h->rcp[t].sha);
        x = rmu_fnv1a(x, &h->fc[t].d.n, sizeof h->fc[t].d.n);
        x = rmu_fnv1a(x, &h->rcp[t].d.n, sizeof h->rcp[t].d.n);
    }
    int v[6] = {h->T, h->L, h->nsteps, h->o.batch_size, h->rml, (int)h->tr.n_trainable};
    x = rmu_fnv1a(x, v, sizeof v);
    x = rmu_fnv1a(x, h->params, strlen(h->params));
    return rmu_dist_same(h->o.dist, x, "corpora or settings", e);
}

/* What rank 0 alone writes at the start: control vectors, batch dumps, the log. */
static int open_outputs(rmu_unl *h, rmu_err *e) {
    const rmu_unl_opts *o = &h->o;
    if (o->save_cv_path && save_cvs(o->save_cv_path, h->cv, h->T, h->m.cfg.hidden_size, e)) return -1;
    if (o->dump_batches && dump_batches(o->dump_batches, h->tok, h->fc, h->rcp, h->T, h->nsteps, o->batch_size,
                                        h->max_len, h->rml, h->pad, e))
        return -1;
    if (o->log_path && !(h->logf = fopen(o->log_path, "w")))
        return rmu_errf(e, "log_path: %s: cannot create: %s", o->log_path, strerror(errno));
    return 0;
}

rmu_unl *rmu_unl_open(const rmu_unl_opts *o, rmu_err *e) {
    rmu_unl *h = calloc(1, sizeof *h);
    if (!h) {
        rmu_errf(e, "out of memory");
        return NULL;
    }
    h->o = *o;
    h->L = o->layer_id;
    const rmu_dist *d = o->dist;
    /* every step that can fail on one rank only is agreed on before the next collective */
    if (rmu_dist_agree(d, open_local(h, e), e) || same_inputs(h, e) ||
        rmu_dist_agree(d, make_control_vectors(h, e), e) ||
        rmu_dist_agree(d, rmu_dist_root(d) ? open_outputs(h, e) : 0, e)) {
        rmu_unl_close(h);
        return NULL;
    }
    memcpy(h->r.coeffs, h->coeffs, sizeof h->coeffs);
    h->t0 = rmu_now_s();
    return h;
}

/* What a step adds up over ranks: the two losses (before alpha), and the sums and counts the
 * log's means are made of. */
enum { A_UNL, A_RET, A_NUF, A_NFF, A_CF, A_KF, A_NUR, A_CR, A_KR, A_N };

/* This rank's share of step (topic t, batch b): forward and backward of its rows of the
 * forget batch, then of the retain batch; gradients accumulate in the trainer. */
static int step_local(rmu_unl *h, int t, int b, int logging, double *acc, rmu_err *e) {
    const rmu_unl_opts *o = &h->o;
    rmu_tr *tr = &h->tr;
    int L = h->L, l0 = h->l0, C = h->m.cfg.hidden_size, k;
    batch *fb = &h->fb, *rb = &h->rb;
    long lo, hi;
    /* forget: h_upd vs the control vector */
    batch_free(fb);
    if (make_batch(fb, h->tok, &h->fc[t], b, o->batch_size, h->max_len[t], h->pad, e)) return -1;
    rmu_dist_split(fb->B, o->dist, &lo, &hi);
    if (hi > lo) {
        const int *mk = fb->mask + lo * fb->T;
        int N = (int)(hi - lo) * fb->T;
        if (rmu_tr_set_batch(tr, fb->tokens + lo * fb->T, mk, (int)(hi - lo), fb->T, e)) return -1;
        rmu_tr_embed(tr, 0, h->x);
        if (rmu_tr_forward_range(tr, h->x, 0, l0 - 1, h->x, 0, e)) return -1;
        if (logging && rmu_tr_forward_range_frozen(tr, h->x, l0, L, h->hf, e)) return -1;
        if (rmu_tr_forward_range(tr, h->x, l0, L, h->h, 1, e)) return -1;
        /* divided by the whole batch's real tokens: the ranks' shares add up to the mean */
        acc[A_UNL] = mse_and_grad(h->h, h->cv + (size_t)t * C, 1, mk, N, C, fb->n_real, 1.0, h->dh);
        if (logging) {
            acc[A_NUF] = norm_sum(h->h, mk, N, C, &k);
            acc[A_NFF] = norm_sum(h->hf, mk, N, C, &k);
            acc[A_CF] = cos_sum(h->h, h->hf, mk, N, C, &k);
            acc[A_KF] = k;
        }
        if (rmu_tr_backward_range(tr, h->dh, L, l0, NULL, e)) return -1;
    }
    batch_free(fb);
    /* retain: h_upd vs h_frozen, alpha-weighted */
    int reuse = h->key.valid && h->key.b == b && h->key.max_len == h->rml && !strcmp(h->key.path, o->retain[t]);
    if (!reuse) {
        batch_free(rb);
        h->key.valid = 0;
        if (make_batch(rb, h->tok, &h->rcp[t], b, o->batch_size, h->rml, h->pad, e)) return -1;
    }
    rmu_dist_split(rb->B, o->dist, &lo, &hi);
    if (hi > lo) {
        const int *mk = rb->mask + lo * rb->T;
        int N = (int)(hi - lo) * rb->T;
        if (rmu_tr_set_batch(tr, rb->tokens + lo * rb->T, mk, (int)(hi - lo), rb->T, e)) return -1;
        if (!reuse) {
            rmu_tr_embed(tr, 0, h->xr);
            if (rmu_tr_forward_range(tr, h->xr, 0, l0 - 1, h->xr, 0, e) ||
                rmu_tr_forward_range_frozen(tr, h->xr, l0, L, h->hr, e))
                return -1;
        }
        if (rmu_tr_forward_range(tr, h->xr, l0, L, h->h, 1, e)) return -1;
        acc[A_RET] = mse_and_grad(h->h, h->hr, 0, mk, N, C, rb->n_real, h->alpha[t], h->dh);
        if (logging) {
            acc[A_NUR] = norm_sum(h->h, mk, N, C, &k);
            acc[A_CR] = cos_sum(h->h, h->hr, mk, N, C, &k);
            acc[A_KR] = k;
        }
        if (rmu_tr_backward_range(tr, h->dh, L, l0, NULL, e)) return -1;
    }
    if (!reuse) h->key = (rkey){o->retain[t], b, h->rml, 1};
    return 0;
}

static double ratio(double s, double k) { return k ? s / k : 0; }

int rmu_unl_step(rmu_unl *h, rmu_unl_report *st, rmu_err *e) {
    if (h->idx >= h->nsteps) return 0;
    const rmu_unl_opts *o = &h->o;
    const rmu_dist *d = o->dist;
    rmu_tr *tr = &h->tr;
    int idx = h->idx, t = idx % h->T, b = idx / h->T;
    int logging = o->log_path != NULL; /* on every rank: the log's means need every rank's sums */
    *st = (rmu_unl_report){.step = idx + 1, .nsteps = h->nsteps, .topic = t};
    double acc[A_N] = {0};
    rmu_tr_zero_grad(tr);
    if (rmu_dist_agree(d, step_local(h, t, b, logging, acc, e), e) || rmu_dist_sum_f64(d, acc, A_N, e) ||
        rmu_dist_sum_f32(d, tr->grad_mem, tr->n_trainable, e))
        return -1;
    st->unlearn_loss = acc[A_UNL];
    st->retain_loss = h->alpha[t] * acc[A_RET];
    if (logging) {
        st->norm_upd_forget = ratio(acc[A_NUF], acc[A_KF]);
        st->norm_frozen_forget = ratio(acc[A_NFF], acc[A_KF]);
        st->cos_forget = ratio(acc[A_CF], acc[A_KF]);
        st->norm_upd_retain = ratio(acc[A_NUR], acc[A_KR]);
        st->cos_retain = ratio(acc[A_CR], acc[A_KR]);
    }
    if (!isfinite(st->unlearn_loss) || !isfinite(st->retain_loss))
        return rmu_errf(e, "step %d: loss is not finite (unlearn %g, retain %g); nothing was written", idx + 1,
                        st->unlearn_loss, st->retain_loss);
    rmu_adamw_cfg ac = {.lr = o->lr, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-6, .weight_decay = 0};
    for (int i = 0; i < tr->nparams; i++) {
        rmu_tr_param *p = &tr->params[i];
        if (o->torch_adamw) rmu_adamw_update(p->master, p->grad, p->m, p->v, p->numel, idx + 1, o->lr, &ac);
        else rmu_adamw_hf_update(p->master, p->grad, p->m, p->v, p->numel, idx + 1, o->lr, &ac);
    }
    st->seconds = rmu_now_s() - h->t0;
    h->r.steps = idx + 1;
    h->r.final_unlearn_loss = st->unlearn_loss;
    h->r.final_retain_loss = st->retain_loss;
    h->r.seconds = st->seconds;
    int rc = 0;
    if (h->logf) {
        fprintf(h->logf,
                "{\"step\": %d, \"topic\": %d, \"unlearn_loss\": %.9g, \"retain_loss\": %.9g, "
                "\"updated_forget_norm\": %.6g, \"frozen_forget_norm\": %.6g, \"updated_retain_norm\": %.6g, "
                "\"forget_cosine\": %.6g, \"retain_cosine\": %.6g, \"seconds\": %.3f}\n",
                st->step, t, st->unlearn_loss, st->retain_loss, st->norm_upd_forget, st->norm_frozen_forget,
                st->norm_upd_retain, st->cos_forget, st->cos_retain, st->seconds);
        if (fflush(h->logf) != 0) rc = rmu_errf(e, "log_path: %s: write failed: %s", o->log_path, strerror(errno));
    }
    if (rmu_dist_agree(d, rc, e)) return -1;
    h->idx = idx + 1;
    return 1;
}

int rmu_unl_nsteps(const rmu_unl *h) { return h->nsteps; }
void rmu_unl_result_get(const rmu_unl *h, rmu_unl_result *r) { *r = h->r; }
rmu_model *rmu_unl_model(rmu_unl *h) { return &h->m; }

/* The output folder (rank 0): input files, the updated tensors, rmu_unlearn.json. */
static int write_out(const rmu_unl *h, const char *out_dir, rmu_err *e) {
    const rmu_unl_opts *o = &h->o;
    rmu_hf_opts ho = {.in_dir = o->model_dir, .in_st = &h->m.st, .flags = o->overwrite ? RMU_HF_REPLACE : 0,
                      .cancel = o->cancel};
    rmu_hf *w = rmu_hf_open(out_dir, &ho, e);
    if (!w) return rmu_err_prefix(e, "out_dir");
    int rc = 0;
    for (int i = 0; i < h->tr.nparams && !rc; i++)
        rc = rmu_hf_set_data(w, h->tr.params[i].name, h->tr.params[i].master, RMU_DT_F32, e);
    if (rc || write_report(h, rmu_hf_dir(w), e)) {
        rmu_hf_abort(w);
        return -1;
    }
    return rmu_hf_commit(w, e);
}

int rmu_unl_finish(rmu_unl *h, const char *out_dir, rmu_unl_result *r, rmu_err *e) {
    const rmu_unl_opts *o = &h->o;
    if (!out_dir) out_dir = o->out_dir;
    if (!out_dir) return rmu_errf(e, "out_dir: required");
    if (rmu_dist_agree(o->dist, rmu_dist_root(o->dist) ? write_out(h, out_dir, e) : 0, e)) return -1;
    if (r) *r = h->r;
    return 0;
}

void rmu_unl_close(rmu_unl *h) {
    if (!h) return;
    if (h->logf) fclose(h->logf);
    rmu_hf_lock_release(h->lock);
    batch_free(&h->fb);
    batch_free(&h->rb);
    free(h->cv), free(h->x), free(h->h), free(h->hf), free(h->dh), free(h->xr), free(h->hr);
    for (int t = 0; t < RMU_UNL_MAX_TOPICS; t++) rmu_data_docs_free(&h->fc[t].d), rmu_data_docs_free(&h->rcp[t].d);
    if (h->have_tr) rmu_tr_free(&h->tr);
    rmu_tok_free(h->tok);
    if (h->have_m) rmu_model_free(&h->m);
    free(h);
}

/* The cancel flag, agreed: ranks may see a signal at different steps, and one leaving alone
 * would leave the others waiting in the next step's allreduce. */
static int cancelled(const rmu_unl *h, rmu_err *e) {
    int c = h->o.cancel && *h->o.cancel ? rmu_errf(e, "interrupted at step %d of %d", h->idx, h->nsteps) : 0;
    return rmu_dist_agree(h->o.dist, c, e);
}

int rmu_unl_run(const rmu_unl_opts *o, rmu_unl_progress cb, void *ud, rmu_unl_result *r, rmu_err *e) {
    memset(r, 0, sizeof *r);
    if (!o->out_dir) return rmu_errf(e, "out_dir: required");
    rmu_unl *h = rmu_unl_open(o, e);
    if (!h) return -1;
    rmu_unl_report st;
    int k;
    while ((k = cancelled(h, e) ? -1 : rmu_unl_step(h, &st, e)) > 0)
        if (cb) cb(ud, &st);
    int rc = k == 0 ? rmu_unl_finish(h, NULL, r, e) : -1;
    rmu_unl_close(h);
    return rc;
}
