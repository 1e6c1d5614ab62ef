/* cmd_unlearn.c - `rmu unlearn`: RMU with the WMDP repository's defaults for Zephyr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "fieldmap.h"
#include "train/unlearn.h"

static const char *USAGE =
    "usage: rmu unlearn -m DIR --forget F1[,F2..] --retain R1[,R2..] --out DIR\n"
    "         [--layer-id 7] [--layer-ids 5,6,7] [--params PATTERNS] [--steering-coeffs 6.5,6.5]\n"
    "         [--alpha 1200,1200] [--lr 5e-5] [--batch-size 4] [--max-num-batches 150]\n"
    "         [--max-len 512,768] [--retain-max-len 512] [--min-len 0] [--seed 42] [--adaptive BETA]\n"
    "         [--log FILE.jsonl] [--save-control-vectors FILE] [--control-vectors FILE] [--optimizer hf|torch]\n"
    "         [--precision auto|bf16|fp32] [--overwrite]\n"
    "corpora: .jsonl/.ndjson files hold one {\"text\": ...} object per line; .json files a JSON array\n"
    "(of strings or such objects) or JSON Lines; other files are plain text, one text per non-blank\n"
    "line, keeping its line break. One retain corpus per forget corpus (topic).\n"
    "output: OUT is built under a staging name and renamed into place; an existing OUT is refused\n"
    "unless --overwrite (then replaced as a whole, if it is a model folder).\n";

/* Option fields of rmu_unl_opts as library errors name them -> flags. */
static const cli_field FIELDS[] = {
    {"model_dir", "-m"},          {"out_dir", "--out"},           {"forget", "--forget"},
    {"retain", "--retain"},       {"layer_id", "--layer-id"},     {"layer_ids", "--layer-ids"},
    {"params", "--params"},       {"steer", "--steering-coeffs"}, {"alpha", "--alpha"},
    {"lr", "--lr"},               {"batch_size", "--batch-size"}, {"max_num_batches", "--max-num-batches"},
    {"max_len", "--max-len"},     {"retain_max_len", "--retain-max-len"}, {"min_len", "--min-len"},
    {"adaptive_beta", "--adaptive"}, {"log_path", "--log"},       {"save_cv_path", "--save-control-vectors"},
    {"load_cv_path", "--control-vectors"}, {"dump_batches", "--dump-batches"}, {"overwrite", "--overwrite"},
    {NULL, NULL}};

/* Split a comma list into at most cap items (the string is modified). */
static int split_list(char *s, const char **items, int cap) {
    int n = 0;
    for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
        if (n == cap) return -1;
        items[n++] = tok;
    }
    return n;
}

static int parse_floats(const char *cmd, const char *flag, char *s, float *out, int cap, int *n) {
    const char *items[64];
    int k = split_list(s, items, cap < 64 ? cap : 64);
    if (k <= 0) return cli_fail(cmd, 2, "%s: expected a comma-separated list of at most %d numbers", flag, cap), -1;
    for (int i = 0; i < k; i++) {
        double d;
        if (cli_float(cmd, flag, items[i], -1e9, 1e9, &d)) return -1;
        out[i] = (float)d;
    }
    *n = k;
    return 0;
}

static int parse_ints(const char *cmd, const char *flag, char *s, int *out, int cap, int *n) {
    const char *items[64];
    int k = split_list(s, items, cap < 64 ? cap : 64);
    if (k <= 0) return cli_fail(cmd, 2, "%s: expected a comma-separated list of at most %d integers", flag, cap), -1;
    for (int i = 0; i < k; i++) {
        long l;
        if (cli_int(cmd, flag, items[i], -1000000, 1000000, &l)) return -1;
        out[i] = (int)l;
    }
    *n = k;
    return 0;
}

static void progress(void *ud, const rmu_unl_report *s) {
    (void)ud;
    double eta = s->step ? s->seconds / s->step * (s->nsteps - s->step) : 0;
    int width = 24, fill = s->nsteps ? width * s->step / s->nsteps : width;
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    int tty = isatty(2);
    if (tty || s->step == s->nsteps || s->step % 10 == 1)
        fprintf(stderr, "%s[%s] step %d/%d topic %d  unlearn %.4f  retain %.4f  %.1fs/step  ETA %.0fs%s",
                tty ? "\r" : "", bar, s->step, s->nsteps, s->topic, s->unlearn_loss, s->retain_loss,
                s->step ? s->seconds / s->step : 0, eta, tty ? "" : "\n");
    if (tty && s->step == s->nsteps) fputc('\n', stderr);
}

