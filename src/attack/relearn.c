/* relearn.c - the relearning attack: `rmu train`'s engine stepped on the first N texts,
 * the live model evaluated along the way (see relearn.h). */
#include "attack/relearn.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/json.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "io/hfdir.h"
#include "model/check.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/adamw.h"
#include "train/ckpt.h"
#include "train/data.h"

void rmu_relearn_defaults(rmu_relearn_opts *o) {
    memset(o, 0, sizeof *o);
    rmu_ft_defaults(&o->train); /* then the paper's SFT recipe where it differs */
    o->train.max_docs = 10;
    o->train.epochs = 3;
    o->train.batch_size = 1;
    o->train.seq_len = 1024;
    o->train.pack = 0;
    o->train.weight_decay = 0.01;
}

void rmu_relearn_result_free(rmu_relearn_result *r) {
    rmu_report_free(&r->rep);
    free(r->base), free(r->unlearned), free(r->final), free(r->steps), free(r->acc);
    memset(r, 0, sizeof *r);
}

/* ---- the evaluation view: the live model with each trainable tensor as it will be saved
 * (its fp32 master rounded to the file dtype), so in-memory scores equal `rmu eval` on the
 * written folder. F32 tensors need no copy: the master is what gets written. */

typedef struct view_item {
    char name[128];
    const rmu_weight *live; /* master (F32) */
    rmu_weight *dst;        /* slot in the view */
    rmu_dtype dt;           /* file dtype */
    size_t numel;
    void *buf;              /* rounded copy; NULL for F32 */
} view_item;

typedef struct view {
    rmu_model m;
    view_item *it;
    int n;
} view;

static void view_free(view *v) {
    for (int i = 0; i < v->n; i++) free(v->it[i].buf);
    free(v->it);
    free(v->m.layers);
    memset(v, 0, sizeof *v);
}

static int view_init(view *v, rmu_model *live, rmu_err *e) {
    memset(v, 0, sizeof *v);
    v->m = *live;
    v->m.layers = malloc(sizeof(rmu_layer) * (size_t)live->cfg.n_layers);
    v->it = calloc((size_t)live->st.ntensors + 1, sizeof *v->it);
    if (!v->m.layers || !v->it) {
        view_free(v);
        return rmu_errf(e, "out of memory");
    }
    memcpy(v->m.layers, live->layers, sizeof(rmu_layer) * (size_t)live->cfg.n_layers);
    for (int i = 0; i < live->st.ntensors; i++) {
        const rmu_st_tensor *t = &live->st.tensors[i];
        if (live->cfg.tie_word_embeddings && !strcmp(t->name, "lm_head.weight")) continue; /* the embedding */
        rmu_weight *w = rmu_model_weight(live, t->name);
        if (!w || w->data == t->data) continue; /* frozen: still the mmap */
        view_item *q = &v->it[v->n++];
        snprintf(q->name, sizeof q->name, "%s", t->name);
        q->live = w;
        q->dst = rmu_model_weight(&v->m, t->name);
        q->dt = t->dtype;
        q->numel = (size_t)w->rows * (size_t)w->cols;
        if (q->dt != RMU_DT_F32 && !(q->buf = malloc(q->numel * rmu_dtype_size(q->dt)))) {
            view_free(v);
            return rmu_errf(e, "out of memory for the evaluation copy of %s", t->name);
        }
    }
    return 0;
}

/* Brings the view up to the live masters. */
static void view_refresh(view *v) {
    for (int i = 0; i < v->n; i++) {
        view_item *q = &v->it[i];
        *q->dst = *q->live;
        if (q->buf) {
            rmu_from_f32(q->buf, q->live->data, q->dt, q->numel);
            q->dst->data = q->buf;
            q->dst->dtype = q->dt;
        }
    }
    if (v->m.cfg.tie_word_embeddings) v->m.lm_head = v->m.embed;
}

