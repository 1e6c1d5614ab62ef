/* eval_plan.c - the task tree of an evaluation run, where its data comes from, and the
 * context strings. Pure (no model): unit-tested on its own. */
#include <jansson.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "eval/eval.h"

static const struct {
    const char *name, *topic;
    const char *stems[3]; /* accepted file names without extension */
} WMDP[] = {
    {"wmdp_bio", "biology", {"wmdp-bio", "wmdp_bio", "bio"}},
    {"wmdp_chem", "chemistry", {"wmdp-chem", "wmdp_chem", "chem"}},
    {"wmdp_cyber", "cybersecurity", {"wmdp-cyber", "wmdp_cyber", "cyber"}},
};
#define N_WMDP 3

/* ---- tree ---- */

static int add_node(rmu_eval_plan *p, const char *name, const char *alias, int parent, int family, rmu_err *e) {
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->nodes[i].name, name)) {
            const char *via = parent >= 0 ? p->nodes[parent].name : NULL;
            for (int q = p->nodes[i].parent; q >= 0 && !via; q = p->nodes[q].parent) via = p->nodes[q].name;
            if (via) return rmu_errf(e, "tasks: '%s' is requested twice (it is part of '%s')", name, via);
            return rmu_errf(e, "tasks: '%s' is requested twice", name);
        }
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 16;
        rmu_eval_node *nn = realloc(p->nodes, (size_t)cap * sizeof *nn);
        if (!nn) return rmu_errf(e, "out of memory");
        p->nodes = nn;
        p->cap = cap;
    }
    rmu_eval_node *d = &p->nodes[p->n];
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    snprintf(d->alias, sizeof d->alias, "%s", alias);
    d->parent = parent;
    d->family = family;
    return p->n++;
}

static int add_mmlu_subject(rmu_eval_plan *p, int s, int parent, rmu_err *e) {
    char name[96];
    snprintf(name, sizeof name, "mmlu_%s", rmu_mcq_mmlu_subject(s));
    int k = add_node(p, name, rmu_mcq_mmlu_subject(s), parent, RMU_EVAL_MMLU, e);
    if (k < 0) return -1;
    rmu_eval_node *d = &p->nodes[k];
    snprintf(d->subject, sizeof d->subject, "%s", rmu_mcq_mmlu_subject(s));
    /* the description's subject: underscores as spaces, as _generate_configs.py */
    snprintf(d->topic, sizeof d->topic, "%s", d->subject);
    for (char *c = d->topic; *c; c++)
        if (*c == '_') *c = ' ';
    return k;
}

static int add_mmlu_category(rmu_eval_plan *p, const char *cat, int parent, rmu_err *e) {
    char name[96];
    snprintf(name, sizeof name, "mmlu_%s", cat);
    int g = add_node(p, name, cat, parent, RMU_EVAL_GROUP, e);
    if (g < 0) return -1;
    for (int s = 0; s < rmu_mcq_mmlu_count(); s++)
        if (!strcmp(rmu_mcq_mmlu_category(s), cat) && add_mmlu_subject(p, s, g, e) < 0) return -1;
    return g;
}

