/* report.h - what both attacks measure: accuracy of a model on one or more evaluation
 * suites, the base and unlearned levels, and the recovered fraction of the gap. Prefix
 * rmu_report_.
 *
 * A suite is one `rmu eval` run: a task list and its data (src/eval/eval.h), optionally
 * labelled. Several suites let one report hold tasks that `rmu eval` can only run one at a
 * time (two `mcq` files: the demo's forget and retain questions). Every node of every suite
 * (tasks and groups) is one metric, "acc" as lm-eval reports it, keyed by its task name, or
 * "LABEL/TASK" for a labelled suite; keys must be unique.
 *
 * Levels come from a model (evaluated here with the same settings, scored exactly as
 * `rmu eval` scores it) or from results files written by `rmu eval --output`, one per suite;
 * a results file must hold every key's task with the same number of evaluated rows and the
 * same format, so a file made with another --limit or data is refused rather than compared.
 *
 * Recovered fraction of the gap, per metric:
 *     r = (acc_attacked - acc_unlearned) / (acc_base - acc_unlearned)
 * 0 = the attack recovered nothing, 1 = back to the base model; undefined (NaN, null in
 * JSON) when base and unlearned are equal. It only means something where unlearning
 * opened a gap: on retain tasks the gap is a point or two and r is noise. */
#ifndef RMU_REPORT_H
#define RMU_REPORT_H

#include <jansson.h>

#include "core/err.h"
#include "eval/eval.h"

#define RMU_REPORT_MAX_SUITES 8

typedef struct rmu_report_suite {
    const char *label; /* NULL or "": keys are the task names */
    const char *tasks; /* `rmu eval --tasks` */
    const char *data;  /* `rmu eval --data` */
} rmu_report_suite;

/* Scoring settings shared by every suite (`rmu eval`'s flags; defaults are its defaults). */
typedef struct rmu_report_opts {
    rmu_mcq_format format; /* letter (default) or cloze (mcq only) */
    int num_fewshot;
    double limit;          /* as --limit: < 1 a fraction, else rows; 0 = all */
    int add_bos;
    int max_length;        /* 0 = max_position_embeddings */
    int desc_newlines;     /* 0 = 1, lm-eval v0.4.2 */
    int batch;             /* rows scored together (speed only); 0 = 16 */
    /* every scored question, as `rmu eval --log-samples` sees it (NULL = none) */
    int (*on_sample)(void *ud, const rmu_eval_sample *s, rmu_err *e);
    void *ud;
} rmu_report_opts;

typedef struct rmu_report_key {
    char name[200];
    int suite, node, depth; /* depth 0 = top-level task or group */
} rmu_report_key;

typedef struct rmu_report {
    int nsuites;
    rmu_report_suite suite[RMU_REPORT_MAX_SUITES];
    rmu_eval_plan plan[RMU_REPORT_MAX_SUITES];
    rmu_report_opts o;
    int nkeys;
    rmu_report_key *keys;
} rmu_report;

/* Builds and loads every suite's plan (bad tasks or data fail here, before any model work).
 * The strings of s must outlive r. Errors about the suites start with "eval:". */
int rmu_report_open(rmu_report *r, const rmu_report_suite *s, int n, const rmu_report_opts *o, rmu_err *e);
void rmu_report_free(rmu_report *r);

/* acc[nkeys] of model m (with tokenizer t) over every suite. */
int rmu_report_eval(rmu_report *r, const rmu_model *m, const rmu_tokenizer *t, double *acc, rmu_err *e);
/* The same for the model folder dir (loaded, tokenizer checked, freed). */
int rmu_report_eval_dir(rmu_report *r, const char *dir, double *acc, rmu_err *e);
/* acc[nkeys] from results files: `files` is a comma-separated list, one per suite. */
int rmu_report_read_results(const rmu_report *r, const char *files, double *acc, rmu_err *e);

/* (att - unl) / (base - unl); NaN when base == unl or an input is not finite. */
double rmu_report_recovered(double base, double unl, double att);

/* {"KEY": {"base", "unlearned", "attacked", "recovered"}, ...}; base or unl may be NULL
 * (not known: those fields and recovered are null). */
json_t *rmu_report_json(const rmu_report *r, const double *base, const double *unl, const double *att);
/* The settings of the suites as JSON (what a resumed run must share). */
json_t *rmu_report_settings(const rmu_report *r);
/* A markdown table of the keys up to depth 1: task, base, unlearned, attacked (named
 * `attacked`), recovered. malloc'd, NULL when out of memory. */
char *rmu_report_table(const rmu_report *r, const double *base, const double *unl, const double *att,
                       const char *attacked);

#endif