/* The model at this step as a plain HF folder (what rmu_ft_finish would write now). */
static int save_model(const view *v, const rmu_model *live, const char *dir, rmu_err *e) {
    if (rmu_file_exists(dir)) return 0; /* written before a kill: folders appear only whole */
    rmu_hf_opts ho = {.in_dir = live->dir, .in_st = &live->st};
    rmu_hf *w = rmu_hf_open(dir, &ho, e);
    if (!w) return -1;
    int rc = 0;
    for (int i = 0; i < v->n && !rc; i++) rc = rmu_hf_set_data(w, v->it[i].name, v->it[i].live->data, RMU_DT_F32, e);
    const rmu_weight *emb = &live->embed;
    for (int i = 0; i < v->n && !rc; i++)
        if (v->it[i].live == emb && live->cfg.tie_word_embeddings && rmu_st_get(&live->st, "lm_head.weight"))
            rc = rmu_hf_set_data(w, "lm_head.weight", emb->data, RMU_DT_F32, e); /* keep a stored tie in sync */
    if (rc) {
        rmu_hf_abort(w);
        return -1;
    }
    return rmu_hf_commit(w, e);
}

/* ---- the curve: points in memory, mirrored to attack/curve.jsonl */

typedef struct curve {
    int n, cap, nkeys;
    long *steps;
    double *acc;
} curve;

static int curve_add(curve *c, long step, const double *acc, rmu_err *e) {
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 16;
        long *s = realloc(c->steps, sizeof(long) * (size_t)cap);
        if (s) c->steps = s;
        double *a = s ? realloc(c->acc, sizeof(double) * (size_t)cap * (size_t)c->nkeys) : NULL;
        if (a) c->acc = a;
        if (!s || !a) return rmu_errf(e, "out of memory");
        c->cap = cap;
    }
    c->steps[c->n] = step;
    memcpy(c->acc + (size_t)c->n * c->nkeys, acc, sizeof(double) * (size_t)c->nkeys);
    c->n++;
    return 0;
}

static json_t *acc_obj(const rmu_report *r, const double *acc) {
    json_t *o = json_object();
    for (int k = 0; k < r->nkeys; k++)
        json_object_set_new(o, r->keys[k].name, isfinite(acc[k]) ? json_real(acc[k]) : json_null());
    return o;
}

static int acc_from(const rmu_report *r, json_t *o, double *acc, const char *path, rmu_err *e) {
    for (int k = 0; k < r->nkeys; k++) {
        json_t *v = json_object_get(o, r->keys[k].name);
        if (!json_is_number(v) && !json_is_null(v)) return rmu_errf(e, "%s: no value for %s", path, r->keys[k].name);
        acc[k] = json_is_number(v) ? json_number_value(v) : NAN;
    }
    return 0;
}

typedef struct load_ctx {
    const rmu_report *r;
    const json_t *settings;
    const char *path;
    long upto;
    curve *c;
    double *tmp;
    rmu_sb keep; /* the kept lines, re-written */
} load_ctx;

/* The first setting that differs between a run and the one that made `path`, as an error. */
static int settings_differ(const json_t *want, const json_t *got, const char *path, rmu_err *e) {
    const char *key, *what = "the settings";
    json_t *val;
    json_object_foreach((json_t *)want, key, val) if (!json_equal(val, json_object_get(got, key))) {
        what = key;
        break;
    }
    return rmu_errf(e, "resume: %s differs from the run that made %s; use its settings or another output folder",
                    what, path);
}

static int load_line(void *ud, json_t *v, long line, rmu_err *e) {
    load_ctx *L = ud;
    if (!L->keep.n) {
        json_t *s = json_object_get(v, "settings");
        if (!s) return rmu_errf(e, "%s: line %ld: expected the settings line", L->path, line);
        if (!json_equal(s, L->settings)) return settings_differ(L->settings, s, L->path, e);
    } else {
        json_t *st = json_object_get(v, "step");
        if (!json_is_integer(st)) return rmu_errf(e, "%s: line %ld: no step", L->path, line);
        long step = (long)json_integer_value(st);
        if (step > L->upto) return 0; /* evaluated after the checkpoint: redone */
        if (acc_from(L->r, json_object_get(v, "acc"), L->tmp, L->path, e) || curve_add(L->c, step, L->tmp, e)) return -1;
    }
    char *s = rmu_json_dumps_line(v, JSON_COMPACT | JSON_REAL_PRECISION(17));
    if (!s) return rmu_errf(e, "out of memory");
    rmu_sb_puts(&L->keep, s);
    free(s);
    return 0;
}

