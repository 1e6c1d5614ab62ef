/* finetune.h - `rmu train`: causal-LM fine-tuning of a Hugging Face folder on a text
 * corpus with AdamW, checkpoints that resume bit-identically, and a complete HF output
 * folder. Prefix rmu_ft_.
 *
 * A run is opened (model, corpus, trainer, resume), stepped one optimizer step at a time
 * (each step reports its numbers, writes its log line and checkpoint) and finished (the
 * output folder), so a server, an attack loop or the demo can drive it; rmu_ft_run is that
 * loop. Errors about an option start with its field name ("seq_len: ...", "out_dir: ...")
 * and mention others as "option NAME"; the CLI maps both to its flags.
 *
 * Output folder OUT (src/io/hfdir.h): every non-weight file of the input copied (config.json
 * with torch_dtype updated when the dtype changes; provenance of earlier runs dropped), every
 * tensor written in the input dtype (or out_dtype; round to nearest even) with the input's
 * shard file names and weight map.
 *
 * Work folder W = OUT.rmu-work beside OUT: it holds the checkpoints (src/train/ckpt.h,
 * W/checkpoint-STEP, the newest keep_checkpoints kept) while the run goes on, and at the
 * end the output files are written into it and W is renamed to OUT in one step, so OUT
 * never exists half-written and ends up holding the checkpoints as well.
 *   - Fresh run: W with checkpoints is refused (an interrupted run: resume it or remove it),
 *     W without any is removed; an existing OUT is refused unless overwrite (then replaced
 *     as a whole at the end, if it is a model folder).
 *   - resume: continues from the newest checkpoint in W, replaying nothing: batch k is a pure
 *     function of (seed, k) and every reduction has a fixed order, so a killed-and-resumed
 *     run ends with bit-identical weights. With no W but a finished OUT whose newest
 *     checkpoint matches these settings, there is nothing to do (the run reports 0 steps).
 *     Different settings are refused, naming the first that differs. */
#ifndef RMU_FINETUNE_H
#define RMU_FINETUNE_H

#include <stdint.h>

#include "core/dtype.h"
#include "core/err.h"
#include "kernels/gemm.h"

typedef struct rmu_ft_opts {
    const char *model_dir, *out_dir;
    const char *data;       /* comma-separated corpus files (src/train/data.h formats) */
    const char *field;      /* JSON text field; NULL = "text" */
    long max_docs;          /* > 0: only the first max_docs documents of the corpus (file order) */
    const char *trainable;  /* glob patterns; NULL = every tensor */
    const char *log_path;   /* JSONL, one object per step: step, loss, lr, grad_norm, tokens_per_s
                             * and step_s (this step's compute), tokens, epoch; NULL = none. On
                             * resume, lines past the checkpoint are dropped first. */
    long steps;             /* > 0: optimizer steps; else epochs */
    double epochs;          /* default 1 */
    int batch_size, seq_len, pack;
    double lr, weight_decay, clip, beta1, beta2, eps;
    long warmup;
    int schedule;           /* rmu_sched */
    uint64_t seed;
    long save_every;        /* 0 = no checkpoints */
    int keep_checkpoints;   /* newest N kept (default 2) */
    int resume;
    int overwrite;          /* replace an existing OUT (a model folder) when the run ends */
    rmu_dtype out_dtype;    /* RMU_DT_INVALID = each tensor's input dtype */
    rmu_prec precision;     /* matmul precision (0 = auto: bf16 arithmetic for BF16 weights) */
    /* hidden, for tests and benchmarks */
    const char *batch_json; /* fixed padded batches {"input_ids","attention_mask"} (or a list), cycled */
    const char *dump_grads; /* write the first batch's gradients (F32 safetensors) and stop */
    int loss_layer;         /* -1: LM loss; L: MSE-to-zero of the residual after layer L */
    long debug_nan_step;    /* pretend the loss of this step is NaN (0 = off) */
    int no_output;          /* benchmarks: skip writing the output folder */
} rmu_ft_opts;

void rmu_ft_defaults(rmu_ft_opts *o);

typedef struct rmu_ft_status {
    long step, total;       /* step just done (1-based) of total */
    double loss, lr, grad_norm;
    double tokens_per_s;    /* real tokens of this run / its wall time */
    double elapsed, eta;    /* seconds */
    int checkpoint;         /* 1 when this step wrote a checkpoint */
} rmu_ft_status;

typedef struct rmu_ft_result {
    long start_step, steps;  /* resumed from start_step; steps done in total */
    double last_loss, first_loss;
    long n_sequences, n_tokens, n_trainable;
    int n_tensors;
    double seconds;
} rmu_ft_result;

/* Informational notes (e.g. "resuming from ...") and per-step status. Either may be NULL. */
typedef void (*rmu_ft_note_fn)(void *ud, const char *msg);
typedef void (*rmu_ft_step_fn)(void *ud, const rmu_ft_status *s);

typedef struct rmu_ft rmu_ft;
typedef struct rmu_model rmu_model;

/* Loads the model, corpus (src/train/data.h) and trainer, checks OUT and W, resumes. The
 * strings of o must stay valid until rmu_ft_close. NULL on error. */
rmu_ft *rmu_ft_open(const rmu_ft_opts *o, rmu_ft_note_fn note, void *ud, rmu_err *e);
/* One optimizer step, its log line and checkpoint: 1 with *s filled, 0 when every step is
 * done (nothing happens), -1 on error (a NaN or infinite loss stops the run, naming the last
 * good checkpoint). */
int rmu_ft_step(rmu_ft *h, rmu_ft_status *s, rmu_err *e);
/* Writes OUT (unless no_output) and fills r. Call once the steps are done. */
int rmu_ft_finish(rmu_ft *h, rmu_ft_result *r, rmu_err *e);
void rmu_ft_close(rmu_ft *h);
/* The live model: trainable tensors on their current fp32 masters (in-process evaluation). */
rmu_model *rmu_ft_model(rmu_ft *h);
/* Steps done (right after open: the step a resumed run continues from; total when OUT was
 * already complete) and the run's total. */
long rmu_ft_done(const rmu_ft *h);
long rmu_ft_total(const rmu_ft *h);
/* The work folder W (OUT.rmu-work): its subfolders travel into OUT when the run finishes. */
const char *rmu_ft_work_dir(const rmu_ft *h);

/* open, step until done, finish (or the gradient dump of dump_grads), close. */
int rmu_ft_run(const rmu_ft_opts *o, rmu_ft_note_fn note, rmu_ft_step_fn step, void *ud, rmu_ft_result *r,
               rmu_err *e);

#endif
