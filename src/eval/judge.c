/* judge.c - MT-Bench single-answer grading rules (FastChat llm_judge): prompts, matches,
 * rating parsing, judgment lines and show_result's averages. See judge.h. */
#include "eval/judge.h"

#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/strbuf.h"

/* ---- judge prompts ---- */

void rmu_judge_prompts_free(rmu_judge_prompts *jp) {
    for (int i = 0; i < jp->n; i++) {
        rmu_judge_prompt *p = &jp->p[i];
        free(p->name), free(p->type), free(p->system_prompt), free(p->prompt_template), free(p->output_format);
    }
    free(jp->p);
    memset(jp, 0, sizeof *jp);
}

typedef struct {
    rmu_judge_prompts *jp;
    const char *path;
} prompt_rows;

static int prompt_row(void *ud, json_t *o, long line, rmu_err *e) {
    prompt_rows *r = ud;
    static const char *const keys[] = {"name", "type", "system_prompt", "prompt_template", "output_format"};
    char *val[5] = {0};
    for (int k = 0; k < 5; k++) {
        json_t *v = json_is_object(o) ? json_object_get(o, keys[k]) : NULL;
        if (!json_is_string(v)) {
            for (int j = 0; j < k; j++) free(val[j]);
            return rmu_errf(e, "%s:%ld: expected an object with a string \"%s\"", r->path, line, keys[k]);
        }
        if (!(val[k] = strdup(json_string_value(v)))) {
            for (int j = 0; j < k; j++) free(val[j]);
            return rmu_errf(e, "out of memory");
        }
    }
    rmu_judge_prompt *np = realloc(r->jp->p, sizeof *np * (size_t)(r->jp->n + 1));
    if (!np) {
        for (int j = 0; j < 5; j++) free(val[j]);
        return rmu_errf(e, "out of memory");
    }
    r->jp->p = np;
    np[r->jp->n++] = (rmu_judge_prompt){val[0], val[1], val[2], val[3], val[4]};
    return 0;
}

int rmu_judge_prompts_load(rmu_judge_prompts *jp, const char *path, rmu_err *e) {
    memset(jp, 0, sizeof *jp);
    prompt_rows r = {jp, path};
    if (rmu_jsonl_read(path, 0, prompt_row, &r, NULL, e)) {
        rmu_judge_prompts_free(jp);
        return -1;
    }
    static const char *const need[] = {"single-v1", "single-math-v1", "single-v1-multi-turn",
                                       "single-math-v1-multi-turn"};
    for (int k = 0; k < 4; k++) {
        const rmu_judge_prompt *p = rmu_judge_prompts_get(jp, need[k]);
        const char *why = !p ? "is missing" : strcmp(p->type, "single") ? "is not of type \"single\""
                          : strcmp(p->output_format, "[[rating]]")       ? "has an output_format other than [[rating]]"
                                                                         : NULL;
        if (why) {
            rmu_errf(e, "%s: judge prompt \"%s\" %s", path, need[k], why);
            rmu_judge_prompts_free(jp);
            return -1;
        }
    }
    return 0;
}

const rmu_judge_prompt *rmu_judge_prompts_get(const rmu_judge_prompts *jp, const char *name) {
    for (int i = jp->n - 1; i >= 0; i--) /* a later line replaces an earlier one, as FastChat's dict */
        if (!strcmp(jp->p[i].name, name)) return &jp->p[i];
    return NULL;
}

int rmu_judge_needs_ref(const char *c) {
    return !strcmp(c, "math") || !strcmp(c, "reasoning") || !strcmp(c, "coding") || !strcmp(c, "arena-hard-200");
}

const char *rmu_judge_prompt_name(const char *category, int turn) {
    int ref = rmu_judge_needs_ref(category);
    if (turn == 1) return ref ? "single-math-v1" : "single-v1";
    return ref ? "single-math-v1-multi-turn" : "single-v1-multi-turn";
}

/* ---- str.format ---- */

char *rmu_judge_format(const char *t, const char *what, const char *const *names, const char *const *values, int n,
                       rmu_err *e) {
    rmu_sb b = {0};
    for (const char *p = t; *p;) {
        if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            rmu_sb_putc(&b, p[0]);
            p += 2;
        } else if (*p == '}') {
            rmu_sb_free(&b);
            rmu_errf(e, "%s: single '}' in the template (Python's str.format rejects it)", what);
            return NULL;
        } else if (*p == '{') {
            const char *end = strchr(p, '}');
            size_t len = end ? (size_t)(end - p - 1) : 0;
            int k = -1;
            for (int i = 0; end && i < n && k < 0; i++)
                if (strlen(names[i]) == len && !memcmp(names[i], p + 1, len)) k = i;
            if (k < 0) {
                rmu_sb_free(&b);
                rmu_errf(e, "%s: template field {%.*s} is not one of the fields this prompt gets", what,
                         end ? (int)len : 20, p + 1);
                return NULL;
            }
            rmu_sb_puts(&b, values[k]);
            p = end + 1;
        } else {
            const char *q = p;
            while (*q && *q != '{' && *q != '}') q++;
            rmu_sb_add(&b, p, (size_t)(q - p));
            p = q;
        }
    }
    char *s = rmu_sb_take(&b);
    if (!s) rmu_errf(e, "%s: out of memory", what);
    return s;
}

