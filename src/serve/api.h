/* api.h - the OpenAI-compatible bodies of `rmu serve`: a request's JSON -> a validated
 * rmu_api_req -> token ids (no HTTP, no model: what the fuzz target exercises), and the
 * engine's outputs -> response, stream chunk and error JSON. Prefix rmu_api_.
 *
 * Errors carry OpenAI's shape: {"error": {"message", "type", "param", "code"}}; param names
 * the request field (e.g. "messages[2].role", "top_p"). */
#ifndef RMU_API_H
#define RMU_API_H

#include <jansson.h>
#include <stdint.h>

#include "serve/engine.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

#define RMU_API_MAX_STOPS 16
#define RMU_API_MAX_N 16
#define RMU_API_MAX_PROMPTS 64
#define RMU_API_MAX_SEQS 64 /* prompts x n */
#define RMU_API_MAX_MESSAGES 4096

typedef enum rmu_api_kind {
    RMU_API_CHAT = 0,    /* POST /v1/chat/completions */
    RMU_API_COMPLETIONS, /* POST /v1/completions */
    RMU_API_TOKENIZE,    /* POST /tokenize */
    RMU_API_DETOKENIZE,  /* POST /detokenize */
} rmu_api_kind;

typedef struct rmu_api_err {
    int status;        /* HTTP status */
    const char *type;  /* "invalid_request_error", ... */
    const char *code;  /* NULL, or e.g. "context_length_exceeded" */
    char param[96];    /* "" when no field is to blame */
    char message[512];
} rmu_api_err;

/* Fills err and returns -1. */
int rmu_api_errf(rmu_api_err *err, int status, const char *type, const char *code, const char *param,
                 const char *fmt, ...) __attribute__((format(printf, 6, 7)));

typedef struct rmu_api_prompt {
    const char *text; /* the prompt string (borrowed from the request), NULL for ids */
    int *ids;         /* token ids (malloc'd): given, or filled by rmu_api_encode */
    int n;
    int max_new;      /* tokens to generate (rmu_api_encode) */
} rmu_api_prompt;

typedef struct rmu_api_req {
    rmu_api_kind kind;
    json_t *root;                 /* the parsed body: owns every borrowed string */
    rmu_chat_msg *msgs;           /* chat (and tokenize with messages) */
    int nmsgs;
    char **owned;                 /* message contents joined from parts */
    int nowned;
    char *rendered;               /* the chat prompt after rmu_api_encode */
    rmu_api_prompt *prompts;      /* completions: one per prompt; chat: 1 after encode */
    int nprompts;
    int max_tokens;               /* -1: not given */
    int n, stream, include_usage, echo;
    int ignore_eos;               /* extension (vLLM, llama.cpp): generate past EOS */
    int logprobs;                 /* 0 none, 1 asked */
    int top_logprobs;             /* 0..RMU_ENG_MAX_TOP */
    double temperature, top_p;
    int top_k;
    int has_seed;
    uint64_t seed;
    double presence_penalty, frequency_penalty;
    const char *stops[RMU_API_MAX_STOPS];
    int nstops;
    int add_special_tokens;       /* tokenize: BOS per the tokenizer (default 1) */
    int add_generation_prompt;    /* tokenize with messages (default 1) */
} rmu_api_req;

/* Parses and validates a body of len bytes (any bytes: not trusted). 0, or -1 with err
 * (status 400). */
int rmu_api_parse(rmu_api_req *r, rmu_api_kind kind, const char *body, size_t len, rmu_api_err *err);
void rmu_api_req_free(rmu_api_req *r);

/* Token ids of every prompt: chat messages rendered with the chat template (tmpl) and
 * encoded; completion strings encoded with BOS per the tokenizer; id prompts checked
 * against vocab. For generation requests, also checks the context: every prompt plus
 * max_tokens must fit ctx (400 context_length_exceeded), and sets max_tokens when it was
 * not given (chat: the rest of the context; completions: 16, as OpenAI). */
int rmu_api_encode(rmu_api_req *r, const rmu_tokenizer *t, rmu_chat_kind tmpl, int vocab, int ctx,
                   rmu_api_err *err);

/* The engine parameters of choice j of prompt i (sequence index i * n + j). */
void rmu_api_seq_params(const rmu_api_req *r, int i, int j, uint64_t fallback_seed, rmu_eng_params *p);

json_t *rmu_api_error_json(const rmu_api_err *err);

/* What every response of one request shares. */
typedef struct rmu_api_resp {
    const rmu_api_req *req;
    const rmu_tokenizer *tok;
    const char *id;     /* "chatcmpl-..." or "cmpl-..." */
    const char *model;
    long long created;  /* unix seconds */
} rmu_api_resp;

/* The whole (non-streamed) response from the finished sequences outs[nprompts * n]. */
json_t *rmu_api_response(const rmu_api_resp *c, const rmu_eng_seq_out *const *outs);

/* One stream chunk for sequence `index`: the text released since the last chunk
 * (text[0..ntext)), the logprob records of tokens generated since (lps[0..nlps)), the
 * echoed prompt (first chunk of an echo completion: prompt_out != NULL) and, on the last
 * chunk, the finish reason (RMU_FINISH_NONE otherwise). first: the chat chunk carries the
 * assistant role. */
json_t *rmu_api_chunk(const rmu_api_resp *c, int index, int first, const char *text, size_t ntext,
                      const rmu_eng_lp *lps, int nlps, const rmu_eng_seq_out *prompt_out, int finish);
/* The final usage chunk (stream_options.include_usage). */
json_t *rmu_api_usage_chunk(const rmu_api_resp *c, const rmu_eng_seq_out *const *outs);

/* "stop", "length", "abort" ... for a RMU_FINISH_* value; NULL for none. */
const char *rmu_api_finish_name(int finish);

#endif
