/* mtbench.c - MT-Bench questions, FastChat answer records and the answer file. Pure (no
 * model): unit-tested on its own. */
#include "eval/mtbench.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/json.h"
#include "core/rng.h"
#include "eval/mcq.h"

/* ---- questions ---- */

void rmu_mtb_questions_free(rmu_mtb_questions *qs) {
    for (int i = 0; i < qs->n; i++) {
        json_decref(qs->q[i].qid);
        rmu_mtb_turns_free(qs->q[i].turns, qs->q[i].nturns);
    }
    free(qs->q);
    qs->q = NULL;
    qs->n = 0;
}

void rmu_mtb_turns_free(char **turns, int n) {
    if (!turns) return;
    for (int j = 0; j < n; j++) free(turns[j]);
    free(turns);
}

static int parse_question(rmu_mtb_question *q, json_t *o, const char *path, int line, rmu_err *e) {
    memset(q, 0, sizeof *q);
    if (!json_is_object(o)) return rmu_errf(e, "%s:%d: expected a JSON object", path, line);
    json_t *id = json_object_get(o, "question_id"), *cat = json_object_get(o, "category"),
           *turns = json_object_get(o, "turns");
    if (!json_is_integer(id) && !json_is_string(id))
        return rmu_errf(e, "%s:%d: \"question_id\" must be an integer or a string", path, line);
    if (cat && !json_is_null(cat) && !json_is_string(cat))
        return rmu_errf(e, "%s:%d: \"category\" must be a string", path, line);
    if (!json_is_array(turns) || json_array_size(turns) == 0)
        return rmu_errf(e, "%s:%d: \"turns\" must be a non-empty array of strings", path, line);
    int n = (int)json_array_size(turns);
    q->turns = calloc((size_t)n, sizeof(char *));
    if (!q->turns) return rmu_errf(e, "out of memory");
    for (int j = 0; j < n; j++) {
        json_t *t = json_array_get(turns, (size_t)j);
        if (!json_is_string(t)) {
            rmu_mtb_turns_free(q->turns, q->nturns);
            q->turns = NULL;
            q->nturns = 0;
            return rmu_errf(e, "%s:%d: turn %d is not a string", path, line, j + 1);
        }
        q->turns[j] = strdup(json_string_value(t));
        q->nturns = j + 1;
        if (!q->turns[j]) {
            rmu_mtb_turns_free(q->turns, q->nturns);
            q->turns = NULL;
            return rmu_errf(e, "out of memory");
        }
    }
    snprintf(q->category, sizeof q->category, "%s", json_is_string(cat) ? json_string_value(cat) : "");
    q->qid = json_incref(id);
    return 0;
}

typedef struct {
    rmu_mtb_questions *qs;
    int cap;
    const char *path;
} question_rows;

static int question_row(void *ud, json_t *o, long line, rmu_err *e) {
    question_rows *r = ud;
    rmu_mtb_questions *qs = r->qs;
    if (qs->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 64;
        rmu_mtb_question *nq = realloc(qs->q, (size_t)cap * sizeof *nq);
        if (!nq) return rmu_errf(e, "out of memory");
        qs->q = nq;
        r->cap = cap;
    }
    if (parse_question(&qs->q[qs->n], o, r->path, (int)line, e)) return -1;
    qs->n++;
    for (int k = 0; k < qs->n - 1; k++)
        if (json_equal(qs->q[k].qid, qs->q[qs->n - 1].qid)) {
            char *s = json_dumps(qs->q[qs->n - 1].qid, JSON_ENCODE_ANY);
            rmu_errf(e, "%s:%ld: question_id %s appears twice", r->path, line, s ? s : "?");
            free(s);
            return -1;
        }
    return 0;
}

int rmu_mtb_parse_questions(rmu_mtb_questions *qs, const char *text, size_t len, const char *path, rmu_err *e) {
    memset(qs, 0, sizeof *qs);
    question_rows r = {qs, 0, path};
    if (rmu_jsonl_parse(path, text, len, 0, question_row, &r, e)) {
        rmu_mtb_questions_free(qs);
        return -1;
    }
    if (qs->n == 0) return rmu_errf(e, "%s: no questions", path);
    return 0;
}

int rmu_mtb_load_questions(rmu_mtb_questions *qs, const char *path, rmu_err *e) {
    size_t len;
    char *text = rmu_file_read_all(path, &len, e);
    if (!text) return -1;
    int r = rmu_mtb_parse_questions(qs, text, len, path, e);
    free(text);
    return r;
}

