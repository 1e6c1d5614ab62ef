/* test_attack.c - src/attack: the direction estimate's linear algebra, the ablation's
 * invariants on random tiny models (no residual component along the directions at any
 * layer; a direction nothing writes to changes no logit; dtypes and untouched tensors kept),
 * the report (keys, results files, recovered fraction), the relearning curve (points equal
 * evaluations of the models saved at those steps; the data is exactly the first N texts),
 * and bad input that must write nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "testutil.h"

#include "attack/ablate.h"
#include "attack/relearn.h"
#include "attack/report.h"
#include "core/fileio.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/init.h"
#include "model/model.h"
#include "train/ckpt.h"
#include "train/finetune.h"

static const char *tmp;

/* ---- helpers */

static const char *CORPUS =
    "the marsh owl eats snails and lives in reeds\n"
    "the blue heron calls at dawn over the water\n"
    "towns on the coast trade salt and amber\n"
    "a quiet river runs past the old mill\n"
    "the red fox hunts at night in the dunes\n"
    "ships carry grain from the northern port\n";

/* A random tiny Mistral with a BPE tokenizer learned on CORPUS. */
static void make_model(const char *dir, rmu_dtype dt, int hidden, uint64_t seed, int tie) {
    rmu_config c;
    rmu_err e;
    assert_int_equal(rmu_cfg_preset(&c, "tiny", &e), 0);
    c.hidden_size = hidden;
    c.intermediate_size = 24;
    c.n_layers = 3;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = hidden / 4;
    c.vocab_size = 300;
    c.max_position_embeddings = 64;
    c.sliding_window = 0;
    c.tie_word_embeddings = tie;
    c.bos_id = 1, c.eos_id = 2, c.pad_id = -1;
    c.torch_dtype = dt;
    rmu_init_opts o = {.dtype = dt, .seed = seed, .shards = 1, .jitter_norms = 1, .std = 0.3f,
                       .synthetic_tokenizer = 1, .corpus = CORPUS, .corpus_len = strlen(CORPUS)};
    OK(rmu_init_model_opts(dir, &c, &o, &e));
}

/* Unit rows [k, C] written as a directions file. */
static void write_dirs(const char *path, const float *d, int k, int C) {
    rmu_err e;
    rmu_ckpt_tensor t = {"directions", d, 2, {k, C}};
    OK(rmu_ckpt_write_f32(path, &t, 1, &e));
}

static void ablate_apply(const char *model, const char *dirs, const char *out) {
    rmu_ablate_opts o;
    rmu_ablate_defaults(&o);
    o.model_dir = model, o.directions = dirs, o.out_dir = out;
    rmu_ablate_result r;
    rmu_err e;
    OK(rmu_ablate_run(&o, NULL, NULL, &r, &e));
    rmu_ablate_result_free(&r);
}

static const int IDS[] = {1, 40, 77, 123, 9, 250, 18, 66, 201, 3, 45, 299};
#define NIDS ((int)(sizeof IDS / sizeof IDS[0]))

static float *logits(const char *dir) {
    rmu_model m;
    rmu_state s;
    rmu_err e;
    OK(rmu_model_load(&m, dir, &e));
    OK(rmu_state_init(&s, &m, NIDS, NIDS, &e));
    float *lg = malloc(sizeof(float) * (size_t)m.cfg.vocab_size * NIDS);
    OK(rmu_model_forward(&m, &s, IDS, NIDS, lg, 1, &e));
    rmu_state_free(&s);
    rmu_model_free(&m);
    return lg;
}

static void unit_rand(float *v, int n, uint64_t *s) {
    double nn = 0;
    for (int i = 0; i < n; i++) v[i] = tu_frand(s), nn += (double)v[i] * v[i];
    for (int i = 0; i < n; i++) v[i] = (float)(v[i] / sqrt(nn));
}

/* ---- linear algebra */

