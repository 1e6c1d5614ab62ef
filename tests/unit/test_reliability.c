/* test_reliability.c - the library side of README "Guarantees": the lock on an output folder
 * (refused for another process, nested in one, a dead holder's file reused, removed on
 * release), a cancelled commit writing nothing, stale PATH.tmp.PID files of dead writers
 * removed, a checkpoint removal cut off never leaving a half checkpoint, the input limits
 * (file size before reading, one JSON line, one corpus text), and the memory estimate
 * (exact parts on a known model, MemAvailable parsing). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#include "core/fileio.h"
#include "core/json.h"
#include "io/hfdir.h"
#include "model/config.h"
#include "model/init.h"
#include "model/memest.h"
#include "train/ckpt.h"
#include "train/data.h"

static long dead_pid(void) {
    long p = 999999;
    while (kill((pid_t)p, 0) == 0 || errno != ESRCH) p--;
    return p;
}

/* A child holds the lock on out until it reads a byte from its pipe. */
static pid_t hold_in_child(const char *out, int *release_fd) {
    int up[2], down[2];
    assert_int_equal(pipe(up), 0);
    assert_int_equal(pipe(down), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        rmu_err e;
        rmu_hf_lock *l = rmu_hf_lock_take(out, &e);
        char c = l ? 'y' : 'n';
        (void)!write(up[1], &c, 1);
        (void)!read(down[0], &c, 1);
        rmu_hf_lock_release(l);
        _exit(0);
    }
    char c = 0;
    assert_int_equal(read(up[0], &c, 1), 1);
    assert_int_equal(c, 'y');
    close(up[0]), close(up[1]), close(down[0]);
    *release_fd = down[1];
    return pid;
}

static void test_lock(void **state) {
    const char *dir = *state;
    char out[4096], lockf[4096], msg[64];
    snprintf(out, sizeof out, "%s/locked", dir);
    snprintf(lockf, sizeof lockf, "%s/.locked.rmu-lock", dir);
    rmu_err e;
    int rel;
    pid_t child = hold_in_child(out, &rel);
    /* another process: refused, naming it; the folder writer is refused the same way */
    assert_null(rmu_hf_lock_take(out, &e));
    snprintf(msg, sizeof msg, "another rmu process (pid %ld)", (long)child);
    assert_non_null(strstr(e.msg, msg));
    assert_null(rmu_hf_open(out, NULL, &e));
    assert_non_null(strstr(e.msg, msg));
    assert_int_equal(write(rel, "x", 1), 1);
    close(rel);
    waitpid(child, NULL, 0);
    assert_false(rmu_file_exists(lockf)); /* removed on release */
    /* this process: a nested take (the run's writer inside the run) goes on */
    rmu_hf_lock *a = rmu_hf_lock_take(out, &e), *b = a ? rmu_hf_lock_take(out, &e) : NULL;
    if (!a || !b) fail_msg("%s", e.msg);
    rmu_hf_lock_release(b);
    assert_true(rmu_file_exists(lockf)); /* the inner release keeps the outer lock */
    rmu_hf_lock_release(a);
    assert_false(rmu_file_exists(lockf));
    /* a killed holder's file (its pid, no flock) is taken over */
    tu_write_file(lockf, "999999\n");
    a = rmu_hf_lock_take(out, &e);
    if (!a) fail_msg("%s", e.msg);
    rmu_hf_lock_release(a);
    assert_false(rmu_file_exists(lockf));
}

static void test_cancelled_commit(void **state) {
    const char *dir = *state;
    char out[4096];
    snprintf(out, sizeof out, "%s/cancelled", dir);
    volatile sig_atomic_t flag = 0;
    rmu_hf_opts o = {.cancel = &flag};
    rmu_err e;
    rmu_hf *w = rmu_hf_open(out, &o, &e);
    if (!w) fail_msg("%s", e.msg);
    float x[4] = {1, 2, 3, 4};
    rmu_hf_new t = {.name = "x", .dtype = RMU_DT_F32, .ndim = 1, .shape = {4}, .data = x, .data_dtype = RMU_DT_F32};
    OK(rmu_hf_add(w, &t, &e));
    char staging[4096];
    snprintf(staging, sizeof staging, "%s", rmu_hf_dir(w));
    flag = SIGINT;
    assert_int_equal(rmu_hf_commit(w, &e), -1);
    assert_non_null(strstr(e.msg, "interrupted"));
    assert_false(rmu_file_exists(out));
    assert_false(rmu_file_exists(staging));
    assert_false(rmu_file_exists(tu_path(dir, ".cancelled.rmu-lock")));
}

static void test_stale_tmp_files(void **state) {
    const char *dir = *state;
    char path[4096], dead[4200], live[4200];
    snprintf(path, sizeof path, "%s/result.json", dir);
    snprintf(dead, sizeof dead, "%s.tmp.%ld", path, dead_pid());
    snprintf(live, sizeof live, "%s.tmp.1", path); /* pid 1 is alive */
    tu_write_file(dead, "half");
    tu_write_file(live, "another writer's");
    rmu_err e;
    OK(rmu_file_write_atomic(path, "{}\n", 3, &e));
    assert_false(rmu_file_exists(dead));
    assert_true(rmu_file_exists(live));
    unlink(live);
}

