/* ablate.c - directions of the unlearning shift and their removal from the weights that
 * write to the residual stream (see ablate.h). */
#include "attack/ablate.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/json.h"
#include "core/util.h"
#include "io/hfdir.h"
#include "io/safetensors.h"
#include "model/check.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/ckpt.h"
#include "train/data.h"

void rmu_ablate_defaults(rmu_ablate_opts *o) {
    memset(o, 0, sizeof *o);
    o->k = 1;
    o->max_texts = 64;
    o->max_len = 512;
}

void rmu_ablate_result_free(rmu_ablate_result *r) {
    free(r->dirs), free(r->sigma), free(r->explained), free(r->row_norm), free(r->row_share);
    free(r->base), free(r->unlearned), free(r->ablated);
    rmu_report_free(&r->rep);
    memset(r, 0, sizeof *r);
}

/* ---- linear algebra (double) */

/* Cyclic Jacobi on the symmetric A [n, n] (destroyed): eigenvalues w[n] (diagonal at the
 * end), eigenvectors in the columns of V [n, n]. Each rotation J (c, s in the (p, q) plane)
 * zeroes A[p][q]: A <- J^T A J, V <- V J. */
static void jacobi(double *A, int n, double *w, double *V) {
    for (int i = 0; i < n * n; i++) V[i] = 0;
    for (int i = 0; i < n; i++) V[i * n + i] = 1;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, diag = 0;
        for (int p = 0; p < n; p++) {
            diag += A[p * n + p] * A[p * n + p];
            for (int q = p + 1; q < n; q++) off += A[p * n + q] * A[p * n + q];
        }
        if (off <= 1e-30 * diag || off == 0) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                double apq = A[p * n + q];
                if (apq == 0) continue;
                double th = (A[q * n + q] - A[p * n + p]) / (2 * apq);
                double t = (th >= 0 ? 1.0 : -1.0) / (fabs(th) + sqrt(th * th + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < n; k++) { /* columns: A J */
                    double akp = A[k * n + p], akq = A[k * n + q];
                    A[k * n + p] = c * akp - s * akq;
                    A[k * n + q] = s * akp + c * akq;
                }
                for (int k = 0; k < n; k++) { /* rows: J^T (A J) */
                    double apk = A[p * n + k], aqk = A[q * n + k];
                    A[p * n + k] = c * apk - s * aqk;
                    A[q * n + k] = s * apk + c * aqk;
                }
                for (int k = 0; k < n; k++) {
                    double vkp = V[k * n + p], vkq = V[k * n + q];
                    V[k * n + p] = c * vkp - s * vkq;
                    V[k * n + q] = s * vkp + c * vkq;
                }
            }
    }
    for (int i = 0; i < n; i++) w[i] = A[i * n + i];
}

int rmu_ablate_orthonormalize(double *v, int k, int c, rmu_err *e) {
    for (int i = 0; i < k; i++) {
        double *a = v + (size_t)i * c;
        double n0 = 0;
        for (int x = 0; x < c; x++) n0 += a[x] * a[x];
        for (int pass = 0; pass < 2; pass++) /* twice: classical Gram-Schmidt's lost orthogonality */
            for (int j = 0; j < i; j++) {
                const double *b = v + (size_t)j * c;
                double d = 0;
                for (int x = 0; x < c; x++) d += a[x] * b[x];
                for (int x = 0; x < c; x++) a[x] -= d * b[x];
            }
        double nn = 0;
        for (int x = 0; x < c; x++) nn += a[x] * a[x];
        if (!(nn > 1e-20 * n0) || !(n0 > 0))
            return rmu_errf(e, "direction %d is zero or a combination of the ones before it", i + 1);
        nn = sqrt(nn);
        for (int x = 0; x < c; x++) a[x] /= nn;
    }
    return 0;
}

