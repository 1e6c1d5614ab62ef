/* eval.c - loglikelihood scoring of multiple-choice rows, as lm-eval v0.4.2's HFLM does it:
 * _encode_pair for the token ids, input = (context + continuation)[-(max_length+1):][:-1],
 * log_softmax over the vocabulary, sum over the continuation tokens, argmax over choices.
 *
 * Speed without changing the numbers' meaning:
 *  - one pass: when every continuation of a row is exactly one token, lm-eval's inputs for
 *    the choices are all the same context, so one forward of it gives all their logprobs;
 *  - prefix cache: the KV cache is indexed by absolute position, so the rows of the cache
 *    for a token prefix shared with the previous request stay valid; we rewind s->pos to the
 *    end of the shared prefix and feed only the rest (few-shot prefixes, shared
 *    descriptions, the context of each choice in the per-choice path);
 *  - --batch-size B: B rows are tokenized together and scored in token order so requests
 *    with long common prefixes follow each other (the forward itself is one sequence).
 * Hidden switches turn both shortcuts off so tests can check they change nothing. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

typedef struct scorer {
    const rmu_model *m;
    const rmu_tokenizer *t;
    const rmu_eval_opts *o;
    rmu_eval_counts *cnt;
    rmu_state st;
    int st_ready;
    int L; /* lm-eval max_length */
    int V;
    int *cache; /* token at each cached position [0, ncache) */
    int ncache;
    float *logits;
    size_t logits_cap; /* floats */
} scorer;

static int ensure_state(scorer *S, int need, rmu_err *e) {
    if (S->st_ready && S->st.ctx >= need) return 0;
    int ctx = S->st_ready ? S->st.ctx * 2 : 512;
    if (ctx < need) ctx = need;
    if (ctx > S->L) ctx = S->L;
    if (ctx < need) return rmu_errf(e, "eval: request of %d tokens exceeds max_length %d", need, S->L);
    if (S->st_ready) rmu_state_free(&S->st);
    S->st_ready = 0;
    S->ncache = 0;
    if (rmu_state_init(&S->st, S->m, ctx, ctx < 512 ? ctx : 512, e)) return -1;
    S->st_ready = 1;
    return 0;
}

static int ensure_logits(scorer *S, int rows, rmu_err *e) {
    size_t need = (size_t)rows * (size_t)S->V;
    if (need <= S->logits_cap) return 0;
    float *nl = realloc(S->logits, need * sizeof(float));
    if (!nl) return rmu_errf(e, "eval: out of memory for %d rows of logits", rows);
    S->logits = nl;
    S->logits_cap = need;
    return 0;
}

/* Runs the model on inp[0, n) and leaves the logits of positions [first, n) in S->logits. */
static int run_input(scorer *S, const int *inp, int n, int first, rmu_err *e) {
    int rows = n - first;
    if (ensure_state(S, n, e)) return -1;
    for (int i = 0; i < n; i++)
        if (inp[i] < 0 || inp[i] >= S->V) return rmu_errf(e, "eval: token id %d outside the model's vocabulary", inp[i]);
    S->cnt->forward_calls++;
    if (!S->o->prefix_cache) { /* literal lm-eval: the whole input, all positions */
        S->ncache = 0;
        rmu_state_reset(&S->st);
        if (ensure_logits(S, n, e) || rmu_model_forward(S->m, &S->st, inp, n, S->logits, 1, e)) return -1;
        memmove(S->logits, S->logits + (size_t)first * S->V, (size_t)rows * S->V * sizeof(float));
        S->cnt->tokens_fed += n;
        return 0;
    }
    int lcp = 0, lim = S->ncache < n ? S->ncache : n;
    while (lcp < lim && S->cache[lcp] == inp[lcp]) lcp++;
    int start = lcp < first ? lcp : first;
    /* forget what follows the shared prefix: positions < start keep their cached K/V */
    S->st.pos = start;
    S->ncache = 0;
    if (start < first && rmu_model_forward(S->m, &S->st, inp + start, first - start, NULL, 0, e)) return -1;
    if (ensure_logits(S, rows, e) || rmu_model_forward(S->m, &S->st, inp + first, rows, S->logits, rows > 1, e))
        return -1;
    memcpy(S->cache, inp, (size_t)n * sizeof(int));
    S->ncache = n;
    S->cnt->tokens_reused += start;
    S->cnt->tokens_fed += n - start;
    return 0;
}

