/* engine.c - slots, queue and the continuous-batching scheduler (see engine.h).
 *
 * Batch invariance (rmu_model_forward_rows in model.h): a row's numbers depend only on its
 * own sequence, not on the other rows of a step nor on how its tokens were split into steps.
 * So prompts are fed in chunks of any size beside running decodes, and every cached row - a
 * prompt's or a generated token's - is reusable for a later prompt that starts with the same
 * tokens (multi-turn chat reuses the previous reply); a greedy sequence is still bitwise
 * `rmu generate --temp 0`'s. */
#include "serve/engine.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "model/generate.h"

#define ECHO_ROWS 64 /* all-row logits per step (prompt logprobs): [ECHO_ROWS, V] floats */

enum { SQ_QUEUED, SQ_PREFILL, SQ_DECODE, SQ_DONE };

typedef struct seq {
    rmu_eng_req *req;
    int idx;
    rmu_eng_params p;    /* prompt/stops point at the copies below */
    char **stops;
    int phase;
    int slot;            /* -1 when none */
    int fed;             /* prompt tokens in the cache */
    int next;            /* token the next decode step feeds */
    int ngen;
    int *counts;         /* [V] generated-token counts, when penalties are on */
    rmu_sampler smp;
    rmu_tok_stream ts;
    rmu_sb all;          /* generated text so far (before held-back trimming) */
    size_t released;
    int stop_hit;        /* ended by a stop string */
    double t_submit, deadline;
    struct seq *qnext;
} seq;

struct rmu_eng_req {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    rmu_eng *g;
    int nseq, ndone, refs;
    int gone;            /* consumer released it */
    seq *seqs;
    rmu_eng_seq_out *outs;
};

typedef struct slot {
    rmu_state st;
    int *ids;            /* tokens of the cached rows [0, st.pos) */
    seq *s;
    unsigned long long used;
} slot;

struct rmu_eng {
    const rmu_model *m;
    const rmu_tokenizer *t;
    rmu_eng_opts o;
    int V, eos;
    pthread_t th;
    int started;
    pthread_mutex_t mu;  /* queue, flags, stats */
    pthread_cond_t cv, idle;
    int stop, draining;
    double drain_deadline;
    seq *qhead, *qtail;
    int nqueued, nactive;
    slot *slots;
    unsigned long long clock;
    rmu_batch_ws ws;
    float *logits;       /* [parallel + ECHO_ROWS, V] */
    float *raw;          /* [V] a row before penalties */
    int *tok;            /* [parallel + prefill_chunk] the step's tokens */
    rmu_eng_stats acc;   /* the scheduler's counters ... */
    rmu_eng_stats st;    /* ... as published under mu */
    double win_t0;       /* tok/s window */
    long long win_tok0;
};

/* ---- requests */

static void req_free(rmu_eng_req *r) {
    for (int i = 0; i < r->nseq; i++) {
        rmu_eng_seq_out *o = &r->outs[i];
        rmu_sb_free(&o->text);
        free(o->ids), free(o->lps), free(o->plps), free(o->prompt);
        seq *s = &r->seqs[i];
        for (int k = 0; k < s->p.nstops; k++) free(s->stops[k]);
        free(s->stops), free(s->counts);
        rmu_sampler_free(&s->smp);
        rmu_sb_free(&s->all);
    }
    free(r->seqs), free(r->outs);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

/* Drops one reference (under no lock); frees at zero. */
static void req_unref(rmu_eng_req *r) {
    pthread_mutex_lock(&r->mu);
    int left = --r->refs;
    pthread_mutex_unlock(&r->mu);
    if (left == 0) req_free(r);
}

void rmu_eng_req_lock(rmu_eng_req *r) { pthread_mutex_lock(&r->mu); }
void rmu_eng_req_unlock(rmu_eng_req *r) { pthread_mutex_unlock(&r->mu); }
int rmu_eng_req_nseq(const rmu_eng_req *r) { return r->nseq; }
int rmu_eng_req_done(rmu_eng_req *r) { return r->ndone == r->nseq; }
const rmu_eng_seq_out *rmu_eng_req_out(rmu_eng_req *r, int i) { return &r->outs[i]; }

void rmu_eng_req_wait(rmu_eng_req *r, double timeout_s) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double t = ts.tv_sec + ts.tv_nsec * 1e-9 + timeout_s;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    pthread_cond_timedwait(&r->cv, &r->mu, &ts);
}

