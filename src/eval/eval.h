/* eval.h - multiple-choice evaluation scored exactly as lm-evaluation-harness v0.4.2 scores
 * it: the task tree, data lookup, loglikelihood scoring and results. Prefix rmu_eval_.
 *
 * Tasks (--tasks, comma separated):
 *   wmdp                      group of wmdp_bio, wmdp_chem, wmdp_cyber
 *   wmdp_bio|wmdp_chem|wmdp_cyber
 *   mmlu                      group of mmlu_stem, mmlu_other, mmlu_social_sciences,
 *                             mmlu_humanities, each a group of its subjects (lm-eval v0.4.2)
 *   mmlu_stem|mmlu_other|mmlu_social_sciences|mmlu_humanities
 *   mmlu_SUBJECT              one of the 57 subjects, e.g. mmlu_anatomy
 *   mcq                       any multiple-choice file (2..26 choices, no description)
 *
 * Data (--data, comma separated entries; each entry NAME=PATH or a plain PATH):
 *   NAME=PATH       PATH (file or folder) serves task or group NAME and everything under it;
 *   NAME_dev=PATH   few-shot rows for NAME (needed for wmdp and mcq with --num-fewshot > 0);
 *   plain folder    searched, in order, by every task without a NAME= entry:
 *                     wmdp_X: wmdp-X, wmdp_X or X with .jsonl/.json (X = bio, chem, cyber)
 *                     mmlu:   test/S_test.csv, test/S.jsonl, test/S_test.jsonl, test/S.json,
 *                             the same without test/, then test.jsonl/test.json holding all
 *                             subjects (rows tagged with "subject"); few-shot rows likewise
 *                             from dev/S_dev.csv, dev/S.jsonl, dev/S_dev.jsonl, dev/S.json,
 *                             S_dev.csv, S_dev.jsonl, dev.jsonl, dev.json
 *                     mcq:    mcq.jsonl, mcq.json, mcq.csv
 *   plain file      used by the task its name names (wmdp-bio.jsonl, bio.json, anatomy.csv,
 *                   mmlu_anatomy.jsonl, ...); otherwise, when it is the only plain entry, by
 *                   the one task of the run (or by all MMLU tasks, split by "subject").
 */
#ifndef RMU_EVAL_H
#define RMU_EVAL_H


#include "core/dist.h"
#include "core/err.h"
#include "eval/mcq.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

/* jansson's value type, declared (C11 allows the repeat) so that users of this header need
 * not include <jansson.h>. */
typedef struct json_t json_t;

typedef enum rmu_eval_family {
    RMU_EVAL_GROUP = 0,
    RMU_EVAL_WMDP,
    RMU_EVAL_MMLU,
    RMU_EVAL_MCQ,
} rmu_eval_family;

/* A metric over a task or group, as lm-eval reports it. */
typedef struct rmu_eval_stat {
    double value;
    double stderr;
    int has_stderr; /* 0 = "N/A" (a single sample, or a subtask with "N/A") */
} rmu_eval_stat;

typedef struct rmu_eval_node {
    char name[96];    /* lm-eval task or group name */
    char alias[96];   /* task_alias / group_alias; results add lm-eval's " - " indentation */
    int parent;       /* node index, -1 at top level */
    int family;       /* RMU_EVAL_GROUP for groups */
    char topic[96];   /* the description's subject ("" = no description) */
    char subject[64]; /* MMLU subject of a leaf, "" otherwise */
    char src[4200];   /* where the test rows came from */
    rmu_mcq_set test; /* leaves: evaluated rows are test.items[0 .. n) */
    rmu_mcq_set dev;  /* leaves: few-shot rows (empty without --num-fewshot) */
    int n_orig, n;    /* rows in the data; rows evaluated (after --limit) */
    double *acc;      /* leaves: per evaluated row, 0 or 1 */
    double *acc_norm; /* leaves, cloze format only */
    long samples;     /* leaves: n; groups: sum over children (lm-eval "samples") */
    rmu_eval_stat st_acc, st_norm;
} rmu_eval_node;

typedef struct rmu_eval_plan {
    rmu_eval_node *nodes;
    int n, cap;
    rmu_mcq_format format;
    int num_fewshot;
    int desc_newlines; /* newlines after the description: 1 = v0.4.2 (default), 2 = v0.4.4+ */
} rmu_eval_plan;

/* Builds the task tree from a comma-separated task list. Unknown and repeated tasks are
 * errors. fmt RMU_MCQ_CLOZE is accepted only for mcq (WMDP/MMLU are letter tasks). */
int rmu_eval_plan_init(rmu_eval_plan *p, const char *tasks, rmu_mcq_format fmt, rmu_err *e);
/* Finds and loads every leaf's rows (see --data above), few-shot rows when num_fewshot > 0,
 * and applies limit (lm-eval: < 1 is a fraction of each task, else a row count; 0 = all). */