/* Reads a resumed run's points up to `upto` and rewrites the file with just those. */
static int curve_load(const char *path, const rmu_report *r, const json_t *settings, long upto, curve *c, rmu_err *e) {
    double *tmp = malloc(sizeof(double) * (size_t)r->nkeys);
    if (!tmp) return rmu_errf(e, "out of memory");
    load_ctx L = {r, settings, path, upto, c, tmp, {0}};
    int rc = rmu_jsonl_read(path, RMU_JSONL_TORN_TAIL_OK, load_line, &L, NULL, e);
    if (!rc && !L.keep.n) rc = rmu_errf(e, "%s: empty", path);
    if (!rc && L.keep.oom) rc = rmu_errf(e, "out of memory");
    if (!rc) rc = rmu_file_write_atomic(path, L.keep.p, L.keep.n, e);
    rmu_sb_free(&L.keep);
    free(tmp);
    return rc;
}

/* After a failed run: a work folder without a checkpoint cannot be resumed, so its attack/
 * files (curve points of this run) go too and nothing is left behind; with one it stays. */
static void drop_unresumable(const char *work) {
    long *steps = NULL;
    int n = 0;
    rmu_err ig;
    if (rmu_ckpt_list(work, &steps, &n, &ig) == 0 && n == 0) rmu_hf_rmtree(work);
    free(steps);
}

/* Appends one line and makes it durable before the run goes on. */
static int append_line(const char *path, json_t *j, rmu_err *e) {
    char *s = rmu_json_dumps_line(j, JSON_COMPACT | JSON_REAL_PRECISION(17));
    if (!s) return rmu_errf(e, "out of memory");
    FILE *f = fopen(path, "a");
    int rc = 0;
    if (!f) rc = rmu_errf(e, "%s: cannot open: %s", path, strerror(errno));
    else {
        if (fputs(s, f) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0)
            rc = rmu_errf(e, "%s: write failed: %s", path, strerror(errno));
        if (fclose(f) != 0 && !rc) rc = rmu_errf(e, "%s: write failed: %s", path, strerror(errno));
    }
    free(s);
    return rc;
}

/* ---- the run */

typedef struct run {
    const rmu_relearn_opts *o;
    const rmu_relearn_hooks *h;
    rmu_relearn_result *r;
    rmu_ft *ft;
    rmu_tokenizer *tok;
    view v;
    curve c;
    json_t *settings;
    char dir[4400], curve_path[4500];
    double *tmp;
} run;

static int is_point(const rmu_relearn_opts *o, long step, long total) {
    return step == 0 || step == total || (o->eval_every > 0 && step % o->eval_every == 0);
}

/* Evaluates the live model at `step`, records the point (and the model, if asked). */
static int point(run *R, long step, rmu_err *e) {
    rmu_model *live = rmu_ft_model(R->ft);
    view_refresh(&R->v);
    if (rmu_report_eval(&R->r->rep, &R->v.m, R->tok, R->tmp, e)) return rmu_err_prefix(e, "eval at step %ld", step);
    json_t *j = json_pack("{s:I, s:o}", "step", (json_int_t)step, "acc", acc_obj(&R->r->rep, R->tmp));
    int rc = append_line(R->curve_path, j, e) || curve_add(&R->c, step, R->tmp, e) ? -1 : 0;
    json_decref(j);
    if (!rc && R->o->save_models && step > 0) {
        char d[4600];
        snprintf(d, sizeof d, "%s/step-%ld", R->dir, step);
        rc = save_model(&R->v, live, d, e);
    }
    if (!rc && R->h && R->h->point) R->h->point(R->h->ud, &R->r->rep, step, rmu_ft_total(R->ft), R->tmp);
    return rc;
}

