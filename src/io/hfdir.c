/* hfdir.c - Hugging Face folder writer: plan, staging folder, streamed tensors, rename
 * (see hfdir.h). */
#include "io/hfdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/json.h"
#include "core/util.h"

#define STAGING_TAG ".rmu-staging."
#define ASIDE_TAG ".rmu-old."
#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"

typedef struct ent {
    char *name, *shard;
    rmu_dtype dtype; /* written */
    int ndim;
    int64_t shape[RMU_ST_MAX_DIMS];
    const void *src; /* memory source and its dtype, or fill */
    rmu_dtype src_dt;
    rmu_hf_fill_fn fill;
    void *ctx;
    int dropped;
} ent;

struct rmu_hf {
    char out[4096], parent[4096], base[1024], staging[4400];
    int own_staging; /* PID-named: removed as a whole on error */
    unsigned flags;
    const char *in_dir;
    char in_buf[4096];
    rmu_st_set own_st;
    int have_own_st;
    const rmu_st_set *st;
    ent *ents;
    int n, cap;
    json_t *cfg_set, *cfg_del; /* config.json edits: keys to set, keys to remove */
};

/* ---------------------------------------------------------------- small helpers */

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
    (void)sb, (void)flag, (void)f;
    return remove(p) != 0 && errno != ENOENT ? -1 : 0;
}

int rmu_hf_rmtree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
    return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

int rmu_hf_same_dir(const char *a, const char *b) {
    struct stat x, y;
    return a && b && stat(a, &x) == 0 && stat(b, &y) == 0 && S_ISDIR(x.st_mode) && x.st_dev == y.st_dev &&
           x.st_ino == y.st_ino;
}

int rmu_hf_is_provenance(const char *name) {
    return !strncmp(name, "rmu_", 4) && rmu_ends_with(name, ".json");
}