/* log_softmax(row)[tok] in double, and whether tok is the row's argmax (first max). */
static double logprob(const float *row, int V, int tok, int *is_greedy) {
    float mx = row[0];
    int am = 0;
    for (int i = 1; i < V; i++)
        if (row[i] > mx) {
            mx = row[i];
            am = i;
        }
    double s = 0;
    for (int i = 0; i < V; i++) s += exp((double)row[i] - mx);
    *is_greedy = am == tok;
    return (double)row[tok] - mx - log(s);
}

/* ---- tokenization (lm-eval _encode_pair) ---- */

static int tok_cat(const rmu_tokenizer *t, const char *a, size_t na, const char *b, int add_bos, int **ids, int *n,
                   rmu_err *e) {
    size_t nb = strlen(b);
    char *s = malloc(na + nb + 1);
    if (!s) return rmu_errf(e, "out of memory");
    memcpy(s, a, na);
    memcpy(s + na, b, nb + 1);
    int r = rmu_tok_encode(t, s, na + nb, add_bos, ids, n, e);
    free(s);
    return r;
}

/* continuation = tok(ctx' + ws + cont)[len(ctx_enc):], ctx' = context without trailing
 * whitespace ws (ctx_enc = tok(ctx')). */
static int encode_cont(const rmu_tokenizer *t, const char *context, size_t kept, int nctx, const char *cont,
                       int add_bos, int **out, int *nout, rmu_err *e) {
    /* the moved whitespace goes in front of the continuation */
    size_t nws = strlen(context) - kept, nc = strlen(cont);
    char *c2 = malloc(nws + nc + 1);
    if (!c2) return rmu_errf(e, "out of memory");
    memcpy(c2, context + kept, nws);
    memcpy(c2 + nws, cont, nc + 1);
    int *whole = NULL, nw = 0;
    int r = tok_cat(t, context, kept, c2, add_bos, &whole, &nw, e);
    free(c2);
    if (r) return -1;
    int k = nw > nctx ? nw - nctx : 0;
    *out = malloc((size_t)(k ? k : 1) * sizeof(int));
    if (!*out) {
        free(whole);
        return rmu_errf(e, "out of memory");
    }
    if (k) memcpy(*out, whole + nctx, (size_t)k * sizeof(int));
    *nout = k;
    free(whole);
    return 0;
}

int rmu_eval_encode_pair(const rmu_tokenizer *t, const char *context, const char *continuation, int add_bos,
                         int **ctx, int *nctx, int **cont, int *ncont, rmu_err *e) {
    size_t kept = rmu_py_rstrip_len(context, strlen(context));
    *ctx = *cont = NULL;
    if (rmu_tok_encode(t, context, kept, add_bos, ctx, nctx, e)) return -1;
    if (encode_cont(t, context, kept, *nctx, continuation, add_bos, cont, ncont, e)) {
        free(*ctx);
        *ctx = NULL;
        return -1;
    }
    return 0;
}

/* ---- one row ---- */

typedef struct qrow {
    int node, row, k;
    char *context;
    char **conts;
    int *ctx;
    int nctx;
    int **cont;
    int *ncont;
    double *ll;
    int *greedy;
    int **in_ctx; /* per choice: the context tokens the model saw (views into ctx/full, copied) */
    int *n_in_ctx;
} qrow;

static void qrow_free(qrow *q) {
    for (int c = 0; c < q->k; c++) {
        if (q->conts) free(q->conts[c]);
        if (q->cont) free(q->cont[c]);
        if (q->in_ctx) free(q->in_ctx[c]);
    }
    free(q->conts);
    free(q->cont);
    free(q->in_ctx);
    free(q->ncont);
    free(q->n_in_ctx);
    free(q->ll);
    free(q->greedy);
    free(q->ctx);
    free(q->context);
    memset(q, 0, sizeof *q);
}

