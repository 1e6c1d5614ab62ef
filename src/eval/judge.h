/* judge.h - MT-Bench single-answer grading as FastChat's gen_judgment.py (--mode single) and
 * show_result.py do it. Prefix rmu_judge_. Pure: no network (the judge is called through
 * src/io/openai.h by the CLI), so every rule here is unit-tested on its own.
 *
 * Matches: for every question, every model and turn 1 (and turn 2 when the question has two
 * turns), graded with judge prompt
 *   turn 1: "single-v1"             or "single-math-v1"            (reference turn 1)
 *   turn 2: "single-v1-multi-turn"  or "single-math-v1-multi-turn" (reference turns 1, 2)
 * the math prompts for the categories that need a reference answer (math, reasoning,
 * coding, arena-hard-200). The user prompt is the template filled as Python's str.format
 * does ({name} fields, {{ and }} for literal braces); the system prompt is the prompt file's.
 * The judge is asked at temperature 0 with max_tokens 2048. The rating is the first match of
 * \[\[(\d+\.?\d*)\]\], else of \[(\d+\.?\d*)\], read as Python's ast.literal_eval reads it
 * (an int, or a float when it has a '.'), else -1.
 *
 * Judgment lines, as FastChat writes them (json.dumps: ", " and ": " separators, ASCII):
 *   {"question_id": Q, "model": M, "judge": [JUDGE_MODEL, PROMPT_NAME], "user_prompt": ...,
 *    "judgment": ..., "score": S, "turn": 1|2, "tstamp": T} */
#ifndef RMU_JUDGE_H
#define RMU_JUDGE_H

#include "core/err.h"
#include "eval/mtbench.h"

typedef struct rmu_judge_prompt {
    char *name, *type, *system_prompt, *prompt_template, *output_format;
} rmu_judge_prompt;

typedef struct rmu_judge_prompts {
    rmu_judge_prompt *p;
    int n;
} rmu_judge_prompts;

/* judge_prompts.jsonl: one object per line with string fields name, type, system_prompt,
 * prompt_template, output_format. */
int rmu_judge_prompts_load(rmu_judge_prompts *jp, const char *path, rmu_err *e);
void rmu_judge_prompts_free(rmu_judge_prompts *jp);
const rmu_judge_prompt *rmu_judge_prompts_get(const rmu_judge_prompts *jp, const char *name);

/* 1 for the categories graded against a reference answer. */
int rmu_judge_needs_ref(const char *category);
/* The prompt name FastChat uses for a category and turn (1 or 2). */
const char *rmu_judge_prompt_name(const char *category, int turn);

/* Python str.format with named fields: names[i] -> values[i]. A field not in names, a lone
 * '{' or '}', or a format spec is an error naming the template (as Python raises).
 * Returns a malloc'd string or NULL. */
char *rmu_judge_format(const char *tmpl, const char *what, const char *const *names, const char *const *values, int n,
                       rmu_err *e);

/* The user prompt of one match. answer and ref are FastChat answer records (ref may be
 * NULL when the prompt needs none); turn 2 uses both turns of each. */
char *rmu_judge_user_prompt(const rmu_judge_prompt *p, const rmu_mtb_question *q, const json_t *answer,
                            const json_t *ref, int turn, rmu_err *e);

/* The rating in a judge's reply (see above); -1 when there is none. *is_int tells how
 * Python would print it (7 vs 7.0). */
double rmu_judge_parse_score(const char *judgment, int *is_int);

/* Python's repr() of a float (shortest round-trip digits, "7.0", "1e+16"), in out[32]. */
void rmu_judge_float_repr(double v, char out[32]);

/* One judgment line (with its "\n"), malloc'd. */
char *rmu_judge_record_line(const json_t *qid, const char *model, const char *judge_model, const char *prompt_name,
                            const char *user_prompt, const char *judgment, double score, int score_is_int, int turn,
                            double tstamp);

/* ---- show (show_result.py --mode single) ---- */

#define RMU_JUDGE_MAX_CATS 32

typedef struct rmu_judge_model_stats {
    char *model;
    double sum[3];     /* [0] all turns, [1] turn 1, [2] turn 2 */
    long n[3];
    double cat_sum[RMU_JUDGE_MAX_CATS];
    long cat_n[RMU_JUDGE_MAX_CATS];
} rmu_judge_model_stats;

typedef struct rmu_judge_stats {
    rmu_judge_model_stats *m;
    int nmodels;
    char *cats[RMU_JUDGE_MAX_CATS]; /* categories seen, in question-file order */
    int ncats;
    long dropped;                   /* judgments with score -1 */
} rmu_judge_stats;

/* Reads a judgment file (JSON Lines; a line cut by a kill at the end is ignored) and sums
 * the scores per model, turn and (when qs is given) category, dropping score -1 as
 * show_result.py does. only_model (may be NULL) keeps one model. */
int rmu_judge_stats_load(rmu_judge_stats *st, const char *path, const rmu_mtb_questions *qs, const char *only_model,
                         rmu_err *e);
void rmu_judge_stats_free(rmu_judge_stats *st);

#endif
