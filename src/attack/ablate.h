/* ablate.h - the directional-ablation attack (Łucki et al. 2024 after Arditi et al. 2024):
 * find the direction(s) along which unlearning pushes the residual stream on forget text,
 * and remove them from every weight that writes to the residual stream. Prefix rmu_ablate_.
 *
 * Estimate. With h_M(l) the residual after decoder layer l of model M (HF hidden_states[l+1])
 * and means over every real token of the first max_texts forget texts (the BOS position
 * excluded: its activations are outliers that carry no text), for each layer l of `layers`:
 *     d_l = mean h_unlearned(l) - mean h_base(l)                       (always)
 *     r_l = mean h_unlearned(l) on forget - mean h_unlearned(l) on retain  (with retain)
 * Stacked as the rows of M [n_vec, C], the directions are the top-k right singular vectors
 * of M (eigenvectors of M M^T, Jacobi, in double), each signed to point along the sum of the
 * rows; "explained" = sigma_i^2 / sum sigma^2 (the share of M's squared Frobenius norm), and
 * per row the share of its squared norm inside the span of the k directions.
 *
 * Ablation. With D [C, k] orthonormal and P = I - D D^T, every matrix that writes to the
 * residual stream gets its output rows projected (shapes [rows, cols] as stored):
 *     model.embed_tokens.weight [V, C]:   E <- E P          (each row is a residual vector)
 *     self_attn.o_proj.weight   [C, H*hd]: W <- P W          (output rows in the residual)
 *     mlp.down_proj.weight      [C, F]:    W <- P W
 * (and a stored lm_head.weight of a tied model, kept equal to the embedding). Mistral/Llama
 * have no biases, and the norms and the other projections only read the residual, so after
 * this every residual stream has no component along D (up to rounding of the stored dtype).
 * Math in double, tensors written in their own dtype and shard through src/io/hfdir.h: OUT
 * is a plain HF folder. directions (a file) skips the estimate and applies given vectors
 * (orthonormalised first).
 *
 * Output: OUT (the model) + OUT/attack/directions.safetensors ("directions" F32 [k, C], unit
 * rows) + OUT/attack/ablate.json (settings, singular values, explained shares, per-row
 * shares, and with evaluations the base / unlearned / ablated accuracies and recovered
 * fractions, src/attack/report.h). Everything is checked and estimated before anything is
 * written; the evaluation of the written OUT comes last and adds its numbers to
 * ablate.json (replaced atomically). */
#ifndef RMU_ABLATE_H
#define RMU_ABLATE_H

#include <jansson.h>

#include "attack/report.h"
#include "core/err.h"

#define RMU_ABLATE_MAX_LAYERS 256
#define RMU_ABLATE_MAX_K 64

typedef struct rmu_ablate_opts {
    const char *model_dir;  /* the unlearned model */
    const char *base_dir;   /* the model before unlearning (estimate; base level by default) */
    const char *forget, *retain; /* comma-separated corpus files; retain may be NULL */
    const char *field;      /* JSON text field; NULL = "text" */
    int layers[RMU_ABLATE_MAX_LAYERS];
    int n_layers;
    int k;                  /* directions (default 1) */
    int max_texts;          /* of each corpus (default 64) */
    int max_len;            /* tokens per text, right-truncated (default 512) */
    const char *directions; /* safetensors file: apply these instead of estimating */
    const char *out_dir;
    int overwrite;          /* replace an existing OUT model folder */
    /* evaluation (optional) */
    rmu_report_suite suites[RMU_REPORT_MAX_SUITES];
    int n_suites;
    rmu_report_opts eval;
    const char *base_results, *unlearned_results; /* results files instead of evaluating */
} rmu_ablate_opts;

void rmu_ablate_defaults(rmu_ablate_opts *o);

typedef struct rmu_ablate_result {
    int k, hidden;
    float *dirs;         /* [k, hidden] unit rows */
    int n_vec;
    double *sigma;       /* [n_vec] singular values of M (empty when directions were given) */
    double *explained;   /* [k] */
    double *row_norm, *row_share; /* [n_vec] */
    int n_tensors;       /* tensors rewritten */
    long tokens[2];      /* forget, retain tokens averaged */
    int texts[2];
    rmu_report rep;      /* keys (when evaluated) */
    double *base, *unlearned, *ablated; /* [nkeys] or NULL */
    double seconds;
} rmu_ablate_result;

typedef void (*rmu_ablate_note_fn)(void *ud, const char *msg);

int rmu_ablate_run(const rmu_ablate_opts *o, rmu_ablate_note_fn note, void *ud, rmu_ablate_result *r, rmu_err *e);
void rmu_ablate_result_free(rmu_ablate_result *r);

/* ---- the math, exposed for tests */

/* Top-k right singular vectors of M [n, c] (row-major, double): out [k, c] unit rows, signed
 * along the sum of M's rows; sigma [n] all singular values, descending. Errors when fewer
 * than k singular values are non-zero. */
int rmu_ablate_top_dirs(const double *M, int n, int c, int k, double *out, double *sigma, rmu_err *e);
/* Gram-Schmidt on the k rows of v [k, c] in place (errors on a dependent row). */
int rmu_ablate_orthonormalize(double *v, int k, int c, rmu_err *e);

#endif
