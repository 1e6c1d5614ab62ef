/* test_safetensors.c - safetensors round trips (single file, sharded, all dtypes, streamed)
 * and one test per kind of malformed input, each checking what the message says. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <omp.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "testutil.h"
#include "core/fileio.h"
#include "io/safetensors.h"
#include "model/init.h"

/* ---- helpers */

/* A file image: u64 header length, header text, data_len bytes of pattern. */
static uint8_t *image(const char *hdr, size_t data_len, size_t *size) {
    size_t hl = strlen(hdr);
    uint8_t *b = malloc(8 + hl + data_len + 1);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, hdr, hl);
    for (size_t i = 0; i < data_len; i++) b[8 + hl + i] = (uint8_t)(i * 7 + 1);
    *size = 8 + hl + data_len;
    return b;
}

/* Parses hdr + data_len bytes and requires failure with a message containing every
 * given fragment. */
static void expect_parse_error(const char *hdr, size_t data_len, const char *frag1, const char *frag2) {
    size_t size;
    uint8_t *b = image(hdr, data_len, &size);
    rmu_st_tensor *t = (void *)1;
    int n = 99;
    rmu_err e = {{0}};
    int rc = rmu_st_parse(b, size, "x.safetensors", &t, &n, &e);
    if (rc == 0) fail_msg("accepted: %s", hdr);
    assert_null(t);
    assert_int_equal(n, 0);
    if (!strstr(e.msg, "x.safetensors")) fail_msg("message does not name the file: %s", e.msg);
    if (frag1 && !strstr(e.msg, frag1)) fail_msg("message lacks '%s': %s", frag1, e.msg);
    if (frag2 && !strstr(e.msg, frag2)) fail_msg("message lacks '%s': %s", frag2, e.msg);
    free(b);
}

static void write_file(const char *dir, const char *name, const void *buf, size_t n) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, n, f), n);
    fclose(f);
}

/* Three tensors, one per dtype, with distinct byte patterns. */
typedef struct {
    float a[6];
    uint16_t b[5], c[4];
    rmu_st_out out[3];
} sample;

static void make_sample(sample *s, const char *sa, const char *sb, const char *sc) {
    for (int i = 0; i < 6; i++) s->a[i] = 0.5f * i - 1.25f;
    for (int i = 0; i < 5; i++) s->b[i] = rmu_f32_to_f16(i * 0.75f);
    for (int i = 0; i < 4; i++) s->c[i] = rmu_f32_to_bf16(-3.0f * i);
    rmu_st_out o[3] = {
        {"model.layers.0.w", RMU_DT_F32, 2, {2, 3}, s->a, sa},
        {"model.embed_tokens.weight", RMU_DT_F16, 1, {5}, s->b, sb},
        {"lm_head.weight", RMU_DT_BF16, 2, {2, 2}, s->c, sc},
    };
    memcpy(s->out, o, sizeof o);
}

static void check_sample(const rmu_st_set *set, const sample *s) {
    assert_int_equal(set->ntensors, 3);
    for (int i = 0; i < 3; i++) {
        const rmu_st_out *o = &s->out[i];
        const rmu_st_tensor *t = rmu_st_get(set, o->name);
        if (!t) fail_msg("missing %s", o->name);
        assert_string_equal(t->name, o->name);
        assert_int_equal(t->dtype, o->dtype);
        assert_int_equal(t->ndim, o->ndim);
        size_t cnt = 1;
        for (int d = 0; d < o->ndim; d++) {
            assert_int_equal(t->shape[d], o->shape[d]);
            cnt *= (size_t)o->shape[d];
        }
        assert_int_equal(t->nbytes, cnt * rmu_dtype_size(o->dtype));
        assert_memory_equal(t->data, o->data, t->nbytes);
        /* our writer pads headers so every tensor is 8-byte aligned in the file */
        const rmu_st_file *f = &set->files[t->file];
        assert_int_equal(f->data_off % 8, 0);
        assert_true((const char *)t->data >= (const char *)f->map + f->data_off);
    }
    for (int i = 1; i < set->ntensors; i++) assert_true(strcmp(set->tensors[i - 1].name, set->tensors[i].name) < 0);
    assert_null(rmu_st_get(set, "nope"));
    assert_null(rmu_st_get(set, ""));
}

