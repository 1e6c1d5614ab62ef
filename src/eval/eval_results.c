/* eval_results.c - lm-eval v0.4.2 result arithmetic and output shapes. Pure (no model).
 *
 * Per task: acc = mean of 0/1 rows; acc_stderr = mean_stderr (sample stddev with ddof=1
 * over sqrt(n)), "N/A" for a single row. Groups (evaluator.py, v0.4.2): visited deepest
 * first, each from its DIRECT children's results: size-weighted mean, and
 * pooled_sample_stderr over the children's stderrs and sizes - so mmlu pools its four
 * categories, each of which pooled its subjects. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"
#include "eval/eval.h"

void rmu_eval_stat_mean(const double *x, int n, rmu_eval_stat *out) {
    memset(out, 0, sizeof *out);
    if (n <= 0) return;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += x[i];
    double mu = sum / n;
    out->value = mu;
    if (n > 1) {
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (x[i] - mu) * (x[i] - mu);
        out->stderr = sqrt(ss / (n - 1)) / sqrt((double)n);
        out->has_stderr = 1;
    }
}

void rmu_eval_stat_group(const rmu_eval_stat *sub, const long *sizes, int k, rmu_eval_stat *out) {
    memset(out, 0, sizeof *out);
    double wsum = 0, total = 0, pooled = 0;
    int na = 0;
    for (int i = 0; i < k; i++) {
        wsum += sub[i].value * (double)sizes[i];
        total += (double)sizes[i];
        na |= !sub[i].has_stderr;
        pooled += ((double)sizes[i] - 1) * sub[i].stderr * sub[i].stderr * (double)sizes[i];
    }
    if (total <= 0) return;
    out->value = wsum / total;
    /* lm-eval would divide by zero when every subtask has one row; those are N/A anyway */
    if (!na && total - k > 0) {
        out->stderr = sqrt(pooled / (total - k) / total);
        out->has_stderr = 1;
    }
}

static int depth_of(const rmu_eval_plan *p, int k) {
    int d = 0;
    for (int q = p->nodes[k].parent; q >= 0; q = p->nodes[q].parent) d++;
    return d;
}

void rmu_eval_aggregate(rmu_eval_plan *p) {
    int maxd = 0;
    for (int k = 0; k < p->n; k++) {
        rmu_eval_node *d = &p->nodes[k];
        int dep = depth_of(p, k);
        if (dep > maxd) maxd = dep;
        if (d->family == RMU_EVAL_GROUP) continue;
        d->samples = d->n;
        rmu_eval_stat_mean(d->acc, d->n, &d->st_acc);
        if (d->acc_norm) rmu_eval_stat_mean(d->acc_norm, d->n, &d->st_norm);
    }
    rmu_eval_stat *sa = malloc((size_t)(p->n ? p->n : 1) * sizeof *sa);
    rmu_eval_stat *sn = malloc((size_t)(p->n ? p->n : 1) * sizeof *sn);
    long *sz = malloc((size_t)(p->n ? p->n : 1) * sizeof *sz);
    for (int dep = maxd; dep >= 0 && sa && sn && sz; dep--)
        for (int g = 0; g < p->n; g++) {
            rmu_eval_node *G = &p->nodes[g];
            if (G->family != RMU_EVAL_GROUP || depth_of(p, g) != dep) continue;
            int k = 0;
            for (int c = 0; c < p->n; c++)
                if (p->nodes[c].parent == g) {
                    sa[k] = p->nodes[c].st_acc;
                    sn[k] = p->nodes[c].st_norm;
                    sz[k] = p->nodes[c].samples;
                    k++;
                }
            G->samples = 0;
            for (int i = 0; i < k; i++) G->samples += sz[i];
            rmu_eval_stat_group(sa, sz, k, &G->st_acc);
            if (p->format == RMU_MCQ_CLOZE) rmu_eval_stat_group(sn, sz, k, &G->st_norm);
        }
    free(sa);
    free(sn);
    free(sz);
}

/* ---- display order ---- */

typedef struct order_ctx {
    const rmu_eval_plan *p;
    int *order, *depth, n;
} order_ctx;

static void visit(order_ctx *o, int parent, int dep) {
    /* children of parent sorted by name (selection; the tree is small) */
    int last = -1;
    for (;;) {
        int best = -1;
        for (int c = 0; c < o->p->n; c++) {
            if (o->p->nodes[c].parent != parent) continue;
            const char *nm = o->p->nodes[c].name;
            if (last >= 0 && strcmp(nm, o->p->nodes[last].name) <= 0) continue;
            if (best < 0 || strcmp(nm, o->p->nodes[best].name) < 0) best = c;
        }
        if (best < 0) return;
        o->order[o->n] = best;
        o->depth[o->n] = dep;
        o->n++;
        visit(o, best, dep + 1);
        last = best;
    }
}

int rmu_eval_order(const rmu_eval_plan *p, int *order, int *depth) {
    order_ctx o = {p, order, depth, 0};
    visit(&o, -1, 0);
    return o.n;
}

/* ---- JSON ---- */

static void put_stat(json_t *o, const char *metric, const rmu_eval_stat *s) {
    char key[64];
    snprintf(key, sizeof key, "%s,none", metric);
    json_object_set_new(o, key, json_real(s->value));
    snprintf(key, sizeof key, "%s_stderr,none", metric);
    json_object_set_new(o, key, s->has_stderr ? json_real(s->stderr) : json_string("N/A"));
}

