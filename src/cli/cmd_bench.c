/* cmd_bench.c - `rmu bench`: prefill and decode speed of a model, plus this machine's
 * memory read bandwidth, so decode GB/s can be read against the physical limit. */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "kernels/gemm.h"
#include "core/util.h"
#include "model/model.h"

/* One pass over n 32-byte vectors: four independent xor chains. The AVX2 clone's 256-bit loads
 * are what the weight kernels issue; with 64-bit adds the probe read ~25% below them (decode
 * then showed more than 100% of "the" bandwidth). */
typedef uint64_t bw_vec __attribute__((vector_size(32)));
__attribute__((target_clones("avx2", "default"))) static uint64_t read_pass(const bw_vec *p, size_t n) {
    bw_vec a = {0}, b = a, c = a, d = a;
    for (size_t i = 0; i + 4 <= n; i += 4) a ^= p[i], b ^= p[i + 1], c ^= p[i + 2], d ^= p[i + 3];
    a ^= b ^ c ^ d;
    return a[0] ^ a[1] ^ a[2] ^ a[3];
}

/* Read bandwidth: best of 5 passes of all threads over a buffer much larger than the caches, GB/s. */
static double read_bandwidth(size_t bytes) {
    size_t n = bytes / sizeof(bw_vec);
    bw_vec *buf = aligned_alloc(64, n * sizeof(bw_vec));
    if (!buf) return 0;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) buf[i] = (bw_vec){i, i + 1, i + 2, i + 3};
    double best = 0;
    volatile uint64_t sink = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = rmu_now_s();
        uint64_t total = 0;
#pragma omp parallel reduction(^ : total)
        {
            size_t T = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
            size_t lo = n / T * t, hi = t == T - 1 ? n : n / T * (t + 1);
            total ^= read_pass(buf + lo, hi - lo);
        }
        double dt = rmu_now_s() - t0;
        sink ^= total;
        if (bytes / dt > best) best = bytes / dt;
    }
    (void)sink;
    free(buf);
    return best / 1e9;
}

int rmu_cmd_bench(int argc, char **argv) {
    const char *cmd = "bench", *dir = NULL, *v, *prec_s = NULL;
    long plen = 512, glen = 128, bw_only = 0;
    rmu_prec prec;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-m")) {
            if (!(dir = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--prompt-len")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 1, 1 << 16, &plen)) return 2;
        } else if (!strcmp(f, "--gen-len")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 1, 1 << 16, &glen)) return 2;
        } else if (!strcmp(f, "--bandwidth-only")) {
            bw_only = 1;
        } else if (!strcmp(f, "--precision")) {
            if (!(prec_s = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            puts("usage: rmu bench -m DIR [--prompt-len 512] [--gen-len 128] [--precision auto|bf16|fp32]\n"
                 "       rmu bench --bandwidth-only\n"
                 "threads: OMP_NUM_THREADS (default: all cores)");
            return 0;
        } else {
            return cli_fail(cmd, 2, "unknown option '%s'", f);
        }
    }
    if (cli_precision(cmd, prec_s, &prec)) return 2;
    double bw = read_bandwidth((size_t)2 << 30);
    printf("threads            %d\ngemm path          %s\nmemory read        %.1f GB/s (2 GiB buffer, best of 5)\n",
           omp_get_max_threads(), rmu_gemm_path(), bw);
    if (bw_only) return 0;
    if (!dir) return cli_fail(cmd, 2, "-m DIR is required");
    rmu_model m;
    rmu_state s;
    rmu_err e;
    if (rmu_model_load(&m, dir, &e)) return cli_fail(cmd, 1, "%s", e.msg);
    cli_model_note(cmd, &m.cfg);
    rmu_model_set_precision(&m, prec);
    int ctx = (int)(plen + glen + 1);
    int V = m.cfg.vocab_size;
    int *ids = malloc(sizeof(int) * plen);
    float *logits = malloc(sizeof(float) * V);
    if (!ids || !logits || rmu_state_init(&s, &m, ctx, (int)plen, &e)) {
        free(ids), free(logits), rmu_model_free(&m);
        return cli_fail(cmd, 1, "%s", ids && logits ? e.msg : "out of memory");
    }
    uint64_t r = 42;
    for (long i = 0; i < plen; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = i == 0 && m.cfg.bos_id >= 0 ? m.cfg.bos_id : (int)((r >> 33) % V);
    }
    double wb = rmu_model_weight_bytes(&m), db = rmu_model_decode_bytes(&m);
    /* warm the page cache / mmap once so the first pass does not measure disk reads */
    if (rmu_model_forward(&m, &s, ids, 1, logits, 0, &e)) goto fail;
    rmu_state_reset(&s);
    double t0 = rmu_now_s(), c0 = rmu_cpu_s();
    if (rmu_model_forward(&m, &s, ids, (int)plen, logits, 0, &e)) goto fail;
    double tp = rmu_now_s() - t0, cp = rmu_cpu_s() - c0;
    int tok = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[tok]) tok = i;
    t0 = rmu_now_s(), c0 = rmu_cpu_s();
    for (long i = 0; i < glen; i++) {
        if (rmu_model_forward(&m, &s, &tok, 1, logits, 0, &e)) goto fail;
        tok = (int)((tok * 7919L + i) % V);
    }
    double td = rmu_now_s() - t0, cd = rmu_cpu_s() - c0;
    double dps = glen / td;
    printf("model              %s\nweights            %.2f GB\nprecision          %s\n", dir, wb / 1e9,
           rmu_prec_name(prec));
    printf("prefill            %.2f tok/s (%ld tokens in %.2f s; CPU %.2f s = %.2f tok/s per busy core)\n", plen / tp,
           plen, tp, cp, plen / cp);
    printf("decode             %.2f tok/s (%ld tokens in %.2f s; CPU %.2f s)\n", dps, glen, td, cd);
    printf("decode bandwidth   %.1f GB/s effective (%.2f GB of weights per token; %.0f%% of measured read "
           "bandwidth)\n",
           db * dps / 1e9, db / 1e9, bw > 0 ? 100.0 * db * dps / 1e9 / bw : 0.0);
    free(ids), free(logits);
    rmu_state_free(&s);
    rmu_model_free(&m);
    return 0;
fail:
    free(ids), free(logits);
    rmu_state_free(&s);
    rmu_model_free(&m);
    return cli_fail(cmd, 1, "%s", e.msg);
}
