/* demo.h - the end-to-end demo, an application on top of librmu (built into the `rmu`
 * binary only, not into the library): settings, the run (in process, through the engines
 * behind `rmu init`, `rmu train`, `rmu eval`, `rmu unlearn` and `rmu attack`:
 * rmu_init_model_opts, rmu_ft_run, rmu_eval_run, the rmu_unl_open / step / finish API, whose
 * step reports draw the loss curves, rmu_relearn_run and rmu_ablate_run) and its outputs.
 * src/cli/cmd_demo.c prints progress and the table. Prefix rmu_demo_. */
#ifndef RMU_DEMO_H
#define RMU_DEMO_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "app/demo/kb.h"
#include "attack/report.h"
#include "train/finetune.h"
#include "train/unlearn.h"

typedef struct rmu_demo_cfg {
    int small;
    rmu_kb_cfg kb;
    int corpus_paragraphs; /* per entity in each RMU corpus */
    /* the model (Mistral: GQA + sliding window) */
    int vocab, layers, hidden, intermediate, heads, kv_heads, window, max_pos;
    /* pretraining (`rmu train`) */
    int train_steps, train_batch, train_seq, train_warmup;
    double train_lr, train_wd;
    /* unlearning (`rmu unlearn`) */
    int layer_id;
    int layer_ids[8], n_layer_ids;
    double steer, alpha, unl_lr, adaptive; /* adaptive > 0: --adaptive BETA instead of steer */
    int unl_batch, unl_batches, unl_max_len;
    /* the attacks (`rmu attack relearn` / `rmu attack ablate`); ablation uses layer_ids */
    int rl_samples, rl_batch, rl_eval_every;
    double rl_epochs, rl_lr;
    int ab_k, ab_max_texts;
} rmu_demo_cfg;

/* The settings of `rmu demo` (small != 0: the reduced run of `make test`). */
void rmu_demo_cfg_default(rmu_demo_cfg *c, int small, uint64_t seed);

/* Everything the pretrained model depends on, as text: the cache stamp
 * (OUT/base/demo-stamp.txt). data_sha: SHA-256 hex of the pretraining JSONL (may be NULL).
 * Returns 0, or -1 when cap is too small. */
int rmu_demo_stamp(const rmu_demo_cfg *c, const char *data_sha, char *buf, size_t cap);

/* Per-step losses of the unlearning run, from its step reports. */
typedef struct rmu_demo_curve {
    int n, cap;
    double *unlearn, *retain;
} rmu_demo_curve;

/* Appends one step's losses. */
int rmu_demo_curve_add(rmu_demo_curve *c, const rmu_unl_report *s, rmu_err *e);
void rmu_demo_curve_free(rmu_demo_curve *c);

/* Forget questions split by whether their creature appears in the relearning texts. */
#define RMU_DEMO_SEEN 0
#define RMU_DEMO_UNSEEN 1
#define RMU_DEMO_MAX_POINTS 64

/* One attack: accuracy afterwards per domain and per split, the recovered fraction of the
 * gap (report.h) per domain, its time. */
typedef struct rmu_demo_attack {
    double acc[RMU_KB_DOMAINS], split[2], recovered[RMU_KB_DOMAINS], seconds;
} rmu_demo_attack;

/* acc[d][0] before, acc[d][1] after, d = RMU_KB_FORGET / RMU_KB_RETAIN, as fractions. */
typedef struct rmu_demo_result {
    double acc[RMU_KB_DOMAINS][2];
    int n_questions[RMU_KB_DOMAINS];
    double chance, seconds, pretrain_seconds, unlearn_seconds;
    int pretrained_cached;
    /* the attacks */
    int n_split[2];                     /* forget questions in each split */
    double split[2][2];                 /* [split][before, after] */
    rmu_demo_attack relearn, ablate;
    int rl_samples, rl_steps, rl_npoints; /* relearning texts and steps; curve points */
    long rl_step[RMU_DEMO_MAX_POINTS];
    double rl_curve[RMU_DEMO_MAX_POINTS][3]; /* seen, unseen, retain accuracy at each point */
    double ab_explained;                /* share of the difference vectors' squared norm */
} rmu_demo_result;

/* The WMDP-card-like table, with the attacks' columns and the split forget rows (malloc'd). */
char *rmu_demo_table(const rmu_demo_result *r);
/* results.json: {"forget": {"before", "after"}, "retain": {...}, "chance", "seconds", ...,
 * "attacks": {"relearn": {...}, "ablate": {...}}}; each attack has per domain and split
 * {"base", "unlearned", "attacked", "recovered"} and its settings. */
int rmu_demo_write_results(const char *path, const rmu_demo_cfg *c, const rmu_demo_result *r, rmu_err *e);
/* SVG: per-step unlearn and retain losses (left), the accuracy bars before / after RMU /
 * relearned / ablated with chance (middle) and the relearning curve (right). */
int rmu_demo_write_svg(const char *path, const rmu_demo_curve *curve, const rmu_demo_result *r, rmu_err *e);

/* Accuracy (fraction) of the model in model_dir on an mcq JSONL file, cloze format, scored
 * as `rmu eval --tasks mcq --format cloze` (no BOS, as its default); *n gets the count. */
double rmu_demo_eval(const char *model_dir, const char *mcq_path, int *n, rmu_err *e);

/* What the run reports while it works (any member may be NULL). */
typedef struct rmu_demo_hooks {
    void (*stage)(void *ud, const char *msg); /* a stage begins or a result is known */
    rmu_ft_step_fn train_step;
    rmu_unl_progress unlearn_step;
    rmu_ft_step_fn relearn_step;
    void *ud;
} rmu_demo_hooks;

/* The whole demo into out_dir: knowledge base (out/data), pretrained model (out/base,
 * reused when out/base/demo-stamp.txt equals rmu_demo_stamp), accuracy before, RMU
 * (out/unlearned, out/unlearn_log.jsonl), accuracy after, the attacks (out/relearned,
 * out/ablated; the forget questions split into data/forget_mcq_{named,unnamed}.jsonl by
 * whether their creature is named in the relearning texts), out/results.json and
 * out/unlearn.svg; r->seconds is the wall time of the whole call. */
int rmu_demo_run(const rmu_demo_cfg *c, const char *out_dir, const rmu_demo_hooks *h, rmu_demo_result *r,
                 rmu_err *e);

#endif
