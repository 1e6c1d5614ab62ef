/* test_hfdir.c - the one Hugging Face folder writer: tensors rewritten with new data and a
 * changed dtype, extra and dropped tensors, the shard index regenerated for one and N
 * shards, config.json edits, which input files are copied (provenance and stale weights are
 * not), the staging folder removed on error and stale ones of dead processes cleaned, an
 * existing OUT refused or replaced, OUT == input refused by inode, a work folder whose
 * subfolders travel into OUT, and a tensor larger than the writer's chunk streamed in order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include "testutil.h"

#include "core/fileio.h"
#include "io/hfdir.h"
#include "io/safetensors.h"

/* ---- helpers */

static void put(const char *path, const char *text) {
    rmu_err e;
    OK(rmu_file_write_atomic(path, text, strlen(text), &e));
}

static char *get(const char *path) {
    rmu_err e;
    size_t n;
    char *t = rmu_file_read_all(path, &n, &e);
    if (!t) fail_msg("%s", e.msg);
    return t;
}

/* a/b/c in buf (nesting tu_path would alias its buffers). */
static const char *path3(char *buf, const char *a, const char *b, const char *c) {
    snprintf(buf, 4096, "%s/%s/%s", a, b, c);
    return buf;
}

/* Entries of dir whose name contains frag. */
static int count_entries(const char *dir, const char *frag) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)))
        if (strstr(de->d_name, frag)) n++;
    closedir(d);
    return n;
}

/* An input model folder: tensors a, b (shard 1) and c (shard 2 when sharded), F32 values
 * i + base; config.json, a tokenizer file, provenance, stale weights, a subfolder. */
static void make_input(const char *dir, int sharded) {
    char p3[4096];
    rmu_err e;
    static float a[6], b[4], c[3];
    for (int i = 0; i < 6; i++) a[i] = (float)i + 0.5f;
    for (int i = 0; i < 4; i++) b[i] = (float)i + 10.25f;
    for (int i = 0; i < 3; i++) c[i] = (float)i - 3.0f;
    const char *s1 = sharded ? "model-00001-of-00002.safetensors" : NULL;
    const char *s2 = sharded ? "model-00002-of-00002.safetensors" : NULL;
    rmu_st_out t[3] = {{.name = "a", .dtype = RMU_DT_F32, .ndim = 2, .shape = {2, 3}, .data = a, .shard = s1},
                       {.name = "b", .dtype = RMU_DT_F32, .ndim = 1, .shape = {4}, .data = b, .shard = s1},
                       {.name = "c", .dtype = RMU_DT_F32, .ndim = 1, .shape = {3}, .data = c, .shard = s2}};
    OK(rmu_mkdirs(dir, &e));
    OK(rmu_st_write_dir(dir, t, 3, &e));
    put(tu_path(dir, "config.json"), "{\n  \"model_type\": \"mistral\",\n  \"torch_dtype\": \"float32\",\n  \"x\": 1\n}\n");
    put(tu_path(dir, "tokenizer.json"), "{\"tok\": true}\n");
    put(tu_path(dir, "rmu_unlearn.json"), "{\"method\": \"RMU\"}\n");
    put(tu_path(dir, "rmu_future.json"), "{}\n");
    put(tu_path(dir, "rmu.json"), "{\"not\": \"provenance\"}\n");
    put(tu_path(dir, "pytorch_model.bin"), "stale");
    put(tu_path(dir, ".hidden"), "vcs");
    OK(rmu_mkdirs(tu_path(dir, "checkpoint-3"), &e));
    put(path3(p3, dir, "checkpoint-3", "state.txt"), "x");
}

static float f32_at(const rmu_st_tensor *t, int i) {
    float v;
    rmu_to_f32(&v, (const char *)t->data + (size_t)i * rmu_dtype_size(t->dtype), t->dtype, 1);
    return v;
}

/* ---- tests */