static int qrow_prepare(const rmu_eval_plan *p, const rmu_tokenizer *t, int add_bos, int node, int row, qrow *q,
                        rmu_err *e) {
    const rmu_mcq_item *it = &p->nodes[node].test.items[row];
    memset(q, 0, sizeof *q);
    q->node = node;
    q->row = row;
    q->k = it->nchoices;
    q->context = rmu_eval_context(p, node, row);
    q->conts = calloc((size_t)q->k, sizeof(char *));
    q->cont = calloc((size_t)q->k, sizeof(int *));
    q->in_ctx = calloc((size_t)q->k, sizeof(int *));
    q->ncont = calloc((size_t)q->k, sizeof(int));
    q->n_in_ctx = calloc((size_t)q->k, sizeof(int));
    q->ll = calloc((size_t)q->k, sizeof(double));
    q->greedy = calloc((size_t)q->k, sizeof(int));
    if (!q->context || !q->conts || !q->cont || !q->in_ctx || !q->ncont || !q->n_in_ctx || !q->ll || !q->greedy)
        return rmu_errf(e, "out of memory");
    size_t kept = rmu_py_rstrip_len(q->context, strlen(q->context));
    if (rmu_tok_encode(t, q->context, kept, add_bos, &q->ctx, &q->nctx, e)) return -1;
    for (int c = 0; c < q->k; c++) {
        if (!(q->conts[c] = rmu_mcq_continuation(it, c, p->format))) return rmu_errf(e, "out of memory");
        if (encode_cont(t, q->context, kept, q->nctx, q->conts[c], add_bos, &q->cont[c], &q->ncont[c], e)) return -1;
    }
    return 0;
}

static int dup_ids(const int *src, int n, int **out, rmu_err *e) {
    *out = malloc((size_t)(n ? n : 1) * sizeof(int));
    if (!*out) return rmu_errf(e, "out of memory");
    if (n) memcpy(*out, src, (size_t)n * sizeof(int));
    return 0;
}

/* Scores every choice of q; returns whether it took the one-pass path (or -1). */
static int qrow_score(scorer *S, qrow *q, rmu_err *e) {
    int L = S->L, one = S->o->onepass && q->nctx > 0;
    for (int c = 0; c < q->k; c++) one &= q->ncont[c] == 1;
    if (one) {
        /* (ctx + [tok])[-(L+1):][:-1] is the last L context tokens, for every choice */
        int off = q->nctx > L ? q->nctx - L : 0, n = q->nctx - off;
        if (run_input(S, q->ctx + off, n, n - 1, e)) return -1;
        for (int c = 0; c < q->k; c++) {
            if (q->cont[c][0] >= S->V) return rmu_errf(e, "eval: token id %d outside the model's vocabulary", q->cont[c][0]);
            q->ll[c] = logprob(S->logits, S->V, q->cont[c][0], &q->greedy[c]);
            if (dup_ids(q->ctx + off, n, &q->in_ctx[c], e)) return -1;
            q->n_in_ctx[c] = n;
        }
        return 1;
    }
    int *full = malloc((size_t)(L + 2 + q->nctx) * sizeof(int));
    if (!full) return rmu_errf(e, "out of memory");
    for (int c = 0; c < q->k; c++) {
        int nc = q->ncont[c], nf = q->nctx + nc;
        if (nc == 0) { /* lm-eval sums an empty slice: loglik 0, greedy */
            q->ll[c] = 0;
            q->greedy[c] = 1;
            if (dup_ids(q->ctx, q->nctx, &q->in_ctx[c], e)) goto fail;
            q->n_in_ctx[c] = q->nctx;
            continue;
        }
        int *fp = realloc(full, (size_t)nf * sizeof(int));
        if (!fp) {
            rmu_errf(e, "out of memory");
            goto fail;
        }
        full = fp;
        memcpy(full, q->ctx, (size_t)q->nctx * sizeof(int));
        memcpy(full + q->nctx, q->cont[c], (size_t)nc * sizeof(int));
        int off = nf > L + 1 ? nf - (L + 1) : 0, n = nf - off - 1;
        if (nc > n) {
            rmu_errf(e, "eval: continuation of %d tokens does not fit max_length %d", nc, L);
            goto fail;
        }
        int first = n - nc;
        if (run_input(S, full + off, n, first, e)) goto fail;
        double sum = 0;
        int all = 1;
        for (int i = 0; i < nc; i++) {
            int g;
            if (q->cont[c][i] >= S->V) {
                rmu_errf(e, "eval: token id %d outside the model's vocabulary", q->cont[c][i]);
                goto fail;
            }
            sum += logprob(S->logits + (size_t)i * S->V, S->V, q->cont[c][i], &g);
            all &= g;
        }
        q->ll[c] = sum;
        q->greedy[c] = all;
        if (dup_ids(full + off, first + 1, &q->in_ctx[c], e)) goto fail;
        q->n_in_ctx[c] = first + 1;
    }
    free(full);
    return 0;
fail:
    free(full);
    return -1;
}

