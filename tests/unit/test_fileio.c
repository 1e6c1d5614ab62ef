/* test_fileio.c - SHA-256 against the FIPS 180-2 vectors, atomic writes (no partial or
 * temporary files left behind), copies, folders, path joining. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "testutil.h"
#include "core/fileio.h"

static void hex(const uint8_t d[32], char out[65]) {
    for (int i = 0; i < 32; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static void expect_sha(const void *data, size_t n, const char *want) {
    uint8_t d[32];
    char h[65];
    rmu_sha256(data, n, d);
    hex(d, h);
    assert_string_equal(h, want);
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void test_sha256_vectors(void **state) {
    (void)state;
    expect_sha("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect_sha("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* 56 bytes: the length no longer fits in the first block's padding */
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    expect_sha(m, strlen(m), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    expect_sha(a, 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
}

static void test_file_sha256(void **state) {
    const char *dir = *state;
    char p[4096], h[65];
    rmu_err e = {{0}};
    snprintf(p, sizeof p, "%s/abc.txt", dir);
    if (rmu_file_write_atomic(p, "abc", 3, &e)) fail_msg("%s", e.msg);
    if (rmu_file_sha256(p, h, &e)) fail_msg("%s", e.msg);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    snprintf(p, sizeof p, "%s/missing", dir);
    assert_int_equal(rmu_file_sha256(p, h, &e), -1);
    assert_non_null(strstr(e.msg, p));
}

static void test_atomic_write(void **state) {
    const char *dir = *state;
    char p[4096];
    rmu_err e = {{0}};
    size_t n;
    snprintf(p, sizeof p, "%s/out.bin", dir);
    if (rmu_file_write_atomic(p, "first", 5, &e)) fail_msg("%s", e.msg);
    char *txt = rmu_file_read_all(p, &n, &e);
    assert_int_equal(n, 5);
    assert_string_equal(txt, "first");
    free(txt);
    /* a replaced file is all new, and no temporary file remains */
    if (rmu_file_write_atomic(p, "second!", 7, &e)) fail_msg("%s", e.msg);
    txt = rmu_file_read_all(p, &n, &e);
    assert_string_equal(txt, "second!");
    free(txt);
    assert_int_equal(count_entries(dir), 1);
    /* an aborted write leaves the old content and no temporary */
    rmu_afile a;
    if (rmu_afile_open(&a, p, &e)) fail_msg("%s", e.msg);
    assert_int_equal(rmu_afile_write(&a, "partial", 7, &e), 0);
    assert_true(rmu_file_exists(a.tmp));
    rmu_afile_abort(&a);
    rmu_afile_abort(&a); /* safe twice */
    assert_false(rmu_file_exists(a.tmp));
    txt = rmu_file_read_all(p, &n, &e);
    assert_string_equal(txt, "second!");
    free(txt);
    assert_int_equal(count_entries(dir), 1);
    /* the new content is invisible until commit */
    if (rmu_afile_open(&a, p, &e)) fail_msg("%s", e.msg);
    assert_int_equal(rmu_afile_write(&a, "third", 5, &e), 0);
    txt = rmu_file_read_all(p, &n, &e);
    assert_string_equal(txt, "second!");
    free(txt);
    if (rmu_afile_commit(&a, &e)) fail_msg("%s", e.msg);
    txt = rmu_file_read_all(p, &n, &e);
    assert_string_equal(txt, "third");
    free(txt);
    assert_int_equal(rmu_afile_commit(&a, &e), -1); /* already closed */
    /* an empty file is still a file */
    if (rmu_file_write_atomic(p, "", 0, &e)) fail_msg("%s", e.msg);
    txt = rmu_file_read_all(p, &n, &e);
    assert_int_equal(n, 0);
    free(txt);
    /* a folder that does not exist is named in the message */
    snprintf(p, sizeof p, "%s/no/such/out.bin", dir);
    assert_int_equal(rmu_file_write_atomic(p, "x", 1, &e), -1);
    assert_non_null(strstr(e.msg, "/no/such/out.bin"));
}

static void test_read_copy_dirs(void **state) {
    const char *dir = *state;
    char p[4096], q[4096];
    rmu_err e = {{0}};
    size_t n;
    /* larger than the reader's first buffer */
    size_t big = 200000;
    char *data = malloc(big);
    for (size_t i = 0; i < big; i++) data[i] = (char)(i * 31 + 7);
    snprintf(p, sizeof p, "%s/a/b/c", dir);
    if (rmu_mkdirs(p, &e)) fail_msg("%s", e.msg);
    if (rmu_mkdirs(p, &e)) fail_msg("%s", e.msg); /* existing is fine */
    snprintf(p, sizeof p, "%s/a/b/c/data", dir);
    if (rmu_file_write_atomic(p, data, big, &e)) fail_msg("%s", e.msg);
    snprintf(q, sizeof q, "%s/a/copy", dir);
    if (rmu_file_copy(p, q, &e)) fail_msg("%s", e.msg);
    char *back = rmu_file_read_all(q, &n, &e);
    assert_int_equal(n, big);
    assert_memory_equal(back, data, big);
    assert_int_equal(back[n], 0);
    free(back);
    free(data);
    snprintf(p, sizeof p, "%s/missing", dir);
    assert_null(rmu_file_read_all(p, &n, &e));
    assert_non_null(strstr(e.msg, p));
    assert_int_equal(rmu_file_copy(p, q, &e), -1);
    assert_non_null(strstr(e.msg, "missing"));
    assert_false(rmu_file_exists(p));
    /* path joining refuses to truncate */
    char small[8];
    assert_int_equal(rmu_path_join(small, sizeof small, "abc", "de", &e), 0);
    assert_string_equal(small, "abc/de");
    assert_int_equal(rmu_path_join(small, sizeof small, "abcd", "efgh", &e), -1);
    assert_non_null(strstr(e.msg, "too long"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test_setup_teardown(test_file_sha256, tu_setup_tmp, tu_teardown_tmp),
        cmocka_unit_test_setup_teardown(test_atomic_write, tu_setup_tmp, tu_teardown_tmp),
        cmocka_unit_test_setup_teardown(test_read_copy_dirs, tu_setup_tmp, tu_teardown_tmp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
