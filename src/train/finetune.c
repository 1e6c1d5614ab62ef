/* finetune.c - `rmu train`: open / step / finish of a fine-tuning run (see finetune.h). */
#include "train/finetune.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/json.h"
#include "core/rng.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "io/hfdir.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/adamw.h"
#include "model/check.h"
#include "train/ckpt.h"
#include "train/data.h"
#include "train/trainer.h"

#define WORK_SUFFIX ".rmu-work"

void rmu_ft_defaults(rmu_ft_opts *o) {
    memset(o, 0, sizeof *o);
    /* transformers.TrainingArguments defaults where they exist */
    o->epochs = 1;
    o->batch_size = 8;
    o->seq_len = 512;
    o->pack = 1;
    o->lr = 5e-5;
    o->weight_decay = 0;
    o->clip = 1.0;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
    o->schedule = RMU_SCHED_LINEAR;
    o->seed = 42;
    o->keep_checkpoints = 2;
    o->loss_layer = -1;
}

/* ---------------------------------------------------------------- fixed batches (tests) */

typedef struct {
    int B, T;
    int *tokens, *mask;
} fixed_batch;

static void fixed_free(fixed_batch *b, int n) {
    for (int i = 0; i < n; i++) free(b[i].tokens), free(b[i].mask);
    free(b);
}

static int int_rows(json_t *rows, const char *path, int k, const char *what, int *B, int *T, int **out, rmu_err *e) {
    if (!json_is_array(rows) || json_array_size(rows) == 0)
        return rmu_errf(e, "%s: batch %d: %s must be a non-empty array of rows", path, k, what);
    int b = (int)json_array_size(rows);
    json_t *r0 = json_array_get(rows, 0);
    int t = json_is_array(r0) ? (int)json_array_size(r0) : 0;
    if (t == 0) return rmu_errf(e, "%s: batch %d: %s rows must be non-empty arrays", path, k, what);
    if ((*B && *B != b) || (*T && *T != t))
        return rmu_errf(e, "%s: batch %d: %s is [%d, %d], input_ids [%d, %d]", path, k, what, b, t, *B, *T);
    *B = b, *T = t;
    int *v = malloc(sizeof(int) * b * t);
    if (!v) return rmu_errf(e, "out of memory");
    for (int i = 0; i < b; i++) {
        json_t *r = json_array_get(rows, i);
        if (!json_is_array(r) || (int)json_array_size(r) != t) {
            free(v);
            return rmu_errf(e, "%s: batch %d: %s row %d does not have %d entries", path, k, what, i, t);
        }
        for (int j = 0; j < t; j++) {
            json_t *x = json_array_get(r, j);
            if (!json_is_integer(x)) {
                free(v);
                return rmu_errf(e, "%s: batch %d: %s[%d][%d] is not an integer", path, k, what, i, j);
            }
            v[i * t + j] = (int)json_integer_value(x);
        }
    }
    *out = v;
    return 0;
}

static int load_fixed(const char *path, fixed_batch **out, int *n, rmu_err *e) {
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) return rmu_errf(e, "%s:%d: %s", path, je.line, je.text);
    int cnt = json_is_array(root) ? (int)json_array_size(root) : 1;
    fixed_batch *b = calloc(cnt ? cnt : 1, sizeof *b);
    if (!b || cnt == 0) {
        json_decref(root);
        free(b);
        return rmu_errf(e, "%s: no batch", path);
    }
    for (int k = 0; k < cnt; k++) {
        json_t *o = json_is_array(root) ? json_array_get(root, k) : root;
        json_t *ids = json_object_get(o, "input_ids"), *mk = json_object_get(o, "attention_mask");
        if (!json_is_object(o) || !ids) {
            json_decref(root);
            fixed_free(b, cnt);
            return rmu_errf(e, "%s: batch %d: expected an object with input_ids", path, k);
        }
        if (int_rows(ids, path, k, "input_ids", &b[k].B, &b[k].T, &b[k].tokens, e) ||
            (mk && int_rows(mk, path, k, "attention_mask", &b[k].B, &b[k].T, &b[k].mask, e))) {
            json_decref(root);
            fixed_free(b, cnt);
            return -1;
        }
    }
    json_decref(root);
    *out = b;
    *n = cnt;
    return 0;
}