static int argmax_d(const double *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* Window ordering: lexicographic on the context tokens, so shared prefixes are adjacent. */
static int cmp_rows(const void *a, const void *b) {
    const qrow *x = *(qrow *const *)a, *y = *(qrow *const *)b;
    int n = x->nctx < y->nctx ? x->nctx : y->nctx;
    for (int i = 0; i < n; i++)
        if (x->ctx[i] != y->ctx[i]) return x->ctx[i] < y->ctx[i] ? -1 : 1;
    if (x->nctx != y->nctx) return x->nctx < y->nctx ? -1 : 1;
    return x->row - y->row;
}

int rmu_eval_run(rmu_eval_plan *p, const rmu_model *m, const rmu_tokenizer *t, const rmu_eval_opts *o,
                 rmu_eval_counts *counts, rmu_err *e) {
    rmu_eval_counts dummy;
    if (!counts) counts = &dummy;
    memset(counts, 0, sizeof *counts);
    scorer S = {.m = m, .t = t, .o = o, .cnt = counts, .V = m->cfg.vocab_size};
    S.L = o->max_length > 0 ? o->max_length : m->cfg.max_position_embeddings;
    if (S.L <= 0) S.L = 2048; /* lm-eval's default when the config has no length */
    int B = o->batch > 0 ? o->batch : 1;
    S.cache = malloc((size_t)(S.L + 1) * sizeof(int));
    qrow *rows = calloc((size_t)B, sizeof *rows);
    qrow **ord = calloc((size_t)B, sizeof *ord);
    int rc = 0;
    if (!S.cache || !rows || !ord) rc = rmu_errf(e, "out of memory");
    long total = rmu_eval_plan_rows(p), done = 0;
    for (int k = 0; k < p->n && !rc; k++) {
        rmu_eval_node *d = &p->nodes[k];
        if (d->family == RMU_EVAL_GROUP) continue;
        for (int r0 = 0; r0 < d->n && !rc; r0 += B) {
            int nb = d->n - r0 < B ? d->n - r0 : B;
            for (int i = 0; i < nb && !rc; i++) {
                if (qrow_prepare(p, t, o->add_bos, k, r0 + i, &rows[i], e)) {
                    rmu_err_prefix(e, "%s row %d (%s:%d)", d->name, r0 + i, d->test.path, d->test.items[r0 + i].line);
                    rc = -1;
                }
                ord[i] = &rows[i];
            }
            if (!rc && nb > 1) qsort(ord, (size_t)nb, sizeof *ord, cmp_rows);
            for (int i = 0; i < nb && !rc; i++) {
                qrow *q = ord[i];
                int one = qrow_score(&S, q, e);
                if (one < 0) {
                    rmu_err_prefix(e, "%s row %d", d->name, q->row);
                    rc = -1;
                    break;
                }
                const rmu_mcq_item *it = &d->test.items[q->row];
                int pred = argmax_d(q->ll, q->k), pred_norm = -1;
                d->acc[q->row] = pred == it->answer;
                if (d->acc_norm) {
                    /* lm-eval acc_norm: loglik / len(choice) in characters (not the delimiter) */
                    double *nz = malloc((size_t)q->k * sizeof(double));
                    if (!nz) {
                        rc = rmu_errf(e, "out of memory");
                        break;
                    }
                    for (int c = 0; c < q->k; c++) {
                        size_t len = rmu_utf8_len(it->choices[c]);
                        nz[c] = len ? q->ll[c] / (double)len : -INFINITY;
                    }
                    pred_norm = argmax_d(nz, q->k);
                    free(nz);
                    d->acc_norm[q->row] = pred_norm == it->answer;
                }
                counts->questions++;
                counts->onepass_questions += one;
                if (o->on_sample) {
                    rmu_eval_sample smp = {
                        .node = k,
                        .row = q->row,
                        .context = q->context,
                        .nchoices = q->k,
                        .continuations = q->conts,
                        .loglik = q->ll,
                        .greedy = q->greedy,
                        .ctx_ids = q->in_ctx,
                        .n_ctx = q->n_in_ctx,
                        .cont_ids = q->cont,
                        .n_cont = q->ncont,
                        .gold = it->answer,
                        .pred = pred,
                        .pred_norm = pred_norm,
                        .onepass = one,
                    };
                    if (o->on_sample(o->ud, &smp, e)) rc = -1;
                }
                done++;
                if (o->on_progress) o->on_progress(o->ud, done, total);
            }
            for (int i = 0; i < nb; i++) qrow_free(&rows[i]);
        }
    }
    if (S.st_ready) rmu_state_free(&S.st);
    free(S.cache);
    free(S.logits);
    free(rows);
    free(ord);
    if (!rc) rmu_eval_aggregate(p);
    return rc;
}
