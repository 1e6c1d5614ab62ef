/* test_gguf.c - the GGUF writer and reader (src/io/gguf.h): a file checked byte for byte
 * against a hand-built image, a round trip of every metadata type and of tensors of every
 * type (alignment, offsets, padding), streaming and its errors (nothing left behind), Q8_0
 * blocks against ggml's reference formula with worked values, the Q/K row permutation as an
 * explicit example and as "RoPE commutes with it", and one test per kind of malformed file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <dirent.h>
#include <cmocka.h>

#include "testutil.h"
#include "core/dtype.h"
#include "core/fileio.h"
#include "io/gguf.h"

/* ---- helpers */

static uint8_t *read_file(const char *path, size_t *n) {
    rmu_err e;
    char *b = rmu_file_read_all(path, n, &e);
    if (!b) fail_msg("%s", e.msg);
    return (uint8_t *)b;
}

/* Number of entries in dir besides . and .. (what a failed write must leave behind: nothing). */
static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
    closedir(d);
    return n;
}

typedef struct {
    uint8_t b[512];
    size_t n;
} img;

static void put(img *m, const void *p, size_t n) {
    memcpy(m->b + m->n, p, n);
    m->n += n;
}
static void put_u32(img *m, uint32_t v) { put(m, &v, 4); }
static void put_u64(img *m, uint64_t v) { put(m, &v, 8); }
static void put_str(img *m, const char *s) {
    put_u64(m, strlen(s));
    put(m, s, strlen(s));
}

/* ---- 1. exact bytes of a minimal file */

static void test_exact_bytes(void **state) {
    const char *dir = *state;
    rmu_err e;
    rmu_gguf_writer *w = rmu_gguf_writer_new(&e);
    assert_non_null(w);
    OK(rmu_gguf_set_u32(w, "a", 7, &e));
    int64_t ne[1] = {2};
    OK(rmu_gguf_add_tensor(w, "t", RMU_GGML_F32, 1, ne, &e));
    assert_int_equal(rmu_gguf_tensor_nbytes(w, 0), 8);
    const char *path = tu_path(dir, "min.gguf");
    OK(rmu_gguf_begin(w, path, &e));
    float v[2] = {1.0f, 2.0f};
    OK(rmu_gguf_write(w, v, sizeof v, &e));
    uint64_t size;
    OK(rmu_gguf_finish(w, &size, &e));
    rmu_gguf_writer_free(w);

    img x = {{0}, 0};
    put(&x, "GGUF", 4);
    put_u32(&x, 3);
    put_u64(&x, 1); /* tensors */
    put_u64(&x, 1); /* metadata */
    put_str(&x, "a");
    put_u32(&x, RMU_GGUF_U32);
    put_u32(&x, 7);
    put_str(&x, "t");
    put_u32(&x, 1);
    put_u64(&x, 2);
    put_u32(&x, RMU_GGML_F32);
    put_u64(&x, 0);
    assert_int_equal(x.n, 74);
    x.n = 96; /* zero padding to 32 */
    put(&x, v, 8);
    x.n = 128; /* the tensor's padding */
    size_t n;
    uint8_t *got = read_file(path, &n);
    assert_int_equal(size, 128);
    assert_int_equal(n, 128);
    assert_memory_equal(got, x.b, 128);
    free(got);
}

/* ---- 2. every metadata type and tensor type, round trip */

