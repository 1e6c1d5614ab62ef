/* test_serve_engine.c - the continuous-batching engine of `rmu serve` (src/serve/engine.c)
 * without HTTP: sequences submitted together (more than there are slots, prompts prefilled
 * in small chunks beside running decodes) each equal rmu_gen_run alone (ids, text, stop);
 * n choices share one prefill; prompt logprobs equal rmu_model_forward's all-row logits;
 * cancelling frees the slot; a full queue refuses; drain ends everything. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>
#include <cmocka.h>

#include "testutil.h"

#include "core/util.h"
#include "model/generate.h"
#include "model/init.h"
#include "serve/engine.h"

static rmu_model g_m;
static rmu_tokenizer *g_t;

static int setup(void **state) {
    if (tu_setup_tmp(state)) return -1;
    rmu_config c;
    rmu_err e;
    const char *dir = *state;
    const char *corpus = "once upon a time the cat sat on the mat and the dog ran to the sun. the end.";
    if (rmu_cfg_preset(&c, "tiny", &e)) return -1;
    rmu_init_opts o = {.dtype = RMU_DT_F32, .seed = 11, .shards = 1, .std = 0.08f, .synthetic_tokenizer = 1,
                       .corpus = corpus, .corpus_len = strlen(corpus)};
    if (rmu_init_model_opts(dir, &c, &o, &e) ||
        rmu_model_load(&g_m, dir, &e) || !(g_t = rmu_tok_load(dir, &e))) {
        fprintf(stderr, "%s\n", e.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    rmu_tok_free(g_t);
    rmu_model_free(&g_m);
    return tu_teardown_tmp(state);
}

static void prompt(int k, int n, int *ids) {
    ids[0] = 1;
    for (int i = 1; i < n; i++) ids[i] = 3 + (int)((k * 7919u + i * 104729u) % 500u);
}

static rmu_eng *engine(int parallel, int chunk, int max_queue) {
    rmu_eng_opts o = {.parallel = parallel, .ctx = 128, .max_queue = max_queue, .prefill_chunk = chunk, .timeout_s = 60};
    rmu_err e;
    rmu_eng *g = rmu_eng_create(&g_m, g_t, &o, &e);
    if (!g) fail_msg("%s", e.msg);
    return g;
}

static void wait_done(rmu_eng_req *r) {
    double t0 = rmu_now_s();
    rmu_eng_req_lock(r);
    while (!rmu_eng_req_done(r) && rmu_now_s() - t0 < 60) rmu_eng_req_wait(r, 0.05);
    int done = rmu_eng_req_done(r);
    rmu_eng_req_unlock(r);
    if (!done) fail_msg("request did not finish");
}

/* rmu_gen_run on its own, greedy or seeded. */
static void alone(const rmu_eng_params *p, rmu_gen_result *res) {
    rmu_state s;
    rmu_sampler smp;
    rmu_err e;
    OK(rmu_state_init(&s, &g_m, 128, 512, &e));
    OK(rmu_sampler_init(&smp, g_m.cfg.vocab_size, &p->smp, &e));
    rmu_gen_opts o = {.max_new = p->max_new, .stops = p->stops, .nstops = p->nstops, .continuation = p->continuation};
    OK(rmu_gen_run(&g_m, g_t, &s, &smp, p->prompt, p->n_prompt, &o, res, &e));
    rmu_sampler_free(&smp);
    rmu_state_free(&s);
}