static int add_task(rmu_eval_plan *p, const char *t, rmu_err *e) {
    if (!strcmp(t, "wmdp")) {
        int g = add_node(p, "wmdp", "wmdp", -1, RMU_EVAL_GROUP, e);
        if (g < 0) return -1;
        for (int w = 0; w < N_WMDP; w++) {
            int k = add_node(p, WMDP[w].name, WMDP[w].name, g, RMU_EVAL_WMDP, e);
            if (k < 0) return -1;
            snprintf(p->nodes[k].topic, sizeof p->nodes[k].topic, "%s", WMDP[w].topic);
        }
        return 0;
    }
    for (int w = 0; w < N_WMDP; w++)
        if (!strcmp(t, WMDP[w].name)) {
            int k = add_node(p, WMDP[w].name, WMDP[w].name, -1, RMU_EVAL_WMDP, e);
            if (k < 0) return -1;
            snprintf(p->nodes[k].topic, sizeof p->nodes[k].topic, "%s", WMDP[w].topic);
            return 0;
        }
    if (!strcmp(t, "mmlu")) {
        int g = add_node(p, "mmlu", "mmlu", -1, RMU_EVAL_GROUP, e);
        if (g < 0) return -1;
        for (int c = 0; c < 4; c++)
            if (add_mmlu_category(p, RMU_MCQ_MMLU_CATEGORIES[c], g, e) < 0) return -1;
        return 0;
    }
    if (!strncmp(t, "mmlu_", 5)) {
        for (int c = 0; c < 4; c++)
            if (!strcmp(t + 5, RMU_MCQ_MMLU_CATEGORIES[c])) return add_mmlu_category(p, t + 5, -1, e) < 0 ? -1 : 0;
        int s = rmu_mcq_mmlu_find(t + 5);
        if (s >= 0) return add_mmlu_subject(p, s, -1, e) < 0 ? -1 : 0;
        return rmu_errf(e, "tasks: unknown MMLU subject '%s' in '%s' (the 57 subjects of lm-eval, e.g. mmlu_anatomy)",
                        t + 5, t);
    }
    if (!strcmp(t, "mcq")) return add_node(p, "mcq", "mcq", -1, RMU_EVAL_MCQ, e) < 0 ? -1 : 0;
    return rmu_errf(e,
                    "tasks: unknown task '%s' (known: wmdp, wmdp_bio, wmdp_chem, wmdp_cyber, mmlu, mmlu_stem, "
                    "mmlu_other, mmlu_social_sciences, mmlu_humanities, mmlu_SUBJECT, mcq)",
                    t);
}

int rmu_eval_plan_init(rmu_eval_plan *p, const char *tasks, rmu_mcq_format fmt, rmu_err *e) {
    memset(p, 0, sizeof *p);
    p->format = fmt;
    p->desc_newlines = 1;
    if (!tasks || !*tasks) return rmu_errf(e, "tasks: empty task list");
    char *dup = strdup(tasks);
    if (!dup) return rmu_errf(e, "out of memory");
    int rc = 0;
    for (char *save = NULL, *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ') t++;
        size_t l = strlen(t);
        while (l && t[l - 1] == ' ') t[--l] = 0;
        if (!*t) continue;
        if ((rc = add_task(p, t, e))) break;
    }
    free(dup);
    if (!rc && p->n == 0) rc = rmu_errf(e, "tasks: empty task list");
    if (!rc && fmt == RMU_MCQ_CLOZE)
        for (int i = 0; i < p->n; i++)
            if (p->nodes[i].family == RMU_EVAL_WMDP || p->nodes[i].family == RMU_EVAL_MMLU) {
                rc = rmu_errf(e, "format: cloze is only for the mcq task; %s is scored on the letters A-D as lm-eval does",
                              p->nodes[i].name);
                break;
            }
    if (rc) rmu_eval_plan_free(p);
    return rc;
}

void rmu_eval_plan_free(rmu_eval_plan *p) {
    for (int i = 0; i < p->n; i++) {
        rmu_mcq_set_free(&p->nodes[i].test);
        rmu_mcq_set_free(&p->nodes[i].dev);
        free(p->nodes[i].acc);
        free(p->nodes[i].acc_norm);
    }
    free(p->nodes);
    memset(p, 0, sizeof *p);
}

long rmu_eval_plan_rows(const rmu_eval_plan *p) {
    long t = 0;
    for (int i = 0; i < p->n; i++)
        if (p->nodes[i].family != RMU_EVAL_GROUP) t += p->nodes[i].n;
    return t;
}

/* ---- data lookup ---- */

typedef struct entry {
    char key[100]; /* "" for a plain path */
    char path[4096];
    int is_dir;
} entry;