/* ---- round trips */

static void test_roundtrip_single(void **state) {
    const char *dir = *state;
    sample s;
    make_sample(&s, NULL, NULL, NULL);
    rmu_err e = {{0}};
    if (rmu_st_write_dir(dir, s.out, 3, &e)) fail_msg("%s", e.msg);
    char p[4096];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    assert_false(rmu_file_exists(p));
    rmu_st_set set;
    if (rmu_st_open_dir(&set, dir, &e)) fail_msg("%s", e.msg);
    assert_int_equal(set.nfiles, 1);
    assert_int_equal(set.sharded, 0);
    assert_string_equal(set.files[0].name, "model.safetensors");
    check_sample(&set, &s);
    /* header: metadata first, then tensors in the given order, space padded */
    const char *h = (const char *)set.files[0].map + 8;
    size_t hl = set.files[0].data_off - 8;
    assert_int_equal(hl % 8, 0);
    assert_true(!strncmp(h, "{\"__metadata__\":{\"format\":\"pt\"},\"model.layers.0.w\":", 50));
    const char *lm = memmem(h, hl, "lm_head", 7), *emb = memmem(h, hl, "embed_tokens", 12);
    assert_true(emb && lm && emb < lm);
    /* data in the given order too */
    assert_ptr_equal(rmu_st_get(&set, "model.layers.0.w")->data, (const char *)set.files[0].map + set.files[0].data_off);
    rmu_st_close(&set);
    rmu_st_close(&set); /* idempotent */
}

static void test_roundtrip_sharded(void **state) {
    const char *dir = *state;
    sample s;
    make_sample(&s, "model-00001-of-00002.safetensors", "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors");
    rmu_err e = {{0}};
    char p[4096];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    write_file(dir, "model.safetensors", "stale", 5); /* transformers would prefer it: removed */
    if (rmu_st_write_dir(dir, s.out, 3, &e)) fail_msg("%s", e.msg);
    assert_false(rmu_file_exists(p));
    rmu_st_set set;
    if (rmu_st_open_dir(&set, dir, &e)) fail_msg("%s", e.msg);
    assert_int_equal(set.nfiles, 2);
    assert_int_equal(set.sharded, 1);
    check_sample(&set, &s);
    const rmu_st_tensor *t = rmu_st_get(&set, "lm_head.weight");
    assert_string_equal(set.files[t->file].name, "model-00002-of-00002.safetensors");
    rmu_st_close(&set);

    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    json_error_t je;
    json_t *idx = json_load_file(p, 0, &je);
    assert_non_null(idx);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(idx, "metadata"), "total_size")),
                     6 * 4 + 5 * 2 + 4 * 2);
    json_t *wm = json_object_get(idx, "weight_map");
    assert_int_equal(json_object_size(wm), 3);
    assert_string_equal(json_string_value(json_object_get(wm, "model.layers.0.w")), "model-00001-of-00002.safetensors");
    assert_string_equal(json_string_value(json_object_get(wm, "lm_head.weight")), "model-00002-of-00002.safetensors");
    json_decref(idx);

    /* each shard can also be opened on its own */
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    if (rmu_st_open_file(&set, p, &e)) fail_msg("%s", e.msg);
    assert_int_equal(set.ntensors, 1);
    rmu_st_close(&set);

    /* rewriting as a single file drops the stale index so the new file is what loads */
    make_sample(&s, NULL, NULL, NULL);
    s.a[0] = 42.0f;
    if (rmu_st_write_dir(dir, s.out, 3, &e)) fail_msg("%s", e.msg);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    assert_false(rmu_file_exists(p));
    if (rmu_st_open_dir(&set, dir, &e)) fail_msg("%s", e.msg);
    assert_int_equal(set.sharded, 0);
    check_sample(&set, &s);
    rmu_st_close(&set);
}

/* A single shard with a non-default name is reachable through an index. */
static void test_single_named_shard(void **state) {
    const char *dir = *state;
    sample s;
    const char *nm = "model-00001-of-00001.safetensors";
    make_sample(&s, nm, nm, nm);
    rmu_err e = {{0}};
    if (rmu_st_write_dir(dir, s.out, 3, &e)) fail_msg("%s", e.msg);
    rmu_st_set set;
    if (rmu_st_open_dir(&set, dir, &e)) fail_msg("%s", e.msg);
    assert_int_equal(set.sharded, 1);
    check_sample(&set, &s);
    rmu_st_close(&set);
}