int rmu_ablate_top_dirs(const double *M, int n, int c, int k, double *out, double *sigma, rmu_err *e) {
    if (k < 1 || k > n) return rmu_errf(e, "k: %d directions asked from %d difference vectors", k, n);
    double *G = malloc(sizeof(double) * (size_t)n * n), *V = malloc(sizeof(double) * (size_t)n * n);
    double *w = malloc(sizeof(double) * (size_t)n);
    int *ord = malloc(sizeof(int) * (size_t)n), rc = 0;
    if (!G || !V || !w || !ord) {
        free(G), free(V), free(w), free(ord);
        return rmu_errf(e, "out of memory");
    }
    for (int i = 0; i < n; i++) /* G = M M^T */
        for (int j = 0; j <= i; j++) {
            double s = 0;
            for (int x = 0; x < c; x++) s += M[(size_t)i * c + x] * M[(size_t)j * c + x];
            G[i * n + j] = G[j * n + i] = s;
        }
    jacobi(G, n, w, V);
    for (int i = 0; i < n; i++) ord[i] = i;
    for (int i = 1; i < n; i++) /* descending eigenvalues (insertion sort: n is small) */
        for (int j = i; j > 0 && w[ord[j]] > w[ord[j - 1]]; j--) {
            int t = ord[j];
            ord[j] = ord[j - 1], ord[j - 1] = t;
        }
    for (int i = 0; i < n; i++) sigma[i] = sqrt(w[ord[i]] > 0 ? w[ord[i]] : 0);
    for (int i = 0; i < k && !rc; i++) {
        if (!(sigma[i] > 1e-9 * sigma[0]) || sigma[0] == 0) {
            rc = rmu_errf(e, "k: only %d of the %d directions asked for carry any difference (singular values of "
                             "the difference vectors are zero)", i, k);
            break;
        }
        double *u = out + (size_t)i * c; /* u = M^T v / sigma */
        for (int x = 0; x < c; x++) {
            double s = 0;
            for (int j = 0; j < n; j++) s += M[(size_t)j * c + x] * V[j * n + ord[i]];
            u[x] = s / sigma[i];
        }
    }
    if (!rc) rc = rmu_ablate_orthonormalize(out, k, c, e);
    for (int i = 0; i < k && !rc; i++) { /* sign: along the sum of the rows; ties by the largest entry */
        double *u = out + (size_t)i * c, s = 0;
        int big = 0;
        for (int x = 0; x < c; x++) {
            double t = 0;
            for (int j = 0; j < n; j++) t += M[(size_t)j * c + x];
            s += t * u[x];
            if (fabs(u[x]) > fabs(u[big])) big = x;
        }
        if (s < 0 || (s == 0 && u[big] < 0))
            for (int x = 0; x < c; x++) u[x] = -u[x];
    }
    free(G), free(V), free(w), free(ord);
    return rc;
}

/* ---- the estimate */

static void note(rmu_ablate_note_fn fn, void *ud, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void note(rmu_ablate_note_fn fn, void *ud, const char *fmt, ...) {
    if (!fn) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fn(ud, msg);
}

/* The same architecture, so that residual streams and weights correspond one to one. */
static int same_shape(const rmu_model *u, const rmu_model *b, rmu_err *e) {
    const rmu_config *x = &u->cfg, *y = &b->cfg;
    const struct { const char *what; int a, b; } f[] = {
        {"hidden_size", x->hidden_size, y->hidden_size}, {"num_hidden_layers", x->n_layers, y->n_layers},
        {"intermediate_size", x->intermediate_size, y->intermediate_size},
        {"num_attention_heads", x->n_heads, y->n_heads}, {"num_key_value_heads", x->n_kv_heads, y->n_kv_heads},
        {"head_dim", x->head_dim, y->head_dim}, {"vocab_size", x->vocab_size, y->vocab_size},
        {"tie_word_embeddings", x->tie_word_embeddings, y->tie_word_embeddings}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].a != f[i].b)
            return rmu_errf(e, "base_dir: %s has %s %d, model_dir %s has %d: not the same architecture", b->dir,
                            f[i].what, f[i].b, u->dir, f[i].a);
    return 0;
}

/* Adds the residual after each of `layers` over the real tokens (BOS excluded) of the first
 * max_texts documents into sum [nl, C]. */
static int accumulate(const rmu_model *m, rmu_state *s, const rmu_tokenizer *t, const rmu_data_docs *d,
                      const rmu_ablate_opts *o, int max_len, double *sum, long *ntok, int *ntext, float *buf,
                      rmu_err *e) {
    int C = m->cfg.hidden_size, add_bos = rmu_tok_add_bos(t), bos = rmu_tok_bos_id(t);
    *ntok = 0, *ntext = 0;
    for (size_t i = 0; i < d->n && i < (size_t)o->max_texts; i++) {
        int *ids, n;
        if (rmu_tok_encode(t, d->text[i], d->len[i], add_bos, &ids, &n, e)) return -1;
        if (n > max_len) n = max_len;
        int first = n > 0 && add_bos && ids[0] == bos ? 1 : 0;
        for (int j = 0; j < o->n_layers && n > first; j++) {
            if (rmu_model_hidden(m, s, ids, n, o->layers[j], buf, e)) {
                free(ids);
                return -1;
            }
            double *acc = sum + (size_t)j * C;
            for (int p = first; p < n; p++)
                for (int c = 0; c < C; c++) acc[c] += buf[(size_t)p * C + c];
        }
        if (n > first) *ntok += n - first, (*ntext)++;
        free(ids);
    }
    return 0;
}