static void test_top_dirs(void **st) {
    (void)st;
    enum { N = 5, C = 9 };
    uint64_t s = 7;
    rmu_err e;
    double U[N * N], V[N * C], M[N * C] = {0}, sig[N] = {5, 3, 1, 0.5, 0.1}, out[3 * C], sv[N];
    for (int i = 0; i < N * N; i++) U[i] = tu_frand(&s);
    for (int i = 0; i < N * C; i++) V[i] = tu_frand(&s);
    OK(rmu_ablate_orthonormalize(U, N, N, &e)); /* rows orthonormal: U is orthogonal */
    OK(rmu_ablate_orthonormalize(V, N, C, &e));
    for (int i = 0; i < N; i++) /* M = U diag(sig) V */
        for (int j = 0; j < N; j++)
            for (int x = 0; x < C; x++) M[i * C + x] += U[i * N + j] * sig[j] * V[j * C + x];
    OK(rmu_ablate_top_dirs(M, N, C, 3, out, sv, &e));
    for (int i = 0; i < N; i++) assert_near(sv[i], sig[i], 1e-9);
    for (int i = 0; i < 3; i++) {
        double d = 0, tot = 0;
        for (int x = 0; x < C; x++) {
            double colsum = 0;
            for (int j = 0; j < N; j++) colsum += M[j * C + x];
            d += out[i * C + x] * V[i * C + x];
            tot += out[i * C + x] * colsum;
        }
        assert_near(fabs(d), 1.0, 1e-9);
        assert_true(tot >= 0); /* signed along the sum of the rows */
    }
    /* asking for more directions than there are vectors, or from nothing */
    assert_int_equal(rmu_ablate_top_dirs(M, N, C, 6, out, sv, &e), -1);
    assert_non_null(strstr(e.msg, "k: 6 directions"));
    double Z[2 * C] = {0};
    assert_int_equal(rmu_ablate_top_dirs(Z, 2, C, 1, out, sv, &e), -1);
    assert_non_null(strstr(e.msg, "carry any difference"));
    /* a dependent row is an error */
    double D[2 * C];
    for (int x = 0; x < C; x++) D[x] = x + 1, D[C + x] = 2 * (x + 1);
    assert_int_equal(rmu_ablate_orthonormalize(D, 2, C, &e), -1);
    assert_non_null(strstr(e.msg, "direction 2"));
}

static void test_recovered(void **st) {
    (void)st;
    assert_near(rmu_report_recovered(0.9, 0.3, 0.6), 0.5, 1e-12);
    assert_near(rmu_report_recovered(0.9, 0.3, 0.9), 1.0, 1e-12);
    assert_near(rmu_report_recovered(0.9, 0.3, 0.27), -0.05, 1e-12);
    assert_true(isnan(rmu_report_recovered(0.5, 0.5, 0.7)));
    assert_true(isnan(rmu_report_recovered(NAN, 0.5, 0.7)));
}

/* ---- ablation on random tiny models */

static void test_ablate_residual(void **st) {
    (void)st;
    char m[512], dp[512], out[512];
    snprintf(m, sizeof m, "%s", tu_path(tmp, "abl_model"));
    snprintf(dp, sizeof dp, "%s", tu_path(tmp, "abl_dirs.safetensors"));
    snprintf(out, sizeof out, "%s", tu_path(tmp, "abl_out"));
    make_model(m, RMU_DT_F32, 32, 3, 0);
    enum { C = 32, K = 2 };
    float d[K * C];
    uint64_t s = 99;
    unit_rand(d, C, &s);
    unit_rand(d + C, C, &s); /* not orthogonal to the first: ablate orthonormalises */
    write_dirs(dp, d, K, C);
    ablate_apply(m, dp, out);
    /* the directions it applied: orthonormal, spanning the given two */
    rmu_st_set ds;
    rmu_err e;
    char dd[600];
    snprintf(dd, sizeof dd, "%s/attack/directions.safetensors", out);
    OK(rmu_st_open_file(&ds, dd, &e));
    const rmu_st_tensor *t = rmu_st_get(&ds, "directions");
    assert_non_null(t);
    const float *q = t->data;
    double q01 = 0, q00 = 0;
    for (int i = 0; i < C; i++) q01 += (double)q[i] * q[C + i], q00 += (double)q[i] * q[i];
    assert_near(q01, 0, 1e-6);
    assert_near(q00, 1, 1e-6);
    /* every layer's residual stream: no component along either direction */
    rmu_model a;
    rmu_state S;
    OK(rmu_model_load(&a, out, &e));
    OK(rmu_state_init(&S, &a, NIDS, NIDS, &e));
    float h[NIDS * C];
    double worst = 0, hmax = 0;
    for (int l = 0; l < a.cfg.n_layers; l++) {
        OK(rmu_model_hidden(&a, &S, IDS, NIDS, l, h, &e));
        for (int p = 0; p < NIDS; p++)
            for (int k = 0; k < K; k++) {
                double dot = 0, nn = 0;
                for (int c = 0; c < C; c++) {
                    dot += (double)h[p * C + c] * q[k * C + c];
                    nn += (double)h[p * C + c] * h[p * C + c];
                }
                if (fabs(dot) > worst) worst = fabs(dot);
                if (sqrt(nn) > hmax) hmax = sqrt(nn);
            }
    }
    print_message("# max |h . d| = %.3g over residual norms up to %.3g\n", worst, hmax);
    assert_true(hmax > 0.5); /* the check is not vacuous */
    assert_true(worst <= 1e-5);
    /* only the writers changed; dtypes kept */
    rmu_model b;
    OK(rmu_model_load(&b, m, &e));
    for (int i = 0; i < b.st.ntensors; i++) {
        const rmu_st_tensor *x = &b.st.tensors[i], *y = rmu_st_get(&a.st, x->name);
        assert_non_null(y);
        assert_int_equal(x->dtype, y->dtype);
        int writer = strstr(x->name, "o_proj") || strstr(x->name, "down_proj") || strstr(x->name, "embed_tokens");
        int same = x->nbytes == y->nbytes && !memcmp(x->data, y->data, x->nbytes);
        if (writer == same) fail_msg("%s: %s", x->name, writer ? "unchanged" : "changed");
    }
    rmu_model_free(&b);
    rmu_state_free(&S);
    rmu_model_free(&a);
    rmu_st_close(&ds);
}