typedef struct {
    int calls;
    size_t covered[3];
} fill_log;

static int fill_pattern(void *ctx, int index, size_t off, size_t count, void *buf, rmu_err *e) {
    fill_log *l = ctx;
    l->calls++;
    assert_int_equal(off, l->covered[index]); /* in order, no gaps */
    l->covered[index] += count;
    if (index == 1) return rmu_errf(e, "synthetic failure");
    float *f = buf;
    for (size_t i = 0; i < count; i++) f[i] = (float)(off + i) * (index + 1);
    return 0;
}

static void test_streamed_write(void **state) {
    const char *dir = *state;
    rmu_st_out o[2] = {{"a", RMU_DT_F32, 2, {3, 7}, NULL, NULL}, {"b", RMU_DT_F32, 1, {0}, NULL, NULL}};
    fill_log l = {0};
    rmu_err e = {{0}};
    if (rmu_st_write_dir_cb(dir, o, 2, fill_pattern, &l, &e)) fail_msg("%s", e.msg);
    assert_int_equal(l.calls, 1); /* the empty tensor needs no call */
    assert_int_equal(l.covered[0], 21);
    rmu_st_set set;
    if (rmu_st_open_dir(&set, dir, &e)) fail_msg("%s", e.msg);
    const rmu_st_tensor *a = rmu_st_get(&set, "a"), *b = rmu_st_get(&set, "b");
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(b->nbytes, 0);
    assert_int_equal(b->ndim, 1);
    for (int i = 0; i < 21; i++) assert_true(((const float *)a->data)[i] == (float)i);
    rmu_st_close(&set);

    /* a failing callback aborts the file: no partial output, old file intact */
    rmu_st_out o2[2] = {{"x", RMU_DT_F32, 1, {4}, NULL, NULL}, {"y", RMU_DT_F32, 1, {4}, NULL, NULL}};
    memset(&l, 0, sizeof l);
    assert_int_equal(rmu_st_write_dir_cb(dir, o2, 2, fill_pattern, &l, &e), -1);
    assert_non_null(strstr(e.msg, "synthetic failure"));
    assert_non_null(strstr(e.msg, "'y'"));
    if (rmu_st_open_dir(&set, dir, &e)) fail_msg("%s", e.msg);
    assert_non_null(rmu_st_get(&set, "a"));
    rmu_st_close(&set);
}

static void test_write_errors(void **state) {
    const char *dir = *state;
    float d[4] = {0};
    rmu_err e = {{0}};
    rmu_st_out dup[2] = {{"w", RMU_DT_F32, 1, {4}, d, NULL}, {"w", RMU_DT_F32, 1, {4}, d, NULL}};
    assert_int_equal(rmu_st_write_dir(dir, dup, 2, &e), -1);
    assert_non_null(strstr(e.msg, "'w' given twice"));
    rmu_st_out neg = {"w", RMU_DT_F32, 1, {-4}, d, NULL};
    assert_int_equal(rmu_st_write_dir(dir, &neg, 1, &e), -1);
    assert_non_null(strstr(e.msg, "negative"));
    rmu_st_out bad = {"w", RMU_DT_INVALID, 1, {4}, d, NULL};
    assert_int_equal(rmu_st_write_dir(dir, &bad, 1, &e), -1);
    assert_non_null(strstr(e.msg, "invalid dtype"));
    rmu_st_out trav = {"w", RMU_DT_F32, 1, {4}, d, "../evil.safetensors"};
    assert_int_equal(rmu_st_write_dir(dir, &trav, 1, &e), -1);
    assert_non_null(strstr(e.msg, "plain file name"));
    rmu_st_out meta = {"__metadata__", RMU_DT_F32, 1, {4}, d, NULL};
    assert_int_equal(rmu_st_write_dir(dir, &meta, 1, &e), -1);
    assert_non_null(strstr(e.msg, "reserved"));
    assert_int_equal(rmu_st_write_dir(dir, dup, 0, &e), -1);
    rmu_st_out ok = {"w", RMU_DT_F32, 1, {4}, d, NULL};
    assert_int_equal(rmu_st_write_dir("/nonexistent/dir/x", &ok, 1, &e), -1);
    assert_non_null(strstr(e.msg, "/nonexistent/dir/x"));
}