static void test_checkpoint_removal_cut_off(void **state) {
    const char *dir = *state;
    char work[4096], p[4300];
    snprintf(work, sizeof work, "%s/ck.rmu-work", dir);
    rmu_err e;
    /* a removal killed half way: checkpoint-3.del holds one of two files */
    snprintf(p, sizeof p, "%s/checkpoint-3.del", work);
    OK(rmu_mkdirs(p, &e));
    tu_write_file(tu_path(p, "trainer_state.json"), "{}");
    snprintf(p, sizeof p, "%s/checkpoint-5", work);
    OK(rmu_mkdirs(p, &e));
    long *steps;
    int n;
    OK(rmu_ckpt_list(work, &steps, &n, &e));
    assert_int_equal(n, 1);
    assert_int_equal(steps[0], 5);
    free(steps);
    snprintf(p, sizeof p, "%s/checkpoint-3.del", work);
    assert_false(rmu_file_exists(p));
}

static void test_input_limits(void **state) {
    const char *dir = *state;
    rmu_err e;
    const char *p = tu_path(dir, "big.txt");
    tu_write_file(p, "0123456789012345678901234567890123456789");
    size_t n;
    assert_null(rmu_file_read_max(p, 16, &n, &e));
    assert_non_null(strstr(e.msg, "40 bytes, over the limit of 16 bytes"));
    char *t = rmu_file_read_max(p, 40, &n, &e);
    assert_non_null(t);
    assert_int_equal(n, 40);
    free(t);
    /* one JSON line over the limit: refused before it is parsed, naming file and line */
    size_t len = RMU_JSONL_MAX_LINE + 16;
    char *big = malloc(len);
    assert_non_null(big);
    memcpy(big, "\n\"", 2); /* line 2 is one long string */
    memset(big + 2, 'a', len - 3);
    big[len - 1] = '"';
    assert_int_equal(rmu_jsonl_parse("rows.jsonl", big, len, 0, NULL, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "rows.jsonl:2: a line of"));
    assert_non_null(strstr(e.msg, "over the limit of 64 MiB"));
    /* one plain-text corpus line over the text limit */
    const char *c = tu_path(dir, "corpus.txt");
    FILE *f = fopen(c, "wb");
    assert_non_null(f);
    fputs("short line\n", f);
    fwrite(big + 2, 1, RMU_DATA_MAX_TEXT + 1, f);
    fclose(f);
    free(big);
    rmu_data_docs d = {0};
    assert_int_equal(rmu_data_read_file(&d, c, NULL, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "corpus.txt:2: a "));
    assert_non_null(strstr(e.msg, "over the limit of 64 MiB"));
    rmu_data_docs_free(&d);
    unlink(c);
}

static int match_down(void *ud, const char *name) { return strstr(name, "down_proj") != NULL; }

static void test_memory_estimate(void **state) {
    const char *dir = *state;
    char m[4096];
    snprintf(m, sizeof m, "%s/mem-model", dir);
    rmu_config c;
    rmu_err e;
    OK(rmu_cfg_preset(&c, "tiny", &e));
    OK(rmu_init_model(m, &c, RMU_DT_F32, 1, 1, &e));
    rmu_mem_opts o = {.ctx = 100, .batch = 10};
    rmu_mem_need n;
    OK(rmu_mem_estimate(m, &o, &n, &e));
    struct stat st;
    assert_int_equal(stat(tu_path(m, "model.safetensors"), &st), 0);
    assert_int_equal(n.weights, (uint64_t)st.st_size);
    assert_int_equal(n.kv, 2ull * c.n_layers * 100 * c.n_kv_heads * c.head_dim * 4);
    assert_int_equal(n.train, 0);
    assert_true(n.scratch > 0);
    assert_int_equal(n.total, n.weights + n.kv + n.scratch);
    /* training the down projections: 16 bytes each (master, gradient, two moments) + activations */
    rmu_mem_opts t = {.batch = 2, .seq = 32, .match = match_down};
    OK(rmu_mem_estimate(m, &t, &n, &e));
    assert_int_equal(n.trainable, (long long)c.n_layers * c.hidden_size * c.intermediate_size);
    assert_true(n.train > 16ull * n.trainable);
    assert_int_equal(n.kv, 0);
    assert_int_equal(rmu_mem_parse_meminfo("MemTotal: 100 kB\nMemFree: 5 kB\nMemAvailable:   1234 kB\n"), 1234 * 1024);
    assert_int_equal(rmu_mem_parse_meminfo("MemTotal: 100 kB\n"), 0);
    assert_int_equal(rmu_mem_estimate(dir, &o, &n, &e), -1); /* no config.json: an error naming it */
    assert_non_null(strstr(e.msg, "config.json"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lock),
        cmocka_unit_test(test_cancelled_commit),
        cmocka_unit_test(test_stale_tmp_files),
        cmocka_unit_test(test_checkpoint_removal_cut_off),
        cmocka_unit_test(test_input_limits),
        cmocka_unit_test(test_memory_estimate),
    };
    return cmocka_run_group_tests_name("reliability", tests, tu_setup_tmp, tu_teardown_tmp);
}
