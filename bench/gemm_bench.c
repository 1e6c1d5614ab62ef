/* gemm_bench.c - GFLOP/s of rmu_gemm on the products of a linear layer at model shapes:
 *   fwd  y[M,out]   = x[M,in] W^T      (W [out,in] BF16/F16/F32, B stored [N,K])
 *   dx   dX[M,in]   = dY[M,out] W      (B stored [K,N])
 *   dw   dW[out,in] += dY^T X          (A read transposed through strides, B = X fp32)
 * per kernel path and precision, plus this core's fp32 FMA peak (a pure-FMA loop) so the
 * figures read as % of peak. One thread: per-thread CPU time (immune to other processes
 * sharing the machine); more threads: wall clock (indicative on a shared machine), plus
 * GFLOP per CPU-second of all threads ("per core": parallel efficiency on a busy machine).
 *
 * usage: gemm_bench [--threads N] [--path best|portable|avx2|avx512|avx512bf16]
 *                   [--prec fp32|bf16|auto|all] [--dtype bf16|f16|f32|F8_E4M3] [--products fwd,dx,dw]
 *                   [--m 1,4,64,512,2048] [--shapes 4096x4096,1024x4096,14336x4096,4096x14336]
 *                   [--min-time 0.5] [--peak-only] [--no-peak] [--panels]
 * shapes are OUTxIN of the weight; F8_E4M3 weights get a scale per output channel. With
 * --panels the forward product reads F8_E4M3 and BF16 weights through panels (rmu_gemm_panels). */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/dtype.h"
#include "core/util.h"
#include "kernels/gemm.h"

#if defined(__x86_64__)
/* 12 independent chains of 256-bit FMAs (FMA latency 4 x 2 pipes = 8 in flight needed). */
__attribute__((target("avx2,fma"))) static double fma_peak_avx2(void) {
    long n = 100000000, it = n;
    double t0 = rmu_thread_cpu_s();
    __asm__ volatile("vxorps %%ymm0,%%ymm0,%%ymm0\n vxorps %%ymm1,%%ymm1,%%ymm1\n vxorps %%ymm2,%%ymm2,%%ymm2\n"
                     "vxorps %%ymm3,%%ymm3,%%ymm3\n vxorps %%ymm4,%%ymm4,%%ymm4\n vxorps %%ymm5,%%ymm5,%%ymm5\n"
                     "vxorps %%ymm6,%%ymm6,%%ymm6\n vxorps %%ymm7,%%ymm7,%%ymm7\n vxorps %%ymm8,%%ymm8,%%ymm8\n"
                     "vxorps %%ymm9,%%ymm9,%%ymm9\n vxorps %%ymm10,%%ymm10,%%ymm10\n vxorps %%ymm11,%%ymm11,%%ymm11\n"
                     "vxorps %%ymm14,%%ymm14,%%ymm14\n vxorps %%ymm15,%%ymm15,%%ymm15\n"
                     "1:\n"
                     "vfmadd231ps %%ymm14,%%ymm15,%%ymm0\n vfmadd231ps %%ymm14,%%ymm15,%%ymm1\n"
                     "vfmadd231ps %%ymm14,%%ymm15,%%ymm2\n vfmadd231ps %%ymm14,%%ymm15,%%ymm3\n"
                     "vfmadd231ps %%ymm14,%%ymm15,%%ymm4\n vfmadd231ps %%ymm14,%%ymm15,%%ymm5\n"
                     "vfmadd231ps %%ymm14,%%ymm15,%%ymm6\n vfmadd231ps %%ymm14,%%ymm15,%%ymm7\n"
                     "vfmadd231ps %%ymm14,%%ymm15,%%ymm8\n vfmadd231ps %%ymm14,%%ymm15,%%ymm9\n"
                     "vfmadd231ps %%ymm14,%%ymm15,%%ymm10\n vfmadd231ps %%ymm14,%%ymm15,%%ymm11\n"
                     "dec %0\n jnz 1b\n vzeroupper\n"
                     : "+r"(it)::"xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
                       "xmm10", "xmm11", "xmm14", "xmm15", "cc");
    return n * 12.0 * 16 / (rmu_thread_cpu_s() - t0) / 1e9;
}
#endif

static double fma_peak(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0;
    double best = 0;
    for (int r = 0; r < 5; r++) {
        double g = fma_peak_avx2();
        if (g > best) best = g;
    }
    return best;
#else
    return 0;
#endif
}

static int parse_list(const char *s, int *out, int max) {
    int n = 0;
    while (*s && n < max) {
        out[n++] = (int)strtol(s, (char **)&s, 10);
        if (*s == ',' || *s == 'x') s++;
    }
    return n;
}

static void fill(float *p, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (float)((seed >> 40) / (double)(1 << 24) - 0.5);
    }
}