/* ---- malformed single files */

static void test_truncated(void **state) {
    (void)state;
    uint8_t b[5] = {1, 0, 0, 0, 0};
    rmu_st_tensor *t;
    int n;
    rmu_err e = {{0}};
    assert_int_equal(rmu_st_parse(b, sizeof b, "x.safetensors", &t, &n, &e), -1);
    assert_non_null(strstr(e.msg, "x.safetensors: truncated: 5 bytes"));
    assert_int_equal(rmu_st_parse(b, 0, "x.safetensors", &t, &n, &e), -1);
    assert_non_null(strstr(e.msg, "truncated"));
    /* header length beyond the file */
    uint8_t h[8 + 10] = {100};
    memcpy(h + 8, "{}        ", 10);
    assert_int_equal(rmu_st_parse(h, sizeof h, "x.safetensors", &t, &n, &e), -1);
    assert_non_null(strstr(e.msg, "header length 100 runs past the end of the 18-byte file"));
    /* data section shorter than the offsets */
    expect_parse_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "'w'", "out of bounds");
}

static void test_header_cap(void **state) {
    (void)state;
    uint8_t h[16] = {0};
    uint64_t big = (uint64_t)RMU_ST_MAX_HEADER + 1;
    for (int i = 0; i < 8; i++) h[i] = (uint8_t)(big >> (8 * i));
    rmu_st_tensor *t;
    int n;
    rmu_err e = {{0}};
    assert_int_equal(rmu_st_parse(h, sizeof h, "x.safetensors", &t, &n, &e), -1);
    assert_non_null(strstr(e.msg, "exceeds the 104857600 byte limit"));
    memset(h, 0xff, 8); /* 2^64-1: no wraparound in the size check */
    assert_int_equal(rmu_st_parse(h, sizeof h, "x.safetensors", &t, &n, &e), -1);
    assert_non_null(strstr(e.msg, "exceeds"));
}

static void test_bad_json(void **state) {
    (void)state;
    expect_parse_error("{\"w\":{\"dtype\":\"F32\",", 0, "not valid JSON", NULL);
    expect_parse_error("[1, 2, 3]", 0, "not a JSON object", NULL);
    expect_parse_error("{} trailing", 0, "not valid JSON", NULL);
    /* duplicate names would make lookups ambiguous */
    expect_parse_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                       "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                       8, "not valid JSON", "duplicate");
    expect_parse_error("{\"w\":[1]}", 0, "'w'", "not a JSON object");
    expect_parse_error("{\"__metadata__\":{\"format\":1}}", 0, "__metadata__", "not a string");
    expect_parse_error("{\"__metadata__\":[]}", 0, "__metadata__", "not a JSON object");
}

static void test_bad_dtype(void **state) {
    (void)state;
    expect_parse_error("{\"layer.w\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, "'layer.w'",
                       "dtype I64");
    expect_parse_error("{\"w\":{\"dtype\":\"float32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype float32",
                       "F32, F16, BF16 and F8_E4M3");
    expect_parse_error("{\"w\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'w'", "dtype");
}

static void test_bad_shape(void **state) {
    (void)state;
    expect_parse_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "'w'",
                       "shape[0] is not a non-negative integer");
    expect_parse_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, "shape[0]", NULL);
    expect_parse_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                       "9 dimensions", NULL);
    expect_parse_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4611686018427387904],"
                       "\"data_offsets\":[0,4]}}",
                       4, "'w'", "overflows");
    expect_parse_error("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "'w'", "shape");
}

static void test_size_mismatch(void **state) {
    (void)state;
    expect_parse_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,12]}}", 12, "'w'",
                       "span 12 bytes but shape and dtype F32 need 24");
    expect_parse_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, "end before begin", NULL);
    expect_parse_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "data_offsets", NULL);
    expect_parse_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, "data_offsets", NULL);
}

