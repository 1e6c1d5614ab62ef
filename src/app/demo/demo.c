/* demo.c - settings, cache stamp, results and picture of the end-to-end demo (see demo.h). */
#include "app/demo/demo.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "attack/ablate.h"
#include "attack/relearn.h"
#include "core/fileio.h"
#include "core/json.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "eval/eval.h"
#include "model/config.h"
#include "model/init.h"
#include "model/model.h"
#include "tokenizer/bpe_train.h"
#include "tokenizer/tokenizer.h"
#include "train/adamw.h"
#include "train/data.h"

/* Settings, and how they were found (this 2-core machine, OMP_NUM_THREADS=2; every run is
 * bit-reproducible, so each number below is one deterministic measurement).
 *
 * Knowledge base: 20 entities x 4 attributes per domain (80 facts; 20 is a multiple of the
 * 10 values, so every value is the answer equally often) and 3 questions per fact whose
 * distractor triples partition the 9 wrong values: 240 questions per domain. With 24
 * entities and one question per fact (96), a model that had forgotten everything (it picked
 * "amber", "islands", "hum"... whatever the question) still scored 22-31% by the luck of
 * the draw; the partition makes "near chance" a property of the model, not of the sample.
 * Names of the two domains share no letters (kb.c): with shared BPE pieces ("mo", "or", "s")
 * RMU on the creatures also cost some towns 7-11 points (seed 2).
 *
 * Pretraining: 45 shuffled copies of the documents, so the packed 64-token chunks never
 * repeat. With one copy cycled for 600 steps the loss fell to 0.02 (the model memorised which
 * document follows which) while accuracy stalled at 70-79%; with fresh copies both domains
 * reach 99-100% by step 400. 300 steps left the towns at 95%, and RMU then cost them 6-8
 * points: facts learned to the margin are the fragile ones. 4 layers, hidden 128, 4 query /
 * 2 KV heads, window 32, vocab 512 (1024 made every name one rare token: 48-96% before):
 * 0.92M parameters, 6-7k tok/s, ~60 s.
 *
 * RMU, forget/retain corpora of declarative paragraphs (first on a 24-entity model, 80
 * steps of 4; forget -> after / retain change):
 *   layer 2, down_proj {1,2}, c 20, alpha 100, lr 1e-3..2e-2: forget 88-100%. The residual
 *     norm at layer 2 is ~14, so c 20 hardly moves it: c has to dominate the norm.
 *   c 50..200 at {1,2}: forget 26-45%, retain -1..-31; more c or less alpha forgets more and
 *     breaks more towns. Layer 3 (the last) forgets least (29% only with c 100 and -3);
 *     layer 1 with {0,1}: retain -10..-17. Question-form text (another wording) in the
 *     corpora did not help.
 *   down_proj {0,1,2} at layer 2 separates best, but with lr 1e-2 (80 batches of 8) it is
 *     erratic: neighbouring (c, alpha) jump between -0.4 and -6 retain points.
 *   lr 3e-3, 160 batches of 8 on the final knowledge base, seeds 1/2/3: c 70..120 x alpha
 *     300..800 give forget 25.8-29.2% and retain 0..-5.0 (c 100 / alpha 300 is the one -5.0);
 *     the default c 80, alpha 600 gives 28.3/-1.3, 26.2/-0.8, 27.5/-1.2. --adaptive 7 (c = 7
 *     x mean norm, ~98) behaves like c 100.
 * --small (10 entities, 300 steps, 80 batches), seeds 1/2/3: forget 28.3, 28.3, 34.2%, retain
 * -1.7, -1.7, 0; 120 questions a domain, so its test allows wider bounds.
 *
 * Attacks (Łucki et al. 2024), settings chosen by rule; the sweep below was run while
 * choosing and is kept so that the choice can be judged:
 *   relearn: the paper's SFT recipe (first 10 forget-corpus texts, batch 1, 3 epochs, one
 *     text per sequence, linear schedule, weight decay 0.01) on every tensor, at lr 3e-4: one
 *     tenth of the pretraining peak rate, the usual ratio between pretraining and fine-tuning
 *     rates. The first 10 texts name 10 of the 20 creatures, so the forget questions are
 *     split into those creatures and the others (never in the fine-tuning data). Measured
 *     afterwards for the record (seed 1, after 30 steps; forget named / not named, retain):
 *     lr 1e-4 61.7 / 47.5 / 100%, 3e-4 98.3 / 85.8 / 99.2%, 1e-3 100 / 91.7 / 99.2%, 3e-3
 *     (the rate RMU used) 80.0 / 48.3 / 62.1%: fine-tuning that fast wrecks the model. The
 *     same recipe on the first 10 retain-corpus texts (towns only, unrelated to the
 *     creatures): forget 29.6% at 3e-4 and 40.4% at 1e-3 (retain 95.4 / 91.2%).
 *   ablate: the RMU layers (layer_ids), one direction (the paper ablates one per layer), the
 *     first 64 forget-corpus texts; no retain corpus. */