/* What a resumed run must share (the data by content: the samples' hashes, not its path). */
static json_t *settings_json(const rmu_relearn_opts *ro, const rmu_report *rep, json_t *shas) {
    const rmu_ft_opts *o = &ro->train;
    return json_pack("{s:I, s:o, s:s, s:I, s:f, s:i, s:i, s:b, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:s, s:I, s:o, s:I, s:b}",
                     "samples", (json_int_t)o->max_docs, "samples_sha256", shas, "field",
                     o->field ? o->field : "text", "steps", (json_int_t)o->steps, "epochs", o->epochs, "batch_size",
                     o->batch_size, "seq_len", o->seq_len, "pack", o->pack, "lr", o->lr, "weight_decay",
                     o->weight_decay, "clip", o->clip, "adam_beta1", o->beta1, "adam_beta2", o->beta2, "adam_eps",
                     o->eps, "warmup", (json_int_t)o->warmup, "schedule",
                     o->schedule == RMU_SCHED_CONSTANT ? "constant" : o->schedule == RMU_SCHED_COSINE ? "cosine"
                                                                                                      : "linear",
                     "seed", (json_int_t)o->seed, "eval", rmu_report_settings(rep), "eval_every",
                     (json_int_t)ro->eval_every, "save_models", ro->save_models);
}

/* Fills the result's level arrays from the curve. */
static int finish_result(rmu_relearn_result *r, const curve *c, rmu_err *e) {
    int K = r->rep.nkeys;
    r->npoints = c->n;
    r->steps = malloc(sizeof(long) * (size_t)(c->n ? c->n : 1));
    r->acc = malloc(sizeof(double) * (size_t)(c->n ? c->n : 1) * (size_t)K);
    r->unlearned = malloc(sizeof(double) * (size_t)K);
    r->final = malloc(sizeof(double) * (size_t)K);
    if (!r->steps || !r->acc || !r->unlearned || !r->final) return rmu_errf(e, "out of memory");
    if (c->n < 1 || c->steps[0] != 0) return rmu_errf(e, "internal: the curve has no step-0 point");
    memcpy(r->steps, c->steps, sizeof(long) * (size_t)c->n);
    memcpy(r->acc, c->acc, sizeof(double) * (size_t)c->n * (size_t)K);
    memcpy(r->unlearned, c->acc, sizeof(double) * (size_t)K);
    memcpy(r->final, c->acc + (size_t)(c->n - 1) * K, sizeof(double) * (size_t)K);
    return 0;
}

static json_t *result_json(const run *R, const rmu_relearn_result *r) {
    json_t *pts = json_array();
    for (int i = 0; i < r->npoints; i++)
        json_array_append_new(pts, json_pack("{s:I, s:o}", "step", (json_int_t)r->steps[i], "acc",
                                             acc_obj(&r->rep, r->acc + (size_t)i * r->rep.nkeys)));
    return json_pack("{s:s, s:s, s:s, s:s, s:O, s:I, s:I, s:o, s:o, s:f}", "attack", "relearn", "model",
                     R->o->train.model_dir, "data", R->o->train.data, "output", R->o->train.out_dir, "settings", R->settings, "steps",
                     (json_int_t)r->total_steps, "start_step", (json_int_t)r->start_step, "curve", pts, "accuracy",
                     rmu_report_json(&r->rep, r->base, r->unlearned, r->final), "seconds", r->seconds);
}

