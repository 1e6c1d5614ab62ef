/* api.c - OpenAI request parsing/validation and response JSON (see api.h). */
#include "serve/api.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"

#define INVALID "invalid_request_error"

int rmu_api_errf(rmu_api_err *err, int status, const char *type, const char *code, const char *param,
                 const char *fmt, ...) {
    if (!err) return -1;
    err->status = status;
    err->type = type;
    err->code = code;
    snprintf(err->param, sizeof err->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- typed field access: a missing or null field leaves *out alone */

static const char *type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static int bad_type(rmu_api_err *err, const char *param, const char *want, const json_t *v) {
    return rmu_api_errf(err, 400, INVALID, NULL, param, "%s: expected %s, got %s", param, want, type_name(v));
}

static json_t *field(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return v && !json_is_null(v) ? v : NULL;
}

static int get_bool(json_t *o, const char *key, int *out, rmu_api_err *err) {
    json_t *v = field(o, key);
    if (!v) return 0;
    if (!json_is_boolean(v)) return bad_type(err, key, "a boolean", v);
    *out = json_is_true(v);
    return 0;
}

/* An integer (a number with an integral value is accepted too) in [lo, hi]. */
static int int_value(json_t *v, const char *param, long long lo, long long hi, long long *out, rmu_api_err *err) {
    long long x;
    if (json_is_integer(v)) x = json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) && fabs(json_real_value(v)) < 9e15)
        x = (long long)json_real_value(v);
    else return bad_type(err, param, "an integer", v);
    if (x < lo || x > hi) return rmu_api_errf(err, 400, INVALID, NULL, param, "%s: must be in [%lld, %lld], got %lld",
                                              param, lo, hi, x);
    *out = x;
    return 0;
}

static int get_int(json_t *o, const char *key, long long lo, long long hi, int *out, rmu_api_err *err) {
    json_t *v = field(o, key);
    long long x;
    if (!v) return 0;
    if (int_value(v, key, lo, hi, &x, err)) return -1;
    *out = (int)x;
    return 0;
}

/* A number in [lo, hi] ((lo, hi] when lo_open). */
static int get_num(json_t *o, const char *key, double lo, double hi, int lo_open, double *out, rmu_api_err *err) {
    json_t *v = field(o, key);
    if (!v) return 0;
    if (!json_is_number(v)) return bad_type(err, key, "a number", v);
    double x = json_number_value(v);
    if (!(lo_open ? x > lo : x >= lo) || !(x <= hi))
        return rmu_api_errf(err, 400, INVALID, NULL, key, "%s: must be in %c%g, %g], got %g", key, lo_open ? '(' : '[',
                            lo, hi, x);
    *out = x;
    return 0;
}

/* ---- pieces of a request */

static int parse_stop(rmu_api_req *r, json_t *o, rmu_api_err *err) {
    json_t *v = field(o, "stop");
    if (!v) return 0;
    if (json_is_string(v)) {
        if (json_string_length(v) == 0) return 0; /* "" stops nothing: as if absent */
        r->stops[r->nstops++] = json_string_value(v);
        return 0;
    }
    if (!json_is_array(v)) return bad_type(err, "stop", "a string or an array of strings", v);
    if (json_array_size(v) > RMU_API_MAX_STOPS)
        return rmu_api_errf(err, 400, INVALID, NULL, "stop", "stop: at most %d stop strings, got %zu",
                            RMU_API_MAX_STOPS, json_array_size(v));
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s) {
        char p[32];
        snprintf(p, sizeof p, "stop[%zu]", i);
        if (!json_is_string(s)) return bad_type(err, p, "a string", s);
        if (json_string_length(s) == 0) return rmu_api_errf(err, 400, INVALID, NULL, p, "%s: empty stop string", p);
        r->stops[r->nstops++] = json_string_value(s);
    }
    return 0;
}