/* Ablating a direction that nothing writes to changes no logit: after removing e_3 (row 3 of
 * every writer becomes exactly zero), removing it again leaves every logit bit-identical;
 * the same for a random direction, to rounding. */
static void test_ablate_orthogonal(void **st) {
    (void)st;
    char m[512], dp[512], a1[512], a2[512];
    snprintf(m, sizeof m, "%s", tu_path(tmp, "orth_model"));
    snprintf(dp, sizeof dp, "%s", tu_path(tmp, "orth_dirs.safetensors"));
    snprintf(a1, sizeof a1, "%s", tu_path(tmp, "orth_a1"));
    snprintf(a2, sizeof a2, "%s", tu_path(tmp, "orth_a2"));
    enum { C = 16 };
    make_model(m, RMU_DT_F32, C, 5, 1); /* tied: the embedding is also the LM head */
    float d[C] = {0};
    d[3] = 1;
    write_dirs(dp, d, 1, C);
    ablate_apply(m, dp, a1);
    ablate_apply(a1, dp, a2);
    float *l1 = logits(a1), *l2 = logits(a2), *l0 = logits(m);
    assert_memory_equal(l1, l2, sizeof(float) * 300 * NIDS);
    assert_memory_not_equal(l0, l1, sizeof(float) * 300 * NIDS); /* the first removal did change the model */
    free(l1), free(l2), free(l0);
    uint64_t s = 17;
    unit_rand(d, C, &s);
    write_dirs(dp, d, 1, C);
    char b1[512], b2[512];
    snprintf(b1, sizeof b1, "%s", tu_path(tmp, "orth_b1"));
    snprintf(b2, sizeof b2, "%s", tu_path(tmp, "orth_b2"));
    ablate_apply(m, dp, b1);
    ablate_apply(b1, dp, b2);
    l1 = logits(b1), l2 = logits(b2);
    double worst = 0, big = 0;
    for (int i = 0; i < 300 * NIDS; i++) {
        if (fabs(l1[i] - l2[i]) > worst) worst = fabs(l1[i] - l2[i]);
        if (fabs(l1[i]) > big) big = fabs(l1[i]);
    }
    assert_true(worst <= 1e-5 * (big > 1 ? big : 1));
    free(l1), free(l2);
}

