/* mcq.c - multiple-choice data files and lm-eval v0.4.2 prompt strings. */
#include "eval/mcq.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/json.h"
#include "core/strbuf.h"
#include "core/util.h"

/* ---- small string helpers ---- */


static char *xstrndup(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

/* ---- Python whitespace (str.isspace) on UTF-8 ---- */

static int py_space_cp(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
           c == 0x3000;
}

/* Decode the code point at s[i] (n bytes total); *len gets its byte length. Invalid
 * sequences count as one byte that is not whitespace. */
static uint32_t utf8_at(const unsigned char *s, size_t n, size_t i, size_t *len) {
    unsigned c = s[i];
    *len = 1;
    if (c < 0x80) return c;
    int k = (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : -1;
    if (k < 0 || i + (size_t)k >= n) return 0xfffd;
    uint32_t cp = c & (0x3fu >> k);
    for (int j = 1; j <= k; j++) {
        if ((s[i + j] & 0xc0) != 0x80) return 0xfffd;
        cp = (cp << 6) | (s[i + j] & 0x3f);
    }
    *len = (size_t)k + 1;
    return cp;
}

size_t rmu_py_lstrip_off(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, len;
    while (i < n) {
        uint32_t cp = utf8_at(u, n, i, &len);
        if (!py_space_cp(cp)) break;
        i += len;
    }
    return i;
}

size_t rmu_py_rstrip_len(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    while (n > 0) {
        size_t start = n - 1; /* back up to the lead byte of the last character */
        while (start > 0 && (u[start] & 0xc0) == 0x80 && n - start < 4) start--;
        size_t len;
        uint32_t cp = utf8_at(u, n, start, &len);
        if (start + len != n) { /* malformed tail: a single stray byte */
            start = n - 1;
            cp = 0xfffd;
        }
        if (!py_space_cp(cp)) break;
        n = start;
    }
    return n;
}

size_t rmu_utf8_len(const char *s) {
    size_t k = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) k += (*p & 0xc0) != 0x80;
    return k;
}

/* ---- sets ---- */

static void item_free(rmu_mcq_item *it) {
    free(it->question);
    for (int j = 0; j < it->nchoices; j++) free(it->choices[j]);
    free(it->choices);
    free(it->subject);
    memset(it, 0, sizeof *it);
}

void rmu_mcq_set_free(rmu_mcq_set *s) {
    for (int i = 0; i < s->n; i++) item_free(&s->items[i]);
    free(s->items);
    s->items = NULL;
    s->n = s->cap = 0;
}

/* Takes ownership of it's strings (on failure they are freed). */
static int set_push(rmu_mcq_set *s, rmu_mcq_item *it, rmu_err *e) {
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 64;
        rmu_mcq_item *ni = realloc(s->items, (size_t)cap * sizeof *ni);
        if (!ni) {
            item_free(it);
            return rmu_errf(e, "%s: out of memory", s->path);
        }
        s->items = ni;
        s->cap = cap;
    }
    s->items[s->n++] = *it;
    return 0;
}

int rmu_mcq_set_add(rmu_mcq_set *s, const rmu_mcq_item *src, rmu_err *e) {
    rmu_mcq_item it = {0};
    it.answer = src->answer;
    it.line = src->line;
    it.question = strdup(src->question);
    it.subject = src->subject ? strdup(src->subject) : NULL;
    it.choices = calloc((size_t)src->nchoices, sizeof(char *));
    int bad = !it.question || (src->subject && !it.subject) || !it.choices;
    if (it.choices)
        for (int j = 0; j < src->nchoices; j++) {
            it.choices[j] = strdup(src->choices[j]);
            it.nchoices = j + 1;
            if (!it.choices[j]) bad = 1;
        }
    if (bad) {
        item_free(&it);
        return rmu_errf(e, "%s: out of memory", s->path);
    }
    return set_push(s, &it, e);
}

/* ---- CSV (RFC 4180, Python csv.reader semantics) ---- */

