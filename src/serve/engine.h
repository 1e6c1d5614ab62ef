/* engine.h - the inference engine of `rmu serve`: N slots, each a KV cache (rmu_state), a
 * FIFO queue, and one scheduler thread doing continuous batching: every step runs the
 * decode rows of all active sequences plus prefill chunks of new ones as one
 * rmu_model_forward_rows call; requests join and leave between steps. Prefixes cached in a
 * slot (multi-turn chat, the n choices of one prompt) are reused. Greedy output is batch-
 * invariant: a sequence gets the tokens `rmu generate --temp 0` gives, whatever else runs.
 * Prefix rmu_eng_.
 *
 * Threads: HTTP threads submit requests and read their outputs under the request's lock;
 * only the scheduler thread touches slots and sequences. */
#ifndef RMU_ENGINE_H
#define RMU_ENGINE_H

#include <stdint.h>

#include "core/err.h"
#include "core/strbuf.h"
#include "model/model.h"
#include "model/sampler.h"
#include "tokenizer/tokenizer.h"

#define RMU_ENG_MAX_TOP 20 /* top logprobs per token */

enum { /* why a sequence ended */
    RMU_FINISH_NONE = 0,
    RMU_FINISH_LENGTH, /* max tokens, full context, or the request's time limit */
    RMU_FINISH_STOP,   /* EOS or a stop string */
    RMU_FINISH_ABORT,  /* cancelled: client gone, or the server shutting down */
    RMU_FINISH_ERROR,  /* see out.err */
};

typedef struct rmu_eng_opts {
    int parallel;      /* slots */
    int ctx;           /* context of each slot */
    int max_queue;     /* sequences waiting for a slot */
    int prefill_chunk; /* prefill rows per step */
    double timeout_s;  /* per request, from submission; 0 = none */
} rmu_eng_opts;

/* One sequence to generate. The engine copies what it keeps. */
typedef struct rmu_eng_params {
    const int *prompt;
    int n_prompt;
    int max_new;              /* tokens to generate, >= 0 */
    rmu_sampler_cfg smp;
    float presence, frequency; /* OpenAI penalties, on the counts of generated tokens */
    const char *const *stops;
    int nstops;
    int logprobs;             /* record each generated token's logprob ... */
    int top;                  /* ... and its top alternatives (0..RMU_ENG_MAX_TOP) */
    int prompt_logprobs;      /* also every prompt token's (echo): no prefix reuse */
    int continuation;         /* the text continues the prompt: keep its first space */
    int ignore_eos;           /* EOS is an ordinary token: run to max_new (benchmarks, tests) */
    int same_prompt_as;       /* index of an earlier sequence of the request with the same
                                 prompt (its prefill is shared), or -1 */
} rmu_eng_params;

/* A token's logprob record: lp = log softmax of the model's logits (before temperature,
 * penalties and truncation), and the `ntop` most likely tokens. */
typedef struct rmu_eng_lp {
    int id;
    float lp;
    int ntop;
    int top_id[RMU_ENG_MAX_TOP];
    float top_lp[RMU_ENG_MAX_TOP];
} rmu_eng_lp;

/* What a sequence has produced so far; read it with the request locked. */
typedef struct rmu_eng_seq_out {
    rmu_sb text;          /* released text: stop strings cut, held-back text not yet */
    int *ids;             /* generated ids, a final EOS included */
    int nids;
    rmu_eng_lp *lps;      /* per generated id, when logprobs */
    int nlps;
    rmu_eng_lp *plps;     /* per prompt token when prompt_logprobs (plps[0].ntop = -1: none) */
    int nplps;
    int *prompt;          /* the prompt ids */
    int n_prompt;
    int n_reused;         /* prompt tokens whose K/V came from a cache */
    int finish;           /* RMU_FINISH_* */
    double t_first;       /* seconds from submission to the first token, -1 before */
    int err_status;       /* RMU_FINISH_ERROR: the HTTP status it maps to (503: queue
                             timeout or shutdown, 500: internal) */
    char err[256];
} rmu_eng_seq_out;

typedef struct rmu_eng rmu_eng;
typedef struct rmu_eng_req rmu_eng_req;

/* Starts the scheduler thread. The model and tokenizer must outlive the engine. */
rmu_eng *rmu_eng_create(const rmu_model *m, const rmu_tokenizer *t, const rmu_eng_opts *o, rmu_err *e);
/* Cancels everything, joins the thread, frees. Requests still held stay valid until
 * released. */
void rmu_eng_destroy(rmu_eng *g);

/* Queues the nseq sequences of one request. NULL with *busy = 1 when the queue is full or
 * the engine is shutting down (busy = 2), else an error in e. */
rmu_eng_req *rmu_eng_submit(rmu_eng *g, const rmu_eng_params *p, int nseq, int *busy, rmu_err *e);
void rmu_eng_req_lock(rmu_eng_req *r);
void rmu_eng_req_unlock(rmu_eng_req *r);
/* With the request locked: waits until the request changes or timeout_s passes. */
void rmu_eng_req_wait(rmu_eng_req *r, double timeout_s);
/* With the request locked: sequence i's output; whether all sequences finished. */
const rmu_eng_seq_out *rmu_eng_req_out(rmu_eng_req *r, int i);
int rmu_eng_req_nseq(const rmu_eng_req *r);
int rmu_eng_req_done(rmu_eng_req *r);
/* The consumer is gone: unfinished sequences are cancelled (their slots freed before the
 * next step) and the request is freed when the engine lets go of it too. */
void rmu_eng_req_release(rmu_eng_req *r);

/* Shutdown: stop taking requests (queued ones end as aborted), let running ones finish for
 * up to grace_s seconds, then abort them. Returns when no sequence is left. */
void rmu_eng_drain(rmu_eng *g, double grace_s);

/* Counters for /metrics. */
typedef struct rmu_eng_stats {
    long long requests, seqs_done, prompt_tokens, reused_tokens, gen_tokens, steps, rows, aborted, timed_out;
    int queued, active, parallel;
    double tok_per_s;   /* generated tokens per second over the last few seconds */
    double busy_s;      /* seconds spent in forward passes */
} rmu_eng_stats;
void rmu_eng_get_stats(rmu_eng *g, rmu_eng_stats *s);

#endif