int main(int argc, char **argv) {
    int threads = omp_get_max_threads(), ms[16] = {1, 4, 64, 512, 2048}, nm = 5;
    int shp[16] = {4096, 4096, 1024, 4096, 14336, 4096, 4096, 14336}, nsh = 4;
    const char *products = "fwd,dx,dw", *precs = "all";
    rmu_gemm_path_id path = RMU_GEMM_BEST;
    rmu_dtype dt = RMU_DT_BF16;
    double min_time = 0.5;
    int peak_only = 0, no_peak = 0, panels = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--threads")) threads = atoi(v), i++;
        else if (!strcmp(a, "--m")) nm = parse_list(v, ms, 16), i++;
        else if (!strcmp(a, "--shapes")) nsh = parse_list(v, shp, 16) / 2, i++;
        else if (!strcmp(a, "--products")) products = v, i++;
        else if (!strcmp(a, "--prec")) precs = v, i++;
        else if (!strcmp(a, "--dtype")) dt = rmu_dtype_parse(v), i++;
        else if (!strcmp(a, "--min-time")) min_time = atof(v), i++;
        else if (!strcmp(a, "--peak-only")) peak_only = 1;
        else if (!strcmp(a, "--no-peak")) no_peak = 1;
        else if (!strcmp(a, "--panels")) panels = 1;
        else if (!strcmp(a, "--path")) {
            int found = 0;
            for (int p = 0; p < RMU_GEMM_NPATHS; p++)
                if (!strcmp(v, p ? rmu_gemm_path_name(p) : "best")) path = p, found = 1;
            if (!found) return fprintf(stderr, "gemm_bench: unknown path %s\n", v), 2;
            i++;
        } else {
            fprintf(stderr, "gemm_bench: unknown option %s (see the comment at the top of bench/gemm_bench.c)\n", a);
            return 2;
        }
    }
    if (dt == RMU_DT_INVALID) return fprintf(stderr, "gemm_bench: unknown dtype\n"), 2;
    omp_set_num_threads(threads);
    double peak = no_peak ? 0 : fma_peak();
    printf("# fp32 FMA peak (one core, AVX2, pure-FMA loop): %.1f GFLOP/s\n", peak);
    if (peak_only) return 0;
    printf("# threads %d, path %s, weights %s, timing %s\n", threads, rmu_gemm_path_name(path), rmu_dtype_name(dt),
           threads == 1 ? "thread CPU time" : "wall clock");
    printf("%-5s %6s %6s %6s %-5s %9s %7s %9s\n", "prod", "M", "out", "in", "prec", "GFLOP/s", "%peak", "per core");
    rmu_prec plist[3];
    int np = 0;
    if (!strcmp(precs, "all")) plist[np++] = RMU_PREC_FP32, plist[np++] = RMU_PREC_BF16;
    else if (rmu_prec_parse(precs, &plist[np++], NULL)) return fprintf(stderr, "gemm_bench: bad --prec\n"), 2;
    int maxm = 0;
    for (int i = 0; i < nm; i++) maxm = ms[i] > maxm ? ms[i] : maxm;
    for (int s = 0; s < nsh; s++) {
        int out = shp[2 * s], in = shp[2 * s + 1];
        size_t wn = (size_t)out * in, big = (size_t)maxm * (out > in ? out : in);
        float *wf = malloc(sizeof(float) * wn), *X = malloc(sizeof(float) * big), *Y = malloc(sizeof(float) * big);
        float *G = malloc(sizeof(float) * wn), *sc = malloc(sizeof(float) * out);
        void *W = malloc(rmu_dtype_size(dt) * wn);
        int use_p = panels && (dt == RMU_DT_F8_E4M3 || dt == RMU_DT_BF16);
        void *P = use_p ? malloc(rmu_gemm_panels_bytes(dt, out, in)) : NULL;
        if (!wf || !X || !Y || !G || !W || !sc || (use_p && !P))
            return fprintf(stderr, "gemm_bench: out of memory\n"), 1;
        for (int r = 0; r < out; r++) sc[r] = 0.01f; /* F8 only: W's stored rows are its out rows */
        fill(wf, wn, 1);
        rmu_from_f32(W, wf, dt, wn);
        if (P) rmu_gemm_panels(dt, W, out, in, in, P);
        fill(X, big, 2);
        fill(Y, big, 3);
        memset(G, 0, sizeof(float) * wn);
        for (int mi = 0; mi < nm; mi++) {
            int M = ms[mi];
            for (int pi = 0; pi < np; pi++) {
                for (int pr = 0; pr < 3; pr++) {
                    const char *pname = pr == 0 ? "fwd" : pr == 1 ? "dx" : "dw";
                    if (!strstr(products, pname)) continue;
                    double flops = 2.0 * M * out * in, best = 1e30, spent = 0, bestcpu = 1e30;
                    rmu_err e;
                    for (int rep = 0; rep < 100 && (rep < 2 || spent < min_time); rep++) {
                        double t0 = threads == 1 ? rmu_thread_cpu_s() : rmu_now_s(), c0 = rmu_cpu_s();
                        int rc;
                        if (pr == 0) {
                            rmu_gemm_b b = {W, dt, 1, in, plist[pi], sc, out, P};
                            rc = rmu_gemm_ex(path, threads, M, out, in, X, in, 1, &b, Y, out, 0, &e);
                        } else if (pr == 1) {
                            rmu_gemm_b b = {W, dt, 0, in, plist[pi], sc, out, NULL};
                            rc = rmu_gemm_ex(path, threads, M, in, out, Y, out, 1, &b, X, in, 0, &e);
                        } else {
                            rmu_gemm_b b = {X, RMU_DT_F32, 0, in, plist[pi], NULL, 0, NULL};
                            rc = rmu_gemm_ex(path, threads, out, in, M, Y, 1, out, &b, G, in, 1, &e);
                        }
                        if (rc) return fprintf(stderr, "gemm_bench: %s\n", e.msg), 1;
                        double t = (threads == 1 ? rmu_thread_cpu_s() : rmu_now_s()) - t0, c = rmu_cpu_s() - c0;
                        spent += t;
                        if (t < best) best = t;
                        if (c < bestcpu) bestcpu = c;
                    }
                    double g = flops / best / 1e9;
                    printf("%-5s %6d %6d %6d %-5s %9.1f %6.0f%% %9.1f\n", pname, M, out, in, rmu_prec_name(plist[pi]),
                           g, peak > 0 ? 100.0 * g / (peak * threads) : 0.0, flops / bestcpu / 1e9);
                    fflush(stdout);
                }
            }
        }
        free(wf), free(X), free(Y), free(G), free(W), free(sc), free(P);
    }
    return 0;
}