/* Settings a resumed run must share with the checkpoint (anything that changes the math). */
static json_t *run_fingerprint(const rmu_ft_opts *o, const rmu_data *d, long total, int ntensors) {
    char h[32];
    snprintf(h, sizeof h, "%016llx", d ? (unsigned long long)d->hash : 0ull);
    return json_pack("{s:s, s:I, s:I, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:i, s:s, s:i, s:i, s:I}",
                     "data_hash", h, "n_sequences", (json_int_t)(d ? d->nseq : 0), "total_steps", (json_int_t)total,
                     "batch_size", o->batch_size, "seq_len", o->seq_len, "pack", o->pack, "lr", o->lr,
                     "weight_decay", o->weight_decay, "clip", o->clip, "beta1", o->beta1, "beta2", o->beta2, "eps",
                     o->eps, "warmup", (json_int_t)o->warmup, "schedule", o->schedule, "trainable",
                     o->trainable ? o->trainable : "", "n_trainable_tensors", ntensors, "loss_layer", o->loss_layer,
                     "seed", (json_int_t)o->seed);
}

/* ---------------------------------------------------------------- log */

typedef struct {
    long step;
    unsigned char *keep; /* [lines + 1]: 1 = keep that (1-based) line */
    long nlines;
} trim_ctx;

static int trim_line(void *ud, json_t *v, long line, rmu_err *e) {
    trim_ctx *c = ud;
    json_t *s = json_object_get(v, "step");
    long st = json_is_integer(s) ? (long)json_integer_value(s) : -1;
    if (line <= c->nlines && st >= 1 && st <= c->step) c->keep[line] = 1;
    return 0;
}

/* Keeps the lines of an existing log whose "step" <= step (resume after a kill; a last line
 * cut by the kill is dropped). */