int rmu_eval_plan_load(rmu_eval_plan *p, const char *data, int num_fewshot, double limit, rmu_err *e);
void rmu_eval_plan_free(rmu_eval_plan *p);
/* Rows to evaluate over all leaves. */
long rmu_eval_plan_rows(const rmu_eval_plan *p);
/* The exact context string of row `row` of leaf `node` (malloc'd; NULL when out of memory). */
char *rmu_eval_context(const rmu_eval_plan *p, int node, int row);

/* ---- results (lm-eval v0.4.2 arithmetic) ---- */

/* Mean and mean_stderr = sqrt(sum((x - mean)^2) / (n - 1)) / sqrt(n); N/A when n <= 1. */
void rmu_eval_stat_mean(const double *x, int n, rmu_eval_stat *out);
/* Group of k subtasks: size-weighted mean, and pooled_sample_stderr =
 * sqrt(sum((n_i - 1) * se_i^2 * n_i) / (sum n_i - k) / sum n_i); N/A if any subtask is N/A. */
void rmu_eval_stat_group(const rmu_eval_stat *sub, const long *sizes, int k, rmu_eval_stat *out);
/* Fills every leaf's stats from its per-row arrays, then every group from its direct
 * children (deepest first), as lm-eval's evaluator does. */
void rmu_eval_aggregate(rmu_eval_plan *p);
/* Display order: top-level nodes by name, each followed by its children sorted by name
 * (recursively). Writes up to p->n indices and depths; returns the count. */
int rmu_eval_order(const rmu_eval_plan *p, int *order, int *depth);
/* lm-eval-shaped results: {"results", "groups", "group_subtasks", "n-shot", "n-samples",
 * "versions", "config"}. config (may be NULL) is stored under "config" (reference stolen). */
json_t *rmu_eval_results_json(const rmu_eval_plan *p, json_t *config);
/* Markdown tables like lm-eval's (tasks, then groups): task, n, n-shot, metric, value,
 * stderr (malloc'd). */
char *rmu_eval_table(const rmu_eval_plan *p);

/* ---- scoring ---- */

/* One scored question, handed to on_sample (for --log-samples / --dump-requests). Per
 * choice c: ctx_ids[c] are the context tokens the model saw before the continuation (after
 * lm-eval's left truncation), cont_ids[c] the continuation tokens. */
typedef struct rmu_eval_sample {
    int node, row;
    const char *context;
    int nchoices;
    char *const *continuations;
    const double *loglik;
    const int *greedy;
    int *const *ctx_ids;
    const int *n_ctx;
    int *const *cont_ids;
    const int *n_cont;
    int gold, pred, pred_norm; /* pred_norm: cloze only (else -1) */
    int onepass;               /* scored with one forward pass of the context */
} rmu_eval_sample;

typedef struct rmu_eval_opts {
    int add_bos;      /* prepend BOS like lm-eval's add_bos_token=True (default off) */
    int max_length;   /* lm-eval max_length; 0 = config max_position_embeddings */
    int batch;        /* questions tokenized and scheduled together (>= 1) */
    int onepass;      /* one forward per question when every continuation is one token */
    int prefix_cache; /* reuse the KV cache of the token prefix shared with the last request */
    int (*on_sample)(void *ud, const rmu_eval_sample *s, rmu_err *e);
    void (*on_progress)(void *ud, long done, long total);
    void *ud;
    /* NULL (or one rank): this process scores every row. Several MPI ranks: each scores a
     * contiguous share of the rows in scoring order (on_sample and on_progress see only its
     * own, in that order, so rank 0's samples then rank 1's ... are the single process's
     * sequence); at the end every rank's plan holds every row's scores and counts holds the
     * totals, exactly as one process would have them (eval.c says how). Collective. */
    const rmu_dist *dist;
} rmu_eval_opts;

typedef struct rmu_eval_counts {
    long questions, onepass_questions;
    long forward_calls, tokens_fed, tokens_reused;
} rmu_eval_counts;

/* Scores every row of every leaf, filling node->acc (and acc_norm), then aggregates. */
int rmu_eval_run(rmu_eval_plan *p, const rmu_model *m, const rmu_tokenizer *t, const rmu_eval_opts *o,
                 rmu_eval_counts *counts, rmu_err *e);

/* lm-eval's _encode_pair on token level: trailing Python whitespace of the context moves to
 * the continuation; context_enc = tok(context), continuation = tok(context +
 * continuation)[len(context_enc):]. Outputs are malloc'd (*cont may be empty). */
int rmu_eval_encode_pair(const rmu_tokenizer *t, const char *context, const char *continuation, int add_bos,
                         int **ctx, int *nctx, int **cont, int *ncont, rmu_err *e);

#endif