/* Joins the text parts of a content array ("\n" between parts, as vLLM). */
static int content_parts(rmu_api_req *r, json_t *v, const char *param, const char **out, rmu_api_err *err) {
    rmu_sb sb = {0};
    size_t i;
    json_t *part;
    json_array_foreach(v, i, part) {
        char p[96];
        snprintf(p, sizeof p, "%s[%zu]", param, i);
        if (!json_is_object(part)) {
            rmu_sb_free(&sb);
            return bad_type(err, p, "an object", part);
        }
        json_t *ty = json_object_get(part, "type"), *tx = json_object_get(part, "text");
        if (!json_is_string(ty) || strcmp(json_string_value(ty), "text") || !json_is_string(tx)) {
            rmu_sb_free(&sb);
            return rmu_api_errf(err, 400, INVALID, NULL, p, "%s: only {\"type\": \"text\", \"text\": ...} parts are supported", p);
        }
        if (i) rmu_sb_putc(&sb, '\n');
        rmu_sb_add(&sb, json_string_value(tx), json_string_length(tx));
    }
    char *s = rmu_sb_take(&sb);
    char **no = realloc(r->owned, sizeof *no * (r->nowned + 1));
    if (!s || !no) {
        free(s);
        if (no) r->owned = no;
        return rmu_api_errf(err, 500, "server_error", NULL, NULL, "out of memory");
    }
    r->owned = no;
    r->owned[r->nowned++] = s;
    *out = s;
    return 0;
}

static int parse_messages(rmu_api_req *r, json_t *o, rmu_api_err *err) {
    json_t *v = json_object_get(o, "messages");
    if (!v) return rmu_api_errf(err, 400, INVALID, NULL, "messages", "messages: required");
    if (!json_is_array(v)) return bad_type(err, "messages", "an array", v);
    size_t n = json_array_size(v);
    if (n == 0) return rmu_api_errf(err, 400, INVALID, NULL, "messages", "messages: must not be empty");
    if (n > RMU_API_MAX_MESSAGES)
        return rmu_api_errf(err, 400, INVALID, NULL, "messages", "messages: at most %d, got %zu", RMU_API_MAX_MESSAGES, n);
    if (!(r->msgs = calloc(n, sizeof *r->msgs))) return rmu_api_errf(err, 500, "server_error", NULL, NULL, "out of memory");
    size_t i;
    json_t *m;
    json_array_foreach(v, i, m) {
        char p[64];
        snprintf(p, sizeof p, "messages[%zu]", i);
        if (!json_is_object(m)) return bad_type(err, p, "an object", m);
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        snprintf(p, sizeof p, "messages[%zu].role", i);
        if (!role) return rmu_api_errf(err, 400, INVALID, NULL, p, "%s: required", p);
        if (!json_is_string(role)) return bad_type(err, p, "a string", role);
        const char *rs = json_string_value(role);
        if (!strcmp(rs, "developer")) rs = "system"; /* OpenAI's newer name for it */
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant"))
            return rmu_api_errf(err, 400, INVALID, NULL, p, "%s: unknown role '%.40s' (expected system, developer, user or assistant)",
                                p, json_string_value(role));
        snprintf(p, sizeof p, "messages[%zu].content", i);
        const char *text = "";
        if (!content || json_is_null(content)) {
            if (strcmp(rs, "assistant")) return rmu_api_errf(err, 400, INVALID, NULL, p, "%s: required", p);
        } else if (json_is_string(content)) {
            text = json_string_value(content);
            if (strlen(text) != json_string_length(content))
                return rmu_api_errf(err, 400, INVALID, NULL, p, "%s: contains a NUL character", p);
        } else if (json_is_array(content)) {
            if (content_parts(r, content, p, &text, err)) return -1;
        } else {
            return bad_type(err, p, "a string or an array of text parts", content);
        }
        r->msgs[r->nmsgs++] = (rmu_chat_msg){rs, text};
    }
    return 0;
}

/* Token ids of an array (elements checked to be integers >= 0). */
static int id_array(json_t *a, const char *param, int **ids, int *n, rmu_api_err *err) {
    size_t k = json_array_size(a), i;
    json_t *x;
    if (!(*ids = malloc(sizeof(int) * (k ? k : 1)))) return rmu_api_errf(err, 500, "server_error", NULL, NULL, "out of memory");
    *n = 0;
    json_array_foreach(a, i, x) {
        char p[64];
        long long id;
        snprintf(p, sizeof p, "%s[%zu]", param, i);
        if (int_value(x, p, 0, INT_MAX, &id, err)) return -1;
        (*ids)[(*n)++] = (int)id;
    }
    return 0;
}

/* prompt: a string, an array of strings, an array of token ids, or an array of arrays of
 * token ids (what lm-evaluation-harness sends). */
