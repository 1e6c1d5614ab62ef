/* generate.h - the generation loop shared by generate, chat, mtbench and serve:
 * prefill the prompt, then sample token by token, stream text, stop at EOS, a stop
 * string or the token limit. Prefix rmu_gen_. */
#ifndef RMU_GENERATE_H
#define RMU_GENERATE_H

#include "core/err.h"
#include "model/model.h"
#include "model/sampler.h"
#include "tokenizer/tokenizer.h"

/* Called with each piece of newly completed text (may be ""), return non-zero to stop. */
typedef int (*rmu_gen_cb)(void *ud, const char *text);

typedef struct rmu_gen_opts {
    int max_new;              /* max new tokens */
    const char *const *stops; /* stop strings (not included in the output) */
    int nstops;
    rmu_gen_cb cb;            /* may be NULL */
    void *ud;
    int continuation;         /* 1: text continues printed text (keep its first space) */
} rmu_gen_opts;

typedef struct rmu_gen_result {
    char *text;      /* the generated text (malloc'd), stop string removed */
    int *ids;        /* generated ids (malloc'd) */
    int n;           /* number of generated ids */
    int stop_reason; /* 0 = length, 1 = eos, 2 = stop string, 3 = callback */
} rmu_gen_result;

/* Length of the longest suffix of text[0..n) that is a proper prefix of some stop string:
 * that much text is held back from a stream until it is known not to start a stop. */
size_t rmu_gen_held_back(const char *text, size_t n, const char *const *stops, int nstops);

/* Continue the sequence in s (s->pos tokens already cached) with prompt ids, then generate.
 * A prompt that does not fit s->ctx is an error before any work; generation stops early
 * (stop_reason 0) when the context fills up. EOS is not fed back into the cache. */
int rmu_gen_run(const rmu_model *m, const rmu_tokenizer *t, rmu_state *s, rmu_sampler *smp, const int *prompt,
                int n_prompt, const rmu_gen_opts *o, rmu_gen_result *r, rmu_err *e);
void rmu_gen_result_free(rmu_gen_result *r);

#endif