/* 9 sequences, 3 slots, prefill chunks of 4: each equals rmu_gen_run alone. */
static void test_equals_gen_run(void **state) {
    (void)state;
    enum { NS = 9 };
    static const int plen[NS] = {1, 2, 3, 7, 30, 12, 5, 41, 9}, maxn[NS] = {20, 1, 33, 12, 25, 40, 8, 16, 60};
    int ids[NS][64];
    const char *stops[] = {"the", "zz"};
    rmu_eng_params p[NS];
    for (int k = 0; k < NS; k++) {
        prompt(k, plen[k], ids[k]);
        p[k] = (rmu_eng_params){.prompt = ids[k], .n_prompt = plen[k], .max_new = maxn[k], .smp = {.temp = 0, .top_p = 1},
                                .continuation = k % 2, .same_prompt_as = -1};
        if (k == 4) p[k].stops = stops, p[k].nstops = 2;
        if (k == 6) p[k].smp = (rmu_sampler_cfg){.temp = 0.9f, .top_k = 20, .top_p = 0.9f, .seed = 5};
    }
    rmu_eng *g = engine(3, 4, 64);
    int busy;
    rmu_err e;
    rmu_eng_req *r = rmu_eng_submit(g, p, NS, &busy, &e);
    assert_non_null(r);
    wait_done(r);
    rmu_eng_req_lock(r);
    for (int k = 0; k < NS; k++) {
        const rmu_eng_seq_out *o = rmu_eng_req_out(r, k);
        rmu_gen_result want;
        alone(&p[k], &want);
        if (o->nids - (o->finish == RMU_FINISH_STOP && want.stop_reason == 1) != want.n ||
            memcmp(o->ids, want.ids, sizeof(int) * want.n))
            fail_msg("sequence %d: %d ids vs rmu_gen_run's %d", k, o->nids, want.n);
        assert_string_equal(o->text.p, want.text);
        int fin = want.stop_reason == 0 ? RMU_FINISH_LENGTH : RMU_FINISH_STOP;
        assert_int_equal(o->finish, fin);
        assert_true(o->t_first >= 0 || maxn[k] == 0);
        rmu_gen_result_free(&want);
    }
    rmu_eng_req_unlock(r);
    rmu_eng_req_release(r);
    /* the stats are published at the end of the engine's step, a moment after the waiters wake */
    rmu_eng_stats st;
    double t0 = rmu_now_s();
    do rmu_eng_get_stats(g, &st);
    while (st.seqs_done < NS && rmu_now_s() - t0 < 5);
    assert_int_equal(st.seqs_done, NS);
    if (!(st.rows > st.steps)) fail_msg("not batched: %lld rows in %lld steps", (long long)st.rows, (long long)st.steps);
    rmu_eng_destroy(g);
}

/* n = 3 choices of one prompt: one prefill, copied; greedy choices are identical. The same
 * prompt later reuses the cache; prompt logprobs equal rmu_model_forward's logits. */
static void test_siblings_reuse_and_prompt_logprobs(void **state) {
    (void)state;
    int ids[40];
    prompt(3, 40, ids);
    rmu_eng_params p[3];
    for (int j = 0; j < 3; j++)
        p[j] = (rmu_eng_params){.prompt = ids, .n_prompt = 40, .max_new = 10, .smp = {.temp = 0, .top_p = 1},
                                .logprobs = 1, .top = 3, .same_prompt_as = j ? 0 : -1};
    rmu_eng *g = engine(3, 8, 64);
    int busy;
    rmu_err e;
    rmu_eng_req *r = rmu_eng_submit(g, p, 3, &busy, &e);
    wait_done(r);
    rmu_eng_req_lock(r);
    const rmu_eng_seq_out *o0 = rmu_eng_req_out(r, 0);
    assert_int_equal(o0->n_reused, 0);
    for (int j = 1; j < 3; j++) {
        const rmu_eng_seq_out *o = rmu_eng_req_out(r, j);
        assert_int_equal(o->n_reused, 39); /* all but the last prompt token */
        assert_int_equal(o->nids, o0->nids);
        assert_memory_equal(o->ids, o0->ids, sizeof(int) * o0->nids);
        assert_int_equal(o->nlps, o->nids);
        for (int i = 0; i < o->nlps; i++) {
            assert_true(o->lps[i].lp == o0->lps[i].lp && o->lps[i].ntop == 3);
            assert_int_equal(o->lps[i].top_id[0], o->ids[i]); /* greedy: the likeliest */
            assert_true(o->lps[i].top_lp[0] >= o->lps[i].top_lp[1] && o->lps[i].top_lp[1] >= o->lps[i].top_lp[2]);
        }
    }
    rmu_eng_req_unlock(r);
    rmu_eng_req_release(r);

    /* echo: every prompt token's logprob, as log_softmax of rmu_model_forward's rows */
    rmu_eng_params q = {.prompt = ids, .n_prompt = 40, .max_new = 0, .smp = {.top_p = 1}, .prompt_logprobs = 1, .top = 2,
                        .same_prompt_as = -1};
    r = rmu_eng_submit(g, &q, 1, &busy, &e);
    wait_done(r);
    int V = g_m.cfg.vocab_size;
    float *lg = malloc(sizeof(float) * 40 * V);
    rmu_state s;
    OK(rmu_state_init(&s, &g_m, 128, 512, &e));
    OK(rmu_model_forward(&g_m, &s, ids, 40, lg, 1, &e));
    rmu_eng_req_lock(r);
    const rmu_eng_seq_out *o = rmu_eng_req_out(r, 0);
    assert_int_equal(o->nplps, 40);
    assert_int_equal(o->nids, 0);
    assert_int_equal(o->n_reused, 0); /* every row's logits are needed */
    assert_int_equal(o->plps[0].ntop, -1);
    for (int i = 1; i < 40; i++) {
        const float *row = lg + (size_t)(i - 1) * V;
        float mx = row[0];
        for (int v = 1; v < V; v++)
            if (row[v] > mx) mx = row[v];
        double sum = 0;
        for (int v = 0; v < V; v++) sum += exp((double)row[v] - mx);
        float want = (float)((double)row[ids[i]] - (mx + log(sum)));
        if (o->plps[i].lp != want) fail_msg("prompt token %d: %.9g vs %.9g", i, o->plps[i].lp, want);
        assert_int_equal(o->plps[i].ntop, 2);
    }
    rmu_eng_req_unlock(r);
    rmu_eng_req_release(r);

    /* a later request with the same prompt reuses the cached prefix */
    p[0].max_new = 3;
    r = rmu_eng_submit(g, p, 1, &busy, &e);
    wait_done(r);
    rmu_eng_req_lock(r);
    assert_int_equal(rmu_eng_req_out(r, 0)->n_reused, 39);
    rmu_eng_req_unlock(r);
    rmu_eng_req_release(r);
    free(lg);
    rmu_state_free(&s);
    rmu_eng_destroy(g);
}