int rmu_csv_parse(const char *text, size_t len, const char *path, rmu_csv_row_fn row, void *ud, rmu_err *e) {
    size_t i = 0;
    int line = 1;
    if (len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3)) i = 3; /* UTF-8 byte order mark */
    enum { MAXF = 64 };
    char *fields[MAXF];
    int nf = 0, rc = 0;
    rmu_sb f = {0};
    while (i < len) {
        int rec_line = line;
        nf = 0;
        int record_empty = 1; /* a line with nothing on it is skipped, not a 1-field row */
        for (;;) {               /* one field per iteration */
            rmu_sb_truncate(&f, 0);
            int quoted = 0;
            if (i < len && text[i] == '"') {
                quoted = 1;
                record_empty = 0;
                int open_line = line;
                i++;
                for (;;) {
                    if (i >= len) {
                        rc = rmu_errf(e, "%s:%d: unterminated quoted field (opened on line %d)", path, rec_line,
                                      open_line);
                        goto out;
                    }
                    char c = text[i];
                    if (c == '"') {
                        if (i + 1 < len && text[i + 1] == '"') { /* "" is one quote */
                            rmu_sb_add(&f, "\"", 1);
                            i += 2;
                            continue;
                        }
                        i++;
                        break;
                    }
                    if (c == '\n') line++;
                    rmu_sb_add(&f, &text[i], 1);
                    i++;
                }
            }
            /* unquoted text, or text after a closing quote (kept, as Python's non-strict reader) */
            while (i < len && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
                rmu_sb_add(&f, &text[i], 1);
                record_empty = 0;
                i++;
            }
            (void)quoted;
            if (nf == MAXF) {
                rc = rmu_errf(e, "%s:%d: more than %d fields", path, rec_line, MAXF);
                goto out;
            }
            if (f.oom || !(fields[nf] = xstrndup(f.p ? f.p : "", f.n))) {
                rc = rmu_errf(e, "%s: out of memory", path);
                goto out;
            }
            nf++;
            if (i < len && text[i] == ',') {
                record_empty = 0;
                i++;
                continue;
            }
            break;
        }
        /* end of record: \r\n, \n, \r or end of text */
        if (i < len && text[i] == '\r') i++;
        if (i < len && text[i] == '\n') i++;
        line++;
        if (!(record_empty && nf == 1)) {
            if (row(ud, fields, nf, rec_line, e)) {
                rc = -1;
                goto out;
            }
        }
        for (int k = 0; k < nf; k++) free(fields[k]);
        nf = 0;
    }
out:
    for (int k = 0; k < nf; k++) free(fields[k]);
    free(f.p);
    return rc;
}

typedef struct csv_ctx {
    rmu_mcq_set *s;
    const char *path;
} csv_ctx;

static int mmlu_csv_row(void *ud, char **fields, int nf, int line, rmu_err *e) {
    csv_ctx *c = ud;
    if (nf != 6)
        return rmu_errf(e, "%s:%d: expected 6 fields (question,A,B,C,D,answer), got %d", c->path, line, nf);
    const char *a = fields[5];
    size_t off = rmu_py_lstrip_off(a, strlen(a));
    size_t end = rmu_py_rstrip_len(a, strlen(a));
    if (end != off + 1 || a[off] < 'A' || a[off] > 'D')
        return rmu_errf(e, "%s:%d: answer '%s' is not one of A, B, C, D", c->path, line, a);
    rmu_mcq_item it = {0};
    it.answer = a[off] - 'A';
    it.line = line;
    it.question = strdup(fields[0]);
    it.choices = calloc(4, sizeof(char *));
    int bad = !it.question || !it.choices;
    if (it.choices)
        for (int j = 0; j < 4; j++) {
            it.choices[j] = strdup(fields[1 + j]);
            it.nchoices = j + 1;
            if (!it.choices[j]) bad = 1;
        }
    if (bad) {
        item_free(&it);
        return rmu_errf(e, "%s: out of memory", c->path);
    }
    return set_push(c->s, &it, e);
}

int rmu_mcq_parse_csv(rmu_mcq_set *s, const char *text, size_t len, const char *path, rmu_err *e) {
    if (!s->path[0]) snprintf(s->path, sizeof s->path, "%s", path);
    csv_ctx c = {s, path};
    return rmu_csv_parse(text, len, path, mmlu_csv_row, &c, e);
}

