/* safetensors.c - validated, zero-copy reader and streaming atomic writer.
 *
 * File layout: u64 little-endian header length N, N bytes of JSON (an object mapping
 * tensor names to {dtype, shape, data_offsets} plus an optional "__metadata__" object of
 * strings), then the data section. Offsets are relative to the data section; the
 * tensors must tile it exactly, which is what the reference implementation enforces.
 *
 * Alignment: writers (ours and HF's) pad the header so the data section starts at a
 * multiple of 8, but the format does not require it, so data pointers may be unaligned
 * for their dtype. Consumers read elements with memcpy-safe loads (the kernels do). */
#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"

#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"

/* ---------------------------------------------------------------- parsing */

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const rmu_st_tensor *)a)->name, ((const rmu_st_tensor *)b)->name);
}

/* Offsets are kept alongside the tensors only while validating the tiling. */
typedef struct {
    size_t begin, end;
    int idx;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->idx - y->idx;
}

void rmu_st_free_tensors(rmu_st_tensor *t, int n) {
    if (!t) return;
    for (int i = 0; i < n; i++) free(t[i].name);
    free(t);
}

/* A JSON integer that fits in [0, SIZE_MAX]; -1 otherwise. */
static int json_size(const json_t *v, size_t *out) {
    if (!json_is_integer(v)) return -1;
    json_int_t x = json_integer_value(v);
    if (x < 0) return -1;
    *out = (size_t)x;
    return 0;
}

static int parse_one(const char *fname, const char *name, json_t *info, size_t data_size, rmu_st_tensor *t,
                     span *sp, rmu_err *e) {
    if (!json_is_object(info)) return rmu_errf(e, "%s: tensor '%s': entry is not a JSON object", fname, name);
    json_t *jd = json_object_get(info, "dtype"), *js = json_object_get(info, "shape");
    json_t *jo = json_object_get(info, "data_offsets");
    if (!json_is_string(jd)) return rmu_errf(e, "%s: tensor '%s': missing or non-string \"dtype\"", fname, name);
    const char *ds = json_string_value(jd);
    /* only the safetensors spellings: rmu_dtype_parse also accepts torch names */
    if (strcmp(ds, "F32") && strcmp(ds, "F16") && strcmp(ds, "BF16") && strcmp(ds, "F8_E4M3"))
        return rmu_errf(e, "%s: tensor '%s' has dtype %s; only F32, F16, BF16 and F8_E4M3 are supported", fname, name,
                        ds);
    t->dtype = rmu_dtype_parse(ds);
    if (!json_is_array(js)) return rmu_errf(e, "%s: tensor '%s': missing or non-array \"shape\"", fname, name);
    size_t nd = json_array_size(js);
    if (nd > RMU_ST_MAX_DIMS)
        return rmu_errf(e, "%s: tensor '%s' has %zu dimensions (at most %d supported)", fname, name, nd, RMU_ST_MAX_DIMS);
    t->ndim = (int)nd;
    size_t count = 1;
    int overflow = 0, zero = 0;
    for (size_t d = 0; d < nd; d++) {
        size_t v;
        json_t *x = json_array_get(js, d);
        if (json_size(x, &v) || v > INT64_MAX)
            return rmu_errf(e, "%s: tensor '%s': shape[%zu] is not a non-negative integer", fname, name, d);
        t->shape[d] = (int64_t)v;
        if (!v) zero = 1;
        else if (count > SIZE_MAX / v) overflow = 1;
        else count *= v;
    }
    size_t es = rmu_dtype_size(t->dtype);
    /* a zero dimension makes the tensor empty however large the others are */
    if (zero) count = 0;
    else if (overflow || count > SIZE_MAX / es)
        return rmu_errf(e, "%s: tensor '%s': shape size overflows", fname, name);
    t->nbytes = count * es;
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return rmu_errf(e, "%s: tensor '%s': \"data_offsets\" must be an array [begin, end]", fname, name);
    size_t b, en;
    if (json_size(json_array_get(jo, 0), &b) || json_size(json_array_get(jo, 1), &en))
        return rmu_errf(e, "%s: tensor '%s': data_offsets are not non-negative integers", fname, name);
    if (en < b) return rmu_errf(e, "%s: tensor '%s': data_offsets [%zu, %zu] end before begin", fname, name, b, en);
    if (en - b != t->nbytes)
        return rmu_errf(e, "%s: tensor '%s': data_offsets [%zu, %zu] span %zu bytes but shape and dtype %s need %zu",
                        fname, name, b, en, en - b, ds, t->nbytes);
    if (en > data_size)
        return rmu_errf(e, "%s: tensor '%s': data_offsets [%zu, %zu] out of bounds: the data section has %zu bytes"
                        " (file truncated?)", fname, name, b, en, data_size);
    sp->begin = b;
    sp->end = en;
    return 0;
}

