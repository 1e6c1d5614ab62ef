/* testutil.h - what every cmocka unit test shares: a temporary folder per test group, the
 * ../shared lookup (skipping with a printed reason when absent), OK(), assert_near() and a
 * small deterministic random source. Header-only; include after <cmocka.h>. */
#ifndef RMU_TESTUTIL_H
#define RMU_TESTUTIL_H

#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- temporary folder: tu_setup_tmp / tu_teardown_tmp as cmocka group fixtures; the
 * folder's path is *state (a malloc'd string), tu_path() joins names under it. */
static int tu_rm_entry_(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static inline char *tu_mkdtemp(const char *tag) {
    const char *base = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    size_t n = strlen(base) + strlen(tag) + 16;
    char *d = malloc(n);
    if (!d) return NULL;
    snprintf(d, n, "%s/rmu_%s_XXXXXX", base, tag);
    if (!mkdtemp(d)) {
        free(d);
        return NULL;
    }
    return d;
}

static inline void tu_rmtree(const char *dir) {
    if (dir) nftw(dir, tu_rm_entry_, 16, FTW_DEPTH | FTW_PHYS);
}

static inline int tu_setup_tmp(void **state) { return (*state = tu_mkdtemp("test")) ? 0 : -1; }

static inline int tu_teardown_tmp(void **state) {
    tu_rmtree(*state);
    free(*state);
    *state = NULL;
    return 0;
}

/* dir + "/" + name in one of 8 rotating buffers (enough for the arguments of one call). */
static inline const char *tu_path(const char *dir, const char *name) {
    static char bufs[8][4096];
    static int k;
    k = (k + 1) % 8;
    snprintf(bufs[k], sizeof bufs[k], "%s/%s", dir, name);
    return bufs[k];
}

/* Writes text to path (test fixtures); fails the test when it cannot. */
#define tu_write_file(path, text)                                        \
    do {                                                                 \
        FILE *f_ = fopen((path), "wb");                                  \
        if (!f_) fail_msg("cannot write %s", (path));                    \
        fwrite((text), 1, strlen(text), f_);                             \
        fclose(f_);                                                      \
    } while (0)

/* ---- ../shared (or $SHARED): the path of SUB under it, or NULL when it is absent. */
static inline const char *tu_shared(const char *sub) {
    static char bufs[4][4096];
    static int k;
    const char *s = getenv("SHARED");
    k = (k + 1) % 4;
    snprintf(bufs[k], sizeof bufs[k], "%s/%s", s && *s ? s : "../shared", sub);
    struct stat st;
    return stat(bufs[k], &st) == 0 ? bufs[k] : NULL;
}

/* Skips the current test (with the reason) when ../shared/SUB is absent. */
#define TU_NEED_SHARED(var, sub)                                                                  \
    const char *var = tu_shared(sub);                                                             \
    do {                                                                                          \
        if (!var) {                                                                               \
            print_message("skipping: ../shared/%s is absent (reference data beside the checkout)\n", sub); \
            skip();                                                                               \
        }                                                                                         \
    } while (0)

/* A call that must succeed (0) with an rmu_err named e in scope. */
#define OK(call)                                                         \
    do {                                                                 \
        if ((call) != 0) fail_msg("%s failed: %s", #call, e.msg);       \
    } while (0)

#define assert_near(a, b, eps)                                                             \
    do {                                                                                   \
        double a_ = (a), b_ = (b);                                                         \
        if (!(fabs(a_ - b_) <= (eps))) fail_msg("%s = %.17g, %s = %.17g", #a, a_, #b, b_); \
    } while (0)

/* Uniform in [-1, 1) from a 64-bit LCG state (fast, reproducible test data). */
static inline float tu_frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) / (double)(1 << 24) * 2.0 - 1.0);
}

#endif