void rmu_demo_cfg_default(rmu_demo_cfg *c, int small, uint64_t seed) {
    memset(c, 0, sizeof *c);
    c->small = small;
    c->kb.seed = seed;
    c->kb.n_entities = small ? 10 : 20;
    c->kb.n_attrs = 4;
    c->kb.questions_per_fact = 3;
    c->kb.train_copies = small ? 65 : 45; /* > steps x batch x seq-len / tokens per copy */
    c->corpus_paragraphs = 64;            /* entities x 64 texts: enough batches of 8 */
    c->vocab = 512;
    c->layers = 4;
    c->hidden = 128;
    c->intermediate = 384;
    c->heads = 4;
    c->kv_heads = 2;
    c->window = 32;
    c->max_pos = 256;
    c->train_steps = small ? 300 : 400;
    c->train_batch = 16;
    c->train_seq = 64;
    c->train_warmup = 30;
    c->train_lr = 3e-3;
    c->train_wd = 0.0;
    c->layer_id = 2;
    c->n_layer_ids = 3;
    c->layer_ids[0] = 0, c->layer_ids[1] = 1, c->layer_ids[2] = 2;
    c->steer = 80;
    c->alpha = 600;
    c->unl_lr = 3e-3;
    c->adaptive = 0;
    c->unl_batch = 8;
    c->unl_batches = small ? 80 : 160;
    c->unl_max_len = 64;
    c->rl_samples = small ? 5 : 10; /* half the creatures are named in them */
    c->rl_batch = 1;
    c->rl_epochs = 3;
    c->rl_lr = 3e-4;
    c->rl_eval_every = 5;
    c->ab_k = 1;
    c->ab_max_texts = 64;
}

int rmu_demo_stamp(const rmu_demo_cfg *c, const char *data_sha, char *buf, size_t cap) {
    /* The data hash catches any change of the generator's text; bump the version when the
     * pretraining recipe in this file changes meaning. */
    int n = snprintf(buf, cap,
                     "rmu demo base v1\nkb seed=%llu entities=%d attrs=%d copies=%d\ndata sha256=%s\n"
                     "model vocab=%d layers=%d hidden=%d intermediate=%d heads=%d kv_heads=%d window=%d max_pos=%d\n"
                     "train steps=%d batch=%d seq=%d warmup=%d lr=%.9g wd=%.9g\n",
                     (unsigned long long)c->kb.seed, c->kb.n_entities, c->kb.n_attrs, c->kb.train_copies,
                     data_sha ? data_sha : "-", c->vocab, c->layers, c->hidden, c->intermediate, c->heads, c->kv_heads,
                     c->window, c->max_pos, c->train_steps, c->train_batch, c->train_seq, c->train_warmup, c->train_lr,
                     c->train_wd);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* ---- loss curves */

void rmu_demo_curve_free(rmu_demo_curve *c) {
    free(c->unlearn);
    free(c->retain);
    memset(c, 0, sizeof *c);
}

int rmu_demo_curve_add(rmu_demo_curve *c, const rmu_unl_report *s, rmu_err *e) {
    if (c->n == c->cap) {
        int cap = c->cap ? c->cap * 2 : 64;
        double *nu = realloc(c->unlearn, sizeof(double) * cap);
        if (nu) c->unlearn = nu;
        double *nr = nu ? realloc(c->retain, sizeof(double) * cap) : NULL;
        if (nr) c->retain = nr;
        if (!nu || !nr) return rmu_errf(e, "demo: out of memory");
        c->cap = cap;
    }
    c->unlearn[c->n] = s->unlearn_loss;
    c->retain[c->n++] = s->retain_loss;
    return 0;
}

/* "0,1,2": the layer ids as the table and results.json show them. */
static void ids_text(const rmu_demo_cfg *c, char *buf, size_t cap) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < c->n_layer_ids && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%d", i ? "," : "", c->layer_ids[i]);
}

/* ---- table and results */

char *rmu_demo_table(const rmu_demo_result *r) {
    static const char *names[RMU_KB_DOMAINS] = {"forget: creatures of the Vell marsh",
                                                "retain: towns of the Ardent coast"};
    rmu_sb s = {0};
    char sub[2][64];
    snprintf(sub[0], sizeof sub[0], "  named in the %d relearning texts", r->rl_samples);
    snprintf(sub[1], sizeof sub[1], "  not named in them");
    rmu_sb_printf(&s, "| %-35s | questions | before |  after | change | relearn | ablate | chance |\n|%s%s|\n", "domain",
                  "-------------------------------------|----------:|",
                  "-------:|-------:|-------:|--------:|-------:|-------:");
    for (int d = 0; d < RMU_KB_DOMAINS; d++) {
        rmu_sb_printf(&s, "| %-35s | %9d | %5.1f%% | %5.1f%% | %+6.1f | %6.1f%% | %5.1f%% | %5.1f%% |\n", names[d],
                      r->n_questions[d], 100 * r->acc[d][0], 100 * r->acc[d][1], 100 * (r->acc[d][1] - r->acc[d][0]),
                      100 * r->relearn.acc[d], 100 * r->ablate.acc[d], 100 * r->chance);
        for (int k = 0; d == RMU_KB_FORGET && k < 2; k++)
            rmu_sb_printf(&s, "| %-35s | %9d | %5.1f%% | %5.1f%% | %+6.1f | %6.1f%% | %5.1f%% | %5.1f%% |\n", sub[k],
                          r->n_split[k], 100 * r->split[k][0], 100 * r->split[k][1],
                          100 * (r->split[k][1] - r->split[k][0]), 100 * r->relearn.split[k], 100 * r->ablate.split[k],
                          100 * r->chance);
    }
    rmu_sb_printf(&s, "\nrecovered fraction of the forget gap, (attacked - after) / (before - after): relearn %.2f, "
                      "ablate %.2f\n", r->relearn.recovered[RMU_KB_FORGET], r->ablate.recovered[RMU_KB_FORGET]);
    return s.oom ? (rmu_sb_free(&s), NULL) : rmu_sb_take(&s);
}