static int parse_prompt(rmu_api_req *r, json_t *o, rmu_api_err *err) {
    json_t *v = field(o, "prompt");
    if (!v) return rmu_api_errf(err, 400, INVALID, NULL, "prompt", "prompt: required");
    const char *want = "a string, an array of strings, an array of token ids or an array of arrays of token ids";
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (!json_is_string(v) && !json_is_array(v)) return bad_type(err, "prompt", want, v);
    if (n == 0) return rmu_api_errf(err, 400, INVALID, NULL, "prompt", "prompt: must not be empty");
    json_t *first = json_is_array(v) ? json_array_get(v, 0) : v;
    int ids_one = json_is_array(v) && json_is_number(first);
    if (ids_one) n = 1;
    if (n > RMU_API_MAX_PROMPTS)
        return rmu_api_errf(err, 400, INVALID, NULL, "prompt", "prompt: at most %d prompts per request, got %zu",
                            RMU_API_MAX_PROMPTS, n);
    if (!(r->prompts = calloc(n, sizeof *r->prompts)))
        return rmu_api_errf(err, 500, "server_error", NULL, NULL, "out of memory");
    r->nprompts = (int)n;
    if (json_is_string(v)) {
        r->prompts[0].text = json_string_value(v);
        return 0;
    }
    if (ids_one) return id_array(v, "prompt", &r->prompts[0].ids, &r->prompts[0].n, err);
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) {
        char p[32];
        snprintf(p, sizeof p, "prompt[%zu]", i);
        if (json_is_string(x) && json_is_string(first)) {
            r->prompts[i].text = json_string_value(x);
        } else if (json_is_array(x) && json_is_array(first)) {
            if (json_array_size(x) == 0) return rmu_api_errf(err, 400, INVALID, NULL, p, "%s: must not be empty", p);
            if (id_array(x, p, &r->prompts[i].ids, &r->prompts[i].n, err)) return -1;
        } else {
            return bad_type(err, p, json_is_string(first) ? "a string" : "an array of token ids", x);
        }
    }
    return 0;
}

/* Fields whose presence means a feature this server does not have. */
static int unsupported(json_t *o, rmu_api_err *err) {
    static const char *const keys[] = {"tools", "functions", "tool_choice", "function_call", "response_format",
                                       "logit_bias", "suffix", "best_of", NULL};
    for (int i = 0; keys[i]; i++) {
        json_t *v = field(o, keys[i]);
        if (!v) continue;
        if ((json_is_array(v) && json_array_size(v) == 0) || (json_is_object(v) && json_object_size(v) == 0)) continue;
        if (!strcmp(keys[i], "tool_choice") && json_is_string(v) && !strcmp(json_string_value(v), "none")) continue;
        if (!strcmp(keys[i], "best_of") && json_is_integer(v) && json_integer_value(v) == 1) continue;
        if (!strcmp(keys[i], "response_format") && json_is_object(v)) {
            json_t *ty = json_object_get(v, "type");
            if (json_is_string(ty) && !strcmp(json_string_value(ty), "text")) continue;
        }
        return rmu_api_errf(err, 400, INVALID, NULL, keys[i], "%s: not supported by this server", keys[i]);
    }
    return 0;
}