/* Weights in any format: never copied (see hfdir.h). */
static int is_weight_file(const char *n) {
    static const char *const suf[] = {".safetensors", ".safetensors.index.json", ".bin", ".bin.index.json",
                                      ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf"};
    for (size_t i = 0; i < sizeof suf / sizeof suf[0]; i++)
        if (rmu_ends_with(n, suf[i])) return 1;
    return 0;
}

/* 1 empty, 0 not, -1 unreadable. */
static int dir_empty(const char *path) {
    DIR *d = opendir(path);
    if (!d) return -1;
    struct dirent *de;
    int empty = 1;
    while (empty && (de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) empty = 0;
    closedir(d);
    return empty;
}

static void fsync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* parent and base name of out (trailing slashes dropped). */
static int split_out(const char *out, char *parent, size_t pcap, char *base, size_t bcap, rmu_err *e) {
    char p[4096];
    size_t n = strlen(out);
    if (n == 0 || n >= sizeof p) return rmu_errf(e, "'%s': empty or too long folder name", out);
    memcpy(p, out, n + 1);
    while (n > 1 && p[n - 1] == '/') p[--n] = 0;
    char *sl = strrchr(p, '/');
    const char *b = sl ? sl + 1 : p;
    if (!*b || !strcmp(b, ".") || !strcmp(b, ".."))
        return rmu_errf(e, "%s: name a new folder (it is written elsewhere and renamed into place)", out);
    if (strlen(b) >= bcap) return rmu_errf(e, "%s: folder name too long", out);
    snprintf(base, bcap, "%s", b);
    if (!sl) snprintf(parent, pcap, ".");
    else if (sl == p) snprintf(parent, pcap, "/");
    else snprintf(parent, pcap, "%.*s", (int)(sl - p), p);
    return 0;
}

int rmu_hf_check_out(const char *out, const char *in, unsigned flags, rmu_err *e) {
    if (in && rmu_hf_same_dir(out, in)) return rmu_errf(e, "%s is the input model folder; write to another folder", out);
    struct stat st;
    if (stat(out, &st) != 0) {
        if (errno == ENOENT) return 0;
        return rmu_errf(e, "%s: cannot stat: %s", out, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) return rmu_errf(e, "%s exists and is not a folder", out);
    int em = dir_empty(out);
    if (em < 0) return rmu_errf(e, "%s: cannot list: %s", out, strerror(errno));
    if (em) return 0;
    if (!(flags & RMU_HF_REPLACE)) return rmu_errf(e, "%s already exists and is not empty", out);
    char cfg[4200];
    snprintf(cfg, sizeof cfg, "%s/config.json", out);
    if (!rmu_file_exists(cfg))
        return rmu_errf(e, "%s exists and is not a model folder (no config.json); not replacing it", out);
    return 0;
}

/* Staging folders of dead processes for this OUT (.NAME.rmu-staging.PID, .NAME.rmu-old.PID). */
static void remove_stale(const rmu_hf *w) {
    DIR *d = opendir(w->parent);
    if (!d) return;
    struct dirent *de;
    size_t bl = strlen(w->base);
    while ((de = readdir(d))) {
        const char *n = de->d_name, *tail;
        if (n[0] != '.' || strncmp(n + 1, w->base, bl)) continue;
        tail = n + 1 + bl;
        if (!strncmp(tail, STAGING_TAG, strlen(STAGING_TAG))) tail += strlen(STAGING_TAG);
        else if (!strncmp(tail, ASIDE_TAG, strlen(ASIDE_TAG))) tail += strlen(ASIDE_TAG);
        else continue;
        char *end;
        long pid = strtol(tail, &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive (or not ours to judge) */
        char p[8192];
        snprintf(p, sizeof p, "%s/%s", w->parent, n);
        rmu_hf_rmtree(p);
    }
    closedir(d);
}

/* Loose regular files of a work folder (an earlier commit cut off); subfolders stay. */
static void clear_loose_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        char p[8192];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (lstat(p, &st) == 0 && !S_ISDIR(st.st_mode)) unlink(p);
    }
    closedir(d);
}

/* ---------------------------------------------------------------- the plan */

static void ent_free(ent *t) {
    free(t->name);
    free(t->shard);
}

static void hf_free(rmu_hf *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) ent_free(&w->ents[i]);
    free(w->ents);
    if (w->have_own_st) rmu_st_close(&w->own_st);
    json_decref(w->cfg_set);
    json_decref(w->cfg_del);
    free(w);
}

static ent *find(rmu_hf *w, const char *name) {
    for (int i = 0; i < w->n; i++)
        if (!w->ents[i].dropped && !strcmp(w->ents[i].name, name)) return &w->ents[i];
    return NULL;
}

static ent *need(rmu_hf *w, const char *name, rmu_err *e) {
    ent *t = name ? find(w, name) : NULL;
    if (!t) rmu_errf(e, "%s: no tensor '%s' to rewrite", w->out, name ? name : "(null)");
    return t;
}

static int grow(rmu_hf *w, rmu_err *e) {
    if (w->n < w->cap) return 0;
    int nc = w->cap ? w->cap * 2 : 64;
    ent *ne = realloc(w->ents, sizeof *ne * nc);
    if (!ne) return rmu_errf(e, "%s: out of memory", w->out);
    w->ents = ne;
    w->cap = nc;
    return 0;
}

static int convertible(rmu_dtype a, rmu_dtype b) {
    int fa = a == RMU_DT_F32 || a == RMU_DT_F16 || a == RMU_DT_BF16;
    int fb = b == RMU_DT_F32 || b == RMU_DT_F16 || b == RMU_DT_BF16;
    return a == b ? rmu_dtype_size(a) != 0 : fa && fb;
}

/* The input's tensors in file order: (file, offset). */
static int load_input(rmu_hf *w, rmu_err *e) {
    const rmu_st_set *st = w->st;
    int n = st->ntensors;
    int *ord = malloc(sizeof(int) * (n ? n : 1));
    if (!ord) return rmu_errf(e, "%s: out of memory", w->out);
    for (int i = 0; i < n; i++) ord[i] = i;
    for (int i = 1; i < n; i++) /* insertion sort: inputs are nearly in order already */
        for (int j = i; j > 0; j--) {
            const rmu_st_tensor *a = &st->tensors[ord[j - 1]], *b = &st->tensors[ord[j]];
            if (a->file < b->file || (a->file == b->file && (const char *)a->data <= (const char *)b->data)) break;
            int t = ord[j];
            ord[j] = ord[j - 1];
            ord[j - 1] = t;
        }
    for (int k = 0; k < n; k++) {
        const rmu_st_tensor *t = &st->tensors[ord[k]];
        if (grow(w, e)) { free(ord); return -1; }
        ent *x = &w->ents[w->n];
        memset(x, 0, sizeof *x);
        x->name = strdup(t->name);
        x->shard = strdup(st->files[t->file].name);
        if (!x->name || !x->shard) {
            ent_free(x);
            free(ord);
            return rmu_errf(e, "%s: out of memory", w->out);
        }
        w->n++;
        x->dtype = x->src_dt = t->dtype;
        x->ndim = t->ndim;
        memcpy(x->shape, t->shape, sizeof x->shape);
        x->src = t->data;
    }
    free(ord);
    return 0;
}

rmu_hf *rmu_hf_open(const char *out_dir, const rmu_hf_opts *o, rmu_err *e) {
    rmu_hf_opts none = {0};
    if (!o) o = &none;
    rmu_hf *w = calloc(1, sizeof *w);
    if (!w) {
        rmu_errf(e, "%s: out of memory", out_dir);
        return NULL;
    }
    w->flags = o->flags;
    if (strlen(out_dir) >= sizeof w->out) {
        free(w);
        rmu_errf(e, "%s: path too long", out_dir);
        return NULL;
    }
    strcpy(w->out, out_dir);
    if (split_out(out_dir, w->parent, sizeof w->parent, w->base, sizeof w->base, e) ||
        rmu_hf_check_out(out_dir, o->in_dir, o->flags, e))
        goto fail;
    if (rmu_mkdirs(w->parent, e)) {
        rmu_err_prefix(e, "%s", out_dir);
        goto fail;
    }
    if (o->in_dir) {
        snprintf(w->in_buf, sizeof w->in_buf, "%s", o->in_dir);
        w->in_dir = w->in_buf;
        if (o->in_st) {
            w->st = o->in_st;
        } else {
            if (rmu_st_open_dir(&w->own_st, o->in_dir, e)) goto fail;
            w->have_own_st = 1;
            w->st = &w->own_st;
        }
        if (load_input(w, e)) goto fail;
    }
    remove_stale(w);
    if (o->work_dir) {
        snprintf(w->staging, sizeof w->staging, "%s", o->work_dir);
        if (rmu_mkdirs(w->staging, e)) {
            rmu_err_prefix(e, "%s", w->out);
            goto fail;
        }
        clear_loose_files(w->staging);
    } else {
        snprintf(w->staging, sizeof w->staging, "%s/.%s%s%ld", w->parent, w->base, STAGING_TAG, (long)getpid());
        rmu_hf_rmtree(w->staging); /* a leftover of this very pid (reused) */
        if (mkdir(w->staging, 0755) != 0) {
            rmu_errf(e, "%s: cannot create the staging folder %s: %s", w->out, w->staging, strerror(errno));
            goto fail;
        }
        w->own_staging = 1;
    }
    return w;
fail:
    hf_free(w);
    return NULL;
}

const char *rmu_hf_dir(const rmu_hf *w) { return w->staging; }

int rmu_hf_set_data(rmu_hf *w, const char *name, const void *data, rmu_dtype dt, rmu_err *e) {
    ent *t = need(w, name, e);
    if (!t) return -1;
    if (!data) return rmu_errf(e, "%s: tensor '%s': no data", w->out, name);
    if (!convertible(dt, t->dtype))
        return rmu_errf(e, "%s: tensor '%s': cannot convert %s to %s", w->out, name, rmu_dtype_name(dt),
                        rmu_dtype_name(t->dtype));
    t->src = data, t->src_dt = dt, t->fill = NULL, t->ctx = NULL;
    return 0;
}

int rmu_hf_set_fill(rmu_hf *w, const char *name, rmu_hf_fill_fn fill, void *ctx, rmu_err *e) {
    ent *t = need(w, name, e);
    if (!t) return -1;
    if (!fill) return rmu_errf(e, "%s: tensor '%s': no fill function", w->out, name);
    t->fill = fill, t->ctx = ctx, t->src = NULL;
    return 0;
}

int rmu_hf_set_dtype(rmu_hf *w, const char *name, rmu_dtype dt, rmu_err *e) {
    if (!rmu_dtype_size(dt)) return rmu_errf(e, "%s: invalid dtype", w->out);
    for (int i = 0; i < w->n; i++) {
        ent *t = &w->ents[i];
        if (t->dropped || (name && strcmp(t->name, name))) continue;
        if (!t->fill && !convertible(t->src_dt, dt))
            return rmu_errf(e, "%s: tensor '%s': cannot convert %s to %s", w->out, t->name, rmu_dtype_name(t->src_dt),
                            rmu_dtype_name(dt));
        t->dtype = dt;
        if (name) return 0;
    }
    return name ? rmu_errf(e, "%s: no tensor '%s' to rewrite", w->out, name) : 0;
}

int rmu_hf_drop(rmu_hf *w, const char *name, rmu_err *e) {
    ent *t = need(w, name, e);
    if (!t) return -1;
    t->dropped = 1;
    return 0;
}

int rmu_hf_add(rmu_hf *w, const rmu_hf_new *nt, rmu_err *e) {
    if (!nt->name || !*nt->name) return rmu_errf(e, "%s: a new tensor needs a name", w->out);
    if (find(w, nt->name)) return rmu_errf(e, "%s: tensor '%s' already exists", w->out, nt->name);
    if (nt->ndim < 0 || nt->ndim > RMU_ST_MAX_DIMS)
        return rmu_errf(e, "%s: tensor '%s': %d dimensions", w->out, nt->name, nt->ndim);
    if (!nt->fill && (!nt->data || !convertible(nt->data_dtype, nt->dtype)))
        return rmu_errf(e, "%s: tensor '%s': needs data convertible to %s or a fill function", w->out, nt->name,
                        rmu_dtype_name(nt->dtype));
    int at = w->n;
    const char *shard = nt->shard;
    if (nt->after) {
        ent *a = need(w, nt->after, e);
        if (!a) return -1;
        at = (int)(a - w->ents) + 1;
        if (!shard) shard = a->shard;
    }
    for (int i = w->n - 1; !shard && i >= 0; i--)
        if (!w->ents[i].dropped) shard = w->ents[i].shard;
    if (!shard) shard = SINGLE_NAME;
    if (grow(w, e)) return -1;
    ent x = {0};
    x.name = strdup(nt->name);
    x.shard = strdup(shard);
    if (!x.name || !x.shard) {
        ent_free(&x);
        return rmu_errf(e, "%s: out of memory", w->out);
    }
    x.dtype = nt->dtype;
    x.ndim = nt->ndim;
    memcpy(x.shape, nt->shape, sizeof x.shape);
    x.fill = nt->fill, x.ctx = nt->ctx;
    if (!x.fill) x.src = nt->data, x.src_dt = nt->data_dtype;
    memmove(&w->ents[at + 1], &w->ents[at], sizeof *w->ents * (w->n - at));
    w->ents[at] = x;
    w->n++;
    return 0;
}

int rmu_hf_config_set(rmu_hf *w, const char *key, json_t *value, rmu_err *e) {
    if (!w->cfg_set) w->cfg_set = json_object();
    if (!w->cfg_del) w->cfg_del = json_object();
    if (!w->cfg_set || !w->cfg_del) {
        json_decref(value);
        return rmu_errf(e, "%s: out of memory", w->out);
    }
    if (value) {
        json_object_del(w->cfg_del, key);
        return json_object_set_new(w->cfg_set, key, value) ? rmu_errf(e, "%s: out of memory", w->out) : 0;
    }
    json_object_del(w->cfg_set, key);
    return json_object_set_new(w->cfg_del, key, json_true()) ? rmu_errf(e, "%s: out of memory", w->out) : 0;
}

/* ---------------------------------------------------------------- commit */

static int copy_inputs(rmu_hf *w, rmu_err *e) {
    if (!w->in_dir) return 0;
    DIR *d = opendir(w->in_dir);
    if (!d) return rmu_errf(e, "%s: cannot list: %s", w->in_dir, strerror(errno));
    struct dirent *de;
    int rc = 0;
    int edit_cfg = w->cfg_set != NULL;
    while (!rc && (de = readdir(d))) {
        const char *n = de->d_name;
        char src[8192], dst[8192];
        struct stat sb;
        if (n[0] == '.' || is_weight_file(n) || rmu_hf_is_provenance(n)) continue;
        if (edit_cfg && !strcmp(n, "config.json")) continue; /* written from the edits */
        snprintf(src, sizeof src, "%s/%s", w->in_dir, n);
        snprintf(dst, sizeof dst, "%s/%s", w->staging, n);
        if (stat(src, &sb) != 0 || !S_ISREG(sb.st_mode)) continue; /* folders (checkpoints), sockets */
        if (lstat(dst, &sb) == 0) continue;                         /* the caller's own version */
        rc = rmu_file_copy(src, dst, e);
    }
    closedir(d);
    return rc;
}

static int write_config(rmu_hf *w, rmu_err *e) {
    if (!w->cfg_set) return 0;
    char dst[8192], src[8192];
    snprintf(dst, sizeof dst, "%s/config.json", w->staging);
    if (rmu_file_exists(dst)) snprintf(src, sizeof src, "%s", dst);
    else if (w->in_dir) snprintf(src, sizeof src, "%s/config.json", w->in_dir);
    else return rmu_errf(e, "%s: config.json edits but no config.json to edit", w->out);
    json_error_t je;
    json_t *c = json_load_file(src, JSON_PRESERVE_ORDER, &je);
    if (!c) return rmu_errf(e, "%s:%d: invalid JSON: %s", src, je.line, je.text);
    if (!json_is_object(c)) {
        json_decref(c);
        return rmu_errf(e, "%s: not a JSON object", src);
    }
    const char *k;
    json_t *v;
    json_object_foreach(w->cfg_set, k, v) json_object_set(c, k, v);
    json_object_foreach(w->cfg_del, k, v) json_object_del(c, k);
    int rc = rmu_json_write_file(dst, c, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17), e);
    json_decref(c);
    return rc;
}

