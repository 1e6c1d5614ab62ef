/* unlearn.h - RMU (Representation Misdirection for Unlearning, Li et al. 2024, WMDP) as the
 * WMDP repository's rmu/unlearn.py does it, on the training engine. Prefix rmu_unl_.
 *
 * Step idx: topic t = idx mod T, batch b = idx div T;
 *   loss = mean((h_upd(forget_t[b]) - c_t u_t)^2) + alpha_t mean((h_upd(retain_t[b]) - h_frozen(retain_t[b]))^2)
 * with h the residual after decoder layer layer_id, means over real (non-pad) tokens and
 * the hidden size. Deliberate difference from the reference: it averages over pad positions
 * too (its mse_loss sees the padded tensor); we exclude them, so a batch's loss does not
 * depend on how much padding its longest row forces on the others.
 *
 * Work avoided (the reason this exists): layers after layer_id never run; layers below
 * min(layer_ids) run once per batch, shared by the frozen and updated models; the frozen
 * model runs only layers min(layer_ids)..layer_id; a retain batch used by consecutive
 * topics (the same corpus twice, as in the published Zephyr run) is encoded once.
 *
 * A run is opened (model, corpora, control vectors, log), stepped (one RMU step each, its
 * numbers returned and appended to the log) and finished (the output folder), so a server,
 * the relearning attacks or the demo can drive it; rmu_unl_run is that loop. Errors about an
 * option start with its field name ("layer_ids: ...", "forget: ..."); the CLI maps it to its
 * flag.
 *
 * Corpora: read by the one corpus reader (src/train/data.h: .jsonl/.ndjson JSON Lines with a
 * "text" field, .json an array or JSON Lines, other files plain text with one document per
 * non-blank line keeping its "\n"); texts of min_len characters or fewer are then dropped,
 * as the reference's get_data does; batches are tokenised when used.
 *
 * Log (log_path): one JSON object per step, appended and flushed as the step ends, so a
 * watcher sees progress; created (truncated) at open. Output folder: written at finish
 * through src/io/hfdir.h (staging name, then renamed), so it appears whole or not at all. */
#ifndef RMU_UNLEARN_H
#define RMU_UNLEARN_H

#include <stdint.h>

#include "core/err.h"
#include "kernels/gemm.h"

#define RMU_UNL_MAX_TOPICS 16
#define RMU_UNL_MAX_LAYERS 64

typedef struct rmu_unl_opts {
    const char *model_dir, *out_dir;
    const char *forget[RMU_UNL_MAX_TOPICS];
    int n_forget;
    const char *retain[RMU_UNL_MAX_TOPICS];
    int n_retain;
    int layer_id;
    int layer_ids[RMU_UNL_MAX_LAYERS];
    int n_layer_ids;
    const char *params;      /* trainable patterns; NULL = mlp.down_proj.weight of layer_ids */
    float steer[RMU_UNL_MAX_TOPICS];
    int n_steer;             /* 0 = 6.5 for every topic */
    float alpha[RMU_UNL_MAX_TOPICS];
    int n_alpha;             /* 0 = 1200 for every topic */
    float lr;
    int batch_size;
    int max_num_batches;
    int max_len[RMU_UNL_MAX_TOPICS];
    int n_max_len;           /* 0 = 512 for the first forget corpus, 768 for the others */
    int retain_max_len;
    int min_len;             /* drop texts of length <= min_len characters */
    uint64_t seed;
    float adaptive_beta;     /* > 0: Adaptive RMU, c_t = beta * mean frozen norm on forget t */
    const char *log_path;    /* JSONL per step, or NULL */
    const char *save_cv_path, *load_cv_path;
    /* Tests: write the padded batches of every step to PREFIX.forget.json and
     * PREFIX.retain.json ({"topics": [[{"input_ids", "attention_mask"}, ...], ...]}), the
     * format of tests/oracle/torch_ref.py rmu. */
    const char *dump_batches;
    int torch_adamw;         /* 1: torch.optim.AdamW; 0 (default): transformers.AdamW as the reference */
    int overwrite;           /* replace an existing out_dir (a model folder) as a whole */
    rmu_prec precision;      /* matmul precision (0 = auto: bf16 arithmetic for BF16 weights, as the
                              * reference's bf16 model computes) */
} rmu_unl_opts;

/* What one step reports (returned by rmu_unl_step, given to the progress callback, logged). */
typedef struct rmu_unl_report {
    int step, nsteps, topic;
    double unlearn_loss, retain_loss;
    double norm_upd_forget, norm_frozen_forget, norm_upd_retain; /* mean per-token L2 norms */
    double cos_forget, cos_retain;                               /* mean per-token cosine, updated vs frozen */
    double seconds;                                              /* since the loop started */
} rmu_unl_report;

typedef void (*rmu_unl_progress)(void *ud, const rmu_unl_report *s);

typedef struct rmu_unl_result {
    int steps;
    double final_unlearn_loss, final_retain_loss, seconds;
    float coeffs[RMU_UNL_MAX_TOPICS]; /* steering coefficients used */
} rmu_unl_result;

/* Fills o with the published Zephyr defaults (layer 7, layers 5,6,7, c 6.5, alpha 1200,
 * lr 5e-5, batch 4, 150 batches, seed 42, retain max length 512). */
void rmu_unl_defaults(rmu_unl_opts *o);

typedef struct rmu_unl rmu_unl;
typedef struct rmu_model rmu_model;
typedef struct rmu_data_docs rmu_data_docs;

/* Checks the options and out_dir (when given), loads the model, corpora and trainer, makes
 * the control vectors, opens the log. The strings of o must stay valid until close. */
rmu_unl *rmu_unl_open(const rmu_unl_opts *o, rmu_err *e);
/* One RMU step: 1 with *s filled, 0 when every step is done, -1 on error (a non-finite loss). */
int rmu_unl_step(rmu_unl *h, rmu_unl_report *s, rmu_err *e);
/* Writes the output folder into out_dir (NULL: o->out_dir): every input file copied, the
 * updated tensors in their original dtype and shard, rmu_unlearn.json (every setting, corpus
 * SHA-256s, steps, final losses). r (may be NULL) gets the result. */
int rmu_unl_finish(rmu_unl *h, const char *out_dir, rmu_unl_result *r, rmu_err *e);
void rmu_unl_close(rmu_unl *h);
/* Steps of the run; the result so far; the live (updated) model. */
int rmu_unl_nsteps(const rmu_unl *h);
void rmu_unl_result_get(const rmu_unl *h, rmu_unl_result *r);
rmu_model *rmu_unl_model(rmu_unl *h);

/* A corpus as unlearning reads it: the documents of path (src/train/data.h, field "text"),
 * those of min_len characters (code points) or fewer dropped. sha_hex (65 bytes, or NULL)
 * gets the file's SHA-256. */
int rmu_unl_read_corpus(rmu_data_docs *d, const char *path, int min_len, char *sha_hex, rmu_err *e);

/* open, step until done (cb, may be NULL, sees each step), finish into o->out_dir, close. */
int rmu_unl_run(const rmu_unl_opts *o, rmu_unl_progress cb, void *ud, rmu_unl_result *r, rmu_err *e);

#endif