/* OUT was finished by an earlier run with these settings: its relearn.json is the result. */
static int load_finished(run *R, rmu_err *e) {
    char path[4200];
    snprintf(path, sizeof path, "%s/attack/relearn.json", R->o->train.out_dir);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) return rmu_errf(e, "out_dir: %s is complete but %s cannot be read (%s)", R->o->train.out_dir, path, je.text);
    int rc = 0;
    if (!json_equal(json_object_get(j, "settings"), R->settings))
        rc = settings_differ(R->settings, json_object_get(j, "settings"), path, e);
    json_t *pts = json_object_get(j, "curve"), *p;
    size_t i;
    json_array_foreach(pts, i, p) {
        if (rc) break;
        json_t *st = json_object_get(p, "step");
        rc = !json_is_integer(st) || acc_from(&R->r->rep, json_object_get(p, "acc"), R->tmp, path, e) ||
                     curve_add(&R->c, (long)json_integer_value(st), R->tmp, e) ? -1 : 0;
        if (rc && !json_is_integer(st)) rmu_errf(e, "%s: a curve point has no step", path);
    }
    json_decref(j);
    return rc;
}

static int read_samples(const rmu_ft_opts *o, json_t **shas, rmu_err *e) {
    rmu_data_docs d;
    if (rmu_data_read(&d, o->data, o->field, e)) return rmu_err_prefix(e, "data");
    int rc = 0;
    if (d.n < (size_t)o->max_docs)
        rc = rmu_errf(e, "max_docs: %ld texts requested, %s holds %zu", o->max_docs, o->data, d.n);
    *shas = json_array();
    for (size_t i = 0; i < (size_t)o->max_docs && !rc; i++) {
        char hex[65];
        rmu_sha256_hex(d.text[i], d.len[i], hex);
        json_array_append_new(*shas, json_string(hex));
    }
    rmu_data_docs_free(&d);
    return rc;
}