static int read_corpus(rmu_data_docs *d, const char *files, const char *field, const char *what, rmu_err *e) {
    if (rmu_data_read(d, files, field, e)) return rmu_err_prefix(e, "%s", what);
    return 0;
}

/* M's rows, the directions and their shares. */
static int estimate(const rmu_ablate_opts *o, const rmu_model *u, const rmu_model *b, const rmu_tokenizer *t,
                    rmu_ablate_result *r, rmu_ablate_note_fn nf, void *ud, rmu_err *e) {
    int C = u->cfg.hidden_size, nl = o->n_layers, nv = nl * (o->retain ? 2 : 1), rc = -1;
    rmu_data_docs fd = {0}, rd = {0};
    rmu_state s;
    int have_s = 0;
    double *sum = calloc((size_t)3 * nl * C, sizeof(double)), *M = calloc((size_t)nv * C, sizeof(double));
    double *D = calloc((size_t)o->k * C, sizeof(double));
    float *buf = malloc(sizeof(float) * (size_t)o->max_len * C);
    r->sigma = calloc((size_t)nv, sizeof(double)), r->explained = calloc((size_t)o->k, sizeof(double));
    r->row_norm = calloc((size_t)nv, sizeof(double)), r->row_share = calloc((size_t)nv, sizeof(double));
    r->n_vec = nv;
    if (!sum || !M || !D || !buf || !r->sigma || !r->explained || !r->row_norm || !r->row_share) {
        rmu_errf(e, "out of memory");
        goto out;
    }
    if (read_corpus(&fd, o->forget, o->field, "forget", e) ||
        (o->retain && read_corpus(&rd, o->retain, o->field, "retain", e)))
        goto out;
    /* positions past the trained context mean nothing: texts are cut there too */
    int ctx = o->max_len, mp = u->cfg.max_position_embeddings;
    if (mp > 0 && ctx > mp) ctx = mp;
    if (rmu_state_init(&s, u, ctx, ctx < 512 ? ctx : 512, e)) goto out;
    have_s = 1;
    long nt_b;
    int tx_b;
    note(nf, ud, "residuals at layers of %s and %s on %zu forget texts", u->dir, b->dir,
         fd.n < (size_t)o->max_texts ? fd.n : (size_t)o->max_texts);
    if (accumulate(u, &s, t, &fd, o, ctx, sum, &r->tokens[0], &r->texts[0], buf, e) ||
        accumulate(b, &s, t, &fd, o, ctx, sum + (size_t)nl * C, &nt_b, &tx_b, buf, e) ||
        (o->retain &&
         accumulate(u, &s, t, &rd, o, ctx, sum + (size_t)2 * nl * C, &r->tokens[1], &r->texts[1], buf, e)))
        goto out;
    if (r->tokens[0] == 0 || (o->retain && r->tokens[1] == 0)) {
        rmu_errf(e, "%s: no token to average (texts empty after the BOS)", r->tokens[0] ? "retain" : "forget");
        goto out;
    }
    for (int j = 0; j < nl; j++)
        for (int c = 0; c < C; c++) {
            double mu = sum[(size_t)j * C + c] / r->tokens[0];
            M[(size_t)j * C + c] = mu - sum[(size_t)(nl + j) * C + c] / r->tokens[0];
            if (o->retain) M[(size_t)(nl + j) * C + c] = mu - sum[(size_t)(2 * nl + j) * C + c] / r->tokens[1];
        }
    if (rmu_ablate_top_dirs(M, nv, C, o->k, D, r->sigma, e)) goto out;
    double tot = 0;
    for (int i = 0; i < nv; i++) tot += r->sigma[i] * r->sigma[i];
    for (int i = 0; i < o->k; i++) r->explained[i] = tot > 0 ? r->sigma[i] * r->sigma[i] / tot : 0;
    for (int j = 0; j < nv; j++) {
        const double *m = M + (size_t)j * C;
        double nn = 0, in = 0;
        for (int c = 0; c < C; c++) nn += m[c] * m[c];
        for (int i = 0; i < o->k; i++) {
            double d = 0;
            for (int c = 0; c < C; c++) d += m[c] * D[(size_t)i * C + c];
            in += d * d;
        }
        r->row_norm[j] = sqrt(nn);
        r->row_share[j] = nn > 0 ? in / nn : 0;
    }
    for (size_t i = 0; i < (size_t)o->k * C; i++) r->dirs[i] = (float)D[i];
    rc = 0;
out:
    if (have_s) rmu_state_free(&s);
    rmu_data_docs_free(&fd);
    rmu_data_docs_free(&rd);
    free(sum), free(M), free(D), free(buf);
    return rc;
}