typedef struct cached {
    char path[4096];
    rmu_mcq_set set;
    int min_c, max_c;
} cached;

typedef struct loader {
    rmu_eval_plan *p;
    entry *ent;
    int nent;
    cached *cache;
    int ncache;
} loader;

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int choices_min(const rmu_eval_node *d) { return d->family == RMU_EVAL_MCQ ? 2 : 4; }
static int choices_max(const rmu_eval_node *d) { return d->family == RMU_EVAL_MCQ ? RMU_MCQ_MAX_CHOICES : 4; }

static int node_find(const rmu_eval_plan *p, const char *name) {
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->nodes[i].name, name)) return i;
    return -1;
}

/* Does the key of a NAME=PATH / NAME_dev=PATH entry name a group? */
static int key_is_group(const rmu_eval_plan *p, const char *key) {
    char base[100];
    snprintf(base, sizeof base, "%s", key);
    int q = node_find(p, base);
    size_t bl = strlen(base);
    if (q < 0 && bl > 4 && !strcmp(base + bl - 4, "_dev")) {
        base[bl - 4] = 0;
        q = node_find(p, base);
    }
    return q >= 0 && p->nodes[q].family == RMU_EVAL_GROUP;
}

static int parse_entries(loader *L, const char *data, rmu_err *e) {
    int cap = 1;
    for (const char *c = data; *c; c++) cap += *c == ',';
    L->ent = calloc((size_t)cap, sizeof *L->ent);
    if (!L->ent) return rmu_errf(e, "out of memory");
    char *dup = strdup(data);
    if (!dup) return rmu_errf(e, "out of memory");
    int rc = 0;
    for (char *save = NULL, *t = strtok_r(dup, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save)) {
        if (!*t) continue;
        entry *en = &L->ent[L->nent];
        const char *path = t;
        char *eq = strchr(t, '=');
        if (eq) { /* NAME=PATH when NAME looks like a task name */
            int word = eq > t;
            for (char *c = t; c < eq; c++) word &= isalnum((unsigned char)*c) || *c == '_';
            if (word) {
                *eq = 0;
                snprintf(en->key, sizeof en->key, "%s", t);
                path = eq + 1;
                char base[100];
                snprintf(base, sizeof base, "%s", en->key);
                size_t bl = strlen(base);
                if (bl > 4 && !strcmp(base + bl - 4, "_dev")) base[bl - 4] = 0;
                if (node_find(L->p, base) < 0) {
                    rc = rmu_errf(e, "data: '%s=' names no task or group of this run (see the task list)", en->key);
                    break;
                }
            }
        }
        if (strlen(path) >= sizeof en->path) {
            rc = rmu_errf(e, "data: path too long");
            break;
        }
        snprintf(en->path, sizeof en->path, "%s", path);
        en->is_dir = is_dir(path);
        if (!en->is_dir && !is_file(path)) {
            rc = rmu_errf(e, "data: %s: no such file or folder", path);
            break;
        }
        L->nent++;
    }
    free(dup);
    return rc;
}

static const rmu_mcq_set *cache_load(loader *L, const char *path, const rmu_eval_node *d, rmu_err *e) {
    for (int i = 0; i < L->ncache; i++)
        if (!strcmp(L->cache[i].path, path)) {
            if (L->cache[i].min_c > choices_min(d) || L->cache[i].max_c < choices_max(d)) continue;
            return &L->cache[i].set;
        }
    cached *nc = realloc(L->cache, (size_t)(L->ncache + 1) * sizeof *nc);
    if (!nc) {
        rmu_errf(e, "out of memory");
        return NULL;
    }
    L->cache = nc;
    cached *c = &L->cache[L->ncache];
    memset(c, 0, sizeof *c);
    snprintf(c->path, sizeof c->path, "%s", path);
    c->min_c = choices_min(d);
    c->max_c = choices_max(d);
    if (rmu_mcq_load(&c->set, path, c->min_c, c->max_c, e)) {
        rmu_mcq_set_free(&c->set);
        return NULL;
    }
    L->ncache++;
    return &c->set;
}

