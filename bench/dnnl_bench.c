/* dnnl_bench.c - oneDNN (Debian libdnnl-dev) side by side with gemm_bench: the same three
 * products of a linear layer through dnnl_sgemm (fp32 weights: oneDNN gets the weights
 * already in fp32, rmu converts BF16 while packing), and through the bf16 matmul primitive
 * (bf16 activations and weights, fp32 output). Bench only: never linked into rmu.
 * Build: make bench-dnnl. Usage: dnnl_bench [--threads N] [--m 512,1024,2048,3072]
 *        [--shapes 4096x4096,...] [--min-time 0.5] [--bf16]
 * One thread: per-thread CPU time (oneDNN runs on the calling thread); more: wall clock. */
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util.h"

static int parse_list(const char *s, int *out, int max) {
    int n = 0;
    while (*s && n < max) {
        out[n++] = (int)strtol(s, (char **)&s, 10);
        if (*s == ',' || *s == 'x') s++;
    }
    return n;
}

#define CK(x)                                                                           \
    do {                                                                                \
        dnnl_status_t st_ = (x);                                                        \
        if (st_ != dnnl_success) {                                                      \
            fprintf(stderr, "dnnl_bench: %s failed (%d)\n", #x, (int)st_);              \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

/* bf16 matmul C[M,N] (+)= A[M,K] B[K,N] with strides for B (transposed views). */
static double bf16_matmul(int threads, int M, int N, int K, int transA, int transB, double min_time, int acc) {
    dnnl_engine_t eng;
    dnnl_stream_t strm;
    CK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CK(dnnl_stream_create(&strm, eng, dnnl_stream_default_flags));
    dnnl_memory_desc_t a, b, c;
    dnnl_dims_t ad = {M, K}, bd = {K, N}, cd = {M, N};
    dnnl_dims_t as = {transA ? 1 : K, transA ? M : 1}, bs = {transB ? 1 : N, transB ? K : 1}, cs = {N, 1};
    CK(dnnl_memory_desc_init_by_strides(&a, 2, ad, dnnl_bf16, as));
    CK(dnnl_memory_desc_init_by_strides(&b, 2, bd, dnnl_bf16, bs));
    CK(dnnl_memory_desc_init_by_strides(&c, 2, cd, dnnl_f32, cs));
    dnnl_primitive_attr_t attr;
    CK(dnnl_primitive_attr_create(&attr));
    if (acc) {
        dnnl_post_ops_t po;
        CK(dnnl_post_ops_create(&po));
        CK(dnnl_post_ops_append_sum(po, 1.0f));
        CK(dnnl_primitive_attr_set_post_ops(attr, po));
        dnnl_post_ops_destroy(po);
    }
    dnnl_primitive_desc_t pd;
    dnnl_matmul_desc_t md;
    CK(dnnl_matmul_desc_init(&md, &a, &b, NULL, &c));
    if (dnnl_primitive_desc_create(&pd, &md, attr, eng, NULL) != dnnl_success) {
        dnnl_primitive_attr_destroy(attr), dnnl_stream_destroy(strm), dnnl_engine_destroy(eng);
        return 0; /* oneDNN 2.6 has no bf16 matmul without AVX512-BF16 / AMX */
    }
    dnnl_primitive_t mm;
    CK(dnnl_primitive_create(&mm, pd));
    const char *impl = NULL;
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    dnnl_memory_t am, bm, cm;
    CK(dnnl_memory_create(&am, &a, eng, DNNL_MEMORY_ALLOCATE));
    CK(dnnl_memory_create(&bm, &b, eng, DNNL_MEMORY_ALLOCATE));
    CK(dnnl_memory_create(&cm, &c, eng, DNNL_MEMORY_ALLOCATE));
    void *p;
    dnnl_memory_get_data_handle(am, &p), memset(p, 0x3c, (size_t)M * K * 2);
    dnnl_memory_get_data_handle(bm, &p), memset(p, 0x3c, (size_t)K * N * 2);
    dnnl_memory_get_data_handle(cm, &p), memset(p, 0, (size_t)M * N * 4);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}};
    double best = 1e30, spent = 0;
    for (int rep = 0; rep < 100 && (rep < 2 || spent < min_time); rep++) {
        double t0 = threads == 1 ? rmu_thread_cpu_s() : rmu_now_s();
        CK(dnnl_primitive_execute(mm, strm, 3, args));
        CK(dnnl_stream_wait(strm));
        double t = (threads == 1 ? rmu_thread_cpu_s() : rmu_now_s()) - t0;
        spent += t;
        if (t < best) best = t;
    }
    static int said;
    if (!said++) printf("# bf16 matmul implementation: %s\n", impl ? impl : "?");
    dnnl_memory_destroy(am), dnnl_memory_destroy(bm), dnnl_memory_destroy(cm);
    dnnl_primitive_destroy(mm), dnnl_primitive_desc_destroy(pd), dnnl_primitive_attr_destroy(attr);
    dnnl_stream_destroy(strm), dnnl_engine_destroy(eng);
    return 2.0 * M * N * K / best / 1e9;
}

int main(int argc, char **argv) {
    int threads = omp_get_max_threads(), ms[16] = {512, 1024, 2048, 3072}, nm = 4;
    int shp[16] = {4096, 4096, 1024, 4096, 14336, 4096, 4096, 14336}, nsh = 4, bf16 = 0;
    double min_time = 0.5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--threads")) threads = atoi(v), i++;
        else if (!strcmp(a, "--m")) nm = parse_list(v, ms, 16), i++;
        else if (!strcmp(a, "--shapes")) nsh = parse_list(v, shp, 16) / 2, i++;
        else if (!strcmp(a, "--min-time")) min_time = atof(v), i++;
        else if (!strcmp(a, "--bf16")) bf16 = 1;
        else return fprintf(stderr, "dnnl_bench: unknown option %s\n", a), 2;
    }
    omp_set_num_threads(threads);
    const dnnl_version_t *ver = dnnl_version();
    printf("# oneDNN %d.%d.%d, threads %d, %s, timing %s\n", ver->major, ver->minor, ver->patch, threads,
           bf16 ? "bf16 matmul primitive" : "dnnl_sgemm (fp32 weights)", threads == 1 ? "thread CPU time" : "wall clock");
    printf("%-5s %6s %6s %6s %9s\n", "prod", "M", "out", "in", "GFLOP/s");
    int maxm = 0;
    for (int i = 0; i < nm; i++) maxm = ms[i] > maxm ? ms[i] : maxm;
    for (int s = 0; s < nsh; s++) {
        int out = shp[2 * s], in = shp[2 * s + 1];
        size_t wn = (size_t)out * in, big = (size_t)maxm * (out > in ? out : in);
        float *W = malloc(4 * wn), *G = calloc(wn, 4), *X = malloc(4 * big), *Y = malloc(4 * big);
        if (!W || !G || !X || !Y) return fprintf(stderr, "dnnl_bench: out of memory\n"), 1;
        for (size_t i = 0; i < wn; i++) W[i] = (float)(i % 7) * 0.01f;
        for (size_t i = 0; i < big; i++) X[i] = Y[i] = (float)(i % 5) * 0.01f;
        for (int mi = 0; mi < nm; mi++) {
            int M = ms[mi];
            for (int pr = 0; pr < 3; pr++) {
                const char *pname = pr == 0 ? "fwd" : pr == 1 ? "dx" : "dw";
                double g;
                if (bf16) {
                    if (pr == 0) g = bf16_matmul(threads, M, out, in, 0, 1, min_time, 0);
                    else if (pr == 1) g = bf16_matmul(threads, M, in, out, 0, 0, min_time, 0);
                    else g = bf16_matmul(threads, out, in, M, 1, 0, min_time, 1);
                } else {
                    double best = 1e30, spent = 0;
                    for (int rep = 0; rep < 100 && (rep < 2 || spent < min_time); rep++) {
                        double t0 = threads == 1 ? rmu_thread_cpu_s() : rmu_now_s();
                        if (pr == 0) CK(dnnl_sgemm('N', 'T', M, out, in, 1.0f, X, in, W, in, 0.0f, Y, out));
                        else if (pr == 1) CK(dnnl_sgemm('N', 'N', M, in, out, 1.0f, Y, out, W, in, 0.0f, X, in));
                        else CK(dnnl_sgemm('T', 'N', out, in, M, 1.0f, Y, out, X, in, 1.0f, G, in));
                        double t = (threads == 1 ? rmu_thread_cpu_s() : rmu_now_s()) - t0;
                        spent += t;
                        if (t < best) best = t;
                    }
                    g = 2.0 * M * out * in / best / 1e9;
                }
                if (g > 0) printf("%-5s %6d %6d %6d %9.1f\n", pname, M, out, in, g);
                else printf("%-5s %6d %6d %6d %9s\n", pname, M, out, in, "n/a (unimplemented on this CPU)");
                fflush(stdout);
            }
        }
        free(W), free(G), free(X), free(Y);
    }
    return 0;
}
