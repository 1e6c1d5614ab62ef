/* cmd_train.c - `rmu train`: causal-LM fine-tuning (src/train/finetune.h). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "clidist.h"
#include "fieldmap.h"
#include "sig.h"
#include "trainflags.h"
#include "train/adamw.h"
#include "train/finetune.h"

static const char *USAGE =
    "usage: rmu train -m DIR --data FILE[,FILE..] --out DIR [--trainable PATTERNS]\n"
    "                 [--steps N | --epochs E] [--batch-size 8] [--seq-len 512] [--no-pack] [--field text]\n"
    "                 [--lr 5e-5] [--warmup N] [--schedule constant|linear|cosine] [--weight-decay 0]\n"
    "                 [--clip 1.0] [--adam-beta1 0.9] [--adam-beta2 0.999] [--adam-eps 1e-8]\n"
    "                 [--seed 42] [--save-every N] [--keep-checkpoints 2] [--resume] [--overwrite]\n"
    "                 [--log FILE.jsonl] [--dtype bf16|f16|f32] [--precision auto|bf16|fp32] [--quiet]\n"
    "data: *.jsonl/*.ndjson (one object per line, text in --field), *.json (an array of strings or\n"
    "      objects, or JSON Lines when it does not start with '['), other files plain text with one\n"
    "      document per non-blank line, keeping its line break. Documents get BOS (per\n"
    "      tokenizer_config) and EOS, are concatenated and cut into --seq-len chunks (--no-pack: one\n"
    "      truncated, left-padded sequence per document).\n"
    "--trainable: comma-separated globs on HF tensor names with {a,b} and {5..7} braces, e.g.\n"
    "      'model.layers.{5..7}.mlp.down_proj.weight' (default: every tensor).\n"
    "output: OUT is a complete HF folder (weights in the input dtype unless --dtype, same shards),\n"
    "      built in OUT.rmu-work and renamed into place when the run ends; --save-every writes\n"
    "      OUT.rmu-work/checkpoint-STEP (fp32 masters + AdamW state) that --resume continues\n"
    "      bit-identically (they end up in OUT). An existing OUT is refused unless --overwrite.\n";

/* Option fields of rmu_ft_opts as library errors name them -> flags. */
static const cli_field FIELDS[] = {
    {"model_dir", "-m"},       {"out_dir", "--out"},         {"data", "--data"},
    {"field", "--field"},      {"trainable", "--trainable"}, {"log_path", "--log"},
    {"seq_len", "--seq-len"},  {"batch_size", "--batch-size"}, {"resume", "--resume"},
    {"overwrite", "--overwrite"}, {"batch_json", "--batch-json"}, {"dump_grads", "--dump-grads"},
    {"out_dtype", "--dtype"},  {NULL, NULL}};

typedef struct {
    int quiet, tty;
    long last_print;
} ui;

static void fmt_time(char *b, size_t n, double s) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(b, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(b, n, "%ld:%02ld", t / 60, t % 60);
}

static void on_note(void *ud, const char *msg) {
    (void)ud;
    cli_field_note("train", FIELDS, msg);
}

static void on_step(void *ud, const rmu_ft_status *s) {
    ui *u = ud;
    if (u->quiet) return;
    /* a tty gets a live bar; a log file a line per ~5% of the run */
    long every = s->total / 20 > 0 ? s->total / 20 : 1;
    if (!u->tty && s->step != s->total && s->step % every != 0 && !s->checkpoint) return;
    int width = 20, fill = (int)(width * s->step / s->total);
    char bar[32], eta[32];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fmt_time(eta, sizeof eta, s->eta);
    fprintf(stderr, "%s[%s] step %ld/%ld  loss %.4f  lr %.2e  %.0f tok/s  ETA %s%s%s", u->tty ? "\r" : "", bar,
            s->step, s->total, s->loss, s->lr, s->tokens_per_s, eta, s->checkpoint ? "  (checkpoint)" : "",
            u->tty ? "\033[K" : "\n");
    if (u->tty && s->step == s->total) fputc('\n', stderr);
    fflush(stderr);
}

