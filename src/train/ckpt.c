/* ckpt.c - checkpoints of `rmu train` (see ckpt.h). */
#include "train/ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/json.h"
#include "io/safetensors.h"

#define STATE_FILE "state.safetensors"
#define STATE_JSON "trainer_state.json"
#define CKPT_FORMAT 1

int rmu_ckpt_write_f32(const char *path, const rmu_ckpt_tensor *t, int n, rmu_err *e) {
    json_t *h = json_object();
    size_t off = 0;
    json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", "pt"));
    for (int i = 0; i < n; i++) {
        size_t nb = 4;
        json_t *shape = json_array();
        for (int d = 0; d < t[i].ndim; d++) {
            json_array_append_new(shape, json_integer(t[i].shape[d]));
            nb *= (size_t)t[i].shape[d];
        }
        json_object_set_new(h, t[i].name, json_pack("{s:s, s:o, s:[I,I]}", "dtype", "F32", "shape", shape,
                                                     "data_offsets", (json_int_t)off, (json_int_t)(off + nb)));
        off += nb;
    }
    char *hs = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(h);
    if (!hs) return rmu_errf(e, "%s: out of memory", path);
    size_t hl = strlen(hs), padded = (hl + 7) / 8 * 8;
    char *hdr = malloc(8 + padded);
    if (!hdr) {
        free(hs);
        return rmu_errf(e, "%s: out of memory", path);
    }
    uint64_t L = padded;
    for (int i = 0; i < 8; i++) hdr[i] = (char)(L >> (8 * i)); /* little-endian u64 */
    memcpy(hdr + 8, hs, hl);
    memset(hdr + 8 + hl, ' ', padded - hl);
    free(hs);
    rmu_afile af;
    int rc = rmu_afile_open(&af, path, e) || rmu_afile_write(&af, hdr, 8 + padded, e);
    free(hdr);
    for (int i = 0; i < n && !rc; i++) {
        size_t nb = 4;
        for (int d = 0; d < t[i].ndim; d++) nb *= (size_t)t[i].shape[d];
        rc = rmu_afile_write(&af, t[i].data, nb, e);
    }
    if (rc) return -1; /* rmu_afile_write aborted the file */
    return rmu_afile_commit(&af, e);
}

/* The shape of a trainable tensor as stored in the input file. */
static void param_shape(const rmu_model *m, const rmu_tr_param *p, rmu_ckpt_tensor *t) {
    const rmu_st_tensor *st = rmu_st_get(&m->st, p->name);
    if (st && st->ndim == 1) {
        t->ndim = 1;
        t->shape[0] = st->shape[0];
    } else {
        t->ndim = 2;
        t->shape[0] = p->rows;
        t->shape[1] = p->cols;
    }
}

int rmu_ckpt_dump_grads(const char *path, const rmu_model *m, const rmu_tr *tr, rmu_err *e) {
    rmu_ckpt_tensor *t = calloc(tr->nparams ? tr->nparams : 1, sizeof *t);
    if (!t) return rmu_errf(e, "out of memory");
    for (int i = 0; i < tr->nparams; i++) {
        t[i].name = tr->params[i].name;
        t[i].data = tr->params[i].grad;
        param_shape(m, &tr->params[i], &t[i]);
    }
    int rc = rmu_ckpt_write_f32(path, t, tr->nparams, e);
    free(t);
    return rc;
}

