/* gguf.c - GGUF v3 writer (metadata serialized in memory, tensor data streamed), the
 * validating reader, Q8_0 quantization. See gguf.h for the layout. */
#include "io/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/dtype.h"
#include "core/fileio.h"
#include "core/strbuf.h"

/* Scalars and tensor data are written as they sit in memory. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "GGUF is little-endian; this code assumes a little-endian host"
#endif

#define GGUF_MAGIC "GGUF"
#define GGUF_MAX_NAME 64 /* ggml's GGML_MAX_NAME: names are shorter (room for the NUL) */

const char *rmu_ggml_type_name(rmu_ggml_type t) {
    switch (t) {
    case RMU_GGML_F32: return "F32";
    case RMU_GGML_F16: return "F16";
    case RMU_GGML_Q8_0: return "Q8_0";
    case RMU_GGML_BF16: return "BF16";
    }
    return NULL;
}

size_t rmu_ggml_nbytes(rmu_ggml_type t, int64_t n) {
    if (n < 0) return 0;
    switch (t) {
    case RMU_GGML_F32: return (size_t)n * 4;
    case RMU_GGML_F16:
    case RMU_GGML_BF16: return (size_t)n * 2;
    case RMU_GGML_Q8_0: return n % RMU_GGUF_QK8_0 ? 0 : (size_t)(n / RMU_GGUF_QK8_0) * RMU_GGUF_Q8_0_BLOCK;
    }
    return 0;
}

size_t rmu_gguf_vtype_size(rmu_gguf_vtype t) {
    switch (t) {
    case RMU_GGUF_U8:
    case RMU_GGUF_I8:
    case RMU_GGUF_BOOL: return 1;
    case RMU_GGUF_U16:
    case RMU_GGUF_I16: return 2;
    case RMU_GGUF_U32:
    case RMU_GGUF_I32:
    case RMU_GGUF_F32: return 4;
    case RMU_GGUF_U64:
    case RMU_GGUF_I64:
    case RMU_GGUF_F64: return 8;
    default: return 0;
    }
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* ================================================================ writer */

typedef struct {
    char *name;
    rmu_ggml_type type;
    int ndim;
    int64_t ne[RMU_GGUF_MAX_DIMS];
    size_t nbytes;
} wtensor;

enum { W_BUILDING, W_WRITING, W_DONE, W_FAILED };

struct rmu_gguf_writer {
    rmu_sb kv;   /* serialized metadata */
    char **keys; /* for the uniqueness check */
    int n_kv, cap_kv;
    wtensor *t;
    int n_t, cap_t;
    int state;
    rmu_afile f;
    int cur;       /* tensor being written */
    size_t done;   /* its bytes so far */
    uint64_t size; /* file bytes written */
};

rmu_gguf_writer *rmu_gguf_writer_new(rmu_err *e) {
    rmu_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) rmu_errf(e, "gguf: out of memory");
    return w;
}

void rmu_gguf_writer_free(rmu_gguf_writer *w) {
    if (!w) return;
    if (w->state == W_WRITING) rmu_afile_abort(&w->f);
    rmu_sb_free(&w->kv);
    for (int i = 0; i < w->n_kv; i++) free(w->keys[i]);
    free(w->keys);
    for (int i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->t);
    free(w);
}

static void sb_u32(rmu_sb *b, uint32_t v) { rmu_sb_add(b, &v, 4); }
static void sb_u64(rmu_sb *b, uint64_t v) { rmu_sb_add(b, &v, 8); }
static void sb_str(rmu_sb *b, const char *s, size_t n) {
    sb_u64(b, n);
    rmu_sb_add(b, s, n);
}