/* The file name without folders and extension, lower case, '-' as '_'. */
static void stem_of(const char *path, char *out, size_t cap) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(out, cap, "%s", b);
    static const char *const EXT[] = {".jsonl", ".json", ".csv"};
    size_t l = strlen(out);
    for (int k = 0; k < 3; k++) {
        size_t el = strlen(EXT[k]);
        if (l > el && !strcasecmp(out + l - el, EXT[k])) {
            out[l - el] = 0;
            break;
        }
    }
    for (char *c = out; *c; c++) *c = *c == '-' ? '_' : (char)tolower((unsigned char)*c);
}

/* Does a plain file's name say it holds leaf d's rows (dev: its few-shot rows)? */
static int name_matches(const rmu_eval_node *d, const char *path, int dev) {
    char st[512], want[160];
    stem_of(path, st, sizeof st);
    if (d->family == RMU_EVAL_WMDP) {
        if (dev) return 0;
        for (int w = 0; w < N_WMDP; w++)
            if (!strcmp(d->name, WMDP[w].name))
                for (int k = 0; k < 3; k++) {
                    snprintf(want, sizeof want, "%s", WMDP[w].stems[k]);
                    for (char *c = want; *c; c++)
                        if (*c == '-') *c = '_';
                    if (!strcmp(st, want)) return 1;
                }
        return 0;
    }
    if (d->family == RMU_EVAL_MMLU) {
        const char *sfx = dev ? "_dev" : "_test";
        snprintf(want, sizeof want, "%s%s", d->subject, sfx);
        if (!strcmp(st, want)) return 1;
        if (dev) return 0;
        snprintf(want, sizeof want, "mmlu_%s", d->subject);
        return !strcmp(st, d->subject) || !strcmp(st, want);
    }
    return 0;
}

/* First existing file among dir/NAME for the candidate names of leaf d; *tagged is set when
 * the file holds every subject (rows to be picked by "subject"). */
static int probe_dir(const rmu_eval_node *d, const char *dir, int dev, char *out, size_t cap, int *tagged) {
    char names[16][160];
    int n = 0;
    *tagged = 0;
    if (d->family == RMU_EVAL_WMDP) {
        if (dev) return 0;
        for (int w = 0; w < N_WMDP; w++)
            if (!strcmp(d->name, WMDP[w].name))
                for (int k = 0; k < 3; k++) {
                    snprintf(names[n++], 160, "%s.jsonl", WMDP[w].stems[k]);
                    snprintf(names[n++], 160, "%s.json", WMDP[w].stems[k]);
                }
    } else if (d->family == RMU_EVAL_MMLU) {
        const char *s = d->subject;
        if (!dev) {
            snprintf(names[n++], 160, "test/%s_test.csv", s);
            snprintf(names[n++], 160, "test/%s.jsonl", s);
            snprintf(names[n++], 160, "test/%s_test.jsonl", s);
            snprintf(names[n++], 160, "test/%s.json", s);
            snprintf(names[n++], 160, "%s_test.csv", s);
            snprintf(names[n++], 160, "%s.jsonl", s);
            snprintf(names[n++], 160, "%s_test.jsonl", s);
            snprintf(names[n++], 160, "%s.json", s);
        } else {
            snprintf(names[n++], 160, "dev/%s_dev.csv", s);
            snprintf(names[n++], 160, "dev/%s.jsonl", s);
            snprintf(names[n++], 160, "dev/%s_dev.jsonl", s);
            snprintf(names[n++], 160, "dev/%s.json", s);
            snprintf(names[n++], 160, "%s_dev.csv", s);
            snprintf(names[n++], 160, "%s_dev.jsonl", s);
        }
    } else if (!dev) {
        snprintf(names[n++], 160, "mcq.jsonl");
        snprintf(names[n++], 160, "mcq.json");
        snprintf(names[n++], 160, "mcq.csv");
    }
    for (int k = 0; k < n; k++) {
        snprintf(out, cap, "%s/%s", dir, names[k]);
        if (is_file(out)) return 1;
    }
    if (d->family == RMU_EVAL_MMLU) { /* one file with every subject, rows tagged */
        const char *base = dev ? "dev" : "test";
        snprintf(out, cap, "%s/%s.jsonl", dir, base);
        if (is_file(out)) return *tagged = 1;
        snprintf(out, cap, "%s/%s.json", dir, base);
        if (is_file(out)) return *tagged = 1;
    }
    return 0;
}