/* Directions from a file: the first 2-D (or 1-D) tensor, preferably named "directions". */
static int load_dirs(const char *path, int C, rmu_ablate_result *r, rmu_err *e) {
    rmu_st_set st;
    if (rmu_st_open_file(&st, path, e)) return rmu_err_prefix(e, "directions");
    const rmu_st_tensor *t = rmu_st_get(&st, "directions");
    if (!t && st.ntensors == 1) t = &st.tensors[0];
    int rc = 0;
    if (!t) rc = rmu_errf(e, "directions: %s has no tensor named \"directions\"", path);
    else if (t->ndim < 1 || t->ndim > 2 || t->shape[t->ndim - 1] != C)
        rc = rmu_errf(e, "directions: %s: tensor %s is not [k, %d] (the model's hidden size)", path, t->name, C);
    else if (t->dtype == RMU_DT_F8_E4M3)
        rc = rmu_errf(e, "directions: %s: FP8 directions are not supported", path);
    int k = rc ? 0 : t->ndim == 2 ? (int)t->shape[0] : 1;
    if (!rc && (k < 1 || k > RMU_ABLATE_MAX_K))
        rc = rmu_errf(e, "directions: %s holds %d directions (1..%d)", path, k, RMU_ABLATE_MAX_K);
    double *D = rc ? NULL : malloc(sizeof(double) * (size_t)k * C);
    float *f = rc ? NULL : malloc(sizeof(float) * (size_t)k * C);
    r->dirs = rc ? NULL : malloc(sizeof(float) * (size_t)k * C);
    if (!rc && (!D || !f || !r->dirs)) rc = rmu_errf(e, "out of memory");
    if (!rc) {
        rmu_to_f32(f, t->data, t->dtype, (size_t)k * C);
        for (size_t i = 0; i < (size_t)k * C; i++) D[i] = f[i];
        if (rmu_ablate_orthonormalize(D, k, C, e)) rc = rmu_err_prefix(e, "directions: %s", path);
        for (size_t i = 0; !rc && i < (size_t)k * C; i++) r->dirs[i] = (float)D[i];
        r->k = k;
    }
    free(D), free(f);
    rmu_st_close(&st);
    return rc;
}

/* ---- writing: every writer to the residual stream, projected (chunked, in double) */

typedef struct fill_ctx {
    const rmu_st_set *st;
    const double *D; /* [k, C] */
    int k, C;
    char cur[160];
    double *P;       /* [k, cols]: D^T W of the current column-projected tensor */
    float *row, *out;
    size_t cap;
} fill_ctx;

static int grow(fill_ctx *f, size_t n, rmu_err *e) {
    if (n <= f->cap) return 0;
    float *a = realloc(f->row, sizeof(float) * n);
    if (a) f->row = a;
    float *b = a ? realloc(f->out, sizeof(float) * n) : NULL;
    if (b) f->out = b;
    if (!a || !b) return rmu_errf(e, "out of memory");
    f->cap = n;
    return 0;
}

/* Elements [off, off+count) of the projected tensor `name` in its dtype. Residual rows
 * (embedding [V, C]): x <- x - sum_i (x . d_i) d_i. Residual columns (o_proj, down_proj
 * [C, cols]): W[r][j] <- W[r][j] - sum_i d_i[r] P[i][j], P = D^T W over the whole tensor. */
