/* mcq.h - multiple-choice data (WMDP, MMLU, any MCQ file) and the prompt strings exactly
 * as lm-evaluation-harness v0.4.2 builds them. Prefix rmu_mcq_.
 *
 * Accepted files:
 *   .csv   MMLU's original layout: no header, question,A,B,C,D,answer-letter per record,
 *          RFC 4180 quoting (embedded newlines, commas and "" escapes), parsed like Python's
 *          csv.reader (the reader the HF cais/mmlu conversion used).
 *   .jsonl one JSON object per line, or .json with a JSON array of objects, in the HF schema
 *          of cais/wmdp and cais/mmlu: {"question": str, "choices": [str...], "answer": int
 *          or letter, "subject": str (optional)}.
 * Anything else is read as JSON (array) or JSONL depending on its first non-space byte. */
#ifndef RMU_MCQ_H
#define RMU_MCQ_H

#include <stddef.h>

#include "core/err.h"

#define RMU_MCQ_MAX_CHOICES 26 /* letters A..Z */

typedef struct rmu_mcq_item {
    char *question;
    char **choices;
    int nchoices;
    int answer;    /* gold index */
    char *subject; /* NULL when the row has none */
    int line;      /* 1-based line of the record in its file (JSON array: item index + 1) */
} rmu_mcq_item;

typedef struct rmu_mcq_set {
    rmu_mcq_item *items;
    int n, cap;
    char path[4096]; /* source file, for messages */
} rmu_mcq_set;

/* Evaluation files are read whole: at most this many bytes (MMLU's largest is ~1 MB). */
#define RMU_MCQ_MAX_FILE ((size_t)256 << 20)

/* Load a file (format from the extension, see above). Every row must have between
 * min_choices and max_choices choices; errors name FILE:LINE and what is wrong. */
int rmu_mcq_load(rmu_mcq_set *s, const char *path, int min_choices, int max_choices, rmu_err *e);
/* The same from memory (path only names the source in messages). */
int rmu_mcq_parse_csv(rmu_mcq_set *s, const char *text, size_t len, const char *path, rmu_err *e);
int rmu_mcq_parse_json(rmu_mcq_set *s, const char *text, size_t len, const char *path, int min_choices,
                       int max_choices, rmu_err *e);
void rmu_mcq_set_free(rmu_mcq_set *s);
/* Append a deep copy of item to s. */
int rmu_mcq_set_add(rmu_mcq_set *s, const rmu_mcq_item *item, rmu_err *e);

/* Generic RFC 4180 reader: calls row(ud, fields, nfields, line) once per record (line = the
 * line the record starts on). Blank lines are skipped. Returns -1 with e filled on malformed
 * input or when row returns non-zero (row fills e itself then). */
typedef int (*rmu_csv_row_fn)(void *ud, char **fields, int nfields, int line, rmu_err *e);
int rmu_csv_parse(const char *text, size_t len, const char *path, rmu_csv_row_fn row, void *ud, rmu_err *e);

/* ---- lm-eval prompt strings ---- */

typedef enum rmu_mcq_format {
    RMU_MCQ_LETTER = 0, /* "Q\nA. c0\nB. c1 ...\nAnswer:" scored on " A", " B", ... (MMLU/WMDP) */
    RMU_MCQ_CLOZE,      /* "Question: Q\nAnswer:" scored on " " + choice text */
} rmu_mcq_format;

/* lm-eval's task description "The following are multiple choice questions (with answers)
 * about TOPIC." followed by `newlines` newlines (malloc'd). The YAML has "\n\n", but v0.4.2
 * renders descriptions with Jinja's default keep_trailing_newline=False, which drops the
 * last one, so v0.4.2 prompts carry ONE newline (fixed upstream in PR #2116, v0.4.4+:
 * pass 2 for that behaviour). topic NULL or "" gives "" (no description). */
char *rmu_mcq_description(const char *topic, int newlines);

/* The document text: letter format "QUESTION.strip()\nA. c0\nB. c1\n...\nAnswer:", cloze
 * "Question: QUESTION.strip()\nAnswer:" (malloc'd). strip() is Python's (Unicode
 * whitespace). */
char *rmu_mcq_doc_text(const rmu_mcq_item *it, rmu_mcq_format fmt);
/* The target of a choice without the target delimiter: "A".. or the choice text. */
const char *rmu_mcq_choice_target(const rmu_mcq_item *it, int choice, rmu_mcq_format fmt, char letter[2]);
/* Continuation scored for a choice: target delimiter " " + target (malloc'd). */
char *rmu_mcq_continuation(const rmu_mcq_item *it, int choice, rmu_mcq_format fmt);

/* Full context as lm-eval's fewshot_context: description + for each shot
 * (doc_text + " " + gold target) joined by "\n\n" and followed by "\n\n" + doc_text.
 * shots may be NULL when nshots == 0 (malloc'd). */
char *rmu_mcq_context(const char *description, const rmu_mcq_item *shots, int nshots, const rmu_mcq_item *doc,
                      rmu_mcq_format fmt);

/* Python str.strip()/rstrip() on UTF-8: bounds of the text without leading/trailing
 * Unicode whitespace. rstrip returns the new length. */
size_t rmu_py_rstrip_len(const char *s, size_t n);
size_t rmu_py_lstrip_off(const char *s, size_t n);
/* Number of Unicode code points in s (Python len()). */
size_t rmu_utf8_len(const char *s);

/* ---- task registry ---- */

/* MMLU's 57 subjects in lm-eval v0.4.2 order (lm_eval/tasks/mmlu/_generate_configs.py) and
 * their category: "stem", "other", "social_sciences" or "humanities". */
int rmu_mcq_mmlu_count(void);
const char *rmu_mcq_mmlu_subject(int i);
const char *rmu_mcq_mmlu_category(int i);
int rmu_mcq_mmlu_find(const char *subject); /* index or -1 */
/* The four categories in lm-eval's group order (first appearance in SUBJECTS). */
extern const char *const RMU_MCQ_MMLU_CATEGORIES[4];

#endif