static void test_round_trip(void **state) {
    const char *dir = *state;
    rmu_err e;
    rmu_gguf_writer *w = rmu_gguf_writer_new(&e);
    uint8_t u8 = 200, b1 = 1;
    int8_t i8 = -100;
    uint16_t u16 = 65000;
    int16_t i16 = -30000;
    uint32_t u32 = 4000000000u;
    int32_t i32 = -2000000000;
    float f32 = 1.5e-5f;
    uint64_t u64 = 0xfedcba9876543210ull;
    int64_t i64 = -1234567890123ll;
    double f64 = 3.141592653589793;
    const char *s = "h\xc3\xa9llo \xe2\x96\x81";
    OK(rmu_gguf_set(w, "k.u8", RMU_GGUF_U8, &u8, &e));
    OK(rmu_gguf_set(w, "k.i8", RMU_GGUF_I8, &i8, &e));
    OK(rmu_gguf_set(w, "k.u16", RMU_GGUF_U16, &u16, &e));
    OK(rmu_gguf_set(w, "k.i16", RMU_GGUF_I16, &i16, &e));
    OK(rmu_gguf_set(w, "k.u32", RMU_GGUF_U32, &u32, &e));
    OK(rmu_gguf_set(w, "k.i32", RMU_GGUF_I32, &i32, &e));
    OK(rmu_gguf_set(w, "k.f32", RMU_GGUF_F32, &f32, &e));
    OK(rmu_gguf_set(w, "k.bool", RMU_GGUF_BOOL, &b1, &e));
    OK(rmu_gguf_set(w, "k.str", RMU_GGUF_STRING, &s, &e));
    OK(rmu_gguf_set(w, "k.u64", RMU_GGUF_U64, &u64, &e));
    OK(rmu_gguf_set(w, "k.i64", RMU_GGUF_I64, &i64, &e));
    OK(rmu_gguf_set(w, "k.f64", RMU_GGUF_F64, &f64, &e));
    OK(rmu_gguf_set_bool(w, "k.false", 0, &e));
    int32_t ai[4] = {1, -2, 3, -4};
    float af[3] = {-1e9f, 0.0f, 2.5f};
    uint8_t ab[3] = {1, 0, 1};
    int16_t ah[2] = {-7, 7};
    double ad[2] = {1e300, -0.5};
    const char *as[4] = {"<unk>", "", "\xe2\x96\x81the", "a\0b"};
    size_t al[4] = {5, 0, 6, 3}; /* strings may hold any bytes */
    OK(rmu_gguf_set_array(w, "a.i32", RMU_GGUF_I32, ai, NULL, 4, &e));
    OK(rmu_gguf_set_array(w, "a.f32", RMU_GGUF_F32, af, NULL, 3, &e));
    OK(rmu_gguf_set_array(w, "a.bool", RMU_GGUF_BOOL, ab, NULL, 3, &e));
    OK(rmu_gguf_set_array(w, "a.i16", RMU_GGUF_I16, ah, NULL, 2, &e));
    OK(rmu_gguf_set_array(w, "a.f64", RMU_GGUF_F64, ad, NULL, 2, &e));
    OK(rmu_gguf_set_array(w, "a.str", RMU_GGUF_STRING, as, al, 4, &e));
    OK(rmu_gguf_set_array(w, "a.empty", RMU_GGUF_U32, NULL, NULL, 0, &e));

    /* tensors: odd sizes so every one needs padding */
    int64_t ne_a[1] = {3}, ne_b[2] = {5, 2}, ne_c[3] = {3, 1, 2}, ne_d[2] = {64, 3};
    OK(rmu_gguf_add_tensor(w, "a.f32", RMU_GGML_F32, 1, ne_a, &e)); /* tensor and key names are separate */
    OK(rmu_gguf_add_tensor(w, "b.f16", RMU_GGML_F16, 2, ne_b, &e));
    OK(rmu_gguf_add_tensor(w, "c.bf16", RMU_GGML_BF16, 3, ne_c, &e));
    OK(rmu_gguf_add_tensor(w, "d.q8_0", RMU_GGML_Q8_0, 2, ne_d, &e));
    size_t nb[4] = {12, 20, 12, 3 * 2 * 34};
    for (int i = 0; i < 4; i++) assert_int_equal(rmu_gguf_tensor_nbytes(w, i), nb[i]);
    uint8_t data[4][256];
    uint64_t r = 5;
    for (int i = 0; i < 4; i++)
        for (size_t k = 0; k < nb[i]; k++) data[i][k] = (uint8_t)(tu_frand(&r) * 127 + 128);
    const char *path = tu_path(dir, "all.gguf");
    OK(rmu_gguf_begin(w, path, &e));
    /* streamed in pieces that straddle tensors: 7 bytes at a time */
    uint8_t all[1024];
    size_t tot = 0;
    for (int i = 0; i < 4; i++) memcpy(all + tot, data[i], nb[i]), tot += nb[i];
    for (size_t k = 0; k < tot; k += 7) OK(rmu_gguf_write(w, all + k, tot - k < 7 ? tot - k : 7, &e));
    uint64_t size;
    OK(rmu_gguf_finish(w, &size, &e));
    rmu_gguf_writer_free(w);

    rmu_gguf_file f;
    OK(rmu_gguf_open(path, &f, &e));
    assert_int_equal(f.version, 3);
    assert_int_equal(f.n_kv, 20);
    assert_int_equal(f.n_tensors, 4);
    assert_int_equal(f.alignment, 32);
    assert_int_equal(f.data_off % 32, 0);
    assert_int_equal(f.size, size);
    /* order kept */
    assert_string_equal(f.kv[0].key, "k.u8");
    assert_string_equal(f.kv[19].key, "a.empty");
    const rmu_gguf_kv *k;
#define SCALAR(key, T, field, val)                    \
    k = rmu_gguf_find(&f, key);                       \
    assert_non_null(k);                               \
    assert_int_equal(k->type, T);                     \
    assert_true(k->field == (val))
    SCALAR("k.u8", RMU_GGUF_U8, u, 200);
    SCALAR("k.i8", RMU_GGUF_I8, i, -100);
    SCALAR("k.u16", RMU_GGUF_U16, u, 65000);
    SCALAR("k.i16", RMU_GGUF_I16, i, -30000);
    SCALAR("k.u32", RMU_GGUF_U32, u, 4000000000u);
    SCALAR("k.i32", RMU_GGUF_I32, i, -2000000000);
    SCALAR("k.f32", RMU_GGUF_F32, f, (double)1.5e-5f);
    SCALAR("k.bool", RMU_GGUF_BOOL, u, 1);
    SCALAR("k.false", RMU_GGUF_BOOL, u, 0);
    SCALAR("k.u64", RMU_GGUF_U64, u, 0xfedcba9876543210ull);
    SCALAR("k.i64", RMU_GGUF_I64, i, -1234567890123ll);
    SCALAR("k.f64", RMU_GGUF_F64, f, 3.141592653589793);
#undef SCALAR
    k = rmu_gguf_find(&f, "k.str");
    assert_int_equal(k->type, RMU_GGUF_STRING);
    assert_int_equal(k->n, strlen(s));
    assert_memory_equal(k->data, s, strlen(s));
    k = rmu_gguf_find(&f, "a.i32");
    assert_int_equal(k->type, RMU_GGUF_ARRAY);
    assert_int_equal(k->arr_type, RMU_GGUF_I32);
    assert_int_equal(k->n, 4);
    for (int i = 0; i < 4; i++) assert_true(rmu_gguf_arr_num(k, (uint64_t)i) == ai[i]);
    assert_true(rmu_gguf_arr_num(k, 4) == 0); /* out of range */
    k = rmu_gguf_find(&f, "a.f32");
    for (int i = 0; i < 3; i++) assert_true(rmu_gguf_arr_num(k, (uint64_t)i) == af[i]);
    k = rmu_gguf_find(&f, "a.bool");
    for (int i = 0; i < 3; i++) assert_true(rmu_gguf_arr_num(k, (uint64_t)i) == ab[i]);
    k = rmu_gguf_find(&f, "a.i16");
    assert_true(rmu_gguf_arr_num(k, 0) == -7);
    k = rmu_gguf_find(&f, "a.f64");
    assert_true(rmu_gguf_arr_num(k, 0) == 1e300);
    k = rmu_gguf_find(&f, "a.str");
    assert_int_equal(k->arr_type, RMU_GGUF_STRING);
    assert_int_equal(k->n, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(k->str_len[i], al[i]);
        assert_memory_equal(k->str[i], as[i], al[i]);
    }
    k = rmu_gguf_find(&f, "a.empty");
    assert_int_equal(k->n, 0);
    assert_null(rmu_gguf_find(&f, "missing"));

    /* tensors: declared shapes and types, offsets 32-aligned and consecutive */
    const char *names[4] = {"a.f32", "b.f16", "c.bf16", "d.q8_0"};
    rmu_ggml_type types[4] = {RMU_GGML_F32, RMU_GGML_F16, RMU_GGML_BF16, RMU_GGML_Q8_0};
    uint64_t off = 0;
    for (int i = 0; i < 4; i++) {
        const rmu_gguf_tensor *t = rmu_gguf_tensor_find(&f, names[i]);
        assert_non_null(t);
        assert_ptr_equal(t, &f.tensors[i]);
        assert_int_equal(t->type, types[i]);
        assert_int_equal(t->offset, off);
        assert_int_equal(t->offset % 32, 0);
        assert_int_equal(t->nbytes, nb[i]);
        assert_memory_equal(t->data, data[i], nb[i]);
        assert_ptr_equal(t->data, (const uint8_t *)f.map + f.data_off + off);
        off += (nb[i] + 31) / 32 * 32;
    }
    assert_int_equal(f.tensors[2].ndim, 3);
    assert_int_equal(f.tensors[2].ne[0], 3);
    assert_int_equal(f.tensors[2].ne[2], 2);
    assert_int_equal(f.data_off + off, f.size); /* the last tensor is padded too */
    /* padding bytes are zero */
    for (uint64_t p = 12; p < 32; p++) assert_int_equal(((const uint8_t *)f.map)[f.data_off + p], 0);
    rmu_gguf_close(&f);
}