static int check_metadata(const char *fname, json_t *md, rmu_err *e) {
    if (!json_is_object(md)) return rmu_errf(e, "%s: \"__metadata__\" is not a JSON object", fname);
    const char *k;
    json_t *v;
    json_object_foreach(md, k, v) {
        if (!json_is_string(v)) return rmu_errf(e, "%s: \"__metadata__\" value of '%s' is not a string", fname, k);
    }
    return 0;
}

int rmu_st_parse(const uint8_t *buf, size_t size, const char *fname, rmu_st_tensor **out, int *n, rmu_err *e) {
    *out = NULL;
    *n = 0;
    if (!fname) fname = "safetensors";
    if (size < 8)
        return rmu_errf(e, "%s: truncated: %zu bytes, shorter than the 8-byte header length", fname, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    if (hlen > RMU_ST_MAX_HEADER)
        return rmu_errf(e, "%s: header length %llu exceeds the %u byte limit (not a safetensors file?)", fname,
                        (unsigned long long)hlen, RMU_ST_MAX_HEADER);
    if (hlen > size - 8)
        return rmu_errf(e, "%s: truncated: header length %llu runs past the end of the %zu-byte file", fname,
                        (unsigned long long)hlen, size);
    if (hlen < 2) return rmu_errf(e, "%s: header length %llu is too short for a JSON object", fname, (unsigned long long)hlen);
    json_error_t je;
    /* duplicate names would make lookups ambiguous */
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root) return rmu_errf(e, "%s: header is not valid JSON: %s (at byte %d)", fname, je.text, je.position);
    int rc = -1, cnt = 0;
    rmu_st_tensor *ts = NULL;
    span *sp = NULL;
    if (!json_is_object(root)) {
        rmu_errf(e, "%s: header is not a JSON object", fname);
        goto out;
    }
    size_t nkeys = json_object_size(root);
    ts = calloc(nkeys ? nkeys : 1, sizeof *ts);
    sp = calloc(nkeys ? nkeys : 1, sizeof *sp);
    if (!ts || !sp) {
        rmu_errf(e, "%s: out of memory", fname);
        goto out;
    }
    const uint8_t *data = buf + 8 + hlen;
    size_t data_size = size - 8 - (size_t)hlen;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) {
            if (check_metadata(fname, val, e)) goto out;
            continue;
        }
        rmu_st_tensor *t = &ts[cnt];
        if (parse_one(fname, key, val, data_size, t, &sp[cnt], e)) goto out;
        if (!(t->name = strdup(key))) {
            rmu_errf(e, "%s: out of memory", fname);
            goto out;
        }
        t->data = data + sp[cnt].begin;
        sp[cnt].idx = cnt;
        cnt++;
    }
    if (cnt > 0x7fffffff - 1) {
        rmu_errf(e, "%s: too many tensors", fname);
        goto out;
    }
    /* the tensors must tile [0, data_size) with no gap and no overlap */
    qsort(sp, cnt, sizeof *sp, cmp_span);
    size_t pos = 0;
    for (int i = 0; i < cnt; i++) {
        if (sp[i].begin < pos) {
            rmu_errf(e, "%s: tensor '%s' data_offsets [%zu, %zu] overlap tensor '%s' (ends at %zu)", fname,
                     ts[sp[i].idx].name, sp[i].begin, sp[i].end, ts[sp[i - 1].idx].name, pos);
            goto out;
        }
        if (sp[i].begin > pos) {
            rmu_errf(e, "%s: gap in the data section: bytes [%zu, %zu) before tensor '%s' belong to no tensor",
                     fname, pos, sp[i].begin, ts[sp[i].idx].name);
            goto out;
        }
        pos = sp[i].end;
    }
    if (pos != data_size) {
        rmu_errf(e, "%s: the data section has %zu bytes but the tensors cover only %zu (trailing bytes)", fname,
                 data_size, pos);
        goto out;
    }
    qsort(ts, cnt, sizeof *ts, cmp_tensor_name);
    *out = ts;
    *n = cnt;
    ts = NULL;
    rc = 0;