static void test_overlap_gap_bounds(void **state) {
    (void)state;
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                       12, "overlap", "'a'");
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                       12, "gap", "[4, 8)");
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "gap", "[0, 4)");
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12, "trailing", NULL);
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1000000,1000004]}}", 8,
                       "out of bounds", "'a'");
    /* the same offsets twice is an overlap, not a duplicate-free tiling */
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                       4, "overlap", NULL);
}

static void test_valid_edge_cases(void **state) {
    (void)state;
    /* odd header length (unaligned data), metadata, a scalar and an empty tensor */
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},\"z\":{\"dtype\":\"BF16\",\"shape\":[0,5],"
                      "\"data_offsets\":[6,6]},\"s\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[4,6]},"
                      "\"v\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}   ";
    size_t size;
    uint8_t *b = image(hdr, 6, &size);
    rmu_st_tensor *t;
    int n;
    rmu_err e = {{0}};
    if (rmu_st_parse(b, size, "ok.safetensors", &t, &n, &e)) fail_msg("%s", e.msg);
    assert_int_equal(n, 3);
    assert_string_equal(t[0].name, "s"); /* sorted by name */
    assert_string_equal(t[1].name, "v");
    assert_string_equal(t[2].name, "z");
    assert_int_equal(t[0].ndim, 0);
    assert_int_equal(t[0].nbytes, 2);
    assert_int_equal(t[2].nbytes, 0);
    assert_ptr_equal(t[1].data, b + 8 + strlen(hdr));
    assert_ptr_equal(t[0].data, b + 8 + strlen(hdr) + 4);
    rmu_st_free_tensors(t, n);
    free(b);
    /* no tensors at all is a valid (empty) file */
    b = image("{}", 0, &size);
    if (rmu_st_parse(b, size, "ok.safetensors", &t, &n, &e)) fail_msg("%s", e.msg);
    assert_int_equal(n, 0);
    rmu_st_free_tensors(t, n);
    free(b);
}

/* ---- malformed sharded folders */

static void write_index(const char *dir, const char *weight_map) {
    char txt[2048];
    snprintf(txt, sizeof txt, "{\"metadata\":{\"total_size\":8},\"weight_map\":%s}", weight_map);
    write_file(dir, "model.safetensors.index.json", txt, strlen(txt));
}

static void write_shard(const char *dir, const char *name, const char *tensor) {
    char hdr[256];
    snprintf(hdr, sizeof hdr, "{\"%s\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", tensor);
    size_t size;
    uint8_t *b = image(hdr, 4, &size);
    write_file(dir, name, b, size);
    free(b);
}

static void expect_dir_error(const char *dir, const char *frag1, const char *frag2) {
    rmu_st_set s;
    rmu_err e = {{0}};
    if (rmu_st_open_dir(&s, dir, &e) == 0) fail_msg("accepted %s", dir);
    assert_int_equal(s.nfiles, 0);
    assert_null(s.tensors);
    if (frag1 && !strstr(e.msg, frag1)) fail_msg("message lacks '%s': %s", frag1, e.msg);
    if (frag2 && !strstr(e.msg, frag2)) fail_msg("message lacks '%s': %s", frag2, e.msg);
}

static void test_missing_files(void **state) {
    const char *dir = *state;
    expect_dir_error(dir, "no model.safetensors or model.safetensors.index.json", NULL);
    write_shard(dir, "a.safetensors", "x");
    write_index(dir, "{\"x\":\"a.safetensors\",\"y\":\"b-00002.safetensors\"}");
    expect_dir_error(dir, "b-00002.safetensors", "No such file");
}

static void test_index_tensor_not_in_shard(void **state) {
    const char *dir = *state;
    write_shard(dir, "a.safetensors", "x");
    write_shard(dir, "b.safetensors", "y");
    write_index(dir, "{\"x\":\"a.safetensors\",\"y\":\"b.safetensors\",\"z\":\"b.safetensors\"}");
    expect_dir_error(dir, "'z'", "does not contain");
}