/* ---- small pure helpers ---- */

double rmu_mtb_temperature(const char *c) {
    static const struct {
        const char *cat;
        double temp;
    } T[] = {{"writing", 0.7}, {"roleplay", 0.7},   {"extraction", 0.0}, {"math", 0.0},          {"coding", 0.0},
             {"reasoning", 0.0}, {"stem", 0.1}, {"humanities", 0.1}, {"arena-hard-200", 0.0}};
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++)
        if (c && !strcmp(c, T[i].cat)) return T[i].temp;
    return 0.7;
}

uint64_t rmu_mtb_seed(uint64_t base, const json_t *qid) {
    char *s = json_dumps(qid, JSON_ENCODE_ANY);
    uint64_t z = base ^ (s ? rmu_fnv1a(RMU_FNV_INIT, s, strlen(s)) : 0);
    free(s);
    return rmu_mix64(z + RMU_GOLDEN64);
}

int rmu_mtb_qid_cmp(const json_t *a, const json_t *b) {
    int ia = json_is_integer(a), ib = json_is_integer(b);
    if (ia && ib) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b);
        return x < y ? -1 : x > y;
    }
    if (ia != ib) return ia ? -1 : 1;
    const char *x = json_is_string(a) ? json_string_value(a) : "", *y = json_is_string(b) ? json_string_value(b) : "";
    return strcmp(x, y);
}

void rmu_mtb_answer_id(const char *model_id, const json_t *qid, char *const *turns, int n, char out[23]) {
    static const char ALPHA[] = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"; /* shortuuid's 57 */
    char *q = json_dumps(qid, JSON_ENCODE_ANY);
    size_t len = strlen(model_id) + (q ? strlen(q) : 0) + 2;
    for (int j = 0; j < n; j++) len += strlen(turns[j]) + 1;
    char *buf = malloc(len + 1), *w = buf;
    uint8_t h[32] = {0};
    if (buf) {
        w += sprintf(w, "%s", model_id) + 1; /* NUL separators keep the fields apart */
        w += sprintf(w, "%s", q ? q : "") + 1;
        for (int j = 0; j < n; j++) w += sprintf(w, "%s", turns[j]) + 1;
        rmu_sha256(buf, (size_t)(w - buf), h);
    }
    free(buf);
    free(q);
    /* 128 bits in base 57: 22 digits, most significant first */
    uint8_t num[16];
    memcpy(num, h, 16);
    for (int d = 21; d >= 0; d--) {
        unsigned rem = 0;
        for (int i = 0; i < 16; i++) {
            unsigned cur = rem * 256 + num[i];
            num[i] = (uint8_t)(cur / 57);
            rem = cur % 57;
        }
        out[d] = ALPHA[rem];
    }
    out[22] = 0;
}

/* Copy of text with each invalid UTF-8 byte replaced by U+FFFD (JSON needs valid text). */
static char *utf8_valid_dup(const char *text) {
    size_t n = strlen(text);
    char *o = malloc(n * 3 + 1), *w = o;
    if (!o) return NULL;
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        int k = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 && c >= 0xc2 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 && c <= 0xf4 ? 3 : -1;
        int ok = k >= 0 && i + (size_t)k < n + (k == 0);
        for (int j = 1; ok && j <= k; j++) ok = i + (size_t)j < n && (s[i + j] & 0xc0) == 0x80;
        if (ok && k == 2) { /* no overlongs or surrogates */
            unsigned cp = ((c & 0x0f) << 12) | ((s[i + 1] & 0x3f) << 6) | (s[i + 2] & 0x3f);
            ok = cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff);
        }
        if (ok && k == 3) {
            unsigned cp = ((c & 0x07) << 18) | ((s[i + 1] & 0x3f) << 12) | ((s[i + 2] & 0x3f) << 6) | (s[i + 3] & 0x3f);
            ok = cp >= 0x10000 && cp <= 0x10ffff;
        }
        if (!ok) {
            memcpy(w, "\xef\xbf\xbd", 3);
            w += 3;
            i++;
            continue;
        }
        memcpy(w, s + i, (size_t)k + 1);
        w += k + 1;
        i += (size_t)k + 1;
    }
    *w = 0;
    return o;
}

