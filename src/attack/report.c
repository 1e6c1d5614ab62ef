/* report.c - accuracies, levels and recovered fractions of the attacks (see report.h). */
#include "attack/report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"
#include "model/check.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

void rmu_report_free(rmu_report *r) {
    for (int i = 0; i < r->nsuites; i++) rmu_eval_plan_free(&r->plan[i]);
    free(r->keys);
    memset(r, 0, sizeof *r);
}

/* The keys of suite s: every node in display order (depth from rmu_eval_order). */
static int add_keys(rmu_report *r, int s, rmu_err *e) {
    const rmu_eval_plan *p = &r->plan[s];
    int *order = malloc(sizeof(int) * (size_t)(p->n ? p->n : 1)), *depth = malloc(sizeof(int) * (size_t)(p->n ? p->n : 1));
    rmu_report_key *k = realloc(r->keys, sizeof *k * (size_t)(r->nkeys + p->n + 1));
    if (k) r->keys = k;
    if (!order || !depth || !k) {
        free(order), free(depth);
        return rmu_errf(e, "out of memory");
    }
    int n = rmu_eval_order(p, order, depth), rc = 0;
    const char *label = r->suite[s].label;
    for (int i = 0; i < n && !rc; i++) {
        rmu_report_key *q = &r->keys[r->nkeys];
        if (label && *label) snprintf(q->name, sizeof q->name, "%s/%s", label, p->nodes[order[i]].name);
        else snprintf(q->name, sizeof q->name, "%s", p->nodes[order[i]].name);
        q->suite = s, q->node = order[i], q->depth = depth[i];
        for (int j = 0; j < r->nkeys; j++)
            if (!strcmp(r->keys[j].name, q->name))
                rc = rmu_errf(e, "eval: task %s appears in two evaluations; label them (LABEL=TASKS)", q->name);
        if (!rc) r->nkeys++;
    }
    free(order), free(depth);
    return rc;
}

int rmu_report_open(rmu_report *r, const rmu_report_suite *s, int n, const rmu_report_opts *o, rmu_err *e) {
    memset(r, 0, sizeof *r);
    if (n < 1 || n > RMU_REPORT_MAX_SUITES)
        return rmu_errf(e, "eval: %d evaluations (1..%d allowed)", n, RMU_REPORT_MAX_SUITES);
    r->o = *o;
    if (r->o.desc_newlines <= 0) r->o.desc_newlines = 1;
    if (r->o.batch <= 0) r->o.batch = 16;
    for (int i = 0; i < n; i++) {
        r->suite[i] = s[i];
        if (!s[i].tasks || !*s[i].tasks || !s[i].data || !*s[i].data) {
            rmu_report_free(r);
            return rmu_errf(e, "eval: evaluation %d needs a task list and its data", i + 1);
        }
        if (s[i].label && strpbrk(s[i].label, "/,= ")) {
            rmu_report_free(r);
            return rmu_errf(e, "eval: label '%s' may not contain '/', ',', '=' or spaces", s[i].label);
        }
        if (rmu_eval_plan_init(&r->plan[i], s[i].tasks, o->format, e)) {
            rmu_report_free(r);
            return rmu_err_prefix(e, "eval");
        }
        r->nsuites = i + 1;
        r->plan[i].desc_newlines = r->o.desc_newlines;
        if (rmu_eval_plan_load(&r->plan[i], s[i].data, o->num_fewshot, o->limit, e) || add_keys(r, i, e)) {
            rmu_report_free(r);
            return rmu_err_prefix(e, "eval");
        }
    }
    return 0;
}

int rmu_report_eval(rmu_report *r, const rmu_model *m, const rmu_tokenizer *t, double *acc, rmu_err *e) {
    /* batch, one-pass and the prefix cache change the speed, never a score */
    rmu_eval_opts eo = {.add_bos = r->o.add_bos, .max_length = r->o.max_length, .batch = r->o.batch, .onepass = 1,
                        .prefix_cache = 1, .on_sample = r->o.on_sample, .ud = r->o.ud};
    for (int s = 0; s < r->nsuites; s++)
        if (rmu_eval_run(&r->plan[s], m, t, &eo, NULL, e)) return -1;
    for (int k = 0; k < r->nkeys; k++) acc[k] = r->plan[r->keys[k].suite].nodes[r->keys[k].node].st_acc.value;
    return 0;
}

int rmu_report_eval_dir(rmu_report *r, const char *dir, double *acc, rmu_err *e) {
    rmu_model m;
    if (rmu_model_load(&m, dir, e)) return -1;
    rmu_tokenizer *t = rmu_tok_load(dir, e);
    int rc = !t || rmu_check_tokenizer(&m, t, e) || rmu_report_eval(r, &m, t, acc, e) ? -1 : 0;
    rmu_tok_free(t);
    rmu_model_free(&m);
    return rc;
}