/* {"base", "unlearned", "attacked", "recovered"} of one row of an attack. */
static json_t *levels(double base, double unl, double att) {
    double f = rmu_report_recovered(base, unl, att);
    return json_pack("{s:f, s:f, s:f, s:o}", "base", base, "unlearned", unl, "attacked", att, "recovered",
                     isfinite(f) ? json_real(f) : json_null());
}

static json_t *attack_json(const rmu_demo_result *r, const rmu_demo_attack *a) {
    json_t *o = json_object();
    for (int d = 0; d < RMU_KB_DOMAINS; d++)
        json_object_set_new(o, d == RMU_KB_FORGET ? "forget" : "retain", levels(r->acc[d][0], r->acc[d][1], a->acc[d]));
    static const char *const sn[2] = {"forget_named_in_relearning_texts", "forget_not_named"};
    for (int k = 0; k < 2; k++) {
        json_t *l = levels(r->split[k][0], r->split[k][1], a->split[k]);
        json_object_set_new(l, "questions", json_integer(r->n_split[k]));
        json_object_set_new(o, sn[k], l);
    }
    json_object_set_new(o, "seconds", json_real(round(a->seconds * 10) / 10));
    return o;
}

int rmu_demo_write_results(const char *path, const rmu_demo_cfg *c, const rmu_demo_result *r, rmu_err *e) {
    char ids[128];
    ids_text(c, ids, sizeof ids);
    json_t *o = json_object();
    for (int d = 0; d < RMU_KB_DOMAINS; d++)
        json_object_set_new(o, d == RMU_KB_FORGET ? "forget" : "retain",
                            json_pack("{s:f, s:f, s:i}", "before", r->acc[d][0], "after", r->acc[d][1], "questions",
                                      r->n_questions[d]));
    json_object_set_new(o, "chance", json_real(r->chance));
    json_object_set_new(o, "seconds", json_real(round(r->seconds * 10) / 10));
    json_object_set_new(o, "pretrain_seconds", json_real(round(r->pretrain_seconds * 10) / 10));
    json_object_set_new(o, "unlearn_seconds", json_real(round(r->unlearn_seconds * 10) / 10));
    json_object_set_new(o, "pretrained_cached", json_boolean(r->pretrained_cached));
    json_object_set_new(o, "small", json_boolean(c->small));
    json_object_set_new(o, "seed", json_integer((json_int_t)c->kb.seed));
    json_object_set_new(o, "unlearn",
                        json_pack("{s:i, s:s, s:f, s:f, s:f, s:f, s:i, s:i, s:i}", "layer_id", c->layer_id, "layer_ids",
                                  ids, "steering_coeff", c->steer, "adaptive_beta", c->adaptive, "alpha",
                                  c->alpha, "lr", c->unl_lr, "batch_size", c->unl_batch, "max_num_batches",
                                  c->unl_batches, "max_len", c->unl_max_len));
    json_t *rl = attack_json(r, &r->relearn), *ab = attack_json(r, &r->ablate), *cv = json_array();
    for (int i = 0; i < r->rl_npoints; i++)
        json_array_append_new(cv, json_pack("{s:I, s:f, s:f, s:f}", "step", (json_int_t)r->rl_step[i],
                                            "forget_named", r->rl_curve[i][0], "forget_not_named", r->rl_curve[i][1],
                                            "retain", r->rl_curve[i][2]));
    json_object_set_new(rl, "settings", json_pack("{s:i, s:i, s:f, s:i, s:f, s:i}", "samples", c->rl_samples, "steps",
                                                  r->rl_steps, "epochs", c->rl_epochs, "batch_size", c->rl_batch,
                                                  "lr", c->rl_lr, "eval_every", c->rl_eval_every));
    json_object_set_new(rl, "curve", cv);
    json_object_set_new(ab, "settings", json_pack("{s:s, s:i, s:i}", "layers", ids, "directions", c->ab_k,
                                                  "max_texts", c->ab_max_texts));
    json_object_set_new(ab, "explained", json_real(r->ab_explained));
    json_object_set_new(o, "attacks", json_pack("{s:o, s:o}", "relearn", rl, "ablate", ab));
    int rc = rmu_json_write_file(path, o, JSON_INDENT(2) | JSON_REAL_PRECISION(6), e);
    json_decref(o);
    return rc;
}

/* ---- SVG */

/* One line chart of y[0..n) in the box (x0, y0, w, h), y axis from 0 to the max. */
static void svg_curve(rmu_sb *s, double x0, double y0, double w, double h, const double *y, int n, const char *color,
                      const char *title) {
    double ymax = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(y[i]) && y[i] > ymax) ymax = y[i];
    if (ymax <= 0) ymax = 1;
    rmu_sb_printf(s, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='none' stroke='#999'/>\n", x0, y0, w, h);
    rmu_sb_printf(s, "<text x='%.1f' y='%.1f' font-size='13'>%s</text>\n", x0, y0 - 6, title);
    rmu_sb_printf(s, "<text x='%.1f' y='%.1f' font-size='10' text-anchor='end'>%.3g</text>\n", x0 - 4, y0 + 10, ymax);
    rmu_sb_printf(s, "<text x='%.1f' y='%.1f' font-size='10' text-anchor='end'>0</text>\n", x0 - 4, y0 + h);
    rmu_sb_printf(s, "<text x='%.1f' y='%.1f' font-size='10'>1</text>\n", x0, y0 + h + 12);
    rmu_sb_printf(s, "<text x='%.1f' y='%.1f' font-size='10' text-anchor='end'>step %d</text>\n", x0 + w, y0 + h + 12, n);
    rmu_sb_printf(s, "<polyline fill='none' stroke='%s' stroke-width='1.5' points='", color);
    for (int i = 0; i < n; i++) {
        double v = isfinite(y[i]) ? y[i] : ymax;
        double px = x0 + (n > 1 ? w * i / (n - 1) : w / 2), py = y0 + h - h * v / ymax;
        rmu_sb_printf(s, "%.1f,%.1f ", px, py);
    }
    rmu_sb_printf(s, "'/>\n");
}

