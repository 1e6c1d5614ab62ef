/* config.c - Hugging Face config.json for MistralForCausalLM / LlamaForCausalLM: parsing
 * with HF's defaults, validation, writing, and the named shapes of `rmu init`. */
#include "model/config.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/json.h"

/* Dimension sizes beyond this are certainly a corrupt file, and keeping them small
 * means products like hidden * intermediate never overflow 64 bits. */
#define MAX_DIM (1 << 24)

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* Integer key. Absent or null gives def when optional, else an error. Integral reals
 * (e.g. 4096.0, written by some converters) are accepted. */
static int get_int(json_t *root, const char *key, int optional, int def, long lo, long hi, int *out,
                   const char *path, rmu_err *e) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (!optional) return rmu_errf(e, "%s: required key \"%s\" is %s", path, key, v ? "null" : "missing");
        *out = def;
        return 0;
    }
    double d;
    if (json_is_integer(v)) d = (double)json_integer_value(v);
    else if (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v)) d = json_real_value(v);
    else return rmu_errf(e, "%s: \"%s\" must be an integer, got %s", path, key, json_kind(v));
    if (d < lo || d > hi) return rmu_errf(e, "%s: \"%s\" = %.0f is out of range [%ld, %ld]", path, key, d, lo, hi);
    *out = (int)d;
    return 0;
}

static int get_num(json_t *root, const char *key, double def, double lo, double hi, float *out, const char *path,
                   rmu_err *e) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = (float)def;
        return 0;
    }
    if (!json_is_number(v)) return rmu_errf(e, "%s: \"%s\" must be a number, got %s", path, key, json_kind(v));
    double d = json_number_value(v);
    if (!(d > lo && d <= hi)) return rmu_errf(e, "%s: \"%s\" = %g is out of range (%g, %g]", path, key, d, lo, hi);
    *out = (float)d;
    return 0;
}

static int get_bool(json_t *root, const char *key, int def, int *out, const char *path, rmu_err *e) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v)) return rmu_errf(e, "%s: \"%s\" must be true or false, got %s", path, key, json_kind(v));
    *out = json_is_true(v);
    return 0;
}

/* Token id: integer, null/absent (-1), or for eos a list whose first entry is used
 * (generation stops on any of them in HF; we keep one). */
static int get_id(json_t *root, const char *key, int allow_list, int *out, const char *path, rmu_err *e) {
    json_t *v = json_object_get(root, key);
    if (allow_list && json_is_array(v)) {
        if (json_array_size(v) == 0) {
            *out = -1;
            return 0;
        }
        v = json_array_get(v, 0);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT_MAX)
            return rmu_errf(e, "%s: \"%s\"[0] must be a non-negative integer", path, key);
        *out = (int)json_integer_value(v);
        return 0;
    }
    if (!v || json_is_null(v)) {
        *out = -1;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT_MAX)
        return rmu_errf(e, "%s: \"%s\" must be a non-negative integer%s or null, got %s", path, key,
                        allow_list ? " (or a list of them)" : "", json_kind(v));
    *out = (int)json_integer_value(v);
    return 0;
}

