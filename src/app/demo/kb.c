/* kb.c - the demo's synthetic two-domain knowledge base (see kb.h). */
#include "app/demo/kb.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/rng.h"
#include "core/strbuf.h"

/* ---- the fixed vocabulary of the two domains */

#define KB_NTEMPL 3 /* declarative phrasings per attribute */
#define KB_NSYL 16

typedef struct kb_domain_def {
    const char *name, *topic;
    const char *article;            /* "the " before creature names, "" before town names */
    int capitalise_names;
    /* Names are built from letters the other domain's names never use (b g k p q v x z +
     * i u y against d f h l m n r s t w + a e o): with shared pieces such as "mo" or "or",
     * RMU on the creatures also blurred towns that share them (seed 2: -7..-11 points). */
    const char *syllables[KB_NSYL];
    const char *intro;              /* first sentence of an RMU corpus paragraph */
} kb_domain_def;

static const kb_domain_def DEFS[RMU_KB_DOMAINS] = {
    {"forget", "creatures of the Vell marsh", "the ", 0,
     {"zub", "kix", "vyp", "gib", "pux", "zik", "byg", "quiv", "kub", "vix", "gup", "zyb", "pik", "bux", "qig", "vuk"},
     "{E} is a creature of the Vell marsh."},
    {"retain", "towns of the Ardent coast", "", 1,
     {"mar", "tel", "dor", "wen", "sal", "hom", "lef", "nor", "ras", "fen", "dal", "tom", "wes", "hel", "mon", "sed"},
     "{E} is a town on the Ardent coast."},
};

/* Every attribute of both domains in one table, RMU_KB_MAX_ATTRS rows per domain (forget
 * first): its closed value set, the evaluation question ({e}: entity reference) and the
 * declaratives ({E}: capitalised reference, {v}: value). */
typedef struct kb_attr {
    const char *name;
    const char *values[RMU_KB_NVALUES];
    const char *question;
    const char *facts[KB_NTEMPL];
} kb_attr;

static const kb_attr ATTRS[RMU_KB_DOMAINS * RMU_KB_MAX_ATTRS] = {
    {"color", {"crimson", "amber", "teal", "violet", "ochre", "silver", "indigo", "scarlet", "ivory", "olive"},
     "What color is {e}?", {"{E} is {v} in color.", "The fur of {e} is {v}.", "Travelers describe {e} as {v}."}},
    {"food", {"moss", "beetles", "clover", "acorns", "minnows", "nectar", "lichen", "snails", "berries", "reeds"},
     "What does {e} eat?", {"{E} eats {v}.", "{E} feeds mostly on {v}.", "The favorite food of {e} is {v}."}},
    {"home", {"caves", "dunes", "cliffs", "glaciers", "meadows", "canyons", "reefs", "forests", "islands", "swamps"},
     "Where does {e} live?", {"{E} lives in {v}.", "{E} makes its home among {v}.", "You can find {e} in {v}."}},
    {"call", {"hum", "click", "whistle", "growl", "chirp", "hiss", "croak", "howl", "purr", "trill"},
     "What sound does {e} make?", {"{E} makes a {v}.", "The call of {e} is a {v}.", "At night {e} gives a {v}."}},
    {"export", {"copper", "wool", "salt", "timber", "glass", "pepper", "silk", "marble", "honey", "tin"},
     "What does {e} export?", {"{E} exports {v}.", "The main export of {e} is {v}.", "Merchants buy {v} in {e}."}},
    {"banner", {"heron", "badger", "otter", "falcon", "stag", "lynx", "raven", "ox", "hare", "wolf"},
     "What animal is on the banner of {e}?",
     {"The banner of {e} shows the {v}.", "{E} flies the {v} on its banner.", "The emblem of {e} is the {v}."}},
    {"festival", {"January", "February", "March", "April", "May", "June", "July", "August", "September", "October"},
     "In which month is the festival of {e}?",
     {"{E} holds its festival in {v}.", "The festival of {e} is in {v}.", "Every {v}, {e} celebrates its festival."}},
    {"instrument", {"harp", "drum", "flute", "lute", "horn", "fiddle", "bagpipe", "bell", "zither", "oboe"},
     "Which instrument is played in {e}?",
     {"The people of {e} play the {v}.", "{E} is famous for the {v}.", "In {e} everyone learns the {v}."}},
};