/* Common checks of a new key; records it. */
static int new_key(rmu_gguf_writer *w, const char *key, rmu_err *e) {
    if (w->state != W_BUILDING) return rmu_errf(e, "gguf: metadata '%s' added after the header was written", key);
    if (!key || !*key) return rmu_errf(e, "gguf: empty metadata key");
    for (int i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], key)) return rmu_errf(e, "gguf: metadata key '%s' set twice", key);
    if (w->n_kv == w->cap_kv) {
        int cap = w->cap_kv ? w->cap_kv * 2 : 32;
        char **k = realloc(w->keys, sizeof *k * (size_t)cap);
        if (!k) return rmu_errf(e, "gguf: out of memory");
        w->keys = k, w->cap_kv = cap;
    }
    if (!(w->keys[w->n_kv] = strdup(key))) return rmu_errf(e, "gguf: out of memory");
    w->n_kv++;
    sb_str(&w->kv, key, strlen(key));
    return 0;
}

int rmu_gguf_set(rmu_gguf_writer *w, const char *key, rmu_gguf_vtype type, const void *value, rmu_err *e) {
    if (type == RMU_GGUF_ARRAY) return rmu_errf(e, "gguf: '%s': arrays go through rmu_gguf_set_array", key);
    if (type != RMU_GGUF_STRING && !rmu_gguf_vtype_size(type))
        return rmu_errf(e, "gguf: '%s': unknown value type %d", key, (int)type);
    if (type == RMU_GGUF_BOOL && *(const uint8_t *)value > 1)
        return rmu_errf(e, "gguf: '%s': a bool must be 0 or 1", key);
    if (new_key(w, key, e)) return -1;
    sb_u32(&w->kv, (uint32_t)type);
    if (type == RMU_GGUF_STRING) {
        const char *s = *(const char *const *)value;
        sb_str(&w->kv, s, strlen(s));
    } else {
        rmu_sb_add(&w->kv, value, rmu_gguf_vtype_size(type));
    }
    return w->kv.oom ? rmu_errf(e, "gguf: out of memory") : 0;
}