void rmu_eng_req_release(rmu_eng_req *r) {
    rmu_eng *g = r->g;
    pthread_mutex_lock(&r->mu);
    r->gone = 1;
    pthread_mutex_unlock(&r->mu);
    pthread_cond_signal(&g->cv); /* let the scheduler free the slots now */
    req_unref(r);
}

static int is_gone(rmu_eng_req *r) {
    pthread_mutex_lock(&r->mu);
    int g = r->gone;
    pthread_mutex_unlock(&r->mu);
    return g;
}

/* ---- text: stop strings and UTF-8 boundaries, as rmu_gen_run streams them */

/* Appends the generated token's text; returns 1 when a stop string ended the sequence. */
static int push_text(seq *s, int id) {
    char piece[256];
    int np = rmu_tok_stream_push(&s->ts, id, piece, sizeof piece);
    rmu_sb_add(&s->all, piece, np);
    if (!s->all.p) return 0;
    for (int k = 0; k < s->p.nstops; k++) {
        /* only a match ending in the new piece is new */
        size_t sl = strlen(s->stops[k]), from = s->all.n - np > sl ? s->all.n - np - sl : 0;
        const char *hit = strstr(s->all.p + from, s->stops[k]);
        if (hit) {
            rmu_sb_truncate(&s->all, hit - s->all.p);
            return 1;
        }
    }
    return 0;
}

/* Moves text that can no longer become part of a stop string to the output. */
static void release_text(seq *s, rmu_eng_seq_out *o, int final) {
    if (!s->all.p) return;
    size_t hold = final ? 0 : rmu_gen_held_back(s->all.p, s->all.n, (const char *const *)s->stops, s->p.nstops);
    if (s->all.n - hold > s->released) {
        rmu_sb_add(&o->text, s->all.p + s->released, s->all.n - hold - s->released);
        s->released = s->all.n - hold;
    }
}

/* ---- submission */

static int seq_init(rmu_eng *g, seq *s, rmu_eng_seq_out *o, const rmu_eng_params *p, rmu_err *e) {
    s->p = *p;
    s->slot = -1;
    s->phase = SQ_QUEUED;
    if (p->n_prompt <= 0) return rmu_errf(e, "prompt: no tokens");
    if (p->n_prompt > g->o.ctx || p->n_prompt + p->max_new > g->o.ctx + 1)
        return rmu_errf(e, "prompt: %d tokens + %d to generate do not fit the context of %d", p->n_prompt,
                        p->max_new, g->o.ctx);
    if (!(o->prompt = malloc(sizeof(int) * p->n_prompt))) return rmu_errf(e, "out of memory");
    memcpy(o->prompt, p->prompt, sizeof(int) * p->n_prompt);
    o->n_prompt = p->n_prompt;
    o->t_first = -1;
    s->p.prompt = o->prompt;
    if (p->top < 0 || p->top > RMU_ENG_MAX_TOP) return rmu_errf(e, "top_logprobs: must be in [0, %d]", RMU_ENG_MAX_TOP);
    if (p->nstops && !(s->stops = calloc(p->nstops, sizeof *s->stops))) return rmu_errf(e, "out of memory");
    for (int k = 0; k < p->nstops; k++)
        if (!(s->stops[k] = strdup(p->stops[k]))) return rmu_errf(e, "out of memory");
    s->p.stops = (const char *const *)s->stops;
    if ((p->presence != 0 || p->frequency != 0) && !(s->counts = calloc(g->V, sizeof(int))))
        return rmu_errf(e, "out of memory");
    if (rmu_sampler_init(&s->smp, g->V, &p->smp, e)) return -1;
    size_t cap = p->max_new > 0 ? p->max_new : 1;
    if (!(o->ids = malloc(sizeof(int) * cap))) return rmu_errf(e, "out of memory");
    if (p->logprobs && !(o->lps = malloc(sizeof(rmu_eng_lp) * cap))) return rmu_errf(e, "out of memory");
    if (p->prompt_logprobs) {
        if (!(o->plps = calloc(p->n_prompt, sizeof(rmu_eng_lp)))) return rmu_errf(e, "out of memory");
        o->plps[0].id = p->prompt[0];
        o->plps[0].ntop = -1;
        o->nplps = 1;
    }
    rmu_tok_stream_init(&s->ts, g->t);
    if (p->continuation) s->ts.started = 1;
    return 0;
}

