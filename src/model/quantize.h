/* quantize.h - FP8 weight quantization of a model folder (`rmu quantize --fp8`). Prefix
 * rmu_quant_.
 *
 * The output is the input folder (through src/io/hfdir.h: staged, renamed into place) with
 * the linear weights of the decoder layers (q/k/v/o, gate/up/down) as F8_E4M3 and, right
 * after each, NAME.weight_scale in F32: [out, 1] per output channel or [1] per tensor
 * (compressed-tensors' layouts), scale = amax / 448 (amax of the row or of the tensor; an
 * all-zero row gets FLT_EPSILON, as compressed-tensors does, so nothing divides by zero).
 * Codes are round-to-nearest-even of w / scale, saturated at +-448: never NaN. Embeddings,
 * norms and lm_head keep their dtype. config.json gets the quantization_config vLLM reads
 * as weight-only FP8 (compressed-tensors "float-quantized", W8A16):
 *   {"config_groups": {"group_0": {"format": "float-quantized", "input_activations": null,
 *     "output_activations": null, "targets": ["Linear"], "weights": {"actorder": null,
 *     "block_structure": null, "dynamic": false, "group_size": null, "num_bits": 8,
 *     "observer": "minmax", "observer_kwargs": {}, "strategy": "channel"|"tensor",
 *     "symmetric": true, "type": "float"}}}, "format": "float-quantized",
 *    "ignore": ["lm_head"], "kv_cache_scheme": null, "quant_method": "compressed-tensors",
 *    "quantization_status": "compressed"} */
#ifndef RMU_QUANTIZE_H
#define RMU_QUANTIZE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "model/config.h"

#define RMU_QUANT_FP8_MAX 448.0f /* largest finite E4M3 value */

typedef struct rmu_quant_opts {
    const char *model_dir; /* input: F32/F16/BF16 weights, no quantization_config */
    const char *out_dir;   /* must not exist (or be empty) unless overwrite */
    rmu_quant scheme;      /* RMU_QUANT_FP8_CHANNEL (also for NONE) or RMU_QUANT_FP8_TENSOR */
    int overwrite;         /* replace an existing model folder out_dir as a whole */
} rmu_quant_opts;

typedef struct rmu_quant_stats {
    int n_tensors;        /* weights quantized */
    long long n_params;   /* their elements */
    size_t bytes_in, bytes_out; /* weight bytes of the whole model before and after */
} rmu_quant_stats;

/* Quantizes o->model_dir into o->out_dir (see above). Errors name the option field
 * (model_dir, out_dir) or the tensor (a non-finite weight: its [row, col]); nothing is
 * written then. st may be NULL. */
int rmu_quant_fp8(const rmu_quant_opts *o, rmu_quant_stats *st, rmu_err *e);

/* scale for a row (or tensor) of largest magnitude amax: amax / 448, FLT_EPSILON for 0. */
float rmu_quant_fp8_scale(float amax);
/* dst[i] = E4M3 code of src[i] / scale (nearest even, saturating). */
void rmu_quant_fp8_encode(uint8_t *dst, const float *src, size_t n, float scale);
/* The quantization_config object above for scheme (a new reference; NULL when out of memory). */
json_t *rmu_quant_fp8_config(rmu_quant scheme);

#endif