int rmu_gguf_set_array(rmu_gguf_writer *w, const char *key, rmu_gguf_vtype elem_type, const void *vals,
                       const size_t *lens, uint64_t n, rmu_err *e) {
    if (elem_type != RMU_GGUF_STRING && !rmu_gguf_vtype_size(elem_type))
        return rmu_errf(e, "gguf: '%s': unsupported array element type %d", key, (int)elem_type);
    if (new_key(w, key, e)) return -1;
    sb_u32(&w->kv, RMU_GGUF_ARRAY);
    sb_u32(&w->kv, (uint32_t)elem_type);
    sb_u64(&w->kv, n);
    if (elem_type == RMU_GGUF_STRING) {
        const char *const *s = vals;
        for (uint64_t i = 0; i < n; i++) sb_str(&w->kv, s[i], lens ? lens[i] : strlen(s[i]));
    } else {
        const uint8_t *v = vals;
        if (elem_type == RMU_GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (v[i] > 1) return rmu_errf(e, "gguf: '%s': a bool must be 0 or 1", key);
        rmu_sb_add(&w->kv, vals, (size_t)n * rmu_gguf_vtype_size(elem_type));
    }
    return w->kv.oom ? rmu_errf(e, "gguf: out of memory") : 0;
}

int rmu_gguf_set_u32(rmu_gguf_writer *w, const char *key, uint32_t v, rmu_err *e) {
    return rmu_gguf_set(w, key, RMU_GGUF_U32, &v, e);
}
int rmu_gguf_set_f32(rmu_gguf_writer *w, const char *key, float v, rmu_err *e) {
    return rmu_gguf_set(w, key, RMU_GGUF_F32, &v, e);
}
int rmu_gguf_set_bool(rmu_gguf_writer *w, const char *key, int v, rmu_err *e) {
    uint8_t b = v != 0;
    return rmu_gguf_set(w, key, RMU_GGUF_BOOL, &b, e);
}
int rmu_gguf_set_str(rmu_gguf_writer *w, const char *key, const char *v, rmu_err *e) {
    return rmu_gguf_set(w, key, RMU_GGUF_STRING, &v, e);
}

int rmu_gguf_add_tensor(rmu_gguf_writer *w, const char *name, rmu_ggml_type type, int ndim, const int64_t *ne,
                        rmu_err *e) {
    if (w->state != W_BUILDING) return rmu_errf(e, "gguf: tensor '%s' added after the header was written", name);
    size_t nl = name ? strlen(name) : 0;
    if (!nl || nl >= GGUF_MAX_NAME) return rmu_errf(e, "gguf: tensor name '%s' must be 1..%d bytes", name ? name : "", GGUF_MAX_NAME - 1);
    if (!rmu_ggml_type_name(type)) return rmu_errf(e, "gguf: tensor '%s': unknown ggml type %d", name, (int)type);
    if (ndim < 1 || ndim > RMU_GGUF_MAX_DIMS) return rmu_errf(e, "gguf: tensor '%s': %d dims (1..4)", name, ndim);
    int64_t n = 1;
    for (int d = 0; d < ndim; d++)
        if (ne[d] < 1 || __builtin_mul_overflow(n, ne[d], &n) || n > ((int64_t)1 << 50))
            return rmu_errf(e, "gguf: tensor '%s': bad shape (dim %d is %lld)", name, d, (long long)ne[d]);
    if (type == RMU_GGML_Q8_0 && ne[0] % RMU_GGUF_QK8_0)
        return rmu_errf(e, "gguf: tensor '%s': Q8_0 needs rows of a multiple of 32 elements, not %lld", name,
                        (long long)ne[0]);
    for (int i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return rmu_errf(e, "gguf: tensor '%s' added twice", name);
    if (w->n_t == w->cap_t) {
        int cap = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *t = realloc(w->t, sizeof *t * (size_t)cap);
        if (!t) return rmu_errf(e, "gguf: out of memory");
        w->t = t, w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) return rmu_errf(e, "gguf: out of memory");
    t->type = type;
    t->ndim = ndim;
    memcpy(t->ne, ne, sizeof(int64_t) * (size_t)ndim);
    t->nbytes = rmu_ggml_nbytes(type, n);
    w->n_t++;
    return 0;
}

size_t rmu_gguf_tensor_nbytes(const rmu_gguf_writer *w, int i) {
    return i >= 0 && i < w->n_t ? w->t[i].nbytes : 0;
}

int rmu_gguf_begin(rmu_gguf_writer *w, const char *path, rmu_err *e) {
    if (w->state != W_BUILDING) return rmu_errf(e, "%s: gguf header already written", path);
    rmu_sb h = {0};
    rmu_sb_add(&h, GGUF_MAGIC, 4);
    sb_u32(&h, RMU_GGUF_VERSION);
    sb_u64(&h, (uint64_t)w->n_t);
    sb_u64(&h, (uint64_t)w->n_kv);
    rmu_sb_add(&h, w->kv.p ? w->kv.p : "", w->kv.n);
    uint64_t off = 0;
    for (int i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        sb_str(&h, t->name, strlen(t->name));
        sb_u32(&h, (uint32_t)t->ndim);
        for (int d = 0; d < t->ndim; d++) sb_u64(&h, (uint64_t)t->ne[d]);
        sb_u32(&h, (uint32_t)t->type);
        sb_u64(&h, off);
        off += align_up(t->nbytes, RMU_GGUF_ALIGN);
    }
    static const char zero[RMU_GGUF_ALIGN];
    rmu_sb_add(&h, zero, align_up(h.n, RMU_GGUF_ALIGN) - h.n);
    if (h.oom) {
        rmu_sb_free(&h);
        return rmu_errf(e, "%s: out of memory", path);
    }
    int rc = rmu_afile_open(&w->f, path, e);
    if (!rc) {
        rc = rmu_afile_write(&w->f, h.p, h.n, e);
        w->state = rc ? W_FAILED : W_WRITING; /* a failed write already dropped the file */
    }
    w->size = h.n;
    rmu_sb_free(&h);
    return rc;
}

int rmu_gguf_write(rmu_gguf_writer *w, const void *data, size_t n, rmu_err *e) {
    static const char zero[RMU_GGUF_ALIGN];
    if (w->state != W_WRITING) return rmu_errf(e, "gguf: tensor data written outside begin/finish");
    const uint8_t *p = data;
    while (n) {
        if (w->cur >= w->n_t) {
            rmu_afile_abort(&w->f);
            w->state = W_FAILED;
            return rmu_errf(e, "%s: more tensor data than the %d tensors declared", w->f.path, w->n_t);
        }
        wtensor *t = &w->t[w->cur];
        size_t take = t->nbytes - w->done < n ? t->nbytes - w->done : n;
        if (rmu_afile_write(&w->f, p, take, e)) {
            w->state = W_FAILED;
            return -1;
        }
        p += take, n -= take, w->done += take, w->size += take;
        if (w->done == t->nbytes) {
            size_t pad = align_up(t->nbytes, RMU_GGUF_ALIGN) - t->nbytes;
            if (rmu_afile_write(&w->f, zero, pad, e)) {
                w->state = W_FAILED;
                return -1;
            }
            w->size += pad;
            w->cur++;
            w->done = 0;
        }
    }
    return 0;
}

int rmu_gguf_finish(rmu_gguf_writer *w, uint64_t *size, rmu_err *e) {
    if (w->state != W_WRITING) return rmu_errf(e, "gguf: finish without a successful begin");
    if (w->cur < w->n_t) {
        int r = rmu_errf(e, "%s: tensor '%s' got %zu of its %zu bytes", w->f.path, w->t[w->cur].name, w->done,
                         w->t[w->cur].nbytes);
        rmu_afile_abort(&w->f);
        w->state = W_FAILED;
        return r;
    }
    w->state = W_FAILED; /* commit removes the temporary file itself on failure */
    if (rmu_afile_commit(&w->f, e)) return -1;
    w->state = W_DONE;
    if (size) *size = w->size;
    return 0;
}

/* ================================================================ reader */

typedef struct {
    const uint8_t *buf;
    size_t size, off;
    const char *fname;
    rmu_err *e;
} cursor;

static int need(cursor *c, size_t n, const char *what) {
    if (n > c->size - c->off)
        return rmu_errf(c->e, "%s: truncated: %s needs %zu bytes at offset %zu, the file has %zu", c->fname, what, n,
                        c->off, c->size);
    return 0;
}

static int rd_u32(cursor *c, uint32_t *v, const char *what) {
    if (need(c, 4, what)) return -1;
    memcpy(v, c->buf + c->off, 4);
    c->off += 4;
    return 0;
}

static int rd_u64(cursor *c, uint64_t *v, const char *what) {
    if (need(c, 8, what)) return -1;
    memcpy(v, c->buf + c->off, 8);
    c->off += 8;
    return 0;
}

static int rd_str(cursor *c, const uint8_t **s, uint64_t *n, const char *what) {
    if (rd_u64(c, n, what)) return -1;
    if (*n > c->size - c->off)
        return rmu_errf(c->e, "%s: truncated: %s of %llu bytes at offset %zu, the file has %zu", c->fname, what,
                        (unsigned long long)*n, c->off, c->size);
    *s = c->buf + c->off;
    c->off += (size_t)*n;
    return 0;
}

/* A NUL-terminated copy of s[0..n) for names; NUL bytes inside are refused. */
static char *name_dup(cursor *c, const uint8_t *s, uint64_t n, const char *what) {
    if (memchr(s, 0, (size_t)n)) {
        rmu_errf(c->e, "%s: %s at offset %zu contains a NUL byte", c->fname, what, c->off);
        return NULL;
    }
    char *p = malloc((size_t)n + 1);
    if (!p) {
        rmu_errf(c->e, "%s: out of memory", c->fname);
        return NULL;
    }
    memcpy(p, s, (size_t)n);
    p[n] = 0;
    return p;
}

static int rd_scalar(cursor *c, rmu_gguf_kv *kv, rmu_gguf_vtype t) {
    size_t sz = rmu_gguf_vtype_size(t);
    if (need(c, sz, kv->key)) return -1;
    const uint8_t *p = c->buf + c->off;
    c->off += sz;
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; float f32; uint64_t u64;
            int64_t i64; double f64; } v;
    memcpy(&v, p, sz);
    switch (t) {
    case RMU_GGUF_U8: kv->u = v.u8; break;
    case RMU_GGUF_BOOL:
        if (v.u8 > 1) return rmu_errf(c->e, "%s: metadata '%s': bool value %u is not 0 or 1", c->fname, kv->key, v.u8);
        kv->u = v.u8;
        break;
    case RMU_GGUF_I8: kv->i = v.i8; break;
    case RMU_GGUF_U16: kv->u = v.u16; break;
    case RMU_GGUF_I16: kv->i = v.i16; break;
    case RMU_GGUF_U32: kv->u = v.u32; break;
    case RMU_GGUF_I32: kv->i = v.i32; break;
    case RMU_GGUF_F32: kv->f = v.f32; break;
    case RMU_GGUF_U64: kv->u = v.u64; break;
    case RMU_GGUF_I64: kv->i = v.i64; break;
    case RMU_GGUF_F64: kv->f = v.f64; break;
    default: break;
    }
    return 0;
}

static int rd_value(cursor *c, rmu_gguf_kv *kv) {
    uint32_t t;
    if (rd_u32(c, &t, "metadata type")) return -1;
    if (t >= RMU_GGUF_NVTYPES)
        return rmu_errf(c->e, "%s: metadata '%s' has unknown type %u", c->fname, kv->key, t);
    kv->type = (rmu_gguf_vtype)t;
    if (t == RMU_GGUF_STRING) return rd_str(c, &kv->data, &kv->n, kv->key);
    if (t != RMU_GGUF_ARRAY) return rd_scalar(c, kv, kv->type);
    uint32_t et;
    if (rd_u32(c, &et, "array element type") || rd_u64(c, &kv->n, "array length")) return -1;
    if (et >= RMU_GGUF_NVTYPES || et == RMU_GGUF_ARRAY)
        return rmu_errf(c->e, "%s: metadata '%s': array element type %u is not supported", c->fname, kv->key, et);
    kv->arr_type = (rmu_gguf_vtype)et;
    if (et != RMU_GGUF_STRING) {
        size_t sz = rmu_gguf_vtype_size(kv->arr_type);
        if (kv->n > (c->size - c->off) / sz)
            return rmu_errf(c->e, "%s: truncated: metadata '%s' has %llu elements, more than the file holds", c->fname,
                            kv->key, (unsigned long long)kv->n);
        kv->data = c->buf + c->off;
        if (et == RMU_GGUF_BOOL)
            for (uint64_t i = 0; i < kv->n; i++)
                if (kv->data[i] > 1) return rmu_errf(c->e, "%s: metadata '%s'[%llu]: bool is not 0 or 1", c->fname,
                                                     kv->key, (unsigned long long)i);
        c->off += (size_t)kv->n * sz;
        return 0;
    }
    if (kv->n > (c->size - c->off) / 8) /* each string has at least its 8-byte length */
        return rmu_errf(c->e, "%s: truncated: metadata '%s' has %llu strings, more than the file holds", c->fname,
                        kv->key, (unsigned long long)kv->n);
    kv->str = malloc(sizeof *kv->str * (size_t)(kv->n ? kv->n : 1));
    kv->str_len = malloc(sizeof *kv->str_len * (size_t)(kv->n ? kv->n : 1));
    if (!kv->str || !kv->str_len) return rmu_errf(c->e, "%s: out of memory", c->fname);
    for (uint64_t i = 0; i < kv->n; i++)
        if (rd_str(c, &kv->str[i], &kv->str_len[i], kv->key)) return -1;
    return 0;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Finds a repeated name among n (sorting a copy of the pointers); NULL when all differ. */
static const char *find_dup(char **names, int n, int *oom) {
    *oom = 0;
    if (n < 2) return NULL;
    char **s = malloc(sizeof *s * (size_t)n);
    if (!s) {
        *oom = 1;
        return NULL;
    }
    memcpy(s, names, sizeof *s * (size_t)n);
    qsort(s, (size_t)n, sizeof *s, cmp_names);
    const char *d = NULL;
    for (int i = 1; i < n && !d; i++)
        if (!strcmp(s[i - 1], s[i])) d = s[i];
    free(s);
    return d;
}

void rmu_gguf_close(rmu_gguf_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n_kv; i++) {
        free(f->kv[i].key);
        free(f->kv[i].str);
        free(f->kv[i].str_len);
    }
    free(f->kv);
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    if (f->map) munmap(f->map, f->size);
    memset(f, 0, sizeof *f);
}

static int parse_kvs(cursor *c, rmu_gguf_file *f, uint64_t n) {
    for (uint64_t k = 0; k < n; k++) {
        rmu_gguf_kv *kv = &f->kv[f->n_kv];
        const uint8_t *s;
        uint64_t l;
        if (rd_str(c, &s, &l, "metadata key")) return -1;
        if (!l) return rmu_errf(c->e, "%s: metadata %llu has an empty key", c->fname, (unsigned long long)k);
        if (!(kv->key = name_dup(c, s, l, "metadata key"))) return -1;
        f->n_kv++;
        if (rd_value(c, kv)) return -1;
    }
    int oom;
    char **keys = malloc(sizeof *keys * (size_t)(f->n_kv ? f->n_kv : 1));
    if (!keys) return rmu_errf(c->e, "%s: out of memory", c->fname);
    for (int i = 0; i < f->n_kv; i++) keys[i] = f->kv[i].key;
    const char *d = find_dup(keys, f->n_kv, &oom);
    int rc = oom ? rmu_errf(c->e, "%s: out of memory", c->fname)
                 : d ? rmu_errf(c->e, "%s: metadata key '%s' appears twice", c->fname, d) : 0;
    free(keys);
    return rc;
}

static int parse_tensor_info(cursor *c, rmu_gguf_file *f) {
    rmu_gguf_tensor *t = &f->tensors[f->n_tensors];
    const uint8_t *s;
    uint64_t l;
    uint32_t nd, ty;
    if (rd_str(c, &s, &l, "tensor name")) return -1;
    if (!l || l >= GGUF_MAX_NAME)
        return rmu_errf(c->e, "%s: tensor %d: name of %llu bytes (1..%d)", c->fname, f->n_tensors,
                        (unsigned long long)l, GGUF_MAX_NAME - 1);
    if (!(t->name = name_dup(c, s, l, "tensor name"))) return -1;
    f->n_tensors++;
    if (rd_u32(c, &nd, "tensor dims")) return -1;
    if (nd < 1 || nd > RMU_GGUF_MAX_DIMS)
        return rmu_errf(c->e, "%s: tensor '%s' has %u dims (1..%d)", c->fname, t->name, nd, RMU_GGUF_MAX_DIMS);
    t->ndim = (int)nd;
    int64_t n = 1;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t v;
        if (rd_u64(c, &v, "tensor shape")) return -1;
        if (v > (uint64_t)INT64_MAX || (v && n > INT64_MAX / (int64_t)v))
            return rmu_errf(c->e, "%s: tensor '%s': shape overflows", c->fname, t->name);
        t->ne[d] = (int64_t)v;
        n *= (int64_t)v;
    }
    if (rd_u32(c, &ty, "tensor type") || rd_u64(c, &t->offset, "tensor offset")) return -1;
    t->type = (rmu_ggml_type)ty;
    if (!rmu_ggml_type_name(t->type))
        return rmu_errf(c->e, "%s: tensor '%s' has ggml type %u; rmu reads F32, F16, BF16 and Q8_0", c->fname, t->name,
                        ty);
    if (t->type == RMU_GGML_Q8_0 && t->ne[0] % RMU_GGUF_QK8_0)
        return rmu_errf(c->e, "%s: tensor '%s': Q8_0 row of %lld elements is not whole blocks of 32", c->fname,
                        t->name, (long long)t->ne[0]);
    if (n > (int64_t)(SIZE_MAX / 4)) return rmu_errf(c->e, "%s: tensor '%s' is too large", c->fname, t->name);
    t->nbytes = rmu_ggml_nbytes(t->type, n);
    return 0;
}

