/* cmd_attack.c - `rmu attack relearn|ablate`: how much of the unlearned knowledge comes back
 * (src/attack/relearn.h, src/attack/ablate.h). Tables go to stdout, progress to stderr. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attack/ablate.h"
#include "attack/relearn.h"
#include "cli.h"
#include "fieldmap.h"
#include "trainflags.h"
#include "train/adamw.h"

static const char *USAGE =
    "usage: rmu attack relearn -m UNLEARNED --data FILE[,FILE] --out DIR --eval TASKS --eval-data PATH\n"
    "                          [--samples 10] [--steps N | --epochs 3] [--batch-size 1] [--seq-len 1024]\n"
    "                          [--pack] [--lr 5e-5] [--warmup 0] [--schedule linear] [--weight-decay 0.01]\n"
    "                          [--clip 1.0] [--adam-beta1 0.9] [--adam-beta2 0.999] [--adam-eps 1e-8]\n"
    "                          [--seed 42] [--trainable PATTERNS] [--field text] [--precision auto|bf16|fp32]\n"
    "                          [--eval-every K] [--base BASE_MODEL_OR_RESULTS] [--save-models]\n"
    "                          [--save-every N] [--keep-checkpoints 2] [--resume] [--overwrite] [--log FILE]\n"
    "       rmu attack ablate -m UNLEARNED --base BASE --forget FILE [--retain FILE] --layers L1,L2..\n"
    "                          --out DIR [--directions 1] [--max-texts 64] [--max-len 512] [--apply FILE]\n"
    "                          [--eval TASKS --eval-data PATH] [--base-results FILES]\n"
    "                          [--unlearned-results FILES] [--overwrite]\n"
    "evaluation (both): --eval [LABEL=]TASKS --eval-data PATH, repeatable in pairs (one `rmu eval` run\n"
    "      each; a label keys its tasks as LABEL/TASK), scored as `rmu eval` with --eval-format\n"
    "      letter|cloze, --eval-limit N, --num-fewshot K, --bos, --max-length N.\n"
    "relearn: fine-tunes on the first --samples texts (rmu train's engine), evaluates the live model\n"
    "      every --eval-every steps (and at step 0 and the end); OUT = the model + attack/relearn.json,\n"
    "      attack/relearn.svg, attack/curve.jsonl (+ attack/step-N/ with --save-models).\n"
    "ablate: difference of mean residuals (unlearned - base on forget text at --layers; with --retain\n"
    "      also forget - retain on the unlearned model), top --directions by SVD, projected out of the\n"
    "      embeddings, o_proj and down_proj; OUT = a plain HF folder + attack/directions.safetensors,\n"
    "      attack/ablate.json.\n"
    "both print and save the recovered fraction of the gap, (attacked - unlearned) / (base - unlearned).\n";

static const cli_field RELEARN_FIELDS[] = {
    {"model_dir", "-m"}, {"out_dir", "--out"}, {"data", "--data"}, {"field", "--field"},
    {"max_docs", "--samples"}, {"trainable", "--trainable"}, {"log_path", "--log"}, {"seq_len", "--seq-len"},
    {"batch_size", "--batch-size"}, {"resume", "--resume"}, {"overwrite", "--overwrite"}, {"eval", "--eval"},
    {"eval_every", "--eval-every"}, {"base", "--base"}, {NULL, NULL}};

static const cli_field ABLATE_FIELDS[] = {
    {"model_dir", "-m"}, {"base_dir", "--base"}, {"forget", "--forget"}, {"retain", "--retain"},
    {"layers", "--layers"}, {"k", "--directions"}, {"max_texts", "--max-texts"}, {"max_len", "--max-len"},
    {"directions", "--apply"}, {"out_dir", "--out"}, {"overwrite", "--overwrite"}, {"eval", "--eval"},
    {NULL, NULL}};

typedef struct ui {
    int quiet, tty;
} ui;

/* --eval / --eval-data pairs and the shared scoring flags. 1 = consumed, 0 = not an eval
 * flag, -1 = error (printed). */