static int trim_log(const char *path, long step, rmu_err *e) {
    if (!rmu_file_exists(path)) return 0;
    size_t n;
    char *buf = rmu_file_read_all(path, &n, e);
    if (!buf) return -1;
    trim_ctx c = {step, NULL, 1};
    for (size_t i = 0; i < n; i++) c.nlines += buf[i] == '\n';
    if (!(c.keep = calloc((size_t)c.nlines + 1, 1))) {
        free(buf);
        return rmu_errf(e, "%s: out of memory", path);
    }
    rmu_sb out = {0};
    int rc = rmu_jsonl_parse(path, buf, n, RMU_JSONL_TORN_TAIL_OK, trim_line, &c, e);
    long line = 0;
    for (size_t i = 0; !rc && i < n;) { /* the kept lines, byte for byte */
        const char *nl = memchr(buf + i, '\n', n - i);
        size_t j = nl ? (size_t)(nl - buf) : n;
        if (c.keep[++line]) {
            rmu_sb_add(&out, buf + i, j - i);
            rmu_sb_putc(&out, '\n');
        }
        i = j + 1;
    }
    if (!rc && out.oom) rc = rmu_errf(e, "%s: out of memory", path);
    if (!rc) rc = rmu_file_write_atomic(path, out.p ? out.p : "", out.n, e);
    rmu_sb_free(&out);
    free(c.keep);
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------- the run */

struct rmu_ft {
    rmu_ft_opts o;
    rmu_ft_note_fn note;
    void *ud;
    rmu_model m;
    int have_m, have_tr;
    rmu_tokenizer *tok;
    rmu_data data;
    fixed_batch *fixed;
    int nfixed;
    rmu_tr tr;
    json_t *fp;
    int *perm, *btok, *bmask;
    FILE *logf;
    rmu_hf_lock *lock; /* on OUT (and so W) from open to close */
    char work[4200];
    int maxB, maxT, pad, done_already;
    long spe, total, start, s, cur_epoch, last_ckpt, ntok_run;
    double t0;
    rmu_ft_result r;
};

static void note(const rmu_ft *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(const rmu_ft *h, const char *fmt, ...) {
    if (!h->note) return;
    char msg[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    h->note(h->ud, msg);
}

/* 1 when path exists and is not an empty folder. */
static int occupied(const char *path) {
    rmu_err ig;
    struct stat st;
    return stat(path, &st) == 0 && rmu_hf_check_out(path, NULL, 0, &ig) != 0;
}

/* W and OUT against this run (finetune.h): refuse, remove a stale W, or find the step to
 * resume from (h->start) or that OUT is already complete (h->done_already). */
static int prepare_out(rmu_ft *h, rmu_err *e) {
    const rmu_ft_opts *o = &h->o;
    if (rmu_hf_same_dir(o->out_dir, o->model_dir))
        return rmu_errf(e, "out_dir: %s is the input model folder; write to another folder", o->out_dir);
    if (!(h->lock = rmu_hf_lock_take(o->out_dir, e))) return rmu_err_prefix(e, "out_dir");
    size_t ol = strlen(o->out_dir);
    while (ol > 1 && o->out_dir[ol - 1] == '/') ol--;
    if (snprintf(h->work, sizeof h->work, "%.*s" WORK_SUFFIX, (int)ol, o->out_dir) >= (int)sizeof h->work)
        return rmu_errf(e, "out_dir: %s: path too long", o->out_dir);
    long *wck = NULL, *ock = NULL;
    int nw = 0, no = 0, rc = -1, full = occupied(o->out_dir);
    if (rmu_ckpt_list(h->work, &wck, &nw, e) || (full && rmu_ckpt_list(o->out_dir, &ock, &no, e))) goto out;
    if (nw && !o->resume) {
        rmu_errf(e, "out_dir: %s already holds checkpoint-%ld of an interrupted run; pass option resume to continue "
                    "it, or remove that folder", h->work, wck[nw - 1]);
        goto out;
    }
    if (!nw && full && o->resume && no) { /* a finished run: same settings, nothing to do */
        if (rmu_ckpt_check(o->out_dir, ock[no - 1], h->fp, e)) {
            rmu_err_prefix(e, "resume");
            goto out;
        }
        h->done_already = 1;
        note(h, "%s is already complete (checkpoint-%ld has these settings); nothing to do", o->out_dir, ock[no - 1]);
        rc = 0;
        goto out;
    }
    if (full && !o->overwrite) {
        if (no)
            rmu_errf(e, "out_dir: %s already holds checkpoint-%ld; pass option resume to continue it or option "
                        "overwrite to replace it, or choose another folder", o->out_dir, ock[no - 1]);
        else
            rmu_errf(e, "out_dir: %s already exists; pass option overwrite to replace it or choose another folder",
                     o->out_dir);
        goto out;
    }
    if (full && !o->no_output && rmu_hf_check_out(o->out_dir, o->model_dir, RMU_HF_REPLACE, e)) {
        rmu_err_prefix(e, "out_dir");
        goto out;
    }
    if (nw) {
        h->start = wck[nw - 1];
        if (rmu_ckpt_load(h->work, h->start, &h->tr, h->fp, e) || rmu_ckpt_prune(h->work, o->keep_checkpoints, e)) {
            rmu_err_prefix(e, "resume");
            goto out;
        }
        note(h, "resuming from %s/checkpoint-%ld (step %ld of %ld)", h->work, h->start, h->start, h->total);
    } else {
        if (rmu_hf_rmtree(h->work)) { /* no checkpoint: nothing in it to keep */
            rmu_errf(e, "out_dir: cannot remove the stale work folder %s", h->work);
            goto out;
        }
        if (o->resume) note(h, "resume: no checkpoint in %s; starting at step 0", h->work);
    }
    if (h->start > h->total) {
        rmu_errf(e, "resume: checkpoint step %ld is past the %ld steps of this run", h->start, h->total);
        goto out;
    }
    rc = 0;
out:
    free(wck);
    free(ock);
    return rc;
}

rmu_model *rmu_ft_model(rmu_ft *h) { return &h->m; }
long rmu_ft_done(const rmu_ft *h) { return h->s; }
long rmu_ft_total(const rmu_ft *h) { return h->total; }
const char *rmu_ft_work_dir(const rmu_ft *h) { return h->work; }

void rmu_ft_close(rmu_ft *h) {
    if (!h) return;
    if (h->logf) fclose(h->logf);
    rmu_hf_lock_release(h->lock);
    free(h->perm), free(h->btok), free(h->bmask);
    json_decref(h->fp);
    if (h->have_tr) rmu_tr_free(&h->tr);
    fixed_free(h->fixed, h->nfixed);
    rmu_data_free(&h->data);
    rmu_tok_free(h->tok);
    if (h->have_m) rmu_model_free(&h->m);
    free(h);
}

/* Model, batches (fixed or from the corpus) and trainer. */
static int open_inputs(rmu_ft *h, rmu_err *e) {
    const rmu_ft_opts *o = &h->o;
    if (rmu_model_open(&h->m, o->model_dir, e)) return -1;
    rmu_model_set_precision(&h->m, o->precision);
    h->have_m = 1;
    const rmu_config *c = &h->m.cfg;
    if (o->out_dtype != RMU_DT_INVALID && c->quant != RMU_QUANT_NONE) /* FP8 codes are no values without scales */
        return rmu_errf(e, "out_dtype: %s is an FP8 model (quantization_config): its tensors keep their dtypes",
                        o->model_dir);
    if (o->seq_len > c->max_position_embeddings && c->max_position_embeddings > 0)
        return rmu_errf(e, "seq_len: %d exceeds max_position_embeddings %d of %s", o->seq_len,
                        c->max_position_embeddings, o->model_dir);
    h->maxB = o->batch_size, h->maxT = o->seq_len;
    if (o->batch_json) {
        if (load_fixed(o->batch_json, &h->fixed, &h->nfixed, e)) return -1;
        h->maxB = h->maxT = 1;
        for (int i = 0; i < h->nfixed; i++) {
            if (h->fixed[i].B > h->maxB) h->maxB = h->fixed[i].B;
            if (h->fixed[i].T > h->maxT) h->maxT = h->fixed[i].T;
        }
        if (h->maxT > c->max_position_embeddings && c->max_position_embeddings > 0)
            return rmu_errf(e, "%s: rows of %d tokens exceed max_position_embeddings %d", o->batch_json, h->maxT,
                            c->max_position_embeddings);
    } else {
        rmu_data_docs docs;
        if (!(h->tok = rmu_tok_load(o->model_dir, e)) || rmu_check_tokenizer(&h->m, h->tok, e)) return -1;
        if (rmu_data_read(&docs, o->data, o->field, e)) return rmu_err_prefix(e, "data");
        while (o->max_docs > 0 && docs.n > (size_t)o->max_docs) free(docs.text[--docs.n]);
        int eos = rmu_tok_eos_id(h->tok) >= 0 ? rmu_tok_eos_id(h->tok) : c->eos_id;
        int rc = rmu_data_tokenize(&h->data, &docs, h->tok, rmu_tok_add_bos(h->tok), eos, o->seq_len, o->pack, e);
        rmu_data_docs_free(&docs);
        if (rc) return -1;
        h->maxT = h->data.max_len;
        if (h->maxB > h->data.nseq) h->maxB = h->data.nseq;
    }
    rmu_tr_opts to = {.trainable = o->trainable, .max_batch = h->maxB, .max_seq = h->maxT, .last_layer = o->loss_layer};
    if (rmu_tr_init(&h->tr, &h->m, &to, e)) return -1;
    h->have_tr = 1;
    h->pad = c->pad_id >= 0 ? c->pad_id : (h->tok && rmu_tok_pad_id(h->tok) >= 0) ? rmu_tok_pad_id(h->tok)
           : c->eos_id >= 0 ? c->eos_id : 0;
    return 0;
}

/* What every rank does alone: options, model, batches, trainer, buffers. */
static int open_local(rmu_ft *h, rmu_err *e) {
    const rmu_ft_opts *o = &h->o;
    if (!o->model_dir || (!o->out_dir && !o->dump_grads)) return rmu_errf(e, "model_dir and out_dir are required");
    if (o->batch_size < 1 || o->seq_len < 2)
        return rmu_errf(e, "%s: out of range", o->batch_size < 1 ? "batch_size" : "seq_len");
    if (o->dist && o->dist->size > 1 && o->loss_layer >= 0)
        return rmu_errf(e, "loss_layer: the proxy loss runs on one rank only (start one process)");
    if (open_inputs(h, e)) return -1;
    h->r.n_tensors = h->tr.nparams;
    h->r.n_trainable = (long)h->tr.n_trainable;
    h->r.n_sequences = h->fixed ? h->nfixed : h->data.nseq;
    h->r.n_tokens = h->fixed ? 0 : (long)h->data.ntokens;
    if (o->dump_grads) return 0;
    h->spe = h->fixed ? h->nfixed : rmu_data_steps_per_epoch(&h->data, o->batch_size);
    h->total = o->steps > 0 ? o->steps : (long)ceil(o->epochs * h->spe);
    if (h->total < 1) h->total = 1;
    if (!(h->fp = run_fingerprint(o, h->fixed ? NULL : &h->data, h->total, h->tr.nparams)))
        return rmu_errf(e, "out of memory");
    h->perm = malloc(sizeof(int) * (h->fixed ? 1 : h->data.nseq));
    h->btok = malloc(sizeof(int) * (size_t)h->maxB * h->maxT);
    h->bmask = malloc(sizeof(int) * (size_t)h->maxB * h->maxT);
    if (!h->perm || !h->btok || !h->bmask) return rmu_errf(e, "out of memory");
    return 0;
}

/* What rank 0 alone does: OUT and W (resume point), the log. */
static int open_outputs(rmu_ft *h, rmu_err *e) {
    const rmu_ft_opts *o = &h->o;
    if (prepare_out(h, e)) return -1;
    if (o->log_path && !h->done_already) {
        if ((o->resume ? trim_log(o->log_path, h->start, e) : 0)) return -1;
        if (!(h->logf = fopen(o->log_path, o->resume ? "a" : "w")))
            return rmu_errf(e, "log_path: %s: cannot open: %s", o->log_path, strerror(errno));
    }
    return 0;
}

/* Several ranks: the same run everywhere (data and settings, by the resume fingerprint). */
static int same_run(rmu_ft *h, rmu_err *e) {
    const rmu_dist *d = h->o.dist;
    if (!d || d->size <= 1) return 0;
    char *fp = json_dumps(h->fp, JSON_COMPACT | JSON_SORT_KEYS);
    uint64_t hash = fp ? rmu_fnv1a(RMU_FNV_INIT, fp, strlen(fp)) : 0;
    free(fp);
    if (rmu_dist_same(d, hash, "training data or settings", e)) return -1;
    return 0;
}

/* Several ranks: rank 0's resume point, and its checkpoint's masters and AdamW moments. */
static int sync_resume(rmu_ft *h, rmu_err *e) {
    const rmu_dist *d = h->o.dist;
    if (!d || d->size <= 1) return 0;
    long v[2] = {h->start, h->done_already};
    if (rmu_dist_bcast(d, v, sizeof v, e)) return -1;
    h->start = v[0];
    h->done_already = (int)v[1];
    if (h->start == 0 || h->done_already) return 0;
    rmu_tr *tr = &h->tr;
    size_t n = sizeof(float) * tr->n_trainable;
    if (rmu_dist_bcast(d, tr->master_mem, n, e) || rmu_dist_bcast(d, tr->m_mem, n, e) ||
        rmu_dist_bcast(d, tr->v_mem, n, e))
        return -1;
    return 0;
}

rmu_ft *rmu_ft_open(const rmu_ft_opts *o, rmu_ft_note_fn notefn, void *ud, rmu_err *e) {
    rmu_ft *h = calloc(1, sizeof *h);
    if (!h) {
        rmu_errf(e, "out of memory");
        return NULL;
    }
    h->o = *o;
    h->note = notefn, h->ud = ud;
    h->cur_epoch = -1;
    const rmu_dist *d = o->dist;
    /* every step that can fail on one rank only is agreed on before the next collective */
    if (rmu_dist_agree(d, open_local(h, e), e)) goto fail;
    if (o->dump_grads) return h;
    if (same_run(h, e)) goto fail;
    if (rmu_dist_agree(d, rmu_dist_root(d) ? open_outputs(h, e) : 0, e) || sync_resume(h, e)) goto fail;
    h->s = h->last_ckpt = h->r.start_step = h->start;
    if (h->done_already) h->s = h->r.start_step = h->total;
    h->t0 = rmu_now_s();
    return h;
fail:
    rmu_ft_close(h);
    return NULL;
}

/* The gradient of the batch's mean loss into tr->grad_mem, and the loss. One process: the
 * trainer on the whole batch. Several ranks: each runs its share of the rows, the loss
 * divided by the whole batch's target count (so the shares add up to the mean), then one
 * allreduce of the gradient buffer. A set_batch error is prefixed by where (or not). */
static int batch_grads(rmu_ft *h, const int *tk, const int *mk, int B, int T, const char *where, double *loss,
                       rmu_err *e) {
    rmu_tr *tr = &h->tr;
    const rmu_dist *d = h->o.dist;
    rmu_tr_zero_grad(tr);
    if (!d || d->size <= 1) {
        if (rmu_tr_set_batch(tr, tk, mk, B, T, e)) return where ? rmu_err_prefix(e, "%s", where) : -1;
        return rmu_tr_loss_and_grad(tr, loss, e);
    }
    long lo, hi;
    rmu_dist_split(B, d, &lo, &hi);
    int nt = 0, rc = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t + 1 < T; t++) nt += !mk || (mk[b * T + t] && mk[b * T + t + 1]);
    double part = 0;
    if (hi > lo) {
        rc = rmu_tr_set_batch(tr, tk + lo * T, mk ? mk + lo * T : NULL, (int)(hi - lo), T, e);
        if (rc && where) rmu_err_prefix(e, "%s", where);
        /* the trainer divides by n_targets: the whole batch's, not this share's */
        if (!rc) tr->n_targets = nt;
        if (!rc) rc = rmu_tr_loss_and_grad(tr, &part, e);
    }
    if (rmu_dist_agree(d, rc, e) || rmu_dist_sum_f64(d, &part, 1, e) ||
        rmu_dist_sum_f32(d, tr->grad_mem, tr->n_trainable, e))
        return -1;
    *loss = nt ? part : NAN;
    return 0;
}

/* Rank 0's part of a step: checkpoint and log line. */
static int record_step(rmu_ft *h, long s, double loss, double lr, double gnorm, int ntok, double step_s, rmu_err *e) {
    const rmu_ft_opts *o = &h->o;
    /* the log line first: a kill between the two leaves a line past the newest checkpoint,
     * which a resume drops, never a checkpoint whose line is missing */
    if (h->logf) {
        fprintf(h->logf,
                "{\"step\": %ld, \"loss\": %.9g, \"lr\": %.9g, \"grad_norm\": %.9g, \"tokens_per_s\": %.1f, "
                "\"tokens\": %d, \"epoch\": %.4f, \"step_s\": %.3f}\n",
                s + 1, loss, lr, gnorm, step_s > 0 ? ntok / step_s : 0.0, ntok, (double)(s + 1) / h->spe, step_s);
        if (fflush(h->logf) != 0) return rmu_errf(e, "log_path: %s: write failed: %s", o->log_path, strerror(errno));
    }
    if (o->save_every > 0 && (s + 1) % o->save_every == 0) {
        /* the only random stream is the data order: SplitMix64 seeded per epoch from the run
         * seed (rmu_data_epoch_order), so (seed, epoch, batch_in_epoch) is the whole RNG state */
        long ep = (s + 1) / h->spe;
        char rng[32];
        snprintf(rng, sizeof rng, "%016llx", (unsigned long long)rmu_data_epoch_seed(o->seed, ep));
        if (rmu_ckpt_save(h->work, s + 1, &h->m, &h->tr, h->fp, ep, (s + 1) % h->spe, rng, loss, o->keep_checkpoints, e))
            return -1;
    }
    return 0;
}

int rmu_ft_step(rmu_ft *h, rmu_ft_status *stt, rmu_err *e) {
    const rmu_ft_opts *o = &h->o;
    if (h->s >= h->total || o->dump_grads) return 0;
    long s = h->s;
    double ts = rmu_now_s();
    long epoch = s / h->spe, idx = s % h->spe;
    int B, T;
    const int *tk, *mk;
    if (h->fixed) {
        B = h->fixed[idx].B, T = h->fixed[idx].T, tk = h->fixed[idx].tokens, mk = h->fixed[idx].mask;
    } else {
        if (epoch != h->cur_epoch) {
            rmu_data_epoch_order(&h->data, o->seed, epoch, h->perm);
            h->cur_epoch = epoch;
        }
        rmu_data_batch(&h->data, h->perm, idx, o->batch_size, h->pad, h->btok, h->bmask, &B, &T);
        tk = h->btok, mk = h->bmask;
    }
    rmu_tr *tr = &h->tr;
    double loss;
    if (batch_grads(h, tk, mk, B, T, NULL, &loss, e)) return -1;
    if (s + 1 == o->debug_nan_step) loss = NAN;
    double sq = rmu_adamw_sumsq(tr->grad_mem, tr->n_trainable), gnorm = sqrt(sq);
    if (!isfinite(loss) || !isfinite(gnorm)) {
        char where[4400];
        if (h->last_ckpt > 0) snprintf(where, sizeof where, "the last good checkpoint is %s/checkpoint-%ld", h->work, h->last_ckpt);
        else snprintf(where, sizeof where, "no checkpoint was written");
        return rmu_errf(e, "step %ld: %s is %s; training stopped (%s)", s + 1, isfinite(loss) ? "gradient norm" : "loss",
                        isnan(isfinite(loss) ? gnorm : loss) ? "NaN" : "infinite", where);
    }
    double scale = rmu_adamw_clip_scale(gnorm, o->clip);
    if (scale != 1.0) rmu_adamw_scale(tr->grad_mem, tr->n_trainable, (float)scale);
    double lr = o->lr * rmu_adamw_lr_factor(o->schedule, s, o->warmup, h->total);
    rmu_adamw_cfg ac = {.lr = o->lr, .beta1 = o->beta1, .beta2 = o->beta2, .eps = o->eps,
                        .weight_decay = o->weight_decay};
    for (int i = 0; i < tr->nparams; i++) {
        rmu_tr_param *p = &tr->params[i];
        rmu_adamw_update(p->master, p->grad, p->m, p->v, p->numel, s + 1, lr, &ac);
    }
    double step_s = rmu_now_s() - ts; /* compute only: checkpoint writes excluded */
    int ntok = 0;
    for (int i = 0; i < B * T; i++) ntok += mk ? mk[i] : 1;
    h->ntok_run += ntok;
    if (s == h->start) h->r.first_loss = loss;
    h->r.last_loss = loss;
    double el = rmu_now_s() - h->t0;
    *stt = (rmu_ft_status){.step = s + 1, .total = h->total, .loss = loss, .lr = lr, .grad_norm = gnorm,
                           .tokens_per_s = el > 0 ? h->ntok_run / el : 0, .elapsed = el,
                           .eta = el / (s + 1 - h->start) * (h->total - s - 1)};
    const rmu_dist *d = o->dist;
    if (rmu_dist_agree(d, rmu_dist_root(d) ? record_step(h, s, loss, lr, gnorm, ntok, step_s, e) : 0, e)) return -1;
    if (o->save_every > 0 && (s + 1) % o->save_every == 0) {
        h->last_ckpt = s + 1;
        stt->checkpoint = 1;
    }
    h->s = s + 1;
    return 1;
}

/* OUT through the one folder writer: input files and tensors, the trained ones from their
 * masters, the work folder (with its checkpoints) renamed into place. */
static int write_output(rmu_ft *h, rmu_err *e) {
    const rmu_ft_opts *o = &h->o;
    rmu_hf_opts ho = {.in_dir = h->m.dir, .in_st = &h->m.st, .work_dir = h->work,
                      .flags = o->overwrite ? RMU_HF_REPLACE : 0, .cancel = o->cancel};
    rmu_hf *w = rmu_hf_open(o->out_dir, &ho, e);
    if (!w) return rmu_err_prefix(e, "out_dir");
    rmu_tr *tr = &h->tr;
    int rc = 0;
    for (int i = 0; i < tr->nparams && !rc; i++)
        rc = rmu_hf_set_data(w, tr->params[i].name, tr->params[i].master, RMU_DT_F32, e);
    rmu_tr_param *embed = rmu_tr_find(tr, "model.embed_tokens.weight");
    if (!rc && embed && h->m.cfg.tie_word_embeddings && rmu_st_get(&h->m.st, "lm_head.weight"))
        rc = rmu_hf_set_data(w, "lm_head.weight", embed->master, RMU_DT_F32, e); /* keep a stored tie in sync */
    if (!rc && o->out_dtype != RMU_DT_INVALID)
        rc = rmu_hf_set_dtype(w, NULL, o->out_dtype, e) ||
             rmu_hf_config_set(w, "torch_dtype", json_string(rmu_dtype_torch_name(o->out_dtype)), e);
    if (rc) rmu_hf_abort(w);
    else rc = rmu_hf_commit(w, e);
    if (rc) rmdir(h->work); /* a work folder with no checkpoint in it is not left behind */
    return rc;
}

int rmu_ft_finish(rmu_ft *h, rmu_ft_result *r, rmu_err *e) {
    if (h->s < h->total) return rmu_errf(e, "internal: finish after %ld of %ld steps", h->s, h->total);
    h->r.steps = h->total;
    h->r.seconds = rmu_now_s() - h->t0;
    const rmu_dist *d = h->o.dist;
    int rc = 0;
    if (rmu_dist_root(d)) {
        if (!h->done_already && !h->o.no_output) rc = write_output(h, e);
        else if (h->o.no_output && !h->done_already) rmdir(h->work); /* only when empty */
    }
    if (rmu_dist_agree(d, rc, e)) return -1;
    *r = h->r;
    return 0;
}

/* The cancel flag, agreed: ranks may see a signal at different steps, and one leaving alone
 * would leave the others waiting in the next step's allreduce. */
static int cancelled(const rmu_ft *h, rmu_err *e) {
    int c = h->o.cancel && *h->o.cancel ? rmu_errf(e, "interrupted at step %ld of %ld", h->s, h->total) : 0;
    return rmu_dist_agree(h->o.dist, c, e);
}

int rmu_ft_run(const rmu_ft_opts *o, rmu_ft_note_fn notefn, rmu_ft_step_fn stepcb, void *ud, rmu_ft_result *r,
               rmu_err *e) {
    memset(r, 0, sizeof *r);
    rmu_ft *h = rmu_ft_open(o, notefn, ud, e);
    if (!h) return -1;
    int rc = -1, k;
    if (o->dump_grads) {
        double loss;
        rmu_tr_zero_grad(&h->tr);
        if (!h->fixed) {
            rmu_errf(e, "dump_grads needs batch_json");
            goto out;
        }
        const fixed_batch *fb = &h->fixed[0];
        if (batch_grads(h, fb->tokens, fb->mask, fb->B, fb->T, o->batch_json, &loss, e) ||
            rmu_dist_agree(o->dist, rmu_dist_root(o->dist) ? rmu_ckpt_dump_grads(o->dump_grads, &h->m, &h->tr, e) : 0, e))
            goto out;
        *r = h->r;
        r->first_loss = r->last_loss = loss;
        rc = 0;
        goto out;
    }
    rmu_ft_status st;
    while ((k = cancelled(h, e) ? -1 : rmu_ft_step(h, &st, e)) > 0)
        if (stepcb) stepcb(ud, &st);
    if (k == 0) rc = rmu_ft_finish(h, r, e);
out:
    rmu_ft_close(h);
    return rc;
}