/* Shared by parsing and by `rmu init` overrides: the invariants the model code relies on. */
int rmu_cfg_validate(const rmu_config *c, const char *path, rmu_err *e) {
    if (strcmp(c->model_type, "mistral") && strcmp(c->model_type, "llama"))
        return rmu_errf(e, "%s: model_type '%s' is not supported (mistral, llama)", path, c->model_type);
    struct {
        const char *key;
        int v;
    } pos[] = {{"hidden_size", c->hidden_size},
               {"intermediate_size", c->intermediate_size},
               {"num_hidden_layers", c->n_layers},
               {"num_attention_heads", c->n_heads},
               {"num_key_value_heads", c->n_kv_heads},
               {"head_dim", c->head_dim},
               {"vocab_size", c->vocab_size},
               {"max_position_embeddings", c->max_position_embeddings}};
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v <= 0 || pos[i].v > MAX_DIM)
            return rmu_errf(e, "%s: \"%s\" = %d must be in [1, %d]", path, pos[i].key, pos[i].v, MAX_DIM);
    if (c->n_heads % c->n_kv_heads)
        return rmu_errf(e, "%s: \"num_attention_heads\" = %d is not a multiple of \"num_key_value_heads\" = %d", path,
                        c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2)
        return rmu_errf(e, "%s: \"head_dim\" = %d must be even (rotary embedding rotates pairs)", path, c->head_dim);
    if (c->sliding_window < 0) return rmu_errf(e, "%s: \"sliding_window\" = %d is negative", path, c->sliding_window);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta))
        return rmu_errf(e, "%s: \"rope_theta\" = %g must be positive", path, c->rope_theta);
    if (!(c->rms_norm_eps > 0) || !(c->rms_norm_eps < 1))
        return rmu_errf(e, "%s: \"rms_norm_eps\" = %g must be in (0, 1)", path, c->rms_norm_eps);
    struct {
        const char *key;
        int v;
    } ids[] = {{"bos_token_id", c->bos_id}, {"eos_token_id", c->eos_id}, {"pad_token_id", c->pad_id}};
    for (int i = 0; i < 3; i++)
        if (ids[i].v >= c->vocab_size)
            return rmu_errf(e, "%s: \"%s\" = %d is not below vocab_size %d", path, ids[i].key, ids[i].v,
                            c->vocab_size);
    return 0;
}

/* compressed-tensors: one config group quantizing Linear weights to 8-bit floats. */
static int parse_compressed_tensors(rmu_config *c, json_t *q, const char *path, rmu_err *e) {
    json_t *fmt = json_object_get(q, "format"), *groups = json_object_get(q, "config_groups");
    const char *f = json_is_string(fmt) ? json_string_value(fmt) : "";
    if (strcmp(f, "float-quantized") && strcmp(f, "naive-quantized"))
        return rmu_errf(e, "%s: quantization_config: compressed-tensors format '%s' is not supported (only FP8 "
                        "\"float-quantized\" weights)", path, f);
    if (!json_is_object(groups) || json_object_size(groups) != 1)
        return rmu_errf(e, "%s: quantization_config: expected exactly one entry in config_groups", path);
    const char *gname;
    json_t *g;
    json_object_foreach(groups, gname, g) {
        json_t *w = json_object_get(g, "weights"), *in = json_object_get(g, "input_activations");
        json_t *nb = json_object_get(w, "num_bits"), *ty = json_object_get(w, "type"), *st = json_object_get(w, "strategy");
        json_t *dyn = json_object_get(w, "dynamic"), *sym = json_object_get(w, "symmetric");
        const char *strategy = json_is_string(st) ? json_string_value(st) : "";
        if (!json_is_object(w) || json_integer_value(nb) != 8 || !json_is_string(ty) || strcmp(json_string_value(ty), "float"))
            return rmu_errf(e, "%s: quantization_config: group %s: only 8-bit float weights (FP8 E4M3) are supported",
                            path, gname);
        if (json_is_true(dyn) || json_is_false(sym))
            return rmu_errf(e, "%s: quantization_config: group %s: weights must be static and symmetric", path, gname);
        if (!strcmp(strategy, "channel")) c->quant = RMU_QUANT_FP8_CHANNEL;
        else if (!strcmp(strategy, "tensor")) c->quant = RMU_QUANT_FP8_TENSOR;
        else
            return rmu_errf(e, "%s: quantization_config: group %s: weight strategy '%s' is not supported (channel or "
                            "tensor; block-wise FP8 is not)", path, gname, strategy);
        if (in && !json_is_null(in) && !json_is_true(json_object_get(in, "dynamic")))
            snprintf(c->quant_note, sizeof c->quant_note,
                     "static FP8 input scales are ignored: activations stay in bf16/fp32 (weight-only)");
    }
    return 0;
}