/* Options into o and u: 0, 1 after --help, or 2 after a usage error (printed). */
static int parse_args(const char *cmd, int argc, char **argv, rmu_ft_opts *o, ui *u) {
    const char *v;
    if (cli_precision(cmd, NULL, &o->precision)) return 2; /* RMU_PRECISION; --precision overrides */
    int have_epochs = 0;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        long l;
        int sh = cli_ft_flag(cmd, argc, argv, &i, o, &have_epochs);
        if (sh < 0) return 2;
        if (sh) continue;
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(USAGE, stdout);
            return 1;
        } else if (!strcmp(f, "--dtype")) {
            if (!(v = cli_value(cmd, argc, argv, &i))) return 2;
            if (!strcmp(v, "bf16")) o->out_dtype = RMU_DT_BF16;
            else if (!strcmp(v, "f16")) o->out_dtype = RMU_DT_F16;
            else if (!strcmp(v, "f32")) o->out_dtype = RMU_DT_F32;
            else if ((o->out_dtype = rmu_dtype_parse(v)) == RMU_DT_INVALID)
                return cli_fail(cmd, 2, "--dtype: expected bf16, f16 or f32, got '%s'", v);
        } else if (!strcmp(f, "--quiet") || !strcmp(f, "-q")) {
            u->quiet = 1;
        /* hidden options: tests and benchmarks */
        } else if (!strcmp(f, "--batch-json")) {
            if (!(o->batch_json = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--dump-grads")) {
            if (!(o->dump_grads = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--loss-layer")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 0, 1 << 20, &l)) return 2;
            o->loss_layer = (int)l;
        } else if (!strcmp(f, "--no-output")) {
            o->no_output = 1;
        } else if (!strcmp(f, "--debug-nan-step")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 1, 1L << 40, &l)) return 2;
            o->debug_nan_step = l;
        } else {
            return cli_fail(cmd, 2, "unknown option '%s' (see --help)", f);
        }
    }
    if (!o->model_dir) return cli_fail(cmd, 2, "-m DIR is required");
    if (!o->data && !o->batch_json) return cli_fail(cmd, 2, "--data FILE is required");
    if (o->data && o->batch_json) return cli_fail(cmd, 2, "--data and --batch-json exclude each other");
    if (o->dump_grads && !o->batch_json) return cli_fail(cmd, 2, "--dump-grads needs --batch-json");
    if (!o->out_dir && !o->dump_grads) return cli_fail(cmd, 2, "--out DIR is required");
    if (o->steps > 0 && have_epochs) return cli_fail(cmd, 2, "--steps and --epochs exclude each other");
    return 0;
}

static int train(const rmu_dist *d, int argc, char **argv) {
    const char *cmd = "train";
    rmu_ft_opts o;
    rmu_ft_defaults(&o);
    ui u = {0};
    /* every rank parses; a rank that cannot stops them all (its own message printed) */
    int rc = cli_dist_status(d, parse_args(cmd, argc, argv, &o, &u));
    if (rc) return rc == 1 ? 0 : rc;
    o.dist = d;
    if (!rmu_dist_root(d)) u.quiet = 1; /* rank 0 reports for all */
    u.tty = isatty(2);
    o.cancel = cli_sig_flag(); /* Ctrl-C: stop after the step, keep the checkpoints */
    rmu_ft_result r;
    rmu_err e;
    if (rmu_ft_run(&o, on_note, on_step, &u, &r, &e)) {
        if (u.tty && !u.quiet) fputc('\n', stderr);
        cli_field_flags(&e, FIELDS);
        return cli_dist_fail(d, cmd, 1, "%s", e.msg);
    }
    if (o.dump_grads) {
        if (rmu_dist_root(d))
            printf("{\"loss\": %.17g, \"tensors\": %d}\n", r.last_loss, r.n_tensors);
        return 0;
    }
    if (!u.quiet)
        fprintf(stderr, "rmu train: %ld steps (from step %ld), loss %.4f -> %.4f, %d tensors / %ld parameters trained, "
                        "%.1fs; wrote %s\n",
                r.steps, r.start_step, r.first_loss, r.last_loss, r.n_tensors, r.n_trainable, r.seconds, o.out_dir);
    return 0;
}

int rmu_cmd_train(int argc, char **argv) {
    rmu_dist d;
    if (cli_dist_begin(&d, "train")) return 1;
    return cli_dist_end(&d, train(&d, argc, argv));
}