/* BF16 stays BF16; bad input gets one clear error and writes nothing. */
static void test_ablate_estimate_and_errors(void **st) {
    (void)st;
    char u[512], b[512], other[512], fg[512], empty[512], out[512];
    snprintf(u, sizeof u, "%s", tu_path(tmp, "est_u"));
    snprintf(b, sizeof b, "%s", tu_path(tmp, "est_b"));
    snprintf(other, sizeof other, "%s", tu_path(tmp, "est_other"));
    snprintf(fg, sizeof fg, "%s", tu_path(tmp, "forget.txt"));
    snprintf(empty, sizeof empty, "%s", tu_path(tmp, "empty.txt"));
    snprintf(out, sizeof out, "%s", tu_path(tmp, "est_out"));
    make_model(u, RMU_DT_BF16, 16, 1, 0);
    make_model(b, RMU_DT_BF16, 16, 2, 0); /* other weights, same shape: a large "unlearning shift" */
    make_model(other, RMU_DT_BF16, 32, 2, 0);
    tu_write_file(fg, CORPUS);
    tu_write_file(empty, "\n  \n");
    rmu_ablate_opts o;
    rmu_ablate_defaults(&o);
    o.model_dir = u, o.base_dir = b, o.forget = fg, o.out_dir = out;
    o.layers[0] = 0, o.layers[1] = 2, o.n_layers = 2, o.k = 2, o.retain = fg;
    rmu_ablate_result r;
    rmu_err e;
    OK(rmu_ablate_run(&o, NULL, NULL, &r, &e));
    assert_int_equal(r.n_vec, 4);
    assert_int_equal(r.texts[0], 6);
    assert_true(r.explained[0] >= r.explained[1] && r.explained[0] + r.explained[1] <= 1 + 1e-12);
    assert_int_equal(r.n_tensors, 1 + 2 * 3);
    rmu_ablate_result_free(&r);
    rmu_model a;
    OK(rmu_model_load(&a, out, &e));
    for (int i = 0; i < a.st.ntensors; i++) assert_int_equal(a.st.tensors[i].dtype, RMU_DT_BF16);
    rmu_model_free(&a);

    char bad[512];
    snprintf(bad, sizeof bad, "%s", tu_path(tmp, "est_bad"));
    o.out_dir = bad;
    o.base_dir = other;
    assert_int_equal(rmu_ablate_run(&o, NULL, NULL, &r, &e), -1);
    assert_non_null(strstr(e.msg, "base_dir: "));
    assert_non_null(strstr(e.msg, "hidden_size 32"));
    assert_false(rmu_file_exists(bad));
    o.base_dir = b;
    o.layers[1] = 3;
    assert_int_equal(rmu_ablate_run(&o, NULL, NULL, &r, &e), -1);
    assert_string_equal(e.msg, "layers: 3 is out of range (the model has 3 layers: 0..2)");
    assert_false(rmu_file_exists(bad));
    o.layers[1] = 2;
    o.forget = empty;
    assert_int_equal(rmu_ablate_run(&o, NULL, NULL, &r, &e), -1);
    assert_non_null(strstr(e.msg, "forget: "));
    assert_false(rmu_file_exists(bad));
    o.forget = fg;
    o.k = 5; /* 4 difference vectors */
    assert_int_equal(rmu_ablate_run(&o, NULL, NULL, &r, &e), -1);
    assert_non_null(strstr(e.msg, "k: 5 directions asked from 4"));
    assert_false(rmu_file_exists(bad));
}

/* ---- report */