static int eval_flag(const char *cmd, int argc, char **argv, int *i, rmu_report_suite *s, int *ns, int *nd,
                     rmu_report_opts *o) {
    const char *f = argv[*i], *v;
    long l;
    double d;
    if (!strcmp(f, "--eval")) {
        if (!(v = cli_value(cmd, argc, argv, i))) return -1;
        if (*ns == RMU_REPORT_MAX_SUITES) return cli_fail(cmd, 2, "--eval: at most %d evaluations", *ns), -1;
        const char *eq = strchr(v, '=');
        if (eq) { /* LABEL=TASKS: the label is kept in argv's own storage */
            ((char *)eq)[0] = 0;
            s[*ns].label = v;
            s[*ns].tasks = eq + 1;
        } else {
            s[*ns].label = NULL;
            s[*ns].tasks = v;
        }
        (*ns)++;
    } else if (!strcmp(f, "--eval-data")) {
        if (!(v = cli_value(cmd, argc, argv, i))) return -1;
        if (*nd == RMU_REPORT_MAX_SUITES) return cli_fail(cmd, 2, "--eval-data: at most %d evaluations", *nd), -1;
        s[(*nd)++].data = v;
    } else if (!strcmp(f, "--eval-format")) {
        if (!(v = cli_value(cmd, argc, argv, i))) return -1;
        if (!strcmp(v, "letter")) o->format = RMU_MCQ_LETTER;
        else if (!strcmp(v, "cloze")) o->format = RMU_MCQ_CLOZE;
        else return cli_fail(cmd, 2, "--eval-format: expected letter or cloze, got '%s'", v), -1;
    } else if (!strcmp(f, "--eval-limit")) {
        if (!(v = cli_value(cmd, argc, argv, i)) || cli_float(cmd, f, v, 0, 1e12, &d)) return -1;
        if (d >= 1.0 && d != floor(d)) return cli_fail(cmd, 2, "--eval-limit: a row count must be whole"), -1;
        o->limit = d;
    } else if (!strcmp(f, "--num-fewshot")) {
        if (!(v = cli_value(cmd, argc, argv, i)) || cli_int(cmd, f, v, 0, 1000, &l)) return -1;
        o->num_fewshot = (int)l;
    } else if (!strcmp(f, "--max-length")) {
        if (!(v = cli_value(cmd, argc, argv, i)) || cli_int(cmd, f, v, 2, 1 << 22, &l)) return -1;
        o->max_length = (int)l;
    } else if (!strcmp(f, "--bos")) {
        o->add_bos = 1;
    } else {
        return 0;
    }
    return 1;
}

static int check_pairs(const char *cmd, int ns, int nd) {
    if (ns != nd) return cli_fail(cmd, 2, "--eval and --eval-data come in pairs (%d --eval, %d --eval-data)", ns, nd);
    return 0;
}

static void print_accs(const rmu_report *r, const double *acc, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = 0;
    for (int k = 0; k < r->nkeys && n < cap; k++)
        if (r->keys[k].depth == 0)
            n += (size_t)snprintf(buf + n, cap - n, "%s%s %.1f%%", n ? ", " : "", r->keys[k].name, 100 * acc[k]);
}

/* ---- relearn */

static void rl_note(void *ud, const char *msg) {
    (void)ud;
    cli_field_note("attack relearn", RELEARN_FIELDS, msg);
}

static void rl_step(void *ud, const rmu_ft_status *s) {
    ui *u = ud;
    if (u->quiet || !u->tty) return;
    fprintf(stderr, "\r  step %ld/%ld  loss %.4f  lr %.2e\033[K", s->step, s->total, s->loss, s->lr);
    fflush(stderr);
}

static void rl_point(void *ud, const rmu_report *r, long step, long total, const double *acc) {
    ui *u = ud;
    if (u->quiet) return;
    char b[1024];
    print_accs(r, acc, b, sizeof b);
    fprintf(stderr, "%srmu attack relearn: step %ld/%ld: %s\n", u->tty ? "\r\033[K" : "", step, total, b);
}

