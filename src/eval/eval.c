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
 * Hidden switches turn both shortcuts off so tests can check they change nothing.
 *
 * Several MPI ranks (o->dist): the rows, in the order one process scores them (leaf by leaf,
 * batches sorted by tokens), are cut into contiguous shares of about equal context bytes.
 * A rank first simulates the rows before its share (tokens only: which positions the KV
 * cache would hold, written by which requests, and the cache size), then recomputes just
 * those requests, so its first row meets exactly the cache a single process has there:
 * the logliks, the counters and the prefix reuse are the single process's, bit for bit. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "eval/eval.h"

/* A request whose KV rows are (partly) still in the cache: inp[0, n), fed from start, logits
 * from first (what run_input did with it). */
typedef struct written {
    int *inp;
    int n, start, first;
} written;

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
    int ctx;           /* the state's size (0: none yet), also while simulating */
    int sim;           /* simulating rows of other ranks: bookkeeping only, no model, no counts */
    written *wr;       /* simulating: the requests whose KV rows the cache holds, oldest first */
    int nwr, cwr;
} scorer;

static void drop_written(scorer *S, int keep) {
    while (S->nwr > keep) free(S->wr[--S->nwr].inp);
}

static int ensure_state(scorer *S, int need, rmu_err *e) {
    if (S->ctx && S->ctx >= need) return 0;
    int ctx = S->ctx ? S->ctx * 2 : 512;
    if (ctx < need) ctx = need;
    if (ctx > S->L) ctx = S->L;
    if (ctx < need) return rmu_errf(e, "eval: request of %d tokens exceeds max_length %d", need, S->L);
    if (S->st_ready) rmu_state_free(&S->st);
    S->st_ready = 0;
    S->ncache = 0;
    S->ctx = 0;
    drop_written(S, 0);
    if (!S->sim && rmu_state_init(&S->st, S->m, ctx, ctx < 512 ? ctx : 512, e)) return -1;
    S->st_ready = !S->sim;
    S->ctx = ctx;
    return 0;
}

/* Simulated run_input: the cache bookkeeping of the prefix-cache path, and which request
 * wrote which cached positions (a request overwrites every position from its start on). */
static int sim_input(scorer *S, const int *inp, int n, int first, rmu_err *e) {
    if (!S->o->prefix_cache) return 0;
    int lcp = 0, lim = S->ncache < n ? S->ncache : n;
    while (lcp < lim && S->cache[lcp] == inp[lcp]) lcp++;
    int start = lcp < first ? lcp : first;
    while (S->nwr && S->wr[S->nwr - 1].start >= start) drop_written(S, S->nwr - 1);
    if (S->nwr == S->cwr) {
        int cap = S->cwr ? 2 * S->cwr : 8;
        written *nw = realloc(S->wr, sizeof *nw * (size_t)cap);
        if (!nw) return rmu_errf(e, "out of memory");
        S->wr = nw, S->cwr = cap;
    }
    written *w = &S->wr[S->nwr];
    if (!(w->inp = malloc(sizeof(int) * (size_t)n))) return rmu_errf(e, "out of memory");
    memcpy(w->inp, inp, sizeof(int) * (size_t)n);
    w->n = n, w->start = start, w->first = first;
    S->nwr++;
    memcpy(S->cache, inp, (size_t)n * sizeof(int));
    S->ncache = n;
    return 0;
}

/* Ends the simulation before this rank's first row: a state of the simulated size, and the
 * cached positions computed by the same forward calls, in the same order, as the single
 * process computed them (so every KV row has the same bits). */