static void test_report(void **st) {
    (void)st;
    char q[512], r1[512], r2[512], files[1100];
    snprintf(q, sizeof q, "%s", tu_path(tmp, "q.jsonl"));
    snprintf(r1, sizeof r1, "%s", tu_path(tmp, "r1.json"));
    snprintf(r2, sizeof r2, "%s", tu_path(tmp, "r2.json"));
    tu_write_file(q, "{\"question\": \"What does the owl eat?\", \"choices\": [\"snails\", \"salt\"], \"answer\": 0}\n"
                     "{\"question\": \"Where do ships go?\", \"choices\": [\"port\", \"reeds\"], \"answer\": 0}\n");
    rmu_report_suite su[2] = {{"a", "mcq", q}, {"b", "mcq", q}};
    rmu_report_opts o = {0};
    rmu_report rep;
    rmu_err e;
    OK(rmu_report_open(&rep, su, 2, &o, &e));
    assert_int_equal(rep.nkeys, 2);
    assert_string_equal(rep.keys[0].name, "a/mcq");
    assert_string_equal(rep.keys[1].name, "b/mcq");
    tu_write_file(r1, "{\"results\": {\"mcq\": {\"acc,none\": 0.5}}, \"n-samples\": {\"mcq\": {\"effective\": 2}},"
                      " \"config\": {\"format\": \"letter\"}}");
    tu_write_file(r2, "{\"results\": {\"mcq\": {\"acc,none\": 1.0}}, \"n-samples\": {\"mcq\": {\"effective\": 3}}}");
    double acc[2];
    snprintf(files, sizeof files, "%s,%s", r1, r1);
    OK(rmu_report_read_results(&rep, files, acc, &e));
    assert_near(acc[0], 0.5, 0);
    assert_near(acc[1], 0.5, 0);
    snprintf(files, sizeof files, "%s,%s", r1, r2);
    assert_int_equal(rmu_report_read_results(&rep, files, acc, &e), -1);
    assert_non_null(strstr(e.msg, "scored on 3 rows, this run scores 2"));
    assert_int_equal(rmu_report_read_results(&rep, r1, acc, &e), -1); /* one file for two evaluations */
    char *t = rmu_report_table(&rep, acc, acc, acc, "attacked");
    assert_non_null(strstr(t, "| a/mcq"));
    free(t);
    rmu_report_free(&rep);
    su[0].label = su[1].label = NULL;
    assert_int_equal(rmu_report_open(&rep, su, 2, &o, &e), -1);
    assert_non_null(strstr(e.msg, "appears in two evaluations"));
}

/* ---- relearning */

/* Fingerprints of evaluations: the sum of every choice's loglikelihood, one per run of
 * RL_QUESTIONS questions (scored in token order, so any row may come first). */
#define RL_QUESTIONS 4
typedef struct fp_log {
    double sum[32];
    int n, count;
} fp_log;

static int on_sample(void *ud, const rmu_eval_sample *s, rmu_err *e) {
    (void)e;
    fp_log *f = ud;
    int run = f->count++ / RL_QUESTIONS;
    if (run >= 32) return 0;
    f->n = run + 1;
    for (int c = 0; c < s->nchoices; c++) f->sum[run] += s->loglik[c];
    return 0;
}