out:
    rmu_st_free_tensors(ts, cnt);
    free(sp);
    json_decref(root);
    return rc;
}

/* ---------------------------------------------------------------- opening */

static void close_file(rmu_st_file *f) {
    if (f->map) munmap(f->map, f->size);
    free(f->path);
    free(f->name);
    memset(f, 0, sizeof *f);
}

void rmu_st_release(const void *p, size_t n) {
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a = ((uintptr_t)p + pg - 1) & ~(pg - 1);
    uintptr_t b = ((uintptr_t)p + n) & ~(pg - 1);
    /* a private read-only file mapping: MADV_DONTNEED only unmaps; the file has the data */
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

void rmu_st_close(rmu_st_set *s) {
    if (!s) return;
    for (int i = 0; i < s->nfiles; i++) close_file(&s->files[i]);
    free(s->files);
    rmu_st_free_tensors(s->tensors, s->ntensors);
    memset(s, 0, sizeof *s);
}

/* Maps and parses one file; its tensors (sorted by name) go to *ts, their count to *nt. */
static int map_file(rmu_st_file *f, const char *path, rmu_st_tensor **ts, int *nt, rmu_err *e) {
    memset(f, 0, sizeof *f);
    *ts = NULL;
    *nt = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return rmu_errf(e, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int r = rmu_errf(e, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return r;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return rmu_errf(e, "%s: not a regular file", path);
    }
    f->size = (size_t)st.st_size;
    if (f->size < 8) {
        close(fd);
        return rmu_errf(e, "%s: truncated: %zu bytes, shorter than the 8-byte header length", path, f->size);
    }
    /* read-only private mapping: the weights are paged in on demand and never copied;
     * no madvise: `rmu info` touches only the header, inference walks everything. */
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return rmu_errf(e, "%s: cannot mmap: %s", path, strerror(errno));
    f->map = m;
    const char *base = strrchr(path, '/');
    f->path = strdup(path);
    f->name = strdup(base ? base + 1 : path);
    if (!f->path || !f->name) {
        close_file(f);
        return rmu_errf(e, "%s: out of memory", path);
    }
    if (rmu_st_parse(m, f->size, path, ts, nt, e)) {
        close_file(f);
        return -1;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | ((const uint8_t *)m)[i];
    f->data_off = 8 + (size_t)hlen;
    return 0;
}

int rmu_st_open_file(rmu_st_set *s, const char *path, rmu_err *e) {
    memset(s, 0, sizeof *s);
    s->files = calloc(1, sizeof *s->files);
    if (!s->files) return rmu_errf(e, "%s: out of memory", path);
    if (map_file(&s->files[0], path, &s->tensors, &s->ntensors, e)) {
        free(s->files);
        s->files = NULL;
        return -1;
    }
    s->nfiles = 1;
    for (int i = 0; i < s->ntensors; i++) s->tensors[i].file = 0;
    return 0;
}

const rmu_st_tensor *rmu_st_get(const rmu_st_set *s, const char *name) {
    if (!s || !s->ntensors || !name) return NULL;
    rmu_st_tensor key = {.name = (char *)name};
    return bsearch(&key, s->tensors, s->ntensors, sizeof key, cmp_tensor_name);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* A shard name from the index must stay inside the model folder. */
static int plain_file_name(const char *n) {
    return n[0] && !strchr(n, '/') && strcmp(n, ".") && strcmp(n, "..");
}

static int find_tensor(const rmu_st_tensor *ts, int n, const char *name) {
    rmu_st_tensor key = {.name = (char *)name};
    const rmu_st_tensor *t = bsearch(&key, ts, n, sizeof key, cmp_tensor_name);
    return t ? (int)(t - ts) : -1;
}

static int open_sharded(rmu_st_set *s, const char *dir, const char *ipath, rmu_err *e) {
    json_error_t je;
    json_t *root = json_load_file(ipath, JSON_REJECT_DUPLICATES, &je);
    if (!root) return rmu_errf(e, "%s: invalid JSON: %s (line %d)", ipath, je.text, je.line);
    int rc = -1, nf = 0;
    rmu_st_tensor **fts = NULL;
    int *fnt = NULL;
    json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(wm)) {
        rmu_errf(e, "%s: missing \"weight_map\" object", ipath);
        goto out;
    }
    size_t nw = json_object_size(wm);
    if (nw == 0) {
        rmu_errf(e, "%s: \"weight_map\" is empty", ipath);
        goto out;
    }
    /* distinct shard names, opened in sorted order (model-00001-of-... first) */
    s->files = calloc(nw, sizeof *s->files);
    fts = calloc(nw, sizeof *fts);
    fnt = calloc(nw, sizeof *fnt);
    const char **names = calloc(nw, sizeof *names);
    if (!s->files || !fts || !fnt || !names) {
        free(names);
        rmu_errf(e, "%s: out of memory", ipath);
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(wm, key, v) {
        if (!json_is_string(v) || !plain_file_name(json_string_value(v))) {
            free(names);
            rmu_errf(e, "%s: weight_map entry for '%s' is not a plain file name", ipath, key);
            goto out;
        }
        const char *fn = json_string_value(v);
        int k;
        for (k = 0; k < nf && strcmp(names[k], fn); k++) {}
        if (k == nf) names[nf++] = fn;
    }
    qsort(names, nf, sizeof *names, cmp_str);
    for (int i = 0; i < nf; i++) {
        char path[4096];
        if (rmu_path_join(path, sizeof path, dir, names[i], e)) {
            free(names);
            goto out;
        }
        if (map_file(&s->files[i], path, &fts[i], &fnt[i], e)) {
            free(names);
            rmu_err_prefix(e, "shard listed in %s", INDEX_NAME);
            goto out;
        }
        s->nfiles = i + 1;
    }
    free(names);
    /* every mapped tensor is in its shard ... */
    size_t total = 0;
    json_object_foreach(wm, key, v) {
        const char *fn = json_string_value(v);
        int k;
        for (k = 0; k < nf && strcmp(s->files[k].name, fn); k++) {}
        if (find_tensor(fts[k], fnt[k], key) < 0) {
            rmu_errf(e, "%s: tensor '%s' is listed in weight_map for %s but that file does not contain it", ipath,
                     key, fn);
            goto out;
        }
    }
    /* ... and every tensor of a shard is mapped to that shard */
    for (int k = 0; k < nf; k++) {
        for (int i = 0; i < fnt[k]; i++) {
            json_t *m = json_object_get(wm, fts[k][i].name);
            if (!m) {
                rmu_errf(e, "%s: contains tensor '%s' which is not in the weight_map of %s", s->files[k].path,
                         fts[k][i].name, ipath);
                goto out;
            }
            if (strcmp(json_string_value(m), s->files[k].name)) {
                rmu_errf(e, "%s: contains tensor '%s' which weight_map in %s assigns to %s", s->files[k].path,
                         fts[k][i].name, ipath, json_string_value(m));
                goto out;
            }
        }
        total += fnt[k];
    }
    /* by the checks above, the union has exactly the weight_map's names, each once */
    s->tensors = calloc(total ? total : 1, sizeof *s->tensors);
    if (!s->tensors) {
        rmu_errf(e, "%s: out of memory", ipath);
        goto out;
    }
    for (int k = 0; k < nf; k++) {
        for (int i = 0; i < fnt[k]; i++) {
            s->tensors[s->ntensors] = fts[k][i];
            s->tensors[s->ntensors++].file = k;
        }
        free(fts[k]); /* names moved into s->tensors */
        fts[k] = NULL;
        fnt[k] = 0;
    }
    qsort(s->tensors, s->ntensors, sizeof *s->tensors, cmp_tensor_name);
    s->sharded = 1;
    rc = 0;
out:
    if (fts)
        for (int k = 0; k < nf; k++) rmu_st_free_tensors(fts[k], fnt[k]);
    free(fts);
    free(fnt);
    json_decref(root);
    return rc;
}

int rmu_st_open_dir(rmu_st_set *s, const char *dir, rmu_err *e) {
    memset(s, 0, sizeof *s);
    char path[4096];
    if (rmu_path_join(path, sizeof path, dir, INDEX_NAME, e)) return -1;
    if (rmu_file_exists(path)) {
        if (open_sharded(s, dir, path, e)) {
            rmu_st_close(s);
            return -1;
        }
        return 0;
    }
    if (rmu_path_join(path, sizeof path, dir, SINGLE_NAME, e)) return -1;
    if (!rmu_file_exists(path)) return rmu_errf(e, "%s: no %s or %s", dir, SINGLE_NAME, INDEX_NAME);
    return rmu_st_open_file(s, path, e);
}

/* ---------------------------------------------------------------- writing */

/* Staging for tensors produced by a fill callback: two buffers of this size, so the next
 * chunk is generated while the previous one is written (generation and disk overlap). */
#define FILL_CHUNK_BYTES ((size_t)32 << 20)

/* One chunk being written by a helper thread. */
typedef struct {
    rmu_afile *af;
    const void *buf;
    size_t n;
    int rc;
    rmu_err e;
} write_job;

static void *write_job_run(void *p) {
    write_job *j = p;
    j->rc = rmu_afile_write(j->af, j->buf, j->n, &j->e);
    return NULL;
}

/* Waits for the pending write, if any; copies its error into e. */
static int write_job_join(pthread_t *th, int *pending, write_job *j, rmu_err *e) {
    if (!*pending) return 0;
    pthread_join(*th, NULL);
    *pending = 0;
    if (j->rc && e) *e = j->e;
    return j->rc;
}

/* Data of the tensors sel[0..ns) from fill, written through a pair of chunk buffers. */
static int write_filled(rmu_afile *af, const char *path, const rmu_st_out *t, const size_t *nb, const int *sel,
                        int ns, rmu_st_fill_fn fill, void *ctx, void *bufs[2], rmu_err *e) {
    pthread_t th;
    write_job job;
    int pending = 0, cur = 0;
    for (int j = 0; j < ns; j++) {
        const rmu_st_out *o = &t[sel[j]];
        size_t es = rmu_dtype_size(o->dtype), total = nb[sel[j]] / es, per = FILL_CHUNK_BYTES / es;
        for (size_t off = 0; off < total; off += per) {
            size_t cnt = total - off < per ? total - off : per;
            if (fill(ctx, sel[j], off, cnt, bufs[cur], e)) {
                write_job_join(&th, &pending, &job, NULL);
                rmu_afile_abort(af);
                return rmu_err_prefix(e, "%s: tensor '%s'", path, o->name);
            }
            if (write_job_join(&th, &pending, &job, e)) return -1;
            job = (write_job){.af = af, .buf = bufs[cur], .n = cnt * es};
            if (pthread_create(&th, NULL, write_job_run, &job) == 0) {
                pending = 1;
            } else if (rmu_afile_write(af, bufs[cur], cnt * es, e)) { /* no thread: write inline */
                return -1;
            }
            cur ^= 1;
        }
    }
    return write_job_join(&th, &pending, &job, e);
}

static int out_nbytes(const rmu_st_out *t, size_t *nb, rmu_err *e) {
    const char *nm = t->name ? t->name : "(null)";
    if (!t->name || !t->name[0] || !strcmp(t->name, "__metadata__"))
        return rmu_errf(e, "tensor name '%s' is empty or reserved", nm);
    size_t es = rmu_dtype_size(t->dtype);
    if (!es) return rmu_errf(e, "tensor '%s': invalid dtype", nm);
    if (t->ndim < 0 || t->ndim > RMU_ST_MAX_DIMS) return rmu_errf(e, "tensor '%s': %d dimensions", nm, t->ndim);
    size_t c = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0) return rmu_errf(e, "tensor '%s': negative shape[%d]", nm, d);
        size_t v = (size_t)t->shape[d];
        if (v && c > SIZE_MAX / es / v) return rmu_errf(e, "tensor '%s': shape size overflows", nm);
        c *= v;
    }
    *nb = c * es;
    return 0;
}

static const char *shard_of(const rmu_st_out *t) { return t->shard ? t->shard : SINGLE_NAME; }

/* Header JSON for the tensors of one shard (in the given order), space-padded so the data
 * section starts at a multiple of 8. Returns malloc'd bytes including the u64 prefix. */
static char *build_header(const rmu_st_out *t, const size_t *nb, const int *sel, int ns, size_t *len, rmu_err *e) {
    json_t *root = json_object(), *md = json_object();
    char *txt = NULL, *buf = NULL;
    if (!root || !md) goto oom;
    json_object_set_new(md, "format", json_string("pt"));
    json_object_set_new(root, "__metadata__", md);
    md = NULL;
    size_t off = 0;
    for (int j = 0; j < ns; j++) {
        const rmu_st_out *o = &t[sel[j]];
        json_t *info = json_object(), *shape = json_array();
        if (!info || !shape) {
            json_decref(info);
            json_decref(shape);
            goto oom;
        }
        for (int d = 0; d < o->ndim; d++) json_array_append_new(shape, json_integer(o->shape[d]));
        json_object_set_new(info, "dtype", json_string(rmu_dtype_name(o->dtype)));
        json_object_set_new(info, "shape", shape);
        json_object_set_new(info, "data_offsets",
                            json_pack("[II]", (json_int_t)off, (json_int_t)(off + nb[sel[j]])));
        off += nb[sel[j]];
        if (json_object_set_new(root, o->name, info)) goto oom;
    }
    txt = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!txt) goto oom;
    size_t tl = strlen(txt), hl = (tl + 7) & ~(size_t)7;
    if (hl > RMU_ST_MAX_HEADER) {
        rmu_errf(e, "safetensors header of %zu bytes exceeds the %u byte limit", hl, RMU_ST_MAX_HEADER);
        goto fail;
    }
    if (!(buf = malloc(8 + hl))) goto oom;
    for (int i = 0; i < 8; i++) buf[i] = (char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, txt, tl);
    memset(buf + 8 + tl, ' ', hl - tl);
    *len = 8 + hl;
    free(txt);
    json_decref(root);
    return buf;
oom:
    rmu_errf(e, "out of memory building a safetensors header");
fail:
    free(txt);
    free(buf);
    json_decref(md);
    json_decref(root);
    return NULL;
}

static int write_index(const char *dir, const rmu_st_out *t, const size_t *nb, int n, rmu_err *e) {
    char path[4096];
    if (rmu_path_join(path, sizeof path, dir, INDEX_NAME, e)) return -1;
    json_t *root = json_object(), *md = json_object(), *wm = json_object();
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        total += nb[i];
        json_object_set_new(wm, t[i].name, json_string(shard_of(&t[i])));
    }
    json_object_set_new(md, "total_size", json_integer((json_int_t)total));
    json_object_set_new(root, "metadata", md);
    json_object_set_new(root, "weight_map", wm);
    /* sorted keys and 2-space indent, as transformers writes it */
    char *txt = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);
    if (!txt) return rmu_errf(e, "%s: out of memory", path);
    size_t l = strlen(txt);
    txt[l] = '\n'; /* json_dumps leaves room: replace the NUL, write l + 1 bytes */
    int rc = rmu_file_write_atomic(path, txt, l + 1, e);
    free(txt);
    return rc;
}