static int fill(void *ctx, const char *name, size_t off, size_t count, void *buf, rmu_err *e) {
    fill_ctx *f = ctx;
    int rows_mode = !strcmp(name, "model.embed_tokens.weight") || !strcmp(name, "lm_head.weight");
    const rmu_st_tensor *dst = rmu_st_get(f->st, name);
    const rmu_st_tensor *t = rows_mode ? rmu_st_get(f->st, "model.embed_tokens.weight") : dst;
    if (!t || !dst || t->ndim != 2) return rmu_errf(e, "internal: %s is not a 2-D tensor of the input", name);
    size_t R = (size_t)t->shape[0], cols = (size_t)t->shape[1], es = rmu_dtype_size(t->dtype);
    size_t os = rmu_dtype_size(dst->dtype);
    const char *src = t->data;
    int k = f->k;
    if (grow(f, cols, e)) return -1;
    if (!rows_mode && strcmp(f->cur, name)) {
        double *P = realloc(f->P, sizeof(double) * (size_t)k * cols);
        if (!P) return rmu_errf(e, "out of memory");
        f->P = P;
        memset(P, 0, sizeof(double) * (size_t)k * cols);
        for (size_t r = 0; r < R; r++) {
            rmu_to_f32(f->row, src + r * cols * es, t->dtype, cols);
            for (int i = 0; i < k; i++) {
                double d = f->D[(size_t)i * f->C + r];
                double *p = P + (size_t)i * cols;
                for (size_t j = 0; j < cols; j++) p[j] += d * f->row[j];
            }
        }
        snprintf(f->cur, sizeof f->cur, "%s", name);
    }
    for (size_t i = off, end = off + count; i < end;) {
        size_t r = i / cols, c0 = i % cols, c1 = cols - c0 < end - i ? cols : c0 + (end - i);
        rmu_to_f32(f->row, src + r * cols * es, t->dtype, cols);
        if (rows_mode) {
            double p[RMU_ABLATE_MAX_K];
            for (int q = 0; q < k; q++) {
                double s = 0;
                for (size_t c = 0; c < cols; c++) s += f->row[c] * f->D[(size_t)q * f->C + c];
                p[q] = s;
            }
            for (size_t c = c0; c < c1; c++) {
                double v = f->row[c];
                for (int q = 0; q < k; q++) v -= p[q] * f->D[(size_t)q * f->C + c];
                f->out[c - c0] = (float)v;
            }
        } else {
            for (size_t c = c0; c < c1; c++) {
                double v = f->row[c];
                for (int q = 0; q < k; q++) v -= f->D[(size_t)q * f->C + r] * f->P[(size_t)q * cols + c];
                f->out[c - c0] = (float)v;
            }
        }
        rmu_from_f32((char *)buf + (i - off) * os, f->out, dst->dtype, c1 - c0);
        i += c1 - c0;
    }
    return 0;
}

static json_t *result_json(const rmu_ablate_opts *o, const rmu_ablate_result *r, int with_acc) {
    json_t *layers = json_array(), *sig = json_array(), *ex = json_array(), *rows = json_array();
    for (int j = 0; j < o->n_layers; j++) json_array_append_new(layers, json_integer(o->layers[j]));
    for (int i = 0; i < r->n_vec; i++) json_array_append_new(sig, json_real(r->sigma[i]));
    double tot = 0;
    for (int i = 0; r->explained && i < r->k; i++) {
        json_array_append_new(ex, json_real(r->explained[i]));
        tot += r->explained[i];
    }
    for (int i = 0; i < r->n_vec; i++)
        json_array_append_new(rows, json_pack("{s:s, s:i, s:f, s:f}", "kind",
                                              i < o->n_layers ? "unlearned-minus-base" : "forget-minus-retain",
                                              "layer", o->layers[i % o->n_layers], "norm", r->row_norm[i],
                                              "explained", r->row_share[i]));
    json_t *j = json_pack("{s:s, s:s, s:s?, s:s?, s:s?, s:s?, s:o, s:i, s:i, s:i, s:i, s:{s:i, s:i}, s:{s:I, s:I}, "
                          "s:o, s:o, s:f, s:o, s:i, s:f}",
                          "attack", "ablate", "model", o->model_dir, "base", o->base_dir, "forget", o->forget,
                          "retain", o->retain, "directions_from", o->directions, "layers", layers, "k", r->k,
                          "hidden_size", r->hidden, "max_texts", o->max_texts, "max_len", o->max_len, "texts",
                          "forget", r->texts[0], "retain", r->texts[1], "tokens", "forget", (json_int_t)r->tokens[0],
                          "retain", (json_int_t)r->tokens[1], "singular_values", sig, "explained", ex,
                          "explained_total", tot, "difference_vectors", rows, "tensors_rewritten", r->n_tensors,
                          "seconds", r->seconds);
    if (with_acc && r->rep.nkeys) {
        json_object_set_new(j, "accuracy", rmu_report_json(&r->rep, r->base, r->unlearned, r->ablated));
        json_object_set_new(j, "eval", rmu_report_settings(&r->rep));
    }
    return j;
}