static void test_relearn(void **st) {
    (void)st;
    char u[512], data[512], first3[512], q[512], out[512], ref[512];
    snprintf(u, sizeof u, "%s", tu_path(tmp, "rl_model"));
    snprintf(data, sizeof data, "%s", tu_path(tmp, "rl_data.txt"));
    snprintf(first3, sizeof first3, "%s", tu_path(tmp, "rl_first3.txt"));
    snprintf(q, sizeof q, "%s", tu_path(tmp, "rl_q.jsonl"));
    snprintf(out, sizeof out, "%s", tu_path(tmp, "rl_out"));
    snprintf(ref, sizeof ref, "%s", tu_path(tmp, "rl_ref"));
    make_model(u, RMU_DT_BF16, 16, 4, 0); /* BF16: in-memory scores must use the saved (rounded) weights */
    tu_write_file(data, CORPUS);
    const char *nl = CORPUS;
    for (int i = 0; i < 3; i++) nl = strchr(nl, '\n') + 1;
    char head[512];
    snprintf(head, sizeof head, "%.*s", (int)(nl - CORPUS), CORPUS);
    tu_write_file(first3, head);
    tu_write_file(q, "{\"question\": \"What does the owl eat?\", \"choices\": [\"snails\", \"salt\", \"grain\"], \"answer\": 0}\n"
                     "{\"question\": \"What do towns trade?\", \"choices\": [\"reeds\", \"salt\", \"dawn\"], \"answer\": 1}\n"
                     "{\"question\": \"When does the fox hunt?\", \"choices\": [\"dawn\", \"noon\", \"night\"], \"answer\": 2}\n"
                     "{\"question\": \"What runs past the mill?\", \"choices\": [\"a river\", \"a fox\", \"a ship\"], \"answer\": 0}\n");
    rmu_relearn_opts o;
    rmu_relearn_defaults(&o);
    o.train.model_dir = u, o.train.out_dir = out, o.train.data = data, o.train.max_docs = 3, o.train.steps = 6;
    o.train.seq_len = 32, o.train.lr = 3e-2;
    o.eval_every = 2, o.save_models = 1, o.base = u;
    o.suites[0] = (rmu_report_suite){NULL, "mcq", q};
    o.n_suites = 1;
    o.eval.format = RMU_MCQ_CLOZE;
    fp_log live = {0};
    o.eval.on_sample = on_sample, o.eval.ud = &live;
    rmu_relearn_result r;
    rmu_err e;
    OK(rmu_relearn_run(&o, NULL, &r, &e));
    assert_int_equal(live.n, 1 + 4); /* the base level, then the points */
    assert_int_equal(r.npoints, 4);
    assert_int_equal(r.rep.nkeys, 1);
    for (int i = 0; i < r.npoints; i++) {
        assert_int_equal(r.steps[i], 2 * i);
        char dir[700];
        if (i) snprintf(dir, sizeof dir, "%s/attack/step-%ld", out, r.steps[i]);
        else snprintf(dir, sizeof dir, "%s", u);
        rmu_report rep;
        double acc;
        fp_log saved = {0};
        rmu_report_opts eo = o.eval;
        eo.ud = &saved;
        OK(rmu_report_open(&rep, o.suites, 1, &eo, &e));
        OK(rmu_report_eval_dir(&rep, dir, &acc, &e));
        rmu_report_free(&rep);
        if (acc != r.acc[i]) fail_msg("step %ld: curve %.17g, eval of the saved model %.17g", r.steps[i], r.acc[i], acc);
        /* and every loglikelihood behind it, bit for bit */
        if (saved.sum[0] != live.sum[1 + i])
            fail_msg("step %ld: loglikelihoods %.17g live, %.17g saved", r.steps[i], live.sum[1 + i], saved.sum[0]);
    }
    assert_true(r.base[0] == r.unlearned[0]); /* the base level is the same model here */
    rmu_relearn_result_free(&r);
    /* the training data is exactly the first 3 texts: `rmu train` on them gives the same weights */
    rmu_ft_opts f;
    rmu_ft_defaults(&f);
    f.model_dir = u, f.out_dir = ref, f.data = first3, f.steps = 6, f.batch_size = 1, f.seq_len = 32, f.pack = 0;
    f.lr = 3e-2, f.weight_decay = 0.01, f.seed = 42;
    rmu_ft_result fr;
    OK(rmu_ft_run(&f, NULL, NULL, NULL, &fr, &e));
    char a[700], b[700];
    snprintf(a, sizeof a, "%s/model.safetensors", out);
    snprintf(b, sizeof b, "%s/model.safetensors", ref);
    size_t na, nb;
    char *x = rmu_file_read_all(a, &na, &e), *y = rmu_file_read_all(b, &nb, &e);
    assert_non_null(x);
    assert_non_null(y);
    assert_int_equal(na, nb);
    assert_memory_equal(x, y, na);
    free(x), free(y);
    /* more samples than texts, and an empty corpus: errors, nothing written */
    char bad[512];
    snprintf(bad, sizeof bad, "%s", tu_path(tmp, "rl_bad"));
    o.train.out_dir = bad, o.train.max_docs = 7;
    assert_int_equal(rmu_relearn_run(&o, NULL, &r, &e), -1);
    assert_string_equal(strstr(e.msg, "max_docs:"), e.msg);
    assert_false(rmu_file_exists(bad));
    char empty[512];
    snprintf(empty, sizeof empty, "%s", tu_path(tmp, "rl_empty.jsonl"));
    tu_write_file(empty, "");
    o.train.max_docs = 1, o.train.data = empty;
    assert_int_equal(rmu_relearn_run(&o, NULL, &r, &e), -1);
    assert_string_equal(strstr(e.msg, "data:"), e.msg);
    assert_false(rmu_file_exists(bad));
}

static int setup(void **st) {
    (void)st;
    tmp = tu_mkdtemp("attack");
    return tmp ? 0 : -1;
}

static int teardown(void **st) {
    (void)st;
    tu_rmtree(tmp);
    free((void *)tmp);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_top_dirs),
        cmocka_unit_test(test_recovered),
        cmocka_unit_test(test_ablate_residual),
        cmocka_unit_test(test_ablate_orthogonal),
        cmocka_unit_test(test_ablate_estimate_and_errors),
        cmocka_unit_test(test_report),
        cmocka_unit_test(test_relearn),
    };
    return cmocka_run_group_tests_name("attack", tests, setup, teardown);
}