static int parse_sampling(rmu_api_req *r, json_t *o, rmu_api_err *err) {
    int chat = r->kind == RMU_API_CHAT;
    if (get_int(o, "max_tokens", chat ? 1 : 0, INT_MAX / 2, &r->max_tokens, err)) return -1;
    if (chat && get_int(o, "max_completion_tokens", 1, INT_MAX / 2, &r->max_tokens, err)) return -1;
    if (get_num(o, "temperature", 0, 2, 0, &r->temperature, err) || get_num(o, "top_p", 0, 1, 1, &r->top_p, err) ||
        get_int(o, "top_k", -1, INT_MAX, &r->top_k, err) || get_int(o, "n", 1, RMU_API_MAX_N, &r->n, err) ||
        get_num(o, "presence_penalty", -2, 2, 0, &r->presence_penalty, err) ||
        get_num(o, "frequency_penalty", -2, 2, 0, &r->frequency_penalty, err) || get_bool(o, "stream", &r->stream, err) ||
        get_bool(o, "ignore_eos", &r->ignore_eos, err))
        return -1;
    json_t *seed = field(o, "seed");
    long long sv;
    if (seed) {
        if (int_value(seed, "seed", LLONG_MIN, LLONG_MAX, &sv, err)) return -1;
        r->has_seed = 1;
        r->seed = (uint64_t)sv;
    }
    json_t *so = field(o, "stream_options");
    if (so) {
        if (!json_is_object(so)) return bad_type(err, "stream_options", "an object", so);
        json_t *iu = field(so, "include_usage");
        if (iu && !json_is_boolean(iu)) return bad_type(err, "stream_options.include_usage", "a boolean", iu);
        r->include_usage = iu && json_is_true(iu);
    }
    if (chat) {
        if (get_bool(o, "logprobs", &r->logprobs, err) ||
            get_int(o, "top_logprobs", 0, RMU_ENG_MAX_TOP, &r->top_logprobs, err))
            return -1;
        if (r->top_logprobs && !r->logprobs)
            return rmu_api_errf(err, 400, INVALID, NULL, "top_logprobs", "top_logprobs: needs logprobs: true");
    } else {
        int lp = -1;
        if (get_int(o, "logprobs", 0, RMU_ENG_MAX_TOP, &lp, err) || get_bool(o, "echo", &r->echo, err)) return -1;
        r->logprobs = lp >= 0;
        r->top_logprobs = lp > 0 ? lp : 0;
    }
    if (r->top_k < 0) r->top_k = 0; /* -1: off, as vLLM */
    return parse_stop(r, o, err);
}

int rmu_api_parse(rmu_api_req *r, rmu_api_kind kind, const char *body, size_t len, rmu_api_err *err) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->max_tokens = -1;
    r->n = 1;
    r->temperature = 1.0;
    r->top_p = 1.0;
    r->add_special_tokens = 1;
    r->add_generation_prompt = 1;
    json_error_t je;
    r->root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!r->root)
        return rmu_api_errf(err, 400, INVALID, NULL, NULL, "the body is not valid JSON: %s (line %d, column %d)", je.text,
                            je.line, je.column);
    if (!json_is_object(r->root))
        return rmu_api_errf(err, 400, INVALID, NULL, NULL, "the body must be a JSON object, got %s", type_name(r->root));
    json_t *o = r->root, *model = field(o, "model");
    if (model && !json_is_string(model)) return bad_type(err, "model", "a string", model);
    switch (kind) {
    case RMU_API_CHAT:
        return unsupported(o, err) || parse_messages(r, o, err) || parse_sampling(r, o, err) ? -1 : 0;
    case RMU_API_COMPLETIONS:
        if (unsupported(o, err) || parse_prompt(r, o, err) || parse_sampling(r, o, err)) return -1;
        if (r->nprompts * r->n > RMU_API_MAX_SEQS) /* each is a sequence with its own state */
            return rmu_api_errf(err, 400, INVALID, NULL, "n", "n: %d prompts x n = %d sequences, at most %d per request",
                                r->nprompts, r->nprompts * r->n, RMU_API_MAX_SEQS);
        return 0;
    case RMU_API_TOKENIZE: {
        if (get_bool(o, "add_special_tokens", &r->add_special_tokens, err) ||
            get_bool(o, "add_generation_prompt", &r->add_generation_prompt, err))
            return -1;
        if (field(o, "messages")) return parse_messages(r, o, err);
        json_t *p = field(o, "prompt") ? field(o, "prompt") : field(o, "content");
        const char *key = field(o, "prompt") ? "prompt" : "content";
        if (!p) return rmu_api_errf(err, 400, INVALID, NULL, "prompt", "prompt: required (or messages)");
        if (!json_is_string(p)) return bad_type(err, key, "a string", p);
        if (!(r->prompts = calloc(1, sizeof *r->prompts)))
            return rmu_api_errf(err, 500, "server_error", NULL, NULL, "out of memory");
        r->nprompts = 1;
        r->prompts[0].text = json_string_value(p);
        return 0;
    }
    case RMU_API_DETOKENIZE: {
        json_t *t = field(o, "tokens");
        if (!t) return rmu_api_errf(err, 400, INVALID, NULL, "tokens", "tokens: required");
        if (!json_is_array(t)) return bad_type(err, "tokens", "an array of token ids", t);
        if (!(r->prompts = calloc(1, sizeof *r->prompts)))
            return rmu_api_errf(err, 500, "server_error", NULL, NULL, "out of memory");
        r->nprompts = 1;
        return id_array(t, "tokens", &r->prompts[0].ids, &r->prompts[0].n, err);
    }
    }
    return rmu_api_errf(err, 404, INVALID, NULL, NULL, "unknown endpoint");
}