/* choices[0].turns[i] of a FastChat answer record, or NULL. */
static const char *answer_turn(const json_t *rec, int i) {
    json_t *c0 = json_array_get(json_object_get(rec, "choices"), 0);
    json_t *t = json_array_get(json_object_get(c0, "turns"), (size_t)i);
    return json_is_string(t) ? json_string_value(t) : NULL;
}

char *rmu_judge_user_prompt(const rmu_judge_prompt *p, const rmu_mtb_question *q, const json_t *answer,
                            const json_t *ref, int turn, rmu_err *e) {
    char what[160];
    char *qs = json_dumps(q->qid, JSON_ENCODE_ANY);
    snprintf(what, sizeof what, "question %s, prompt %s", qs ? qs : "?", p->name);
    free(qs);
    int nt = turn == 1 ? 1 : 2;
    if (q->nturns < nt) return rmu_errf(e, "%s: the question has %d turn(s)", what, q->nturns), NULL;
    const char *a[2] = {answer_turn(answer, 0), answer_turn(answer, 1)};
    const char *r[2] = {ref ? answer_turn(ref, 0) : NULL, ref ? answer_turn(ref, 1) : NULL};
    for (int i = 0; i < nt; i++) {
        if (!a[i]) return rmu_errf(e, "%s: the answer has no turn %d", what, i + 1), NULL;
        if (ref && !r[i]) return rmu_errf(e, "%s: the reference answer has no turn %d", what, i + 1), NULL;
    }
    const char *names[6], *vals[6];
    int n = 0;
    if (ref) names[n] = "ref_answer_1", vals[n++] = r[0];
    if (ref && turn == 2) names[n] = "ref_answer_2", vals[n++] = r[1];
    if (turn == 1) {
        names[n] = "question", vals[n++] = q->turns[0];
        names[n] = "answer", vals[n++] = a[0];
    } else {
        names[n] = "question_1", vals[n++] = q->turns[0];
        names[n] = "question_2", vals[n++] = q->turns[1];
        names[n] = "answer_1", vals[n++] = a[0];
        names[n] = "answer_2", vals[n++] = a[1];
    }
    return rmu_judge_format(p->prompt_template, what, names, vals, n, e);
}

/* ---- rating ---- */

/* One of FastChat's patterns at s: "[" x depth, \d+\.?\d*, "]" x depth. Returns the
 * length of the number (0 when no match). */
static size_t match_at(const char *s, int depth) {
    for (int i = 0; i < depth; i++)
        if (s[i] != '[') return 0;
    const char *p = s + depth, *num = p;
    while (isdigit((unsigned char)*p)) p++;
    if (p == num) return 0;
    if (*p == '.') p++;
    while (isdigit((unsigned char)*p)) p++;
    size_t len = (size_t)(p - num);
    for (int i = 0; i < depth; i++)
        if (p[i] != ']') return 0;
    return len;
}

double rmu_judge_parse_score(const char *j, int *is_int) {
    *is_int = 1;
    for (int depth = 2; depth >= 1; depth--) /* one_score_pattern, then its backup */
        for (const char *s = j; *s; s++) {
            size_t len = match_at(s, depth);
            if (!len) continue;
            char num[64];
            if (len >= sizeof num) return -1;
            memcpy(num, s + depth, len);
            num[len] = 0;
            if (strchr(num, '.')) {
                *is_int = 0;
                return strtod(num, NULL);
            }
            /* ast.literal_eval("07") raises (FastChat's run would die); we call it no rating */
            if (num[0] == '0' && strspn(num, "0") != len) return -1;
            return strtod(num, NULL);
        }
    return -1;
}

void rmu_judge_float_repr(double v, char out[32]) { rmu_json_float_repr(v, out); }

