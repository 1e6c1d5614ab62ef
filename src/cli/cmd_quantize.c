/* cmd_quantize.c - `rmu quantize --fp8`: FP8 E4M3 weight-only quantization into a folder
 * vLLM serves as is (compressed-tensors), which every rmu command also loads. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "core/util.h"
#include "fieldmap.h"
#include "model/quantize.h"

static const char USAGE[] =
    "usage: rmu quantize -m DIR --out DIR --fp8 [--scheme channel|tensor] [--overwrite] [--quiet]\n"
    "writes DIR's model with the decoder layers' linear weights as FP8 E4M3 (F8_E4M3) and F32\n"
    "scales, amax / 448 per output channel (default) or per tensor, in compressed-tensors'\n"
    "layout (quant_method \"compressed-tensors\", format \"float-quantized\": vLLM loads it as\n"
    "weight-only FP8). Embeddings, norms and lm_head keep their dtype. An existing OUT is\n"
    "refused unless --overwrite (then replaced as a whole, if it is a model folder).";

static const cli_field FIELDS[] = {
    {"model_dir", "-m"}, {"out_dir", "--out"}, {"scheme", "--scheme"}, {"overwrite", "--overwrite"}, {NULL, NULL}};

int rmu_cmd_quantize(int argc, char **argv) {
    const char *cmd = "quantize", *v;
    rmu_quant_opts o = {.scheme = RMU_QUANT_FP8_CHANNEL};
    int fp8 = 0, quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(o.model_dir = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--out") || !strcmp(a, "-o")) {
            if (!(o.out_dir = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--fp8")) {
            fp8 = 1;
        } else if (!strcmp(a, "--scheme")) {
            if (!(v = cli_value(cmd, argc, argv, &i))) return 2;
            if (!strcmp(v, "channel")) o.scheme = RMU_QUANT_FP8_CHANNEL;
            else if (!strcmp(v, "tensor")) o.scheme = RMU_QUANT_FP8_TENSOR;
            else return cli_fail(cmd, 2, "--scheme: expected channel or tensor, got '%s'", v);
        } else if (!strcmp(a, "--overwrite")) {
            o.overwrite = 1;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            quiet = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            puts(USAGE);
            return 0;
        } else {
            return cli_fail(cmd, 2, "unknown option '%s'", a);
        }
    }
    if (!o.model_dir) return cli_fail(cmd, 2, "-m DIR is required");
    if (!o.out_dir) return cli_fail(cmd, 2, "--out DIR is required");
    if (!fp8) return cli_fail(cmd, 2, "--fp8 is required (the only format rmu quantizes to)");
    rmu_quant_stats st;
    rmu_err e;
    double t0 = rmu_now_s();
    if (rmu_quant_fp8(&o, &st, &e)) {
        cli_field_flags(&e, FIELDS);
        return cli_fail(cmd, 1, "%s", e.msg);
    }
    if (!quiet)
        fprintf(stderr, "rmu quantize: %d weights (%.3f B parameters) to FP8 E4M3 with %s scales: %.2f GiB -> %.2f GiB "
                "in %.1f s; wrote %s\n", st.n_tensors, st.n_params / 1e9,
                o.scheme == RMU_QUANT_FP8_TENSOR ? "per-tensor" : "per-channel", st.bytes_in / 1073741824.0,
                st.bytes_out / 1073741824.0, rmu_now_s() - t0, o.out_dir);
    return 0;
}