int rmu_cmd_unlearn(int argc, char **argv) {
    const char *cmd = "unlearn", *v;
    rmu_unl_opts o;
    rmu_unl_defaults(&o);
    if (cli_precision(cmd, NULL, &o.precision)) return 2; /* RMU_PRECISION; --precision overrides */
    char *lists[8] = {0};
    int nlists = 0, rc = 2;
    long l;
    double d;
#define DUP(s) (lists[nlists++] = strdup(s))
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(USAGE, stdout);
            rc = 0;
            goto out;
        }
        if (!strcmp(f, "--overwrite")) {
            o.overwrite = 1;
            continue;
        }
        if (!strcmp(f, "--adaptive") || !strcmp(f, "-m") || !strncmp(f, "--", 2)) {
            if (!(v = cli_value(cmd, argc, argv, &i))) goto out;
        } else {
            cli_fail(cmd, 2, "unexpected argument '%s' (see --help)", f);
            goto out;
        }
        if (nlists >= 7 && (!strcmp(f, "--forget") || !strcmp(f, "--retain") || !strcmp(f, "--steering-coeffs") ||
                            !strcmp(f, "--alpha") || !strcmp(f, "--layer-ids") || !strcmp(f, "--max-len"))) {
            cli_fail(cmd, 2, "%s: given too many times", f);
            goto out;
        }
        if (!strcmp(f, "-m") || !strcmp(f, "--model")) o.model_dir = v;
        else if (!strcmp(f, "--out")) o.out_dir = v;
        else if (!strcmp(f, "--forget")) {
            int n = split_list(DUP(v), o.forget, RMU_UNL_MAX_TOPICS);
            if (n <= 0) { cli_fail(cmd, 2, "--forget: expected 1..%d comma-separated files", RMU_UNL_MAX_TOPICS); goto out; }
            o.n_forget = n;
        } else if (!strcmp(f, "--retain")) {
            int n = split_list(DUP(v), o.retain, RMU_UNL_MAX_TOPICS);
            if (n <= 0) { cli_fail(cmd, 2, "--retain: expected 1..%d comma-separated files", RMU_UNL_MAX_TOPICS); goto out; }
            o.n_retain = n;
        } else if (!strcmp(f, "--layer-id")) {
            if (cli_int(cmd, f, v, -1000000, 1000000, &l)) goto out;
            o.layer_id = (int)l;
        } else if (!strcmp(f, "--layer-ids")) {
            if (parse_ints(cmd, f, DUP(v), o.layer_ids, RMU_UNL_MAX_LAYERS, &o.n_layer_ids)) goto out;
        } else if (!strcmp(f, "--params")) o.params = v;
        else if (!strcmp(f, "--steering-coeffs")) {
            if (parse_floats(cmd, f, DUP(v), o.steer, RMU_UNL_MAX_TOPICS, &o.n_steer)) goto out;
        } else if (!strcmp(f, "--alpha")) {
            if (parse_floats(cmd, f, DUP(v), o.alpha, RMU_UNL_MAX_TOPICS, &o.n_alpha)) goto out;
        } else if (!strcmp(f, "--max-len")) {
            if (parse_ints(cmd, f, DUP(v), o.max_len, RMU_UNL_MAX_TOPICS, &o.n_max_len)) goto out;
        } else if (!strcmp(f, "--lr")) {
            if (cli_float(cmd, f, v, 1e-12, 10, &d)) goto out;
            o.lr = (float)d;
        } else if (!strcmp(f, "--batch-size")) {
            if (cli_int(cmd, f, v, 1, 64, &l)) goto out;
            o.batch_size = (int)l;
        } else if (!strcmp(f, "--max-num-batches")) {
            if (cli_int(cmd, f, v, 1, 1 << 30, &l)) goto out;
            o.max_num_batches = (int)l;
        } else if (!strcmp(f, "--retain-max-len")) {
            if (cli_int(cmd, f, v, 1, 1 << 20, &l)) goto out;
            o.retain_max_len = (int)l;
        } else if (!strcmp(f, "--min-len")) {
            if (cli_int(cmd, f, v, 0, 1 << 30, &l)) goto out;
            o.min_len = (int)l;
        } else if (!strcmp(f, "--seed")) {
            if (cli_int(cmd, f, v, 0, 0x7fffffffffffffffL, &l)) goto out;
            o.seed = (uint64_t)l;
        } else if (!strcmp(f, "--adaptive")) {
            if (cli_float(cmd, f, v, 1e-6, 1e6, &d)) goto out;
            o.adaptive_beta = (float)d;
        } else if (!strcmp(f, "--log")) o.log_path = v;
        else if (!strcmp(f, "--save-control-vectors")) o.save_cv_path = v;
        else if (!strcmp(f, "--control-vectors")) o.load_cv_path = v;
        else if (!strcmp(f, "--optimizer")) {
            if (strcmp(v, "hf") && strcmp(v, "torch")) {
                cli_fail(cmd, 2, "--optimizer: expected hf (transformers.AdamW, the reference's) or torch, got '%s'", v);
                goto out;
            }
            o.torch_adamw = !strcmp(v, "torch");
        } else if (!strcmp(f, "--precision")) {
            if (cli_precision(cmd, v, &o.precision)) goto out;
        } else if (!strcmp(f, "--dump-batches")) o.dump_batches = v; /* tests: batches for the PyTorch reference */
        else {
            cli_fail(cmd, 2, "unknown option '%s' (see --help)", f);
            goto out;
        }
    }
#undef DUP
    if (!o.model_dir || !o.out_dir || !o.n_forget || !o.n_retain) {
        cli_fail(cmd, 2, "-m DIR, --forget, --retain and --out are required (see --help)");
        goto out;
    }
    if (o.load_cv_path && (o.n_steer || o.adaptive_beta > 0)) {
        cli_fail(cmd, 2, "--control-vectors fixes the vectors: drop --steering-coeffs/--adaptive");
        goto out;
    }
    rmu_unl_result r;
    rmu_err e;
    if (rmu_unl_run(&o, progress, NULL, &r, &e)) {
        cli_field_flags(&e, FIELDS);
        rc = cli_fail(cmd, 1, "%s", e.msg);
        goto out;
    }
    fprintf(stderr, "rmu unlearn: %d steps in %.1f s (%.2f s/step); final unlearn loss %.4f, retain loss %.4f; wrote %s\n",
            r.steps, r.seconds, r.steps ? r.seconds / r.steps : 0, r.final_unlearn_loss, r.final_retain_loss, o.out_dir);
    rc = 0;
out:
    for (int i = 0; i < nlists; i++) free(lists[i]);
    return rc;
}