/* ---- 3. writer errors: clean messages, nothing left behind */

static void test_writer_errors(void **state) {
    rmu_err e;
    char *dir = tu_mkdtemp("gguf_w");
    assert_non_null(dir);
    rmu_gguf_writer *w = rmu_gguf_writer_new(&e);
    OK(rmu_gguf_set_u32(w, "x", 1, &e));
    assert_int_equal(rmu_gguf_set_f32(w, "x", 1, &e), -1);
    assert_non_null(strstr(e.msg, "'x' set twice"));
    assert_int_equal(rmu_gguf_set_u32(w, "", 1, &e), -1);
    uint8_t two = 2;
    assert_int_equal(rmu_gguf_set(w, "b", RMU_GGUF_BOOL, &two, &e), -1);
    assert_int_equal(rmu_gguf_set(w, "arr", RMU_GGUF_ARRAY, &two, &e), -1);
    int64_t q[2] = {48, 2}, ok2[2] = {32, 2}, zero[1] = {0};
    assert_int_equal(rmu_gguf_add_tensor(w, "q", RMU_GGML_Q8_0, 2, q, &e), -1);
    assert_non_null(strstr(e.msg, "multiple of 32"));
    assert_int_equal(rmu_gguf_add_tensor(w, "z", RMU_GGML_F32, 1, zero, &e), -1);
    assert_int_equal(rmu_gguf_add_tensor(w, "five", RMU_GGML_F32, 5, ok2, &e), -1);
    assert_int_equal(rmu_gguf_add_tensor(w, "t", (rmu_ggml_type)2, 2, ok2, &e), -1); /* Q4_0: not written */
    char longname[80];
    memset(longname, 'n', 64);
    longname[64] = 0;
    assert_int_equal(rmu_gguf_add_tensor(w, longname, RMU_GGML_F32, 2, ok2, &e), -1);
    OK(rmu_gguf_add_tensor(w, "t", RMU_GGML_Q8_0, 2, ok2, &e));
    assert_int_equal(rmu_gguf_add_tensor(w, "t", RMU_GGML_F32, 2, ok2, &e), -1);
    assert_non_null(strstr(e.msg, "added twice"));
    assert_int_equal(rmu_gguf_write(w, "x", 1, &e), -1); /* before begin */
    /* begin into a missing folder */
    assert_int_equal(rmu_gguf_begin(w, tu_path(dir, "no/such/out.gguf"), &e), -1);
    assert_non_null(strstr(e.msg, "no/such/out.gguf"));
    rmu_gguf_writer_free(w);
    assert_int_equal(count_entries(dir), 0);

    /* too much data: the file is dropped */
    w = rmu_gguf_writer_new(&e);
    OK(rmu_gguf_add_tensor(w, "t", RMU_GGML_F16, 2, ok2, &e));
    OK(rmu_gguf_begin(w, tu_path(dir, "over.gguf"), &e));
    assert_int_equal(count_entries(dir), 1); /* the temporary file */
    uint8_t buf[200] = {0};
    assert_int_equal(rmu_gguf_write(w, buf, 129, &e), -1);
    assert_non_null(strstr(e.msg, "more tensor data"));
    assert_int_equal(count_entries(dir), 0);
    assert_int_equal(rmu_gguf_finish(w, NULL, &e), -1);
    rmu_gguf_writer_free(w);

    /* too little: finish names the tensor and drops the file */
    w = rmu_gguf_writer_new(&e);
    OK(rmu_gguf_add_tensor(w, "t", RMU_GGML_F16, 2, ok2, &e));
    OK(rmu_gguf_add_tensor(w, "u", RMU_GGML_F32, 1, ok2, &e));
    OK(rmu_gguf_begin(w, tu_path(dir, "under.gguf"), &e));
    OK(rmu_gguf_write(w, buf, 130, &e));
    assert_int_equal(rmu_gguf_set_u32(w, "late", 1, &e), -1); /* metadata after the header */
    assert_int_equal(rmu_gguf_finish(w, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "tensor 'u' got 2 of its 128 bytes"));
    rmu_gguf_writer_free(w);
    assert_int_equal(count_entries(dir), 0);

    /* abandoned half way (freed without finish): nothing left */
    w = rmu_gguf_writer_new(&e);
    OK(rmu_gguf_add_tensor(w, "t", RMU_GGML_F16, 2, ok2, &e));
    OK(rmu_gguf_begin(w, tu_path(dir, "gone.gguf"), &e));
    OK(rmu_gguf_write(w, buf, 10, &e));
    rmu_gguf_writer_free(w);
    assert_int_equal(count_entries(dir), 0);
    tu_rmtree(dir);
    free(dir);
}