/* The folder: model with the projected writers, attack/directions.safetensors, ablate.json. */
static int write_out(const rmu_ablate_opts *o, const rmu_model *u, rmu_ablate_result *r, rmu_err *e) {
    int C = r->hidden, L = u->cfg.n_layers;
    double *D = malloc(sizeof(double) * (size_t)r->k * C);
    if (!D) return rmu_errf(e, "out of memory");
    for (size_t i = 0; i < (size_t)r->k * C; i++) D[i] = r->dirs[i];
    fill_ctx f = {.st = &u->st, .D = D, .k = r->k, .C = C};
    rmu_hf_opts ho = {.in_dir = u->dir, .in_st = &u->st, .flags = o->overwrite ? RMU_HF_REPLACE : 0};
    rmu_hf *w = rmu_hf_open(o->out_dir, &ho, e);
    int rc = w ? 0 : rmu_err_prefix(e, "out_dir");
    r->n_tensors = 0;
    if (!rc) rc = rmu_hf_set_fill(w, "model.embed_tokens.weight", fill, &f, e), r->n_tensors++;
    if (!rc && u->cfg.tie_word_embeddings && rmu_st_get(&u->st, "lm_head.weight"))
        rc = rmu_hf_set_fill(w, "lm_head.weight", fill, &f, e), r->n_tensors++;
    for (int l = 0; l < L && !rc; l++) {
        char n1[128], n2[128];
        snprintf(n1, sizeof n1, "model.layers.%d.self_attn.o_proj.weight", l);
        snprintf(n2, sizeof n2, "model.layers.%d.mlp.down_proj.weight", l);
        rc = rmu_hf_set_fill(w, n1, fill, &f, e) || rmu_hf_set_fill(w, n2, fill, &f, e) ? -1 : 0;
        r->n_tensors += 2;
    }
    char dir[4200], path[4300];
    if (!rc) {
        snprintf(dir, sizeof dir, "%s/attack", rmu_hf_dir(w));
        rmu_ckpt_tensor t = {"directions", r->dirs, 2, {r->k, C}};
        snprintf(path, sizeof path, "%s/directions.safetensors", dir);
        rc = rmu_mkdirs(dir, e) || rmu_ckpt_write_f32(path, &t, 1, e) ? -1 : 0;
    }
    if (!rc) {
        json_t *j = result_json(o, r, 0);
        snprintf(path, sizeof path, "%s/ablate.json", dir);
        rc = rmu_json_write_file(path, j, JSON_INDENT(2) | JSON_REAL_PRECISION(17), e);
        json_decref(j);
    }
    if (rc) rmu_hf_abort(w);
    else rc = rmu_hf_commit(w, e);
    free(f.P), free(f.row), free(f.out), free(D);
    return rc;
}

static double *level(rmu_report *rep, const char *results, const rmu_model *m, const char *what, rmu_err *e) {
    double *a = malloc(sizeof(double) * (size_t)(rep->nkeys ? rep->nkeys : 1));
    if (!a) {
        rmu_errf(e, "out of memory");
        return NULL;
    }
    int rc;
    if (results) rc = rmu_report_read_results(rep, results, a, e);
    else {
        rmu_tokenizer *t = rmu_tok_load(m->dir, e);
        rc = !t || rmu_check_tokenizer(m, t, e) || rmu_report_eval(rep, m, t, a, e) ? -1 : 0;
        rmu_tok_free(t);
    }
    if (rc) {
        rmu_err_prefix(e, "%s", what);
        free(a);
        return NULL;
    }
    return a;
}

