/* check.h - consistency checks between the parts of a loaded model that every command
 * needs before it runs. Prefix rmu_check_. */
#ifndef RMU_CHECK_H
#define RMU_CHECK_H

#include "core/err.h"

typedef struct rmu_model rmu_model;
typedef struct rmu_tokenizer rmu_tokenizer;

/* The tokenizer's ids must fit the model's embedding: its piece count may not exceed
 * config.json's vocab_size (fewer is fine: padded vocabularies are common). The error names
 * the model folder and both numbers. */
int rmu_check_tokenizer(const rmu_model *m, const rmu_tokenizer *t, rmu_err *e);

#endif