typedef struct {
    rmu_hf *w;
    const int *map; /* writer index -> entry */
} fill_ctx;

/* Chunk of one entry in its output dtype: from memory (converted) or its fill. */
static int fill_ent(void *vctx, int index, size_t off, size_t count, void *buf, rmu_err *e) {
    const fill_ctx *fc = vctx;
    const ent *t = &fc->w->ents[fc->map[index]];
    if (t->fill) return t->fill(t->ctx, t->name, off, count, buf, e);
    size_t ss = rmu_dtype_size(t->src_dt), ds = rmu_dtype_size(t->dtype);
    const char *src = (const char *)t->src + off * ss;
    if (t->src_dt == t->dtype) {
        memcpy(buf, src, count * ss);
    } else if (t->src_dt == RMU_DT_F32) {
        rmu_from_f32(buf, (const float *)src, t->dtype, count);
    } else {
        float tmp[4096];
        for (size_t i = 0; i < count; i += 4096) {
            size_t c = count - i < 4096 ? count - i : 4096;
            rmu_to_f32(tmp, src + i * ss, t->src_dt, c);
            rmu_from_f32((char *)buf + i * ds, tmp, t->dtype, c);
        }
    }
    return 0;
}

static int write_tensors(rmu_hf *w, rmu_err *e) {
    int n = 0;
    for (int i = 0; i < w->n; i++) n += !w->ents[i].dropped;
    if (n == 0) return rmu_errf(e, "%s: no tensors to write", w->out);
    rmu_st_out *outs = calloc(n, sizeof *outs);
    int *map = calloc(n, sizeof *map);
    if (!outs || !map) {
        free(outs), free(map);
        return rmu_errf(e, "%s: out of memory", w->out);
    }
    int k = 0;
    for (int i = 0; i < w->n; i++) {
        const ent *t = &w->ents[i];
        if (t->dropped) continue;
        outs[k] = (rmu_st_out){.name = t->name, .dtype = t->dtype, .ndim = t->ndim, .shard = t->shard};
        memcpy(outs[k].shape, t->shape, sizeof outs[k].shape);
        map[k++] = i;
    }
    fill_ctx fc = {w, map};
    int rc = rmu_st_write_dir_cb(w->staging, outs, n, fill_ent, &fc, e);
    free(outs);
    free(map);
    return rc;
}