static int parse_quantization(rmu_config *c, json_t *root, const char *path, rmu_err *e) {
    json_t *q = json_object_get(root, "quantization_config");
    if (!q || json_is_null(q)) return 0;
    json_t *m = json_object_get(q, "quant_method");
    if (!json_is_object(q) || !json_is_string(m))
        return rmu_errf(e, "%s: quantization_config must be an object with a string quant_method", path);
    snprintf(c->quant_method, sizeof c->quant_method, "%s", json_string_value(m));
    if (!strcmp(c->quant_method, "compressed-tensors")) return parse_compressed_tensors(c, q, path, e);
    if (!strcmp(c->quant_method, "fp8")) { /* vLLM / AutoFP8: per-tensor weight_scale */
        json_t *blk = json_object_get(q, "weight_block_size");
        if (blk && !json_is_null(blk))
            return rmu_errf(e, "%s: quantization_config: block-wise FP8 (weight_block_size) is not supported", path);
        c->quant = RMU_QUANT_FP8_TENSOR;
        json_t *act = json_object_get(q, "activation_scheme");
        if (json_is_string(act) && !strcmp(json_string_value(act), "static"))
            snprintf(c->quant_note, sizeof c->quant_note,
                     "input_scale tensors are ignored: activations stay in bf16/fp32 (weight-only)");
        return 0;
    }
    return rmu_errf(e, "%s: quantization_config: quant_method '%s' is not supported (rmu runs F32/F16/BF16 weights "
                    "and FP8 E4M3 weights with channel or tensor scales)", path, c->quant_method);
}

int rmu_cfg_parse(rmu_config *c, const char *json_text, const char *path, rmu_err *e) {
    memset(c, 0, sizeof *c);
    if (!path) path = "config.json";
    json_error_t je;
    json_t *root = json_loads(json_text, 0, &je);
    if (!root) return rmu_errf(e, "%s: invalid JSON: %s (line %d)", path, je.text, je.line);
    int rc = -1;
    if (!json_is_object(root)) {
        rmu_errf(e, "%s: not a JSON object", path);
        goto out;
    }
    json_t *v = json_object_get(root, "model_type");
    if (!json_is_string(v)) {
        rmu_errf(e, "%s: \"model_type\" is %s (expected \"mistral\" or \"llama\")", path, v ? json_kind(v) : "missing");
        goto out;
    }
    const char *mt = json_string_value(v);
    if (strcmp(mt, "mistral") && strcmp(mt, "llama")) {
        rmu_errf(e, "%s: \"model_type\" '%s' is not supported (mistral, llama)", path, mt);
        goto out;
    }
    snprintf(c->model_type, sizeof c->model_type, "%s", mt);
    int mistral = !strcmp(mt, "mistral");

    v = json_object_get(root, "hidden_act");
    if (v && !json_is_null(v) && (!json_is_string(v) || strcmp(json_string_value(v), "silu"))) {
        rmu_errf(e, "%s: \"hidden_act\" %s%s%s is not supported (only \"silu\")", path, json_is_string(v) ? "'" : "",
                 json_is_string(v) ? json_string_value(v) : json_kind(v), json_is_string(v) ? "'" : "");
        goto out;
    }
    v = json_object_get(root, "rope_scaling");
    if (v && !json_is_null(v)) {
        rmu_errf(e, "%s: \"rope_scaling\" is set; scaled rotary embeddings are unsupported", path);
        goto out;
    }
    static const char *const biases[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++) {
        v = json_object_get(root, biases[i]);
        if (json_is_true(v)) {
            rmu_errf(e, "%s: \"%s\" is true; biased projections are unsupported", path, biases[i]);
            goto out;
        }
    }

    if (get_int(root, "hidden_size", 0, 0, 1, MAX_DIM, &c->hidden_size, path, e) ||
        get_int(root, "intermediate_size", 0, 0, 1, MAX_DIM, &c->intermediate_size, path, e) ||
        get_int(root, "num_hidden_layers", 0, 0, 1, MAX_DIM, &c->n_layers, path, e) ||
        get_int(root, "num_attention_heads", 0, 0, 1, MAX_DIM, &c->n_heads, path, e) ||
        get_int(root, "num_key_value_heads", 1, c->n_heads, 1, MAX_DIM, &c->n_kv_heads, path, e) ||
        get_int(root, "vocab_size", 0, 0, 1, MAX_DIM, &c->vocab_size, path, e) ||
        /* HF defaults: MistralConfig 4096 * 32, LlamaConfig 2048 */
        get_int(root, "max_position_embeddings", 1, mistral ? 4096 * 32 : 2048, 1, INT_MAX,
                &c->max_position_embeddings, path, e))
        goto out;
    json_t *hd = json_object_get(root, "head_dim");
    if (!hd || json_is_null(hd)) {
        if (c->hidden_size % c->n_heads) {
            rmu_errf(e, "%s: \"hidden_size\" %d is not divisible by \"num_attention_heads\" %d (and no head_dim)", path,
                     c->hidden_size, c->n_heads);
            goto out;
        }
        c->head_dim = c->hidden_size / c->n_heads;
    } else if (get_int(root, "head_dim", 0, 0, 1, MAX_DIM, &c->head_dim, path, e)) {
        goto out;
    }
    if (get_num(root, "rope_theta", 10000.0, 0, 1e30, &c->rope_theta, path, e) ||
        get_num(root, "rms_norm_eps", 1e-6, 0, 0.5, &c->rms_norm_eps, path, e) ||
        get_bool(root, "tie_word_embeddings", 0, &c->tie_word_embeddings, path, e))
        goto out;
    /* LlamaConfig has no sliding window: HF ignores the key there, so do we */
    if (mistral && get_int(root, "sliding_window", 1, 0, 0, INT_MAX, &c->sliding_window, path, e)) goto out;
    if (get_id(root, "bos_token_id", 0, &c->bos_id, path, e) || get_id(root, "eos_token_id", 1, &c->eos_id, path, e) ||
        get_id(root, "pad_token_id", 0, &c->pad_id, path, e))
        goto out;
    /* newer transformers write "dtype" instead of "torch_dtype" */
    v = json_object_get(root, "torch_dtype");
    const char *dkey = "torch_dtype";
    if (!v || json_is_null(v)) {
        v = json_object_get(root, "dtype");
        dkey = "dtype";
    }
    c->torch_dtype = RMU_DT_INVALID;
    if (v && !json_is_null(v)) {
        if (!json_is_string(v)) {
            rmu_errf(e, "%s: \"%s\" must be a string, got %s", path, dkey, json_kind(v));
            goto out;
        }
        /* "auto" and exotic types only describe how the weights were saved; the tensors'
         * own dtypes are what we read, so an unknown name is not fatal */
        c->torch_dtype = rmu_dtype_parse(json_string_value(v));
    }
    if (parse_quantization(c, root, path, e) || rmu_cfg_validate(c, path, e)) goto out;
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int rmu_cfg_load(rmu_config *c, const char *dir, rmu_err *e) {
    char path[4096];
    if (rmu_path_join(path, sizeof path, dir, "config.json", e)) return -1;
    char *txt = rmu_file_read_all(path, NULL, e);
    if (!txt) return -1;
    int rc = rmu_cfg_parse(c, txt, path, e);
    free(txt);
    return rc;
}

/* The shortest decimal that reads back as the same float, so 1e-5f is written as
 * 1e-05 and not 9.99999974738e-06. */
static json_t *float_json(float f) {
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        if (strtof(buf, NULL) == f) break;
    }
    return json_real(strtod(buf, NULL));
}