/* ---- JSON / JSONL (HF schema) ---- */

/* where: "FILE:LINE" for JSONL, "FILE: item N" for an array. */
static int json_item(rmu_mcq_set *s, json_t *o, const char *where, int line, int min_c, int max_c, rmu_err *e) {
    if (!json_is_object(o)) return rmu_errf(e, "%s: expected a JSON object", where);
    json_t *q = json_object_get(o, "question"), *ch = json_object_get(o, "choices"),
           *ans = json_object_get(o, "answer"), *sub = json_object_get(o, "subject");
    if (!json_is_string(q)) return rmu_errf(e, "%s: \"question\" must be a string", where);
    if (!json_is_array(ch)) return rmu_errf(e, "%s: \"choices\" must be an array", where);
    int nc = (int)json_array_size(ch);
    if (nc < min_c || nc > max_c) {
        if (min_c == max_c) return rmu_errf(e, "%s: expected %d choices, got %d", where, min_c, nc);
        return rmu_errf(e, "%s: expected %d to %d choices, got %d", where, min_c, max_c, nc);
    }
    if (sub && !json_is_null(sub) && !json_is_string(sub))
        return rmu_errf(e, "%s: \"subject\" must be a string", where);
    long long a;
    if (json_is_integer(ans)) {
        a = json_integer_value(ans);
    } else if (json_is_real(ans) && fabs(json_real_value(ans)) < 1e9 &&
               json_real_value(ans) == floor(json_real_value(ans))) {
        a = (long long)json_real_value(ans);
    } else if (json_is_string(ans)) {
        const char *t = json_string_value(ans);
        if (strlen(t) == 1 && t[0] >= 'A' && t[0] <= 'Z') {
            a = t[0] - 'A';
        } else {
            char *end;
            errno = 0;
            a = strtoll(t, &end, 10);
            if (!*t || *end || errno)
                return rmu_errf(e, "%s: answer '%s' is neither a choice index nor a letter", where, t);
        }
    } else {
        return rmu_errf(e, "%s: \"answer\" must be an integer index or a letter", where);
    }
    if (a < 0 || a >= nc) return rmu_errf(e, "%s: answer %lld is out of range for %d choices", where, a, nc);
    rmu_mcq_item it = {0};
    it.answer = (int)a;
    it.line = line;
    it.question = strdup(json_string_value(q));
    it.subject = json_is_string(sub) ? strdup(json_string_value(sub)) : NULL;
    it.choices = calloc((size_t)nc, sizeof(char *));
    int bad = !it.question || (json_is_string(sub) && !it.subject) || !it.choices;
    for (int j = 0; it.choices && j < nc; j++) {
        json_t *c = json_array_get(ch, (size_t)j);
        char num[32];
        const char *txt;
        if (json_is_string(c)) {
            txt = json_string_value(c);
        } else if (json_is_integer(c)) { /* Jinja renders str(int) */
            snprintf(num, sizeof num, "%lld", (long long)json_integer_value(c));
            txt = num;
        } else {
            item_free(&it);
            return rmu_errf(e, "%s: choice %d must be a string", where, j);
        }
        it.choices[j] = strdup(txt);
        it.nchoices = j + 1;
        if (!it.choices[j]) bad = 1;
    }
    if (bad) {
        item_free(&it);
        return rmu_errf(e, "%s: out of memory", where);
    }
    return set_push(s, &it, e);
}

typedef struct {
    rmu_mcq_set *s;
    int min_c, max_c;
    const char *path;
} mcq_rows;

static int jsonl_row(void *ud, json_t *o, long line, rmu_err *e) {
    mcq_rows *r = ud;
    char where[4200];
    snprintf(where, sizeof where, "%s:%ld", r->path, line);
    return json_item(r->s, o, where, (int)line, r->min_c, r->max_c, e);
}