static void test_rewrite_dtype_and_files(void **state) {
    const char *dir = *state;
    char in[4096], out[4096];
    snprintf(in, sizeof in, "%s/in1", dir);
    snprintf(out, sizeof out, "%s/out1", dir);
    make_input(in, 0);
    rmu_err e;
    rmu_hf_opts o = {.in_dir = in};
    rmu_hf *w = rmu_hf_open(out, &o, &e);
    if (!w) fail_msg("%s", e.msg);
    float na[6] = {1, 2, 3, 4, 5, 6.0078125f};
    OK(rmu_hf_set_data(w, "a", na, RMU_DT_F32, &e));
    OK(rmu_hf_set_dtype(w, "a", RMU_DT_BF16, &e)); /* new data, converted to bf16 */
    OK(rmu_hf_set_dtype(w, "b", RMU_DT_F16, &e));  /* input data, converted to f16 */
    OK(rmu_hf_config_set(w, "torch_dtype", json_string("bfloat16"), &e));
    OK(rmu_hf_config_set(w, "quantization_config", json_pack("{s:s}", "quant_method", "fp8"), &e));
    OK(rmu_hf_config_set(w, "x", NULL, &e));
    assert_int_equal(rmu_hf_set_data(w, "nope", na, RMU_DT_F32, &e), -1);
    assert_non_null(strstr(e.msg, "no tensor 'nope'"));
    /* a file the caller writes into the staging folder wins over the input's */
    put(tu_path(rmu_hf_dir(w), "tokenizer.json"), "{\"tok\": \"new\"}\n");
    OK(rmu_hf_commit(w, &e));

    rmu_st_set s;
    OK(rmu_st_open_dir(&s, out, &e));
    const rmu_st_tensor *a = rmu_st_get(&s, "a"), *b = rmu_st_get(&s, "b"), *c = rmu_st_get(&s, "c");
    assert_non_null(a), assert_non_null(b), assert_non_null(c);
    assert_int_equal(a->dtype, RMU_DT_BF16);
    assert_int_equal(b->dtype, RMU_DT_F16);
    assert_int_equal(c->dtype, RMU_DT_F32);
    assert_int_equal(a->ndim, 2);
    assert_true(f32_at(a, 0) == 1.0f && f32_at(a, 5) == 6.0f); /* 6.0078125 rounds to 6 in bf16 */
    assert_true(f32_at(b, 3) == 13.25f);
    assert_true(f32_at(c, 2) == -1.0f);
    rmu_st_close(&s);
    assert_false(rmu_file_exists(tu_path(out, "model.safetensors.index.json")));
    char *cfg = get(tu_path(out, "config.json"));
    assert_non_null(strstr(cfg, "\"torch_dtype\": \"bfloat16\""));
    assert_non_null(strstr(cfg, "\"quant_method\": \"fp8\""));
    assert_null(strstr(cfg, "\"x\""));
    assert_true(strstr(cfg, "model_type") < strstr(cfg, "torch_dtype")); /* key order kept */
    free(cfg);
    char *tok = get(tu_path(out, "tokenizer.json"));
    assert_string_equal(tok, "{\"tok\": \"new\"}\n");
    free(tok);
    /* provenance of earlier runs, stale weights, dot files and folders are not copied */
    assert_false(rmu_file_exists(tu_path(out, "rmu_unlearn.json")));
    assert_false(rmu_file_exists(tu_path(out, "rmu_future.json")));
    assert_true(rmu_file_exists(tu_path(out, "rmu.json")));
    assert_false(rmu_file_exists(tu_path(out, "pytorch_model.bin")));
    assert_false(rmu_file_exists(tu_path(out, ".hidden")));
    assert_false(rmu_file_exists(tu_path(out, "checkpoint-3")));
    assert_int_equal(count_entries(dir, "rmu-staging"), 0);
    assert_true(rmu_hf_is_provenance("rmu_unlearn.json"));
    assert_false(rmu_hf_is_provenance("rmu.json"));
    /* without config edits, config.json is copied byte for byte */
    snprintf(out, sizeof out, "%s/out1b", dir);
    w = rmu_hf_open(out, &o, &e);
    if (!w) fail_msg("%s", e.msg);
    OK(rmu_hf_commit(w, &e));
    char *c0 = get(tu_path(in, "config.json")), *c1 = get(tu_path(out, "config.json"));
    assert_string_equal(c0, c1);
    free(c0), free(c1);
}