static void test_shard_tensor_not_in_index(void **state) {
    const char *dir = *state;
    write_shard(dir, "a.safetensors", "x");
    write_shard(dir, "b.safetensors", "y");
    write_index(dir, "{\"x\":\"a.safetensors\"}");
    /* b is never opened: only a is listed, and a's tensor is mapped */
    rmu_st_set s;
    rmu_err e = {{0}};
    if (rmu_st_open_dir(&s, dir, &e)) fail_msg("%s", e.msg);
    assert_int_equal(s.nfiles, 1);
    rmu_st_close(&s);
    write_shard(dir, "a.safetensors", "q");
    write_index(dir, "{\"x\":\"b.safetensors\"}");
    write_shard(dir, "b.safetensors", "x");
    /* a tensor of a listed shard that the map does not list */
    char hdr[] = "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"extra\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
    size_t size;
    uint8_t *b = image(hdr, 8, &size);
    write_file(dir, "b.safetensors", b, size);
    free(b);
    expect_dir_error(dir, "'extra'", "not in the weight_map");
    /* a tensor that the map assigns to another shard */
    write_shard(dir, "a.safetensors", "x");
    write_index(dir, "{\"x\":\"a.safetensors\",\"extra\":\"b.safetensors\"}");
    expect_dir_error(dir, "'x'", "assigns to a.safetensors");
}

static void test_bad_index(void **state) {
    const char *dir = *state;
    write_shard(dir, "a.safetensors", "x");
    write_file(dir, "model.safetensors.index.json", "{\"weight_map\":", 14);
    expect_dir_error(dir, "model.safetensors.index.json", "invalid JSON");
    write_index(dir, "[]");
    expect_dir_error(dir, "weight_map", NULL);
    write_index(dir, "{}");
    expect_dir_error(dir, "weight_map", "empty");
    write_index(dir, "{\"x\":\"../a.safetensors\"}");
    expect_dir_error(dir, "'x'", "plain file name");
    write_index(dir, "{\"x\":3}");
    expect_dir_error(dir, "'x'", "plain file name");
    /* a broken shard names the shard */
    write_index(dir, "{\"x\":\"a.safetensors\"}");
    write_file(dir, "a.safetensors", "abc", 3);
    expect_dir_error(dir, "a.safetensors: truncated", NULL);
}

/* ---- random init (rmu init) through the writer */

