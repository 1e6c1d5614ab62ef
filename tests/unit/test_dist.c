/* test_dist.c - src/core/dist.h on one process (the default build, or the MPI build started
 * without a launcher): shares cover every item once and differ by at most one, the
 * collectives leave buffers as they are (a gather copies), and a default build started by a
 * launcher as one of several ranks refuses to run. Several ranks: tests/integration/mpi.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/dist.h"

static void test_split(void **state) {
    (void)state;
    for (int size = 1; size <= 9; size++)
        for (long n = 0; n <= 40; n++) {
            long next = 0, small = n, big = 0;
            for (int r = 0; r < size; r++) {
                rmu_dist d = {.rank = r, .size = size};
                long lo, hi;
                rmu_dist_split(n, &d, &lo, &hi);
                assert_int_equal(lo, next); /* contiguous, in rank order */
                assert_true(hi >= lo);
                next = hi;
                if (hi - lo < small) small = hi - lo;
                if (hi - lo > big) big = hi - lo;
            }
            assert_int_equal(next, n); /* every item once */
            assert_true(big - small <= 1);
        }
    long lo, hi;
    rmu_dist_split(7, NULL, &lo, &hi); /* NULL: one process owns everything */
    assert_int_equal(lo, 0);
    assert_int_equal(hi, 7);
}

static void test_single_process(void **state) {
    (void)state;
    unsetenv("OMPI_COMM_WORLD_SIZE");
    unsetenv("PMI_SIZE");
    unsetenv("PMI_RANK");
    unsetenv("PMIX_RANK");
    rmu_dist d;
    rmu_err e = {""};
    assert_int_equal(rmu_dist_init(&d, &e), 0);
    assert_int_equal(d.rank, 0);
    assert_int_equal(d.size, 1);
    assert_true(rmu_dist_root(&d) && rmu_dist_root(NULL));
    float f[3] = {1, 2, 3};
    double g[2] = {4, 5};
    char b[4] = "abc";
    assert_int_equal(rmu_dist_sum_f32(&d, f, 3, &e), 0);
    assert_int_equal(rmu_dist_sum_f64(NULL, g, 2, &e), 0);
    assert_int_equal(rmu_dist_bcast(&d, b, 4, &e), 0);
    assert_true(f[0] == 1 && f[2] == 3 && g[1] == 5 && !strcmp(b, "abc"));
    assert_int_equal(rmu_dist_same(&d, 42, "inputs", &e), 0);
    /* agreement on one process: the status as it is, the message untouched */
    snprintf(e.msg, sizeof e.msg, "mine");
    assert_int_equal(rmu_dist_agree(&d, 0, &e), 0);
    assert_int_equal(rmu_dist_agree(&d, 2, &e), 2);
    assert_string_equal(e.msg, "mine");
    char *out;
    size_t n;
    assert_int_equal(rmu_dist_gather_bytes(&d, "hello", 5, &out, &n, &e), 0);
    assert_int_equal(n, 5);
    assert_string_equal(out, "hello");
    free(out);
    assert_int_equal(rmu_dist_gather_bytes(NULL, "", 0, &out, &n, &e), 0);
    assert_int_equal(n, 0);
    assert_string_equal(out, "");
    free(out);
    rmu_dist_finish(&d);
    rmu_dist_finish(NULL);
}

/* Started by mpirun as one of two ranks: without MPI each would run the whole job. */
static void test_launcher_without_mpi(void **state) {
    (void)state;
    if (rmu_dist_available()) skip(); /* the MPI build would join the job */
    rmu_dist d;
    rmu_err e = {""};
    setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    assert_int_equal(rmu_dist_init(&d, &e), -1);
    assert_non_null(strstr(e.msg, "built without MPI"));
    assert_non_null(strstr(e.msg, "make MPI=1"));
    setenv("OMPI_COMM_WORLD_SIZE", "1", 1); /* mpirun -n 1: one process, fine */
    assert_int_equal(rmu_dist_init(&d, &e), 0);
    assert_int_equal(d.size, 1);
    unsetenv("OMPI_COMM_WORLD_SIZE");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_single_process),
        cmocka_unit_test(test_launcher_without_mpi),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