rmu_eng_req *rmu_eng_submit(rmu_eng *g, const rmu_eng_params *p, int nseq, int *busy, rmu_err *e) {
    *busy = 0;
    if (nseq <= 0) {
        rmu_errf(e, "no sequences");
        return NULL;
    }
    rmu_eng_req *r = calloc(1, sizeof *r);
    if (!r) {
        rmu_errf(e, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->g = g;
    r->nseq = nseq;
    r->refs = 2; /* the consumer, the engine */
    r->seqs = calloc(nseq, sizeof *r->seqs);
    r->outs = calloc(nseq, sizeof *r->outs);
    if (!r->seqs || !r->outs) {
        r->nseq = 0;
        req_free(r);
        rmu_errf(e, "out of memory");
        return NULL;
    }
    double now = rmu_now_s();
    for (int i = 0; i < nseq; i++) {
        seq *s = &r->seqs[i];
        s->req = r;
        s->idx = i;
        s->t_submit = now;
        s->deadline = g->o.timeout_s > 0 ? now + g->o.timeout_s : INFINITY;
        if (seq_init(g, s, &r->outs[i], &p[i], e)) {
            req_free(r);
            return NULL;
        }
        if (p[i].same_prompt_as >= i) s->p.same_prompt_as = -1;
    }
    pthread_mutex_lock(&g->mu);
    if (g->draining || g->stop || (g->nqueued > 0 && g->nqueued + nseq > g->o.max_queue)) {
        *busy = g->draining || g->stop ? 2 : 1;
        pthread_mutex_unlock(&g->mu);
        req_free(r);
        rmu_errf(e, *busy == 2 ? "the server is shutting down" : "the queue is full (%d waiting)", g->nqueued);
        return NULL;
    }
    for (int i = 0; i < nseq; i++) {
        seq *s = &r->seqs[i];
        if (g->qtail) g->qtail->qnext = s;
        else g->qhead = s;
        g->qtail = s;
    }
    g->nqueued += nseq;
    g->st.requests++;
    g->st.queued = g->nqueued;
    pthread_mutex_unlock(&g->mu);
    pthread_cond_signal(&g->cv);
    return r;
}

/* ---- the scheduler (its thread only, unless noted) */

/* Ends a sequence: the last text, the finish reason; its slot stays as a cache. Takes the
 * request's lock (callers may hold g->mu, never a request's). */
static void finish(rmu_eng *g, seq *s, int reason, int status, const char *err) {
    rmu_eng_req *r = s->req;
    rmu_eng_seq_out *o = &r->outs[s->idx];
    if (s->phase == SQ_DONE) return;
    if (!s->stop_hit) { /* pending bytes of an unfinished character, as rmu_gen_run */
        char tail[64];
        int nt = rmu_tok_stream_flush(&s->ts, tail, sizeof tail);
        rmu_sb_add(&s->all, tail, nt);
    }
    pthread_mutex_lock(&r->mu);
    release_text(s, o, 1);
    if (!o->text.p) rmu_sb_add(&o->text, "", 0);
    o->finish = reason;
    if (reason == RMU_FINISH_ERROR) {
        o->err_status = status;
        snprintf(o->err, sizeof o->err, "%s", err ? err : "internal error");
    }
    int last = ++r->ndone == r->nseq;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (s->slot >= 0) {
        g->slots[s->slot].s = NULL;
        g->nactive--;
        s->slot = -1;
    }
    s->phase = SQ_DONE;
    g->acc.seqs_done++;
    g->acc.aborted += reason == RMU_FINISH_ABORT;
    if (last) req_unref(r);
}

/* log-sum-exp of a row in double, as rmu eval's loglikelihood. */
static double row_lse(const float *row, int V) {
    float mx = row[0];
    for (int i = 1; i < V; i++)
        if (row[i] > mx) mx = row[i];
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)row[i] - mx);
    return mx + log(sum);
}

