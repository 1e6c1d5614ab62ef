/* rmu.h - the librmu API: one include for programs linking librmu.
 *
 * The library is organised as modules, each with its own header and prefix (see
 * ARCHITECTURE.md); this umbrella header pulls in the public ones. Installed as
 * PREFIX/include/rmu.h with the module headers under PREFIX/include/rmu/ (pkg-config
 * --cflags rmu adds both). Every function reports failure through an rmu_err and a -1 or
 * NULL return; none prints or exits. */
#ifndef RMU_H
#define RMU_H

#include "core/version.h" /* RMU_VERSION */

#include "core/err.h"          /* rmu_err */
#include "core/dtype.h"        /* rmu_dtype, bf16/f16 conversion */
#include "core/fileio.h"       /* atomic writes, hashing */
#include "io/safetensors.h"    /* rmu_st_: read/write safetensors (sharded) */
#include "model/config.h"      /* rmu_cfg_: config.json */
#include "model/model.h"       /* rmu_model_, rmu_state_: load, forward with KV cache */
#include "model/sampler.h"     /* rmu_sampler_ */
#include "model/generate.h"    /* rmu_gen_: the generation loop */
#include "model/quantize.h"    /* rmu_quant_: FP8 weight quantization (compressed-tensors) */
#include "kernels/gemm.h"      /* rmu_gemm */
#include "tokenizer/tokenizer.h" /* rmu_tok_: tokenizer.json */
#include "tokenizer/chat.h"    /* rmu_chat_: chat templates */
#include "tokenizer/jinja.h"   /* rmu_jinja_: the template engine under chat */
#include "tokenizer/bpe_train.h" /* rmu_bpe_: BPE trainer, synthetic tokenizers */

#endif
