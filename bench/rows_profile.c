/* rows_profile.c - what a `rmu serve` decode step costs with R running sequences: R slots
 * (each with a short random prompt already cached), then decode steps through
 * rmu_model_forward_rows with one row per slot, as the engine runs them, for each R given.
 * Prints per R the step time, the aggregate tok/s, the ratio to R = first, and the step's
 * phase profile (matmul phases vs the rest). Built by `make bench`. Not a test.
 *   build/bench/rows_profile -m DIR [--rows 1,4,16] [--steps 16] [--prompt-len 16] */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "model/model.h"

int main(int argc, char **argv) {
    const char *dir = NULL, *rows = "1,4,16";
    int steps = 16, plen = 16;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--rows") && i + 1 < argc) rows = argv[++i];
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--prompt-len") && i + 1 < argc) plen = atoi(argv[++i]);
        else return fprintf(stderr, "usage: rows_profile -m DIR [--rows 1,4,16] [--steps 16] [--prompt-len 16]\n"), 2;
    }
    if (!dir || steps < 1 || plen < 1) return fprintf(stderr, "rows_profile: -m DIR is required\n"), 2;
    int Rs[32], nR = 0, Rmax = 0;
    for (const char *p = rows; *p && nR < 32;) {
        Rs[nR] = atoi(p);
        if (Rs[nR] < 1) return fprintf(stderr, "rows_profile: bad --rows\n"), 2;
        if (Rs[nR] > Rmax) Rmax = Rs[nR];
        nR++;
        p = strchr(p, ',');
        if (!p) break;
        p++;
    }
    rmu_model m;
    rmu_err e;
    if (rmu_model_load(&m, dir, &e)) return fprintf(stderr, "rows_profile: %s\n", e.msg), 1;
    const rmu_config *c = &m.cfg;
    int V = c->vocab_size, ctx = plen + steps + 8;
    rmu_state *st = calloc(Rmax, sizeof *st), **sp = calloc(Rmax, sizeof *sp);
    int *tok = malloc(sizeof(int) * (Rmax + plen)), *nrows = malloc(sizeof(int) * Rmax);
    float *logits = malloc(sizeof(float) * V * Rmax);
    rmu_batch_ws ws;
    if (rmu_batch_ws_init(&ws, &m, Rmax > plen ? Rmax : plen, Rmax, &e)) return fprintf(stderr, "%s\n", e.msg), 1;
    for (int i = 0; i < Rmax; i++) {
        if (rmu_state_init(&st[i], &m, ctx, 1, &e)) return fprintf(stderr, "rows_profile: %s\n", e.msg), 1;
        sp[i] = &st[i];
    }
    printf("model %s: %d layers, hidden %d, threads %d; decode steps of R rows (one per sequence), prompt %d\n", dir,
           c->n_layers, c->hidden_size, omp_get_max_threads(), plen);
    printf("%6s %12s %12s %10s %14s %14s\n", "rows", "step ms", "agg tok/s", "x vs R0", "matmul ms", "other ms");
    double base = 0;
    uint64_t r = 7;
    for (int t = 0; t < nR; t++) {
        int R = Rs[t];
        for (int i = 0; i < R; i++) { /* a fresh prompt per slot, one slot per call */
            rmu_state_reset(&st[i]);
            for (int j = 0; j < plen; j++) {
                r = r * 6364136223846793005ull + 1442695040888963407ull;
                tok[j] = (int)((r >> 33) % V);
            }
            int n = plen;
            if (rmu_model_forward_rows(&m, &sp[i], tok, &n, 1, NULL, NULL, &ws, &e))
                return fprintf(stderr, "rows_profile: %s\n", e.msg), 1;
        }
        rmu_prof prof;
        memset(&prof, 0, sizeof prof);
        ws.prof = &prof;
        double w0 = 0;
        for (int s = -1; s < steps; s++) { /* step -1: warm-up, not timed */
            if (s == 0) memset(&prof, 0, sizeof prof), w0 = rmu_now_s();
            for (int i = 0; i < R; i++) tok[i] = (int)((i * 7919L + s + 3) % V), nrows[i] = 1;
            if (rmu_model_forward_rows(&m, sp, tok, nrows, R, logits, NULL, &ws, &e))
                return fprintf(stderr, "rows_profile: %s\n", e.msg), 1;
        }
        double w = (rmu_now_s() - w0) / steps, mm = 0;
        ws.prof = NULL;
        for (int i = 0; i < RMU_PH_COUNT; i++)
            if (rmu_phase_is_matmul(i)) mm += prof.wall[i];
        mm /= steps;
        if (t == 0) base = R / w;
        printf("%6d %12.1f %12.2f %9.2fx %14.1f %14.1f\n", R, 1e3 * w, R / w, R / w / base, 1e3 * mm, 1e3 * (w - mm));
        for (int i = 0; i < RMU_PH_COUNT; i++)
            if (prof.wall[i] > 0)
                printf("         %-14s %8.2f ms/step%s\n", rmu_phase_name(i), 1e3 * prof.wall[i] / steps,
                       rmu_phase_is_matmul(i) ? "  (matmul)" : "");
    }
    for (int i = 0; i < Rmax; i++) rmu_state_free(&st[i]);
    rmu_batch_ws_free(&ws);
    rmu_model_free(&m);
    free(st), free(sp), free(tok), free(nrows), free(logits);
    return 0;
}