/* The logprob record of token id under row (top: how many alternatives). */
static void lp_record(const float *row, int V, int id, int top, double lse, rmu_eng_lp *rec) {
    rec->id = id;
    rec->lp = (float)((double)row[id] - lse);
    rec->ntop = 0;
    for (int v = 0; v < V && top > 0; v++) { /* insertion into the sorted top list */
        int k = rec->ntop;
        if (k == top && row[v] <= row[rec->top_id[k - 1]]) continue;
        if (k < top) rec->ntop++;
        else k--;
        while (k > 0 && row[v] > row[rec->top_id[k - 1]]) {
            rec->top_id[k] = rec->top_id[k - 1];
            k--;
        }
        rec->top_id[k] = v;
    }
    for (int k = 0; k < rec->ntop; k++) rec->top_lp[k] = (float)((double)row[rec->top_id[k]] - lse);
}

/* Samples the next token of s from its logits row (modified) and handles it. */
static void on_logits(rmu_eng *g, seq *s, float *row) {
    rmu_eng_req *r = s->req;
    rmu_eng_seq_out *o = &r->outs[s->idx];
    int V = g->V;
    double lse = 0;
    const float *raw = row;
    if (s->p.logprobs) {
        lse = row_lse(row, V);
        if (s->counts) {
            memcpy(g->raw, row, sizeof(float) * V);
            raw = g->raw;
        }
    }
    if (s->counts)
        for (int v = 0; v < V; v++)
            if (s->counts[v]) row[v] -= s->p.frequency * s->counts[v] + s->p.presence;
    int id = rmu_sampler_next(&s->smp, row);
    if (s->counts) s->counts[id]++;
    rmu_eng_lp rec;
    if (s->p.logprobs) lp_record(raw, V, id, s->p.top, lse, &rec);
    s->ngen++;
    g->acc.gen_tokens++;
    int reason = 0;
    pthread_mutex_lock(&r->mu);
    o->ids[o->nids++] = id;
    if (s->p.logprobs) o->lps[o->nlps++] = rec;
    if (o->t_first < 0) o->t_first = rmu_now_s() - s->t_submit;
    if (id == g->eos && !s->p.ignore_eos) reason = RMU_FINISH_STOP;
    else if (push_text(s, id)) reason = RMU_FINISH_STOP, s->stop_hit = 1;
    if (!reason) release_text(s, o, 0);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (!reason && s->ngen >= s->p.max_new) reason = RMU_FINISH_LENGTH;
    if (!reason && g->slots[s->slot].st.pos >= g->o.ctx) reason = RMU_FINISH_LENGTH; /* as rmu_gen_run */
    if (reason) finish(g, s, reason, 0, NULL);
    else {
        s->next = id;
        s->phase = SQ_DECODE;
    }
}

/* Prompt logprobs of rows [0, n) of a chunk that starts at prompt offset f: row k predicts
 * prompt token f + k + 1. */
static void prompt_lps(rmu_eng *g, seq *s, const float *rows, int f, int n) {
    rmu_eng_seq_out *o = &s->req->outs[s->idx];
    pthread_mutex_lock(&s->req->mu);
    for (int k = 0; k < n && f + k + 1 < s->p.n_prompt; k++) {
        const float *row = rows + (size_t)k * g->V;
        lp_record(row, g->V, s->p.prompt[f + k + 1], s->p.top, row_lse(row, g->V), &o->plps[o->nplps++]);
    }
    pthread_mutex_unlock(&s->req->mu);
}

/* Cached rows of slot sl usable for prompt p: the common prefix, leaving at least one prompt
 * token to feed (its logits give the first generated token). */
static int usable(const slot *sl, const seq *s) {
    if (s->p.prompt_logprobs) return 0; /* every prompt row's logits are needed */
    int lim = sl->st.pos < s->p.n_prompt - 1 ? sl->st.pos : s->p.n_prompt - 1, k = 0;
    while (k < lim && sl->ids[k] == s->p.prompt[k]) k++;
    return k;
}