/* ---- 4. Q8_0 */

/* ggml's quantize_row_q8_0_ref for one block, written out again here. */
static void ref_q8_0(const float *x, uint16_t *d, int8_t *q) {
    float amax = 0;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    float dd = amax / 127.0f, id = dd != 0 ? 1.0f / dd : 0.0f;
    *d = rmu_f32_to_f16(dd);
    for (int j = 0; j < 32; j++) q[j] = (int8_t)roundf(x[j] * id);
}

static void test_q8_0(void **state) {
    (void)state;
    float x[32 * 4];
    uint8_t out[34 * 4];
    /* block 0: x = j - 16: amax 16, d = 16/127, 1/d = 7.9375 exactly */
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16);
    /* block 1: amax 127 (d = 1): halves round away from zero, as roundf */
    for (int j = 0; j < 32; j++) x[32 + j] = 0;
    x[32] = 127, x[33] = 2.5f, x[34] = -2.5f, x[35] = 0.5f, x[36] = -126.5f, x[37] = 1.49f;
    /* block 2: all zero: d = 0, q = 0 */
    for (int j = 0; j < 32; j++) x[64 + j] = 0;
    /* block 3: random */
    uint64_t r = 11;
    for (int j = 0; j < 32; j++) x[96 + j] = tu_frand(&r) * 0.05f;
    rmu_gguf_quantize_q8_0(x, 128, out);

    uint16_t d;
    int8_t *q = (int8_t *)out + 2;
    memcpy(&d, out, 2);
    assert_int_equal(d, rmu_f32_to_f16(16.0f / 127.0f));
    assert_int_equal(q[0], -127);  /* -16 * 7.9375 = -127 */
    assert_int_equal(q[16], 0);
    assert_int_equal(q[17], 8);    /* 7.9375 -> 8 */
    assert_int_equal(q[18], 16);   /* 15.875 -> 16 */
    assert_int_equal(q[20], 32);   /* 31.75 -> 32 */
    assert_int_equal(q[31], 119);  /* 119.0625 -> 119 */
    memcpy(&d, out + 34, 2);
    assert_int_equal(d, 0x3c00);   /* 1.0 */
    q = (int8_t *)out + 36;
    assert_int_equal(q[0], 127);
    assert_int_equal(q[1], 3);
    assert_int_equal(q[2], -3);
    assert_int_equal(q[3], 1);
    assert_int_equal(q[4], -127);
    assert_int_equal(q[5], 1);
    memcpy(&d, out + 68, 2);
    assert_int_equal(d, 0);
    for (int j = 0; j < 32; j++) assert_int_equal(((int8_t *)out)[70 + j], 0);
    for (int b = 0; b < 4; b++) {
        uint16_t rd;
        int8_t rq[32];
        ref_q8_0(x + 32 * b, &rd, rq);
        memcpy(&d, out + 34 * b, 2);
        assert_int_equal(d, rd);
        assert_memory_equal(out + 34 * b + 2, rq, 32);
        /* dequantized within half a step (+ the fp16 rounding of d) */
        float dd = rmu_f16_to_f32(d);
        for (int j = 0; j < 32; j++)
            assert_near(dd * ((int8_t *)out)[34 * b + 2 + j], x[32 * b + j], dd * 0.5f + dd * 127 * 1e-3f + 1e-7f);
    }
}