int rmu_relearn_run(const rmu_relearn_opts *o, const rmu_relearn_hooks *h, rmu_relearn_result *r, rmu_err *e) {
    memset(r, 0, sizeof *r);
    double t0 = rmu_now_s();
    const rmu_ft_opts *t = &o->train;
    if (!t->model_dir || !t->out_dir || !t->data) return rmu_errf(e, "model_dir, data and out_dir are required");
    if (t->max_docs < 1) return rmu_errf(e, "max_docs: %ld is out of range (at least 1)", t->max_docs);
    if (o->eval_every < 0) return rmu_errf(e, "eval_every: %ld is out of range", o->eval_every);
    if (o->n_suites < 1) return rmu_errf(e, "eval: at least one evaluation (tasks and data) is needed");
    if (rmu_hf_same_dir(t->out_dir, t->model_dir))
        return rmu_errf(e, "out_dir: %s is the input model folder; write to another folder", t->out_dir);
    run R = {.o = o, .h = h, .r = r};
    json_t *shas = NULL;
    int rc = -1;
    if (rmu_report_open(&r->rep, o->suites, o->n_suites, &o->eval, e)) return -1;
    R.c.nkeys = r->rep.nkeys;
    if (!(R.tmp = malloc(sizeof(double) * (size_t)r->rep.nkeys))) {
        rmu_errf(e, "out of memory");
        goto out;
    }
    if (read_samples(t, &shas, e)) goto out;
    R.settings = settings_json(o, &r->rep, shas);
    shas = NULL;
    /* a base folder is checked now and evaluated once the run is open (hours on a big model:
     * after every cheap check); results files are read now */
    int base_dir = 0;
    if (o->base) {
        struct stat bs;
        base_dir = stat(o->base, &bs) == 0 && S_ISDIR(bs.st_mode);
        if (!(r->base = malloc(sizeof(double) * (size_t)r->rep.nkeys))) {
            rmu_errf(e, "out of memory");
            goto out;
        }
        rmu_model bm;
        if (base_dir ? rmu_model_load(&bm, o->base, e) : rmu_report_read_results(&r->rep, o->base, r->base, e)) {
            rmu_err_prefix(e, "base");
            goto out;
        }
        if (base_dir) rmu_model_free(&bm);
    }
    rmu_ft_opts fo = *t;
    if (!(fo.epochs > 0)) fo.epochs = 1;
    if (fo.keep_checkpoints < 1) fo.keep_checkpoints = 2;
    if (!(R.ft = rmu_ft_open(&fo, h ? h->note : NULL, h ? h->ud : NULL, e))) goto out;
    long done = rmu_ft_done(R.ft), total = rmu_ft_total(R.ft);
    r->start_step = done, r->total_steps = total, r->samples = t->max_docs;
    snprintf(R.dir, sizeof R.dir, "%s/attack", rmu_ft_work_dir(R.ft));
    snprintf(R.curve_path, sizeof R.curve_path, "%s/curve.jsonl", R.dir);
    if (done == total && done > 0 && !rmu_file_exists(R.curve_path)) { /* OUT finished earlier */
        if ((base_dir && rmu_report_eval_dir(&r->rep, o->base, r->base, e) && rmu_err_prefix(e, "base")) ||
            load_finished(&R, e) || finish_result(r, &R.c, e))
            goto out;
        r->already_complete = 1;
        r->seconds = rmu_now_s() - t0;
        rc = 0;
        goto out;
    }
    if (base_dir && rmu_report_eval_dir(&r->rep, o->base, r->base, e)) {
        rmu_err_prefix(e, "base");
        goto out;
    }
    if (!(R.tok = rmu_tok_load(t->model_dir, e)) || view_init(&R.v, rmu_ft_model(R.ft), e)) goto out;
    if (done == 0) {
        json_t *hdr = json_pack("{s:O}", "settings", R.settings);
        char *line = rmu_json_dumps_line(hdr, JSON_COMPACT | JSON_REAL_PRECISION(17));
        json_decref(hdr);
        int w = !line ? rmu_errf(e, "out of memory")
                      : rmu_mkdirs(R.dir, e) || rmu_file_write_atomic(R.curve_path, line, strlen(line), e);
        free(line);
        if (w) goto out;
    } else {
        if (!rmu_file_exists(R.curve_path)) {
            rmu_errf(e, "resume: %s is missing, so the curve before step %ld is lost; remove %s to start over",
                     R.curve_path, done, rmu_ft_work_dir(R.ft));
            goto out;
        }
        if (curve_load(R.curve_path, &r->rep, R.settings, done, &R.c, e)) goto out;
    }
    /* the point at the resume step is missing when the kill came between its checkpoint and
     * its evaluation: the weights are the checkpoint's, so it is recomputed exactly */
    if (is_point(o, done, total) && (R.c.n == 0 || R.c.steps[R.c.n - 1] != done) && point(&R, done, e)) goto out;
    rmu_ft_status st;
    int k;
    while ((k = rmu_ft_step(R.ft, &st, e)) > 0) {
        if (h && h->step) h->step(h->ud, &st);
        if (is_point(o, st.step, total) && point(&R, st.step, e)) goto out;
    }
    if (k < 0 || finish_result(r, &R.c, e)) goto out;
    r->seconds = rmu_now_s() - t0;
    char path[4600];
    json_t *res = result_json(&R, r);
    snprintf(path, sizeof path, "%s/relearn.json", R.dir);
    int w = rmu_json_write_file(path, res, JSON_INDENT(2) | JSON_REAL_PRECISION(17), e);
    json_decref(res);
    snprintf(path, sizeof path, "%s/relearn.svg", R.dir);
    if (w || rmu_relearn_write_svg(path, r, "relearning attack: accuracy vs fine-tuning step", e)) goto out;
    rmu_ft_result fr;
    if (rmu_ft_finish(R.ft, &fr, e)) goto out;
    rc = 0;
out:
    if (rc && R.ft) drop_unresumable(rmu_ft_work_dir(R.ft));
    json_decref(shas);
    json_decref(R.settings);
    view_free(&R.v);
    rmu_tok_free(R.tok);
    rmu_ft_close(R.ft);
    free(R.c.steps), free(R.c.acc), free(R.tmp);
    if (rc) rmu_relearn_result_free(r);
    return rc;
}

/* ---- SVG */

static const char *const COLORS[] = {"#c0392b", "#2471a3", "#27ae60", "#8e44ad", "#d35400",
                                     "#16a085", "#7f8c8d", "#2c3e50", "#f39c12", "#e84393"};