/* Puts s in a free slot: the one caching the longest usable prefix, else the least
 * recently used; K/V rows a busy slot has for a longer prefix (a sibling choice) are
 * copied. g->mu held. */
static void assign(rmu_eng *g, seq *s) {
    int best = -1, breuse = -1, src = -1, sreuse = 0;
    for (int i = 0; i < g->o.parallel; i++) {
        slot *sl = &g->slots[i];
        int u = usable(sl, s);
        if (!sl->s && (u > breuse || (u == breuse && sl->used < g->slots[best].used))) best = i, breuse = u;
        if (u > sreuse) src = i, sreuse = u;
    }
    slot *sl = &g->slots[best];
    int reuse = breuse;
    if (src >= 0 && src != best && sreuse > breuse) {
        const slot *from = &g->slots[src];
        /* head-major caches [layer, kv head, ctx, hd]: one stretch per (layer, head) */
        size_t hd = g->m->cfg.head_dim, ctx = g->o.ctx, nh = (size_t)g->m->cfg.n_layers * g->m->cfg.n_kv_heads;
        for (size_t h = 0; h < nh; h++) {
            memcpy(sl->st.kcache + h * ctx * hd, from->st.kcache + h * ctx * hd, sizeof(float) * sreuse * hd);
            memcpy(sl->st.vcache + h * ctx * hd, from->st.vcache + h * ctx * hd, sizeof(float) * sreuse * hd);
        }
        memcpy(sl->ids, from->ids, sizeof(int) * sreuse);
        reuse = sreuse;
    }
    sl->st.pos = reuse;
    sl->s = s;
    sl->used = ++g->clock;
    s->slot = best;
    s->fed = reuse;
    s->phase = SQ_PREFILL;
    g->nactive++;
    g->acc.reused_tokens += reuse;
    s->req->outs[s->idx].n_reused = reuse; /* read by the consumer only after the request ends */
}

/* Queue upkeep and admission; g->mu held. */
static void admit(rmu_eng *g, double now) {
    seq **pp = &g->qhead, *prev = NULL;
    while (*pp) {
        seq *s = *pp;
        int drop = 0, status = 503;
        const char *why = NULL;
        if (is_gone(s->req)) drop = RMU_FINISH_ABORT;
        else if (g->draining) drop = RMU_FINISH_ERROR, why = "the server is shutting down";
        else if (now > s->deadline) drop = RMU_FINISH_ERROR, why = "timed out waiting for a free slot";
        const seq *sib = s->p.same_prompt_as >= 0 ? &s->req->seqs[s->p.same_prompt_as] : NULL;
        int wait = !drop && (g->nactive == g->o.parallel || (sib && (sib->phase == SQ_QUEUED || sib->phase == SQ_PREFILL)));
        if (wait) { /* a sibling's prefill will be copied: let later requests go first */
            prev = s;
            pp = &s->qnext;
            continue;
        }
        *pp = s->qnext;
        if (g->qtail == s) g->qtail = prev;
        s->qnext = NULL;
        g->nqueued--;
        if (drop) {
            g->acc.timed_out += why && now > s->deadline;
            finish(g, s, drop, status, why);
        } else {
            assign(g, s);
        }
    }
}

/* Ends active sequences whose client left, whose time is up, or all of them (abort). */
static void sweep_active(rmu_eng *g, double now, int abort_all) {
    for (int i = 0; i < g->o.parallel; i++) {
        seq *s = g->slots[i].s;
        if (!s) continue;
        if (is_gone(s->req) || abort_all) finish(g, s, RMU_FINISH_ABORT, 0, NULL);
        else if (now > s->deadline) {
            g->acc.timed_out++;
            finish(g, s, RMU_FINISH_LENGTH, 0, NULL);
        }
    }
}