void rmu_ckpt_rm_flat(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char p[8192];
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* Removes a checkpoint folder without ever leaving a half one under its name: renamed to
 * NAME.del first (the lister removes those, like the .tmp of a cut-off save), then emptied. */
static void drop_ckpt(const char *dir) {
    char del[8300];
    snprintf(del, sizeof del, "%s.del", dir);
    rmu_ckpt_rm_flat(del);
    if (rename(dir, del) == 0) rmu_ckpt_rm_flat(del);
}

static void fsync_path(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int rmu_ckpt_list(const char *dir, long **steps, int *n, rmu_err *e) {
    *steps = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : rmu_errf(e, "%s: cannot list: %s", dir, strerror(errno));
    struct dirent *de;
    int cap = 0;
    while ((de = readdir(d))) {
        long s;
        char tail[8] = "";
        if (sscanf(de->d_name, "checkpoint-%ld%7s", &s, tail) < 1 || s < 0) continue;
        char p[8192];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (!strcmp(tail, ".tmp") || !strcmp(tail, ".del")) { /* a save or a removal that was cut off */
            rmu_ckpt_rm_flat(p);
            continue;
        }
        char want[64];
        snprintf(want, sizeof want, "checkpoint-%ld", s);
        if (tail[0] || strcmp(want, de->d_name)) continue;
        if (*n == cap) {
            long *ns = realloc(*steps, sizeof(long) * (cap = cap ? cap * 2 : 8));
            if (!ns) {
                closedir(d);
                free(*steps);
                *steps = NULL;
                return rmu_errf(e, "out of memory");
            }
            *steps = ns;
        }
        (*steps)[(*n)++] = s;
    }
    closedir(d);
    for (int i = 1; i < *n; i++)
        for (int j = i; j > 0 && (*steps)[j - 1] > (*steps)[j]; j--) {
            long t = (*steps)[j];
            (*steps)[j] = (*steps)[j - 1];
            (*steps)[j - 1] = t;
        }
    return 0;
}

int rmu_ckpt_save(const char *out, long step, const rmu_model *m, const rmu_tr *tr, const json_t *fp, long epoch,
                  long batch_in_epoch, const char *epoch_rng, double loss, int keep, rmu_err *e) {
    char dir[4200], tmp[4300], p[4400];
    if (rmu_mkdirs(out, e)) return -1;
    snprintf(dir, sizeof dir, "%s/checkpoint-%ld", out, step);
    snprintf(tmp, sizeof tmp, "%s.tmp", dir);
    rmu_ckpt_rm_flat(tmp);
    if (mkdir(tmp, 0755) != 0) return rmu_errf(e, "%s: cannot create folder: %s", tmp, strerror(errno));
    int n = tr->nparams;
    rmu_ckpt_tensor *t = calloc(3 * (size_t)n, sizeof *t);
    char (*names)[160] = calloc(2 * (size_t)n, sizeof *names);
    if (!t || !names) {
        free(t), free(names);
        rmu_ckpt_rm_flat(tmp);
        return rmu_errf(e, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        const rmu_tr_param *q = &tr->params[i];
        snprintf(names[2 * i], sizeof names[0], "%s.exp_avg", q->name);
        snprintf(names[2 * i + 1], sizeof names[0], "%s.exp_avg_sq", q->name);
        rmu_ckpt_tensor s = {0};
        param_shape(m, q, &s);
        t[3 * i] = s, t[3 * i].name = q->name, t[3 * i].data = q->master;
        t[3 * i + 1] = s, t[3 * i + 1].name = names[2 * i], t[3 * i + 1].data = q->m;
        t[3 * i + 2] = s, t[3 * i + 2].name = names[2 * i + 1], t[3 * i + 2].data = q->v;
    }
    snprintf(p, sizeof p, "%s/" STATE_FILE, tmp);
    int rc = rmu_ckpt_write_f32(p, t, 3 * n, e);
    free(t), free(names);
    if (rc) { /* a full disk: no half checkpoint-STEP.tmp stays behind either */
        rmu_ckpt_rm_flat(tmp);
        return -1;
    }
    json_t *st = json_pack("{s:i, s:I, s:I, s:I, s:s, s:f, s:O}", "format", CKPT_FORMAT, "step", (json_int_t)step,
                           "epoch", (json_int_t)epoch, "batch_in_epoch", (json_int_t)batch_in_epoch,
                           "epoch_rng_state", epoch_rng, "loss", isfinite(loss) ? loss : 0.0, "run", fp);
    if (!st) {
        rmu_ckpt_rm_flat(tmp);
        return rmu_errf(e, "out of memory");
    }
    snprintf(p, sizeof p, "%s/" STATE_JSON, tmp);
    rc = rmu_json_write_file(p, st, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17), e);
    json_decref(st);
    if (rc) {
        rmu_ckpt_rm_flat(tmp);
        return -1;
    }
    fsync_path(tmp);
    if (rmu_file_exists(dir)) drop_ckpt(dir); /* same step saved before (a re-run): replace */
    if (rename(tmp, dir) != 0) return rmu_errf(e, "%s: cannot rename into place: %s", dir, strerror(errno));
    fsync_path(out);
    return rmu_ckpt_prune(out, keep, e);
}

int rmu_ckpt_prune(const char *out, int keep, rmu_err *e) {
    char p[4200];
    long *steps;
    int ns;
    if (rmu_ckpt_list(out, &steps, &ns, e)) return -1;
    for (int i = 0; i + keep < ns; i++) {
        snprintf(p, sizeof p, "%s/checkpoint-%ld", out, steps[i]);
        drop_ckpt(p);
    }
    free(steps);
    return 0;
}

int rmu_ckpt_check(const char *out, long step, const json_t *fp, rmu_err *e) {
    char dir[4200], p[4400];
    snprintf(dir, sizeof dir, "%s/checkpoint-%ld", out, step);
    snprintf(p, sizeof p, "%s/" STATE_JSON, dir);
    json_error_t je;
    json_t *st = json_load_file(p, 0, &je);
    if (!st) return rmu_errf(e, "%s: %s", p, je.text);
    json_t *run = json_object_get(st, "run");
    json_int_t s = json_integer_value(json_object_get(st, "step"));
    if (json_integer_value(json_object_get(st, "format")) != CKPT_FORMAT || s != step || !json_is_object(run)) {
        json_decref(st);
        return rmu_errf(e, "%s is not a checkpoint of this rmu version", p);
    }
    const char *key;
    json_t *want;
    json_object_foreach((json_t *)fp, key, want) {
        json_t *got = json_object_get(run, key);
        if (!got || !json_equal(got, want)) {
            char *a = got ? json_dumps(got, JSON_ENCODE_ANY) : NULL, *b = json_dumps(want, JSON_ENCODE_ANY);
            rmu_errf(e, "%s was made with %s = %s, this run has %s (same data and settings needed)", dir, key,
                     a ? a : "nothing", b ? b : "?");
            free(a), free(b);
            json_decref(st);
            return -1;
        }
    }
    json_decref(st);
    return 0;
}

int rmu_ckpt_load(const char *out, long step, rmu_tr *tr, const json_t *fp, rmu_err *e) {
    if (rmu_ckpt_check(out, step, fp, e)) return -1;
    char p[4400];
    snprintf(p, sizeof p, "%s/checkpoint-%ld/" STATE_FILE, out, step);
    rmu_st_set set;
    if (rmu_st_open_file(&set, p, e)) return -1;
    int rc = 0;
    for (int i = 0; i < tr->nparams && !rc; i++) {
        rmu_tr_param *q = &tr->params[i];
        char nm[3][160];
        snprintf(nm[0], sizeof nm[0], "%s", q->name);
        snprintf(nm[1], sizeof nm[1], "%s.exp_avg", q->name);
        snprintf(nm[2], sizeof nm[2], "%s.exp_avg_sq", q->name);
        float *dst[3] = {q->master, q->m, q->v};
        for (int k = 0; k < 3 && !rc; k++) {
            const rmu_st_tensor *t = rmu_st_get(&set, nm[k]);
            if (!t || t->dtype != RMU_DT_F32 || t->nbytes != q->numel * 4)
                rc = rmu_errf(e, "%s: tensor %s missing or mis-shaped", p, nm[k]);
            else
                memcpy(dst[k], t->data, t->nbytes);
        }
    }
    rmu_st_close(&set);
    return rc;
}
