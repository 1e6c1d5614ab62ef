/* cmd_info.c - `rmu info`: what a checkpoint is (architecture, parameters, dtypes, memory). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "model/memest.h"
#include "model/model.h"

/* "weights      FP8 E4M3, channel scales (compressed-tensors), lm_head/embeddings BF16":
 * what is FP8 and what is not. */
static void print_fp8(const rmu_model *m) {
    const rmu_config *c = &m->cfg;
    int nf8 = 0, nlin = 7 * c->n_layers;
    rmu_dtype other = RMU_DT_INVALID;
    for (int l = 0; l < c->n_layers; l++) {
        const rmu_layer *L = &m->layers[l];
        const rmu_weight *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int k = 0; k < 7; k++) {
            if (ws[k]->dtype == RMU_DT_F8_E4M3) nf8++;
            else other = ws[k]->dtype;
        }
    }
    printf("\nweights      FP8 E4M3, %s scales (%s)", c->quant == RMU_QUANT_FP8_CHANNEL ? "channel" : "tensor",
           c->quant_method);
    if (nf8 < nlin) printf(", %d of %d linear weights %s", nlin - nf8, nlin, rmu_dtype_name(other));
    const char *hd = rmu_dtype_name(m->lm_head.dtype), *ed = rmu_dtype_name(m->embed.dtype);
    if (c->tie_word_embeddings || m->lm_head.dtype == m->embed.dtype) printf(", lm_head/embeddings %s", ed);
    else printf(", lm_head %s, embeddings %s", hd, ed);
    if (c->quant_note[0]) printf("\nnote         %s", c->quant_note);
}

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
    if (rmu_model_open(&m, dir, &e)) return cli_fail(cmd, 1, "%s", e.msg);
    const rmu_config *c = &m.cfg;
    long long np = rmu_cfg_n_params(c);
    size_t wb = rmu_model_weight_bytes(&m);
    /* dtype histogram by element count (FP8 scales included) */
    long long by[RMU_DT_F8_E4M3 + 1] = {0};
    for (int i = 0; i < m.st.ntensors; i++) {
        long long k = 1;
        for (int d = 0; d < m.st.tensors[i].ndim; d++) k *= m.st.tensors[i].shape[d];
        if ((int)m.st.tensors[i].dtype <= RMU_DT_F8_E4M3) by[m.st.tensors[i].dtype] += k;
    }
    rmu_mem_opts mo = {.ctx = (int)ctx, .batch = ctx < 512 ? (int)ctx : 512}; /* as rmu generate --ctx */
    rmu_mem_need need;
    if (rmu_mem_estimate(dir, &mo, &need, &e)) {
        rmu_model_free(&m);
        return cli_fail(cmd, 1, "%s", e.msg);
    }
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
    for (int t = 1; t <= RMU_DT_F8_E4M3; t++)
        if (by[t]) printf(" %s:%lld", rmu_dtype_name((rmu_dtype)t), by[t]);
    if (c->quant != RMU_QUANT_NONE) print_fp8(&m);
    printf("\nfiles        %d safetensors file%s%s\n", m.st.nfiles, m.st.nfiles == 1 ? "" : "s",
           m.st.sharded ? " (sharded index)" : "");
    printf("memory       weights %.2f GiB (mmapped) + KV cache %.2f GiB at ctx %ld (fp32) + scratch %.2f GiB = %.2f GiB"
           " (available %.2f GiB)\n", wb / 1073741824.0, need.kv / 1073741824.0, ctx, need.scratch / 1073741824.0,
           need.total / 1073741824.0, rmu_mem_available() / 1073741824.0);
    rmu_model_free(&m);
    return 0;
}