/* ---- 5. the Q/K permutation */

static void test_rope_permutation(void **state) {
    (void)state;
    /* head_dim 4, two heads: GGML rows come from HF rows 0 2 1 3 | 4 6 5 7 */
    static const int64_t want[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    for (int r = 0; r < 8; r++) assert_int_equal(rmu_gguf_rope_src_row(r, 4), want[r]);
    /* head_dim 8: 0 4 1 5 2 6 3 7 */
    static const int64_t want8[8] = {0, 4, 1, 5, 2, 6, 3, 7};
    for (int r = 0; r < 8; r++) assert_int_equal(rmu_gguf_rope_src_row(r, 8), want8[r]);
    /* a permutation of each head's rows */
    for (int hd = 2; hd <= 128; hd += 2) {
        unsigned char seen[256] = {0};
        for (int r = 0; r < 2 * hd; r++) seen[rmu_gguf_rope_src_row(r, hd)]++;
        for (int r = 0; r < 2 * hd; r++) assert_int_equal(seen[r], 1);
    }
    /* what it is for: W x rotated by HF's rotate_half RoPE, then permuted, equals the
     * permuted W x rotated by GGML's adjacent-pair RoPE (llama.cpp's "normal" mode) */
    enum { HD = 8, H = 2, C = 5 };
    float W[H * HD][C], x[C], y[H * HD], hf[H * HD], gg[H * HD], yp[H * HD];
    uint64_t s = 3;
    for (int i = 0; i < H * HD; i++)
        for (int j = 0; j < C; j++) W[i][j] = tu_frand(&s);
    for (int j = 0; j < C; j++) x[j] = tu_frand(&s);
    for (int i = 0; i < H * HD; i++) {
        y[i] = 0;
        for (int j = 0; j < C; j++) y[i] += W[i][j] * x[j];
    }
    const int pos = 7;
    for (int h = 0; h < H; h++)
        for (int k = 0; k < HD / 2; k++) {
            double th = pos * pow(10000.0, -2.0 * k / HD), c = cos(th), sn = sin(th);
            const float *a = y + h * HD;
            hf[h * HD + k] = (float)(a[k] * c - a[k + HD / 2] * sn);
            hf[h * HD + k + HD / 2] = (float)(a[k + HD / 2] * c + a[k] * sn);
        }
    for (int r = 0; r < H * HD; r++) yp[r] = y[rmu_gguf_rope_src_row(r, HD)];
    for (int h = 0; h < H; h++)
        for (int k = 0; k < HD / 2; k++) {
            double th = pos * pow(10000.0, -2.0 * k / HD), c = cos(th), sn = sin(th);
            const float *a = yp + h * HD;
            gg[h * HD + 2 * k] = (float)(a[2 * k] * c - a[2 * k + 1] * sn);
            gg[h * HD + 2 * k + 1] = (float)(a[2 * k + 1] * c + a[2 * k] * sn);
        }
    for (int r = 0; r < H * HD; r++) assert_near(gg[r], hf[rmu_gguf_rope_src_row(r, HD)], 1e-6);
}

/* ---- 6. malformed files */

/* A valid file with two tensors (built through the writer) to break in tests. */
static uint8_t *valid_image(const char *dir, size_t *n) {
    rmu_err e;
    rmu_gguf_writer *w = rmu_gguf_writer_new(&e);
    const char *toks[2] = {"a", "bc"};
    OK(rmu_gguf_set_str(w, "general.architecture", "llama", &e));
    OK(rmu_gguf_set_array(w, "tok", RMU_GGUF_STRING, toks, NULL, 2, &e));
    int64_t ne[2] = {32, 2}, ne1[1] = {3};
    OK(rmu_gguf_add_tensor(w, "w", RMU_GGML_Q8_0, 2, ne, &e));
    OK(rmu_gguf_add_tensor(w, "n", RMU_GGML_F32, 1, ne1, &e));
    const char *p = tu_path(dir, "valid.gguf");
    OK(rmu_gguf_begin(w, p, &e));
    uint8_t z[128] = {0};
    OK(rmu_gguf_write(w, z, 68 + 12, &e));
    OK(rmu_gguf_finish(w, NULL, &e));
    rmu_gguf_writer_free(w);
    return read_file(p, n);
}

static void expect_bad(const uint8_t *b, size_t n, const char *frag) {
    rmu_gguf_file f;
    rmu_err e = {{0}};
    if (rmu_gguf_parse(b, n, "x.gguf", &f, &e) == 0) fail_msg("accepted a file that should fail with '%s'", frag);
    if (!strstr(e.msg, "x.gguf")) fail_msg("message does not name the file: %s", e.msg);
    if (frag && !strstr(e.msg, frag)) fail_msg("message lacks '%s': %s", frag, e.msg);
    assert_null(f.kv);
    assert_null(f.tensors);
}

/* Offset of the first occurrence of needle in b. */
static size_t find(const uint8_t *b, size_t n, const void *needle, size_t k) {
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(b + i, needle, k)) return i;
    fail_msg("pattern not found");
    return 0;
}