int rmu_relearn_write_svg(const char *path, const rmu_relearn_result *r, const char *title, rmu_err *e) {
    rmu_sb s = {0};
    const double X0 = 70, Y0 = 60, W = 520, H = 300;
    long last = r->npoints ? r->steps[r->npoints - 1] : 1;
    if (last < 1) last = 1;
    rmu_sb_printf(&s, "<svg xmlns='http://www.w3.org/2000/svg' width='900' height='420' font-family='sans-serif'>\n"
                      "<rect width='100%%' height='100%%' fill='white'/>\n"
                      "<text x='20' y='28' font-size='16' font-weight='bold'>%s</text>\n", title);
    rmu_sb_printf(&s, "<rect x='%.0f' y='%.0f' width='%.0f' height='%.0f' fill='none' stroke='#999'/>\n", X0, Y0, W, H);
    for (int t = 0; t <= 4; t++)
        rmu_sb_printf(&s, "<text x='%.0f' y='%.1f' font-size='10' text-anchor='end'>%d%%</text>\n", X0 - 4,
                      Y0 + H - H * t / 4.0 + 3, 25 * t);
    rmu_sb_printf(&s, "<text x='%.0f' y='%.0f' font-size='10'>0</text><text x='%.0f' y='%.0f' font-size='10' "
                      "text-anchor='end'>step %ld</text>\n", X0, Y0 + H + 14, X0 + W, Y0 + H + 14, last);
    rmu_sb_printf(&s, "<text x='%.0f' y='%.0f' font-size='11'>solid: after relearning steps; dashed: base model; "
                      "dotted: unlearned (step 0)</text>\n", X0, Y0 + H + 34);
    int c = 0;
    for (int k = 0; k < r->rep.nkeys; k++) {
        if (r->rep.keys[k].depth > 1) continue;
        const char *col = COLORS[c % (int)(sizeof COLORS / sizeof COLORS[0])];
        double ly = Y0 + 10 + 18 * c;
        c++;
        if (r->base && isfinite(r->base[k]))
            rmu_sb_printf(&s, "<line x1='%.0f' x2='%.0f' y1='%.1f' y2='%.1f' stroke='%s' stroke-dasharray='6,4'/>\n", X0,
                          X0 + W, Y0 + H - H * r->base[k], Y0 + H - H * r->base[k], col);
        if (r->unlearned && isfinite(r->unlearned[k]))
            rmu_sb_printf(&s, "<line x1='%.0f' x2='%.0f' y1='%.1f' y2='%.1f' stroke='%s' stroke-dasharray='1,3'/>\n",
                          X0, X0 + W, Y0 + H - H * r->unlearned[k], Y0 + H - H * r->unlearned[k], col);
        rmu_sb_printf(&s, "<polyline fill='none' stroke='%s' stroke-width='2' points='", col);
        for (int i = 0; i < r->npoints; i++) {
            double a = r->acc[(size_t)i * r->rep.nkeys + k];
            if (isfinite(a)) rmu_sb_printf(&s, "%.1f,%.1f ", X0 + W * r->steps[i] / last, Y0 + H - H * a);
        }
        rmu_sb_puts(&s, "'/>\n");
        double f = rmu_report_recovered(r->base ? r->base[k] : NAN, r->unlearned[k], r->final[k]);
        char rec[48] = "";
        if (isfinite(f)) snprintf(rec, sizeof rec, ", recovered %.2f", f);
        rmu_sb_printf(&s, "<rect x='610' y='%.0f' width='12' height='4' fill='%s'/><text x='628' y='%.0f' "
                          "font-size='11'>%s: %.1f%% -&gt; %.1f%%%s</text>\n",
                      ly, col, ly + 5, r->rep.keys[k].name, 100 * r->unlearned[k], 100 * r->final[k], rec);
    }
    rmu_sb_puts(&s, "</svg>\n");
    return rmu_file_write_sb(path, &s, e);
}