int rmu_gguf_parse(const uint8_t *buf, size_t size, const char *fname, rmu_gguf_file *f, rmu_err *e) {
    memset(f, 0, sizeof *f);
    cursor c = {buf, size, 0, fname, e};
    uint32_t ver;
    uint64_t nt, nkv;
    if (need(&c, 4, "magic")) return -1;
    if (memcmp(buf, GGUF_MAGIC, 4)) return rmu_errf(e, "%s: not a GGUF file (no \"GGUF\" magic)", fname);
    c.off = 4;
    if (rd_u32(&c, &ver, "version")) return -1;
    if (ver != RMU_GGUF_VERSION) return rmu_errf(e, "%s: GGUF version %u; rmu reads version 3", fname, ver);
    f->version = ver;
    if (rd_u64(&c, &nt, "tensor count") || rd_u64(&c, &nkv, "metadata count")) return -1;
    /* a metadata entry takes >= 13 bytes, a tensor info >= 32: bound the counts by the size */
    if (nkv > (size - c.off) / 13 || nt > (size - c.off) / 32)
        return rmu_errf(e, "%s: %llu tensors and %llu metadata entries cannot fit in %zu bytes", fname,
                        (unsigned long long)nt, (unsigned long long)nkv, size);
    f->kv = calloc((size_t)(nkv ? nkv : 1), sizeof *f->kv);
    f->tensors = calloc((size_t)(nt ? nt : 1), sizeof *f->tensors);
    if (!f->kv || !f->tensors) {
        rmu_gguf_close(f);
        return rmu_errf(e, "%s: out of memory", fname);
    }
    if (parse_kvs(&c, f, nkv)) goto fail;
    f->alignment = RMU_GGUF_ALIGN;
    const rmu_gguf_kv *al = rmu_gguf_find(f, "general.alignment");
    if (al) {
        if (al->type != RMU_GGUF_U32 || !al->u || (al->u & (al->u - 1))) {
            rmu_errf(e, "%s: general.alignment must be a u32 power of two", fname);
            goto fail;
        }
        f->alignment = (size_t)al->u;
    }
    for (uint64_t i = 0; i < nt; i++)
        if (parse_tensor_info(&c, f)) goto fail;
    {
        char **names = malloc(sizeof *names * (size_t)(f->n_tensors ? f->n_tensors : 1));
        if (!names) {
            rmu_errf(e, "%s: out of memory", fname);
            goto fail;
        }
        for (int i = 0; i < f->n_tensors; i++) names[i] = f->tensors[i].name;
        int oom;
        const char *d = find_dup(names, f->n_tensors, &oom);
        if (oom || d) {
            if (oom) rmu_errf(e, "%s: out of memory", fname);
            else rmu_errf(e, "%s: tensor '%s' appears twice", fname, d);
            free(names);
            goto fail;
        }
        free(names);
    }
    f->data_off = (size_t)align_up(c.off, f->alignment);
    if (f->data_off > size) {
        rmu_errf(e, "%s: truncated: the data section starts at %zu, the file has %zu bytes", fname, f->data_off, size);
        goto fail;
    }
    uint64_t expect = 0;
    for (int i = 0; i < f->n_tensors; i++) {
        rmu_gguf_tensor *t = &f->tensors[i];
        if (t->offset != expect) {
            rmu_errf(e, "%s: tensor '%s' is at data offset %llu; expected %llu (aligned, in file order)", fname,
                     t->name, (unsigned long long)t->offset, (unsigned long long)expect);
            goto fail;
        }
        if (t->nbytes > size - f->data_off || t->offset > size - f->data_off - t->nbytes) {
            rmu_errf(e, "%s: truncated: tensor '%s' (%zu bytes at data offset %llu) ends past the file's %zu bytes",
                     fname, t->name, t->nbytes, (unsigned long long)t->offset, size);
            goto fail;
        }
        t->data = buf + f->data_off + t->offset;
        expect = align_up(t->offset + t->nbytes, f->alignment);
    }
    f->size = size;
    return 0;
fail:
    rmu_gguf_close(f);
    return -1;
}