int rmu_mcq_parse_json(rmu_mcq_set *s, const char *text, size_t len, const char *path, int min_c, int max_c,
                       rmu_err *e) {
    if (!s->path[0]) snprintf(s->path, sizeof s->path, "%s", path);
    if (rmu_json_is_array_text(text, len)) { /* one JSON array */
        size_t i = len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3) ? 3 : 0;
        char where[4200];
        json_error_t je;
        json_t *root = json_loadb(text + i, len - i, 0, &je);
        if (!root) return rmu_errf(e, "%s:%d: invalid JSON: %s", path, je.line, je.text);
        size_t n = json_array_size(root);
        for (size_t k = 0; k < n; k++) {
            snprintf(where, sizeof where, "%s: item %zu", path, k);
            if (json_item(s, json_array_get(root, k), where, (int)k + 1, min_c, max_c, e)) {
                json_decref(root);
                return -1;
            }
        }
        json_decref(root);
        return 0;
    }
    mcq_rows rows = {s, min_c, max_c, path};
    return rmu_jsonl_parse(path, text, len, 0, jsonl_row, &rows, e);
}

int rmu_mcq_load(rmu_mcq_set *s, const char *path, int min_c, int max_c, rmu_err *e) {
    size_t len;
    char *text = rmu_file_read_max(path, RMU_MCQ_MAX_FILE, &len, e);
    if (!text) return -1;
    snprintf(s->path, sizeof s->path, "%s", path);
    int r;
    if (rmu_ends_with(path, ".csv")) {
        if (min_c > 4 || max_c < 4) {
            free(text);
            return rmu_errf(e, "%s: CSV files hold 4 choices per row; this task needs %d to %d", path, min_c, max_c);
        }
        r = rmu_mcq_parse_csv(s, text, len, path, e);
    } else {
        r = rmu_mcq_parse_json(s, text, len, path, min_c, max_c, e);
    }
    free(text);
    return r;
}

/* ---- prompts ---- */

char *rmu_mcq_description(const char *topic, int newlines) {
    rmu_sb b = {0};
    if (topic && *topic) {
        rmu_sb_puts(&b, "The following are multiple choice questions (with answers) about ");
        rmu_sb_puts(&b, topic);
        rmu_sb_puts(&b, ".");
        for (int k = 0; k < newlines; k++) rmu_sb_puts(&b, "\n");
    }
    return rmu_sb_take(&b);
}

static void put_stripped(rmu_sb *b, const char *s) {
    size_t n = strlen(s);
    size_t off = rmu_py_lstrip_off(s, n);
    size_t end = rmu_py_rstrip_len(s, n);
    if (end > off) rmu_sb_add(b, s + off, end - off);
}

char *rmu_mcq_doc_text(const rmu_mcq_item *it, rmu_mcq_format fmt) {
    rmu_sb b = {0};
    if (fmt == RMU_MCQ_CLOZE) {
        rmu_sb_puts(&b, "Question: ");
        put_stripped(&b, it->question);
        rmu_sb_puts(&b, "\nAnswer:");
        return rmu_sb_take(&b);
    }
    put_stripped(&b, it->question);
    for (int j = 0; j < it->nchoices; j++) {
        char lab[5] = {'\n', (char)('A' + j), '.', ' ', 0};
        rmu_sb_puts(&b, lab);
        rmu_sb_puts(&b, it->choices[j]);
    }
    rmu_sb_puts(&b, "\nAnswer:");
    return rmu_sb_take(&b);
}

const char *rmu_mcq_choice_target(const rmu_mcq_item *it, int choice, rmu_mcq_format fmt, char letter[2]) {
    if (fmt == RMU_MCQ_CLOZE) return it->choices[choice];
    letter[0] = (char)('A' + choice);
    letter[1] = 0;
    return letter;
}

char *rmu_mcq_continuation(const rmu_mcq_item *it, int choice, rmu_mcq_format fmt) {
    char l[2];
    rmu_sb b = {0};
    rmu_sb_puts(&b, " ");
    rmu_sb_puts(&b, rmu_mcq_choice_target(it, choice, fmt, l));
    return rmu_sb_take(&b);
}