static int cmd_relearn(int argc, char **argv) {
    const char *cmd = "attack relearn", *v;
    rmu_relearn_opts o;
    rmu_relearn_defaults(&o);
    if (cli_precision(cmd, NULL, &o.train.precision)) return 2; /* RMU_PRECISION; --precision overrides */
    ui u = {0};
    int nd = 0, have_epochs = 0;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        long l;
        int ev = eval_flag(cmd, argc, argv, &i, o.suites, &o.n_suites, &nd, &o.eval);
        if (!ev) ev = cli_ft_flag(cmd, argc, argv, &i, &o.train, &have_epochs);
        if (ev < 0) return 2;
        if (ev) continue;
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(USAGE, stdout);
            return 0;
        } else if (!strcmp(f, "--samples")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 1, 1L << 40, &l)) return 2;
            o.train.max_docs = l;
        } else if (!strcmp(f, "--eval-every")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 0, 1L << 40, &l)) return 2;
            o.eval_every = l;
        } else if (!strcmp(f, "--base")) {
            if (!(o.base = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--save-models")) {
            o.save_models = 1;
        } else if (!strcmp(f, "--quiet") || !strcmp(f, "-q")) {
            u.quiet = 1;
        } else {
            return cli_fail(cmd, 2, "unknown option '%s' (see --help)", f);
        }
    }
    if (!o.train.model_dir || !o.train.data || !o.train.out_dir)
        return cli_fail(cmd, 2, "-m DIR, --data FILE and --out DIR are required");
    if (o.n_suites == 0 && nd == 0) return cli_fail(cmd, 2, "--eval TASKS and --eval-data PATH are required");
    if (check_pairs(cmd, o.n_suites, nd)) return 2;
    if (o.train.steps > 0 && have_epochs) return cli_fail(cmd, 2, "--steps and --epochs exclude each other");
    u.tty = isatty(2);
    rmu_relearn_hooks h = {rl_note, rl_step, rl_point, &u};
    rmu_relearn_result r;
    rmu_err e;
    if (rmu_relearn_run(&o, &h, &r, &e)) {
        if (u.tty && !u.quiet) fputs("\r\033[K", stderr);
        cli_field_flags(&e, RELEARN_FIELDS);
        return cli_fail(cmd, 1, "%s", e.msg);
    }
    char *t = rmu_report_table(&r.rep, r.base, r.unlearned, r.final, "relearned");
    if (t) printf("relearning attack: %ld texts, %ld steps%s\n\n%s", r.samples, r.total_steps,
                  r.already_complete ? " (already complete)" : "", t);
    free(t);
    if (!u.quiet)
        fprintf(stderr, "rmu attack relearn: %.1f s; wrote %s (attack/relearn.json, attack/relearn.svg)\n", r.seconds,
                o.train.out_dir);
    rmu_relearn_result_free(&r);
    return 0;
}

/* ---- ablate */

static void ab_note(void *ud, const char *msg) {
    ui *u = ud;
    if (!u->quiet) fprintf(stderr, "rmu attack ablate: %s\n", msg);
}