char *rmu_judge_record_line(const json_t *qid, const char *model, const char *judge_model, const char *prompt_name,
                            const char *user_prompt, const char *judgment, double score, int score_is_int, int turn,
                            double tstamp) {
    json_t *o = json_object();
    json_object_set_new(o, "question_id", json_deep_copy(qid));
    json_object_set_new(o, "model", json_string(model));
    json_object_set_new(o, "judge", json_pack("[s,s]", judge_model, prompt_name));
    json_object_set_new(o, "user_prompt", json_string(user_prompt));
    json_object_set_new(o, "judgment", json_string(judgment));
    json_object_set_new(o, "score", score_is_int ? json_integer((json_int_t)score) : json_real(score));
    json_object_set_new(o, "turn", json_integer(turn));
    json_object_set_new(o, "tstamp", json_real(tstamp));
    char *s = json_object_size(o) == 8 ? rmu_json_dumps_py(o) : NULL; /* 8: no field failed (bad UTF-8) */
    json_decref(o);
    if (!s) return NULL;
    size_t n = strlen(s);
    char *line = realloc(s, n + 2);
    if (!line) {
        free(s);
        return NULL;
    }
    line[n] = '\n', line[n + 1] = 0;
    return line;
}

/* ---- show ---- */

void rmu_judge_stats_free(rmu_judge_stats *st) {
    for (int i = 0; i < st->nmodels; i++) free(st->m[i].model);
    free(st->m);
    for (int c = 0; c < st->ncats; c++) free(st->cats[c]);
    memset(st, 0, sizeof *st);
}

typedef struct {
    rmu_judge_stats *st;
    const rmu_mtb_questions *qs;
    const char *path, *only;
} stat_rows;

/* Index of the question's category in st->cats, or -1 (no question file, unknown id). */
static int category_of(stat_rows *r, const json_t *qid) {
    if (!r->qs) return -1;
    for (int i = 0; i < r->qs->n; i++)
        if (json_equal(r->qs->q[i].qid, (json_t *)qid))
            for (int c = 0; c < r->st->ncats; c++)
                if (!strcmp(r->st->cats[c], r->qs->q[i].category)) return c;
    return -1;
}

static int stat_row(void *ud, json_t *o, long line, rmu_err *e) {
    stat_rows *r = ud;
    json_t *model = json_object_get(o, "model"), *score = json_object_get(o, "score"), *turn = json_object_get(o, "turn");
    if (!json_is_string(model) || !json_is_number(score) || !json_is_integer(turn))
        return rmu_errf(e, "%s:%ld: not a judgment (needs \"model\", \"score\", \"turn\")", r->path, line);
    int t = (int)json_integer_value(turn);
    if (t != 1 && t != 2) return rmu_errf(e, "%s:%ld: turn must be 1 or 2", r->path, line);
    if (r->only && strcmp(r->only, json_string_value(model))) return 0;
    double s = json_number_value(score);
    rmu_judge_stats *st = r->st;
    if (s == -1) {
        st->dropped++;
        return 0;
    }
    int m = 0;
    while (m < st->nmodels && strcmp(st->m[m].model, json_string_value(model))) m++;
    if (m == st->nmodels) {
        rmu_judge_model_stats *nm = realloc(st->m, sizeof *nm * (size_t)(st->nmodels + 1));
        if (!nm) return rmu_errf(e, "out of memory");
        st->m = nm;
        memset(&nm[m], 0, sizeof nm[m]);
        if (!(nm[m].model = strdup(json_string_value(model)))) return rmu_errf(e, "out of memory");
        st->nmodels++;
    }
    rmu_judge_model_stats *ms = &st->m[m];
    ms->sum[0] += s, ms->n[0]++;
    ms->sum[t] += s, ms->n[t]++;
    int c = category_of(r, json_object_get(o, "question_id"));
    if (c >= 0) ms->cat_sum[c] += s, ms->cat_n[c]++;
    return 0;
}

int rmu_judge_stats_load(rmu_judge_stats *st, const char *path, const rmu_mtb_questions *qs, const char *only_model,
                         rmu_err *e) {
    memset(st, 0, sizeof *st);
    stat_rows r = {st, qs, path, only_model};
    for (int i = 0; qs && i < qs->n; i++) { /* categories in question-file order */
        int c = 0;
        while (c < st->ncats && strcmp(st->cats[c], qs->q[i].category)) c++;
        if (c < st->ncats) continue;
        if (st->ncats == RMU_JUDGE_MAX_CATS || !(st->cats[st->ncats] = strdup(qs->q[i].category))) {
            rmu_judge_stats_free(st);
            return rmu_errf(e, "%s: more than %d categories (or out of memory)", path, RMU_JUDGE_MAX_CATS);
        }
        st->ncats++;
    }
    if (rmu_jsonl_read(path, RMU_JSONL_TORN_TAIL_OK, stat_row, &r, NULL, e)) {
        rmu_judge_stats_free(st);
        return -1;
    }
    return 0;
}