/* One forward: a decode row per decoding sequence, then prefill chunks within the budget. */
static void step(rmu_eng *g) {
    int P = g->o.parallel, ns = 0, nt = 0, budget = g->o.prefill_chunk, echo = ECHO_ROWS;
    rmu_state *sl[P];
    int nr[P], want[P], who[P];
    for (int i = 0; i < P; i++) {
        seq *s = g->slots[i].s;
        if (!s || s->phase != SQ_DECODE) continue;
        g->tok[nt++] = s->next;
        sl[ns] = &g->slots[i].st, nr[ns] = 1, want[ns] = 1, who[ns++] = i;
    }
    for (int i = 0; i < P; i++) {
        seq *s = g->slots[i].s;
        if (!s || s->phase != SQ_PREFILL) continue;
        int rem = s->p.n_prompt - s->fed, cap = s->p.prompt_logprobs && echo < budget ? echo : budget;
        int n = rem < cap ? rem : cap;
        if (n < 1) continue;
        memcpy(g->tok + nt, s->p.prompt + s->fed, sizeof(int) * n);
        nt += n;
        budget -= n;
        int w = s->p.prompt_logprobs ? 2 : s->fed + n == s->p.n_prompt;
        if (w == 2) echo -= n;
        sl[ns] = &g->slots[i].st, nr[ns] = n, want[ns] = w, who[ns++] = i;
    }
    if (ns == 0) return;
    rmu_err e;
    double t0 = rmu_now_s();
    int pos0[P];
    for (int k = 0; k < ns; k++) pos0[k] = sl[k]->pos;
    if (rmu_model_forward_rows(g->m, sl, g->tok, nr, ns, g->logits, want, &g->ws, &e)) {
        for (int k = 0; k < ns; k++) {
            slot *x = &g->slots[who[k]];
            x->st.pos = pos0[k];
            finish(g, x->s, RMU_FINISH_ERROR, 500, e.msg);
        }
        return;
    }
    g->acc.busy_s += rmu_now_s() - t0;
    g->acc.steps++;
    g->acc.rows += nt;
    const float *lg = g->logits;
    for (int k = 0, t = 0; k < ns; t += nr[k++]) {
        slot *x = &g->slots[who[k]];
        seq *s = x->s;
        memcpy(x->ids + pos0[k], g->tok + t, sizeof(int) * nr[k]);
        float *row = (float *)lg;
        lg += (size_t)(want[k] == 2 ? nr[k] : want[k]) * g->V;
        if (s->phase == SQ_DECODE) {
            on_logits(g, s, row);
            continue;
        }
        if (want[k] == 2) prompt_lps(g, s, row, s->fed, nr[k]);
        s->fed += nr[k];
        g->acc.prompt_tokens += nr[k];
        if (s->fed < s->p.n_prompt) continue;
        if (want[k] == 2) row += (size_t)(nr[k] - 1) * g->V;
        if (s->p.max_new == 0) finish(g, s, RMU_FINISH_LENGTH, 0, NULL);
        else on_logits(g, s, row);
    }
}

/* Publishes the counters; g->mu held. */
static void publish(rmu_eng *g, double now) {
    long long req = g->st.requests;
    g->acc.queued = g->nqueued;
    g->acc.active = g->nactive;
    g->acc.parallel = g->o.parallel;
    if (now - g->win_t0 >= 2.0) {
        g->acc.tok_per_s = (g->acc.gen_tokens - g->win_tok0) / (now - g->win_t0);
        g->win_t0 = now;
        g->win_tok0 = g->acc.gen_tokens;
    }
    g->st = g->acc;
    g->st.requests = req;
}