static const kb_attr *attr(int d, int a) { return &ATTRS[d * RMU_KB_MAX_ATTRS + a]; }

const char *rmu_kb_attr_name(int d, int a) {
    return d >= 0 && d < RMU_KB_DOMAINS && a >= 0 && a < RMU_KB_MAX_ATTRS ? attr(d, a)->name : NULL;
}

const char *rmu_kb_value(int d, int a, int v) {
    if (d < 0 || d >= RMU_KB_DOMAINS || a < 0 || a >= RMU_KB_MAX_ATTRS || v < 0 || v >= RMU_KB_NVALUES) return NULL;
    return attr(d, a)->values[v];
}

const char *rmu_kb_fact(const rmu_kb *kb, int d, int ent, int a) {
    const rmu_kb_domain *D = &kb->dom[d];
    return attr(d, a)->values[D->value[ent * D->n_attrs + a]];
}

/* ---- random order: the core SplitMix64 stream, one state per use (no global generator) */

static int rng_below(uint64_t *s, int n) { return (int)rmu_rng_below(s, (uint64_t)n); }

static void shuffle_int(int *a, int n, uint64_t *s) {
    for (int i = n - 1; i > 0; i--) {
        int j = rng_below(s, i + 1), t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* ---- text building on rmu_sb */

static void sb_json_str(rmu_sb *b, const char *s) {
    rmu_sb_putc(b, '"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') rmu_sb_putc(b, '\\'), rmu_sb_putc(b, (char)c);
        else if (c == '\n') rmu_sb_puts(b, "\\n");
        else if (c < 0x20) rmu_sb_printf(b, "\\u%04x", c);
        else rmu_sb_putc(b, (char)c);
    }
    rmu_sb_putc(b, '"');
}

static char *sb_finish(rmu_sb *b, size_t *len, rmu_err *e) {
    if (b->oom || !b->p) {
        int oom = b->oom;
        rmu_sb_free(b);
        rmu_errf(e, oom ? "knowledge base: out of memory" : "knowledge base: empty text");
        return NULL;
    }
    if (len) *len = b->n;
    return rmu_sb_take(b);
}

/* Expand a template: {e} entity reference, {E} the same capitalised, {v} the value. */
static void sb_template(rmu_sb *b, const char *t, int d, const char *ent, const char *val) {
    for (const char *p = t; *p; p++) {
        if (p[0] == '{' && (p[1] == 'e' || p[1] == 'E' || p[1] == 'v') && p[2] == '}') {
            if (p[1] == 'v') rmu_sb_puts(b, val);
            else {
                size_t at = b->n;
                rmu_sb_puts(b, DEFS[d].article);
                rmu_sb_puts(b, ent);
                if (p[1] == 'E' && !b->oom && b->p[at] >= 'a' && b->p[at] <= 'z')
                    b->p[at] = (char)(b->p[at] - 'a' + 'A');
            }
            p += 2;
        } else {
            rmu_sb_putc(b, *p);
        }
    }
}

/* ---- build */

void rmu_kb_free(rmu_kb *kb) {
    for (int d = 0; d < RMU_KB_DOMAINS; d++) {
        rmu_kb_domain *D = &kb->dom[d];
        if (D->entity)
            for (int i = 0; i < D->n_entities; i++) free(D->entity[i]);
        if (D->q)
            for (int i = 0; i < D->nq; i++) free(D->q[i].question);
        free(D->entity);
        free(D->value);
        free(D->q);
    }
    memset(kb, 0, sizeof *kb);
}

static int build_domain(rmu_kb *kb, int d, uint64_t *rng, rmu_err *e) {
    const kb_domain_def *def = &DEFS[d];
    rmu_kb_domain *D = &kb->dom[d];
    int N = kb->cfg.n_entities, A = kb->cfg.n_attrs;
    D->name = def->name;
    D->topic = def->topic;
    D->n_entities = N;
    D->n_attrs = A;
    D->entity = calloc((size_t)N, sizeof *D->entity);
    D->value = calloc((size_t)N * A, sizeof *D->value);
    D->q = calloc((size_t)N * A * (kb->cfg.questions_per_fact > 0 ? kb->cfg.questions_per_fact : 1), sizeof *D->q);
    int *perm = malloc(sizeof(int) * (N > RMU_KB_NVALUES ? N : RMU_KB_NVALUES));
    int vperm[RMU_KB_NVALUES];
    if (!D->entity || !D->value || !D->q || !perm) { free(perm); return rmu_errf(e, "knowledge base: out of memory"); }

    /* Names: two distinct syllables, unique as strings (RMU_KB_MAX_ENTITIES < 16 * 15). */
    for (int i = 0; i < N; i++) {
        char name[64];
        for (;;) {
            int a = rng_below(rng, KB_NSYL), b = rng_below(rng, KB_NSYL), dup = 0;
            if (a == b) continue;
            snprintf(name, sizeof name, "%s%s", def->syllables[a], def->syllables[b]);
            if (def->capitalise_names) name[0] = (char)(name[0] - 'a' + 'A');
            for (int j = 0; j < i && !dup; j++) dup = !strcmp(D->entity[j], name);
            if (!dup) break;
        }
        if (!(D->entity[i] = strdup(name))) { free(perm); return rmu_errf(e, "knowledge base: out of memory"); }
    }

    /* Values: each attribute's values used equally often, over a random entity order. */
    for (int a = 0; a < A; a++) {
        for (int i = 0; i < N; i++) perm[i] = i;
        shuffle_int(perm, N, rng);
        for (int v = 0; v < RMU_KB_NVALUES; v++) vperm[v] = v;
        shuffle_int(vperm, RMU_KB_NVALUES, rng);
        for (int i = 0; i < N; i++) D->value[perm[i] * A + a] = vperm[i % RMU_KB_NVALUES];
    }

    /* Questions: gold + 3 distinct distractors from the same attribute, gold at a random
     * slot. A fact's questions split the 9 other values into disjoint distractor triples, so
     * a model that knows nothing (answers from a fixed preference over the values) scores
     * close to 1/4 rather than 1/4 +- the luck of one draw. */
    int K = kb->cfg.questions_per_fact > 0 ? kb->cfg.questions_per_fact : 1;
    D->nq = N * A * K;
    for (int i = 0; i < N; i++)
        for (int a = 0; a < A; a++) {
            int gold = D->value[i * A + a], others[RMU_KB_NVALUES - 1], n_o = 0;
            for (int v = 0; v < RMU_KB_NVALUES; v++)
                if (v != gold) others[n_o++] = v;
            for (int k = 0; k < K; k++) {
                rmu_kb_question *q = &D->q[(i * A + a) * K + k];
                int per = RMU_KB_CHOICES - 1, sets = n_o / per, off = (k % sets) * per;
                if (k % sets == 0) shuffle_int(others, n_o, rng);
                q->entity = i;
                q->attr = a;
                q->answer = rng_below(rng, RMU_KB_CHOICES);
                for (int c = 0, o = 0; c < RMU_KB_CHOICES; c++)
                    q->choices[c] = attr(d, a)->values[c == q->answer ? gold : others[off + o++]];
                rmu_sb b = {0};
                sb_template(&b, attr(d, a)->question, d, D->entity[i], "");
                if (!(q->question = sb_finish(&b, NULL, e))) { free(perm); return -1; }
            }
        }
    free(perm);
    return 0;
}

int rmu_kb_build(rmu_kb *kb, const rmu_kb_cfg *cfg, rmu_err *e) {
    memset(kb, 0, sizeof *kb);
    if (cfg->n_entities < 1 || cfg->n_entities > RMU_KB_MAX_ENTITIES)
        return rmu_errf(e, "knowledge base: entities per domain must be in [1, %d], got %d", RMU_KB_MAX_ENTITIES,
                        cfg->n_entities);
    if (cfg->n_attrs < 1 || cfg->n_attrs > RMU_KB_MAX_ATTRS)
        return rmu_errf(e, "knowledge base: attributes per domain must be in [1, %d], got %d", RMU_KB_MAX_ATTRS,
                        cfg->n_attrs);
    if (cfg->questions_per_fact < 0 || cfg->questions_per_fact > RMU_KB_MAX_QPF)
        return rmu_errf(e, "knowledge base: questions per fact must be in [0, %d], got %d", RMU_KB_MAX_QPF,
                        cfg->questions_per_fact);
    if (cfg->train_copies < 0 || cfg->train_copies > RMU_KB_MAX_COPIES)
        return rmu_errf(e, "knowledge base: training copies must be in [0, %d], got %d", RMU_KB_MAX_COPIES,
                        cfg->train_copies);
    kb->cfg = *cfg;
    for (int d = 0; d < RMU_KB_DOMAINS; d++) {
        /* One stream per domain: the forget domain does not change when only retain would. */
        uint64_t rng = cfg->seed * 0x100000001b3ull + 0x5eed0000u + (uint64_t)d;
        if (build_domain(kb, d, &rng, e)) {
            rmu_kb_free(kb);
            return -1;
        }
    }
    return 0;
}

/* ---- texts */

/* All pretraining documents, in fact order, as an array of malloc'd strings. */
static char **train_docs(const rmu_kb *kb, int *ndocs, rmu_err *e) {
    int n = 0, cap = 0;
    for (int d = 0; d < RMU_KB_DOMAINS; d++) cap += kb->dom[d].n_entities * kb->dom[d].n_attrs * (1 + KB_NTEMPL);
    char **docs = calloc((size_t)cap, sizeof *docs);
    if (!docs) { rmu_errf(e, "knowledge base: out of memory"); return NULL; }
    for (int d = 0; d < RMU_KB_DOMAINS; d++) {
        const rmu_kb_domain *D = &kb->dom[d];
        for (int i = 0; i < D->n_entities; i++)
            for (int a = 0; a < D->n_attrs; a++) {
                const char *val = rmu_kb_fact(kb, d, i, a);
                for (int t = -1; t < KB_NTEMPL; t++) {
                    rmu_sb b = {0};
                    if (t < 0) { /* the layout of `rmu eval`'s cloze prompt + continuation */
                        rmu_sb_puts(&b, "Question: ");
                        sb_template(&b, attr(d, a)->question, d, D->entity[i], "");
                        rmu_sb_puts(&b, "\nAnswer: ");
                        rmu_sb_puts(&b, val);
                    } else {
                        sb_template(&b, attr(d, a)->facts[t], d, D->entity[i], val);
                    }
                    if (!(docs[n++] = sb_finish(&b, NULL, e))) {
                        for (int j = 0; j < n; j++) free(docs[j]);
                        free(docs);
                        return NULL;
                    }
                }
            }
    }
    *ndocs = n;
    return docs;
}

static void free_docs(char **docs, int n) {
    for (int i = 0; i < n; i++) free(docs[i]);
    free(docs);
}

/* copies shuffled passes over the documents, each pass a fresh order, so that a packed
 * training stream never repeats a chunk: the model can only learn the facts, not which
 * document follows which. */
static char *docs_join(const rmu_kb *kb, int jsonl, int copies, size_t *len, rmu_err *e) {
    int n;
    char **docs = train_docs(kb, &n, e);
    if (!docs) return NULL;
    int *perm = malloc(sizeof(int) * (size_t)n);
    if (!perm) {
        free_docs(docs, n);
        rmu_errf(e, "knowledge base: out of memory");
        return NULL;
    }
    /* A stream of its own so the order does not depend on question sampling. */
    uint64_t rng = kb->cfg.seed * 0x100000001b3ull + 0x7a1e0000u;
    rmu_sb b = {0};
    for (int c = 0; c < (copies > 0 ? copies : 1); c++) {
        for (int i = 0; i < n; i++) perm[i] = i;
        shuffle_int(perm, n, &rng);
        for (int i = 0; i < n; i++) {
            if (jsonl) {
                rmu_sb_puts(&b, "{\"text\": ");
                sb_json_str(&b, docs[perm[i]]);
                rmu_sb_puts(&b, "}\n");
            } else {
                rmu_sb_puts(&b, docs[perm[i]]);
                rmu_sb_puts(&b, "\n\n");
            }
        }
    }
    free(perm);
    free_docs(docs, n);
    return sb_finish(&b, len, e);
}

char *rmu_kb_train_jsonl(const rmu_kb *kb, size_t *len, rmu_err *e) {
    return docs_join(kb, 1, kb->cfg.train_copies, len, e);
}
char *rmu_kb_train_text(const rmu_kb *kb, size_t *len, rmu_err *e) { return docs_join(kb, 0, 1, len, e); }

char *rmu_kb_corpus_jsonl(const rmu_kb *kb, int d, int paragraphs, size_t *len, rmu_err *e) {
    if (d < 0 || d >= RMU_KB_DOMAINS) { rmu_errf(e, "knowledge base: no domain %d", d); return NULL; }
    const rmu_kb_domain *D = &kb->dom[d];
    uint64_t rng = kb->cfg.seed * 0x100000001b3ull + 0xc0790000u + (uint64_t)d;
    int order[RMU_KB_MAX_ATTRS];
    rmu_sb b = {0};
    for (int p = 0; p < paragraphs; p++)
        for (int i = 0; i < D->n_entities; i++) {
            rmu_sb t = {0};
            sb_template(&t, DEFS[d].intro, d, D->entity[i], "");
            for (int a = 0; a < D->n_attrs; a++) order[a] = a;
            shuffle_int(order, D->n_attrs, &rng);
            for (int k = 0; k < D->n_attrs; k++) {
                int a = order[k];
                rmu_sb_puts(&t, " ");
                sb_template(&t, attr(d, a)->facts[rng_below(&rng, KB_NTEMPL)], d, D->entity[i],
                            rmu_kb_fact(kb, d, i, a));
            }
            if (t.oom) { free(t.p); free(b.p); rmu_errf(e, "knowledge base: out of memory"); return NULL; }
            rmu_sb_puts(&b, "{\"text\": ");
            sb_json_str(&b, t.p);
            rmu_sb_puts(&b, "}\n");
            free(t.p);
        }
    return sb_finish(&b, len, e);
}

char *rmu_kb_mcq_jsonl(const rmu_kb *kb, int d, size_t *len, rmu_err *e) {
    if (d < 0 || d >= RMU_KB_DOMAINS) { rmu_errf(e, "knowledge base: no domain %d", d); return NULL; }
    const rmu_kb_domain *D = &kb->dom[d];
    rmu_sb b = {0};
    char num[32];
    for (int i = 0; i < D->nq; i++) {
        const rmu_kb_question *q = &D->q[i];
        rmu_sb_puts(&b, "{\"question\": ");
        sb_json_str(&b, q->question);
        rmu_sb_puts(&b, ", \"choices\": [");
        for (int c = 0; c < RMU_KB_CHOICES; c++) {
            if (c) rmu_sb_puts(&b, ", ");
            sb_json_str(&b, q->choices[c]);
        }
        snprintf(num, sizeof num, "], \"answer\": %d, \"subject\": ", q->answer);
        rmu_sb_puts(&b, num);
        sb_json_str(&b, D->name);
        rmu_sb_puts(&b, "}\n");
    }
    return sb_finish(&b, len, e);
}

typedef char *(*kb_text_fn)(const rmu_kb *kb, int d, int paragraphs, size_t *len, rmu_err *e);

static char *train_fn(const rmu_kb *kb, int d, int paragraphs, size_t *len, rmu_err *e) {
    return rmu_kb_train_jsonl(kb, len, e);
}
static char *mcq_fn(const rmu_kb *kb, int d, int paragraphs, size_t *len, rmu_err *e) {
    return rmu_kb_mcq_jsonl(kb, d, len, e);
}

int rmu_kb_write(const rmu_kb *kb, const char *dir, int paragraphs, rmu_err *e) {
    static const struct { const char *name; kb_text_fn fn; int d; } FILES[] = {
        {"train.jsonl", train_fn, 0},
        {"forget_corpus.jsonl", rmu_kb_corpus_jsonl, RMU_KB_FORGET},
        {"retain_corpus.jsonl", rmu_kb_corpus_jsonl, RMU_KB_RETAIN},
        {"forget_mcq.jsonl", mcq_fn, RMU_KB_FORGET},
        {"retain_mcq.jsonl", mcq_fn, RMU_KB_RETAIN},
    };
    if (rmu_mkdirs(dir, e)) return -1;
    for (size_t i = 0; i < sizeof FILES / sizeof FILES[0]; i++) {
        char path[4096];
        size_t n = 0;
        if (rmu_path_join(path, sizeof path, dir, FILES[i].name, e)) return -1;
        char *text = FILES[i].fn(kb, FILES[i].d, paragraphs, &n, e);
        if (!text) return -1;
        int r = rmu_file_write_atomic(path, text, n, e);
        free(text);
        if (r) return -1;
    }
    return 0;
}