static int fill_scale(void *ctx, const char *name, size_t off, size_t count, void *buf, rmu_err *e) {
    float *f = buf;
    for (size_t i = 0; i < count; i++) f[i] = 0.125f * (float)(off + i + 1);
    return 0;
}

static void test_shards_and_index(void **state) {
    const char *dir = *state;
    char in[4096], out[4096];
    snprintf(in, sizeof in, "%s/in2", dir);
    snprintf(out, sizeof out, "%s/out2", dir);
    make_input(in, 1);
    rmu_err e;
    rmu_hf_opts o = {.in_dir = in};
    /* N shards kept: an extra tensor after "a" lands in a's shard */
    rmu_hf *w = rmu_hf_open(out, &o, &e);
    if (!w) fail_msg("%s", e.msg);
    rmu_hf_new sc = {.name = "a_scale", .dtype = RMU_DT_F32, .ndim = 1, .shape = {2}, .after = "a", .fill = fill_scale};
    OK(rmu_hf_add(w, &sc, &e));
    assert_int_equal(rmu_hf_add(w, &sc, &e), -1); /* twice */
    OK(rmu_hf_commit(w, &e));
    char *idx = get(tu_path(out, "model.safetensors.index.json"));
    json_t *j = json_loads(idx, 0, NULL);
    free(idx);
    assert_non_null(j);
    json_t *wm = json_object_get(j, "weight_map");
    assert_string_equal(json_string_value(json_object_get(wm, "a_scale")), "model-00001-of-00002.safetensors");
    assert_string_equal(json_string_value(json_object_get(wm, "c")), "model-00002-of-00002.safetensors");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "metadata"), "total_size")),
                     (6 + 4 + 3 + 2) * 4);
    json_decref(j);
    rmu_st_set s;
    OK(rmu_st_open_dir(&s, out, &e));
    const rmu_st_tensor *t = rmu_st_get(&s, "a_scale");
    assert_true(f32_at(t, 0) == 0.125f && f32_at(t, 1) == 0.25f);
    /* file order: a_scale right after a in shard 1 */
    assert_true((const char *)t->data == (const char *)rmu_st_get(&s, "a")->data + 24);
    rmu_st_close(&s);

    /* dropping shard 2's only tensor: one shard left, named as in the input, still indexed */
    snprintf(out, sizeof out, "%s/out2b", dir);
    w = rmu_hf_open(out, &o, &e);
    if (!w) fail_msg("%s", e.msg);
    OK(rmu_hf_drop(w, "c", &e));
    assert_int_equal(rmu_hf_drop(w, "c", &e), -1);
    OK(rmu_hf_commit(w, &e));
    idx = get(tu_path(out, "model.safetensors.index.json"));
    assert_null(strstr(idx, "00002-of"));
    free(idx);
    assert_false(rmu_file_exists(tu_path(out, "model-00002-of-00002.safetensors")));
    OK(rmu_st_open_dir(&s, out, &e));
    assert_int_equal(s.ntensors, 2);
    rmu_st_close(&s);

    /* from nothing: one model.safetensors and no index */
    snprintf(out, sizeof out, "%s/out2c", dir);
    w = rmu_hf_open(out, NULL, &e);
    if (!w) fail_msg("%s", e.msg);
    sc.after = NULL;
    sc.name = "only";
    OK(rmu_hf_add(w, &sc, &e));
    put(tu_path(rmu_hf_dir(w), "config.json"), "{}\n");
    OK(rmu_hf_commit(w, &e));
    assert_true(rmu_file_exists(tu_path(out, "model.safetensors")));
    assert_false(rmu_file_exists(tu_path(out, "model.safetensors.index.json")));
}

static int fill_fail(void *ctx, const char *name, size_t off, size_t count, void *buf, rmu_err *e) {
    (void)buf;
    return rmu_errf(e, "disk full (simulated)");
}