static void *run(void *arg) {
    rmu_eng *g = arg;
    pthread_mutex_lock(&g->mu);
    while (!g->stop) {
        double now = rmu_now_s();
        admit(g, now);
        publish(g, now);
        if (g->nactive == 0) {
            pthread_cond_broadcast(&g->idle);
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100 * 1000 * 1000; /* wake up to expire queued requests */
            if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
            pthread_cond_timedwait(&g->cv, &g->mu, &ts);
            continue;
        }
        int abort_all = g->draining && now > g->drain_deadline;
        pthread_mutex_unlock(&g->mu);
        sweep_active(g, now, abort_all);
        if (g->nactive) step(g);
        pthread_mutex_lock(&g->mu);
    }
    publish(g, rmu_now_s());
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

/* ---- life cycle */

rmu_eng *rmu_eng_create(const rmu_model *m, const rmu_tokenizer *t, const rmu_eng_opts *o, rmu_err *e) {
    if (o->parallel < 1 || o->parallel > 256) {
        rmu_errf(e, "parallel: must be in [1, 256], got %d", o->parallel);
        return NULL;
    }
    if (o->ctx < 8) {
        rmu_errf(e, "ctx: must be at least 8, got %d", o->ctx);
        return NULL;
    }
    if (o->prefill_chunk < 1) {
        rmu_errf(e, "prefill_chunk: must be at least 1, got %d", o->prefill_chunk);
        return NULL;
    }
    if (o->max_queue < 1) {
        rmu_errf(e, "max_queue: must be at least 1, got %d", o->max_queue);
        return NULL;
    }
    rmu_eng *g = calloc(1, sizeof *g);
    if (!g) {
        rmu_errf(e, "out of memory");
        return NULL;
    }
    g->m = m, g->t = t, g->o = *o;
    g->V = m->cfg.vocab_size;
    g->eos = rmu_tok_eos_id(t);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    pthread_cond_init(&g->idle, NULL);
    g->win_t0 = rmu_now_s();
    int rows = o->parallel + o->prefill_chunk;
    g->slots = calloc(o->parallel, sizeof *g->slots);
    g->logits = malloc(sizeof(float) * (size_t)(o->parallel + ECHO_ROWS) * g->V);
    g->raw = malloc(sizeof(float) * g->V);
    g->tok = malloc(sizeof(int) * rows);
    if (!g->slots || !g->logits || !g->raw || !g->tok) {
        rmu_errf(e, "out of memory");
        goto fail;
    }
    if (rmu_batch_ws_init(&g->ws, m, rows, o->parallel, e)) goto fail;
    for (int i = 0; i < o->parallel; i++) {
        if (rmu_state_init(&g->slots[i].st, m, o->ctx, 1, e)) goto fail;
        if (!(g->slots[i].ids = malloc(sizeof(int) * o->ctx))) {
            rmu_errf(e, "out of memory");
            goto fail;
        }
    }
    if (pthread_create(&g->th, NULL, run, g)) {
        rmu_errf(e, "cannot start the scheduler thread");
        goto fail;
    }
    g->started = 1;
    return g;
fail:
    rmu_eng_destroy(g);
    return NULL;
}

void rmu_eng_destroy(rmu_eng *g) {
    if (!g) return;
    if (g->started) {
        pthread_mutex_lock(&g->mu);
        g->stop = 1;
        pthread_mutex_unlock(&g->mu);
        pthread_cond_signal(&g->cv);
        pthread_join(g->th, NULL);
    }
    while (g->qhead) { /* the thread is gone: this thread may finish sequences now */
        seq *s = g->qhead;
        g->qhead = s->qnext;
        finish(g, s, RMU_FINISH_ERROR, 503, "the server is shutting down");
    }
    for (int i = 0; g->slots && i < g->o.parallel; i++) {
        if (g->slots[i].s) finish(g, g->slots[i].s, RMU_FINISH_ABORT, 0, NULL);
        rmu_state_free(&g->slots[i].st);
        free(g->slots[i].ids);
    }
    rmu_batch_ws_free(&g->ws);
    free(g->slots), free(g->logits), free(g->raw), free(g->tok);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    pthread_cond_destroy(&g->idle);
    free(g);
}

void rmu_eng_drain(rmu_eng *g, double grace_s) {
    pthread_mutex_lock(&g->mu);
    g->draining = 1;
    g->drain_deadline = rmu_now_s() + grace_s;
    pthread_cond_signal(&g->cv);
    while (g->nqueued > 0 || g->st.active > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&g->idle, &g->mu, &ts);
    }
    pthread_mutex_unlock(&g->mu);
}

void rmu_eng_get_stats(rmu_eng *g, rmu_eng_stats *s) {
    pthread_mutex_lock(&g->mu);
    *s = g->st;
    pthread_mutex_unlock(&g->mu);
}