static void test_reader_rejects(void **state) {
    const char *dir = *state;
    size_t n;
    uint8_t *v = valid_image(dir, &n), *b = malloc(n + 64);
    rmu_gguf_file f;
    rmu_err e;
    OK(rmu_gguf_parse(v, n, "x.gguf", &f, &e));
    assert_int_equal(f.n_tensors, 2);
    rmu_gguf_close(&f);
    /* every truncation fails cleanly */
    for (size_t k = 0; k < n - 32 + 12; k++) expect_bad(v, k, k < 4 ? "truncated" : NULL);
#define MUT(stmt, frag)            \
    do {                           \
        memcpy(b, v, n);           \
        stmt;                      \
        expect_bad(b, n, frag);    \
    } while (0)
    MUT(b[0] = 'X', "not a GGUF file");
    MUT(b[4] = 2, "version 2");
    MUT(memset(b + 8, 0xff, 8), "cannot fit");
    MUT(memset(b + 16, 0x7f, 8), "cannot fit");
    size_t ktype = find(v, n, "architecture", 12) + 12; /* u32 type after the key */
    MUT(b[ktype] = 13, "unknown type 13");
    MUT(b[ktype + 4] = 0xff, "truncated"); /* string length far past the end */
    size_t atype = find(v, n, "tok", 3) + 3 + 4; /* array element type */
    MUT(b[atype] = RMU_GGUF_ARRAY, "array element type 9");
    MUT(memset(b + atype + 4, 0x40, 7), "more than the file holds");
    size_t wname = find(v, n, "\x01\0\0\0\0\0\0\0w", 9); /* name length 1 + "w" */
    MUT(b[wname + 8] = 'n', "tensor 'n' appears twice");
    MUT(b[wname + 9] = 5, "5 dims");
    MUT(b[wname + 9 + 4 + 16] = 2, "ggml type 2");          /* Q4_0 */
    MUT(b[wname + 9 + 4] = 33, "not whole blocks of 32");    /* ne[0] = 33 with Q8_0 */
    MUT(b[wname + 9 + 4 + 16 + 4] = 32, "expected 0");      /* offset of the first tensor */
    size_t nname = find(v, n, "\x01\0\0\0\0\0\0\0n", 9);
    MUT(b[nname + 9 + 4] = 100, "ends past the file");       /* 'n' of 100 floats */
    MUT(memset(b + wname + 9 + 4, 0xff, 15), "shape overflows");
    free(b);
    /* a genuinely duplicated key and a bad general.alignment, built by hand */
    img x = {{0}, 0};
    put(&x, "GGUF", 4), put_u32(&x, 3), put_u64(&x, 0), put_u64(&x, 2);
    put_str(&x, "k"), put_u32(&x, RMU_GGUF_U8), put(&x, "\1", 1);
    put_str(&x, "k"), put_u32(&x, RMU_GGUF_U8), put(&x, "\2", 1);
    expect_bad(x.b, x.n, "'k' appears twice");
    x.n = 0;
    put(&x, "GGUF", 4), put_u32(&x, 3), put_u64(&x, 0), put_u64(&x, 1);
    put_str(&x, "general.alignment"), put_u32(&x, RMU_GGUF_U32), put_u32(&x, 24);
    expect_bad(x.b, x.n, "power of two");
    x.n = 0;
    put(&x, "GGUF", 4), put_u32(&x, 3), put_u64(&x, 0), put_u64(&x, 1);
    put_str(&x, "b"), put_u32(&x, RMU_GGUF_BOOL), put(&x, "\2", 1);
    expect_bad(x.b, x.n, "bool");
    /* general.alignment 64 is honoured */
    x.n = 0;
    put(&x, "GGUF", 4), put_u32(&x, 3), put_u64(&x, 1), put_u64(&x, 1);
    put_str(&x, "general.alignment"), put_u32(&x, RMU_GGUF_U32), put_u32(&x, 64);
    put_str(&x, "t"), put_u32(&x, 1), put_u64(&x, 2), put_u32(&x, RMU_GGML_F32), put_u64(&x, 0);
    size_t hdr = x.n;
    assert_int_equal(hdr, 90); /* data at 128 (at 96 with the default 32) */
    x.n = 128 + 8;
    OK(rmu_gguf_parse(x.b, x.n, "x.gguf", &f, &e));
    assert_int_equal(f.alignment, 64);
    assert_int_equal(f.data_off, 128);
    rmu_gguf_close(&f);
    free(v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_bytes),     cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_writer_errors),   cmocka_unit_test(test_q8_0),
        cmocka_unit_test(test_rope_permutation), cmocka_unit_test(test_reader_rejects),
    };
    return cmocka_run_group_tests(tests, tu_setup_tmp, tu_teardown_tmp);
}