static int materialize(scorer *S, rmu_err *e) {
    S->sim = 0;
    int rc = 0;
    if (S->ctx && rmu_state_init(&S->st, S->m, S->ctx, S->ctx < 512 ? S->ctx : 512, e)) rc = -1;
    S->st_ready = S->ctx && !rc;
    for (int i = 0; i < S->nwr && !rc; i++) {
        const written *w = &S->wr[i];
        S->st.pos = w->start;
        if (w->start < w->first && rmu_model_forward(S->m, &S->st, w->inp + w->start, w->first - w->start, NULL, 0, e))
            rc = -1;
        else if (rmu_model_forward(S->m, &S->st, w->inp + w->first, w->n - w->first, NULL, 0, e))
            rc = -1;
    }
    drop_written(S, 0);
    return rc;
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
    if (S->sim) return sim_input(S, inp, n, first, e);
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
        if (S->sim) return 1;
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
        if (S->sim) continue;
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

/* ---- several ranks: the shares ---- */

/* Row weights (context bytes + 1) in scoring order's file order, their total, and where the
 * rows of leaf k start in the flat arrays. */
typedef struct share {
    long long *w, W;
    long *at; /* [p->n]: first flat index of node k's rows */
    int me, size;
    long mine; /* rows this rank scores (counted in file order: for progress only) */
} share;

/* Owner of the row whose weight midpoint, doubled, is m2: ranks own contiguous slices of
 * about W / size each. Integer arithmetic, so every rank draws the same boundaries. */
static int owner(const share *sh, long long m2) {
    long long r = sh->W ? m2 * sh->size / (2 * sh->W) : 0;
    return r < sh->size - 1 ? (int)r : sh->size - 1;
}

static void share_free(share *sh) {
    free(sh->w);
    free(sh->at);
}

/* Weights of every row, and a hash of every context (ranks must score the same rows). */
static int share_init(share *sh, const rmu_eval_plan *p, const rmu_dist *d, uint64_t *hash, rmu_err *e) {
    long n = rmu_eval_plan_rows(p), i = 0;
    sh->me = d->rank, sh->size = d->size;
    sh->w = malloc(sizeof *sh->w * (size_t)(n ? n : 1));
    sh->at = malloc(sizeof *sh->at * (size_t)(p->n ? p->n : 1));
    if (!sh->w || !sh->at) return rmu_errf(e, "out of memory");
    uint64_t h = RMU_FNV_INIT;
    for (int k = 0; k < p->n; k++) {
        const rmu_eval_node *d_ = &p->nodes[k];
        sh->at[k] = i;
        if (d_->family == RMU_EVAL_GROUP) continue;
        h = rmu_fnv1a(h, d_->name, strlen(d_->name) + 1);
        for (int r = 0; r < d_->n; r++, i++) {
            char *ctx = rmu_eval_context(p, k, r);
            if (!ctx) return rmu_errf(e, "out of memory");
            size_t len = strlen(ctx);
            h = rmu_fnv1a(h, ctx, len + 1);
            free(ctx);
            sh->w[i] = (long long)len + 1;
            sh->W += sh->w[i];
        }
    }
    long long c = 0;
    for (long j = 0; j < n; j++) {
        sh->mine += owner(sh, 2 * c + sh->w[j]) == sh->me;
        c += sh->w[j];
    }
    *hash = h;
    return 0;
}

/* Every rank's scores into every rank's plan (rows a rank did not score are 0 there), and
 * the counters summed. */
static int share_reduce(rmu_eval_plan *p, rmu_eval_counts *cnt, const rmu_dist *d, rmu_err *e) {
    long n = rmu_eval_plan_rows(p), i = 0;
    double *buf = calloc((size_t)(2 * n + 5), sizeof *buf);
    if (!buf) return rmu_errf(e, "out of memory");
    for (int k = 0; k < p->n; k++) {
        rmu_eval_node *d_ = &p->nodes[k];
        if (d_->family == RMU_EVAL_GROUP) continue;
        for (int r = 0; r < d_->n; r++, i++) {
            buf[i] = d_->acc[r];
            buf[n + i] = d_->acc_norm ? d_->acc_norm[r] : 0;
        }
    }
    double *c = buf + 2 * n;
    c[0] = cnt->questions, c[1] = cnt->onepass_questions, c[2] = cnt->forward_calls, c[3] = cnt->tokens_fed,
    c[4] = cnt->tokens_reused;
    int rc = rmu_dist_sum_f64(d, buf, (size_t)(2 * n + 5), e);
    i = 0;
    for (int k = 0; k < p->n && !rc; k++) {
        rmu_eval_node *d_ = &p->nodes[k];
        if (d_->family == RMU_EVAL_GROUP) continue;
        for (int r = 0; r < d_->n; r++, i++) {
            d_->acc[r] = buf[i];
            if (d_->acc_norm) d_->acc_norm[r] = buf[n + i];
        }
    }
    cnt->questions = (long)c[0], cnt->onepass_questions = (long)c[1], cnt->forward_calls = (long)c[2];
    cnt->tokens_fed = (long)c[3], cnt->tokens_reused = (long)c[4];
    free(buf);
    return rc;
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
    const rmu_dist *dist = o->dist;
    int multi = dist && dist->size > 1, stop = 0, started = 0;
    share sh = {0};
    long total = rmu_eval_plan_rows(p), done = 0;
    if (multi) {
        uint64_t hash = 0;
        if (!rc) rc = share_init(&sh, p, dist, &hash, e);
        if ((rc = rmu_dist_agree(dist, rc, e)) || (rc = rmu_dist_same(dist, hash, "evaluation rows", e))) goto out;
        for (int k = 0; k < p->n; k++) /* this run's scores only: the shares are added up */
            for (int r = 0; r < p->nodes[k].n && p->nodes[k].family != RMU_EVAL_GROUP; r++) {
                p->nodes[k].acc[r] = 0;
                if (p->nodes[k].acc_norm) p->nodes[k].acc_norm[r] = 0;
            }
        total = sh.mine;
        S.sim = o->prefix_cache; /* the rows before this rank's share set up its cache */
    }
    long long cum = 0; /* weight of the rows before the current one, in scoring order */
    for (int k = 0; k < p->n && !rc && !stop; k++) {
        rmu_eval_node *d = &p->nodes[k];
        if (d->family == RMU_EVAL_GROUP) continue;
        for (int r0 = 0; r0 < d->n && !rc && !stop; r0 += B) {
            int nb = d->n - r0 < B ? d->n - r0 : B;
            if (multi) { /* a batch wholly before this rank's share (nothing to simulate) or after it */
                long long c0 = cum, c1 = cum;
                for (int i = 0; i < nb; i++) c1 += sh.w[sh.at[k] + r0 + i];
                if (owner(&sh, 2 * c0) > sh.me) {
                    stop = 1;
                    break;
                }
                if (owner(&sh, 2 * c1 - 1) < sh.me && !S.sim) {
                    cum = c1;
                    continue;
                }
            }
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
                if (multi) {
                    long long w = sh.w[sh.at[k] + q->row];
                    int own = owner(&sh, 2 * cum + w);
                    cum += w;
                    if (own > sh.me) {
                        stop = 1;
                        break;
                    }
                    if (own < sh.me) {
                        if (S.sim && qrow_score(&S, q, e) < 0) {
                            rmu_err_prefix(e, "%s row %d", d->name, q->row);
                            rc = -1;
                        }
                        continue;
                    }
                    if (!started++ && S.sim && materialize(&S, e)) {
                        rc = -1;
                        break;
                    }
                }
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
                if (o->on_progress) o->on_progress(o->ud, done, total > done ? total : done);
            }
            for (int i = 0; i < nb; i++) qrow_free(&rows[i]);
        }
    }
    /* the share was counted in file order, the rows scored in token order */
    if (multi && !rc && done != total && o->on_progress) o->on_progress(o->ud, done, done);
out:
    if (multi) {
        rc = rmu_dist_agree(dist, rc, e);
        if (!rc) rc = share_reduce(p, counts, dist, e);
    }
    if (S.st_ready) rmu_state_free(&S.st);
    drop_written(&S, 0);
    free(S.wr);
    free(S.cache);
    free(S.logits);
    free(rows);
    free(ord);
    share_free(&sh);
    if (!rc) rmu_eval_aggregate(p);
    return rc;
}
