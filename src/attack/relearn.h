/* relearn.h - the relearning attack (Łucki et al. 2024, "An Adversarial Perspective on
 * Machine Unlearning for AI Safety"): fine-tune an unlearned model on a handful of texts
 * (from the forget domain, or unrelated) and watch how much of the removed knowledge comes
 * back. Prefix rmu_relearn_.
 *
 * Training is `rmu train`'s engine (src/train/finetune.h) driven step by step on the first
 * `train.max_docs` documents of the data, in file order; its defaults follow the paper's SFT recipe
 * where it applies to full fine-tuning: batch 1, 3 epochs, one sequence per text (no
 * packing), 1024 tokens, weight decay 0.01, linear schedule; the learning rate is
 * transformers' default 5e-5 (the paper's 2e-4 is a LoRA rate). Every `eval_every` steps (and
 * at step 0 and the last step) the live model is evaluated in memory on the report's suites
 * (src/attack/report.h). Trainable tensors are evaluated as they are saved: rounded to their
 * file dtype, so a curve point equals `rmu eval` on the model written at that step
 * (save_models writes those).
 *
 * Output: OUT is `rmu train`'s output folder (model, checkpoints) plus OUT/attack/:
 *   curve.jsonl     one line per evaluation point {"step", "acc": {KEY: ...}}, appended and
 *                   fsynced as the run goes (a resumed run keeps the points up to its
 *                   checkpoint and recomputes the one at the checkpoint if the kill lost it);
 *   relearn.json    settings, the samples (count, SHA-256 of each text), the curve, the base,
 *                   unlearned (step 0) and final accuracies and recovered fractions;
 *   relearn.svg     accuracy vs step per task, base and unlearned levels dashed;
 *   step-STEP/      (save_models) the model at each evaluation point, a plain HF folder.
 * All of it is built in OUT.rmu-work/attack and moves into OUT with the model, so OUT
 * appears whole. Resumable like `rmu train` (save_every, resume); a resumed run must have
 * the same evaluation settings (refused otherwise, naming the setting). */
#ifndef RMU_RELEARN_H
#define RMU_RELEARN_H

#include <jansson.h>
#include <stdint.h>

#include "attack/report.h"
#include "core/err.h"
#include "train/finetune.h"

typedef struct rmu_relearn_opts {
    /* The training run, as `rmu train` takes it: model_dir (the unlearned model), out_dir, data
     * (comma-separated corpus files, src/train/data.h), field, max_docs (the first N texts, in
     * file order: default 10) and every training setting, with the paper's defaults above. */
    rmu_ft_opts train;
    /* evaluation */
    rmu_report_suite suites[RMU_REPORT_MAX_SUITES];
    int n_suites;
    rmu_report_opts eval;
    long eval_every;  /* 0 = only step 0 and the last step */
    const char *base; /* base level: a model folder or results files (one per suite); NULL = none */
    int save_models;  /* write OUT/attack/step-STEP at every evaluation point after step 0 */
} rmu_relearn_opts;

void rmu_relearn_defaults(rmu_relearn_opts *o);

/* What the run reports while it works (any member may be NULL). */
typedef struct rmu_relearn_hooks {
    rmu_ft_note_fn note;
    rmu_ft_step_fn step;
    void (*point)(void *ud, const rmu_report *r, long step, long total, const double *acc);
    void *ud;
} rmu_relearn_hooks;

typedef struct rmu_relearn_result {
    rmu_report rep;        /* the keys (owned: rmu_relearn_result_free) */
    double *base;          /* [nkeys], NULL without a base */
    double *unlearned;     /* [nkeys]: step 0 */
    double *final;         /* [nkeys]: the last step */
    int npoints;
    long *steps;           /* [npoints] */
    double *acc;           /* [npoints * nkeys] */
    long start_step, total_steps, samples;
    int already_complete;  /* OUT was finished by an earlier run: its relearn.json was read */
    double seconds;
} rmu_relearn_result;

/* The whole attack into o->out_dir. r is filled on success (free with
 * rmu_relearn_result_free); OUT/attack/relearn.json holds the same. */
int rmu_relearn_run(const rmu_relearn_opts *o, const rmu_relearn_hooks *h, rmu_relearn_result *r, rmu_err *e);
void rmu_relearn_result_free(rmu_relearn_result *r);

/* The recovery curve as SVG (accuracy vs step, keys up to depth 1; base and unlearned levels
 * dashed / dotted) to path, atomically. */
int rmu_relearn_write_svg(const char *path, const rmu_relearn_result *r, const char *title, rmu_err *e);

#endif