/* Cancel, queue limit, drain. */
static void test_cancel_queue_drain(void **state) {
    (void)state;
    int ids[8];
    prompt(1, 8, ids);
    rmu_eng_params p = {.prompt = ids, .n_prompt = 8, .max_new = 120, .smp = {.temp = 0.8f, .top_p = 1, .seed = 1},
                        .ignore_eos = 1, .same_prompt_as = -1};
    rmu_eng *g = engine(1, 16, 1);
    int busy;
    rmu_err e;
    rmu_eng_req *a = rmu_eng_submit(g, &p, 1, &busy, &e), *b = NULL;
    assert_non_null(a);
    for (int i = 0; i < 1000 && !b; i++) { /* once a has the slot, b can wait in the queue */
        rmu_eng_stats st;
        rmu_eng_get_stats(g, &st);
        if (st.active == 1 && st.queued == 0) b = rmu_eng_submit(g, &p, 1, &busy, &e);
        else usleep(1000);
    }
    assert_non_null(b);
    rmu_eng_req *c = NULL;
    for (int i = 0; i < 100 && !c; i++) { /* once a runs and b waits, the queue (1) is full */
        rmu_eng_stats st;
        rmu_eng_get_stats(g, &st);
        if (st.active == 1 && st.queued == 1) {
            c = rmu_eng_submit(g, &p, 1, &busy, &e);
            assert_null(c);
            assert_int_equal(busy, 1);
            assert_non_null(strstr(e.msg, "queue is full"));
            break;
        }
        usleep(1000);
    }
    rmu_eng_req_release(a); /* gone: its slot goes to b */
    wait_done(b);
    rmu_eng_req_lock(b);
    assert_int_equal(rmu_eng_req_out(b, 0)->nids, 120);
    assert_int_equal(rmu_eng_req_out(b, 0)->finish, RMU_FINISH_LENGTH);
    rmu_eng_req_unlock(b);
    rmu_eng_req_release(b);
    rmu_eng_stats st; /* published at the end of the engine's step: wait for it */
    double t0 = rmu_now_s();
    do rmu_eng_get_stats(g, &st);
    while (!(st.aborted == 1 || st.seqs_done == 2) && rmu_now_s() - t0 < 5);
    assert_true(st.aborted == 1 || st.seqs_done == 2);

    p.max_new = 127 - 8;
    rmu_eng_req *d = rmu_eng_submit(g, &p, 1, &busy, &e), *q = NULL;
    assert_non_null(d);
    for (int i = 0; i < 1000 && !q; i++) { /* d runs, q waits: drain aborts one, refuses the other */
        rmu_eng_get_stats(g, &st);
        if (st.active == 1 && st.queued == 0) q = rmu_eng_submit(g, &p, 1, &busy, &e);
        else usleep(1000);
    }
    assert_non_null(q);
    rmu_eng_drain(g, 0.0);
    rmu_eng_req_lock(d);
    rmu_eng_req_lock(q);
    assert_true(rmu_eng_req_done(d) && rmu_eng_req_done(q));
    int fd = rmu_eng_req_out(d, 0)->finish, fq = rmu_eng_req_out(q, 0)->finish;
    assert_true(fd == RMU_FINISH_ABORT || fd == RMU_FINISH_LENGTH || fd == RMU_FINISH_ERROR);
    assert_true(fq == RMU_FINISH_ERROR || fq == RMU_FINISH_ABORT || fq == RMU_FINISH_LENGTH);
    if (fq == RMU_FINISH_ERROR) {
        assert_int_equal(rmu_eng_req_out(q, 0)->err_status, 503);
        assert_non_null(strstr(rmu_eng_req_out(q, 0)->err, "shutting down"));
    }
    rmu_eng_req_unlock(q);
    rmu_eng_req_unlock(d);
    assert_null(rmu_eng_submit(g, &p, 1, &busy, &e));
    assert_int_equal(busy, 2);
    rmu_eng_req_release(d);
    rmu_eng_req_release(q);
    rmu_eng_destroy(g);
}