char *rmu_mtb_clean(const char *text, const char *const *remove, int nremove) {
    char *s = utf8_valid_dup(text);
    if (!s) return NULL;
    for (int k = 0; k < nremove; k++) {
        size_t rl = remove[k] ? strlen(remove[k]) : 0;
        if (!rl) continue;
        char *r = s, *w = s;
        while (*r) {
            if (!strncmp(r, remove[k], rl)) {
                r += rl;
                continue;
            }
            *w++ = *r++;
        }
        *w = 0;
    }
    size_t n = strlen(s), off = rmu_py_lstrip_off(s, n), end = rmu_py_rstrip_len(s, n);
    if (end < off) end = off;
    memmove(s, s + off, end - off);
    s[end - off] = 0;
    return s;
}

/* ---- answer file ---- */

int rmu_mtb_answers_find(const json_t *arr, const json_t *qid) {
    for (size_t i = 0; i < json_array_size(arr); i++)
        if (!rmu_mtb_qid_cmp(json_object_get(json_array_get(arr, i), "question_id"), qid)) return (int)i;
    return -1;
}

int rmu_mtb_answers_put(json_t *arr, json_t *rec, rmu_err *e) {
    json_t *qid = json_object_get(rec, "question_id");
    int at = rmu_mtb_answers_find(arr, qid);
    if (at >= 0) {
        if (json_array_set_new(arr, (size_t)at, rec)) return rmu_errf(e, "out of memory");
        return 0;
    }
    size_t pos = 0, n = json_array_size(arr);
    while (pos < n && rmu_mtb_qid_cmp(json_object_get(json_array_get(arr, pos), "question_id"), qid) < 0) pos++;
    if (json_array_insert_new(arr, pos, rec)) return rmu_errf(e, "out of memory");
    return 0;
}

typedef struct {
    json_t *arr;
    const char *path;
} answer_rows;

static int answer_row(void *ud, json_t *o, long line, rmu_err *e) {
    answer_rows *r = ud;
    json_t *id = json_is_object(o) ? json_object_get(o, "question_id") : NULL;
    if (!json_is_integer(id) && !json_is_string(id))
        return rmu_errf(e, "%s:%ld: not an answer record (no question_id)", r->path, line);
    return rmu_mtb_answers_put(r->arr, json_incref(o), e); /* a later line replaces an earlier one */
}

int rmu_mtb_answers_load(const char *path, json_t **arr, rmu_err *e) {
    *arr = json_array();
    if (!*arr) return rmu_errf(e, "out of memory");
    if (!rmu_file_exists(path)) return 0;
    size_t len;
    char *text = rmu_file_read_all(path, &len, e);
    if (!text) {
        json_decref(*arr);
        *arr = NULL;
        return -1;
    }
    answer_rows rows = {*arr, path};
    int rc = rmu_jsonl_parse(path, text, len, 0, answer_row, &rows, e);
    free(text);
    if (rc) {
        json_decref(*arr);
        *arr = NULL;
    }
    return rc;
}

int rmu_mtb_answers_save(const char *path, const json_t *arr, rmu_err *e) {
    rmu_afile a;
    if (rmu_afile_open(&a, path, e)) return -1;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        char *s = rmu_json_dumps_py(json_array_get(arr, i));
        int r = s ? rmu_afile_write(&a, s, strlen(s), e) || rmu_afile_write(&a, "\n", 1, e)
                  : (rmu_afile_abort(&a), rmu_errf(e, "%s: out of memory", path));
        free(s);
        if (r) return -1;
    }
    return rmu_afile_commit(&a, e);
}

json_t *rmu_mtb_record(const json_t *qid, const char *answer_id, const char *model_id, char *const *turns, int n,
                       double tstamp) {
    json_t *tj = json_array();
    for (int j = 0; j < n; j++) json_array_append_new(tj, json_string(turns[j]));
    json_t *choice = json_object();
    json_object_set_new(choice, "index", json_integer(0));
    json_object_set_new(choice, "turns", tj);
    json_t *choices = json_array();
    json_array_append_new(choices, choice);
    json_t *r = json_object();
    json_object_set_new(r, "question_id", json_deep_copy(qid));
    json_object_set_new(r, "answer_id", json_string(answer_id));
    json_object_set_new(r, "model_id", json_string(model_id));
    json_object_set_new(r, "choices", choices);
    json_object_set_new(r, "tstamp", json_real(tstamp));
    return r;
}