void rmu_api_req_free(rmu_api_req *r) {
    for (int i = 0; i < r->nprompts; i++) free(r->prompts[i].ids);
    for (int i = 0; i < r->nowned; i++) free(r->owned[i]);
    free(r->prompts), free(r->owned), free(r->msgs), free(r->rendered);
    json_decref(r->root);
    memset(r, 0, sizeof *r);
}

/* ---- prompts to ids */

static int check_ctx(rmu_api_req *r, rmu_api_prompt *p, int ctx, rmu_api_err *err) {
    const char *what = r->kind == RMU_API_CHAT ? "messages" : "prompt";
    int want = r->max_tokens;
    if (want < 0) { /* not given */
        want = r->kind == RMU_API_CHAT ? ctx - p->n : 16;
        if (want > ctx - p->n) want = ctx - p->n;
        if (want < 1) want = 1; /* still over: reported below */
    }
    if ((long long)p->n + want > ctx)
        return rmu_api_errf(err, 400, INVALID, "context_length_exceeded", what,
                            "This model's maximum context length is %d tokens. However, you requested %lld tokens (%d in "
                            "the %s, %d in the completion). Please reduce the length of the %s or completion.",
                            ctx, (long long)p->n + want, p->n, what, want, what);
    p->max_new = want;
    return 0;
}

int rmu_api_encode(rmu_api_req *r, const rmu_tokenizer *t, rmu_chat_kind tmpl, int vocab, int ctx, rmu_api_err *err) {
    rmu_err e;
    int tv = rmu_tok_vocab_size(t);
    if (tv < vocab) vocab = tv; /* ids the tokenizer cannot decode are refused */
    if (r->kind == RMU_API_DETOKENIZE) {
        for (int i = 0; i < r->prompts[0].n; i++)
            if (r->prompts[0].ids[i] >= vocab)
                return rmu_api_errf(err, 400, INVALID, NULL, "tokens", "tokens[%d]: id %d is outside the vocabulary of %d",
                                    i, r->prompts[0].ids[i], vocab);
        return 0;
    }
    if (r->msgs) {
        int gen = r->kind == RMU_API_CHAT || r->add_generation_prompt;
        if (!(r->rendered = rmu_chat_render(t, tmpl, r->msgs, r->nmsgs, gen, &e)))
            return rmu_api_errf(err, 400, INVALID, NULL, "messages", "messages: %s", e.msg);
        if (!r->prompts) {
            if (!(r->prompts = calloc(1, sizeof *r->prompts)))
                return rmu_api_errf(err, 500, "server_error", NULL, NULL, "out of memory");
            r->nprompts = 1;
        }
        int rc = r->kind == RMU_API_TOKENIZE && !r->add_special_tokens
                     ? rmu_tok_encode(t, r->rendered, strlen(r->rendered), 0, &r->prompts[0].ids, &r->prompts[0].n, &e)
                     : rmu_chat_encode(t, r->rendered, &r->prompts[0].ids, &r->prompts[0].n, &e);
        if (rc) return rmu_api_errf(err, 400, INVALID, NULL, "messages", "messages: %s", e.msg);
    } else {
        for (int i = 0; i < r->nprompts; i++) {
            rmu_api_prompt *p = &r->prompts[i];
            if (p->text) {
                int bos = rmu_tok_add_bos(t) && r->add_special_tokens;
                if (rmu_tok_encode(t, p->text, strlen(p->text), bos, &p->ids, &p->n, &e))
                    return rmu_api_errf(err, 400, INVALID, NULL, "prompt", "prompt: %s", e.msg);
            } else {
                for (int k = 0; k < p->n; k++)
                    if (p->ids[k] >= vocab)
                        return rmu_api_errf(err, 400, INVALID, NULL, "prompt",
                                            "prompt: token id %d is outside the vocabulary of %d", p->ids[k], vocab);
            }
        }
    }
    if (r->kind == RMU_API_TOKENIZE) return 0;
    for (int i = 0; i < r->nprompts; i++) {
        if (r->prompts[i].n == 0)
            return rmu_api_errf(err, 400, INVALID, NULL, "prompt", "prompt: encodes to no tokens");
        if (check_ctx(r, &r->prompts[i], ctx, err)) return -1;
    }
    return 0;
}