/* One suite's keys from one `rmu eval --output` file. */
static int read_one(const rmu_report *r, int s, const char *path, double *acc, rmu_err *e) {
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) return rmu_errf(e, "%s: %s", path, je.text);
    json_t *res = json_object_get(root, "results"), *ns = json_object_get(root, "n-samples");
    json_t *fmt = json_object_get(json_object_get(root, "config"), "format");
    const char *want = r->o.format == RMU_MCQ_CLOZE ? "cloze" : "letter";
    int rc = 0;
    if (!json_is_object(res)) rc = rmu_errf(e, "%s: not an `rmu eval --output` file (no \"results\")", path);
    else if (json_is_string(fmt) && strcmp(json_string_value(fmt), want))
        rc = rmu_errf(e, "%s: scored in the %s format, this run scores %s", path, json_string_value(fmt), want);
    for (int k = 0; k < r->nkeys && !rc; k++) {
        if (r->keys[k].suite != s) continue;
        const rmu_eval_node *d = &r->plan[s].nodes[r->keys[k].node];
        json_t *v = json_object_get(json_object_get(res, d->name), "acc,none");
        if (!json_is_number(v)) {
            rc = rmu_errf(e, "%s: no acc for task %s", path, d->name);
            break;
        }
        if (d->family != RMU_EVAL_GROUP) {
            json_t *eff = json_object_get(json_object_get(ns, d->name), "effective");
            if (json_is_integer(eff) && json_integer_value(eff) != d->n)
                rc = rmu_errf(e, "%s: task %s was scored on %lld rows, this run scores %d (another --limit or data?)",
                              path, d->name, (long long)json_integer_value(eff), d->n);
        }
        acc[k] = json_number_value(v);
    }
    json_decref(root);
    return rc;
}

int rmu_report_read_results(const rmu_report *r, const char *files, double *acc, rmu_err *e) {
    char path[4096];
    const char *p = files;
    for (int s = 0; s < r->nsuites; s++) {
        const char *c = strchr(p, ',');
        size_t l = c ? (size_t)(c - p) : strlen(p);
        if (!l || l >= sizeof path)
            return rmu_errf(e, "%s: expected %d results files (one per evaluation), comma separated", files,
                            r->nsuites);
        memcpy(path, p, l);
        path[l] = 0;
        if (read_one(r, s, path, acc, e)) return -1;
        p = c ? c + 1 : p + l;
    }
    if (*p) return rmu_errf(e, "%s: more results files than the %d evaluations", files, r->nsuites);
    return 0;
}

double rmu_report_recovered(double base, double unl, double att) {
    if (!isfinite(base) || !isfinite(unl) || !isfinite(att) || base == unl) return NAN;
    return (att - unl) / (base - unl);
}

static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

json_t *rmu_report_json(const rmu_report *r, const double *base, const double *unl, const double *att) {
    json_t *o = json_object();
    for (int k = 0; k < r->nkeys; k++) {
        double b = base ? base[k] : NAN, u = unl ? unl[k] : NAN, a = att ? att[k] : NAN;
        json_object_set_new(o, r->keys[k].name,
                            json_pack("{s:o, s:o, s:o, s:o}", "base", num(b), "unlearned", num(u), "attacked", num(a),
                                      "recovered", num(rmu_report_recovered(b, u, a))));
    }
    return o;
}

json_t *rmu_report_settings(const rmu_report *r) {
    json_t *s = json_array();
    for (int i = 0; i < r->nsuites; i++)
        json_array_append_new(s, json_pack("{s:s, s:s, s:s}", "label", r->suite[i].label ? r->suite[i].label : "",
                                           "tasks", r->suite[i].tasks, "data", r->suite[i].data));
    return json_pack("{s:o, s:s, s:i, s:f, s:b, s:i, s:i}", "evaluations", s, "format",
                     r->o.format == RMU_MCQ_CLOZE ? "cloze" : "letter", "num_fewshot", r->o.num_fewshot, "limit",
                     r->o.limit, "add_bos", r->o.add_bos, "max_length", r->o.max_length, "description_newlines",
                     r->o.desc_newlines);
}

static void pct(char *b, size_t n, double v) {
    if (isfinite(v)) snprintf(b, n, "%.1f%%", 100 * v);
    else snprintf(b, n, "-");
}

char *rmu_report_table(const rmu_report *r, const double *base, const double *unl, const double *att,
                       const char *attacked) {
    rmu_sb s = {0};
    int w = 4;
    for (int k = 0; k < r->nkeys; k++)
        if (r->keys[k].depth <= 1 && (int)strlen(r->keys[k].name) + 2 * r->keys[k].depth > w)
            w = (int)strlen(r->keys[k].name) + 2 * r->keys[k].depth;
    rmu_sb_printf(&s, "| %-*s |   base | unlearned | %9s | recovered |\n|", w, "task", attacked);
    for (int i = 0; i < w + 2; i++) rmu_sb_putc(&s, '-');
    rmu_sb_puts(&s, "|-------:|----------:|----------:|----------:|\n");
    for (int k = 0; k < r->nkeys; k++) {
        if (r->keys[k].depth > 1) continue;
        char name[256], b[16], u[16], a[16], rc[16];
        snprintf(name, sizeof name, "%s%s", r->keys[k].depth ? "  " : "", r->keys[k].name);
        pct(b, sizeof b, base ? base[k] : NAN);
        pct(u, sizeof u, unl ? unl[k] : NAN);
        pct(a, sizeof a, att ? att[k] : NAN);
        double f = rmu_report_recovered(base ? base[k] : NAN, unl ? unl[k] : NAN, att ? att[k] : NAN);
        if (isfinite(f)) snprintf(rc, sizeof rc, "%.2f", f);
        else snprintf(rc, sizeof rc, "-");
        rmu_sb_printf(&s, "| %-*s | %6s | %9s | %9s | %9s |\n", w, name, b, u, a, rc);
    }
    return s.oom ? (rmu_sb_free(&s), NULL) : rmu_sb_take(&s);
}