static int cmd_ablate(int argc, char **argv) {
    const char *cmd = "attack ablate", *v;
    rmu_ablate_opts o;
    rmu_ablate_defaults(&o);
    ui u = {0};
    int nd = 0;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        long l;
        int ev = eval_flag(cmd, argc, argv, &i, o.suites, &o.n_suites, &nd, &o.eval);
        if (ev < 0) return 2;
        if (ev) continue;
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(USAGE, stdout);
            return 0;
        } else if (!strcmp(f, "-m") || !strcmp(f, "--model")) {
            if (!(o.model_dir = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--base")) {
            if (!(o.base_dir = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--forget")) {
            if (!(o.forget = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--retain")) {
            if (!(o.retain = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--out") || !strcmp(f, "-o")) {
            if (!(o.out_dir = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--layers")) {
            if (!(v = cli_value(cmd, argc, argv, &i))) return 2;
            int ids[RMU_ABLATE_MAX_LAYERS + 1], n = 0;
            const char *p = v;
            while (*p) {
                char num[32];
                size_t k = strcspn(p, ",");
                if (!k || k >= sizeof num || n > RMU_ABLATE_MAX_LAYERS)
                    return cli_fail(cmd, 2, "--layers: expected comma-separated layer indices, got '%s'", v);
                memcpy(num, p, k);
                num[k] = 0;
                if (cli_int(cmd, f, num, -1000000, 1000000, &l)) return 2;
                ids[n++] = (int)l;
                p += k + (p[k] == ',');
            }
            if (!n || n > RMU_ABLATE_MAX_LAYERS)
                return cli_fail(cmd, 2, "--layers: expected 1..%d layers", RMU_ABLATE_MAX_LAYERS);
            memcpy(o.layers, ids, sizeof(int) * (size_t)n);
            o.n_layers = n;
        } else if (!strcmp(f, "--directions")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 1, RMU_ABLATE_MAX_K, &l)) return 2;
            o.k = (int)l;
        } else if (!strcmp(f, "--max-texts")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 1, 1 << 30, &l)) return 2;
            o.max_texts = (int)l;
        } else if (!strcmp(f, "--max-len")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 2, 1 << 20, &l)) return 2;
            o.max_len = (int)l;
        } else if (!strcmp(f, "--apply")) {
            if (!(o.directions = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--base-results")) {
            if (!(o.base_results = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--unlearned-results")) {
            if (!(o.unlearned_results = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--overwrite")) {
            o.overwrite = 1;
        } else if (!strcmp(f, "--quiet") || !strcmp(f, "-q")) {
            u.quiet = 1;
        } else {
            return cli_fail(cmd, 2, "unknown option '%s' (see --help)", f);
        }
    }
    if (!o.model_dir || !o.out_dir) return cli_fail(cmd, 2, "-m DIR and --out DIR are required");
    if (!o.directions && (!o.base_dir || !o.forget || !o.n_layers))
        return cli_fail(cmd, 2, "--base, --forget and --layers are required (or --apply FILE)");
    if (o.directions && (o.forget || o.retain || o.n_layers))
        return cli_fail(cmd, 2, "--apply gives the directions: drop --forget/--retain/--layers");
    if (check_pairs(cmd, o.n_suites, nd)) return 2;
    if ((o.base_results || o.unlearned_results) && !o.n_suites)
        return cli_fail(cmd, 2, "--base-results/--unlearned-results need --eval and --eval-data");
    rmu_ablate_result r;
    rmu_err e;
    if (rmu_ablate_run(&o, ab_note, &u, &r, &e)) {
        cli_field_flags(&e, ABLATE_FIELDS);
        return cli_fail(cmd, 1, "%s", e.msg);
    }
    printf("directional ablation: %d direction%s", r.k, r.k == 1 ? "" : "s");
    if (r.explained) {
        double tot = 0;
        for (int i = 0; i < r.k; i++) tot += r.explained[i];
        printf(" explaining %.1f%% of the squared norm of %d difference vector%s", 100 * tot, r.n_vec,
               r.n_vec == 1 ? "" : "s");
    }
    printf("; %d tensors projected\n", r.n_tensors);
    if (r.ablated) {
        char *t = rmu_report_table(&r.rep, r.base, r.unlearned, r.ablated, "ablated");
        if (t) printf("\n%s", t);
        free(t);
    }
    if (!u.quiet)
        fprintf(stderr, "rmu attack ablate: %.1f s; wrote %s (attack/directions.safetensors, attack/ablate.json)\n",
                r.seconds, o.out_dir);
    rmu_ablate_result_free(&r);
    return 0;
}

int rmu_cmd_attack(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "relearn")) return cmd_relearn(argc - 1, argv + 1);
    if (!strcmp(argv[1], "ablate")) return cmd_ablate(argc - 1, argv + 1);
    return cli_fail("attack", 2, "unknown attack '%s' (relearn or ablate)", argv[1]);
}