void rmu_api_seq_params(const rmu_api_req *r, int i, int j, uint64_t fallback_seed, rmu_eng_params *p) {
    const rmu_api_prompt *pr = &r->prompts[i];
    memset(p, 0, sizeof *p);
    p->prompt = pr->ids;
    p->n_prompt = pr->n;
    p->max_new = pr->max_new;
    p->smp.temp = (float)r->temperature;
    p->smp.top_k = r->top_k;
    p->smp.top_p = (float)r->top_p;
    p->smp.seed = (r->has_seed ? r->seed : fallback_seed) + (uint64_t)j; /* choices differ */
    p->presence = (float)r->presence_penalty;
    p->frequency = (float)r->frequency_penalty;
    p->stops = r->stops;
    p->nstops = r->nstops;
    p->logprobs = r->logprobs;
    p->top = r->top_logprobs;
    p->prompt_logprobs = r->kind == RMU_API_COMPLETIONS && r->echo && r->logprobs;
    p->continuation = r->kind == RMU_API_COMPLETIONS;
    p->ignore_eos = r->ignore_eos;
    p->same_prompt_as = j > 0 ? i * r->n : -1;
}

/* ---- responses */

const char *rmu_api_finish_name(int finish) {
    switch (finish) {
    case RMU_FINISH_LENGTH: return "length";
    case RMU_FINISH_STOP: return "stop";
    case RMU_FINISH_ABORT: return "abort";
    case RMU_FINISH_ERROR: return "error";
    default: return NULL;
    }
}

static json_t *utf8_string(const char *s, size_t n);

json_t *rmu_api_error_json(const rmu_api_err *err) {
    /* the message may quote request bytes cut mid-character: made valid UTF-8 */
    return json_pack("{s:{s:o, s:s, s:o, s:s?}}", "error", "message", utf8_string(err->message, strlen(err->message)),
                     "type", err->type ? err->type : INVALID, "param",
                     err->param[0] ? utf8_string(err->param, strlen(err->param)) : json_null(), "code", err->code);
}

/* The bytes of one token as the decoder would show them mid-text. */
static int token_bytes(const rmu_tokenizer *t, int id, char *out, size_t cap) {
    const char *piece = rmu_tok_piece(t, id);
    out[0] = 0;
    if (!piece) return 0;
    if (rmu_tok_is_special(t, id)) return snprintf(out, cap, "%s", piece);
    unsigned b;
    char end;
    if (strlen(piece) == 6 && sscanf(piece, "<0x%2X%c", &b, &end) == 2 && end == '>') { /* byte fallback */
        out[0] = (char)b;
        return 1;
    }
    rmu_tok_stream st;
    rmu_tok_stream_init(&st, t);
    st.started = 1;
    return rmu_tok_stream_push(&st, id, out, cap);
}

/* Valid UTF-8 of n bytes (each byte of an invalid sequence becomes U+FFFD). */
static json_t *utf8_string(const char *s, size_t n) {
    json_t *j = json_stringn(s, n);
    if (j) return j;
    rmu_sb b = {0};
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        json_t *probe = len && i + len <= n ? json_stringn(s + i, len) : NULL;
        if (probe) {
            rmu_sb_add(&b, s + i, len);
            json_decref(probe);
            i += len;
        } else {
            rmu_sb_puts(&b, "\xef\xbf\xbd");
            i++;
        }
    }
    j = json_stringn(b.p ? b.p : "", b.n);
    rmu_sb_free(&b);
    return j;
}

static json_t *token_string(const rmu_tokenizer *t, int id, size_t *nbytes) {
    char buf[256];
    int n = token_bytes(t, id, buf, sizeof buf);
    if (nbytes) *nbytes = n;
    return utf8_string(buf, n);
}