/* What the error for a missing file lists as tried. */
static void tried_names(const rmu_eval_node *d, int dev, char *out, size_t cap) {
    if (d->family == RMU_EVAL_WMDP) {
        for (int w = 0; w < N_WMDP; w++)
            if (!strcmp(d->name, WMDP[w].name))
                snprintf(out, cap, "%s.jsonl, %s.jsonl, %s.jsonl or .json", WMDP[w].stems[0], WMDP[w].stems[1],
                         WMDP[w].stems[2]);
    } else if (d->family == RMU_EVAL_MMLU) {
        if (!dev)
            snprintf(out, cap, "test/%s_test.csv, test/%s.jsonl, test/%s_test.jsonl, test/%s.json, test.jsonl, ...",
                     d->subject, d->subject, d->subject, d->subject);
        else
            snprintf(out, cap, "dev/%s_dev.csv, dev/%s.jsonl, dev/%s_dev.jsonl, dev/%s.json, dev.jsonl, ...",
                     d->subject, d->subject, d->subject, d->subject);
    } else {
        snprintf(out, cap, "mcq.jsonl, mcq.json, mcq.csv");
    }
}

/* Explicit NAME=PATH (or NAME_dev=PATH) for leaf k or one of its groups; NULL if none. */
static const entry *explicit_for(const loader *L, int k, int dev) {
    for (int q = k; q >= 0; q = L->p->nodes[q].parent)
        for (int i = 0; i < L->nent; i++) {
            const entry *en = &L->ent[i];
            if (!en->key[0]) continue;
            char want[110];
            snprintf(want, sizeof want, "%s%s", L->p->nodes[q].name, dev ? "_dev" : "");
            if (!strcmp(en->key, want)) return en;
        }
    return NULL;
}

/* Copy the rows meant for leaf d from a loaded file: all of them, or for an MMLU subject
 * the rows tagged with it when the file has tags. */
static int take_rows(const rmu_eval_node *d, const rmu_mcq_set *src, int shared, rmu_mcq_set *dst, rmu_err *e) {
    snprintf(dst->path, sizeof dst->path, "%s", src->path);
    int any_tag = 0;
    for (int i = 0; i < src->n; i++) any_tag |= src->items[i].subject != NULL;
    int filter = d->family == RMU_EVAL_MMLU && any_tag;
    if (d->family == RMU_EVAL_MMLU && !any_tag && shared)
        return rmu_errf(e, "%s: rows have no \"subject\" field, so they cannot be split among MMLU subjects (%s)",
                        src->path, d->name);
    for (int i = 0; i < src->n; i++) {
        if (filter && (!src->items[i].subject || strcmp(src->items[i].subject, d->subject))) continue;
        if (rmu_mcq_set_add(dst, &src->items[i], e)) return -1;
    }
    if (filter && dst->n == 0)
        return rmu_errf(e, "%s: no rows with \"subject\": \"%s\" (%s)", src->path, d->subject, d->name);
    return 0;
}