int rmu_gguf_open(const char *path, rmu_gguf_file *f, rmu_err *e) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return rmu_errf(e, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return rmu_errf(e, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return rmu_errf(e, "%s: empty file", path);
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return rmu_errf(e, "%s: cannot map: %s", path, strerror(errno));
    if (rmu_gguf_parse(map, (size_t)st.st_size, path, f, e)) {
        munmap(map, (size_t)st.st_size);
        return -1;
    }
    f->map = map;
    f->size = (size_t)st.st_size;
    return 0;
}

const rmu_gguf_kv *rmu_gguf_find(const rmu_gguf_file *f, const char *key) {
    for (int i = 0; i < f->n_kv; i++)
        if (!strcmp(f->kv[i].key, key)) return &f->kv[i];
    return NULL;
}

const rmu_gguf_tensor *rmu_gguf_tensor_find(const rmu_gguf_file *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

double rmu_gguf_arr_num(const rmu_gguf_kv *kv, uint64_t i) {
    if (kv->type != RMU_GGUF_ARRAY || i >= kv->n || !kv->data) return 0;
    size_t sz = rmu_gguf_vtype_size(kv->arr_type);
    const uint8_t *p = kv->data + i * sz;
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; float f32; uint64_t u64;
            int64_t i64; double f64; } v;
    memcpy(&v, p, sz);
    switch (kv->arr_type) {
    case RMU_GGUF_U8:
    case RMU_GGUF_BOOL: return v.u8;
    case RMU_GGUF_I8: return v.i8;
    case RMU_GGUF_U16: return v.u16;
    case RMU_GGUF_I16: return v.i16;
    case RMU_GGUF_U32: return v.u32;
    case RMU_GGUF_I32: return v.i32;
    case RMU_GGUF_F32: return v.f32;
    case RMU_GGUF_U64: return (double)v.u64;
    case RMU_GGUF_I64: return (double)v.i64;
    case RMU_GGUF_F64: return v.f64;
    default: return 0;
    }
}

/* ================================================================ transforms */

void rmu_gguf_quantize_q8_0(const float *x, int64_t n, uint8_t *out) {
    for (int64_t b = 0; b < n / RMU_GGUF_QK8_0; b++, x += RMU_GGUF_QK8_0, out += RMU_GGUF_Q8_0_BLOCK) {
        float amax = 0.0f;
        for (int j = 0; j < RMU_GGUF_QK8_0; j++) {
            float a = fabsf(x[j]);
            amax = amax > a ? amax : a;
        }
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        uint16_t h = rmu_f32_to_f16(d);
        memcpy(out, &h, 2);
        for (int j = 0; j < RMU_GGUF_QK8_0; j++) out[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
}