/* Chat: {"token", "logprob", "bytes", "top_logprobs": [...]} per token. */
static json_t *chat_lp_entry(const rmu_tokenizer *t, int id, float lp, const rmu_eng_lp *tops) {
    char buf[256];
    int n = token_bytes(t, id, buf, sizeof buf);
    json_t *bytes = json_array();
    for (int k = 0; k < n; k++) json_array_append_new(bytes, json_integer((unsigned char)buf[k]));
    json_t *e = json_pack("{s:o, s:f, s:o}", "token", utf8_string(buf, n), "logprob", (double)lp, "bytes", bytes);
    if (tops) {
        json_t *a = json_array();
        for (int k = 0; k < tops->ntop; k++)
            json_array_append_new(a, chat_lp_entry(t, tops->top_id[k], tops->top_lp[k], NULL));
        json_object_set_new(e, "top_logprobs", a);
    }
    return e;
}

static json_t *chat_logprobs(const rmu_tokenizer *t, const rmu_eng_lp *lps, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, chat_lp_entry(t, lps[i].id, lps[i].lp, &lps[i]));
    return json_pack("{s:o}", "content", a);
}

/* Completions: parallel arrays; a record with ntop < 0 has no logprob (the first prompt
 * token). off: running offset into the text, which the stream decoder gives token by token
 * (from_start: the text starts here, so its first space is dropped as decode does). */
static void comp_logprobs_add(json_t *lp, const rmu_tokenizer *t, const rmu_eng_lp *recs, int n, size_t *off,
                              int from_start) {
    json_t *toks = json_object_get(lp, "tokens"), *tlp = json_object_get(lp, "token_logprobs"),
           *top = json_object_get(lp, "top_logprobs"), *offs = json_object_get(lp, "text_offset");
    rmu_tok_stream st;
    rmu_tok_stream_init(&st, t);
    st.started = !from_start;
    for (int i = 0; i < n; i++) {
        char piece[256];
        json_array_append_new(toks, token_string(t, recs[i].id, NULL));
        json_array_append_new(offs, json_integer((json_int_t)*off));
        *off += (size_t)rmu_tok_stream_push(&st, recs[i].id, piece, sizeof piece);
        if (recs[i].ntop < 0) {
            json_array_append_new(tlp, json_null());
            json_array_append_new(top, json_null());
            continue;
        }
        json_array_append_new(tlp, json_real(recs[i].lp));
        json_t *d = json_object();
        for (int k = 0; k < recs[i].ntop; k++) {
            json_t *s = token_string(t, recs[i].top_id[k], NULL);
            if (!json_object_get(d, json_string_value(s))) /* two ids, one text: keep the likelier */
                json_object_set_new(d, json_string_value(s), json_real(recs[i].top_lp[k]));
            json_decref(s);
        }
        json_array_append_new(top, d);
    }
}

static json_t *comp_logprobs_new(void) {
    return json_pack("{s:[], s:[], s:[], s:[]}", "tokens", "token_logprobs", "top_logprobs", "text_offset");
}

/* Echo text: the prompt as decoded. */
static char *prompt_text(const rmu_tokenizer *t, const rmu_eng_seq_out *o) {
    rmu_err e;
    return rmu_tok_decode(t, o->prompt, o->n_prompt, 1, &e);
}

static json_t *usage(const rmu_api_resp *c, const rmu_eng_seq_out *const *outs) {
    const rmu_api_req *r = c->req;
    long long pt = 0, ct = 0, cached = 0;
    for (int i = 0; i < r->nprompts; i++) {
        pt += outs[i * r->n]->n_prompt;
        cached += outs[i * r->n]->n_reused;
        for (int j = 0; j < r->n; j++) ct += outs[i * r->n + j]->nids;
    }
    return json_pack("{s:I, s:I, s:I, s:{s:I}}", "prompt_tokens", (json_int_t)pt, "completion_tokens", (json_int_t)ct,
                     "total_tokens", (json_int_t)(pt + ct), "prompt_tokens_details", "cached_tokens", (json_int_t)cached);
}

static json_t *envelope(const rmu_api_resp *c, const char *object) {
    return json_pack("{s:s, s:s, s:I, s:s, s:[]}", "id", c->id, "object", object, "created", (json_int_t)c->created,
                     "model", c->model, "choices");
}

static json_t *finish_json(int finish) {
    const char *f = rmu_api_finish_name(finish);
    return f ? json_string(f) : json_null();
}