int rmu_eval_plan_load(rmu_eval_plan *p, const char *data, int num_fewshot, double limit, rmu_err *e) {
    if (!data || !*data) return rmu_errf(e, "data: no data given");
    if (num_fewshot < 0) return rmu_errf(e, "num_fewshot: must be >= 0");
    p->num_fewshot = num_fewshot;
    loader L = {.p = p};
    int rc = parse_entries(&L, data, e);
    int n_plain = 0, plain_file = -1, n_leaves = 0, n_mmlu = 0;
    for (int i = 0; i < L.nent; i++)
        if (!L.ent[i].key[0]) {
            n_plain++;
            if (!L.ent[i].is_dir) plain_file = i;
        }
    for (int k = 0; k < p->n; k++)
        if (p->nodes[k].family != RMU_EVAL_GROUP) {
            n_leaves++;
            n_mmlu += p->nodes[k].family == RMU_EVAL_MMLU;
        }
    /* the lone plain file is for "the" task of the run: one task, or only MMLU subjects */
    int lone_file = n_plain == 1 && plain_file >= 0 && (n_leaves == 1 || n_mmlu == n_leaves) ? plain_file : -1;

    for (int k = 0; k < p->n && !rc; k++) {
        rmu_eval_node *d = &p->nodes[k];
        if (d->family == RMU_EVAL_GROUP) continue;
        char test_dir[4096] = ""; /* folder the test rows came from: few-shot rows are looked up there */
        for (int dev = 0; dev <= (num_fewshot > 0) && !rc; dev++) {
            char path[4200] = "", tried[600] = "";
            int tagged = 0, found = 0, shared = 0; /* shared: one file for several MMLU subjects */
            const entry *ex = explicit_for(&L, k, dev);
            if (ex) {
                if (ex->is_dir) {
                    found = probe_dir(d, ex->path, dev, path, sizeof path, &tagged);
                    if (found && !dev) snprintf(test_dir, sizeof test_dir, "%s", ex->path);
                    if (!found) {
                        tried_names(d, dev, tried, sizeof tried);
                        rc = rmu_errf(e, "%s: no %s data for it in %s (looked for %s)", d->name, dev ? "few-shot" : "test",
                                      ex->path, tried);
                        break;
                    }
                } else {
                    snprintf(path, sizeof path, "%s", ex->path);
                    found = 1;
                    shared = key_is_group(p, ex->key);
                }
            }
            if (dev && !found) { /* few-shot rows beside the test rows */
                if (test_dir[0]) found = probe_dir(d, test_dir, 1, path, sizeof path, &tagged);
                for (int i = 0; i < L.nent && !found; i++)
                    if (!L.ent[i].key[0] && !L.ent[i].is_dir && name_matches(d, L.ent[i].path, 1)) {
                        snprintf(path, sizeof path, "%s", L.ent[i].path);
                        found = 1;
                    }
                if (!found) {
                    if (d->family == RMU_EVAL_WMDP)
                        rc = rmu_errf(e,
                                      "%s: num_fewshot %d needs few-shot rows, and WMDP has no dev split (lm-eval "
                                      "would draw test rows at random); give %s_dev=FILE in the data list",
                                      d->name, num_fewshot, d->name);
                    else if (test_dir[0]) {
                        tried_names(d, 1, tried, sizeof tried);
                        rc = rmu_errf(e, "%s: num_fewshot %d: no few-shot rows in %s (looked for %s); or give %s_dev=FILE",
                                      d->name, num_fewshot, test_dir, tried, d->name);
                    } else
                        rc = rmu_errf(e, "%s: num_fewshot %d needs few-shot rows: give %s_dev=FILE in the data list", d->name,
                                      num_fewshot, d->name);
                    break;
                }
            }
            for (int i = 0; i < L.nent && !found && !dev; i++) { /* plain entries in order */
                const entry *en = &L.ent[i];
                if (en->key[0]) continue;
                if (en->is_dir) {
                    found = probe_dir(d, en->path, 0, path, sizeof path, &tagged);
                    if (found) snprintf(test_dir, sizeof test_dir, "%s", en->path);
                } else if (name_matches(d, en->path, 0)) {
                    snprintf(path, sizeof path, "%s", en->path);
                    found = 1;
                }
            }
            if (!found && !dev && lone_file >= 0) {
                snprintf(path, sizeof path, "%s", L.ent[lone_file].path);
                found = 1;
                shared = n_mmlu > 1;
            }
            if (!found) {
                tried_names(d, 0, tried, sizeof tried);
                if (d->family == RMU_EVAL_MMLU)
                    rc = rmu_errf(e, "%s: no test data for subject '%s' in the data list (looked for %s in each folder); or give %s=FILE",
                                  d->name, d->subject, tried, d->name);
                else
                    rc = rmu_errf(e, "%s: no test data in the data list (looked for %s in each folder); or give %s=FILE", d->name,
                                  tried, d->name);
                break;
            }
            const rmu_mcq_set *src = cache_load(&L, path, d, e);
            if (!src) {
                rc = -1;
                break;
            }
            rmu_mcq_set *dst = dev ? &d->dev : &d->test;
            if (take_rows(d, src, shared || tagged, dst, e)) {
                rc = -1;
                break;
            }
            if (!dev) snprintf(d->src, sizeof d->src, "%s", path);
        }
        if (rc) break;
        d->n_orig = d->test.n;
        if (d->test.n == 0) {
            rc = rmu_errf(e, "%s: %s has no rows", d->name, d->src);
            break;
        }
        if (num_fewshot > d->dev.n && num_fewshot > 0) {
            rc = rmu_errf(e, "%s: num_fewshot %d but %s has only %d rows", d->name, num_fewshot, d->dev.path, d->dev.n);
            break;
        }
        /* lm-eval: limit < 1 is a fraction of each task's rows, else a count */
        int n = d->n_orig;
        if (limit > 0 && limit < 1.0)
            n = (int)(d->n_orig * limit);
        else if (limit >= 1.0 && limit < n)
            n = (int)limit;
        d->n = n;
        d->acc = calloc((size_t)(n ? n : 1), sizeof(double));
        d->acc_norm = p->format == RMU_MCQ_CLOZE ? calloc((size_t)(n ? n : 1), sizeof(double)) : NULL;
        if (!d->acc || (p->format == RMU_MCQ_CLOZE && !d->acc_norm)) rc = rmu_errf(e, "out of memory");
    }
    for (int i = 0; i < L.ncache; i++) rmu_mcq_set_free(&L.cache[i].set);
    free(L.cache);
    free(L.ent);
    return rc;
}