static void test_errors_leave_nothing(void **state) {
    const char *dir = *state;
    char in[4096], out[4096];
    snprintf(in, sizeof in, "%s/in3", dir);
    snprintf(out, sizeof out, "%s/out3", dir);
    make_input(in, 1);
    rmu_err e;
    rmu_hf_opts o = {.in_dir = in};
    rmu_hf *w = rmu_hf_open(out, &o, &e);
    if (!w) fail_msg("%s", e.msg);
    OK(rmu_hf_set_fill(w, "c", fill_fail, NULL, &e)); /* the last shard fails: the others are written */
    assert_int_equal(rmu_hf_commit(w, &e), -1);
    assert_non_null(strstr(e.msg, "disk full (simulated)"));
    assert_false(rmu_file_exists(out));
    assert_int_equal(count_entries(dir, "out3"), 0); /* no staging folder either */

    /* the output may not be the input: same path, another spelling, a symlink */
    char alias[4096], slash[4096];
    snprintf(alias, sizeof alias, "%s/alias", dir);
    snprintf(slash, sizeof slash, "%s/in3/", dir);
    assert_int_equal(symlink(in, alias), 0);
    const char *same[] = {in, alias, slash};
    for (int i = 0; i < 3; i++) {
        assert_null(rmu_hf_open(same[i], &o, &e));
        assert_non_null(strstr(e.msg, "is the input model folder"));
        o.flags = RMU_HF_REPLACE; /* not even when replacing is allowed */
    }
    assert_true(rmu_file_exists(tu_path(in, "model-00001-of-00002.safetensors")));
    assert_int_equal(rmu_hf_check_out(".", NULL, 0, &e), -1);

    /* an existing OUT: a non-empty folder is refused; replacing needs a model folder */
    o.flags = 0;
    char busy[4096];
    snprintf(busy, sizeof busy, "%s/busy", dir);
    OK(rmu_mkdirs(busy, &e));
    put(tu_path(busy, "notes.txt"), "mine");
    assert_null(rmu_hf_open(busy, &o, &e));
    assert_non_null(strstr(e.msg, "already exists and is not empty"));
    o.flags = RMU_HF_REPLACE;
    assert_null(rmu_hf_open(busy, &o, &e));
    assert_non_null(strstr(e.msg, "not a model folder"));
    char *keep = get(tu_path(busy, "notes.txt"));
    assert_string_equal(keep, "mine");
    free(keep);
    put(tu_path(busy, "config.json"), "{}\n"); /* now a model folder: replaced as a whole */
    rmu_hf *r = rmu_hf_open(busy, &o, &e);
    if (!r) fail_msg("%s", e.msg);
    OK(rmu_hf_commit(r, &e));
    assert_false(rmu_file_exists(tu_path(busy, "notes.txt")));
    assert_true(rmu_file_exists(tu_path(busy, "model-00002-of-00002.safetensors")));
    assert_int_equal(count_entries(dir, "busy"), 1); /* the old one is gone, no aside folder */
    /* an empty folder counts as absent */
    char empty[4096];
    snprintf(empty, sizeof empty, "%s/empty", dir);
    OK(rmu_mkdirs(empty, &e));
    o.flags = 0;
    r = rmu_hf_open(empty, &o, &e);
    if (!r) fail_msg("%s", e.msg);
    OK(rmu_hf_commit(r, &e));
    assert_true(rmu_file_exists(tu_path(empty, "config.json")));
}

static void test_stale_staging_and_abort(void **state) {
    const char *dir = *state;
    char in[4096], out[4096], stale[4096], live[4096];
    snprintf(in, sizeof in, "%s/in4", dir);
    snprintf(out, sizeof out, "%s/out4", dir);
    make_input(in, 0);
    /* a staging folder of a process that no longer exists, and one of a live process (ours
     * is excluded, so use pid 1) */
    long dead = 999999;
    while (kill((pid_t)dead, 0) == 0 || errno != ESRCH) dead--;
    snprintf(stale, sizeof stale, "%s/.out4.rmu-staging.%ld", dir, dead);
    snprintf(live, sizeof live, "%s/.out4.rmu-staging.1", dir);
    rmu_err e;
    OK(rmu_mkdirs(stale, &e));
    put(tu_path(stale, "model.safetensors"), "half");
    OK(rmu_mkdirs(live, &e));
    rmu_hf_opts o = {.in_dir = in};
    rmu_hf *w = rmu_hf_open(out, &o, &e);
    if (!w) fail_msg("%s", e.msg);
    assert_false(rmu_file_exists(stale));
    assert_true(rmu_file_exists(live));
    assert_true(rmu_file_exists(rmu_hf_dir(w)));
    char staging[4096];
    snprintf(staging, sizeof staging, "%s", rmu_hf_dir(w));
    rmu_hf_abort(w);
    assert_false(rmu_file_exists(staging));
    assert_false(rmu_file_exists(out));
    rmdir(live);
}

