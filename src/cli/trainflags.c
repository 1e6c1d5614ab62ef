/* trainflags.c - the fine-tuning flags shared by `rmu train` and `rmu attack relearn`. */
#include <stdint.h>
#include <string.h>

#include "cli.h"
#include "train/adamw.h"
#include "trainflags.h"

/* a flag's value as a long / double in [lo, hi] */
static int int_flag(const char *cmd, int argc, char **argv, int *i, long lo, long hi, long *out) {
    const char *f = argv[*i], *v = cli_value(cmd, argc, argv, i);
    return v && !cli_int(cmd, f, v, lo, hi, out) ? 0 : -1;
}

static int float_flag(const char *cmd, int argc, char **argv, int *i, double lo, double hi, double *out) {
    const char *f = argv[*i], *v = cli_value(cmd, argc, argv, i);
    return v && !cli_float(cmd, f, v, lo, hi, out) ? 0 : -1;
}

static int str_flag(const char *cmd, int argc, char **argv, int *i, const char **out) {
    return (*out = cli_value(cmd, argc, argv, i)) ? 0 : -1;
}

int cli_ft_flag(const char *cmd, int argc, char **argv, int *i, rmu_ft_opts *o, int *have_epochs) {
    const char *f = argv[*i], *v;
    long l = 0;
    int rc;
    if (!strcmp(f, "-m") || !strcmp(f, "--model")) return str_flag(cmd, argc, argv, i, &o->model_dir) ? -1 : 1;
    if (!strcmp(f, "--data")) return str_flag(cmd, argc, argv, i, &o->data) ? -1 : 1;
    if (!strcmp(f, "--out") || !strcmp(f, "-o")) return str_flag(cmd, argc, argv, i, &o->out_dir) ? -1 : 1;
    if (!strcmp(f, "--field")) return str_flag(cmd, argc, argv, i, &o->field) ? -1 : 1;
    if (!strcmp(f, "--log")) return str_flag(cmd, argc, argv, i, &o->log_path) ? -1 : 1;
    if (!strcmp(f, "--trainable")) {
        if (str_flag(cmd, argc, argv, i, &o->trainable)) return -1;
        return *o->trainable ? 1 : (cli_fail(cmd, 2, "--trainable: empty pattern list"), -1);
    }
    if (!strcmp(f, "--pack") || !strcmp(f, "--no-pack")) return o->pack = !strcmp(f, "--pack"), 1;
    if (!strcmp(f, "--resume")) return o->resume = 1, 1;
    if (!strcmp(f, "--overwrite")) return o->overwrite = 1, 1;
    if (!strcmp(f, "--epochs")) return *have_epochs = 1, float_flag(cmd, argc, argv, i, 1e-6, 1e6, &o->epochs) ? -1 : 1;
    if (!strcmp(f, "--lr")) return float_flag(cmd, argc, argv, i, 0, 1e6, &o->lr) ? -1 : 1;
    if (!strcmp(f, "--weight-decay")) return float_flag(cmd, argc, argv, i, 0, 1e6, &o->weight_decay) ? -1 : 1;
    if (!strcmp(f, "--clip")) return float_flag(cmd, argc, argv, i, 0, 1e30, &o->clip) ? -1 : 1;
    if (!strcmp(f, "--adam-beta1")) return float_flag(cmd, argc, argv, i, 0, 0.999999999, &o->beta1) ? -1 : 1;
    if (!strcmp(f, "--adam-beta2")) return float_flag(cmd, argc, argv, i, 0, 0.999999999, &o->beta2) ? -1 : 1;
    if (!strcmp(f, "--adam-eps")) return float_flag(cmd, argc, argv, i, 0, 1, &o->eps) ? -1 : 1;
    if (!strcmp(f, "--schedule")) {
        if (!(v = cli_value(cmd, argc, argv, i))) return -1;
        if ((o->schedule = rmu_adamw_sched_parse(v)) < 0)
            return cli_fail(cmd, 2, "--schedule: expected constant, linear or cosine, got '%s'", v), -1;
        return 1;
    }
    if (!strcmp(f, "--precision"))
        return (v = cli_value(cmd, argc, argv, i)) && !cli_precision(cmd, v, &o->precision) ? 1 : -1;
    /* the integer flags */
    if (!strcmp(f, "--steps")) rc = int_flag(cmd, argc, argv, i, 1, 1L << 40, &l), o->steps = l;
    else if (!strcmp(f, "--batch-size")) rc = int_flag(cmd, argc, argv, i, 1, 1 << 16, &l), o->batch_size = (int)l;
    else if (!strcmp(f, "--seq-len")) rc = int_flag(cmd, argc, argv, i, 2, 1 << 24, &l), o->seq_len = (int)l;
    else if (!strcmp(f, "--warmup")) rc = int_flag(cmd, argc, argv, i, 0, 1L << 40, &l), o->warmup = l;
    else if (!strcmp(f, "--seed")) rc = int_flag(cmd, argc, argv, i, 0, INT64_MAX, &l), o->seed = (uint64_t)l;
    else if (!strcmp(f, "--save-every")) rc = int_flag(cmd, argc, argv, i, 1, 1L << 40, &l), o->save_every = l;
    else if (!strcmp(f, "--keep-checkpoints"))
        rc = int_flag(cmd, argc, argv, i, 1, 1 << 20, &l), o->keep_checkpoints = (int)l;
    else return 0;
    return rc ? -1 : 1;
}