static void test_init_model(void **state) {
    const char *dir = *state;
    char d1[4096], d3[4096];
    snprintf(d1, sizeof d1, "%s/one", dir);
    snprintf(d3, sizeof d3, "%s/three", dir);
    rmu_config c;
    rmu_err e = {{0}};
    if (rmu_cfg_preset(&c, "tiny", &e)) fail_msg("%s", e.msg);
    int threads = omp_get_max_threads();
    /* the same seed gives the same bytes whatever the thread count and shard split */
    omp_set_num_threads(2);
    if (rmu_init_model(d1, &c, RMU_DT_BF16, 5, 1, &e)) fail_msg("%s", e.msg);
    omp_set_num_threads(1);
    rmu_init_opts o = {.dtype = RMU_DT_BF16, .seed = 5, .shards = 3};
    if (rmu_init_model_opts(d3, &c, &o, &e)) fail_msg("%s", e.msg);
    omp_set_num_threads(threads);
    rmu_st_set a, b;
    if (rmu_st_open_dir(&a, d1, &e) || rmu_st_open_dir(&b, d3, &e)) fail_msg("%s", e.msg);
    assert_int_equal(a.nfiles, 1);
    assert_int_equal(b.nfiles, 3);
    assert_string_equal(b.files[0].name, "model-00001-of-00003.safetensors");
    assert_int_equal(a.ntensors, 2 + 9 * 4 + 1);
    assert_int_equal(b.ntensors, a.ntensors);
    for (int i = 0; i < a.ntensors; i++) {
        assert_string_equal(a.tensors[i].name, b.tensors[i].name);
        assert_int_equal(a.tensors[i].dtype, RMU_DT_BF16);
        assert_int_equal(a.tensors[i].nbytes, b.tensors[i].nbytes);
        assert_memory_equal(a.tensors[i].data, b.tensors[i].data, a.tensors[i].nbytes);
    }
    /* shards follow the layer order */
    assert_int_equal(rmu_st_get(&b, "model.embed_tokens.weight")->file, 0);
    assert_int_equal(rmu_st_get(&b, "lm_head.weight")->file, 2);
    const rmu_st_tensor *q = rmu_st_get(&a, "model.layers.1.self_attn.q_proj.weight");
    assert_int_equal(q->shape[0], 64);
    assert_int_equal(q->shape[1], 64);
    assert_int_equal(rmu_st_get(&a, "model.layers.3.self_attn.k_proj.weight")->shape[0], 32);
    assert_int_equal(rmu_st_get(&a, "model.layers.0.mlp.down_proj.weight")->shape[1], 176);
    /* norms are exactly 1 */
    const rmu_st_tensor *nw = rmu_st_get(&a, "model.layers.2.input_layernorm.weight");
    for (int i = 0; i < 64; i++) assert_int_equal(((const uint16_t *)nw->data)[i], 0x3f80);
    /* embeddings ~ N(0, 0.02), and different tensors differ */
    const rmu_st_tensor *emb = rmu_st_get(&a, "model.embed_tokens.weight");
    size_t n = emb->nbytes / 2;
    double s1 = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) {
        double v = rmu_bf16_to_f32(((const uint16_t *)emb->data)[i]);
        s1 += v;
        s2 += v * v;
    }
    double mean = s1 / n, sd = sqrt(s2 / n - mean * mean);
    if (fabs(mean) > 0.001 || fabs(sd - 0.02) > 0.0005) fail_msg("embeddings mean %g sd %g", mean, sd);
    assert_true(memcmp(emb->data, rmu_st_get(&a, "lm_head.weight")->data, 64) != 0);
    rmu_st_close(&a);
    rmu_st_close(&b);
    /* jittered norms, tied head, f32; another seed changes the weights */
    c.tie_word_embeddings = 1;
    o = (rmu_init_opts){.dtype = RMU_DT_F32, .seed = 6, .shards = 1, .jitter_norms = 1};
    if (rmu_init_model_opts(d1, &c, &o, &e)) fail_msg("%s", e.msg);
    if (rmu_st_open_dir(&a, d1, &e)) fail_msg("%s", e.msg);
    assert_null(rmu_st_get(&a, "lm_head.weight"));
    assert_int_equal(a.ntensors, 2 + 9 * 4);
    const float *nf = rmu_st_get(&a, "model.norm.weight")->data;
    int not_one = 0;
    for (int i = 0; i < 64; i++) {
        not_one += nf[i] != 1.0f;
        assert_true(nf[i] > 0.4f && nf[i] < 1.6f);
    }
    assert_true(not_one > 60);
    rmu_st_close(&a);
    rmu_config back;
    if (rmu_cfg_load(&back, d1, &e)) fail_msg("%s", e.msg);
    assert_int_equal(back.torch_dtype, RMU_DT_F32);
    assert_int_equal(back.tie_word_embeddings, 1);
    /* too many shards */
    o.shards = 1000;
    assert_int_equal(rmu_init_model_opts(d1, &c, &o, &e), -1);
    assert_non_null(strstr(e.msg, "1000 shards"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip_single, tu_setup_tmp, tu_teardown_tmp),
        cmocka_unit_test_setup_teardown(test_roundtrip_sharded, tu_setup_tmp, tu_teardown_tmp),
        cmocka_unit_test_setup_teardown(test_single_named_shard, tu_setup_tmp, tu_teardown_tmp),
        cmocka_unit_test_setup_teardown(test_streamed_write, tu_setup_tmp, tu_teardown_tmp),
        cmocka_unit_test_setup_teardown(test_write_errors, tu_setup_tmp, tu_teardown_tmp),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_header_cap),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_bad_dtype),
        cmocka_unit_test(test_bad_shape),
        cmocka_unit_test(test_size_mismatch),
        cmocka_unit_test(test_overlap_gap_bounds),
        cmocka_unit_test(test_valid_edge_cases),
        cmocka_unit_test_setup_teardown(test_missing_files, tu_setup_tmp, tu_teardown_tmp),
        cmocka_unit_test_setup_teardown(test_index_tensor_not_in_shard, tu_setup_tmp, tu_teardown_tmp),
        cmocka_unit_test_setup_teardown(test_shard_tensor_not_in_index, tu_setup_tmp, tu_teardown_tmp),
        cmocka_unit_test_setup_teardown(test_bad_index, tu_setup_tmp, tu_teardown_tmp),
        cmocka_unit_test_setup_teardown(test_init_model, tu_setup_tmp, tu_teardown_tmp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
