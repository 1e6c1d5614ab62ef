/* cmd_init.c - `rmu init`: a random-weight model of a named shape (with overrides) plus a
 * tokenizer, loadable by rmu and by transformers. */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/fileio.h"
#include "model/config.h"
#include "model/init.h"
#include "tokenizer/tokenizer.h"

static const char USAGE[] =
    "usage: rmu init -o DIR --shape mistral-7b|tiny|small|stories260k [--dtype bf16|f16|f32]\n"
    "                [--seed S] [--shards N] [--tokenizer DIR] [--jitter-norms]\n"
    "                [--layers N] [--hidden N] [--intermediate N] [--heads N] [--kv-heads N]\n"
    "                [--vocab N] [--sliding-window N|none] [--tie|--untie] [--max-pos N]\n"
    "--dtype defaults to the preset's (bf16 for mistral-7b, f32 for the small ones).\n"
    "writes DIR/config.json, generation_config.json, safetensors with random weights\n"
    "(N(0, 0.02), norms 1) and a tokenizer (copied from --tokenizer DIR, else synthetic).\n"
    "DIR is built under a staging name and renamed into place; an existing DIR is replaced\n"
    "only when it is empty or a model folder (holds config.json).\n"
    "--hidden or --heads recompute head_dim = hidden / heads.";

int rmu_cmd_init(int argc, char **argv) {
    const char *cmd = "init", *dir = NULL, *shape = NULL, *tok = NULL, *v;
    rmu_dtype dt = RMU_DT_INVALID; /* default: the preset's torch_dtype */
    long seed = 0, shards = 1;
    /* overrides; -1 = keep the preset's value */
    long layers = -1, hidden = -1, inter = -1, heads = -1, kvh = -1, vocab = -1, window = -1, maxpos = -1;
    int tie = -1, jitter = 0;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        struct {
            const char *flag;
            long *dst, lo, hi;
        } ints[] = {{"--seed", &seed, 0, INT64_MAX},
                    {"--shards", &shards, 1, 99999},
                    {"--layers", &layers, 1, 1 << 16},
                    {"--hidden", &hidden, 1, 1 << 20},
                    {"--intermediate", &inter, 1, 1 << 22},
                    {"--heads", &heads, 1, 1 << 12},
                    {"--kv-heads", &kvh, 1, 1 << 12},
                    {"--vocab", &vocab, 1, 1 << 22},
                    {"--max-pos", &maxpos, 1, 1 << 24}};
        int k, handled = 0;
        for (k = 0; k < (int)(sizeof ints / sizeof ints[0]); k++) {
            if (strcmp(f, ints[k].flag)) continue;
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, ints[k].lo, ints[k].hi, ints[k].dst))
                return 2;
            handled = 1;
            break;
        }
        if (handled) continue;
        if (!strcmp(f, "-o") || !strcmp(f, "--out")) {
            if (!(dir = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--shape")) {
            if (!(shape = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--tokenizer")) {
            if (!(tok = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--dtype")) {
            if (!(v = cli_value(cmd, argc, argv, &i))) return 2;
            if (!(dt = rmu_dtype_parse(v))) return cli_fail(cmd, 2, "--dtype: expected bf16, f16 or f32, got '%s'", v);
        } else if (!strcmp(f, "--sliding-window")) {
            if (!(v = cli_value(cmd, argc, argv, &i))) return 2;
            if (!strcmp(v, "none") || !strcmp(v, "0")) window = 0;
            else if (cli_int(cmd, f, v, 1, 1 << 24, &window)) return 2;
        } else if (!strcmp(f, "--tie")) {
            tie = 1;
        } else if (!strcmp(f, "--untie")) {
            tie = 0;
        } else if (!strcmp(f, "--jitter-norms")) {
            jitter = 1;
        } else if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            puts(USAGE);
            return 0;
        } else {
            return cli_fail(cmd, 2, "unknown option '%s' (rmu init --help)", f);
        }
    }
    if (!dir || !shape) return cli_fail(cmd, 2, "-o DIR and --shape are required (rmu init --help)");
    rmu_config c;
    rmu_err e;
    if (rmu_cfg_preset(&c, shape, &e)) return cli_fail(cmd, 2, "--shape: %s", e.msg);
    if (!dt) dt = c.torch_dtype;
    if (layers > 0) c.n_layers = (int)layers;
    if (hidden > 0) c.hidden_size = (int)hidden;
    if (inter > 0) c.intermediate_size = (int)inter;
    if (heads > 0) c.n_heads = (int)heads;
    if (kvh > 0) c.n_kv_heads = (int)kvh;
    if (vocab > 0) c.vocab_size = (int)vocab;
    if (maxpos > 0) c.max_position_embeddings = (int)maxpos;
    if (window >= 0) {
        if (window > 0 && strcmp(c.model_type, "mistral"))
            return cli_fail(cmd, 2, "--sliding-window: %s models have no sliding window", c.model_type);
        c.sliding_window = (int)window;
    }
    if (tie >= 0) c.tie_word_embeddings = tie;
    if (hidden > 0 || heads > 0) {
        if (c.hidden_size % c.n_heads)
            return cli_fail(cmd, 2, "--hidden %d is not divisible by --heads %d", c.hidden_size, c.n_heads);
        c.head_dim = c.hidden_size / c.n_heads;
    }
    if (heads > 0 && kvh < 0 && c.n_heads % c.n_kv_heads)
        return cli_fail(cmd, 2, "--heads %d is not a multiple of the preset's %d kv heads (add --kv-heads)",
                        c.n_heads, c.n_kv_heads);
    if (rmu_cfg_validate(&c, "overrides", &e)) return cli_fail(cmd, 2, "%s", e.msg);
    if (tok) {
        char p[4096];
        if (rmu_path_join(p, sizeof p, tok, "tokenizer.json", &e)) return cli_fail(cmd, 2, "%s", e.msg);
        /* fail before writing gigabytes of weights */
        if (!rmu_file_exists(p)) return cli_fail(cmd, 2, "--tokenizer %s: no tokenizer.json there", tok);
    }
    if (shards > rmu_init_n_tensors(&c))
        return cli_fail(cmd, 2, "--shards %ld: the model has only %d tensors", shards, rmu_init_n_tensors(&c));
    double t0 = omp_get_wtime();
    rmu_init_opts o = {.dtype = dt, .seed = (uint64_t)seed, .shards = (int)shards, .jitter_norms = jitter,
                       .tokenizer_dir = tok, .synthetic_tokenizer = !tok};
    if (rmu_init_model_opts(dir, &c, &o, &e)) return cli_fail(cmd, 1, "%s", e.msg);
    long long np = rmu_cfg_n_params(&c);
    char win[16] = "none";
    if (c.sliding_window) snprintf(win, sizeof win, "%d", c.sliding_window);
    fprintf(stderr,
            "rmu init: wrote %s: %s (%s) %d layers, hidden %d, intermediate %d, heads %d/%d kv, vocab %d, "
            "window %s, %s, %.2fM params, %s, %ld file%s, seed %ld, %s tokenizer (%.1f s)\n",
            dir, shape, c.model_type, c.n_layers, c.hidden_size, c.intermediate_size, c.n_heads, c.n_kv_heads,
            c.vocab_size, win, c.tie_word_embeddings ? "tied" : "untied", np / 1e6,
            rmu_dtype_name(dt), shards, shards == 1 ? "" : "s", seed, tok ? "copied" : "synthetic",
            omp_get_wtime() - t0);
    return 0;
}