int rmu_st_write_dir_cb(const char *dir, const rmu_st_out *t, int n, rmu_st_fill_fn fill, void *ctx, rmu_err *e) {
    if (n <= 0) return rmu_errf(e, "%s: no tensors to write", dir);
    int rc = -1, nsh = 0;
    size_t *nb = calloc(n, sizeof *nb);
    const char **shards = calloc(n, sizeof *shards);
    int *sel = calloc(n, sizeof *sel);
    char *hdr = NULL;
    void *bufs[2] = {NULL, NULL};
    rmu_afile af = {0};
    if (!nb || !shards || !sel) {
        rmu_errf(e, "%s: out of memory", dir);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        if (out_nbytes(&t[i], &nb[i], e)) {
            rmu_err_prefix(e, "%s", dir);
            goto out;
        }
        if (!fill && nb[i] && !t[i].data) {
            rmu_errf(e, "%s: tensor '%s' has no data", dir, t[i].name);
            goto out;
        }
        if (!plain_file_name(shard_of(&t[i]))) {
            rmu_errf(e, "%s: shard name '%s' of tensor '%s' is not a plain file name", dir, shard_of(&t[i]),
                     t[i].name);
            goto out;
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(t[j].name, t[i].name)) {
                rmu_errf(e, "%s: tensor '%s' given twice", dir, t[i].name);
                goto out;
            }
        int k;
        for (k = 0; k < nsh && strcmp(shards[k], shard_of(&t[i])); k++) {}
        if (k == nsh) shards[nsh++] = shard_of(&t[i]);
    }
    if (fill && (!(bufs[0] = malloc(FILL_CHUNK_BYTES)) || !(bufs[1] = malloc(FILL_CHUNK_BYTES)))) {
        rmu_errf(e, "%s: out of memory", dir);
        goto out;
    }
    for (int k = 0; k < nsh; k++) {
        int ns = 0;
        for (int i = 0; i < n; i++)
            if (!strcmp(shard_of(&t[i]), shards[k])) sel[ns++] = i;
        size_t hl;
        char path[4096];
        if (!(hdr = build_header(t, nb, sel, ns, &hl, e))) {
            rmu_err_prefix(e, "%s/%s", dir, shards[k]);
            goto out;
        }
        if (rmu_path_join(path, sizeof path, dir, shards[k], e) || rmu_afile_open(&af, path, e) ||
            rmu_afile_write(&af, hdr, hl, e))
            goto out;
        free(hdr);
        hdr = NULL;
        if (fill) {
            if (write_filled(&af, path, t, nb, sel, ns, fill, ctx, bufs, e)) goto out;
        } else {
            /* straight from the caller's memory (possibly a mmap): no staging copy */
            for (int j = 0; j < ns; j++)
                if (rmu_afile_write(&af, t[sel[j]].data, nb[sel[j]], e)) goto out;
        }
        if (rmu_afile_commit(&af, e)) goto out;
    }
    char ipath[4096];
    if (rmu_path_join(ipath, sizeof ipath, dir, INDEX_NAME, e)) goto out;
    if (nsh > 1 || strcmp(shards[0], SINGLE_NAME)) {
        /* also for one differently named shard: open_dir finds it only through an index */
        if (write_index(dir, t, nb, n, e)) goto out;
        /* transformers loads a model.safetensors in preference to the index: drop a stale one */
        int own = 0;
        for (int k = 0; k < nsh; k++) own |= !strcmp(shards[k], SINGLE_NAME);
        char spath[4096];
        if (!own && rmu_path_join(spath, sizeof spath, dir, SINGLE_NAME, NULL) == 0 && rmu_file_exists(spath) &&
            unlink(spath) != 0) {
            rmu_errf(e, "%s: cannot remove stale file: %s", spath, strerror(errno));
            goto out;
        }
    } else if (rmu_file_exists(ipath) && unlink(ipath) != 0) {
        /* a stale index from an earlier sharded write would shadow model.safetensors */
        rmu_errf(e, "%s: cannot remove stale index: %s", ipath, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    rmu_afile_abort(&af);
    free(bufs[0]);
    free(bufs[1]);
    free(hdr);
    free(sel);
    free(shards);
    free(nb);
    return rc;
}

int rmu_st_write_dir(const char *dir, const rmu_st_out *t, int n, rmu_err *e) {
    return rmu_st_write_dir_cb(dir, t, n, NULL, NULL, e);
}
