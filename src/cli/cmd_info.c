/* cmd_info.c - `rmu info` (what a checkpoint is) and `rmu logits` (raw logits or hidden
 * states for given ids: what the numeric tests compare against the PyTorch oracle). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/fileio.h"
#include "model/model.h"

int rmu_cmd_info(int argc, char **argv) {
    const char *cmd = "info", *dir = NULL, *v;
    long ctx = 4096;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) {
            if (!(dir = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(argv[i], "--ctx")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, "--ctx", v, 1, 1 << 20, &ctx)) return 2;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            puts("usage: rmu info -m DIR [--ctx N]");
            return 0;
        } else {
            return cli_fail(cmd, 2, "unknown option '%s'", argv[i]);
        }
    }
    if (!dir) return cli_fail(cmd, 2, "-m DIR is required");
    rmu_model m;
    rmu_err e;
    if (rmu_model_load(&m, dir, &e)) return cli_fail(cmd, 1, "%s", e.msg);
    const rmu_config *c = &m.cfg;
    long long np = rmu_cfg_n_params(c);
    size_t wb = rmu_model_weight_bytes(&m);
    /* dtype histogram by parameter count */
    long long by[4] = {0};
    for (int i = 0; i < m.st.ntensors; i++) {
        long long k = 1;
        for (int d = 0; d < m.st.tensors[i].ndim; d++) k *= m.st.tensors[i].shape[d];
        by[m.st.tensors[i].dtype] += k;
    }
    double kv = 2.0 * c->n_layers * ctx * c->n_kv_heads * c->head_dim * sizeof(float);
    printf("model        %s\n", dir);
    printf("architecture %s (%s)\n", c->model_type, !strcmp(c->model_type, "mistral") ? "MistralForCausalLM" : "LlamaForCausalLM");
    printf("layers       %d\nhidden       %d\nintermediate %d\nheads        %d (kv %d, head_dim %d)\n", c->n_layers,
           c->hidden_size, c->intermediate_size, c->n_heads, c->n_kv_heads, c->head_dim);
    printf("vocab        %d\nrope_theta   %g\nrms_norm_eps %g\n", c->vocab_size, c->rope_theta, c->rms_norm_eps);
    if (c->sliding_window) printf("sliding      %d\n", c->sliding_window);
    else printf("sliding      none\n");
    printf("lm_head      %s\n", c->tie_word_embeddings ? "tied to embed_tokens" : "separate");
    printf("parameters   %lld (%.3f B)\n", np, np / 1e9);
    printf("dtypes      ");
    for (int t = 1; t < 4; t++)
        if (by[t]) printf(" %s:%lld", rmu_dtype_name((rmu_dtype)t), by[t]);
    printf("\nfiles        %d safetensors file%s%s\n", m.st.nfiles, m.st.nfiles == 1 ? "" : "s",
           m.st.sharded ? " (sharded index)" : "");
    printf("memory       weights %.2f GiB (mmapped) + KV cache %.2f GiB at ctx %ld (fp32) = %.2f GiB\n",
           wb / 1073741824.0, kv / 1073741824.0, ctx, (wb + kv) / 1073741824.0);
    rmu_model_free(&m);
    return 0;
}

int rmu_cmd_logits(int argc, char **argv) {
    const char *cmd = "logits", *dir = NULL, *ids_s = NULL, *out = NULL, *hout = NULL, *mode = "prefill", *v;
    const char *prec_s = NULL;
    long layer = -1, batch = 512;
    rmu_prec prec;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-m")) {
            if (!(dir = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--ids")) {
            if (!(ids_s = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--out")) {
            if (!(out = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--mode")) {
            if (!(mode = cli_value(cmd, argc, argv, &i))) return 2;
            if (strcmp(mode, "prefill") && strcmp(mode, "decode"))
                return cli_fail(cmd, 2, "--mode: expected prefill or decode, got '%s'", mode);
        } else if (!strcmp(f, "--batch")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 1, 1 << 16, &batch)) return 2;
        } else if (!strcmp(f, "--hidden-layer")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 0, 1 << 16, &layer)) return 2;
        } else if (!strcmp(f, "--hidden-out")) {
            if (!(hout = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--precision")) {
            if (!(prec_s = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            puts("usage: rmu logits -m DIR --ids \"1 2 3\" --out FILE.f32 [--mode prefill|decode] [--batch N]\n"
                 "                  [--hidden-layer L --hidden-out FILE.f32] [--precision auto|bf16|fp32]\n"
                 "writes float32 logits [n, vocab] (and the residual stream after layer L [n, hidden])");
            return 0;
        } else {
            return cli_fail(cmd, 2, "unknown option '%s'", f);
        }
    }
    if (!dir || !ids_s || !out) return cli_fail(cmd, 2, "-m DIR, --ids and --out are required");
    if (cli_precision(cmd, prec_s, &prec)) return 2;
    if ((layer >= 0) != (hout != NULL)) return cli_fail(cmd, 2, "--hidden-layer and --hidden-out go together");
    int *ids, n, rc = 1;
    if (cli_parse_ids(cmd, "--ids", ids_s, &ids, &n)) return 2;
    if (n == 0) { free(ids); return cli_fail(cmd, 2, "--ids: no ids"); }
    rmu_model m;
    rmu_state s;
    rmu_err e;
    if (rmu_model_load(&m, dir, &e)) { free(ids); return cli_fail(cmd, 1, "%s", e.msg); }
    rmu_model_set_precision(&m, prec);
    size_t V = m.cfg.vocab_size, C = m.cfg.hidden_size;
    float *lg = malloc(sizeof(float) * V * n), *hid = NULL;
    if (!lg || rmu_state_init(&s, &m, n, (int)batch, &e)) {
        rc = cli_fail(cmd, 1, "%s", lg ? e.msg : "out of memory");
        free(lg), free(ids), rmu_model_free(&m);
        return rc;
    }
    if (!strcmp(mode, "prefill")) {
        if (rmu_model_forward(&m, &s, ids, n, lg, 1, &e)) goto fail;
    } else {
        for (int i = 0; i < n; i++)
            if (rmu_model_forward(&m, &s, ids + i, 1, lg + i * V, 0, &e)) goto fail;
    }
    if (rmu_file_write_atomic(out, lg, sizeof(float) * V * n, &e)) goto fail;
    if (hout) {
        if (!(hid = malloc(sizeof(float) * C * n))) { strcpy(e.msg, "out of memory"); goto fail; }
        if (rmu_model_hidden(&m, &s, ids, n, (int)layer, hid, &e)) goto fail;
        if (rmu_file_write_atomic(hout, hid, sizeof(float) * C * n, &e)) goto fail;
    }
    rc = 0;
    goto done;
fail:
    rc = cli_fail(cmd, 1, "%s", e.msg);
done:
    free(hid), free(lg), free(ids);
    rmu_state_free(&s);
    rmu_model_free(&m);
    return rc;
}