int rmu_ablate_run(const rmu_ablate_opts *o, rmu_ablate_note_fn nf, void *ud, rmu_ablate_result *r, rmu_err *e) {
    memset(r, 0, sizeof *r);
    double t0 = rmu_now_s();
    if (!o->model_dir || !o->out_dir) return rmu_errf(e, "model_dir and out_dir are required");
    if (!o->directions && (!o->base_dir || !o->forget || o->n_layers < 1))
        return rmu_errf(e, "base_dir, forget and layers are required to estimate directions (or give option "
                           "directions)");
    if (!o->directions && (o->k < 1 || o->k > RMU_ABLATE_MAX_K))
        return rmu_errf(e, "k: %d is out of range (1..%d)", o->k, RMU_ABLATE_MAX_K);
    if (o->max_texts < 1 || o->max_len < 2)
        return rmu_errf(e, "%s: out of range", o->max_texts < 1 ? "max_texts" : "max_len");
    if (rmu_hf_check_out(o->out_dir, o->model_dir, o->overwrite ? RMU_HF_REPLACE : 0, e))
        return rmu_err_prefix(e, "out_dir");
    rmu_model u, b;
    rmu_tokenizer *t = NULL;
    int have_u = 0, have_b = 0, rc = -1;
    if (o->n_suites && rmu_report_open(&r->rep, o->suites, o->n_suites, &o->eval, e)) return -1;
    if (rmu_model_load(&u, o->model_dir, e)) goto out;
    have_u = 1;
    r->hidden = u.cfg.hidden_size;
    if (u.cfg.quant != RMU_QUANT_NONE) {
        rmu_errf(e, "model_dir: %s holds %s-quantized weights; ablate a model in F32/BF16/F16", o->model_dir,
                 u.cfg.quant_method);
        goto out;
    }
    for (int j = 0; j < o->n_layers; j++)
        if (o->layers[j] < 0 || o->layers[j] >= u.cfg.n_layers) {
            rmu_errf(e, "layers: %d is out of range (the model has %d layers: 0..%d)", o->layers[j], u.cfg.n_layers,
                     u.cfg.n_layers - 1);
            goto out;
        }
    if (o->base_dir) {
        if (rmu_model_load(&b, o->base_dir, e)) {
            rmu_err_prefix(e, "base_dir");
            goto out;
        }
        have_b = 1;
        if (same_shape(&u, &b, e)) goto out;
    }
    if (o->directions) {
        if (load_dirs(o->directions, r->hidden, r, e)) goto out;
    } else {
        r->k = o->k;
        if (!(r->dirs = malloc(sizeof(float) * (size_t)o->k * r->hidden))) {
            rmu_errf(e, "out of memory");
            goto out;
        }
        if (!(t = rmu_tok_load(o->model_dir, e)) || rmu_check_tokenizer(&u, t, e) ||
            estimate(o, &u, &b, t, r, nf, ud, e))
            goto out;
        for (int i = 0; i < r->k; i++)
            note(nf, ud, "direction %d explains %.1f%% of the squared norm of the %d difference vectors", i + 1,
                 100 * r->explained[i], r->n_vec);
    }
    if (o->n_suites) {
        if (o->base_results || have_b) {
            note(nf, ud, "base level: %s", o->base_results ? o->base_results : o->base_dir);
            if (!(r->base = level(&r->rep, o->base_results, &b, "base", e))) goto out;
        }
        note(nf, ud, "unlearned level: %s", o->unlearned_results ? o->unlearned_results : o->model_dir);
        if (!(r->unlearned = level(&r->rep, o->unlearned_results, &u, "unlearned", e))) goto out;
    }
    r->seconds = rmu_now_s() - t0;
    note(nf, ud, "writing %s", o->out_dir);
    if (write_out(o, &u, r, e)) goto out;
    if (o->n_suites) {
        note(nf, ud, "evaluating the ablated model");
        if (!(r->ablated = malloc(sizeof(double) * (size_t)r->rep.nkeys))) {
            rmu_errf(e, "out of memory");
            goto out;
        }
        if (rmu_report_eval_dir(&r->rep, o->out_dir, r->ablated, e)) {
            rmu_err_prefix(e, "ablated model");
            goto out;
        }
        r->seconds = rmu_now_s() - t0;
        char path[4200];
        snprintf(path, sizeof path, "%s/attack/ablate.json", o->out_dir);
        json_t *j = result_json(o, r, 1);
        int w = rmu_json_write_file(path, j, JSON_INDENT(2) | JSON_REAL_PRECISION(17), e);
        json_decref(j);
        if (w) goto out;
    }
    rc = 0;
out:
    rmu_tok_free(t);
    if (have_b) rmu_model_free(&b);
    if (have_u) rmu_model_free(&u);
    if (rc) rmu_ablate_result_free(r);
    return rc;
}