char *rmu_mcq_context(const char *description, const rmu_mcq_item *shots, int nshots, const rmu_mcq_item *doc,
                      rmu_mcq_format fmt) {
    rmu_sb b = {0};
    if (description) rmu_sb_puts(&b, description);
    for (int k = 0; k < nshots; k++) {
        char *t = rmu_mcq_doc_text(&shots[k], fmt);
        if (!t) {
            free(b.p);
            return NULL;
        }
        char l[2];
        rmu_sb_puts(&b, t);
        rmu_sb_puts(&b, " "); /* target_delimiter */
        rmu_sb_puts(&b, rmu_mcq_choice_target(&shots[k], shots[k].answer, fmt, l));
        rmu_sb_puts(&b, "\n\n"); /* fewshot_delimiter, also after the last example */
        free(t);
    }
    char *t = rmu_mcq_doc_text(doc, fmt);
    if (!t) {
        free(b.p);
        return NULL;
    }
    rmu_sb_puts(&b, t);
    free(t);
    return rmu_sb_take(&b);
}

/* ---- MMLU registry: lm-eval v0.4.2 _generate_configs.py SUBJECTS ---- */

static const struct {
    const char *subject, *category;
} MMLU[] = {
    {"abstract_algebra", "stem"},
    {"anatomy", "stem"},
    {"astronomy", "stem"},
    {"business_ethics", "other"},
    {"clinical_knowledge", "other"},
    {"college_biology", "stem"},
    {"college_chemistry", "stem"},
    {"college_computer_science", "stem"},
    {"college_mathematics", "stem"},
    {"college_medicine", "other"},
    {"college_physics", "stem"},
    {"computer_security", "stem"},
    {"conceptual_physics", "stem"},
    {"econometrics", "social_sciences"},
    {"electrical_engineering", "stem"},
    {"elementary_mathematics", "stem"},
    {"formal_logic", "humanities"},
    {"global_facts", "other"},
    {"high_school_biology", "stem"},
    {"high_school_chemistry", "stem"},
    {"high_school_computer_science", "stem"},
    {"high_school_european_history", "humanities"},
    {"high_school_geography", "social_sciences"},
    {"high_school_government_and_politics", "social_sciences"},
    {"high_school_macroeconomics", "social_sciences"},
    {"high_school_mathematics", "stem"},
    {"high_school_microeconomics", "social_sciences"},
    {"high_school_physics", "stem"},
    {"high_school_psychology", "social_sciences"},
    {"high_school_statistics", "stem"},
    {"high_school_us_history", "humanities"},
    {"high_school_world_history", "humanities"},
    {"human_aging", "other"},
    {"human_sexuality", "social_sciences"},
    {"international_law", "humanities"},
    {"jurisprudence", "humanities"},
    {"logical_fallacies", "humanities"},
    {"machine_learning", "stem"},
    {"management", "other"},
    {"marketing", "other"},
    {"medical_genetics", "other"},
    {"miscellaneous", "other"},
    {"moral_disputes", "humanities"},
    {"moral_scenarios", "humanities"},
    {"nutrition", "other"},
    {"philosophy", "humanities"},
    {"prehistory", "humanities"},
    {"professional_accounting", "other"},
    {"professional_law", "humanities"},
    {"professional_medicine", "other"},
    {"professional_psychology", "social_sciences"},
    {"public_relations", "social_sciences"},
    {"security_studies", "social_sciences"},
    {"sociology", "social_sciences"},
    {"us_foreign_policy", "social_sciences"},
    {"virology", "other"},
    {"world_religions", "humanities"},
};

const char *const RMU_MCQ_MMLU_CATEGORIES[4] = {"stem", "other", "social_sciences", "humanities"};

int rmu_mcq_mmlu_count(void) { return (int)(sizeof MMLU / sizeof MMLU[0]); }
const char *rmu_mcq_mmlu_subject(int i) { return MMLU[i].subject; }
const char *rmu_mcq_mmlu_category(int i) { return MMLU[i].category; }

int rmu_mcq_mmlu_find(const char *subject) {
    for (int i = 0; i < rmu_mcq_mmlu_count(); i++)
        if (!strcmp(MMLU[i].subject, subject)) return i;
    return -1;
}