/* staging -> OUT (see hfdir.h for the rules on an existing OUT). */
static int put_in_place(rmu_hf *w, rmu_err *e) {
    if (rename(w->staging, w->out) == 0) return 0;
    if (errno != ENOTEMPTY && errno != EEXIST)
        return rmu_errf(e, "%s: cannot rename %s into place: %s", w->out, w->staging, strerror(errno));
    if (rmu_hf_check_out(w->out, w->in_dir, w->flags, e)) return -1; /* not ours to replace */
    if (renameat2(AT_FDCWD, w->staging, AT_FDCWD, w->out, RENAME_EXCHANGE) == 0) {
        if (rmu_hf_rmtree(w->staging)) /* now the old folder */
            return rmu_errf(e, "%s: replaced, but the old folder could not be removed from %s", w->out, w->staging);
        return 0;
    }
    if (errno != EINVAL && errno != ENOSYS)
        return rmu_errf(e, "%s: cannot swap in %s: %s", w->out, w->staging, strerror(errno));
    /* no atomic exchange here: the old folder goes aside first (a crash in between leaves
     * OUT absent and both folders beside it, never a mixed one) */
    char aside[8192];
    snprintf(aside, sizeof aside, "%s/.%s%s%ld", w->parent, w->base, ASIDE_TAG, (long)getpid());
    rmu_hf_rmtree(aside);
    if (rename(w->out, aside) != 0) return rmu_errf(e, "%s: cannot move the old folder aside: %s", w->out, strerror(errno));
    if (rename(w->staging, w->out) != 0) {
        int r = rmu_errf(e, "%s: cannot rename %s into place: %s", w->out, w->staging, strerror(errno));
        rename(aside, w->out);
        return r;
    }
    rmu_hf_rmtree(aside);
    return 0;
}

int rmu_hf_commit(rmu_hf *w, rmu_err *e) {
    if (copy_inputs(w, e) || write_config(w, e) || write_tensors(w, e)) {
        rmu_hf_abort(w);
        return -1;
    }
    fsync_dir(w->staging);
    if (put_in_place(w, e)) {
        rmu_hf_abort(w);
        return -1;
    }
    fsync_dir(w->parent);
    hf_free(w);
    return 0;
}

void rmu_hf_abort(rmu_hf *w) {
    if (!w) return;
    if (w->own_staging) rmu_hf_rmtree(w->staging);
    else if (w->staging[0]) clear_loose_files(w->staging);
    hf_free(w);
}