int rmu_cfg_save(const rmu_config *c, const char *dir, rmu_err *e) {
    char path[4096];
    if (rmu_path_join(path, sizeof path, dir, "config.json", e)) return -1;
    if (rmu_cfg_validate(c, path, e)) return -1;
    int mistral = !strcmp(c->model_type, "mistral");
    json_t *r = json_object();
    if (!r) return rmu_errf(e, "%s: out of memory", path);
    json_object_set_new(r, "architectures", json_pack("[s]", mistral ? "MistralForCausalLM" : "LlamaForCausalLM"));
    json_object_set_new(r, "model_type", json_string(c->model_type));
    json_object_set_new(r, "hidden_act", json_string("silu"));
    json_object_set_new(r, "hidden_size", json_integer(c->hidden_size));
    json_object_set_new(r, "intermediate_size", json_integer(c->intermediate_size));
    json_object_set_new(r, "num_hidden_layers", json_integer(c->n_layers));
    json_object_set_new(r, "num_attention_heads", json_integer(c->n_heads));
    json_object_set_new(r, "num_key_value_heads", json_integer(c->n_kv_heads));
    json_object_set_new(r, "head_dim", json_integer(c->head_dim));
    json_object_set_new(r, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(r, "max_position_embeddings", json_integer(c->max_position_embeddings));
    json_object_set_new(r, "rope_theta", float_json(c->rope_theta));
    json_object_set_new(r, "rms_norm_eps", float_json(c->rms_norm_eps));
    json_object_set_new(r, "initializer_range", json_real(0.02));
    json_object_set_new(r, "tie_word_embeddings", json_boolean(c->tie_word_embeddings));
    json_object_set_new(r, "use_cache", json_true());
    if (mistral) {
        json_object_set_new(r, "sliding_window", c->sliding_window ? json_integer(c->sliding_window) : json_null());
    } else {
        json_object_set_new(r, "rope_scaling", json_null());
        json_object_set_new(r, "attention_bias", json_false());
        json_object_set_new(r, "mlp_bias", json_false());
    }
    json_object_set_new(r, "bos_token_id", c->bos_id >= 0 ? json_integer(c->bos_id) : json_null());
    json_object_set_new(r, "eos_token_id", c->eos_id >= 0 ? json_integer(c->eos_id) : json_null());
    if (c->pad_id >= 0) json_object_set_new(r, "pad_token_id", json_integer(c->pad_id));
    if (rmu_dtype_torch_name(c->torch_dtype))
        json_object_set_new(r, "torch_dtype", json_string(rmu_dtype_torch_name(c->torch_dtype)));
    /* sorted keys like transformers; precision 9 prints the shortest form of float_json values */
    int rc = rmu_json_write_file(path, r, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(9), e);
    json_decref(r);
    return rc;
}

typedef struct {
    const char *name, *type;
    int C, F, L, H, KV, V, window, max_pos, tied;
    rmu_dtype dt;
} preset;

static const preset PRESETS[] = {
    /* values of mistralai/Mistral-7B-v0.1 config.json */
    {"mistral-7b", "mistral", 4096, 14336, 32, 32, 8, 32000, 4096, 32768, 0, RMU_DT_BF16},
    {"tiny", "mistral", 64, 176, 4, 4, 2, 512, 16, 512, 0, RMU_DT_F32},
    {"small", "mistral", 256, 688, 8, 8, 4, 2048, 256, 2048, 0, RMU_DT_F32},
    /* karpathy's stories260K converted to HF Llama */
    {"stories260k", "llama", 64, 172, 5, 8, 4, 512, 0, 512, 1, RMU_DT_F32},
};

int rmu_cfg_preset(rmu_config *c, const char *name, rmu_err *e) {
    memset(c, 0, sizeof *c);
    for (size_t i = 0; name && i < sizeof PRESETS / sizeof PRESETS[0]; i++) {
        const preset *p = &PRESETS[i];
        if (strcmp(name, p->name)) continue;
        snprintf(c->model_type, sizeof c->model_type, "%s", p->type);
        c->hidden_size = p->C;
        c->intermediate_size = p->F;
        c->n_layers = p->L;
        c->n_heads = p->H;
        c->n_kv_heads = p->KV;
        c->head_dim = p->C / p->H;
        c->vocab_size = p->V;
        c->max_position_embeddings = p->max_pos;
        c->rope_theta = 10000.0f;
        c->rms_norm_eps = 1e-5f;
        c->sliding_window = p->window;
        c->tie_word_embeddings = p->tied;
        c->bos_id = 1;
        c->eos_id = 2;
        c->pad_id = -1;
        c->torch_dtype = p->dt;
        return 0;
    }
    return rmu_errf(e, "unknown shape '%s' (mistral-7b, tiny, small, stories260k)", name ? name : "(null)");
}

long long rmu_cfg_n_params(const rmu_config *c) {
    long long C = c->hidden_size, F = c->intermediate_size, V = c->vocab_size;
    long long qd = (long long)c->n_heads * c->head_dim, kvd = (long long)c->n_kv_heads * c->head_dim;
    long long layer = 2 * C                /* input and post-attention norms */
                      + C * qd + qd * C    /* q_proj, o_proj */
                      + 2 * C * kvd        /* k_proj, v_proj */
                      + 3 * C * F;         /* gate, up, down */
    return V * C * (c->tie_word_embeddings ? 1 : 2) + C + (long long)c->n_layers * layer;
}