static json_t *node_json(const rmu_eval_plan *p, int k, int dep) {
    const rmu_eval_node *d = &p->nodes[k];
    json_t *o = json_object();
    put_stat(o, "acc", &d->st_acc);
    if (p->format == RMU_MCQ_CLOZE) put_stat(o, "acc_norm", &d->st_norm);
    /* lm-eval's indentation of nested results: " - " at depth 1, "  - " at depth 2 */
    char alias[160] = "";
    if (dep > 0) {
        int w = 0;
        for (int i = 0; i < dep; i++) alias[w++] = ' ';
        alias[w++] = '-';
        alias[w++] = ' ';
        alias[w] = 0;
    }
    strncat(alias, d->alias, sizeof alias - strlen(alias) - 1);
    json_object_set_new(o, "alias", json_string(alias));
    return o;
}

json_t *rmu_eval_results_json(const rmu_eval_plan *p, json_t *config) {
    int *order = malloc((size_t)(p->n ? p->n : 1) * sizeof(int));
    int *depth = malloc((size_t)(p->n ? p->n : 1) * sizeof(int));
    json_t *root = json_object();
    if (!order || !depth || !root) {
        free(order);
        free(depth);
        json_decref(root);
        json_decref(config);
        return NULL;
    }
    int n = rmu_eval_order(p, order, depth);
    json_t *results = json_object(), *groups = json_object(), *subtasks = json_object(), *nshot = json_object(),
           *nsamples = json_object(), *versions = json_object();
    for (int i = 0; i < n; i++) {
        int k = order[i];
        const rmu_eval_node *d = &p->nodes[k];
        json_object_set_new(results, d->name, node_json(p, k, depth[i]));
        json_object_set_new(nshot, d->name, json_integer(p->num_fewshot));
        json_t *sub = json_array();
        for (int j = 0; j < n; j++)
            if (p->nodes[order[j]].parent == k) json_array_append_new(sub, json_string(p->nodes[order[j]].name));
        json_object_set_new(subtasks, d->name, sub);
        if (d->family == RMU_EVAL_GROUP) {
            json_object_set_new(groups, d->name, node_json(p, k, depth[i]));
            json_object_set_new(versions, d->name, json_string("N/A"));
        } else {
            json_t *ns = json_object();
            json_object_set_new(ns, "original", json_integer(d->n_orig));
            json_object_set_new(ns, "effective", json_integer(d->n));
            json_object_set_new(nsamples, d->name, ns);
            json_object_set_new(versions, d->name, json_integer(0));
        }
    }
    json_object_set_new(root, "results", results);
    if (json_object_size(groups))
        json_object_set_new(root, "groups", groups);
    else
        json_decref(groups);
    json_object_set_new(root, "group_subtasks", subtasks);
    json_object_set_new(root, "versions", versions);
    json_object_set_new(root, "n-shot", nshot);
    json_object_set_new(root, "n-samples", nsamples);
    if (config) json_object_set_new(root, "config", config);
    free(order);
    free(depth);
    return root;
}

/* ---- table ---- */

static void table_rows(rmu_sb *b, const rmu_eval_plan *p, const int *order, const int *depth, int n, int groups_only,
                       int w) {
    rmu_sb_printf(b, "|%-*s|%6s|%6s|%-8s|%6s|   |%6s|\n", w, "Tasks", "n", "n-shot", "Metric", "Value", "Stderr");
    char dash[256];
    memset(dash, '-', (size_t)w);
    dash[w] = 0;
    rmu_sb_printf(b, "|%s|-----:|-----:|--------|-----:|---|-----:|\n", dash);
    for (int i = 0; i < n; i++) {
        const rmu_eval_node *d = &p->nodes[order[i]];
        if (groups_only && d->family != RMU_EVAL_GROUP) continue;
        char label[200] = "";
        int dep = depth[i];
        for (int k = 0; k < dep; k++) strcat(label, " ");
        if (dep) strcat(label, "- ");
        strncat(label, d->alias, sizeof label - strlen(label) - 1);
        for (int m = 0; m < (p->format == RMU_MCQ_CLOZE ? 2 : 1); m++) {
            const rmu_eval_stat *s = m ? &d->st_norm : &d->st_acc;
            char se[32];
            if (s->has_stderr)
                snprintf(se, sizeof se, "%6.4f", s->stderr);
            else
                snprintf(se, sizeof se, "%6s", "N/A");
            rmu_sb_printf(b, "|%-*s|%6ld|%6d|%-8s|%6.4f|±  |%s|\n", w, m ? "" : label, d->samples, p->num_fewshot,
                      m ? "acc_norm" : "acc", s->value, se);
        }
    }
}

char *rmu_eval_table(const rmu_eval_plan *p) {
    int *order = malloc((size_t)(p->n ? p->n : 1) * sizeof(int));
    int *depth = malloc((size_t)(p->n ? p->n : 1) * sizeof(int));
    if (!order || !depth) {
        free(order);
        free(depth);
        return NULL;
    }
    int n = rmu_eval_order(p, order, depth), w = 5, ngroups = 0;
    for (int i = 0; i < n; i++) {
        int l = (int)strlen(p->nodes[order[i]].alias) + (depth[i] ? depth[i] + 2 : 0);
        if (l > w) w = l;
        ngroups += p->nodes[order[i]].family == RMU_EVAL_GROUP;
    }
    if (w > 200) w = 200;
    rmu_sb b = {0};
    table_rows(&b, p, order, depth, n, 0, w);
    if (ngroups) {
        rmu_sb_printf(&b, "\n");
        table_rows(&b, p, order, depth, n, 1, w);
    }
    free(order);
    free(depth);
    return rmu_sb_take(&b);
}