/* ---- contexts ---- */

static int same_item(const rmu_mcq_item *a, const rmu_mcq_item *b) {
    if (a->answer != b->answer || a->nchoices != b->nchoices || strcmp(a->question, b->question)) return 0;
    if ((a->subject == NULL) != (b->subject == NULL) || (a->subject && strcmp(a->subject, b->subject))) return 0;
    for (int j = 0; j < a->nchoices; j++)
        if (strcmp(a->choices[j], b->choices[j])) return 0;
    return 1;
}

char *rmu_eval_context(const rmu_eval_plan *p, int node, int row) {
    const rmu_eval_node *d = &p->nodes[node];
    const rmu_mcq_item *doc = &d->test.items[row];
    int k = p->num_fewshot < d->dev.n ? p->num_fewshot : d->dev.n;
    /* first_n sampler: the first k rows, minus any row equal to the document itself */
    rmu_mcq_item *shots = k ? malloc((size_t)k * sizeof *shots) : NULL;
    if (k && !shots) return NULL;
    int ns = 0;
    for (int i = 0; i < k; i++)
        if (!same_item(&d->dev.items[i], doc)) shots[ns++] = d->dev.items[i];
    char *desc = rmu_mcq_description(d->topic, p->desc_newlines);
    char *ctx = desc ? rmu_mcq_context(desc, shots, ns, doc, p->format) : NULL;
    free(desc);
    free(shots);
    return ctx;
}