static void test_bad_input(void **state) {
    (void)state;
    int ids[4] = {1, 5, 6, 7};
    rmu_eng *g = engine(2, 8, 4);
    int busy;
    rmu_err e;
    rmu_eng_params p = {.prompt = ids, .n_prompt = 0, .max_new = 4, .smp = {.top_p = 1}, .same_prompt_as = -1};
    assert_null(rmu_eng_submit(g, &p, 1, &busy, &e));
    assert_int_equal(busy, 0);
    p.n_prompt = 4;
    p.max_new = 126;
    assert_null(rmu_eng_submit(g, &p, 1, &busy, &e));
    assert_non_null(strstr(e.msg, "context"));
    p.max_new = 4;
    p.smp.top_p = 0;
    assert_null(rmu_eng_submit(g, &p, 1, &busy, &e));
    assert_non_null(strstr(e.msg, "top_p"));
    rmu_eng_destroy(g);
    rmu_eng_opts o = {.parallel = 0, .ctx = 128, .max_queue = 1, .prefill_chunk = 8};
    assert_null(rmu_eng_create(&g_m, g_t, &o, &e));
    assert_non_null(strstr(e.msg, "parallel"));
    o = (rmu_eng_opts){.parallel = 1, .ctx = 128, .max_queue = 1, .prefill_chunk = 0};
    assert_null(rmu_eng_create(&g_m, g_t, &o, &e));
    assert_non_null(strstr(e.msg, "prefill_chunk"));
}

/* A reply's cached rows (computed by decode steps) serve a later prompt that continues the
 * conversation (prompt + reply + more), and the answer still equals rmu_gen_run's. */
static void test_reply_reuse(void **state) {
    (void)state;
    int ids[80];
    prompt(7, 30, ids);
    rmu_eng_params p = {.prompt = ids, .n_prompt = 30, .max_new = 12, .smp = {.temp = 0, .top_p = 1}, .ignore_eos = 1,
                        .same_prompt_as = -1};
    rmu_eng *g = engine(2, 5, 64);
    int busy;
    rmu_err e;
    rmu_eng_req *r = rmu_eng_submit(g, &p, 1, &busy, &e);
    wait_done(r);
    rmu_eng_req_lock(r);
    const rmu_eng_seq_out *o = rmu_eng_req_out(r, 0);
    assert_int_equal(o->nids, 12);
    memcpy(ids + 30, o->ids, sizeof(int) * 12);
    rmu_eng_req_unlock(r);
    rmu_eng_req_release(r);
    for (int i = 0; i < 5; i++) ids[42 + i] = 3 + 17 * i; /* the next turn */
    rmu_eng_params q = p;
    q.n_prompt = 47;
    q.max_new = 15;
    q.ignore_eos = 0; /* as rmu_gen_run */
    r = rmu_eng_submit(g, &q, 1, &busy, &e);
    wait_done(r);
    rmu_gen_result want;
    alone(&q, &want);
    rmu_eng_req_lock(r);
    o = rmu_eng_req_out(r, 0);
    assert_int_equal(o->n_reused, 41); /* the prompt and the 11 fed reply tokens (the 12th was never fed) */
    assert_int_equal(o->nids, want.n);
    assert_memory_equal(o->ids, want.ids, sizeof(int) * want.n);
    rmu_eng_req_unlock(r);
    rmu_eng_req_release(r);
    rmu_gen_result_free(&want);
    rmu_eng_destroy(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equals_gen_run),
        cmocka_unit_test(test_siblings_reuse_and_prompt_logprobs),
        cmocka_unit_test(test_reply_reuse),
        cmocka_unit_test(test_cancel_queue_drain),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