static void test_work_dir(void **state) {
    char p3[4096];
    const char *dir = *state;
    char in[4096], out[4096], work[4096];
    snprintf(in, sizeof in, "%s/in5", dir);
    snprintf(out, sizeof out, "%s/out5", dir);
    snprintf(work, sizeof work, "%s/out5.rmu-work", dir);
    make_input(in, 0);
    rmu_err e;
    OK(rmu_mkdirs(tu_path(work, "checkpoint-2"), &e));
    put(path3(p3, work, "checkpoint-2", "state.safetensors"), "s");
    put(tu_path(work, "model.safetensors.tmp.123"), "cut off"); /* an earlier commit, killed */
    rmu_hf_opts o = {.in_dir = in, .work_dir = work};
    rmu_hf *w = rmu_hf_open(out, &o, &e);
    if (!w) fail_msg("%s", e.msg);
    assert_false(rmu_file_exists(tu_path(work, "model.safetensors.tmp.123")));
    rmu_hf_abort(w); /* keeps the work folder and its checkpoints */
    assert_true(rmu_file_exists(path3(p3, work, "checkpoint-2", "state.safetensors")));
    w = rmu_hf_open(out, &o, &e);
    if (!w) fail_msg("%s", e.msg);
    OK(rmu_hf_commit(w, &e));
    assert_false(rmu_file_exists(work));
    assert_true(rmu_file_exists(path3(p3, out, "checkpoint-2", "state.safetensors")));
    assert_true(rmu_file_exists(tu_path(out, "model.safetensors")));
}

typedef struct {
    size_t next;
    int calls;
} order_ctx;

static int fill_ordered(void *ctx, const char *name, size_t off, size_t count, void *buf, rmu_err *e) {
    order_ctx *c = ctx;
    if (off != c->next) return rmu_errf(e, "chunk at %zu, expected %zu", off, c->next);
    uint32_t *u = buf;
    for (size_t i = 0; i < count; i++) u[i] = (uint32_t)(off + i);
    c->next = off + count;
    c->calls++;
    return 0;
}

/* A tensor over the writer's 32 MiB chunk comes in several ordered, non-overlapping calls. */
static void test_streamed_big_tensor(void **state) {
    const char *dir = *state;
    char out[4096];
    snprintf(out, sizeof out, "%s/out6", dir);
    rmu_err e;
    rmu_hf *w = rmu_hf_open(out, NULL, &e);
    if (!w) fail_msg("%s", e.msg);
    order_ctx oc = {0};
    size_t n = (size_t)9 << 20; /* 36 MiB of F32 */
    rmu_hf_new t = {.name = "big", .dtype = RMU_DT_F32, .ndim = 1, .shape = {(int64_t)n}, .fill = fill_ordered,
                    .ctx = &oc};
    OK(rmu_hf_add(w, &t, &e));
    put(tu_path(rmu_hf_dir(w), "config.json"), "{}\n");
    OK(rmu_hf_commit(w, &e));
    assert_true(oc.calls >= 2);
    assert_int_equal(oc.next, n);
    rmu_st_set s;
    OK(rmu_st_open_dir(&s, out, &e));
    const uint32_t *u = rmu_st_get(&s, "big")->data;
    uint32_t last;
    memcpy(&last, u + n - 1, 4);
    assert_int_equal(last, (uint32_t)(n - 1));
    rmu_st_close(&s);
    unlink(tu_path(out, "model.safetensors"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rewrite_dtype_and_files),
        cmocka_unit_test(test_shards_and_index),
        cmocka_unit_test(test_errors_leave_nothing),
        cmocka_unit_test(test_stale_staging_and_abort),
        cmocka_unit_test(test_work_dir),
        cmocka_unit_test(test_streamed_big_tensor),
    };
    return cmocka_run_group_tests_name("hfdir", tests, tu_setup_tmp, tu_teardown_tmp);
}