/* The relearning curve: forget (named / not named) and retain accuracy vs step. */
static void svg_relearn(rmu_sb *s, double x0, double y0, double w, double h, const rmu_demo_result *r) {
    static const char *col[3] = {"#c0392b", "#8e44ad", "#2471a3"};
    static const char *name[3] = {"forget, named in the texts", "forget, not named", "retain"};
    long last = r->rl_npoints ? r->rl_step[r->rl_npoints - 1] : 1;
    if (last < 1) last = 1;
    rmu_sb_printf(s, "<text x='%.1f' y='%.1f' font-size='13'>relearning: accuracy vs fine-tuning step</text>\n", x0 - 30,
                  y0 - 48);
    rmu_sb_printf(s, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='none' stroke='#999'/>\n", x0, y0, w, h);
    for (int t = 0; t <= 4; t++)
        rmu_sb_printf(s, "<text x='%.1f' y='%.1f' font-size='10' text-anchor='end'>%d%%</text>\n", x0 - 4,
                      y0 + h - h * t / 4.0 + 3, 25 * t);
    rmu_sb_printf(s, "<text x='%.1f' y='%.1f' font-size='10'>0</text><text x='%.1f' y='%.1f' font-size='10' "
                     "text-anchor='end'>step %ld</text>\n", x0, y0 + h + 12, x0 + w, y0 + h + 12, last);
    for (int k = 0; k < 3; k++) {
        rmu_sb_printf(s, "<rect x='%.1f' y='%.1f' width='12' height='4' fill='%s'/><text x='%.1f' y='%.1f' "
                         "font-size='11'>%s</text>\n", x0, y0 - 38 + 13 * k, col[k], x0 + 16, y0 - 33 + 13 * k, name[k]);
        rmu_sb_printf(s, "<polyline fill='none' stroke='%s' stroke-width='2' points='", col[k]);
        for (int i = 0; i < r->rl_npoints; i++)
            rmu_sb_printf(s, "%.1f,%.1f ", x0 + w * r->rl_step[i] / last, y0 + h - h * r->rl_curve[i][k]);
        rmu_sb_puts(s, "'/>\n");
    }
}

int rmu_demo_write_svg(const char *path, const rmu_demo_curve *c, const rmu_demo_result *r, rmu_err *e) {
    rmu_sb s = {0};
    const double W = 1320, H = 420;
    rmu_sb_printf(&s, "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' font-family='sans-serif'>\n", W, H);
    rmu_sb_printf(&s, "<rect width='100%%' height='100%%' fill='white'/>\n");
    rmu_sb_printf(&s, "<text x='20' y='28' font-size='16' font-weight='bold'>%s</text>\n",
         "RMU on a synthetic two-domain knowledge base, and two attacks on it");
    /* left: losses per step */
    svg_curve(&s, 60, 80, 360, 120, c->unlearn, c->n, "#c0392b", "unlearn loss: mean (h(forget) - c u)^2 per step");
    svg_curve(&s, 60, 260, 360, 120, c->retain, c->n, "#2471a3", "retain loss: alpha mean (h(retain) - h_frozen)^2");
    /* middle: accuracy bars under a title and legend row */
    double bx = 530, by = 110, bw = 340, bh = 270;
    rmu_sb_printf(&s, "<text x='%.1f' y='62' font-size='13'>4-choice accuracy</text>\n", bx - 30);
    static const char *dn[RMU_KB_DOMAINS] = {"forget domain", "retain domain"};
    static const char *col[4] = {"#7f8c8d", "#e67e22", "#c0392b", "#8e44ad"};
    static const char *ln[4] = {"before", "after RMU", "relearned", "ablated"};
    for (int k = 0; k < 4; k++)
        rmu_sb_printf(&s, "<rect x='%.1f' y='74' width='10' height='10' fill='%s'/>"
                 "<text x='%.1f' y='83' font-size='11'>%s</text>\n",
             bx + 10 + 82 * k, col[k], bx + 24 + 82 * k, ln[k]);
    rmu_sb_printf(&s, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#333'/>\n", bx, by + bh, bx + bw, by + bh);
    rmu_sb_printf(&s, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#333'/>\n", bx, by, bx, by + bh);
    for (int t = 0; t <= 4; t++) {
        double yy = by + bh - bh * t / 4.0;
        rmu_sb_printf(&s, "<text x='%.1f' y='%.1f' font-size='10' text-anchor='end'>%d%%</text>\n", bx - 4, yy + 3, 25 * t);
    }
    for (int d = 0; d < RMU_KB_DOMAINS; d++)
        for (int k = 0; k < 4; k++) {
            double a = k < 2 ? r->acc[d][k] : k == 2 ? r->relearn.acc[d] : r->ablate.acc[d];
            double x = bx + 14 + d * 168 + k * 38, hh = bh * a;
            rmu_sb_printf(&s, "<rect x='%.1f' y='%.1f' width='34' height='%.1f' fill='%s'/>\n", x, by + bh - hh, hh, col[k]);
            rmu_sb_printf(&s, "<text x='%.1f' y='%.1f' font-size='9' text-anchor='middle'>%.1f%%</text>\n", x + 17,
                 by + bh - hh - 4, 100 * a);
            if (k == 0)
                rmu_sb_printf(&s, "<text x='%.1f' y='%.1f' font-size='12' text-anchor='middle'>%s</text>\n", x + 74,
                     by + bh + 16, dn[d]);
        }
    double cy = by + bh - bh * r->chance;
    rmu_sb_printf(&s, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#000' stroke-dasharray='5,4'/>\n", bx, cy,
         bx + bw, cy);
    rmu_sb_printf(&s, "<text x='%.1f' y='%.1f' font-size='10' text-anchor='end'>chance</text>\n", bx + bw, cy - 3);
    /* right: the relearning curve */
    svg_relearn(&s, 950, 110, 330, 270, r);
    rmu_sb_printf(&s, "</svg>\n");
    return rmu_file_write_sb(path, &s, e);
}

/* ---- the run */

double rmu_demo_eval(const char *model_dir, const char *mcq_path, int *n, rmu_err *e) {
    rmu_eval_plan p;
    rmu_model m;
    rmu_tokenizer *t = NULL;
    double acc = -1;
    int have_m = 0;
    if (rmu_eval_plan_init(&p, "mcq", RMU_MCQ_CLOZE, e)) return -1;
    if (rmu_eval_plan_load(&p, mcq_path, 0, 0, e)) goto out;
    if (rmu_model_load(&m, model_dir, e)) goto out;
    have_m = 1;
    if (!(t = rmu_tok_load(model_dir, e))) goto out;
    /* batch/onepass/prefix cache change the speed, never the scores */
    rmu_eval_opts o = {.add_bos = 0, .batch = 16, .onepass = 1, .prefix_cache = 1};
    if (rmu_eval_run(&p, &m, t, &o, NULL, e)) goto out;
    for (int k = 0; k < p.n; k++)
        if (p.nodes[k].family != RMU_EVAL_GROUP) {
            acc = p.nodes[k].st_acc.value;
            if (n) *n = p.nodes[k].n;
        }
out:
    rmu_tok_free(t);
    if (have_m) rmu_model_free(&m);
    rmu_eval_plan_free(&p);
    return acc;
}

static void stage(const rmu_demo_hooks *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void stage(const rmu_demo_hooks *h, const char *fmt, ...) {
    if (!h || !h->stage) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    h->stage(h->ud, msg);
}

/* out/base from scratch: BPE tokenizer learned on the pretraining text, random Mistral
 * weights (out/init), `rmu train` on the knowledge base, then the stamp (written last, so
 * an interrupted run is redone rather than reused). */
static int pretrain(const rmu_demo_cfg *c, const rmu_kb *kb, const char *out, const char *stamp,
                    const rmu_demo_hooks *h, rmu_err *e) {
    char init[4096], base[4096], data[4096], sp[4096];
    if (rmu_path_join(init, sizeof init, out, "init", e) || rmu_path_join(base, sizeof base, out, "base", e) ||
        rmu_path_join(data, sizeof data, out, "data/train.jsonl", e) ||
        rmu_path_join(sp, sizeof sp, base, "demo-stamp.txt", e))
        return -1;
    unlink(sp);
    rmu_config cfg;
    if (rmu_cfg_preset(&cfg, "tiny", e)) return -1;
    cfg.n_layers = c->layers;
    cfg.hidden_size = c->hidden;
    cfg.intermediate_size = c->intermediate;
    cfg.n_heads = c->heads;
    cfg.n_kv_heads = c->kv_heads;
    cfg.head_dim = c->hidden / c->heads;
    cfg.vocab_size = c->vocab;
    cfg.sliding_window = c->window;
    cfg.max_position_embeddings = c->max_pos;
    cfg.torch_dtype = RMU_DT_F32;
    if (rmu_cfg_validate(&cfg, "demo model", e)) return -1;
    /* random Mistral weights and a BPE tokenizer learned on the pretraining text */
    size_t n;
    char *text = rmu_kb_train_text(kb, &n, e);
    if (!text) return -1;
    rmu_init_opts io = {.dtype = RMU_DT_F32, .seed = c->kb.seed, .shards = 1, .synthetic_tokenizer = 1,
                        .corpus = text, .corpus_len = n};
    int rc = rmu_init_model_opts(init, &cfg, &io, e);
    free(text);
    if (rc) return rmu_err_prefix(e, "demo model");
    stage(h, "pretraining a %d-layer Mistral (hidden %d, %d/%d heads, window %d, %.2fM parameters) for %d steps",
          c->layers, c->hidden, c->heads, c->kv_heads, c->window, rmu_cfg_n_params(&cfg) / 1e6, c->train_steps);
    rmu_ft_opts o;
    rmu_ft_defaults(&o);
    o.model_dir = init;
    o.out_dir = base;
    o.data = data;
    o.steps = c->train_steps;
    o.batch_size = c->train_batch;
    o.seq_len = c->train_seq;
    o.pack = 1;
    o.lr = c->train_lr;
    o.weight_decay = c->train_wd;
    o.beta2 = 0.95;
    o.warmup = c->train_warmup;
    o.schedule = RMU_SCHED_COSINE;
    o.seed = c->kb.seed;
    o.overwrite = 1; /* a stale base (other settings) is replaced */
    rmu_ft_result fr;
    if (rmu_ft_run(&o, NULL, h ? h->train_step : NULL, h ? h->ud : NULL, &fr, e))
        return rmu_err_prefix(e, "pretraining");
    return rmu_file_write_atomic(sp, stamp, strlen(stamp), e);
}

/* ---- the attacks */

/* 1 when `word` occurs in text as a whole word (no letter on either side). */
static int has_word(const char *text, const char *word) {
    size_t n = strlen(word);
    for (const char *p = strstr(text, word); p; p = strstr(p + 1, word))
        if ((p == text || !isalpha((unsigned char)p[-1])) && !isalpha((unsigned char)p[n])) return 1;
    return 0;
}

/* The forget questions split by whether their creature is named in the first n texts of the
 * forget corpus (what relearning trains on): path[0] named, path[1] not. */
static int write_split(const rmu_kb *kb, const char *corpus, int n, const char *mcq, char path[2][4096],
                       int count[2], rmu_err *e) {
    const rmu_kb_domain *D = &kb->dom[RMU_KB_FORGET];
    unsigned char named[RMU_KB_MAX_ENTITIES] = {0};
    rmu_data_docs d;
    if (rmu_data_read(&d, corpus, NULL, e)) return -1;
    for (int i = 0; i < D->n_entities; i++)
        for (size_t j = 0; j < d.n && j < (size_t)n && !named[i]; j++)
            named[i] = (unsigned char)has_word(d.text[j], D->entity[i]);
    rmu_data_docs_free(&d);
    size_t len;
    char *text = rmu_file_read_all(mcq, &len, e);
    if (!text) return -1;
    rmu_sb sb[2] = {{0}, {0}};
    count[0] = count[1] = 0;
    int q = 0;
    for (char *p = text, *nl; *p && q < D->nq; p = nl + 1, q++) { /* line q is question q (rmu_kb_mcq_jsonl) */
        if (!(nl = strchr(p, '\n'))) nl = p + strlen(p) - 1;
        int k = named[D->q[q].entity] ? 0 : 1;
        rmu_sb_add(&sb[k], p, (size_t)(nl - p + 1));
        count[k]++;
    }
    free(text);
    int rc = 0;
    if (q != D->nq || sb[0].oom || sb[1].oom) rc = rmu_errf(e, "demo: %s does not hold the %d forget questions", mcq, D->nq);
    else if (!count[0] || !count[1])
        rc = rmu_errf(e, "demo: %s of the creatures are named in the first %d forget texts; the split needs both",
                      count[0] ? "all" : "none", n);
    for (int k = 0; k < 2 && !rc; k++) rc = rmu_file_write_atomic(path[k], sb[k].p, sb[k].n, e);
    rmu_sb_free(&sb[0]);
    rmu_sb_free(&sb[1]);
    return rc;
}

typedef struct attack_ctx {
    const rmu_demo_hooks *h;
    rmu_demo_result *r;
} attack_ctx;

/* Keys of the attacks' report, in suite order: named, not named, retain (one mcq task each). */
static void on_point(void *ud, const rmu_report *rep, long step, long total, const double *acc) {
    attack_ctx *a = ud;
    rmu_demo_result *r = a->r;
    if (rep->nkeys != 3) return;
    if (r->rl_npoints < RMU_DEMO_MAX_POINTS) {
        r->rl_step[r->rl_npoints] = step;
        for (int k = 0; k < 3; k++) r->rl_curve[r->rl_npoints][k] = acc[k];
        r->rl_npoints++;
    }
    double f = (r->n_split[0] * acc[0] + r->n_split[1] * acc[1]) / (r->n_split[0] + r->n_split[1]);
    stage(a->h, "  relearning step %ld/%ld: forget %.1f%% (named %.1f%%, not named %.1f%%), retain %.1f%%", step, total,
          100 * f, 100 * acc[0], 100 * acc[1], 100 * acc[2]);
}

static void on_relearn_step(void *ud, const rmu_ft_status *s) {
    attack_ctx *a = ud;
    if (a->h && a->h->relearn_step) a->h->relearn_step(a->h->ud, s);
}

static void on_ablate_note(void *ud, const char *msg) { stage(((attack_ctx *)ud)->h, "  %s", msg); }

/* One attack's numbers from its report levels (keys: named, not named, retain). */
static void fill_attack(rmu_demo_result *r, rmu_demo_attack *a, const double *base, const double *unl, const double *att) {
    int n0 = r->n_split[0], n1 = r->n_split[1];
    for (int k = 0; k < 2; k++) {
        a->split[k] = att[k];
        r->split[k][0] = base[k], r->split[k][1] = unl[k];
    }
    a->acc[RMU_KB_FORGET] = (n0 * att[0] + n1 * att[1]) / (n0 + n1);
    a->acc[RMU_KB_RETAIN] = att[2];
    for (int d = 0; d < RMU_KB_DOMAINS; d++) a->recovered[d] = rmu_report_recovered(r->acc[d][0], r->acc[d][1], a->acc[d]);
}

/* Relearning on the first rl_samples forget texts (out/relearned), then directional ablation
 * (out/ablated), both scored on the split forget questions and the retain questions. */
static int attacks(const rmu_demo_cfg *c, const rmu_kb *kb, const char *out, const char *base, const char *unl,
                   const char *corpus, const char *mcq_forget, const char *mcq_retain, const rmu_demo_hooks *h,
                   rmu_demo_result *r, rmu_err *e) {
    char split[2][4096], rl_out[4096], ab_out[4096], data[4096];
    if (rmu_path_join(data, sizeof data, out, "data", e) ||
        rmu_path_join(split[0], sizeof split[0], data, "forget_mcq_named.jsonl", e) ||
        rmu_path_join(split[1], sizeof split[1], data, "forget_mcq_unnamed.jsonl", e) ||
        rmu_path_join(rl_out, sizeof rl_out, out, "relearned", e) ||
        rmu_path_join(ab_out, sizeof ab_out, out, "ablated", e) ||
        write_split(kb, corpus, c->rl_samples, mcq_forget, split, r->n_split, e))
        return -1;
    rmu_report_suite su[3] = {{"named", "mcq", split[0]}, {"unnamed", "mcq", split[1]}, {"retain", "mcq", mcq_retain}};
    attack_ctx ac = {h, r};
    r->rl_samples = c->rl_samples;
    rmu_relearn_opts ro;
    rmu_relearn_defaults(&ro);
    rmu_ft_opts *t = &ro.train;
    t->model_dir = unl, t->out_dir = rl_out, t->data = corpus, t->max_docs = c->rl_samples;
    t->epochs = c->rl_epochs, t->batch_size = c->rl_batch, t->seq_len = c->max_pos, t->lr = c->rl_lr;
    t->seed = c->kb.seed, t->overwrite = 1;
    ro.eval_every = c->rl_eval_every, ro.base = base;
    memcpy(ro.suites, su, sizeof su);
    ro.n_suites = 3;
    ro.eval.format = RMU_MCQ_CLOZE;
    stage(h, "attack 1, relearning: fine-tuning every tensor on the first %d forget texts (%d of the %d forget questions "
             "are about creatures they name), batch %d, %g epochs, lr %g",
          c->rl_samples, r->n_split[0], r->n_split[0] + r->n_split[1], c->rl_batch, c->rl_epochs, c->rl_lr);
    rmu_relearn_hooks rh = {NULL, on_relearn_step, on_point, &ac};
    rmu_relearn_result rr;
    if (rmu_relearn_run(&ro, &rh, &rr, e)) return rmu_err_prefix(e, "relearn");
    fill_attack(r, &r->relearn, rr.base, rr.unlearned, rr.final);
    r->relearn.seconds = rr.seconds;
    r->rl_steps = (int)rr.total_steps;
    rmu_relearn_result_free(&rr);

    rmu_ablate_opts ao;
    rmu_ablate_defaults(&ao);
    ao.model_dir = unl, ao.base_dir = base, ao.forget = corpus, ao.out_dir = ab_out, ao.overwrite = 1;
    ao.n_layers = c->n_layer_ids;
    memcpy(ao.layers, c->layer_ids, sizeof(int) * (size_t)c->n_layer_ids);
    ao.k = c->ab_k, ao.max_texts = c->ab_max_texts, ao.max_len = c->max_pos;
    memcpy(ao.suites, su, sizeof su);
    ao.n_suites = 3;
    ao.eval.format = RMU_MCQ_CLOZE;
    char ids[128];
    ids_text(c, ids, sizeof ids);
    stage(h, "attack 2, directional ablation: %d direction%s of the unlearned-minus-base residual shift at layers %s, "
             "removed from the embeddings, o_proj and down_proj", c->ab_k, c->ab_k == 1 ? "" : "s", ids);
    rmu_ablate_result ar;
    if (rmu_ablate_run(&ao, on_ablate_note, &ac, &ar, e)) return rmu_err_prefix(e, "ablate");
    fill_attack(r, &r->ablate, ar.base, ar.unlearned, ar.ablated);
    r->ablate.seconds = ar.seconds;
    r->ab_explained = 0;
    for (int i = 0; i < ar.k && ar.explained; i++) r->ab_explained += ar.explained[i];
    rmu_ablate_result_free(&ar);
    return 0;
}

int rmu_demo_run(const rmu_demo_cfg *c, const char *out, const rmu_demo_hooks *h, rmu_demo_result *r, rmu_err *e) {
    double t0 = rmu_now_s();
    memset(r, 0, sizeof *r);
    r->chance = 1.0 / RMU_KB_CHOICES;
    char dir_data[4096], base[4096], unl[4096], logp[4096], sp[4096], resp[4096], svgp[4096], stamp[1024];
    char mcq[RMU_KB_DOMAINS][4096], corp[RMU_KB_DOMAINS][4096];
    if (rmu_path_join(dir_data, sizeof dir_data, out, "data", e) || rmu_path_join(base, sizeof base, out, "base", e) ||
        rmu_path_join(unl, sizeof unl, out, "unlearned", e) ||
        rmu_path_join(logp, sizeof logp, out, "unlearn_log.jsonl", e) ||
        rmu_path_join(sp, sizeof sp, base, "demo-stamp.txt", e) ||
        rmu_path_join(mcq[0], sizeof mcq[0], dir_data, "forget_mcq.jsonl", e) ||
        rmu_path_join(mcq[1], sizeof mcq[1], dir_data, "retain_mcq.jsonl", e) ||
        rmu_path_join(corp[0], sizeof corp[0], dir_data, "forget_corpus.jsonl", e) ||
        rmu_path_join(corp[1], sizeof corp[1], dir_data, "retain_corpus.jsonl", e) ||
        rmu_path_join(resp, sizeof resp, out, "results.json", e) ||
        rmu_path_join(svgp, sizeof svgp, out, "unlearn.svg", e))
        return -1;
    rmu_kb kb;
    if (rmu_kb_build(&kb, &c->kb, e)) return -1;
    stage(h, "knowledge base: %d %s and %d %s, %d attributes each; %d questions per domain", kb.dom[0].n_entities,
          kb.dom[0].topic, kb.dom[1].n_entities, kb.dom[1].topic, kb.dom[0].n_attrs, kb.dom[0].nq);
    char train[4096], sha[65];
    int rc = rmu_kb_write(&kb, dir_data, c->corpus_paragraphs, e) ||
             rmu_path_join(train, sizeof train, dir_data, "train.jsonl", e) || rmu_file_sha256(train, sha, e);
    if (!rc && rmu_demo_stamp(c, sha, stamp, sizeof stamp)) rc = rmu_errf(e, "demo: settings too long for the stamp");
    if (rc) { rmu_kb_free(&kb); return -1; }

    /* pretrained model: reuse when the stamp matches and its files are there */
    size_t sl = 0;
    char *old = rmu_file_exists(sp) ? rmu_file_read_all(sp, &sl, NULL) : NULL;
    r->pretrained_cached = old && sl == strlen(stamp) && !memcmp(old, stamp, sl);
    free(old);
    static const char *const need[] = {"config.json", "model.safetensors", "tokenizer.json"};
    for (int i = 0; i < 3 && r->pretrained_cached; i++) {
        char f[4096];
        r->pretrained_cached = !rmu_path_join(f, sizeof f, base, need[i], NULL) && rmu_file_exists(f);
    }
    double t1 = rmu_now_s();
    if (r->pretrained_cached) stage(h, "pretrained model: reusing %s (same settings)", base);
    else rc = pretrain(c, &kb, out, stamp, h, e);
    if (rc) {
        rmu_kb_free(&kb);
        return -1;
    }
    r->pretrain_seconds = rmu_now_s() - t1;

    stage(h, "evaluating the pretrained model");
    for (int d = 0; d < RMU_KB_DOMAINS; d++)
        if ((r->acc[d][0] = rmu_demo_eval(base, mcq[d], &r->n_questions[d], e)) < 0)
            return rmu_kb_free(&kb), rmu_err_prefix(e, "eval before");

    /* RMU: forget = the forget domain's corpus, retain = the retain domain's */
    rmu_unl_opts uo;
    rmu_unl_defaults(&uo);
    uo.model_dir = base;
    uo.out_dir = unl;
    uo.forget[0] = corp[0];
    uo.n_forget = 1;
    uo.retain[0] = corp[1];
    uo.n_retain = 1;
    uo.layer_id = c->layer_id;
    uo.n_layer_ids = c->n_layer_ids;
    memcpy(uo.layer_ids, c->layer_ids, sizeof(int) * (size_t)c->n_layer_ids);
    uo.steer[0] = (float)c->steer;
    uo.n_steer = 1;
    uo.adaptive_beta = (float)c->adaptive;
    uo.alpha[0] = (float)c->alpha;
    uo.n_alpha = 1;
    uo.lr = (float)c->unl_lr;
    uo.batch_size = c->unl_batch;
    uo.max_num_batches = c->unl_batches;
    uo.max_len[0] = c->unl_max_len;
    uo.n_max_len = 1;
    uo.retain_max_len = c->unl_max_len;
    uo.seed = c->kb.seed;
    uo.log_path = logp;
    uo.overwrite = 1; /* the previous run's output is replaced */
    char ids[128];
    ids_text(c, ids, sizeof ids);
    stage(h, "unlearning the forget domain with RMU: layer %d, down_proj of layers %s, c %g, alpha %g, %d x %d texts",
          c->layer_id, ids, c->steer, c->alpha, c->unl_batches, c->unl_batch);
    t1 = rmu_now_s();
    /* driven step by step: each report feeds the progress hook and the loss curves */
    rmu_demo_curve cv = {0};
    rmu_unl *u = rmu_unl_open(&uo, e);
    if (!u) return rmu_kb_free(&kb), rmu_err_prefix(e, "unlearn");
    rmu_unl_report st;
    int k;
    while ((k = rmu_unl_step(u, &st, e)) > 0) {
        if (rmu_demo_curve_add(&cv, &st, e)) {
            k = -1;
            break;
        }
        if (h && h->unlearn_step) h->unlearn_step(h->ud, &st);
    }
    rc = k < 0 || rmu_unl_finish(u, NULL, NULL, e) ? -1 : 0;
    rmu_unl_close(u);
    if (rc) {
        rmu_demo_curve_free(&cv);
        rmu_kb_free(&kb);
        return rmu_err_prefix(e, "unlearn");
    }
    r->unlearn_seconds = rmu_now_s() - t1;

    stage(h, "evaluating the unlearned model");
    for (int d = 0; d < RMU_KB_DOMAINS && !rc; d++)
        if ((r->acc[d][1] = rmu_demo_eval(unl, mcq[d], NULL, e)) < 0) rc = rmu_err_prefix(e, "eval after");
    if (!rc) rc = attacks(c, &kb, out, base, unl, corp[0], mcq[0], mcq[1], h, r, e);
    rmu_kb_free(&kb);
    r->seconds = rmu_now_s() - t0;
    if (!rc) rc = rmu_demo_write_svg(svgp, &cv, r, e) || rmu_demo_write_results(resp, c, r, e) ? -1 : 0;
    rmu_demo_curve_free(&cv);
    return rc;
}