json_t *rmu_api_response(const rmu_api_resp *c, const rmu_eng_seq_out *const *outs) {
    const rmu_api_req *r = c->req;
    int chat = r->kind == RMU_API_CHAT;
    json_t *resp = envelope(c, chat ? "chat.completion" : "text_completion");
    json_t *choices = json_object_get(resp, "choices");
    for (int k = 0; k < r->nprompts * r->n; k++) {
        const rmu_eng_seq_out *o = outs[k];
        const char *text = o->text.p ? o->text.p : "";
        json_t *ch, *lp = json_null();
        if (chat) {
            if (r->logprobs) lp = chat_logprobs(c->tok, o->lps, o->nlps);
            ch = json_pack("{s:i, s:{s:s, s:o}, s:o, s:o}", "index", k, "message", "role", "assistant", "content",
                           utf8_string(text, strlen(text)), "logprobs", lp, "finish_reason", finish_json(o->finish));
        } else {
            rmu_sb full = {0};
            size_t off = 0;
            if (r->echo) {
                char *pt = prompt_text(c->tok, o);
                rmu_sb_puts(&full, pt ? pt : "");
                free(pt);
            }
            if (r->logprobs) {
                lp = comp_logprobs_new();
                if (r->echo) comp_logprobs_add(lp, c->tok, o->plps, o->nplps, &off, 1);
                off = full.n;
                comp_logprobs_add(lp, c->tok, o->lps, o->nlps, &off, 0);
            }
            rmu_sb_puts(&full, text);
            ch = json_pack("{s:i, s:o, s:o, s:o}", "index", k, "text", utf8_string(full.p ? full.p : "", full.n),
                           "logprobs", lp, "finish_reason", finish_json(o->finish));
            rmu_sb_free(&full);
        }
        json_array_append_new(choices, ch);
    }
    json_object_set_new(resp, "usage", usage(c, outs));
    return resp;
}

json_t *rmu_api_chunk(const rmu_api_resp *c, int index, int first, const char *text, size_t ntext,
                      const rmu_eng_lp *lps, int nlps, const rmu_eng_seq_out *prompt_out, int finish) {
    const rmu_api_req *r = c->req;
    int chat = r->kind == RMU_API_CHAT;
    json_t *ck = envelope(c, chat ? "chat.completion.chunk" : "text_completion");
    json_t *lp = json_null(), *ch;
    if (chat) {
        json_t *delta = json_object();
        if (first) json_object_set_new(delta, "role", json_string("assistant"));
        if (first || ntext) json_object_set_new(delta, "content", utf8_string(text, ntext));
        if (r->logprobs && (nlps || !finish)) lp = chat_logprobs(c->tok, lps, nlps);
        ch = json_pack("{s:i, s:o, s:o, s:o}", "index", index, "delta", delta, "logprobs", lp, "finish_reason",
                       finish_json(finish));
    } else {
        rmu_sb full = {0};
        size_t off = 0;
        if (prompt_out) {
            char *pt = prompt_text(c->tok, prompt_out);
            rmu_sb_puts(&full, pt ? pt : "");
            free(pt);
        }
        if (r->logprobs) {
            lp = comp_logprobs_new();
            if (prompt_out) comp_logprobs_add(lp, c->tok, prompt_out->plps, prompt_out->nplps, &off, 1);
            off = full.n;
            comp_logprobs_add(lp, c->tok, lps, nlps, &off, 0);
        }
        rmu_sb_add(&full, text, ntext);
        ch = json_pack("{s:i, s:o, s:o, s:o}", "index", index, "text", utf8_string(full.p ? full.p : "", full.n),
                       "logprobs", lp, "finish_reason", finish_json(finish));
        rmu_sb_free(&full);
    }
    json_array_append_new(json_object_get(ck, "choices"), ch);
    if (r->include_usage) json_object_set_new(ck, "usage", json_null());
    return ck;
}

json_t *rmu_api_usage_chunk(const rmu_api_resp *c, const rmu_eng_seq_out *const *outs) {
    json_t *ck = envelope(c, c->req->kind == RMU_API_CHAT ? "chat.completion.chunk" : "text_completion");
    json_object_set_new(ck, "usage", usage(c, outs));
    return ck;
}
