/* decode_profile.c - where the time of a token goes: prefill and decode through
 * rmu_model_forward with the run state's phase profile (rmu_state.prof) switched on, as
 * GEMV/GEMM phases vs everything else (norms, RoPE + cache writes, attention over the
 * cache, SwiGLU, embedding, and "other": whatever falls between phases - loop overhead,
 * checks). Built and run by bench/decode_profile.sh. Not a test.
 *
 * With OMP_NUM_THREADS=1 the CPU-time column is the cost of each phase whatever else the
 * machine runs; with more threads it is the calling thread's share only, and wall time is
 * the figure (noisy on a shared machine). */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util.h"
#include "model/model.h"

static void print_profile(const char *what, const rmu_prof *p, double wall, double cpu, int tokens) {
    double mw = 0, mc = 0, sw = 0, sc = 0;
    printf("\n%s: %d tokens, %.1f ms wall and %.1f ms CPU per token\n", what, tokens, 1e3 * wall / tokens,
           1e3 * cpu / tokens);
    printf("  %-14s %12s %7s %12s %7s\n", "phase", "wall ms/tok", "share", "CPU ms/tok", "share");
    for (int i = 0; i < RMU_PH_COUNT; i++) {
        printf("  %-14s %12.3f %6.2f%% %12.3f %6.2f%%  %s\n", rmu_phase_name(i), 1e3 * p->wall[i] / tokens,
               100 * p->wall[i] / wall, 1e3 * p->cpu[i] / tokens, 100 * p->cpu[i] / cpu,
               rmu_phase_is_matmul(i) ? "matmul" : "");
        sw += p->wall[i], sc += p->cpu[i];
        if (rmu_phase_is_matmul(i)) mw += p->wall[i], mc += p->cpu[i];
    }
    printf("  %-14s %12.3f %6.2f%% %12.3f %6.2f%%\n", "other", 1e3 * (wall - sw) / tokens, 100 * (wall - sw) / wall,
           1e3 * (cpu - sc) / tokens, 100 * (cpu - sc) / cpu);
    printf("  matmul total   %12.3f %6.2f%% %12.3f %6.2f%%\n", 1e3 * mw / tokens, 100 * mw / wall, 1e3 * mc / tokens,
           100 * mc / cpu);
    printf("  everything else%12.3f %6.2f%% %12.3f %6.2f%%\n", 1e3 * (wall - mw) / tokens, 100 * (wall - mw) / wall,
           1e3 * (cpu - mc) / tokens, 100 * (cpu - mc) / cpu);
}

int main(int argc, char **argv) {
    const char *dir = NULL;
    int plen = 512, glen = 32, fake = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--prompt-len") && i + 1 < argc) plen = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--gen-len") && i + 1 < argc) glen = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--fake-prefill")) fake = 1;
        else {
            fprintf(stderr, "usage: decode_profile -m DIR [--prompt-len 512] [--gen-len 32] [--fake-prefill]\n"
                            "  --fake-prefill: fill the KV cache with noise instead of running the prompt\n"
                            "                  (decode timing at a long context without the prefill)\n");
            return 2;
        }
    }
    if (!dir || plen < 1 || glen < 1) return fprintf(stderr, "decode_profile: -m DIR is required\n"), 2;
    rmu_model m;
    rmu_state s;
    rmu_err e;
    if (rmu_model_load(&m, dir, &e)) return fprintf(stderr, "decode_profile: %s\n", e.msg), 1;
    const rmu_config *c = &m.cfg;
    int V = c->vocab_size;
    if (rmu_state_init(&s, &m, plen + glen + 1, plen < 512 ? plen : 512, &e))
        return fprintf(stderr, "decode_profile: %s\n", e.msg), 1;
    int *ids = malloc(sizeof(int) * plen);
    float *logits = malloc(sizeof(float) * V);
    uint64_t r = 42;
    for (int i = 0; i < plen; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = i == 0 && c->bos_id >= 0 ? c->bos_id : (int)((r >> 33) % V);
    }
    printf("model %s: %d layers, hidden %d, heads %d/%d, threads %d\n", dir, c->n_layers, c->hidden_size,
           c->n_heads, c->n_kv_heads, omp_get_max_threads());
    /* warm the mmap (page cache) so that no pass measures disk reads */
    if (rmu_model_forward(&m, &s, ids, 1, logits, 0, &e)) return fprintf(stderr, "%s\n", e.msg), 1;
    rmu_state_reset(&s);
    rmu_prof prof;
    memset(&prof, 0, sizeof prof);
    if (fake) {
        size_t kv = (size_t)c->n_layers * c->n_kv_heads * s.ctx * c->head_dim;
        for (size_t i = 0; i < kv; i++) s.kcache[i] = s.vcache[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
        s.pos = plen;
        printf("prefill: skipped (--fake-prefill), cache of %d positions filled with noise\n", plen);
    } else {
        s.prof = &prof;
        double w0 = rmu_now_s(), c0 = rmu_thread_cpu_s();
        if (rmu_model_forward(&m, &s, ids, plen, logits, 0, &e)) return fprintf(stderr, "%s\n", e.msg), 1;
        double w = rmu_now_s() - w0, cp = rmu_thread_cpu_s() - c0;
        printf("prefill: %.2f tok/s wall (%d tokens in %.2f s)\n", plen / w, plen, w);
        print_profile("prefill", &prof, w, cp, plen);
    }
    memset(&prof, 0, sizeof prof);
    s.prof = &prof;
    int tok = 1;
    double w0 = rmu_now_s(), c0 = rmu_thread_cpu_s();
    for (int i = 0; i < glen; i++) {
        if (rmu_model_forward(&m, &s, &tok, 1, logits, 0, &e)) return fprintf(stderr, "%s\n", e.msg), 1;
        tok = (int)((tok * 7919L + i) % V);
    }
    double w = rmu_now_s() - w0, cp = rmu_thread_cpu_s() - c0;
    /* bytes one decode step reads: every weight but the embedding table (one row of it),
     * plus the KV cache up to the current position */
    size_t all = rmu_model_decode_bytes(&m);
    double kvb = 2.0 * c->n_layers * c->n_kv_heads * c->head_dim * sizeof(float) * (plen + glen / 2.0);
    printf("\ndecode: %.2f tok/s wall, %.2f tok/s by CPU time, context %d..%d\n", glen / w, glen / cp, plen,
           plen + glen);
    printf("decode bytes/token: %.3f GB of weights + %.3f GB of KV cache\n", all / 1e9, kvb / 1e9);
    printf("decode effective: %.1f GB/s (weights + cache, wall), %.1f GB/s (weights: rmu bench's definition)\n",
           (all + kvb) * glen / w / 1e9, all * glen / w / 1e9);
    print_profile("decode", &prof, w, cp, glen);
    free(ids);
    free(logits);
    rmu_state_free(&s);
    rmu_model_free(&m);
    return 0;
}
