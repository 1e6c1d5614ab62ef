/* mtbench.h - MT-Bench answers as FastChat's gen_model_answer.py writes them. Prefix rmu_mtb_.
 *
 * Each question's turns go through the chat template one after another, turn j seeing the
 * earlier turns and their answers. Temperature by category as FastChat's
 * temperature_config (writing/roleplay 0.7, extraction/math/coding/reasoning 0, stem/
 * humanities 0.1, anything else 0.7); below 1e-4 decoding is greedy, as FastChat sets
 * do_sample=False; sampling otherwise uses HF generate's defaults (top_k 50, top_p 1).
 * Answers are the generated text with special-token strings removed and Python-strip()ped;
 * a turn whose prompt does not fit the context is answered "ERROR" (FastChat's string when
 * generation fails).
 *
 * Output lines: {"question_id", "answer_id", "model_id", "choices": [{"index": 0, "turns":
 * [...]}], "tstamp"}, sorted by question_id. FastChat draws answer_id with shortuuid; ours
 * is a deterministic 22-character id in shortuuid's alphabet (SHA-256 of model id, question
 * id and answers), so reruns with the same output give the same file apart from tstamp. */
#ifndef RMU_MTBENCH_H
#define RMU_MTBENCH_H

#include <stdint.h>

#include "core/err.h"
#include "model/model.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

/* jansson's value type, declared (C11 allows the repeat) so that users of this header need
 * not include <jansson.h>. */
typedef struct json_t json_t;

typedef struct rmu_mtb_question {
    json_t *qid; /* integer or string, as in question.jsonl */
    char category[64];
    char **turns;
    int nturns;
} rmu_mtb_question;

typedef struct rmu_mtb_questions {
    rmu_mtb_question *q;
    int n;
} rmu_mtb_questions;

/* question.jsonl: one object per line with "question_id", "category", "turns" (strings). */
int rmu_mtb_load_questions(rmu_mtb_questions *qs, const char *path, rmu_err *e);
int rmu_mtb_parse_questions(rmu_mtb_questions *qs, const char *text, size_t len, const char *path, rmu_err *e);
void rmu_mtb_questions_free(rmu_mtb_questions *qs);

/* FastChat's temperature for a category. */
double rmu_mtb_temperature(const char *category);
/* Per-question sampling seed: a mix of base and the question id. */
uint64_t rmu_mtb_seed(uint64_t base, const json_t *qid);
/* Order of question ids: integers by value, then strings by bytes. */
int rmu_mtb_qid_cmp(const json_t *a, const json_t *b);
/* Deterministic 22-character answer id (shortuuid alphabet) + NUL in out[23]. */
void rmu_mtb_answer_id(const char *model_id, const json_t *qid, char *const *turns, int n, char out[23]);
/* FastChat's clean-up: remove every occurrence of each string in remove, then strip()
 * (malloc'd). */
char *rmu_mtb_clean(const char *text, const char *const *remove, int nremove);

/* ---- the answer file ---- */

/* Existing answers of PATH as a JSON array sorted by question_id, one record per id (the
 * last line wins, as FastChat's reorg_answer_file). A missing file gives []. A line that is
 * not an object with a question_id is an error naming PATH:LINE. */
int rmu_mtb_answers_load(const char *path, json_t **arr, rmu_err *e);
/* Index of the record with this question id, or -1. */
int rmu_mtb_answers_find(const json_t *arr, const json_t *qid);
/* Insert rec (reference stolen), replacing a record with the same id, keeping the order. */
int rmu_mtb_answers_put(json_t *arr, json_t *rec, rmu_err *e);
/* One JSON object per line as Python's json.dumps writes it (FastChat's bytes), atomically. */
int rmu_mtb_answers_save(const char *path, const json_t *arr, rmu_err *e);
/* A FastChat answer record (new reference). */
json_t *rmu_mtb_record(const json_t *qid, const char *answer_id, const char *model_id, char *const *turns, int n,
                       double tstamp);

/* ---- generation (mtbench_gen.c) ---- */

typedef struct rmu_mtb_opts {
    int max_new;        /* max new tokens per turn */
    rmu_chat_kind kind; /* chat template */
    uint64_t seed;      /* base seed, mixed with each question id */
} rmu_mtb_opts;

typedef struct rmu_mtb_turn_info {
    int prompt_tokens, new_tokens, error; /* error: answered "ERROR" (prompt too long) */
} rmu_mtb_turn_info;

/* Answers every turn of q with the model (s: a run state of the context to use). *turns
 * gets q->nturns malloc'd strings (free with rmu_mtb_turns_free); info (may be NULL) gets
 * q->nturns entries. */
int rmu_mtb_answer(const rmu_model *m, const rmu_tokenizer *t, rmu_state *s, const rmu_mtb_question *q,
                   const rmu_mtb_opts *o, char ***turns, rmu_mtb_turn_info *info, rmu_err *e);
void rmu_mtb_turns_free(char **turns, int n);

#endif
