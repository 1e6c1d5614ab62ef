/* cmd_demo.c - `rmu demo`: the embedded end-to-end demo (src/app/demo/demo.h does the work):
 * a synthetic two-domain knowledge base, a small Mistral pretrained on it, RMU removing one
 * domain, and the before/after table. Progress goes to stderr, the table to stdout. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "app/demo/demo.h"

static const char *USAGE =
    "usage: rmu demo [--out demo-out] [--small] [--seed S] [--quiet]\n"
    "Generates a knowledge base of invented facts in two domains (creatures of the Vell marsh:\n"
    "forget; towns of the Ardent coast: retain), pretrains a small Mistral on it (cached in\n"
    "OUT/base), removes the forget domain with RMU, attacks the result (relearning on 10 forget\n"
    "texts: OUT/relearned; directional ablation: OUT/ablated) and prints 4-choice accuracy before,\n"
    "after and under each attack. Writes OUT/results.json and OUT/unlearn.svg. --small: the reduced\n"
    "run used by `make test`.\n";

typedef struct {
    int quiet, tty;
    long last;
} ui;

static void on_stage(void *ud, const char *msg) {
    ui *u = ud;
    if (!u->quiet) fprintf(stderr, "rmu demo: %s\n", msg);
}

static void bar(char *b, int width, double frac) {
    int fill = (int)(width * frac);
    for (int i = 0; i < width; i++) b[i] = i < fill ? '#' : '.';
    b[width] = 0;
}

static void on_train(void *ud, const rmu_ft_status *s) {
    ui *u = ud;
    long every = s->total / 10 > 0 ? s->total / 10 : 1;
    if (u->quiet || (!u->tty && s->step != s->total && s->step % every)) return;
    char b[32];
    bar(b, 20, (double)s->step / s->total);
    fprintf(stderr, "%s  pretrain [%s] step %ld/%ld  loss %.4f  %.0f tok/s  ETA %.0fs%s", u->tty ? "\r" : "", b,
            s->step, s->total, s->loss, s->tokens_per_s, s->eta, u->tty ? "\033[K" : "\n");
    if (u->tty && s->step == s->total) fputc('\n', stderr);
    fflush(stderr);
}

static void on_unlearn(void *ud, const rmu_unl_report *s) {
    ui *u = ud;
    int every = s->nsteps / 10 > 0 ? s->nsteps / 10 : 1;
    if (u->quiet || (!u->tty && s->step != s->nsteps && s->step % every)) return;
    char b[32];
    bar(b, 20, (double)s->step / s->nsteps);
    fprintf(stderr, "%s  unlearn  [%s] step %d/%d  unlearn loss %.4f  retain loss %.4f%s", u->tty ? "\r" : "", b,
            s->step, s->nsteps, s->unlearn_loss, s->retain_loss, u->tty ? "\033[K" : "\n");
    if (u->tty && s->step == s->nsteps) fputc('\n', stderr);
    fflush(stderr);
}

static void on_relearn(void *ud, const rmu_ft_status *s) {
    ui *u = ud;
    if (u->quiet || !u->tty) return; /* the evaluation points are printed as stages */
    char b[32];
    bar(b, 20, (double)s->step / s->total);
    fprintf(stderr, "\r  relearn  [%s] step %ld/%ld  loss %.4f\033[K", b, s->step, s->total, s->loss);
    if (s->step == s->total) fputs("\r\033[K", stderr);
    fflush(stderr);
}

int rmu_cmd_demo(int argc, char **argv) {
    const char *cmd = "demo", *out = "demo-out", *v;
    int small = 0;
    long seed = 1;
    ui u = {0};
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(USAGE, stdout);
            return 0;
        } else if (!strcmp(f, "--out") || !strcmp(f, "-o")) {
            if (!(out = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--small")) {
            small = 1;
        } else if (!strcmp(f, "--seed")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 0, 0x7fffffffL, &seed)) return 2;
        } else if (!strcmp(f, "--quiet")) {
            u.quiet = 1;
        } else {
            return cli_fail(cmd, 2, "unknown option '%s' (see --help)", f);
        }
    }
    u.tty = isatty(2);
    rmu_demo_cfg c;
    rmu_demo_cfg_default(&c, small, (uint64_t)seed);
    rmu_demo_hooks h = {on_stage, on_train, on_unlearn, on_relearn, &u};
    rmu_demo_result r;
    rmu_err e;
    if (rmu_demo_run(&c, out, &h, &r, &e)) return cli_fail(cmd, 1, "%s", e.msg);
    char *table = rmu_demo_table(&r);
    if (!table) return cli_fail(cmd, 1, "out of memory");
    printf("\nRMU on invented facts (%s run, seed %ld): 4-choice accuracy before and after RMU, and under two "
           "attacks on the unlearned model\n\n%s\n", small ? "small" : "full", seed, table);
    free(table);
    if (r.pretrained_cached) printf("pretrained model reused from %s/base; ", out);
    else printf("pretraining %.1f s; ", r.pretrain_seconds);
    printf("unlearning %.1f s; relearning %.1f s; ablation %.1f s; total %.1f s\nwrote %s/results.json and "
           "%s/unlearn.svg\n", r.unlearn_seconds, r.relearn.seconds, r.ablate.seconds, r.seconds, out, out);
    return 0;
}
